//! `core`: the allocator's data structures, without threads of their
//! own (uses `os` and `util`).
//!
//! - [`config`] - the double-free key, the instrumentation mode, options;
//! - [`size_class`] - which block size serves a request, slab geometry;
//! - [`pagemap`] - address -> span header, the "is this ours?" test;
//! - [`span`] - the cache of granule-aligned spans slabs are made of;
//! - [`slab`] - a span carved into blocks of one class, its free lists;
//! - [`large`] - blocks above the small limit, one mapping each, and the
//!   cache of resident ranges they come back to;
//! - [`canary`] - the records and patterns around medium and large blocks
//!   that catch overflows and underflows;
//! - [`lookup`] - the one reader of span tags (owns, block bounds,
//!   usable size);
//! - [`hooks`] - how the core tells the tools above it what happens.

pub(crate) mod canary;
pub(crate) mod config;
pub(crate) mod hooks;
pub(crate) mod large;
pub(crate) mod lookup;
pub(crate) mod pagemap;
pub(crate) mod size_class;
pub(crate) mod slab;
pub(crate) mod span;
