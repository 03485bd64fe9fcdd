//! What the tools record, fixed at start-up from the environment:
//! `MMPOOL_STATS`, `MMPOOL_LEAK_CHECK` (with `MMPOOL_LEAK_FRAMES`),
//! `MMPOOL_TRACE` or `MALLOC_TRACE`.
//!
//! Uses: `core::config`, `insight::stack`, `os::env`.

use crate::insight::stack::MAX_FRAMES;
use crate::os::env;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static STATS: AtomicBool = AtomicBool::new(false);
static LEAKS: AtomicBool = AtomicBool::new(false);
/// Frames kept per allocation site.
static DEPTH: AtomicUsize = AtomicUsize::new(8);

/// Is any instrumentation on? (Fixed at start-up.)
#[inline]
pub(crate) fn active() -> bool {
    crate::core::config::instrumented()
}

/// Are statistics on?
pub(crate) fn stats_on() -> bool {
    STATS.load(Ordering::Relaxed)
}

/// Is leak checking on?
pub(crate) fn leaks_on() -> bool {
    LEAKS.load(Ordering::Relaxed)
}

/// Frames recorded per allocation site (`MMPOOL_LEAK_FRAMES`, 1-16).
pub(crate) fn leak_frames() -> usize {
    DEPTH.load(Ordering::Relaxed)
}

/// Read the options and set the mode (during the process's
/// initialisation, before any heap exists): the core learns that heaps
/// must route every allocation and free through the slow paths. True
/// when anything is on.
pub(crate) fn read() -> bool {
    let stats = env::value(b"MMPOOL_STATS").is_some_and(|v| !v.is_empty() && v != b"0");
    let leaks = env::flag(b"MMPOOL_LEAK_CHECK");
    let trace = env::value(b"MMPOOL_TRACE").is_some_and(|v| !v.is_empty())
        || env::value(b"MALLOC_TRACE").is_some_and(|v| !v.is_empty());
    if let Some(d) = env::number(b"MMPOOL_LEAK_FRAMES") {
        DEPTH.store(d.clamp(1, MAX_FRAMES), Ordering::Relaxed);
    }
    STATS.store(stats, Ordering::Relaxed);
    LEAKS.store(leaks, Ordering::Relaxed);
    crate::core::config::set_instrumented(stats || leaks || trace);
    stats || leaks || trace
}
