//! Size classes: which block size serves a request, and how big a slab of
//! each class is.
//!
//! Owns the class tables, all computed at compile time.
//!
//! The seed's power-of-two table (16, 32, ... 2048) wastes up to half of a
//! block. Here: exact 16-byte steps up to 128 bytes, then four classes per
//! doubling (worst internal waste 20%, 12.5% on average) up to 4 KiB, then
//! eight per doubling (512-byte steps to 8 KiB, 1 KiB steps to 16 KiB,
//! 2 KiB steps to 32 KiB, 4 KiB steps to [`SMALL_MAX`] but no 60 KiB
//! class: at most 12.5% waste), and one class 256 bytes above each power
//! of two from 2 KiB on for a power of two plus a header ([`HEADER_ROOM`]):
//! 64 classes;
//! larger requests are large blocks. A table lookup,
//! not a loop, maps a size to its class.
//!
//! Why slabs up to 64 KiB, not 32 KiB as before: every block above the
//! slab limit is a mapping of its own, whole 64 KiB granules, so a block
//! of 33-64 KiB took a granule (and, reused from the large-block cache,
//! kept all of its pages resident) and cost `mmap`/`munmap` calls whenever
//! the cache missed. stress-ng's malloc stressor (sizes uniform up to 64
//! KiB, 200,000 operations) ran 0.9-1.1 s with 430 MB peak RSS against
//! glibc's 0.65 s and 283 MB, making 44,000 `mmap` and `munmap` calls;
//! with these eight classes 0.66-0.83 s and 345-351 MB, and 800 such
//! calls. Every peer serves these sizes from pooled memory (tcmalloc's
//! classes go to 256 KiB, mimalloc's to 512 KiB, glibc's heap to its 128
//! KiB mmap threshold). 64 KiB is the most a block record's `u16` size
//! field holds (`core::canary`).
//!
//! Why fine above 8 KiB: blocks this big are pages long, and a program
//! that keeps many of one size just over a class boundary pays the whole
//! gap in resident memory (CPython's 8200-byte buffers took 16 KiB blocks
//! when the classes doubled there: 1.5x glibc's memory). The cost of a
//! class is the high-water mark its heap keeps, and medium blocks (above
//! 1 KiB) come from one heap per CPU, not one per thread, so the eighteen
//! classes from 8 to 32 KiB cost a few slabs per CPU (and the eight above
//! 32 KiB come from one heap only, `heap::medium`). (When medium blocks
//! lived in thread heaps, nine such classes per thread held 1.6x glibc's
//! resident set on the arena bench.)
//!
//! Uses: nothing of this crate.

/// Granule shift: the page map's unit, the alignment and size unit of spans.
pub(crate) const GRANULE_SHIFT: usize = 16;
/// 64 KiB.
pub(crate) const GRANULE: usize = 1 << GRANULE_SHIFT;
/// Every block of 16 bytes or more is aligned to this (glibc's guarantee).
pub(crate) const MIN_ALIGN: usize = 16;
/// Bytes at the head of a slab span reserved for its header; blocks start
/// after it, so block addresses are `span + SLAB_HEADER + i * size`. In
/// the secure build: the header's page and a guard page, so no overflow
/// or underflow from a block reaches the slab's metadata.
pub(crate) const SLAB_HEADER: usize = if cfg!(feature = "secure") {
    2 * 4096
} else {
    128
};
/// Bytes at the end of a slab span that hold no block: in the secure
/// build a guard page, where a linear overflow out of the slab faults.
pub(crate) const SLAB_TRAILER: usize = if cfg!(feature = "secure") { 4096 } else { 0 };
/// Largest request that can ever succeed (glibc refuses above PTRDIFF_MAX).
pub(crate) const MAX_REQUEST: usize = isize::MAX as usize;
/// Largest request served from a slab, in both builds: 64 KiB. (The
/// secure build kept blocks above 32 KiB large, each against a guard page
/// of its own: every free of one closed its range and every reuse opened
/// it, two `mprotect` calls and TLB flushes per block; its slabs have
/// guard pages at both ends, which a linear overflow out of the biggest
/// blocks reaches as well, and hardened_malloc's slabs go to 128 KiB.)
pub(crate) const SMALL_MAX: usize = 64 * 1024;
/// Largest request served through a heap's direct table.
pub(crate) const DIRECT_MAX: usize = 1024;
/// Entries of the direct table: one per 16-byte step up to [`DIRECT_MAX`].
pub(crate) const DIRECT_LEN: usize = DIRECT_MAX / MIN_ALIGN + 1;
/// Largest slab span, in granules.
pub(crate) const MAX_SLAB_GRANULES: usize = 16;

/// From this block size on, eight classes per doubling (512-byte steps to
/// 8 KiB, 1 KiB steps to 16 KiB, then 2 KiB steps): at most 12.5% waste,
/// where a block is pages long and a program with thousands of blocks
/// just over a coarse class boundary (SQLite's 4.2 KiB page-cache entries,
/// CPython's 8.2 and 16.4 KiB buffers) would pay up to a quarter (or,
/// with one class per doubling, half) more resident memory than glibc.
const FINE_FROM: usize = 4096;
const FINE_PER_DOUBLING: usize = 8;

/// A class just above each power of two from 2 KiB on: requests of a
/// power of two plus a small header (an 8 KiB buffer with its bookkeeping
/// in front, SQLite's 4 KiB pages with theirs) are common, and the next
/// regular class is 1/8 (from 4 KiB; 1/4 below) above the power of two:
/// 12.5-25% of every such block resident for nothing. These blocks take
/// at most [`HEADER_ROOM`] bytes more than the power of two (the default
/// build's block record included: a plain `malloc(2048)` is a medium
/// block with an 8-byte record, which took a 2560-byte block when this
/// class began at 4 KiB). CPython's test_fstring holds 9,935 blocks of
/// 8200 bytes at once (`MMPOOL_STATS`); 10,000 such blocks, each written
/// whole, peaked at 90.9 MiB in 9216-byte blocks, 82.2 MiB in 8448-byte
/// ones (glibc 79.5; `/usr/bin/time`).
const HEADER_ROOM: usize = 256;
/// The first power of two with a [`HEADER_ROOM`] class: the first whose
/// plain requests carry a record (medium blocks, above [`DIRECT_MAX`]).
const HEADER_FROM: usize = 2048;
/// The one regular step left out of the table (60 KiB, one step below
/// [`SMALL_MAX`]): the table holds at most 64 classes (class sets are u64
/// masks, and `MMPOOL_MAX_CLASSES` in mmpool.h), and 56-60 KiB requests
/// lose at most 1/8 to the 64 KiB class.
const LEFT_OUT: usize = SMALL_MAX - SMALL_MAX / 2 / FINE_PER_DOUBLING;

const fn build_sizes() -> ([u32; 64], usize) {
    let mut sizes = [0u32; 64];
    let mut n = 0;
    let mut s = 16;
    while s <= 128 {
        sizes[n] = s as u32;
        n += 1;
        s += 16;
    }
    let mut base = 128;
    while base < SMALL_MAX {
        let per = if base >= FINE_FROM {
            FINE_PER_DOUBLING
        } else {
            4
        };
        let step = base / per;
        if base >= HEADER_FROM && base + HEADER_ROOM < SMALL_MAX {
            sizes[n] = (base + HEADER_ROOM) as u32;
            n += 1;
        }
        let mut k = 1;
        while k <= per {
            if base + k * step != LEFT_OUT {
                sizes[n] = (base + k * step) as u32;
                n += 1;
            }
            k += 1;
        }
        base *= 2;
    }
    (sizes, n)
}

const SIZES_AND_COUNT: ([u32; 64], usize) = build_sizes();
/// Number of size classes.
pub(crate) const NUM_CLASSES: usize = SIZES_AND_COUNT.1;
/// Block size of each class, ascending.
pub(crate) const CLASS_SIZE: [u32; 64] = SIZES_AND_COUNT.0;

const fn class_for_size_slow(size: usize) -> u8 {
    let mut c = 0;
    while c < NUM_CLASSES {
        if CLASS_SIZE[c] as usize >= size {
            return c as u8;
        }
        c += 1;
    }
    NUM_CLASSES as u8
}

const fn build_direct() -> [u8; DIRECT_LEN] {
    let mut t = [0u8; DIRECT_LEN];
    let mut i = 0;
    while i < DIRECT_LEN {
        t[i] = class_for_size_slow(if i == 0 { 1 } else { i * MIN_ALIGN });
        i += 1;
    }
    t
}

/// Requests of at most [`DIRECT_MAX`] bytes: class of `(size + 15) / 16`.
pub(crate) const DIRECT_CLASS: [u8; DIRECT_LEN] = build_direct();

/// The first medium class: classes from here on (blocks above
/// [`DIRECT_MAX`]) are served by the per-CPU shared heaps, the ones below
/// by thread heaps.
pub(crate) const SHARED_FROM: usize = DIRECT_CLASS[DIRECT_LEN - 1] as usize + 1;

/// The first class of blocks above 16 KiB (the big medium classes, served
/// by one shard: see `heap::medium`).
pub(crate) const BIG_MEDIUM_FROM: usize = class_for_size_slow(16 * 1024) as usize + 1;

const MEDIUM_STEP: usize = 128;
const MEDIUM_LEN: usize = SMALL_MAX / MEDIUM_STEP + 1;

const fn build_medium() -> [u8; MEDIUM_LEN] {
    let mut t = [0u8; MEDIUM_LEN];
    let mut i = 0;
    while i < MEDIUM_LEN {
        t[i] = class_for_size_slow(if i == 0 { 1 } else { i * MEDIUM_STEP });
        i += 1;
    }
    t
}

/// Requests above [`DIRECT_MAX`]: class of `(size + 127) / 128`. Exact
/// because every class above 1024 bytes is a multiple of 128.
const MEDIUM_CLASS: [u8; MEDIUM_LEN] = build_medium();

/// The direct-table index of a request of at most [`DIRECT_MAX`] bytes.
#[inline(always)]
pub(crate) const fn direct_index(size: usize) -> usize {
    size.div_ceil(MIN_ALIGN)
}

/// The class serving `size` (`size <= SMALL_MAX`).
#[inline]
pub(crate) fn class_of(size: usize) -> usize {
    debug_assert!(size <= SMALL_MAX);
    if size <= DIRECT_MAX {
        DIRECT_CLASS[direct_index(size)] as usize
    } else {
        MEDIUM_CLASS[size.div_ceil(MEDIUM_STEP)] as usize
    }
}

/// Block size of class `c`.
#[inline]
pub(crate) fn block_size(c: usize) -> usize {
    CLASS_SIZE[c] as usize
}

/// Blocks in a slab of `granules` granules of class size `bs` with its
/// header at the span's start ([`capacity_at`] colour 0: the class
/// table's sizing).
pub(crate) const fn capacity_for(bs: usize, granules: usize) -> usize {
    capacity_at(bs, granules, 0)
}

/// Blocks in a slab of `granules` granules of class size `bs` whose
/// header sits `color` bytes into its span ([`span_head`]): what fits
/// after the header. At least `capacity_at(bs, granules, MAX_HEAD_COLOR)`.
pub(crate) const fn capacity_at(bs: usize, granules: usize, color: usize) -> usize {
    (granules * GRANULE - color - SLAB_HEADER - SLAB_TRAILER) / bs
}

/// Header positions ("colours") of the span cache's spans in the default
/// build. Spans start at multiples of 64 KiB, and a cache maps an address
/// to a set by its low bits (below 4 KiB in a first-level cache, below
/// 64 KiB in a 1 MiB one): headers at the very start of every span would
/// all compete for the same few lines, and a thread touching more than
/// about eight slabs would miss on each header it reads. A span's header
/// sits [`SLAB_HEADER`] bytes later for each colour step, by its address.
/// The secure build keeps its header at the start (its header page and
/// guard page).
pub(crate) const HEAD_COLORS: usize = if cfg!(feature = "secure") { 1 } else { 8 };
/// The farthest a span's header is from its start.
pub(crate) const MAX_HEAD_COLOR: usize = (HEAD_COLORS - 1) * SLAB_HEADER;

/// Where the header of the span starting at `base` is: its page map
/// entries point there, a slab's header and a cached span's live there.
#[inline(always)]
pub(crate) const fn span_head(base: usize) -> usize {
    base + ((base >> GRANULE_SHIFT) & (HEAD_COLORS - 1)) * SLAB_HEADER
}

/// The start of the span whose header is at `head` ([`span_head`]).
#[inline(always)]
pub(crate) const fn span_base(head: usize) -> usize {
    head & !(GRANULE - 1)
}

const _: () = assert!(HEAD_COLORS == 1 || MAX_HEAD_COLOR + SLAB_HEADER <= 4096);

const fn build_granules() -> [u8; 64] {
    let mut t = [0u8; 64];
    let mut c = 0;
    while c < NUM_CLASSES {
        let bs = CLASS_SIZE[c] as usize;
        // Smallest power-of-two span that holds at least 8 blocks and
        // wastes at most 1/8 of itself to the tail.
        let mut g = 1;
        loop {
            let cap = capacity_for(bs, g);
            let waste = g * GRANULE - SLAB_HEADER - SLAB_TRAILER - cap * bs;
            if (cap >= 8 && waste * 8 <= g * GRANULE) || g == MAX_SLAB_GRANULES {
                break;
            }
            g *= 2;
        }
        t[c] = g as u8;
        c += 1;
    }
    t
}

/// Granules per slab of each class.
pub(crate) const SLAB_GRANULES: [u8; 64] = build_granules();

/// The smallest span that holds a block of class `c` (1 granule, 2 for
/// the biggest classes, whose blocks do not fit in one granule beside the
/// slab header): what a slab falls back to when its usual span cannot be
/// had (a tight address-space limit, `heap::slabs::pop_from_new_slab`).
pub(crate) const fn fallback_granules(c: usize) -> usize {
    if capacity_at(CLASS_SIZE[c] as usize, 1, MAX_HEAD_COLOR) >= 1 {
        1
    } else {
        MAX_FALLBACK_GRANULES
    }
}

/// The most [`fallback_granules`] gives: the span cache maps a span this
/// small on its own when it cannot map a chunk (`core::span`).
pub(crate) const MAX_FALLBACK_GRANULES: usize = 2;

const _: () = {
    let mut c = 0;
    while c < NUM_CLASSES {
        // (At the farthest colour.)
        assert!(capacity_at(CLASS_SIZE[c] as usize, fallback_granules(c), MAX_HEAD_COLOR) >= 1);
        assert!(fallback_granules(c) <= SLAB_GRANULES[c] as usize);
        c += 1;
    }
};

// Small slabs are one granule: their header is at the start of the granule
// of any of their blocks (the free fast path's slab cache and the secure
// build's record checks rely on it).
const _: () = {
    let mut c = 0;
    while c < SHARED_FROM {
        assert!(SLAB_GRANULES[c] == 1);
        c += 1;
    }
};

/// Blocks per slab of class `c` (of its usual size).
#[cfg(test)]
pub(crate) fn slab_capacity(c: usize) -> usize {
    capacity_for(block_size(c), SLAB_GRANULES[c] as usize)
}

const _: () = assert!(NUM_CLASSES <= 64);
const _: () = assert!(CLASS_SIZE[NUM_CLASSES - 1] as usize == SMALL_MAX);
const _: () = assert!(SLAB_HEADER % MIN_ALIGN == 0 && SLAB_HEADER >= 128);
const _: () = assert!(DIRECT_CLASS[DIRECT_LEN - 1] as usize == 19);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_ascend_and_are_16_byte_multiples() {
        for c in 0..NUM_CLASSES {
            assert_eq!(block_size(c) % MIN_ALIGN, 0);
            if c > 0 {
                assert!(block_size(c) > block_size(c - 1));
            }
        }
        assert_eq!(&CLASS_SIZE[..8], &[16, 32, 48, 64, 80, 96, 112, 128]);
        assert_eq!(&CLASS_SIZE[8..12], &[160, 192, 224, 256]);
    }

    #[test]
    fn every_size_maps_to_the_smallest_class_that_fits() {
        for size in 0..=SMALL_MAX {
            let c = class_of(size);
            assert!(block_size(c) >= size.max(1), "size {size}");
            if c > 0 {
                assert!(block_size(c - 1) < size, "size {size} not tight");
            }
        }
    }

    /// A power of two from 2 KiB on plus a header of up to
    /// `HEADER_ROOM` bytes takes a block just that big, not the next
    /// quarter or eighth.
    #[test]
    fn a_power_of_two_plus_a_header_fits_closely() {
        let mut seen = 0;
        let mut base = HEADER_FROM;
        while base < SMALL_MAX {
            let c = class_of(base + 1);
            assert_eq!(block_size(c), base + HEADER_ROOM, "{base} + 1");
            assert_eq!(class_of(base + HEADER_ROOM), c);
            let per = if base >= FINE_FROM {
                FINE_PER_DOUBLING
            } else {
                4
            };
            assert_eq!(block_size(c + 1), base + base / per);
            seen += 1;
            base *= 2;
        }
        assert_eq!(seen, 5);
        // The top doubling makes room for them: no 60 KiB class.
        assert_eq!(block_size(NUM_CLASSES - 2), 56 * 1024);
        assert_eq!(NUM_CLASSES, 64);
    }

    #[test]
    fn internal_waste_is_bounded() {
        for size in 129..=SMALL_MAX {
            let bs = block_size(class_of(size));
            if size <= FINE_FROM {
                assert!((bs - size) * 5 <= bs, "size {size} wastes too much in {bs}");
            } else {
                // Eight classes per doubling: at most an eighth.
                assert!((bs - size) * 8 <= bs, "size {size} wastes too much in {bs}");
            }
        }
    }

    #[test]
    fn slabs_hold_enough_blocks_and_waste_little() {
        for (c, &g) in SLAB_GRANULES.iter().enumerate().take(NUM_CLASSES) {
            let g = g as usize;
            assert!(g.is_power_of_two() && g <= MAX_SLAB_GRANULES);
            let cap = slab_capacity(c);
            assert!(cap >= 8, "class {c}: {cap} blocks");
            let far = capacity_at(block_size(c), g, MAX_HEAD_COLOR);
            assert!(far >= 8, "class {c}: {far} blocks at the farthest colour");
            let waste = g * GRANULE - SLAB_HEADER - SLAB_TRAILER - cap * block_size(c);
            assert!(waste * 8 <= g * GRANULE, "class {c} wastes {waste}");
        }
    }
}
