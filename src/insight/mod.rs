//! `insight`: statistics, leak reports and mtrace-compatible traces, at
//! no cost to the fast paths while off (uses `os`, `util`, `core`,
//! `heap`).
//!
//! - [`mode`] - what is on: statistics, leak checks, traces;
//! - [`stack`] - call stacks captured without allocating;
//! - [`symbols`] - naming code addresses (dladdr, the module's symtab);
//! - [`stats`] - counters, the statistics table, `mallinfo`;
//! - [`leak`] - the live-block table and the leak report at exit;
//! - [`trace`] - the mtrace log.
//!
//! How it costs nothing while off: the mode is fixed at start-up from the
//! environment (`MMPOOL_STATS`, `MMPOOL_LEAK_CHECK`, `MMPOOL_TRACE`,
//! `MALLOC_TRACE`) and handed to the core (`core::config`), before any
//! heap exists. In instrumented mode every heap publishes only the empty
//! slab in its fast-path tables, so every `malloc` misses the fast path,
//! and its slabs carry `OWNER_INSTR` in their owner word, so every `free`
//! misses too; the slow paths call the hooks: `api` calls [`on_alloc`]
//! and the realloc pair, the core calls the free hook installed here.
//! Off, the fast paths are exactly what they are without this module.
//!
//! Hooks run under `heap::hook::HookGuard`, so allocations made by the
//! hook's own helpers (glibc's `backtrace` loading libgcc on first use,
//! `dladdr`) are served but not recorded.
//!
//! Uses: `core::hooks`, `core::lookup`, `heap::hook`, `heap::lifecycle`,
//! `insight::leak`, `insight::mode`, `insight::stack`, `insight::stats`,
//! `insight::trace`, `os::env`.

pub(crate) mod leak;
pub(crate) mod mode;
pub(crate) mod stack;
pub(crate) mod stats;
pub(crate) mod symbols;
pub(crate) mod trace;

use crate::heap::hook::HookGuard;
use crate::os::env;
pub(crate) use mode::{active, leaks_on, stats_on};
use stack::{capture, Stack};

/// Read the options, set the mode and install the free hook (during the
/// process's initialisation, before any heap exists).
pub(crate) fn configure() {
    if mode::read() {
        crate::core::hooks::set_free_hook(on_free);
    }
}

/// Our constructor ran: warm up stack capture and start `MMPOOL_TRACE`.
pub(crate) fn start() {
    if !active() {
        return;
    }
    // A heap of its own lets the thread mark the warm-up as a hook.
    crate::heap::lifecycle::thread_heap();
    if let Some(_hook) = HookGuard::enter() {
        stack::warm_up();
    }
    if let Some(path) = env::value(b"MMPOOL_TRACE").filter(|v| !v.is_empty()) {
        trace::start(path);
    }
}

fn depth_needed() -> usize {
    if leaks_on() {
        mode::leak_frames()
    } else if trace::on() {
        1
    } else {
        0
    }
}

fn record(p: usize, size: usize, st: &Stack) {
    if stats_on() || leaks_on() {
        leak::insert(p, size, st);
    }
    if stats_on() {
        stats::on_alloc(p, size);
    }
}

/// Record a new block `p` of `size` requested bytes (out of line: the
/// allocation paths that call it stay lean when the tools are off).
#[cold]
#[inline(never)]
pub(crate) fn on_alloc(p: *mut u8, size: usize) {
    if p.is_null() {
        return;
    }
    if let Some(_hook) = HookGuard::enter() {
        let st = capture(depth_needed());
        record(p as usize, size, &st);
        trace::alloc(st.caller(), p as usize, size);
    }
}

/// The free hook (every free of ours in instrumented mode, before the
/// block is released).
fn on_free(p: *mut u8) {
    if let Some(_hook) = HookGuard::enter() {
        forget(p as usize, true);
    }
}

/// Drop `p` from the records; `trace` writes the `-` line.
fn forget(p: usize, trace: bool) -> Option<(usize, u32)> {
    let entry = if stats_on() || leaks_on() {
        leak::remove(p)
    } else {
        None
    };
    if stats_on() {
        stats::on_free(p, entry.map_or(0, |e| e.0));
    }
    if trace && trace::on() {
        trace::free(capture(1).caller(), p);
    }
    entry
}

/// A `realloc` being recorded as one event (`<` and `>` lines in the
/// trace): made by [`realloc_begin`] before the raw operation, finished by
/// [`realloc_end`] after it, both under the caller's `HookGuard` (so the
/// malloc and free inside the raw realloc are not recorded again).
pub(crate) struct Realloc {
    stack: Stack,
    ours: bool,
    old: Option<(usize, u32)>,
}

/// Start recording `realloc(p, ...)`: its stack, and `p`'s record taken
/// out.
pub(crate) fn realloc_begin(p: *mut u8) -> Realloc {
    Realloc {
        stack: capture(depth_needed()),
        ours: crate::core::lookup::owns(p),
        old: forget(p as usize, false),
    }
}

/// Finish recording a realloc of `p` to `size` bytes that returned `q`.
pub(crate) fn realloc_end(r: Realloc, p: *mut u8, q: *mut u8, size: usize) {
    if q.is_null() && size != 0 {
        // Failed: the old block stays, and so does its record.
        if let Some((sz, _)) = r.old {
            record(p as usize, sz, &r.stack);
        }
        return;
    }
    if !q.is_null() {
        record(q as usize, size, &r.stack);
    }
    if r.ours {
        trace::realloc(r.stack.caller(), p as usize, q as usize, size);
    } else {
        trace::alloc(r.stack.caller(), q as usize, size);
    }
}

/// At exit: end the trace, print statistics, report leaks. Nothing the
/// thread allocates from here on is recorded.
pub(crate) fn finish() {
    if !active() {
        return;
    }
    if let Some(hook) = HookGuard::enter() {
        core::mem::forget(hook);
    }
    trace::stop();
    if stats_on() {
        stats::report_at_exit();
    }
    if leaks_on() {
        leak::report_at_exit();
    }
}
