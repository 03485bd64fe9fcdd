//! Process-level machinery: lazy initialisation, the double-free key,
//! heap structs for threads, thread exit, and fork.
//!
//! The first call may come from ld.so, from libc before any constructor
//! has run, or from a thread created before `main`, so everything starts
//! from const-initialised statics and [`ensure_init`] runs on the first
//! slow path (and from an `.init_array` constructor, to create the
//! pthread key early: keys numbered 32 and above make
//! `pthread_setspecific` call `calloc`). Calls `heap`, `span`, `large`,
//! `sync`, `tls`, `os`, `diag`.

use crate::heap::{self, Heap};
use crate::os::{PageSource, OS};
use crate::sync::{self, Lock};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
static FREE_KEY: AtomicUsize = AtomicUsize::new(0);
static THREAD_KEY: AtomicUsize = AtomicUsize::new(usize::MAX);
static KEY_DONE: AtomicBool = AtomicBool::new(false);

/// The value written in the second word of every free block; a block being
/// freed that already holds it is checked for a double free.
#[inline(always)]
pub fn free_key() -> usize {
    FREE_KEY.load(Ordering::Relaxed)
}

/// Set up what the slow paths need; idempotent and cheap once done (one
/// load and a compare, inlined).
#[inline(always)]
pub fn ensure_init() {
    if STATE.load(Ordering::Acquire) != READY {
        init_now();
    }
}

#[cold]
#[inline(never)]
fn init_now() {
    if STATE
        .compare_exchange(UNINIT, BUSY, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // Another thread is initialising (or this one, re-entered from
        // pthread_atfork's allocation): heaps need the free key and the
        // thread key, which come first.
        while !KEY_DONE.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
        return;
    }
    // 16 random bytes the kernel gave the process: no syscall, no
    // allocation. Fall back to an address-derived value.
    // SAFETY: getauxval has no preconditions; AT_RANDOM points to 16
    // readable bytes when present.
    let mut key = unsafe {
        let r = libc::getauxval(libc::AT_RANDOM) as *const usize;
        if r.is_null() {
            &STATE as *const _ as usize ^ 0x9e37_79b9_7f4a_7c15
        } else {
            r.read_unaligned() ^ r.add(1).read_unaligned().rotate_left(17)
        }
    };
    key |= 1; // never a valid pointer, never zero
    FREE_KEY.store(key, Ordering::Release);
    read_options();
    crate::insight::configure();
    create_thread_key();
    KEY_DONE.store(true, Ordering::Release);
    // May allocate (glibc grows its handler list): the key is ready, so
    // a nested malloc works.
    // SAFETY: the handlers are `extern "C"` functions that live forever.
    unsafe {
        libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
    }
    STATE.store(READY, Ordering::Release);
}

fn create_thread_key() {
    let mut k: libc::pthread_key_t = 0;
    // SAFETY: `k` is a valid out-parameter; the destructor lives forever.
    if unsafe { libc::pthread_key_create(&mut k, Some(on_thread_exit)) } == 0 {
        THREAD_KEY.store(k as usize, Ordering::Release);
    } else {
        crate::diag::warn(
            "pthread_key_create failed: memory of exiting threads will not be reclaimed",
        );
    }
}

/// Runs from `.init_array`, before `main` and before most other
/// libraries' constructors, so our pthread key gets a low number.
extern "C" fn constructor() {
    ensure_init();
    crate::insight::start();
}

#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = constructor;

/// Runs from `.fini_array` at exit, after the program's and most
/// libraries' exit handlers (we were initialised first, so we are
/// finalised last): statistics and leak reports see the final state.
extern "C" fn destructor() {
    crate::insight::finish();
}

#[used]
#[link_section = ".fini_array"]
static DESTRUCTOR: extern "C" fn() = destructor;

// ---------------------------------------------------------------------------
// Options, read from the environment once, without allocating.

/// Settings read from `MMPOOL_*` environment variables at start-up.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// `MMPOOL_ARENA_DEBUG=1`: every arena allocation is its own block.
    pub arena_debug: bool,
}

static OPTIONS_ARENA_DEBUG: AtomicBool = AtomicBool::new(false);

extern "C" {
    static environ: *const *const core::ffi::c_char;
}

/// The value of environment variable `name` (bytes after `name=`),
/// found by walking `environ` (no allocation, no locale).
pub fn env_value(name: &[u8]) -> Option<&'static [u8]> {
    // SAFETY: `environ` is a NULL-terminated array of NUL-terminated
    // strings, valid for the life of the process unless the program
    // changes it (setenv), which we read once at start-up.
    unsafe {
        let mut e = environ;
        if e.is_null() {
            return None;
        }
        while !(*e).is_null() {
            let entry = core::ffi::CStr::from_ptr(*e).to_bytes();
            if entry.len() > name.len() && entry.starts_with(name) && entry[name.len()] == b'=' {
                return Some(&entry[name.len() + 1..]);
            }
            e = e.add(1);
        }
    }
    None
}

/// Is the variable set to something other than empty, `0`, `no`, `false`?
pub fn env_flag(name: &[u8]) -> bool {
    matches!(env_value(name), Some(v) if !v.is_empty() && v != b"0" && v != b"no" && v != b"false")
}

fn read_options() {
    OPTIONS_ARENA_DEBUG.store(env_flag(b"MMPOOL_ARENA_DEBUG"), Ordering::Relaxed);
}

/// The options in force.
pub fn options() -> Options {
    ensure_init();
    Options {
        arena_debug: OPTIONS_ARENA_DEBUG.load(Ordering::Relaxed),
    }
}

// ---------------------------------------------------------------------------
// Heap structs

struct Pool {
    free: *mut Heap,
    /// Heaps of exited threads that kept their slabs, newest first.
    parked: *mut Heap,
    parked_n: usize,
    chunk_cur: usize,
    chunk_end: usize,
}
// SAFETY: only accessed under the pool lock.
unsafe impl Send for Pool {}

static POOL: Lock<Pool> = Lock::new(Pool {
    free: null_mut(),
    parked: null_mut(),
    parked_n: 0,
    chunk_cur: 0,
    chunk_end: 0,
});
/// Heaps in use by live threads.
pub static LIVE_HEAPS: AtomicUsize = AtomicUsize::new(0);
/// Heap structs ever made.
pub static HEAPS_MADE: AtomicUsize = AtomicUsize::new(0);
/// Threads that ever got a heap.
pub static THREADS_SEEN: AtomicUsize = AtomicUsize::new(0);

const POOL_CHUNK: usize = 256 * 1024;

/// Heaps of exited threads kept with their slabs at most (glibc keeps
/// every arena; eight cover the threads a server starts and stops at once).
pub const PARK_MAX: usize = 8;
/// A parked heap nobody took for this long is abandoned (its empty slabs
/// go back to the span cache, the rest to the abandoned lists) by the next
/// thread whose slow paths look (every 64th slow path), or by
/// `malloc_trim`.
pub const PARK_MS: u64 = 1000;

/// A heap struct for a new thread: a parked heap (slabs and all: the
/// second field says so) unless `bare`, else a pooled or fresh struct to
/// initialise. (A late heap takes a parked one, typically the one its own
/// thread just parked, and keeps filling the same slabs.)
fn heap_pool_take(bare: bool) -> (*mut Heap, bool) {
    let mut p = POOL.lock();
    if !bare && !p.parked.is_null() {
        let h = p.parked;
        // SAFETY: parked heaps are valid heap structs nobody uses.
        p.parked = unsafe { *heap::pool_next(h) };
        p.parked_n -= 1;
        return (h, true);
    }
    (heap_struct_take(&mut p), false)
}

fn heap_struct_take(p: &mut Pool) -> *mut Heap {
    if !p.free.is_null() {
        let h = p.free;
        // SAFETY: pooled heaps are valid heap structs.
        p.free = unsafe { *heap::pool_next(h) };
        return h;
    }
    let size = core::mem::size_of::<Heap>().next_multiple_of(64);
    if p.chunk_end - p.chunk_cur < size {
        match OS.map(POOL_CHUNK, crate::os::PAGE) {
            Some(c) => {
                p.chunk_cur = c.as_ptr() as usize;
                p.chunk_end = p.chunk_cur + POOL_CHUNK;
            }
            None => return null_mut(),
        }
    }
    let h = p.chunk_cur as *mut Heap;
    p.chunk_cur += size;
    HEAPS_MADE.fetch_add(1, Ordering::Relaxed);
    h
}

/// Return a heap struct to the pool (thread exit). Its remote queue stays:
/// blocks pushed late are drained by the next thread that takes it.
///
/// # Safety
/// `h` must be an abandoned heap nobody uses any more.
pub unsafe fn heap_pool_put(h: *mut Heap) {
    let mut p = POOL.lock();
    // SAFETY: contract.
    unsafe { *heap::pool_next(h) = p.free };
    p.free = h;
}

/// Park the heap of an exiting thread with its slabs, for the next new
/// thread: it starts with carved pages and warm slabs instead of faulting
/// in fresh ones (thread churn). False when [`PARK_MAX`] are parked.
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
        *heap::parked_ms(h) = crate::span::now_ms();
        *heap::pool_next(h) = p.parked;
    }
    p.parked = h;
    p.parked_n += 1;
    true
}

/// Heaps parked now.
pub fn parked_heaps() -> usize {
    POOL.lock().parked_n
}

/// Abandon the heaps parked for [`PARK_MS`] or more (all of them if
/// `all`), oldest first. Cheap when none is parked.
pub fn expire_parked(all: bool) {
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
                while !(*heap::pool_next(*link)).is_null() {
                    link = heap::pool_next(*link);
                }
                let h = *link;
                if !all && crate::span::now_ms().saturating_sub(*heap::parked_ms(h)) < PARK_MS {
                    return;
                }
                *link = null_mut();
                h
            };
            p.parked_n -= 1;
            h
        };
        // SAFETY: unlinked from the parked list: nobody else uses it.
        unsafe { heap::abandon(h) };
    }
}

// ---------------------------------------------------------------------------
// Late heaps: glibc runs pthread-key destructors at most four rounds. A
// destructor of another key that allocates in the last round gives the
// thread a heap after ours ran for the last time, so nobody would abandon
// it. Such heaps are listed with their thread's kernel id and abandoned by
// another thread once that thread is gone.

struct LateHeaps {
    heaps: [(usize, i32); 64],
    n: usize,
}

static LATE: Lock<LateHeaps> = Lock::new(LateHeaps {
    heaps: [(0, 0); 64],
    n: 0,
});
static LATE_COUNT: AtomicUsize = AtomicUsize::new(0);

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

fn thread_gone(tid: i32) -> bool {
    let saved = crate::diag::errno();
    // SAFETY: signal 0 only checks that the thread exists.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, 0) };
    let gone = r == -1 && crate::diag::errno() == libc::ESRCH;
    crate::diag::set_errno(saved);
    gone
}

/// Abandon the late heaps whose threads have exited (cheap when none).
pub fn reclaim_late_heaps() {
    if LATE_COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut gone = [0usize; 64];
    let mut k = 0;
    {
        let mut l = LATE.lock();
        let mut i = 0;
        while i < l.n {
            if thread_gone(l.heaps[i].1) {
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
        unsafe { heap::abandon(h as *mut Heap) };
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
/// thread's exit destructor already ran. Null when out of memory.
pub fn create_thread_heap(late: bool) -> *mut Heap {
    ensure_init();
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
            l.heaps[n] = (h as usize, gettid());
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
        unsafe { heap::unpark(h) };
    } else {
        // SAFETY: a fresh or pooled heap struct (pool memory is zeroed at
        // first, so a fresh struct's remote queue is null).
        unsafe { heap::init_heap(h, crate::insight::active()) };
    }
    crate::tls::set_heap(h);
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

/// The pthread key destructor: the thread is exiting.
extern "C" fn on_thread_exit(arg: *mut libc::c_void) {
    let h = arg.cast::<Heap>();
    if h.is_null() {
        return;
    }
    // Later frees by other destructors of this thread take the slow path;
    // a later malloc makes a new (late) heap and registers it again: glibc
    // runs destructors up to four rounds, and after the last one the late
    // heap is reclaimed by another thread (`reclaim_late_heaps`).
    crate::tls::set_heap(heap::exited_heap());
    unlist_late(h);
    LIVE_HEAPS.fetch_sub(1, Ordering::Relaxed);
    // SAFETY: `h` was this thread's heap; it no longer uses it.
    unsafe {
        // Parked or not, its cached medium blocks go back to the per-CPU
        // heaps for other threads.
        heap::flush_medium_cache(h);
        if !heap_park(h) {
            heap::abandon(h);
        }
    }
}

// ---------------------------------------------------------------------------
// fork: take every global lock before, release in parent and child, so the
// child never inherits a lock held by a thread that does not exist there.
// Order: the instrumentation locks (leak table, then symbol cache, then
// trace file: the order the exit report takes them; no allocator lock is
// held while any of them is taken), then the shard heaps (whose slow paths
// take the ones after them), then late heaps, heap pool, abandoned slabs, span
// cache, large cache.

extern "C" fn fork_prepare() {
    sync::hold(crate::leak::lock_for_fork());
    sync::hold(crate::symbols::lock_for_fork());
    sync::hold(crate::trace::lock_for_fork());
    crate::shared_heap::hold_all();
    sync::hold(&LATE);
    sync::hold(&POOL);
    sync::hold(&heap::ABANDONED);
    sync::hold(crate::span::SPANS.lock_for_fork());
    sync::hold(crate::large::lock_for_fork());
}

fn release_all() {
    // SAFETY: fork_prepare took all of these in this thread (parent), or
    // the child is a copy of that thread and the only one left.
    unsafe {
        sync::release(crate::large::lock_for_fork());
        sync::release(crate::span::SPANS.lock_for_fork());
        sync::release(&heap::ABANDONED);
        sync::release(&POOL);
        sync::release(&LATE);
        crate::shared_heap::release_all();
        sync::release(crate::trace::lock_for_fork());
        sync::release(crate::symbols::lock_for_fork());
        sync::release(crate::leak::lock_for_fork());
    }
}

extern "C" fn fork_parent() {
    release_all();
}

extern "C" fn fork_child() {
    release_all();
}
