//! Time, coarse and cheap: what the purge delays and parking need.
//!
//! Uses: nothing of this crate.

/// Milliseconds on a coarse monotonic clock (a vDSO read, no syscall).
pub(crate) fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}
