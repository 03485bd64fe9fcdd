//! The heap checker: every invariant of the calling thread's heap and
//! of its slabs, verified by walking them (`heap::types` and
//! `heap::slabs` state the invariants). For tests, after every operation;
//! it stops the program with a message naming the first violation.
//!
//! Uses: `core::pagemap`, `core::size_class`, `core::slab`, `heap::medium`,
//! `heap::tls`, `heap::types`, `util::diag`.

use crate::core::pagemap::{PAGEMAP, TAG_FREE, TAG_SLAB};
use crate::core::size_class::{CLASS_SIZE, NUM_CLASSES, SHARED_FROM};
use crate::core::slab::{Block, Slab, OWNER_FLAGS, OWNER_FULL, OWNER_INSTR};
use crate::heap::types::{
    empty_slab_ptr, is_thread_heap, slab_cache_entry, slab_cache_index, MCACHE_BYTES,
    MCACHE_CLASSES, MCACHE_MAX, SLAB_CACHE_EMPTY, SPARES,
};
use core::ptr::null_mut;
use core::sync::atomic::Ordering;

/// Check every invariant of the calling thread's heap and its slabs;
/// abort with a message naming the first violation. Returns the number of
/// slabs checked.
pub(crate) fn check_thread_heap() -> usize {
    let heap = crate::heap::tls::heap();
    if !is_thread_heap(heap) {
        return 0;
    }
    let fail = |what: &str, s: *mut Slab| -> ! { crate::util::diag::fatal(what, s as usize) };
    let mut n = 0;
    // SAFETY: the calling thread owns its heap and slabs; lists are valid
    // unless the invariants are already broken, which is what we look for.
    unsafe {
        let h = &(*heap).local;
        for class in 0..=NUM_CLASSES {
            let list = if class == NUM_CLASSES {
                &h.full
            } else {
                &h.avail[class]
            };
            let mut s = list.first;
            let mut prev = null_mut();
            while !s.is_null() {
                n += 1;
                let sl = &*s;
                let owner = sl.head.owner.load(Ordering::Relaxed);
                if sl.head.tag != TAG_SLAB {
                    fail("check: slab without SLAB tag", s);
                }
                if owner & !OWNER_FLAGS != heap as usize {
                    fail("check: slab on a heap list owned by another heap", s);
                }
                if (owner & OWNER_FULL != 0) != (class == NUM_CLASSES) {
                    fail("check: full flag does not match the list", s);
                }
                if class < NUM_CLASSES && sl.class as usize != class {
                    fail("check: slab on the wrong class list", s);
                }
                if sl.prev != prev {
                    fail("check: broken back link", s);
                }
                let bs = sl.block_size as usize;
                if sl.limit != ((sl.bump() - sl.first_block()) / bs) as u64 * sl.step {
                    fail(
                        "check: block-start limit out of step with the carved part",
                        s,
                    );
                }
                let count = |mut b: *mut Block| {
                    let mut k = 0usize;
                    while b != sl.terminator() {
                        let a = b as usize;
                        if a < sl.first_block()
                            || a >= sl.bump()
                            || (a - sl.first_block()) % bs != 0
                            || !sl.is_block_start(a)
                        {
                            fail("check: free list holds a foreign block", s);
                        }
                        if !sl.looks_free(b) || (sl.head.granules == 1 && !sl.looks_free_fast(b)) {
                            fail("check: free block that does not look free", s);
                        }
                        k += 1;
                        if k > sl.capacity as usize {
                            fail("check: free list cycle", s);
                        }
                        b = sl.decode((*b).link);
                    }
                    k
                };
                let uncarved = (sl.end - sl.bump()) / bs;
                if (owner & OWNER_INSTR != 0) != h.instrumented {
                    fail("check: instrumentation flag does not match the heap", s);
                }
                let is_current = class < NUM_CLASSES && h.biased[class] == s;
                if is_current != sl.current {
                    fail("check: current mark on the wrong slab", s);
                }
                if is_current && !(1..=crate::heap::types::CURRENT_TICKS).contains(&sl.used) {
                    fail("check: current slab's count of frees out of range", s);
                }
                // malloc does not count on the current slab: recount it.
                let used = if is_current { sl.exact_used() } else { sl.used };
                if is_current && sl.used == crate::heap::types::CURRENT_TICKS && used == 0 {
                    fail(
                        "check: current slab empty while its count says nothing was freed",
                        s,
                    );
                }
                if !is_current && class < NUM_CLASSES && used == 0 && !h.lingering {
                    fail("check: an empty slab lingers unflagged", s);
                }
                let total = used as usize + count(sl.free) + count(sl.local_free) + uncarved;
                if total != sl.capacity as usize {
                    fail("check: used + free + local_free + uncarved != capacity", s);
                }
                // The count in address order (idle current slabs are
                // counted so) agrees with the lists' (just checked).
                if sl.used_by_scan() != used {
                    fail(
                        "check: the scan's count of blocks in use is not the lists'",
                        s,
                    );
                }
                prev = s;
                s = sl.next;
            }
            if list.last != prev {
                fail("check: list tail is wrong", prev);
            }
            if class < NUM_CLASSES {
                let want = if list.first.is_null() {
                    empty_slab_ptr()
                } else {
                    list.first
                };
                if h.biased[class] != want {
                    fail(
                        "check: current slab is not the first available",
                        h.biased[class],
                    );
                }
                // An instrumented heap publishes the empty slab: its
                // allocations all take the slow paths.
                let published = if h.instrumented {
                    empty_slab_ptr()
                } else {
                    want
                };
                if h.current[class] != published {
                    fail(
                        "check: the fast paths' current slab is not the first available",
                        h.current[class],
                    );
                }
            }
        }
        for (i, &e) in h.direct.iter().enumerate() {
            if e != h.current[crate::core::size_class::DIRECT_CLASS[i] as usize] {
                fail("check: direct table out of step with current", e);
            }
        }
        for (i, &e) in h.slab_cache.iter().enumerate() {
            if e == SLAB_CACHE_EMPTY {
                continue;
            }
            let s = e.wrapping_sub(crate::core::size_class::SLAB_HEADER) as *mut Slab;
            if slab_cache_index(s as usize) != i {
                fail("check: slab cache entry in the wrong place", s);
            }
            let listed = h.avail.iter().any(|l| {
                let mut x = l.first;
                while !x.is_null() && x != s {
                    x = (*x).next;
                }
                !x.is_null()
            });
            if !listed {
                fail("check: slab cache names a slab not on an avail list", s);
            }
            if (*s).head.owner.load(Ordering::Relaxed) != heap as usize {
                fail("check: slab cache names a flagged slab", s);
            }
            if (*s).head.granules != 1 {
                fail("check: slab cache names a slab of several granules", s);
            }
        }
        let mut bytes = 0u32;
        for i in 0..MCACHE_CLASSES {
            let mut k = 0u8;
            let mut b = h.mcache[i];
            while !b.is_null() {
                let s = PAGEMAP.lookup(b as usize).cast::<Slab>();
                if s.is_null()
                    || (*s).class as usize != SHARED_FROM + i
                    || !crate::heap::medium::owns(
                        (*s).head.owner.load(Ordering::Relaxed) & !OWNER_FLAGS,
                    )
                    || (*s).block_containing(b as usize) != Some(b as usize)
                {
                    fail(
                        "check: medium cache holds a block of the wrong kind",
                        b.cast(),
                    );
                }
                if !(*s).looks_free(b) || (*s).decode((*b).link) != b {
                    fail(
                        "check: medium cache block that does not link to itself",
                        b.cast(),
                    );
                }
                k += 1;
                if k > MCACHE_MAX {
                    fail("check: medium cache over its per-class bound", b.cast());
                }
                bytes += CLASS_SIZE[SHARED_FROM + i];
                b = (*b).chain;
            }
            if k != h.mcache_n[i] {
                fail("check: medium cache count is wrong", h.mcache[i].cast());
            }
        }
        if bytes != h.mcache_bytes || bytes > MCACHE_BYTES {
            fail("check: medium cache bytes are wrong", null_mut());
        }
        let n_spares = h.spares_n as usize;
        if n_spares > SPARES || (n_spares > 0 && !h.keeps_spares) {
            fail("check: spare count out of range", null_mut());
        }
        for &s in &h.spares[..n_spares] {
            if (*s).head.tag != TAG_FREE
                || (*s).head.owner.load(Ordering::Relaxed) != 0
                || (*s).head.granules != 1
                || PAGEMAP.lookup(s as usize) != s.cast()
            {
                fail("check: a spare span is not a free one-granule span", s);
            }
            if h.slab_cache[slab_cache_index(s as usize)] == slab_cache_entry(s) {
                fail("check: slab cache names a spare span", s);
            }
        }
    }
    n
}
