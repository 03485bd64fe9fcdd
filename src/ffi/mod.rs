//! `ffi`: the C ABI (uses every layer). Every export is a one-line call
//! into `api` (or, for statistics, `insight`); the `///` comments here
//! become the documentation of `include/mmpool.h`, which cbindgen
//! generates from these files.
//!
//! Conventions of the C API: every pointer argument may be NULL where the
//! standard function allows it; failed allocations return NULL and set
//! `errno` to `ENOMEM`; all functions are thread-safe unless their
//! comment says otherwise.
//!
//! - [`malloc`] - `mmpool_malloc` & co, and the standard names (feature
//!   `override`, for `LD_PRELOAD`);
//! - [`arena`] - `mmpool_arena_*`;
//! - [`stats`] - `mmpool_stats_get`, `mmpool_stats_print`;
//! - `cxx`: C++'s `operator new`/`delete` under their mangled names
//!   (feature `override`, x86-64);
//! - `glibc`: `malloc_stats`, `mallinfo2`, `malloc_trim`, `mtrace`... under
//!   glibc's names (feature `override`).
//!
//! Uses: `ffi::arena`, `ffi::malloc`, `ffi::stats`.

#![allow(non_camel_case_types)] // C names in the C API

pub mod arena;
#[cfg(all(feature = "override", target_arch = "x86_64"))]
mod cxx;
#[cfg(feature = "override")]
mod glibc;
pub mod malloc;
pub mod stats;

pub use arena::*;
pub use malloc::*;
pub use stats::*;
