//! `os`: everything the allocator asks of the operating system, behind
//! one contract (the layer every other one stands on; it uses nothing of
//! this crate).
//!
//! - [`pages`] - mapping, unmapping, purging and moving pages, behind the
//!   [`PageSource`] trait so the core can run on a heap-backed source in
//!   tests;
//! - [`env`] - `MMPOOL_*` options, read by walking `environ`;
//! - [`clock`], [`process`]: time, thread ids, CPU, resident memory,
//!   the kernel's random bytes;
//! - [`file`] - files by byte-string path (stats and trace output, module
//!   files), and writes that retry;
//! - [`errno`] - `errno`, and the guard that restores it around system
//!   calls a successful allocation must not leak into `errno`.
//!
//! Contract of every function here: it never allocates through the
//! global allocator (it runs inside `malloc`), it never panics, and it
//! leaves `errno` as it found it unless its documentation says that a
//! failure sets it.
//!
//! Uses: `os::pages`.

pub(crate) mod clock;
pub(crate) mod env;
pub(crate) mod errno;
pub(crate) mod file;
pub(crate) mod pages;
pub(crate) mod process;

pub(crate) use pages::{align_up, Os, PageSource, OS, PAGE};
