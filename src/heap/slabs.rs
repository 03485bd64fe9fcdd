//! A heap's own slabs: taking blocks from them, giving blocks back to
//! them, and slabs coming and going — the operations a thread heap and a
//! per-CPU heap share (the caller makes sure it owns the heap: its
//! thread, or the per-CPU heap's lock).
//!
//! Invariant kept here, for a slab that is on a list of its heap and not
//! its class's biased (current) slab:
//! `used + |free| + |local_free| + (end - bump) / block_size == capacity`.
//! The biased slab's `used` is not counted by malloc: frees count it
//! down from [`CURRENT_TICKS`] (the heap's upkeep tick), and it is
//! recounted when the slab stops being current.
//!
//! Uses: `core::config`, `core::pagemap`, `core::size_class`, `core::slab`, `core::span`,
//! `heap::types`, `os`, `os::errno`, `util::diag`.

use crate::core::pagemap::TAG_FREE;
use crate::core::size_class::{
    fallback_granules, GRANULE, NUM_CLASSES, SHARED_FROM, SLAB_GRANULES,
};
use crate::core::slab::{Block, Slab, OWNER_FULL};
use crate::core::span::SPANS;
use crate::heap::types::{empty_slab_ptr, Heap, HeapLocal, CURRENT_TICKS, SPARES};
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of empty slab spans kept by thread heaps as spares (see
/// [`keep_spare`]): resident and idle, as the span cache's dirty spans.
pub(crate) static SPARE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Slabs alive per class (kept always; slow paths only).
pub(crate) static SLABS_LIVE: [AtomicUsize; NUM_CLASSES] =
    [const { AtomicUsize::new(0) }; NUM_CLASSES];
/// Bytes of those slabs' spans.
pub(crate) static SLAB_BYTES: [AtomicUsize; NUM_CLASSES] =
    [const { AtomicUsize::new(0) }; NUM_CLASSES];

/// Move the blocks the owner freed into the current slab's `free` list
/// and pop one; null when there were none.
///
/// # Safety
/// `slab` is a slab of a heap the caller owns.
#[inline(always)]
pub(crate) unsafe fn pop_local_free(slab: *mut Slab) -> *mut u8 {
    // SAFETY: contract: owner-only fields.
    unsafe {
        if (*slab).local_free == (*slab).terminator() {
            return null_mut();
        }
        (*slab).free = (*slab).local_free;
        (*slab).local_free = (*slab).terminator();
        (*slab).pop().cast()
    }
}

/// Pop from the first slab of `avail[class]` that has a free block,
/// moving exhausted slabs to the full list.
///
/// # Safety
/// The caller owns the heap of `h`.
pub(crate) unsafe fn pop_from_avail(h: &mut HeapLocal, class: usize) -> Option<*mut u8> {
    loop {
        let s = h.avail[class].first;
        if s.is_null() {
            h.set_current(class);
            return None;
        }
        // SAFETY: `s` is a slab of this heap (list invariant).
        unsafe {
            if (*s).refill() {
                h.set_current(class);
                return Some((*s).pop().cast());
            }
            retire_full(h, class, s);
        }
    }
}

/// Move `s`, a slab of `avail[class]` without a free block, to the full
/// list: a free into it brings it back ([`free_in`]).
///
/// # Safety
/// The caller owns the heap of `h`; `s` is on `h.avail[class]`.
pub(crate) unsafe fn retire_full(h: &mut HeapLocal, class: usize, s: *mut Slab) {
    // SAFETY: contract.
    unsafe {
        h.avail[class].remove(s);
        h.uncache_slab(s);
        (*s).head.owner.fetch_or(OWNER_FULL, Ordering::Relaxed);
        h.full.push_back(s);
    }
}

/// Give the heap a new slab of `class` from the span cache, make it the
/// current one and pop its first block; null (errno `ENOMEM`) when no
/// span can be had. When the class's usual span cannot be had (a tight
/// address-space limit), the smallest span that holds a block serves
/// (`fallback_granules`: one granule, two for the 64 KiB class (and the
/// 56 KiB one in the secure build), whose blocks do not fit in one beside
/// the header; a one-granule slab
/// of those held no block, and each failed malloc left one behind).
///
/// # Safety
/// The caller owns the heap of `h`.
pub(crate) unsafe fn pop_from_new_slab(h: &mut HeapLocal, class: usize) -> *mut u8 {
    let usual = SLAB_GRANULES[class] as usize;
    let small = fallback_granules(class);
    if usual == 1 && h.spares_n == 0 && h.keeps_spares {
        // SAFETY: contract (the caller owns the heap of `h`).
        unsafe { retire_idle_slabs(h, class) };
    }
    // (A spare's header is its last slab's: whether its guards are
    // closed.)
    let spare = if usual == 1 { take_spare(h) } else { None }
        // SAFETY: a spare is a span whose header is a dead slab's.
        .map(|s| (s, unsafe { (*s.as_ptr().cast::<Slab>()).guarded }));
    let ((span, guarded), granules) = match spare.or_else(|| SPANS.acquire(usual, class as u32)) {
        Some(s) => (s, usual),
        None => match (usual > small)
            .then(|| SPANS.acquire(small, class as u32))
            .flatten()
        {
            Some(s) => (s, small),
            None => {
                crate::os::errno::set(libc::ENOMEM);
                return null_mut();
            }
        },
    };
    // The secure build's guard pages (`core::span::set_guards`): closed
    // unless the span kept them closed since its last slab.
    let guarded = guarded
        || (crate::core::config::SECURE
            && crate::core::span::set_guards(span.as_ptr() as usize, granules, true));
    // SAFETY: a fresh span of `granules` granules (at least
    // `fallback_granules`: it holds a block of the class), ours alone.
    unsafe {
        let s = Slab::init(span.as_ptr(), granules, class, h.owner_word);
        (*s).guarded = guarded;
        SLABS_LIVE[class].fetch_add(1, Ordering::Relaxed);
        SLAB_BYTES[class].fetch_add(granules * GRANULE, Ordering::Relaxed);
        h.avail[class].push_front(s);
        h.set_current(class);
        (*s).refill();
        (*s).pop().cast()
    }
}

/// A signature of the state of `s`, the current slab of its class: it
/// changes when a block is popped from or pushed to its lists (their
/// heads move, or `used` counts a free) or another slab becomes current.
/// Two signatures that match are taken to mean no use in between. A
/// collision (a loop that took and gave back blocks until the heads and
/// the count came back to the same values) can make
/// [`retire_idle_slabs`] count a slab for nothing or give up an empty
/// slab of a class in use: time, never safety (a slab goes back only
/// when counted empty).
///
/// # Safety
/// `s` is a live slab of a heap the caller owns.
unsafe fn idle_signature(s: *mut Slab) -> usize {
    // SAFETY: contract: owner-only fields.
    unsafe {
        s as usize
            ^ ((*s).free as usize).rotate_left(17)
            ^ ((*s).local_free as usize).rotate_left(31)
            ^ ((*s).used as usize).rotate_left(48)
    }
}

/// Before `class` takes a span with no spare at hand: give back the current
/// slabs of the heap's other small classes that are empty and were not
/// used since the last such look, so the span is one of theirs. A current
/// slab stays with its class when it empties (malloc does not count its
/// blocks, so nobody sees it empty), and a loop that allocates a batch of
/// one size, frees it all and goes on with another size left every class
/// it went through holding a slab of touched pages nobody used; their
/// sum, not the batch, set the program's peak. mimalloc retires a page
/// that empties after a short delay the same way.
///
/// A class is looked at only if the signature of its current slab
/// ([`idle_signature`]) is the one the previous look saw (no block taken
/// or given back since: a class in use, even on its fast paths alone,
/// keeps its slab), and at least as many blocks were freed into the slab
/// since it became current as the last count found in use (`idle_need`;
/// `used` counts frees down from `CURRENT_TICKS`): else it cannot be
/// empty. Only those slabs are counted, in address order
/// (`Slab::used_by_scan`); one found still in use becomes current again, its count
/// of frees restarted, and is not counted again until that many blocks
/// were freed into it. An empty one is checked as every slab that empties
/// is (`Slab::check_empty`) and becomes a spare (`release_listed`), which
/// the caller takes next.
///
/// # Safety
/// The caller owns the heap of `h`, a thread heap.
unsafe fn retire_idle_slabs(h: &mut HeapLocal, class: usize) {
    for c in 0..SHARED_FROM {
        let s = h.biased[c];
        if s == empty_slab_ptr() {
            h.idle_sig[c] = 0;
            continue;
        }
        if c == class {
            continue;
        }
        // SAFETY: a current slab is a live slab of this heap (contract).
        unsafe {
            let sig = idle_signature(s);
            let freed = CURRENT_TICKS.saturating_sub((*s).used);
            if core::mem::replace(&mut h.idle_sig[c], sig) != sig
                || freed < h.idle_need[c].max(1) as u32
            {
                continue;
            }
            let in_use = recount_current(h, c, s);
            if in_use == 0 {
                h.idle_sig[c] = 0;
            }
            h.idle_need[c] = in_use.min(CURRENT_TICKS - 1) as u16;
        }
    }
}

/// Count the blocks in use of `s`, class `c`'s current slab, in address
/// order (`Slab::used_by_scan`: a current slab is counted when it may be
/// empty, and then every block is on its lists, which a walk would visit
/// one link at a time; a count of 0 is `Slab::check_empty`'s test
/// passed); it stops being current with that count, goes back if it is
/// 0, and the class's first available slab becomes current again (`s`
/// itself if it stayed). Returns the count. The heap's lingering mark is
/// as before: a slab the count found empty is gone. `retire_idle_slabs`
/// and `release_empty` share it.
///
/// # Safety
/// The caller owns the heap of `h`; `s` is `h.biased[c]`, not the empty
/// slab.
unsafe fn recount_current(h: &mut HeapLocal, c: usize, s: *mut Slab) -> u32 {
    let lingering = h.lingering;
    // SAFETY: contract: a live slab of ours, its owner thread.
    let in_use = unsafe { (*s).used_by_scan() };
    h.clear_current_of(c, Some(in_use));
    if in_use == 0 {
        // SAFETY: no longer current, and its count says no block of it is
        // out: nobody uses it; it is on `avail[c]`.
        unsafe { release_listed(h, c, s) };
        h.lingering = lingering;
    }
    h.set_current(c);
    in_use
}

/// Give a slab's span back to the span cache.
///
/// # Safety
/// Nobody uses the slab any more, and it is on no list.
pub(crate) unsafe fn release_slab(slab: *mut Slab) {
    // SAFETY: contract.
    unsafe {
        forget_slab(slab);
        let granules = (*slab).head.granules as usize;
        SPANS.release(
            NonNull::new_unchecked(slab.cast()),
            granules,
            (*slab).class as u32,
            (*slab).guarded,
        );
    }
}

/// Take `slab` off the per-class counters: it is no slab any more.
///
/// # Safety
/// `slab` is a live slab header.
unsafe fn forget_slab(slab: *mut Slab) {
    // SAFETY: contract.
    unsafe {
        let class = (*slab).class as usize;
        SLABS_LIVE[class].fetch_sub(1, Ordering::Relaxed);
        SLAB_BYTES[class].fetch_sub((*slab).head.granules as usize * GRANULE, Ordering::Relaxed);
    }
}

// Spares: a thread heap keeps the spans of up to `SPARES` emptied
// one-granule slabs and takes its next new slabs from them, newest first,
// before the span cache: a loop that allocates a batch of blocks and
// frees them all empties and refills slabs all the time, and through
// the span cache each slab cost two takes of its lock, contended by
// every thread doing the same, and came back as a span another thread
// had last touched (the README's "Spare spans" has the measurements).
// mimalloc keeps a thread's emptied pages the same way. A spare is no
// slab: its header says `TAG_FREE` (a free of a stale pointer into it is
// reported as the span cache's are) and the per-class counters forget
// it. The spares go back to the span cache when the heap is parked or
// given up, at the owner's `malloc_trim`, and one at a time after
// `SPARE_IDLE_UPKEEPS` upkeeps of the owner in a row that kept or took
// none. A thread that stops calling the allocator keeps its spares (at
// most `SPARES` granules) until it exits, as it keeps its current slabs.

/// Keep `slab`'s span as a spare of `h` if `h` keeps spares, has room,
/// and the span is one granule; false otherwise (the caller releases it).
///
/// # Safety
/// The caller owns `h`; nobody uses `slab` any more, and it is on no list.
unsafe fn keep_spare(h: &mut HeapLocal, slab: *mut Slab) -> bool {
    // SAFETY: contract.
    unsafe {
        if !h.keeps_spares || h.spares_n as usize >= SPARES || (*slab).head.granules != 1 {
            return false;
        }
        forget_slab(slab);
        (*slab).head.tag = TAG_FREE;
        (*slab).head.owner.store(0, Ordering::Relaxed);
    }
    h.spares[h.spares_n as usize] = slab;
    h.spares_n += 1;
    h.spares_taken = true;
    SPARE_BYTES.fetch_add(GRANULE, Ordering::Relaxed);
    true
}

/// The newest spare span of `h` for a new slab, or `None`.
fn take_spare(h: &mut HeapLocal) -> Option<NonNull<u8>> {
    let n = h.spares_n as usize;
    (n > 0).then(|| {
        h.spares_taken = true;
        remove_spare(h, n - 1)
    })
}

/// Take spare `i` (of `spares_n`) off `h`'s spares.
fn remove_spare(h: &mut HeapLocal, i: usize) -> NonNull<u8> {
    let n = h.spares_n as usize;
    debug_assert!(i < n);
    let s = h.spares[i];
    h.spares.copy_within(i + 1..n, i);
    h.spares_n -= 1;
    SPARE_BYTES.fetch_sub(GRANULE, Ordering::Relaxed);
    // SAFETY: a held spare is a span, never null.
    unsafe { NonNull::new_unchecked(s.cast()) }
}

/// Give spare `i` of `h` back to the span cache.
///
/// # Safety
/// The caller owns `h`; `i < spares_n`.
unsafe fn release_spare(h: &mut HeapLocal, i: usize) {
    let s = remove_spare(h, i);
    // SAFETY: a spare is a one-granule span that nobody uses; its header
    // still names the class of the slab it was (the span cache's hint).
    unsafe {
        let slab = s.as_ptr().cast::<Slab>();
        SPANS.release(s, 1, (*slab).class as u32, (*slab).guarded);
    }
}

/// Give every spare of `h` back to the span cache.
///
/// # Safety
/// The caller owns `h`.
pub(crate) unsafe fn release_spares(h: &mut HeapLocal) {
    while h.spares_n > 0 {
        // SAFETY: contract; the newest spare exists.
        unsafe { release_spare(h, h.spares_n as usize - 1) };
    }
}

/// Upkeeps in a row without a spare kept or taken before the oldest
/// spare goes back (see [`age_spares`]).
const SPARE_IDLE_UPKEEPS: u8 = 16;

/// The upkeep's look at the spares: after [`SPARE_IDLE_UPKEEPS`] upkeeps
/// in a row without a spare kept or taken, the oldest goes back, and so
/// on. Giving all back at the first idle upkeep (or one at each) made a
/// loop whose small batches fit in its current slabs for a while give
/// back the spares its next big batch needed.
///
/// # Safety
/// The caller owns `h`.
#[inline(always)]
pub(crate) unsafe fn age_spares(h: &mut HeapLocal) {
    if h.spares_n == 0 {
        return;
    }
    if core::mem::take(&mut h.spares_taken) {
        h.spares_idle = 0;
        return;
    }
    h.spares_idle += 1;
    if h.spares_idle >= SPARE_IDLE_UPKEEPS {
        h.spares_idle = 0;
        // SAFETY: contract; a spare exists.
        unsafe { release_spare(h, 0) };
    }
}

/// Free a block of one of the heap's own slabs, whatever its flags.
/// `user` is the pointer the program passed (named in error messages);
/// 0 skips the double-free check (blocks from remote queues and medium
/// caches were checked when first freed).
///
/// # Safety
/// The caller owns `heap`, which owns `slab`; `b` is a block of `slab`.
pub(crate) unsafe fn free_in(heap: *mut Heap, slab: *mut Slab, b: *mut Block, user: usize) {
    // SAFETY: contract: our heap and slab; owner-only fields.
    unsafe {
        if user != 0 && (*slab).looks_free(b) && (*slab).is_on_free_lists(b as usize) {
            double_free(user, slab);
        }
        let h = &mut (*heap).local;
        if (*slab).head.owner.load(Ordering::Relaxed) & OWNER_FULL != 0 {
            h.full.remove(slab);
            (*slab).head.owner.fetch_and(!OWNER_FULL, Ordering::Relaxed);
            let class = (*slab).class as usize;
            h.avail[class].push_back(slab);
            if h.avail[class].first == slab {
                h.set_current(class);
            }
        }
        if (*slab).push_local(b) {
            slab_emptied(slab, heap);
        }
    }
}

/// A slab of ours reached `used == 0`: give it back. The current slab
/// of a class reaches 0 after [`CURRENT_TICKS`] frees (malloc does not
/// count on it): its count restarts instead, and the heap's upkeep is due
/// (`upkeep_due`: the caller's `tick`, or the next
/// `heap::alloc::upkeep_if_due`, runs it; only thread heaps read the
/// flag, a per-CPU heap runs its upkeep by its own count).
///
/// # Safety
/// The caller owns `heap`, which owns `slab`, on an `avail` list.
#[cold]
#[inline(never)]
pub(crate) unsafe fn slab_emptied(slab: *mut Slab, heap: *mut Heap) {
    // SAFETY: contract (emptied slabs are never on the full list: the
    // full flag is cleared before the push).
    unsafe {
        let h = &mut (*heap).local;
        if (*slab).current {
            // One less than a new current slab's count: `used ==
            // CURRENT_TICKS` then tells that nothing was freed into the
            // slab since it became current (`release_empty`).
            (*slab).used = CURRENT_TICKS - 1;
            h.upkeep_due = true;
            return;
        }
        (*slab).check_empty();
        release_listed(h, (*slab).class as usize, slab);
    }
}

/// Take `s`, an empty slab on `h.avail[class]` (not the current one), off
/// the list and give its span back.
///
/// # Safety
/// The caller owns the heap of `h`; nobody uses `s` any more.
unsafe fn release_listed(h: &mut HeapLocal, class: usize, s: *mut Slab) {
    // SAFETY: contract.
    unsafe {
        h.avail[class].remove(s);
        h.uncache_slab(s);
        if !keep_spare(h, s) {
            release_slab(s);
        }
    }
}

/// Give back every slab of `h` without a live block, the current slabs
/// included (`malloc_trim`, on the per-CPU heaps and the caller's heap).
///
/// A slab that empties goes back at once unless it is current
/// ([`slab_emptied`]), so only two kinds can be left: a current slab, and
/// one that stopped being current with no block in use (`lingering`).
/// A current slab is counted (a pass over its blocks: `recount_current`)
/// only if a block was freed into it since it became current (it held a
/// block in use then, and the count of frees starts at [`CURRENT_TICKS`]
/// only then);
/// the lists are walked only if a slab lingers. stress-ng's malloc
/// stressor calls `malloc_trim` every 8 operations: recounting every
/// class's current slab and walking every list took 26,000 instructions
/// a call, half of all the instructions of its run.
///
/// # Safety
/// The caller owns `h`.
pub(crate) unsafe fn release_empty(h: *mut Heap) {
    // SAFETY: contract; the slabs on `avail` are ours.
    unsafe {
        let h = &mut (*h).local;
        // Lingering slabs first (a current slab's count is one of frees,
        // never 0): a class whose current slab goes back below promotes
        // its next slab, which must not be one of them.
        if core::mem::take(&mut h.lingering) {
            for c in 0..NUM_CLASSES {
                let mut s = h.avail[c].first;
                while !s.is_null() {
                    let next = (*s).next;
                    if (*s).used == 0 {
                        release_listed(h, c, s);
                    }
                    s = next;
                }
            }
        }
        for c in 0..NUM_CLASSES {
            let s = h.biased[c];
            if s == empty_slab_ptr() || (*s).used == CURRENT_TICKS {
                continue;
            }
            recount_current(h, c, s);
        }
        // The slabs the loop found empty went back.
        h.lingering = false;
    }
}

/// A double free of `user`, a block of `slab`.
#[cold]
#[inline(never)]
pub(crate) fn double_free(user: usize, slab: *mut Slab) -> ! {
    // SAFETY: a live slab header.
    let bs = unsafe { (*slab).block_size } as usize;
    crate::util::diag::fatal_block("free(): double free", user, bs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::size_class::class_of;
    use crate::heap::types::init_heap;

    /// The permissions of the mapping that holds `addr`, as
    /// `/proc/self/maps` writes them ("rw-p").
    fn protection(addr: usize) -> std::string::String {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for line in maps.lines() {
            let mut f = line.split_whitespace();
            let (range, perms) = (f.next().unwrap(), f.next().unwrap());
            let (lo, hi) = range.split_once('-').unwrap();
            let (lo, hi) = (
                usize::from_str_radix(lo, 16).unwrap(),
                usize::from_str_radix(hi, 16).unwrap(),
            );
            if (lo..hi).contains(&addr) {
                return perms.into();
            }
        }
        panic!("{addr:#x} is not mapped");
    }

    /// A heap made as a thread's heap is, owned by the test.
    fn thread_like_heap() -> std::boxed::Box<Heap> {
        let mut heap = std::boxed::Box::new(core::mem::MaybeUninit::<Heap>::uninit());
        // SAFETY: writable memory for a heap nobody else uses.
        unsafe {
            init_heap(heap.as_mut_ptr(), false);
            std::boxed::Box::from_raw(std::boxed::Box::into_raw(heap).cast::<Heap>())
        }
    }

    /// A slab emptied while not current stays with the heap as a spare
    /// span, the heap's next new slab is that span (in the secure build
    /// with its guard pages still closed),
    /// and a spare nobody takes goes back after `SPARE_IDLE_UPKEEPS`
    /// idle upkeeps.
    #[test]
    fn an_emptied_slab_is_kept_as_a_spare_and_reused() {
        crate::core::config::init();
        let mut hb = thread_like_heap();
        let hp: *mut Heap = &mut *hb;
        let (a, b) = (class_of(48), class_of(200));
        // SAFETY: the test's own heap, used by this thread alone; every
        // block is one it handed out.
        unsafe {
            let h = &mut (*hp).local;
            let b1 = pop_from_new_slab(h, a);
            let s1 = h.current[a];
            // A second slab becomes the class's current one.
            let b2 = pop_from_new_slab(h, a);
            let s2 = h.current[a];
            assert_ne!(s1, s2);
            free_in(hp, s1, b1.cast(), b1 as usize);
            assert_eq!(h.spares_n, 1);
            assert_eq!(h.spares[0], s1);
            assert_eq!((*s1).head.tag, TAG_FREE, "a spare is no slab");
            // The next new slab, of any one-granule class, is the spare.
            let b3 = pop_from_new_slab(h, b);
            assert_eq!(h.current[b], s1);
            assert_eq!(h.spares_n, 0);
            if crate::core::config::SECURE {
                // Its guard pages closed once, when the span was fresh,
                // and stayed closed.
                use crate::core::size_class::{SLAB_HEADER, SLAB_TRAILER};
                let span = s1 as usize;
                assert_eq!(protection(span + crate::os::PAGE), "---p");
                assert_eq!(protection(span + SLAB_HEADER - 1), "---p");
                assert_eq!(protection(span + GRANULE - SLAB_TRAILER), "---p");
                assert_eq!(protection(span + SLAB_HEADER), "rw-p");
            }
            free_in(hp, s1, b3.cast(), b3 as usize);
            // Current: it stays a slab until trimmed.
            release_empty(hp);
            assert_eq!(h.spares_n, 1);
            // Aging: the keep counted as use; then idle upkeeps.
            age_spares(h);
            for _ in 0..SPARE_IDLE_UPKEEPS - 1 {
                age_spares(h);
                assert_eq!(h.spares_n, 1);
            }
            age_spares(h);
            assert_eq!(h.spares_n, 0, "an idle spare went back");
            free_in(hp, s2, b2.cast(), b2 as usize);
            release_empty(hp);
            release_spares(h);
            assert_eq!(h.spares_n, 0);
            for c in [a, b] {
                assert!(h.avail[c].first.is_null(), "class {c} keeps a slab");
            }
        }
    }

    /// A class whose current slab emptied and then went unused gives that
    /// slab up when another class needs a span and has no spare: a look
    /// (each new slab taken without a spare) notes the slab's state, the
    /// next finds it unchanged and empty, and the new slab is its span. A
    /// class used between two looks (one block taken and given back)
    /// keeps its slab, and gives it up at the look after; one whose slab
    /// still holds a block is counted and keeps it, and gives it up once
    /// that block is freed.
    #[test]
    fn an_idle_class_gives_its_empty_current_slab_to_another() {
        crate::core::config::init();
        let mut hb = thread_like_heap();
        let hp: *mut Heap = &mut *hb;
        let [a, c, k] = [48, 500, 96].map(class_of);
        // The classes whose new slabs make the later looks: a block of
        // each stays out until the end.
        let mut lookers = [16, 32, 64, 80, 112, 128].map(class_of).into_iter();
        let mut out = std::vec::Vec::new();
        // SAFETY: the test's own heap, used by this thread alone; every
        // block is one it handed out.
        unsafe {
            let h = &mut (*hp).local;
            let mut look = |h: &mut HeapLocal| {
                let l = lookers.next().unwrap();
                let p = pop_from_new_slab(h, l);
                out.push((h.current[l], p));
                assert_eq!(h.spares_n, 0);
                h.current[l]
            };
            // Three slabs (their new slabs are looks too: a's state is
            // noted while its block is out, so it is not counted).
            let x = pop_from_new_slab(h, a);
            let sa = h.current[a];
            let k1 = pop_from_new_slab(h, k);
            let sk = h.current[k];
            let k2 = (*sk).pop();
            let y = pop_from_new_slab(h, c);
            let sc = h.current[c];
            free_in(hp, sa, x.cast(), x as usize);
            free_in(hp, sk, k1.cast(), k1 as usize);
            free_in(hp, sc, y.cast(), y as usize);
            assert_eq!(h.biased[a], sa, "an emptied current slab stays");
            // Look 1 notes the three states.
            let s1 = look(h);
            assert!(![sa, sk, sc].contains(&s1));
            // c is used in between.
            let y = (*sc).pop();
            assert!(!y.is_null());
            free_in(hp, sc, y, y as usize);
            // Look 2: a is unchanged and empty, its span is the new slab;
            // k is counted (a block out) and keeps its slab; c, used,
            // keeps its slab.
            assert_eq!(look(h), sa, "the new slab is a's span");
            assert_eq!(h.biased[a], empty_slab_ptr(), "a gave its slab up");
            assert_eq!(h.current[a], empty_slab_ptr());
            assert_eq!(h.direct[48 / 16], empty_slab_ptr());
            assert_eq!(h.biased[k], sk, "k, a block in use, keeps its slab");
            assert_eq!(h.biased[c], sc, "c, used since look 1, keeps its slab");
            // Look 3: c, unused since look 2, gives its slab up.
            assert_eq!(look(h), sc, "the new slab is c's span");
            assert_eq!(h.biased[c], empty_slab_ptr());
            assert_eq!(h.biased[k], sk);
            // k's other block is freed: look 4 notes it, look 5 counts
            // it empty.
            free_in(hp, sk, k2, k2 as usize);
            let s4 = look(h);
            assert_ne!(s4, sk);
            assert_eq!(h.biased[k], sk);
            assert_eq!(look(h), sk, "the new slab is k's span");
            assert_eq!(h.biased[k], empty_slab_ptr());
            // Everything back.
            for (slab, p) in out {
                free_in(hp, slab, p.cast(), p as usize);
            }
            release_empty(hp);
            release_spares(h);
            for cl in 0..SHARED_FROM {
                assert!(h.avail[cl].first.is_null(), "class {cl} keeps a slab");
            }
        }
    }
}
