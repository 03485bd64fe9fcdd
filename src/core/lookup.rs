//! What a pointer is: the one place that reads a span's tag.
//!
//! Every question about an address — is it ours, which block holds it,
//! how many bytes are usable there, where does its span end — starts
//! with the page map (address -> span header) and the header's tag.
//! [`classify`] turns the tag into a [`Span`], and the questions are
//! answered from that.
//!
//! Uses: `core::canary`, `core::config`, `core::large`, `core::pagemap`,
//! `core::size_class`, `core::slab`, `util::diag`.

use crate::core::large::LargeBlock;
use crate::core::pagemap::{SpanHead, PAGEMAP, TAG_FREE, TAG_LARGE, TAG_SLAB};
use crate::core::size_class::SHARED_FROM;
use crate::core::slab::Slab;

/// A span of ours, by what its header's tag says it is.
#[derive(Clone, Copy)]
pub(crate) enum Span {
    /// A slab: blocks of one size class.
    Slab(*mut Slab),
    /// A large block's mapping.
    Large(*mut LargeBlock),
    /// A span back in a cache: nothing in it is live (a pointer into it
    /// is a use after free).
    Freed,
    /// A header with no tag we know: memory corruption.
    Corrupt,
}

/// The span behind a header the page map returned.
///
/// # Safety
/// `head` must be a non-null page map entry (a live span header).
#[inline(always)]
pub(crate) unsafe fn classify(head: *mut SpanHead) -> Span {
    // SAFETY: contract.
    match unsafe { (*head).tag } {
        TAG_SLAB => Span::Slab(head.cast()),
        TAG_LARGE => Span::Large(head.cast()),
        TAG_FREE => Span::Freed,
        _ => Span::Corrupt,
    }
}

/// The span covering address `p`; `None` when no span of ours does
/// (any address may be asked, NULL included).
#[inline]
pub(crate) fn span_of(p: usize) -> Option<Span> {
    let head = PAGEMAP.lookup(p);
    // SAFETY: non-null page map entries are live span headers.
    (!head.is_null()).then(|| unsafe { classify(head) })
}

impl Span {
    /// The live block containing `p` as `(start, end)`; `None` for
    /// freed spans, never-used slab space, and the header of a large
    /// mapping.
    pub(crate) fn block_bounds(self, p: usize) -> Option<(usize, usize)> {
        // SAFETY: `Slab`/`Large` come from a live header (`classify`);
        // their geometry fields are stable while a block is live.
        unsafe {
            match self {
                Span::Slab(s) => {
                    let b = (*s).block_containing(p)?;
                    Some((b, b + (*s).block_size as usize))
                }
                Span::Large(lb) => {
                    let end = lb as usize + (*lb).map_size;
                    ((*lb).user <= p && p < end).then_some(((*lb).user, end))
                }
                Span::Freed | Span::Corrupt => None,
            }
        }
    }

    /// Bytes the program may use from `p`; `None` when `p` is no live
    /// block's address (for a large block, only its start counts; a slab
    /// block may be entered anywhere, for aligned blocks). For medium and large
    /// blocks, the size the program asked for (their canaries lie just
    /// past it: see `core::canary`); a block whose canaries were
    /// overwritten stops the program.
    pub(crate) fn usable_from(self, p: usize) -> Option<usize> {
        match self {
            // SAFETY: a live large header (`classify`).
            Span::Large(lb) => unsafe {
                if (*lb).user != p {
                    return None;
                }
                crate::core::large::check_canaries(lb);
                Some((*lb).requested)
            },
            Span::Slab(s) => match self.block_bounds(p) {
                // SAFETY: a live slab header.
                Some((start, end)) if unsafe { is_sealed(s) } => {
                    Some(medium_size(s, p, start, end))
                }
                Some((_, end)) => Some(end - p),
                None => None,
            },
            Span::Freed | Span::Corrupt => None,
        }
    }
}

/// Is `s` a slab of a medium class (whose blocks carry a size record)?
///
/// # Safety
/// `s` is a live slab header.
#[inline]
pub(crate) unsafe fn is_medium(s: *const Slab) -> bool {
    // SAFETY: contract.
    unsafe { (*s).class as usize >= SHARED_FROM }
}

/// Do the blocks of slab `s` carry a size record (`core::canary`)? Those
/// of medium classes; in the secure build, all.
///
/// # Safety
/// `s` is a live slab header.
#[inline]
pub(crate) unsafe fn is_sealed(s: *const Slab) -> bool {
    // SAFETY: contract.
    crate::core::config::SECURE || unsafe { is_medium(s) }
}

/// The requested size of the medium block `[start, end)` of slab `s`
/// handed out at `p`; stops the program when the block's record or
/// pattern was overwritten.
pub(crate) fn medium_size(s: *mut Slab, p: usize, start: usize, end: usize) -> usize {
    // SAFETY: callers pass a live medium block.
    match unsafe { crate::core::canary::medium_size((*s).check_key, p, start, end) } {
        Some(n) => n,
        None => overwritten(p, s),
    }
}

/// A block's canaries were overwritten.
#[cold]
#[inline(never)]
pub(crate) fn overwritten(p: usize, s: *mut Slab) -> ! {
    // SAFETY: a live slab header.
    let bs = unsafe { (*s).block_size } as usize;
    crate::util::diag::fatal_block(
        "heap overflow or underflow: the canary past the end of this block was overwritten at",
        p,
        bs,
    )
}

/// The block of the pool that contains `p`, as `(start, end)`.
pub(crate) fn block_bounds(p: usize) -> Option<(usize, usize)> {
    span_of(p)?.block_bounds(p)
}

/// Did the pool hand out the block `p` points into?
pub(crate) fn owns(p: *const u8) -> bool {
    block_bounds(p as usize).is_some()
}
