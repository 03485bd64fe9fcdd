//! Large blocks: one mapping per allocation above `SMALL_MAX`.
//!
//! Owns [`LargeBlock`] headers and the bounded cache of recently freed
//! mappings. A large block's mapping starts with its header (tag `LARGE`)
//! and is a whole number of granules, granule-aligned, so it shares no
//! granule with anything else; the page map entries of all its granules
//! point at the header, so any address inside the block finds it.
//!
//! Freed mappings go back to the OS (the seed's rule) after at most
//! [`CACHE_DELAY_MS`] in a cache of *resident ranges*: freed blocks are
//! kept mapped, adjacent ones merge, a request takes the best-fitting
//! range (splitting off the rest) or grows the largest with `mremap`, so a
//! program that cycles through large blocks of varying sizes reuses pages
//! it already touched instead of faulting fresh ones in every time. A
//! cached range's head is inaccessible (`PROT_NONE`: its pages stay
//! resident; the secure build closes ranges of up to 128 KiB whole), so a
//! write or read after free there faults as it does after glibc's
//! `munmap`, and its page map entries point at one static `FREE` header,
//! so a double free is reported without touching it. The
//! cache holds at most the peak bytes of live large blocks, clamped to
//! [`CACHE_MIN_BYTES`]..[`CACHE_MAX_BYTES`] (of which the tails cut off
//! by shrinking reallocs at most a quarter, at least [`TAIL_MIN_BYTES`]), no block above
//! [`CACHE_MAX_BLOCK`] (those are unmapped at once), and nothing idle for longer
//! than the delay (checked whenever large blocks are allocated or freed,
//! and every 64 slow paths of small allocations). `realloc` moves pages with `mremap` instead of
//! copying.
//!
//! Uses: `core::canary`, `core::config`, `core::pagemap`,
//! `core::size_class`, `os`, `os::clock`, `util::diag`, `util::lock`.

use crate::core::pagemap::{SpanHead, PAGEMAP, TAG_FREE, TAG_LARGE};
use crate::core::size_class::{GRANULE, GRANULE_SHIFT, MIN_ALIGN};
use crate::os::clock::now_ms;
use crate::os::{align_up, PageSource, OS, PAGE};
use crate::util::lock::Lock;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Bytes before the user pointer of an ordinarily aligned large block.
pub(crate) const LARGE_HEADER: usize = 64;
/// Ranges the cache tracks at most.
const CACHE_RANGES: usize = 256;
/// The cache may always hold this many bytes; beyond, as many as the live
/// large blocks hold.
pub(crate) const CACHE_MIN_BYTES: usize = 16 << 20;
/// Realloc tails the cache may always hold (see `tail_budget`).
pub(crate) const TAIL_MIN_BYTES: usize = 4 << 20;
/// The cache never holds more than this, however large the peak was.
pub(crate) const CACHE_MAX_BYTES: usize = 256 << 20;
/// Blocks larger than this go straight back to the OS when freed (like
/// glibc's mmapped chunks): a program that frees huge buffers gets its
/// memory back at once.
pub(crate) const CACHE_MAX_BLOCK: usize = 64 << 20;
/// A cached range idle for longer than this is unmapped.
pub(crate) const CACHE_DELAY_MS: u64 = 1000;

/// The header at the head of a large block's mapping.
#[repr(C)]
pub(crate) struct LargeBlock {
    /// Tag `LARGE` (`FREE` while cached), length in granules, owner 0.
    pub(crate) head: SpanHead,
    /// Bytes mapped.
    pub(crate) map_size: usize,
    /// The pointer handed to the user.
    pub(crate) user: usize,
    /// Counted as an "mmapped" block in glibc's sense (requested at or
    /// above the mmap threshold), not as heap memory.
    pub(crate) mmapped: bool,
    /// The size the program asked for (the block's canaries lie around
    /// `[user, user + requested)`: see `core::canary`).
    pub(crate) requested: usize,
    /// What allocated it (`core::canary::KIND_*`; the secure build's
    /// `new`/`delete` check).
    pub(crate) kind: u8,
}

const _: () = assert!(core::mem::size_of::<LargeBlock>() <= LARGE_HEADER);
const _: () = assert!(LARGE_HEADER % MIN_ALIGN == 0);

/// A range of mapped, resident memory kept for reuse: inaccessible while
/// cached, every granule's page map entry pointing at [`CACHED_RANGE`], so
/// a stale pointer into it is caught.
#[derive(Clone, Copy)]
struct Range {
    base: usize,
    size: usize,
    freed_ms: u64,
    /// Cut off a shrinking block by `realloc` (not a whole freed block).
    tail: bool,
    /// Bytes at its start that are inaccessible (0: none; [`CLOSED`]: its
    /// head; in the secure build often all of it, see [`retire_range`]).
    closed: usize,
}

struct Cache {
    ranges: [Range; CACHE_RANGES],
    /// Each range's start and end, side by side for [`Cache::adjacent`]
    /// (kept in step with `ranges` by [`Cache::sync`]).
    starts: [usize; CACHE_RANGES],
    ends: [usize; CACHE_RANGES],
    len: usize,
    /// At most the `freed_ms` of every range (`u64::MAX` when none was
    /// put since the last scan found none): [`Cache::expire`] skips its
    /// scan while no range can be past the delay.
    oldest_ms: u64,
    bytes: usize,
    /// Bytes of the ranges that are realloc tails.
    tail_bytes: usize,
    /// The secure build's quarantine: freed blocks' ranges (base, size,
    /// closed bytes, freed at ms) that are not reused yet; one leaves, at random, into
    /// `ranges` when a new one comes and the slots or [`HELD_BYTES`] are
    /// full.
    held: [(usize, usize, usize, u64); HELD],
    held_n: usize,
    held_bytes: usize,
    rng: u64,
}

/// Freed ranges the secure build's quarantine holds at most.
const HELD: usize = 4;
/// Bytes the secure build's quarantine holds at most (a bigger block
/// goes straight to the cache).
const HELD_BYTES: usize = 64 << 20;

static CACHE: Lock<Cache> = Lock::new(Cache::EMPTY);

/// Ranges to unmap once the cache lock is dropped.
struct Evicted {
    items: [(usize, usize); 8],
    n: usize,
}

impl Evicted {
    const fn new() -> Self {
        Evicted {
            items: [(0, 0); 8],
            n: 0,
        }
    }
    fn full(&self) -> bool {
        self.n == self.items.len()
    }
    fn push(&mut self, base: usize, size: usize) {
        self.items[self.n] = (base, size);
        self.n += 1;
    }
    fn unmap_all(&mut self) {
        for &(base, size) in &self.items[..self.n] {
            RELEASED_BYTES.fetch_add(size, Ordering::Relaxed);
            unmap_block(base, size);
        }
        self.n = 0;
    }
}

/// The header every granule of a cached range points at (the range's own
/// first page is inaccessible): `TAG_FREE`, so a stale pointer into the
/// range is reported without touching it. Never written.
static CACHED_RANGE: SpanHead = SpanHead {
    tag: TAG_FREE,
    granules: 0,
    owner: AtomicUsize::new(0),
};

fn cached_head() -> *mut SpanHead {
    (&raw const CACHED_RANGE).cast_mut()
}

/// Bytes at the head of a cached range kept inaccessible: the first page,
/// where a use after free usually lands (the start of the block, its
/// header fields and links). A whole range would cost a page-table walk
/// over every page at each free and reuse (5x the time on the large-block
/// benchmark; the secure build pays it for ranges of up to
/// [`CLOSE_WHOLE_MAX`]).
const CLOSED: usize = PAGE;

/// Freed blocks closed per second at most (the default build): closing
/// and reopening a head costs two `mprotect` calls, each a TLB shootdown
/// that interrupts every CPU running one of the program's threads (about
/// 5 us on a quiet machine, far more on a loaded host where a CPU of the
/// program's is descheduled). Fewer closes a second made the arena-pool
/// and large benches faster with the same heap-bug cases stopped (the
/// README's "Hardening" has the counts). A program that frees a few
/// large blocks has every one closed; one cycling through large blocks
/// faster has a sample closed, like GWP-ASan's sampled guard pages.
const CLOSES_PER_SECOND: usize = 16;
static CLOSE_LIMIT: RateLimit = RateLimit::new(CLOSES_PER_SECOND);

/// At most `per_second` grants per wall-clock second (approximately: a
/// thread that sees a new second starts its count over).
struct RateLimit {
    per_second: usize,
    second: AtomicUsize,
    count: AtomicUsize,
}

impl RateLimit {
    const fn new(per_second: usize) -> Self {
        RateLimit {
            per_second,
            second: AtomicUsize::new(0),
            count: AtomicUsize::new(0),
        }
    }

    fn allow(&self, now_ms: u64) -> bool {
        let second = (now_ms / 1000) as usize;
        if self.second.load(Ordering::Relaxed) != second {
            self.second.store(second, Ordering::Relaxed);
            self.count.store(0, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed) < self.per_second
    }
}

/// Whether a block freed at `now` (ms) may be closed.
fn may_close(now: u64) -> bool {
    crate::core::config::SECURE || CLOSE_LIMIT.allow(now)
}

/// Make `[base, base + len)` inaccessible, or accessible again. False:
/// the kernel refused (out of mappings).
fn protect(base: usize, len: usize, access: bool) -> bool {
    #[cfg(test)]
    if access && tests::REFUSE_OPEN.with(|r| r.get()) {
        return false;
    }
    // SAFETY: callers pass memory of cached ranges of ours (or of ones
    // just taken out of the cache, or of a block's own slack), which
    // nobody else uses.
    unsafe { OS.protect(base, len, access) }
}

/// Ranges up to this size the secure build closes whole when their block
/// is freed (one `mprotect` that also covers the block's guard page;
/// reusing the range opens what the next block needs and leaves its
/// guard page closed: two calls per free and reuse instead of four).
/// Bigger ones close their head only: a whole range costs a page-table
/// walk over all its pages at each free and reuse, and beyond 33 pages
/// the kernel flushes every CPU's whole TLB instead of single pages (at
/// 1 MiB the stress test's 8 threads took 15-20% longer than with four
/// one-page calls; at 128 KiB, 32 pages, 10% less).
const CLOSE_WHOLE_MAX: usize = 128 << 10;

/// Does a freed range of `size` bytes close whole (else its head)?
fn closes_whole(size: usize) -> bool {
    crate::core::config::SECURE && size <= CLOSE_WHOLE_MAX
}

/// A dead range enters the cache: its granules point at [`CACHED_RANGE`]
/// and, when `close`, its head (the secure build: all of a range of up
/// to [`CLOSE_WHOLE_MAX`]) becomes inaccessible, so a write or read
/// after free there faults instead of landing in memory that is about to
/// be handed out again. Returns how many of its first bytes are closed
/// (the kernel may refuse, out of mappings: the range then stays
/// accessible).
fn retire_range(base: usize, size: usize, close: bool) -> usize {
    map_granules(base, size, cached_head());
    let len = if closes_whole(size) {
        size
    } else {
        size.min(CLOSED)
    };
    if close && protect(base, len, false) {
        len
    } else {
        0
    }
}

/// A cached range of `size` bytes whose first `closed` bytes are closed,
/// taken for a block whose guard page is `guard`: open what was closed,
/// or, when the guard page lies among it (the secure build's ranges
/// closed whole), only what lies before the guard, which stays closed
/// with what follows it. Whether the guard page is closed already; `None`
/// when the kernel refused (the range was unmapped: the caller maps fresh
/// memory, with a guard page of its own).
fn reopen_for(base: usize, size: usize, closed: usize, guard: Option<usize>) -> Option<bool> {
    let (open, guard_kept) = match guard {
        Some(g) if g + PAGE <= base + closed => (g - base, true),
        _ => (closed, false),
    };
    reopen(base, size, open).then_some(guard_kept)
}

/// Memory taken out of the cache becomes accessible again (its first
/// `closed` bytes were closed). False: the kernel refused; the memory is
/// given back to the OS instead.
fn reopen(base: usize, size: usize, closed: usize) -> bool {
    if closed == 0 || protect(base, closed, true) {
        return true;
    }
    RELEASED_BYTES.fetch_add(size, Ordering::Relaxed);
    unmap_block(base, size);
    false
}

impl Cache {
    const EMPTY: Cache = Cache {
        ranges: [Range {
            base: 0,
            size: 0,
            freed_ms: 0,
            tail: false,
            closed: 0,
        }; CACHE_RANGES],
        held: [(0, 0, 0, 0); HELD],
        held_n: 0,
        held_bytes: 0,
        rng: 0,
        starts: [0; CACHE_RANGES],
        ends: [0; CACHE_RANGES],
        len: 0,
        oldest_ms: u64::MAX,
        bytes: 0,
        tail_bytes: 0,
    };

    /// Copy range `i`'s bounds into `starts` and `ends`.
    fn sync(&mut self, i: usize) {
        self.starts[i] = self.ranges[i].base;
        self.ends[i] = self.ranges[i].base + self.ranges[i].size;
    }

    /// The first range from `from` on that ends at `base` or starts at
    /// `end` (eight compared at a time, one branch for the eight).
    fn adjacent(&self, from: usize, base: usize, end: usize) -> Option<usize> {
        let (starts, ends) = (&self.starts[..self.len], &self.ends[..self.len]);
        let mut i = from;
        while i + 8 <= self.len {
            let mut hit = false;
            for k in i..i + 8 {
                hit |= (ends[k] == base) | (starts[k] == end);
            }
            if hit {
                break;
            }
            i += 8;
        }
        (i..self.len).find(|&k| ends[k] == base || starts[k] == end)
    }

    fn remove(&mut self, i: usize) -> Range {
        let r = self.ranges[i];
        self.len -= 1;
        self.ranges[i] = self.ranges[self.len];
        self.sync(i);
        self.bytes -= r.size;
        if r.tail {
            self.tail_bytes -= r.size;
        }
        r
    }

    /// Quarantine a freed block's range (the secure build): it waits in
    /// `held`; when the slots or bytes are full, a held range picked at
    /// random goes into the cache (a range too big for the quarantine goes
    /// there at once).
    fn hold(&mut self, base: usize, size: usize, closed: usize, now: u64, ev: &mut Evicted) {
        if size > HELD_BYTES {
            return self.put(base, size, false, closed, now, ev);
        }
        while self.held_n > 0 && (self.held_n == HELD || self.held_bytes + size > HELD_BYTES) {
            if self.rng == 0 {
                self.rng = (crate::core::config::free_key() ^ base) as u64 | 1;
            }
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let i = (self.rng >> 7) as usize % self.held_n;
            let (b, n, c, _) = self.unhold(i);
            self.put(b, n, false, c, now, ev);
        }
        self.held[self.held_n] = (base, size, closed, now);
        self.held_n += 1;
        self.held_bytes += size;
    }

    fn unhold(&mut self, i: usize) -> (usize, usize, usize, u64) {
        let h = self.held[i];
        self.held_n -= 1;
        self.held[i] = self.held[self.held_n];
        self.held_bytes -= h.1;
        h
    }

    /// Cut `size` bytes off the end of range `i` (its closed bytes are
    /// at its start: as many stay as the range still holds).
    fn shrink(&mut self, i: usize, size: usize) {
        self.bytes -= size;
        if self.ranges[i].tail {
            self.tail_bytes -= size;
        }
        let r = &mut self.ranges[i];
        r.size -= size;
        r.closed = r.closed.min(r.size);
        self.sync(i);
    }

    /// Take `size` bytes (at most its size) of range `i`: all of it, or
    /// its back (the rest stays cached). Returns the memory's start and
    /// how many of its first bytes are closed ([`reopen`]: none when the
    /// closed bytes are only the range's head).
    fn take(&mut self, i: usize, size: usize) -> (usize, usize) {
        let r = self.ranges[i];
        if r.size == size {
            self.remove(i);
            return (r.base, r.closed);
        }
        self.shrink(i, size);
        let start = r.base + r.size - size;
        (start, (r.base + r.closed).saturating_sub(start))
    }

    /// Take the first `size` bytes of range `i` (shorter than it); the
    /// rest stays cached, as much of it closed as was past the front.
    /// Returns how many bytes of the front are closed.
    fn take_front(&mut self, i: usize, size: usize) -> usize {
        let closed = self.ranges[i].closed;
        self.shrink(i, size);
        self.ranges[i].base += size;
        self.ranges[i].closed = closed.saturating_sub(size).min(self.ranges[i].size);
        self.sync(i);
        closed.min(size)
    }

    /// Remove the oldest range (the oldest tail if `tails_only`) into `ev`.
    fn evict_oldest(&mut self, tails_only: bool, ev: &mut Evicted) {
        let mut oldest: Option<usize> = None;
        for i in 0..self.len {
            let r = &self.ranges[i];
            if (!tails_only || r.tail)
                && oldest.is_none_or(|o| r.freed_ms < self.ranges[o].freed_ms)
            {
                oldest = Some(i);
            }
        }
        if let Some(o) = oldest {
            let r = self.remove(o);
            ev.push(r.base, r.size);
        }
    }

    /// Remove ranges idle past the delay, or beyond the byte budget, into
    /// `ev` (as many as it holds).
    fn expire(&mut self, now: u64, budget: usize, ev: &mut Evicted) {
        // Quarantined ranges idle past the delay go back to the OS too.
        let mut i = 0;
        while i < self.held_n && !ev.full() {
            if now.saturating_sub(self.held[i].3) >= CACHE_DELAY_MS {
                let (b, n, _, _) = self.unhold(i);
                ev.push(b, n);
            } else {
                i += 1;
            }
        }
        let tail_budget = tail_budget();
        // Nothing idle long enough, nothing over a budget: no scan (every
        // large free and allocation gets here; with many ranges cached the
        // scan was a third of a large free's instructions).
        if now.saturating_sub(self.oldest_ms) < CACHE_DELAY_MS
            && self.bytes <= budget
            && self.tail_bytes <= tail_budget
        {
            return;
        }
        let mut i = 0;
        let mut oldest = u64::MAX;
        while i < self.len && !ev.full() {
            if now.saturating_sub(self.ranges[i].freed_ms) >= CACHE_DELAY_MS {
                let r = self.remove(i);
                ev.push(r.base, r.size);
            } else {
                oldest = oldest.min(self.ranges[i].freed_ms);
                i += 1;
            }
        }
        // (Ranges not reached when `ev` filled keep the bound where it was.)
        self.oldest_ms = if i < self.len { self.oldest_ms } else { oldest };
        while self.bytes > budget && self.len > 0 && !ev.full() {
            self.evict_oldest(false, ev);
        }
        while self.tail_bytes > tail_budget && !ev.full() {
            self.evict_oldest(true, ev);
        }
    }

    /// Take `size` bytes of cached memory starting exactly at `addr` (the
    /// rest of that range stays cached). `None` if no range starts there
    /// or it is too short; else how many of its bytes are closed.
    fn take_at(&mut self, addr: usize, size: usize) -> Option<usize> {
        for i in 0..self.len {
            let r = self.ranges[i];
            if r.base == addr && r.size >= size {
                if r.size > size {
                    return Some(self.take_front(i, size));
                }
                return Some(self.remove(i).closed);
            }
        }
        None
    }

    /// Add a dead range (`retire_range` first), merging with adjacent
    /// ranges.
    fn put(
        &mut self,
        base: usize,
        size: usize,
        tail: bool,
        closed: usize,
        now: u64,
        ev: &mut Evicted,
    ) {
        let (mut base, mut size, mut tail, mut closed) = (base, size, tail, closed);
        // Merge with a range ending where this one starts, and with one
        // starting where it ends.
        let mut i = 0;
        while let Some(j) = self.adjacent(i, base, base + size) {
            i = j;
            let r = self.ranges[i];
            let ((first_size, first_closed), (second, second_closed)) = if r.base < base {
                ((r.size, r.closed), (base, closed))
            } else {
                ((size, closed), (r.base, r.closed))
            };
            // A range's closed bytes are at its start: the second
            // one's stay closed when the first is closed all through
            // (they continue its closed bytes), else a closed head
            // opens (the middle of the merged range, where blocks are
            // carved); a second range closed beyond its head (the
            // secure build's whole ranges) stays apart instead:
            // opening it would give up its protection, and cost an
            // mprotect of up to CLOSE_WHOLE_MAX under the lock.
            closed = if first_closed == first_size {
                first_size + second_closed
            } else if second_closed == 0
                || (second_closed <= CLOSED && protect(second, second_closed, true))
            {
                first_closed
            } else {
                i += 1;
                continue;
            };
            // (`remove` moved the last range to `i`: check it next.
            // One pass finds both neighbours: merging with one moves
            // neither end the other one touches.)
            self.remove(i);
            size += r.size;
            base = base.min(r.base);
            tail &= r.tail;
        }
        if self.len == CACHE_RANGES {
            // Full: the smallest range is the least useful one.
            let mut smallest = 0;
            for i in 1..self.len {
                if self.ranges[i].size < self.ranges[smallest].size {
                    smallest = i;
                }
            }
            let r = self.remove(smallest);
            ev.push(r.base, r.size);
        }
        self.ranges[self.len] = Range {
            base,
            size,
            freed_ms: now,
            tail,
            closed,
        };
        self.sync(self.len);
        self.oldest_ms = self.oldest_ms.min(now);
        self.len += 1;
        self.bytes += size;
        if tail {
            self.tail_bytes += size;
        }
    }
}

/// Live large blocks and their mapped bytes, cache hits, maps.
pub(crate) static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);
/// Bytes mapped for live large blocks.
pub(crate) static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
/// The most `LIVE_BYTES` has been.
pub(crate) static PEAK_LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
/// The live large blocks counted as mmapped (see [`LargeBlock::mmapped`]),
/// their mapped bytes, and the most of each there ever were.
pub(crate) static MMAP_BLOCKS: AtomicUsize = AtomicUsize::new(0);
/// Bytes of [`MMAP_BLOCKS`].
pub(crate) static MMAP_BYTES: AtomicUsize = AtomicUsize::new(0);
/// The most [`MMAP_BLOCKS`] has been.
pub(crate) static PEAK_MMAP_BLOCKS: AtomicUsize = AtomicUsize::new(0);
/// The most [`MMAP_BYTES`] has been.
pub(crate) static PEAK_MMAP_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Requested bytes of the live large blocks not counted as mmapped (heap
/// memory in glibc's sense).
pub(crate) static HEAP_REQUESTED: AtomicUsize = AtomicUsize::new(0);

/// Count `blocks` more (or fewer) live large blocks of kind `mmapped`
/// and `bytes` more (or fewer) mapped bytes.
fn account(mmapped: bool, blocks: isize, bytes: isize) {
    let add = |c: &AtomicUsize, v: isize| {
        if v >= 0 {
            c.fetch_add(v as usize, Ordering::Relaxed) + v as usize
        } else {
            c.fetch_sub(v.unsigned_abs(), Ordering::Relaxed) - v.unsigned_abs()
        }
    };
    add(&LIVE_BLOCKS, blocks);
    PEAK_LIVE_BYTES.fetch_max(add(&LIVE_BYTES, bytes), Ordering::Relaxed);
    if mmapped {
        PEAK_MMAP_BLOCKS.fetch_max(add(&MMAP_BLOCKS, blocks), Ordering::Relaxed);
        PEAK_MMAP_BYTES.fetch_max(add(&MMAP_BYTES, bytes), Ordering::Relaxed);
    }
}
/// Mappings made for large blocks.
pub(crate) static MAPS: AtomicUsize = AtomicUsize::new(0);
/// Large allocations served from the cache.
pub(crate) static CACHE_HITS: AtomicUsize = AtomicUsize::new(0);
/// Bytes of large blocks given fresh (not reused) memory.
pub(crate) static FRESH_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Bytes of cached ranges given back to the OS.
pub(crate) static RELEASED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Where the user pointer sits in the mapping. Up to a granule, at the
/// alignment (the mapping is granule-aligned); beyond, one granule in, and
/// the mapping is placed so that this point is aligned: the header stays
/// in the granule before the block, and no address space is spent on the
/// alignment.
fn user_offset(align: usize) -> usize {
    if align <= LARGE_HEADER {
        LARGE_HEADER
    } else {
        align.min(GRANULE)
    }
}

/// The end of a large block's accessible memory: its mapping's end, or
/// in the secure build its guard page (see [`guard_page`]).
///
/// # Safety
/// `lb` is a live large block's header.
unsafe fn data_end(lb: *mut LargeBlock) -> usize {
    // SAFETY: contract.
    unsafe { guard_page(lb).unwrap_or(lb as usize + (*lb).map_size) }
}

/// The secure build's guard page of a large block: the first page after
/// its requested bytes and their canary pattern, when the mapping has
/// one; a linear overflow of more than that page's remainder faults.
///
/// # Safety
/// `lb` is a live large block's header.
unsafe fn guard_page(lb: *mut LargeBlock) -> Option<usize> {
    // SAFETY: contract.
    let (user, size, end) = unsafe { ((*lb).user, (*lb).requested, lb as usize + (*lb).map_size) };
    guard_at(user, size, end)
}

/// The guard page of a block of `size` bytes at `user` in a mapping that
/// ends at `end` (see [`guard_page`]).
fn guard_at(user: usize, size: usize, end: usize) -> Option<usize> {
    if !crate::core::config::SECURE {
        return None;
    }
    let g = align_up(user + size + crate::core::canary::TAIL, PAGE)?;
    (g + PAGE <= end).then_some(g)
}

/// Close (`access` false) the secure build's guard page of `lb`, or open
/// it and the rest of the block's slack (pages after the guard may have
/// stayed closed since the block's range was cached: see [`alloc`]).
/// False when the kernel refused (out of mappings: `vm.max_map_count`;
/// it may have changed a part): a guard that could not close leaves the
/// block without one (its canaries are still checked), but slack that
/// could not open must never be handed out or cached as open, so the
/// callers that open fall back (`realloc` copies, `free` unmaps).
///
/// # Safety
/// `lb` is a live large block's header; nobody uses its slack.
#[must_use]
unsafe fn set_guard(lb: *mut LargeBlock, access: bool) -> bool {
    // SAFETY: contract.
    match unsafe { guard_page(lb) } {
        Some(g) => {
            let len = if access {
                // SAFETY: contract.
                lb as usize + unsafe { (*lb).map_size } - g
            } else {
                PAGE
            };
            protect(g, len, access)
        }
        None => true,
    }
}

/// Write the canaries around a large block's requested bytes.
fn seal(lb: *mut LargeBlock) {
    // SAFETY: a live block's header; the canaries lie in its header room
    // and slack (`user - 8 >= base + size_of::<LargeBlock>()`).
    unsafe {
        let end = data_end(lb);
        crate::core::canary::seal_large(
            crate::core::config::free_key(),
            (*lb).user,
            (*lb).requested,
            end,
        );
    }
}

/// Stop the program when a large block's canaries were overwritten (an
/// overflow past its requested size, or an underflow before it).
///
/// # Safety
/// `lb` must be a live large block's header.
pub(crate) fn check_canaries(lb: *mut LargeBlock) {
    // SAFETY: contract, as in `seal`.
    let ok = unsafe {
        let end = data_end(lb);
        crate::core::canary::large_intact(
            crate::core::config::free_key(),
            (*lb).user,
            (*lb).requested,
            end,
        )
    };
    if !ok {
        // SAFETY: as above. (`requested` may be what was overwritten: the
        // size named is the mapping's room after the block's start.)
        let (user, end) = unsafe { ((*lb).user, data_end(lb)) };
        crate::util::diag::fatal_block(
            "heap overflow or underflow: a canary around this block was overwritten at",
            user,
            end - user,
        );
    }
}

/// Point the page map entries of a whole mapping at `head` (null: forget).
fn map_granules(base: usize, map_size: usize, head: *mut SpanHead) -> bool {
    PAGEMAP.set(base, map_size >> GRANULE_SHIFT, head, &OS)
}

/// Mappings of at least this many bytes are aligned to it (a page-table
/// page's reach, 2 MiB on x86-64) and, where that is free of memory,
/// whole multiples of it ([`pmd_units`]): when `mremap` moves such a
/// block (a growing `realloc`, or cached ranges moved side by side for
/// a new block), the kernel moves a page-table page per 2 MiB instead of
/// an entry per page, where both ends are aligned. Not in the secure
/// build: its `mprotect` calls on a freed block's slack and guard page
/// would walk the added pages too.
const PMD: usize = 2 << 20;

/// Whether a mapping of `map_size` bytes (whole granules) is placed at
/// a [`PMD`] boundary.
fn pmd_aligned(map_size: usize) -> bool {
    !crate::core::config::SECURE && map_size >= PMD
}

/// Whether a mapping of `map_size` bytes (whole granules) is rounded up
/// to whole [`PMD`]s: up to 2 MiB - 64 KiB of address space added at its
/// end, untouched (not resident) unless the range was used before; not
/// when the kernel backs every aligned 2 MiB of a mapping with a huge
/// page at its first touch (`config::thp_always`): a touch of the last
/// unit would make the added part resident.
fn pmd_units(map_size: usize) -> bool {
    pmd_aligned(map_size) && !crate::core::config::thp_always()
}

/// The mapping size of a large block whose mapping must hold `n` bytes:
/// whole granules, or whole [`PMD`]s (see [`pmd_units`]).
fn map_size_for(n: usize) -> Option<usize> {
    let m = align_up(n, GRANULE)?;
    if pmd_units(m) {
        align_up(m, PMD)
    } else {
        Some(m)
    }
}

/// The alignment of a fresh mapping of `map_size` bytes.
fn map_align(map_size: usize) -> usize {
    if pmd_aligned(map_size) {
        PMD
    } else {
        GRANULE
    }
}

/// A fresh mapping of `map_size` bytes at [`map_align`] (at a granule
/// when the address space is too short for more).
fn map_fresh(map_size: usize) -> Option<NonNull<u8>> {
    let align = map_align(map_size);
    OS.map(map_size, align).or_else(|| {
        (align > GRANULE)
            .then(|| OS.map(map_size, GRANULE))
            .flatten()
    })
}

/// Fresh memory, by `map`, for a block whose mapping holds `n` bytes:
/// `map_size` of them while the address space allows; short of it
/// (`RLIMIT_AS`), whole granules only; when even those are refused and
/// the cached ranges (the secure build's quarantine included) hold as
/// many bytes, once more after they went back to the OS (a request that
/// no cached memory could make room for, an impossible size, leaves
/// the cache, and the quarantine's protection, alone). Returns the
/// mapping and its size.
fn map_new(
    map_size: usize,
    n: usize,
    map: impl Fn(usize) -> Option<NonNull<u8>>,
) -> Option<(NonNull<u8>, usize)> {
    if let Some(p) = map(map_size) {
        return Some((p, map_size));
    }
    let granules = align_up(n, GRANULE)?;
    let short = || {
        (granules < map_size)
            .then(|| map(granules))
            .flatten()
            .map(|p| (p, granules))
    };
    short().or_else(|| {
        (cached_bytes() >= granules && trim() > 0).then_some(())?;
        map(map_size).map(|p| (p, map_size)).or_else(short)
    })
}

/// Large blocks of up to this many bytes are cleared when the secure build
/// reuses their memory.
const SECURE_ZERO_MAX: usize = 256 << 10;

/// Allocate a large block of `size` bytes aligned to `align` (a power of
/// two). Returns the pointer and how many of its first bytes may be
/// non-zero (0: all of it is fresh memory; a block assembled from cached
/// ranges is dirty only as far as they reach), or null (errno untouched:
/// the caller sets ENOMEM). A caller that needs zeroes clears only those.
pub(crate) fn alloc(size: usize, align: usize) -> (*mut u8, usize) {
    let align = align.max(MIN_ALIGN);
    let offset = user_offset(align);
    let mut map_size = match offset.checked_add(size.max(1)).and_then(map_size_for) {
        Some(n) if n <= isize::MAX as usize => n,
        _ => return (null_mut(), 0),
    };
    let mut guard_closed = false;
    let (base, dirty) =
        match take_cached(map_size, align, offset).and_then(|(b, reused, closed)| {
            guard_closed = reopen_for(
                b,
                map_size,
                closed,
                guard_at(b + offset, size, b + map_size),
            )?;
            Some((b, reused))
        }) {
            Some((b, reused)) => {
                CACHE_HITS.fetch_add(1, Ordering::Relaxed);
                // The secure build hands out reused memory of up to
                // `SECURE_ZERO_MAX` bytes cleared (a freed block's data does
                // not reach its next owner); clearing bigger ones would cost
                // more than the program's own use of the pages.
                if crate::core::config::SECURE && size <= SECURE_ZERO_MAX {
                    // SAFETY: the range is ours now; the block's bytes lie in it.
                    unsafe { core::ptr::write_bytes((b + offset) as *mut u8, 0, size) };
                    (b, 0)
                } else {
                    (b, reused.saturating_sub(offset).min(size))
                }
            }
            // (`offset + size` fit in `map_size` above: no overflow.)
            None => match map_new(map_size, offset + size.max(1), |n| {
                if align <= GRANULE {
                    map_fresh(n)
                } else {
                    OS.map_offset_aligned(n, align, offset)
                }
            })
            .map(|(p, n)| {
                map_size = n;
                p
            }) {
                Some(p) => {
                    MAPS.fetch_add(1, Ordering::Relaxed);
                    FRESH_BYTES.fetch_add(map_size, Ordering::Relaxed);
                    (p.as_ptr() as usize, 0)
                }
                None => return (null_mut(), 0),
            },
        };
    let user = base + offset;
    let lb = base as *mut LargeBlock;
    // SAFETY: `base` starts a mapping of `map_size` bytes that is ours.
    unsafe {
        lb.write(LargeBlock {
            head: SpanHead {
                tag: TAG_LARGE,
                granules: (map_size >> GRANULE_SHIFT) as u32,
                owner: AtomicUsize::new(0),
            },
            map_size,
            user,
            mmapped: size >= crate::core::config::mmap_threshold().0,
            requested: size,
            kind: 0,
        });
        seal(lb);
        if !guard_closed {
            // A guard that could not close: the block goes without one.
            let _ = set_guard(lb, false);
        }
    }
    if !map_granules(base, map_size, lb.cast()) {
        // Undo the entries that were set before the page map ran out.
        map_granules(base, map_size, null_mut());
        // SAFETY: the mapping is ours and unpublished.
        unsafe { OS.unmap(NonNull::new_unchecked(base as *mut u8), map_size) };
        return (null_mut(), 0);
    }
    // SAFETY: written above.
    let mmapped = unsafe { (*lb).mmapped };
    account(mmapped, 1, map_size as isize);
    if !mmapped {
        HEAP_REQUESTED.fetch_add(size, Ordering::Relaxed);
    }
    (user as *mut u8, dirty)
}

/// Free a large block.
///
/// # Safety
/// `head` must be `PAGEMAP.lookup(p)`, a header tagged `LARGE`.
pub(crate) unsafe fn free(p: *mut u8, head: *mut SpanHead) {
    let lb = head.cast::<LargeBlock>();
    // SAFETY: a LARGE-tagged header is a live LargeBlock.
    let (user, map_size, mmapped) = unsafe { ((*lb).user, (*lb).map_size, (*lb).mmapped) };
    if user != p as usize {
        crate::util::diag::fatal("free(): invalid pointer (inside a large block)", p as usize);
    }
    check_canaries(lb);
    // The secure build closes a range of up to CLOSE_WHOLE_MAX whole when
    // it enters the cache, the block's guard page with it (see
    // `retire_range`); any other guard page opens now.
    let close_whole = closes_whole(map_size);
    // SAFETY: the live header; the block is being freed.
    let opened = close_whole || unsafe { set_guard(lb, true) };
    account(mmapped, -1, -(map_size as isize));
    if !mmapped {
        // SAFETY: the live header.
        HEAP_REQUESTED.fetch_sub(unsafe { (*lb).requested }, Ordering::Relaxed);
    }
    let base = lb as usize;
    let i = RECENT_NEXT.fetch_add(1, Ordering::Relaxed) % RECENT.len();
    RECENT[i].store(user, Ordering::Relaxed);

    // Blocks above the cache's limit, and, once the program set an mmap
    // threshold (mallopt), the blocks it calls mmapped, go back to the OS
    // at once, as glibc's mmapped chunks do.
    // So does a block whose guard page could not be opened again: its
    // range is of unknown state and may not enter the cache.
    let (_, threshold_set) = crate::core::config::mmap_threshold();
    if map_size > CACHE_MAX_BLOCK || (threshold_set && mmapped) || !opened {
        // SAFETY: the block is dead; a later free of `p` finds TAG_FREE
        // until the granules are forgotten, then `recently_unmapped`.
        unsafe { (*lb).head.tag = TAG_FREE };
        RELEASED_BYTES.fetch_add(map_size, Ordering::Relaxed);
        unmap_block(base, map_size);
        return;
    }
    let now = now_ms();
    let budget = budget();
    let mut ev = Evicted::new();
    let closed = retire_range(base, map_size, may_close(now));
    if close_whole && closed == 0 {
        // The kernel refused (out of mappings; it may have closed a part):
        // no range of unknown state enters the cache.
        RELEASED_BYTES.fetch_add(map_size, Ordering::Relaxed);
        unmap_block(base, map_size);
        return;
    }
    {
        let mut c = CACHE.lock();
        if crate::core::config::SECURE {
            c.hold(base, map_size, closed, now, &mut ev);
        } else {
            c.put(base, map_size, false, closed, now, &mut ev);
        }
        c.expire(now, budget, &mut ev);
    }
    ev.unmap_all();
}

/// Bytes the cache may hold: the most the live large blocks ever held (a
/// program cycling through large blocks reuses its own pages, as
/// with glibc's growing mmap threshold; a momentary dip in the live set
/// must not throw away pages it is about to need again), at least
/// [`CACHE_MIN_BYTES`]. Idle ranges still go back after [`CACHE_DELAY_MS`].
fn budget() -> usize {
    let b = PEAK_LIVE_BYTES
        .load(Ordering::Relaxed)
        .clamp(CACHE_MIN_BYTES, CACHE_MAX_BYTES);
    match crate::core::config::trim_threshold_set() {
        Some(t) => b.min(t),
        None => b,
    }
}

/// Bytes of realloc tails the cache may hold (within [`budget`]): an
/// eighth of the peak live bytes, at least [`TAIL_MIN_BYTES`]. A tail is
/// worth keeping while its block may grow back into it soon; a program
/// whose buffers shrink and grow (the realloc bench) otherwise kept up to
/// the whole budget resident on top of its live blocks (54 MiB against
/// glibc's 21 MiB). A quarter kept 33 MiB (1.55x glibc's peak RSS), an
/// eighth 28 MiB at 1.2x the time of a quarter (still half glibc's).
fn tail_budget() -> usize {
    (PEAK_LIVE_BYTES.load(Ordering::Relaxed) / 8).clamp(TAIL_MIN_BYTES, CACHE_MAX_BYTES)
}

/// User pointers of the large blocks most recently freed, so that a second
/// free of one whose memory went back to the OS is reported as a double
/// free instead of being handed to the next allocator (which would crash).
static RECENT: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];
static RECENT_NEXT: AtomicUsize = AtomicUsize::new(0);

/// Was `p` the user pointer of a large block we recently unmapped (and
/// is its address range still unused by us)?
pub(crate) fn recently_unmapped(p: usize) -> bool {
    p != 0 && PAGEMAP.lookup(p).is_null() && RECENT.iter().any(|r| r.load(Ordering::Relaxed) == p)
}

fn unmap_block(base: usize, map_size: usize) {
    // Forget the granules before the address space can be reused.
    map_granules(base, map_size, null_mut());
    // SAFETY: the mapping is ours and dead.
    unsafe { OS.unmap(NonNull::new_unchecked(base as *mut u8), map_size) };
}

/// How much of the back of a cached range (`size` bytes ending at `end`)
/// to move to offset `got` of a block of `map_size` bytes being
/// assembled: all it can give, but only whole, aligned [`PMD`]s of it
/// while the block is laid out in them and `got` is a whole number of
/// them (a move of page-table pages; the rest of the range stays
/// cached for a later piece or block).
fn piece_size(end: usize, size: usize, map_size: usize, got: usize) -> usize {
    let n = size.min(map_size - got);
    let whole = n - n % PMD;
    if pmd_aligned(map_size) && got % PMD == 0 && end % PMD == 0 && whole > 0 {
        whole
    } else {
        n
    }
}

/// A cached range for a block of `map_size` bytes whose point `offset`
/// bytes in must be aligned to `align`: the best-fitting range (the rest
/// split off and kept), or cached ranges moved side by side (what they
/// do not cover is fresh); how many of its first bytes are reused memory
/// (the rest is fresh), and how many are still closed (the caller
/// reopens them, [`reopen`]). `None`: map fresh memory.
fn take_cached(map_size: usize, align: usize, offset: usize) -> Option<(usize, usize, usize)> {
    if align > GRANULE {
        return None;
    }
    debug_assert!((GRANULE + offset) % align == 0 || offset % align == 0);
    let mut ev = Evicted::new();
    let mut c = CACHE.lock();
    if c.len == 0 {
        return None;
    }
    // Allocation is also when idle ranges are noticed.
    c.expire(now_ms(), budget(), &mut ev);
    if ev.n > 0 {
        drop(c);
        ev.unmap_all();
        c = CACHE.lock();
        if c.len == 0 {
            return None;
        }
    }
    let mut best: Option<usize> = None;
    for i in 0..c.len {
        let sz = c.ranges[i].size;
        if sz >= map_size && best.is_none_or(|b| c.ranges[b].size > sz) {
            best = Some(i);
        }
    }
    if let Some(i) = best {
        // All of it, or its back (the rest stays cached).
        let (base, closed) = c.take(i, map_size);
        drop(c);
        return Some((base, map_size, closed));
    }
    // Nothing fits: assemble the block from cached ranges, largest first,
    // moving their pages side by side into a fresh reservation (mremap:
    // page tables move, nothing is copied or faulted in). What the ranges
    // do not cover is fresh memory.
    let mut pieces = [(0usize, 0usize, 0usize); 8];
    let mut n = 0;
    let mut got = 0;
    while got < map_size && n < pieces.len() {
        let mut largest: Option<usize> = None;
        for i in 0..c.len {
            if largest.is_none_or(|l| c.ranges[i].size > c.ranges[l].size) {
                largest = Some(i);
            }
        }
        let Some(largest) = largest else {
            break;
        };
        let r = c.ranges[largest];
        let size = piece_size(r.base + r.size, r.size, map_size, got);
        let (base, closed) = c.take(largest, size);
        pieces[n] = (base, size, closed);
        got += size;
        n += 1;
    }
    drop(c);
    FRESH_BYTES.fetch_add(map_size - got.min(map_size), Ordering::Relaxed);
    let target = map_fresh(map_size).map(|p| p.as_ptr() as usize);
    let mut off = 0;
    for &(base, size, closed) in &pieces[..n] {
        // Reopened where it lies (one mapping again, which mremap needs),
        // or given up.
        if target.is_some() && reopen(base, size, closed) {
            map_granules(base, size, null_mut());
            // SAFETY: the piece is a cached range of ours nobody uses; the
            // destination lies inside the fresh reservation.
            let moved = target.is_some_and(|t| unsafe { OS.move_pages(base, size, t + off) });
            if !moved {
                // SAFETY: as above; its pages are given up.
                unsafe { OS.unmap(NonNull::new_unchecked(base as *mut u8), size) };
            }
        } else if target.is_none() {
            RELEASED_BYTES.fetch_add(size, Ordering::Relaxed);
            unmap_block(base, size);
        }
        off += size;
    }
    target.map(|t| (t, got.min(map_size), 0))
}

/// Unmap cached ranges past their delay (called from slow paths).
pub(crate) fn tick() {
    let mut ev = Evicted::new();
    if let Some(mut c) = CACHE.try_lock() {
        if c.len + c.held_n > 0 {
            c.expire(now_ms(), budget(), &mut ev);
        }
    }
    ev.unmap_all();
}

/// Unmap every cached range (`malloc_trim`). Returns bytes released.
pub(crate) fn trim() -> usize {
    let mut released = 0;
    loop {
        let mut ev = Evicted::new();
        {
            let mut c = CACHE.lock();
            while c.held_n > 0 && !ev.full() {
                let last = c.held_n - 1;
                let (b, n, _, _) = c.unhold(last);
                released += n;
                ev.push(b, n);
            }
            while c.len > 0 && !ev.full() {
                let last = c.len - 1;
                let r = c.remove(last);
                released += r.size;
                ev.push(r.base, r.size);
            }
        }
        if ev.n == 0 {
            return released;
        }
        ev.unmap_all();
    }
}

/// Give back at least `bytes` of cached ranges, oldest first (the span
/// cache is about to fault in fresh memory for slabs: the program's
/// demand moved from large blocks to small ones, and keeping both
/// resident would stack their peaks, which glibc's one heap does not).
/// The secure build's quarantine is left alone.
pub(crate) fn shed(bytes: usize) {
    let mut ev = Evicted::new();
    {
        let mut c = CACHE.lock();
        if c.len == 0 {
            return;
        }
        let mut need = align_up(bytes, GRANULE).unwrap_or(usize::MAX);
        while need > 0 && c.len > 0 && !ev.full() {
            let Some(o) = (0..c.len).min_by_key(|&i| c.ranges[i].freed_ms) else {
                break;
            };
            let r = c.ranges[o];
            if r.size > need {
                // The range's end goes: its head (maybe closed) stays.
                c.shrink(o, need);
                ev.push(r.base + r.size - need, need);
                need = 0;
            } else {
                let r = c.remove(o);
                ev.push(r.base, r.size);
                need -= r.size;
            }
        }
    }
    ev.unmap_all();
}

/// Bytes held by the cache of freed large blocks.
pub(crate) fn cached_bytes() -> usize {
    let c = CACHE.lock();
    c.bytes + c.held_bytes
}

/// Ranges and bytes held by the cache of freed large blocks.
pub(crate) fn cached() -> (usize, usize) {
    let c = CACHE.lock();
    (c.len + c.held_n, c.bytes + c.held_bytes)
}

/// Resize a large block in place or by moving its pages. `None`: the
/// caller must allocate, copy and free (aligned blocks, or no memory).
///
/// # Safety
/// `head` must be the live LARGE header of `p`; `new_size` is at least 1
/// (a small size keeps a mapping of one granule or more: callers pass one
/// only when the block shrinks to at least half).
pub(crate) unsafe fn realloc(p: *mut u8, head: *mut SpanHead, new_size: usize) -> Option<*mut u8> {
    let lb = head.cast::<LargeBlock>();
    // SAFETY: contract.
    if unsafe { (*lb).user } != p as usize {
        crate::util::diag::fatal(
            "realloc(): invalid pointer (inside a large block)",
            p as usize,
        );
    }
    check_canaries(lb);
    // SAFETY: the live header; the guard moves with the block's end. If
    // the slack could not be opened, the block stays as it is and the
    // caller copies it to a new block (freeing this one unmaps it).
    if !unsafe { set_guard(lb, true) } {
        return None;
    }
    // SAFETY: forwarded contract.
    let Some(q) = (unsafe { resize(p, lb, new_size) }) else {
        // SAFETY: as above: the block is unchanged.
        let _ = unsafe { set_guard(lb, false) };
        return None;
    };
    // Only blocks with the header right before them are resized.
    let nlb = (q as usize - LARGE_HEADER) as *mut LargeBlock;
    // SAFETY: the (possibly moved) header of our live block.
    unsafe {
        if !(*nlb).mmapped {
            HEAP_REQUESTED.fetch_add(new_size, Ordering::Relaxed);
            HEAP_REQUESTED.fetch_sub((*nlb).requested, Ordering::Relaxed);
        }
        (*nlb).requested = new_size;
    }
    seal(nlb);
    // SAFETY: the live header of the resized block (a guard that could
    // not close: the block goes without one).
    let _ = unsafe { set_guard(nlb, false) };
    Some(q)
}

/// `realloc`'s work on the mapping: in place, into a cached range after
/// it, or by moving its pages.
///
/// # Safety
/// As [`realloc`]; `lb` is `p`'s header.
unsafe fn resize(p: *mut u8, lb: *mut LargeBlock, new_size: usize) -> Option<*mut u8> {
    let base = lb as usize;
    let head = lb.cast::<SpanHead>();
    // SAFETY: contract.
    let (user, old_map) = unsafe { ((*lb).user, (*lb).map_size) };
    if user - base != LARGE_HEADER {
        return None;
    }
    // What the new size takes in whole granules, and the mapping a block
    // of it gets (`map_size_for`). A block the address space was too
    // short for has whole granules only: it keeps them while they hold
    // the new size.
    let fit = LARGE_HEADER
        .checked_add(new_size)
        .and_then(|n| align_up(n, GRANULE))?;
    let mut need = map_size_for(fit)?;
    if need > isize::MAX as usize {
        return None;
    }
    if fit <= old_map && need >= old_map / 2 {
        return Some(p);
    }
    let lbm = lb;
    if need < old_map {
        // Shrink in place: the tail goes to the cache of resident ranges
        // (a later growth takes it back without faulting).
        let tail = old_map - need;
        // SAFETY: our live block's header.
        unsafe {
            (*lbm).map_size = need;
            (*lbm).head.granules = (need >> GRANULE_SHIFT) as u32;
        }
        // SAFETY: our live block's header.
        account(unsafe { (*lbm).mmapped }, 0, -(tail as isize));
        let mut ev = Evicted::new();
        // A tail is not closed: it is no block's start.
        let closed = retire_range(base + need, tail, false);
        {
            let mut c = CACHE.lock();
            c.put(base + need, tail, true, closed, now_ms(), &mut ev);
            c.expire(now_ms(), budget(), &mut ev);
        }
        ev.unmap_all();
        return Some(p);
    }
    // Grow in place when the range right after the block is cached.
    let taken = CACHE.lock().take_at(base + old_map, need - old_map);
    if taken.is_some_and(|closed| reopen(base + old_map, need - old_map, closed)) {
        map_granules(base + old_map, need - old_map, head);
        // SAFETY: our live block's header.
        unsafe {
            (*lbm).map_size = need;
            (*lbm).head.granules = (need >> GRANULE_SHIFT) as u32;
        }
        // SAFETY: our live block's header.
        account(unsafe { (*lbm).mmapped }, 0, (need - old_map) as isize);
        return Some(p);
    }
    // Forget the old granules first: once mremap moves the pages, the old
    // address range may be handed to anybody.
    map_granules(base, old_map, null_mut());
    // SAFETY: the mapping is ours; on success the old range is dead.
    let remap = |size: usize, align: usize| unsafe {
        OS.remap(
            NonNull::new_unchecked(base as *mut u8),
            old_map,
            size,
            align,
        )
    };
    // Short of address space (`RLIMIT_AS`): whole granules, at a granule.
    let moved = remap(need, map_align(need)).or_else(|| {
        let p = (fit < need || map_align(need) > GRANULE).then(|| remap(fit, GRANULE))??;
        need = fit;
        Some(p)
    });
    let new_base = match moved {
        Some(b) => b.as_ptr() as usize,
        None => {
            map_granules(base, old_map, head);
            return None;
        }
    };
    let nlb = new_base as *mut LargeBlock;
    // SAFETY: the header moved with the pages.
    unsafe {
        (*nlb).map_size = need;
        (*nlb).user = new_base + LARGE_HEADER;
        (*nlb).head.granules = (need >> GRANULE_SHIFT) as u32;
    }
    if !map_granules(new_base, need, nlb.cast()) {
        crate::util::diag::fatal("realloc(): out of memory for the page map at", new_base);
    }
    // SAFETY: the header moved with the pages.
    account(
        unsafe { (*nlb).mmapped },
        0,
        need as isize - old_map as isize,
    );
    Some((new_base + LARGE_HEADER) as *mut u8)
}

/// Hold the cache's lock (tests of the fork child's rebuild).
#[cfg(test)]
pub(crate) fn hold_for_test() -> crate::util::lock::LockGuard<'static, impl Sized> {
    CACHE.lock()
}

/// In a fork child: if the cache's lock was held by a thread that does
/// not exist here, its table may be half updated: start with an empty
/// cache (the cached ranges stay mapped, lost to this process).
pub(crate) fn after_fork_child() {
    if CACHE.held_by_other_thread() {
        // SAFETY: the child's only thread; no guard exists.
        unsafe { CACHE.reset_in_child(|_| Cache::EMPTY) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    std::thread_local! {
        /// `protect` refuses to open memory on this thread (the kernel's
        /// answer when the process is out of mappings), for the tests of
        /// what the callers do then.
        pub(super) static REFUSE_OPEN: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
    }

    /// Whether the kernel may read `p`'s byte: `write` from it into a pipe
    /// fails with EFAULT, instead of faulting, when the page is closed.
    fn readable(p: usize) -> bool {
        let mut fds = [0; 2];
        // SAFETY: a fresh pipe; `write` reads one byte at `p` or fails.
        unsafe {
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            let n = libc::write(fds[1], p as *const libc::c_void, 1);
            libc::close(fds[0]);
            libc::close(fds[1]);
            n == 1
        }
    }

    #[test]
    fn a_cached_range_is_closed_and_what_is_taken_open() {
        // A cache of our own (other tests use the global one).
        let mut c = Cache::EMPTY;
        let mut ev = Evicted::new();
        // Above CLOSE_WHOLE_MAX: both builds close its head only.
        let size = 4 * GRANULE;
        assert!(!closes_whole(size));
        let base = OS.map(size, GRANULE).expect("memory").as_ptr() as usize;
        let fill = |p: usize, n: usize| {
            // SAFETY: memory of this test that is open.
            unsafe { (p as *mut u8).write_bytes(0xa5, n) }
        };
        fill(base, size);
        let closed = retire_range(base, size, true);
        assert_eq!(closed, PAGE);
        assert_eq!(PAGEMAP.lookup(base + 5), cached_head(), "a FREE header");
        assert!(!readable(base), "the head of a cached range is closed");
        assert!(readable(base + PAGE), "only the head");
        c.put(base, size, false, closed, 0, &mut ev);

        // A smaller block comes from the back: the head stays closed.
        let (q, q_closed) = c.take(0, GRANULE);
        assert_eq!(q, base + 3 * GRANULE, "the back");
        assert_eq!(q_closed, 0, "the back of a range closed at its head");
        assert!(reopen(q, GRANULE, q_closed));
        fill(q, GRANULE);
        assert!(!readable(base));
        // The rest fits exactly: the same head, open again.
        let (r, r_closed) = c.take(0, 3 * GRANULE);
        assert_eq!((r, r_closed, c.len), (base, PAGE, 0));
        assert!(reopen(r, 3 * GRANULE, r_closed));
        fill(r, 3 * GRANULE);

        // Both back. The default build merges them into one range with
        // one closed head (the second one's head opens). The secure build
        // closes the one-granule range whole (up to CLOSE_WHOLE_MAX), and
        // a range closed beyond its head stays apart from an open range
        // below it (merging would open it).
        let q_whole = closes_whole(GRANULE);
        let closed = retire_range(q, GRANULE, true);
        assert_eq!(closed, if q_whole { GRANULE } else { PAGE });
        c.put(q, GRANULE, false, closed, 0, &mut ev);
        let closed = retire_range(r, 3 * GRANULE, true);
        assert_eq!(closed, PAGE, "a range above CLOSE_WHOLE_MAX: its head");
        c.put(r, 3 * GRANULE, false, closed, 0, &mut ev);
        let at = |c: &Cache, b: usize| (0..c.len).find(|&i| c.ranges[i].base == b).unwrap();
        if q_whole {
            assert_eq!(c.len, 2, "kept apart");
            let i = at(&c, q);
            assert_eq!((c.ranges[i].size, c.ranges[i].closed), (GRANULE, GRANULE));
            assert!(!readable(q) && !readable(q + GRANULE - 1), "closed whole");
        } else {
            assert_eq!((c.len, c.ranges[0].base, c.ranges[0].size), (1, base, size));
            assert!(readable(q), "the middle head is open again");
        }
        assert_eq!(c.ranges[at(&c, base)].closed, PAGE);
        assert!(!readable(base));

        // realloc's growth takes a range's front: the rest keeps what was
        // closed past the front (here nothing).
        let front = c.take_at(base, GRANULE);
        assert_eq!(front, Some(PAGE));
        assert!(reopen(base, GRANULE, front.unwrap()));
        fill(base, GRANULE);
        let i = at(&c, base + GRANULE);
        assert_eq!(c.ranges[i].closed, 0);
        let rest_size = c.ranges[i].size;
        let (rest, rest_closed) = c.take(i, rest_size);
        assert_eq!((rest, rest_closed), (base + GRANULE, 0));
        if q_whole {
            let (qq, q_closed) = c.take(0, GRANULE);
            assert_eq!((qq, q_closed), (q, GRANULE));
            assert!(reopen(q, GRANULE, q_closed));
        }
        assert_eq!(c.len, 0);
        fill(base, size);
        assert!(ev.n == 0);
        unmap_block(base, size);
    }

    /// Mappings of 2 MiB and more are whole, aligned 2 MiB units in the
    /// default build (`mremap` then moves a page-table page per 2 MiB;
    /// only aligned where the kernel's huge pages are `always`), smaller
    /// ones whole granules; so is a block a growing `realloc` moved. The
    /// secure build keeps granules.
    #[test]
    fn mappings_from_two_mib_on_are_whole_aligned_pmds() {
        crate::core::config::init();
        let pmd = !crate::core::config::SECURE;
        let units = pmd && !crate::core::config::thp_always();
        let g = |n: usize| align_up(n, GRANULE).unwrap();
        assert_eq!(map_size_for(PMD - GRANULE), Some(PMD - GRANULE));
        assert_eq!(map_size_for(PMD), Some(PMD));
        assert_eq!(
            map_size_for(PMD + 1),
            Some(if units { 2 * PMD } else { g(PMD + 1) })
        );
        assert_eq!(map_align(PMD - GRANULE), GRANULE);
        assert_eq!(map_align(PMD), if pmd { PMD } else { GRANULE });
        // A fresh mapping is aligned so.
        let fresh = map_fresh(3 * PMD).expect("memory").as_ptr() as usize;
        assert_eq!(fresh % map_align(3 * PMD), 0);
        unmap_block(fresh, 3 * PMD);
        // A block, from fresh memory or a cached range, and grown.
        let (p, _) = alloc(3 << 20, MIN_ALIGN);
        assert!(!p.is_null());
        let lb = PAGEMAP.lookup(p as usize).cast::<LargeBlock>();
        // SAFETY: our live block's header.
        let size = unsafe { (*lb).map_size };
        assert_eq!(size, map_size_for(LARGE_HEADER + (3 << 20)).unwrap());
        // SAFETY: our live block, which the call may move. `None` is the
        // answer for a block joined from cached pieces of several
        // mappings (other tests free large blocks into the shared cache):
        // the caller then allocates anew and frees the old block, as here.
        let grown = unsafe { realloc(p, lb.cast(), 9 << 20) };
        let q = grown.unwrap_or_else(|| {
            let (q, _) = alloc(9 << 20, MIN_ALIGN);
            assert!(!q.is_null());
            // SAFETY: our live block, freed once.
            unsafe { free(p, lb.cast()) };
            q
        });
        let lb = PAGEMAP.lookup(q as usize).cast::<LargeBlock>();
        // SAFETY: as above.
        let size = unsafe { (*lb).map_size };
        assert_eq!(size, map_size_for(LARGE_HEADER + (9 << 20)).unwrap());
        if pmd && grown.is_some_and(|q| q != p) {
            assert_eq!(lb as usize % PMD, 0, "a moved block is aligned");
        }
        // SAFETY: our live block, freed once.
        unsafe { free(q, lb.cast()) };
    }

    /// A block assembled from cached ranges takes whole, aligned 2 MiB
    /// units of a range's back while it can (the default build).
    #[test]
    fn assembled_pieces_keep_whole_aligned_pmds() {
        let pmd = !crate::core::config::SECURE;
        let (m, g) = (8 * PMD, GRANULE);
        // A range of 5 MiB ending at an aligned address gives 4 MiB.
        assert_eq!(
            piece_size(16 * PMD, 5 << 20, m, 0),
            if pmd { 2 * PMD } else { 5 << 20 }
        );
        // Ending elsewhere, or when the block is not laid out in whole
        // units so far, or is small: all it can.
        assert_eq!(piece_size(16 * PMD + g, 5 << 20, m, 0), 5 << 20);
        assert_eq!(piece_size(16 * PMD, 5 << 20, m, g), 5 << 20);
        assert_eq!(piece_size(16 * PMD, 3 * g, PMD - g, 0), 3 * g);
        // Less than a unit of it: all of it; never more than the block needs.
        assert_eq!(piece_size(16 * PMD, PMD - g, m, 0), PMD - g);
        assert_eq!(piece_size(16 * PMD, 20 * PMD, m, 2 * PMD), 6 * PMD);
    }

    /// The secure build: a large block sits against its closed guard page
    /// whether its range is fresh or reused (a reused range comes closed
    /// whole, and only what lies before the guard opens); its freed range
    /// is closed whole; realloc in place opens the slack again.
    #[cfg(feature = "secure")]
    #[test]
    fn the_secure_build_keeps_a_guard_page_on_fresh_and_reused_ranges() {
        crate::core::config::init();
        let size = 100_000;
        // Freed ranges wait in a quarantine of HELD before the cache hands
        // them out again: enough rounds to reuse some.
        let (mut hits, mut checked) = (0, 0);
        for round in 0..16 {
            let before = CACHE_HITS.load(Ordering::Relaxed);
            let (p, _) = alloc(size, MIN_ALIGN);
            assert!(!p.is_null());
            hits += (CACHE_HITS.load(Ordering::Relaxed) > before) as usize;
            let p = p as usize;
            let lb = PAGEMAP.lookup(p).cast::<LargeBlock>();
            // SAFETY: our live block's header.
            let (g, end) = unsafe {
                (
                    guard_page(lb).expect("a guard page"),
                    lb as usize + (*lb).map_size,
                )
            };
            assert_eq!(
                g,
                align_up(p + size + crate::core::canary::TAIL, PAGE).unwrap()
            );
            assert!(readable(p) && readable(p + size - 1), "round {round}");
            assert!(!readable(g), "round {round}: the guard page is closed");
            // SAFETY: our block.
            unsafe { (p as *mut u8).write_bytes(0x5a, size) };
            if round == 15 {
                // Shrinking in place keeps the mapping: the guard moves
                // and the old one opens.
                // SAFETY: our live block.
                let q = unsafe { realloc(p as *mut u8, lb.cast(), size / 2 + 1000) };
                assert_eq!(q, Some(p as *mut u8));
                // SAFETY: as above.
                let g2 = unsafe { guard_page(lb) }.expect("a guard page");
                assert!(g2 < g && !readable(g2) && readable(g), "the guard moved");
                // The slack after the new guard is open to the mapping's
                // end (a reused range kept it closed past the old guard).
                for a in (g2 + PAGE..end).step_by(PAGE) {
                    assert!(readable(a), "slack at {:#x} still closed", a - p);
                }
            }
            // SAFETY: our live block, freed once.
            unsafe { free(p as *mut u8, lb.cast()) };
            // Closed whole while it waits in the cache: checked under the
            // cache's lock and only while the range is still there (the
            // frees of tests running beside this one may evict it, and
            // anyone may map its addresses again once it is unmapped).
            let c = CACHE.lock();
            let base = lb as usize;
            if c.held[..c.held_n].iter().any(|h| h.0 == base)
                || c.ranges[..c.len]
                    .iter()
                    .any(|r| r.base <= base && base < r.base + r.size)
            {
                checked += 1;
                for a in (base..end).step_by(PAGE) {
                    assert!(!readable(a), "a freed block's range is closed whole");
                }
            }
            drop(c);
        }
        assert!(hits > 0, "no range was reused");
        assert!(checked > 0, "no freed range stayed in the cache");
    }

    /// When the kernel refuses to open a secure large block's guard page
    /// and slack (out of mappings), `realloc` leaves the block as it is
    /// (the caller copies it) and `free` unmaps it instead of caching a
    /// range with a page still closed.
    #[cfg(feature = "secure")]
    #[test]
    fn a_refused_open_of_the_slack_copies_or_unmaps() {
        crate::core::config::init();
        // Above CLOSE_WHOLE_MAX: its free opens the guard page.
        let size = 300_000;
        let (p, _) = alloc(size, MIN_ALIGN);
        assert!(!p.is_null());
        let lb = PAGEMAP.lookup(p as usize).cast::<LargeBlock>();
        // SAFETY: our live block's header.
        let (map_size, g) = unsafe { ((*lb).map_size, guard_page(lb).expect("a guard page")) };
        assert!(!closes_whole(map_size));
        // SAFETY: our live block.
        unsafe { p.write_bytes(0x5a, size) };
        REFUSE_OPEN.with(|r| r.set(true));
        // SAFETY: our live block and its header.
        let q = unsafe { realloc(p, lb.cast(), size + 5000) };
        assert_eq!(q, None, "a refused open leaves the block to be copied");
        // SAFETY: our live block, unchanged.
        assert!((0..size).all(|i| unsafe { *p.add(i) } == 0x5a));
        // SAFETY: as above.
        assert_eq!(unsafe { (*lb).requested }, size);
        assert!(!readable(g), "its guard page is still closed");
        // The free: the block's range is unmapped, not cached.
        let base = lb as usize;
        let released = RELEASED_BYTES.load(Ordering::Relaxed);
        // SAFETY: our live block, freed once.
        unsafe { free(p, lb.cast()) };
        REFUSE_OPEN.with(|r| r.set(false));
        assert!(RELEASED_BYTES.load(Ordering::Relaxed) >= released + map_size);
        let c = CACHE.lock();
        assert!(
            !c.held[..c.held_n].iter().any(|h| h.0 == base)
                && !c.ranges[..c.len]
                    .iter()
                    .any(|r| r.base <= base && base < r.base + r.size),
            "a range with a closed page entered the cache"
        );
    }

    /// Bookkeeping only (open ranges: no page is touched): a range
    /// merges with both neighbours in one pass wherever they sit in the
    /// table, the side arrays follow every change, and `expire` removes
    /// exactly the ranges past the delay, its early exit included.
    #[test]
    fn ranges_merge_with_both_neighbours_and_expire_on_time() {
        let mut c = Cache::EMPTY;
        let mut ev = Evicted::new();
        let g = GRANULE;
        let base = 1 << 40;
        // Far-apart ranges first, so the neighbours sit at varied indices.
        for k in 0..20 {
            c.put(base + (100 + 4 * k) * g, g, false, 0, 10, &mut ev);
        }
        c.put(base + 3 * g, g, false, 0, 20, &mut ev); // the successor
        c.put(base, g, false, 0, 30, &mut ev); // the predecessor
        assert_eq!(c.len, 22);
        // [base + g, base + 3g) joins both: one range [base, base + 4g).
        c.put(base + g, 2 * g, false, 0, 40, &mut ev);
        assert_eq!(c.len, 21);
        assert_eq!(ev.n, 0);
        let check = |c: &Cache| {
            for k in 0..c.len {
                let r = c.ranges[k];
                assert_eq!((c.starts[k], c.ends[k]), (r.base, r.base + r.size), "{k}");
                for j in 0..c.len {
                    assert!(
                        j == k || c.ranges[j].base != r.base + r.size,
                        "adjacent left"
                    );
                }
            }
        };
        check(&c);
        let i = (0..c.len).find(|&k| c.ranges[k].base == base).unwrap();
        assert_eq!((c.ranges[i].size, c.ranges[i].freed_ms), (4 * g, 40));
        // Taking from the back and the front keeps the side arrays right.
        let (b, _) = c.take(i, g);
        assert_eq!(b, base + 3 * g);
        check(&c);
        assert_eq!(c.take_front(i, g), 0);
        check(&c);
        assert_eq!(c.take_at(base + g, 2 * g), Some(0));
        check(&c);
        assert_eq!(c.len, 20);
        // Nothing is past the delay a moment before it: no range leaves.
        let big = usize::MAX / 2;
        c.expire(10 + CACHE_DELAY_MS - 1, big, &mut ev);
        assert_eq!((c.len, ev.n), (20, 0));
        // At the delay the twenty old ranges leave (as many per call as
        // the list of ranges to unmap holds).
        let mut left = 0;
        while c.len > 0 {
            ev.n = 0;
            c.expire(10 + CACHE_DELAY_MS, big, &mut ev);
            assert!(ev.n > 0, "a range past the delay stayed");
            left += ev.n;
        }
        assert_eq!(left, 20);
        check(&c);
    }

    #[test]
    fn closing_is_rate_limited() {
        let limit = RateLimit::new(CLOSES_PER_SECOND);
        let now = 7_000_123;
        let granted = (0..2 * CLOSES_PER_SECOND)
            .filter(|_| limit.allow(now))
            .count();
        assert_eq!(granted, CLOSES_PER_SECOND);
        assert!(!limit.allow(now + 876), "the same second");
        assert!(limit.allow(now + 1000), "a new second, a new budget");
    }
}
