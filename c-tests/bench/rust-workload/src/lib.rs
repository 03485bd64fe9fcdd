//! A multi-threaded Rust program's allocations, for `make bench` (built
//! once per global allocator: src/bin/*.rs) and for mmpool's
//! `tests/global_alloc.rs` (which includes this file as a module and
//! runs it on `mmpool::MmPool`).
//!
//! `THREADS` workers, each with its own seeded PRNG, run four phases:
//!
//! - collections: a `HashMap<String, Vec<u32>>` with insert/remove churn,
//!   a `BTreeMap` of boxed byte slices of 8-600 bytes, a `VecDeque`
//!   window of boxes, `format!` strings sorted and deduplicated;
//! - channels: a ring of workers, each sending boxed packets (a `Vec<u8>`
//!   body, a `String` name, sometimes a boxed 4096-aligned page) to the
//!   next one, which checks and drops them (every packet is freed by
//!   another thread than the one that allocated it), and a shared cache
//!   of `Arc`s whose replaced values are dropped by whichever thread
//!   holds the last reference;
//! - growth: a `Vec<u64>` pushed to 2 Mi elements x SCALE (16 MiB), a
//!   `Vec<u8>` grown by appends, a `String` built by `push_str`, a zeroed
//!   `vec![0u8; n]`;
//! - alignment: boxes of a 4096-aligned type, a `Vec` of them grown by
//!   `push` (the allocator's `realloc` at alignment 4096), and a `Vec` of
//!   a 64-aligned type.
//!
//! Every block is filled from its key (never its address) and checked
//! before it is dropped; a mismatch panics. The result line depends only
//! on THREADS and SCALE: the checksum is a wrapping sum over what every
//! worker checked, in whatever order the threads ran.
//!
//! `owned` is asked about every boxed and vector block: the bench passes
//! a function that always says yes, mmpool's test `mmpool::owns`; the
//! blocks it denies are counted in [`Summary::not_owned`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

/// What a run did: its output line is [`Summary::line`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Wrapping sum of every worker's checks.
    pub checksum: u64,
    /// Blocks allocated and checked.
    pub blocks: u64,
    /// Blocks `owned` said no to.
    pub not_owned: u64,
    /// Blocks of an aligned type that were not at their alignment.
    pub misaligned: u64,
}

impl Summary {
    fn add(&mut self, o: Summary) {
        self.checksum = self.checksum.wrapping_add(o.checksum);
        self.blocks += o.blocks;
        self.not_owned += o.not_owned;
        self.misaligned += o.misaligned;
    }

    /// The program's output: the same for every allocator.
    pub fn line(&self, threads: usize, scale: f64) -> String {
        format!(
            "rust-workload threads={threads} scale={scale} blocks={} checksum={:016x}",
            self.blocks, self.checksum
        )
    }
}

/// A page-sized, page-aligned type (`Box<Page>` needs the allocator's
/// aligned path).
#[repr(C, align(4096))]
pub struct Page {
    words: [u64; 512],
}

/// A cache-line-aligned type.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line {
    words: [u64; 8],
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The byte at `i` of the block keyed `key`.
fn pat(key: u64, i: usize) -> u8 {
    (mix(key ^ (i as u64 >> 3)) >> ((i & 7) * 8)) as u8
}

fn filled(key: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| pat(key, i)).collect()
}

fn check_bytes(what: &str, key: u64, b: &[u8]) -> u64 {
    for (i, &x) in b.iter().enumerate() {
        assert!(
            x == pat(key, i),
            "rust-workload: CORRUPTION in {what} {key:#x} at byte {i}"
        );
    }
    mix(key ^ b.len() as u64)
}

fn string_hash(s: &str) -> u64 {
    // FNV-1a
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

impl Page {
    fn new(key: u64) -> Box<Page> {
        let mut p = Box::new(Page { words: [0; 512] });
        for (i, w) in p.words.iter_mut().enumerate() {
            *w = mix(key.wrapping_add(i as u64));
        }
        p
    }

    fn check(&self, key: u64) -> u64 {
        for (i, &w) in self.words.iter().enumerate() {
            assert!(
                w == mix(key.wrapping_add(i as u64)),
                "rust-workload: CORRUPTION in page {key:#x} at word {i}"
            );
        }
        mix(key)
    }
}

/// Counts blocks, and those that are not owned or misaligned.
struct Tally<'a> {
    sum: Summary,
    owned: &'a (dyn Fn(*const u8) -> bool + Sync),
}

impl Tally<'_> {
    fn block<T: ?Sized>(&mut self, p: *const T, align: usize) {
        let p = p as *const u8;
        self.sum.blocks += 1;
        if !(self.owned)(p) {
            self.sum.not_owned += 1;
        }
        if p as usize % align != 0 {
            self.sum.misaligned += 1;
        }
    }

    fn add(&mut self, x: u64) {
        self.sum.checksum = self.sum.checksum.wrapping_add(x);
    }
}

/// A message of the ring.
enum Msg {
    Packet(Box<Packet>),
    Done,
}

struct Packet {
    seq: u64,
    body: Vec<u8>,
    name: String,
    page: Option<Box<Page>>,
}

type Cache = Mutex<HashMap<u64, Arc<Vec<u64>>>>;

fn collections(rng: &mut Rng, w: u64, n: usize, t: &mut Tally<'_>) {
    // A map of strings to growing vectors, with removals.
    let mut map: HashMap<String, Vec<u32>> = HashMap::new();
    for i in 0..n {
        let key = format!("key-{w}-{}", rng.below(n as u64 / 4 + 1));
        map.entry(key).or_default().push(i as u32);
        if rng.below(8) == 0 {
            let gone = format!("key-{w}-{}", rng.below(n as u64 / 4 + 1));
            if let Some(v) = map.remove(&gone) {
                t.add(v.iter().map(|&x| x as u64).sum::<u64>());
            }
        }
    }
    for (k, v) in &map {
        t.block(k.as_ptr(), 1);
        t.block(v.as_ptr(), 4);
        let s = v
            .iter()
            .fold(0u64, |a, &x| a.wrapping_mul(31).wrapping_add(x as u64));
        t.add(string_hash(k) ^ s);
    }
    drop(map);

    // An ordered map of boxed slices, replaced at random.
    let mut tree: BTreeMap<u64, Box<[u8]>> = BTreeMap::new();
    for i in 0..n as u64 {
        let k = rng.below(n as u64 / 2 + 1);
        let key = (w << 40) | (i << 8) | (k & 0xff);
        let len = 8 + rng.below(600) as usize;
        let b = filled(key, len).into_boxed_slice();
        t.block(b.as_ptr(), 1);
        if let Some(old) = tree.insert(k, b) {
            // the old key is not stored: re-derive it from the contents
            t.add(old.len() as u64 ^ old[0] as u64);
        }
    }
    for (k, b) in &tree {
        t.add(k ^ b.len() as u64);
    }
    drop(tree);

    // A sliding window of boxes.
    let mut window: VecDeque<(u64, Box<[u8]>)> = VecDeque::new();
    for i in 0..n as u64 {
        let key = (w << 40) ^ (i << 1) ^ 1;
        let b = filled(key, 16 + rng.below(240) as usize).into_boxed_slice();
        t.block(b.as_ptr(), 1);
        window.push_back((key, b));
        if window.len() > 256 {
            let (k, b) = window.pop_front().unwrap();
            t.add(check_bytes("window", k, &b));
        }
    }
    for (k, b) in window {
        t.add(check_bytes("window", k, &b));
    }

    // Sorted, deduplicated strings.
    let mut words: Vec<String> = (0..n / 2)
        .map(|_| format!("{:x}", rng.below(n as u64)))
        .collect();
    words.sort_unstable();
    words.dedup();
    t.block(words.as_ptr(), 8);
    t.add(words.len() as u64);
    for s in &words {
        t.add(string_hash(s));
    }
}

fn ring(
    rng: &mut Rng,
    w: u64,
    n: usize,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    cache: &Cache,
    t: &mut Tally<'_>,
) {
    let mut got = 0;
    let take = |m: Msg, t: &mut Tally<'_>| match m {
        Msg::Packet(p) => {
            let key = p.seq;
            t.add(check_bytes("packet", key, &p.body));
            assert!(
                p.name == format!("packet-{key:x}"),
                "rust-workload: CORRUPTION in the name of packet {key:#x}"
            );
            t.add(string_hash(&p.name));
            if let Some(page) = &p.page {
                t.add(page.check(key));
            }
            false
        }
        Msg::Done => true,
    };
    let mut done = false;
    for i in 0..n as u64 {
        let seq = (w << 40) | i;
        let len = 32 + rng.below(if i % 64 == 0 { 16 << 10 } else { 2000 }) as usize;
        let body = filled(seq, len);
        let name = format!("packet-{seq:x}");
        let page = (i % 16 == 0).then(|| Page::new(seq));
        let p = Box::new(Packet {
            seq,
            body,
            name,
            page,
        });
        t.block(&*p as *const Packet, 8);
        t.block(p.body.as_ptr(), 1);
        if let Some(page) = &p.page {
            t.block(&**page as *const Page, 4096);
        }
        tx.send(Msg::Packet(p))
            .expect("ring: the next worker is gone");
        while let Ok(m) = rx.try_recv() {
            got += u64::from(matches!(m, Msg::Packet(_)));
            done |= take(m, t);
        }
        // The shared cache: replaced values are dropped by whichever
        // thread holds the last reference.
        if i % 4 == 0 {
            let k = rng.below(512);
            let v: Arc<Vec<u64>> = Arc::new((0..8 + k).map(|j| mix(k ^ j)).collect());
            t.block(v.as_ptr(), 8);
            let old = cache.lock().unwrap().insert(k, v);
            if let Some(old) = old {
                for (j, &x) in old.iter().enumerate() {
                    assert!(
                        x == mix(k ^ j as u64),
                        "rust-workload: CORRUPTION in cache {k}"
                    );
                }
            }
        }
    }
    tx.send(Msg::Done).expect("ring: the next worker is gone");
    while !done {
        let m = rx.recv().expect("ring: the previous worker is gone");
        got += u64::from(matches!(m, Msg::Packet(_)));
        done |= take(m, t);
    }
    assert!(
        got == n as u64,
        "rust-workload: {got} packets came, {n} were sent"
    );
    t.add(got);
}

fn growth(rng: &mut Rng, w: u64, n: usize, t: &mut Tally<'_>) {
    // Doubling growth to n words (realloc of large blocks).
    let mut v: Vec<u64> = Vec::new();
    for i in 0..n as u64 {
        v.push(mix(w ^ i));
    }
    t.block(v.as_ptr(), 8);
    for (i, &x) in v.iter().enumerate() {
        assert!(
            x == mix(w ^ i as u64),
            "rust-workload: CORRUPTION in vec at {i}"
        );
    }
    t.add(v.len() as u64 ^ v[n / 2]);
    v.truncate(n / 8);
    v.shrink_to_fit();
    t.block(v.as_ptr(), 8);
    t.add(v.iter().fold(0u64, |a, &x| a.wrapping_add(x)));
    drop(v);

    // Bytes appended in uneven chunks.
    let key = w.wrapping_mul(7919);
    let mut bytes: Vec<u8> = Vec::new();
    while bytes.len() < n {
        let chunk = 1 + rng.below(4096) as usize;
        let start = bytes.len();
        bytes.extend((start..start + chunk).map(|i| pat(key, i)));
    }
    t.block(bytes.as_ptr(), 1);
    t.add(check_bytes("bytes", key, &bytes));
    drop(bytes);

    // A string built by appends.
    let mut s = String::new();
    for i in 0..n / 64 {
        s.push_str(&format!("{i:x},"));
    }
    t.block(s.as_ptr(), 1);
    t.add(string_hash(&s));
    drop(s);

    // Zeroed memory (alloc_zeroed).
    let z = vec![0u8; n * 2];
    t.block(z.as_ptr(), 1);
    assert!(
        z.iter().all(|&b| b == 0),
        "rust-workload: vec![0u8; n] not zeroed"
    );
    t.add(z.len() as u64);
}

fn aligned(rng: &mut Rng, w: u64, n: usize, t: &mut Tally<'_>) {
    // Boxes of a page-aligned type, some kept, some dropped.
    let mut kept: Vec<(u64, Box<Page>)> = Vec::new();
    for i in 0..n as u64 {
        let key = (w << 40) ^ (i << 2) ^ 2;
        let p = Page::new(key);
        t.block(&*p as *const Page, 4096);
        if rng.below(4) == 0 {
            kept.push((key, p));
        } else {
            t.add(p.check(key));
        }
    }
    for (key, p) in &kept {
        t.add(p.check(*key));
    }
    drop(kept);

    // A Vec of pages grown by push: reallocations at alignment 4096.
    let mut pages: Vec<Page> = Vec::new();
    for i in 0..n as u64 {
        pages.push(*Page::new(w ^ (i << 3)));
        t.block(pages.as_ptr(), 4096);
    }
    for (i, p) in pages.iter().enumerate() {
        t.add(p.check(w ^ ((i as u64) << 3)));
    }
    pages.truncate(n / 4);
    pages.shrink_to_fit();
    t.block(pages.as_ptr(), 4096);
    drop(pages);

    // Cache lines.
    let mut lines: Vec<Line> = Vec::new();
    for i in 0..(n * 16) as u64 {
        let mut l = Line { words: [0; 8] };
        for (j, x) in l.words.iter_mut().enumerate() {
            *x = mix(i ^ ((j as u64) << 32));
        }
        lines.push(l);
    }
    t.block(lines.as_ptr(), 64);
    for (i, l) in lines.iter().enumerate() {
        t.add(l.words[i % 8]);
    }
}

/// Run the workload: `threads` workers (at least 1), `scale` times the
/// normal amount of work (1: about a second on one core).
pub fn run(threads: usize, scale: f64, owned: &(dyn Fn(*const u8) -> bool + Sync)) -> Summary {
    let threads = threads.max(1);
    let n = |base: f64| ((base * scale) as usize).max(16);
    let cache: Cache = Mutex::new(HashMap::new());
    // Worker w sends to w + 1 and receives from w - 1.
    let (mut txs, mut rxs): (Vec<_>, Vec<_>) = (0..threads).map(|_| channel::<Msg>()).unzip();
    txs.rotate_left(1);
    let mut total = Summary::default();
    std::thread::scope(|s| {
        let handles: Vec<_> = txs
            .drain(..)
            .zip(rxs.drain(..))
            .enumerate()
            .map(|(w, (tx, rx))| {
                let cache = &cache;
                s.spawn(move || {
                    let w = w as u64 + 1;
                    let mut rng = Rng(w.wrapping_mul(0x1234_5678_9abc_def1));
                    let mut t = Tally {
                        sum: Summary::default(),
                        owned,
                    };
                    collections(&mut rng, w, n(40_000.0), &mut t);
                    ring(&mut rng, w, n(20_000.0), tx, rx, cache, &mut t);
                    growth(&mut rng, w, n(2_097_152.0), &mut t);
                    aligned(&mut rng, w, n(400.0), &mut t);
                    t.sum
                })
            })
            .collect();
        for h in handles {
            total.add(h.join().expect("a worker panicked"));
        }
    });
    total
}

/// The bench program: `rust-workload-ALLOC [THREADS [SCALE]]` (4 and 1 by
/// default) prints [`Summary::line`]. A corrupted block panics with
/// `rust-workload: CORRUPTION: ...` (and the bench builds abort on panic);
/// a misaligned one makes it exit with status 3.
pub fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args
        .get(1)
        .map_or(4, |s| s.parse().expect("THREADS: a number"));
    let scale: f64 = args
        .get(2)
        .map_or(1.0, |s| s.parse().expect("SCALE: a number"));
    let s = run(threads, scale, &|_| true);
    if s.misaligned != 0 {
        eprintln!(
            "rust-workload: CORRUPTION: {} misaligned blocks",
            s.misaligned
        );
        std::process::exit(3);
    }
    println!("{}", s.line(threads, scale));
}
