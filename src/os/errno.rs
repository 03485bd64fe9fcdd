//! The calling thread's `errno`, and a guard that puts it back.
//!
//! A successful allocation must leave `errno` as the program had it,
//! but the system calls behind one (`mmap`, `madvise`, `mremap`,
//! `mincore`, `tgkill`) may change it even when they succeed or when
//! their failure is handled. Every such call runs under an
//! [`ErrnoGuard`]: `errno` is restored when the guard goes, unless the
//! caller [keeps](ErrnoGuard::keep) the new value to report a failure.
//!
//! Uses: nothing of this crate.

/// The calling thread's `errno`.
#[inline]
pub(crate) fn get() -> i32 {
    // SAFETY: `__errno_location` returns the calling thread's errno slot,
    // valid for the life of the thread.
    unsafe { *libc::__errno_location() }
}

/// Set the calling thread's `errno`.
#[inline]
pub(crate) fn set(v: i32) {
    // SAFETY: as in `get`.
    unsafe { *libc::__errno_location() = v }
}

/// A failed allocation: `errno = ENOMEM`, and the null pointer to return.
#[cold]
pub(crate) fn nomem() -> *mut u8 {
    set(libc::ENOMEM);
    core::ptr::null_mut()
}

/// Saves `errno` when made and restores it when dropped.
#[must_use]
pub(crate) struct ErrnoGuard(i32);

impl ErrnoGuard {
    /// Save the current `errno`.
    #[inline]
    pub(crate) fn save() -> ErrnoGuard {
        ErrnoGuard(get())
    }

    /// Keep whatever `errno` is now (a failure the caller reports).
    #[inline]
    pub(crate) fn keep(self) {
        core::mem::forget(self)
    }
}

impl Drop for ErrnoGuard {
    #[inline]
    fn drop(&mut self) {
        set(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_restores_unless_kept() {
        set(7);
        {
            let _g = ErrnoGuard::save();
            set(libc::ENOMEM);
        }
        assert_eq!(get(), 7);
        let g = ErrnoGuard::save();
        set(libc::ENOMEM);
        g.keep();
        assert_eq!(get(), libc::ENOMEM);
    }
}
