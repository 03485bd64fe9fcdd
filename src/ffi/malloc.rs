//! The malloc family: `mmpool_*` for explicit linking, and behind the
//! `override` feature the standard names for `LD_PRELOAD`.
//!
//! Uses: `api::cxx`, `api::glibc`, `api::libc`.

use crate::api::libc as api;
use core::ffi::{c_char, c_int, c_void};

/// Allocate `size` bytes, aligned to 16 bytes.
/// Returns NULL and sets `errno = ENOMEM` on failure. Same as `malloc`.
///
/// # Safety
/// Any argument is accepted; the block must later be freed once.
#[no_mangle]
pub unsafe extern "C" fn mmpool_malloc(size: usize) -> *mut c_void {
    // SAFETY: the C contract of malloc.
    unsafe { api::malloc(size).cast() }
}

/// Allocate `count * size` zeroed bytes; NULL with `errno = ENOMEM` when
/// the product overflows or memory is exhausted. Same as `calloc`.
///
/// # Safety
/// Any argument is accepted; the block must later be freed once.
#[no_mangle]
pub unsafe extern "C" fn mmpool_calloc(count: usize, size: usize) -> *mut c_void {
    // SAFETY: the C contract of calloc.
    unsafe { api::calloc(count, size).cast() }
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
    unsafe { api::realloc(ptr.cast(), size).cast() }
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
    unsafe { api::free(ptr.cast()) }
}

/// Free a block allocated for `size` bytes (C23's `free_sized`): `size`
/// must be the size passed to `mmpool_malloc`/`mmpool_calloc` (the
/// product)/`mmpool_realloc`. A size the block was not allocated for (one
/// of another size class) stops the program with an `mmpool:` message
/// naming the size and the block; otherwise as `mmpool_free`.
///
/// # Safety
/// As `mmpool_free`.
#[no_mangle]
pub unsafe extern "C" fn mmpool_free_sized(ptr: *mut c_void, size: usize) {
    // SAFETY: the C contract of free_sized.
    unsafe { crate::api::cxx::free_sized(ptr.cast(), size, 0, "free_sized()") }
}

/// Free a block from `mmpool_aligned_alloc(alignment, size)` (C23's
/// `free_aligned_sized`), with the size checked as `mmpool_free_sized`
/// does.
///
/// # Safety
/// As `mmpool_free`.
#[no_mangle]
pub unsafe extern "C" fn mmpool_free_aligned_sized(
    ptr: *mut c_void,
    alignment: usize,
    size: usize,
) {
    // SAFETY: the C contract of free_aligned_sized.
    unsafe { crate::api::cxx::free_sized(ptr.cast(), size, alignment, "free_aligned_sized()") }
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
    unsafe { api::aligned_alloc(alignment, size).cast() }
}

/// Resize to `count * size` bytes, as `mmpool_realloc`, with the product
/// checked: NULL with `errno = ENOMEM` when it overflows (the block stays
/// valid). Same as `reallocarray`.
///
/// # Safety
/// As `mmpool_realloc`.
#[no_mangle]
pub unsafe extern "C" fn mmpool_reallocarray(
    ptr: *mut c_void,
    count: usize,
    size: usize,
) -> *mut c_void {
    // SAFETY: the C contract of reallocarray.
    unsafe { api::reallocarray(ptr.cast(), count, size).cast() }
}

/// Store in `*out` a block of `size` bytes aligned to `alignment` (a
/// power of two multiple of `sizeof(void *)`). Returns 0, `EINVAL` for
/// another alignment, `ENOMEM` when out of memory; `*out` is written only
/// on success. Same as `posix_memalign`.
///
/// # Safety
/// `out` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn mmpool_posix_memalign(
    out: *mut *mut c_void,
    alignment: usize,
    size: usize,
) -> c_int {
    // SAFETY: the C contract of posix_memalign.
    unsafe { api::posix_memalign(out, alignment, size) }
}

/// Allocate `size` bytes aligned to `alignment`, rounded up to a power of
/// two. Same as `memalign`.
///
/// # Safety
/// Any argument is accepted; the block must later be freed once.
#[no_mangle]
pub unsafe extern "C" fn mmpool_memalign(alignment: usize, size: usize) -> *mut c_void {
    // SAFETY: the C contract of memalign.
    unsafe { api::memalign(alignment, size).cast() }
}

/// Allocate `size` bytes aligned to the page size. Same as `valloc`.
///
/// # Safety
/// Any argument is accepted; the block must later be freed once.
#[no_mangle]
pub unsafe extern "C" fn mmpool_valloc(size: usize) -> *mut c_void {
    // SAFETY: the C contract of valloc.
    unsafe { api::valloc(size).cast() }
}

/// Allocate `size` bytes rounded up to whole pages, page-aligned. Same as
/// `pvalloc`.
///
/// # Safety
/// Any argument is accepted; the block must later be freed once.
#[no_mangle]
pub unsafe extern "C" fn mmpool_pvalloc(size: usize) -> *mut c_void {
    // SAFETY: the C contract of pvalloc.
    unsafe { api::pvalloc(size).cast() }
}

/// Give idle memory back to the operating system now: heaps of exited
/// threads, empty slabs, cached spans and large blocks. Returns true when
/// any memory was released. Same as `malloc_trim(0)`.
#[no_mangle]
pub extern "C" fn mmpool_trim() -> bool {
    api::trim()
}

/// glibc's `mallopt` for the pool: `M_MMAP_THRESHOLD` (large blocks of at
/// least that many bytes count as mmapped in `mallinfo2`, and go back to
/// the OS at free) and `M_TRIM_THRESHOLD` (idle memory kept before it is
/// returned) take effect; glibc's other parameters are accepted. Returns
/// glibc's answer: 1, or 0 for an `M_MXFAST` out of range.
#[no_mangle]
pub extern "C" fn mmpool_mallopt(param: c_int, value: c_int) -> c_int {
    crate::api::glibc::mallopt(param, value)
}

/// Print glibc's `malloc_stats` lines for the pool (`Arena 0:`, `system
/// bytes`, `in use bytes`, `Total (incl. mmap):`, `max mmap regions`,
/// `max mmap bytes`), then the pool's statistics table, on stderr. Not a
/// cancellation point. Same as `malloc_stats`.
#[no_mangle]
pub extern "C" fn mmpool_malloc_stats() {
    crate::api::glibc::malloc_stats()
}

/// Write glibc's `malloc_info` XML for the pool to `fp`: 0, or `EINVAL`
/// when `options` is not 0. Same as `malloc_info`.
///
/// # Safety
/// `fp` must be a valid `FILE *` open for writing.
#[no_mangle]
pub unsafe extern "C" fn mmpool_malloc_info(options: c_int, fp: *mut libc::FILE) -> c_int {
    // SAFETY: the C contract of malloc_info.
    unsafe { crate::api::glibc::malloc_info(options, fp) }
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
    unsafe { api::usable_size(ptr.cast()) }
}

/// True when `ptr` points into a block the pool handed out (its start or
/// any address inside it). False for NULL, stack and static addresses,
/// blocks of other allocators, and freed large blocks. (A freed small
/// block stays inside the pool's slabs, so this is an origin test, not a
/// liveness test.) Never crashes, whatever the argument.
#[no_mangle]
pub extern "C" fn mmpool_owns(ptr: *const c_void) -> bool {
    crate::api::libc::owns(ptr.cast())
}

/// The library's version, e.g. `"0.1.0"`; a static string.
#[no_mangle]
pub extern "C" fn mmpool_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The standard names, for `LD_PRELOAD` (feature `override`).
#[cfg(feature = "override")]
mod overrides {
    use crate::api::libc as api;
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
        free_sized(p: *mut c_void, size: usize) =>
            crate::api::cxx::free_sized(p.cast(), size, 0, "free_sized()");
        free_aligned_sized(p: *mut c_void, align: usize, size: usize) =>
            crate::api::cxx::free_sized(p.cast(), size, align, "free_aligned_sized()");
        __libc_malloc(size: usize) -> *mut c_void => api::malloc(size).cast();
        __libc_free(p: *mut c_void) => api::free(p.cast());
        __libc_calloc(n: usize, size: usize) -> *mut c_void => api::calloc(n, size).cast();
        __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void => api::realloc(p.cast(), size).cast();
        __libc_memalign(align: usize, size: usize) -> *mut c_void => api::memalign(align, size).cast();
        __posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int =>
            api::posix_memalign(out, align, size);
    }
}
