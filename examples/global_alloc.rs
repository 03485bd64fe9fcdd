//! mmpool as the global allocator of an ordinary Rust program:
//!
//! ```sh
//! cargo run --release --example global_alloc
//! ```
//!
//! Every Rust allocation (boxes, vectors, strings, the channel's and the
//! threads' own) comes from the pool; the C `malloc` of the process stays
//! the system's (see README.md, "From Rust").

use std::sync::mpsc;
use std::thread;

#[global_allocator]
static GLOBAL: mmpool::MmPool = mmpool::MmPool;

/// A page-aligned type: its boxes take the allocator's aligned path.
#[repr(C, align(4096))]
struct Page([u8; 4096]);

extern "C" {
    fn malloc(size: usize) -> *mut u8;
    fn free(p: *mut u8);
}

fn owned<T: ?Sized>(p: *const T) -> bool {
    mmpool::owns(p as *const u8)
}

fn main() {
    let number = Box::new(42u64);
    let page = Box::new(Page([7; 4096]));
    let words: Vec<String> = (0..10_000).map(|i| format!("word {i}")).collect();
    println!(
        "Box<u64>:            owned by the pool: {}",
        owned(&*number)
    );
    println!(
        "Box<Page> (4096-aligned): owned by the pool: {}, aligned: {}",
        owned(&*page),
        &*page as *const Page as usize % 4096 == 0
    );
    println!(
        "Vec<String> buffer:  owned by the pool: {}",
        owned(words.as_ptr())
    );

    // Blocks made on one thread, dropped on another.
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let consumer = thread::spawn(move || rx.iter().map(|v| v.len()).sum::<usize>());
    for n in 1..=1000 {
        tx.send(vec![n as u8; n]).unwrap();
    }
    drop(tx);
    println!(
        "sent 1000 buffers to another thread, which freed them: {} bytes",
        consumer.join().unwrap()
    );

    // A large vector grown by push (the pool's realloc).
    let big: Vec<u64> = (0..4u64 << 20).collect();
    println!(
        "Vec<u64> of {} MiB:   owned by the pool: {}",
        (big.len() * 8) >> 20,
        owned(big.as_ptr())
    );

    // C's malloc is not the pool (unless libmmpool.so is preloaded).
    // SAFETY: a plain C allocation, freed once by C's free.
    let c = unsafe { malloc(100) };
    println!("C malloc(100):       owned by the pool: {}", owned(c));
    // SAFETY: `c` came from malloc above.
    unsafe { free(c) };

    let s = mmpool::stats();
    println!(
        "pool: {} KiB held, {} large blocks live, {} threads seen",
        s.held >> 10,
        s.large_live,
        s.threads_seen
    );
    assert!(owned(&*number) && owned(&*page) && owned(words.as_ptr()) && owned(big.as_ptr()));
}
