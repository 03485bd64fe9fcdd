//! Allocating: the malloc fast path (the class's hot stack, its top's
//! mark checked, else a table load and a pop), the thread heap's slow
//! path and its periodic upkeep, medium blocks through the thread's
//! medium cache or its CPU's heap, blocks for aligned requests, and large
//! blocks (which make idle slab spans go back when they take fresh pages).
//!
//! Uses: `core::large`, `core::pagemap`, `core::size_class`, `core::slab`, `core::span`,
//! `heap::abandoned`, `heap::free`, `heap::lifecycle`, `heap::medium`,
//! `heap::slabs`, `heap::tls`, `heap::types`, `os::errno`, `util::diag`.

use crate::core::pagemap::PAGEMAP;
use crate::core::size_class::{
    block_size, class_of, direct_index, DIRECT_MAX, NUM_CLASSES, SHARED_FROM,
};
use crate::core::slab::{Block, Slab, OWNER_INTERIOR};
use crate::heap::types::{exited_heap, is_thread_heap, Heap, HotRow};
use crate::heap::{abandoned, free, lifecycle, medium, slabs};
use core::ptr::null_mut;
use core::sync::atomic::Ordering;

/// Pop a block for a request of at most 1 KiB from the class's hot stack,
/// else from the slab the heap's direct table names; null when the fast
/// path cannot serve it (the caller then takes its slow path).
///
/// Fast path: 22 instructions from the hot stack or a slab (with
/// `api::libc::malloc`'s size test and thread-pointer load).
///
/// # Safety
/// `heap` must be the calling thread's heap (`tls::heap()`).
#[inline(always)]
pub(crate) unsafe fn try_alloc_direct(heap: *mut Heap, size: usize) -> *mut u8 {
    debug_assert!(size <= DIRECT_MAX);
    // SAFETY: direct_index(size) < DIRECT_LEN for size <= DIRECT_MAX; the
    // heap's slabs are valid (heap invariant) and only this thread pops.
    unsafe {
        let i = direct_index(size);
        let off = *(*heap).local.hot_off.get_unchecked(i) as usize;
        let row = heap.cast::<u8>().add(off).cast::<HotRow>();
        let n = (*row).n;
        if n != 0 {
            return take_hot(row, n);
        }
        let slab = *(*heap).local.direct.get_unchecked(i);
        (*slab).pop().cast()
    }
}

/// The most recently freed block of small class `class` from the heap's
/// hot cache, or null.
///
/// # Safety
/// `heap` is the calling thread's heap; `class < HOT_CLASSES`.
#[inline(always)]
pub(crate) unsafe fn hot_pop(heap: *mut Heap, class: usize) -> *mut u8 {
    debug_assert!(class < crate::heap::types::HOT_CLASSES);
    // SAFETY: contract: our own heap; `n <= HOT_MAX` and the entries
    // below it are cached blocks of ours (heap invariant).
    unsafe {
        let row = (*heap).local.hot.get_unchecked_mut(class);
        if row.n == 0 {
            return null_mut();
        }
        let b = take_hot(row, row.n);
        if b.is_null() {
            hot_block_changed(row.b[row.n - 1]);
        }
        b
    }
}

/// Hand out the top of hot row `row`, which holds `n > 0` blocks; null
/// when that block lost its mark (then it stays where it is, and the slow
/// path, which `malloc` takes on null, stops the program in [`hot_pop`]:
/// the fast path then keeps no frame for a call).
///
/// # Safety
/// `row` is a hot row of the calling thread's heap; `n == (*row).n > 0`.
#[inline(always)]
unsafe fn take_hot(row: *mut HotRow, n: usize) -> *mut u8 {
    debug_assert!(n > 0 && n <= crate::heap::types::HOT_MAX);
    // SAFETY: contract: `b[..n]` are cached blocks of ours.
    unsafe {
        let b = *(*row).b.get_unchecked(n - 1);
        // Still marked? A small slab is one granule, its header at the
        // granule's start. A block written after its free, or cached twice
        // (freed again after a write wiped its mark, below the top of the
        // stack), stops the program here instead of reaching two owners.
        if !(*Slab::of_small_block(b)).is_hot_marked(b) {
            return null_mut();
        }
        (*row).n = n - 1;
        Slab::hand_out(b);
        b.cast()
    }
}

/// A block in the hot cache lost its mark: written after its free, or
/// in the cache twice and handed out once already.
#[cold]
#[inline(never)]
fn hot_block_changed(b: *mut Block) -> ! {
    // SAFETY: the block's slab header (`take_hot`).
    let bs = unsafe { (*Slab::of_small_block(b)).block_size } as usize;
    crate::util::diag::fatal_block(
        "malloc(): a freed block was written after free, or freed twice, at",
        b as usize,
        bs,
    )
}

/// After a free that may have filled the hot cache (`api::libc`'s and
/// `api::secure`'s free paths, the callers of `heap::free::free`): when
/// the cache took [`HOT_TICKS`] blocks since its last upkeep, run the
/// heap's periodic upkeep. A thread that frees and allocates in a FIFO
/// pattern may be served by the cache for good and never reach the slow
/// path that counts towards it.
///
/// # Safety
/// `heap` is the calling thread's heap (a static heap's count never
/// moves).
#[inline(always)]
pub(crate) unsafe fn hot_tick(heap: *mut Heap) {
    // SAFETY: contract.
    unsafe {
        if (*heap).local.hot_ticks <= 0 {
            renew_ticks(heap);
        }
    }
}

/// The hot cache's count ran out ([`hot_tick`], `heap::free::free_cached`):
/// renew it and run the heap's periodic upkeep.
///
/// # Safety
/// `heap` is the calling thread's heap.
#[cold]
#[inline(never)]
pub(crate) fn renew_ticks(heap: *mut Heap) {
    // SAFETY: contract.
    unsafe {
        (*heap).local.hot_ticks = crate::heap::types::HOT_TICKS;
        periodic_upkeep(heap);
    }
}

/// The heap's periodic upkeep (every 64 slow calls, and every
/// [`HOT_TICKS`] blocks its hot cache takes): the process-wide upkeep,
/// then its outbox sent and its remote queue collected.
///
/// # Safety
/// `heap` is the calling thread's heap.
#[cold]
#[inline(never)]
unsafe fn periodic_upkeep(heap: *mut Heap) {
    lifecycle::upkeep();
    // SAFETY: contract.
    unsafe {
        free::flush_outbox(heap);
        free::drain_remote(heap);
    }
}

/// Allocate a block of class `class`: from the thread's heap for small
/// classes, from the medium cache or the CPU's heap for medium ones.
/// Null (errno `ENOMEM`) when out of memory.
///
/// # Safety
/// As [`try_alloc_direct`]; `class < NUM_CLASSES`; the process is
/// initialised.
#[inline]
pub(crate) unsafe fn alloc_class(heap: *mut Heap, class: usize) -> *mut u8 {
    debug_assert!(class < NUM_CLASSES);
    if class >= SHARED_FROM {
        // SAFETY: a medium class (contract); a thread heap is the calling
        // thread's own.
        unsafe {
            if is_thread_heap(heap) {
                let b = medium::cache_pop(heap, class);
                if !b.is_null() {
                    return b;
                }
            }
            let (b, upkeep_due) = medium::alloc(class);
            if upkeep_due {
                lifecycle::upkeep();
            }
            return b;
        }
    }
    // SAFETY: class < NUM_CLASSES (contract); the heap's slabs are valid
    // and only we pop.
    unsafe {
        let b = hot_pop(heap, class);
        if !b.is_null() {
            return b;
        }
        let slab = *(*heap).local.current.get_unchecked(class);
        let b = (*slab).pop();
        if !b.is_null() {
            return b.cast();
        }
        // Blocks freed here since the last refill: take them without the
        // slow path, but count it as a slow call, so upkeep and remote
        // frees are not put off.
        if (*slab).local_free != (*slab).terminator() {
            if count_slow_call(heap) {
                periodic_upkeep(heap);
            }
            return slabs::pop_local_free(slab);
        }
        alloc_slow(heap, class)
    }
}

/// Count a slow call of the thread heap; true every 64th (upkeep due).
///
/// # Safety
/// `heap` is the calling thread's heap.
#[inline]
unsafe fn count_slow_call(heap: *mut Heap) -> bool {
    // SAFETY: contract.
    let h = unsafe { &mut (*heap).local };
    h.slow_calls = h.slow_calls.wrapping_add(1);
    h.slow_calls % 64 == 0
}

/// The slow path of allocation: create the thread's heap, collect remote
/// frees, change slabs, adopt an abandoned slab, or take a new span.
#[cold]
#[inline(never)]
unsafe fn alloc_slow(mut heap: *mut Heap, class: usize) -> *mut u8 {
    if !is_thread_heap(heap) {
        heap = lifecycle::create_thread_heap(heap == exited_heap());
        if heap.is_null() {
            crate::os::errno::set(libc::ENOMEM);
            return null_mut();
        }
    }
    // SAFETY: `heap` is the calling thread's live heap.
    unsafe {
        if count_slow_call(heap) {
            // Hot blocks keep their slabs from emptying: give them back
            // now and then, so a burst of frees does not pin a slab per
            // class for long.
            free::flush_hot(heap);
            periodic_upkeep(heap);
        } else {
            free::drain_remote(heap);
        }
        let h = &mut (*heap).local;
        if let Some(b) = slabs::pop_from_avail(h, class) {
            return b;
        }
        for _ in 0..4 {
            if !abandoned::adopt(heap, class) {
                break;
            }
            if let Some(b) = slabs::pop_from_avail(&mut (*heap).local, class) {
                return b;
            }
        }
        slabs::pop_from_new_slab(&mut (*heap).local, class)
    }
}

/// Mark the slab holding `p` as holding interior (aligned) pointers, so
/// its frees take the slow path that maps them to block starts.
///
/// # Safety
/// `p` must be a block just allocated by the calling thread (from its heap
/// or its CPU's heap).
pub(crate) unsafe fn mark_interior(p: *mut u8) {
    let head = PAGEMAP.lookup(p as usize);
    let heap = crate::heap::tls::heap();
    // SAFETY: `p` is a live slab block of ours (contract); the cache is
    // our own heap's (a shard slab is never in it).
    unsafe {
        if is_thread_heap(heap) {
            (*heap).local.uncache_slab(head.cast());
        }
        (*head).owner.fetch_or(OWNER_INTERIOR, Ordering::Relaxed);
    }
}

/// The class for an aligned request served from a slab without interior
/// pointers: the smallest class >= `size` whose block size is a multiple
/// of `align` (block addresses are `span + 128 + i * size`, so
/// `align <= 128` suffices).
pub(crate) fn class_for_aligned(size: usize, align: usize) -> Option<usize> {
    if align > crate::core::size_class::SLAB_HEADER || size > crate::core::size_class::SMALL_MAX {
        return None;
    }
    (class_of(size.max(1))..NUM_CLASSES).find(|&c| block_size(c) % align == 0)
}

const _: () = assert!(crate::core::size_class::GRANULE % crate::core::size_class::SLAB_HEADER == 0);

/// A large block of `size` bytes aligned to `align` (`core::large`), and
/// how many of its first bytes may be non-zero (the rest is fresh memory,
/// zero). Fresh pages send as many bytes of idle slab spans back to the
/// OS (`core::span::SpanCache::shed`). Null when out of memory (errno not
/// set).
pub(crate) fn large(size: usize, align: usize) -> (*mut u8, usize) {
    let r = crate::core::large::alloc(size, align);
    if !r.0.is_null() && r.1 < size {
        crate::core::span::SPANS.shed(size - r.1);
    }
    r
}
