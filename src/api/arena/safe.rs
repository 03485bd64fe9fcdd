//! The safe Rust face of arenas: allocations borrow the arena, `reset`
//! needs `&mut`, values that need dropping are dropped at reset or when
//! the arena goes.
//!
//! Uses: `api::arena`.

use super::{
    alloc, cleanup_add, create, create_child, destroy, reset, stats, ArenaCore, ArenaStats,
};
use core::ffi::c_void;

/// An arena: allocations borrow it, `reset` needs `&mut`, drop destroys it.
///
/// Values stored with [`Arena::alloc`] that need dropping are dropped at
/// `reset` or when the arena goes (through a cleanup handler).
///
/// ```
/// use mmpool::arena::Arena;
///
/// let mut arena = Arena::new(0).expect("memory");
/// let greeting = arena.alloc_str("hello");
/// let numbers = arena.alloc_slice_copy(&[1u32, 2, 3]);
/// assert_eq!(greeting, "hello");
/// assert_eq!(numbers.iter().sum::<u32>(), 6);
/// assert!(arena.stats().bytes_requested >= 5 + 12);
/// arena.reset(); // `greeting` and `numbers` can no longer be used
/// assert_eq!(arena.stats().bytes_requested, 0);
/// ```
pub struct Arena {
    raw: *mut ArenaCore,
}

// SAFETY: an arena may move to another thread; it is never shared (no
// Sync), and its memory comes from the thread-safe global pool.
unsafe impl Send for Arena {}

impl Arena {
    /// A new arena with blocks of `block_size` bytes (0: 16 KiB). `None`
    /// when out of memory.
    pub fn new(block_size: usize) -> Option<Arena> {
        let raw = create(block_size);
        (!raw.is_null()).then_some(Arena { raw })
    }

    /// A child arena: dropped (destroyed) with this one at the latest.
    ///
    /// The child is owned by the parent: it is destroyed when the parent
    /// is reset or destroyed, so it is handed out borrowed.
    pub fn child(&self, block_size: usize) -> Option<&ChildArena> {
        // SAFETY: self.raw is live; the child lives until the parent's
        // reset (which needs &mut self) or drop.
        let c = unsafe { create_child(self.raw, block_size) };
        // SAFETY: a live arena core; ChildArena is a transparent wrapper.
        (!c.is_null()).then(|| unsafe { &*(c as *const ChildArena) })
    }

    /// Raw, uninitialised memory for `layout`. `None` when out of memory.
    pub fn alloc_layout(&self, layout: core::alloc::Layout) -> Option<core::ptr::NonNull<u8>> {
        // SAFETY: self.raw is live and used by this thread (not Sync).
        core::ptr::NonNull::new(unsafe { alloc(self.raw, layout.size(), layout.align()) })
    }

    /// Move `value` into the arena. If `T` needs dropping, it is dropped
    /// at the next reset or when the arena goes.
    ///
    /// # Panics
    /// When out of memory.
    #[allow(clippy::mut_from_ref)] // each call returns fresh, disjoint memory
    pub fn alloc<T>(&self, value: T) -> &mut T {
        let p = self
            .alloc_layout(core::alloc::Layout::new::<T>())
            .expect("mmpool arena: out of memory")
            .cast::<T>()
            .as_ptr();
        // SAFETY: fresh, aligned memory for a T.
        unsafe { p.write(value) };
        if core::mem::needs_drop::<T>() {
            unsafe extern "C" fn drop_it<T>(p: *mut c_void) {
                // SAFETY: registered for a live T that nothing uses after
                // reset/destroy (borrows end before those).
                unsafe { core::ptr::drop_in_place(p.cast::<T>()) }
            }
            // SAFETY: self.raw is live.
            let c = unsafe { cleanup_add(self.raw, Some(drop_it::<T>), p.cast()) };
            assert!(!c.is_null(), "mmpool arena: out of memory");
        }
        // SAFETY: initialised above; lives as long as the borrow of self.
        unsafe { &mut *p }
    }

    /// Copy a slice into the arena.
    ///
    /// # Panics
    /// When out of memory.
    #[allow(clippy::mut_from_ref)] // each call returns fresh, disjoint memory
    pub fn alloc_slice_copy<T: Copy>(&self, src: &[T]) -> &mut [T] {
        let layout = core::alloc::Layout::for_value(src);
        let p = self
            .alloc_layout(layout)
            .expect("mmpool arena: out of memory")
            .cast::<T>()
            .as_ptr();
        // SAFETY: fresh memory for src.len() Ts, disjoint from src.
        unsafe {
            core::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len());
            core::slice::from_raw_parts_mut(p, src.len())
        }
    }

    /// Copy a string into the arena.
    ///
    /// # Panics
    /// When out of memory.
    #[allow(clippy::mut_from_ref)] // each call returns fresh, disjoint memory
    pub fn alloc_str(&self, s: &str) -> &mut str {
        let b = self.alloc_slice_copy(s.as_bytes());
        // SAFETY: copied from a valid str.
        unsafe { core::str::from_utf8_unchecked_mut(b) }
    }

    /// Free everything allocated so far (dropping what needs it), keep one
    /// block for reuse.
    pub fn reset(&mut self) {
        // SAFETY: &mut self: no allocation is borrowed any more.
        unsafe { reset(self.raw) }
    }

    /// The arena's counters.
    pub fn stats(&self) -> ArenaStats {
        // SAFETY: live arena.
        unsafe { stats(self.raw) }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: nothing borrows the arena any more.
        unsafe { destroy(self.raw) }
    }
}

/// A child arena, owned by its parent (see [`Arena::child`]).
#[repr(transparent)]
pub struct ChildArena(ArenaCore);

impl ChildArena {
    fn raw(&self) -> *mut ArenaCore {
        &self.0 as *const ArenaCore as *mut ArenaCore
    }

    /// Copy a string into the child arena.
    ///
    /// # Panics
    /// When out of memory.
    #[allow(clippy::mut_from_ref)] // each call returns fresh, disjoint memory
    pub fn alloc_str(&self, s: &str) -> &mut str {
        // SAFETY: live child arena, used by this thread.
        let p = unsafe { alloc(self.raw(), s.len(), 1) };
        assert!(!p.is_null(), "mmpool arena: out of memory");
        // SAFETY: fresh memory of s.len() bytes.
        unsafe {
            core::ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
            core::str::from_utf8_unchecked_mut(core::slice::from_raw_parts_mut(p, s.len()))
        }
    }

    /// The child's counters.
    pub fn stats(&self) -> ArenaStats {
        // SAFETY: live arena.
        unsafe { stats(self.raw()) }
    }
}
