//! Statistics: per size class and for large blocks, bytes requested
//! against bytes held, resident memory, threads; the table printed by
//! `MMPOOL_STATS=1` (stderr) or `MMPOOL_STATS=path`, `mmpool_stats_print`
//! and `malloc_stats`.
//!
//! [`Stats`] is the C API's `mmpool_stats_t` itself (the header is
//! generated from it). Allocation and free counts are kept only in
//! instrumented mode (the hooks feed them); slab, span, large-block and
//! thread counts are kept always, in slow paths.
//!
//! Uses: `core::canary`, `core::config`, `core::large`, `core::lookup`,
//! `core::pagemap`, `core::size_class`, `core::slab`, `core::span`,
//! `heap::lifecycle`, `heap::medium`, `heap::slabs`, `insight::mode`,
//! `os::env`, `os::file`, `os::process`, `util::diag`.

use crate::core::lookup::{span_of, Span};
use crate::core::size_class::{block_size, NUM_CLASSES};
use crate::heap::lifecycle;
use crate::heap::medium;
use crate::heap::slabs::{SLABS_LIVE, SLAB_BYTES};
use crate::util::diag::Line;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Size of the `classes` array of `mmpool_stats_t`.
pub const MMPOOL_MAX_CLASSES: usize = 64;

/// Counters of one size class.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct ClassStats {
    /// Block size in bytes.
    pub block_size: usize,
    /// Allocations (counted with `MMPOOL_STATS=1` only).
    pub allocs: usize,
    /// Frees (with `MMPOOL_STATS=1` only).
    pub frees: usize,
    /// Live blocks (with `MMPOOL_STATS=1` only).
    pub live: usize,
    /// Most live blocks at once (with `MMPOOL_STATS=1` only).
    pub peak_live: usize,
    /// Slabs held by the class.
    pub slabs: usize,
    /// Bytes of those slabs.
    pub bytes_held: usize,
}

/// A snapshot of the pool's counters. Fields marked "with MMPOOL_STATS"
/// are zero unless the program runs with `MMPOOL_STATS` set (counting
/// every allocation costs time; the others are kept always).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// Requested bytes of live blocks (with MMPOOL_STATS).
    pub requested: usize,
    /// Most requested bytes live at once (with MMPOOL_STATS).
    pub requested_peak: usize,
    /// Requested bytes over the whole run (with MMPOOL_STATS).
    pub requested_total: usize,
    /// Bytes held for the program: slabs in use plus large mappings.
    pub held: usize,
    /// Bytes mapped from the OS for slabs.
    pub spans_mapped: usize,
    /// Bytes of idle slab spans still resident (purged after a delay,
    /// or kept by a thread heap for its next slabs).
    pub spans_cached: usize,
    /// Live large blocks.
    pub large_live: usize,
    /// Bytes mapped for live large blocks.
    pub large_bytes: usize,
    /// Large allocations (with MMPOOL_STATS).
    pub large_allocs: usize,
    /// Large frees (with MMPOOL_STATS).
    pub large_frees: usize,
    /// Mappings made for large blocks.
    pub large_maps: usize,
    /// Large allocations served from the cache of freed mappings.
    pub large_cache_hits: usize,
    /// Resident set size now, bytes.
    pub rss: usize,
    /// Peak resident set size, bytes.
    pub rss_peak: usize,
    /// Threads that ever made a heap (allocated a block of up to 1 KiB;
    /// medium and large blocks need none).
    pub threads_seen: usize,
    /// Threads alive with a heap.
    pub threads_live: usize,
    /// True when allocation counts were kept (MMPOOL_STATS set).
    pub detailed: bool,
    /// Valid entries of `classes`.
    pub num_classes: usize,
    /// Per size class, smallest first.
    pub classes: [ClassStats; MMPOOL_MAX_CLASSES],
    /// Heap structs ever made (new threads reuse those of exited ones).
    pub heaps_made: usize,
    /// Heaps of exited threads kept with their current slabs for the
    /// next new thread (at most 8; one parked for over a second is given
    /// up at the next allocator slow path, and trimming gives up all).
    pub heaps_parked: usize,
    /// Per-CPU heaps made for the medium classes (blocks of 1.25-64 KiB),
    /// at most one per CPU.
    pub shared_heaps: usize,
    /// Bytes at the end of every block of up to 1 KiB that the pool keeps
    /// for itself: 0, or 8 in the secure build (the size record its checks
    /// read; medium blocks carry one in both builds). A request of `n`
    /// bytes is served by the smallest class of at least `n + block_record`
    /// bytes (and, in the secure build, of at least 32).
    pub block_record: usize,
    /// True in the secure build (`make secure`, libmmpool-secure.so).
    pub secure: bool,
}

const _: () = assert!(NUM_CLASSES <= MMPOOL_MAX_CLASSES);

/// Counters of one size class (or of large blocks), instrumented mode.
struct Counters {
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
    match span_of(p)? {
        // SAFETY: a live slab header.
        Span::Slab(s) => CLASSES.get(unsafe { (*s).class } as usize),
        Span::Large(_) => Some(&LARGE),
        Span::Freed | Span::Corrupt => None,
    }
}

/// A block of `size` requested bytes was allocated at `p`.
pub(crate) fn on_alloc(p: usize, size: usize) {
    if let Some(c) = counters_of(p) {
        c.alloc();
    }
    REQ_TOTAL.fetch_add(size, Ordering::Relaxed);
    let live = REQ_LIVE.fetch_add(size, Ordering::Relaxed) + size;
    REQ_PEAK.fetch_max(live, Ordering::Relaxed);
}

/// Block `p` (of `size` requested bytes, 0 if unknown) is being freed.
pub(crate) fn on_free(p: usize, size: usize) {
    if let Some(c) = counters_of(p) {
        c.free();
    }
    let _ = REQ_LIVE.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        v.checked_sub(size)
    });
}

/// Read the counters.
pub(crate) fn snapshot() -> Stats {
    let mut classes = [ClassStats::default(); MMPOOL_MAX_CLASSES];
    let mut slab_bytes = 0;
    for (c, out) in classes.iter_mut().enumerate().take(NUM_CLASSES) {
        let k = &CLASSES[c];
        let slabs = SLABS_LIVE[c].load(Ordering::Relaxed);
        let held = SLAB_BYTES[c].load(Ordering::Relaxed);
        slab_bytes += held;
        *out = ClassStats {
            block_size: block_size(c),
            allocs: k.allocs.load(Ordering::Relaxed),
            frees: k.frees.load(Ordering::Relaxed),
            live: k.live.load(Ordering::Relaxed),
            peak_live: k.peak.load(Ordering::Relaxed),
            slabs,
            bytes_held: held,
        };
    }
    let large_bytes = crate::core::large::LIVE_BYTES.load(Ordering::Relaxed);
    let spans = crate::core::span::SPANS.stats();
    let (rss, rss_peak) = crate::os::process::rss();
    Stats {
        requested: REQ_LIVE.load(Ordering::Relaxed),
        requested_peak: REQ_PEAK.load(Ordering::Relaxed),
        requested_total: REQ_TOTAL.load(Ordering::Relaxed),
        held: slab_bytes + large_bytes,
        spans_mapped: spans.mapped,
        spans_cached: spans.dirty + crate::heap::slabs::SPARE_BYTES.load(Ordering::Relaxed),
        large_live: crate::core::large::LIVE_BLOCKS.load(Ordering::Relaxed),
        large_bytes,
        large_allocs: LARGE.allocs.load(Ordering::Relaxed),
        large_frees: LARGE.frees.load(Ordering::Relaxed),
        large_maps: crate::core::large::MAPS.load(Ordering::Relaxed),
        large_cache_hits: crate::core::large::CACHE_HITS.load(Ordering::Relaxed),
        rss,
        rss_peak,
        threads_seen: lifecycle::THREADS_SEEN.load(Ordering::Relaxed),
        threads_live: lifecycle::LIVE_HEAPS.load(Ordering::Relaxed),
        detailed: crate::insight::mode::stats_on(),
        num_classes: NUM_CLASSES,
        classes,
        heaps_made: lifecycle::HEAPS_MADE.load(Ordering::Relaxed),
        heaps_parked: lifecycle::parked_heaps(),
        shared_heaps: medium::made(),
        block_record: if crate::core::config::SECURE {
            crate::core::canary::RECORD
        } else {
            0
        },
        secure: crate::core::config::SECURE,
    }
}

/// Print the statistics table to `fd`.
pub(crate) fn print(fd: i32) {
    let s = snapshot();
    let mut l = Line::new();
    l.str("mmpool statistics (pid ")
        .dec(crate::os::process::pid() as u64)
        .str(")");
    if !s.detailed {
        l.str(" -- allocation counts need MMPOOL_STATS=1");
    }
    l.str("\n  class   block     allocs      frees       live  peak live  slabs       held\n");
    l.write_to(fd);
    let num = |l: &mut Line, v: usize, w: usize| {
        l.right(w, |l| {
            l.dec(v as u64);
        });
    };
    for (c, k) in s.classes[..s.num_classes].iter().enumerate() {
        if k.allocs == 0 && k.slabs == 0 {
            continue;
        }
        let mut l = Line::new();
        num(&mut l, c, 7);
        num(&mut l, k.block_size, 8);
        num(&mut l, k.allocs, 11);
        num(&mut l, k.frees, 11);
        num(&mut l, k.live, 11);
        num(&mut l, k.peak_live, 11);
        num(&mut l, k.slabs, 7);
        l.right(11, |l| {
            l.size(k.bytes_held);
        });
        l.str("\n");
        l.write_to(fd);
    }
    let mut l = Line::new();
    // Above the slab limit.
    const _: () = assert!(crate::core::size_class::SMALL_MAX == 64 * 1024);
    l.str("  large   >64K");
    num(&mut l, s.large_allocs, 11);
    num(&mut l, s.large_frees, 11);
    num(&mut l, s.large_live, 11);
    num(&mut l, LARGE.peak.load(Ordering::Relaxed), 11);
    l.str("      -");
    l.right(11, |l| {
        l.size(s.large_bytes);
    });
    l.str("\n  large blocks: ")
        .dec(s.large_maps as u64)
        .str(" maps, ")
        .dec(s.large_cache_hits as u64)
        .str(" cache hits; ")
        .size(crate::core::large::FRESH_BYTES.load(Ordering::Relaxed))
        .str(" fresh, ")
        .size(crate::core::large::RELEASED_BYTES.load(Ordering::Relaxed))
        .str(" returned to the OS, ")
        .size(crate::core::large::cached_bytes())
        .str(" cached\n");
    l.write_to(fd);
    let mut l = Line::new();
    l.str("  requested: ")
        .size(s.requested)
        .str(" live (peak ")
        .size(s.requested_peak)
        .str(", ")
        .size(s.requested_total)
        .str(" over the run); held: ")
        .size(s.held);
    if s.detailed && s.held > 0 {
        let over = s.held.saturating_sub(s.requested) as u64 * 100 / s.held as u64;
        l.str("; overhead ").dec(over).str("% of held");
    }
    l.str("\n  spans: ")
        .size(s.spans_mapped)
        .str(" mapped, ")
        .size(s.spans_cached)
        .str(" idle and resident\n  rss: ")
        .size(s.rss)
        .str(" (peak ")
        .size(s.rss_peak)
        .str("); threads: ")
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
    if s.secure {
        l.str("  secure build: every block keeps a ")
            .dec(s.block_record as u64)
            .str("-byte size record (a request of n bytes takes the class of n + ")
            .dec(s.block_record as u64)
            .str(", 32 at least)\n");
    }
    l.write_to(fd);
}

/// `MMPOOL_STATS=1` prints to stderr; any other value is a file path.
pub(crate) fn report_at_exit() {
    let v = crate::os::env::value(b"MMPOOL_STATS").unwrap_or(b"1");
    if v == b"1" || v == b"stderr" {
        print(2);
        return;
    }
    match crate::os::file::create(v) {
        Some(fd) => {
            print(fd);
            crate::os::file::close(fd);
        }
        None => {
            crate::util::diag::warn("MMPOOL_STATS: cannot open the file; printing to stderr");
            print(2);
        }
    }
}

/// Where the pool's memory is, counted by walking every span (for
/// glibc's `mallinfo`, `malloc_stats` and `malloc_info`). Exact while no
/// other thread allocates; a close snapshot otherwise.
pub(crate) struct Usage {
    /// Bytes of slab blocks handed out and not freed (block sizes).
    pub(crate) in_use: usize,
    /// Bytes of the spans slabs hold.
    pub(crate) slabs: usize,
    /// Bytes of spans back in the span cache, and how many there are.
    pub(crate) free_spans: usize,
    /// How many spans are in the span cache.
    pub(crate) free_span_count: usize,
    /// Per class: free blocks in its slabs (carved or not), and their
    /// bytes.
    pub(crate) free_blocks: [(usize, usize); NUM_CLASSES],
}

/// The requested bytes of a medium slab's blocks in use, from their
/// records (`core::canary`).
///
/// # Safety
/// `s` is a slab span's header tagged SLAB.
unsafe fn medium_in_use(s: *mut crate::core::slab::Slab) -> usize {
    // SAFETY: contract; every read stays inside the slab's carved part.
    unsafe {
        let bs = core::ptr::read_volatile(&raw const (*s).block_size) as usize;
        let key = core::ptr::read_volatile(&raw const (*s).check_key);
        let first = (*s).first_block();
        let bump = (*s).bump();
        let end = crate::core::size_class::span_base(s as usize)
            + (*s).head.granules as usize * crate::core::size_class::GRANULE;
        if bs == 0 || bump > end {
            return 0;
        }
        (first..bump)
            .step_by(bs)
            .filter_map(|b| crate::core::canary::medium_in_use(key, b, b + bs))
            .sum()
    }
}

/// Walk every span: see [`Usage`].
pub(crate) fn usage() -> Usage {
    let mut u = Usage {
        in_use: 0,
        slabs: 0,
        free_spans: 0,
        free_span_count: 0,
        free_blocks: [(0, 0); NUM_CLASSES],
    };
    crate::core::span::SPANS.for_each_span(|head| {
        // SAFETY: every carved span's header stays mapped; for_each_span
        // hands us only those. The tag and geometry are read as they are.
        unsafe {
            let tag = core::ptr::read_volatile(&raw const (*head).tag);
            let bytes = core::ptr::read_volatile(&raw const (*head).granules) as usize
                * crate::core::size_class::GRANULE;
            match tag {
                crate::core::pagemap::TAG_SLAB => {
                    let s = head.cast::<crate::core::slab::Slab>();
                    let bs = core::ptr::read_volatile(&raw const (*s).block_size) as usize;
                    let cap = core::ptr::read_volatile(&raw const (*s).capacity) as usize;
                    let class = core::ptr::read_volatile(&raw const (*s).class) as usize;
                    let used = crate::core::slab::Slab::used_now(s);
                    u.in_use += if crate::core::lookup::is_medium(s) {
                        medium_in_use(s)
                    } else {
                        used * bs
                    };
                    u.slabs += bytes;
                    if class < NUM_CLASSES {
                        let f = &mut u.free_blocks[class];
                        f.0 += cap - used;
                        f.1 += (cap - used) * bs;
                    }
                }
                crate::core::pagemap::TAG_FREE => {
                    u.free_spans += bytes;
                    u.free_span_count += 1;
                }
                _ => {}
            }
        }
    });
    u.in_use = u.in_use.saturating_sub(lifecycle::freed_not_collected());
    u
}
