//! Facts about the process and its threads: resident memory, thread
//! ids, the CPU a thread runs on, the randomness the kernel gave us.
//!
//! Uses: `os::errno`, `os::file`.

/// The calling thread's identity: its thread pointer (what
/// `pthread_self` returns), never 0, the same in a fork child as in the
/// parent thread that forked. One instruction on x86-64.
#[inline(always)]
pub(crate) fn thread_id() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let t: usize;
        // SAFETY: reads the TCB's self pointer at %fs:0, which glibc sets
        // up before any code of the thread runs; no memory is written.
        unsafe {
            core::arch::asm!(
                "mov {t}, qword ptr fs:[0]",
                t = out(reg) t,
                options(nostack, readonly, preserves_flags, pure),
            );
        }
        t
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: pthread_self has no preconditions.
        unsafe { libc::pthread_self() as usize }
    }
}

/// The kernel's id of the calling thread.
pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Has thread `tid` of this process exited?
pub(crate) fn thread_gone(tid: i32) -> bool {
    let _errno = crate::os::errno::ErrnoGuard::save();
    // SAFETY: signal 0 only checks that the thread exists.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, 0) };
    r == -1 && crate::os::errno::get() == libc::ESRCH
}

/// The process id.
pub(crate) fn pid() -> u32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() as u32 }
}

/// The CPU the calling thread runs on now (0 when unknown). It may move
/// at any time: use it for locality, never for correctness.
#[inline]
pub(crate) fn cpu() -> usize {
    // SAFETY: sched_getcpu has no preconditions (glibc reads the rseq
    // area or calls the vDSO; it does not allocate).
    let c = unsafe { libc::sched_getcpu() };
    if c < 0 {
        0
    } else {
        c as usize
    }
}

/// Give the processor away (lock back-off).
#[inline]
pub(crate) fn yield_now() {
    // SAFETY: sched_yield has no preconditions.
    unsafe {
        libc::sched_yield();
    }
}

/// A random word from the 16 bytes the kernel put in the auxiliary
/// vector (no syscall, no allocation); `fallback` mixed with a constant
/// when there are none.
pub(crate) fn random_word(fallback: usize) -> usize {
    // SAFETY: getauxval has no preconditions; AT_RANDOM points to 16
    // readable bytes when present.
    unsafe {
        let r = libc::getauxval(libc::AT_RANDOM) as *const usize;
        if r.is_null() {
            fallback ^ 0x9e37_79b9_7f4a_7c15
        } else {
            r.read_unaligned() ^ r.add(1).read_unaligned().rotate_left(17)
        }
    }
}

/// Current and peak resident set size in bytes, from /proc/self/status
/// (0, 0 when it cannot be read).
pub(crate) fn rss() -> (usize, usize) {
    let mut buf = [0u8; 4096];
    let n = match crate::os::file::read_into(b"/proc/self/status", &mut buf) {
        Some(n) if n > 0 => n,
        _ => return (0, 0),
    };
    let text = &buf[..n];
    let field = |name: &[u8]| -> usize {
        text.split(|&c| c == b'\n')
            .find(|l| l.starts_with(name))
            .map(digits)
            .unwrap_or(0)
            * 1024
    };
    (field(b"VmRSS:"), field(b"VmHWM:"))
}

/// The program break's heap, `[start, end)`: where glibc's main arena
/// lives (it grows the break with `sbrk`; this crate never does). The
/// start is the kernel's `start_brk` (field 47 of `/proc/self/stat`,
/// read once); 0 when it cannot be read, so the range is then everything
/// below the break.
pub(crate) fn break_heap() -> (usize, usize) {
    use core::sync::atomic::{AtomicUsize, Ordering};
    const UNKNOWN: usize = usize::MAX;
    static START: AtomicUsize = AtomicUsize::new(UNKNOWN);
    let mut start = START.load(Ordering::Relaxed);
    if start == UNKNOWN {
        start = read_start_brk().unwrap_or(0);
        START.store(start, Ordering::Relaxed);
    }
    let _errno = crate::os::errno::ErrnoGuard::save();
    // SAFETY: brk(0) changes nothing and returns the current break.
    let end = unsafe { libc::syscall(libc::SYS_brk, 0usize) } as usize;
    (start, end.max(start))
}

/// `start_brk` from `/proc/self/stat`: the 45th field after the command
/// name's closing parenthesis (which the name itself may contain).
fn read_start_brk() -> Option<usize> {
    let mut buf = [0u8; 1024];
    let n = crate::os::file::read_into(b"/proc/self/stat", &mut buf)?;
    let text = &buf[..n];
    let after = text.iter().rposition(|&c| c == b')')? + 1;
    let field = text[after..]
        .split(|&c| c == b' ')
        .filter(|f| !f.is_empty())
        .nth(44)?;
    Some(digits(field))
}

/// The number the decimal digits of `text` spell, other bytes skipped
/// (`/proc` fields: "VmRSS:  1234 kB", "94371840").
fn digits(text: &[u8]) -> usize {
    text.iter()
        .filter(|c| c.is_ascii_digit())
        .fold(0usize, |a, &c| {
            a.wrapping_mul(10).wrapping_add((c - b'0') as usize)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_break_heap_holds_the_break() {
        let (start, end) = break_heap();
        assert!(start > 0, "start_brk not read");
        assert!(start <= end);
        // The break heap lies above this test binary's data.
        static MARK: u8 = 0;
        assert!(start > &MARK as *const u8 as usize);
    }

    #[test]
    fn facts_are_plausible() {
        let (rss, peak) = rss();
        assert!(rss > 0 && peak >= rss);
        assert!(!thread_gone(gettid()));
        // SAFETY: pthread_self has no preconditions.
        assert_eq!(thread_id(), unsafe { libc::pthread_self() } as usize);
        // The kernel's bytes, not the fallback: the same word every time.
        assert_eq!(random_word(1), random_word(2));
    }
}
