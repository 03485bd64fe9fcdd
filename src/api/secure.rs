//! The secure build (`make secure`: the cargo feature `secure`): the
//! malloc family with every check that costs time, in the spirit of
//! hardened_malloc and mimalloc's secure mode. `api::libc` hands every
//! call here when the feature is on.
//!
//! What it adds to the default build:
//! - every slab block carries a record (`core::canary`: the requested
//!   size, a keyed check word with the block's kind) in its last 8 bytes
//!   and a pattern after the requested size; `free` and `realloc` verify
//!   the block's own record and pattern (an overflow of one byte or
//!   more) and the record of the block before it (an underflow);
//!   `malloc_usable_size` is the requested size;
//! - a freed block is zeroed and quarantined (`heap::quarantine`, random
//!   slots, bounded in bytes); it must still be zero when it leaves (when
//!   it becomes free for reuse), when a sweep passes it (its first 256
//!   bytes), and when `calloc` hands it out again (a write after free
//!   stops the program);
//! - slabs carve their blocks in a random order, with a guard page after
//!   their header page and at their end (`core::size_class`);
//! - large blocks sit against a guard page, behind guard pages before
//!   them, and their freed ranges become no-access reservations kept from
//!   reuse for a while (`core::large`);
//! - `malloc(0)` returns a distinct pointer into no-access memory;
//! - `new`/`new[]` mark their blocks, and `delete`/`delete[]` of the
//!   other kind stops the program.
//!
//! Uses: `api::foreign`, `api::process`, `core::canary`, `core::hooks`,
//! `core::large`, `core::lookup`, `core::pagemap`, `core::size_class`, `core::slab`, `core::span`,
//! `heap::alloc`, `heap::lifecycle`, `heap::secure`, `heap::tls`,
//! `heap::types`, `insight`, `os`, `os::errno`, `os::pages` (its tests),
//! `util::diag`.

use crate::api::foreign;
use crate::api::process::ensure_init;
use crate::core::canary::{self, KIND_MALLOC, KIND_NEW, KIND_NEW_ARRAY, RECORD};
use crate::core::large;
use crate::core::lookup::{span_of, Span};
use crate::core::pagemap::{PAGEMAP, TAG_SLAB};
use crate::core::size_class::{
    block_size, class_of, direct_index, DIRECT_MAX, MAX_REQUEST, MIN_ALIGN, SHARED_FROM, SMALL_MAX,
};
use crate::core::slab::Slab;
use crate::core::span::SPANS;
use crate::heap::secure::{is_quarantined, quarantine, still_zero, written_after_free};
use crate::heap::{alloc, tls};
use crate::os::errno::nomem;
use crate::os::{align_up, PageSource, OS};
use crate::util::diag::{fatal, fatal_block};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The biggest slab block while the address space is short
/// (`SpanCache::short_of_space`): a bigger one is a large block then.
/// Under a tight `RLIMIT_AS` a slab of the classes above it holds one or
/// two blocks, and each of them in the quarantine would keep a span of its
/// own, an address range never given back (`c-tests/limits.c`,
/// `rlimit_as_big_medium_classes`); a large block's range is unmapped.
const SHORT_SLAB_MAX: usize = 32 * 1024;

/// The biggest slab block now: [`SMALL_MAX`], or [`SHORT_SLAB_MAX`] while
/// the address space is short.
fn slab_max() -> usize {
    if SPANS.short_of_space() {
        SHORT_SLAB_MAX
    } else {
        SMALL_MAX
    }
}

/// The smallest block handed out: a record and at least 16 bytes before
/// it (so the record never shares the two words free lists and queues
/// link through).
const MIN_BLOCK: usize = 32;

// ---------------------------------------------------------------------
// malloc(0): distinct pointers into no-access memory

/// Bytes of the no-access region `malloc(0)` hands out 16-byte slots of.
const ZERO_REGION: usize = 16 << 20;
static ZERO_BASE: AtomicUsize = AtomicUsize::new(0);
static ZERO_NEXT: AtomicUsize = AtomicUsize::new(0);

/// A pointer for `malloc(0)`: any access faults. Null when the region
/// cannot be reserved (then `malloc(0)` takes a one-byte block).
fn zero_block() -> *mut u8 {
    let mut base = ZERO_BASE.load(Ordering::Acquire);
    if base == 0 {
        let Some(r) = OS.reserve(ZERO_REGION) else {
            return null_mut();
        };
        let r = r.as_ptr() as usize;
        base = match ZERO_BASE.compare_exchange(0, r, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => r,
            Err(other) => {
                // SAFETY: our own reservation, never published.
                unsafe { OS.unmap(core::ptr::NonNull::new_unchecked(r as *mut u8), ZERO_REGION) };
                other
            }
        };
    }
    let i = ZERO_NEXT.fetch_add(1, Ordering::Relaxed) % (ZERO_REGION / 16);
    (base + i * 16) as *mut u8
}

/// Is `p` a `malloc(0)` pointer?
pub(crate) fn is_zero_block(p: *const u8) -> bool {
    let base = ZERO_BASE.load(Ordering::Relaxed);
    base != 0 && (p as usize).wrapping_sub(base) < ZERO_REGION
}

// ---------------------------------------------------------------------
// Allocation

/// `malloc(size)` for a block of `kind`, recorded by the tools.
///
/// # Safety
/// Callable from any thread at any time (it is the C function).
pub(crate) unsafe fn malloc(size: usize, kind: u8) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { malloc_zero(size, kind, false) }
}

/// [`malloc`], its bytes zero when `zero` (slab blocks always are).
#[inline(always)]
unsafe fn malloc_zero(size: usize, kind: u8, zero: bool) -> *mut u8 {
    // SAFETY: forwarded contract.
    let p = unsafe {
        if size.wrapping_sub(1) < SHORT_SLAB_MAX - RECORD {
            alloc_zero(size, MIN_ALIGN, kind, zero)
        } else {
            malloc_other(size, kind, zero)
        }
    };
    if !p.is_null() && crate::insight::active() {
        crate::insight::on_alloc(p, size);
    }
    p
}

/// [`malloc_zero`]'s other sizes: 0 (a pointer into no-access memory,
/// or a one-byte block when none can be reserved), large and impossible
/// ones.
#[inline(never)]
unsafe fn malloc_other(size: usize, kind: u8, zero: bool) -> *mut u8 {
    let p = if size == 0 { zero_block() } else { null_mut() };
    if !p.is_null() {
        return p;
    }
    // SAFETY: forwarded contract.
    unsafe { alloc_zero(size.max(1), MIN_ALIGN, kind, zero) }
}

/// An aligned block (`align` a power of two) of `kind`, recorded by the
/// tools; its bytes zero when `zero`.
///
/// # Safety
/// As [`malloc`].
pub(crate) unsafe fn aligned(align: usize, size: usize, kind: u8, zero: bool) -> *mut u8 {
    // SAFETY: forwarded contract.
    let p = unsafe { alloc_zero(size.max(1), align.max(MIN_ALIGN), kind, zero) };
    if !p.is_null() && crate::insight::active() {
        crate::insight::on_alloc(p, size);
    }
    p
}

/// A block of `size > 0` bytes aligned to `align`, sealed; not recorded.
/// Null with `errno = ENOMEM` when out of memory. Its bytes are zero (a
/// large block from the cache of freed ranges: only when `zero`).
unsafe fn alloc(size: usize, align: usize, kind: u8) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { alloc_zero(size, align, kind, false) }
}

#[inline]
unsafe fn alloc_zero(size: usize, align: usize, kind: u8, zero: bool) -> *mut u8 {
    // The common case inline: a slab block of the natural alignment.
    if size <= SHORT_SLAB_MAX - RECORD && align <= MIN_ALIGN {
        ensure_init();
        let need = (size + RECORD).max(MIN_BLOCK);
        if need <= DIRECT_MAX {
            // A small class: a pop from the current slab (the direct
            // table's entry for `need`), which knows its key and block
            // size (no lookup of the block's slab).
            // SAFETY: the index is below DIRECT_LEN for need <=
            // DIRECT_MAX; the calling thread's heap, whose slabs only it
            // pops (an empty heap's are the empty slab).
            unsafe {
                let slab = *(*tls::heap())
                    .local
                    .direct
                    .get_unchecked(direct_index(need));
                let b = (*slab).pop() as usize;
                if b != 0 {
                    let bs = (*slab).block_size as usize;
                    return hand_out(slab, b, bs, b, size, kind, zero);
                }
            }
        }
        // SAFETY: class_of(need) < NUM_CLASSES for need <= SMALL_MAX.
        return unsafe { slab_block(class_of(need), size, 0, kind, zero) };
    }
    // SAFETY: forwarded contract.
    unsafe { alloc_other(size, align, kind, zero) }
}

/// [`alloc_zero`]'s other cases: the first call, aligned and large
/// blocks, impossible sizes.
#[inline(never)]
unsafe fn alloc_other(size: usize, align: usize, kind: u8, zero: bool) -> *mut u8 {
    if size > MAX_REQUEST {
        return nomem();
    }
    ensure_init();
    let need = (size + RECORD).max(MIN_BLOCK);
    let slab_max = slab_max();
    if need <= slab_max {
        let class = if align <= MIN_ALIGN {
            Some(class_of(need))
        } else {
            alloc::class_for_aligned(need, align)
        };
        if let Some(c) = class {
            // SAFETY: c < NUM_CLASSES.
            return unsafe { slab_block(c, size, 0, kind, zero) };
        }
        // A bigger block, the pointer aligned inside it.
        if let Some(n) = need
            .checked_add(align - MIN_ALIGN)
            .filter(|&n| n <= slab_max)
        {
            // SAFETY: as above.
            return unsafe { slab_block(class_of(n), size, align, kind, zero) };
        }
    }
    let (p, dirty) = alloc::large(size, align);
    if p.is_null() {
        return nomem();
    }
    if zero {
        // SAFETY: our block of `size` bytes; the rest is fresh memory.
        unsafe { core::ptr::write_bytes(p, 0, dirty) };
    }
    if let Some(Span::Large(lb)) = span_of(p as usize) {
        // SAFETY: our block's header, just written.
        unsafe { (*lb).kind = kind };
    }
    p
}

/// Hand out block `b` of `bs` bytes of `slab` for `size` bytes of `kind`
/// at `p` (its start, or an aligned address in it): its second link word
/// cleared (the caller cleared the first: a pop does), sealed at `p`. A block leaves the quarantine checked to be
/// zero (`heap::secure`), so it is zero when handed out unless the
/// program wrote to it after that; for `zero` (calloc) that is checked
/// here, from its third word on (a write after free stops the program).
///
/// # Safety
/// `b` was just taken from the live slab `slab` for the caller; `b <= p`
/// and `p + size + RECORD <= b + bs`.
#[inline(always)]
unsafe fn hand_out(
    slab: *const Slab,
    b: usize,
    bs: usize,
    p: usize,
    size: usize,
    kind: u8,
    zero: bool,
) -> *mut u8 {
    let end = b + bs;
    debug_assert!(b <= p && p + size + RECORD <= end);
    // SAFETY: contract: a block of at least 32 bytes, 16-aligned; the
    // record and pattern fit after `size` bytes at `p`.
    unsafe {
        if zero && !still_zero(b + 16, end) {
            written_after_free(b, bs);
        }
        ((b + 8) as *mut u64).write(0);
        canary::seal_medium((*slab).check_key, p, size, b, end, kind);
    }
    p as *mut u8
}

/// A block of class `c` for `size` bytes, its links cleared, sealed at
/// its start (`align` 0) or at the first `align`-aligned address in it
/// ([`hand_out`]).
#[inline]
unsafe fn slab_block(c: usize, size: usize, align: usize, kind: u8, zero: bool) -> *mut u8 {
    // SAFETY: c < NUM_CLASSES (caller); the calling thread's heap.
    let b = unsafe { alloc::alloc_class(tls::heap(), c) } as usize;
    if b == 0 {
        return null_mut();
    }
    // A small slab's header starts the block's granule (no page map
    // lookup); a medium slab may span granules, and a medium block may be
    // one of a bigger class (`heap::medium`'s borrowing): its own slab
    // says how big it is.
    let (slab, bs) = if c < SHARED_FROM {
        (Slab::of_small_block(b as *const _), block_size(c))
    } else {
        let s = PAGEMAP.lookup(b).cast::<Slab>().cast_const();
        // SAFETY: a block just handed out lies in a live slab.
        (s, unsafe { (*s).block_size } as usize)
    };
    let p = if align == 0 {
        b
    } else {
        align_up(b, align).unwrap_or(b)
    };
    // SAFETY: a block just handed to us by its slab (cleared its first
    // word: not every path to it pops); the class was chosen for `size`
    // at `p`.
    unsafe {
        (b as *mut u64).write(0);
        hand_out(slab, b, bs, p, size, kind, zero)
    }
}

/// `calloc`: slab blocks of the secure build are zero when handed out;
/// a large block from the cache is cleared.
///
/// # Safety
/// As [`malloc`].
pub(crate) unsafe fn calloc(n: usize, size: usize) -> *mut u8 {
    match n.checked_mul(size) {
        // SAFETY: forwarded contract.
        Some(total) => unsafe { malloc_zero(total, KIND_MALLOC, true) },
        None => nomem(),
    }
}

/// C++'s `operator new` (one try; `align` 0: the default): a block marked
/// as `new` or (`array`) `new[]`.
///
/// # Safety
/// As [`malloc`].
#[cfg(all(feature = "override", target_arch = "x86_64"))]
pub(crate) unsafe fn new(size: usize, align: usize, array: bool) -> *mut u8 {
    let kind = if array { KIND_NEW_ARRAY } else { KIND_NEW };
    // SAFETY: forwarded contract.
    unsafe {
        if align <= MIN_ALIGN {
            malloc(size, kind)
        } else {
            aligned(align, size, kind, false)
        }
    }
}

// ---------------------------------------------------------------------
// Free

/// `free(p)`, or (`expect`) C++'s `delete` (`KIND_NEW`) or `delete[]`
/// (`KIND_NEW_ARRAY`), which must match how the block was allocated.
///
/// # Safety
/// As `api::libc::free`.
pub(crate) unsafe fn free(p: *mut u8, expect: Option<u8>) {
    // The common case first: a slab block freed at its start, of the
    // kind expected, by a thread with a heap.
    let head = PAGEMAP.lookup(p as usize);
    // SAFETY: a non-null page map entry is a live span header; one
    // tagged SLAB is a slab.
    unsafe {
        if !head.is_null()
            && (*head).tag == TAG_SLAB
            && (*head.cast::<Slab>()).is_block_start(p as usize)
            && free_at_start(p as usize, head.cast(), expect.unwrap_or(KIND_MALLOC))
        {
            return;
        }
        free_other(p, expect)
    }
}

/// [`free`]'s common case: `p` is a carved block start of `s`. False when
/// the block is not sealed as a `kind` block at its start, or the calling
/// thread has no heap: nothing was done, [`free_other`] decides.
///
/// # Safety
/// `p` is a carved block start of the live slab `s`.
#[inline(always)]
unsafe fn free_at_start(p: usize, s: *mut Slab, kind: u8) -> bool {
    // SAFETY: contract: `[p, p + block_size)` is a carved block of `s`.
    unsafe {
        let bs = (*s).block_size as usize;
        if is_quarantined(p) {
            fatal_block("free(): double free", p, bs);
        }
        let heap = tls::heap();
        if heap == crate::heap::types::empty_heap()
            || !canary::sealed_at_start((*s).check_key, p, p + bs, kind)
        {
            return false;
        }
        retire(s, p, bs, p, heap);
    }
    true
}

/// The end of every slab block's free, its own checks passed: the
/// record of the block before checked (an underflow), the tools told,
/// the block quarantined, the heap's upkeep run if due.
///
/// # Safety
/// `[start, start + bs)` is a carved block of the live slab `s` handed
/// out at `p`, being freed; `heap` is the calling thread's (or the
/// exited heap).
#[inline(always)]
unsafe fn retire(
    s: *mut Slab,
    start: usize,
    bs: usize,
    p: usize,
    heap: *mut crate::heap::types::Heap,
) {
    // SAFETY: contract.
    unsafe {
        check_before(s, start, p);
        crate::core::hooks::on_free(p as *mut u8);
        quarantine(heap, start, bs);
        alloc::upkeep_if_due(heap);
    }
}

/// [`free`]'s other cases: null, `malloc(0)`'s pointers, large blocks,
/// blocks not at their start or of another kind, frees by a thread
/// without a heap, and every invalid pointer.
///
/// # Safety
/// As [`free`].
#[inline(never)]
unsafe fn free_other(p: *mut u8, expect: Option<u8>) {
    if p.is_null() {
        return;
    }
    if is_zero_block(p) {
        crate::core::hooks::on_free(p);
        return;
    }
    match span_of(p as usize) {
        None => foreign::free(p),
        // SAFETY: a live slab header (`span_of`).
        Some(Span::Slab(s)) => unsafe { free_slab(p, s, expect) },
        Some(Span::Large(lb)) => {
            // SAFETY: a live large header.
            let kind = unsafe { (*lb).kind };
            check_kind(kind, expect, p as usize);
            crate::core::hooks::on_free(p);
            // SAFETY: `p`'s header (`large::free` checks `p` is its block).
            unsafe { large::free(p, lb.cast()) }
        }
        Some(Span::Freed) => fatal(
            "free(): double free or invalid pointer (memory already freed)",
            p as usize,
        ),
        Some(Span::Corrupt) => fatal("free(): corrupted span header for", p as usize),
    }
}

/// Stop a `delete` of a `new[]` block or a `delete[]` of a `new` one.
fn check_kind(kind: u8, expect: Option<u8>, p: usize) {
    match (expect, kind) {
        (Some(KIND_NEW), KIND_NEW_ARRAY) => fatal(
            "operator delete: the block was allocated by new[] (use delete[]) at",
            p,
        ),
        (Some(KIND_NEW_ARRAY), KIND_NEW) => fatal(
            "operator delete[]: the block was allocated by new (use delete) at",
            p,
        ),
        _ => {}
    }
}

/// Free `p` in slab `s`: its record and pattern, its kind and the
/// neighbour before it checked, then zeroed into the quarantine.
unsafe fn free_slab(p: *mut u8, s: *mut Slab, expect: Option<u8>) {
    let p = p as usize;
    let Some((start, end)) = Span::Slab(s).block_bounds(p) else {
        fatal("free(): invalid pointer (not inside a block)", p);
    };
    let bs = end - start;
    // SAFETY: `start..end` is a carved block of the live slab `s`.
    unsafe {
        if is_quarantined(start) {
            fatal_block("free(): double free", p, bs);
        }
        match canary::medium_record((*s).check_key, p, start, end) {
            Some((_, kind)) => check_kind(kind, expect, p),
            None => unsealed(p, s, start, end),
        }
        // A thread that only ever had medium blocks (per-CPU heaps) gets
        // its heap, and quarantine, now; an exiting thread's blocks go
        // back at once.
        let mut heap = tls::heap();
        if heap == crate::heap::types::empty_heap() {
            heap = crate::heap::lifecycle::thread_heap();
        }
        retire(s, start, bs, p, heap);
    }
}

/// `p` in block `[start, end)` of `s` has no valid record: say why.
#[cold]
#[inline(never)]
unsafe fn unsealed(p: usize, s: *mut Slab, start: usize, end: usize) -> ! {
    let bs = end - start;
    // SAFETY: the record lies at the block's end (caller).
    let w = unsafe { ((end - RECORD) as *const u64).read() };
    let offset = (w >> 16) as u16 as usize;
    if w >> 32 == 0 {
        // Not handed out: on a free list (or waiting in a queue), or never.
        // SAFETY: a carved block start of `s`.
        if unsafe { (*s).looks_free(start as *const _) } {
            fatal_block("free(): double free", p, bs);
        }
        fatal_block("free(): invalid pointer (not a block in use)", p, bs);
    }
    if start + offset != p {
        fatal_block("free(): invalid pointer (not the start of a block)", p, bs);
    }
    fatal_block(
        "heap overflow: the canary or size record after this block was overwritten at",
        p,
        bs,
    )
}

/// The record of the block before `start` (if any) must be intact: an
/// underflow out of `p`'s block writes there. Read as one word, so a
/// record another thread writes or clears at the same time is seen
/// whole.
unsafe fn check_before(s: *mut Slab, start: usize, p: usize) {
    // SAFETY: a live slab header.
    let (first, key) = unsafe { ((*s).first_block(), (*s).check_key) };
    if start <= first {
        return;
    }
    // SAFETY: `start - 8` is the last word of the carved block before.
    let w = unsafe { (*((start - RECORD) as *const AtomicU64)).load(Ordering::Relaxed) };
    if w == 0 {
        return;
    }
    // SAFETY: a live slab header.
    let bs = unsafe { (*s).block_size } as usize;
    let prev = start - bs;
    let (size, offset, check) = (
        w as u16 as usize,
        (w >> 16) as u16 as usize,
        (w >> 32) as u32,
    );
    let p_prev = prev + offset;
    let ok = check != 0
        && p_prev + size + RECORD <= start
        && canary::record_check_matches(key, p_prev, size, check);
    if !ok {
        // The word itself tells a program's write (bytes of its data) from
        // a record the slab's key no longer matches (a plausible size and
        // offset); the state of the block before tells whether a record
        // was due there at all (a block in use has one, a free one none).
        // SAFETY: `prev` is a carved block of the live slab `s`.
        let state = unsafe {
            if is_quarantined(prev) {
                "quarantined"
            } else if (*s).is_waiting(prev as *const _) {
                "waiting in a cache or queue"
            } else if (*s).looks_free(prev as *const _) {
                "free"
            } else {
                "in use"
            }
        };
        crate::util::diag::fatal_block_with(
            "heap underflow: the record of the block before this one was overwritten at",
            p,
            bs,
            |l| {
                l.str("the block before starts at ")
                    .hex(prev as u64)
                    .str("; its record reads ")
                    .hex(w)
                    .str(" (size ")
                    .dec(size as u64)
                    .str(", offset ")
                    .dec(offset as u64)
                    .str("); that block is ")
                    .str(state);
            },
        );
    }
}

// ---------------------------------------------------------------------
// realloc, usable size

/// `realloc(p, size)` of a non-null `p` with `size > 0`, without the
/// tools' hooks (`api::libc` records it). `None`: `p` is not the pool's
/// (the caller moves another allocator's block).
///
/// # Safety
/// As `api::libc::realloc`.
pub(crate) unsafe fn realloc(p: *mut u8, size: usize) -> Option<*mut u8> {
    if size > MAX_REQUEST {
        return Some(nomem());
    }
    if is_zero_block(p) {
        // SAFETY: as malloc.
        return Some(unsafe { alloc(size, MIN_ALIGN, KIND_MALLOC) });
    }
    let old = match span_of(p as usize) {
        None => return None,
        Some(Span::Slab(s)) => {
            let Some((start, end)) = Span::Slab(s).block_bounds(p as usize) else {
                fatal(
                    "realloc(): invalid pointer (not inside a block)",
                    p as usize,
                );
            };
            // SAFETY: a carved block of the live slab `s`.
            unsafe {
                if is_quarantined(start) {
                    fatal_block(
                        "realloc(): invalid pointer (freed)",
                        p as usize,
                        end - start,
                    );
                }
                let Some((old, kind)) =
                    canary::medium_record((*s).check_key, p as usize, start, end)
                else {
                    unsealed(p as usize, s, start, end);
                };
                check_before(s, start, p as usize);
                if p as usize + size + RECORD <= end {
                    // In place: a new record and pattern for the new size.
                    canary::seal_medium((*s).check_key, p as usize, size, start, end, kind);
                    return Some(p);
                }
                old
            }
        }
        Some(span @ Span::Large(lb)) => {
            let Some(old) = span.usable_from(p as usize) else {
                fatal(
                    "realloc(): invalid pointer (inside a large block)",
                    p as usize,
                );
            };
            // In place or by moving pages, as the default build does (the
            // guard page and canaries follow the new size).
            if size > slab_max() || (size <= old && size >= old / 2) {
                // SAFETY: `p`'s live large header.
                if let Some(q) = unsafe { large::realloc(p, lb.cast(), size) } {
                    return Some(q);
                }
            }
            old
        }
        Some(Span::Freed) | Some(Span::Corrupt) => fatal(
            "realloc(): invalid pointer (freed, or not a block start)",
            p as usize,
        ),
    };
    // SAFETY: as malloc.
    let q = unsafe { alloc(size, MIN_ALIGN, KIND_MALLOC) };
    if !q.is_null() {
        // SAFETY: both blocks hold min(old, size) bytes; distinct.
        unsafe {
            core::ptr::copy_nonoverlapping(p, q, old.min(size));
            free(p, None);
        }
    }
    Some(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::size_class::{span_head, GRANULE, SLAB_GRANULES};
    use crate::os::pages::testing::HeapSource;

    #[test]
    fn a_neighbour_whose_record_hashes_to_zero_is_intact() {
        // The block before holds a record whose check word's low half is
        // 0 (one block and size in 2^32): freeing the block after it
        // stopped the program as an underflow (a CPython run did, once in
        // about twenty). The key is chosen to make it so.
        let class = class_of(4097 + RECORD);
        let granules = SLAB_GRANULES[class] as usize;
        let src = HeapSource::default();
        let span = src.map(granules * GRANULE, GRANULE).unwrap();
        // SAFETY: a fresh span of the class's size, ours alone; the two
        // blocks lie in it.
        unsafe {
            let s = Slab::init(
                span_head(span.as_ptr() as usize) as *mut u8,
                granules,
                class,
                0x1000,
            );
            let (first, bs) = ((*s).first_block(), (*s).block_size as usize);
            let key = canary::key_hashing_to_zero(first, 4097);
            (*s).check_key = key;
            canary::seal_medium(key, first, 4097, first, first + bs, KIND_MALLOC);
            // A stop here aborts the test binary.
            check_before(s, first + bs, first + bs);
            assert!(canary::medium_record(key, first, first, first + bs).is_some());
            src.unmap(span, granules * GRANULE);
        }
    }
}
