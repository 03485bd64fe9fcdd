//! Freeing: the fast path for blocks of the calling thread's own slabs,
//! and the slow path that sends every other block where it belongs — a
//! large block back to `core::large`, a medium block to its per-CPU heap,
//! another thread's block to that heap's remote queue, an abandoned
//! slab's block under the abandoned lock — or stops the program.
//!
//! Double frees: a free block looks free (its first word decodes to an
//! address inside its slab, see `core::slab`), and malloc clears that
//! word; a block being freed that looks free is checked against the
//! free lists by its owner (the program
//! may in principle have written such a word), and is a double free for
//! any other thread, which cannot see them. A block freed again after a
//! write wiped its mark is caught when it heads its slab's `free` list
//! (where the fast path pushes) or `local_free`; otherwise when its
//! slab's count of blocks in use reaches zero early (`Slab::check_empty`
//! finds a block on no list before a slab goes back), or when malloc reaches it a
//! second time: malloc cleared its word, and what the program wrote there
//! since decodes to a misaligned link 15 times in 16 (`Slab::pop`).
//!
//! Invalid frees: a pointer the page map does not know goes
//! to `api::foreign`; one inside a slab that is not a block start stops
//! the program (the fast path's block-start test, `core::slab`).
//!
//! Uses: `core::hooks`, `core::large`, `core::lookup`, `core::pagemap`,
//! `core::size_class`, `core::slab`, `heap::abandoned`, `heap::medium`,
//! `heap::remote`, `heap::slabs`, `heap::types`, `util::diag`.

use crate::core::lookup::{classify, Span};
use crate::core::pagemap::{SpanHead, PAGEMAP, TAG_SLAB};
use crate::core::size_class::SLAB_HEADER;
use crate::core::slab::{Block, Slab, OWNER_FLAGS, OWNER_INSTR, OWNER_INTERIOR};
use crate::heap::types::{is_thread_heap, slab_cache_index, Heap};
use crate::heap::{abandoned, medium, remote, slabs};
use crate::util::diag::fatal;
use core::sync::atomic::Ordering;

/// The free fast path: `p` lies in a slab in the heap's slab cache (a
/// one-granule slab of ours with no flag) and is one of its carved block
/// starts. Then: stop a block that looks free (maybe a double free: the
/// slow path looks), else push it on the slab's `free` list, where malloc
/// takes it next when the slab is its class's current one. False when
/// the cache has no such slab or `p` is not a block start there (the
/// caller then looks `p` up in the page map, which decides). `tick` runs
/// when the heap's upkeep is due (its current slab of the class counted
/// [`CURRENT_TICKS`](crate::heap::types::CURRENT_TICKS) frees).
///
/// The block-start test (`p` minus the cached first-block address, see
/// `core::slab`) also tells the cached slab from any other memory: a
/// pointer elsewhere, however far, is never taken for one of its blocks.
///
/// # Safety
/// `heap` must be the calling thread's heap (`tls::heap()`); `p` any
/// value passed to `free`.
#[inline(always)]
pub(crate) unsafe fn free_cached(
    heap: *mut Heap,
    p: *mut u8,
    tick: impl FnOnce(*mut Heap),
) -> bool {
    // SAFETY: the heap is ours; the index is masked below the length.
    let first = unsafe {
        *(*heap)
            .local
            .slab_cache
            .get_unchecked(slab_cache_index(p as usize))
    };
    let slab = first.wrapping_sub(SLAB_HEADER) as *mut Slab;
    // SAFETY: by the cache invariant `slab` is a live, unflagged slab of
    // our heap (or the empty slab, whose test fails for every address);
    // the test makes `p` one of its carved block starts.
    unsafe {
        if !(*slab).is_block_offset((p as usize).wrapping_sub(first as usize)) {
            return false;
        }
        let b = p.cast::<Block>();
        if (*slab).looks_free_fast(b) {
            free_suspect(b, slab, heap);
            return true;
        }
        if (*slab).push_free(b) {
            emptied(slab, heap, tick);
        }
    }
    true
}

/// [`free_cached`]'s push brought `used` to zero: the slab is empty, or
/// the current slab's count of frees ran out (then the upkeep is due).
///
/// # Safety
/// As [`free_cached`]; `slab` is the slab of our heap just freed into.
#[cold]
#[inline(never)]
unsafe fn emptied(slab: *mut Slab, heap: *mut Heap, tick: impl FnOnce(*mut Heap)) {
    // SAFETY: contract.
    unsafe {
        slabs::slab_emptied(slab, heap);
        if (*heap).local.upkeep_due {
            tick(heap);
        }
    }
}

/// Free `p`, whose span header `head` the page map returned (the slab
/// cache missed). A block of a slab of the calling thread's heap: compare
/// the owner, check that `p` is a block start and does not look free,
/// push it on the slab's `free` list (as the fast path does), and cache
/// the slab. The caller runs the heap's upkeep when it became due
/// (`heap::alloc::upkeep_if_due`).
///
/// # Safety
/// `heap` must be `tls::heap()`; `head` must be `PAGEMAP.lookup(p)`,
/// non-null.
#[inline(always)]
pub(crate) unsafe fn free(heap: *mut Heap, p: *mut u8, head: *mut SpanHead) {
    // SAFETY: `head` is a live span header (page map invariant). When the
    // owner is our heap the span is a one-granule slab of ours with no
    // flags set (so on an avail list, as the cache requires).
    unsafe {
        if (*head).owner.load(Ordering::Relaxed) == heap as usize {
            let slab = head.cast::<Slab>();
            if !(*slab).is_block_start(p as usize) {
                not_a_block_start(p, slab);
            }
            let b = p.cast::<Block>();
            if (*slab).looks_free_fast(b) {
                return free_suspect(b, slab, heap);
            }
            if (*slab).push_free(b) {
                slabs::slab_emptied(slab, heap);
            } else {
                (*heap).local.cache_slab(slab);
            }
        } else if !free_medium(heap, p, head) && !free_remote(heap, p, head) {
            free_slow(heap, p, head);
        }
    }
}

/// [`free`]'s third case: a block at its start of another thread heap's
/// slab, freed by a thread heap: [`dispatch`]'s remote case (into the
/// outbox, [`to_outbox`]) without [`free_slow`]'s general lookup. This
/// is every free of a producer-consumer program's consumer. False: `p`
/// is something else (the slow path decides).
///
/// # Safety
/// As [`free`].
#[inline(always)]
unsafe fn free_remote(heap: *mut Heap, p: *mut u8, head: *mut SpanHead) -> bool {
    // SAFETY: `head` is a live span header (contract); a span tagged
    // SLAB is a slab, whose geometry is stable while a block of it is
    // live (a stale pointer into a released span, tagged FREE, is the
    // slow path's to report).
    unsafe {
        let owner = (*head).owner.load(Ordering::Acquire);
        let h = owner & !OWNER_FLAGS;
        if owner & (OWNER_INTERIOR | OWNER_INSTR) != 0
            || (*head).tag != TAG_SLAB
            || h == 0
            || h == heap as usize
            || medium::owns(h)
            || !is_thread_heap(heap)
        {
            return false;
        }
        let slab = head.cast::<Slab>();
        if !(*slab).is_block_start(p as usize) {
            return false;
        }
        crate::core::hooks::on_free(p);
        to_outbox(heap, slab, p.cast(), p as usize, h);
    }
    true
}

/// [`free`]'s second case: a medium block (of a per-CPU heap's slab,
/// which never changes owner) at its start: the checks and the medium
/// cache of `heap::medium::free`, without [`free_slow`]'s general
/// dispatch. False: `p` is something else (the slow path decides).
///
/// # Safety
/// As [`free`].
#[inline(always)]
unsafe fn free_medium(heap: *mut Heap, p: *mut u8, head: *mut SpanHead) -> bool {
    // SAFETY: `head` is a live span header (contract); a span tagged SLAB
    // is a slab, whose owner word and geometry are stable while a block
    // of it is live.
    unsafe {
        let owner = (*head).owner.load(Ordering::Acquire);
        if !medium::owns(owner) || owner & OWNER_INTERIOR != 0 || (*head).tag != TAG_SLAB {
            return false;
        }
        let slab = head.cast::<Slab>();
        if !(*slab).is_block_start(p as usize) {
            return false;
        }
        crate::core::hooks::on_free(p);
        medium::free(heap, owner & !OWNER_FLAGS, slab, p.cast(), p as usize);
    }
    true
}

#[cold]
#[inline(never)]
fn not_a_block_start(p: *mut u8, slab: *mut Slab) -> ! {
    // SAFETY: a live slab header.
    let bs = unsafe { (*slab).block_size } as usize;
    crate::util::diag::fatal_block(
        "free(): invalid pointer (not the start of a block)",
        p as usize,
        bs,
    )
}

/// Every free the fast path does not finish: large blocks, interior
/// pointers, full slabs, other threads' slabs, abandoned slabs, errors.
#[cold]
#[inline(never)]
unsafe fn free_slow(heap: *mut Heap, p: *mut u8, head: *mut SpanHead) {
    crate::core::hooks::on_free(p);
    // SAFETY: `head` is a live span header (page map invariant).
    let slab = match unsafe { classify(head) } {
        Span::Slab(s) => s,
        // SAFETY: a LARGE header heads a large block's mapping.
        Span::Large(_) => return unsafe { crate::core::large::free(p, head) },
        Span::Freed => fatal(
            "free(): double free or invalid pointer (memory already freed)",
            p as usize,
        ),
        Span::Corrupt => fatal("free(): corrupted span header for", p as usize),
    };
    // SAFETY: a SLAB header heads a slab span whose header fields other
    // than the free lists are stable while any of its blocks is live.
    let owner = unsafe { (*slab).head.owner.load(Ordering::Acquire) };
    // SAFETY: as above.
    let b = unsafe {
        match (*slab).block_containing(p as usize) {
            Some(b) if b == p as usize => b,
            Some(b) if owner & OWNER_INTERIOR != 0 => b,
            _ => not_a_block_start(p, slab),
        }
    };
    // SAFETY: `b` is a block of `slab`.
    unsafe { dispatch(heap, slab, b as *mut Block, p as usize) }
}

/// Push an outbox batch onto its queue; when that queue was closed (its
/// heap given up), each block looks its slab's owner up again.
///
/// # Safety
/// `heap` is the calling thread's heap; the batch was taken from its
/// outbox.
unsafe fn send_batch(heap: *mut Heap, batch: remote::Batch) {
    // SAFETY: heap structs stay mapped; the chain (null-terminated at
    // `last`) is ours to hand over.
    unsafe {
        if !remote::push(&*batch.queue, batch.first, batch.last) {
            free_chain(heap, batch.first);
        }
    }
}

/// Send every batch of the calling thread's outbox (thread exit, giving
/// the heap up, `malloc_trim`, periodic upkeep).
///
/// # Safety
/// `heap` is the calling thread's heap (or one it gives up).
pub(crate) unsafe fn flush_outbox(heap: *mut Heap) {
    for i in 0..remote::OUTBOX_SLOTS {
        // SAFETY: contract: the outbox is ours.
        unsafe {
            if let Some(batch) = (*heap).local.outbox.take(i) {
                send_batch(heap, batch);
            }
        }
    }
}

/// Free block `b` of `slab` wherever its owner is: here, a per-CPU heap,
/// another thread (its remote queue; the program's frees from a thread
/// heap go through that heap's outbox), or nowhere (abandoned, under the
/// lock). `user` is the pointer the program passed (it may be inside
/// `b`, for aligned blocks), named in error messages; 0 skips the
/// double-free check (blocks from remote queues were checked when first
/// freed).
///
/// # Safety
/// `heap` is the calling thread's heap (or one it gives up); `b` is a
/// block of `slab`, a live slab.
pub(crate) unsafe fn dispatch(heap: *mut Heap, slab: *mut Slab, b: *mut Block, user: usize) {
    // Set once this call made `b` look free itself (a retry after a
    // closed queue then finds its own mark, not a double free).
    let mut marked_here = false;
    loop {
        // SAFETY: the slab is live while `b` is live.
        let owner = unsafe { (*slab).head.owner.load(Ordering::Acquire) };
        let h = owner & !OWNER_FLAGS;
        if h == heap as usize {
            // SAFETY: our own slab.
            return unsafe { slabs::free_in(heap, slab, b, user) };
        }
        if medium::owns(h) {
            // SAFETY: shard slabs never change owner.
            return unsafe { medium::free(heap, h, slab, b, user) };
        }
        if h != 0 {
            // Another thread's heap. The program's own free from a thread
            // heap: batched in the outbox (see `heap::remote`).
            if user != 0 && is_thread_heap(heap) {
                // SAFETY: forwarded contract; `h` is (or was) a heap.
                return unsafe { to_outbox(heap, slab, b, user, h) };
            }
            // Else one CAS onto its remote queue. Heap structs are never
            // unmapped, so a stale owner is still safe to push to; its
            // next user collects the block. The double-free check as in
            // `to_outbox` (not for blocks from remote queues).
            // SAFETY: `b` is a block of a live slab (contract).
            if user != 0 && !marked_here && unsafe { (*slab).looks_free(b) } {
                slabs::double_free(user, slab);
            }
            marked_here = true;
            // SAFETY: `b` is a block we hand over; `h` is (or was) a heap.
            unsafe { (*slab).mark_waiting(b) };
            // SAFETY: heap structs are never unmapped.
            let queue = unsafe { &raw const (*(h as *mut Heap)).remote };
            // SAFETY: as above.
            let pushed = unsafe { remote::push(&*queue, b, b) };
            if pushed {
                return;
            }
            // The queue was closed: its heap was given up after we read the
            // owner, and giving up changes the slab's owner before closing
            // the queue, so reading the owner again finds the new one.
            continue;
        }
        // SAFETY: forwarded contract.
        if unsafe { abandoned::free_abandoned(slab, b, user) } {
            return;
        }
    }
}

/// Hand block `b` of `slab`, owned by the thread heap at `h`, to the
/// calling thread's outbox for `h`'s remote queue (sending a batch when
/// one is full). A block that looks free was freed before and not handed
/// out since (malloc clears its first word): a double free, the second
/// from another thread, which cannot look at the owner's lists (user data
/// looks free with a chance of 1 in 2^45 at most); stopped here.
///
/// # Safety
/// `heap` is the calling thread's heap, a thread heap; `b` is a block in
/// use of the live slab `slab` that the program frees (at `user`); `h` is
/// (or was) a heap.
#[inline(always)]
unsafe fn to_outbox(heap: *mut Heap, slab: *mut Slab, b: *mut Block, user: usize, h: usize) {
    // SAFETY: contract; heap structs are never unmapped.
    unsafe {
        if (*slab).looks_free(b) {
            slabs::double_free(user, slab);
        }
        (*slab).mark_waiting(b);
        let queue = &raw const (*(h as *mut Heap)).remote;
        let size = (*slab).block_size as usize;
        if let Some(batch) = (*heap).local.outbox.add(queue, b, size) {
            send_batch(heap, batch);
        }
    }
}

/// Free every block of a chain taken from a remote queue.
///
/// # Safety
/// As [`dispatch`] for each block; the chain is the caller's.
pub(crate) unsafe fn free_chain(heap: *mut Heap, mut b: *mut Block) {
    while !b.is_null() {
        // SAFETY: queued blocks are live blocks of our slabs (or of slabs
        // that were ours while the heap was being given up). A slab whose
        // owner word is our heap's address alone is ours with no flag
        // set: `slabs::free_in` without a double-free check (done when
        // the block was first freed) is then just the push, inline here;
        // any other owner or flag takes the general path.
        unsafe {
            let next = (*b).chain;
            let slab = PAGEMAP.lookup(b as usize).cast::<Slab>();
            if (*slab).head.owner.load(Ordering::Relaxed) == heap as usize {
                if (*slab).push_local(b) {
                    slabs::slab_emptied(slab, heap);
                }
            } else {
                dispatch(heap, slab, b, 0);
            }
            b = next;
        }
    }
}

/// Collect the blocks other threads freed into our slabs.
///
/// # Safety
/// `heap` is the calling thread's heap.
#[inline]
pub(crate) unsafe fn drain_remote(heap: *mut Heap) {
    // SAFETY: our own heap (contract).
    unsafe { free_chain(heap, remote::take(&(*heap).remote)) }
}

/// The fast path found a block that looks free: a double free (it is on
/// the slab's lists, or waits in our remote queue), or user data that
/// happens to look like a free block's link.
#[cold]
#[inline(never)]
unsafe fn free_suspect(b: *mut Block, slab: *mut Slab, heap: *mut Heap) {
    // SAFETY: our own heap and slab; the taken queue is ours until put
    // back.
    unsafe {
        // Waiting in a remote queue, an outbox or a medium cache: its
        // first word links to itself (user data does so with a chance of
        // 1 in 2^64 per key).
        if (*slab).is_waiting(b) || (*slab).is_on_free_lists(b as usize) {
            slabs::double_free(b as usize, slab);
        }
        // Not free after all: user data. Our own slab (the caller checked
        // the owner).
        slabs::free_in(heap, slab, b, 0)
    }
}
