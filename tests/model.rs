//! The allocator core checked against a shadow model: every live block is
//! recorded with its size and fill byte; after every operation the model
//! checks no overlap, alignment, usable size, preserved contents, and the
//! heap's own invariants (`check_thread_heap`).
//!
//! Runs on the rlib (no override feature): the test harness itself keeps
//! the system allocator; only the calls below go to the pool.

use mmpool::ffi::*;
use std::collections::BTreeMap;
use std::ffi::c_void;

/// A small deterministic PRNG (splitmix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Sizes skewed small, with a tail into large blocks.
    fn size(&mut self) -> usize {
        match self.below(100) {
            0..=59 => self.below(257) as usize,
            60..=89 => self.below(4097) as usize,
            90..=97 => self.below(40_000) as usize,
            _ => self.below(3 << 20) as usize,
        }
    }
}

struct Live {
    size: usize,
    fill: u8,
}

struct Model {
    live: BTreeMap<usize, Live>,
}

impl Model {
    fn new() -> Self {
        Model {
            live: BTreeMap::new(),
        }
    }

    fn add(&mut self, p: *mut c_void, size: usize, fill: u8, align: usize) {
        assert!(!p.is_null(), "allocation of {size} failed");
        let a = p as usize;
        assert_eq!(a % align, 0, "{a:#x} not aligned to {align}");
        // SAFETY: p is a live block of ours.
        let usable = unsafe { mmpool_usable_size(p) };
        assert!(usable >= size, "usable {usable} < requested {size}");
        assert!(
            mmpool_owns(p),
            "not owned: {a:#x} size {size} align {align} usable {usable}"
        );
        let end = a + size.max(1);
        if let Some((&b, l)) = self.live.range(..end).next_back() {
            assert!(
                b + l.size.max(1) <= a || b >= end,
                "{a:#x}+{size} overlaps {b:#x}+{}",
                l.size
            );
        }
        // SAFETY: writing up to the usable size is allowed; the model
        // checks the first `size` bytes later.
        unsafe { std::ptr::write_bytes(p.cast::<u8>(), fill, usable) };
        self.live.insert(a, Live { size, fill });
    }

    fn check_contents(&self, a: usize) {
        let l = &self.live[&a];
        // SAFETY: a live block of at least l.size bytes.
        let bytes = unsafe { std::slice::from_raw_parts(a as *const u8, l.size) };
        if let Some(i) = bytes.iter().position(|&b| b != l.fill) {
            panic!("block {a:#x}+{} corrupted at byte {i}", l.size);
        }
    }

    fn remove(&mut self, a: usize) -> Live {
        self.check_contents(a);
        self.live.remove(&a).unwrap()
    }
}

fn run_model(seed: u64, ops: usize) {
    let mut rng = Rng(seed);
    let mut m = Model::new();
    let mut keys: Vec<usize> = Vec::new();
    for i in 0..ops {
        let fill = (i % 251) as u8 + 1;
        let op = rng.below(100);
        if op < 40 || keys.is_empty() {
            let size = rng.size();
            // SAFETY: plain allocation.
            let p = unsafe { mmpool_malloc(size) };
            m.add(p, size, fill, if size >= 16 { 16 } else { 1 });
            keys.push(p as usize);
        } else if op < 45 {
            let n = rng.below(64) as usize;
            let sz = rng.below(64) as usize;
            // SAFETY: plain allocation.
            let p = unsafe { mmpool_calloc(n, sz) };
            // SAFETY: p holds n * sz bytes.
            let z = unsafe { std::slice::from_raw_parts(p as *const u8, n * sz) };
            assert!(z.iter().all(|&b| b == 0), "calloc memory not zeroed");
            m.add(p, n * sz, fill, if n * sz >= 16 { 16 } else { 1 });
            keys.push(p as usize);
        } else if op < 52 {
            let align = 1usize << (3 + rng.below(15));
            let size = rng.size();
            // SAFETY: power-of-two alignment.
            let p = unsafe { mmpool_aligned_alloc(align, size) };
            m.add(p, size, fill, align);
            keys.push(p as usize);
        } else if op < 70 {
            let k = rng.below(keys.len() as u64) as usize;
            let a = keys.swap_remove(k);
            let old = m.remove(a);
            let size = rng.size().max(1);
            // SAFETY: a live block of ours.
            let q = unsafe { mmpool_realloc(a as *mut c_void, size) };
            assert!(!q.is_null());
            // SAFETY: q holds at least min(old, size) bytes.
            let kept = unsafe { std::slice::from_raw_parts(q as *const u8, old.size.min(size)) };
            assert!(kept.iter().all(|&b| b == old.fill), "realloc lost contents");
            m.add(q, size, fill, 16);
            keys.push(q as usize);
        } else {
            let k = rng.below(keys.len() as u64) as usize;
            let a = keys.swap_remove(k);
            m.remove(a);
            // SAFETY: a live block of ours, freed once.
            unsafe { mmpool_free(a as *mut c_void) };
        }
        if i % 16 == 0 {
            mmpool::check_heap();
        }
    }
    for a in keys {
        m.remove(a);
        // SAFETY: live blocks, freed once.
        unsafe { mmpool_free(a as *mut c_void) };
    }
    mmpool::check_heap();
}

#[test]
fn random_operations_match_the_model() {
    for seed in 1..=4 {
        run_model(seed, 20_000);
    }
}

/// The model on instrumented heaps (`MMPOOL_STATS=1`: every allocation
/// and free takes the slow paths, and the fast paths' tables hold the
/// empty slab): the mode is fixed when the pool starts, so this test runs
/// the binary again, only `instrumented_child`, with the variable set.
#[test]
fn the_model_holds_on_an_instrumented_heap() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "instrumented_child",
            "--ignored",
            "--test-threads",
            "1",
        ])
        .env("MMPOOL_STATS", "1")
        .env("MMPOOL_MODEL_CHILD", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}\n{err}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test: {stdout}"
    );
    assert!(
        err.contains("mmpool statistics"),
        "the child's heap was not instrumented: {err}"
    );
}

/// `the_model_holds_on_an_instrumented_heap`'s child (ignored in a plain
/// run; it does nothing without the child's variable).
#[test]
#[ignore = "the child of the_model_holds_on_an_instrumented_heap"]
fn instrumented_child() {
    if std::env::var_os("MMPOOL_MODEL_CHILD").is_none() {
        return;
    }
    run_model(7, 5_000);
    std::thread::spawn(|| run_model(8, 5_000)).join().unwrap();
}

#[test]
fn model_in_parallel_threads() {
    let threads: Vec<_> = (0..4)
        .map(|t| std::thread::spawn(move || run_model(100 + t, 10_000)))
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn cross_thread_frees_are_collected_by_the_owner() {
    // A producer allocates, consumers free; the producer's heap must get
    // its blocks back (its slabs are reused, not leaked).
    use std::sync::mpsc;
    let (tx, rx) = mpsc::channel::<Vec<usize>>();
    let consumer = std::thread::spawn(move || {
        let mut n = 0;
        for batch in rx {
            for a in batch {
                // SAFETY: blocks handed over by the producer, freed once.
                unsafe {
                    assert_eq!(*(a as *const u8), 0x5a);
                    mmpool_free(a as *mut c_void);
                }
                n += 1;
            }
        }
        n
    });
    let mut total = 0;
    for _round in 0..200 {
        let batch: Vec<usize> = (0..500)
            .map(|i| {
                // SAFETY: plain allocation, filled below.
                let p = unsafe { mmpool_malloc(16 + (i % 200)) };
                // SAFETY: at least 16 bytes.
                unsafe { std::ptr::write_bytes(p.cast::<u8>(), 0x5a, 16) };
                p as usize
            })
            .collect();
        total += batch.len();
        tx.send(batch).unwrap();
        mmpool::check_heap();
    }
    drop(tx);
    assert_eq!(consumer.join().unwrap(), total);
    mmpool::check_heap();
}

/// A block of `size` bytes from the pool, every byte `byte`.
fn filled(size: usize, byte: u8) -> usize {
    // SAFETY: a plain allocation.
    let p = unsafe { mmpool_malloc(size) };
    assert!(!p.is_null(), "allocation of {size} failed");
    // SAFETY: `size` bytes of ours.
    unsafe { std::ptr::write_bytes(p.cast::<u8>(), byte, size) };
    p as usize
}

/// Blocks freed by another thread wait (in its outbox, then our queue)
/// with a mark, off their slab's lists: the count of an idle current
/// slab, which gives up a slab it finds empty, must see them in use. A
/// class's slab keeps 20 blocks waiting while other classes take new
/// slabs (each a look at the idle ones); every block stays intact.
#[test]
fn blocks_waiting_elsewhere_keep_an_idle_slab() {
    use std::sync::mpsc;
    for round in 0..40 {
        let (tx, rx) = mpsc::channel::<Vec<usize>>();
        let (freed_tx, freed_rx) = mpsc::channel::<()>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            for a in rx.recv().unwrap() {
                // SAFETY: blocks handed over, freed once.
                unsafe { mmpool_free(a as *mut c_void) };
            }
            freed_tx.send(()).unwrap();
            // Exits (sending its outbox) only when told.
            go_rx.recv().unwrap();
        });
        let mine: Vec<usize> = (0..20).map(|_| filled(40, 0x11)).collect();
        tx.send(mine).unwrap();
        freed_rx.recv().unwrap();
        let mut others = Vec::new();
        for size in [16usize, 80, 112, 200, 300, 500, 700, 1000, 24, 64, 96, 128] {
            for _ in 0..65536 / size.max(32) + 10 {
                others.push((filled(size, 0x33), size));
            }
        }
        mmpool::check_heap();
        go_tx.send(()).unwrap();
        other.join().unwrap();
        let again: Vec<usize> = (0..2000).map(|_| filled(40, 0x22)).collect();
        for &(p, size) in &others {
            // SAFETY: a live block of `size` bytes.
            let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, size) };
            assert!(
                bytes.iter().all(|&b| b == 0x33),
                "round {round}: {p:#x} overwritten"
            );
        }
        for (p, _) in others {
            // SAFETY: live blocks, freed once.
            unsafe { mmpool_free(p as *mut c_void) };
        }
        for a in again {
            // SAFETY: live blocks, freed once.
            unsafe { mmpool_free(a as *mut c_void) };
        }
        mmpool::check_heap();
    }
}

#[test]
fn blocks_of_exited_threads_can_be_freed_and_reused() {
    for _ in 0..50 {
        let blocks: Vec<usize> = std::thread::spawn(|| {
            (0..300)
                // SAFETY: plain allocation.
                .map(|i| unsafe { mmpool_malloc(24 + i % 500) } as usize)
                .collect()
        })
        .join()
        .unwrap();
        for a in blocks {
            assert!(mmpool_owns(a as *const c_void));
            // SAFETY: live blocks of an exited thread, freed once.
            unsafe { mmpool_free(a as *mut c_void) };
        }
    }
    mmpool::check_heap();
}

#[test]
fn foreign_and_odd_pointers_are_not_ours() {
    let x = 5u64;
    assert!(!mmpool_owns(std::ptr::null()));
    assert!(!mmpool_owns(&x as *const u64 as *const c_void));
    let b = Box::new(7u64);
    assert!(!mmpool_owns(&*b as *const u64 as *const c_void));
    assert!(!mmpool_owns(usize::MAX as *const c_void));
    // SAFETY: NULL is always accepted.
    unsafe {
        mmpool_free(std::ptr::null_mut());
        assert_eq!(mmpool_usable_size(std::ptr::null()), 0);
    }
}

#[test]
fn large_blocks_grow_in_place_or_move_without_losing_data() {
    // SAFETY: plain allocation and realloc of our own block.
    unsafe {
        let mut p = mmpool_malloc(100_000).cast::<u8>();
        for i in 0..100_000 {
            *p.add(i) = (i % 251) as u8;
        }
        for size in [1 << 20, 8 << 20, 64 << 20, 200_000, 40_000, 1000] {
            p = mmpool_realloc(p.cast(), size).cast();
            assert!(!p.is_null());
            for i in (0..size.min(100_000)).step_by(97) {
                assert_eq!(*p.add(i), (i % 251) as u8, "size {size} byte {i}");
            }
        }
        mmpool_free(p.cast());
    }
}

#[test]
fn huge_alignments_work() {
    for shift in [12, 16, 20, 24, 30] {
        let align = 1usize << shift;
        // SAFETY: power-of-two alignment.
        let p = unsafe { mmpool_aligned_alloc(align, 100) };
        assert!(!p.is_null(), "alignment {align}");
        assert_eq!(p as usize % align, 0);
        // SAFETY: our block.
        unsafe {
            assert!(mmpool_usable_size(p) >= 100);
            *(p as *mut u8) = 1;
            let q = mmpool_realloc(p, 200_000);
            assert_eq!(*(q as *mut u8), 1);
            mmpool_free(q);
        }
    }
}

/// A small block its own thread frees into a slab outside the slab cache
/// (a scattered free, into a slab that is not its class's current one)
/// goes back to that slab's list and waits for that slab's turn: the next
/// blocks of its class come from the current slab; the heap's invariants
/// (`heap::check`) hold throughout. The secure build carves a slab's
/// blocks in random order, so no fresh slab is looked for there; its
/// freed blocks wait in the quarantine instead, and the next blocks are
/// none of them either.
#[test]
fn scattered_frees_wait_in_their_own_slabs() {
    std::thread::spawn(|| {
        // SAFETY: blocks of ours, each freed once.
        unsafe {
            // Blocks over many slabs (64 KiB granules), all full now; two
            // from each of 20 slabs. The first of each pair is freed into
            // a full slab (the slow path, which makes the slab available
            // again but does not cache it); then the second ones, in
            // turn, into slabs the slab cache does not hold.
            let all: Vec<*mut c_void> = (0..200_000).map(|_| mmpool_malloc(48)).collect();
            let mut pairs: Vec<(*mut c_void, *mut c_void)> = Vec::new();
            for w in all.windows(2) {
                let (a, b) = (w[0], w[1]);
                let g = a as usize >> 16;
                if b as usize >> 16 == g
                    && pairs.last().is_none_or(|&(q, _)| q as usize >> 16 != g)
                    && pairs.len() < 20
                {
                    pairs.push((a, b));
                }
            }
            assert_eq!(pairs.len(), 20);
            // A fresh current slab (two blocks carved in a row from a
            // slab's start): the next blocks come from it, not from a slab
            // the frees below make available again.
            let mut fresh: Vec<*mut c_void> = Vec::new();
            // (A slab's first block: 128 bytes after its header, which
            // sits 0-896 bytes into the span by its address: its colour.)
            let first_of = |p: usize| ((p >> 16) & 7) * 128 + 128;
            let fresh_found = |f: &[*mut c_void]| {
                f.len() >= 2
                    && f[f.len() - 2] as usize & 0xffff == first_of(f[f.len() - 2] as usize)
                    && f[f.len() - 1] as usize == f[f.len() - 2] as usize + 48
            };
            while !cfg!(feature = "secure") && !fresh_found(&fresh) {
                assert!(fresh.len() < 1 << 20, "no fresh slab");
                fresh.push(mmpool_malloc(48));
            }
            for &(a, _) in &pairs {
                mmpool_free(a);
            }
            let picked: Vec<*mut c_void> = pairs.iter().map(|&(_, b)| b).collect();
            for &p in &picked {
                mmpool_free(p);
            }
            mmpool::check_heap();
            // They wait in their own slabs: the next blocks come from the
            // class's current slab.
            let next: Vec<*mut c_void> = (0..15).map(|_| mmpool_malloc(40)).collect();
            for &q in &next {
                assert!(
                    !picked.contains(&q) && !pairs.iter().any(|&(a, _)| a == q),
                    "a block freed into another slab came first"
                );
            }
            mmpool::check_heap();
            for &p in all.iter().chain(&next).chain(&fresh) {
                let freed = pairs.iter().any(|&(a, b)| a == p || b == p);
                if !freed {
                    mmpool_free(p);
                }
            }
            mmpool::check_heap();
        }
    })
    .join()
    .unwrap();
}

/// Frees into the current slab of a class (the free fast path's slab
/// cache holds it) are handed out again most recent first: the free
/// pushes on the list malloc pops (as glibc's tcache hands out the last
/// freed first). Not in the secure build, which quarantines them
/// ([`recent_frees_wait_in_the_quarantine`]).
#[cfg(not(feature = "secure"))]
#[test]
fn recent_frees_are_handed_out_again_first() {
    std::thread::spawn(|| {
        // SAFETY: blocks of ours, each freed once.
        unsafe {
            // Forty blocks of one slab (the current one: a batch that
            // straddles two slabs is kept aside and another taken).
            let mut aside: Vec<*mut c_void> = Vec::new();
            let all = loop {
                let batch: Vec<*mut c_void> = (0..40).map(|_| mmpool_malloc(100)).collect();
                let g = batch[0] as usize >> 16;
                if batch.iter().all(|&p| p as usize >> 16 == g) {
                    break batch;
                }
                aside.extend(batch);
            };
            for &p in &all {
                mmpool_free(p);
            }
            mmpool::check_heap();
            for &p in all.iter().rev() {
                assert_eq!(mmpool_malloc(100), p, "most recently freed first");
            }
            mmpool::check_heap();
            // Then other blocks, none of them handed out twice.
            let again: Vec<*mut c_void> = (0..40).map(|_| mmpool_malloc(100)).collect();
            for &p in &again {
                assert!(!all.contains(&p), "handed out twice");
            }
            mmpool::check_heap();
            for &p in all.iter().chain(&again).chain(&aside) {
                mmpool_free(p);
            }
            mmpool::check_heap();
        }
    })
    .join()
    .unwrap();
}

/// The secure build's counterpart of [`recent_frees_are_handed_out_again_first`]:
/// blocks just freed wait in the quarantine (`heap::quarantine`: 64 slots
/// taken at random, a block that loses its slot goes back to its slab), so
/// the next allocation of their class is never the block freed last, and
/// of the 40 freed at most 24 come back in the next 40 allocations (about
/// 11 lose their slot on average; 21 or more in fewer than 1 in 200,000
/// simulated runs); none is handed out twice, and the heap's invariants
/// hold.
#[cfg(feature = "secure")]
#[test]
fn recent_frees_wait_in_the_quarantine() {
    std::thread::spawn(|| {
        // SAFETY: blocks of ours, each freed once.
        unsafe {
            let all: Vec<*mut c_void> = (0..40).map(|_| mmpool_malloc(100)).collect();
            for &p in &all {
                mmpool_free(p);
            }
            mmpool::check_heap();
            let again: Vec<*mut c_void> = (0..40).map(|_| mmpool_malloc(100)).collect();
            assert_ne!(again[0], all[39], "the block freed last came back at once");
            for (i, &q) in again.iter().enumerate() {
                assert!(!q.is_null());
                assert!(!again[..i].contains(&q), "handed out twice");
            }
            let back = again.iter().filter(|q| all.contains(q)).count();
            assert!(back <= 24, "{back} of 40 blocks just freed came back");
            mmpool::check_heap();
            for &p in &again {
                mmpool_free(p);
            }
            mmpool::check_heap();
        }
    })
    .join()
    .unwrap();
}
