//! Allocating: the malloc fast path (a table load and a pop from the
//! class's current slab), the thread heap's slow
//! path and its periodic upkeep, medium blocks through the thread's
//! medium cache or its CPU's heap, blocks for aligned requests, and large
//! blocks (which make idle slab spans go back when they take fresh pages).
//!
//! Uses: `core::large`, `core::pagemap`, `core::size_class`, `core::slab`, `core::span`,
//! `heap::abandoned`, `heap::free`, `heap::lifecycle`, `heap::medium`,
//! `heap::slabs`, `heap::tls`, `heap::types`, `os::errno`.

use crate::core::pagemap::PAGEMAP;
use crate::core::size_class::{
    block_size, class_of, direct_index, DIRECT_MAX, NUM_CLASSES, SHARED_FROM,
};
use crate::core::slab::OWNER_INTERIOR;
use crate::heap::types::{exited_heap, is_thread_heap, Heap};
use crate::heap::{abandoned, free, lifecycle, medium, slabs};
use core::ptr::null_mut;
use core::sync::atomic::Ordering;

/// Pop a block for a request of at most 1 KiB from the slab the heap's
/// direct table names (its class's current slab); null when the fast
/// path cannot serve it (the caller then takes its slow path).
///
/// Fast path: 14 instructions (with `api::libc::malloc`'s size test and
/// thread-pointer load).
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
        let slab = *(*heap).local.direct.get_unchecked(i);
        (*slab).pop().cast()
    }
}

/// After a free that may have made the heap's upkeep due (`api::libc`'s
/// and `api::secure`'s free paths that do not pass their own `tick`):
/// run it. A thread whose mallocs and frees all stay on the fast paths
/// never takes the slow path that counts towards it.
///
/// # Safety
/// `heap` is the calling thread's heap (a static heap's flag is never
/// set).
#[inline(always)]
pub(crate) unsafe fn upkeep_if_due(heap: *mut Heap) {
    // SAFETY: contract.
    unsafe {
        if (*heap).local.upkeep_due {
            run_upkeep(heap);
        }
    }
}

/// The heap's upkeep is due ([`upkeep_if_due`], `heap::free::free_cached`):
/// clear the flag and run it.
///
/// # Safety
/// `heap` is the calling thread's heap.
#[cold]
#[inline(never)]
pub(crate) fn run_upkeep(heap: *mut Heap) {
    // SAFETY: contract.
    unsafe {
        (*heap).local.upkeep_due = false;
        periodic_upkeep(heap);
    }
}

/// The heap's periodic upkeep (every 64 slow calls, and every
/// [`CURRENT_TICKS`](crate::heap::types::CURRENT_TICKS) frees into a
/// current slab): the process-wide upkeep,
/// then its outbox sent, its remote queue collected and its spare spans
/// aged (`heap::slabs`).
///
/// # Safety
/// `heap` is the calling thread's heap.
#[cold]
#[inline(never)]
unsafe fn periodic_upkeep(heap: *mut Heap) {
    lifecycle::upkeep();
    // SAFETY: contract.
    unsafe {
        // Whatever made it due, it runs now.
        (*heap).local.upkeep_due = false;
        free::flush_outbox(heap);
        free::drain_remote(heap);
        slabs::age_spares(&mut (*heap).local);
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
