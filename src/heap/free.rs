//! Freeing: the fast path for blocks of the calling thread's own slabs,
//! and the slow path that sends every other block where it belongs — a
//! large block back to `core::large`, a medium block to its per-CPU heap,
//! another thread's block to that heap's remote queue, an abandoned
//! slab's block under the abandoned lock — or stops the program.
//!
//! Double frees: every free block carries its mark (the key mixed with
//! its address, see `core::slab`), which malloc clears; a block being
//! freed that carries it is checked against the free lists (a program may
//! in principle write that word itself), and a block freed by a thread
//! that does not own its slab, which cannot see those lists, is a double
//! free whenever it carries the mark.
//!
//! Uses: `core::config`, `core::hooks`, `core::large`, `core::lookup`,
//! `core::pagemap`, `core::size_class`, `core::slab`, `heap::abandoned`,
//! `heap::medium`, `heap::remote`, `heap::slabs`, `heap::types`,
//! `util::diag`.

use crate::core::config::free_key;
use crate::core::lookup::{classify, Span};
use crate::core::pagemap::{SpanHead, PAGEMAP};
use crate::core::size_class::GRANULE;
use crate::core::slab::{mark_freed, marked_freed, Block, Slab, OWNER_FLAGS, OWNER_INTERIOR};
use crate::heap::types::{slab_cache_index, Heap};
use crate::heap::{abandoned, medium, remote, slabs};
use crate::util::diag::fatal;
use core::sync::atomic::Ordering;

/// The free fast path: `p` lies in the first granule of a slab in the
/// heap's slab cache. Then it is a block of our own slab, with no flag:
/// check the mark, push on `local_free`. False when the cache has no such
/// slab (the caller then looks `p` up in the page map).
///
/// About a dozen instructions instead of the page map's two dependent
/// loads and their bound and null tests plus the owner compare.
///
/// # Safety
/// `heap` must be the calling thread's heap (`tls::heap()`); `p` any
/// value passed to `free`.
#[inline(always)]
pub(crate) unsafe fn free_cached(heap: *mut Heap, p: *mut u8) -> bool {
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
    // caller passes garbage, which the mark check and the slow paths
    // catch where they can).
    unsafe {
        let key = (*slab).key;
        if marked_freed(b, key) {
            free_suspect(heap, slab, b);
        } else if (*slab).push_local(b, key) {
            slabs::slab_emptied(heap, slab);
        }
    }
    true
}

/// Free `p`, whose span header `head` the page map returned (the slab
/// cache missed). A block of a slab of the calling thread's heap: compare
/// the owner, check the mark, push on `local_free`, and cache the slab.
///
/// # Safety
/// `heap` must be `tls::heap()`; `head` must be `PAGEMAP.lookup(p)`,
/// non-null.
#[inline(always)]
pub(crate) unsafe fn free(heap: *mut Heap, p: *mut u8, head: *mut SpanHead) {
    // SAFETY: `head` is a live span header (page map invariant). When the
    // owner is our heap the span is a slab of ours with no flags set (so
    // on an avail list, as the cache requires), and `p` is one of its
    // blocks (unless the caller passes garbage).
    unsafe {
        if (*head).owner.load(Ordering::Relaxed) == heap as usize {
            let slab = head.cast::<Slab>();
            let b = p.cast::<Block>();
            let key = (*slab).key;
            if marked_freed(b, key) {
                return free_suspect(heap, slab, b);
            }
            if (*slab).push_local(b, key) {
                slabs::slab_emptied(heap, slab);
            } else {
                (*heap).local.cache_slab(slab);
            }
        } else {
            free_slow(heap, p, head);
        }
    }
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
            _ => fatal("free(): invalid pointer (not a block start)", p as usize),
        }
    };
    // SAFETY: `b` is a block of `slab`.
    unsafe { dispatch(heap, slab, b as *mut Block, p as usize) }
}

/// Free block `b` of `slab` wherever its owner is: here, a per-CPU heap,
/// another thread (its remote queue), or nowhere (abandoned, under the
/// lock). `user` is the pointer the program passed (it may be inside
/// `b`, for aligned blocks), named in error messages; 0 skips the
/// double-free check (blocks from remote queues were checked when first
/// freed).
///
/// # Safety
/// `heap` is the calling thread's heap (or one it gives up); `b` is a
/// block of `slab`, a live slab.
pub(crate) unsafe fn dispatch(heap: *mut Heap, slab: *mut Slab, b: *mut Block, user: usize) {
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
            return unsafe { slabs::free_in(heap, slab, b, user) };
        }
        if medium::owns(h) {
            // SAFETY: shard slabs never change owner.
            return unsafe { medium::free(heap, h, slab, b, user) };
        }
        if h != 0 {
            // Another thread's heap: one CAS onto its remote queue. Heap
            // structs are never unmapped, so a stale owner is still safe to
            // push to; its next user collects the block.
            // A block carrying its mark was freed before and not handed
            // out since (malloc clears it): a double free, the second from
            // another thread. (Not for blocks from remote queues.)
            // SAFETY: `b` is a block of a live slab (contract).
            if user != 0 && !marked_here && unsafe { marked_freed(b, key) } {
                fatal("free(): double free", user);
            }
            marked_here = true;
            // SAFETY: `h` is (or was) a heap; `b` is a block we hand over.
            let pushed = unsafe {
                mark_freed(b, key);
                remote::push(&(*(h as *mut Heap)).remote, b, b)
            };
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

/// Free every block of a chain taken from a remote queue.
///
/// # Safety
/// As [`dispatch`] for each block; the chain is the caller's.
pub(crate) unsafe fn free_chain(heap: *mut Heap, mut b: *mut Block) {
    while !b.is_null() {
        // SAFETY: queued blocks are live blocks of our slabs (or of slabs
        // that were ours while the heap was being given up).
        unsafe {
            let next = (*b).next;
            let slab = PAGEMAP.lookup(b as usize).cast::<Slab>();
            dispatch(heap, slab, b, 0);
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

/// The fast path found the mark in a block being freed: a double free,
/// or user data that happens to equal it.
#[cold]
#[inline(never)]
unsafe fn free_suspect(heap: *mut Heap, slab: *mut Slab, b: *mut Block) {
    // A block another thread freed waits in our remote queue with its mark
    // set: look there too. Take the queue, walk it, put it back.
    // SAFETY: our own heap; the taken chain is ours until put back.
    unsafe {
        let chain = remote::take(&(*heap).remote);
        if !chain.is_null() {
            let mut tail = chain;
            loop {
                if tail == b {
                    fatal("free(): double free", b as usize);
                }
                if (*tail).next.is_null() {
                    break;
                }
                tail = (*tail).next;
            }
            let back = remote::push(&(*heap).remote, chain, tail);
            debug_assert!(back, "our own queue is open");
        }
        // Our own slab (the fast path checked the owner).
        slabs::free_in(heap, slab, b, b as usize)
    }
}
