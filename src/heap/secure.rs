//! The secure build's free side: a freed slab block is zeroed, marked and
//! quarantined (`heap::quarantine`) before it goes back to its slab, and
//! checked to be still zero when it leaves; `api::secure` does the checks
//! of the block before (its canaries, its kind) and hands it here.
//!
//! A quarantined block holds zeros but for its first word, the
//! quarantine mark (a keyed function of its address): a second free of it
//! is a double free. A write after free shows as a non-zero byte when the
//! block leaves the quarantine, when a later free sweeps past it (its
//! first [`SWEEP_BYTES`]), or when `malloc` hands the block out again
//! ([`still_zero`] from its third word: the first two carry free-list and
//! queue links).
//!
//! Uses: `core::config`, `core::pagemap`, `heap::free`, `heap::hook`,
//! `heap::quarantine`, `heap::types`, `util::diag`.

use crate::core::pagemap::PAGEMAP;
use crate::heap::free;
use crate::heap::quarantine::Leaving;
use crate::heap::types::{is_thread_heap, Heap};

/// Bytes of a quarantined block a later free re-checks (its first
/// ones; 16-byte multiple: block sizes are).
const SWEEP_BYTES: usize = 256;

/// The first word of a quarantined block at `b`.
#[inline]
pub(crate) fn mark(b: usize) -> usize {
    (b ^ crate::core::config::free_key().rotate_left(29)) | 1
}

/// Is the block at `b` quarantined (its first word is the mark)?
///
/// # Safety
/// `b` is a readable block start.
#[inline]
pub(crate) unsafe fn is_quarantined(b: usize) -> bool {
    // SAFETY: contract.
    unsafe { *(b as *const usize) == mark(b) }
}

/// Are the bytes `[from, to)` all zero?
///
/// # Safety
/// The range is readable; both bounds are 16-aligned (a block's, or 16
/// bytes into one: blocks are 16-aligned multiples of 16 bytes).
#[inline(always)]
pub(crate) unsafe fn still_zero(from: usize, to: usize) -> bool {
    debug_assert!(from % 16 == 0 && to % 16 == 0);
    // SAFETY: contract.
    unsafe { or_16(from, to) == 0 }
}

/// Is the quarantined block at `b` as [`quarantine`] left it, as far as
/// its first `n` bytes (a multiple of 16, at least 16): its first word
/// the mark, the rest zero? One test for both (a non-zero byte stops the
/// program: no need to stop early).
///
/// # Safety
/// `[b, b + n)` is readable; `b` is 16-aligned.
#[inline(always)]
pub(crate) unsafe fn still_quarantined(b: usize, n: usize) -> bool {
    debug_assert!(b % 16 == 0 && n % 16 == 0 && n >= 16);
    // SAFETY: contract.
    unsafe {
        let head = (*(b as *const usize) ^ mark(b)) | *((b + 8) as *const usize);
        head == 0 && or_16(b + 16, b + n) == 0
    }
}

/// The OR of the 16-byte words of `[from, to)` (16-aligned bounds),
/// folded to 64 bits.
///
/// # Safety
/// The range is readable.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn or_16(from: usize, to: usize) -> u64 {
    use core::arch::x86_64::{__m128i, _mm_cvtsi128_si64, _mm_load_si128, _mm_or_si128};
    use core::arch::x86_64::{_mm_setzero_si128, _mm_unpackhi_epi64};
    let mut a = from;
    // SAFETY: contract: 16-aligned loads inside the range (SSE2 is part
    // of x86_64).
    unsafe {
        let (mut v, mut w) = (_mm_setzero_si128(), _mm_setzero_si128());
        while a + 32 <= to {
            v = _mm_or_si128(v, _mm_load_si128(a as *const __m128i));
            w = _mm_or_si128(w, _mm_load_si128((a + 16) as *const __m128i));
            a += 32;
        }
        if a < to {
            v = _mm_or_si128(v, _mm_load_si128(a as *const __m128i));
        }
        v = _mm_or_si128(v, w);
        (_mm_cvtsi128_si64(v) | _mm_cvtsi128_si64(_mm_unpackhi_epi64(v, v))) as u64
    }
}

/// [`or_16`] without SSE2: words.
///
/// # Safety
/// As [`or_16`].
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
unsafe fn or_16(from: usize, to: usize) -> u64 {
    // SAFETY: contract.
    (from..to)
        .step_by(8)
        .fold(0, |acc, a| acc | unsafe { *(a as *const u64) })
}

/// A block was written after it was freed.
#[cold]
#[inline(never)]
pub(crate) fn written_after_free(b: usize, size: usize) -> ! {
    crate::util::diag::fatal_block("write after free: a freed block was modified at", b, size)
}

/// Quarantine the freed slab block `[b, b + size)` of the calling
/// thread's `heap` (its checks passed): zero it, mark it, and release the
/// blocks that leave the quarantine for it. Without a thread heap (an
/// exiting thread) the block is released at once.
///
/// # Safety
/// `[b, b + size)` is a live block of ours being freed, `heap` the calling
/// thread's.
#[inline(always)]
pub(crate) unsafe fn quarantine(heap: *mut Heap, b: usize, size: usize) {
    // SAFETY: contract.
    unsafe {
        // The record first, in one store: `memset` may clear a word in
        // pieces, and the next block's neighbour check (another thread's
        // free, or a child forked meanwhile) must never see half a record.
        (*((b + size - 8) as *const core::sync::atomic::AtomicU64))
            .store(0, core::sync::atomic::Ordering::Relaxed);
        core::ptr::write_bytes(b as *mut u8, 0, size);
        *(b as *mut usize) = mark(b);
        if !is_thread_heap(heap) {
            return leave_now(heap, b, size);
        }
        let q = &mut (*heap).local.quarantine;
        if let Some((s, n)) = q.sweep() {
            // The swept block's first bytes only (its mark and where
            // writes through a stale pointer land first): the whole block
            // is checked when it leaves, and a full pass here would read
            // up to a whole block (64 KiB) per free.
            if !still_quarantined(s, n.min(SWEEP_BYTES)) {
                written_after_free(s, n);
            }
        }
        let seed = heap as usize ^ crate::core::config::free_key();
        if let Some((l, n)) = q.put(b, size, seed) {
            leave(heap, l, n);
        }
        if (*heap).local.quarantine.over() {
            shed(heap, b, seed);
        }
    }
}

/// The quarantine of `heap` holds more than its bound in bytes: release
/// random blocks (never `keep`, the one just put) until it does not.
///
/// # Safety
/// As [`quarantine`].
#[cold]
#[inline(never)]
unsafe fn shed(heap: *mut Heap, keep: usize, seed: usize) {
    let mut out = Leaving::new();
    // SAFETY: contract: the calling thread's heap.
    unsafe {
        (*heap).local.quarantine.shed(keep, seed, &mut out);
        for &(l, n) in &out.blocks[..out.n] {
            leave(heap, l, n);
        }
    }
}

/// A block leaves the quarantine: still zero, it goes back to its slab.
///
/// # Safety
/// `[b, b + size)` is a quarantined block; `heap` the calling thread's
/// (or one it owns alone).
#[inline(always)]
unsafe fn leave(heap: *mut Heap, b: usize, size: usize) {
    // SAFETY: contract.
    unsafe {
        if !still_quarantined(b, size) {
            written_after_free(b, size);
        }
        *(b as *mut usize) = 0;
        // The program freed it long ago: the tools were told then.
        let _quiet = crate::core::config::instrumented().then(crate::heap::hook::HookGuard::enter);
        // The upkeep, if it becomes due here, runs in `api::secure`'s
        // free after the quarantine.
        if !free::free_cached(heap, b as *mut u8, |_| {}) {
            free::free(heap, b as *mut u8, PAGEMAP.lookup(b));
        }
    }
}

/// [`leave`] out of line: a block freed by a thread without a heap of
/// its own (exiting) goes back at once.
///
/// # Safety
/// As [`leave`].
#[cold]
#[inline(never)]
unsafe fn leave_now(heap: *mut Heap, b: usize, size: usize) {
    // SAFETY: forwarded contract.
    unsafe { leave(heap, b, size) }
}

/// Release every block of `heap`'s quarantine (its thread exits, or the
/// heap is given up).
///
/// # Safety
/// `heap` is a thread heap its caller owns alone.
pub(crate) unsafe fn drain(heap: *mut Heap) {
    loop {
        let mut out = Leaving::new();
        // SAFETY: contract.
        if !unsafe { (*heap).local.quarantine.drain(&mut out) } {
            return;
        }
        for &(b, n) in &out.blocks[..out.n] {
            // SAFETY: a block that was quarantined.
            unsafe { leave(heap, b, n) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A quarantined block's check sees a change of any of its words (the
    /// mark, the second word, every other word up to `n`) and nothing
    /// past `n`; `still_zero` sees any non-zero word of its range.
    #[test]
    fn the_checks_see_every_word_and_no_more() {
        crate::core::config::init();
        #[repr(C, align(16))]
        struct Buf([u64; 80]);
        for n in [16usize, 32, 48, 64, 256, 512] {
            let mut buf = Buf([0; 80]);
            let b = buf.0.as_mut_ptr() as usize;
            // SAFETY: our own buffer, 16-aligned, 640 bytes (n + 8 fit).
            unsafe {
                *(b as *mut usize) = mark(b);
                assert!(still_quarantined(b, n), "n {n}: intact");
                for w in 0..n / 8 {
                    let p = (b + w * 8) as *mut u64;
                    let old = *p;
                    *p ^= 1 << (w % 64);
                    assert!(!still_quarantined(b, n), "n {n}: word {w} written");
                    if w >= 2 {
                        assert!(!still_zero(b + 16, b + n), "n {n}: word {w}");
                    }
                    *p = old;
                }
                *((b + n) as *mut u64) = 7;
                assert!(still_quarantined(b, n), "n {n}: a word past the block");
                assert!(still_zero(b + 16, b + n));
            }
        }
    }
}
