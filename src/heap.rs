//! Per-thread heaps: the malloc and free fast paths and their slow paths.
//!
//! Owns [`Heap`] (size class -> current slab, the slab lists, the remote
//! queue), the abandoned-slab lists, and the heap pool. Calls `slab`,
//! `span`, `pagemap`, `size_class`, `tls`, `runtime`.
//!
//! The same `Heap` type, run under a lock, is the per-CPU heap of the
//! medium classes (`shared_heap`); thread heaps serve only the classes
//! below [`SHARED_FROM`].
//!
//! A thread heap is touched by its thread only, except `remote`: other threads
//! push blocks they free there with one CAS, and the owner collects them
//! in its slow path. At thread exit the heap is parked whole, slabs and
//! all, for the next new thread (`runtime::heap_park`). A heap given up
//! (parking full, parked too long, trimmed, or a late heap whose thread is
//! gone) has its slabs *abandoned*: empty ones go back to the span cache,
//! the others to a global list, owned by nobody, until their last block is
//! freed (then the span goes back) or a thread adopts them for its own
//! allocations.
//!
//! Invariants of a heap `h` (owner thread, or the exiting thread):
//! - `current[c]` is the first slab of `avail[c]`, or the empty slab;
//!   `direct[i]` equals `current[DIRECT_CLASS[i]]`;
//! - every slab on `avail[c]` or `full` has `owner & !OWNER_FLAGS == h`,
//!   and `OWNER_FULL` exactly when it is on `full`;
//! - abandoned slabs have `owner & !OWNER_FLAGS == 0` and are on
//!   `ABANDONED[class]`, changed only under its lock.

use crate::list::List;
use crate::pagemap::{SpanHead, PAGEMAP, TAG_FREE, TAG_LARGE, TAG_SLAB};
use crate::runtime::free_key;
use crate::size_class::{
    block_size, class_of, direct_index, CLASS_SIZE, DIRECT_LEN, DIRECT_MAX, GRANULE, MIN_ALIGN,
    NUM_CLASSES, SHARED_FROM, SLAB_GRANULES,
};
use crate::slab::{
    mark_freed, marked_freed, Block, Slab, OWNER_FLAGS, OWNER_FULL, OWNER_INSTR, OWNER_INTERIOR,
};
use crate::span::SPANS;
use crate::sync::Lock;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// A list of slabs through their `next`/`prev` links.
pub type SlabList = List<Slab>;

const EMPTY_LIST: SlabList = SlabList::EMPTY;

/// A thread's heap: the part only its thread touches, then the queue
/// other threads push to. The two are separate fields so the owner can
/// hold `&mut` to its part while other threads CAS on `remote`.
#[repr(C)]
pub struct Heap {
    /// Owner-thread state (first: the fast path reads `direct` at offset 0).
    pub local: HeapLocal,
    /// Blocks freed by other threads, linked through their first word.
    pub remote: AtomicPtr<Block>,
}

/// The owner-thread part of a heap.
#[repr(C)]
pub struct HeapLocal {
    /// `(size + 15) / 16` -> current slab of that size's class, for
    /// requests up to 1 KiB: the malloc fast path is one load from here.
    pub direct: [*mut Slab; DIRECT_LEN],
    /// The slab cache of the free fast path: header addresses of slabs of
    /// this heap that a free may push to without a page-map lookup,
    /// indexed by granule number modulo [`SLAB_CACHE_LEN`] (see
    /// [`free_cached`]). [`SLAB_CACHE_EMPTY`] where there is none.
    slab_cache: [usize; SLAB_CACHE_LEN],
    /// Current slab of each class.
    pub current: [*mut Slab; NUM_CLASSES],
    avail: [SlabList; NUM_CLASSES],
    full: SlabList,
    /// The slab of each class carrying [`CURRENT_BIAS`]: the first of
    /// `avail[c]`. Equal to `current[c]` unless the heap is instrumented,
    /// where `current` and `direct` stay at the empty slab so that every
    /// allocation takes the slow path.
    biased: [*mut Slab; NUM_CLASSES],
    /// What this heap's slabs hold in `owner`: its address, plus
    /// `OWNER_INSTR` when instrumented (so frees miss the fast path too).
    owner_word: usize,
    /// Statistics, leak checks or tracing are on: no fast paths.
    pub instrumented: bool,
    /// Set while an instrumentation hook runs on this thread, so the
    /// allocations it causes (backtrace, dladdr) are not recorded.
    pub in_hook: bool,
    pool_next: *mut Heap,
    /// When the heap was parked (see `runtime::heap_park`).
    parked_ms: u64,
    slow_calls: u32,
    /// The thread's medium cache: per medium class, a few blocks this
    /// thread freed, linked through their first word and carrying the
    /// double-free key, for its next allocations of that class without the
    /// per-CPU heap's lock (see [`MCACHE_BYTES`]).
    mcache: [*mut Block; MCACHE_CLASSES],
    mcache_n: [u8; MCACHE_CLASSES],
    mcache_bytes: u32,
    /// The per-CPU heap this thread takes medium blocks from, and how many
    /// more it takes before asking the CPU again (0: ask now).
    shard: u32,
    shard_uses: u32,
}

impl Heap {
    /// A heap whose every class points at the empty slab, owned by nobody
    /// (the static empty and exited heaps, and a new shard heap).
    const fn empty() -> Heap {
        Heap {
            local: HeapLocal {
                direct: [empty_slab_ptr(); DIRECT_LEN],
                slab_cache: [SLAB_CACHE_EMPTY; SLAB_CACHE_LEN],
                current: [empty_slab_ptr(); NUM_CLASSES],
                avail: [EMPTY_LIST; NUM_CLASSES],
                full: EMPTY_LIST,
                biased: [empty_slab_ptr(); NUM_CLASSES],
                owner_word: 0,
                instrumented: false,
                in_hook: false,
                pool_next: null_mut(),
                parked_ms: 0,
                slow_calls: 0,
                mcache: [null_mut(); MCACHE_CLASSES],
                mcache_n: [0; MCACHE_CLASSES],
                mcache_bytes: 0,
                shard: 0,
                shard_uses: 0,
            },
            remote: AtomicPtr::new(null_mut()),
        }
    }
}

/// A `Sync` wrapper for statics that hold raw pointers.
#[repr(transparent)]
pub struct Shared<T>(pub T);
// SAFETY: the wrapped statics are either never written (the empty slab) or
// written only through atomics (the empty heap's remote queue stays null:
// no slab is ever owned by the empty heap).
unsafe impl<T> Sync for Shared<T> {}

/// The slab of the empty heap: no free block, owned by nobody, never
/// written.
pub static EMPTY_SLAB: Shared<Slab> = Shared(Slab {
    head: SpanHead {
        tag: TAG_SLAB,
        granules: 0,
        owner: AtomicUsize::new(0),
    },
    free: null_mut(),
    local_free: null_mut(),
    key: 0,
    used: 0,
    capacity: 0,
    block_size: 0,
    class: 0,
    bump: AtomicUsize::new(0),
    end: 0,
    next: null_mut(),
    prev: null_mut(),
});

const fn empty_slab_ptr() -> *mut Slab {
    &EMPTY_SLAB.0 as *const Slab as *mut Slab
}

/// The heap every thread starts with: all its slabs are the empty slab,
/// so every allocation takes the slow path, which creates a real heap.
pub static EMPTY_HEAP: Shared<Heap> = Shared(Heap::empty());

/// Address of the empty heap.
#[inline(always)]
pub fn empty_heap() -> *mut Heap {
    &EMPTY_HEAP.0 as *const Heap as *mut Heap
}

/// The heap of a thread whose exit destructor already ran: empty like
/// [`EMPTY_HEAP`], but a heap created from it is a *late* heap (see
/// `runtime::create_thread_heap`).
pub static EXITED_HEAP: Shared<Heap> = Shared(Heap::empty());

/// Address of the exited-thread heap.
#[inline]
pub fn exited_heap() -> *mut Heap {
    &EXITED_HEAP.0 as *const Heap as *mut Heap
}

/// Is `h` a thread's own heap (not one of the two static empty ones)?
#[inline]
pub fn is_real(h: *mut Heap) -> bool {
    h != empty_heap() && h != exited_heap()
}

// ---------------------------------------------------------------------------
// Fast paths

/// Pop a block for a request of at most 1 KiB from the heap's direct
/// table; null when the fast path cannot serve it (the caller then takes
/// its slow path).
///
/// Fast path: one table load, one pop, about a dozen instructions.
///
/// # Safety
/// `heap` must be the calling thread's heap (`tls::heap()`).
#[inline(always)]
pub unsafe fn try_alloc_direct(heap: *mut Heap, size: usize) -> *mut u8 {
    debug_assert!(size <= DIRECT_MAX);
    // SAFETY: direct_index(size) < DIRECT_LEN for size <= DIRECT_MAX; the
    // heap's slabs are valid (heap invariant) and only this thread pops.
    unsafe {
        let slab = *(*heap).local.direct.get_unchecked(direct_index(size));
        (*slab).pop().cast()
    }
}

/// Allocate a block of class `class`: from the thread's heap for small
/// classes, from the CPU's shared heap for medium ones (`shared_heap`).
///
/// # Safety
/// As [`try_alloc_direct`]; `class < NUM_CLASSES`.
#[inline]
pub unsafe fn alloc_class(heap: *mut Heap, class: usize) -> *mut u8 {
    if class >= SHARED_FROM {
        // SAFETY: a medium class below NUM_CLASSES (contract); a real heap
        // is the calling thread's own.
        unsafe {
            if is_real(heap) {
                let h = &mut (*heap).local;
                let i = class - SHARED_FROM;
                let b = h.mcache[i];
                if !b.is_null() {
                    h.mcache[i] = (*b).next;
                    h.mcache_n[i] -= 1;
                    h.mcache_bytes -= CLASS_SIZE[class];
                    (*b).key = 0;
                    return b.cast();
                }
            }
            return crate::shared_heap::alloc(class);
        }
    }
    // SAFETY: forwarded contract.
    unsafe { alloc_in(heap, class) }
}

/// Allocate a block of class `class` from `heap`.
///
/// # Safety
/// `heap` is the calling thread's heap, or a shard heap whose lock the
/// caller holds; `class < NUM_CLASSES`.
#[inline]
pub unsafe fn alloc_in(heap: *mut Heap, class: usize) -> *mut u8 {
    // SAFETY: class < NUM_CLASSES (contract); the heap's slabs are valid
    // and only we pop (contract).
    unsafe {
        let slab = *(*heap).local.current.get_unchecked(class);
        let b = (*slab).pop();
        if !b.is_null() {
            return b.cast();
        }
        // Blocks freed here since the last refill: take them without the
        // slow path (a LIFO loop on a class with few blocks per page, as
        // every medium class, would otherwise take it on every call). A
        // thread heap still counts the refill as a slow call, so upkeep
        // and remote frees are not put off.
        if !(*slab).local_free.is_null() {
            if !crate::shared_heap::owns(heap as usize) {
                let h = &mut (*heap).local;
                h.slow_calls = h.slow_calls.wrapping_add(1);
                if h.slow_calls % 64 == 0 {
                    upkeep();
                    drain_remote(heap);
                }
            }
            (*slab).free = (*slab).local_free;
            (*slab).local_free = null_mut();
            return (*slab).pop().cast();
        }
        alloc_slow(heap, class)
    }
}

/// Entries of a heap's slab cache (a power of two).
pub const SLAB_CACHE_LEN: usize = 64;
/// A slab cache entry naming no slab (no granule starts at address 1).
const SLAB_CACHE_EMPTY: usize = 1;

#[inline(always)]
fn slab_cache_index(addr: usize) -> usize {
    (addr >> crate::size_class::GRANULE_SHIFT) & (SLAB_CACHE_LEN - 1)
}

impl HeapLocal {
    /// Let frees of `s`'s blocks skip the page map. Only for a slab of
    /// this heap on `avail`, with no owner flag (not full, instrumented or
    /// holding interior pointers).
    #[inline(always)]
    fn cache_slab(&mut self, s: *mut Slab) {
        self.slab_cache[slab_cache_index(s as usize)] = s as usize;
    }

    /// Forget `s` in the slab cache (it is about to become full, flagged,
    /// released or given up).
    #[inline]
    fn uncache_slab(&mut self, s: *mut Slab) {
        let e = &mut self.slab_cache[slab_cache_index(s as usize)];
        if *e == s as usize {
            *e = SLAB_CACHE_EMPTY;
        }
    }
}

/// The free fast path: `p` lies in the first granule of a slab in the
/// heap's slab cache. Then it is a block of our own slab, with no flag:
/// check the double-free key, push on `local_free`. False when the cache
/// has no such slab (the caller then looks `p` up in the page map).
///
/// Invariant of the cache: every entry is the header of a slab of `heap`
/// on one of its `avail` lists whose owner word is exactly `heap` (no
/// flags). Entries are added by [`free`] when the page map found such a
/// slab, and removed wherever a slab stops being one: moved to the full
/// list, marked interior, released, or the heap given up.
///
/// About a dozen instructions instead of the page map's two dependent
/// loads and their bound and null tests plus the owner compare.
///
/// # Safety
/// `heap` must be the calling thread's heap (`tls::heap()`); `p` any
/// value passed to `free`.
#[inline(always)]
pub unsafe fn free_cached(heap: *mut Heap, p: *mut u8) -> bool {
    let base = p as usize & !(GRANULE - 1);
    // SAFETY: the heap is ours; the index is masked below the length.
    let hit = unsafe {
        *(*heap)
            .local
            .slab_cache
            .get_unchecked(slab_cache_index(base))
            == base
    };
    if !hit {
        return false;
    }
    let slab = base as *mut Slab;
    let b = p.cast::<Block>();
    // SAFETY: by the cache invariant `slab` is a live, unflagged slab of
    // our heap and `p` lies in it, so it is one of its blocks (unless the
    // caller passes garbage, which the key check and the slow paths catch
    // where they can).
    unsafe {
        let key = (*slab).key;
        if marked_freed(b, key) {
            free_suspect(heap, slab, b);
        } else if (*slab).push_local(b, key) {
            slab_emptied(heap, slab);
        }
    }
    true
}

/// Free `p`, whose span header `head` the page map returned (the slab
/// cache missed).
///
/// A block of a slab of the calling thread's heap: compare the owner,
/// check the double-free key, push on `local_free`, and cache the slab.
///
/// # Safety
/// `heap` must be `tls::heap()`; `head` must be `PAGEMAP.lookup(p)`,
/// non-null.
#[inline(always)]
pub unsafe fn free(heap: *mut Heap, p: *mut u8, head: *mut SpanHead) {
    // SAFETY: `head` is a live span header (page map invariant). When the
    // owner is our heap the span is a slab of ours with no flags set (so
    // on an avail list, as the cache requires), and `p` is one of its
    // blocks (unless the caller passes garbage, which the key check and
    // the slow paths catch where they can).
    unsafe {
        if (*head).owner.load(Ordering::Relaxed) == heap as usize {
            let slab = head.cast::<Slab>();
            let b = p.cast::<Block>();
            let key = (*slab).key;
            if marked_freed(b, key) {
                return free_suspect(heap, slab, b);
            }
            if (*slab).push_local(b, key) {
                slab_emptied(heap, slab);
            } else {
                (*heap).local.cache_slab(slab);
            }
        } else {
            free_slow(heap, p, head);
        }
    }
}

// ---------------------------------------------------------------------------
// Allocation slow path

/// The slow path of allocation: create the thread's heap, collect frees,
/// change slabs, adopt an abandoned slab, or take a new span.
#[cold]
#[inline(never)]
unsafe fn alloc_slow(mut heap: *mut Heap, class: usize) -> *mut u8 {
    if !is_real(heap) {
        heap = crate::runtime::create_thread_heap(heap == exited_heap());
        if heap.is_null() {
            crate::diag::set_errno(libc::ENOMEM);
            return null_mut();
        }
    }
    // Shard heaps run under their lock: no upkeep (their caller runs it
    // after unlocking), no remote queue, nothing abandoned to adopt (medium
    // slabs are never abandoned).
    let shared = crate::shared_heap::owns(heap as usize);
    // SAFETY: `heap` is the calling thread's live heap, or a shard heap
    // whose lock we hold.
    unsafe {
        let h = &mut (*heap).local;
        if !shared {
            h.slow_calls = h.slow_calls.wrapping_add(1);
            if h.slow_calls % 64 == 0 {
                upkeep();
            }
            drain_remote(heap);
        }
        if let Some(b) = pop_from_avail(h, class) {
            return b;
        }
        let adopt_tries = if shared { 0 } else { 4 };
        for _ in 0..adopt_tries {
            match adopt_abandoned(heap, class) {
                Some(()) => {
                    if let Some(b) = pop_from_avail(h, class) {
                        return b;
                    }
                }
                None => break,
            }
        }
        let span = match SPANS.acquire(SLAB_GRANULES[class] as usize, class as u32) {
            Some(s) => s,
            None => {
                crate::diag::set_errno(libc::ENOMEM);
                return null_mut();
            }
        };
        let s = Slab::init(span.as_ptr(), class, h.owner_word);
        SLABS_LIVE[class].fetch_add(1, Ordering::Relaxed);
        h.avail[class].push_front(s);
        set_current(h, class);
        (*s).refill(free_key());
        (*s).pop().cast()
    }
}

/// Medium classes (those at and above [`SHARED_FROM`]).
const MCACHE_CLASSES: usize = NUM_CLASSES - SHARED_FROM;
/// Blocks a thread's medium cache keeps per class.
const MCACHE_MAX: u8 = 4;
/// Bytes a thread's medium cache keeps in all: small enough that threads
/// do not rebuild the per-thread high-water marks the per-CPU heaps
/// removed (churn: 4 threads at once, 1,000s over the run), large enough
/// that a thread freeing and allocating medium blocks of a few sizes
/// skips the lock.
pub const MCACHE_BYTES: u32 = 32 << 10;

/// Keep `b`, a medium block the calling thread frees, in its medium cache
/// if there is room. `heap` is the calling thread's heap.
unsafe fn mcache_push(heap: *mut Heap, slab: *mut Slab, b: *mut Block, key: usize) -> bool {
    // SAFETY: our own heap; `b` is a medium block being freed.
    unsafe {
        let h = &mut (*heap).local;
        let class = (*slab).class as usize;
        let i = class - SHARED_FROM;
        let size = CLASS_SIZE[class];
        if h.mcache_n[i] >= MCACHE_MAX || h.mcache_bytes + size > MCACHE_BYTES {
            return false;
        }
        (*b).next = h.mcache[i];
        mark_freed(b, key);
        h.mcache[i] = b;
        h.mcache_n[i] += 1;
        h.mcache_bytes += size;
        true
    }
}

/// Give every block of `heap`'s medium cache back to its per-CPU heap
/// (thread exit, giving a heap up, `malloc_trim`). Takes shard locks: not
/// to be called with any other allocator lock held.
///
/// # Safety
/// `heap` is the calling thread's heap, or one nobody else uses.
pub unsafe fn flush_medium_cache(heap: *mut Heap) {
    // SAFETY: contract; cached blocks are live medium blocks of shard
    // slabs (checked double frees already), freed here with `user == 0`.
    unsafe {
        let h = &mut (*heap).local;
        for i in 0..MCACHE_CLASSES {
            let mut b = core::mem::replace(&mut h.mcache[i], null_mut());
            while !b.is_null() {
                let next = (*b).next;
                let slab = PAGEMAP.lookup(b as usize).cast::<Slab>();
                let owner = (*slab).head.owner.load(Ordering::Acquire) & !OWNER_FLAGS;
                crate::shared_heap::free(owner, slab, b, 0);
                b = next;
            }
            h.mcache_n[i] = 0;
        }
        h.mcache_bytes = 0;
    }
}

/// Periodic upkeep, every 64 slow paths of a thread heap and every 256
/// allocations from a per-CPU heap (never under a heap lock): purge idle
/// spans and cached large ranges, reclaim late heaps, give up heaps
/// parked too long.
pub fn upkeep() {
    SPANS.tick();
    crate::large::tick();
    crate::runtime::reclaim_late_heaps();
    crate::runtime::expire_parked(false);
}

/// Pop from the first slab of `avail[class]` that has a free block,
/// moving exhausted slabs to the full list.
unsafe fn pop_from_avail(h: &mut HeapLocal, class: usize) -> Option<*mut u8> {
    let key = free_key();
    loop {
        let s = h.avail[class].first;
        if s.is_null() {
            set_current(h, class);
            return None;
        }
        // SAFETY: `s` is a slab of this heap (list invariant).
        unsafe {
            if (*s).refill(key) {
                set_current(h, class);
                return Some((*s).pop().cast());
            }
            h.avail[class].remove(s);
            h.uncache_slab(s);
            (*s).head.owner.fetch_or(OWNER_FULL, Ordering::Relaxed);
            h.full.push_back(s);
        }
    }
}

/// Added to the `used` count of a heap's current slab of each class, so
/// that the free fast path never sees it reach zero: a malloc/free loop
/// on one block stays on the fast path instead of retiring and re-taking
/// its slab every time, and malloc need not count at all. When the slab
/// stops being current its count is recomputed.
pub const CURRENT_BIAS: u32 = 1 << 31;

/// Re-point `current[class]` (and its direct entries) at the first slab of
/// `avail[class]`, moving the bias from the old current slab to the new.
/// The old current slab must still be alive (on a list of this heap).
fn set_current(h: &mut HeapLocal, class: usize) {
    let new = if h.avail[class].first.is_null() {
        empty_slab_ptr()
    } else {
        h.avail[class].first
    };
    let old = h.biased[class];
    if old != new {
        // SAFETY: non-empty biased slabs are live slabs of this heap
        // (callers keep the old one alive until this call).
        unsafe {
            if old != empty_slab_ptr() {
                // malloc does not count on the current slab: count now.
                (*old).used = (*old).exact_used();
            }
            if new != empty_slab_ptr() {
                (*new).used += CURRENT_BIAS;
            }
        }
        h.biased[class] = new;
    }
    let published = if h.instrumented {
        empty_slab_ptr()
    } else {
        new
    };
    if h.current[class] == published {
        return;
    }
    h.current[class] = published;
    let bs = CLASS_SIZE[class] as usize;
    if bs <= DIRECT_MAX {
        let lo = if class == 0 {
            0
        } else {
            CLASS_SIZE[class - 1] as usize / MIN_ALIGN + 1
        };
        let hi = bs / MIN_ALIGN;
        for e in &mut h.direct[lo..=hi] {
            *e = published;
        }
    }
}

/// Make every class's current slab the empty slab, unbiasing the old ones.
fn clear_current(h: &mut HeapLocal) {
    let saved = core::mem::replace(&mut h.avail, [EMPTY_LIST; NUM_CLASSES]);
    for c in 0..NUM_CLASSES {
        set_current(h, c);
    }
    h.avail = saved;
}

/// Make a shard heap at `h`: empty, owner of the slabs it will create.
///
/// # Safety
/// `h` is a shard heap's (uninitialised) storage whose lock the caller
/// holds.
pub unsafe fn make_shared(h: *mut Heap) {
    // SAFETY: contract (exclusive access under the lock).
    unsafe {
        h.write(Heap::empty());
        (*h).local.owner_word = h as usize;
    }
}

/// Give back every slab of `h` without a live block, the current slabs
/// included (`malloc_trim`, on the shard heaps and the caller's heap).
///
/// # Safety
/// `h` is the calling thread's heap, or a shard heap whose lock the
/// caller holds.
pub unsafe fn release_empty(h: *mut Heap) {
    // SAFETY: contract; the slabs on `avail` are ours.
    unsafe {
        let h = &mut (*h).local;
        clear_current(h);
        for c in 0..NUM_CLASSES {
            let mut s = h.avail[c].first;
            while !s.is_null() {
                let next = (*s).next;
                if (*s).used == 0 {
                    h.avail[c].remove(s);
                    h.uncache_slab(s);
                    release_slab(s);
                }
                s = next;
            }
            set_current(h, c);
        }
    }
}

// ---------------------------------------------------------------------------
// Free slow paths

/// Slabs alive per class (kept always; slow paths only).
pub static SLABS_LIVE: [AtomicUsize; NUM_CLASSES] = [const { AtomicUsize::new(0) }; NUM_CLASSES];

/// The remote queue of a heap given up at thread exit: pushes fail and
/// the freeing thread looks up the slab's (new) owner again.
const REMOTE_CLOSED: *mut Block = 1 as *mut Block;

/// Called with every pointer of ours being freed, before it is released,
/// when instrumentation is on (set once by `insight` at start-up; in
/// instrumented mode every free reaches the slow path).
pub static FREE_HOOK: AtomicUsize = AtomicUsize::new(0);

/// Every free the fast path does not finish: large blocks, interior
/// pointers, full slabs, other threads' slabs, abandoned slabs, errors.
#[cold]
#[inline(never)]
unsafe fn free_slow(heap: *mut Heap, p: *mut u8, head: *mut SpanHead) {
    let hook = FREE_HOOK.load(Ordering::Relaxed);
    if hook != 0 {
        // SAFETY: only `insight` stores here, a `fn(*mut u8)`.
        let hook: fn(*mut u8) = unsafe { core::mem::transmute(hook) };
        hook(p);
    }
    // SAFETY: `head` is a live span header (page map invariant).
    let tag = unsafe { (*head).tag };
    match tag {
        TAG_SLAB => {}
        // SAFETY: a LARGE header heads a large block's mapping.
        TAG_LARGE => return unsafe { crate::large::free(p, head) },
        TAG_FREE => crate::diag::fatal(
            "free(): double free or invalid pointer (memory already freed)",
            p as usize,
        ),
        _ => crate::diag::fatal("free(): corrupted span header for", p as usize),
    }
    let slab = head.cast::<Slab>();
    // SAFETY: a SLAB header heads a slab span whose header fields other
    // than the free lists are stable while any of its blocks is live.
    let owner = unsafe { (*slab).head.owner.load(Ordering::Acquire) };
    // SAFETY: as above.
    let b = unsafe {
        match (*slab).block_containing(p as usize) {
            Some(b) if b == p as usize => b,
            Some(b) if owner & OWNER_INTERIOR != 0 => b,
            _ => crate::diag::fatal("free(): invalid pointer (not a block start)", p as usize),
        }
    };
    let shard = owner & !OWNER_FLAGS;
    if crate::shared_heap::owns(shard) {
        // SAFETY: `b` is a block of `slab`, which the shard owns for good.
        return unsafe { free_medium(heap, shard, slab, b as *mut Block, p as usize) };
    }
    // SAFETY: `b` is a block of `slab`.
    unsafe { dispatch_free(heap, slab, b as *mut Block, p as usize) }
}

/// Free block `b` of medium slab `slab`, owned by the shard heap at
/// `shard`: into the calling thread's medium cache if it has room, else
/// under the shard's lock (`user` as in [`dispatch_free`]; when it is not
/// 0, `heap` is the calling thread's heap).
///
/// # Safety
/// `shared_heap::owns(shard)`, which owns `slab`; `b` is one of its blocks.
#[inline]
unsafe fn free_medium(heap: *mut Heap, shard: usize, slab: *mut Slab, b: *mut Block, user: usize) {
    // SAFETY: contract.
    unsafe {
        if user != 0 {
            let key = free_key();
            // Every handout of a medium block (from a slab or a thread's
            // medium cache) clears the key word: a block holding the key
            // was freed and not handed out since.
            if marked_freed(b, key) {
                crate::diag::fatal("free(): double free", user);
            }
            if is_real(heap) && mcache_push(heap, slab, b, key) {
                return;
            }
        }
        crate::shared_heap::free(shard, slab, b, user)
    }
}

/// Free block `b` of `slab` wherever its owner is: here, in another
/// thread (its remote queue), or nowhere (abandoned, under the lock).
/// `user` is the pointer the program passed (it may be inside `b`, for
/// aligned blocks), named in error messages; 0 skips the double-free check
/// (blocks from remote queues were checked when first freed).
unsafe fn dispatch_free(heap: *mut Heap, slab: *mut Slab, b: *mut Block, user: usize) {
    let key = free_key();
    // Set once this call marked `b` free itself (a retry after a closed
    // queue then finds its own mark, not a double free).
    let mut marked_here = false;
    loop {
        // SAFETY: the slab is live while `b` is live.
        let owner = unsafe { (*slab).head.owner.load(Ordering::Acquire) };
        let h = owner & !OWNER_FLAGS;
        if h == heap as usize {
            // SAFETY: our own slab.
            return unsafe { free_in(heap, slab, b, user) };
        }
        if crate::shared_heap::owns(h) {
            // SAFETY: forwarded contract; shard slabs never change owner.
            return unsafe { free_medium(heap, h, slab, b, user) };
        }
        if h != 0 {
            // Another thread's heap: one CAS onto its remote queue. Heap
            // structs are never unmapped, so a stale owner is still safe to
            // push to; its next user re-dispatches.
            // A queue found closed belongs to a heap given up after we read
            // the owner: `abandon` changed the slab's owner before closing
            // the queue, so reading the owner again finds the new one.
            // A block whose key word already holds the key was freed
            // before and not handed out since (malloc clears the word):
            // a double free, the second from another thread. (Not for
            // blocks taken from remote queues, `user == 0`.)
            // SAFETY: `b` is a block of a live slab (contract).
            if user != 0 && !marked_here && unsafe { marked_freed(b, key) } {
                crate::diag::fatal("free(): double free", user);
            }
            marked_here = true;
            // SAFETY: `h` is (or was) a heap; `b` is a block we hand over.
            let pushed = unsafe {
                let target = &(*(h as *mut Heap)).remote;
                mark_freed(b, key);
                let mut old = target.load(Ordering::Acquire);
                loop {
                    if old == REMOTE_CLOSED {
                        break false;
                    }
                    (*b).next = old;
                    match target.compare_exchange_weak(old, b, Ordering::Release, Ordering::Acquire)
                    {
                        Ok(_) => break true,
                        Err(cur) => old = cur,
                    }
                }
            };
            if pushed {
                return;
            }
            continue;
        }
        // Abandoned: free under the lock, unless adopted meanwhile.
        let mut lists = ABANDONED.lock();
        // SAFETY: as above.
        if unsafe { (*slab).head.owner.load(Ordering::Acquire) } & !OWNER_FLAGS != 0 {
            continue;
        }
        // SAFETY: abandoned slabs are only touched under this lock.
        unsafe {
            if user != 0 && marked_freed(b, key) && (*slab).is_on_free_lists(b as usize) {
                drop(lists);
                crate::diag::fatal("free(): double free", user);
            }
            if (*slab).push_local(b, key) {
                lists[(*slab).class as usize].remove(slab);
                drop(lists);
                release_slab(slab);
            }
        }
        return;
    }
}

/// Free a block of one of our own slabs, whatever its flags (`user` as
/// in [`dispatch_free`]).
///
/// # Safety
/// `heap` is the calling thread's heap, or a shard heap whose lock the
/// caller holds; it owns `slab`; `b` is a block of `slab`.
pub unsafe fn free_in(heap: *mut Heap, slab: *mut Slab, b: *mut Block, user: usize) {
    let key = free_key();
    // SAFETY: our heap and slab; owner-thread-only fields.
    unsafe {
        if user != 0 && marked_freed(b, key) && (*slab).is_on_free_lists(b as usize) {
            crate::diag::fatal("free(): double free", user);
        }
        let h = &mut (*heap).local;
        if (*slab).head.owner.load(Ordering::Relaxed) & OWNER_FULL != 0 {
            h.full.remove(slab);
            (*slab).head.owner.fetch_and(!OWNER_FULL, Ordering::Relaxed);
            let class = (*slab).class as usize;
            h.avail[class].push_back(slab);
            if h.avail[class].first == slab {
                set_current(h, class);
            }
        }
        if (*slab).push_local(b, key) {
            slab_emptied(heap, slab);
        }
    }
}

/// The fast path found the double-free key in a block being freed: either
/// a double free, or user data that happens to equal the key.
#[cold]
#[inline(never)]
unsafe fn free_suspect(heap: *mut Heap, slab: *mut Slab, b: *mut Block) {
    // A block another thread freed waits in our remote queue with the key
    // set: look there too. Take the queue, walk it, put it back.
    // SAFETY: our own heap; the taken chain is ours until put back.
    unsafe {
        let chain = (*heap).remote.swap(null_mut(), Ordering::Acquire);
        if !chain.is_null() {
            let mut tail = chain;
            loop {
                if tail == b {
                    crate::diag::fatal("free(): double free", b as usize);
                }
                if (*tail).next.is_null() {
                    break;
                }
                tail = (*tail).next;
            }
            let mut old = (*heap).remote.load(Ordering::Relaxed);
            loop {
                (*tail).next = old;
                match (*heap).remote.compare_exchange_weak(
                    old,
                    chain,
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(cur) => old = cur,
                }
            }
        }
        // Our own slab (the fast path checked the owner).
        free_in(heap, slab, b, b as usize)
    }
}

/// A slab of ours reached `used == 0`: give it back. (The current slab
/// of a class reaches 0 only after 2^31 frees without a count, since
/// malloc does not count on it: then its bias is renewed instead.)
#[cold]
#[inline(never)]
unsafe fn slab_emptied(heap: *mut Heap, slab: *mut Slab) {
    // SAFETY: our heap and slab, on avail[class] (emptied slabs are never
    // on the full list: the full flag is cleared before the push).
    unsafe {
        let h = &mut (*heap).local;
        let class = (*slab).class as usize;
        if h.biased[class] == slab {
            (*slab).used = CURRENT_BIAS + (*slab).exact_used();
            return;
        }
        h.avail[class].remove(slab);
        h.uncache_slab(slab);
        release_slab(slab);
    }
}

unsafe fn release_slab(slab: *mut Slab) {
    // SAFETY: nobody uses the slab any more (callers).
    unsafe {
        SLABS_LIVE[(*slab).class as usize].fetch_sub(1, Ordering::Relaxed);
        let granules = (*slab).head.granules as usize;
        SPANS.release(NonNull::new_unchecked(slab.cast()), granules, (*slab).class);
    }
}

/// Collect the blocks other threads freed into our slabs.
unsafe fn drain_remote(heap: *mut Heap) {
    // SAFETY: `heap` is ours; the queue holds blocks handed over by CAS.
    unsafe {
        if (*heap).remote.load(Ordering::Relaxed).is_null() {
            return;
        }
        let mut b = (*heap).remote.swap(null_mut(), Ordering::Acquire);
        while !b.is_null() {
            let next = (*b).next;
            let slab = PAGEMAP.lookup(b as usize).cast::<Slab>();
            dispatch_free(heap, slab, b, 0);
            b = next;
        }
    }
}

// ---------------------------------------------------------------------------
// Abandoned slabs

/// Slabs of exited threads, per class.
pub static ABANDONED: Lock<[SlabListSend; NUM_CLASSES]> =
    Lock::new([SlabListSend(EMPTY_LIST); NUM_CLASSES]);

/// A slab list that may sit in a global (only touched under its lock).
#[derive(Clone, Copy)]
pub struct SlabListSend(SlabList);
// SAFETY: only accessed under the ABANDONED lock.
unsafe impl Send for SlabListSend {}

impl core::ops::Deref for SlabListSend {
    type Target = SlabList;
    fn deref(&self) -> &SlabList {
        &self.0
    }
}
impl core::ops::DerefMut for SlabListSend {
    fn deref_mut(&mut self) -> &mut SlabList {
        &mut self.0
    }
}

/// Take one abandoned slab of `class` into `heap`. `None`: there is none.
unsafe fn adopt_abandoned(heap: *mut Heap, class: usize) -> Option<()> {
    let s = {
        let mut lists = ABANDONED.lock();
        let s = lists[class].pop_front();
        if s.is_null() {
            return None;
        }
        // SAFETY: abandoned slab, taken off the list under the lock.
        unsafe {
            let flags = (*s).head.owner.load(Ordering::Relaxed) & OWNER_INTERIOR;
            (*s).head
                .owner
                .store((*heap).local.owner_word | flags, Ordering::Release);
        }
        s
    };
    // SAFETY: the slab is ours now; a remote free racing with the owner
    // change lands on our remote queue.
    unsafe { (*heap).local.avail[class].push_back(s) };
    Some(())
}

/// Give up a heap: its slabs are freed or abandoned, its remote queue
/// drained and closed, its struct returned to the pool.
///
/// # Safety
/// Nobody may use `heap` any more: the calling thread's own heap at its
/// exit, or a parked or late heap whose thread is gone, taken off its list.
pub unsafe fn abandon(heap: *mut Heap) {
    // SAFETY: the exiting thread still owns `heap`.
    unsafe {
        flush_medium_cache(heap);
        drain_remote(heap);
        let h = &mut (*heap).local;
        clear_current(h);
        h.slab_cache = [SLAB_CACHE_EMPTY; SLAB_CACHE_LEN];
        {
            // Lock order: ABANDONED, then the span cache (release_slab).
            let mut lists = ABANDONED.lock();
            for class in 0..=NUM_CLASSES {
                let list = if class == NUM_CLASSES {
                    &mut h.full
                } else {
                    &mut h.avail[class]
                };
                loop {
                    let s = list.pop_front();
                    if s.is_null() {
                        break;
                    }
                    if (*s).used == 0 {
                        release_slab(s);
                        continue;
                    }
                    let flags = (*s).head.owner.load(Ordering::Relaxed) & OWNER_INTERIOR;
                    (*s).head.owner.store(flags, Ordering::Release);
                    lists[(*s).class as usize].push_back(s);
                }
            }
        }
        // Close the queue: blocks pushed while we abandoned are freed here
        // (their slabs are abandoned now: dispatch frees them under the
        // lock); later pushers find it closed and look again.
        let mut b = (*heap).remote.swap(REMOTE_CLOSED, Ordering::AcqRel);
        while !b.is_null() {
            let next = (*b).next;
            let slab = PAGEMAP.lookup(b as usize).cast::<Slab>();
            dispatch_free(heap, slab, b, 0);
            b = next;
        }
        crate::runtime::heap_pool_put(heap);
    }
}

/// Make a fresh heap struct in place; `instrumented` routes all its
/// allocations and frees through the slow paths.
///
/// # Safety
/// `h` must point to writable memory for a `Heap` nobody else uses (a
/// pooled heap's queue is closed and empty).
pub unsafe fn init_heap(h: *mut Heap, instrumented: bool) {
    // SAFETY: contract.
    unsafe {
        (*h).remote.store(null_mut(), Ordering::Release);
        for e in (*h).local.direct.iter_mut() {
            *e = empty_slab_ptr();
        }
        (*h).local.slab_cache = [SLAB_CACHE_EMPTY; SLAB_CACHE_LEN];
        for e in (*h).local.current.iter_mut() {
            *e = empty_slab_ptr();
        }
        for l in (*h).local.avail.iter_mut() {
            *l = EMPTY_LIST;
        }
        (*h).local.full = EMPTY_LIST;
        for e in (*h).local.biased.iter_mut() {
            *e = empty_slab_ptr();
        }
        (*h).local.instrumented = instrumented;
        (*h).local.owner_word = h as usize | if instrumented { OWNER_INSTR } else { 0 };
        (*h).local.in_hook = false;
        (*h).local.pool_next = null_mut();
        (*h).local.slow_calls = 0;
        (*h).local.shard_uses = 0;
        (*h).local.mcache = [null_mut(); MCACHE_CLASSES];
        (*h).local.mcache_n = [0; MCACHE_CLASSES];
        (*h).local.mcache_bytes = 0;
    }
}

/// Take over a parked heap: its slabs, current slabs and remote queue
/// are as its last thread left them; blocks freed meanwhile wait in the
/// queue for the next slow path.
///
/// # Safety
/// `h` must be a parked heap taken off the parked list.
pub unsafe fn unpark(h: *mut Heap) {
    // SAFETY: contract.
    unsafe {
        (*h).local.in_hook = false;
        (*h).local.pool_next = null_mut();
        (*h).local.shard_uses = 0;
    }
}

/// The per-CPU heap (shard index) the calling thread should use: asked of
/// the CPU once per `every` medium allocations and kept in the thread's
/// heap meanwhile (a thread that moved to another CPU keeps its old shard
/// for a while: that costs locality, never correctness). `cpu` asks the
/// CPU.
///
/// # Safety
/// `heap` must be the calling thread's heap.
#[inline]
pub unsafe fn shard_hint(heap: *mut Heap, every: u32, cpu: impl Fn() -> u32) -> u32 {
    if !is_real(heap) {
        return cpu();
    }
    // SAFETY: our own heap (contract).
    unsafe {
        let h = &mut (*heap).local;
        if h.shard_uses == 0 {
            h.shard = cpu();
            h.shard_uses = every;
        }
        h.shard_uses -= 1;
        h.shard
    }
}

/// When heap `h` was parked (see `runtime::heap_park`).
///
/// # Safety
/// `h` must be a heap nobody uses, on (or being put on) the parked list,
/// under the pool lock.
pub unsafe fn parked_ms(h: *mut Heap) -> *mut u64 {
    // SAFETY: contract.
    unsafe { &mut (*h).local.parked_ms }
}

/// The pool link of a heap struct.
///
/// # Safety
/// `h` must be a heap struct in the pool (or being put there).
pub unsafe fn pool_next(h: *mut Heap) -> *mut *mut Heap {
    // SAFETY: contract.
    unsafe { &mut (*h).local.pool_next }
}

/// Mark the slab holding `p` as holding interior (aligned) pointers, so
/// its frees take the slow path that maps them to block starts.
///
/// # Safety
/// `p` must be a block just allocated by the calling thread (from its heap
/// or its CPU's shared heap).
pub unsafe fn mark_interior(p: *mut u8) {
    let head = PAGEMAP.lookup(p as usize);
    let heap = crate::tls::heap();
    // SAFETY: `p` is a live slab block of ours (contract); the cache is
    // our own heap's (a shard slab is never in it).
    unsafe {
        if is_real(heap) {
            (*heap).local.uncache_slab(head.cast());
        }
        (*head).owner.fetch_or(OWNER_INTERIOR, Ordering::Relaxed);
    }
}

/// Usable size of a slab block at `p` (which may be interior).
///
/// # Safety
/// `head` must be the live slab header of `p`'s span.
pub unsafe fn usable_size(p: usize, head: *mut SpanHead) -> usize {
    let slab = head.cast::<Slab>();
    // SAFETY: contract.
    unsafe {
        match (*slab).block_containing(p) {
            Some(b) => b + (*slab).block_size as usize - p,
            None => 0,
        }
    }
}

/// Find the class for an aligned request served from a slab without
/// interior pointers: the smallest class >= `size` whose block size is a
/// multiple of `align` (block addresses are `span + 128 + i * size`, so
/// `align <= 128` suffices).
pub fn class_for_aligned(size: usize, align: usize) -> Option<usize> {
    if align > crate::size_class::SLAB_HEADER {
        return None;
    }
    (class_of(size.max(1))..NUM_CLASSES).find(|&c| block_size(c) % align == 0)
}

const _: () = assert!(GRANULE % crate::size_class::SLAB_HEADER == 0);

/// Check every invariant of the calling thread's heap and its slabs;
/// abort with a message naming the first violation. Returns the number of
/// slabs checked. Meant for tests, after every operation.
pub fn check_thread_heap() -> usize {
    let heap = crate::tls::heap();
    if !is_real(heap) {
        return 0;
    }
    let fail = |what: &str, s: *mut Slab| -> ! { crate::diag::fatal(what, s as usize) };
    let mut n = 0;
    // SAFETY: the calling thread owns its heap and slabs; lists are valid
    // unless the invariants are already broken, which is what we look for.
    unsafe {
        let h = &(*heap).local;
        for class in 0..=NUM_CLASSES {
            let list = if class == NUM_CLASSES {
                &h.full
            } else {
                &h.avail[class]
            };
            let mut s = list.first;
            let mut prev = null_mut();
            while !s.is_null() {
                n += 1;
                let sl = &*s;
                let owner = sl.head.owner.load(Ordering::Relaxed);
                if sl.head.tag != TAG_SLAB {
                    fail("check: slab without SLAB tag", s);
                }
                if owner & !OWNER_FLAGS != heap as usize {
                    fail("check: slab on a heap list owned by another heap", s);
                }
                if (owner & OWNER_FULL != 0) != (class == NUM_CLASSES) {
                    fail("check: full flag does not match the list", s);
                }
                if class < NUM_CLASSES && sl.class as usize != class {
                    fail("check: slab on the wrong class list", s);
                }
                if sl.prev != prev {
                    fail("check: broken back link", s);
                }
                let bs = sl.block_size as usize;
                let count = |mut b: *mut Block| {
                    let mut k = 0usize;
                    while !b.is_null() {
                        let a = b as usize;
                        if a < sl.first_block()
                            || a >= sl.bump()
                            || (a - sl.first_block()) % bs != 0
                        {
                            fail("check: free list holds a foreign block", s);
                        }
                        if !marked_freed(b, free_key()) {
                            fail("check: free block without the key (use after free?)", s);
                        }
                        k += 1;
                        if k > sl.capacity as usize {
                            fail("check: free list cycle", s);
                        }
                        b = (*b).next;
                    }
                    k
                };
                let uncarved = (sl.end - sl.bump()) / bs;
                if (owner & OWNER_INSTR != 0) != h.instrumented {
                    fail("check: instrumentation flag does not match the heap", s);
                }
                let is_current = class < NUM_CLASSES && h.biased[class] == s;
                if is_current != (sl.used >= CURRENT_BIAS / 2) {
                    fail("check: current bias on the wrong slab", s);
                }
                // malloc does not count on the current slab: recount it.
                let used = if is_current { sl.exact_used() } else { sl.used };
                let total = used as usize + count(sl.free) + count(sl.local_free) + uncarved;
                if total != sl.capacity as usize {
                    fail("check: used + free + local_free + uncarved != capacity", s);
                }
                prev = s;
                s = sl.next;
            }
            if list.last != prev {
                fail("check: list tail is wrong", prev);
            }
            if class < NUM_CLASSES {
                let want = if list.first.is_null() {
                    empty_slab_ptr()
                } else {
                    list.first
                };
                if h.current[class] != want {
                    fail(
                        "check: current slab is not the first available",
                        h.current[class],
                    );
                }
            }
        }
        for (i, &e) in h.direct.iter().enumerate() {
            if e != h.current[crate::size_class::DIRECT_CLASS[i] as usize] {
                fail("check: direct table out of step with current", e);
            }
        }
        for (i, &e) in h.slab_cache.iter().enumerate() {
            if e == SLAB_CACHE_EMPTY {
                continue;
            }
            let s = e as *mut Slab;
            if slab_cache_index(e) != i {
                fail("check: slab cache entry in the wrong place", s);
            }
            let listed = h.avail.iter().any(|l| {
                let mut x = l.first;
                while !x.is_null() && x != s {
                    x = (*x).next;
                }
                !x.is_null()
            });
            if !listed {
                fail("check: slab cache names a slab not on an avail list", s);
            }
            if (*s).head.owner.load(Ordering::Relaxed) != heap as usize {
                fail("check: slab cache names a flagged slab", s);
            }
        }
        let mut bytes = 0u32;
        for i in 0..MCACHE_CLASSES {
            let mut k = 0u8;
            let mut b = h.mcache[i];
            while !b.is_null() {
                let s = PAGEMAP.lookup(b as usize).cast::<Slab>();
                if s.is_null()
                    || (*s).class as usize != SHARED_FROM + i
                    || !crate::shared_heap::owns(
                        (*s).head.owner.load(Ordering::Relaxed) & !OWNER_FLAGS,
                    )
                    || (*s).block_containing(b as usize) != Some(b as usize)
                {
                    fail(
                        "check: medium cache holds a block of the wrong kind",
                        b.cast(),
                    );
                }
                if !marked_freed(b, free_key()) {
                    fail("check: medium cache block without the key", b.cast());
                }
                k += 1;
                if k > MCACHE_MAX {
                    fail("check: medium cache over its per-class bound", b.cast());
                }
                bytes += CLASS_SIZE[SHARED_FROM + i];
                b = (*b).next;
            }
            if k != h.mcache_n[i] {
                fail("check: medium cache count is wrong", h.mcache[i].cast());
            }
        }
        if bytes != h.mcache_bytes || bytes > MCACHE_BYTES {
            fail("check: medium cache bytes are wrong", null_mut());
        }
    }
    n
}
