//! Slabs: a span carved into equal blocks of one size class.
//!
//! Owns the slab header and its free lists. Free lists are sharded as in
//! mimalloc: `malloc` pops `free`; the owning thread pushes freed blocks on
//! `local_free`; the two are swapped only when `free` runs dry, so the
//! slow path runs regularly. (Blocks freed by other threads travel through
//! the owning heap's `remote` queue, see `heap`.) Blocks carry no header:
//! a free block holds the next-pointer in its first word and the
//! double-free key in its second.
//!
//! Never-used blocks are carved lazily from `bump`, the blocks that end in
//! the page in use at a time (at least one), so a slab's resident memory
//! follows its use.
//!
//! Invariant, for a slab owned by a live heap that is not its class's
//! current slab: `used + |free| + |local_free| + (end - bump) / block_size
//! == capacity`. The current slab's `used` carries a large bias and is not
//! kept by `malloc` (one instruction less on the fast path): `free` counts
//! down, and the exact count is recomputed ([`Slab::exact_used`]) when the
//! slab stops being current.
//!
//! Uses: `core::config`, `core::pagemap`, `core::size_class`, `os`,
//! `os::pages`, `util::list`.

use crate::core::pagemap::{SpanHead, TAG_SLAB};
use crate::core::size_class::{block_size, capacity_for, SLAB_HEADER};
use crate::os::PAGE;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicUsize, Ordering};

/// A free block: the link, then the double-free mark.
#[repr(C)]
pub(crate) struct Block {
    /// Next free block.
    pub(crate) next: *mut Block,
    /// While the block is free: [`crate::core::config::free_key`] mixed with
    /// the block's own address (see [`mark_freed`]); 0 once handed out;
    /// then anything the program writes.
    pub(crate) key: usize,
}

/// The word a free block `b` holds in `key`: the process key mixed with
/// the block's address, so that a copy of it anywhere else (the program
/// moving uninitialised bytes of a recycled span, whose old blocks' marks
/// are still in memory) never looks like a free block's mark.
#[inline(always)]
pub(crate) fn freed_word(b: *const Block, key: usize) -> usize {
    key ^ b as usize
}

/// Mark `b` free.
///
/// # Safety
/// `b` points to a block of at least 16 bytes that is being freed.
#[inline(always)]
pub(crate) unsafe fn mark_freed(b: *mut Block, key: usize) {
    // SAFETY: contract.
    unsafe { (*b).key = freed_word(b, key) }
}

/// Does `b` carry the mark of a free block (a free block, or a live one
/// whose program wrote exactly that word: never by chance)?
///
/// # Safety
/// `b` points to a readable block of at least 16 bytes.
#[inline(always)]
pub(crate) unsafe fn marked_freed(b: *const Block, key: usize) -> bool {
    // SAFETY: contract.
    unsafe { (*b).key == freed_word(b, key) }
}

/// The header at the head of a slab span.
#[repr(C)]
pub(crate) struct Slab {
    /// Tag `SLAB`, length, owner (heap address | flags).
    pub(crate) head: SpanHead,
    /// Blocks `malloc` pops.
    pub(crate) free: *mut Block,
    /// Blocks the owning thread freed since the last collection.
    pub(crate) local_free: *mut Block,
    /// The process's double-free key, copied here so the free fast path
    /// reads it next to the fields it already touches.
    pub(crate) key: usize,
    /// Blocks handed out and not yet back on this slab's lists (see the
    /// module invariant for the current slab).
    pub(crate) used: u32,
    /// Blocks in the slab.
    pub(crate) capacity: u32,
    /// Size of each block.
    pub(crate) block_size: u32,
    /// Size class.
    pub(crate) class: u32,
    /// First block never carved. Written by the owner only; atomic because
    /// other threads read it to validate pointers they free.
    pub(crate) bump: AtomicUsize,
    /// End of the block area.
    pub(crate) end: usize,
    /// Link in the owner's (or the abandoned) list.
    pub(crate) next: *mut Slab,
    /// Link in the owner's (or the abandoned) list.
    pub(crate) prev: *mut Slab,
    /// On an abandoned list of generation `abandoned_in - 1`; 0 when on
    /// none (see `heap::abandoned`).
    pub(crate) abandoned_in: u32,
}

const _: () = assert!(core::mem::size_of::<Slab>() <= SLAB_HEADER);

// SAFETY: `next` and `prev` are distinct fields of the slab header.
unsafe impl crate::util::list::Linked for Slab {
    unsafe fn links(this: *mut Self) -> (*mut *mut Self, *mut *mut Self) {
        // SAFETY: `this` is a live slab header (contract).
        unsafe { (&raw mut (*this).next, &raw mut (*this).prev) }
    }
}

/// Added to the `used` count of a heap's current slab of each class, so
/// that the free fast path never sees it reach zero: a malloc/free loop
/// on one block stays on the fast path instead of retiring and re-taking
/// its slab every time, and malloc need not count at all. When the slab
/// stops being current its count is recomputed.
pub(crate) const CURRENT_BIAS: u32 = 1 << 31;

/// Owner flag: the slab is on its heap's full list.
pub(crate) const OWNER_FULL: usize = 1;
/// Owner flag: aligned allocations handed out interior pointers.
pub(crate) const OWNER_INTERIOR: usize = 2;
/// Owner flag: the owning heap is instrumented (statistics, leak checks,
/// tracing), so every free of the slab's blocks takes the slow path.
pub(crate) const OWNER_INSTR: usize = 4;
/// Owner flag bits (heap structs are 64-byte aligned).
pub(crate) const OWNER_FLAGS: usize = 7;

impl Slab {
    /// Write a fresh header for class `class` at `span` (of the class's
    /// slab size), owned by `owner`.
    ///
    /// # Safety
    /// `span` must be a span of `granules` granules (enough for one block
    /// of the class at least) that
    /// nobody else uses.
    pub(crate) unsafe fn init(
        span: *mut u8,
        granules: usize,
        class: usize,
        owner: usize,
    ) -> *mut Slab {
        let s = span.cast::<Slab>();
        let bs = block_size(class);
        let cap = capacity_for(bs, granules);
        debug_assert!(cap >= 1);
        let first = span as usize + SLAB_HEADER;
        // SAFETY: the span is ours (contract) and large enough.
        unsafe {
            s.write(Slab {
                head: SpanHead {
                    tag: TAG_SLAB,
                    granules: granules as u32,
                    owner: AtomicUsize::new(owner),
                },
                free: null_mut(),
                local_free: null_mut(),
                key: crate::core::config::free_key(),
                used: 0,
                capacity: cap as u32,
                block_size: bs as u32,
                class: class as u32,
                bump: AtomicUsize::new(first),
                end: first + cap * bs,
                next: null_mut(),
                prev: null_mut(),
                abandoned_in: 0,
            });
        }
        s
    }

    /// The first block never carved.
    #[inline]
    pub(crate) fn bump(&self) -> usize {
        self.bump.load(Ordering::Relaxed)
    }

    /// Address of the first block.
    #[inline]
    pub(crate) fn first_block(&self) -> usize {
        self as *const Slab as usize + SLAB_HEADER
    }

    /// Pop a block from `free`, or null.
    ///
    /// # Safety
    /// Only the owning thread may call this; `free` must be a valid list.
    #[inline(always)]
    pub(crate) unsafe fn pop(&mut self) -> *mut Block {
        let b = self.free;
        if !b.is_null() {
            // SAFETY: `b` is a free block of this slab (list invariant).
            unsafe {
                self.free = (*b).next;
                (*b).key = 0;
            }
        }
        b
    }

    /// Blocks handed out and not back on this slab's lists, counted (walks
    /// the free lists). For a slab that stops being current.
    ///
    /// # Safety
    /// Owner thread only.
    pub(crate) unsafe fn exact_used(&self) -> u32 {
        let mut n = 0u32;
        for mut cur in [self.free, self.local_free] {
            while !cur.is_null() {
                n += 1;
                // SAFETY: list invariant.
                cur = unsafe { (*cur).next };
            }
        }
        let uncarved = ((self.end - self.bump()) / self.block_size as usize) as u32;
        self.capacity - n - uncarved
    }

    /// Push a block freed by the owner onto `local_free`. Returns true when
    /// the slab has become empty.
    ///
    /// # Safety
    /// Owner thread only; `b` must be a block of this slab that is in use.
    #[inline(always)]
    pub(crate) unsafe fn push_local(&mut self, b: *mut Block, key: usize) -> bool {
        // SAFETY: the block is ours and at least 16 bytes (contract).
        unsafe {
            (*b).next = self.local_free;
            mark_freed(b, key);
        }
        self.local_free = b;
        self.used -= 1;
        self.used == 0
    }

    /// Refill `free`: from `local_free`, else by carving fresh blocks.
    /// Returns false when the slab has no free block at all.
    ///
    /// # Safety
    /// Owner thread only.
    pub(crate) unsafe fn refill(&mut self, key: usize) -> bool {
        if !self.free.is_null() {
            return true;
        }
        if !self.local_free.is_null() {
            self.free = self.local_free;
            self.local_free = null_mut();
            return true;
        }
        // SAFETY: forwarded contract.
        unsafe { self.carve(key) }
    }

    /// Carve the never-used blocks that end in the page where the bump
    /// pointer is (at least one) onto `free`: a carve touches no page
    /// beyond the one it must (blocks start 128 bytes into the span, so a
    /// page's worth of blocks would spill into the next page).
    unsafe fn carve(&mut self, key: usize) -> bool {
        let bs = self.block_size as usize;
        let start = self.bump();
        if start + bs > self.end {
            return false;
        }
        let page_end = (start | (PAGE - 1)) + 1;
        let n = ((page_end - start) / bs)
            .max(1)
            .min((self.end - start) / bs);
        self.bump.store(start + n * bs, Ordering::Relaxed);
        let mut next = self.free;
        for i in (0..n).rev() {
            let b = (start + i * bs) as *mut Block;
            // SAFETY: the block lies in the never-used part of our span.
            unsafe {
                (*b).next = next;
                mark_freed(b, key);
            }
            next = b;
        }
        self.free = next;
        true
    }

    /// The start of the block containing `p`, or `None` when `p` is not
    /// inside a block that was ever handed out.
    pub(crate) fn block_containing(&self, p: usize) -> Option<usize> {
        let first = self.first_block();
        if p < first || p >= self.bump() {
            return None;
        }
        let bs = self.block_size as usize;
        Some(first + (p - first) / bs * bs)
    }

    /// Blocks handed out and not back on the slab's lists, read by any
    /// thread while the owner may be changing them (statistics): exact
    /// when the owner is idle, close to it otherwise. Every read stays
    /// inside the slab's span (which is never unmapped): a free-list walk
    /// follows only links that name a carved block of this slab.
    ///
    /// # Safety
    /// `s` must be the header of a slab span (a carved span tagged SLAB).
    pub(crate) unsafe fn used_now(s: *const Slab) -> usize {
        // SAFETY: contract: the header lies in mapped span memory; the
        // fields are read as they are (volatile: another thread writes
        // them).
        unsafe {
            let cap = core::ptr::read_volatile(&raw const (*s).capacity) as usize;
            let used = core::ptr::read_volatile(&raw const (*s).used);
            if used < CURRENT_BIAS / 2 {
                return (used as usize).min(cap);
            }
            // Its heap's current slab: malloc does not count; count the
            // free lists instead.
            let bs = core::ptr::read_volatile(&raw const (*s).block_size) as usize;
            let first = s as usize + SLAB_HEADER;
            let bump = (*s).bump.load(Ordering::Relaxed);
            if bs == 0 || bump < first || bump > first + cap * bs {
                return 0;
            }
            let carved = (bump - first) / bs;
            let mut free = 0;
            for head in [
                core::ptr::read_volatile(&raw const (*s).free),
                core::ptr::read_volatile(&raw const (*s).local_free),
            ] {
                let mut b = head as usize;
                while b >= first && b < bump && (b - first) % bs == 0 && free < carved {
                    free += 1;
                    b = core::ptr::read_volatile(b as *const usize);
                }
            }
            carved - free
        }
    }

    /// Is `b` on `free` or `local_free`? (The double-free check; O(free).)
    ///
    /// # Safety
    /// Owner thread only, or under the abandoned-slabs lock.
    pub(crate) unsafe fn is_on_free_lists(&self, b: usize) -> bool {
        for mut cur in [self.free, self.local_free] {
            while !cur.is_null() {
                if cur as usize == b {
                    return true;
                }
                // SAFETY: list invariant.
                cur = unsafe { (*cur).next };
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::size_class::{class_of, GRANULE, NUM_CLASSES, SLAB_GRANULES};
    use crate::os::pages::testing::HeapSource;
    use crate::os::PageSource;
    use std::collections::BTreeSet;

    const KEY: usize = 0x1234_5678_9abc_def0;

    fn with_slab(class: usize, f: impl FnOnce(&mut Slab)) {
        let src = HeapSource::default();
        let size = SLAB_GRANULES[class] as usize * GRANULE;
        let span = src.map(size, GRANULE).unwrap();
        // SAFETY: fresh span of the class's size.
        let s = unsafe {
            &mut *Slab::init(span.as_ptr(), SLAB_GRANULES[class] as usize, class, 0x1000)
        };
        f(s);
        // SAFETY: from map above.
        unsafe { src.unmap(span, size) };
    }

    #[test]
    fn hands_out_every_block_once_then_runs_dry() {
        for class in [0, 5, 12, 20, NUM_CLASSES - 1] {
            with_slab(class, |s| {
                let mut seen = BTreeSet::new();
                // SAFETY: single-threaded owner.
                while unsafe { s.refill(KEY) } {
                    // SAFETY: single-threaded owner; refill succeeded.
                    let b = unsafe { s.pop() } as usize;
                    assert_eq!(b % 16, 0);
                    assert!(b >= s.first_block() && b + s.block_size as usize <= s.end);
                    assert!(seen.insert(b), "block handed out twice");
                }
                assert_eq!(seen.len(), s.capacity as usize);
                // SAFETY: owner.
                assert_eq!(unsafe { s.exact_used() }, s.capacity);
                // SAFETY: owner.
                assert!(!unsafe { s.refill(KEY) }, "nothing left to hand out");
            });
        }
    }

    #[test]
    fn freed_blocks_come_back_and_emptiness_is_reported() {
        with_slab(class_of(48), |s| {
            // SAFETY: single-threaded owner; blocks come from pop.
            unsafe {
                assert!(s.refill(KEY));
                let a = s.pop();
                let b = s.pop();
                // pop does not count; the heap keeps `used` for non-current
                // slabs (here: set it as the heap would on un-biasing).
                s.used = s.exact_used();
                assert_eq!(s.used, 2);
                assert!(!s.push_local(a, KEY));
                assert!(s.is_on_free_lists(a as usize));
                assert!(!s.is_on_free_lists(b as usize));
                assert!(s.push_local(b, KEY), "last block back: empty");
                assert!(marked_freed(b, KEY));
                // Drain `free`, then local_free is swapped in.
                while !s.pop().is_null() {}
                assert!(s.refill(KEY));
                let c = s.pop();
                assert!(c == a || c == b);
                assert_eq!((*c).key, 0, "pop clears the key");
            }
        });
    }

    #[test]
    fn interior_pointers_map_to_their_block() {
        with_slab(class_of(100), |s| {
            // SAFETY: owner.
            unsafe { s.refill(KEY) };
            let first = s.first_block();
            let bs = s.block_size as usize;
            assert_eq!(s.block_containing(first), Some(first));
            assert_eq!(s.block_containing(first + bs + 5), Some(first + bs));
            assert_eq!(s.block_containing(first - 1), None);
            assert_eq!(s.block_containing(s.bump()), None, "never carved");
        });
    }
}
