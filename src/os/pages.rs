//! Pages from the operating system.
//!
//! Owns every `mmap`/`munmap`/`madvise`/`mremap` call. The allocator core
//! reaches the OS only through [`PageSource`], so tests can run it on a
//! heap-backed source.
//!
//! Contract of a source (each method restates its part):
//! - sizes are multiples of [`PAGE`], alignments powers of two `>= PAGE`;
//! - fresh memory reads as zero;
//! - a range is given back only once, and only by whoever got it.
//!
//! Uses: `os::errno`.

use crate::os::errno::{self, ErrnoGuard};
use core::ptr::NonNull;

/// The OS page size assumed throughout (x86-64 and most aarch64 Linux).
pub(crate) const PAGE: usize = 4096;

/// Round `n` up to a multiple of `align` (a power of two); `None` on overflow.
#[inline]
pub(crate) const fn align_up(n: usize, align: usize) -> Option<usize> {
    match n.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Where pages come from.
///
/// # Safety
/// Implementors must hand out memory that is readable, writable, zero-filled,
/// aligned as asked, and not handed out again until given back through
/// `unmap` (or moved by `remap`).
pub(crate) unsafe trait PageSource: Sync {
    /// Map `size` bytes aligned to `align`, zero-filled. `None` when the
    /// system refuses.
    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>>;

    /// Give a range back to the system.
    ///
    /// # Safety
    /// `[p, p + size)` must be a whole range returned by `map` (or `remap`)
    /// of this source, no longer used by anybody.
    unsafe fn unmap(&self, p: NonNull<u8>, size: usize);

    /// Release the physical memory behind a range while keeping it mapped.
    /// Its contents become unspecified (the OS source makes them zero).
    ///
    /// # Safety
    /// The range must lie inside memory mapped from this source and hold
    /// nothing anybody still needs.
    unsafe fn purge(&self, p: NonNull<u8>, size: usize);

    /// Resize a mapping in place when possible, else move it (without
    /// copying where the OS can) to a new address aligned to `align`.
    /// Contents up to the smaller size are kept. `None`: nothing changed.
    ///
    /// # Safety
    /// `[p, p + old)` must be a whole range from `map`/`remap` of this source;
    /// on success the old range must no longer be used.
    unsafe fn remap(
        &self,
        p: NonNull<u8>,
        old: usize,
        new: usize,
        align: usize,
    ) -> Option<NonNull<u8>>;
}

/// Pages straight from the kernel.
pub(crate) struct Os;

/// The one OS source.
pub(crate) static OS: Os = Os;

/// Map `size` bytes of fresh memory: readable and writable, charged to
/// the commit limit as the kernel's overcommit policy says (no
/// `MAP_NORESERVE`: an impossible request fails here, not at a page fault
/// later); or, `reserve`, address space only (no access, not charged).
fn raw_map(size: usize, reserve: bool) -> Option<NonNull<u8>> {
    let (prot, extra) = if reserve {
        (libc::PROT_NONE, libc::MAP_NORESERVE)
    } else {
        (libc::PROT_READ | libc::PROT_WRITE, 0)
    };
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            size,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        NonNull::new(p.cast())
    }
}

/// `size` bytes such that the point `offset` bytes in is aligned to
/// `align`: address space for `size + align` is reserved (not charged),
/// the part needed is mapped readable and writable over it, the rest
/// given back; so a huge alignment costs address space only while
/// mapping, and is charged only for what the block uses.
fn map_aligned_at(size: usize, align: usize, offset: usize) -> Option<NonNull<u8>> {
    let total = size.checked_add(align)?;
    let base = raw_map(total, true)?.as_ptr() as usize;
    let start = ((base + offset + align - 1) & !(align - 1)) - offset;
    let start = if start < base { start + align } else { start };
    // SAFETY: [start, start + size) lies inside our fresh reservation;
    // MAP_FIXED replaces those reserved pages with fresh memory.
    let p = unsafe {
        libc::mmap(
            start as *mut libc::c_void,
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        raw_unmap(base, total);
        return None;
    }
    raw_unmap(base, start - base);
    raw_unmap(start + size, base + total - (start + size));
    NonNull::new(start as *mut u8)
}

fn raw_unmap(p: usize, size: usize) {
    if size != 0 {
        // SAFETY: callers pass ranges they mapped and no longer use.
        unsafe {
            libc::munmap(p as *mut libc::c_void, size);
        }
    }
}

// SAFETY: mmap returns fresh zero-filled private pages; alignment is
// established by over-mapping and trimming.
unsafe impl PageSource for Os {
    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        debug_assert!(size % PAGE == 0 && align.is_power_of_two());
        let errno = ErrnoGuard::save();
        let r = if align <= PAGE {
            raw_map(size, false)
        } else {
            // Try the exact size first: the kernel often places mappings
            // next to the previous one, which keeps our alignment.
            match raw_map(size, false) {
                Some(p) if p.as_ptr() as usize & (align - 1) == 0 => Some(p),
                Some(p) => {
                    raw_unmap(p.as_ptr() as usize, size);
                    map_aligned_at(size, align, 0)
                }
                None => None,
            }
        };
        // A failed mmap sets errno; the caller decides what to report.
        if r.is_none() {
            errno.keep();
        }
        r
    }

    unsafe fn unmap(&self, p: NonNull<u8>, size: usize) {
        raw_unmap(p.as_ptr() as usize, size);
    }

    unsafe fn purge(&self, p: NonNull<u8>, size: usize) {
        let _errno = ErrnoGuard::save();
        // SAFETY: the range is ours and unused (contract); MADV_DONTNEED on
        // private anonymous memory drops the pages, later reads see zeros.
        unsafe {
            libc::madvise(p.as_ptr().cast(), size, libc::MADV_DONTNEED);
        }
    }

    unsafe fn remap(
        &self,
        p: NonNull<u8>,
        old: usize,
        new: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        let _errno = ErrnoGuard::save();
        // In place first: shrinking always works, growing when the
        // address space after the mapping is free.
        // SAFETY: the range is a whole mapping of ours (contract).
        let r = unsafe { libc::mremap(p.as_ptr().cast(), old, new, 0) };
        if r != libc::MAP_FAILED {
            return NonNull::new(r.cast());
        }
        // EFAULT: the range spans several mappings (pieces joined by the
        // large-block cache); mremap cannot move it at all.
        if errno::get() == libc::EFAULT {
            return None;
        }
        // Move the pages (no copy) onto a fresh aligned reservation, which
        // the move replaces.
        let target = self.map(new, align)?;
        // SAFETY: `target` is a mapping of `new` bytes we own; MREMAP_FIXED
        // replaces it atomically with the moved pages.
        let r = unsafe {
            libc::mremap(
                p.as_ptr().cast(),
                old,
                new,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                target.as_ptr() as *mut libc::c_void,
            )
        };
        if r == libc::MAP_FAILED {
            raw_unmap(target.as_ptr() as usize, new);
            return None;
        }
        NonNull::new(r.cast())
    }
}

impl Os {
    /// Reserve `size` bytes of address space (a multiple of [`PAGE`]): no
    /// access, not charged to the commit limit.
    pub(crate) fn reserve(&self, size: usize) -> Option<NonNull<u8>> {
        let _errno = ErrnoGuard::save();
        raw_map(size, true)
    }

    /// Make `[p, p + size)` inaccessible (`access` false: any load or
    /// store faults) or readable and writable again. The pages stay
    /// resident either way. False: the kernel refused (out of mappings,
    /// `vm.max_map_count`); it may have changed a part of the range
    /// (Linux applies `mprotect` region by region).
    ///
    /// # Safety
    /// The range must be page-aligned, mapped by us, and (to make it
    /// inaccessible) unused by anybody.
    pub(crate) unsafe fn protect(&self, p: usize, size: usize, access: bool) -> bool {
        let _errno = ErrnoGuard::save();
        let prot = if access {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_NONE
        };
        // SAFETY: contract: our own pages, nobody relies on their access
        // while they change.
        unsafe { libc::mprotect(p as *mut libc::c_void, size, prot) == 0 }
    }

    /// Move the pages of `[src, src + size)` (no copy: page tables move)
    /// onto `[dst, dst + size)`, which must be mapped by us and unused;
    /// `src` is unmapped. False: nothing happened.
    ///
    /// # Safety
    /// Both ranges must be page-aligned mappings of ours that nobody uses.
    pub(crate) unsafe fn move_pages(&self, src: usize, size: usize, dst: usize) -> bool {
        let _errno = ErrnoGuard::save();
        // SAFETY: contract; MREMAP_FIXED replaces the destination.
        let r = unsafe {
            libc::mremap(
                src as *mut libc::c_void,
                size,
                size,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                dst as *mut libc::c_void,
            )
        };
        r != libc::MAP_FAILED
    }

    /// Map `size` bytes (a multiple of [`PAGE`]) such that `start + offset`
    /// is aligned to `align` (a power of two), with `start` itself
    /// aligned to `offset`'s page. Only the `size` bytes stay mapped, so a
    /// huge alignment costs address space only while mapping.
    pub(crate) fn map_offset_aligned(
        &self,
        size: usize,
        align: usize,
        offset: usize,
    ) -> Option<NonNull<u8>> {
        debug_assert!(size % PAGE == 0 && offset % PAGE == 0 && align.is_power_of_two());
        let _errno = ErrnoGuard::save();
        map_aligned_at(size, align, offset)
    }
}

/// A heap-backed source for tests: memory from the Rust global allocator,
/// so the core can be exercised without touching mmap. Whole ranges only.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use std::alloc::{alloc_zeroed, dealloc, Layout};
    use std::sync::Mutex;
    use std::vec::Vec;

    /// Ranges handed out: (address, size, align).
    #[derive(Default)]
    pub(crate) struct HeapSource {
        live: Mutex<Vec<(usize, usize, usize)>>,
    }

    // SAFETY: alloc_zeroed returns fresh, zeroed, aligned memory.
    unsafe impl PageSource for HeapSource {
        fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
            let layout = Layout::from_size_align(size, align).ok()?;
            // SAFETY: size is non-zero by contract.
            let p = NonNull::new(unsafe { alloc_zeroed(layout) })?;
            self.live
                .lock()
                .unwrap()
                .push((p.as_ptr() as usize, size, align));
            Some(p)
        }

        unsafe fn unmap(&self, p: NonNull<u8>, size: usize) {
            let mut live = self.live.lock().unwrap();
            let i = live
                .iter()
                .position(|r| r.0 == p.as_ptr() as usize)
                .expect("unmap of a range never mapped");
            let (_, sz, align) = live.swap_remove(i);
            assert_eq!(sz, size, "partial unmap");
            // SAFETY: allocated above with this exact layout.
            unsafe { dealloc(p.as_ptr(), Layout::from_size_align(sz, align).unwrap()) }
        }

        unsafe fn purge(&self, p: NonNull<u8>, size: usize) {
            // Scribble, so code that relies on purged contents fails.
            // SAFETY: the range is ours (contract).
            unsafe { core::ptr::write_bytes(p.as_ptr(), 0xA5, size) }
        }

        unsafe fn remap(
            &self,
            p: NonNull<u8>,
            old: usize,
            new: usize,
            align: usize,
        ) -> Option<NonNull<u8>> {
            let q = self.map(new, align)?;
            // SAFETY: both ranges are ours and distinct.
            unsafe {
                core::ptr::copy_nonoverlapping(p.as_ptr(), q.as_ptr(), old.min(new));
                self.unmap(p, old);
            }
            Some(q)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_up_rounds_and_detects_overflow() {
        assert_eq!(align_up(0, 16), Some(0));
        assert_eq!(align_up(1, 16), Some(16));
        assert_eq!(align_up(4096, 4096), Some(4096));
        assert_eq!(align_up(usize::MAX, 16), None);
    }

    #[test]
    fn os_map_is_aligned_zeroed_and_remappable() {
        for &align in &[PAGE, 1 << 16, 1 << 22] {
            let p = OS.map(1 << 20, align).unwrap();
            assert_eq!(p.as_ptr() as usize % align, 0);
            // SAFETY: p maps 1 MiB.
            unsafe {
                assert_eq!(*p.as_ptr().add(12345), 0);
                *p.as_ptr().add(1000) = 7;
                let q = OS.remap(p, 1 << 20, 8 << 20, 1 << 16).unwrap();
                assert_eq!(q.as_ptr() as usize % (1 << 16), 0);
                assert_eq!(*q.as_ptr().add(1000), 7);
                OS.purge(q, 8 << 20);
                assert_eq!(*q.as_ptr().add(1000), 0);
                OS.unmap(q, 8 << 20);
            }
        }
    }

    /// A range made of two mappings (a large block joined from cached
    /// pieces) cannot be moved: `remap` answers `None` and both pieces
    /// stay where they were, with their bytes.
    #[test]
    fn a_range_of_two_mappings_is_not_remapped() {
        let half = 16 * PAGE;
        let p = OS.map(2 * half, PAGE).unwrap().as_ptr() as usize;
        // SAFETY: the second half of our own mapping is replaced by a
        // mapping that differs in one flag, so the kernel keeps two.
        let q = unsafe {
            libc::mmap(
                (p + half) as *mut libc::c_void,
                half,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_eq!(q as usize, p + half);
        // SAFETY: both halves are ours, readable and writable.
        unsafe {
            *(p as *mut u8) = 1;
            *((p + half) as *mut u8) = 2;
            let base = NonNull::new_unchecked(p as *mut u8);
            assert!(OS.remap(base, 2 * half, 8 * half, PAGE).is_none());
            assert_eq!((*(p as *const u8), *((p + half) as *const u8)), (1, 2));
            OS.unmap(base, 2 * half);
        }
    }
}
