//! Process-wide settings the core reads: the double-free key, the
//! instrumentation mode, and the options from `MMPOOL_*` variables.
//!
//! Set once by [`init`] (from `api::process`, before any heap exists;
//! the key and options are read without allocating) and, for the
//! instrumentation mode, by `insight` during that same initialisation.
//! Everything here is a relaxed atomic that only changes before the
//! first heap is made.
//!
//! Uses: `os::env`, `os::process`.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static FREE_KEY: AtomicUsize = AtomicUsize::new(0);
static INSTRUMENTED: AtomicBool = AtomicBool::new(false);
static ARENA_DEBUG: AtomicBool = AtomicBool::new(false);

/// The secret mixed into the mark of every free block; a block being
/// freed that already carries its mark is checked for a double free.
/// Odd (never a valid pointer) and never zero once [`init`] ran.
#[inline(always)]
pub(crate) fn free_key() -> usize {
    FREE_KEY.load(Ordering::Relaxed)
}

/// Make the key from the kernel's random bytes and read the options.
pub(crate) fn init() {
    let key = crate::os::process::random_word(&FREE_KEY as *const _ as usize) | 1;
    FREE_KEY.store(key, Ordering::Release);
    ARENA_DEBUG.store(
        crate::os::env::flag(b"MMPOOL_ARENA_DEBUG"),
        Ordering::Relaxed,
    );
}

/// Statistics, leak checks or tracing are on: heaps made from now on
/// route every allocation and free through the slow paths, where the
/// hooks run.
#[inline]
pub(crate) fn instrumented() -> bool {
    INSTRUMENTED.load(Ordering::Relaxed)
}

/// Set the instrumentation mode (by `insight`, before any heap exists).
pub(crate) fn set_instrumented(on: bool) {
    INSTRUMENTED.store(on, Ordering::Relaxed);
}

/// `MMPOOL_ARENA_DEBUG=1`: every arena allocation is its own block.
pub(crate) fn arena_debug() -> bool {
    ARENA_DEBUG.load(Ordering::Relaxed)
}
