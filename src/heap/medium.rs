//! Medium blocks (the classes above `DIRECT_MAX`, 1.25-64 KiB): per-CPU
//! heaps under a lock, and a small per-thread cache in front of them.
//!
//! Why per CPU: a thread heap keeps, per class, the pages of its highest
//! demand ever, so `threads x classes` high-water marks add up. For small
//! blocks that is a page or two per class and buys a lock-free fast path;
//! for blocks of 1.25-64 KiB it is several pages per class per thread,
//! while these requests are rare and each one already costs its caller
//! far more than a lock. Sharing them per CPU turns the sum of per-thread
//! peaks into a per-CPU peak, as jemalloc's arenas and tcmalloc's per-CPU
//! caches do. The classes above 16 KiB go further: one shard serves them
//! for every CPU ([`ONE_SHARD_FROM`]).
//!
//! A class takes fresh pages last ([`alloc`]): before it carves a block
//! or takes a new slab it uses the free blocks of all its slabs, then
//! borrows a free block of a bigger class (up to half as big again, four
//! times for blocks of 8 KiB and more) from that class's current slab
//! ([`borrow`]), then does the same in another shard whose lock is free
//! ([`take_from_other_shard`]): the classes and the shards share their
//! high-water marks a little, as glibc's free chunks are shared by every
//! size.
//!
//! Invariants:
//! - a shard's heap is touched only under its lock; it is never parked,
//!   abandoned or given up, and made (empty, owner word = its address)
//!   at its first allocation;
//! - every slab it owns has `owner & !OWNER_FLAGS ==` the shard heap's
//!   address, so a free by any thread misses the thread fast path and is
//!   sent here, never to a remote queue;
//! - a block in a thread's medium cache is a live block of a shard slab
//!   that the thread freed (it carries the free mark); the cache's
//!   counters are those of `heap::types`;
//! - a thread holding a shard's lock takes another shard's lock only with
//!   `try_lock` (never waits for it), and may take the span cache's lock;
//!   no thread holding the span cache's lock waits for a shard's.
//!
//! Uses: `core::canary`, `core::config`, `core::lookup`, `core::pagemap`,
//! `core::size_class`, `core::slab`, `heap::slabs`, `heap::tls`,
//! `heap::types`, `os`, `os::errno`, `os::process`, `util::lock`.

use crate::core::pagemap::PAGEMAP;
use crate::core::size_class::{CLASS_SIZE, NUM_CLASSES, SHARED_FROM, SLAB_HEADER};
use crate::core::slab::{Block, Slab, OWNER_FLAGS};
use crate::heap::slabs;
use crate::heap::types::{is_thread_heap, Heap, MCACHE_BYTES, MCACHE_CLASSES, MCACHE_MAX};
use crate::util::lock::Lock;
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shards in the table; CPU `n` uses shard `n % MAX_SHARDS`.
pub(crate) const MAX_SHARDS: usize = 64;

/// One CPU's medium-class heap and the lock that guards it. The table is
/// all zeroes, so it sits in .bss (a table of ready-made heaps, full of
/// pointers to the empty slab, cost 200 KiB of relocations and data pages
/// resident in every process); a heap is made at its first use.
#[repr(C, align(64))]
struct Shard {
    lock: Lock<ShardState>,
    heap: UnsafeCell<MaybeUninit<Heap>>,
}

/// What the lock guards besides the heap.
struct ShardState {
    /// The heap was made.
    made: bool,
    /// Allocations since the last upkeep.
    allocs: u32,
    /// A fork child found the lock held by a thread that does not exist
    /// there: the heap may be half updated, so it is never used again
    /// (allocations go to another shard, frees of its blocks are
    /// dropped: a leak, never corruption).
    poisoned: bool,
}

/// Allocations from a shard between two upkeeps.
const UPKEEP_EVERY: u32 = 256;

#[repr(transparent)]
struct Shards([Shard; MAX_SHARDS]);

// SAFETY: each shard's heap is only touched while its lock is held.
unsafe impl Sync for Shards {}

static SHARDS: Shards = Shards(
    [const {
        Shard {
            lock: Lock::new(ShardState {
                made: false,
                allocs: 0,
                poisoned: false,
            }),
            heap: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }; MAX_SHARDS],
);

/// Shard heaps made so far.
static MADE: AtomicUsize = AtomicUsize::new(0);

/// How many shard heaps were made (one per CPU that allocated a medium
/// block).
pub(crate) fn made() -> usize {
    MADE.load(Ordering::Relaxed)
}

/// The classes from this one on (blocks above 16 KiB) come from the first
/// shard whatever the CPU: each class keeps the pages of its high-water
/// mark in every shard it is used in, and a block this big is five to
/// sixteen pages, so these classes in each CPU's shard would hold those
/// pages once per CPU (the arena bench's 8-64 KiB buffers on 2 CPUs
/// peaked higher with a shard per CPU, and lower with one shard from 16
/// KiB on than from 32 KiB on: see the README's "Slabs up to 64 KiB").
/// The blocks up to 16 KiB stay per CPU: remote-mix (16 B-16 KiB on 4
/// threads) took longer with one shard from 8 KiB on. These blocks
/// were large blocks before, behind one lock as well; a request this big
/// costs its caller more than the lock.
const ONE_SHARD_FROM: usize = crate::core::size_class::BIG_MEDIUM_FROM;

/// Medium allocations between two looks at which CPU a thread runs on.
const CPU_RECHECK: u32 = 64;

/// The shard of the CPU the calling thread runs on, or ran on a few
/// allocations ago (kept in its heap; a thread without one asks every
/// time). A thread that moved keeps its old shard for a while: that costs
/// locality, never correctness.
#[inline]
fn current_shard() -> usize {
    let heap = crate::heap::tls::heap();
    let cpu = || (crate::os::process::cpu() % MAX_SHARDS) as u32;
    let i = if is_thread_heap(heap) {
        // SAFETY: the calling thread's own heap.
        unsafe {
            let h = &mut (*heap).local;
            if h.shard_uses == 0 {
                h.shard = cpu();
                h.shard_uses = CPU_RECHECK;
            }
            h.shard_uses -= 1;
            h.shard
        }
    } else {
        cpu()
    };
    i as usize % MAX_SHARDS
}

/// Is `h` (an owner word without its flags) one of the shard heaps?
#[inline]
pub(crate) fn owns(h: usize) -> bool {
    let first = SHARDS.0.as_ptr() as usize;
    h >= first && h < first + core::mem::size_of::<Shards>()
}

/// The shard whose heap is at `h` (`owns(h)` must hold).
fn shard_of(h: usize) -> &'static Shard {
    let i = (h - SHARDS.0.as_ptr() as usize) / core::mem::size_of::<Shard>();
    &SHARDS.0[i]
}

/// Allocate a block of medium class `class` from the calling CPU's
/// shard; null (errno `ENOMEM`) when out of memory. The second value
/// says that periodic upkeep is due (the caller runs it: never under a
/// heap lock).
///
/// # Safety
/// `SHARED_FROM <= class < NUM_CLASSES`; the process is initialised.
#[inline(never)]
pub(crate) unsafe fn alloc(class: usize) -> (*mut u8, bool) {
    // The walk past poisoned shards ends where it began: asking
    // `current_shard` again could name another shard (the thread's CPU
    // is looked up again every CPU_RECHECK calls), and a walk that
    // stopped there failed with shards left untried.
    let start = if class >= ONE_SHARD_FROM {
        0
    } else {
        current_shard()
    };
    let mut i = start;
    let (s, mut st) = loop {
        let s = &SHARDS.0[i];
        let st = s.lock.lock();
        if !st.poisoned {
            break (s, st);
        }
        drop(st);
        i = (i + 1) % MAX_SHARDS;
        if i == start {
            crate::os::errno::set(libc::ENOMEM);
            return (null_mut(), false);
        }
    };
    let heap = s.heap.get().cast::<Heap>();
    // SAFETY: the lock makes us the heap's only user; the heap is made
    // (with its owner word) before its first use; `class` is in range
    // (contract).
    let p = unsafe {
        if !st.made {
            heap.write(Heap::empty());
            (*heap).local.owner_word = heap as usize;
            st.made = true;
            MADE.fetch_add(1, Ordering::Relaxed);
            MADE_MASK.fetch_or(1 << i, Ordering::Release);
        }
        let h = &mut (*heap).local;
        let mut b = take_freed(h, class);
        if b.is_null() && class < ONE_SHARD_FROM {
            b = take_from_other_shard(i, class);
        }
        if b.is_null() {
            b = take_fresh(h, class);
        }
        b
    };
    st.allocs += 1;
    let upkeep = st.allocs >= UPKEEP_EVERY;
    if upkeep {
        st.allocs = 0;
    }
    (p, upkeep)
}

/// A block of medium class `class` from the shard heap `h` alone, fresh
/// pages last ([`take_freed`], else [`take_fresh`]); `alloc` looks at
/// the other shards in between.
///
/// # Safety
/// As [`take_freed`].
#[cfg(test)]
unsafe fn take(h: &mut crate::heap::types::HeapLocal, class: usize) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe {
        let b = take_freed(h, class);
        if b.is_null() {
            take_fresh(h, class)
        } else {
            b
        }
    }
}

/// A block of medium class `class` that the shard heap `h` holds free:
/// one of the class's current slab, else of another of its slabs (which
/// becomes the current one), else a bigger class's free block
/// ([`borrow`]). Touches no fresh page; null when there is none.
///
/// # Safety
/// The caller holds the lock of the shard heap `h`; `class` is medium.
unsafe fn take_freed(h: &mut crate::heap::types::HeapLocal, class: usize) -> *mut u8 {
    // SAFETY: contract: the heap's slabs are ours under the lock.
    unsafe {
        let b = free_block_of(h.current[class]);
        if !b.is_null() {
            return b;
        }
        let b = own_free_block(h, class);
        if !b.is_null() {
            return b;
        }
        borrow(h, class)
    }
}

/// A block of medium class `class` carved from the shard heap `h`'s
/// slabs of the class or from a new slab. Null (errno `ENOMEM`) when out
/// of memory.
///
/// # Safety
/// As [`take_freed`].
unsafe fn take_fresh(h: &mut crate::heap::types::HeapLocal, class: usize) -> *mut u8 {
    // SAFETY: contract: the heap's slabs are ours under the lock.
    unsafe {
        match slabs::pop_from_avail(h, class) {
            Some(b) => b,
            None => slabs::pop_from_new_slab(h, class),
        }
    }
}

/// The shards whose heap is made (bit `i`: shard `i`), for
/// [`take_from_other_shard`] (which must not touch the others: each is a
/// heap's worth of untouched .bss).
static MADE_MASK: AtomicU64 = AtomicU64::new(0);
const _: () = assert!(MAX_SHARDS == 64, "MADE_MASK has a bit per shard");

/// Other shards [`take_from_other_shard`] looks at, at most.
const OTHER_SHARDS: usize = 3;

/// Before shard `i` (whose lock the caller holds) touches fresh pages for
/// `class`: a block of the class another shard holds free
/// ([`take_freed`]), from up to [`OTHER_SHARDS`] other made shards whose
/// lock is free at once (`try_lock`: a thread never waits for a second
/// shard lock while it holds one, so two threads doing this cannot
/// deadlock); null when none has one.
///
/// Why: a class keeps the pages of its high-water mark in every shard
/// that uses it, and a thread allocates from the shard of the CPU it runs
/// on while its frees go back to the shard that made the block. Threads
/// that move between CPUs (any program with more threads than CPUs), or
/// that free what a thread on another CPU allocated, leave free blocks in
/// one shard while another carves fresh ones: each shard then holds its
/// own high-water mark where one would do. The block stays a block of its
/// own shard's slab (its free goes back there, as every free does).
///
/// # Safety
/// The caller holds shard `i`'s lock; `class` is medium.
unsafe fn take_from_other_shard(i: usize, class: usize) -> *mut u8 {
    // SAFETY: forwarded contract; the set holds made shards other than `i`.
    unsafe { take_from_shards(MADE_MASK.load(Ordering::Acquire) & !(1u64 << i), i, class) }
}

/// [`take_from_other_shard`]'s look at the shards of the set `others`
/// (bit `j`: shard `j`), at most [`OTHER_SHARDS`] of them, the next ones
/// after shard `after` first (so each shard looks at its neighbours,
/// not every shard at the lowest ones).
///
/// # Safety
/// As [`take_from_other_shard`]; `others` holds made shards only, none
/// whose lock the caller holds.
unsafe fn take_from_shards(others: u64, after: usize, class: usize) -> *mut u8 {
    let shift = (after + 1) % MAX_SHARDS;
    // Bit `k` of `order`: shard `(shift + k) % MAX_SHARDS`.
    let mut order = others.rotate_right(shift as u32);
    for _ in 0..OTHER_SHARDS {
        if order == 0 {
            break;
        }
        let k = order.trailing_zeros() as usize;
        order &= order - 1;
        let s = &SHARDS.0[(shift + k) % MAX_SHARDS];
        let Some(st) = s.lock.try_lock() else {
            continue;
        };
        if st.poisoned || !st.made {
            continue;
        }
        // SAFETY: we hold this shard's lock, and its heap is made; `class`
        // is medium (contract).
        let b = unsafe { take_freed(&mut (*s.heap.get().cast::<Heap>()).local, class) };
        if !b.is_null() {
            return b;
        }
    }
    null_mut()
}

/// A free block of a slab of `class` other than its current one, which
/// then becomes the current one; null when none holds a free block.
/// Carves nothing (`slabs::pop_from_avail` carves the current slab's
/// untouched blocks first).
///
/// A slab the walk finds with neither a freed nor a fresh block goes to
/// the full list (a free into it brings it back), so each walk passes a
/// slab without free blocks at most once: a class with thousands of
/// slabs, most of them full (stress-ng's malloc stressor: 64K blocks of
/// up to 64 KiB), spent 35% of its time here when they stayed on the
/// list and every walk passed them all.
///
/// # Safety
/// As [`take_freed`].
unsafe fn own_free_block(h: &mut crate::heap::types::HeapLocal, class: usize) -> *mut u8 {
    let first = h.avail[class].first;
    if first.is_null() {
        return null_mut();
    }
    // SAFETY: contract: slabs on the heap's lists are live, ours.
    unsafe {
        let mut s = (*first).next;
        while !s.is_null() {
            let next = (*s).next;
            if (*s).refill_freed() {
                h.avail[class].remove(s);
                h.avail[class].push_front(s);
                h.set_current(class);
                return (*s).pop().cast();
            }
            if (*s).carved_out() {
                slabs::retire_full(h, class, s);
            }
            s = next;
        }
    }
    null_mut()
}

/// A block freed into `slab` (on either of its lists: the blocks freed
/// here since the last refill count, or a LIFO loop on a class with few
/// blocks per page, every medium class, would take the slow path on every
/// call), or null. Carves nothing.
///
/// # Safety
/// `slab` is a current slab of a shard heap whose lock the caller holds
/// (or the empty slab).
#[inline(always)]
unsafe fn free_block_of(slab: *mut Slab) -> *mut u8 {
    // SAFETY: contract: the owner's fields, under the shard's lock.
    unsafe {
        if !(*slab).refill_freed() {
            return null_mut();
        }
        (*slab).pop().cast()
    }
}

/// How much bigger than its class a block [`borrow`] hands out may be:
/// `BORROW_NUM / BORROW_DEN` of the class size, or [`WIDE_BORROW`] times
/// it for the classes from [`WIDE_BORROW_FROM`] on (see [`borrow_limit`]).
const BORROW_NUM: usize = 3;
const BORROW_DEN: usize = 2;
/// From this block size on (blocks two pages long or more) a class
/// borrows blocks up to [`WIDE_BORROW`] times its size.
const WIDE_BORROW_FROM: usize = 8192;
const WIDE_BORROW: usize = 4;

/// The biggest block [`borrow`] may hand out for `class`.
///
/// Why wider for blocks of two pages or more: a fresh block of these
/// classes is pages a program touches, while a free block of a bigger
/// class lies resident and idle; glibc splits such a chunk for any
/// smaller request. The arena bench's buffers (8-64 KiB, uniform) peaked
/// at 2.94-3.10 MiB with these loans up to 4x (2.94-3.22 up to 2x),
/// against 3.19-3.56 MiB with loans up to half as big again (glibc:
/// 1.96-2.24; `/usr/bin/time`, 5-9 interleaved runs each). For blocks
/// under two pages wider loans cost memory instead: blocks of a page or
/// less share pages, so a loan saves little, and the borrowed block's
/// class later carves a fresh one for its own requests (up to 4x for
/// every block: the server bench +13%, remote-mix +8%, random-mix +5%
/// peak RSS, measured the same way; with this bound none moved by more
/// than its runs' spread, stress-ng's malloc stressor +1%).
const fn borrow_limit(class: usize) -> usize {
    let size = CLASS_SIZE[class] as usize;
    if size >= WIDE_BORROW_FROM {
        size * WIDE_BORROW
    } else {
        size * BORROW_NUM / BORROW_DEN
    }
}

/// Before a class touches fresh pages (a block never carved, or a new
/// slab): a free block of a bigger class, at most half as big again (4x
/// for blocks of two pages or more: [`borrow_limit`]), that the shard's
/// current slab of that class holds; null when none does.
///
/// Why: each medium class keeps the pages of its own high-water mark, and
/// the bigger medium blocks are pages long, so a program whose requests
/// wander over many medium sizes (per-request buffers of 8-32 KiB) held
/// the sum of sixteen high-water marks where glibc, which splits and
/// merges free chunks, holds about the largest one. A free block of a
/// neighbour class is resident already: handing it out costs some of its
/// bytes, never a page (arena-malloc's peak RSS went from 3.73-3.83 to
/// 3.10-3.20 MiB, glibc's 2.0-2.1).
/// The block stays a block of its own slab and class (its statistics, its
/// usable size record say so). A class's blocks are aligned to at least
/// what an aligned request of that class needs (`heap::alloc::
/// class_for_aligned`): a neighbour is taken only if its blocks are too.
///
/// # Safety
/// The caller holds the lock of the shard heap `h`; `class` is medium.
unsafe fn borrow(h: &mut crate::heap::types::HeapLocal, class: usize) -> *mut u8 {
    for c in lenders(class) {
        // SAFETY: the heap's current slabs are live (or the empty slab);
        // contract.
        let b = unsafe { free_block_of(h.current[c]) };
        if !b.is_null() {
            return b;
        }
    }
    null_mut()
}

/// The classes that may lend their free blocks to `class`, smallest
/// first: those up to [`borrow_limit`], whose blocks are aligned at least
/// as well.
#[inline]
fn lenders(class: usize) -> impl Iterator<Item = usize> {
    let mut mask = LENDERS[class];
    core::iter::from_fn(move || {
        (mask != 0).then(|| {
            let c = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            c
        })
    })
}

/// [`lenders`] of each class, as a set of class numbers (bit `c`):
/// computed once, not on every miss of a medium cache.
static LENDERS: [u64; NUM_CLASSES] = build_lenders();

const fn build_lenders() -> [u64; NUM_CLASSES] {
    // Block addresses are `span head + SLAB_HEADER + i * size`, heads
    // aligned to `SLAB_HEADER`: a block is aligned to the lower of the
    // two powers of two.
    const fn align(c: usize) -> u32 {
        let a = (CLASS_SIZE[c] as usize).trailing_zeros();
        let h = SLAB_HEADER.trailing_zeros();
        if a < h {
            a
        } else {
            h
        }
    }
    let mut t = [0u64; NUM_CLASSES];
    let mut class = 0;
    while class < NUM_CLASSES {
        let limit = borrow_limit(class);
        let mut c = class + 1;
        while c < NUM_CLASSES && CLASS_SIZE[c] as usize <= limit {
            if align(c) >= align(class) {
                t[class] |= 1 << c;
            }
            c += 1;
        }
        class += 1;
    }
    t
}

/// Free block `b` of `slab`, owned by the shard heap at `h`, under the
/// shard's lock (`user` as in `slabs::free_in`).
///
/// # Safety
/// `owns(h)`, `slab` is a live slab whose owner is `h`, `b` one of its
/// blocks.
#[inline(never)]
unsafe fn free_locked(h: usize, slab: *mut Slab, b: *mut Block, user: usize) {
    let s = shard_of(h);
    let st = s.lock.lock();
    if st.poisoned {
        return;
    }
    // SAFETY: a shard heap that owns a slab was made; shard slabs never
    // change owner, so `h` still owns `slab`; the lock makes us the heap's
    // only user.
    unsafe { slabs::free_in(s.heap.get().cast(), slab, b, user) }
}

/// Free block `b` of medium slab `slab`, owned by the shard heap at
/// `shard`: into the calling thread's medium cache if it has room, else
/// under the shard's lock. `user` as in `slabs::free_in`; when it is not
/// 0, `heap` is the calling thread's heap.
///
/// # Safety
/// `owns(shard)`, which owns `slab`; `b` is one of its blocks.
#[inline(always)]
pub(crate) unsafe fn free(
    heap: *mut Heap,
    shard: usize,
    slab: *mut Slab,
    b: *mut Block,
    user: usize,
) {
    // SAFETY: contract.
    unsafe {
        if user != 0 {
            // Every handout of a medium block (from a slab or a thread's
            // medium cache) clears its first word: a block that looks free
            // was freed and not handed out since (user data looks free
            // with a chance of 1 in 2^45 at most).
            if (*slab).looks_free(b) {
                crate::heap::slabs::double_free(user, slab);
            }
            // Its record and pattern (`core::canary`) must be intact; the
            // record then stops counting it as in use.
            // (The secure build checked and cleared them before the block's
            // time in quarantine.)
            let end = b as usize + (*slab).block_size as usize;
            if !crate::core::config::SECURE {
                crate::core::lookup::medium_size(slab, user, b as usize, end);
                crate::core::canary::unseal_medium(end);
            }
            if is_thread_heap(heap) && cache_push(heap, slab, b) {
                return;
            }
        }
        free_locked(shard, slab, b, user)
    }
}

/// A block of medium class `class` from the thread's medium cache, or
/// null.
///
/// # Safety
/// `heap` is the calling thread's heap (a thread heap); `class` medium.
#[inline]
pub(crate) unsafe fn cache_pop(heap: *mut Heap, class: usize) -> *mut u8 {
    // SAFETY: contract.
    unsafe {
        let b = cache_take(heap, class);
        if !b.is_null() || (*heap).local.mcache_bytes == 0 {
            return b;
        }
        // A cached block of a class that may lend to this one (see
        // `borrow`): it is resident, and would wait here unused.
        for c in lenders(class) {
            let b = cache_take(heap, c);
            if !b.is_null() {
                return b;
            }
        }
        null_mut()
    }
}

/// A block of class `class` from the thread's medium cache, or null.
///
/// # Safety
/// As [`cache_pop`].
#[inline]
unsafe fn cache_take(heap: *mut Heap, class: usize) -> *mut u8 {
    // SAFETY: contract: our own heap; cached blocks are ours.
    unsafe {
        let h = &mut (*heap).local;
        let i = class - SHARED_FROM;
        let b = h.mcache[i];
        if !b.is_null() {
            h.mcache[i] = (*b).chain;
            h.mcache_n[i] -= 1;
            h.mcache_bytes -= CLASS_SIZE[class];
            Slab::hand_out(b);
        }
        b.cast()
    }
}

/// Keep `b`, a medium block the calling thread frees, in its medium cache
/// if there is room.
unsafe fn cache_push(heap: *mut Heap, slab: *mut Slab, b: *mut Block) -> bool {
    // SAFETY: our own heap; `b` is a medium block being freed.
    unsafe {
        let h = &mut (*heap).local;
        let class = (*slab).class as usize;
        let i = class - SHARED_FROM;
        let size = CLASS_SIZE[class];
        if h.mcache_n[i] >= MCACHE_MAX || h.mcache_bytes + size > MCACHE_BYTES {
            return false;
        }
        (*b).chain = h.mcache[i];
        (*slab).mark_waiting(b);
        h.mcache[i] = b;
        h.mcache_n[i] += 1;
        h.mcache_bytes += size;
        true
    }
}

/// Give every block of `heap`'s medium cache back to its per-CPU heap
/// (thread exit, giving a heap up, `malloc_trim`). Takes shard locks: not
/// to be called with any other allocator lock held.
///
/// # Safety
/// `heap` is the calling thread's heap, or one nobody else uses.
pub(crate) unsafe fn flush_cache(heap: *mut Heap) {
    // SAFETY: contract; cached blocks are live medium blocks of shard
    // slabs (double frees were checked already), freed with `user == 0`.
    unsafe {
        let h = &mut (*heap).local;
        for i in 0..MCACHE_CLASSES {
            let mut b = core::mem::replace(&mut h.mcache[i], null_mut());
            while !b.is_null() {
                let next = (*b).chain;
                let slab = PAGEMAP.lookup(b as usize).cast::<Slab>();
                let owner = (*slab).head.owner.load(Ordering::Acquire) & !OWNER_FLAGS;
                free_locked(owner, slab, b, 0);
                b = next;
            }
            h.mcache_n[i] = 0;
        }
        h.mcache_bytes = 0;
    }
}

/// Give back every empty slab the shards hold, the current ones included
/// (`malloc_trim`).
pub(crate) fn trim() {
    for s in &SHARDS.0 {
        let st = s.lock.lock();
        if st.made && !st.poisoned {
            // SAFETY: a made heap, under its lock.
            unsafe { slabs::release_empty(s.heap.get().cast()) };
        }
    }
}

/// Hold the lock of every shard but the last (tests of the fork child's
/// rebuild: the child must find the one shard left).
#[cfg(test)]
pub(crate) fn hold_for_test() -> [crate::util::lock::LockGuard<'static, impl Sized>; MAX_SHARDS - 1]
{
    core::array::from_fn(|i| SHARDS.0[i].lock.lock())
}

/// Poison shard `i` as a fork child does when another thread held its
/// lock (tests of the walk past poisoned shards).
///
/// # Safety
/// As `after_fork_child`: the calling thread is a fork child's only
/// thread and holds no shard lock.
#[cfg(test)]
pub(crate) unsafe fn poison_for_test(i: usize) {
    // SAFETY: contract.
    unsafe { poison(&SHARDS.0[i]) };
}

/// Mark shard `s` poisoned (see [`ShardState::poisoned`]).
///
/// # Safety
/// The calling thread is a fork child's only thread; no guard of the
/// shard's lock exists.
unsafe fn poison(s: &Shard) {
    // SAFETY: contract; `made` is a flag, consistent alone.
    unsafe {
        s.lock.reset_in_child(|old| ShardState {
            made: old.made,
            allocs: 0,
            poisoned: true,
        })
    };
}

/// In a fork child: a shard whose lock was held by a thread that does
/// not exist here is poisoned (its heap may be half updated).
pub(crate) fn after_fork_child() {
    for s in &SHARDS.0 {
        if s.lock.held_by_other_thread() {
            // SAFETY: the child's only thread; no guard exists.
            unsafe { poison(s) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::size_class::class_of;
    use crate::heap::types::HeapLocal;

    /// A heap of the test's own, made as a shard heap is.
    fn test_heap() -> std::boxed::Box<Heap> {
        let mut heap = std::boxed::Box::new(Heap::empty());
        heap.local.owner_word = &*heap as *const Heap as usize;
        heap
    }

    /// A block of `class` in `h`, from a new slab of its own (which
    /// becomes the class's current slab), and that slab.
    fn block_of(h: &mut HeapLocal, class: usize) -> (*mut u8, *mut Slab) {
        // SAFETY: the test's own heap.
        let b = unsafe { slabs::pop_from_new_slab(h, class) };
        assert!(!b.is_null());
        (b, h.current[class])
    }

    /// The slab holding block `b` of the test heap.
    fn slab_of(b: *mut u8) -> *mut Slab {
        crate::core::pagemap::PAGEMAP.lookup(b as usize).cast()
    }

    /// The owner word (without its flags) of the live slab block `p`.
    fn owner_of(p: *mut u8) -> usize {
        let head = crate::core::pagemap::PAGEMAP.lookup(p as usize);
        // SAFETY: `p` is a live slab block: its span header is live.
        unsafe { (*head).owner.load(Ordering::Relaxed) & !OWNER_FLAGS }
    }

    /// Free block `b` into its slab of the test heap `hp`.
    ///
    /// # Safety
    /// `b` is a live block of `hp`'s slabs; `hp` is used by this thread
    /// alone.
    unsafe fn free_block(hp: *mut Heap, b: *mut u8) {
        // SAFETY: contract.
        unsafe { slabs::free_in(hp, slab_of(b), b.cast(), b as usize) }
    }

    /// Free `blocks` (live blocks of the test heap `hp`), give the empty
    /// slabs back and check that no class keeps a slab listed.
    ///
    /// # Safety
    /// As [`free_block`] for each block.
    unsafe fn free_all_and_release(hp: *mut Heap, blocks: &[*mut u8]) {
        // SAFETY: contract.
        unsafe {
            for &b in blocks {
                free_block(hp, b);
            }
            slabs::release_empty(hp);
            assert!((*hp).local.avail.iter().all(|l| l.first.is_null()));
        }
    }

    /// The slabs on `h.avail[class]`, in order.
    fn listed(h: &HeapLocal, class: usize) -> std::vec::Vec<*mut Slab> {
        let mut v = std::vec::Vec::new();
        let mut s = h.avail[class].first;
        while !s.is_null() {
            v.push(s);
            // SAFETY: slabs on a test heap's list are live.
            s = unsafe { (*s).next };
        }
        v
    }

    #[test]
    fn lenders_are_the_bigger_classes_within_the_limit_and_as_aligned() {
        let align = |c: usize| {
            (CLASS_SIZE[c] as usize)
                .trailing_zeros()
                .min(SLAB_HEADER.trailing_zeros())
        };
        for class in 0..NUM_CLASSES {
            let want: Vec<usize> = (class + 1..NUM_CLASSES)
                .take_while(|&c| CLASS_SIZE[c] as usize <= borrow_limit(class))
                .filter(|&c| align(c) >= align(class))
                .collect();
            assert_eq!(lenders(class).collect::<Vec<_>>(), want, "class {class}");
        }
        // Some class does lend to another (the table is not all empty).
        assert!((SHARED_FROM..NUM_CLASSES).any(|c| lenders(c).next().is_some()));
    }

    #[test]
    fn a_class_takes_fresh_pages_last() {
        let mut heap = test_heap();
        let hp: *mut Heap = &mut *heap;
        // A class under two pages (loans up to half as big again): a
        // class beyond its limit exists.
        let small = class_of(4500 + crate::core::canary::RECORD);
        // Its first lender (the next class may not be one: its blocks
        // must be aligned as well, and the secure build's slab header is
        // two pages).
        let near = lenders(small).next().unwrap();
        let far = (small..NUM_CLASSES)
            .find(|&c| CLASS_SIZE[c] as usize > borrow_limit(small))
            .unwrap();
        // Blocks of these classes are over a page long: every carve makes
        // one block, so "nothing free" and "carved" are exact here.
        assert!(CLASS_SIZE[small] as usize > crate::os::PAGE);
        // SAFETY: the test's own heap, used by this thread alone; the
        // blocks are live blocks of its slabs, each freed once.
        unsafe {
            let free = move |b: *mut u8| free_block(hp, b);
            // Slab A of `small` with blocks a1, a2; then slab B, current.
            let (a1, slab_a) = block_of(&mut (*hp).local, small);
            let a2 = slabs::pop_from_avail(&mut (*hp).local, small).unwrap();
            assert_eq!(slab_of(a2), slab_a);
            let (b1, slab_b) = block_of(&mut (*hp).local, small);
            assert_ne!(slab_a, slab_b);
            // A lender too big, and one near with a free block.
            let (f, _) = block_of(&mut (*hp).local, far);
            free(f);
            assert!(
                borrow(&mut (*hp).local, small).is_null(),
                "a block bigger than the class's limit is not lent"
            );
            let (n1, slab_n) = block_of(&mut (*hp).local, near);
            let n2 = slabs::pop_from_avail(&mut (*hp).local, near).unwrap();
            free(n1);
            free(a1);
            // B has nothing free: A's free block comes before the loan,
            // and A becomes the current slab.
            assert_eq!(
                take(&mut (*hp).local, small),
                a1,
                "the class's own free block first"
            );
            assert_eq!((*hp).local.current[small], slab_a);
            // Nothing of the class is free now: the neighbour lends.
            assert_eq!(take(&mut (*hp).local, small), n1, "then the neighbour's");
            assert_eq!(slab_of(n1), slab_n);
            // Nothing free anywhere: a block is carved for the class.
            let c = take(&mut (*hp).local, small);
            assert!(!c.is_null() && ![a1, a2, b1, n1, n2].contains(&c));
            assert_eq!(
                (*slab_of(c)).class as usize,
                small,
                "carved in the class's own slab"
            );
            // With the class's current slab holding a free block and the
            // neighbour one too, the class's own comes first.
            free(n1);
            free(a1);
            assert_eq!(take(&mut (*hp).local, small), a1);
            // The thread's medium cache: the class's own block first, then
            // a neighbour's.
            assert!(cache_push(hp, slab_of(n2), n2.cast()));
            assert!(cache_push(hp, slab_of(a1), a1.cast()));
            assert_eq!(cache_pop(hp, small), a1);
            assert_eq!(
                cache_pop(hp, small),
                n2,
                "a cached block of the neighbour is lent"
            );
            assert!(cache_pop(hp, small).is_null() && (*hp).local.mcache_bytes == 0);
            free_all_and_release(hp, &[a1, a2, b1, c, n2]);
        }
    }

    /// Blocks of two pages or more borrow up to four times their size;
    /// smaller ones only up to half as big again.
    #[test]
    fn wide_loans_only_for_blocks_of_two_pages() {
        use crate::core::size_class::block_size;
        let mut heap = test_heap();
        let hp: *mut Heap = &mut *heap;
        // A class of 9 KiB and a lender three times as big (within 4x);
        // a class of 2 KiB and a lender twice as big (past 1.5x).
        let big = class_of(9000);
        let small = class_of(2000);
        assert!(block_size(big) >= WIDE_BORROW_FROM && block_size(small) < WIDE_BORROW_FROM);
        let lender = class_of(3 * block_size(big));
        assert!(block_size(lender) <= 4 * block_size(big));
        let too_big = class_of(2 * block_size(small));
        assert!(2 * block_size(too_big) > 3 * block_size(small));
        // SAFETY: the test's own heap, used by this thread alone; the
        // blocks are live blocks of its slabs, each freed once.
        unsafe {
            let (l, _) = block_of(&mut (*hp).local, lender);
            free_block(hp, l);
            assert_eq!(
                borrow(&mut (*hp).local, big),
                l,
                "a block of 9 KiB borrows one three times as big"
            );
            let (t, _) = block_of(&mut (*hp).local, too_big);
            free_block(hp, t);
            assert!(
                borrow(&mut (*hp).local, small).is_null(),
                "a block of 2 KiB borrows none twice as big"
            );
            free_all_and_release(hp, &[l]);
        }
    }

    /// A slab the walk for free blocks passes without a free or fresh
    /// block leaves the class's list (for the full list) instead of being
    /// passed again by every later walk; a free brings it back.
    #[test]
    fn the_walk_for_free_blocks_retires_full_slabs() {
        use crate::core::slab::OWNER_FULL;
        let mut heap = test_heap();
        let hp: *mut Heap = &mut *heap;
        let class = class_of(9000 + crate::core::canary::RECORD);
        // SAFETY: the test's own heap, used by this thread alone; the
        // blocks are live blocks of its slabs, each freed once.
        unsafe {
            let free = move |b: *mut u8| free_block(hp, b);
            let is_full = |s: *mut Slab| (*s).head.owner.load(Ordering::Relaxed) & OWNER_FULL != 0;
            // Four slabs: S1-S3 full, S4 the current one (blocks left to
            // carve, none freed).
            let mut blocks = std::vec::Vec::new();
            let mut seen: std::vec::Vec<*mut Slab> = std::vec::Vec::new();
            while seen.len() < 4 {
                let b = take(&mut (*hp).local, class);
                assert!(!b.is_null());
                if !seen.contains(&slab_of(b)) {
                    seen.push(slab_of(b));
                }
                blocks.push(b);
            }
            let [s1, s2, s3, s4] = [seen[0], seen[1], seen[2], seen[3]];
            assert!(is_full(s1) && is_full(s2) && is_full(s3) && !is_full(s4));
            assert!(!(*s4).carved_out());
            let in_slab = |s: *mut Slab| *blocks.iter().find(|&&b| slab_of(b) == s).unwrap();
            // Freed in S1: S1 becomes current, S4 (no freed block, blocks
            // to carve) stays behind it, on the list.
            let x1 = in_slab(s1);
            free(x1);
            assert_eq!(take(&mut (*hp).local, class), x1);
            assert_eq!((*hp).local.current[class], s1);
            // Freed in S2: the walk passes S4 and finds S2; S1, exhausted,
            // is second now.
            let x2 = in_slab(s2);
            free(x2);
            assert_eq!(take(&mut (*hp).local, class), x2);
            assert!(!is_full(s1) && !is_full(s4));
            // Freed in S3: the walk passes S1, which has neither a freed
            // nor a fresh block, and retires it; S4 stays.
            let x3 = in_slab(s3);
            free(x3);
            assert_eq!(take(&mut (*hp).local, class), x3);
            assert!(is_full(s1), "the walk retired the slab it found full");
            assert!(!is_full(s4), "a slab with blocks to carve stays");
            assert!(
                !listed(&(*hp).local, class).contains(&s1),
                "a retired slab is off the class's list"
            );
            // A free into S1 brings it back, and the walk finds its block.
            free(x1);
            assert!(!is_full(s1));
            assert_eq!(take(&mut (*hp).local, class), x1);
            free_all_and_release(hp, &blocks);
        }
    }

    /// `malloc_trim`'s `slabs::release_empty` gives back an empty current
    /// slab and a slab that stopped being current empty (it lingers on
    /// the list), and keeps a current slab nothing was freed into.
    #[test]
    fn trim_releases_empty_current_and_lingering_slabs() {
        let mut heap = test_heap();
        let hp: *mut Heap = &mut *heap;
        let class = class_of(9000 + crate::core::canary::RECORD);
        // SAFETY: the test's own heap, used by this thread alone; the
        // blocks are live blocks of its slabs, each freed once.
        unsafe {
            let free = move |b: *mut u8| free_block(hp, b);
            // S1 current, its only block freed: empty, still current.
            let (b1, s1) = block_of(&mut (*hp).local, class);
            free(b1);
            assert_eq!((*hp).local.biased[class], s1);
            // A new slab S2 becomes current: S1 lingers, empty.
            let (b2, s2) = block_of(&mut (*hp).local, class);
            assert!((*hp).local.lingering && (*s1).used == 0);
            assert_eq!(listed(&(*hp).local, class), [s2, s1]);
            // Trim: S1 goes back, S2 (a block in use, nothing freed into
            // it) stays current.
            slabs::release_empty(hp);
            assert_eq!(listed(&(*hp).local, class), [s2]);
            assert_eq!((*hp).local.biased[class], s2);
            assert!(!(*hp).local.lingering);
            // Its block freed, S2 is empty: the next trim gives it back.
            free(b2);
            slabs::release_empty(hp);
            assert!(listed(&(*hp).local, class).is_empty());
            assert_eq!(
                (*hp).local.biased[class],
                crate::heap::types::empty_slab_ptr()
            );
        }
    }

    /// A class lends only blocks that satisfy every aligned request it
    /// may serve (`heap::alloc::class_for_aligned` picks a class whose
    /// block size is a multiple of the alignment, up to `SLAB_HEADER`).
    #[test]
    fn borrowed_blocks_are_aligned_as_the_class_needs() {
        let mut pairs = 0;
        for class in crate::core::size_class::SHARED_FROM..NUM_CLASSES {
            let size = crate::core::size_class::block_size(class);
            let mut align = 16;
            while align <= SLAB_HEADER {
                if size % align == 0 {
                    for c in lenders(class) {
                        let n = CLASS_SIZE[c] as usize;
                        assert!(n > size && n <= borrow_limit(class));
                        assert!(if size < WIDE_BORROW_FROM {
                            2 * n <= 3 * size
                        } else {
                            n <= 4 * size
                        });
                        pairs += 1;
                        // Every block of a slab of class c, at any granule.
                        for i in 0..(8 * crate::core::size_class::GRANULE / n) {
                            let addr = 7 * crate::core::size_class::GRANULE + SLAB_HEADER + i * n;
                            assert_eq!(
                                addr % align,
                                0,
                                "class {c} lends to {class}, align {align}"
                            );
                        }
                    }
                }
                align *= 2;
            }
        }
        assert!(pairs > 0);
    }

    /// Blocks above 16 KiB come from the first shard on every CPU; a
    /// block of 12 KiB from the shard of the CPU the thread runs on.
    #[test]
    fn blocks_above_16_kib_share_one_shard() {
        let _turn = crate::util::lock::fork_turn();
        crate::core::config::init();
        let shard_heap = |i: usize| SHARDS.0[i].heap.get() as usize;
        assert_eq!(class_of(16 * 1024 + 1), ONE_SHARD_FROM);
        assert_eq!(class_of(16 * 1024) + 1, ONE_SHARD_FROM);
        // SAFETY: the calling thread's affinity mask, read into a zeroed set.
        let cpus: std::vec::Vec<usize> = unsafe {
            let mut set: libc::cpu_set_t = core::mem::zeroed();
            libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set);
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect()
        };
        for c in cpus {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let t = std::thread::spawn(move || {
                // SAFETY: a one-CPU set for this thread alone; then a block
                // of each class, freed again under its shard's lock.
                unsafe {
                    let mut one: libc::cpu_set_t = core::mem::zeroed();
                    libc::CPU_SET(c, &mut one);
                    libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &one);
                    let (b, _) = alloc(class_of(16 * 1024 + 1));
                    assert!(!b.is_null());
                    let big_owner = owner_of(b);
                    free_locked(big_owner, slab_of(b), b.cast(), b as usize);
                    let pinned = crate::os::process::cpu() == c;
                    ready_tx.send(pinned).unwrap();
                    go_rx.recv().unwrap();
                    let (s, _) = alloc(class_of(12 * 1024));
                    assert!(!s.is_null());
                    let small_owner = owner_of(s);
                    free_locked(small_owner, slab_of(s), s.cast(), s as usize);
                    (big_owner, small_owner, pinned)
                }
            });
            // While the thread takes its 12 KiB block, the other shards are
            // held, so the block cannot be one they hold free
            // (`take_from_other_shard` passes a shard it cannot lock).
            let pinned = ready_rx.recv().unwrap();
            let made = MADE_MASK.load(Ordering::Acquire);
            let held: std::vec::Vec<_> = (0..MAX_SHARDS)
                .filter(|&j| pinned && j != c % MAX_SHARDS && made & (1 << j) != 0)
                .map(|j| SHARDS.0[j].lock.lock())
                .collect();
            go_tx.send(()).unwrap();
            let (big_owner, small_owner, pinned) = t.join().unwrap();
            drop(held);
            assert_eq!(big_owner, shard_heap(0), "a block above 16 KiB on CPU {c}");
            if pinned {
                assert_eq!(
                    small_owner,
                    shard_heap(c % MAX_SHARDS),
                    "a block of 12 KiB on CPU {c}"
                );
            }
        }
    }

    /// A shard with no free block of a class takes one that another made
    /// shard holds free, if it can lock that shard at once; a shard it
    /// cannot lock is passed, never waited for. (The set of shards to look
    /// at is given: which shards the process made depends on its CPUs.)
    #[test]
    fn a_shard_takes_a_block_another_shard_holds_free() {
        let _turn = crate::util::lock::fork_turn();
        crate::core::config::init();
        let class = class_of(6 * 1024);
        assert!(class < ONE_SHARD_FROM);
        // SAFETY: blocks of the shards, each freed once under its lock;
        // the shard locks are taken one at a time by this thread.
        unsafe {
            // Four blocks of the class, freed again: their shard holds them.
            let blocks: std::vec::Vec<*mut u8> = (0..4).map(|_| alloc(class).0).collect();
            for &b in &blocks {
                assert!(!b.is_null());
                free_locked(owner_of(b), slab_of(b), b.cast(), b as usize);
            }
            let home =
                (owner_of(blocks[0]) - SHARDS.0.as_ptr() as usize) / core::mem::size_of::<Shard>();
            let made = MADE_MASK.load(Ordering::Acquire);
            assert_ne!(made & (1 << home), 0, "the blocks' shard is made");
            // Another shard short of a block of the class looks there.
            let b = take_from_shards(1 << home, home, class);
            assert!(!b.is_null(), "the shard holding free blocks gave none");
            assert_eq!(owner_of(b), SHARDS.0[home].heap.get() as usize);
            assert!((*slab_of(b)).class as usize >= class);
            free_locked(owner_of(b), slab_of(b), b.cast(), b as usize);
            // With that shard held by someone, it passes it and returns
            // (in a thread watched for 10 s: waiting would hang).
            let held = SHARDS.0[home].lock.lock();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                // (Within the test's unsafe block: this thread holds no
                // shard lock, and the set holds a made shard.)
                let b = take_from_shards(1 << home, home, class);
                tx.send(b as usize).unwrap();
            });
            let got = rx.recv_timeout(std::time::Duration::from_secs(10));
            drop(held);
            assert_eq!(got, Ok(0), "a held shard was waited for, or gave a block");
        }
    }
}
