//! Arenas through the C ABI and the safe Rust API: every function and
//! every bad input of the arena API.

use mmpool::arena::Arena;
use mmpool::ffi::*;
use std::ffi::c_void;
use std::ptr::null_mut;

fn stats(a: *const mmpool_arena_t) -> mmpool_arena_stats_t {
    let mut s = mmpool_arena_stats_t::default();
    // SAFETY: valid out-pointer.
    unsafe { mmpool_arena_stats(a, &mut s) };
    s
}

fn errno() -> i32 {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

#[test]
fn alloc_nalloc_calloc_memalign() {
    let a = mmpool_arena_create(0);
    assert!(!a.is_null());
    let p = mmpool_arena_alloc(a, 24);
    assert_eq!(p as usize % 16, 0);
    let s1 = mmpool_arena_nalloc(a, 3);
    let s2 = mmpool_arena_nalloc(a, 3);
    assert_eq!(s2 as usize - s1 as usize, 3);
    let z = mmpool_arena_calloc(a, 100).cast::<u8>();
    // SAFETY: 100 bytes from the arena.
    assert!(unsafe { std::slice::from_raw_parts(z, 100) }
        .iter()
        .all(|&b| b == 0));
    for shift in [3, 6, 12, 16, 21] {
        let q = mmpool_arena_memalign(a, 50, 1 << shift);
        assert!(!q.is_null());
        assert_eq!(q as usize % (1 << shift), 0, "alignment {}", 1 << shift);
    }
    assert!(mmpool_owns(p));
    let s = stats(a);
    assert!(s.bytes_requested >= 24 + 6 + 100 + 5 * 50);
    assert!(s.bytes_held >= 16 * 1024);
    // SAFETY: nothing from the arena is used afterwards.
    unsafe { mmpool_arena_destroy(a) };
}

#[test]
fn large_blocks_are_freed_alone_and_others_declined() {
    let a = mmpool_arena_create(4096);
    let other = mmpool_arena_create(4096);
    let big = mmpool_arena_alloc(a, 100_000);
    let big2 = mmpool_arena_memalign(a, 5000, 4096);
    let small = mmpool_arena_alloc(a, 16);
    assert_eq!(stats(a).large_blocks, 2);
    // SAFETY: pointers are validated by the arena.
    unsafe {
        assert_eq!(mmpool_arena_free(other, big), -1, "other arena's block");
        assert_eq!(mmpool_arena_free(a, small), -1, "bumped block");
        assert_eq!(mmpool_arena_free(a, null_mut()), -1);
        let x = 1u64;
        assert_eq!(
            mmpool_arena_free(a, &x as *const u64 as *mut c_void),
            -1,
            "stack"
        );
        let m = mmpool_malloc(64);
        assert_eq!(mmpool_arena_free(a, m), -1, "plain pool block");
        mmpool_free(m);
        assert_eq!(
            mmpool_arena_free(a, (big as usize + 16) as *mut c_void),
            -1,
            "interior"
        );
        assert_eq!(mmpool_arena_free(a, big), 0);
        assert_eq!(mmpool_arena_free(a, big), -1, "already freed");
        assert_eq!(mmpool_arena_free(a, big2), 0);
        assert_eq!(stats(a).large_blocks, 0);
        assert_eq!(mmpool_arena_free(null_mut(), big), -1, "NULL arena");
        mmpool_arena_destroy(a);
        mmpool_arena_destroy(other);
    }
}

static mut ORDER: Vec<usize> = Vec::new();

unsafe extern "C" fn record(data: *mut c_void) {
    // SAFETY: tests that use ORDER run on one thread at a time (the
    // cleanup tests below take a lock).
    unsafe { (*std::ptr::addr_of_mut!(ORDER)).push(data as usize) };
}

static CLEANUP_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn take_order() -> Vec<usize> {
    // SAFETY: under CLEANUP_LOCK.
    unsafe { std::mem::take(&mut *std::ptr::addr_of_mut!(ORDER)) }
}

#[test]
fn cleanups_run_lifo_on_reset_and_destroy_and_can_be_removed() {
    let _g = CLEANUP_LOCK.lock().unwrap();
    take_order();
    let a = mmpool_arena_create(0);
    // SAFETY: handlers are valid for their data.
    unsafe {
        mmpool_arena_cleanup_add(a, Some(record), 1 as *mut c_void);
        let c2 = mmpool_arena_cleanup_add(a, Some(record), 2 as *mut c_void);
        mmpool_arena_cleanup_add(a, Some(record), 3 as *mut c_void);
        assert_eq!(stats(a).cleanups, 3);
        assert_eq!(mmpool_arena_cleanup_remove(a, c2), 0);
        assert_eq!(mmpool_arena_cleanup_remove(a, c2), -1, "removed twice");
        assert_eq!(mmpool_arena_cleanup_remove(a, null_mut()), -1);
        let other = mmpool_arena_create(0);
        let c4 = mmpool_arena_cleanup_add(other, Some(record), 4 as *mut c_void);
        assert_eq!(
            mmpool_arena_cleanup_remove(a, c4),
            -1,
            "other arena's handle"
        );
        mmpool_arena_reset(a);
        assert_eq!(take_order(), vec![3, 1], "reset runs cleanups, last first");
        assert_eq!(stats(a).cleanups, 0);
        mmpool_arena_reset(a);
        assert_eq!(take_order(), Vec::<usize>::new(), "reset cleared them");
        mmpool_arena_cleanup_add(a, Some(record), 5 as *mut c_void);
        mmpool_arena_cleanup_add(a, Some(record), 6 as *mut c_void);
        mmpool_arena_destroy(a);
        assert_eq!(take_order(), vec![6, 5]);
        mmpool_arena_destroy(other);
        assert_eq!(take_order(), vec![4]);
    }
}

#[test]
fn children_die_with_their_parent_first() {
    let _g = CLEANUP_LOCK.lock().unwrap();
    take_order();
    let p = mmpool_arena_create(0);
    let c1 = mmpool_arena_create_child(p, 0);
    let c2 = mmpool_arena_create_child(p, 1024);
    let g = mmpool_arena_create_child(c1, 0);
    assert_eq!(stats(p).children, 2);
    // SAFETY: handlers are valid for their data.
    unsafe {
        mmpool_arena_cleanup_add(p, Some(record), 10 as *mut c_void);
        mmpool_arena_cleanup_add(c1, Some(record), 11 as *mut c_void);
        mmpool_arena_cleanup_add(g, Some(record), 12 as *mut c_void);
        mmpool_arena_cleanup_add(c2, Some(record), 13 as *mut c_void);
        mmpool_arena_destroy(c2);
        assert_eq!(take_order(), vec![13]);
        assert_eq!(stats(p).children, 1);
        mmpool_arena_destroy(p);
    }
    // Children (and grandchildren) before the parent's own cleanups.
    assert_eq!(take_order(), vec![12, 11, 10]);
}

#[test]
fn reset_keeps_one_block_and_memory_returns() {
    let a = mmpool_arena_create(1024);
    for _ in 0..1000 {
        assert!(!mmpool_arena_alloc(a, 100).is_null());
    }
    let big = mmpool_arena_alloc(a, 1 << 20);
    assert!(!big.is_null());
    let c = mmpool_arena_create_child(a, 0);
    assert!(!c.is_null());
    let s = stats(a);
    assert!(s.blocks > 50 && s.large_blocks == 1 && s.children == 1);
    // SAFETY: nothing from the arena is used afterwards.
    unsafe { mmpool_arena_reset(a) };
    let s = stats(a);
    assert_eq!(
        (s.blocks, s.large_blocks, s.children, s.bytes_requested),
        (1, 0, 0, 0)
    );
    assert_eq!(s.bytes_held, 1024);
    assert!(!mmpool_owns(big), "the large block went back to the OS");
    // SAFETY: as above.
    unsafe { mmpool_arena_destroy(a) };
}

#[test]
fn bad_input_is_answered_not_crashed_on() {
    let a = mmpool_arena_create(0);
    let x = 7u64;
    let stack = &x as *const u64 as *mut mmpool_arena_t;
    // SAFETY: every call must cope with bad arenas.
    unsafe {
        for bad in [null_mut(), stack, 0x1000 as *mut mmpool_arena_t] {
            assert!(mmpool_arena_alloc(bad, 10).is_null());
            assert_eq!(errno(), libc::EINVAL);
            assert!(mmpool_arena_nalloc(bad, 10).is_null());
            assert!(mmpool_arena_calloc(bad, 10).is_null());
            assert!(mmpool_arena_memalign(bad, 10, 16).is_null());
            assert!(mmpool_arena_create_child(bad, 0).is_null());
            assert!(mmpool_arena_cleanup_add(bad, Some(record), null_mut()).is_null());
            assert_eq!(mmpool_arena_cleanup_remove(bad, null_mut()), -1);
            assert_eq!(mmpool_arena_free(bad, null_mut()), -1);
            mmpool_arena_reset(bad);
            mmpool_arena_destroy(bad);
            let mut s = mmpool_arena_stats_t {
                blocks: 99,
                ..Default::default()
            };
            mmpool_arena_stats(bad, &mut s);
            assert_eq!(s.blocks, 0);
        }
        mmpool_arena_stats(a, null_mut());
        // Alignments that are not powers of two.
        for align in [0, 3, 24, 100] {
            assert!(mmpool_arena_memalign(a, 10, align).is_null());
            assert_eq!(errno(), libc::EINVAL);
        }
        // Sizes that overflow.
        for size in [usize::MAX, usize::MAX - 8, isize::MAX as usize + 1] {
            assert!(mmpool_arena_alloc(a, size).is_null());
            assert_eq!(errno(), libc::ENOMEM);
            assert!(mmpool_arena_memalign(a, size, 4096).is_null());
        }
        mmpool_arena_destroy(a);
        // A destroyed arena is recognised as such (its block went back).
        mmpool_arena_destroy(a);
        assert!(mmpool_arena_alloc(a, 1).is_null());
    }
}

#[test]
fn debug_mode_is_off_by_default() {
    // In debug mode (MMPOOL_ARENA_DEBUG=1) every allocation is its own
    // block of the global pool; by default small ones are bumped.
    let a = mmpool_arena_create(0);
    assert!(!mmpool_arena_alloc(a, 10).is_null());
    assert!(!mmpool_arena_alloc(a, 10).is_null());
    let s = stats(a);
    assert_eq!(
        (s.blocks, s.large_blocks),
        (1, 0),
        "bumped, not debug blocks"
    );
    // SAFETY: a live arena; nothing allocated from it is used afterwards.
    unsafe { mmpool_arena_destroy(a) };
}

#[test]
fn safe_api_drops_values_at_reset_and_on_drop() {
    use std::rc::Rc;
    let marker = Rc::new(());
    let mut arena = Arena::new(0).unwrap();
    {
        let v = arena.alloc(vec![Rc::clone(&marker), Rc::clone(&marker)]);
        assert_eq!(v.len(), 2);
        assert_eq!(Rc::strong_count(&marker), 3);
    }
    arena.reset();
    assert_eq!(Rc::strong_count(&marker), 1, "reset dropped the vector");
    let s = arena.alloc_str("connection 42");
    assert_eq!(s, "connection 42");
    let _keep = arena.alloc(Rc::clone(&marker));
    let child = arena.child(0).unwrap();
    assert_eq!(child.alloc_str("child"), "child");
    assert_eq!(arena.stats().children, 1);
    drop(arena);
    assert_eq!(Rc::strong_count(&marker), 1, "drop dropped the Rc");
}
