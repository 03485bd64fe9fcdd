//! The lock of the few global structures (span cache, abandoned slabs,
//! large-block cache, heap pool, per-CPU heaps, the tools' tables).
//!
//! A spin lock whose word is its owner: the holding thread's identity
//! (its thread pointer), 0 when free. Knowing the owner lets two things
//! be safe that a plain flag cannot make safe:
//! - `fork`: no lock is held across it (holding them in a
//!   `pthread_atfork` handler deadlocks against glibc's stdio and nss
//!   locks, which `fork` takes after the handlers). In the child, a lock
//!   held by a thread that does not exist there guards a structure that
//!   may be half updated; [`Lock::held_by_other_thread`] tells the child
//!   to rebuild that structure. A lock held by the forking thread itself
//!   (fork from a signal handler that interrupted the allocator) is left
//!   alone: the interrupted code resumes and finishes its update;
//! - re-entry: a thread that asks for a lock it already holds (malloc
//!   from a signal handler that interrupted malloc) would spin forever;
//!   it stops with a message instead.
//!
//! A plain spin lock livelocks on a 2-core machine running more threads
//! than cores: the holder may be descheduled while the waiters burn their
//! time slices. [`Backoff`] spins briefly, then gives the core away with
//! `sched_yield`. Nothing may allocate while holding one of these locks.
//!
//! Invariant: `owner == 0` or `owner` is the thread pointer of the one
//! thread that holds a guard (or, in a fork child, held it at the fork).
//!
//! Uses: `os::process`, `util::diag`.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicUsize, Ordering};
use spin::RelaxStrategy;

/// Spin for a short while, then yield the processor.
pub(crate) struct Backoff;

impl RelaxStrategy for Backoff {
    #[inline]
    fn relax() {
        for _ in 0..64 {
            core::hint::spin_loop();
        }
        crate::os::process::yield_now();
    }
}

/// A value guarded by a spin lock that knows its owner.
pub(crate) struct Lock<T> {
    owner: AtomicUsize,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through a guard, and one thread at a
// time holds the guard.
unsafe impl<T: Send> Sync for Lock<T> {}

/// Access to a locked value; unlocks when dropped.
pub(crate) struct LockGuard<'a, T> {
    lock: &'a Lock<T>,
}

impl<T> Lock<T> {
    /// An unlocked lock around `value`.
    pub(crate) const fn new(value: T) -> Lock<T> {
        Lock {
            owner: AtomicUsize::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Take the lock, waiting for it.
    #[inline]
    pub(crate) fn lock(&self) -> LockGuard<'_, T> {
        let me = crate::os::process::thread_id();
        if self
            .owner
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow(me);
        }
        LockGuard { lock: self }
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self, me: usize) {
        loop {
            let cur = self.owner.load(Ordering::Relaxed);
            if cur == me {
                crate::util::diag::fatal(
                    "allocator re-entered while it held a lock (malloc or free called from a \
                     signal handler that interrupted malloc or free?)",
                    0,
                );
            }
            if cur == 0
                && self
                    .owner
                    .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            Backoff::relax();
        }
    }

    /// Take the lock if it is free now.
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<LockGuard<'_, T>> {
        let me = crate::os::process::thread_id();
        self.owner
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| LockGuard { lock: self })
    }

    /// In a fork child: was the lock held, at the fork, by a thread that
    /// does not exist here? Then the value may be half updated.
    pub(crate) fn held_by_other_thread(&self) -> bool {
        let owner = self.owner.load(Ordering::Relaxed);
        owner != 0 && owner != crate::os::process::thread_id()
    }

    /// In a fork child, for a lock [held by another
    /// thread](Self::held_by_other_thread): replace the (possibly half
    /// updated) value with `fresh(&old)` and unlock. `fresh` may read only
    /// the fields of the old value that are consistent alone (a counter);
    /// the old value is forgotten, never dropped.
    ///
    /// # Safety
    /// The calling thread must be the only thread of a fork child, and no
    /// guard of this lock may exist in it.
    pub(crate) unsafe fn reset_in_child(&self, fresh: impl FnOnce(&T) -> T) {
        // SAFETY: contract: nobody else can reach the value.
        unsafe {
            let new = fresh(&*self.value.get());
            core::ptr::write(self.value.get(), new);
        }
        self.owner.store(0, Ordering::Release);
    }
}

impl<T> Deref for LockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held by this thread.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for LockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above; `&mut self` makes the access unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for LockGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.owner.store(0, Ordering::Release);
    }
}

/// Unit tests that fork take turns: one (`api::libc`) holds every
/// allocator lock in a thread while it forks, which would poison every
/// shard in another's child. The tests that hold shard locks of their own
/// (`heap::medium`) take their turn too: holding one while that holder
/// waits for it, and waiting for one the holder holds, they would wait
/// for each other.
#[cfg(test)]
static FORKS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Wait for the turn of [`FORKS`] (a test that failed holding it does
/// not end the others' turns).
#[cfg(test)]
pub(crate) fn fork_turn() -> std::sync::MutexGuard<'static, ()> {
    FORKS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wait for fork child `pid` for at most 5 s (a child that hangs is
/// killed, and the test fails saying `what`); its status.
#[cfg(test)]
pub(crate) fn wait_child(pid: libc::pid_t, what: &str) -> i32 {
    let mut status = 0;
    // SAFETY: waiting for (and at the deadline killing) our own child.
    unsafe {
        let mut waited = 0;
        while libc::waitpid(pid, &mut status, libc::WNOHANG) == 0 {
            waited += 1;
            if waited > 500 {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
                panic!("the fork child hung ({what})");
            }
            libc::usleep(10_000);
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_and_knows_its_owner() {
        static L: Lock<u64> = Lock::new(0);
        {
            let mut g = L.lock();
            *g += 1;
            assert!(L.try_lock().is_none(), "held");
            assert!(!L.held_by_other_thread(), "held by this thread");
            std::thread::spawn(|| assert!(L.held_by_other_thread()))
                .join()
                .unwrap();
        }
        assert!(!L.held_by_other_thread());
        let threads: std::vec::Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..10_000 {
                        *L.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*L.lock(), 40_001);
    }
}
