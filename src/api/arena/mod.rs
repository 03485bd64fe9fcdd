//! Arenas: one pool per connection (nginx's `ngx_pool_t`, done better).
//!
//! Owns [`ArenaCore`]: bump allocation from blocks, large allocations in
//! an O(1)-removable list, LIFO cleanup handlers, children, reset and
//! destroy; [`safe`] is its Rust face. Blocks and large allocations come
//! from, and go back to, the global pool (`api::libc`), so leak reports
//! and statistics see them.
//!
//! What is fixed relative to nginx:
//! - freeing a large allocation is O(1) (a header before it links it),
//!   and a pointer the arena does not own is declined, never trusted;
//! - `reset` runs and clears the cleanup handlers and destroys children
//!   (nginx's reset forgets its cleanups);
//! - small requests are bumped only up to a quarter of a block, so the
//!   tail wasted when a block fills is bounded (nginx lets one request use
//!   a whole block and skips blocks only after repeated failures);
//! - `MMPOOL_ARENA_DEBUG=1` makes every allocation its own global-pool
//!   block, visible to valgrind and leak reports.
//!
//! Arenas are single-threaded: one thread uses an arena at a time.
//!
//! Layout: the first block holds the [`ArenaCore`] right after its block
//! header; each block is `BlockHeader` + bump space. A large allocation is
//! a global-pool block holding a `LargeHeader` immediately before the
//! user pointer.
//!
//! Invariants of a live arena `a`: `a.magic == ARENA_MAGIC` and
//! `a.self_ptr == a`; `stats.blocks == |blocks from first|`,
//! `stats.large_blocks == |large|`, `stats.cleanups == |cleanups|`,
//! `stats.children == |children|`; every large header and cleanup on its
//! lists carries its magic and names `a`; every child's `parent` is `a`.
//!
//! Uses: `api::libc`, `api::process`, `core::config`, `core::lookup`,
//! `heap::tls`, `os::errno`, `util::list`.

pub mod safe;

use crate::api::libc as pool;
use crate::heap::tls;
use crate::util::list::{Linked, List};
use core::ffi::c_void;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU64, Ordering};

/// Default block size when 0 is given.
pub(crate) const DEFAULT_BLOCK: usize = 16 * 1024;
/// Smallest block size accepted (smaller requests are rounded up).
pub(crate) const MIN_BLOCK: usize = 512;
/// Largest block size accepted.
pub(crate) const MAX_BLOCK: usize = 64 << 20;
/// Bump alignment of `alloc`.
pub(crate) const ARENA_ALIGN: usize = 16;
/// A block whose bump attempts failed this many times stops being tried.
const MAX_FAILED: u32 = 4;

const ARENA_MAGIC: u64 = 0x6d6d_706f_6f6c_4152; // "mmpoolAR"
const LARGE_MAGIC: u64 = 0x6d6d_706f_6f6c_4c47; // "mmpoolLG"
const CLEANUP_MAGIC: u64 = 0x6d6d_706f_6f6c_434c; // "mmpoolCL"

#[repr(C)]
struct BlockHeader {
    next: *mut BlockHeader,
    /// Next free byte.
    cur: usize,
    /// End of the block.
    end: usize,
    failed: u32,
}

#[repr(C)]
struct LargeHeader {
    magic: u64,
    arena: *mut ArenaCore,
    prev: *mut LargeHeader,
    next: *mut LargeHeader,
    /// What the global pool returned (freed on release).
    base: *mut u8,
    /// Bytes the caller asked for (statistics).
    size: usize,
}

const LARGE_HDR: usize = core::mem::size_of::<LargeHeader>();
const _: () = assert!(LARGE_HDR % ARENA_ALIGN == 0);

/// A cleanup handler, allocated from its arena.
#[repr(C)]
pub struct Cleanup {
    magic: u64,
    arena: *mut ArenaCore,
    handler: Option<unsafe extern "C" fn(*mut c_void)>,
    data: *mut c_void,
    prev: *mut Cleanup,
    next: *mut Cleanup,
}

/// Counters of one arena (children not included).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct ArenaStats {
    /// Bytes requested by live allocations since the last reset.
    pub bytes_requested: usize,
    /// Bytes held from the global pool: blocks plus large allocations.
    pub bytes_held: usize,
    /// Blocks held (at least 1).
    pub blocks: usize,
    /// Live large allocations.
    pub large_blocks: usize,
    /// Live child arenas.
    pub children: usize,
    /// Registered cleanup handlers.
    pub cleanups: usize,
}

/// An arena's state, at the head of its first block.
#[repr(C)]
pub struct ArenaCore {
    magic: u64,
    self_ptr: usize,
    first: *mut BlockHeader,
    current: *mut BlockHeader,
    last: *mut BlockHeader,
    block_size: usize,
    small_max: usize,
    large: List<LargeHeader>,
    cleanups: List<Cleanup>,
    parent: *mut ArenaCore,
    children: List<ArenaCore>,
    /// Links in the parent's `children`.
    sib_prev: *mut ArenaCore,
    sib_next: *mut ArenaCore,
    debug: bool,
    stats: ArenaStats,
}

// SAFETY: each pair is two distinct link fields of the node.
unsafe impl Linked for LargeHeader {
    unsafe fn links(this: *mut Self) -> (*mut *mut Self, *mut *mut Self) {
        // SAFETY: `this` is live (contract).
        unsafe { (&raw mut (*this).next, &raw mut (*this).prev) }
    }
}
// SAFETY: as above.
unsafe impl Linked for Cleanup {
    unsafe fn links(this: *mut Self) -> (*mut *mut Self, *mut *mut Self) {
        // SAFETY: `this` is live (contract).
        unsafe { (&raw mut (*this).next, &raw mut (*this).prev) }
    }
}
// SAFETY: as above.
unsafe impl Linked for ArenaCore {
    unsafe fn links(this: *mut Self) -> (*mut *mut Self, *mut *mut Self) {
        // SAFETY: `this` is live (contract).
        unsafe { (&raw mut (*this).sib_next, &raw mut (*this).sib_prev) }
    }
}

const BLOCK_HDR: usize = core::mem::size_of::<BlockHeader>().next_multiple_of(ARENA_ALIGN);
const CORE_SIZE: usize = core::mem::size_of::<ArenaCore>().next_multiple_of(ARENA_ALIGN);

fn debug_mode() -> bool {
    crate::api::process::ensure_init();
    crate::core::config::arena_debug()
}

/// Create an arena whose blocks are `block_size` bytes (0: default).
/// Null when out of memory.
pub(crate) fn create(block_size: usize) -> *mut ArenaCore {
    let block_size = if block_size == 0 {
        DEFAULT_BLOCK
    } else {
        block_size
    };
    let block_size = block_size
        .clamp(MIN_BLOCK, MAX_BLOCK)
        .next_multiple_of(ARENA_ALIGN);
    // SAFETY: plain allocation from the global pool.
    let mem = unsafe { pool::malloc(block_size) };
    if mem.is_null() {
        return null_mut();
    }
    let b = mem.cast::<BlockHeader>();
    let a = (mem as usize + BLOCK_HDR) as *mut ArenaCore;
    // SAFETY: `mem` holds block_size >= MIN_BLOCK bytes, enough for both
    // headers, and nobody else uses it.
    unsafe {
        b.write(BlockHeader {
            next: null_mut(),
            cur: a as usize + CORE_SIZE,
            end: mem as usize + block_size,
            failed: 0,
        });
        a.write(ArenaCore {
            magic: ARENA_MAGIC,
            self_ptr: a as usize,
            first: b,
            current: b,
            last: b,
            block_size,
            small_max: (block_size - BLOCK_HDR) / 4,
            large: List::EMPTY,
            cleanups: List::EMPTY,
            parent: null_mut(),
            children: List::EMPTY,
            sib_prev: null_mut(),
            sib_next: null_mut(),
            debug: debug_mode(),
            stats: ArenaStats {
                bytes_held: block_size,
                blocks: 1,
                ..ArenaStats::default()
            },
        });
    }
    // The new arena is live: the thread's first call on it needs no
    // lookup (it would make the same arena the hint).
    tls::set_arena_hint(a as usize, GENERATION.0.load(Ordering::Acquire));
    a
}

/// Create a child of `parent`, destroyed with it (or before it).
///
/// # Safety
/// `parent` must be a live arena used by the calling thread only.
pub(crate) unsafe fn create_child(parent: *mut ArenaCore, block_size: usize) -> *mut ArenaCore {
    let c = create(block_size);
    if c.is_null() {
        return c;
    }
    // SAFETY: both arenas are live and ours; the child is on no list.
    unsafe {
        (*c).parent = parent;
        (*parent).children.push_front(c);
        (*parent).stats.children += 1;
    }
    c
}

/// Destroyed arenas so far, plus 1: the generation an arena hint
/// (`heap::tls::arena_hint`) was validated in. A hint names an arena that
/// was live when the count was what the hint says; while the count has
/// not moved, no arena was destroyed since, so it is live still.
static GENERATION: Generation = Generation(AtomicU64::new(1));

/// [`GENERATION`]'s word on cache lines of its own: every arena call
/// reads it, and a neighbour that other threads write (the span cache's
/// lock sat next to it) would make those reads miss.
#[repr(align(128))]
struct Generation(AtomicU64);

/// Is `a` a live arena? The arena the calling thread validated last is
/// answered from its hint (two thread-local words and one shared word,
/// unchanged unless an arena is destroyed); any other pointer is
/// validated by [`is_arena`], and becomes the hint when it is one.
#[inline(always)]
pub(crate) fn is_live(a: usize) -> bool {
    let g = GENERATION.0.load(Ordering::Acquire);
    if tls::arena_hint() == (a, g) {
        return true;
    }
    validate(a, g)
}

/// [`is_live`] without a matching hint: [`is_arena`], and on success `a`
/// becomes the thread's hint for generation `g` (read before the check).
#[inline(never)]
fn validate(a: usize, g: u64) -> bool {
    let ok = is_arena(a);
    if ok {
        tls::set_arena_hint(a, g);
    }
    ok
}

/// Is `a` a live arena? `create` puts its core [`BLOCK_HDR`] bytes into a
/// pool block, so `a` must lie there in a block that holds a whole core
/// (a carved slab block, or a large block whose requested bytes do), and
/// the core must carry the magic
/// and point to itself (a copy of a core elsewhere does not). Nothing
/// else is read: NULL, garbage, destroyed arenas, pointers into other
/// blocks and the secure build's guard pages (between a slab's header
/// and its blocks, at its end, around large blocks) are answered, not
/// crashed on. Cheap: one page-map lookup, no division (it runs on an
/// arena call whose arena is not the thread's hint, see [`is_live`]).
pub(crate) fn is_arena(a: usize) -> bool {
    use crate::core::lookup::Span;
    if a % ARENA_ALIGN != 0 {
        return false;
    }
    let whole = match crate::core::lookup::span_of(a) {
        Some(s @ Span::Slab(_)) => s
            .block_bounds(a)
            .is_some_and(|(start, end)| start + BLOCK_HDR == a && a + CORE_SIZE <= end),
        // SAFETY: a live large header (`span_of`).
        Some(Span::Large(lb)) => unsafe {
            (*lb).user + BLOCK_HDR == a && (*lb).requested >= BLOCK_HDR + CORE_SIZE
        },
        _ => false,
    };
    // SAFETY: the core's bytes lie inside a carved block of ours (slab
    // blocks and a large block's requested bytes are mapped and
    // accessible in both builds).
    whole
        && unsafe {
            let core = a as *const ArenaCore;
            (*core).magic == ARENA_MAGIC && (*core).self_ptr == a
        }
}

/// Allocate `size` bytes aligned to `align` (a power of two). Null when
/// out of memory or on overflow.
///
/// # Safety
/// `a` must be a live arena used by the calling thread only.
#[inline(always)]
pub(crate) unsafe fn alloc(a: *mut ArenaCore, size: usize, align: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
    // SAFETY: contract: a live arena, its current block live and ours.
    unsafe {
        let ar = &mut *a;
        // The common case inline: a small request that fits the current
        // block.
        if !ar.debug && size <= ar.small_max && align <= ar.small_max {
            if let Some(p) = bump(ar, ar.current, size, align) {
                return p;
            }
        }
        alloc_slow(a, size, align)
    }
}

/// [`alloc`]'s other cases: large and debug allocations, a full current
/// block.
///
/// # Safety
/// As [`alloc`].
#[inline(never)]
unsafe fn alloc_slow(a: *mut ArenaCore, size: usize, align: usize) -> *mut u8 {
    // SAFETY: contract.
    let ar = unsafe { &mut *a };
    if ar.debug || size > ar.small_max || align > ar.small_max {
        // SAFETY: forwarded contract.
        return unsafe { alloc_large(a, size, align) };
    }
    // SAFETY: the arena's blocks are live and ours.
    unsafe {
        let mut b = ar.current;
        while !b.is_null() {
            if let Some(p) = bump(ar, b, size, align) {
                return p;
            }
            (*b).failed += 1;
            if (*b).failed > MAX_FAILED && b == ar.current && !(*b).next.is_null() {
                ar.current = (*b).next;
            }
            b = (*b).next;
        }
        // A new block, appended.
        let mem = pool::malloc(ar.block_size);
        if mem.is_null() {
            return null_mut();
        }
        let nb = mem.cast::<BlockHeader>();
        nb.write(BlockHeader {
            next: null_mut(),
            cur: mem as usize + BLOCK_HDR,
            end: mem as usize + ar.block_size,
            failed: 0,
        });
        (*ar.last).next = nb;
        ar.last = nb;
        ar.stats.blocks += 1;
        ar.stats.bytes_held += ar.block_size;
        bump(ar, nb, size, align).unwrap_or(null_mut())
    }
}

/// Bump `size` bytes aligned to `align` from block `b` of `ar`, if they
/// fit, and count them.
///
/// # Safety
/// `b` is a live block of `ar`, an arena the calling thread uses alone.
#[inline(always)]
unsafe fn bump(
    ar: &mut ArenaCore,
    b: *mut BlockHeader,
    size: usize,
    align: usize,
) -> Option<*mut u8> {
    // SAFETY: contract.
    let p = unsafe {
        let p = (*b).cur.checked_add(align - 1)? & !(align - 1);
        let end = p.checked_add(size)?;
        if end > (*b).end {
            return None;
        }
        (*b).cur = end;
        p
    };
    ar.stats.bytes_requested += size;
    Some(p as *mut u8)
}

/// A large allocation: its own global-pool block with a header right
/// before the user pointer, first on the arena's large list.
unsafe fn alloc_large(a: *mut ArenaCore, size: usize, align: usize) -> *mut u8 {
    let align = align.max(ARENA_ALIGN);
    // Header space rounded up to the alignment, so the user pointer is
    // aligned when the base is.
    let hoff = LARGE_HDR.next_multiple_of(align);
    let total = match hoff.checked_add(size) {
        Some(t) => t,
        None => {
            crate::os::errno::set(libc::ENOMEM);
            return null_mut();
        }
    };
    // SAFETY: global-pool allocation.
    let base = unsafe { pool::alloc_aligned(align, total) };
    if base.is_null() {
        return base;
    }
    let user = base as usize + hoff;
    let h = (user - LARGE_HDR) as *mut LargeHeader;
    // SAFETY: `h` lies inside the fresh block; the arena is live.
    unsafe {
        let ar = &mut *a;
        h.write(LargeHeader {
            magic: LARGE_MAGIC,
            arena: a,
            prev: null_mut(),
            next: null_mut(),
            base,
            size,
        });
        ar.large.push_front(h);
        ar.stats.large_blocks += 1;
        ar.stats.bytes_held += pool::usable_size(base);
        ar.stats.bytes_requested += size;
    }
    user as *mut u8
}

/// The large header of `p` if `p` is a live large allocation of `a`.
fn large_header_of(a: *mut ArenaCore, p: *mut u8) -> Option<*mut LargeHeader> {
    let p = p as usize;
    // The header is readable only if it lies in the same pool block as p.
    let (start, _) = crate::core::lookup::block_bounds(p)?;
    if p < start + LARGE_HDR || p % ARENA_ALIGN != 0 {
        return None;
    }
    let h = (p - LARGE_HDR) as *mut LargeHeader;
    // SAFETY: `h` lies inside a live block of the pool (checked above).
    let ok = unsafe { (*h).magic == LARGE_MAGIC && (*h).arena == a };
    ok.then_some(h)
}

/// Free a large allocation now: 0, or -1 when `p` is not a live large
/// allocation of `a` (small bump allocations are declined: they go at
/// reset or destroy).
///
/// # Safety
/// `a` must be a live arena used by the calling thread only.
pub(crate) unsafe fn free(a: *mut ArenaCore, p: *mut u8) -> i32 {
    let h = match large_header_of(a, p) {
        Some(h) => h,
        None => return -1,
    };
    // SAFETY: a live large allocation of `a`.
    unsafe { release_large(a, h) };
    0
}

unsafe fn release_large(a: *mut ArenaCore, h: *mut LargeHeader) {
    // SAFETY: `h` is on `a`'s large list (caller).
    unsafe {
        let ar = &mut *a;
        ar.large.remove(h);
        ar.stats.large_blocks -= 1;
        ar.stats.bytes_requested -= (*h).size;
        let base = (*h).base;
        ar.stats.bytes_held -= pool::usable_size(base);
        (*h).magic = 0;
        pool::free(base);
    }
}

/// Register `handler(data)` to run at reset or destroy (last added runs
/// first). Returns a handle for [`cleanup_remove`], or null when out of
/// memory.
///
/// # Safety
/// `a` must be a live arena used by the calling thread only.
pub(crate) unsafe fn cleanup_add(
    a: *mut ArenaCore,
    handler: Option<unsafe extern "C" fn(*mut c_void)>,
    data: *mut c_void,
) -> *mut Cleanup {
    // SAFETY: forwarded contract.
    let c = unsafe { alloc(a, core::mem::size_of::<Cleanup>(), ARENA_ALIGN) }.cast::<Cleanup>();
    if c.is_null() {
        return c;
    }
    // SAFETY: fresh arena memory; the arena is live.
    unsafe {
        let ar = &mut *a;
        c.write(Cleanup {
            magic: CLEANUP_MAGIC,
            arena: a,
            handler,
            data,
            prev: null_mut(),
            next: null_mut(),
        });
        ar.cleanups.push_front(c);
        ar.stats.cleanups += 1;
    }
    c
}

/// Unregister a cleanup without running it: 0, or -1 when `c` is not a
/// registered cleanup of `a`.
///
/// # Safety
/// `a` must be a live arena used by the calling thread only; `c` NULL or a
/// handle from `cleanup_add` (of any arena).
pub(crate) unsafe fn cleanup_remove(a: *mut ArenaCore, c: *mut Cleanup) -> i32 {
    // SAFETY: handles live in arena memory that stays mapped while any
    // arena is alive; the magic and arena fields tell whether it is ours.
    unsafe {
        if c.is_null() || (*c).magic != CLEANUP_MAGIC || (*c).arena != a {
            return -1;
        }
        unlink_cleanup(a, c);
    }
    0
}

unsafe fn unlink_cleanup(a: *mut ArenaCore, c: *mut Cleanup) {
    // SAFETY: `c` is on `a`'s cleanup list (caller).
    unsafe {
        let ar = &mut *a;
        ar.cleanups.remove(c);
        (*c).magic = 0;
        ar.stats.cleanups -= 1;
    }
}

/// Run and remove every cleanup, last added first. A handler may add
/// more cleanups; they run too.
unsafe fn run_cleanups(a: *mut ArenaCore) {
    // SAFETY: the arena is live; each handler is the user's contract.
    unsafe {
        loop {
            let c = (*a).cleanups.first;
            if c.is_null() {
                break;
            }
            let (handler, data) = ((*c).handler, (*c).data);
            unlink_cleanup(a, c);
            if let Some(f) = handler {
                f(data);
            }
        }
    }
}

unsafe fn destroy_children(a: *mut ArenaCore) {
    // SAFETY: children are live arenas linked under `a`.
    unsafe {
        while !(*a).children.first.is_null() {
            destroy((*a).children.first);
        }
    }
}

unsafe fn free_all_large(a: *mut ArenaCore) {
    // SAFETY: the large list holds live allocations of `a`.
    unsafe {
        while !(*a).large.first.is_null() {
            release_large(a, (*a).large.first);
        }
    }
}

/// Destroy children, run and clear cleanups, free large allocations, free
/// every block but the first and rewind it.
///
/// # Safety
/// `a` must be a live arena used by the calling thread only; everything
/// allocated from it is dead afterwards.
pub(crate) unsafe fn reset(a: *mut ArenaCore) {
    // SAFETY: contract.
    unsafe {
        // A cleanup may create children or add cleanups, and a child's
        // destruction may run code that does too: repeat until both are
        // gone.
        while !(*a).children.first.is_null() || !(*a).cleanups.first.is_null() {
            destroy_children(a);
            run_cleanups(a);
        }
        free_all_large(a);
        let ar = &mut *a;
        let mut b = (*ar.first).next;
        while !b.is_null() {
            let next = (*b).next;
            pool::free(b.cast());
            ar.stats.blocks -= 1;
            ar.stats.bytes_held -= ar.block_size;
            b = next;
        }
        let first = ar.first;
        (*first).next = null_mut();
        (*first).cur = a as usize + CORE_SIZE;
        (*first).failed = 0;
        ar.current = first;
        ar.last = first;
        ar.stats.bytes_requested = 0;
    }
}

/// Destroy: children first, then cleanups (last added first), then the
/// memory; the arena leaves its parent.
///
/// # Safety
/// `a` must be a live arena used by the calling thread only; it and
/// everything allocated from it are dead afterwards.
pub(crate) unsafe fn destroy(a: *mut ArenaCore) {
    // SAFETY: contract.
    unsafe {
        reset(a);
        let ar = &mut *a;
        let parent = ar.parent;
        if !parent.is_null() {
            (*parent).children.remove(a);
            (*parent).stats.children -= 1;
        }
        ar.magic = 0;
        ar.self_ptr = 0;
        // Every thread's hint is stale from now on (this one's too).
        GENERATION.0.fetch_add(1, Ordering::AcqRel);
        pool::free(ar.first.cast());
    }
}

/// The arena's counters.
///
/// # Safety
/// `a` must be a live arena.
pub(crate) unsafe fn stats(a: *const ArenaCore) -> ArenaStats {
    // SAFETY: contract.
    unsafe { (*a).stats }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_allocations_are_bumped_and_aligned() {
        let a = create(4096);
        // SAFETY: a live arena of this thread.
        unsafe {
            let p = alloc(a, 10, 16);
            let q = alloc(a, 10, 16);
            assert_eq!(p as usize % 16, 0);
            assert_eq!(q as usize - p as usize, 16, "bumped from the same block");
            let s = alloc(a, 3, 1);
            let t = alloc(a, 3, 1);
            assert_eq!(t as usize - s as usize, 3, "nalloc packs bytes");
            assert_eq!(stats(a).blocks, 1);
            destroy(a);
        }
    }

    #[test]
    fn large_allocations_are_freed_in_constant_time_and_foreign_ones_declined() {
        let a = create(4096);
        let b = create(4096);
        // SAFETY: live arenas of this thread.
        unsafe {
            let big = alloc(a, 10_000, 16);
            assert_eq!(stats(a).large_blocks, 1);
            assert_eq!(free(b, big), -1, "another arena's block is declined");
            let small = alloc(a, 16, 16);
            assert_eq!(free(a, small), -1, "bump memory is declined");
            let x = 5u64;
            assert_eq!(free(a, &x as *const u64 as *mut u8), -1);
            assert_eq!(free(a, null_mut()), -1);
            assert_eq!(free(a, big), 0);
            assert_eq!(free(a, big), -1, "second free is declined");
            assert_eq!(stats(a).large_blocks, 0);
            destroy(a);
            destroy(b);
        }
    }

    #[test]
    fn blocks_are_added_and_reset_keeps_one() {
        let a = create(1024);
        // SAFETY: a live arena of this thread.
        unsafe {
            for _ in 0..100 {
                assert!(!alloc(a, 200, 16).is_null());
            }
            assert!(stats(a).blocks > 10);
            reset(a);
            let s = stats(a);
            assert_eq!((s.blocks, s.bytes_requested, s.large_blocks), (1, 0, 0));
            destroy(a);
        }
    }
}
