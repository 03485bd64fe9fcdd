//! Per-CPU shared heaps for the medium classes (above [`DIRECT_MAX`]).
//!
//! Owns the shard table: one [`Heap`] and one lock per CPU (up to
//! [`MAX_SHARDS`], CPUs beyond that share by modulo). Calls `heap` (the
//! same allocation and free paths a thread heap uses, run under the
//! shard's lock), `sync`, `size_class`.
//!
//! Why: a thread heap keeps, per class, the pages of its highest demand
//! ever, so `threads x classes` high-water marks add up. For small blocks
//! that is a page or two per class and buys a lock-free fast path; for
//! blocks of 1.25-32 KiB it is several pages per class per thread (with 4
//! threads and 1,000 short-lived ones, 1.4 MiB of the 2.4 MiB of slabs),
//! while these requests are rare and each one already costs its caller
//! far more than a lock. Sharing them per CPU turns the sum of per-thread
//! peaks into a per-CPU peak, as jemalloc's arenas and tcmalloc's per-CPU
//! caches do.
//!
//! Invariants:
//! - a shard's heap is touched only under its lock, by whichever thread
//!   holds it; it is never parked, abandoned or given up;
//! - every slab it owns has `owner & !OWNER_FLAGS == shard heap address`,
//!   so a free by any thread misses the thread fast path, and
//!   `dispatch_free` sends it here (never to a remote queue);
//! - a shard heap is made (empty, owner word = its own address) under its
//!   lock at the first allocation from it, and stays.

use crate::heap::{self, Heap};
use crate::slab::{Block, Slab};
use crate::sync::{self, Lock};
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Shards in the table; CPU `n` uses shard `n % MAX_SHARDS`.
pub const MAX_SHARDS: usize = 64;

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
}

/// Allocations from a shard between two upkeeps (`heap::upkeep`).
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
            }),
            heap: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }; MAX_SHARDS],
);

/// Shard heaps made so far.
static MADE: AtomicUsize = AtomicUsize::new(0);

/// How many shard heaps were made (one per CPU that allocated a medium
/// block).
pub fn made() -> usize {
    MADE.load(Ordering::Relaxed)
}

/// Medium allocations between two looks at which CPU a thread runs on.
const CPU_RECHECK: u32 = 64;

/// The shard of the CPU the calling thread runs on, or ran on a few
/// allocations ago (it may move at any time: that only costs locality,
/// never correctness).
#[inline]
fn current_shard() -> &'static Shard {
    let cpu = || {
        // SAFETY: sched_getcpu has no preconditions (glibc reads the rseq
        // area or calls the vDSO; it does not allocate).
        let c = unsafe { libc::sched_getcpu() };
        if c < 0 {
            0
        } else {
            (c as usize % MAX_SHARDS) as u32
        }
    };
    // SAFETY: the calling thread's heap.
    let i = unsafe { heap::shard_hint(crate::tls::heap(), CPU_RECHECK, cpu) };
    &SHARDS.0[i as usize % MAX_SHARDS]
}

/// Is `h` (an owner word without its flags) one of the shard heaps?
#[inline]
pub fn owns(h: usize) -> bool {
    let first = SHARDS.0.as_ptr() as usize;
    h >= first && h < first + core::mem::size_of::<Shards>()
}

/// The shard whose heap is at `h` (`owns(h)` must hold).
fn shard_of(h: usize) -> &'static Shard {
    let i = (h - SHARDS.0.as_ptr() as usize) / core::mem::size_of::<Shard>();
    &SHARDS.0[i]
}

/// Allocate a block of medium class `class` from the calling CPU's shard;
/// null (errno set) when out of memory.
///
/// # Safety
/// `SHARED_FROM <= class < NUM_CLASSES`.
#[inline(never)]
pub unsafe fn alloc(class: usize) -> *mut u8 {
    // The first allocation of the process may be a medium one, from a
    // constructor that runs before ours: the free key and the
    // instrumentation must be set up first (and before the lock: set-up
    // may allocate).
    crate::runtime::ensure_init();
    let s = current_shard();
    let mut st = s.lock.lock();
    let h = s.heap.get().cast::<Heap>();
    // SAFETY: the lock makes us the heap's only user; the heap is made
    // (with its owner word) before its first use; `class` is in range
    // (contract).
    let p = unsafe {
        if !st.made {
            heap::make_shared(h);
            st.made = true;
            MADE.fetch_add(1, Ordering::Relaxed);
        }
        heap::alloc_in(h, class)
    };
    st.allocs += 1;
    let upkeep = st.allocs >= UPKEEP_EVERY;
    if upkeep {
        st.allocs = 0;
    }
    drop(st);
    if upkeep {
        heap::upkeep();
    }
    p
}

/// Free block `b` of `slab`, owned by the shard heap at `h` (`user` as in
/// `heap::dispatch_free`).
///
/// # Safety
/// `owns(h)`, `slab` is a live slab whose owner is `h`, `b` one of its
/// blocks.
#[inline(never)]
pub unsafe fn free(h: usize, slab: *mut Slab, b: *mut Block, user: usize) {
    let s = shard_of(h);
    let _guard = s.lock.lock();
    // SAFETY: a shard heap that owns a slab was made; shard slabs never
    // change owner, so `h` still owns `slab`; the lock makes us the heap's
    // only user.
    unsafe { heap::free_in(s.heap.get().cast(), slab, b, user) }
}

/// Give back every empty slab the shards hold, the current ones included
/// (`malloc_trim`).
pub fn trim() {
    for s in &SHARDS.0 {
        let st = s.lock.lock();
        if st.made {
            // SAFETY: a made heap, under its lock.
            unsafe { heap::release_empty(s.heap.get().cast()) };
        }
    }
}

/// Take every shard lock (fork prepare; before the global locks the shard
/// paths may take: heap pool, abandoned slabs, span and large caches).
pub fn hold_all() {
    for s in &SHARDS.0 {
        sync::hold(&s.lock);
    }
}

/// Release the locks taken by [`hold_all`].
///
/// # Safety
/// As [`sync::release`].
pub unsafe fn release_all() {
    for s in SHARDS.0.iter().rev() {
        // SAFETY: forwarded contract.
        unsafe { sync::release(&s.lock) };
    }
}
