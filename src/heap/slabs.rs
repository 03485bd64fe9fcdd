//! A heap's own slabs: taking blocks from them, giving blocks back to
//! them, and slabs coming and going — the operations a thread heap and a
//! per-CPU heap share (the caller makes sure it owns the heap: its
//! thread, or the per-CPU heap's lock).
//!
//! Invariant kept here, for a slab that is on a list of its heap and not
//! its class's biased (current) slab:
//! `used + |free| + |local_free| + (end - bump) / block_size == capacity`.
//! The biased slab's `used` is not counted by malloc: frees count it
//! down from [`CURRENT_TICKS`] (the heap's upkeep tick), and it is
//! recounted when the slab stops being current.
//!
//! Uses: `core::config`, `core::size_class`, `core::slab`, `core::span`,
//! `heap::types`, `os`, `os::errno`, `util::diag`.

use crate::core::size_class::{fallback_granules, GRANULE, NUM_CLASSES, SLAB_GRANULES};
use crate::core::slab::{Block, Slab, OWNER_FULL};
use crate::core::span::SPANS;
use crate::heap::types::{empty_slab_ptr, Heap, HeapLocal, CURRENT_TICKS};
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Slabs alive per class (kept always; slow paths only).
pub(crate) static SLABS_LIVE: [AtomicUsize; NUM_CLASSES] =
    [const { AtomicUsize::new(0) }; NUM_CLASSES];
/// Bytes of those slabs' spans.
pub(crate) static SLAB_BYTES: [AtomicUsize; NUM_CLASSES] =
    [const { AtomicUsize::new(0) }; NUM_CLASSES];

/// Move the blocks the owner freed into the current slab's `free` list
/// and pop one; null when there were none.
///
/// # Safety
/// `slab` is a slab of a heap the caller owns.
#[inline(always)]
pub(crate) unsafe fn pop_local_free(slab: *mut Slab) -> *mut u8 {
    // SAFETY: contract: owner-only fields.
    unsafe {
        if (*slab).local_free == (*slab).terminator() {
            return null_mut();
        }
        (*slab).free = (*slab).local_free;
        (*slab).local_free = (*slab).terminator();
        (*slab).pop().cast()
    }
}

/// Pop from the first slab of `avail[class]` that has a free block,
/// moving exhausted slabs to the full list.
///
/// # Safety
/// The caller owns the heap of `h`.
pub(crate) unsafe fn pop_from_avail(h: &mut HeapLocal, class: usize) -> Option<*mut u8> {
    loop {
        let s = h.avail[class].first;
        if s.is_null() {
            h.set_current(class);
            return None;
        }
        // SAFETY: `s` is a slab of this heap (list invariant).
        unsafe {
            if (*s).refill() {
                h.set_current(class);
                return Some((*s).pop().cast());
            }
            retire_full(h, class, s);
        }
    }
}

/// Move `s`, a slab of `avail[class]` without a free block, to the full
/// list: a free into it brings it back ([`free_in`]).
///
/// # Safety
/// The caller owns the heap of `h`; `s` is on `h.avail[class]`.
pub(crate) unsafe fn retire_full(h: &mut HeapLocal, class: usize, s: *mut Slab) {
    // SAFETY: contract.
    unsafe {
        h.avail[class].remove(s);
        h.uncache_slab(s);
        (*s).head.owner.fetch_or(OWNER_FULL, Ordering::Relaxed);
        h.full.push_back(s);
    }
}

/// Give the heap a new slab of `class` from the span cache, make it the
/// current one and pop its first block; null (errno `ENOMEM`) when no
/// span can be had. When the class's usual span cannot be had (a tight
/// address-space limit), the smallest span that holds a block serves
/// (`fallback_granules`: one granule, two for the classes above 60 KiB,
/// whose blocks do not fit in one beside the header; a one-granule slab
/// of those held no block, and each failed malloc left one behind).
///
/// # Safety
/// The caller owns the heap of `h`.
pub(crate) unsafe fn pop_from_new_slab(h: &mut HeapLocal, class: usize) -> *mut u8 {
    let usual = SLAB_GRANULES[class] as usize;
    let small = fallback_granules(class);
    let (span, granules) = match SPANS.acquire(usual, class as u32) {
        Some(s) => (s, usual),
        None => match (usual > small)
            .then(|| SPANS.acquire(small, class as u32))
            .flatten()
        {
            Some(s) => (s, small),
            None => {
                crate::os::errno::set(libc::ENOMEM);
                return null_mut();
            }
        },
    };
    if crate::core::config::SECURE {
        guard_slab(span.as_ptr() as usize, granules, false);
    }
    // SAFETY: a fresh span of `granules` granules (at least
    // `fallback_granules`: it holds a block of the class), ours alone.
    unsafe {
        let s = Slab::init(span.as_ptr(), granules, class, h.owner_word);
        SLABS_LIVE[class].fetch_add(1, Ordering::Relaxed);
        SLAB_BYTES[class].fetch_add(granules * GRANULE, Ordering::Relaxed);
        h.avail[class].push_front(s);
        h.set_current(class);
        (*s).refill();
        (*s).pop().cast()
    }
}

/// The secure build's guard pages of a slab span: the page after the
/// header's and the span's last page (`SLAB_HEADER`, `SLAB_TRAILER`)
/// become inaccessible, or (`open`, before the span goes back to the
/// span cache) accessible again. A kernel that refuses (out of mappings)
/// leaves them accessible: the slab works, unguarded.
fn guard_slab(span: usize, granules: usize, open: bool) {
    use crate::core::size_class::{SLAB_HEADER, SLAB_TRAILER};
    use crate::os::{OS, PAGE};
    let end = span + granules * GRANULE;
    // SAFETY: the span is ours alone (a fresh one, or a dead slab's), and
    // no block lies in its guard pages.
    unsafe {
        OS.protect(span + PAGE, SLAB_HEADER.saturating_sub(PAGE), open);
        OS.protect(end - SLAB_TRAILER, SLAB_TRAILER, open);
    }
}

/// Give a slab's span back to the span cache.
///
/// # Safety
/// Nobody uses the slab any more, and it is on no list.
pub(crate) unsafe fn release_slab(slab: *mut Slab) {
    // SAFETY: contract.
    unsafe {
        SLABS_LIVE[(*slab).class as usize].fetch_sub(1, Ordering::Relaxed);
        let granules = (*slab).head.granules as usize;
        SLAB_BYTES[(*slab).class as usize].fetch_sub(granules * GRANULE, Ordering::Relaxed);
        if crate::core::config::SECURE {
            guard_slab(slab as usize, granules, true);
        }
        SPANS.release(
            NonNull::new_unchecked(slab.cast()),
            granules,
            (*slab).class as u32,
        );
    }
}

/// Free a block of one of the heap's own slabs, whatever its flags.
/// `user` is the pointer the program passed (named in error messages);
/// 0 skips the double-free check (blocks from remote queues and medium
/// caches were checked when first freed).
///
/// # Safety
/// The caller owns `heap`, which owns `slab`; `b` is a block of `slab`.
pub(crate) unsafe fn free_in(heap: *mut Heap, slab: *mut Slab, b: *mut Block, user: usize) {
    // SAFETY: contract: our heap and slab; owner-only fields.
    unsafe {
        if user != 0 && (*slab).looks_free(b) && (*slab).is_on_free_lists(b as usize) {
            double_free(user, slab);
        }
        let h = &mut (*heap).local;
        if (*slab).head.owner.load(Ordering::Relaxed) & OWNER_FULL != 0 {
            h.full.remove(slab);
            (*slab).head.owner.fetch_and(!OWNER_FULL, Ordering::Relaxed);
            let class = (*slab).class as usize;
            h.avail[class].push_back(slab);
            if h.avail[class].first == slab {
                h.set_current(class);
            }
        }
        if (*slab).push_local(b) {
            slab_emptied(slab, heap);
        }
    }
}

/// A slab of ours reached `used == 0`: give it back. The current slab
/// of a class reaches 0 after [`CURRENT_TICKS`] frees (malloc does not
/// count on it): its count restarts instead, and the heap's upkeep is due
/// (`upkeep_due`: the caller's `tick`, or the next
/// `heap::alloc::upkeep_if_due`, runs it; only thread heaps read the
/// flag, a per-CPU heap runs its upkeep by its own count).
///
/// # Safety
/// The caller owns `heap`, which owns `slab`, on an `avail` list.
#[cold]
#[inline(never)]
pub(crate) unsafe fn slab_emptied(slab: *mut Slab, heap: *mut Heap) {
    // SAFETY: contract (emptied slabs are never on the full list: the
    // full flag is cleared before the push).
    unsafe {
        let h = &mut (*heap).local;
        if (*slab).current {
            // One less than a new current slab's count: `used ==
            // CURRENT_TICKS` then tells that nothing was freed into the
            // slab since it became current (`release_empty`).
            (*slab).used = CURRENT_TICKS - 1;
            h.upkeep_due = true;
            return;
        }
        (*slab).check_empty();
        release_listed(h, (*slab).class as usize, slab);
    }
}

/// Take `s`, an empty slab on `h.avail[class]` (not the current one), off
/// the list and give its span back.
///
/// # Safety
/// The caller owns the heap of `h`; nobody uses `s` any more.
unsafe fn release_listed(h: &mut HeapLocal, class: usize, s: *mut Slab) {
    // SAFETY: contract.
    unsafe {
        h.avail[class].remove(s);
        h.uncache_slab(s);
        release_slab(s);
    }
}

/// Give back every slab of `h` without a live block, the current slabs
/// included (`malloc_trim`, on the per-CPU heaps and the caller's heap).
///
/// A slab that empties goes back at once unless it is current
/// ([`slab_emptied`]), so only two kinds can be left: a current slab, and
/// one that stopped being current with no block in use (`lingering`).
/// A current slab is counted (a walk of its free lists) only if a block
/// was freed into it since it became current (it held a block in use
/// then, and the count of frees starts at [`CURRENT_TICKS`] only then);
/// the lists are walked only if a slab lingers. stress-ng's malloc
/// stressor calls `malloc_trim` every 8 operations: recounting every
/// class's current slab and walking every list took 26,000 instructions
/// a call, half of all the instructions of its run.
///
/// # Safety
/// The caller owns `h`.
pub(crate) unsafe fn release_empty(h: *mut Heap) {
    // SAFETY: contract; the slabs on `avail` are ours.
    unsafe {
        let h = &mut (*h).local;
        // Lingering slabs first (a current slab's count is one of frees,
        // never 0): a class whose current slab goes back below promotes
        // its next slab, which must not be one of them.
        if core::mem::take(&mut h.lingering) {
            for c in 0..NUM_CLASSES {
                let mut s = h.avail[c].first;
                while !s.is_null() {
                    let next = (*s).next;
                    if (*s).used == 0 {
                        release_listed(h, c, s);
                    }
                    s = next;
                }
            }
        }
        for c in 0..NUM_CLASSES {
            let s = h.biased[c];
            if s == empty_slab_ptr() || (*s).used == CURRENT_TICKS {
                continue;
            }
            h.clear_current_of(c);
            if (*s).used == 0 {
                release_listed(h, c, s);
            }
            h.set_current(c);
        }
        // The slabs the loop found empty went back.
        h.lingering = false;
    }
}

/// A double free of `user`, a block of `slab`.
#[cold]
#[inline(never)]
pub(crate) fn double_free(user: usize, slab: *mut Slab) -> ! {
    // SAFETY: a live slab header.
    let bs = unsafe { (*slab).block_size } as usize;
    crate::util::diag::fatal_block("free(): double free", user, bs)
}
