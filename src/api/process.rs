//! The process around the allocator: lazy initialisation, the
//! constructor and destructor, and `fork`.
//!
//! The first call may come from ld.so, from libc before any constructor
//! has run, or from a thread created before `main`, so everything starts
//! from const-initialised statics and [`ensure_init`] runs before every
//! slow path that needs the key, the options or a heap (and from an
//! `.init_array` constructor, to create the pthread key early: keys
//! numbered 32 and above make `pthread_setspecific` call `calloc`).
//!
//! States: `UNINIT -> BUSY -> READY`, once. While one thread initialises,
//! others (and the initialising thread itself, re-entered from
//! `pthread_atfork`'s allocation) wait only until the key and the thread
//! key are ready (`KEY_DONE`), which is all a heap needs.
//!
//! Uses: `core::config`, `core::large`, `core::span`, `heap::abandoned`,
//! `heap::lifecycle`, `heap::medium`, `insight`, `insight::leak`,
//! `insight::symbols`, `insight::trace`, `util::lock`.

use crate::util::lock;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
static KEY_DONE: AtomicBool = AtomicBool::new(false);

/// Set up what the slow paths need; idempotent and cheap once done (one
/// load and a compare, inlined).
#[inline(always)]
pub(crate) fn ensure_init() {
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
    crate::core::config::init();
    crate::insight::configure();
    crate::heap::lifecycle::create_thread_key();
    KEY_DONE.store(true, Ordering::Release);
    // May allocate (glibc grows its handler list): the key is ready, so
    // a nested malloc works.
    // SAFETY: the handlers are `extern "C"` functions that live forever.
    unsafe {
        libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
    }
    STATE.store(READY, Ordering::Release);
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
// fork: take every global lock before, release in parent and child, so the
// child never inherits a lock held by a thread that does not exist there.
// Order: the instrumentation locks (leak table, then symbol cache, then
// trace file: the order the exit report takes them; no allocator lock is
// held while any of them is taken), then the shard heaps (whose slow paths
// take the ones after them), then late heaps, heap pool, abandoned slabs,
// span cache, large cache.

extern "C" fn fork_prepare() {
    lock::hold(crate::insight::leak::lock_for_fork());
    lock::hold(crate::insight::symbols::lock_for_fork());
    lock::hold(crate::insight::trace::lock_for_fork());
    crate::heap::medium::hold_all();
    let (late, pool) = crate::heap::lifecycle::locks_for_fork();
    lock::hold(late);
    lock::hold(pool);
    lock::hold(crate::heap::abandoned::lock_for_fork());
    lock::hold(crate::core::span::SPANS.lock_for_fork());
    lock::hold(crate::core::large::lock_for_fork());
}

fn release_all() {
    let (late, pool) = crate::heap::lifecycle::locks_for_fork();
    // SAFETY: fork_prepare took all of these in this thread (parent), or
    // the child is a copy of that thread and the only one left.
    unsafe {
        lock::release(crate::core::large::lock_for_fork());
        lock::release(crate::core::span::SPANS.lock_for_fork());
        lock::release(crate::heap::abandoned::lock_for_fork());
        lock::release(pool);
        lock::release(late);
        crate::heap::medium::release_all();
        lock::release(crate::insight::trace::lock_for_fork());
        lock::release(crate::insight::symbols::lock_for_fork());
        lock::release(crate::insight::leak::lock_for_fork());
    }
}

extern "C" fn fork_parent() {
    release_all();
}

extern "C" fn fork_child() {
    release_all();
}
