//! glibc's malloc introspection and tuning API, with glibc's meanings,
//! answered from the pool's own state: `mallinfo2`/`mallinfo`,
//! `malloc_stats`, `malloc_info`, `mallopt`, `mtrace` and `muntrace`
//! (`malloc_trim` is `api::libc::trim`).
//!
//! Meanings (glibc's `struct mallinfo2`): `uordblks` bytes in blocks the
//! program holds (small and medium blocks by block size, large blocks
//! below the mmap threshold by usable size); `arena` bytes from the OS
//! for those ("heap": slab chunks, large blocks below the threshold, the
//! cache of freed large ranges); `fordblks` the free part of `arena`;
//! `hblks`/`hblkhd` large blocks at or above the mmap threshold (128 KiB
//! unless `mallopt(M_MMAP_THRESHOLD)` moved it) and their mapped bytes;
//! `keepcost` idle resident memory `malloc_trim` would give back;
//! `ordblks` free spans and cached large ranges. The numbers come from a
//! walk of every span, always (not only under `MMPOOL_STATS`): exact
//! when no other thread allocates meanwhile.
//!
//! Uses: `api::process`, `core::config`, `core::large`, `core::size_class`,
//! `core::span`, `insight`, `insight::stats`, `insight::trace`, `os::env`,
//! `util::diag`.

use crate::api::process::ensure_init;
use crate::core::large;
use crate::core::size_class::{block_size, NUM_CLASSES};
use crate::util::diag::Line;
use core::ffi::{c_int, c_void};
use core::sync::atomic::Ordering;

/// Everything the glibc API reports, computed once per call.
struct Report {
    info: libc::mallinfo2,
    /// Free blocks per class (count, bytes).
    free_blocks: [(usize, usize); NUM_CLASSES],
    /// Large ranges cached for reuse (count, bytes).
    cached: (usize, usize),
}

fn report() -> Report {
    let u = crate::insight::stats::usage();
    let spans_mapped = crate::core::span::SPANS.stats().mapped;
    let dirty = crate::core::span::SPANS.stats().dirty;
    let live_blocks = large::LIVE_BLOCKS.load(Ordering::Relaxed);
    let live_bytes = large::LIVE_BYTES.load(Ordering::Relaxed);
    let mmap_blocks = large::MMAP_BLOCKS.load(Ordering::Relaxed).min(live_blocks);
    let mmap_bytes = large::MMAP_BYTES.load(Ordering::Relaxed).min(live_bytes);
    // Large blocks below the mmap threshold are heap memory, in use.
    let heap_large_bytes = live_bytes - mmap_bytes;
    let heap_large_usable = large::HEAP_REQUESTED.load(Ordering::Relaxed);
    let cached = large::cached();
    let arena = spans_mapped + heap_large_bytes + cached.1;
    let uordblks = (u.in_use + heap_large_usable).min(arena);
    let fordblks = arena - uordblks;
    Report {
        info: libc::mallinfo2 {
            arena,
            ordblks: u.free_span_count + cached.0,
            smblks: 0,
            hblks: mmap_blocks,
            hblkhd: mmap_bytes,
            usmblks: 0,
            fsmblks: 0,
            uordblks,
            fordblks,
            keepcost: (dirty + cached.1).min(fordblks),
        },
        free_blocks: u.free_blocks,
        cached,
    }
}

/// `mallinfo2`.
pub(crate) fn mallinfo2() -> libc::mallinfo2 {
    report().info
}

/// `mallinfo` (deprecated: int fields, saturated).
#[cfg(feature = "override")]
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

extern "C" {
    fn pthread_setcancelstate(state: c_int, old: *mut c_int) -> c_int;
}
const PTHREAD_CANCEL_DISABLE: c_int = 1;

/// Cancellation is disabled while it lives (glibc's `malloc_stats` is
/// no cancellation point, though `write` is one).
struct NoCancel(c_int);

impl NoCancel {
    fn new() -> NoCancel {
        let mut old = 0;
        // SAFETY: valid out-parameter.
        unsafe { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &mut old) };
        NoCancel(old)
    }
}

impl Drop for NoCancel {
    fn drop(&mut self) {
        let mut unused = 0;
        // SAFETY: restores the state saved in `new`.
        unsafe { pthread_setcancelstate(self.0, &mut unused) };
    }
}

/// `malloc_stats`: glibc's lines first (scripts parse them), then the
/// pool's own table, on stderr; never a cancellation point.
pub(crate) fn malloc_stats() {
    let _no_cancel = NoCancel::new();
    let m = mallinfo2();
    let mut l = Line::new();
    let field = |l: &mut Line, name: &str, v: usize| {
        l.str(name).str(" = ").right(10, |l| {
            l.dec(v as u64);
        });
        l.str("\n");
    };
    l.str("Arena 0:\n");
    field(&mut l, "system bytes    ", m.arena);
    field(&mut l, "in use bytes    ", m.uordblks);
    l.str("Total (incl. mmap):\n");
    field(&mut l, "system bytes    ", m.arena + m.hblkhd);
    field(&mut l, "in use bytes    ", m.uordblks + m.hblkhd);
    field(
        &mut l,
        "max mmap regions",
        large::PEAK_MMAP_BLOCKS.load(Ordering::Relaxed),
    );
    field(
        &mut l,
        "max mmap bytes  ",
        large::PEAK_MMAP_BYTES.load(Ordering::Relaxed),
    );
    l.write_to(2);
    crate::insight::stats::print(2);
}

/// `mallopt`: glibc's parameters are accepted with glibc's answers (1,
/// or 0 for an out-of-range `M_MXFAST`); `M_MMAP_THRESHOLD` and
/// `M_TRIM_THRESHOLD` take effect (see `core::config`); the others
/// (`M_TOP_PAD`, `M_MMAP_MAX`, `M_ARENA_MAX`, `M_ARENA_TEST`,
/// `M_PERTURB`, `M_MXFAST`, `M_CHECK_ACTION`) tune glibc's own heap and
/// have no meaning here.
pub(crate) fn mallopt(param: c_int, value: c_int) -> c_int {
    ensure_init();
    match param {
        libc::M_MXFAST => (0..=160).contains(&value) as c_int,
        libc::M_MMAP_THRESHOLD => {
            crate::core::config::set_mmap_threshold(value as isize as usize);
            1
        }
        libc::M_TRIM_THRESHOLD => {
            crate::core::config::set_trim_threshold(value as isize as usize);
            1
        }
        _ => 1,
    }
}

/// `malloc_info`: glibc's XML with the pool's numbers: one heap, its
/// free blocks per size class, the large blocks. `options` must be 0
/// (else `EINVAL`, returned, as glibc does).
///
/// # Safety
/// `fp` must be a valid `FILE *` open for writing.
pub(crate) unsafe fn malloc_info(options: c_int, fp: *mut libc::FILE) -> c_int {
    if options != 0 {
        return libc::EINVAL;
    }
    let r = report();
    let m = r.info;
    let put = |l: &Line| {
        // SAFETY: contract: `fp` is a writable stream; `l` is valid bytes.
        unsafe {
            libc::fwrite(
                l.as_bytes().as_ptr().cast::<c_void>(),
                1,
                l.as_bytes().len(),
                fp,
            )
        };
    };
    let total = |l: &mut Line, kind: &str, count: usize, size: usize| {
        l.str("<total type=\"")
            .str(kind)
            .str("\" count=\"")
            .dec(count as u64)
            .str("\" size=\"")
            .dec(size as u64)
            .str("\"/>\n");
    };
    let system = |l: &mut Line, arena: usize| {
        l.str("<system type=\"current\" size=\"")
            .dec(arena as u64)
            .str("\"/>\n<system type=\"max\" size=\"")
            .dec(arena as u64)
            .str("\"/>\n<aspace type=\"total\" size=\"")
            .dec(arena as u64)
            .str("\"/>\n<aspace type=\"mprotect\" size=\"")
            .dec(arena as u64)
            .str("\"/>\n");
    };
    let mut l = Line::new();
    l.str("<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n");
    put(&l);
    let mut free_count = r.cached.0;
    for (c, &(n, bytes)) in r.free_blocks.iter().enumerate() {
        free_count += n;
        if n == 0 {
            continue;
        }
        let mut l = Line::new();
        l.str("  <size from=\"")
            .dec(if c == 0 {
                1
            } else {
                block_size(c - 1) as u64 + 1
            })
            .str("\" to=\"")
            .dec(block_size(c) as u64)
            .str("\" total=\"")
            .dec(bytes as u64)
            .str("\" count=\"")
            .dec(n as u64)
            .str("\"/>\n");
        put(&l);
    }
    let mut l = Line::new();
    l.str("</sizes>\n");
    total(&mut l, "fast", 0, 0);
    total(&mut l, "rest", free_count, m.fordblks);
    system(&mut l, m.arena);
    l.str("</heap>\n");
    put(&l);
    let mut l = Line::new();
    total(&mut l, "fast", 0, 0);
    total(&mut l, "rest", free_count, m.fordblks);
    total(&mut l, "mmap", m.hblks, m.hblkhd);
    system(&mut l, m.arena);
    l.str("</malloc>\n");
    put(&l);
    0
}

#[cfg(feature = "override")]
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
#[cfg(feature = "override")]
pub(crate) fn muntrace() {
    crate::insight::trace::stop();
}
