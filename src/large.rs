//! Large blocks: one mapping per allocation above `SMALL_MAX`.
//!
//! Owns [`LargeBlock`] headers and the bounded cache of recently freed
//! mappings. A large block's mapping starts with its header (tag `LARGE`)
//! and is a whole number of granules, granule-aligned, so it shares no
//! granule with anything else; the page map entries of all its granules
//! point at the header, so any address inside the block finds it. Freed mappings go back to the OS
//! (the seed's rule) after at most [`CACHE_DELAY_MS`] in a small cache, so
//! a loop of malloc/free of 1 MiB does not map every time. `realloc` moves
//! pages with `mremap` instead of copying. Calls `os`, `pagemap`, `span`
//! (for the clock), `sync`.

use crate::os::{align_up, PageSource, OS};
use crate::pagemap::{SpanHead, PAGEMAP, TAG_FREE, TAG_LARGE};
use crate::size_class::{GRANULE, GRANULE_SHIFT, MIN_ALIGN};
use crate::span::now_ms;
use crate::sync::Lock;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Bytes before the user pointer of an ordinarily aligned large block.
pub const LARGE_HEADER: usize = 64;
/// Mappings cached at most.
const CACHE_SLOTS: usize = 16;
/// Largest mapping the cache keeps.
const CACHE_MAX_BLOCK: usize = 32 << 20;
/// Bytes the cache holds at most.
const CACHE_MAX_BYTES: usize = 64 << 20;
/// A cached mapping older than this is unmapped.
pub const CACHE_DELAY_MS: u64 = 1000;

/// The header at the head of a large block's mapping.
#[repr(C)]
pub struct LargeBlock {
    /// Tag `LARGE` (`FREE` while cached), length in granules, owner 0.
    pub head: SpanHead,
    /// Bytes mapped.
    pub map_size: usize,
    /// The pointer handed to the user.
    pub user: usize,
}

const _: () = assert!(core::mem::size_of::<LargeBlock>() <= LARGE_HEADER);
const _: () = assert!(LARGE_HEADER % MIN_ALIGN == 0);

#[derive(Clone, Copy)]
struct Slot {
    base: usize,
    map_size: usize,
    freed_ms: u64,
}

struct Cache {
    slots: [Slot; CACHE_SLOTS],
    len: usize,
    bytes: usize,
}

static CACHE: Lock<Cache> = Lock::new(Cache {
    slots: [Slot {
        base: 0,
        map_size: 0,
        freed_ms: 0,
    }; CACHE_SLOTS],
    len: 0,
    bytes: 0,
});

/// Live large blocks and their mapped bytes, cache hits, maps.
pub static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);
/// Bytes mapped for live large blocks.
pub static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Mappings made for large blocks.
pub static MAPS: AtomicUsize = AtomicUsize::new(0);
/// Large allocations served from the cache.
pub static CACHE_HITS: AtomicUsize = AtomicUsize::new(0);

/// Where the user pointer sits in the mapping. Up to a granule, at the
/// alignment (the mapping is granule-aligned); beyond, one granule in, and
/// the mapping is placed so that this point is aligned: the header stays
/// in the granule before the block, and no address space is spent on the
/// alignment.
fn user_offset(align: usize) -> usize {
    if align <= LARGE_HEADER {
        LARGE_HEADER
    } else {
        align.min(GRANULE)
    }
}

/// Point the page map entries of a whole mapping at `head` (null: forget).
fn map_granules(base: usize, map_size: usize, head: *mut SpanHead) -> bool {
    PAGEMAP.set(base, map_size >> GRANULE_SHIFT, head, &OS)
}

/// Allocate a large block of `size` bytes aligned to `align` (a power of
/// two). Returns the pointer and whether its memory is known to be zero,
/// or null (errno untouched: the caller sets ENOMEM).
pub fn alloc(size: usize, align: usize) -> (*mut u8, bool) {
    let align = align.max(MIN_ALIGN);
    let offset = user_offset(align);
    let map_size = match offset
        .checked_add(size.max(1))
        .and_then(|n| align_up(n, GRANULE))
    {
        Some(n) if n <= isize::MAX as usize => n,
        _ => return (null_mut(), false),
    };
    let (base, zeroed) = match take_cached(map_size, align, offset) {
        Some(b) => {
            CACHE_HITS.fetch_add(1, Ordering::Relaxed);
            (b, false)
        }
        None => match if align <= GRANULE {
            OS.map(map_size, GRANULE)
        } else {
            OS.map_offset_aligned(map_size, align, offset)
        } {
            Some(p) => {
                MAPS.fetch_add(1, Ordering::Relaxed);
                (p.as_ptr() as usize, true)
            }
            None => return (null_mut(), false),
        },
    };
    let user = base + offset;
    let lb = base as *mut LargeBlock;
    // SAFETY: `base` starts a mapping of `map_size` bytes that is ours.
    unsafe {
        lb.write(LargeBlock {
            head: SpanHead {
                tag: TAG_LARGE,
                granules: (map_size >> GRANULE_SHIFT) as u32,
                owner: AtomicUsize::new(0),
            },
            map_size,
            user,
        });
    }
    if !map_granules(base, map_size, lb.cast()) {
        // SAFETY: the mapping is ours and unpublished.
        unsafe { OS.unmap(NonNull::new_unchecked(base as *mut u8), map_size) };
        return (null_mut(), false);
    }
    LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
    LIVE_BYTES.fetch_add(map_size, Ordering::Relaxed);
    (user as *mut u8, zeroed)
}

/// Free a large block.
///
/// # Safety
/// `head` must be `PAGEMAP.lookup(p)`, a header tagged `LARGE`.
pub unsafe fn free(p: *mut u8, head: *mut SpanHead) {
    let lb = head.cast::<LargeBlock>();
    // SAFETY: a LARGE-tagged header is a live LargeBlock.
    let (user, map_size) = unsafe { ((*lb).user, (*lb).map_size) };
    if user != p as usize {
        crate::diag::fatal("free(): invalid pointer (inside a large block)", p as usize);
    }
    LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    LIVE_BYTES.fetch_sub(map_size, Ordering::Relaxed);
    let base = lb as usize;
    if map_size <= CACHE_MAX_BLOCK {
        // SAFETY: the block is dead; a later free of `p` finds TAG_FREE.
        unsafe { (*lb).head.tag = TAG_FREE };
        let now = now_ms();
        let mut c = CACHE.lock();
        expire(&mut c, now);
        if c.len < CACHE_SLOTS && c.bytes + map_size <= CACHE_MAX_BYTES {
            let n = c.len;
            c.slots[n] = Slot {
                base,
                map_size,
                freed_ms: now,
            };
            c.len += 1;
            c.bytes += map_size;
            return;
        }
    }
    unmap_block(base, map_size);
}

/// User pointers of the large blocks most recently returned to the OS, so
/// that a second free of one is reported as a double free instead of
/// being handed to the next allocator (which would crash).
static RECENT: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];
static RECENT_NEXT: AtomicUsize = AtomicUsize::new(0);

/// Was `p` the user pointer of a large block we recently unmapped (and
/// is its address range still unused by us)?
pub fn recently_unmapped(p: usize) -> bool {
    p != 0 && PAGEMAP.lookup(p).is_null() && RECENT.iter().any(|r| r.load(Ordering::Relaxed) == p)
}

fn unmap_block(base: usize, map_size: usize) {
    // SAFETY: the header is still mapped.
    let user = unsafe { (*(base as *const LargeBlock)).user };
    let i = RECENT_NEXT.fetch_add(1, Ordering::Relaxed) % RECENT.len();
    RECENT[i].store(user, Ordering::Relaxed);
    // Forget the granules before the address space can be reused.
    map_granules(base, map_size, null_mut());
    // SAFETY: the mapping is ours and dead.
    unsafe { OS.unmap(NonNull::new_unchecked(base as *mut u8), map_size) };
}

/// Drop cached mappings older than the delay.
fn expire(c: &mut Cache, now: u64) {
    let mut i = 0;
    while i < c.len {
        if now.wrapping_sub(c.slots[i].freed_ms) >= CACHE_DELAY_MS {
            let s = c.slots[i];
            c.len -= 1;
            c.slots[i] = c.slots[c.len];
            c.bytes -= s.map_size;
            unmap_block(s.base, s.map_size);
        } else {
            i += 1;
        }
    }
}

/// A cached mapping of at least `map_size` bytes (and at most 1.5 times)
/// whose point `offset` bytes in is aligned to `align`, taken out of the
/// cache (surplus tail unmapped).
fn take_cached(map_size: usize, align: usize, offset: usize) -> Option<usize> {
    let mut c = CACHE.lock();
    if c.len == 0 {
        return None;
    }
    let mut best: Option<usize> = None;
    for i in 0..c.len {
        let s = &c.slots[i];
        if s.map_size >= map_size
            && s.map_size - map_size <= map_size / 2
            && (s.base + offset) % align == 0
            && best.is_none_or(|b| c.slots[b].map_size > s.map_size)
        {
            best = Some(i);
        }
    }
    let i = best?;
    let s = c.slots[i];
    c.len -= 1;
    c.slots[i] = c.slots[c.len];
    c.bytes -= s.map_size;
    drop(c);
    if s.map_size > map_size {
        // Give the surplus tail back so the block's size is exact.
        map_granules(s.base + map_size, s.map_size - map_size, null_mut());
        // SAFETY: the tail lies inside the cached mapping, which is ours.
        unsafe {
            OS.unmap(
                NonNull::new_unchecked((s.base + map_size) as *mut u8),
                s.map_size - map_size,
            )
        };
    }
    Some(s.base)
}

/// Unmap cached mappings past their delay (called from slow paths).
pub fn tick() {
    if let Some(mut c) = CACHE.try_lock() {
        if c.len > 0 {
            expire(&mut c, now_ms());
        }
    }
}

/// Unmap every cached mapping (`malloc_trim`). Returns bytes released.
pub fn trim() -> usize {
    let mut c = CACHE.lock();
    let bytes = c.bytes;
    expire(&mut c, u64::MAX / 2);
    while c.len > 0 {
        c.len -= 1;
        let s = c.slots[c.len];
        unmap_block(s.base, s.map_size);
    }
    c.bytes = 0;
    bytes
}

/// Bytes usable at `p` in the large block `head`.
///
/// # Safety
/// `head` must be the live LARGE header of `p`'s block.
pub unsafe fn usable_size(p: usize, head: *mut SpanHead) -> usize {
    let lb = head.cast::<LargeBlock>();
    // SAFETY: contract.
    unsafe { lb as usize + (*lb).map_size - p }
}

/// Resize a large block in place or by moving its pages. `None`: the
/// caller must allocate, copy and free (aligned blocks, or no memory).
///
/// # Safety
/// `head` must be the live LARGE header of `p`, and `new_size` larger than
/// the small limit.
pub unsafe fn realloc(p: *mut u8, head: *mut SpanHead, new_size: usize) -> Option<*mut u8> {
    let lb = head.cast::<LargeBlock>();
    let base = lb as usize;
    // SAFETY: contract.
    let (user, old_map) = unsafe { ((*lb).user, (*lb).map_size) };
    if user != p as usize {
        crate::diag::fatal(
            "realloc(): invalid pointer (inside a large block)",
            p as usize,
        );
    }
    if user - base != LARGE_HEADER {
        return None;
    }
    let need = LARGE_HEADER
        .checked_add(new_size)
        .and_then(|n| align_up(n, GRANULE))?;
    if need > isize::MAX as usize {
        return None;
    }
    if need <= old_map && need >= old_map / 2 {
        return Some(p);
    }
    // Forget the old granules first: once mremap moves the pages, the old
    // address range may be handed to anybody.
    map_granules(base, old_map, null_mut());
    // SAFETY: the mapping is ours; on success the old range is dead.
    let moved = unsafe {
        OS.remap(
            NonNull::new_unchecked(base as *mut u8),
            old_map,
            need,
            GRANULE,
        )
    };
    let new_base = match moved {
        Some(b) => b.as_ptr() as usize,
        None => {
            map_granules(base, old_map, head);
            return None;
        }
    };
    let nlb = new_base as *mut LargeBlock;
    // SAFETY: the header moved with the pages.
    unsafe {
        (*nlb).map_size = need;
        (*nlb).user = new_base + LARGE_HEADER;
        (*nlb).head.granules = (need >> GRANULE_SHIFT) as u32;
    }
    if !map_granules(new_base, need, nlb.cast()) {
        crate::diag::fatal("realloc(): out of memory for the page map at", new_base);
    }
    LIVE_BYTES.fetch_add(need, Ordering::Relaxed);
    LIVE_BYTES.fetch_sub(old_map, Ordering::Relaxed);
    Some((new_base + LARGE_HEADER) as *mut u8)
}

/// The cache's lock, for the fork handlers.
pub(crate) fn lock_for_fork() -> &'static Lock<impl Sized> {
    &CACHE
}
