//! Arenas: one pool per connection (`mmpool_arena_*`).
//!
//! Uses: `api::arena`, `os::errno`.

use crate::api::arena::{self, ArenaCore, ArenaStats};
use core::ffi::{c_int, c_void};

/// An arena (opaque). Single-threaded by contract: one thread at a time
/// may use an arena and its children; different arenas may be used by
/// different threads at once.
pub struct mmpool_arena {
    _opaque: [u8; 0],
}

/// An arena (opaque).
pub type mmpool_arena_t = mmpool_arena;

/// A registered cleanup handler (opaque handle).
pub struct mmpool_cleanup {
    _opaque: [u8; 0],
}

/// A registered cleanup handler (opaque handle).
pub type mmpool_cleanup_t = mmpool_cleanup;

/// Counters of one arena (children not included): `ArenaStats`, which
/// the header names `mmpool_arena_stats_t`.
pub type mmpool_arena_stats_t = ArenaStats;

#[inline(always)]
fn arena_of(a: *const mmpool_arena_t) -> Option<*mut ArenaCore> {
    let core = a as *mut ArenaCore;
    arena::is_live(core as usize).then_some(core)
}

fn einval<T>() -> *mut T {
    crate::os::errno::set(libc::EINVAL);
    core::ptr::null_mut()
}

/// Create an arena whose blocks are `block_size` bytes (0: 16 KiB; sizes
/// are clamped to 512 B .. 64 MiB). Requests up to a quarter of a block
/// are bumped from blocks; larger ones get their own block, freeable with
/// `mmpool_arena_free`. NULL with `errno = ENOMEM` when out of memory.
/// With `MMPOOL_ARENA_DEBUG=1` every allocation is its own block of the
/// global pool (visible to leak reports and valgrind).
#[no_mangle]
pub extern "C" fn mmpool_arena_create(block_size: usize) -> *mut mmpool_arena_t {
    arena::create(block_size).cast()
}

/// Create a child of `parent`: destroyed when the parent is destroyed or
/// reset, or earlier by `mmpool_arena_destroy`. NULL with `errno = EINVAL`
/// for a NULL or invalid parent, `ENOMEM` when out of memory.
#[no_mangle]
pub extern "C" fn mmpool_arena_create_child(
    parent: *mut mmpool_arena_t,
    block_size: usize,
) -> *mut mmpool_arena_t {
    match arena_of(parent) {
        // SAFETY: a live arena; single-threaded by the API's contract.
        Some(p) => unsafe { arena::create_child(p, block_size) }.cast(),
        None => einval(),
    }
}

/// Destroy an arena: its children first, then its cleanup handlers (last
/// added first), then its memory. NULL is ignored.
///
/// # Safety
/// Nothing allocated from the arena may be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn mmpool_arena_destroy(a: *mut mmpool_arena_t) {
    if let Some(a) = arena_of(a) {
        // SAFETY: a live arena; the caller gives up its allocations.
        unsafe { arena::destroy(a) }
    }
}

/// Reset an arena: destroy its children, run and remove its cleanup
/// handlers, free its large allocations, and rewind, keeping one block
/// for reuse. NULL is ignored.
///
/// # Safety
/// Nothing allocated from the arena may be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn mmpool_arena_reset(a: *mut mmpool_arena_t) {
    if let Some(a) = arena_of(a) {
        // SAFETY: as in destroy.
        unsafe { arena::reset(a) }
    }
}

#[inline(always)]
fn arena_alloc(a: *mut mmpool_arena_t, size: usize, align: usize) -> *mut c_void {
    match arena_of(a) {
        // SAFETY: a live arena, single-threaded by contract.
        Some(a) => unsafe { arena::alloc(a, size, align) }.cast(),
        None => einval(),
    }
}

/// Allocate `size` bytes, 16-byte aligned. NULL with `errno = EINVAL` for
/// a NULL or invalid arena, `ENOMEM` when out of memory.
#[no_mangle]
pub extern "C" fn mmpool_arena_alloc(a: *mut mmpool_arena_t, size: usize) -> *mut c_void {
    arena_alloc(a, size, arena::ARENA_ALIGN)
}

/// Allocate `size` bytes without alignment (strings, byte buffers).
/// Errors as `mmpool_arena_alloc`.
#[no_mangle]
pub extern "C" fn mmpool_arena_nalloc(a: *mut mmpool_arena_t, size: usize) -> *mut c_void {
    arena_alloc(a, size, 1)
}

/// Allocate `size` zeroed bytes, 16-byte aligned. Errors as
/// `mmpool_arena_alloc`.
#[no_mangle]
pub extern "C" fn mmpool_arena_calloc(a: *mut mmpool_arena_t, size: usize) -> *mut c_void {
    let p = arena_alloc(a, size, arena::ARENA_ALIGN);
    if !p.is_null() {
        // SAFETY: `p` holds `size` bytes.
        unsafe { core::ptr::write_bytes(p.cast::<u8>(), 0, size) };
    }
    p
}

/// Allocate `size` bytes aligned to `alignment`, a power of two. NULL with
/// `errno = EINVAL` for another alignment or an invalid arena, `ENOMEM`
/// when out of memory.
#[no_mangle]
pub extern "C" fn mmpool_arena_memalign(
    a: *mut mmpool_arena_t,
    size: usize,
    alignment: usize,
) -> *mut c_void {
    if !alignment.is_power_of_two() {
        return einval();
    }
    arena_alloc(a, size, alignment)
}

/// Free a large allocation of the arena now (in O(1)): 0. Returns -1 and
/// does nothing for anything else: small (bumped) allocations, which go at
/// reset or destroy, pointers of other arenas or allocators, NULL.
///
/// # Safety
/// A 0 return means the block is gone: do not use it afterwards.
#[no_mangle]
pub unsafe extern "C" fn mmpool_arena_free(a: *mut mmpool_arena_t, p: *mut c_void) -> c_int {
    match arena_of(a) {
        // SAFETY: a live arena; `p` is validated before use.
        Some(a) => unsafe { arena::free(a, p.cast()) },
        None => -1,
    }
}

/// Register `handler(data)` to run when the arena is reset or destroyed;
/// handlers run last added first. Returns a handle for
/// `mmpool_arena_cleanup_remove`, or NULL (`errno = EINVAL` for an invalid
/// arena, `ENOMEM` when out of memory).
///
/// # Safety
/// `handler` must be safe to call with `data` at reset or destroy time.
#[no_mangle]
pub unsafe extern "C" fn mmpool_arena_cleanup_add(
    a: *mut mmpool_arena_t,
    handler: Option<unsafe extern "C" fn(data: *mut c_void)>,
    data: *mut c_void,
) -> *mut mmpool_cleanup_t {
    match arena_of(a) {
        // SAFETY: a live arena; the handler is the caller's contract.
        Some(a) => unsafe { arena::cleanup_add(a, handler, data) }.cast(),
        None => einval(),
    }
}

/// Unregister a cleanup handler without running it: 0, or -1 when `c` is
/// not a registered handler of `a`.
///
/// # Safety
/// `c` must be NULL or a handle returned by `mmpool_arena_cleanup_add`
/// (of any arena) whose arena is still alive.
#[no_mangle]
pub unsafe extern "C" fn mmpool_arena_cleanup_remove(
    a: *mut mmpool_arena_t,
    c: *mut mmpool_cleanup_t,
) -> c_int {
    match arena_of(a) {
        // SAFETY: a live arena; the handle's magic is checked before use.
        Some(a) => unsafe { arena::cleanup_remove(a, c.cast()) },
        None => -1,
    }
}

/// Fill `*out` with the arena's counters (all zero for a NULL or invalid
/// arena). A NULL `out` is ignored.
///
/// # Safety
/// `out` must be NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn mmpool_arena_stats(a: *const mmpool_arena_t, out: *mut ArenaStats) {
    if out.is_null() {
        return;
    }
    let s = match arena_of(a) {
        // SAFETY: a live arena.
        Some(a) => unsafe { arena::stats(a) },
        None => ArenaStats::default(),
    };
    // SAFETY: contract.
    unsafe { out.write(s) };
}
