//! Remote queues: how a block freed by another thread reaches the heap
//! that owns its slab.
//!
//! Each heap has one queue, a lock-free stack linked through the blocks'
//! second word (`chain`; the first makes the block look free): a freeing
//! thread batches its blocks per destination in its [`Outbox`] and pushes
//! a batch with one CAS, the owner takes the
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
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// The queue of a heap that was given up.
pub(crate) const CLOSED: *mut Block = 1 as *mut Block;

/// Push the chain `first ..= last` (linked through `chain`) onto `queue`.
/// False when the queue is closed: nothing was pushed, and the chain
/// ends at `last` (`last.chain` null), for the caller to free block by
/// block.
///
/// # Safety
/// The chain's blocks are the caller's to hand over; `last.chain` is
/// overwritten.
#[inline]
pub(crate) unsafe fn push(queue: &AtomicPtr<Block>, first: *mut Block, last: *mut Block) -> bool {
    let mut old = queue.load(Ordering::Acquire);
    loop {
        if old == CLOSED {
            // A CAS lost before the queue closed left the head it lost to
            // in `last.chain`: a caller walking the chain would free that
            // queue's blocks a second time (its closer frees them too).
            // SAFETY: contract: the chain is still ours.
            unsafe { (*last).chain = null_mut() };
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

/// How many destination queues a thread batches for at once.
pub(crate) const OUTBOX_SLOTS: usize = 4;
/// Blocks a slot collects before it is sent (one CAS for them all).
pub(crate) const OUTBOX_BATCH: u32 = 32;

/// A chain taken out of the outbox, for `queue`.
pub(crate) struct Batch {
    pub(crate) queue: *const AtomicPtr<Block>,
    pub(crate) first: *mut Block,
    pub(crate) last: *mut Block,
}

/// A thread's outbox: the blocks it freed into other threads' slabs,
/// batched per destination queue, so that a run of remote frees costs
/// their owner's queue one CAS per [`OUTBOX_BATCH`] blocks instead of one
/// each (fewer writes to a line every freeing thread contends on). Each
/// block already carries the waiting mark (it looks free), so a second
/// free of it is caught while it waits here as in a queue. Owner thread
/// only; flushed at thread exit, when the heap is given up, by
/// `malloc_trim` and every 64 allocation slow paths.
pub(crate) struct Outbox {
    queue: [*const AtomicPtr<Block>; OUTBOX_SLOTS],
    first: [*mut Block; OUTBOX_SLOTS],
    last: [*mut Block; OUTBOX_SLOTS],
    count: [u32; OUTBOX_SLOTS],
    slot_bytes: [usize; OUTBOX_SLOTS],
    /// The slot to evict next when every slot is taken.
    evict: u32,
    /// Bytes of the blocks held (read by other threads for statistics).
    pub(crate) bytes: AtomicUsize,
}

impl Outbox {
    /// An empty outbox.
    pub(crate) const fn new() -> Outbox {
        Outbox {
            queue: [core::ptr::null(); OUTBOX_SLOTS],
            first: [null_mut(); OUTBOX_SLOTS],
            last: [null_mut(); OUTBOX_SLOTS],
            count: [0; OUTBOX_SLOTS],
            slot_bytes: [0; OUTBOX_SLOTS],
            evict: 0,
            bytes: AtomicUsize::new(0),
        }
    }

    /// Add `b` (`size` bytes) for `queue`; a batch to send when a slot is
    /// full, or when every slot is taken by another queue (the evicted
    /// one).
    ///
    /// # Safety
    /// `b` is a block the caller hands over (marked waiting).
    #[inline]
    pub(crate) unsafe fn add(
        &mut self,
        queue: *const AtomicPtr<Block>,
        b: *mut Block,
        size: usize,
    ) -> Option<Batch> {
        let held = self.bytes.load(Ordering::Relaxed);
        self.bytes.store(held + size, Ordering::Relaxed);
        let mut slot = OUTBOX_SLOTS;
        for i in 0..OUTBOX_SLOTS {
            if self.queue[i] == queue {
                slot = i;
                break;
            }
            if self.queue[i].is_null() && slot == OUTBOX_SLOTS {
                slot = i;
            }
        }
        let mut out = None;
        if slot == OUTBOX_SLOTS {
            slot = self.evict as usize % OUTBOX_SLOTS;
            self.evict = self.evict.wrapping_add(1);
            out = self.take(slot);
        }
        if self.queue[slot] != queue {
            self.queue[slot] = queue;
            self.last[slot] = b;
        }
        // SAFETY: contract: `b` is ours to link.
        unsafe { (*b).chain = self.first[slot] };
        self.first[slot] = b;
        self.count[slot] += 1;
        self.slot_bytes[slot] += size;
        if self.count[slot] >= OUTBOX_BATCH {
            debug_assert!(out.is_none());
            out = self.take(slot);
        }
        out
    }

    /// Empty slot `i`: its chain, if any.
    pub(crate) fn take(&mut self, i: usize) -> Option<Batch> {
        if self.queue[i].is_null() {
            return None;
        }
        let batch = Batch {
            queue: self.queue[i],
            first: self.first[i],
            last: self.last[i],
        };
        let held = self.bytes.load(Ordering::Relaxed);
        self.bytes
            .store(held - self.slot_bytes[i], Ordering::Relaxed);
        self.slot_bytes[i] = 0;
        self.queue[i] = core::ptr::null();
        self.first[i] = null_mut();
        self.last[i] = null_mut();
        self.count[i] = 0;
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain_len(mut b: *mut Block) -> usize {
        let mut n = 0;
        while !b.is_null() {
            n += 1;
            // SAFETY: blocks of the test's array, linked by the outbox.
            b = unsafe { (*b).chain };
        }
        n
    }

    #[test]
    fn a_full_slot_is_sent_as_one_chain_and_a_fifth_queue_evicts_one() {
        let queues: [AtomicPtr<Block>; OUTBOX_SLOTS + 1] =
            core::array::from_fn(|_| AtomicPtr::new(null_mut()));
        let mut blocks: [Block; 64] = core::array::from_fn(|_| Block {
            link: 0,
            chain: null_mut(),
        });
        let bp = blocks.as_mut_ptr();
        let mut o = Outbox::new();
        // SAFETY: every block is handed over once.
        unsafe {
            for i in 0..OUTBOX_BATCH as usize - 1 {
                assert!(o.add(&queues[0], bp.add(i), 16).is_none());
            }
            assert_eq!(
                o.bytes.load(Ordering::Relaxed),
                16 * (OUTBOX_BATCH as usize - 1)
            );
            let b = o
                .add(&queues[0], bp.add(OUTBOX_BATCH as usize - 1), 16)
                .expect("the 32nd block sends the slot");
            assert_eq!(b.queue, &queues[0] as *const _);
            assert_eq!(b.first, bp.add(OUTBOX_BATCH as usize - 1));
            assert_eq!(b.last, bp);
            assert_eq!(chain_len(b.first), OUTBOX_BATCH as usize);
            assert_eq!(o.bytes.load(Ordering::Relaxed), 0);
            // One block for each of the slots, then a fifth queue.
            for (q, queue) in queues.iter().take(OUTBOX_SLOTS).enumerate() {
                assert!(o.add(queue, bp.add(40 + q), 32).is_none());
            }
            let evicted = o
                .add(&queues[OUTBOX_SLOTS], bp.add(50), 32)
                .expect("a fifth queue evicts a slot");
            assert_eq!(chain_len(evicted.first), 1);
            assert_eq!(o.bytes.load(Ordering::Relaxed), 32 * OUTBOX_SLOTS);
            let mut sent = 0;
            for i in 0..OUTBOX_SLOTS {
                if let Some(b) = o.take(i) {
                    sent += chain_len(b.first);
                }
            }
            assert_eq!(sent, OUTBOX_SLOTS);
            assert_eq!(o.bytes.load(Ordering::Relaxed), 0);
        }
    }

    /// A push that loses a CAS to another pusher and then finds the queue
    /// closed must leave its chain as it was, ending at `last`: the caller
    /// then frees the chain itself, and a `last.chain` still naming the
    /// head it lost to would free that queue's blocks a second time (the
    /// secure build's intermittent false stops in `thread_exit`'s
    /// `remote_free_retry`).
    #[test]
    fn a_push_refused_after_a_lost_race_leaves_its_chain_whole() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        const PUSHERS: usize = 3;
        const CHAIN: usize = 4;
        let queue = Arc::new(AtomicPtr::new(null_mut()));
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let pushers: std::vec::Vec<_> = (0..PUSHERS)
            .map(|_| {
                let (queue, stop, refused) = (queue.clone(), stop.clone(), refused.clone());
                std::thread::spawn(move || {
                    let mut blocks: std::vec::Vec<Block> = (0..CHAIN * 1024)
                        .map(|_| Block {
                            link: 0,
                            chain: null_mut(),
                        })
                        .collect();
                    let base = blocks.as_mut_ptr();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        // A fresh chain of CHAIN blocks, null-terminated.
                        let first = base.wrapping_add(i * CHAIN);
                        let last = first.wrapping_add(CHAIN - 1);
                        // SAFETY: blocks of this thread's vector (the queue
                        // holds them only as addresses: nobody reads them
                        // through it).
                        let pushed = unsafe {
                            for k in 0..CHAIN {
                                (*first.add(k)).chain = if k + 1 < CHAIN {
                                    first.add(k + 1)
                                } else {
                                    null_mut()
                                };
                            }
                            push(&queue, first, last)
                        };
                        if !pushed {
                            refused.fetch_add(1, Ordering::Relaxed);
                            // SAFETY: as above; a link past `last` is not
                            // followed.
                            let after_last = unsafe { (*last).chain };
                            assert!(
                                after_last.is_null(),
                                "a refused chain ends at its last block"
                            );
                        }
                        i = (i + 1) % 1024;
                    }
                    // (Nobody reads a block through the queue: the
                    // closer drops what it takes.)
                    drop(blocks);
                })
            })
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1000);
        while std::time::Instant::now() < deadline || refused.load(Ordering::Relaxed) < 20_000 {
            // Close, then open again: pushes racing with the close are
            // refused.
            close(&queue);
            std::thread::yield_now();
            queue.store(null_mut(), Ordering::Release);
            if std::time::Instant::now() > deadline + std::time::Duration::from_secs(20) {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        for p in pushers {
            p.join().expect("a pusher saw a refused chain run on");
        }
        assert!(refused.load(Ordering::Relaxed) > 0, "no push was refused");
    }
}
