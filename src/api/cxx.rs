//! C++'s `operator new` and `operator delete`, and C23's `free_sized`:
//! what they allocate, and the check of a size the program hands back.
//!
//! A sized `delete` (or `free_sized`) must pass the size the block was
//! allocated for. The pool checks it against the block: the size must
//! lead to the same block (the same size class for a small or medium
//! block, the same number of granules for a large one; a small block that
//! `realloc` shrank in place also takes a size of at least half of it),
//! so a size that
//! belongs to another allocation stops the program with an `mmpool:`
//! line instead of corrupting a size-class free list later (or, in an
//! allocator that trusts the size, freeing into the wrong class).
//!
//! Uses: `api::libc`, `api::secure`, `core::canary`, `core::config`,
//! `core::large`, `core::lookup`, `core::size_class`, `os`, `util::diag`.

use crate::api::libc as api;
use crate::core::canary::RECORD;
use crate::core::large::LARGE_HEADER;
use crate::core::lookup::{is_sealed, span_of, Span};
use crate::core::size_class::{block_size, class_of, DIRECT_MAX, GRANULE, MIN_ALIGN, SMALL_MAX};
use crate::os::align_up;
use crate::util::diag::Line;

/// Bytes a block for a request of `n` bytes takes: its size class's block
/// size (medium classes with room for the size record), or a large
/// block's whole mapping. Two sizes with the same footprint are
/// interchangeable for a sized free.
pub(crate) fn footprint(n: usize) -> usize {
    if n <= DIRECT_MAX {
        block_size(class_of(n))
    } else if n <= SMALL_MAX - RECORD {
        block_size(class_of(n + RECORD))
    } else {
        align_up(n.saturating_add(LARGE_HEADER), GRANULE).unwrap_or(usize::MAX)
    }
}

/// Whether `size` (with alignment `align`) fits the block at `p` as the
/// size it was allocated for. `None`: `p` is no block start of ours (free
/// decides what that is: foreign, invalid, double).
fn size_fits(p: usize, size: usize, align: usize) -> Option<(bool, usize)> {
    let span = span_of(p)?;
    let usable = span.usable_from(p)?;
    let (start, end) = span.block_bounds(p)?;
    let medium_or_large = match span {
        // SAFETY: a live slab header (`span_of`).
        Span::Slab(s) => unsafe { is_sealed(s) },
        Span::Large(_) => true,
        Span::Freed | Span::Corrupt => return None,
    };
    let fits = if medium_or_large {
        // The requested size is recorded: the same footprint.
        footprint(size) == footprint(usable)
    } else if align > MIN_ALIGN {
        // An aligned small block may be of a larger class than the size's.
        size <= usable
    } else {
        // Its class's size, or (a block `realloc` kept in place) at least
        // half the block.
        let block = end - start;
        p == start && (footprint(size) == block || (size <= block && 2 * size >= block))
    };
    Some((fits, end - start))
}

/// Free `p`, which the program says it allocated for `size` bytes with
/// alignment `align` (`MIN_ALIGN` or less: the default): `free_sized`,
/// `free_aligned_sized`, and C++'s sized `delete`. A size the block was
/// not allocated for stops the program.
///
/// # Safety
/// As [`api::free`].
pub(crate) unsafe fn free_sized(p: *mut u8, size: usize, align: usize, what: &str) {
    check_size(p, size, align, what);
    // SAFETY: forwarded contract.
    unsafe { api::free(p) }
}

fn check_size(p: *mut u8, size: usize, align: usize, what: &str) {
    if let Some((false, block)) = size_fits(p as usize, size, align) {
        size_mismatch(what, p as usize, size, block);
    }
}

/// C++'s `operator delete` (`array`: `delete[]`) of `p`, with the size
/// the program passes to a sized form checked. In the secure build the
/// block must have been allocated by the matching `new`.
///
/// # Safety
/// As [`api::free`].
#[cfg(all(feature = "override", target_arch = "x86_64"))]
pub(crate) unsafe fn delete(
    p: *mut u8,
    size: Option<usize>,
    align: usize,
    array: bool,
    what: &str,
) {
    if let Some(n) = size {
        check_size(p, n, align, what);
    }
    if crate::core::config::SECURE {
        use crate::core::canary::{KIND_NEW, KIND_NEW_ARRAY};
        let kind = if array { KIND_NEW_ARRAY } else { KIND_NEW };
        // SAFETY: forwarded contract.
        unsafe { crate::api::secure::free(p, Some(kind)) }
    } else {
        // SAFETY: forwarded contract.
        unsafe { api::free(p) }
    }
}

#[cold]
#[inline(never)]
fn size_mismatch(what: &str, p: usize, size: usize, block: usize) -> ! {
    let mut l = Line::new();
    l.str("mmpool: ")
        .str(what)
        .str(": size ")
        .dec(size as u64)
        .str(" does not match the block at ")
        .hex(p as u64)
        .str(" (")
        .dec(block as u64)
        .str("-byte block)\n");
    l.write_to(2);
    // SAFETY: abort never returns.
    unsafe { libc::abort() }
}

/// One try of `operator new(size, align)` (`align` 0: the default;
/// `array`: `new[]`); null when out of memory (the caller runs the
/// new-handler loop). An alignment that is not a power of two (undefined
/// in C++) fails.
///
/// # Safety
/// Callable from any thread at any time.
#[cfg(all(feature = "override", target_arch = "x86_64"))]
pub(crate) unsafe fn new_once(size: usize, align: usize, array: bool) -> *mut u8 {
    if align > MIN_ALIGN && !align.is_power_of_two() {
        return core::ptr::null_mut();
    }
    if crate::core::config::SECURE {
        // SAFETY: forwarded contract.
        return unsafe { crate::api::secure::new(size, align, array) };
    }
    if align <= MIN_ALIGN {
        // SAFETY: the C contract of malloc.
        unsafe { api::malloc(size) }
    } else if align.is_power_of_two() {
        // SAFETY: as above; `align` is a power of two.
        unsafe { api::alloc_aligned(align, size) }
    } else {
        core::ptr::null_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footprints_follow_the_size_classes() {
        assert_eq!(footprint(0), footprint(1));
        assert_eq!(footprint(24), 32);
        assert_eq!(footprint(32), 32);
        assert_ne!(footprint(24), footprint(96));
        assert_eq!(footprint(3000), footprint(3001));
        assert_ne!(footprint(3000), footprint(12000));
        assert_eq!(footprint(200_000), footprint(4 * GRANULE - LARGE_HEADER));
        assert_ne!(
            footprint(200_000),
            footprint(4 * GRANULE - LARGE_HEADER + 1)
        );
        assert_ne!(footprint(200_000), footprint(800_000));
        assert_eq!(footprint(usize::MAX), usize::MAX);
    }
}
