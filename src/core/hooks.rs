//! The hooks the core calls for the tools above it (`insight`), as
//! mimalloc's `track.h` does: the core never imports the tools. A hook
//! is a plain function pointer, installed once before any heap exists,
//! and called only on slow paths (in instrumented mode every free takes
//! one).
//!
//! Uses: nothing of this crate.

use core::sync::atomic::{AtomicUsize, Ordering};

static FREE_HOOK: AtomicUsize = AtomicUsize::new(0);

/// Install `f`, called with every pointer of ours about to be freed.
pub(crate) fn set_free_hook(f: fn(*mut u8)) {
    FREE_HOOK.store(f as usize, Ordering::Relaxed);
}

/// Tell the tools that `p`, a block of ours, is about to be freed.
#[inline]
pub(crate) fn on_free(p: *mut u8) {
    let f = FREE_HOOK.load(Ordering::Relaxed);
    if f != 0 {
        // SAFETY: only `set_free_hook` stores here, a `fn(*mut u8)`.
        let f: fn(*mut u8) = unsafe { core::mem::transmute(f) };
        f(p);
    }
}
