//! Intrusive doubly linked lists: slabs on their heap's lists (and the
//! abandoned lists), free spans in the span cache. The links live in the
//! nodes, so putting a node on a list never allocates.
//!
//! Uses: nothing of this crate.

use core::ptr::null_mut;

/// A node type with `next`/`prev` links.
///
/// # Safety
/// `links` must return pointers to two distinct link fields of `*this`,
/// valid as long as `this` is.
pub(crate) unsafe trait Linked: Sized {
    /// Pointers to the node's `next` and `prev` fields.
    ///
    /// # Safety
    /// `this` must point to a live node.
    unsafe fn links(this: *mut Self) -> (*mut *mut Self, *mut *mut Self);
}

/// A list of `T` nodes (first and last node, null when empty).
pub(crate) struct List<T> {
    /// First node, or null.
    pub(crate) first: *mut T,
    /// Last node, or null.
    pub(crate) last: *mut T,
}

impl<T> Clone for List<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for List<T> {}

impl<T: Linked> List<T> {
    /// The empty list.
    pub(crate) const EMPTY: List<T> = List {
        first: null_mut(),
        last: null_mut(),
    };

    /// Put `n` first.
    ///
    /// # Safety
    /// The caller owns the list and `n`, which is on no list.
    pub(crate) unsafe fn push_front(&mut self, n: *mut T) {
        // SAFETY: contract; the list's nodes are live.
        unsafe {
            let (next, prev) = T::links(n);
            *prev = null_mut();
            *next = self.first;
            if self.first.is_null() {
                self.last = n;
            } else {
                *T::links(self.first).1 = n;
            }
        }
        self.first = n;
    }

    /// Put `n` last.
    ///
    /// # Safety
    /// As [`push_front`](Self::push_front).
    pub(crate) unsafe fn push_back(&mut self, n: *mut T) {
        // SAFETY: contract; the list's nodes are live.
        unsafe {
            let (next, prev) = T::links(n);
            *next = null_mut();
            *prev = self.last;
            if self.last.is_null() {
                self.first = n;
            } else {
                *T::links(self.last).0 = n;
            }
        }
        self.last = n;
    }

    /// Take `n` off the list (its links are cleared).
    ///
    /// # Safety
    /// `n` must be on this list.
    pub(crate) unsafe fn remove(&mut self, n: *mut T) {
        // SAFETY: contract; neighbours are live nodes of this list.
        unsafe {
            let (next, prev) = T::links(n);
            if (*prev).is_null() {
                self.first = *next;
            } else {
                *T::links(*prev).0 = *next;
            }
            if (*next).is_null() {
                self.last = *prev;
            } else {
                *T::links(*next).1 = *prev;
            }
            *next = null_mut();
            *prev = null_mut();
        }
    }

    /// Take the first node off, or null.
    pub(crate) fn pop_front(&mut self) -> *mut T {
        let n = self.first;
        if !n.is_null() {
            // SAFETY: `n` is on this list.
            unsafe { self.remove(n) };
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Node {
        v: u32,
        next: *mut Node,
        prev: *mut Node,
    }

    // SAFETY: the two fields are distinct and live with the node.
    unsafe impl Linked for Node {
        unsafe fn links(this: *mut Self) -> (*mut *mut Self, *mut *mut Self) {
            // SAFETY: `this` is live (contract).
            unsafe { (&raw mut (*this).next, &raw mut (*this).prev) }
        }
    }

    fn values(l: &List<Node>) -> std::vec::Vec<u32> {
        let mut out = std::vec::Vec::new();
        let mut n = l.first;
        while !n.is_null() {
            // SAFETY: live test nodes.
            unsafe {
                out.push((*n).v);
                n = (*n).next;
            }
        }
        out
    }

    #[test]
    fn push_remove_pop_keep_both_ends_right() {
        let mut nodes: std::vec::Vec<Node> = (0..4)
            .map(|v| Node {
                v,
                next: null_mut(),
                prev: null_mut(),
            })
            .collect();
        let p: std::vec::Vec<*mut Node> = nodes.iter_mut().map(|n| n as *mut Node).collect();
        let mut l = List::<Node>::EMPTY;
        // SAFETY: nodes outlive the list and are on at most one list.
        unsafe {
            l.push_back(p[1]);
            l.push_front(p[0]);
            l.push_back(p[2]);
            l.push_back(p[3]);
            assert_eq!(values(&l), [0, 1, 2, 3]);
            l.remove(p[2]);
            assert_eq!(values(&l), [0, 1, 3]);
            l.remove(p[3]);
            assert_eq!(l.last, p[1]);
            assert_eq!(l.pop_front(), p[0]);
            assert_eq!(l.pop_front(), p[1]);
            assert!(l.pop_front().is_null() && l.last.is_null());
        }
    }
}
