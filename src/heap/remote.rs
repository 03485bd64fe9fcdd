//! Remote queues: how a block freed by another thread reaches the heap
//! that owns its slab.
//!
//! Each heap has one queue, a lock-free stack linked through the blocks'
//! second word (`chain`; the first makes the block look free): a freeing
//! thread pushes with one CAS, the owner takes the
//! whole stack with one swap in its slow path and frees the blocks into
//! its slabs. A heap given up closes its queue ([`CLOSED`]): a push then
//! fails, and the freeing thread looks the slab's (new) owner up again.
//!
//! Invariant: a queue holds null, [`CLOSED`], or a chain of blocks each
//! looking free (linked to itself), all of slabs whose owner is (or was, while the
//! heap was being given up) this heap.
//!
//! Uses: `core::slab`.

use crate::core::slab::Block;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, Ordering};

/// The queue of a heap that was given up.
pub(crate) const CLOSED: *mut Block = 1 as *mut Block;

/// Push the chain `first ..= last` (linked through `next`) onto `queue`.
/// False when the queue is closed (nothing was pushed).
///
/// # Safety
/// The chain's blocks are the caller's to hand over; `last.chain` is
/// overwritten.
#[inline]
pub(crate) unsafe fn push(queue: &AtomicPtr<Block>, first: *mut Block, last: *mut Block) -> bool {
    let mut old = queue.load(Ordering::Acquire);
    loop {
        if old == CLOSED {
            return false;
        }
        // SAFETY: contract: the chain is ours until the CAS publishes it.
        unsafe { (*last).chain = old };
        match queue.compare_exchange_weak(old, first, Ordering::Release, Ordering::Acquire) {
            Ok(_) => return true,
            Err(cur) => old = cur,
        }
    }
}

/// Take everything queued (the owner; null when empty).
#[inline]
pub(crate) fn take(queue: &AtomicPtr<Block>) -> *mut Block {
    if queue.load(Ordering::Relaxed).is_null() {
        return null_mut();
    }
    queue.swap(null_mut(), Ordering::Acquire)
}

/// Take everything queued and close the queue (a heap being given up).
pub(crate) fn close(queue: &AtomicPtr<Block>) -> *mut Block {
    queue.swap(CLOSED, Ordering::AcqRel)
}
