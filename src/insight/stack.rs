//! Call stacks of allocations, captured without allocating: glibc's
//! `backtrace`, with this library's own frames skipped.
//!
//! Uses: `insight::symbols`.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Most frames recorded per stack.
pub(crate) const MAX_FRAMES: usize = 16;

/// Set once `warm_up` ran: from then on stacks may be captured (glibc's
/// `backtrace` is safe to call).
static STARTED: AtomicBool = AtomicBool::new(false);
static OUR_START: AtomicUsize = AtomicUsize::new(0);
static OUR_END: AtomicUsize = AtomicUsize::new(0);

/// A captured call stack: the frames outside this library, innermost
/// first.
#[derive(Clone, Copy)]
pub(crate) struct Stack {
    /// Return addresses (each minus one: inside the calling instruction).
    pub(crate) frames: [usize; MAX_FRAMES],
    /// How many are valid.
    pub(crate) len: usize,
}

impl Stack {
    /// No frames.
    pub(crate) const EMPTY: Stack = Stack {
        frames: [0; MAX_FRAMES],
        len: 0,
    };

    /// The innermost frame outside this library (the caller of malloc).
    pub(crate) fn caller(&self) -> usize {
        if self.len > 0 {
            self.frames[0]
        } else {
            0
        }
    }
}

/// Find our own code's address range (its frames are skipped) and make
/// glibc load what `backtrace` needs (libgcc, on first use: it
/// allocates). Call with the thread marked as in a hook, so those
/// allocations are not recorded.
pub(crate) fn warm_up() {
    find_our_range();
    let mut frames = [core::ptr::null_mut::<c_void>(); 4];
    // SAFETY: a valid buffer of 4 entries.
    unsafe { libc::backtrace(frames.as_mut_ptr(), 4) };
    STARTED.store(true, Ordering::Release);
}

/// Our code's address range, from our ELF program headers (mapped at the
/// module base that `dladdr` reports).
fn find_our_range() {
    let me = find_our_range as fn() as usize;
    let Some(info) = crate::insight::symbols::dl_info(me) else {
        return;
    };
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

/// Capture up to `depth` frames of the calling thread's stack, skipping
/// our own. Empty before [`warm_up`] ran.
pub(crate) fn capture(depth: usize) -> Stack {
    let mut st = Stack::EMPTY;
    if depth == 0 || !STARTED.load(Ordering::Acquire) {
        return st;
    }
    let mut raw = [core::ptr::null_mut::<c_void>(); MAX_FRAMES + 12];
    let want = (depth + 12).min(raw.len());
    // SAFETY: a buffer of `want` entries; warmed up.
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
