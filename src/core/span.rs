//! The span cache: granule-aligned spans for slabs, reused, then purged.
//!
//! Owns the process's slab memory below the heaps. Spans are carved from
//! 4 MiB chunks mapped from the OS (or, when an address-space limit
//! refuses a chunk, from a mapping of one granule) and are never split,
//! merged or unmapped, so the page map entries of a span are written once,
//! when it is carved, and point at its head forever after, and any span
//! header can be read at any time (the statistics walk them all). A
//! span's header (its head) is not at its start but
//! `size_class::span_head` of it, up to `MAX_HEAD_COLOR` bytes in, so the
//! headers of different spans do not share cache sets; the cache hands
//! out and takes back spans by their head. A span given back sits on a *dirty*
//! list (its pages still resident) and is reused first; dirty spans older
//! than [`PURGE_DELAY_MS`], or beyond the trim threshold (16 MiB unless
//! `mallopt(M_TRIM_THRESHOLD)` says otherwise), are purged
//! (`MADV_DONTNEED` on all but the header page) and move to a *clean* list.
//!
//! Invariants, under the lock:
//! `dirty_bytes == sum of sizes on the dirty lists`; every cached span's
//! tag is `TAG_FREE`; a span is on exactly one list; `chunks` lists every
//! mapping spans were carved from, the last one carved up to `chunk_cur`.
//!
//! Uses: `core::config`, `core::large`, `core::pagemap`, `core::size_class`, `os`,
//! `os::clock`, `util::list`, `util::lock`, `util::mapped`.

use crate::core::pagemap::{SpanHead, PAGEMAP, TAG_FREE};
use crate::core::size_class::{
    span_base, span_head, GRANULE, MAX_FALLBACK_GRANULES, MAX_SLAB_GRANULES,
};
use crate::os::clock::now_ms;
use crate::os::{PageSource, PAGE};
use crate::util::lock::Lock;
use crate::util::mapped::MappedVec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Size of the chunks spans are carved from.
pub(crate) const CHUNK: usize = 4 << 20;
/// Dirty spans idle for longer than this are purged.
pub(crate) const PURGE_DELAY_MS: u64 = 500;

/// A cached span's header, written over the span's first bytes.
#[repr(C)]
struct FreeSpan {
    head: SpanHead,
    next: *mut FreeSpan,
    prev: *mut FreeSpan,
    freed_ms: u64,
    /// What the span was last used for (a size class), so that a request
    /// for the same use gets it back: its resident pages are then the
    /// ones that use touches again.
    last_use: u32,
    dirty: bool,
    /// The secure build's guard pages of a slab span are closed
    /// ([`set_guards`]): they stay closed while the span waits dirty, and
    /// open when it is purged.
    guarded: bool,
}

// SAFETY: `next` and `prev` are distinct fields of the cached span's
// header.
unsafe impl crate::util::list::Linked for FreeSpan {
    unsafe fn links(this: *mut Self) -> (*mut *mut Self, *mut *mut Self) {
        // SAFETY: `this` is a live cached span (contract).
        unsafe { (&raw mut (*this).next, &raw mut (*this).prev) }
    }
}

type List = crate::util::list::List<FreeSpan>;
const EMPTY_LIST: List = List::EMPTY;

struct Inner {
    /// Per size in granules: spans with resident pages, newest first.
    dirty: [List; MAX_SLAB_GRANULES + 1],
    /// Per size in granules: purged spans.
    clean: [List; MAX_SLAB_GRANULES + 1],
    dirty_bytes: usize,
    chunk_cur: usize,
    chunk_end: usize,
    last_sweep_ms: u64,
    /// Every chunk: (start, end).
    chunks: MappedVec<(usize, usize)>,
}

// SAFETY: the raw pointers are only followed under the cache's lock.
unsafe impl Send for Inner {}

impl Inner {
    const EMPTY: Inner = Inner {
        dirty: [EMPTY_LIST; MAX_SLAB_GRANULES + 1],
        clean: [EMPTY_LIST; MAX_SLAB_GRANULES + 1],
        dirty_bytes: 0,
        chunk_cur: 0,
        chunk_end: 0,
        last_sweep_ms: 0,
        chunks: MappedVec::EMPTY,
    };
}

/// Counters of a span cache, for statistics.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct SpanStats {
    /// Bytes mapped from the OS for spans.
    pub(crate) mapped: usize,
    /// Bytes cached with resident pages.
    pub(crate) dirty: usize,
}

/// A cache of free spans over a page source.
pub(crate) struct SpanCache<S: PageSource + 'static> {
    inner: Lock<Inner>,
    src: &'static S,
    mapped: AtomicUsize,
    /// The last chunk mapping was refused (an address-space limit): the
    /// spans carved since are mapped one by one, and never unmapped.
    short: AtomicBool,
}

/// The process-wide span cache.
pub(crate) static SPANS: SpanCache<crate::os::Os> = SpanCache::new(&crate::os::OS);

impl<S: PageSource + 'static> SpanCache<S> {
    /// An empty cache drawing from `src`.
    pub(crate) const fn new(src: &'static S) -> Self {
        SpanCache {
            inner: Lock::new(Inner::EMPTY),
            src,
            mapped: AtomicUsize::new(0),
            short: AtomicBool::new(false),
        }
    }

    /// Was the last chunk this cache tried to map refused? Spans are
    /// never unmapped, so while the address space is this short, memory
    /// that can go back to the OS (large blocks) serves what it can: the
    /// secure build's biggest classes, whose quarantined blocks would
    /// each hold a span of their own (`api::secure`).
    pub(crate) fn short_of_space(&self) -> bool {
        self.short.load(Ordering::Relaxed)
    }

    /// A span of `granules` granules (1..=MAX_SLAB_GRANULES), as the
    /// address of its header (`size_class::span_head`: up to
    /// `MAX_HEAD_COLOR` bytes after its start), where its page map entries
    /// point. Contents are unspecified. Among
    /// the most recently freed dirty spans, one last used for `usage` is
    /// preferred. Also says whether the span's guard pages are closed
    /// (the secure build: see [`set_guards`]).
    pub(crate) fn acquire(&self, granules: usize, usage: u32) -> Option<(NonNull<u8>, bool)> {
        debug_assert!((1..=MAX_SLAB_GRANULES).contains(&granules));
        let size = granules * GRANULE;
        let mut g = self.inner.lock();
        let mut fresh = false;
        let mut guarded = false;
        let s = if !g.dirty[granules].first.is_null() {
            let mut s = g.dirty[granules].first;
            let mut probe = s;
            for _ in 0..8 {
                // SAFETY: cached spans on the dirty list; lock held.
                unsafe {
                    if (*probe).last_use == usage {
                        s = probe;
                        break;
                    }
                    probe = (*probe).next;
                }
                if probe.is_null() {
                    break;
                }
            }
            // SAFETY: `s` heads the dirty list; we hold the lock.
            unsafe {
                g.dirty[granules].remove(s);
                guarded = (*s).guarded;
            }
            g.dirty_bytes -= size;
            s.cast::<u8>()
        } else if !g.clean[granules].first.is_null() {
            let s = g.clean[granules].first;
            // SAFETY: as above, for the clean list.
            unsafe {
                g.clean[granules].remove(s);
                guarded = (*s).guarded;
            }
            s.cast::<u8>()
        } else {
            fresh = true;
            self.carve(&mut g, size)?
        };
        drop(g);
        if fresh {
            // Fresh pages for slabs: as many bytes of cached large ranges
            // go back to the OS (`core::large::shed`).
            crate::core::large::shed(size);
        }
        NonNull::new(s).map(|s| (s, guarded))
    }

    fn carve(&self, g: &mut Inner, size: usize) -> Option<*mut u8> {
        if g.chunk_end - g.chunk_cur < size {
            // Give the unusable tail of the old chunk back, map a new one:
            // a whole chunk when the address space allows, else just this
            // span (a tight RLIMIT_AS must not stop small allocations).
            if g.chunk_end > g.chunk_cur {
                // SAFETY: the tail was never handed out.
                unsafe {
                    self.src.unmap(
                        NonNull::new_unchecked(g.chunk_cur as *mut u8),
                        g.chunk_end - g.chunk_cur,
                    )
                };
                let last = g.chunks.len() - 1;
                let (start, _) = g.chunks.get(last);
                g.chunks.set(last, (start, g.chunk_cur));
            }
            g.chunk_cur = 0;
            g.chunk_end = 0;
            let chunk = self.src.map(CHUNK, GRANULE);
            self.short.store(chunk.is_none(), Ordering::Relaxed);
            let (c, len) = match chunk {
                Some(c) => (c, CHUNK),
                // Short of address space: just this span when it is a
                // slab's fallback (`size_class::fallback_granules`); a
                // bigger request fails, and its slab falls back to that.
                None if size <= MAX_FALLBACK_GRANULES * GRANULE => {
                    (self.src.map(size, GRANULE)?, size)
                }
                None => return None,
            };
            let c = c.as_ptr() as usize;
            if !g.chunks.push((c, c + len)) {
                // SAFETY: just mapped, never handed out.
                unsafe { self.src.unmap(NonNull::new_unchecked(c as *mut u8), len) };
                return None;
            }
            self.mapped.fetch_add(len, Ordering::Relaxed);
            g.chunk_cur = c;
            g.chunk_end = c + len;
        }
        let s = g.chunk_cur;
        let head = span_head(s);
        if !PAGEMAP.set(s, size / GRANULE, head as *mut SpanHead, self.src) {
            return None;
        }
        g.chunk_cur += size;
        Some(head as *mut u8)
    }

    /// Give back a span of `granules` granules from [`acquire`](Self::acquire),
    /// last used for `usage`, its guard pages closed if `guarded`.
    ///
    /// # Safety
    /// `span` must come from `acquire(granules, _)` of this cache (its
    /// header's address) and no longer be used by anybody.
    pub(crate) unsafe fn release(
        &self,
        span: NonNull<u8>,
        granules: usize,
        usage: u32,
        guarded: bool,
    ) {
        let size = granules * GRANULE;
        let s = span.as_ptr().cast::<FreeSpan>();
        let now = now_ms();
        // SAFETY: the span is ours now (contract); its first bytes become
        // the cache's header. The tag turns later frees into errors.
        unsafe {
            (*s).head.tag = TAG_FREE;
            (*s).head.granules = granules as u32;
            (*s).head.owner.store(0, Ordering::Relaxed);
            (*s).freed_ms = now;
            (*s).last_use = usage;
            (*s).dirty = true;
            (*s).guarded = guarded;
        }
        let mut g = self.inner.lock();
        // SAFETY: we hold the lock; `s` is on no list.
        unsafe { g.dirty[granules].push_front(s) };
        g.dirty_bytes += size;
        if g.dirty_bytes > dirty_max() || now.saturating_sub(g.last_sweep_ms) >= PURGE_DELAY_MS / 4
        {
            self.sweep(&mut g, now, false);
        }
    }

    /// Purge dirty spans that are too old, or the oldest ones while over
    /// the trim threshold; `all` purges every dirty span.
    fn sweep(&self, g: &mut Inner, now: u64, all: bool) {
        g.last_sweep_ms = now;
        for k in 1..=MAX_SLAB_GRANULES {
            loop {
                let s = g.dirty[k].last;
                if s.is_null() {
                    break;
                }
                // SAFETY: `s` is a cached span on the dirty list; lock held.
                let old = unsafe { now.saturating_sub((*s).freed_ms) } >= PURGE_DELAY_MS;
                if !(all || old || g.dirty_bytes > dirty_max() / 2) {
                    break;
                }
                self.purge_last(g, k);
            }
        }
    }

    /// Purge the last (oldest) span of the dirty list of `k`-granule spans,
    /// which must not be empty.
    fn purge_last(&self, g: &mut Inner, k: usize) {
        let s = g.dirty[k].last;
        let size = k * GRANULE;
        // SAFETY: `s` is a cached span on the dirty list (contract); lock
        // held; the header page stays resident so the span keeps its list
        // links and tag.
        unsafe {
            g.dirty[k].remove(s);
            self.src.purge(
                NonNull::new_unchecked((span_base(s as usize) + PAGE) as *mut u8),
                size - PAGE,
            );
            (*s).dirty = false;
            // Its guard pages open (a closed page splits the mapping, and
            // the regions of every span the program ever used would count
            // against `vm.max_map_count` for good); they close again
            // when a slab takes the span.
            if (*s).guarded {
                (*s).guarded = !set_guards(s as usize, k, false);
            }
            g.clean[k].push_front(s);
        }
        g.dirty_bytes -= size;
    }

    /// Purge at least `bytes` of idle spans, oldest first: fresh pages are
    /// being faulted in for a large block, so the program's demand moved
    /// from small blocks to large ones, and keeping both resident would
    /// stack their peaks (the counterpart of `core::large::shed`).
    pub(crate) fn shed(&self, bytes: usize) {
        let mut g = self.inner.lock();
        let mut left = bytes;
        while left > 0 && g.dirty_bytes > 0 {
            let mut oldest: Option<(usize, u64)> = None;
            for k in 1..=MAX_SLAB_GRANULES {
                let s = g.dirty[k].last;
                if s.is_null() {
                    continue;
                }
                // SAFETY: a cached span on a dirty list; lock held.
                let t = unsafe { (*s).freed_ms };
                if oldest.is_none_or(|(_, o)| t < o) {
                    oldest = Some((k, t));
                }
            }
            let Some((k, _)) = oldest else {
                break;
            };
            self.purge_last(&mut g, k);
            left = left.saturating_sub(k * GRANULE);
        }
    }

    /// Purge every dirty span now (`malloc_trim`). Returns the bytes purged.
    pub(crate) fn purge_all(&self) -> usize {
        let mut g = self.inner.lock();
        let before = g.dirty_bytes;
        self.sweep(&mut g, now_ms(), true);
        before - g.dirty_bytes
    }

    /// Purge what has aged, if the last sweep is long enough ago.
    pub(crate) fn tick(&self) {
        if let Some(mut g) = self.inner.try_lock() {
            // (The clock only when there is something to purge: a thread
            // in a malloc/free loop runs this every few hundred frees.)
            if g.dirty_bytes > 0 {
                let now = now_ms();
                if now.saturating_sub(g.last_sweep_ms) >= PURGE_DELAY_MS / 4 {
                    self.sweep(&mut g, now, false);
                }
            }
        }
    }

    /// Current counters.
    pub(crate) fn stats(&self) -> SpanStats {
        SpanStats {
            mapped: self.mapped.load(Ordering::Relaxed),
            dirty: self.inner.lock().dirty_bytes,
        }
    }

    /// Call `f` with the header of every span ever carved, under the
    /// cache's lock (no span is carved meanwhile). Headers of spans in use
    /// by other threads are read as they are: the caller reads them with
    /// care (they may change under it), never writes them.
    pub(crate) fn for_each_span(&self, mut f: impl FnMut(*mut SpanHead)) {
        let g = self.inner.lock();
        for i in 0..g.chunks.len() {
            let (start, mut end) = g.chunks.get(i);
            if i + 1 == g.chunks.len() {
                end = g.chunk_cur;
            }
            let mut a = start;
            while a < end {
                let head = span_head(a) as *mut SpanHead;
                f(head);
                // SAFETY: every carved span's memory stays mapped; a span
                // being set up may still read 0 granules: step one.
                let n = unsafe { core::ptr::read_volatile(&raw const (*head).granules) };
                a += (n as usize).clamp(1, MAX_SLAB_GRANULES) * GRANULE;
            }
        }
    }

    /// In a fork child: if the lock was held by a thread that does not
    /// exist here, its lists may be half updated: start afresh (the cached
    /// spans are lost to this process, the carved ones stay valid).
    pub(crate) fn after_fork_child(&self) {
        if self.inner.held_by_other_thread() {
            // SAFETY: the child's only thread; no guard exists.
            unsafe { self.inner.reset_in_child(|_| Inner::EMPTY) };
        }
    }
}

impl<S: PageSource + 'static> SpanCache<S> {
    /// Hold the cache's lock (tests of the fork child's rebuild).
    #[cfg(test)]
    pub(crate) fn hold_for_test(&self) -> crate::util::lock::LockGuard<'_, impl Sized> {
        self.inner.lock()
    }
}

/// Close (`close`) or open the secure build's guard pages of the slab
/// span headed at `head`, of `granules` granules: the page after its
/// header's and its last page (`SLAB_HEADER`, `SLAB_TRAILER`). A slab
/// closes them when it takes a span whose guards are open; they stay
/// closed while the span waits dirty in the cache or as a thread's spare
/// (spans never change size, so the next slab needs them where they
/// are), and open when it is purged. False when the kernel refused (out
/// of mappings): then both are left open (a slab works unguarded, and
/// closes them on its span's next use).
pub(crate) fn set_guards(head: usize, granules: usize, close: bool) -> bool {
    use crate::core::size_class::{SLAB_HEADER, SLAB_TRAILER};
    use crate::os::OS;
    let span = span_base(head);
    let end = span + granules * GRANULE;
    // SAFETY: the caller owns the span (a slab's, or a cached one under
    // the lock), and no block lies in its guard pages.
    unsafe {
        let ok = OS.protect(span + PAGE, SLAB_HEADER.saturating_sub(PAGE), !close)
            && OS.protect(end - SLAB_TRAILER, SLAB_TRAILER, !close);
        if !ok && close {
            OS.protect(span + PAGE, SLAB_HEADER.saturating_sub(PAGE), true);
            OS.protect(end - SLAB_TRAILER, SLAB_TRAILER, true);
        }
        ok
    }
}

/// Resident bytes the dirty lists may hold before the oldest are purged:
/// the trim threshold (`mallopt(M_TRIM_THRESHOLD)`, 16 MiB by default).
fn dirty_max() -> usize {
    crate::core::config::trim_threshold()
}

const _: () = assert!(core::mem::size_of::<FreeSpan>() <= PAGE);
const _: () = assert!(CHUNK % GRANULE == 0 && CHUNK >= MAX_SLAB_GRANULES * GRANULE);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::OS;

    static CACHE: SpanCache<crate::os::Os> = SpanCache::new(&OS);

    #[test]
    fn spans_are_granule_aligned_distinct_and_mapped() {
        let a = CACHE.acquire(1, 0).unwrap().0;
        let b = CACHE.acquire(4, 0).unwrap().0;
        let c = CACHE.acquire(8, 0).unwrap().0;
        let mut colors = 0u32;
        for (s, g) in [(a, 1), (b, 4), (c, 8)] {
            let h = s.as_ptr() as usize;
            let p = span_base(h);
            assert_eq!(h, span_head(p), "acquire gives the header's address");
            assert!(h - p < crate::core::size_class::MAX_HEAD_COLOR + 1);
            colors |= 1 << ((h - p) / crate::core::size_class::SLAB_HEADER);
            assert_eq!(PAGEMAP.lookup(p), h as *mut SpanHead);
            assert_eq!(PAGEMAP.lookup(p + g * GRANULE - 1), h as *mut SpanHead);
            // SAFETY: the span is ours and `g` granules long.
            unsafe { core::ptr::write_bytes(p as *mut u8, 1, g * GRANULE) };
        }
        if crate::core::size_class::HEAD_COLORS > 1 {
            // Spans side by side in a chunk (1, 4 and 8 granules on): their
            // headers do not all sit at the same offset.
            assert!(colors.count_ones() >= 2, "header offsets {colors:#b}");
        }
        // SAFETY: spans from acquire, unused from here on.
        unsafe {
            CACHE.release(a, 1, 0, false);
            CACHE.release(b, 4, 0, false);
            CACHE.release(c, 8, 0, false);
        }
    }

    #[test]
    fn released_spans_are_reused_then_purged() {
        let a = CACHE.acquire(2, 0).unwrap().0;
        // SAFETY: from acquire, unused afterwards.
        unsafe { CACHE.release(a, 2, 0, false) };
        // SAFETY: the header of a cached span is readable.
        assert_eq!(unsafe { (*a.as_ptr().cast::<SpanHead>()).tag }, TAG_FREE);
        let b = CACHE.acquire(2, 0).unwrap().0;
        assert_eq!(a, b, "the most recently freed span comes back first");
        // SAFETY: ours; fill, release, purge, check the pages are dropped.
        unsafe {
            core::ptr::write_bytes(span_base(b.as_ptr() as usize) as *mut u8, 0x5a, 2 * GRANULE);
            CACHE.release(b, 2, 0, false);
        }
        assert!(CACHE.purge_all() >= 2 * GRANULE);
        let probe = (span_base(b.as_ptr() as usize) + PAGE + 100) as *const u8;
        // SAFETY: a byte of the cached span, still mapped; purged pages
        // read as zero (OS source).
        assert_eq!(unsafe { *probe }, 0);
    }
}
