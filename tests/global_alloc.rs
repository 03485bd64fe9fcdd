//! mmpool as a Rust program's global allocator: this test binary runs on
//! `mmpool::MmPool` (an integration test is a crate of its own, so the
//! `#[global_allocator]` below is this binary's alone; the other test
//! binaries keep the system allocator).
//!
//! The multi-threaded workload is the one `make bench` times
//! (c-tests/bench/rust-workload/src/lib.rs: collections, channels,
//! cross-thread drops, large `Vec` growth, boxes and vectors of a
//! 4096-aligned type), with `mmpool::owns` asked about every block.

use mmpool::MmPool;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::Mutex;

#[global_allocator]
static GLOBAL: MmPool = MmPool;

#[allow(dead_code)] // its `main` is the bench program's
#[path = "../c-tests/bench/rust-workload/src/lib.rs"]
mod workload;

/// Tests that measure the resident set or the pool's counters run one
/// at a time (the test harness runs tests on several threads).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Resident set of the process, bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// The output of `rust-workload-system 4 0.05` (the same program on the
/// system allocator); regenerate it with
/// `target/bench/rust/release/rust-workload-system 4 0.05` after a
/// change to the workload (scripts/bench.sh builds it).
const SYSTEM_LINE: &str =
    "rust-workload threads=4 scale=0.05 blocks=28976 checksum=21a42dbd6806077a";

#[test]
fn the_multithreaded_workload_runs_on_the_pool() {
    let _s = serial();
    let threads_before = mmpool::stats().threads_seen;
    let s = workload::run(4, 0.05, &|p| mmpool::owns(p));
    assert_eq!(s.not_owned, 0, "blocks the pool did not hand out: {s:?}");
    assert_eq!(s.misaligned, 0, "misaligned blocks: {s:?}");
    assert_eq!(
        s.line(4, 0.05),
        SYSTEM_LINE,
        "the pool's run differs from the system allocator's"
    );
    assert!(mmpool::stats().threads_seen >= threads_before + 4);
    // And again, on the heaps the first run's threads left.
    let again = workload::run(3, 0.02, &|p| mmpool::owns(p));
    assert_eq!((again.not_owned, again.misaligned), (0, 0));
}

/// Alignments 1 to 1 GiB, sizes from 1 byte to 3 MiB: the block is at
/// its alignment, owned, writable to its end; `realloc` up and down keeps
/// the alignment and the contents; `alloc_zeroed` is zero.
#[test]
fn every_alignment_works_for_alloc_realloc_and_alloc_zeroed() {
    for shift in 0..=30 {
        let align = 1usize << shift;
        let sizes: &[usize] = if align <= 1 << 21 {
            &[1, 24, 100, 3000, 40_000, 300_000, 3 << 20]
        } else {
            &[1, 5000]
        };
        for &size in sizes
            .iter()
            .chain([align].iter().filter(|&&a| a <= 1 << 22))
        {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a non-zero size; the block is used within its size
            // and freed once, with its layout.
            unsafe {
                let p = GLOBAL.alloc(layout);
                assert!(!p.is_null(), "alloc({size}, {align})");
                assert_eq!(p as usize % align, 0, "alloc({size}, {align}) at {p:p}");
                assert!(mmpool::owns(p) && mmpool::owns(p.add(size - 1)));
                p.write_bytes(1, size);
                let mut cur = (p, size);
                for (round, new) in [size * 3 + 1000, size + 1, (size / 2).max(1), 200_000]
                    .into_iter()
                    .enumerate()
                {
                    let old = Layout::from_size_align(cur.1, align).unwrap();
                    let q = GLOBAL.realloc(cur.0, old, new);
                    assert!(!q.is_null(), "realloc({} -> {new}, {align})", cur.1);
                    assert_eq!(
                        q as usize % align,
                        0,
                        "realloc({} -> {new}, {align}) at {q:p}",
                        cur.1
                    );
                    assert!(mmpool::owns(q) && mmpool::owns(q.add(new - 1)));
                    let kept = cur.1.min(new);
                    for i in [0, 1, kept / 2, kept - 1].into_iter().filter(|&i| i < kept) {
                        assert_eq!(
                            q.add(i).read(),
                            round as u8 + 1,
                            "realloc({} -> {new}, {align}) lost byte {i}",
                            cur.1
                        );
                    }
                    q.write_bytes(round as u8 + 2, new);
                    cur = (q, new);
                }
                GLOBAL.dealloc(cur.0, Layout::from_size_align(cur.1, align).unwrap());

                let z = GLOBAL.alloc_zeroed(layout);
                assert!(!z.is_null());
                assert_eq!(
                    z as usize % align,
                    0,
                    "alloc_zeroed({size}, {align}) at {z:p}"
                );
                let bytes = std::slice::from_raw_parts(z, size);
                assert!(
                    bytes.iter().all(|&b| b == 0),
                    "alloc_zeroed({size}, {align}) not zero"
                );
                GLOBAL.dealloc(z, layout);
            }
        }
    }
}

/// `alloc_zeroed` of a block that was just freed dirty (the pool hands
/// it out again, from a slab or from its large-block cache) is zero.
#[test]
fn alloc_zeroed_zeroes_reused_memory() {
    for align in [1, 16, 64, 4096, 65536, 2 << 20] {
        for size in [100, 3000, 20_000, 300_000, 5 << 20] {
            let layout = Layout::from_size_align(size, align).unwrap();
            for _ in 0..3 {
                // SAFETY: blocks used within their size, freed once.
                unsafe {
                    let p = GLOBAL.alloc(layout);
                    assert!(!p.is_null());
                    p.write_bytes(0xab, size);
                    GLOBAL.dealloc(p, layout);
                    let z = GLOBAL.alloc_zeroed(layout);
                    assert!(!z.is_null());
                    assert_eq!(z as usize % align, 0);
                    let bytes = std::slice::from_raw_parts(z, size);
                    assert!(
                        bytes.iter().all(|&b| b == 0),
                        "alloc_zeroed({size}, {align}) after a dirty free"
                    );
                    GLOBAL.dealloc(z, layout);
                }
            }
        }
    }
}

/// Memory fresh from the OS is zero already: `alloc_zeroed` of 512 MiB
/// at alignments 16, 4096 and 2 MiB makes nothing resident.
#[test]
fn alloc_zeroed_does_not_write_fresh_memory() {
    let _s = serial();
    for align in [16, 4096, 2 << 20] {
        let size = 512 << 20;
        let layout = Layout::from_size_align(size, align).unwrap();
        let before = rss();
        // SAFETY: one block, read at a few places, freed once.
        unsafe {
            let z = GLOBAL.alloc_zeroed(layout);
            assert!(!z.is_null());
            assert_eq!(z as usize % align, 0);
            let grew = rss().saturating_sub(before);
            assert!(
                grew < 64 << 20,
                "alloc_zeroed(512 MiB, {align}) made {} MiB resident",
                grew >> 20
            );
            for i in (0..size).step_by(64 << 20) {
                assert_eq!(z.add(i).read(), 0);
            }
            GLOBAL.dealloc(z, layout);
        }
    }
}

/// A `Vec` of a 4096-aligned type grown one push at a time and shrunk:
/// every reallocation keeps the alignment and the contents.
#[test]
fn vec_of_an_aligned_type_keeps_its_alignment() {
    #[repr(C, align(4096))]
    struct Page([u64; 512]);
    #[repr(C, align(64))]
    struct Line([u8; 64]);

    let mut pages: Vec<Page> = Vec::new();
    let mut lines: Vec<Line> = Vec::new();
    for i in 0..600u64 {
        pages.push(Page([i; 512]));
        lines.push(Line([i as u8; 64]));
        assert_eq!(pages.as_ptr() as usize % 4096, 0);
        assert_eq!(lines.as_ptr() as usize % 64, 0);
        assert!(mmpool::owns(pages.as_ptr().cast()) && mmpool::owns(lines.as_ptr().cast()));
    }
    for (i, (p, l)) in pages.iter().zip(&lines).enumerate() {
        assert!(p.0.iter().all(|&w| w == i as u64));
        assert!(l.0.iter().all(|&b| b == i as u8));
    }
    pages.truncate(3);
    pages.shrink_to_fit();
    lines.truncate(3);
    lines.shrink_to_fit();
    assert_eq!(pages.as_ptr() as usize % 4096, 0);
    assert_eq!(lines.as_ptr() as usize % 64, 0);
    assert!(pages[2].0.iter().all(|&w| w == 2) && lines[2].0.iter().all(|&b| b == 2));
}

/// `owns`: the program's Rust blocks are the pool's; stack, statics and
/// the C `malloc`'s blocks are not (the crate as a dependency exports no
/// malloc). `stats`: a snapshot of `mmpool_stats_t`.
#[test]
fn owns_and_stats() {
    let _s = serial();
    static STATIC: u64 = 1;
    let on_stack = 0u64;
    let b = Box::new(1u64);
    assert!(mmpool::owns(&*b as *const u64 as *const u8));
    assert!(!mmpool::owns(&on_stack as *const u64 as *const u8));
    assert!(!mmpool::owns(&STATIC as *const u64 as *const u8));
    assert!(!mmpool::owns(std::ptr::null()));
    // SAFETY: a plain C allocation, freed once.
    unsafe {
        let c = libc::malloc(100) as *const u8;
        assert!(!c.is_null());
        // With `--features override` this test binary exports malloc.
        assert_eq!(mmpool::owns(c), cfg!(feature = "override"));
        libc::free(c as *mut libc::c_void);
    }

    let big: Vec<u8> = vec![1; 10 << 20];
    let s: mmpool::Stats = mmpool::stats();
    assert!(s.large_live >= 1 && s.large_bytes >= 10 << 20, "{s:?}");
    assert!(s.held >= 10 << 20);
    assert!(s.num_classes > 0 && s.num_classes <= s.classes.len());
    let c: &mmpool::ClassStats = &s.classes[0];
    assert_eq!(c.block_size, 16);
    assert!(s.rss > 0 && s.rss_peak >= s.rss);
    drop(big);
}
