//! Arrays in memory mapped straight from the OS, never from the pool:
//! the tables the allocator keeps about itself (span chunks, heap
//! chunks, the leak table) grow without calling `malloc`.
//!
//! Invariant: `ptr` is null with `cap == 0`, or maps
//! `bytes(cap)` zero-initialised-at-map bytes holding `cap` elements.
//!
//! Uses: `os`.

use crate::os::{PageSource, OS, PAGE};
use core::ptr::NonNull;

/// A fixed-capacity array of `T` in its own mapping (zeroed when made).
/// Access is by index; the owner's lock serialises it.
pub(crate) struct Mapped<T> {
    ptr: *mut T,
    cap: usize,
}

impl<T: Copy> Mapped<T> {
    /// No storage.
    pub(crate) const EMPTY: Self = Mapped {
        ptr: core::ptr::null_mut(),
        cap: 0,
    };

    fn bytes(cap: usize) -> usize {
        (cap * core::mem::size_of::<T>()).next_multiple_of(PAGE)
    }

    /// A zeroed array of `cap` elements; `None` when the OS refuses.
    pub(crate) fn new(cap: usize) -> Option<Self> {
        let p = OS.map(Self::bytes(cap), PAGE)?;
        Some(Mapped {
            ptr: p.as_ptr().cast(),
            cap,
        })
    }

    /// Elements it holds.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// Give the mapping back.
    pub(crate) fn free(&mut self) {
        if let Some(p) = NonNull::new(self.ptr.cast::<u8>()) {
            // SAFETY: mapped by `new` with this size.
            unsafe { OS.unmap(p, Self::bytes(self.cap)) };
        }
        *self = Self::EMPTY;
    }

    /// Element `i` (`i < cap`). The mapping is not borrowed from `self`'s
    /// memory, and every access happens under its owner's lock, one
    /// element at a time.
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn at(&self, i: usize) -> &mut T {
        assert!(i < self.cap);
        // SAFETY: i < cap; the mapping holds cap elements; the owner's
        // lock serialises access.
        unsafe { &mut *self.ptr.add(i) }
    }
}

/// A growable list of `T` in mapped memory: [`Mapped`] plus a length,
/// doubling (copying into a new mapping) when full.
pub(crate) struct MappedVec<T> {
    items: Mapped<T>,
    len: usize,
}

impl<T: Copy> MappedVec<T> {
    /// Empty, no storage yet.
    pub(crate) const EMPTY: Self = MappedVec {
        items: Mapped::EMPTY,
        len: 0,
    };

    /// Append `v`; false when no memory could be had (nothing changed).
    pub(crate) fn push(&mut self, v: T) -> bool {
        if self.len == self.items.cap() {
            let cap = (self.items.cap() * 2).max(PAGE / core::mem::size_of::<T>().max(1));
            let Some(new) = Mapped::<T>::new(cap) else {
                return false;
            };
            for i in 0..self.len {
                *new.at(i) = *self.items.at(i);
            }
            self.items.free();
            self.items = new;
        }
        *self.items.at(self.len) = v;
        self.len += 1;
        true
    }

    /// Elements held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Element `i` (`i < len`).
    pub(crate) fn get(&self, i: usize) -> T {
        assert!(i < self.len);
        *self.items.at(i)
    }

    /// Replace element `i` (`i < len`).
    pub(crate) fn set(&mut self, i: usize, v: T) {
        assert!(i < self.len);
        *self.items.at(i) = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_keeps_its_elements() {
        let mut v = MappedVec::<(usize, usize)>::EMPTY;
        for i in 0..5000 {
            assert!(v.push((i, i * 2)));
        }
        assert_eq!(v.len(), 5000);
        assert!((0..5000).all(|i| v.get(i) == (i, i * 2)));
        let mut m = Mapped::<u64>::new(100).unwrap();
        assert_eq!(*m.at(99), 0, "zeroed");
        *m.at(3) = 7;
        assert_eq!(*m.at(3), 7);
        m.free();
        assert_eq!(m.cap(), 0);
    }
}
