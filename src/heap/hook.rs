//! The instrumentation hooks' guard: while a hook of `insight` runs on
//! a thread, the allocations its helpers make (`backtrace`, `dladdr`)
//! are served but not recorded.
//!
//! Uses: `heap::tls`, `heap::types`.

use crate::heap::types::{is_thread_heap, Heap};
use core::ptr::null_mut;

/// Marks the calling thread as running an instrumentation hook, so the
/// allocations the hook's own helpers make (`backtrace`, `dladdr`) are
/// served but not recorded; cleared when dropped.
pub(crate) struct HookGuard(*mut Heap);

impl HookGuard {
    /// `None` when a hook already runs on this thread (the event is the
    /// hook's own). A thread without a heap cannot be marked: its events
    /// are recorded unmarked.
    pub(crate) fn enter() -> Option<HookGuard> {
        let h = crate::heap::tls::heap();
        if !is_thread_heap(h) {
            return Some(HookGuard(null_mut()));
        }
        // SAFETY: the calling thread's own heap.
        unsafe {
            if (*h).local.in_hook {
                return None;
            }
            (*h).local.in_hook = true;
        }
        Some(HookGuard(h))
    }
}

impl Drop for HookGuard {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the heap this thread marked in `enter`.
            unsafe { (*self.0).local.in_hook = false };
        }
    }
}
