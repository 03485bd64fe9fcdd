//! C semantics of the malloc API, kept apart from the core and from the
//! exported symbols: errno, overflow checks, `realloc(p, 0)`, the
//! alignment rules of `posix_memalign`/`aligned_alloc`/`memalign`, and
//! pointers the pool did not hand out (`api::foreign`). The
//! instrumentation hooks are called from here, on the slow paths.
//!
//! glibc's rules, which this follows: 16-byte alignment for every block of
//! 16 bytes or more; NULL with `errno = ENOMEM` for every failed
//! allocation; a failed `realloc` leaves the block valid; `realloc(p, 0)`
//! frees and returns NULL; `posix_memalign` writes `*out` only on success.
//!
//! Uses: `api::foreign`, `api::process`, `api::secure`, `core::canary`,
//! `core::config`, `core::large`, `core::lookup`, `core::pagemap`,
//! `core::size_class`, `core::slab`, `core::span`, `heap::abandoned`, `heap::alloc`,
//! `heap::check`, `heap::free`, `heap::hook`, `heap::lifecycle`,
//! `heap::medium`, `heap::remote`, `heap::secure`, `heap::tls`,
//! `heap::types`, `insight`, `os`, `os::errno`, `util::diag`, `util::lock`.

use crate::api::foreign;
use crate::api::process::ensure_init;
use crate::api::secure;
use crate::core::canary::{self, RECORD};
use crate::core::large;
use crate::core::lookup::{is_medium, span_of, Span};
use crate::core::pagemap::PAGEMAP;
use crate::core::size_class::{
    block_size, class_of, DIRECT_MAX, MIN_ALIGN, SHARED_FROM, SMALL_MAX,
};
use crate::heap::{alloc, free as heap_free, tls};
use crate::os::errno;
use crate::os::{align_up, PAGE};
use crate::util::diag::fatal;
use core::ffi::{c_int, c_void};
use core::ptr::null_mut;

use crate::core::size_class::MAX_REQUEST;
use crate::os::errno::nomem;

/// `malloc`.
///
/// # Safety
/// Callable from any thread at any time (it is the C function).
#[inline(always)]
pub(crate) unsafe fn malloc(size: usize) -> *mut u8 {
    if crate::core::config::SECURE {
        // SAFETY: forwarded contract.
        return unsafe { secure::malloc(size, canary::KIND_MALLOC) };
    }
    if size <= DIRECT_MAX {
        // SAFETY: the calling thread's heap.
        let p = unsafe { alloc::try_alloc_direct(tls::heap(), size) };
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
    let p = if size <= DIRECT_MAX {
        ensure_init();
        // SAFETY: the calling thread's heap; class_of < NUM_CLASSES.
        unsafe { alloc::alloc_class(tls::heap(), class_of(size)) }
    } else if size <= SMALL_MAX - RECORD {
        ensure_init();
        // A medium block, with room for its record (`core::canary`).
        // SAFETY: as above.
        let p = unsafe { alloc::alloc_class(tls::heap(), class_of(size + RECORD)) };
        seal_medium(p, p, size);
        p
    } else {
        alloc_large(size, MIN_ALIGN).0
    };
    if crate::insight::active() {
        crate::insight::on_alloc(p, size);
    }
    p
}

/// Write the record of the medium block starting at `start` (null:
/// nothing), handed out at `p` (its start, or an aligned address in it)
/// for `size` requested bytes. `start` is a block just handed out by
/// `alloc_class`: its span is a slab, and the block ends one block size
/// (the slab's: a borrowed block is a bigger class's) after it.
fn seal_medium(p: *mut u8, start: *mut u8, size: usize) {
    if start.is_null() {
        return;
    }
    let s = PAGEMAP
        .lookup(start as usize)
        .cast::<crate::core::slab::Slab>();
    debug_assert!(matches!(span_of(start as usize), Some(Span::Slab(x)) if x == s));
    // SAFETY: the live header of the slab of a medium block just handed
    // out to us; its block has room for `size` and the record after `p`.
    unsafe {
        let end = start as usize + (*s).block_size as usize;
        debug_assert!(end >= p as usize + size + RECORD);
        canary::seal_medium(
            (*s).check_key,
            p as usize,
            size,
            start as usize,
            end,
            canary::KIND_MALLOC,
        );
    }
}

/// A large block and how many of its first bytes may be non-zero (see
/// `heap::alloc::large`); null with `errno = ENOMEM`.
fn alloc_large(size: usize, align: usize) -> (*mut u8, usize) {
    if size > MAX_REQUEST {
        return (nomem(), 0);
    }
    // The process's first allocation may be a large one.
    ensure_init();
    let r = alloc::large(size, align);
    if r.0.is_null() {
        return (nomem(), 0);
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
pub(crate) unsafe fn free(p: *mut u8) {
    if crate::core::config::SECURE {
        // SAFETY: forwarded contract.
        return unsafe { secure::free(p, None) };
    }
    let heap = tls::heap();
    // SAFETY: the calling thread's heap.
    if unsafe { heap_free::free_cached(heap, p, alloc::run_upkeep) } {
        return;
    }
    // SAFETY: as above.
    unsafe { free_uncached(p, heap) }
}

/// `free` when the slab cache missed: the page map decides. Out of line,
/// and `p` first, so the fast path above shares no register work with it
/// and keeps `p` where it arrived (two instructions less there).
#[inline(never)]
unsafe fn free_uncached(p: *mut u8, mut heap: *mut crate::heap::types::Heap) {
    let head = PAGEMAP.lookup(p as usize);
    if !head.is_null() {
        if heap == crate::heap::types::empty_heap() {
            // SAFETY: the page map says `head` is a live span header.
            heap = unsafe { heap_for_free(heap, head) };
        }
        // SAFETY: the page map says `p` lies in a span of ours; `heap` is
        // the calling thread's.
        unsafe {
            heap_free::free(heap, p, head);
            alloc::upkeep_if_due(heap);
        }
    } else if !p.is_null() {
        foreign::free(p);
    }
}

/// A thread without a heap frees a block of another thread's slab: it
/// gets a heap now, as its first `malloc` would give it one, so that its
/// frees go through the heap's outbox (one CAS on the owner's queue per
/// batch of blocks, `heap::remote`) instead of one CAS each on a line
/// the owner swaps. A consumer thread that only frees what producers
/// allocated is the common case. Keeps `heap` (the empty heap) for any
/// other span, and when no heap can be made.
///
/// # Safety
/// `head` is a live span header from the page map.
#[cold]
#[inline(never)]
unsafe fn heap_for_free(
    heap: *mut crate::heap::types::Heap,
    head: *mut crate::core::pagemap::SpanHead,
) -> *mut crate::heap::types::Heap {
    // SAFETY: contract; a span's tag and a slab's owner word are stable
    // while one of its blocks is live, and read only to choose a heap.
    let owner = unsafe {
        if (*head).tag != crate::core::pagemap::TAG_SLAB {
            return heap;
        }
        (*head).owner.load(core::sync::atomic::Ordering::Relaxed) & !crate::core::slab::OWNER_FLAGS
    };
    if owner == 0 || crate::heap::medium::owns(owner) {
        return heap;
    }
    let h = crate::heap::lifecycle::thread_heap();
    if h.is_null() {
        heap
    } else {
        h
    }
}

/// `calloc`: zeroed, with the multiplication checked.
///
/// # Safety
/// As [`malloc`].
pub(crate) unsafe fn calloc(n: usize, size: usize) -> *mut u8 {
    if crate::core::config::SECURE {
        // SAFETY: forwarded contract.
        return unsafe { secure::calloc(n, size) };
    }
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
        let (p, dirty) = alloc_large(total, MIN_ALIGN);
        if !p.is_null() {
            // SAFETY: as above; past `dirty` the block is fresh memory.
            unsafe { core::ptr::write_bytes(p, 0, dirty) };
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
pub(crate) unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    if crate::insight::active() {
        // SAFETY: forwarded contract.
        return unsafe { realloc_recorded(p, size) };
    }
    // SAFETY: forwarded contract.
    unsafe { realloc_raw(p, size) }
}

/// `realloc` in instrumented mode: the raw operation, recorded as one
/// event (the malloc and free inside it are not recorded again).
#[cold]
unsafe fn realloc_recorded(p: *mut u8, size: usize) -> *mut u8 {
    // A heap lets the thread mark the operation as a hook.
    ensure_init();
    let heap = crate::heap::lifecycle::thread_heap();
    if p.is_null() || heap.is_null() {
        // realloc(NULL, n) is a malloc, which records itself.
        // SAFETY: forwarded contract.
        return unsafe { realloc_raw(p, size) };
    }
    let Some(hook) = crate::heap::hook::HookGuard::enter() else {
        // SAFETY: forwarded contract.
        return unsafe { realloc_raw(p, size) };
    };
    let event = crate::insight::realloc_begin(p);
    // SAFETY: forwarded contract.
    let q = unsafe { realloc_raw(p, size) };
    crate::insight::realloc_end(event, p, q, size);
    drop(hook);
    q
}

/// `realloc` without instrumentation hooks of its own (the `malloc` and
/// `free` it calls still reach them, unless a hook is running).
///
/// # Safety
/// As [`free`] for `p`.
unsafe fn realloc_raw(p: *mut u8, size: usize) -> *mut u8 {
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
    if crate::core::config::SECURE {
        // SAFETY: forwarded contract.
        if let Some(q) = unsafe { secure::realloc(p, size) } {
            return q;
        }
    }
    let Some(span) = span_of(p as usize) else {
        return realloc_foreign(p, size);
    };
    if let Span::Large(lb) = span {
        // Large sizes, and a shrink to at least half (kept in place, its
        // requested size and canaries moved), stay in the mapping.
        let half = span
            .usable_from(p as usize)
            .is_some_and(|old| size <= old && size >= old / 2);
        if (size > SMALL_MAX || half) && size <= MAX_REQUEST {
            // SAFETY: a large header of p's block.
            if let Some(q) = unsafe { large::realloc(p, lb.cast(), size) } {
                return q;
            }
        }
    }
    let Some(old) = span.usable_from(p as usize) else {
        fatal(
            "realloc(): invalid pointer (freed, or not a block start)",
            p as usize,
        );
    };
    match span {
        // SAFETY: a live slab header.
        Span::Slab(s) if unsafe { is_medium(s) } => {
            // In place while the block has room for the size and its
            // record, and the call grows the block or shrinks it to no
            // less than half its room, resealed for the new size. (A
            // growth within the room always stays: a block lent by a
            // class up to 4x bigger, `heap::medium::borrow`, was copied
            // even by a realloc to its own size while the rule was half
            // the room alone.)
            let (start, end) = span.block_bounds(p as usize).unwrap_or((0, 0));
            let room = end - RECORD - p as usize;
            if size <= room && (size >= room / 2 || size >= old) {
                // SAFETY: as in `seal_medium`.
                unsafe {
                    canary::seal_medium(
                        (*s).check_key,
                        p as usize,
                        size,
                        start,
                        end,
                        canary::KIND_MALLOC,
                    )
                };
                return p;
            }
        }
        _ if size <= old && size >= old / 2 => return p,
        _ => {}
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

/// `realloc` of another allocator's block: into a block of ours.
#[cold]
#[inline(never)]
fn realloc_foreign(p: *mut u8, size: usize) -> *mut u8 {
    let old = foreign::usable_size(p);
    // SAFETY: as malloc.
    let q = unsafe { malloc(size) };
    if !q.is_null() {
        // SAFETY: the foreign block holds `old` bytes, ours `size`.
        unsafe { core::ptr::copy_nonoverlapping(p, q, old.min(size)) };
        foreign::free(p);
    }
    q
}

/// `reallocarray`: `realloc(p, n * size)` with the product checked.
///
/// # Safety
/// As [`realloc`].
pub(crate) unsafe fn reallocarray(p: *mut u8, n: usize, size: usize) -> *mut u8 {
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
pub(crate) unsafe fn alloc_aligned(align: usize, size: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
    if crate::core::config::SECURE {
        // SAFETY: forwarded contract.
        return unsafe { secure::aligned(align, size, canary::KIND_MALLOC, false) };
    }
    if align <= MIN_ALIGN {
        // SAFETY: as malloc.
        return unsafe { malloc(size) };
    }
    ensure_init();
    // SAFETY: as malloc.
    let p = unsafe { alloc_aligned_raw(align, size) };
    if crate::insight::active() {
        crate::insight::on_alloc(p, size);
    }
    p
}

unsafe fn alloc_aligned_raw(align: usize, size: usize) -> *mut u8 {
    // Medium blocks keep room for their record (`core::canary`).
    let sealed = |c: usize| c >= SHARED_FROM;
    if size <= SMALL_MAX {
        let h = tls::heap();
        let fits = alloc::class_for_aligned(size, align).and_then(|c| {
            if sealed(c) {
                alloc::class_for_aligned(size + RECORD, align)
            } else {
                Some(c)
            }
        });
        if let Some(c) = fits {
            // SAFETY: the calling thread's heap; c < NUM_CLASSES.
            let p = unsafe { alloc::alloc_class(h, c) };
            if sealed(c) {
                seal_medium(p, p, size);
            }
            return p;
        }
        let need = size.checked_add(align - MIN_ALIGN).map(|n| {
            if sealed(class_of(n.min(SMALL_MAX))) {
                n + RECORD
            } else {
                n
            }
        });
        if let Some(need) = need.filter(|&n| n <= SMALL_MAX) {
            // SAFETY: as above.
            let b = unsafe { alloc::alloc_class(h, class_of(need)) };
            if b.is_null() {
                return b;
            }
            let p = align_up(b as usize, align).unwrap_or(0) as *mut u8;
            if p != b {
                // SAFETY: `b` was just allocated by this thread.
                unsafe { alloc::mark_interior(b) };
            }
            debug_assert!(p as usize + size <= b as usize + block_size(class_of(need)));
            if sealed(class_of(need)) {
                seal_medium(p, b, size);
            }
            return p;
        }
    }
    alloc_large(size, align).0
}

/// A zeroed aligned block (`align` a power of two): [`alloc_aligned`]
/// with [`calloc`]'s zeroing, which skips a large block fresh from the
/// OS (its pages are zero already, and writing them would make them
/// resident). Rust's `GlobalAlloc::alloc_zeroed` for alignments above 16.
///
/// # Safety
/// As [`malloc`].
pub(crate) unsafe fn alloc_aligned_zeroed(align: usize, size: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
    if crate::core::config::SECURE {
        // SAFETY: forwarded contract.
        return unsafe { secure::aligned(align, size, canary::KIND_MALLOC, true) };
    }
    if align <= MIN_ALIGN {
        // SAFETY: as malloc.
        return unsafe { calloc(1, size) };
    }
    if size <= SMALL_MAX {
        // SAFETY: as malloc.
        let p = unsafe { alloc_aligned(align, size) };
        if !p.is_null() {
            // SAFETY: `p` holds at least `size` bytes.
            unsafe { core::ptr::write_bytes(p, 0, size) };
        }
        return p;
    }
    let (p, dirty) = alloc_large(size, align);
    if !p.is_null() {
        // SAFETY: as above; past `dirty` the block is fresh memory.
        unsafe { core::ptr::write_bytes(p, 0, dirty) };
    }
    if crate::insight::active() {
        crate::insight::on_alloc(p, size);
    }
    p
}

/// `posix_memalign`: 0, `EINVAL` or `ENOMEM`; `*out` written only on
/// success. As glibc: errno is `ENOMEM` after an `ENOMEM` failure, and
/// left as it was otherwise.
///
/// # Safety
/// `out` must be valid for a write.
pub(crate) unsafe fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align % core::mem::size_of::<usize>() != 0 {
        return libc::EINVAL;
    }
    let errno = errno::ErrnoGuard::save();
    // SAFETY: as malloc.
    let p = unsafe { alloc_aligned(align, size) };
    if p.is_null() {
        errno.keep();
        errno::set(libc::ENOMEM);
        return libc::ENOMEM;
    }
    // SAFETY: contract.
    unsafe { *out = p.cast() };
    0
}

/// `aligned_alloc` (C17): the alignment must be a power of two, else
/// EINVAL.
///
/// # Safety
/// As [`malloc`].
pub(crate) unsafe fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
    if !align.is_power_of_two() {
        errno::set(libc::EINVAL);
        return null_mut();
    }
    // SAFETY: as malloc.
    unsafe { alloc_aligned(align, size) }
}

/// `memalign`: glibc rounds an alignment that is not a power of two up.
///
/// # Safety
/// As [`malloc`].
pub(crate) unsafe fn memalign(align: usize, size: usize) -> *mut u8 {
    if align > usize::MAX / 2 + 1 {
        errno::set(libc::EINVAL);
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
pub(crate) unsafe fn valloc(size: usize) -> *mut u8 {
    // SAFETY: as malloc.
    unsafe { alloc_aligned(PAGE, size) }
}

/// `pvalloc`: page-aligned, size rounded up to whole pages (one page for 0).
///
/// # Safety
/// As [`malloc`].
pub(crate) unsafe fn pvalloc(size: usize) -> *mut u8 {
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
pub(crate) unsafe fn usable_size(p: *const u8) -> usize {
    if p.is_null() {
        return 0;
    }
    if crate::core::config::SECURE && secure::is_zero_block(p) {
        return 0;
    }
    match span_of(p as usize) {
        Some(span) => span.usable_from(p as usize).unwrap_or(0),
        None => foreign::usable_size(p),
    }
}

/// Did the pool hand out `p` (a live block, or the secure build's
/// `malloc(0)` pointer)?
pub(crate) fn owns(p: *const u8) -> bool {
    crate::core::lookup::owns(p) || (crate::core::config::SECURE && secure::is_zero_block(p))
}

/// `malloc_trim`: give idle memory back to the OS now; true if any was.
pub(crate) fn trim() -> bool {
    ensure_init();
    if crate::core::config::SECURE {
        // The calling thread's quarantined blocks go back to their slabs
        // first (other threads' stay until they free more or exit).
        let h = tls::heap();
        if crate::heap::types::is_thread_heap(h) {
            // SAFETY: the calling thread's own heap.
            unsafe { crate::heap::secure::drain(h) };
        }
    }
    crate::heap::lifecycle::trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::process::ensure_init;
    use std::sync::mpsc;

    use crate::util::lock::{fork_turn, wait_child};

    /// A thread that only frees (a consumer of another thread's blocks)
    /// gets a heap at its first such free and batches in its outbox: the
    /// owner's queue gets nothing for the first `OUTBOX_BATCH - 1` blocks,
    /// then all `OUTBOX_BATCH` in one chain; the rest come when the thread
    /// exits. (`c-tests/errors.c`'s double frees from another thread
    /// stop a second free of a block waiting there.)
    #[cfg(not(feature = "secure"))]
    #[test]
    fn a_thread_that_only_frees_batches_its_frees() {
        use crate::heap::remote::{self, OUTBOX_BATCH};
        use crate::heap::types::{empty_heap, is_thread_heap};
        let n = OUTBOX_BATCH as usize + 8;
        // SAFETY: plain allocations, each freed once by the other thread.
        let blocks: Vec<usize> = (0..n).map(|_| unsafe { malloc(48) } as usize).collect();
        let heap = tls::heap();
        assert!(is_thread_heap(heap));
        // SAFETY: our own heap; heap structs are never unmapped.
        let queue = unsafe { &(*heap).remote };
        let chain_len = |mut b: *mut crate::core::slab::Block| {
            let mut len = 0;
            while !b.is_null() {
                len += 1;
                // SAFETY: a chain of our blocks taken from our queue.
                b = unsafe { (*b).chain };
            }
            len
        };
        let (at_tx, at_rx) = mpsc::channel::<usize>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let consumer = std::thread::spawn(move || {
            assert_eq!(tls::heap(), empty_heap());
            for (i, &b) in blocks.iter().enumerate() {
                // SAFETY: blocks handed over, freed once.
                unsafe { free(b as *mut u8) };
                if i + 2 >= OUTBOX_BATCH as usize && i < OUTBOX_BATCH as usize {
                    at_tx.send(i + 1).unwrap();
                    go_rx.recv().unwrap();
                }
            }
            assert!(is_thread_heap(tls::heap()));
        });
        assert_eq!(at_rx.recv().unwrap(), OUTBOX_BATCH as usize - 1);
        assert!(queue.load(core::sync::atomic::Ordering::Acquire).is_null());
        go_tx.send(()).unwrap();
        assert_eq!(at_rx.recv().unwrap(), OUTBOX_BATCH as usize);
        let first = remote::take(queue);
        assert_eq!(chain_len(first), OUTBOX_BATCH as usize);
        go_tx.send(()).unwrap();
        consumer.join().unwrap();
        let rest = remote::take(queue);
        assert_eq!(chain_len(rest), n - OUTBOX_BATCH as usize);
        // SAFETY: chains of our own blocks, taken from our queue.
        unsafe {
            crate::heap::free::free_chain(heap, first);
            crate::heap::free::free_chain(heap, rest);
        }
        crate::heap::check::check_thread_heap();
    }

    /// `malloc` of a power of two from 2 KiB on (a medium request, which
    /// its block's record makes 8 bytes bigger, in both builds) asks for
    /// a class at most `size_class`'s header room above it, not the next
    /// class a quarter or an eighth up: `malloc(2048)` took a 2560-byte
    /// block when those classes began at 4 KiB. (The class asked for,
    /// not the block handed out: a bigger class may lend a free block,
    /// `heap::medium`.)
    #[test]
    fn a_power_of_two_takes_a_block_just_above_it() {
        for size in [2048usize, 4096, 8192, 16384, 32768] {
            let bs = block_size(class_of(size + RECORD));
            assert!(
                bs > size && bs <= size + 256,
                "malloc({size}): a {bs}-byte block"
            );
        }
    }

    /// `calloc` of a block bigger than any cached large range: the block
    /// is assembled from the cached (dirty) ranges and fresh memory, and
    /// only the reused part is cleared; the fresh part stays untouched
    /// (it was all cleared once, making 512 MiB resident for a few MiB of
    /// reused pages).
    #[test]
    fn calloc_of_an_assembled_block_clears_only_its_reused_part() {
        ensure_init();
        let rss = || {
            let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
            let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
            pages * 4096
        };
        // SAFETY: blocks of the pool, written within their size, freed
        // once.
        unsafe {
            // A few dirty ranges in the large-block cache.
            let dirty: std::vec::Vec<*mut u8> = (0..4).map(|_| malloc(3 << 20)).collect();
            for &p in &dirty {
                p.write_bytes(0xab, 3 << 20);
            }
            for &p in &dirty {
                free(p);
            }
            let size = 512 << 20;
            let before = rss();
            let z = calloc(1, size);
            assert!(!z.is_null());
            let grew = rss().saturating_sub(before);
            for i in (0..size).step_by(1 << 20) {
                assert_eq!(z.add(i).read(), 0, "byte {i}");
            }
            free(z);
            assert!(
                grew < 128 << 20,
                "calloc(512 MiB) made {} MiB resident",
                grew >> 20
            );
        }
    }

    /// A malloc/free loop on one block: every free is the fast path's push
    /// onto the current slab, every malloc takes that block back, and the
    /// thread never takes the slow path that counts towards upkeep; the
    /// current slab's count of frees runs it every `CURRENT_TICKS` frees
    /// instead (or a block another thread freed would wait in the remote
    /// queue for good, and idle memory would never be purged). The
    /// default build: the secure build's quarantine stands between a free
    /// and the next malloc.
    #[test]
    #[cfg(not(feature = "secure"))]
    fn a_loop_on_the_current_slab_still_runs_upkeep() {
        use crate::heap::types::CURRENT_TICKS;
        std::thread::spawn(|| {
            ensure_init();
            // SAFETY: blocks of the pool, each freed once; our own heap.
            unsafe {
                // `p` last: its slab is the current one.
                let r = malloc(48) as usize;
                let p = malloc(48);
                // Another thread frees `r`: it waits in our remote queue
                // (the other thread's outbox goes out when it exits).
                std::thread::spawn(move || free(r as *mut u8))
                    .join()
                    .unwrap();
                let heap = tls::heap();
                assert!(
                    !(*heap)
                        .remote
                        .load(std::sync::atomic::Ordering::Acquire)
                        .is_null(),
                    "the remote free waits in the queue"
                );
                let mut q = p;
                for _ in 0..2 * CURRENT_TICKS {
                    free(q);
                    q = malloc(48);
                    assert_eq!(q, p, "the block freed last comes back");
                }
                assert!(
                    (*heap)
                        .remote
                        .load(std::sync::atomic::Ordering::Acquire)
                        .is_null(),
                    "the upkeep collected the remote queue"
                );
                assert!(!(*heap).local.upkeep_due, "and cleared its flag");
                free(q);
            }
        })
        .join()
        .unwrap();
    }

    /// A fork while another thread holds every allocator lock: the child
    /// rebuilds what those locks guard and allocates and frees blocks of
    /// every kind; nothing hangs (the parent holds the locks until the
    /// child is done).
    #[test]
    fn a_fork_child_rebuilds_what_another_thread_was_changing() {
        let _turn = fork_turn();
        ensure_init();
        // Blocks of every kind first, so the structures are not empty.
        // SAFETY: plain allocations and frees of the pool.
        let warm: std::vec::Vec<*mut u8> = [24usize, 3000, 20000, 200_000]
            .iter()
            .map(|&n| unsafe { malloc(n) })
            .collect();
        let (held_tx, held_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            // In the allocator's own order (a thread holding a shard's
            // lock may take the span cache's, never the other way round):
            // another test's allocation that holds a shard and waits for
            // the span cache would otherwise wait for us while we wait
            // for its shard.
            let _shards = crate::heap::medium::hold_for_test();
            let _spans = crate::core::span::SPANS.hold_for_test();
            let _large = crate::core::large::hold_for_test();
            let _abandoned = crate::heap::abandoned::hold_for_test();
            let _pool = crate::heap::lifecycle::hold_for_test();
            held_tx.send(()).unwrap();
            done_rx.recv().unwrap();
        });
        held_rx.recv().unwrap();
        // SAFETY: fork; the child only calls allocator functions and
        // _exit (no std locks it could inherit held are taken).
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // glibc's fork ran our child handler (pthread_atfork).
            let mut ok = true;
            // SAFETY: the child's own allocations.
            unsafe {
                for round in 0..3 {
                    for &n in &[16usize, 100, 1000, 2000, 9000, 30000, 100_000, 3 << 20] {
                        let p = malloc(n + round);
                        ok &= !p.is_null();
                        if !p.is_null() {
                            core::ptr::write_bytes(p, 0x5a, n + round);
                            free(p);
                        }
                    }
                }
                for &p in &warm {
                    free(p);
                }
                crate::heap::lifecycle::trim();
                libc::_exit(if ok { 0 } else { 1 });
            }
        }
        assert!(pid > 0, "fork failed");
        // It must finish while the parent still holds every lock.
        let status = wait_child(pid, "locks held by a thread it does not have");
        done_tx.send(()).unwrap();
        holder.join().unwrap();
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status:#x}"
        );
        for p in warm {
            // SAFETY: our blocks, freed once in this process.
            unsafe { free(p) };
        }
    }

    /// A fork child whose thread's medium shard is poisoned walks on to
    /// the next shard, and finds it even when the thread's CPU is looked
    /// up again during the walk and names that very shard. The walk once
    /// stopped there and failed: one in ~1500 children of
    /// fork_busy_threads (--full) got ENOMEM for a medium block.
    #[test]
    fn a_poisoned_shard_is_skipped_when_the_cpu_changes_during_the_walk() {
        use crate::heap::medium::{poison_for_test, MAX_SHARDS};
        let _turn = fork_turn();
        ensure_init();
        // SAFETY: fork; the child only calls allocator functions, libc
        // and _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: the child's only thread; its heap is made by the
            // first malloc and only this thread uses it.
            unsafe {
                // Pin the child to one CPU c; the shard just before c's
                // becomes its thread's shard, poisoned, with the CPU due
                // for a look-up on the next call.
                let size = core::mem::size_of::<libc::cpu_set_t>();
                let mut set: libc::cpu_set_t = core::mem::zeroed();
                libc::sched_getaffinity(0, size, &mut set);
                let c = (0..libc::CPU_SETSIZE as usize)
                    .find(|&c| libc::CPU_ISSET(c, &set))
                    .unwrap_or(0);
                let mut one: libc::cpu_set_t = core::mem::zeroed();
                libc::CPU_SET(c, &mut one);
                libc::sched_setaffinity(0, size, &one);
                free(malloc(48));
                let heap = tls::heap();
                if heap == crate::heap::types::empty_heap() {
                    libc::_exit(2);
                }
                let x = (c + MAX_SHARDS - 1) % MAX_SHARDS;
                crate::heap::medium::flush_cache(heap);
                poison_for_test(x);
                (*heap).local.shard = x as u32;
                (*heap).local.shard_uses = 1;
                let p = malloc(block_size(SHARED_FROM));
                libc::_exit(if p.is_null() { 1 } else { 0 });
            }
        }
        assert!(pid > 0, "fork failed");
        let status = wait_child(pid, "the walk past poisoned shards");
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status:#x} (exit 1: the medium allocation failed)"
        );
    }
}
