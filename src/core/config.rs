//! Process-wide settings the core reads: the double-free key, the
//! instrumentation mode, and the options from `MMPOOL_*` variables.
//!
//! Set once by [`init`] (from `api::process`, before any heap exists;
//! the key and options are read without allocating) and, for the
//! instrumentation mode, by `insight` during that same initialisation.
//! Everything here is a relaxed atomic that only changes before the
//! first heap is made.
//!
//! Uses: `os::env`, `os::file`, `os::process`.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static FREE_KEY: AtomicUsize = AtomicUsize::new(0);
static INSTRUMENTED: AtomicBool = AtomicBool::new(false);
static ARENA_DEBUG: AtomicBool = AtomicBool::new(false);
static TRIM_THRESHOLD: AtomicUsize = AtomicUsize::new(16 << 20);
static TRIM_THRESHOLD_SET: AtomicBool = AtomicBool::new(false);
static MMAP_THRESHOLD: AtomicUsize = AtomicUsize::new(DEFAULT_MMAP_THRESHOLD);
static MMAP_THRESHOLD_SET: AtomicBool = AtomicBool::new(false);
static THP_ALWAYS: AtomicBool = AtomicBool::new(false);

/// The secure build (cargo feature `secure`, `make secure`): guard pages,
/// canaries on every block, zero on free, a quarantine, randomised slots
/// (see `api::secure`). A constant, so the default build's code is
/// exactly what it is without the feature.
pub(crate) const SECURE: bool = cfg!(feature = "secure");

/// glibc's default mmap threshold: large blocks of at least this many
/// bytes count as "mmapped" (`hblks`) in `mallinfo`, smaller ones as heap.
pub(crate) const DEFAULT_MMAP_THRESHOLD: usize = 128 << 10;

/// The secret mixed into the mark of every free block; a block being
/// freed that already carries its mark is checked for a double free.
/// Odd (never a valid pointer) and never zero once [`init`] ran.
#[inline(always)]
pub(crate) fn free_key() -> usize {
    FREE_KEY.load(Ordering::Relaxed)
}

static SLAB_SERIAL: AtomicUsize = AtomicUsize::new(0);

/// A fresh secret for a new slab at `span`: the process key mixed with
/// the span's address and a serial number, so no two slabs (not even two
/// lives of one span) share it. Bit 63 is set (the word a block holds
/// once handed out, 0, never looks like a free block's link) and the low
/// four bits are set (a link decoded from a word the program wrote over
/// a free block is misaligned unless that word ends in 0xf).
pub(crate) fn slab_key(span: usize) -> usize {
    let serial = SLAB_SERIAL.fetch_add(1, Ordering::Relaxed);
    let x = mix((free_key() ^ span ^ serial.wrapping_mul(0x9e37_79b9_7f4a_7c15)) as u64);
    (x as usize) | (1 << 63) | 0xf
}

/// splitmix64's finaliser: every input bit reaches every output bit (two
/// inputs a bit apart give unrelated outputs).
pub(crate) fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Make the key from the kernel's random bytes and read the options.
pub(crate) fn init() {
    let key = crate::os::process::random_word(&FREE_KEY as *const _ as usize) | 1;
    FREE_KEY.store(key, Ordering::Release);
    ARENA_DEBUG.store(
        crate::os::env::flag(b"MMPOOL_ARENA_DEBUG"),
        Ordering::Relaxed,
    );
    let mut mode = [0u8; 64];
    let n = crate::os::file::read_into(b"/sys/kernel/mm/transparent_hugepage/enabled", &mut mode);
    THP_ALWAYS.store(
        n.is_some_and(|n| thp_always_in(&mode[..n])),
        Ordering::Relaxed,
    );
}

/// Does the kernel's transparent huge page setting (the text of
/// `/sys/kernel/mm/transparent_hugepage/enabled`, the chosen mode in
/// brackets) say `always`?
fn thp_always_in(mode: &[u8]) -> bool {
    mode.windows(8).any(|w| w == b"[always]")
}

/// The kernel backs any 2 MiB-aligned range of an anonymous mapping
/// with a huge page at its first touch (transparent huge pages
/// `always`), so a mapping's untouched end is not free of memory there
/// (`core::large` does not round mappings up then).
pub(crate) fn thp_always() -> bool {
    THP_ALWAYS.load(Ordering::Relaxed)
}

/// Statistics, leak checks or tracing are on: heaps made from now on
/// route every allocation and free through the slow paths, where the
/// hooks run.
#[inline]
pub(crate) fn instrumented() -> bool {
    INSTRUMENTED.load(Ordering::Relaxed)
}

/// Set the instrumentation mode (by `insight`, before any heap exists).
pub(crate) fn set_instrumented(on: bool) {
    INSTRUMENTED.store(on, Ordering::Relaxed);
}

/// Idle resident bytes kept before the oldest go back to the OS (dirty
/// spans): `mallopt(M_TRIM_THRESHOLD)`, 16 MiB by default.
pub(crate) fn trim_threshold() -> usize {
    TRIM_THRESHOLD.load(Ordering::Relaxed)
}

/// The trim threshold if the program set one (then the large-block cache
/// keeps at most that much too).
pub(crate) fn trim_threshold_set() -> Option<usize> {
    TRIM_THRESHOLD_SET
        .load(Ordering::Relaxed)
        .then(trim_threshold)
}

/// Set the trim threshold.
pub(crate) fn set_trim_threshold(bytes: usize) {
    TRIM_THRESHOLD.store(bytes, Ordering::Relaxed);
    TRIM_THRESHOLD_SET.store(true, Ordering::Relaxed);
}

/// Large blocks of at least this many bytes are "mmapped" in glibc's
/// sense: counted in `hblks`/`hblkhd`, and, once the program set the
/// threshold with `mallopt(M_MMAP_THRESHOLD)`, returned to the OS at
/// free without a stay in the large-block cache.
pub(crate) fn mmap_threshold() -> (usize, bool) {
    (
        MMAP_THRESHOLD.load(Ordering::Relaxed),
        MMAP_THRESHOLD_SET.load(Ordering::Relaxed),
    )
}

/// Set the mmap threshold (`mallopt(M_MMAP_THRESHOLD)`).
pub(crate) fn set_mmap_threshold(bytes: usize) {
    MMAP_THRESHOLD.store(bytes, Ordering::Relaxed);
    MMAP_THRESHOLD_SET.store(true, Ordering::Relaxed);
}

/// `MMPOOL_ARENA_DEBUG=1`: every arena allocation is its own block.
pub(crate) fn arena_debug() -> bool {
    ARENA_DEBUG.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_huge_page_mode_is_the_bracketed_word() {
        assert!(thp_always_in(b"[always] madvise never\n"));
        assert!(!thp_always_in(b"always [madvise] never\n"));
        assert!(!thp_always_in(b"always madvise [never]\n"));
        assert!(!thp_always_in(b""));
    }
}
