//! Locks for the few global structures (span cache, abandoned slabs,
//! large-block cache, heap pool).
//!
//! A plain spin lock livelocks on a 2-core machine running more threads
//! than cores: the holder may be descheduled while the waiters burn their
//! time slices. [`Backoff`] spins briefly, then gives the core away with
//! `sched_yield`. Nothing may allocate while holding one of these locks.
//!
//! Uses: `os::process`.

/// Spin for a short while, then yield the processor.
pub(crate) struct Backoff;

impl spin::RelaxStrategy for Backoff {
    #[inline]
    fn relax() {
        for _ in 0..64 {
            core::hint::spin_loop();
        }
        crate::os::process::yield_now();
    }
}

/// The lock type of every global structure.
pub(crate) type Lock<T> = spin::mutex::SpinMutex<T, Backoff>;

/// Keep a lock held past the end of its guard's scope (used by the fork
/// handlers, which take every lock before `fork` and release them after).
pub(crate) fn hold<T>(lock: &Lock<T>) {
    core::mem::forget(lock.lock());
}

/// Release a lock taken with [`hold`].
///
/// # Safety
/// The calling thread must have taken `lock` with [`hold`], or be the only
/// thread of a freshly forked child in which the lock was held at fork.
pub(crate) unsafe fn release<T>(lock: &Lock<T>) {
    // SAFETY: per the contract, nobody else holds a guard for this lock.
    unsafe { lock.force_unlock() }
}
