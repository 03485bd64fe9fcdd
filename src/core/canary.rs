//! Canaries: what catches a write past the end (or before the start) of a
//! medium or large block in the default build, as glibc's chunk headers
//! do, without a header per small block.
//!
//! A medium block (1.25-64 KiB) ends with a record: the size the program
//! asked for and a check word (a keyed hash of the block's address and
//! that size); the bytes from the requested size to the record (up to
//! [`TAIL`] of them) hold a keyed pattern. A large block keeps its
//! requested size in its header, a check word right before the block, and
//! the same pattern after it. `free` and `realloc` verify them: a linear
//! overflow of a byte or more hits the pattern or the record, an underflow
//! hits the previous medium block's record or the large block's check
//! word, and either stops the program with the block's address and size.
//! Medium and large allocations are slow paths already: a record costs a
//! few stores and loads there, and the small-block fast paths pay
//! nothing.
//!
//! The size the program can use (`malloc_usable_size`) is the requested
//! size: writing up to it is safe, one byte past it is an overflow.
//!
//! Uses: `core::size_class`.

/// Bytes of pattern after a block's requested size (fewer when the slack
/// is smaller).
pub(crate) const TAIL: usize = 16;
/// Bytes a medium block's record takes at its end.
pub(crate) const RECORD: usize = 8;

/// The odd multiplier of [`check_word`].
const CHECK_MUL: u64 = 0xd6e8_feb8_6659_fd93;

/// A keyed hash of a block's user pointer and requested size: one
/// multiply, its high half folded onto the low one (records keep the low
/// 32 bits, and the high half of the product depends on every input
/// bit, so a change of the size, kept in the input's high half, or of
/// the pointer changes them). A checksum under a secret key, not a MAC.
#[inline]
pub(crate) fn check_word(key: usize, p: usize, size: usize) -> u64 {
    let x = ((key ^ p ^ size.rotate_left(32)) as u64).wrapping_mul(CHECK_MUL);
    x ^ (x >> 32)
}

/// What a block was allocated by, for the secure build's `new`/`delete`
/// mismatch check: `malloc` and friends, `operator new`, `operator
/// new[]`. Part of a medium (in the secure build: every slab) block's
/// check word; a large block's header holds it.
pub(crate) const KIND_MALLOC: u8 = 0;
pub(crate) const KIND_NEW: u8 = 1;
pub(crate) const KIND_NEW_ARRAY: u8 = 2;

/// Kinds a record may carry: all three in the secure build, `malloc` only
/// in the default one (which does not mark blocks).
const KINDS: u8 = if cfg!(feature = "secure") { 3 } else { 1 };

/// What a block's `kind` adds to its check word (0 for `malloc`
/// blocks): the check word is [`check_word`] XOR this, so one hash tells
/// both whether a record is intact and which kind it carries.
#[inline]
fn kind_tag(kind: u8) -> u64 {
    (kind as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The check word of a block of `kind`.
#[inline]
fn kind_check(key: usize, p: usize, size: usize, kind: u8) -> u64 {
    check_word(key, p, size) ^ kind_tag(kind)
}

/// What a record keeps of the check word `check`: its low half with the
/// lowest bit set, so never 0. A record whose check is 0 holds no block
/// (freed: the secure build clears the whole record, the default build
/// its check); the plain low half is 0 for one block and size in 2^32,
/// and such a record, sealed for a block in use, was taken for a
/// damaged one (the secure build's neighbour check stopped correct
/// programs that seal many records).
#[inline(always)]
fn stored_check(check: u64) -> u32 {
    check as u32 | 1
}

/// The kind whose check word's kept half ([`stored_check`]) is `check`,
/// for a block handed out at `p` for `size` bytes, and that whole check
/// word: `None` when no kind's is (one hash).
#[inline]
fn kind_of(key: usize, p: usize, size: usize, check: u32) -> Option<(u8, u64)> {
    let hash = check_word(key, p, size);
    let kind = (0..KINDS).find(|&k| stored_check(hash ^ kind_tag(k)) == check)?;
    Some((kind, hash ^ kind_tag(kind)))
}

/// The pattern byte of a block with check word `check`: never 0 (untouched
/// memory, a string's terminator) nor ASCII (string data), the bytes an
/// off-by-one most often writes, so those are always seen.
#[inline]
fn pattern(check: u64) -> u8 {
    (check >> 56) as u8 | 0x80
}

/// Fill `[from, to)` with the pattern of `check`.
///
/// # Safety
/// The range is writable memory of the block's slack.
#[inline(always)]
unsafe fn fill(from: usize, to: usize, check: u64) {
    let want = pattern(check);
    let n = to.saturating_sub(from);
    if (8..=TAIL).contains(&n) {
        // The usual case: two word stores, overlapping when n < 16.
        let w = u64::from_ne_bytes([want; 8]);
        // SAFETY: contract: n >= 8 writable bytes.
        unsafe {
            (from as *mut u64).write_unaligned(w);
            ((to - 8) as *mut u64).write_unaligned(w);
        }
    } else if n > 0 {
        // SAFETY: contract.
        unsafe { core::ptr::write_bytes(from as *mut u8, want, n) };
    }
}

/// Does `[from, to)` still hold the pattern of `check`?
///
/// # Safety
/// The range is readable memory of the block's slack.
#[inline(always)]
unsafe fn intact(from: usize, to: usize, check: u64) -> bool {
    let want = pattern(check);
    let n = to.saturating_sub(from);
    if (8..=TAIL).contains(&n) {
        // As `fill` wrote it: two word loads.
        let w = u64::from_ne_bytes([want; 8]);
        // SAFETY: contract: n >= 8 readable bytes.
        return unsafe {
            (from as *const u64).read_unaligned() == w
                && ((to - 8) as *const u64).read_unaligned() == w
        };
    }
    // SAFETY: contract.
    (from..to).all(|a| unsafe { *(a as *const u8) } == want)
}

/// A medium block's record, in its last [`RECORD`] bytes: the requested
/// size, where the program's pointer is in the block (aligned blocks),
/// and the kept half of the check word ([`stored_check`]: never 0 while
/// the block is in use, 0 once it is freed).
#[repr(C)]
struct Record {
    size: u16,
    offset: u16,
    check: u32,
}

const _: () = assert!(core::mem::size_of::<Record>() == RECORD);
const _: () = assert!(crate::core::size_class::SMALL_MAX <= u16::MAX as usize + 1);

/// Write the record and pattern of a medium block `[start, end)` handed
/// out at `p` for a request of `size` bytes.
///
/// # Safety
/// `start <= p`, `p + size + RECORD <= end`, `end - start <= 64 KiB`;
/// the block is the caller's.
pub(crate) unsafe fn seal_medium(
    key: usize,
    p: usize,
    size: usize,
    start: usize,
    end: usize,
    kind: u8,
) {
    debug_assert!(start <= p && p + size + RECORD <= end);
    let check = kind_check(key, p, size, kind);
    let rec = end - RECORD;
    debug_assert!(rec % RECORD == 0);
    // One store of the whole record (`Record`'s layout, little-endian):
    // another thread's neighbour check (`api::secure`), or a child forked
    // at this moment, sees the old record or the new one, never a mix.
    let word = size as u64 | ((p - start) as u64) << 16 | (stored_check(check) as u64) << 32;
    // SAFETY: contract: the record (8-aligned: blocks are multiples of
    // 16 bytes) and the pattern lie in the slack.
    unsafe {
        (*(rec as *const core::sync::atomic::AtomicU64))
            .store(word, core::sync::atomic::Ordering::Relaxed);
        fill(p + size, (p + size + TAIL).min(rec), check);
    }
}

/// The requested size of the medium block `[start, end)` handed out at
/// `p`, if its record and pattern are intact.
///
/// # Safety
/// `p` is the pointer the block was handed out at, or any address inside
/// a live medium block `[start, end)`.
pub(crate) unsafe fn medium_size(key: usize, p: usize, start: usize, end: usize) -> Option<usize> {
    // SAFETY: forwarded contract.
    unsafe { medium_record(key, p, start, end) }.map(|(size, _)| size)
}

/// The requested size and kind of the medium block `[start, end)` handed
/// out at `p`, if its record and pattern are intact.
///
/// # Safety
/// As [`medium_size`].
#[inline]
pub(crate) unsafe fn medium_record(
    key: usize,
    p: usize,
    start: usize,
    end: usize,
) -> Option<(usize, u8)> {
    // SAFETY: contract: the record lies at the block's end.
    let r = unsafe { ((end - RECORD) as *const Record).read_unaligned() };
    let size = r.size as usize;
    if start + r.offset as usize != p || p + size > end - RECORD {
        return None;
    }
    let (kind, check) = kind_of(key, p, size, r.check)?;
    // SAFETY: as above: the pattern lies between the size and the record.
    let intact = unsafe { intact(p + size, (p + size + TAIL).min(end - RECORD), check) };
    intact.then_some((size, kind))
}

/// Is the record and pattern of the block ending at `end`, handed out at
/// its start `p` as a block of `kind`, intact? One hash: the secure
/// build's free fast path. False for anything else (another kind, an
/// aligned block, a damaged record): [`medium_record`] tells those apart.
///
/// # Safety
/// `[p, end)` is a carved block of a sealed slab.
#[inline(always)]
pub(crate) unsafe fn sealed_at_start(key: usize, p: usize, end: usize, kind: u8) -> bool {
    let rec = end - RECORD;
    // SAFETY: contract: the record lies at the block's end.
    let w = unsafe { (rec as *const u64).read() };
    let size = w as u16 as usize;
    if (w >> 16) as u16 != 0 || p + size > rec {
        return false;
    }
    let check = kind_check(key, p, size, kind);
    // SAFETY: as above: the pattern lies between the size and the record.
    (w >> 32) as u32 == stored_check(check)
        && unsafe { intact(p + size, (p + size + TAIL).min(rec), check) }
}

/// Is `check` the kept half ([`stored_check`]) of the check word of a
/// block handed out at `p` for `size` bytes (of any kind)?
pub(crate) fn record_check_matches(key: usize, p: usize, size: usize, check: u32) -> bool {
    kind_of(key, p, size, check).is_some()
}

/// The requested size of the medium block `[start, end)` if it is in
/// use (its record is sealed): for statistics, read while other threads
/// may change the block (every read stays inside it).
///
/// # Safety
/// `[start, end)` is a carved block of a medium slab.
pub(crate) unsafe fn medium_in_use(key: usize, start: usize, end: usize) -> Option<usize> {
    // SAFETY: contract.
    let r = unsafe { core::ptr::read_volatile((end - RECORD) as *const Record) };
    let p = start + r.offset as usize;
    let size = r.size as usize;
    (r.check != 0 && kind_of(key, p, size, r.check).is_some()).then_some(size)
}

/// Mark the medium block ending at `end` free: its record no longer
/// counts it as in use.
///
/// # Safety
/// The block is being freed, its record verified.
pub(crate) unsafe fn unseal_medium(end: usize) {
    // SAFETY: contract.
    unsafe { (*((end - RECORD) as *mut Record)).check = 0 };
}

/// Write the check word before a large block at `user` and the pattern
/// after its `size` requested bytes (up to `end`, its mapping's end).
///
/// # Safety
/// `[user - 8, user)` is the block's header room; `[user + size, end)`
/// its slack; the block is the caller's.
pub(crate) unsafe fn seal_large(key: usize, user: usize, size: usize, end: usize) {
    let check = check_word(key, user, size);
    // SAFETY: contract.
    unsafe {
        ((user - 8) as *mut u64).write(check);
        fill(user + size, (user + size + TAIL).min(end), check);
    }
}

/// Are the check word and pattern of a large block intact?
///
/// # Safety
/// As [`seal_large`], for a live block.
pub(crate) unsafe fn large_intact(key: usize, user: usize, size: usize, end: usize) -> bool {
    let check = check_word(key, user, size);
    // SAFETY: contract.
    unsafe {
        ((user - 8) as *const u64).read() == check
            && intact(user + size, (user + size + TAIL).min(end), check)
    }
}

/// A key under which the check word of a block handed out at `p` for
/// `size` bytes (below 2^32) has a low half of 0, shaped as slab keys
/// are (top bit set, low four bits 0xf): the multiply is solved for the
/// key's high half (the hash's high and low halves equal), so tests can
/// seal such a record without searching 2^32 keys.
#[cfg(test)]
pub(crate) fn key_hashing_to_zero(p: usize, size: usize) -> usize {
    let (c_lo, c_hi) = (CHECK_MUL as u32, (CHECK_MUL >> 32) as u32);
    // The inverse of the (odd) low half mod 2^32, by Newton's iteration.
    let mut inv = c_lo;
    for _ in 0..5 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(c_lo.wrapping_mul(inv)));
    }
    for i in 0u32.. {
        // The key's low half: low bits 0xf, as the hash input's is then.
        let a_lo = (i << 4 | 0xf) ^ p as u32;
        let prod = a_lo as u64 * c_lo as u64;
        let want = (prod as u32)
            .wrapping_sub((prod >> 32) as u32)
            .wrapping_sub(a_lo.wrapping_mul(c_hi));
        let a_hi = want.wrapping_mul(inv);
        let key = ((a_hi as u64) << 32 | a_lo as u64) as usize ^ p ^ size.rotate_left(32);
        if key >> 63 == 1 {
            debug_assert_eq!(check_word(key, p, size) as u32, 0);
            return key;
        }
    }
    unreachable!()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_past_the_end_or_before_the_record_is_caught() {
        let mut block = [0u8; 256];
        let start = block.as_mut_ptr() as usize;
        let end = start + block.len();
        // SAFETY: the test's own buffer.
        unsafe {
            seal_medium(7, start, 200, start, end, KIND_MALLOC);
            assert_eq!(medium_size(7, start, start, end), Some(200));
            assert_eq!(medium_in_use(7, start, end), Some(200));
            assert_eq!(medium_size(8, start, start, end), None, "another key");
            *(start as *mut u8).add(200) ^= 1;
            assert_eq!(
                medium_size(7, start, start, end),
                None,
                "overflow by one byte"
            );
            *(start as *mut u8).add(200) ^= 1;
            *(start as *mut u8).add(250) ^= 1;
            assert_eq!(medium_size(7, start, start, end), None, "the record hit");
            *(start as *mut u8).add(250) ^= 1;
            assert_eq!(medium_size(7, start, start, end), Some(200));
            unseal_medium(end);
            assert_eq!(medium_in_use(7, start, end), None, "freed");
            seal_medium(7, start + 32, 100, start, end, KIND_MALLOC);
            assert_eq!(
                medium_size(7, start + 32, start, end),
                Some(100),
                "aligned inside"
            );
            assert_eq!(
                medium_size(7, start, start, end),
                None,
                "not where it was handed out"
            );
        }
        let mut large = [0u64; 64];
        let user = large.as_mut_ptr() as usize + 64;
        let end = large.as_mut_ptr() as usize + 512;
        // SAFETY: as above.
        unsafe {
            seal_large(3, user, 100, end);
            assert!(large_intact(3, user, 100, end));
            *((user - 1) as *mut u8) ^= 0x80;
            assert!(!large_intact(3, user, 100, end), "underflow by one byte");
            *((user - 1) as *mut u8) ^= 0x80;
            *((user + 100) as *mut u8) = 0;
            assert!(!large_intact(3, user, 100, end), "overflow by one byte");
        }
    }

    #[test]
    fn the_kept_half_of_a_check_word_follows_size_pointer_and_key() {
        // Records keep the low 32 bits: every change of the size (in the
        // input's high half), the pointer or the key must reach them.
        let mut x = 0x1234_5678_9abc_def1u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (key, p, size) = (
                x as usize,
                (x >> 20) as usize & !15,
                (x >> 40) as usize & 0xffff,
            );
            let c = check_word(key, p, size) as u32;
            assert_ne!(c, check_word(key, p, size + 1) as u32, "size");
            assert_ne!(
                c,
                check_word(key, p, size ^ 0x8000) as u32,
                "size's top bit"
            );
            assert_ne!(c, check_word(key, p + 16, size) as u32, "pointer");
            assert_ne!(
                c,
                check_word(key ^ (1 << 63), p, size) as u32,
                "key's top bit"
            );
        }
    }

    #[test]
    fn a_record_tells_its_kind_in_the_secure_build() {
        let mut block = [0u8; 128];
        let start = block.as_mut_ptr() as usize;
        let end = start + block.len();
        // SAFETY: the test's own buffer.
        unsafe {
            seal_medium(5, start, 60, start, end, KIND_NEW_ARRAY);
            let want = (KINDS == 3).then_some((60, KIND_NEW_ARRAY));
            assert_eq!(medium_record(5, start, start, end), want);
            assert_eq!(medium_in_use(5, start, end), want.map(|w| w.0));
            seal_medium(5, start, 60, start, end, KIND_MALLOC);
            assert_eq!(medium_record(5, start, start, end), Some((60, KIND_MALLOC)));
        }
    }

    #[test]
    fn a_record_whose_hash_is_zero_still_holds_its_block() {
        // One block and size in 2^32 has a check word whose low half is
        // 0; its record must still read as sealed and in use (the
        // secure build's neighbour check took it for a damaged one).
        let mut block = [0u64; 32];
        let start = block.as_mut_ptr() as usize;
        let end = start + 256;
        let key = key_hashing_to_zero(start, 200);
        assert_eq!(check_word(key, start, 200) as u32, 0);
        assert_eq!((key >> 63, key & 0xf), (1, 0xf), "shaped as a slab key");
        // SAFETY: the test's own buffer.
        unsafe {
            seal_medium(key, start, 200, start, end, KIND_MALLOC);
            let w = ((end - RECORD) as *const u64).read();
            assert_ne!(w >> 32, 0, "a sealed record's check is never 0");
            assert!(record_check_matches(key, start, 200, (w >> 32) as u32));
            assert!(sealed_at_start(key, start, end, KIND_MALLOC));
            assert_eq!(medium_size(key, start, start, end), Some(200));
            assert_eq!(medium_in_use(key, start, end), Some(200));
            unseal_medium(end);
            assert_eq!(medium_in_use(key, start, end), None, "freed");
        }
    }
}
