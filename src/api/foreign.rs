//! Pointers the pool did not hand out ("foreign" pointers: allocated
//! before the library took over, or by another allocator): `free`,
//! `realloc` and `malloc_usable_size` hand them to the next allocator in
//! line (`dlsym(RTLD_NEXT, ...)`, resolved once), after checking that
//! doing so cannot crash it: a large block we already returned to the OS
//! is a double free, and an address nobody mapped is an invalid pointer.
//!
//! Uses: `core::large`, `os`, `os::errno`, `os::process`, `util::diag`.

use crate::os::errno::ErrnoGuard;
use crate::os::PAGE;
use crate::util::diag::fatal;
use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering};

static REAL_FREE: AtomicUsize = AtomicUsize::new(0);
static REAL_USABLE: AtomicUsize = AtomicUsize::new(0);
const NOT_FOUND: usize = 1;

fn next_in_line(slot: &AtomicUsize, name: &core::ffi::CStr) -> Option<usize> {
    let mut f = slot.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: dlsym with a NUL-terminated name; it may allocate, which
        // re-enters our malloc, never this function for the same pointer.
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
        if f == 0 {
            f = NOT_FOUND;
        }
        slot.store(f, Ordering::Release);
    }
    (f != NOT_FOUND).then_some(f)
}

/// Is the page holding `addr` mapped? (`mincore` fails with ENOMEM on
/// unmapped memory.) Used before handing a pointer to the next allocator,
/// which would crash reading a header there.
fn page_mapped(addr: usize) -> bool {
    let page = addr & !(PAGE - 1);
    let mut vec = 0u8;
    let _errno = ErrnoGuard::save();
    // SAFETY: mincore only inspects the mapping; `vec` holds one entry.
    let r = unsafe { libc::mincore(page as *mut c_void, PAGE, &mut vec) };
    r == 0
}

/// Stop with `freed` when `p` is a large block we recently returned to the
/// OS, with `unmapped` when nothing is mapped at `p` (or just below it,
/// where glibc reads its chunk header): handing such a pointer to the next
/// allocator would crash it; with `invalid` when glibc would refuse it.
fn check_foreign(p: *const u8, freed: &str, unmapped: &str, invalid: &str) {
    if crate::core::large::recently_unmapped(p as usize) {
        fatal(freed, p as usize);
    }
    if !page_mapped(p as usize) || !page_mapped((p as usize).wrapping_sub(16)) {
        fatal(unmapped, p as usize);
    }
    if !glibc_chunk_plausible(p as usize) {
        fatal(invalid, p as usize);
    }
}

/// Would glibc's `free` accept `p` past its first checks, and find
/// readable memory where it looks next? The same tests glibc runs before
/// anything else (and aborts on), so a pointer that fails them is
/// reported here, by name, instead of by glibc: the chunk (16 bytes
/// before `p`) is 16-byte aligned, its size at least 32 and a multiple of
/// 16 without wrapping the address space, and a chunk glibc mapped on its
/// own (`IS_MMAPPED`) spans whole pages. And where the chunk must lie: a
/// chunk of another arena than the main one (`NON_MAIN_ARENA`) in a heap
/// whose first word, which glibc reads and then locks as the arena,
/// points into the first page of such a heap (an arena heap is aligned
/// to `GLIBC_HEAP_MAX`); a chunk of the main arena in the program break's
/// heap. Memory elsewhere (the stack, a global, a mapping of the
/// program's) that happens to hold a plausible size word before `p` was
/// handed to glibc, which then crashed reading an arena that is not
/// there, or took the memory into its free lists to hand out later. A
/// chunk that passes may still be rejected by glibc's later checks.
/// (x86-64 glibc's layout with its default heap size; the caller made
/// sure the header's page is mapped.)
fn glibc_chunk_plausible(p: usize) -> bool {
    const IS_MMAPPED: usize = 2;
    const NON_MAIN_ARENA: usize = 4;
    const GLIBC_HEAP_MAX: usize = 64 << 20;
    if p % 16 != 0 {
        return false;
    }
    let chunk = p - 16;
    // SAFETY: the caller checked that the page of `p - 16` is mapped; the
    // two header words lie in it (p is 16-aligned, so they share a page).
    let (prev_size, size_field) =
        unsafe { (*(chunk as *const usize), *((chunk + 8) as *const usize)) };
    let size = size_field & !7;
    if size < 32 || size % 16 != 0 || chunk > size.wrapping_neg() {
        return false;
    }
    if size_field & IS_MMAPPED != 0 {
        let start = chunk.wrapping_sub(prev_size);
        let total = prev_size.wrapping_add(size);
        return start % PAGE == 0 && total % PAGE == 0;
    }
    let end = chunk + size;
    if size_field & NON_MAIN_ARENA != 0 {
        let heap = chunk & !(GLIBC_HEAP_MAX - 1);
        if end > heap + GLIBC_HEAP_MAX || !page_mapped(heap) {
            return false;
        }
        // SAFETY: the page of `heap` is mapped (checked just above).
        let arena = unsafe { *(heap as *const usize) };
        return arena % 8 == 0 && arena % GLIBC_HEAP_MAX < PAGE && page_mapped(arena);
    }
    let (start, brk) = crate::os::process::break_heap();
    chunk >= start && end <= brk
}

/// A pointer that is not ours: a large block we already unmapped (a double
/// free), an address nobody mapped, or another allocator's block.
#[cold]
#[inline(never)]
pub(crate) fn free(p: *mut u8) {
    check_foreign(
        p,
        "free(): double free (large block already returned to the OS)",
        "free(): invalid pointer (not allocated by mmpool, not mapped)",
        "free(): invalid pointer (not allocated by mmpool, nor a glibc chunk)",
    );
    match next_in_line(&REAL_FREE, c"free") {
        Some(f) => {
            // SAFETY: `f` is the next allocator's `free`, and `p` is not ours.
            let f: unsafe extern "C" fn(*mut c_void) = unsafe { core::mem::transmute(f) };
            // SAFETY: as above.
            unsafe { f(p.cast()) }
        }
        None => fatal(
            "free(): invalid pointer (not allocated by mmpool)",
            p as usize,
        ),
    }
}

#[cold]
#[inline(never)]
pub(crate) fn usable_size(p: *const u8) -> usize {
    check_foreign(
        p,
        "malloc_usable_size(): pointer to a freed large block",
        "malloc_usable_size(): invalid pointer (not mapped)",
        "malloc_usable_size(): invalid pointer (not allocated by mmpool, nor a glibc chunk)",
    );
    match next_in_line(&REAL_USABLE, c"malloc_usable_size") {
        Some(f) => {
            // SAFETY: the next allocator's malloc_usable_size.
            let f: unsafe extern "C" fn(*const c_void) -> usize =
                unsafe { core::mem::transmute(f) };
            // SAFETY: as above.
            unsafe { f(p.cast()) }
        }
        None => fatal(
            "malloc_usable_size(): invalid pointer (not allocated by mmpool)",
            p as usize,
        ),
    }
}
