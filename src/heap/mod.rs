//! `heap`: heaps — a thread's own, lock-free, and one per CPU under a
//! lock for medium blocks — and everything that moves blocks and slabs
//! between them (uses `os`, `util`, `core`).
//!
//! Modules, each using only the ones listed before it:
//! - [`quarantine`] - the secure build's per-thread quarantine (a plain
//!   structure);
//! - [`types`] - the heap structure, the empty heaps, current slabs;
//! - [`tls`] - the calling thread's heap pointer (one initial-exec word);
//! - [`hook`] - the guard that keeps instrumentation hooks from
//!   recording their own allocations;
//! - [`slabs`] - a heap's own slabs: pop, refill, free into, release;
//! - [`abandoned`] - slabs of heaps given up, freed into or adopted;
//! - [`remote`] - the queues other threads push freed blocks onto;
//! - [`medium`] - per-CPU heaps for 1.25-64 KiB, and the medium cache;
//! - [`free`] - the free fast path and the dispatch of every other free;
//! - [`secure`] - the secure build's free side: zero, quarantine, check;
//! - [`lifecycle`] - heaps created, parked, given up; upkeep and trim;
//! - [`alloc`] - the malloc fast path and the slow paths behind it;
//! - [`check`] - the invariant checker the tests run.

pub(crate) mod abandoned;
pub(crate) mod alloc;
pub(crate) mod check;
pub(crate) mod free;
pub(crate) mod hook;
pub(crate) mod lifecycle;
pub(crate) mod medium;
pub(crate) mod quarantine;
pub(crate) mod remote;
pub(crate) mod secure;
pub(crate) mod slabs;
pub(crate) mod tls;
pub(crate) mod types;
