//! glibc's statistics, tuning and tracing API under its own names, for
//! `LD_PRELOAD` (feature `override`; C code gets the prototypes from
//! `<malloc.h>` and `<mcheck.h>`).
//!
//! Uses: `api::glibc`, `api::libc`.

use crate::api::glibc as api;
use core::ffi::c_int;

/// `malloc_stats`: glibc's lines, then our table, on stderr.
#[no_mangle]
pub extern "C" fn malloc_stats() {
    api::malloc_stats()
}

/// `mallinfo2`, filled from our counters.
#[no_mangle]
pub extern "C" fn mallinfo2() -> libc::mallinfo2 {
    api::mallinfo2()
}

/// `mallinfo` (deprecated: int fields, saturated).
#[no_mangle]
pub extern "C" fn mallinfo() -> libc::mallinfo {
    api::mallinfo()
}

/// `mallopt`: glibc's tuning parameters (see `api::glibc`).
#[no_mangle]
pub extern "C" fn mallopt(param: c_int, value: c_int) -> c_int {
    api::mallopt(param, value)
}

/// `malloc_info`: glibc's XML report with our numbers.
///
/// # Safety
/// `fp` must be a valid `FILE *` open for writing.
#[no_mangle]
pub unsafe extern "C" fn malloc_info(options: c_int, fp: *mut libc::FILE) -> c_int {
    // SAFETY: the C contract of malloc_info.
    unsafe { api::malloc_info(options, fp) }
}

/// `malloc_trim`: give idle memory back to the OS now; 1 if any was.
#[no_mangle]
pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
    crate::api::libc::trim() as c_int
}

/// `mtrace`: start an mtrace log in `$MALLOC_TRACE` (which must be set
/// when the program starts).
#[no_mangle]
pub extern "C" fn mtrace() {
    api::mtrace()
}

/// `muntrace`: end the log.
#[no_mangle]
pub extern "C" fn muntrace() {
    api::muntrace()
}
