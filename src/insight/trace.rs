//! mtrace-compatible allocation traces.
//!
//! Owns the trace file. Writes glibc's mtrace log format, which glibc's
//! own `mtrace` script reads:
//!
//! ```text
//! = Start
//! @ ./prog:(make_node+0x1e)[0x11c9] + 0x7f3a1c000f80 0x20
//! @ ./prog:(main+0x3a)[0x1245] - 0x7f3a1c000f80
//! @ ./prog:[0x1250] < 0x7f3a1c001000
//! @ ./prog:[0x1250] > 0x7f3a1c002000 0x400
//! = End
//! ```
//!
//! One difference, on purpose: the address in brackets is the caller's
//! offset inside its module, which is what `addr2line -e MODULE` takes for
//! position-independent executables and shared libraries (glibc writes the
//! run-time address, which `addr2line` cannot resolve under ASLR), so
//! `mtrace ./prog trace.log` names source lines.
//!
//! Started by `MMPOOL_TRACE=path` at start-up, or by the program calling
//! `mtrace()` with `MALLOC_TRACE=path` set (glibc's manual's way); stopped
//! by `muntrace()` or at exit.
//!
//! Uses: `insight::symbols`, `os::file`, `util::diag`, `util::lock`.

use crate::util::diag::Line;
use crate::util::lock::Lock;
use core::sync::atomic::{AtomicI32, Ordering};

static FD: AtomicI32 = AtomicI32::new(-1);
/// Serialises lines (each line is one `write`, but Start/End must bracket).
static LOCK: Lock<()> = Lock::new(());

/// In a fork child: free the line lock if a thread that does not exist
/// here held it.
pub(crate) fn after_fork_child() {
    if LOCK.held_by_other_thread() {
        // SAFETY: the child's only thread; no guard exists.
        unsafe { LOCK.reset_in_child(|_| ()) };
    }
}

/// Is a trace being written?
#[inline]
pub(crate) fn on() -> bool {
    FD.load(Ordering::Relaxed) >= 0
}

/// Open `path` (truncating) and write `= Start`. No-op if tracing.
pub(crate) fn start(path: &[u8]) {
    let _g = LOCK.lock();
    if on() {
        return;
    }
    let Some(fd) = crate::os::file::create(path) else {
        crate::util::diag::warn("trace: cannot open the trace file");
        return;
    };
    crate::os::file::write_all(fd, b"= Start\n");
    FD.store(fd, Ordering::Release);
}

/// Write `= End` and close. No-op if not tracing.
pub(crate) fn stop() {
    let _g = LOCK.lock();
    let fd = FD.swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        crate::os::file::write_all(fd, b"= End\n");
        crate::os::file::close(fd);
    }
}

/// `@ module:(function+0xoff)[0xoffset] ` for the caller.
fn write_caller(l: &mut Line, caller: usize) {
    if caller == 0 {
        return;
    }
    let d = crate::insight::symbols::describe(caller);
    l.str("@ ");
    if d.module.is_empty() {
        l.str("[").hex(caller as u64).str("] ");
        return;
    }
    l.bytes(d.module).str(":");
    if let Some((name, off)) = d.symbol {
        l.str("(").bytes(name).str("+").hex(off as u64).str(")");
    }
    l.str("[").hex(d.offset as u64).str("] ");
}

fn emit(l: &Line) {
    let _g = LOCK.lock();
    let fd = FD.load(Ordering::Relaxed);
    if fd >= 0 {
        l.write_to(fd);
    }
}

/// `+ p size`: an allocation.
pub(crate) fn alloc(caller: usize, p: usize, size: usize) {
    if !on() {
        return;
    }
    let mut l = Line::new();
    write_caller(&mut l, caller);
    l.str("+ ")
        .hex(p as u64)
        .str(" ")
        .hex(size as u64)
        .str("\n");
    emit(&l);
}

/// `- p`: a free.
pub(crate) fn free(caller: usize, p: usize) {
    if !on() {
        return;
    }
    let mut l = Line::new();
    write_caller(&mut l, caller);
    l.str("- ").hex(p as u64).str("\n");
    emit(&l);
}

/// A realloc, as glibc logs it: `+` for realloc(NULL), `-` for
/// realloc(p, 0), else `< old` then `> new size`.
pub(crate) fn realloc(caller: usize, old: usize, new: usize, size: usize) {
    if !on() {
        return;
    }
    if old == 0 {
        return alloc(caller, new, size);
    }
    if size == 0 {
        return free(caller, old);
    }
    let mut l = Line::new();
    write_caller(&mut l, caller);
    l.str("< ").hex(old as u64).str("\n");
    write_caller(&mut l, caller);
    l.str("> ")
        .hex(new as u64)
        .str(" ")
        .hex(size as u64)
        .str("\n");
    emit(&l);
}
