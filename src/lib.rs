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
//! - **abandoned slab**: a slab whose thread exited while blocks were still
//!   live; it sits on a global list until it empties or another thread
//!   adopts it.
//!
//! ## Rules for code in this crate
//!
//! It runs inside other programs' `malloc`: nothing here allocates through
//! the global allocator (no `format!`, `Vec`, `String`, `std::env`), no
//! `thread_local!` with a destructor, no panics on any path that can be
//! reached from C (the profiles abort on panic anyway), and no lock is
//! held while calling code that could allocate.

#![warn(missing_docs)]

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
pub mod size_class;
pub mod slab;
pub mod span;
pub mod stats;
pub mod symbols;
pub mod sync;
pub mod tls;
pub mod trace;
