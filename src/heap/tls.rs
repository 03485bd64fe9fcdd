//! The calling thread's heap pointer, and its arena hint.
//!
//! The heap pointer is one `const`-initialised, `Drop`-free thread-local
//! word per thread, starting at the static empty heap so the fast paths need no
//! "initialised?" branch: the empty heap's slabs have no free blocks, so
//! the first `malloc` of a thread falls into the slow path, which creates
//! the thread's heap.
//!
//! Why assembly: in a cdylib, stable Rust compiles thread-locals to the
//! general-dynamic model, where every access calls `__tls_get_addr` (about
//! as expensive as the whole malloc fast path). On x86-64 we define the
//! variable ourselves in `.tdata` and read it with the initial-exec model:
//! two instructions, `mov` from the GOT slot and a `%fs`-relative load.
//! Initial-exec needs a few bytes of the static TLS surplus that glibc
//! reserves for libraries loaded by `dlopen`; our 32 bytes (the heap
//! word, and the arena hint at a 16-byte boundary) fit easily, so the
//! library stays loadable by `dlopen` too. Other architectures use a plain
//! `thread_local!` (correct, slower).
//!
//! The arena hint (two more words, [`arena_hint`]) is the last arena the
//! thread validated and the arena generation it was validated in: the
//! arena calls skip their page-map validation while both still match
//! (`api::arena`).
//!
//! Uses: `heap::types`.

use crate::heap::types::Heap;

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::Heap;

    // The thread-local word, initialised to the static empty heap: the
    // relocated `.tdata` image is what glibc copies into each new thread.
    core::arch::global_asm!(
        ".pushsection .tdata,\"awT\",@progbits",
        ".p2align 3",
        ".globl mmpool_tls_heap",
        ".hidden mmpool_tls_heap",
        ".type mmpool_tls_heap,@object",
        ".size mmpool_tls_heap,8",
        "mmpool_tls_heap:",
        ".quad {empty}",
        ".p2align 4",
        ".globl mmpool_tls_arena",
        ".hidden mmpool_tls_arena",
        ".type mmpool_tls_arena,@object",
        ".size mmpool_tls_arena,16",
        "mmpool_tls_arena:",
        ".quad 0",
        ".quad 0",
        ".popsection",
        empty = sym crate::heap::types::EMPTY_HEAP,
    );

    /// The calling thread's heap (the empty heap until it has one).
    #[inline(always)]
    pub(crate) fn heap() -> *mut Heap {
        let h: *mut Heap;
        // SAFETY: reads this thread's copy of `mmpool_tls_heap` through its
        // initial-exec GOT slot; no memory is written, the stack is unused.
        unsafe {
            // (In rax: the argument registers stay free, so the fast
            // paths keep their argument where it arrived.)
            core::arch::asm!(
                "mov rax, qword ptr [rip + mmpool_tls_heap@GOTTPOFF]",
                "mov rax, qword ptr fs:[rax]",
                out("rax") h,
                options(nostack, readonly, preserves_flags, pure),
            );
        }
        h
    }

    /// Make `h` the calling thread's heap.
    #[inline]
    pub(crate) fn set_heap(h: *mut Heap) {
        // SAFETY: writes this thread's copy of `mmpool_tls_heap`, a word
        // nobody else reads.
        unsafe {
            core::arch::asm!(
                "mov {t}, qword ptr [rip + mmpool_tls_heap@GOTTPOFF]",
                "mov qword ptr fs:[{t}], {h}",
                t = out(reg) _,
                h = in(reg) h,
                options(nostack, preserves_flags),
            );
        }
    }

    /// This thread's arena hint, its two words in static TLS: the thread
    /// pointer (`fs:[0]`) plus the hint's initial-exec offset.
    #[inline(always)]
    fn arena_slot() -> *mut [u64; 2] {
        let p: *mut [u64; 2];
        // SAFETY: reads the GOT slot of `mmpool_tls_arena` and this
        // thread's thread pointer; nothing is written but `p`.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr [rip + mmpool_tls_arena@GOTTPOFF]",
                "add {p}, qword ptr fs:[0]",
                p = out(reg) p,
                options(nostack, readonly, pure),
            );
        }
        p
    }

    /// The calling thread's arena hint: (arena, generation), (0, 0) at
    /// first.
    #[inline(always)]
    pub(crate) fn arena_hint() -> (usize, u64) {
        // SAFETY: this thread's own two words, which only it touches.
        let [a, g] = unsafe { *arena_slot() };
        (a as usize, g)
    }

    /// Set the calling thread's arena hint.
    #[inline]
    pub(crate) fn set_arena_hint(a: usize, g: u64) {
        // SAFETY: as in `arena_hint`.
        unsafe { *arena_slot() = [a as u64, g] };
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use super::Heap;
    use core::cell::Cell;

    std::thread_local! {
        static HEAP: Cell<*mut Heap> = const { Cell::new(core::ptr::null_mut()) };
        static ARENA: Cell<(usize, u64)> = const { Cell::new((0, 0)) };
    }

    /// The calling thread's heap (the empty heap until it has one).
    #[inline(always)]
    pub(crate) fn heap() -> *mut Heap {
        let h = HEAP.with(|c| c.get());
        if h.is_null() {
            crate::heap::types::empty_heap()
        } else {
            h
        }
    }

    /// Make `h` the calling thread's heap.
    #[inline]
    pub(crate) fn set_heap(h: *mut Heap) {
        HEAP.with(|c| c.set(h));
    }

    /// The calling thread's arena hint: (arena, generation).
    #[inline(always)]
    pub(crate) fn arena_hint() -> (usize, u64) {
        ARENA.with(|c| c.get())
    }

    /// Set the calling thread's arena hint.
    #[inline]
    pub(crate) fn set_arena_hint(a: usize, g: u64) {
        ARENA.with(|c| c.set((a, g)));
    }
}

pub(crate) use imp::{arena_hint, heap, set_arena_hint, set_heap};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_the_empty_heap_in_every_thread() {
        std::thread::spawn(|| assert_eq!(heap(), crate::heap::types::empty_heap()))
            .join()
            .unwrap();
    }

    #[test]
    fn is_per_thread() {
        std::thread::spawn(|| {
            let mine = 0x1000 as *mut Heap;
            let before = heap();
            set_heap(mine);
            assert_eq!(heap(), mine);
            std::thread::spawn(|| assert_eq!(heap(), crate::heap::types::empty_heap()))
                .join()
                .unwrap();
            set_heap(before);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_arena_hint_is_per_thread() {
        std::thread::spawn(|| {
            assert_eq!(arena_hint(), (0, 0));
            set_arena_hint(0x1230, 7);
            assert_eq!(arena_hint(), (0x1230, 7));
            std::thread::spawn(|| assert_eq!(arena_hint(), (0, 0)))
                .join()
                .unwrap();
        })
        .join()
        .unwrap();
    }
}
