//! C semantics of the malloc API, kept apart from the core and from the
//! exported symbols.
//!
//! Owns errno, overflow checks, `realloc(p, 0)`, the alignment rules of
//! `posix_memalign`/`aligned_alloc`/`memalign`, and pointers the pool did
//! not hand out ("foreign" pointers: from before the library took over, or
//! from another allocator), which go to the next allocator in line
//! (`dlsym(RTLD_NEXT, ...)`). Calls `heap`, `large`, `pagemap`, `tls`.
//!
//! glibc's rules, which this follows: 16-byte alignment for every block of
//! 16 bytes or more; NULL with `errno = ENOMEM` for every failed
//! allocation; a failed `realloc` leaves the block valid; `realloc(p, 0)`
//! frees and returns NULL; `posix_memalign` writes `*out` only on success.

use crate::diag::{fatal, set_errno};
use crate::heap;
use crate::large;
use crate::os::{align_up, PAGE};
use crate::pagemap::{SpanHead, PAGEMAP, TAG_LARGE, TAG_SLAB};
use crate::size_class::{block_size, class_of, DIRECT_MAX, MIN_ALIGN, SMALL_MAX};
use core::ffi::{c_int, c_void};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Largest request that can ever succeed (glibc refuses above PTRDIFF_MAX).
const MAX_REQUEST: usize = isize::MAX as usize;

#[cold]
fn nomem() -> *mut u8 {
    set_errno(libc::ENOMEM);
    null_mut()
}

/// `malloc`.
///
/// # Safety
/// Callable from any thread at any time (it is the C function).
#[inline(always)]
pub unsafe fn malloc(size: usize) -> *mut u8 {
    if size <= DIRECT_MAX {
        // SAFETY: the calling thread's heap.
        let p = unsafe { heap::try_alloc_direct(crate::tls::heap(), size) };
        if !p.is_null() {
            return p;
        }
    }
    // SAFETY: as above.
    unsafe { malloc_slow(size) }
}

/// Everything `malloc`'s fast path does not serve: medium and large
/// sizes, an empty slab, a thread without a heap, instrumented mode.
#[inline(never)]
unsafe fn malloc_slow(size: usize) -> *mut u8 {
    let p = if size <= SMALL_MAX {
        // SAFETY: the calling thread's heap; class_of < NUM_CLASSES.
        unsafe { heap::alloc_class(crate::tls::heap(), class_of(size)) }
    } else {
        alloc_large(size, MIN_ALIGN).0
    };
    if crate::insight::active() {
        crate::insight::on_alloc(p, size);
    }
    p
}

fn alloc_large(size: usize, align: usize) -> (*mut u8, bool) {
    if size > MAX_REQUEST {
        return (nomem(), false);
    }
    // The process's first allocation may be a large one (see
    // `shared_heap::alloc`): set up the instrumentation first.
    crate::runtime::ensure_init();
    let r = large::alloc(size, align);
    if r.0.is_null() {
        return (nomem(), false);
    }
    r
}

/// `free`.
///
/// # Safety
/// `p` must be NULL or a pointer returned by this API (or by the next
/// allocator in line) that was not freed yet; violations are reported
/// where detected.
#[inline(always)]
pub unsafe fn free(p: *mut u8) {
    let heap = crate::tls::heap();
    // SAFETY: the calling thread's heap.
    if unsafe { heap::free_cached(heap, p) } {
        return;
    }
    let head = PAGEMAP.lookup(p as usize);
    if !head.is_null() {
        // SAFETY: the page map says `p` lies in a span of ours.
        unsafe { heap::free(heap, p, head) }
    } else if !p.is_null() {
        foreign_free(p);
    }
}

/// `calloc`: zeroed, with the multiplication checked.
///
/// # Safety
/// As [`malloc`].
pub unsafe fn calloc(n: usize, size: usize) -> *mut u8 {
    let total = match n.checked_mul(size) {
        Some(t) => t,
        None => return nomem(),
    };
    if total <= SMALL_MAX {
        // SAFETY: as malloc.
        let p = unsafe { malloc(total) };
        if !p.is_null() {
            // SAFETY: `p` holds at least `total` bytes.
            unsafe { core::ptr::write_bytes(p, 0, total) };
        }
        p
    } else {
        let (p, zeroed) = alloc_large(total, MIN_ALIGN);
        if !p.is_null() && !zeroed {
            // SAFETY: as above.
            unsafe { core::ptr::write_bytes(p, 0, total) };
        }
        if crate::insight::active() {
            crate::insight::on_alloc(p, total);
        }
        p
    }
}

/// `realloc`.
///
/// # Safety
/// As [`free`] for `p`.
pub unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    if crate::insight::active() {
        // SAFETY: forwarded contract.
        return unsafe { crate::insight::realloc(p, size) };
    }
    // SAFETY: forwarded contract.
    unsafe { realloc_raw(p, size) }
}

/// `realloc` without instrumentation hooks of its own (the `malloc` and
/// `free` it calls still reach them, unless a hook is running).
///
/// # Safety
/// As [`free`] for `p`.
pub unsafe fn realloc_raw(p: *mut u8, size: usize) -> *mut u8 {
    if p.is_null() {
        // SAFETY: as malloc.
        return unsafe { malloc(size) };
    }
    if size == 0 {
        // glibc: realloc(p, 0) frees p and returns NULL.
        // SAFETY: forwarded contract.
        unsafe { free(p) };
        return null_mut();
    }
    let head = PAGEMAP.lookup(p as usize);
    if head.is_null() {
        return foreign_realloc(p, size);
    }
    // SAFETY: `head` is a live span header.
    let tag = unsafe { (*head).tag };
    let old = match tag {
        // SAFETY: a slab header of p's span.
        TAG_SLAB => unsafe { heap::usable_size(p as usize, head) },
        TAG_LARGE => {
            if size > SMALL_MAX && size <= MAX_REQUEST {
                // SAFETY: a large header of p's block.
                if let Some(q) = unsafe { large::realloc(p, head, size) } {
                    return q;
                }
            }
            // SAFETY: as above.
            unsafe { large::usable_size(p as usize, head) }
        }
        _ => 0,
    };
    if old == 0 {
        fatal(
            "realloc(): invalid pointer (freed, or not a block start)",
            p as usize,
        );
    }
    if size <= old && size >= old / 2 {
        return p;
    }
    // SAFETY: as malloc.
    let q = unsafe { malloc(size) };
    if q.is_null() {
        return q; // errno is ENOMEM; p stays valid
    }
    // SAFETY: both blocks hold at least min(old, size) bytes; distinct.
    unsafe {
        core::ptr::copy_nonoverlapping(p, q, old.min(size));
        free(p);
    }
    q
}

/// `reallocarray`: `realloc(p, n * size)` with the product checked.
///
/// # Safety
/// As [`realloc`].
pub unsafe fn reallocarray(p: *mut u8, n: usize, size: usize) -> *mut u8 {
    match n.checked_mul(size) {
        // SAFETY: forwarded contract.
        Some(t) => unsafe { realloc(p, t) },
        None => nomem(),
    }
}

/// An aligned block (`align` a power of two).
///
/// # Safety
/// As [`malloc`].
pub unsafe fn alloc_aligned(align: usize, size: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
    if align <= MIN_ALIGN {
        // SAFETY: as malloc.
        return unsafe { malloc(size) };
    }
    // SAFETY: as malloc.
    let p = unsafe { alloc_aligned_raw(align, size) };
    if crate::insight::active() {
        crate::insight::on_alloc(p, size);
    }
    p
}

unsafe fn alloc_aligned_raw(align: usize, size: usize) -> *mut u8 {
    if size <= SMALL_MAX {
        let h = crate::tls::heap();
        if let Some(c) = heap::class_for_aligned(size, align) {
            // SAFETY: the calling thread's heap; c < NUM_CLASSES.
            return unsafe { heap::alloc_class(h, c) };
        }
        if let Some(need) = size
            .checked_add(align - MIN_ALIGN)
            .filter(|&n| n <= SMALL_MAX)
        {
            // SAFETY: as above.
            let b = unsafe { heap::alloc_class(h, class_of(need)) };
            if b.is_null() {
                return b;
            }
            let p = align_up(b as usize, align).unwrap_or(0) as *mut u8;
            if p != b {
                // SAFETY: `b` was just allocated by this thread's heap.
                unsafe { heap::mark_interior(b) };
            }
            debug_assert!(p as usize + size <= b as usize + block_size(class_of(need)));
            return p;
        }
    }
    alloc_large(size, align).0
}

/// `posix_memalign`: 0, `EINVAL` or `ENOMEM`; `*out` written only on
/// success; errno left as it was.
///
/// # Safety
/// `out` must be valid for a write.
pub unsafe fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align % core::mem::size_of::<usize>() != 0 {
        return libc::EINVAL;
    }
    let saved = crate::diag::errno();
    // SAFETY: as malloc.
    let p = unsafe { alloc_aligned(align, size) };
    set_errno(saved);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: contract.
    unsafe { *out = p.cast() };
    0
}

/// `aligned_alloc` (C17): the alignment must be a power of two, else
/// EINVAL, as glibc.
///
/// # Safety
/// As [`malloc`].
pub unsafe fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return null_mut();
    }
    // SAFETY: as malloc.
    unsafe { alloc_aligned(align, size) }
}

/// `memalign`: glibc rounds an alignment that is not a power of two up.
///
/// # Safety
/// As [`malloc`].
pub unsafe fn memalign(align: usize, size: usize) -> *mut u8 {
    if align > usize::MAX / 2 + 1 {
        set_errno(libc::EINVAL);
        return null_mut();
    }
    let align = align.max(1).next_power_of_two();
    // SAFETY: as malloc.
    unsafe { alloc_aligned(align, size) }
}

/// `valloc`: page-aligned.
///
/// # Safety
/// As [`malloc`].
pub unsafe fn valloc(size: usize) -> *mut u8 {
    // SAFETY: as malloc.
    unsafe { alloc_aligned(PAGE, size) }
}

/// `pvalloc`: page-aligned, size rounded up to whole pages (one page for 0).
///
/// # Safety
/// As [`malloc`].
pub unsafe fn pvalloc(size: usize) -> *mut u8 {
    match align_up(size.max(1), PAGE) {
        // SAFETY: as malloc.
        Some(n) => unsafe { alloc_aligned(PAGE, n) },
        None => nomem(),
    }
}

/// `malloc_usable_size`: bytes writable at `p` (0 for NULL).
///
/// # Safety
/// As [`free`] for `p`.
pub unsafe fn usable_size(p: *const u8) -> usize {
    if p.is_null() {
        return 0;
    }
    let head = PAGEMAP.lookup(p as usize);
    if head.is_null() {
        return foreign_usable_size(p);
    }
    // SAFETY: a live span header of p's span.
    unsafe { span_usable_size(p as usize, head) }
}

unsafe fn span_usable_size(p: usize, head: *mut SpanHead) -> usize {
    // SAFETY: contract of the callers.
    unsafe {
        match (*head).tag {
            TAG_SLAB => heap::usable_size(p, head),
            TAG_LARGE if (*head.cast::<large::LargeBlock>()).user == p => {
                large::usable_size(p, head)
            }
            _ => 0,
        }
    }
}

/// The block of the pool that contains `p`, as `(start, end)`: the user
/// block around any address inside it. `None` for addresses outside the
/// pool's live blocks (foreign, freed large blocks, never-used slab space).
pub fn block_bounds(p: usize) -> Option<(usize, usize)> {
    let head = PAGEMAP.lookup(p);
    if head.is_null() {
        return None;
    }
    // SAFETY: non-null entries are live span headers.
    unsafe {
        match (*head).tag {
            TAG_SLAB => {
                let slab = head.cast::<crate::slab::Slab>();
                let b = (*slab).block_containing(p)?;
                Some((b, b + (*slab).block_size as usize))
            }
            TAG_LARGE => {
                let lb = head.cast::<large::LargeBlock>();
                let end = lb as usize + (*lb).map_size;
                ((*lb).user <= p && p < end).then_some(((*lb).user, end))
            }
            _ => None,
        }
    }
}

/// The end of the span of ours holding `p` (all of a span's bytes are
/// mapped), or `None` when `p` is not in a live span.
pub fn span_end(p: usize) -> Option<usize> {
    let head = PAGEMAP.lookup(p);
    if head.is_null() {
        return None;
    }
    // SAFETY: non-null entries are live span headers.
    unsafe {
        match (*head).tag {
            TAG_SLAB => {
                Some(head as usize + (*head).granules as usize * crate::size_class::GRANULE)
            }
            TAG_LARGE => Some(head as usize + (*head.cast::<large::LargeBlock>()).map_size),
            _ => None,
        }
    }
}

/// Did the pool hand out the block `p` points into?
pub fn owns(p: *const u8) -> bool {
    block_bounds(p as usize).is_some()
}

// ---------------------------------------------------------------------------
// Foreign pointers: hand them to the next allocator in line.

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
    let saved = crate::diag::errno();
    // SAFETY: mincore only inspects the mapping; `vec` holds one entry.
    let r = unsafe { libc::mincore(page as *mut c_void, PAGE, &mut vec) };
    set_errno(saved);
    r == 0
}

/// Stop with `freed` when `p` is a large block we recently returned to the
/// OS, with `unmapped` when nothing is mapped at `p` (or just below it,
/// where glibc reads its chunk header): handing such a pointer to the next
/// allocator would crash it.
fn check_foreign(p: *const u8, freed: &str, unmapped: &str) {
    if large::recently_unmapped(p as usize) {
        fatal(freed, p as usize);
    }
    if !page_mapped(p as usize) || !page_mapped((p as usize).wrapping_sub(16)) {
        fatal(unmapped, p as usize);
    }
}

/// A pointer that is not ours: a large block we already unmapped (a double
/// free), an address nobody mapped, or another allocator's block.
#[cold]
#[inline(never)]
fn foreign_free(p: *mut u8) {
    check_foreign(
        p,
        "free(): double free (large block already returned to the OS)",
        "free(): invalid pointer (not allocated by mmpool, not mapped)",
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
fn foreign_usable_size(p: *const u8) -> usize {
    check_foreign(
        p,
        "malloc_usable_size(): pointer to a freed large block",
        "malloc_usable_size(): invalid pointer (not mapped)",
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

#[cold]
#[inline(never)]
fn foreign_realloc(p: *mut u8, size: usize) -> *mut u8 {
    let old = foreign_usable_size(p);
    // SAFETY: as malloc.
    let q = unsafe { malloc(size) };
    if !q.is_null() {
        // SAFETY: the foreign block holds `old` bytes, ours `size`.
        unsafe { core::ptr::copy_nonoverlapping(p, q, old.min(size)) };
        foreign_free(p);
    }
    q
}
