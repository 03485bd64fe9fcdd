//! The heap structure: size class -> current slab, the slab lists, the
//! slab cache of the free fast path, the medium cache, the
//! remote queue;
//! the two static empty heaps; how the current slab of a class changes.
//!
//! A thread heap is touched by its thread only, except `remote`, where
//! other threads push blocks they free (one CAS). The owner's part and
//! the queue are separate fields so the owner can hold `&mut` to its part
//! while other threads CAS on the queue.
//!
//! Invariants of a heap `h` (owner thread, or the thread giving it up):
//! - `current[c]` is the first slab of `avail[c]`, or the empty slab
//!   (always the empty slab when instrumented); `direct[i] ==
//!   current[DIRECT_CLASS[i]]`;
//! - `biased[c]` is the first slab of `avail[c]` (or the empty slab) and
//!   is the only slab of the class with `current` set, its `used` a
//!   countdown of frees from [`CURRENT_TICKS`] (restarted at one less
//!   when it reaches 0: still at [`CURRENT_TICKS`], nothing was freed
//!   into the slab since it became current, holding a block in use);
//! - a slab on `avail[c]` other than the current one has `used > 0`
//!   unless `lingering` is set (it stopped being current, empty);
//! - every slab on `avail[c]` or `full` has `owner & !OWNER_FLAGS == h`,
//!   and `OWNER_FULL` exactly when it is on `full`;
//! - every slab cache entry is [`SLAB_CACHE_EMPTY`] or the first-block
//!   address of a one-granule slab on some `avail[c]` whose owner word is
//!   exactly `h`;
//! - `mcache_bytes == sum over medium classes of mcache_n[i] * size`,
//!   `mcache_n[i] <= MCACHE_MAX`, `mcache_bytes <= MCACHE_BYTES`;
//! - `spares_n <= SPARES`, and 0 unless `keeps_spares` (thread
//!   heaps); each of `spares[..spares_n]` is a one-granule
//!   span with tag `TAG_FREE` and owner 0, on no list and in no slab
//!   cache entry;
//!
//! `heap::check` verifies all of them.
//!
//! Uses: `core::pagemap`, `core::size_class`, `core::slab`,
//! `heap::quarantine`, `heap::remote`, `util::list`.

use crate::core::pagemap::{SpanHead, TAG_SLAB};
use crate::core::size_class::{CLASS_SIZE, DIRECT_LEN, DIRECT_MAX, MIN_ALIGN, NUM_CLASSES};
use crate::core::slab::{Block, Slab, OWNER_INSTR};
use crate::util::list::List;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicUsize};

/// A list of slabs through their `next`/`prev` links.
pub(crate) type SlabList = List<Slab>;

pub(crate) const EMPTY_LIST: SlabList = SlabList::EMPTY;

/// Medium classes (those at and above `SHARED_FROM`): served by the
/// per-CPU heaps, cached a few at a time per thread.
pub(crate) const MCACHE_CLASSES: usize = NUM_CLASSES - crate::core::size_class::SHARED_FROM;
/// Blocks a thread's medium cache keeps per class.
pub(crate) const MCACHE_MAX: u8 = 4;
/// Bytes a thread's medium cache keeps in all: small enough that threads
/// do not rebuild the per-thread high-water marks the per-CPU heaps
/// removed, large enough that a thread freeing and allocating medium
/// blocks of a few sizes skips the lock.
pub(crate) const MCACHE_BYTES: u32 = 32 << 10;

/// Entries of a heap's slab cache (a power of two).
pub(crate) const SLAB_CACHE_LEN: usize = 64;
/// A slab cache entry naming no slab: the first-block address of the
/// empty slab, whose block-start test fails for every address.
pub(crate) const SLAB_CACHE_EMPTY: *const u8 = slab_cache_entry(empty_slab_ptr());

/// What the slab cache holds for slab `s`: the address of its first
/// block (the free fast path measures offsets from it).
#[inline(always)]
pub(crate) const fn slab_cache_entry(s: *const Slab) -> *const u8 {
    (s as *const u8).wrapping_add(crate::core::size_class::SLAB_HEADER)
}

pub(crate) use crate::core::slab::CURRENT_TICKS;

/// Empty slab spans a thread heap keeps at most (`heap::slabs`: spares).
pub(crate) const SPARES: usize = 4;

/// A heap: the part only its owner touches, then the queue other
/// threads push to.
#[repr(C)]
pub(crate) struct Heap {
    /// Owner state.
    pub(crate) local: HeapLocal,
    /// Blocks freed by other threads, linked through their first word.
    pub(crate) remote: AtomicPtr<Block>,
}

/// The owner part of a heap.
#[repr(C)]
pub(crate) struct HeapLocal {
    /// `(size + 15) / 16` -> current slab of that size's class, for
    /// requests up to 1 KiB: the malloc fast path is one load from here.
    pub(crate) direct: [*mut Slab; DIRECT_LEN],
    /// The slab cache of the free fast path: the first-block addresses of
    /// slabs of this heap that a free may push to without a page-map
    /// lookup, indexed by granule number modulo [`SLAB_CACHE_LEN`].
    pub(crate) slab_cache: [*const u8; SLAB_CACHE_LEN],
    /// Current slab of each class.
    pub(crate) current: [*mut Slab; NUM_CLASSES],
    /// Slabs of each class with (or maybe with) free blocks.
    pub(crate) avail: [SlabList; NUM_CLASSES],
    /// Slabs without a free block.
    pub(crate) full: SlabList,
    /// The slab of each class marked `current`: the first of
    /// `avail[c]`. Equal to `current[c]` unless the heap is instrumented.
    pub(crate) biased: [*mut Slab; NUM_CLASSES],
    /// What this heap's slabs hold in `owner`: its address, plus
    /// `OWNER_INSTR` when instrumented (so frees miss the fast path too).
    pub(crate) owner_word: usize,
    /// Statistics, leak checks or tracing are on: no fast paths.
    pub(crate) instrumented: bool,
    /// An instrumentation hook runs on this thread (see `heap::hook`).
    pub(crate) in_hook: bool,
    /// Link in the heap pool's free or parked list.
    pub(crate) pool_next: *mut Heap,
    /// When the heap was parked.
    pub(crate) parked_ms: u64,
    /// Slow paths taken, for periodic upkeep.
    pub(crate) slow_calls: u32,
    /// The medium cache: per medium class, a few blocks this thread freed,
    /// linked through their first word and carrying the free mark.
    pub(crate) mcache: [*mut Block; MCACHE_CLASSES],
    pub(crate) mcache_n: [u8; MCACHE_CLASSES],
    pub(crate) mcache_bytes: u32,
    /// The heap's periodic upkeep is due (its current slab of some class
    /// counted [`CURRENT_TICKS`] frees): a thread whose mallocs and frees
    /// all stay on the fast paths never takes the slow path that counts
    /// towards it (`heap::alloc::upkeep_if_due`).
    pub(crate) upkeep_due: bool,
    /// The per-CPU heap this thread takes medium blocks from, and how many
    /// more it takes before asking the CPU again (0: ask now).
    pub(crate) shard: u32,
    pub(crate) shard_uses: u32,
    /// A slab stopped being current with no block in use and stayed on
    /// its `avail` list (every other slab goes back the moment it empties):
    /// `heap::slabs::release_empty` walks the lists only then.
    pub(crate) lingering: bool,
    /// Empty one-granule slab spans kept for the heap's next slabs instead
    /// of the span cache (`heap::slabs`: spares), newest last.
    pub(crate) spares: [*mut Slab; SPARES],
    /// How many of `spares` are held.
    pub(crate) spares_n: u8,
    /// A spare was kept or taken since the last upkeep.
    pub(crate) spares_taken: bool,
    /// Upkeeps in a row without a spare kept or taken.
    pub(crate) spares_idle: u8,
    /// The heap keeps spares: a thread heap (per-CPU heaps share the
    /// span cache).
    pub(crate) keeps_spares: bool,
    /// Per small class, the signature of its current slab when
    /// `heap::slabs::retire_idle_slabs` last looked (0: never).
    pub(crate) idle_sig: [usize; crate::core::size_class::SHARED_FROM],
    /// Per small class, the blocks that look last found in use in its
    /// current slab (frees it needs before it can be empty; 0: none).
    pub(crate) idle_need: [u16; crate::core::size_class::SHARED_FROM],
    /// The secure build's quarantine of blocks this thread freed (empty
    /// in the default build).
    pub(crate) quarantine: crate::heap::quarantine::Quarantine,
    /// Blocks this thread freed into other threads' slabs, batched per
    /// owner (see `heap::remote`).
    pub(crate) outbox: crate::heap::remote::Outbox,
}

impl Heap {
    /// A heap whose every class points at the empty slab, owned by nobody
    /// (the static empty and exited heaps, and a new shard heap).
    pub(crate) const fn empty() -> Heap {
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
                upkeep_due: false,
                shard: 0,
                shard_uses: 0,
                lingering: false,
                spares: [null_mut(); SPARES],
                spares_n: 0,
                spares_taken: false,
                spares_idle: 0,
                keeps_spares: false,
                idle_sig: [0; crate::core::size_class::SHARED_FROM],
                idle_need: [0; crate::core::size_class::SHARED_FROM],
                quarantine: crate::heap::quarantine::Quarantine::EMPTY,
                outbox: crate::heap::remote::Outbox::new(),
            },
            remote: AtomicPtr::new(null_mut()),
        }
    }
}

/// A static that holds raw pointers and is shared between threads.
#[repr(transparent)]
pub(crate) struct StaticCell<T>(pub(crate) T);
// SAFETY: the wrapped statics are either never written (the empty slab) or
// written only through atomics (the empty heaps' remote queues stay null:
// no slab is ever owned by an empty heap).
unsafe impl<T> Sync for StaticCell<T> {}

/// The slab of the empty heap: no free block (its lists end at once),
/// owned by nobody, no block start in it, never written. Padded to a
/// slab header's size: the slab cache's empty entry points just past it.
#[repr(C)]
pub(crate) struct EmptySlab {
    slab: Slab,
    pad: [u8; crate::core::size_class::SLAB_HEADER - core::mem::size_of::<Slab>()],
}

/// The empty slab.
pub(crate) static EMPTY_SLAB: StaticCell<EmptySlab> = StaticCell(EmptySlab {
    slab: Slab {
        head: SpanHead {
            tag: TAG_SLAB,
            granules: 0,
            owner: AtomicUsize::new(0),
        },
        free: empty_slab_ptr().cast(),
        local_free: empty_slab_ptr().cast(),
        link_key: 0,
        check_key: 0,
        magic: 0,
        limit: 0,
        step: 0,
        used: 0,
        capacity: 0,
        block_size: 0,
        class: 0,
        current: false,
        guarded: false,
        bump: AtomicUsize::new(0),
        end: 0,
        next: null_mut(),
        prev: null_mut(),
        abandoned_in: 0,
        canary: 0,
    },
    pad: [0; crate::core::size_class::SLAB_HEADER - core::mem::size_of::<Slab>()],
});

/// Address of the empty slab.
pub(crate) const fn empty_slab_ptr() -> *mut Slab {
    &EMPTY_SLAB.0.slab as *const Slab as *mut Slab
}

/// The heap every thread starts with: all its slabs are the empty slab,
/// so every allocation takes the slow path, which creates a real heap.
/// (Named by the thread-local word's initial value in `tls`.)
pub(crate) static EMPTY_HEAP: StaticCell<Heap> = StaticCell(Heap::empty());

/// Address of the empty heap.
#[inline(always)]
pub(crate) fn empty_heap() -> *mut Heap {
    &EMPTY_HEAP.0 as *const Heap as *mut Heap
}

/// The heap of a thread whose exit destructor already ran: empty like
/// [`EMPTY_HEAP`], but a heap created from it is a *late* heap.
static EXITED_HEAP: StaticCell<Heap> = StaticCell(Heap::empty());

/// Address of the exited-thread heap.
#[inline]
pub(crate) fn exited_heap() -> *mut Heap {
    &EXITED_HEAP.0 as *const Heap as *mut Heap
}

/// Is `h` a heap a thread owns (not one of the two static empty ones)?
#[inline]
pub(crate) fn is_thread_heap(h: *mut Heap) -> bool {
    h != empty_heap() && h != exited_heap()
}

#[inline(always)]
pub(crate) fn slab_cache_index(addr: usize) -> usize {
    // On the low 32 bits: one 32-bit shift and mask, no copy of the
    // 64-bit address the page-map lookup also shifts.
    ((addr as u32 >> crate::core::size_class::GRANULE_SHIFT) as usize) & (SLAB_CACHE_LEN - 1)
}

impl HeapLocal {
    /// Let frees of `s`'s blocks skip the page map. Only for a slab of
    /// this heap on `avail`, with no owner flag.
    #[inline(always)]
    pub(crate) fn cache_slab(&mut self, s: *mut Slab) {
        self.slab_cache[slab_cache_index(s as usize)] = slab_cache_entry(s);
    }

    /// Forget `s` in the slab cache (it is about to become full, flagged,
    /// released or given up).
    #[inline]
    pub(crate) fn uncache_slab(&mut self, s: *mut Slab) {
        let e = &mut self.slab_cache[slab_cache_index(s as usize)];
        if *e == slab_cache_entry(s) {
            *e = SLAB_CACHE_EMPTY;
        }
    }

    /// Re-point `current[class]` (and its direct entries) at the first
    /// slab of `avail[class]`, moving the `current` mark (and the count of
    /// frees, see [`CURRENT_TICKS`]) from the old current slab to the new,
    /// whose count of blocks in use is recomputed. The old current slab
    /// must still be alive (on a list of this heap).
    pub(crate) fn set_current(&mut self, class: usize) {
        self.set_current_counted(class, None);
    }

    /// [`set_current`](Self::set_current), the old current slab's count
    /// of blocks in use given (`Some`: its caller counted it) or counted
    /// here by a walk of its lists (`None`).
    fn set_current_counted(&mut self, class: usize, old_used: Option<u32>) {
        let new = if self.avail[class].first.is_null() {
            empty_slab_ptr()
        } else {
            self.avail[class].first
        };
        let old = self.biased[class];
        if old != new {
            // SAFETY: non-empty biased slabs are live slabs of this heap
            // (callers keep the old one alive until this call).
            unsafe {
                if old != empty_slab_ptr() {
                    // malloc does not count on the current slab: count now.
                    (*old).used = old_used.unwrap_or_else(|| (*old).exact_used());
                    (*old).current = false;
                    self.lingering |= (*old).used == 0;
                }
                if new != empty_slab_ptr() {
                    (*new).used = CURRENT_TICKS;
                    (*new).current = true;
                }
            }
            self.biased[class] = new;
        }
        let published = if self.instrumented {
            empty_slab_ptr()
        } else {
            new
        };
        if self.current[class] == published {
            return;
        }
        self.current[class] = published;
        let bs = CLASS_SIZE[class] as usize;
        if bs <= DIRECT_MAX {
            let lo = if class == 0 {
                0
            } else {
                CLASS_SIZE[class - 1] as usize / MIN_ALIGN + 1
            };
            let hi = bs / MIN_ALIGN;
            for e in &mut self.direct[lo..=hi] {
                *e = published;
            }
        }
    }

    /// Make every class's current slab the empty slab (the old ones get
    /// their counts of blocks in use back).
    pub(crate) fn clear_current(&mut self) {
        for c in 0..NUM_CLASSES {
            self.clear_current_of(c, None);
        }
    }

    /// Make `class`'s current slab the empty slab (the old one gets its
    /// count of blocks in use back: `used` when its caller counted it,
    /// else counted here), until the next `set_current(class)`.
    pub(crate) fn clear_current_of(&mut self, class: usize, used: Option<u32>) {
        let saved = core::mem::replace(&mut self.avail[class], EMPTY_LIST);
        self.set_current_counted(class, used);
        self.avail[class] = saved;
    }
}

/// Make a fresh heap struct in place; `instrumented` routes all its
/// allocations and frees through the slow paths.
///
/// # Safety
/// `h` must point to writable memory for a `Heap` nobody else uses (a
/// pooled heap's queue is closed and empty).
pub(crate) unsafe fn init_heap(h: *mut Heap, instrumented: bool) {
    // SAFETY: contract.
    unsafe {
        h.write(Heap::empty());
        (*h).local.instrumented = instrumented;
        (*h).local.keeps_spares = true;
        (*h).local.owner_word = h as usize | if instrumented { OWNER_INSTR } else { 0 };
    }
}

/// Take over a parked heap: its current slabs and remote queue are as
/// its last thread left them (its other slabs and its spares went when it
/// was parked).
///
/// # Safety
/// `h` must be a parked heap taken off the parked list.
pub(crate) unsafe fn unpark(h: *mut Heap) {
    // SAFETY: contract.
    unsafe {
        (*h).local.in_hook = false;
        (*h).local.pool_next = null_mut();
        (*h).local.shard_uses = 0;
    }
}
