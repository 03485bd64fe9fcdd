//! Heaps coming and going: a thread's first heap, its exit, parked heaps
//! for the next thread, late heaps, giving a heap up, and the periodic
//! upkeep that returns idle memory.
//!
//! Heap structs come from a pool of mapped chunks and are never unmapped
//! (a stale owner word in a slab stays safe to push a remote free to).
//! At thread exit (a pthread-key destructor, never a Rust TLS destructor)
//! the heap is *parked* with its current slabs for the next new thread
//! (at most [`PARK_MAX`], for at most [`PARK_MS`]), its other slabs
//! released if empty and abandoned if not; otherwise it is given up
//! ([`abandon`]): its medium cache flushed, its queue drained and closed,
//! its empty slabs released and the others abandoned.
//!
//! Late heaps: glibc runs pthread-key destructors at most four rounds; a
//! destructor of another key that allocates in the last round gives the
//! thread a heap after ours ran for the last time. Such heaps are listed
//! with their thread's kernel id and given up by another thread once that
//! thread is gone.
//!
//! Invariants, under the pool lock: `parked_n == |parked|`; a heap is on
//! at most one of `free` and `parked`; `LIVE_HEAPS` counts heaps that a
//! live thread's TLS word names. Lock order: late heaps, then the pool.
//!
//! Uses: `core::config`, `core::large`, `core::lookup`, `core::size_class`,
//! `core::slab`, `core::span`, `heap::abandoned`, `heap::free`,
//! `heap::medium`, `heap::quarantine`, `heap::remote`, `heap::secure`,
//! `heap::slabs`, `heap::tls`, `heap::types`, `os`, `os::clock`,
//! `os::process`, `util::diag`, `util::lock`, `util::mapped`.

use crate::core::slab::Block;
use crate::core::span::SPANS;
use crate::heap::types::{
    exited_heap, init_heap, is_thread_heap, unpark, Heap, SLAB_CACHE_EMPTY, SLAB_CACHE_LEN,
};
use crate::heap::{abandoned, free, medium, remote, slabs, tls};
use crate::os::{PageSource, OS};
use crate::util::lock::Lock;
use crate::util::mapped::MappedVec;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicUsize, Ordering};

static THREAD_KEY: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Create the pthread key whose destructor runs at thread exit. Called
/// once, early (keys numbered 32 and above make `pthread_setspecific`
/// call `calloc`).
pub(crate) fn create_thread_key() {
    let mut k: libc::pthread_key_t = 0;
    // SAFETY: `k` is a valid out-parameter; the destructor lives forever.
    if unsafe { libc::pthread_key_create(&mut k, Some(on_thread_exit)) } == 0 {
        THREAD_KEY.store(k as usize, Ordering::Release);
    } else {
        crate::util::diag::warn(
            "pthread_key_create failed: memory of exiting threads will not be reclaimed",
        );
    }
}

struct Pool {
    free: *mut Heap,
    /// Heaps of exited threads that kept their current slabs, newest first.
    parked: *mut Heap,
    parked_n: usize,
    chunk_cur: usize,
    chunk_end: usize,
    /// Every chunk heap structs were made in: (start, end).
    chunks: MappedVec<(usize, usize)>,
}
// SAFETY: only accessed under the pool lock.
unsafe impl Send for Pool {}

impl Pool {
    const EMPTY: Pool = Pool {
        free: null_mut(),
        parked: null_mut(),
        parked_n: 0,
        chunk_cur: 0,
        chunk_end: 0,
        chunks: MappedVec::EMPTY,
    };
}

static POOL: Lock<Pool> = Lock::new(Pool::EMPTY);
/// Heaps in use by live threads.
pub(crate) static LIVE_HEAPS: AtomicUsize = AtomicUsize::new(0);
/// Heap structs ever made.
pub(crate) static HEAPS_MADE: AtomicUsize = AtomicUsize::new(0);
/// Threads that ever got a heap.
pub(crate) static THREADS_SEEN: AtomicUsize = AtomicUsize::new(0);

const POOL_CHUNK: usize = 256 * 1024;
/// Bytes a heap struct takes in a pool chunk (64-aligned: the owner word
/// of a slab keeps flags in its low bits).
const HEAP_SLOT: usize = core::mem::size_of::<Heap>().next_multiple_of(64);

/// Heaps of exited threads kept with their current slabs at most (glibc keeps
/// every arena; eight cover the threads a server starts and stops at once).
const PARK_MAX: usize = 8;
/// A parked heap nobody took for this long is given up by the next
/// upkeep, or by `malloc_trim`.
const PARK_MS: u64 = 1000;

/// `parked_n`, written under the pool lock whenever it changes: the
/// upkeep (every few hundred frees of a malloc/free loop) looks here
/// before it takes the lock (`LATE_COUNT` does the same for late heaps).
static PARKED_N: AtomicUsize = AtomicUsize::new(0);

/// A heap struct for a new thread: a parked heap (its current slabs: the
/// second field says so) unless `bare`, else a pooled or fresh struct to
/// initialise.
fn heap_pool_take(bare: bool) -> (*mut Heap, bool) {
    let mut p = POOL.lock();
    if !bare && !p.parked.is_null() {
        let h = p.parked;
        // SAFETY: parked heaps are valid heap structs nobody uses.
        p.parked = unsafe { (*h).local.pool_next };
        p.parked_n -= 1;
        PARKED_N.store(p.parked_n, Ordering::Relaxed);
        return (h, true);
    }
    if !p.free.is_null() {
        let h = p.free;
        // SAFETY: pooled heaps are valid heap structs.
        p.free = unsafe { (*h).local.pool_next };
        return (h, false);
    }
    if p.chunk_end - p.chunk_cur < HEAP_SLOT {
        // A chunk for many heaps, or (a tight address-space limit) one.
        let one = HEAP_SLOT.next_multiple_of(crate::os::PAGE);
        let (c, len) = match OS.map(POOL_CHUNK, crate::os::PAGE) {
            Some(c) => (c, POOL_CHUNK),
            None => match OS.map(one, crate::os::PAGE) {
                Some(c) => (c, one),
                None => return (null_mut(), false),
            },
        };
        let c = c.as_ptr() as usize;
        if !p.chunks.push((c, c + len)) {
            // SAFETY: just mapped, never handed out.
            unsafe { OS.unmap(core::ptr::NonNull::new_unchecked(c as *mut u8), len) };
            return (null_mut(), false);
        }
        p.chunk_cur = c;
        p.chunk_end = c + len;
    }
    let h = p.chunk_cur as *mut Heap;
    p.chunk_cur += HEAP_SLOT;
    HEAPS_MADE.fetch_add(1, Ordering::Relaxed);
    (h, false)
}

/// Return a heap struct to the pool. Its remote queue stays closed.
///
/// # Safety
/// `h` must be a heap given up, nobody using it any more.
unsafe fn heap_pool_put(h: *mut Heap) {
    let mut p = POOL.lock();
    // SAFETY: contract.
    unsafe { (*h).local.pool_next = p.free };
    p.free = h;
}

/// Park the heap of an exiting thread with its current slabs, for the
/// next new thread: it starts with carved pages and warm slabs instead of
/// faulting in fresh ones (thread churn). False when [`PARK_MAX`] are
/// parked.
///
/// # Safety
/// `h` must be a heap nobody uses any more, its remote queue open.
unsafe fn heap_park(h: *mut Heap) -> bool {
    let mut p = POOL.lock();
    if p.parked_n >= PARK_MAX {
        return false;
    }
    // SAFETY: contract.
    unsafe {
        (*h).local.parked_ms = crate::os::clock::now_ms();
        (*h).local.pool_next = p.parked;
    }
    p.parked = h;
    p.parked_n += 1;
    PARKED_N.store(p.parked_n, Ordering::Relaxed);
    true
}

/// Heaps parked now.
pub(crate) fn parked_heaps() -> usize {
    POOL.lock().parked_n
}

/// Give up the heaps parked for [`PARK_MS`] or more (all of them if
/// `all`), oldest first. Cheap when none is parked.
pub(crate) fn expire_parked(all: bool) {
    if !all && PARKED_N.load(Ordering::Relaxed) == 0 {
        return;
    }
    loop {
        let h = {
            let mut p = POOL.lock();
            if p.parked.is_null() {
                return;
            }
            // The oldest is the last of the list.
            let mut link: *mut *mut Heap = &mut p.parked;
            // SAFETY: the parked list links valid heap structs; the pool
            // lock is held.
            let h = unsafe {
                while !(*(*link)).local.pool_next.is_null() {
                    link = &mut (*(*link)).local.pool_next;
                }
                let h = *link;
                if !all && crate::os::clock::now_ms().saturating_sub((*h).local.parked_ms) < PARK_MS
                {
                    return;
                }
                *link = null_mut();
                h
            };
            p.parked_n -= 1;
            PARKED_N.store(p.parked_n, Ordering::Relaxed);
            h
        };
        // SAFETY: unlinked from the parked list: nobody else uses it.
        unsafe { abandon(h) };
    }
}

struct LateHeaps {
    heaps: [(usize, i32); 64],
    n: usize,
}

impl LateHeaps {
    const EMPTY: LateHeaps = LateHeaps {
        heaps: [(0, 0); 64],
        n: 0,
    };
}

static LATE: Lock<LateHeaps> = Lock::new(LateHeaps::EMPTY);
static LATE_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Give up the late heaps whose threads have exited (cheap when none).
pub(crate) fn reclaim_late_heaps() {
    if LATE_COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut gone = [0usize; 64];
    let mut k = 0;
    {
        let mut l = LATE.lock();
        let mut i = 0;
        while i < l.n {
            if crate::os::process::thread_gone(l.heaps[i].1) {
                gone[k] = l.heaps[i].0;
                k += 1;
                l.n -= 1;
                let last = l.n;
                l.heaps[i] = l.heaps[last];
            } else {
                i += 1;
            }
        }
        LATE_COUNT.store(l.n, Ordering::Relaxed);
    }
    for &h in &gone[..k] {
        LIVE_HEAPS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: the heap's thread is gone: nobody else uses the heap.
        unsafe { abandon(h as *mut Heap) };
    }
}

/// Forget `h` as a late heap (its thread's destructor did run for it).
fn unlist_late(h: *mut Heap) {
    if LATE_COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut l = LATE.lock();
    if let Some(i) = l.heaps[..l.n].iter().position(|e| e.0 == h as usize) {
        l.n -= 1;
        let last = l.n;
        l.heaps[i] = l.heaps[last];
        LATE_COUNT.store(l.n, Ordering::Relaxed);
    }
}

/// Give the calling thread a heap (its first slow path); `late`: the
/// thread's exit destructor already ran. Null when out of memory. The
/// process must be initialised (`api::process`).
pub(crate) fn create_thread_heap(late: bool) -> *mut Heap {
    if !late {
        reclaim_late_heaps();
    }
    let (h, parked) = if late {
        // Lock order: late heaps, then the pool. The late list is checked
        // for room first: a late heap that cannot be listed would never be
        // reclaimed, so it must not take a parked heap's slabs with it.
        let mut l = LATE.lock();
        let listed = l.n < l.heaps.len();
        let (h, parked) = heap_pool_take(!listed);
        if !h.is_null() && listed {
            let n = l.n;
            l.heaps[n] = (h as usize, crate::os::process::gettid());
            l.n += 1;
            LATE_COUNT.store(l.n, Ordering::Relaxed);
        }
        (h, parked)
    } else {
        heap_pool_take(false)
    };
    if h.is_null() {
        return h;
    }
    if parked {
        // SAFETY: a parked heap, taken off the list: ours alone now.
        unsafe { unpark(h) };
    } else {
        // SAFETY: a fresh or pooled heap struct (pooled ones are closed
        // and drained).
        unsafe { init_heap(h, crate::core::config::instrumented()) };
    }
    tls::set_heap(h);
    LIVE_HEAPS.fetch_add(1, Ordering::Relaxed);
    THREADS_SEEN.fetch_add(1, Ordering::Relaxed);
    let k = THREAD_KEY.load(Ordering::Acquire);
    if k != usize::MAX {
        // SAFETY: a key we created. With a key below 32 this does not
        // allocate; above, glibc's calloc re-enters us with the heap set.
        unsafe { libc::pthread_setspecific(k as libc::pthread_key_t, h.cast()) };
    }
    h
}

/// The calling thread's heap, made now if it has none (instrumentation
/// needs one to mark its hooks). Null when out of memory.
pub(crate) fn thread_heap() -> *mut Heap {
    let h = tls::heap();
    if is_thread_heap(h) {
        h
    } else {
        create_thread_heap(h == exited_heap())
    }
}

/// The pthread key destructor: the thread is exiting.
extern "C" fn on_thread_exit(arg: *mut libc::c_void) {
    let h = arg.cast::<Heap>();
    if h.is_null() {
        return;
    }
    // Later frees by other destructors of this thread take the slow path;
    // a later malloc makes a new (late) heap and registers it again.
    tls::set_heap(exited_heap());
    unlist_late(h);
    LIVE_HEAPS.fetch_sub(1, Ordering::Relaxed);
    // SAFETY: `h` was this thread's heap; it no longer uses it.
    unsafe {
        // Parked or not, what it holds for others goes back.
        hand_back(h);
        // Only the current slabs stay with the heap; the others go back
        // (empty) or to the abandoned lists, where any thread short of
        // their class adopts them. A heap parked with all its slabs kept
        // their free space from every live thread until a new thread
        // took it: in a larson-style server (each thread frees the blocks
        // of its exited predecessor) that free space was a third of the
        // peak (see the README's "Thread exit").
        abandoned::abandon_slabs(&mut (*h).local, true);
        if !heap_park(h) {
            abandon(h);
        }
    }
}

/// What a heap whose thread is gone (or exiting) holds for others goes
/// back, in this order: its quarantined blocks (the secure build) to
/// their slabs, its cached medium blocks to the per-CPU heaps, its
/// outbox to the blocks' owners, the blocks other threads freed into its
/// slabs (its remote queue) to those slabs, and its spare spans to the
/// span cache. Its slabs stay: the caller abandons all of them
/// ([`abandon`]) or all but the current ones (a heap that parks).
///
/// # Safety
/// Nobody else uses `heap`: the calling thread's own heap at its exit,
/// or a heap given up ([`abandon`]'s contract).
unsafe fn hand_back(heap: *mut Heap) {
    // SAFETY: contract.
    unsafe {
        if crate::core::config::SECURE {
            crate::heap::secure::drain(heap);
        }
        medium::flush_cache(heap);
        free::flush_outbox(heap);
        free::drain_remote(heap);
        slabs::release_spares(&mut (*heap).local);
    }
}

/// Give up a heap: its slabs are released or abandoned, its remote queue
/// drained and closed, its struct returned to the pool.
///
/// # Safety
/// Nobody may use `heap` any more: the calling thread's own heap at its
/// exit, or a parked or late heap whose thread is gone, off its list.
pub(crate) unsafe fn abandon(heap: *mut Heap) {
    // SAFETY: contract: the heap is ours alone now.
    unsafe {
        hand_back(heap);
        let h = &mut (*heap).local;
        h.clear_current();
        h.slab_cache = [SLAB_CACHE_EMPTY; SLAB_CACHE_LEN];
        abandoned::abandon_slabs(h, false);
        // Close the queue: blocks pushed while we abandoned are freed here
        // (their slabs are abandoned now: dispatch frees them under the
        // lock); later pushers find it closed and look again.
        free::free_chain(heap, remote::close(&(*heap).remote));
        heap_pool_put(heap);
    }
}

/// Periodic upkeep, every 64 slow paths of a thread heap, every 256 frees
/// into a thread heap's current slab of a class (`core::slab`'s
/// `CURRENT_TICKS`) and every 256 allocations from a per-CPU heap (never
/// under a heap lock): purge idle
/// spans and cached large ranges, reclaim late heaps, give up heaps
/// parked too long.
pub(crate) fn upkeep() {
    SPANS.tick();
    crate::core::large::tick();
    reclaim_late_heaps();
    expire_parked(false);
}

/// Give free memory back to the OS now (`malloc_trim`): every parked and
/// late heap given up, the caller's medium cache flushed, every empty
/// slab of the per-CPU heaps and of the caller's heap released (with the
/// caller's spare spans), idle spans purged, cached large ranges
/// unmapped. True if any was.
pub(crate) fn trim() -> bool {
    reclaim_late_heaps();
    expire_parked(true);
    let own = tls::heap();
    if is_thread_heap(own) {
        // SAFETY: the calling thread's own heap.
        unsafe {
            medium::flush_cache(own);
            free::flush_outbox(own);
        }
    }
    medium::trim();
    if is_thread_heap(own) {
        // SAFETY: the calling thread's own heap.
        unsafe {
            slabs::release_empty(own);
            slabs::release_spares(&mut (*own).local);
        }
    }
    let a = SPANS.purge_all();
    let b = crate::core::large::trim();
    a + b > 0
}

/// Call `f` with every heap struct ever made (live, parked, or pooled),
/// under the pool lock. The heaps of other threads change under `f`: it
/// reads their atomic or word-sized counters, nothing else.
pub(crate) fn for_each_heap(mut f: impl FnMut(*mut Heap)) {
    let p = POOL.lock();
    for i in 0..p.chunks.len() {
        let (start, mut end) = p.chunks.get(i);
        if i + 1 == p.chunks.len() {
            end = p.chunk_cur;
        }
        let mut a = start;
        while a + HEAP_SLOT <= end {
            f(a as *mut Heap);
            a += HEAP_SLOT;
        }
    }
}

/// Bytes the program freed that are still counted in their slab's
/// `used`: blocks in remote queues and outboxes, and the
/// secure build's quarantined small blocks (statistics; medium blocks are
/// counted
/// by their records, which a free unseals, so medium caches need no
/// correction).
/// Other threads' heaps change meanwhile: their counters are read as
/// they are, and a queue walk follows only links that name a block of
/// one of our slabs.
pub(crate) fn freed_not_collected() -> usize {
    let mut bytes = 0;
    let mut steps = 0usize;
    for_each_heap(|h| {
        // SAFETY: heap structs stay mapped; word-sized fields read as
        // they are (volatile: their owners write them).
        unsafe {
            let mut b = (*h).remote.load(Ordering::Acquire) as usize;
            while b > crate::heap::remote::CLOSED as usize && steps < 1 << 20 {
                steps += 1;
                let Some(crate::core::lookup::Span::Slab(s)) = crate::core::lookup::span_of(b)
                else {
                    break;
                };
                if (*s).block_containing(b) != Some(b) {
                    break;
                }
                bytes += core::ptr::read_volatile(&raw const (*s).block_size) as usize;
                b = core::ptr::read_volatile(&raw const (*(b as *const Block)).chain) as usize;
            }
            // Blocks waiting in its outbox.
            bytes += (*h).local.outbox.bytes.load(Ordering::Relaxed);
            // The secure build's quarantined small blocks (medium ones no
            // longer count: their records are cleared).
            if crate::core::config::SECURE {
                bytes += crate::heap::quarantine::Quarantine::bytes_up_to(
                    &raw const (*h).local.quarantine,
                    crate::core::size_class::DIRECT_MAX,
                );
            }
        }
    });
    bytes
}

/// Hold the pool's and the late list's locks (tests of the fork child's
/// rebuild).
#[cfg(test)]
pub(crate) fn hold_for_test() -> (
    crate::util::lock::LockGuard<'static, impl Sized>,
    crate::util::lock::LockGuard<'static, impl Sized>,
) {
    (LATE.lock(), POOL.lock())
}

/// In a fork child. The heap pool and the late-heap list, if their lock
/// was held by a thread that does not exist here, may be half updated:
/// start them afresh (the pooled and parked heaps are lost to this
/// process). Late heaps listed for the forking thread, `parent_tid` in
/// the parent, get the child's thread id (the child has the same heap).
pub(crate) fn after_fork_child(parent_tid: i32) {
    if POOL.held_by_other_thread() {
        // SAFETY: the child's only thread; no guard exists.
        unsafe { POOL.reset_in_child(|_| Pool::EMPTY) };
        PARKED_N.store(0, Ordering::Relaxed);
    }
    if LATE.held_by_other_thread() {
        // SAFETY: as above.
        unsafe { LATE.reset_in_child(|_| LateHeaps::EMPTY) };
        LATE_COUNT.store(0, Ordering::Relaxed);
    } else {
        let me = crate::os::process::gettid();
        let mut l = LATE.lock();
        let n = l.n;
        for e in &mut l.heaps[..n] {
            if e.1 == parent_tid {
                e.1 = me;
            }
        }
    }
}
