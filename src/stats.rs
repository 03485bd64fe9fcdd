//! Statistics: per size class and for large blocks, bytes requested
//! against bytes held, resident memory, threads.
//!
//! Owns the counters and the table printed by `MMPOOL_STATS=1` (stderr)
//! or `MMPOOL_STATS=path`, `mmpool_stats_print` and `malloc_stats`.
//! Allocation and free counts are kept only in instrumented mode (the
//! hooks feed them); slab, span, large-block and thread counts are kept
//! always, in slow paths. Calls `pagemap`, `span`, `large`, `runtime`,
//! `leak` (live totals), `diag`.

use crate::diag::Line;
use crate::pagemap::{PAGEMAP, TAG_LARGE, TAG_SLAB};
use crate::size_class::{block_size, GRANULE, NUM_CLASSES, SLAB_GRANULES};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Counters of one size class (or of large blocks).
pub struct Counters {
    allocs: AtomicUsize,
    frees: AtomicUsize,
    live: AtomicUsize,
    peak: AtomicUsize,
}

impl Counters {
    const fn new() -> Counters {
        Counters {
            allocs: AtomicUsize::new(0),
            frees: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    fn alloc(&self) {
        self.allocs.fetch_add(1, Ordering::Relaxed);
        let live = self.live.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(live, Ordering::Relaxed);
    }

    fn free(&self) {
        self.frees.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .live
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }
}

static CLASSES: [Counters; NUM_CLASSES] = [const { Counters::new() }; NUM_CLASSES];
static LARGE: Counters = Counters::new();
static REQ_LIVE: AtomicUsize = AtomicUsize::new(0);
static REQ_PEAK: AtomicUsize = AtomicUsize::new(0);
static REQ_TOTAL: AtomicUsize = AtomicUsize::new(0);

fn counters_of(p: usize) -> Option<&'static Counters> {
    let head = PAGEMAP.lookup(p);
    if head.is_null() {
        return None;
    }
    // SAFETY: non-null page map entries are live span headers.
    unsafe {
        match (*head).tag {
            TAG_SLAB => CLASSES.get((*head.cast::<crate::slab::Slab>()).class as usize),
            TAG_LARGE => Some(&LARGE),
            _ => None,
        }
    }
}

/// A block of `size` requested bytes was allocated at `p`.
pub fn on_alloc(p: usize, size: usize) {
    if let Some(c) = counters_of(p) {
        c.alloc();
    }
    REQ_TOTAL.fetch_add(size, Ordering::Relaxed);
    let live = REQ_LIVE.fetch_add(size, Ordering::Relaxed) + size;
    REQ_PEAK.fetch_max(live, Ordering::Relaxed);
}

/// Block `p` (of `size` requested bytes, 0 if unknown) is being freed.
pub fn on_free(p: usize, size: usize) {
    if let Some(c) = counters_of(p) {
        c.free();
    }
    let _ = REQ_LIVE.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        v.checked_sub(size)
    });
}

/// One class's numbers.
#[derive(Clone, Copy, Default, Debug)]
pub struct ClassSnapshot {
    /// Block size in bytes.
    pub block_size: usize,
    /// Allocations (instrumented mode).
    pub allocs: usize,
    /// Frees (instrumented mode).
    pub frees: usize,
    /// Live blocks (instrumented mode).
    pub live: usize,
    /// Most live blocks at once (instrumented mode).
    pub peak: usize,
    /// Slabs held.
    pub slabs: usize,
    /// Bytes of those slabs.
    pub bytes_held: usize,
}

/// Everything at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    /// Per size class.
    pub classes: [ClassSnapshot; NUM_CLASSES],
    /// Large blocks: allocations, frees, live, peak (instrumented mode).
    pub large: ClassSnapshot,
    /// Bytes mapped for live large blocks.
    pub large_bytes: usize,
    /// Mappings made for large blocks.
    pub large_maps: usize,
    /// Large allocations served from the cache.
    pub large_cache_hits: usize,
    /// Requested bytes of live blocks (instrumented mode).
    pub requested: usize,
    /// Most requested bytes live at once (instrumented mode).
    pub requested_peak: usize,
    /// Requested bytes over the whole run (instrumented mode).
    pub requested_total: usize,
    /// Bytes held: slabs handed to heaps plus live large mappings.
    pub held: usize,
    /// Bytes mapped from the OS for spans.
    pub spans_mapped: usize,
    /// Bytes of idle spans with resident pages.
    pub spans_cached: usize,
    /// Resident set size now, bytes.
    pub rss: usize,
    /// Peak resident set size, bytes.
    pub rss_peak: usize,
    /// Threads that ever made a heap (allocated a block of up to 1 KiB;
    /// medium and large blocks need none).
    pub threads_seen: usize,
    /// Threads with a heap now.
    pub threads_live: usize,
    /// Heap structs ever made (threads reuse them).
    pub heaps_made: usize,
    /// Heaps of exited threads parked with their slabs for new threads.
    pub heaps_parked: usize,
    /// Per-CPU heaps made for the medium classes.
    pub shared_heaps: usize,
    /// Whether allocation counts were kept (instrumented mode).
    pub detailed: bool,
}

/// Read the counters.
pub fn snapshot() -> Snapshot {
    let mut classes = [ClassSnapshot::default(); NUM_CLASSES];
    let mut slab_bytes = 0;
    for (c, out) in classes.iter_mut().enumerate() {
        let k = &CLASSES[c];
        let slabs = crate::heap::SLABS_LIVE[c].load(Ordering::Relaxed);
        let held = slabs * SLAB_GRANULES[c] as usize * GRANULE;
        slab_bytes += held;
        *out = ClassSnapshot {
            block_size: block_size(c),
            allocs: k.allocs.load(Ordering::Relaxed),
            frees: k.frees.load(Ordering::Relaxed),
            live: k.live.load(Ordering::Relaxed),
            peak: k.peak.load(Ordering::Relaxed),
            slabs,
            bytes_held: held,
        };
    }
    let large_bytes = crate::large::LIVE_BYTES.load(Ordering::Relaxed);
    let spans = crate::span::SPANS.stats();
    let (rss, rss_peak) = rss();
    Snapshot {
        classes,
        large: ClassSnapshot {
            block_size: 0,
            allocs: LARGE.allocs.load(Ordering::Relaxed),
            frees: LARGE.frees.load(Ordering::Relaxed),
            live: crate::large::LIVE_BLOCKS.load(Ordering::Relaxed),
            peak: LARGE.peak.load(Ordering::Relaxed),
            slabs: 0,
            bytes_held: large_bytes,
        },
        large_bytes,
        large_maps: crate::large::MAPS.load(Ordering::Relaxed),
        large_cache_hits: crate::large::CACHE_HITS.load(Ordering::Relaxed),
        requested: REQ_LIVE.load(Ordering::Relaxed),
        requested_peak: REQ_PEAK.load(Ordering::Relaxed),
        requested_total: REQ_TOTAL.load(Ordering::Relaxed),
        held: slab_bytes + large_bytes,
        spans_mapped: spans.mapped,
        spans_cached: spans.dirty,
        rss,
        rss_peak,
        threads_seen: crate::runtime::THREADS_SEEN.load(Ordering::Relaxed),
        threads_live: crate::runtime::LIVE_HEAPS.load(Ordering::Relaxed),
        heaps_made: crate::runtime::HEAPS_MADE.load(Ordering::Relaxed),
        heaps_parked: crate::runtime::parked_heaps(),
        shared_heaps: crate::shared_heap::made(),
        detailed: crate::insight::stats_on(),
    }
}

/// Current and peak resident set size in bytes, from /proc/self/status.
pub fn rss() -> (usize, usize) {
    let mut buf = [0u8; 4096];
    // SAFETY: NUL-terminated path; `buf` is a valid buffer.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/status".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return (0, 0);
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    if n <= 0 {
        return (0, 0);
    }
    let text = &buf[..n as usize];
    let field = |name: &[u8]| -> usize {
        text.split(|&c| c == b'\n')
            .find(|l| l.starts_with(name))
            .map(|l| {
                l.iter()
                    .filter(|c| c.is_ascii_digit())
                    .fold(0usize, |a, &c| a * 10 + (c - b'0') as usize)
            })
            .unwrap_or(0)
            * 1024
    };
    (field(b"VmRSS:"), field(b"VmHWM:"))
}

/// Append a byte count in B, KiB, MiB or GiB with one decimal.
pub fn human(l: &mut Line, n: usize) {
    const UNITS: [&str; 4] = [" B", " KiB", " MiB", " GiB"];
    let mut unit = 0;
    let mut scaled = n as u64 * 10;
    while scaled >= 10240 && unit < 3 {
        scaled /= 1024;
        unit += 1;
    }
    if unit == 0 {
        l.dec(n as u64);
    } else {
        l.dec(scaled / 10).str(".").dec(scaled % 10);
    }
    l.str(UNITS[unit]);
}

fn pad_dec(l: &mut Line, v: usize, width: usize) {
    let mut tmp = Line::new();
    tmp.dec(v as u64);
    for _ in tmp.as_bytes().len()..width {
        l.str(" ");
    }
    l.bytes(tmp.as_bytes());
}

fn pad_human(l: &mut Line, v: usize, width: usize) {
    let mut tmp = Line::new();
    human(&mut tmp, v);
    for _ in tmp.as_bytes().len()..width {
        l.str(" ");
    }
    l.bytes(tmp.as_bytes());
}

/// Print the statistics table to `fd`.
pub fn print(fd: i32) {
    let s = snapshot();
    let mut l = Line::new();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    l.str("mmpool statistics (pid ").dec(pid as u64).str(")");
    if !s.detailed {
        l.str(" -- allocation counts need MMPOOL_STATS=1");
    }
    l.str("\n  class   block     allocs      frees       live  peak live  slabs       held\n");
    l.write_to(fd);
    for (c, k) in s.classes.iter().enumerate() {
        if k.allocs == 0 && k.slabs == 0 {
            continue;
        }
        let mut l = Line::new();
        pad_dec(&mut l, c, 7);
        pad_dec(&mut l, k.block_size, 8);
        pad_dec(&mut l, k.allocs, 11);
        pad_dec(&mut l, k.frees, 11);
        pad_dec(&mut l, k.live, 11);
        pad_dec(&mut l, k.peak, 11);
        pad_dec(&mut l, k.slabs, 7);
        pad_human(&mut l, k.bytes_held, 11);
        l.str("\n");
        l.write_to(fd);
    }
    let mut l = Line::new();
    l.str("  large   >32K");
    pad_dec(&mut l, s.large.allocs, 11);
    pad_dec(&mut l, s.large.frees, 11);
    pad_dec(&mut l, s.large.live, 11);
    pad_dec(&mut l, s.large.peak, 11);
    l.str("      -");
    pad_human(&mut l, s.large_bytes, 11);
    l.str("\n  large blocks: ")
        .dec(s.large_maps as u64)
        .str(" maps, ");
    l.dec(s.large_cache_hits as u64).str(" cache hits; ");
    human(&mut l, crate::large::FRESH_BYTES.load(Ordering::Relaxed));
    l.str(" fresh, ");
    human(&mut l, crate::large::RELEASED_BYTES.load(Ordering::Relaxed));
    l.str(" returned to the OS, ");
    human(&mut l, crate::large::cached_bytes());
    l.str(" cached\n");
    l.write_to(fd);
    let mut l = Line::new();
    l.str("  requested: ");
    human(&mut l, s.requested);
    l.str(" live (peak ");
    human(&mut l, s.requested_peak);
    l.str(", ");
    human(&mut l, s.requested_total);
    l.str(" over the run); held: ");
    human(&mut l, s.held);
    if s.detailed && s.held > 0 {
        l.str("; overhead ");
        let over = s.held.saturating_sub(s.requested) as u64 * 100 / s.held as u64;
        l.dec(over).str("% of held");
    }
    l.str("\n  spans: ");
    human(&mut l, s.spans_mapped);
    l.str(" mapped, ");
    human(&mut l, s.spans_cached);
    l.str(" idle and resident\n  rss: ");
    human(&mut l, s.rss);
    l.str(" (peak ");
    human(&mut l, s.rss_peak);
    l.str("); threads: ")
        .dec(s.threads_seen as u64)
        .str(" seen, ")
        .dec(s.threads_live as u64)
        .str(" live; heaps: ")
        .dec(s.heaps_made as u64)
        .str(" made, ")
        .dec(s.heaps_parked as u64)
        .str(" parked, ")
        .dec(s.shared_heaps as u64)
        .str(" per-CPU\n");
    l.write_to(fd);
}

/// `MMPOOL_STATS=1` prints to stderr; any other value is a file path.
pub fn report_at_exit() {
    let v = crate::runtime::env_value(b"MMPOOL_STATS").unwrap_or(b"1");
    if v == b"1" || v == b"stderr" {
        print(2);
        return;
    }
    let mut path = [0u8; 512];
    if v.len() >= path.len() {
        print(2);
        return;
    }
    path[..v.len()].copy_from_slice(v);
    // SAFETY: NUL-terminated path.
    let fd = unsafe {
        libc::open(
            path.as_ptr().cast(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        crate::diag::warn("MMPOOL_STATS: cannot open the file; printing to stderr");
        print(2);
        return;
    }
    print(fd);
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
}

/// glibc's `mallinfo2`, filled from our counters.
pub fn mallinfo2() -> libc::mallinfo2 {
    let s = snapshot();
    let in_use = if s.detailed { s.requested } else { s.held };
    libc::mallinfo2 {
        arena: s.spans_mapped,
        ordblks: 0,
        smblks: 0,
        hblks: s.large.live,
        hblkhd: s.large_bytes,
        usmblks: 0,
        fsmblks: 0,
        uordblks: in_use,
        fordblks: s.spans_mapped.saturating_sub(s.held - s.large_bytes),
        keepcost: s.spans_cached,
    }
}

/// Give free memory back to the OS now (`malloc_trim`). True if any.
pub fn trim() -> bool {
    crate::runtime::reclaim_late_heaps();
    crate::runtime::expire_parked(true);
    let own = crate::tls::heap();
    if crate::heap::is_real(own) {
        // SAFETY: the calling thread's own heap.
        unsafe { crate::heap::flush_medium_cache(own) };
    }
    crate::shared_heap::trim();
    if crate::heap::is_real(own) {
        // SAFETY: the calling thread's own heap.
        unsafe { crate::heap::release_empty(own) };
    }
    let a = crate::span::SPANS.purge_all();
    let b = crate::large::trim();
    a + b > 0
}

/// Live blocks and requested bytes recorded by the hooks (for tests).
pub fn recorded_live() -> (usize, usize) {
    crate::leak::live_totals()
}
