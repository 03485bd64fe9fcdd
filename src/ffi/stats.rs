//! Statistics: `mmpool_stats_get`, `mmpool_stats_print`.
//!
//! Uses: `insight::stats`.

use crate::insight::stats::Stats;
use core::ffi::c_int;

pub use crate::insight::stats::MMPOOL_MAX_CLASSES;

/// A snapshot of the pool's counters (`Stats`, which the header names
/// `mmpool_stats_t`).
pub type mmpool_stats_t = Stats;
/// Counters of one size class (the header's `mmpool_class_stats_t`).
pub type mmpool_class_stats_t = crate::insight::stats::ClassStats;

/// Fill `*out` with the pool's counters. A NULL `out` is ignored.
///
/// # Safety
/// `out` must be NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn mmpool_stats_get(out: *mut Stats) {
    if !out.is_null() {
        // SAFETY: contract.
        unsafe { out.write(crate::insight::stats::snapshot()) };
    }
}

/// Print the statistics table (the one `MMPOOL_STATS=1` prints at exit)
/// to file descriptor `fd`.
#[no_mangle]
pub extern "C" fn mmpool_stats_print(fd: c_int) {
    crate::insight::stats::print(fd);
}
