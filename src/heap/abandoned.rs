//! Abandoned slabs: slabs with live blocks whose heap was given up.
//!
//! A heap given up (its thread exited and it could not be parked, it was
//! parked too long, or `malloc_trim`), and a heap being parked for all
//! but its current slabs, hands its empty slabs back to the
//! span cache and the others to a global list per class, owned by nobody
//! (`owner & !OWNER_FLAGS == 0`). Their blocks can still be freed by any
//! thread (under the list's lock); the last free gives the span back; a
//! thread short of blocks of that class adopts one instead of taking a
//! fresh span.
//!
//! Invariants, under the lock: a slab is on `lists[c]` exactly when its
//! `abandoned_in == generation + 1`, and then its owner (without flags)
//! is 0 and `c` is its class. A fork child whose parent held this lock in
//! another thread starts a new generation with empty lists: the slabs of
//! the old lists keep owner 0 and are freed into without list
//! operations. Lock order: this lock, then the span cache's.
//!
//! Uses: `core::size_class`, `core::slab`, `heap::slabs`, `heap::types`,
//! `util::lock`.

use crate::core::size_class::NUM_CLASSES;
use crate::core::slab::{Block, Slab, OWNER_INTERIOR};
use crate::heap::slabs::release_slab;
use crate::heap::types::{Heap, HeapLocal, SlabList, EMPTY_LIST};
use crate::util::lock::Lock;
use core::sync::atomic::Ordering;

/// The abandoned slabs of each class, and the lists' generation.
struct Lists {
    lists: [SlabList; NUM_CLASSES],
    generation: u32,
}
// SAFETY: only touched under the ABANDONED lock.
unsafe impl Send for Lists {}

impl Lists {
    /// The mark of a slab on one of these lists.
    fn listed(&self) -> u32 {
        self.generation.wrapping_add(1).max(1)
    }
}

static ABANDONED: Lock<Lists> = Lock::new(Lists {
    lists: [EMPTY_LIST; NUM_CLASSES],
    generation: 0,
});

/// Take one abandoned slab of `class` into `heap` (last in its `avail`
/// list). False when there is none.
///
/// # Safety
/// `heap` is the calling thread's heap.
pub(crate) unsafe fn adopt(heap: *mut Heap, class: usize) -> bool {
    let s = {
        let mut lists = ABANDONED.lock();
        let s = lists.lists[class].pop_front();
        if s.is_null() {
            return false;
        }
        // SAFETY: an abandoned slab, taken off the list under the lock.
        unsafe {
            (*s).abandoned_in = 0;
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
    true
}

/// Empty every slab list of a heap being given up: empty slabs go back
/// to the span cache, the others to the abandoned lists. With
/// `keep_current`, each class's current slab stays (a heap being parked).
///
/// # Safety
/// Nobody else uses the heap of `h`; its current slabs are cleared
/// unless `keep_current`.
pub(crate) unsafe fn abandon_slabs(h: &mut HeapLocal, keep_current: bool) {
    let mut lists = ABANDONED.lock();
    for class in 0..=NUM_CLASSES {
        let kept = if keep_current && class < NUM_CLASSES {
            h.biased[class]
        } else {
            core::ptr::null_mut()
        };
        let mut s = list_of(h, class).first;
        while !s.is_null() {
            // SAFETY: a slab of the heap; the lock is held.
            unsafe {
                let next = (*s).next;
                if s != kept {
                    list_of(h, class).remove(s);
                    h.uncache_slab(s);
                    if (*s).used == 0 {
                        release_slab(s);
                    } else {
                        let flags = (*s).head.owner.load(Ordering::Relaxed) & OWNER_INTERIOR;
                        (*s).head.owner.store(flags, Ordering::Release);
                        (*s).abandoned_in = lists.listed();
                        lists.lists[(*s).class as usize].push_back(s);
                    }
                }
                s = next;
            }
        }
    }
}

/// `h.avail[class]`, or `h.full` for `class == NUM_CLASSES`.
fn list_of(h: &mut HeapLocal, class: usize) -> &mut SlabList {
    if class == NUM_CLASSES {
        &mut h.full
    } else {
        &mut h.avail[class]
    }
}

/// Free block `b` of `slab`, which was abandoned when the caller looked:
/// under the lock, unless a thread adopted the slab meanwhile (then false:
/// the caller dispatches again). `user` as in `slabs::free_in`.
///
/// # Safety
/// `b` is a block of `slab`, a live slab.
pub(crate) unsafe fn free_abandoned(slab: *mut Slab, b: *mut Block, user: usize) -> bool {
    let mut lists = ABANDONED.lock();
    // SAFETY: the slab is live while `b` is; abandoned slabs are only
    // touched under this lock.
    unsafe {
        if (*slab).head.owner.load(Ordering::Acquire) & !crate::core::slab::OWNER_FLAGS != 0 {
            return false;
        }
        if user != 0 && (*slab).looks_free(b) && (*slab).is_on_free_lists(b as usize) {
            drop(lists);
            crate::heap::slabs::double_free(user, slab);
        }
        if (*slab).push_local(b) {
            (*slab).check_empty();
            // (A slab of an older generation is on no list: see above.)
            if (*slab).abandoned_in == lists.listed() {
                lists.lists[(*slab).class as usize].remove(slab);
            }
            (*slab).abandoned_in = 0;
            drop(lists);
            release_slab(slab);
        }
    }
    true
}

/// Hold the lists' lock (tests of the fork child's rebuild).
#[cfg(test)]
pub(crate) fn hold_for_test() -> crate::util::lock::LockGuard<'static, impl Sized> {
    ABANDONED.lock()
}

/// In a fork child: if the lists' lock was held by a thread that does
/// not exist here, the lists may be half updated: start a new generation
/// with empty lists.
pub(crate) fn after_fork_child() {
    if ABANDONED.held_by_other_thread() {
        // SAFETY: the child's only thread; no guard exists; the old
        // generation is a plain counter, consistent alone.
        unsafe {
            ABANDONED.reset_in_child(|old| Lists {
                lists: [EMPTY_LIST; NUM_CLASSES],
                generation: old.generation.wrapping_add(1),
            })
        };
    }
}
