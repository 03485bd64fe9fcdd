//! Arenas: one pool per connection (nginx's `ngx_pool_t`, done better).
//!
//! Owns [`ArenaCore`]: bump allocation from blocks, large allocations in
//! an O(1)-removable list, LIFO cleanup handlers, children, reset and
//! destroy. Blocks and large allocations come from, and go back to, the
//! global pool (`libc_api`), so leak reports and statistics see them.
//! Calls `libc_api` only.
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

use crate::libc_api;
use core::ffi::c_void;
use core::ptr::null_mut;

/// Default block size when 0 is given.
pub const DEFAULT_BLOCK: usize = 16 * 1024;
/// Smallest block size accepted (smaller requests are rounded up).
pub const MIN_BLOCK: usize = 512;
/// Largest block size accepted.
pub const MAX_BLOCK: usize = 64 << 20;
/// Bump alignment of `alloc`.
pub const ARENA_ALIGN: usize = 16;
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

/// Counters of an arena (and the C `mmpool_arena_stats_t`).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct ArenaStats {
    /// Bytes requested by the live allocations (since the last reset).
    pub bytes_requested: usize,
    /// Bytes held from the global pool: blocks plus large allocations.
    pub bytes_held: usize,
    /// Blocks held (the first included).
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
    large: *mut LargeHeader,
    cleanups: *mut Cleanup,
    parent: *mut ArenaCore,
    child_first: *mut ArenaCore,
    sib_prev: *mut ArenaCore,
    sib_next: *mut ArenaCore,
    debug: bool,
    stats: ArenaStats,
}

const BLOCK_HDR: usize = core::mem::size_of::<BlockHeader>().next_multiple_of(ARENA_ALIGN);
const CORE_SIZE: usize = core::mem::size_of::<ArenaCore>().next_multiple_of(ARENA_ALIGN);

fn debug_mode() -> bool {
    crate::runtime::options().arena_debug
}

/// Create an arena whose blocks are `block_size` bytes (0: default).
/// Null when out of memory.
pub fn create(block_size: usize) -> *mut ArenaCore {
    let block_size = if block_size == 0 {
        DEFAULT_BLOCK
    } else {
        block_size
    };
    let block_size = block_size
        .clamp(MIN_BLOCK, MAX_BLOCK)
        .next_multiple_of(ARENA_ALIGN);
    // SAFETY: plain allocation from the global pool.
    let mem = unsafe { libc_api::malloc(block_size) };
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
            large: null_mut(),
            cleanups: null_mut(),
            parent: null_mut(),
            child_first: null_mut(),
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
    a
}

/// Create a child of `parent`, destroyed with it (or before it).
///
/// # Safety
/// `parent` must be a live arena used by the calling thread only.
pub unsafe fn create_child(parent: *mut ArenaCore, block_size: usize) -> *mut ArenaCore {
    let c = create(block_size);
    if c.is_null() {
        return c;
    }
    // SAFETY: both arenas are live and ours.
    unsafe {
        let p = &mut *parent;
        (*c).parent = parent;
        (*c).sib_next = p.child_first;
        if !p.child_first.is_null() {
            (*p.child_first).sib_prev = c;
        }
        p.child_first = c;
        p.stats.children += 1;
    }
    c
}

/// Is `a` a live arena? Its core must lie inside a span of the pool
/// (never read outside one), carry the magic, and point to itself (a copy
/// of a core elsewhere does not). NULL, garbage, destroyed arenas and
/// pointers into other blocks are answered, not crashed on. Cheap: one
/// page-map lookup, no division (it runs on every arena call).
pub fn is_arena(a: usize) -> bool {
    if a % ARENA_ALIGN != 0 {
        return false;
    }
    match libc_api::span_end(a) {
        Some(end) if a.checked_add(CORE_SIZE).is_some_and(|e| e <= end) => {
            // SAFETY: the core's bytes lie inside a mapped span of ours.
            unsafe {
                let core = a as *const ArenaCore;
                (*core).magic == ARENA_MAGIC && (*core).self_ptr == a
            }
        }
        _ => false,
    }
}

/// Allocate `size` bytes aligned to `align` (a power of two). Null when
/// out of memory or on overflow.
///
/// # Safety
/// `a` must be a live arena used by the calling thread only.
pub unsafe fn alloc(a: *mut ArenaCore, size: usize, align: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
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
            if let Some(p) = bump(b, size, align) {
                ar.stats.bytes_requested += size;
                return p;
            }
            (*b).failed += 1;
            if (*b).failed > MAX_FAILED && b == ar.current && !(*b).next.is_null() {
                ar.current = (*b).next;
            }
            b = (*b).next;
        }
        // A new block, appended.
        let mem = libc_api::malloc(ar.block_size);
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
        let p = bump(nb, size, align).unwrap_or(null_mut());
        if !p.is_null() {
            ar.stats.bytes_requested += size;
        }
        p
    }
}

/// Bump `size` bytes aligned to `align` from block `b`, if they fit.
unsafe fn bump(b: *mut BlockHeader, size: usize, align: usize) -> Option<*mut u8> {
    // SAFETY: `b` is a live block of the caller's arena.
    unsafe {
        let p = (*b).cur.checked_add(align - 1)? & !(align - 1);
        let end = p.checked_add(size)?;
        if end > (*b).end {
            return None;
        }
        (*b).cur = end;
        Some(p as *mut u8)
    }
}

/// A large allocation: its own global-pool block with a header right
/// before the user pointer, linked first in the arena's large list.
unsafe fn alloc_large(a: *mut ArenaCore, size: usize, align: usize) -> *mut u8 {
    let align = align.max(ARENA_ALIGN);
    // Header space rounded up to the alignment, so the user pointer is
    // aligned when the base is.
    let hoff = LARGE_HDR.next_multiple_of(align);
    let total = match hoff.checked_add(size) {
        Some(t) => t,
        None => {
            crate::diag::set_errno(libc::ENOMEM);
            return null_mut();
        }
    };
    // SAFETY: global-pool allocation.
    let base = unsafe { libc_api::alloc_aligned(align, total) };
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
            next: ar.large,
            base,
            size,
        });
        if !ar.large.is_null() {
            (*ar.large).prev = h;
        }
        ar.large = h;
        ar.stats.large_blocks += 1;
        ar.stats.bytes_held += libc_api::usable_size(base);
        ar.stats.bytes_requested += size;
    }
    user as *mut u8
}

/// The large header of `p` if `p` is a live large allocation of `a`.
fn large_header_of(a: *mut ArenaCore, p: *mut u8) -> Option<*mut LargeHeader> {
    let p = p as usize;
    // The header is readable only if it lies in the same pool block as p.
    let (start, _) = libc_api::block_bounds(p)?;
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
pub unsafe fn free(a: *mut ArenaCore, p: *mut u8) -> i32 {
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
        if (*h).prev.is_null() {
            ar.large = (*h).next;
        } else {
            (*(*h).prev).next = (*h).next;
        }
        if !(*h).next.is_null() {
            (*(*h).next).prev = (*h).prev;
        }
        ar.stats.large_blocks -= 1;
        ar.stats.bytes_requested -= (*h).size;
        let base = (*h).base;
        ar.stats.bytes_held -= libc_api::usable_size(base);
        (*h).magic = 0;
        libc_api::free(base);
    }
}

/// Register `handler(data)` to run at reset or destroy (last added runs
/// first). Returns a handle for [`cleanup_remove`], or null when out of
/// memory.
///
/// # Safety
/// `a` must be a live arena used by the calling thread only.
pub unsafe fn cleanup_add(
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
            next: ar.cleanups,
        });
        if !ar.cleanups.is_null() {
            (*ar.cleanups).prev = c;
        }
        ar.cleanups = c;
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
pub unsafe fn cleanup_remove(a: *mut ArenaCore, c: *mut Cleanup) -> i32 {
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
        if (*c).prev.is_null() {
            ar.cleanups = (*c).next;
        } else {
            (*(*c).prev).next = (*c).next;
        }
        if !(*c).next.is_null() {
            (*(*c).next).prev = (*c).prev;
        }
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
            let c = (*a).cleanups;
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
        while !(*a).child_first.is_null() {
            destroy((*a).child_first);
        }
    }
}

unsafe fn free_all_large(a: *mut ArenaCore) {
    // SAFETY: the large list holds live allocations of `a`.
    unsafe {
        while !(*a).large.is_null() {
            release_large(a, (*a).large);
        }
    }
}

/// Destroy children, run and clear cleanups, free large allocations, free
/// every block but the first and rewind it.
///
/// # Safety
/// `a` must be a live arena used by the calling thread only; everything
/// allocated from it is dead afterwards.
pub unsafe fn reset(a: *mut ArenaCore) {
    // SAFETY: contract.
    unsafe {
        // A cleanup may create children or add cleanups, and a child's
        // destruction may run code that does too: repeat until both are
        // gone.
        while !(*a).child_first.is_null() || !(*a).cleanups.is_null() {
            destroy_children(a);
            run_cleanups(a);
        }
        free_all_large(a);
        let ar = &mut *a;
        let mut b = (*ar.first).next;
        while !b.is_null() {
            let next = (*b).next;
            libc_api::free(b.cast());
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
pub unsafe fn destroy(a: *mut ArenaCore) {
    // SAFETY: contract.
    unsafe {
        reset(a);
        let ar = &mut *a;
        let parent = ar.parent;
        if !parent.is_null() {
            if ar.sib_prev.is_null() {
                (*parent).child_first = ar.sib_next;
            } else {
                (*ar.sib_prev).sib_next = ar.sib_next;
            }
            if !ar.sib_next.is_null() {
                (*ar.sib_next).sib_prev = ar.sib_prev;
            }
            (*parent).stats.children -= 1;
        }
        ar.magic = 0;
        ar.self_ptr = 0;
        libc_api::free(ar.first.cast());
    }
}

/// The arena's counters.
///
/// # Safety
/// `a` must be a live arena.
pub unsafe fn stats(a: *const ArenaCore) -> ArenaStats {
    // SAFETY: contract.
    unsafe { (*a).stats }
}

// ---------------------------------------------------------------------------
// The safe Rust API

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
