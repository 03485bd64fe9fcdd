//! Insight: statistics, leak reports and mtrace-compatible traces, at no
//! cost to the fast paths while off.
//!
//! Owns the instrumentation mode, the hooks that record allocations and
//! frees, call-stack capture, and the end-of-process report. Calls `heap`,
//! `libc_api`'s raw functions, `stats`, `leak`, `trace`, `runtime`, `diag`.
//!
//! How it costs nothing while off: the mode is fixed at start-up from the
//! environment (`MMPOOL_STATS`, `MMPOOL_LEAK_CHECK`, `MMPOOL_TRACE`,
//! `MALLOC_TRACE`). In instrumented mode every heap publishes only the
//! empty slab in its fast-path tables, so every `malloc` misses the fast
//! path, and its slabs carry `OWNER_INSTR` in their owner word, so every
//! `free` misses too; the slow paths call the hooks. Off, the fast paths
//! are exactly what they are without this module.
//!
//! Hooks run with the thread's heap marked `in_hook`, so allocations made
//! by the hook's own helpers (glibc's `backtrace` loading libgcc on first
//! use, `dladdr`) are served but not recorded.

use crate::heap::{self, is_real};
use crate::runtime::{env_flag, env_value};
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static ACTIVE: AtomicBool = AtomicBool::new(false);
static STATS: AtomicBool = AtomicBool::new(false);
static LEAKS: AtomicBool = AtomicBool::new(false);
/// Set once our constructor ran: from then on stacks may be captured
/// (glibc's `backtrace` is safe to call).
static STARTED: AtomicBool = AtomicBool::new(false);
/// Frames kept per allocation site.
static DEPTH: AtomicUsize = AtomicUsize::new(8);
static OUR_START: AtomicUsize = AtomicUsize::new(0);
static OUR_END: AtomicUsize = AtomicUsize::new(0);

/// Most frames recorded per site.
pub const MAX_FRAMES: usize = 16;

/// Is any instrumentation on? (Fixed at start-up.)
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Are statistics on?
pub fn stats_on() -> bool {
    STATS.load(Ordering::Relaxed)
}

/// Is leak checking on?
pub fn leaks_on() -> bool {
    LEAKS.load(Ordering::Relaxed)
}

/// Read the options (from `runtime::ensure_init`, before any heap exists).
pub fn configure() {
    let stats = env_value(b"MMPOOL_STATS").is_some_and(|v| !v.is_empty() && v != b"0");
    let leaks = env_flag(b"MMPOOL_LEAK_CHECK");
    let trace = env_value(b"MMPOOL_TRACE").is_some_and(|v| !v.is_empty())
        || env_value(b"MALLOC_TRACE").is_some_and(|v| !v.is_empty());
    if let Some(d) = env_value(b"MMPOOL_LEAK_FRAMES").and_then(parse_usize) {
        DEPTH.store(d.clamp(1, MAX_FRAMES), Ordering::Relaxed);
    }
    STATS.store(stats, Ordering::Relaxed);
    LEAKS.store(leaks, Ordering::Relaxed);
    ACTIVE.store(stats || leaks || trace, Ordering::Relaxed);
    if stats || leaks || trace {
        let hook: fn(*mut u8) = on_free;
        heap::FREE_HOOK.store(hook as usize, Ordering::Relaxed);
    }
}

/// Parse a decimal number.
pub fn parse_usize(v: &[u8]) -> Option<usize> {
    if v.is_empty() || v.len() > 18 {
        return None;
    }
    v.iter().try_fold(0usize, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as usize)
    })
}

/// Our constructor ran: find our own code's address range (frames in it
/// are skipped), warm up `backtrace` (it loads libgcc on first use), and
/// start `MMPOOL_TRACE`.
pub fn start() {
    if !active() {
        return;
    }
    find_our_range();
    // SAFETY: plain allocation; creates this thread's heap if needed.
    let p = unsafe { crate::libc_api::malloc(1) };
    let h = crate::tls::heap();
    if is_real(h) {
        // SAFETY: the calling thread's own heap.
        unsafe { (*h).local.in_hook = true };
        let mut frames = [core::ptr::null_mut::<c_void>(); 4];
        // SAFETY: a valid buffer of 4 entries.
        unsafe { libc::backtrace(frames.as_mut_ptr(), 4) };
        // SAFETY: as above.
        unsafe { (*h).local.in_hook = false };
    }
    // SAFETY: freeing the block allocated above.
    unsafe { crate::libc_api::free(p) };
    STARTED.store(true, Ordering::Release);
    if let Some(path) = env_value(b"MMPOOL_TRACE").filter(|v| !v.is_empty()) {
        crate::trace::start(path);
    }
}

/// Our code's address range, from our ELF program headers (mapped at the
/// module base that `dladdr` reports).
fn find_our_range() {
    let mut info = libc::Dl_info {
        dli_fname: core::ptr::null(),
        dli_fbase: core::ptr::null_mut(),
        dli_sname: core::ptr::null(),
        dli_saddr: core::ptr::null_mut(),
    };
    let me = find_our_range as fn() as *const c_void;
    // SAFETY: valid out-parameter.
    if unsafe { libc::dladdr(me, &mut info) } == 0 || info.dli_fbase.is_null() {
        return;
    }
    let base = info.dli_fbase as usize;
    // SAFETY: the ELF header and program headers of a loaded module are
    // mapped at its base (they are part of the first PT_LOAD segment).
    let end = unsafe {
        let eh = &*(base as *const libc::Elf64_Ehdr);
        let ph = (base + eh.e_phoff as usize) as *const libc::Elf64_Phdr;
        let mut end = 0usize;
        for i in 0..eh.e_phnum as usize {
            let p = &*ph.add(i);
            if p.p_type == libc::PT_LOAD {
                end = end.max(p.p_vaddr as usize + p.p_memsz as usize);
            }
        }
        end
    };
    OUR_START.store(base, Ordering::Relaxed);
    OUR_END.store(base + end, Ordering::Relaxed);
}

/// A captured call stack: the frames outside this library, innermost
/// first.
#[derive(Clone, Copy)]
pub struct Stack {
    /// Return addresses.
    pub frames: [usize; MAX_FRAMES],
    /// How many are valid.
    pub len: usize,
}

impl Stack {
    /// No frames.
    pub const EMPTY: Stack = Stack {
        frames: [0; MAX_FRAMES],
        len: 0,
    };

    /// The innermost frame outside this library (the caller of malloc).
    pub fn caller(&self) -> usize {
        if self.len > 0 {
            self.frames[0]
        } else {
            0
        }
    }
}

/// Capture up to `depth` frames of the calling thread's stack, skipping
/// our own. Empty before our constructor ran.
pub fn capture(depth: usize) -> Stack {
    let mut st = Stack::EMPTY;
    if !STARTED.load(Ordering::Acquire) {
        return st;
    }
    let mut raw = [core::ptr::null_mut::<c_void>(); MAX_FRAMES + 12];
    let want = (depth + 12).min(raw.len());
    // SAFETY: a buffer of `want` entries; warmed up in `start`.
    let n = unsafe { libc::backtrace(raw.as_mut_ptr(), want as i32) }.max(0) as usize;
    let (lo, hi) = (
        OUR_START.load(Ordering::Relaxed),
        OUR_END.load(Ordering::Relaxed),
    );
    let mut skipping = true;
    for &f in &raw[..n] {
        let f = f as usize;
        if skipping && f >= lo && f < hi {
            continue;
        }
        skipping = false;
        if st.len == depth.min(MAX_FRAMES) {
            break;
        }
        // Return addresses point after the call; step back into it so
        // symbolisers name the calling line.
        st.frames[st.len] = f.saturating_sub(1);
        st.len += 1;
    }
    st
}

/// Run `f` as a hook on the calling thread's heap, unless a hook already
/// runs there (then the event is the hook's own and is not recorded).
fn in_hook(f: impl FnOnce()) {
    let h = crate::tls::heap();
    if !is_real(h) {
        f();
        return;
    }
    // SAFETY: the calling thread's own heap.
    unsafe {
        if (*h).local.in_hook {
            return;
        }
        (*h).local.in_hook = true;
    }
    f();
    // SAFETY: as above.
    unsafe { (*h).local.in_hook = false };
}

fn depth_needed() -> usize {
    if leaks_on() {
        DEPTH.load(Ordering::Relaxed)
    } else if crate::trace::on() {
        1
    } else {
        0
    }
}

/// Record a new block `p` of `size` requested bytes.
pub fn on_alloc(p: *mut u8, size: usize) {
    if p.is_null() {
        return;
    }
    in_hook(|| {
        let d = depth_needed();
        let st = if d > 0 { capture(d) } else { Stack::EMPTY };
        if stats_on() || leaks_on() {
            crate::leak::insert(p as usize, size, &st);
        }
        if stats_on() {
            crate::stats::on_alloc(p as usize, size);
        }
        crate::trace::alloc(st.caller(), p as usize, size);
    });
}

/// The free hook (every free of ours in instrumented mode, before the
/// block is released).
fn on_free(p: *mut u8) {
    in_hook(|| {
        forget(p as usize, true);
    });
}

/// Drop `p` from the records; `trace` writes the `-` line.
fn forget(p: usize, trace: bool) -> Option<(usize, u32)> {
    let entry = if stats_on() || leaks_on() {
        crate::leak::remove(p)
    } else {
        None
    };
    if stats_on() {
        crate::stats::on_free(p, entry.map_or(0, |e| e.0));
    }
    if trace && crate::trace::on() {
        crate::trace::free(capture(1).caller(), p);
    }
    entry
}

/// `realloc` in instrumented mode: the raw operation, recorded as one
/// event (`<` and `>` lines in the trace).
///
/// # Safety
/// As `libc_api::realloc`.
pub unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    let mut h = crate::tls::heap();
    if !is_real(h) {
        h = crate::runtime::create_thread_heap(h == heap::exited_heap());
    }
    // SAFETY: `h` is null or the calling thread's own heap.
    if p.is_null() || h.is_null() || unsafe { (*h).local.in_hook } {
        // realloc(NULL, n) is a malloc, which records itself.
        // SAFETY: forwarded contract.
        return unsafe { crate::libc_api::realloc_raw(p, size) };
    }
    // SAFETY: our own heap; the flag keeps the malloc and free inside the
    // raw realloc from being recorded a second time.
    unsafe { (*h).local.in_hook = true };
    let st = capture(depth_needed());
    let ours = crate::libc_api::owns(p);
    let old = forget(p as usize, false);
    // SAFETY: forwarded contract.
    let q = unsafe { crate::libc_api::realloc_raw(p, size) };
    let record = |addr: usize, sz: usize| {
        if stats_on() || leaks_on() {
            crate::leak::insert(addr, sz, &st);
        }
        if stats_on() {
            crate::stats::on_alloc(addr, sz);
        }
    };
    if q.is_null() && size != 0 {
        // Failed: the old block stays, and so does its record.
        if let Some((sz, _)) = old {
            record(p as usize, sz);
        }
    } else {
        if !q.is_null() {
            record(q as usize, size);
        }
        if ours {
            crate::trace::realloc(st.caller(), p as usize, q as usize, size);
        } else {
            crate::trace::alloc(st.caller(), q as usize, size);
        }
    }
    // SAFETY: as above.
    unsafe { (*h).local.in_hook = false };
    q
}

/// At exit: end the trace, print statistics, report leaks.
pub fn finish() {
    if !active() {
        return;
    }
    let h = crate::tls::heap();
    if is_real(h) {
        // SAFETY: our own heap; reporting must not record itself.
        unsafe { (*h).local.in_hook = true };
    }
    crate::trace::stop();
    if stats_on() {
        crate::stats::report_at_exit();
    }
    if leaks_on() {
        crate::leak::report_at_exit();
    }
}
