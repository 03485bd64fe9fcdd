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

use crate::libc_api;
use core::ffi::{c_char, c_void};

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
