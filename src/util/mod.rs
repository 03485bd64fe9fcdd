//! `util`: small pieces every layer above needs (uses `os`).
//!
//! - [`list`] - intrusive doubly linked lists (slabs, free spans, arena
//!   blocks and cleanups), which never allocate;
//! - [`lock`] - the spin lock of the few global structures, which yields
//!   the processor instead of livelocking on a 2-core machine;
//! - [`mapped`] - arrays in memory mapped from the OS (the allocator's own
//!   tables);
//! - [`diag`] - `mmpool: ...` messages and the stack buffer reports are
//!   formatted in.

pub(crate) mod diag;
pub(crate) mod list;
pub(crate) mod lock;
pub(crate) mod mapped;
