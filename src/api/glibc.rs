//! glibc's malloc introspection and tuning API with glibc's semantics:
//! `malloc_stats`, `mallinfo2`/`mallinfo`, `mtrace` and `muntrace`,
//! answered from the pool's own state (`malloc_trim` is `libc::trim`).
//!
//! Uses: `api::process`, `insight`, `insight::stats`, `insight::trace`,
//! `os::env`, `util::diag`.

use crate::api::process::ensure_init;

/// `malloc_stats`: the statistics table on stderr.
pub(crate) fn malloc_stats() {
    crate::insight::stats::print(2);
}

/// `mallinfo2`, filled from our counters.
pub(crate) fn mallinfo2() -> libc::mallinfo2 {
    let s = crate::insight::stats::snapshot();
    let in_use = if s.detailed { s.requested } else { s.held };
    libc::mallinfo2 {
        arena: s.spans_mapped,
        ordblks: 0,
        smblks: 0,
        hblks: s.large_live,
        hblkhd: s.large_bytes,
        usmblks: 0,
        fsmblks: 0,
        uordblks: in_use,
        fordblks: s.spans_mapped.saturating_sub(s.held - s.large_bytes),
        keepcost: s.spans_cached,
    }
}

/// `mallinfo` (deprecated: int fields, saturated).
pub(crate) fn mallinfo() -> libc::mallinfo {
    let m = mallinfo2();
    let c = |v: usize| v.min(i32::MAX as usize) as i32;
    libc::mallinfo {
        arena: c(m.arena),
        ordblks: c(m.ordblks),
        smblks: c(m.smblks),
        hblks: c(m.hblks),
        hblkhd: c(m.hblkhd),
        usmblks: c(m.usmblks),
        fsmblks: c(m.fsmblks),
        uordblks: c(m.uordblks),
        fordblks: c(m.fordblks),
        keepcost: c(m.keepcost),
    }
}

/// `mtrace`: start an mtrace log in `$MALLOC_TRACE` (which must be set
/// when the program starts).
pub(crate) fn mtrace() {
    ensure_init();
    if let Some(path) = crate::os::env::value(b"MALLOC_TRACE").filter(|v| !v.is_empty()) {
        if !crate::insight::active() {
            crate::util::diag::warn(
                "mtrace(): MALLOC_TRACE was not set at start-up; nothing is traced",
            );
            return;
        }
        crate::insight::trace::start(path);
    }
}

/// `muntrace`: end the log.
pub(crate) fn muntrace() {
    crate::insight::trace::stop();
}
