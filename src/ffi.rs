//! The C ABI: `mmpool_*` functions for explicit linking (declared in
//! `include/mmpool.h`), and, behind the `override` feature, the malloc
//! family under its standard names for `LD_PRELOAD`.
//!
//! Every export is one call into `libc_api`. The `///` comments here
//! become the header's documentation.
//!
//! Conventions of the C API: every pointer argument may be NULL where the
//! standard function allows it; failed allocations return NULL and set
//! `errno` to `ENOMEM`; all functions are thread-safe.

#![allow(non_camel_case_types)] // C names in the C API

use crate::libc_api;
use core::ffi::{c_char, c_int, c_void};

/// Allocate `size` bytes, aligned to 16 bytes.
/// Returns NULL and sets `errno = ENOMEM` on failure. Same as `malloc`.
///
/// # Safety
/// Any argument is accepted; the block must later be freed once.
#[no_mangle]
pub unsafe extern "C" fn mmpool_malloc(size: usize) -> *mut c_void {
    // SAFETY: the C contract of malloc.
    unsafe { libc_api::malloc(size).cast() }
}

/// Allocate `count * size` zeroed bytes; NULL with `errno = ENOMEM` when
/// the product overflows or memory is exhausted. Same as `calloc`.
///
/// # Safety
/// Any argument is accepted; the block must later be freed once.
#[no_mangle]
pub unsafe extern "C" fn mmpool_calloc(count: usize, size: usize) -> *mut c_void {
    // SAFETY: the C contract of calloc.
    unsafe { libc_api::calloc(count, size).cast() }
}

/// Resize a block, keeping its contents. `ptr == NULL` allocates;
/// `size == 0` frees `ptr` and returns NULL (as glibc). On failure returns
/// NULL, sets `errno = ENOMEM`, and leaves `ptr` valid. Same as `realloc`.
///
/// # Safety
/// `ptr` must be NULL or a live block from this library (or from the
/// allocator the program used before it), not yet freed.
#[no_mangle]
pub unsafe extern "C" fn mmpool_realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the C contract of realloc.
    unsafe { libc_api::realloc(ptr.cast(), size).cast() }
}

/// Free a block (NULL is ignored). A double free or a pointer into the
/// middle of a block stops the program with an `mmpool:` message; a
/// pointer from another allocator is handed to it. Same as `free`.
///
/// # Safety
/// `ptr` must be NULL or a live block from this library (or from the
/// allocator the program used before it), not yet freed.
#[no_mangle]
pub unsafe extern "C" fn mmpool_free(ptr: *mut c_void) {
    // SAFETY: the C contract of free.
    unsafe { libc_api::free(ptr.cast()) }
}

/// Allocate `size` bytes aligned to `alignment`, a power of two (any, up
/// to 1 GiB and beyond). NULL with `errno = EINVAL` for an alignment that
/// is not a power of two, `ENOMEM` when out of memory. Same as
/// `aligned_alloc`; free the block with `mmpool_free`.
///
/// # Safety
/// Any argument is accepted; the block must later be freed once.
#[no_mangle]
pub unsafe extern "C" fn mmpool_aligned_alloc(alignment: usize, size: usize) -> *mut c_void {
    // SAFETY: the C contract of aligned_alloc.
    unsafe { libc_api::aligned_alloc(alignment, size).cast() }
}

/// Bytes usable in the block at `ptr` (at least what was asked; writing
/// up to it is safe). 0 for NULL. Same as `malloc_usable_size`.
///
/// # Safety
/// `ptr` must be NULL or a live block from this library (or from the
/// allocator the program used before it), not yet freed.
#[no_mangle]
pub unsafe extern "C" fn mmpool_usable_size(ptr: *const c_void) -> usize {
    // SAFETY: the C contract of malloc_usable_size.
    unsafe { libc_api::usable_size(ptr.cast()) }
}

/// True when `ptr` points into a block the pool handed out (its start or
/// any address inside it). False for NULL, stack and static addresses,
/// blocks of other allocators, and freed large blocks. (A freed small
/// block stays inside the pool's slabs, so this is an origin test, not a
/// liveness test.) Never crashes, whatever the argument.
#[no_mangle]
pub extern "C" fn mmpool_owns(ptr: *const c_void) -> bool {
    libc_api::owns(ptr.cast())
}

/// The library's version, e.g. `"0.1.0"`; a static string.
#[no_mangle]
pub extern "C" fn mmpool_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The standard names, for `LD_PRELOAD` (feature `override`).
#[cfg(feature = "override")]
mod overrides {
    use crate::libc_api as api;
    use core::ffi::{c_int, c_void};

    /// Export each listed function under its C name as a one-line wrapper.
    macro_rules! export {
        ($( $name:ident ( $($arg:ident : $ty:ty),* ) $(-> $ret:ty)? => $body:expr; )*) => {
            $(
                #[no_mangle]
                pub unsafe extern "C" fn $name($($arg: $ty),*) $(-> $ret)? {
                    // SAFETY: the C contract of the function of this name.
                    unsafe { $body }
                }
            )*
        };
    }

    export! {
        malloc(size: usize) -> *mut c_void => api::malloc(size).cast();
        free(p: *mut c_void) => api::free(p.cast());
        calloc(n: usize, size: usize) -> *mut c_void => api::calloc(n, size).cast();
        realloc(p: *mut c_void, size: usize) -> *mut c_void => api::realloc(p.cast(), size).cast();
        reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void =>
            api::reallocarray(p.cast(), n, size).cast();
        posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int =>
            api::posix_memalign(out, align, size);
        aligned_alloc(align: usize, size: usize) -> *mut c_void => api::aligned_alloc(align, size).cast();
        memalign(align: usize, size: usize) -> *mut c_void => api::memalign(align, size).cast();
        valloc(size: usize) -> *mut c_void => api::valloc(size).cast();
        pvalloc(size: usize) -> *mut c_void => api::pvalloc(size).cast();
        malloc_usable_size(p: *mut c_void) -> usize => api::usable_size(p.cast());
        free_sized(p: *mut c_void, _size: usize) => api::free(p.cast());
        free_aligned_sized(p: *mut c_void, _align: usize, _size: usize) => api::free(p.cast());
        __libc_malloc(size: usize) -> *mut c_void => api::malloc(size).cast();
        __libc_free(p: *mut c_void) => api::free(p.cast());
        __libc_calloc(n: usize, size: usize) -> *mut c_void => api::calloc(n, size).cast();
        __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void => api::realloc(p.cast(), size).cast();
        __libc_memalign(align: usize, size: usize) -> *mut c_void => api::memalign(align, size).cast();
        __posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int =>
            api::posix_memalign(out, align, size);
    }
}

// ---------------------------------------------------------------------------
// Arenas: one pool per connection.

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

/// Counters of one arena (children not included).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct mmpool_arena_stats_t {
    /// Bytes requested by live allocations since the last reset.
    pub bytes_requested: usize,
    /// Bytes held from the global pool: blocks plus large allocations.
    pub bytes_held: usize,
    /// Blocks held (at least 1).
    pub blocks: usize,
    /// Live large allocations.
    pub large_blocks: usize,
    /// Live child arenas.
    pub children: usize,
    /// Registered cleanup handlers.
    pub cleanups: usize,
}

fn arena_of(a: *const mmpool_arena_t) -> Option<*mut crate::arena::ArenaCore> {
    let core = a as *mut crate::arena::ArenaCore;
    crate::arena::is_arena(core as usize).then_some(core)
}

fn einval<T>() -> *mut T {
    crate::diag::set_errno(libc::EINVAL);
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
    crate::arena::create(block_size).cast()
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
        Some(p) => unsafe { crate::arena::create_child(p, block_size) }.cast(),
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
        unsafe { crate::arena::destroy(a) }
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
        unsafe { crate::arena::reset(a) }
    }
}

fn arena_alloc(a: *mut mmpool_arena_t, size: usize, align: usize) -> *mut c_void {
    match arena_of(a) {
        // SAFETY: a live arena, single-threaded by contract.
        Some(a) => unsafe { crate::arena::alloc(a, size, align) }.cast(),
        None => einval(),
    }
}

/// Allocate `size` bytes, 16-byte aligned. NULL with `errno = EINVAL` for
/// a NULL or invalid arena, `ENOMEM` when out of memory.
#[no_mangle]
pub extern "C" fn mmpool_arena_alloc(a: *mut mmpool_arena_t, size: usize) -> *mut c_void {
    arena_alloc(a, size, crate::arena::ARENA_ALIGN)
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
    let p = arena_alloc(a, size, crate::arena::ARENA_ALIGN);
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
        Some(a) => unsafe { crate::arena::free(a, p.cast()) },
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
        Some(a) => unsafe { crate::arena::cleanup_add(a, handler, data) }.cast(),
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
        Some(a) => unsafe { crate::arena::cleanup_remove(a, c.cast()) },
        None => -1,
    }
}

/// Fill `*out` with the arena's counters (all zero for a NULL or invalid
/// arena). A NULL `out` is ignored.
///
/// # Safety
/// `out` must be NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn mmpool_arena_stats(
    a: *const mmpool_arena_t,
    out: *mut mmpool_arena_stats_t,
) {
    if out.is_null() {
        return;
    }
    let s = match arena_of(a) {
        // SAFETY: a live arena.
        Some(a) => unsafe { crate::arena::stats(a) },
        None => crate::arena::ArenaStats::default(),
    };
    // SAFETY: contract.
    unsafe {
        *out = mmpool_arena_stats_t {
            bytes_requested: s.bytes_requested,
            bytes_held: s.bytes_held,
            blocks: s.blocks,
            large_blocks: s.large_blocks,
            children: s.children,
            cleanups: s.cleanups,
        }
    };
}

// ---------------------------------------------------------------------------
// Statistics.

/// Size of the `classes` array of `mmpool_stats_t`.
pub const MMPOOL_MAX_CLASSES: usize = 64;

/// Counters of one size class.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct mmpool_class_stats_t {
    /// Block size in bytes.
    pub block_size: usize,
    /// Allocations (counted with `MMPOOL_STATS=1` only).
    pub allocs: usize,
    /// Frees (with `MMPOOL_STATS=1` only).
    pub frees: usize,
    /// Live blocks (with `MMPOOL_STATS=1` only).
    pub live: usize,
    /// Most live blocks at once (with `MMPOOL_STATS=1` only).
    pub peak_live: usize,
    /// Slabs held by the class.
    pub slabs: usize,
    /// Bytes of those slabs.
    pub bytes_held: usize,
}

/// A snapshot of the pool's counters. Fields marked "with MMPOOL_STATS"
/// are zero unless the program runs with `MMPOOL_STATS` set (counting
/// every allocation costs time; the others are kept always).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct mmpool_stats_t {
    /// Requested bytes of live blocks (with MMPOOL_STATS).
    pub requested: usize,
    /// Most requested bytes live at once (with MMPOOL_STATS).
    pub requested_peak: usize,
    /// Requested bytes over the whole run (with MMPOOL_STATS).
    pub requested_total: usize,
    /// Bytes held for the program: slabs in use plus large mappings.
    pub held: usize,
    /// Bytes mapped from the OS for slabs.
    pub spans_mapped: usize,
    /// Bytes of idle slab spans still resident (purged after a delay).
    pub spans_cached: usize,
    /// Live large blocks.
    pub large_live: usize,
    /// Bytes mapped for live large blocks.
    pub large_bytes: usize,
    /// Large allocations (with MMPOOL_STATS).
    pub large_allocs: usize,
    /// Large frees (with MMPOOL_STATS).
    pub large_frees: usize,
    /// Mappings made for large blocks.
    pub large_maps: usize,
    /// Large allocations served from the cache of freed mappings.
    pub large_cache_hits: usize,
    /// Resident set size now, bytes.
    pub rss: usize,
    /// Peak resident set size, bytes.
    pub rss_peak: usize,
    /// Threads that ever made a heap (allocated a block of up to 1 KiB;
    /// medium and large blocks need none).
    pub threads_seen: usize,
    /// Threads alive with a heap.
    pub threads_live: usize,
    /// True when allocation counts were kept (MMPOOL_STATS set).
    pub detailed: bool,
    /// Valid entries of `classes`.
    pub num_classes: usize,
    /// Per size class, smallest first.
    pub classes: [mmpool_class_stats_t; MMPOOL_MAX_CLASSES],
    /// Heap structs ever made (new threads reuse those of exited ones).
    pub heaps_made: usize,
    /// Heaps of exited threads kept with their slabs for the next new
    /// thread (at most 8; one parked for over a second is given up at
    /// the next allocator slow path, and trimming gives up all).
    pub heaps_parked: usize,
    /// Per-CPU heaps made for the medium classes (blocks of 1.25-32 KiB),
    /// at most one per CPU.
    pub shared_heaps: usize,
}

/// Fill `*out` with the pool's counters. A NULL `out` is ignored.
///
/// # Safety
/// `out` must be NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn mmpool_stats_get(out: *mut mmpool_stats_t) {
    if out.is_null() {
        return;
    }
    let s = crate::stats::snapshot();
    let mut classes = [mmpool_class_stats_t::default(); MMPOOL_MAX_CLASSES];
    for (o, c) in classes.iter_mut().zip(s.classes.iter()) {
        *o = mmpool_class_stats_t {
            block_size: c.block_size,
            allocs: c.allocs,
            frees: c.frees,
            live: c.live,
            peak_live: c.peak,
            slabs: c.slabs,
            bytes_held: c.bytes_held,
        };
    }
    // SAFETY: contract.
    unsafe {
        out.write(mmpool_stats_t {
            requested: s.requested,
            requested_peak: s.requested_peak,
            requested_total: s.requested_total,
            held: s.held,
            spans_mapped: s.spans_mapped,
            spans_cached: s.spans_cached,
            large_live: s.large.live,
            large_bytes: s.large_bytes,
            large_allocs: s.large.allocs,
            large_frees: s.large.frees,
            large_maps: s.large_maps,
            large_cache_hits: s.large_cache_hits,
            rss: s.rss,
            rss_peak: s.rss_peak,
            threads_seen: s.threads_seen,
            threads_live: s.threads_live,
            detailed: s.detailed,
            num_classes: s.classes.len(),
            classes,
            heaps_made: s.heaps_made,
            heaps_parked: s.heaps_parked,
            shared_heaps: s.shared_heaps,
        })
    };
}

/// Print the statistics table (the one `MMPOOL_STATS=1` prints at exit)
/// to file descriptor `fd`.
#[no_mangle]
pub extern "C" fn mmpool_stats_print(fd: c_int) {
    crate::stats::print(fd);
}

const _: () = assert!(crate::size_class::NUM_CLASSES <= MMPOOL_MAX_CLASSES);

/// glibc's statistics and tracing API, for `LD_PRELOAD` (feature
/// `override`).
#[cfg(feature = "override")]
mod glibc_extras {
    use core::ffi::c_int;

    /// `malloc_stats`: our table on stderr.
    #[no_mangle]
    pub extern "C" fn malloc_stats() {
        crate::stats::print(2);
    }

    /// `mallinfo2`, filled from our counters.
    #[no_mangle]
    pub extern "C" fn mallinfo2() -> libc::mallinfo2 {
        crate::stats::mallinfo2()
    }

    /// `mallinfo` (deprecated: int fields, saturated).
    #[no_mangle]
    pub extern "C" fn mallinfo() -> libc::mallinfo {
        let m = crate::stats::mallinfo2();
        let c = |v: usize| v.min(c_int::MAX as usize) as c_int;
        libc::mallinfo {
            arena: c(m.arena),
            ordblks: c(m.ordblks),
            smblks: c(m.smblks),
            hblks: c(m.hblks),
            hblkhd: c(m.hblkhd),
            usmblks: c(m.usmblks),
            fsmblks: c(m.fsmblks),
            uordblks: c(m.uordblks),
            fordblks: c(m.fordblks),
            keepcost: c(m.keepcost),
        }
    }

    /// `malloc_trim`: give idle memory back to the OS now; 1 if any was.
    #[no_mangle]
    pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
        crate::stats::trim() as c_int
    }

    /// `mtrace`: start an mtrace log in `$MALLOC_TRACE` (which must be set
    /// when the program starts).
    #[no_mangle]
    pub extern "C" fn mtrace() {
        crate::trace::mtrace();
    }

    /// `muntrace`: end the log.
    #[no_mangle]
    pub extern "C" fn muntrace() {
        crate::trace::muntrace();
    }
}
