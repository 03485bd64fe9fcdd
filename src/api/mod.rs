//! `api`: what a C program sees of the pool, with C's and glibc's
//! semantics (uses every layer below: `os`, `util`, `core`, `heap`,
//! `insight`).
//!
//! - [`process`] - lazy initialisation, constructor and destructor, fork;
//! - [`foreign`] - pointers the pool did not hand out;
//! - [`libc`] - the malloc family: errno, overflow, alignment rules;
//! - [`cxx`] - C++'s `operator new`/`delete`, and the size check of
//!   sized frees;
//! - `glibc`: glibc's introspection (`mallinfo`, `malloc_stats`, ...),
//!   exported under glibc's names only (feature `override`);
//! - [`arena`] - per-connection arenas, and their safe Rust face;
//! - [`secure`] - the secure build's malloc family (feature `secure`);
//! - [`global`] - `MmPool`, the pool as Rust's `#[global_allocator]`,
//!   with `owns` and `stats` for Rust callers.

pub(crate) mod arena;
pub(crate) mod cxx;
pub(crate) mod foreign;
pub(crate) mod glibc;
pub(crate) mod global;
pub(crate) mod libc;
pub(crate) mod process;
pub(crate) mod secure;
