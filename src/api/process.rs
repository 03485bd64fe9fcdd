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
//! `insight::symbols`, `insight::trace`, `os::process`.

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};

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
// fork: no allocator lock is held across it. Holding them from a
// pthread_atfork prepare handler (as before) deadlocks: glibc's fork
// takes its stdio list lock (and nss's) after the handlers, while a
// thread holding a FILE lock waits in realloc (getline) for one of ours,
// and a thread in fflush(NULL) holds the list lock waiting for that FILE;
// and a fork from a signal handler waits for a lock its own interrupted
// frame holds. Instead, the child looks at every lock: one held by a
// thread that does not exist there guards a structure that may be half
// updated, and that structure is rebuilt empty (what it held is lost to
// the child: a leak, never corruption); one held by the forking thread
// itself stays, as its interrupted frame resumes and finishes.

/// The kernel id of the thread that forks, in the parent (late heaps are
/// listed by thread id, and the child's thread has a new one).
static FORK_PARENT_TID: AtomicI32 = AtomicI32::new(0);

extern "C" fn fork_prepare() {
    FORK_PARENT_TID.store(crate::os::process::gettid(), Ordering::Relaxed);
}

extern "C" fn fork_parent() {}

extern "C" fn fork_child() {
    crate::core::span::SPANS.after_fork_child();
    crate::core::large::after_fork_child();
    crate::heap::abandoned::after_fork_child();
    crate::heap::medium::after_fork_child();
    crate::heap::lifecycle::after_fork_child(FORK_PARENT_TID.load(Ordering::Relaxed));
    crate::insight::leak::after_fork_child();
    crate::insight::symbols::after_fork_child();
    crate::insight::trace::after_fork_child();
}
