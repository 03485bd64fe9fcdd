//! The pool for Rust programs: [`MmPool`], a `GlobalAlloc` for
//! `#[global_allocator]`, and [`owns`] and [`stats`], the Rust faces of
//! `mmpool_owns` and `mmpool_stats_get`.
//!
//! A program that depends on the crate gets the rlib, built without the
//! `override` feature: the pool serves its Rust allocations only, and
//! the C `malloc` of the process (its C libraries, `libc::malloc`) stays
//! the system's. Preloading the shipped `libmmpool.so` as well puts C
//! `malloc` on a second, separate pool; a program that wants one pool
//! for both keeps Rust's default `System` allocator and preloads the
//! library (then `System` reaches the pool through `malloc`).
//!
//! Alignment: every block `malloc` hands out is 16-byte aligned
//! ([`MIN_ALIGN`], glibc's guarantee, for blocks of every size here), so
//! layouts aligned to 16 or less take the plain paths (`malloc`,
//! `calloc`, `realloc`) and larger alignments the aligned ones, which
//! serve any power of two (page alignment and above: large blocks are
//! mapped at the alignment). A failed allocation returns null, as
//! `GlobalAlloc` requires (Rust's `handle_alloc_error` decides what
//! happens next); nothing here aborts.
//!
//! Uses: `api::libc`, `core::size_class`, `insight::stats`.

use crate::api::libc as api;
use crate::core::size_class::MIN_ALIGN;
use crate::insight::stats::Stats;
use core::alloc::{GlobalAlloc, Layout};

/// mmpool as the Rust global allocator:
///
/// ```no_run
/// #[global_allocator]
/// static GLOBAL: mmpool::MmPool = mmpool::MmPool;
///
/// fn main() {
///     let b = Box::new(42u64);
///     assert!(mmpool::owns(&*b as *const u64 as *const u8));
/// }
/// ```
///
/// Every `Layout` works, whatever its alignment; `realloc` keeps the
/// alignment, and `alloc_zeroed` writes no zeros into memory fresh from
/// the OS. The program's C `malloc` is not affected (see the crate
/// README, "From Rust").
#[derive(Clone, Copy, Debug, Default)]
pub struct MmPool;

// SAFETY: the blocks come from the pool's malloc family, which returns
// blocks of at least the requested size at the requested alignment (16
// for the plain calls, `layout.align()` for the aligned ones) or null;
// `dealloc` and `realloc` are given only blocks this allocator returned.
unsafe impl GlobalAlloc for MmPool {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MIN_ALIGN {
            // SAFETY: malloc may be called from any thread at any time.
            unsafe { api::malloc(layout.size()) }
        } else {
            // SAFETY: as malloc; `Layout` alignments are powers of two.
            unsafe { api::alloc_aligned(layout.align(), layout.size()) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a live block of this allocator; free
        // takes aligned blocks (interior pointers of a slab block) too.
        unsafe { api::free(ptr) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MIN_ALIGN {
            // SAFETY: as malloc; calloc zeroes only what may be dirty.
            unsafe { api::calloc(1, layout.size()) }
        } else {
            // SAFETY: as malloc; a power-of-two alignment.
            unsafe { api::alloc_aligned_zeroed(layout.align(), layout.size()) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MIN_ALIGN {
            // SAFETY: a live block of ours; `new_size` is not zero
            // (GlobalAlloc's contract), so this never frees and returns
            // null, and a failure leaves `ptr` valid.
            unsafe { api::realloc(ptr, new_size) }
        } else {
            // SAFETY: forwarded contract.
            unsafe { realloc_aligned(ptr, layout, new_size) }
        }
    }
}

/// `realloc` of a block aligned above 16: the pool's `realloc` would
/// move it to a 16-byte aligned one, so this stays in place when the
/// block can hold `new_size` and moves to a new block at the same
/// alignment otherwise. A shrink below half the block moves too (as
/// `realloc` does: a large block gives its memory back), unless the
/// block is no bigger than twice the alignment, which any new block
/// would be as well.
///
/// # Safety
/// `GlobalAlloc::realloc`'s: `ptr` a live block of this allocator with
/// `layout`, `new_size` not zero.
#[cold]
unsafe fn realloc_aligned(ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    // SAFETY: a live block of ours.
    let usable = unsafe { api::usable_size(ptr) };
    if new_size <= usable && (new_size >= usable / 2 || usable <= 2 * layout.align()) {
        return ptr;
    }
    // SAFETY: as malloc; a power-of-two alignment.
    let q = unsafe { api::alloc_aligned(layout.align(), new_size) };
    if !q.is_null() {
        // SAFETY: the old block holds `layout.size()` bytes, the new one
        // `new_size`; two live blocks, so they do not overlap; the old
        // one is freed once, after the copy.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr, q, layout.size().min(new_size));
            api::free(ptr);
        }
    }
    q
}

/// True when `ptr` points into a block the pool handed out (its start or
/// any address inside it): false for null, stack and static addresses,
/// blocks of other allocators (the C `malloc` of a program that uses
/// [`MmPool`] is one), and freed large blocks. A freed small block stays
/// inside the pool's slabs, so this is an origin test, not a liveness
/// test. Any address may be asked; nothing is read through it.
pub fn owns(ptr: *const u8) -> bool {
    crate::api::libc::owns(ptr)
}

/// A snapshot of the pool's counters: the C API's `mmpool_stats_t`
/// (`mmpool_stats_get`). The allocation counts and requested bytes are
/// kept only when the program runs with `MMPOOL_STATS` set; the rest
/// (bytes held, slabs, large blocks, resident memory, threads) always.
pub fn stats() -> Stats {
    crate::insight::stats::snapshot()
}
