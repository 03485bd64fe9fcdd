//! # mmpool — a memory pool that replaces `malloc`
//!
//! `libmmpool.so` serves the whole malloc API from size-class slabs and
//! direct mappings, so unmodified C and C++ programs run on it with
//! `LD_PRELOAD=libmmpool.so ./prog`; C code can also link it through
//! `include/mmpool.h`.
//!
//! ## Crate map (dependencies point downward only)
//!
//! ```text
//! ffi          C exports: one-line wrappers; the override names behind `override`
//! libc_api     C semantics: errno, overflow, realloc(p, 0), EINVAL, foreign pointers
//! arena        per-connection pools: bump blocks, large list, cleanups
//! insight      statistics, leak reports, mtrace traces (stats, leak, trace, symbols)
//! heap         per-thread heaps: size class -> current slab; slow paths; thread exit
//! shared_heap  per-CPU heaps under a lock for the medium classes (1.25-32 KiB)
//! runtime      lazy initialisation, options, the thread-exit key, fork handlers
//! slab | large small blocks of one class | direct mappings with a bounded cache
//! span         the span cache: granule-aligned spans for slabs, purged when idle
//! pagemap      address -> span header, the "is this ours?" test
//! size_class   the class tables
//! os | sync    mmap/munmap/madvise/mremap behind a trait | spin locks that yield
//! list         intrusive doubly linked lists
//! diag         allocation-free diagnostics on stderr
//! ```
//!
//! ## Glossary
//!
//! - **granule**: 64 KiB, the unit of the page map; every span is a whole
//!   number of granules and starts on a granule boundary, so no granule is
//!   shared between two spans or with foreign memory.
//! - **span**: a granule-aligned run of memory with a header at its head
//!   whose first field is a tag (`SLAB`, `LARGE`, `FREE`).
//! - **slab**: a span carved into equal blocks of one size class.
//! - **large block**: one allocation above [`size_class::SMALL_MAX`], in a
//!   mapping of its own, returned to the OS on free (after a short stay in
//!   a bounded cache).
//! - **heap**: a thread's set of slabs, one current slab per size class.
//!   Only its thread touches it, except for the `remote` queue where other
//!   threads push blocks they free.
//! - **per-CPU heap** (shard): a heap for the medium classes (blocks of
//!   1.25-32 KiB) shared by the threads running on one CPU, touched only
//!   under its lock; see [`shared_heap`].
//! - **parked heap**: the heap of an exited thread, kept whole (at most 8,
//!   for at most about a second) for the next new thread to take over.
//! - **abandoned slab**: a slab of a heap given up (not parked, or parked
//!   too long) while blocks were still live; it sits on a global list until
//!   it empties or another thread adopts it.
//!
//! ## Rules for code in this crate
//!
//! It runs inside other programs' `malloc`: nothing here allocates through
//! the global allocator (no `format!`, `Vec`, `String`, `std::env`), no
//! `thread_local!` with a destructor, no panics on any path that can be
//! reached from C (the profiles abort on panic anyway), and no lock is
//! held while calling code that could allocate.

#![warn(missing_docs)]
// The shipped library links no Rust std: std's panic machinery alone
// (backtrace symbolisation, demangling, inflate) was 200 KiB of text and
// pulled in libgcc_s, resident pages in every program on the pool. Unit
// tests and integration tests (the `std` feature, switched on through the
// dev-dependency on this crate) and targets without the `global_asm!` TLS
// word use std.
#![cfg_attr(not(any(test, feature = "std", not(target_arch = "x86_64"))), no_std)]

/// A panic cannot unwind out of `malloc`; it ends the process with an
/// `mmpool:` line (the profiles set `panic = "abort"` as well).
#[cfg(not(any(test, feature = "std", not(target_arch = "x86_64"))))]
#[panic_handler]
fn on_panic(_: &core::panic::PanicInfo<'_>) -> ! {
    diag::fatal("internal error: panic inside the allocator", 0)
}

// core is precompiled with unwind tables that name `rust_eh_personality`,
// which std would define. Nothing unwinds through this library (panics
// abort), but a C++ exception thrown by an arena cleanup handler would
// reach our frames: the routine answers _URC_FATAL_PHASE1_ERROR (3), so
// the throw ends in std::terminate instead of skipping our unlock paths.
// Hidden, so it never interposes on another Rust library's routine.
#[cfg(not(any(test, feature = "std", not(target_arch = "x86_64"))))]
core::arch::global_asm!(
    ".globl rust_eh_personality",
    ".hidden rust_eh_personality",
    ".type rust_eh_personality,@function",
    "rust_eh_personality:",
    "mov eax, 3",
    "ret",
    ".size rust_eh_personality, . - rust_eh_personality",
);

pub mod arena;
pub mod diag;
pub mod ffi;
pub mod heap;
pub mod insight;
pub mod large;
pub mod leak;
pub mod libc_api;
pub mod list;
pub mod os;
pub mod pagemap;
pub mod runtime;
pub mod shared_heap;
pub mod size_class;
pub mod slab;
pub mod span;
pub mod stats;
pub mod symbols;
pub mod sync;
pub mod tls;
pub mod trace;
