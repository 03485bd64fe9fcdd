//! # mmpool — a memory pool that replaces `malloc`
//!
//! `libmmpool.so` serves the whole malloc API from size-class slabs and
//! direct mappings, so unmodified C and C++ programs run on it with
//! `LD_PRELOAD=libmmpool.so ./prog`; C code can also link it through
//! `include/mmpool.h`. From Rust, [`MmPool`] is a global allocator
//! (`#[global_allocator] static GLOBAL: mmpool::MmPool = mmpool::MmPool;`,
//! with [`owns`] and [`stats`]), [`arena::Arena`] a safe per-connection
//! arena, and [`ffi`] the C API.
//!
//! ## Crate map: the layers, lowest first
//!
//! Each folder of `src/` is a layer and uses only the layers before it
//! ([`LAYERS`]; `tests/layers.rs` reads the sources and fails on an
//! upward `use` or a cycle between modules).
//!
//! ```text
//! os/       the operating system: pages (PageSource: mmap, or a heap-backed
//!           source in tests), environment, clock, process facts, files, errno
//! util/     intrusive lists, the spin lock, allocation-free diagnostics
//! core/     config (key, options), size classes, page map, span cache, slabs,
//!           large blocks and their cache, lookup (the one span classifier),
//!           hooks (how the core tells insight what happens)
//! heap/     heaps: types, tls, slabs, abandoned slabs, remote queues,
//!           per-CPU medium heaps, free, lifecycle (pool, parking, late
//!           heaps, thread exit, upkeep, trim), alloc, invariant checker
//! insight/  stack capture, symbols, statistics, leak table and report, trace
//! api/      C and glibc semantics (errno, overflow, realloc(p, 0), foreign
//!           pointers), process (init, constructor, fork), arenas, the
//!           Rust global allocator (MmPool, owns, stats)
//! ffi/      the C exports: one-line wrappers; standard names behind `override`
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
//! - **large block**: one allocation above the small limit (64 KiB), in a
//!   mapping of its own, returned to the OS on free (after a short stay in
//!   a bounded cache).
//! - **heap**: a set of slabs, one current slab per size class: a
//!   thread's own (only its thread touches it, except the `remote` queue
//!   where other threads push blocks they free), or a per-CPU heap.
//! - **per-CPU heap** (shard): a heap for the medium classes (blocks of
//!   1.25-64 KiB) shared by the threads running on one CPU, touched only
//!   under its lock.
//! - **parked heap**: the heap of an exited thread, kept whole (at most 8,
//!   for at most about a second) for the next new thread to take over.
//! - **abandoned slab**: a slab of a heap given up while blocks were still
//!   live; it sits on a global list until it empties or another thread
//!   adopts it.
//! - **mark**: the word a free block holds after its link: the process's
//!   secret key mixed with the block's address, cleared when the block is
//!   handed out; finding it in a block being freed means a double free.
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
// pulled in libgcc_s, resident pages in every program on the pool. The
// Makefile builds it with `--cfg mmpool_shipped` (`make lib`); every other
// build (the rlib a Rust program depends on, tests, and targets without
// the `global_asm!` TLS word) is an ordinary std crate with no panic
// handler or personality routine of its own, so it links into any std
// program.
#![cfg_attr(all(mmpool_shipped, target_arch = "x86_64", not(test)), no_std)]

/// The layers, lowest first: each folder of `src/` may use only the
/// folders before it in this list (`tests/layers.rs` checks the sources
/// against it).
pub const LAYERS: [&str; 7] = ["os", "util", "core", "heap", "insight", "api", "ffi"];

mod api;
mod core;
pub mod ffi;
mod heap;
mod insight;
mod os;
mod util;

pub use api::global::{owns, stats, MmPool};
pub use insight::stats::{ClassStats, Stats};

/// Arenas: one pool per connection (the safe Rust face; C uses
/// `mmpool_arena_*`).
pub mod arena {
    pub use crate::api::arena::safe::{Arena, ChildArena};
    pub use crate::api::arena::ArenaStats;
}

/// Check every invariant of the calling thread's heap and of its slabs
/// (lists, counts, free-list contents, the fast-path tables, the slab
/// and medium caches); stop the program with an `mmpool: check: ...`
/// message naming the first violation. Returns the number of slabs
/// checked. For tests: it walks the heap, so it is slow.
pub fn check_heap() -> usize {
    heap::check::check_thread_heap()
}

/// A panic cannot unwind out of `malloc`; it ends the process with an
/// `mmpool:` line (the profiles set `panic = "abort"` as well).
#[cfg(all(mmpool_shipped, target_arch = "x86_64", not(test)))]
#[panic_handler]
fn on_panic(_: &::core::panic::PanicInfo<'_>) -> ! {
    util::diag::fatal("internal error: panic inside the allocator", 0)
}

// core is precompiled with unwind tables that name `rust_eh_personality`,
// which std would define. Nothing unwinds through this library (panics
// abort), but a C++ exception thrown by an arena cleanup handler would
// reach our frames: the routine answers _URC_FATAL_PHASE1_ERROR (3), so
// the throw ends in std::terminate instead of skipping our unlock paths.
// Hidden, so it never interposes on another Rust library's routine.
#[cfg(all(mmpool_shipped, target_arch = "x86_64", not(test)))]
::core::arch::global_asm!(
    ".globl rust_eh_personality",
    ".hidden rust_eh_personality",
    ".type rust_eh_personality,@function",
    "rust_eh_personality:",
    "mov eax, 3",
    "ret",
    ".size rust_eh_personality, . - rust_eh_personality",
);
