//! The page map: from any address to the header of the span holding it.
//!
//! Owns the two-level radix table over the 48-bit address space at
//! granule (64 KiB) resolution, and the [`SpanHead`] every span starts
//! with. `free` uses it to find a block's span in O(1), and it answers
//! "did the pool hand this out?" for pointers from other allocators: a
//! granule has an entry only while a span of ours covers it.
//!
//! Level 1 is a static array (512 KiB of .bss, untouched pages cost
//! nothing); level-2 leaves of 512 KiB each cover 4 GiB and are mapped on
//! demand, never freed.
//!
//! Uses: `core::size_class`, `os`, `os::pages`.

use crate::core::size_class::GRANULE_SHIFT;
use crate::os::PageSource;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Tag of a slab span.
pub(crate) const TAG_SLAB: u32 = 0x534c_4142; // "SLAB"
/// Tag of a large block's mapping.
pub(crate) const TAG_LARGE: u32 = 0x4c52_4745; // "LRGE"
/// Tag of a span sitting in a cache (any use of it is a use after free).
pub(crate) const TAG_FREE: u32 = 0x4652_4545; // "FREE"

/// The first bytes of every span. The tag tells slab from large block;
/// `owner` is what the free fast path compares with the calling thread's
/// heap (never equal for anything but a slab of that heap).
#[repr(C)]
pub(crate) struct SpanHead {
    /// [`TAG_SLAB`], [`TAG_LARGE`] or [`TAG_FREE`].
    pub(crate) tag: u32,
    /// Length of the span in granules.
    pub(crate) granules: u32,
    /// For a slab: owning heap's address with flag bits; 0 when abandoned.
    /// For anything else: 0.
    pub(crate) owner: AtomicUsize,
}

const ADDR_BITS: usize = 48;
const L1_SHIFT: usize = 32;
const L1_LEN: usize = 1 << (ADDR_BITS - L1_SHIFT);
const LEAF_LEN: usize = 1 << (L1_SHIFT - GRANULE_SHIFT);

struct Leaf {
    entries: [AtomicPtr<SpanHead>; LEAF_LEN],
}

/// Address -> span header.
pub(crate) struct Pagemap {
    l1: [AtomicPtr<Leaf>; L1_LEN],
}

/// The process-wide page map.
pub(crate) static PAGEMAP: Pagemap = Pagemap::new();

impl Default for Pagemap {
    fn default() -> Self {
        Self::new()
    }
}

impl Pagemap {
    /// An empty map.
    pub(crate) const fn new() -> Self {
        Pagemap {
            l1: [const { AtomicPtr::new(null_mut()) }; L1_LEN],
        }
    }

    /// The header of the span covering `addr`, or null when no span of
    /// ours covers it. Any address may be asked, NULL included.
    #[inline(always)]
    pub(crate) fn lookup(&self, addr: usize) -> *mut SpanHead {
        let leaf = match self.l1.get(addr >> L1_SHIFT) {
            Some(slot) => slot.load(Ordering::Acquire),
            None => return null_mut(),
        };
        if leaf.is_null() {
            return null_mut();
        }
        let i2 = (addr >> GRANULE_SHIFT) & (LEAF_LEN - 1);
        // SAFETY: non-null leaves are mapped by `leaf_for` and never freed;
        // i2 < LEAF_LEN by the mask.
        unsafe { (*leaf).entries.get_unchecked(i2).load(Ordering::Acquire) }
    }

    fn leaf_for(&self, addr: usize, src: &impl PageSource) -> Option<*mut Leaf> {
        let i1 = addr >> L1_SHIFT;
        if i1 >= L1_LEN {
            return None;
        }
        let slot = &self.l1[i1];
        let leaf = slot.load(Ordering::Acquire);
        if !leaf.is_null() {
            return Some(leaf);
        }
        let size = core::mem::size_of::<Leaf>();
        let fresh = src.map(size, crate::os::PAGE)?.as_ptr().cast::<Leaf>();
        match slot.compare_exchange(null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Some(fresh),
            Err(other) => {
                // Another thread installed a leaf first; give ours back.
                // SAFETY: `fresh` was mapped just above and never published.
                unsafe { src.unmap(core::ptr::NonNull::new_unchecked(fresh.cast()), size) };
                Some(other)
            }
        }
    }

    /// Point every granule of `[start, start + granules * GRANULE)` at
    /// `head` (null to forget the range). `false` when a leaf could not be
    /// mapped; entries set so far stay set.
    pub(crate) fn set(
        &self,
        start: usize,
        granules: usize,
        head: *mut SpanHead,
        src: &impl PageSource,
    ) -> bool {
        for g in 0..granules {
            let addr = start + (g << GRANULE_SHIFT);
            let leaf = match self.leaf_for(addr, src) {
                Some(l) => l,
                None => return false,
            };
            let i2 = (addr >> GRANULE_SHIFT) & (LEAF_LEN - 1);
            // SAFETY: leaves are never freed; i2 < LEAF_LEN by the mask.
            unsafe { (*leaf).entries[i2].store(head, Ordering::Release) };
        }
        true
    }
}

const _: () = assert!(core::mem::size_of::<SpanHead>() == 16);
const _: () = assert!(core::mem::size_of::<Leaf>() % crate::os::PAGE == 0);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::size_class::GRANULE;
    use crate::os::pages::testing::HeapSource;
    use std::boxed::Box;

    #[test]
    fn unknown_addresses_are_not_ours() {
        let map = Box::new(Pagemap::new());
        for a in [0usize, 1, 0x7fff_0000_0000, usize::MAX, 1 << 48] {
            assert!(map.lookup(a).is_null());
        }
    }

    #[test]
    fn a_span_covers_exactly_its_granules() {
        let src = HeapSource::default();
        let map = Box::new(Pagemap::new());
        let mut head = SpanHead {
            tag: TAG_SLAB,
            granules: 3,
            owner: AtomicUsize::new(0),
        };
        let h: *mut SpanHead = &mut head;
        let start = 0x5555_0000_0000usize + 7 * GRANULE;
        assert!(map.set(start, 3, h, &src));
        assert!(map.lookup(start - 1).is_null());
        assert_eq!(map.lookup(start), h);
        assert_eq!(map.lookup(start + 3 * GRANULE - 1), h);
        assert!(map.lookup(start + 3 * GRANULE).is_null());
        assert!(map.set(start, 3, null_mut(), &src));
        assert!(map.lookup(start + GRANULE).is_null());
    }

    #[test]
    fn spans_across_a_leaf_boundary() {
        let src = HeapSource::default();
        let map = Box::new(Pagemap::new());
        let mut head = SpanHead {
            tag: TAG_LARGE,
            granules: 2,
            owner: AtomicUsize::new(0),
        };
        let h: *mut SpanHead = &mut head;
        let start = (5usize << L1_SHIFT) - GRANULE;
        assert!(map.set(start, 2, h, &src));
        assert_eq!(map.lookup(start), h);
        assert_eq!(map.lookup(start + GRANULE + 5), h);
    }
}
