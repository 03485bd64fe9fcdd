//! C++'s `operator new` and `operator delete`, every standard form (plain
//! and array; sized, aligned, nothrow), exported under their mangled
//! names (feature `override`, x86-64): a C++ program on the pool calls
//! them directly instead of libstdc++'s wrappers around `malloc`, and a
//! sized `delete` has its size checked (`api::cxx`).
//!
//! A throwing `operator new` that runs out of memory calls the program's
//! new-handler (`std::set_new_handler`) and tries again, or throws
//! `std::bad_alloc` when there is none. An exception must not unwind
//! through Rust code, so that loop is written in assembly with its own
//! unwind information: the handler and `std::__throw_bad_alloc` are
//! called from that frame, which the C++ unwinder walks through into the
//! program's `catch`. The Rust functions it calls (one allocation try,
//! looking up the handler) never throw. The nothrow forms return NULL
//! when no handler is installed, and call it first when one is (as
//! mimalloc does; a handler that throws from a nothrow `new` ends the
//! program, as the C++ runtime's `noexcept` does).
//!
//! The entry points are naked functions (exported like every
//! `#[no_mangle]` function) that jump into the one loop with the form's
//! alignment and flags.
//!
//! Uses: `api::cxx`, `util::diag`.

#![allow(non_snake_case)] // the mangled C++ names

use crate::api::cxx;
use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Flag of the loop: a nothrow form (return NULL instead of throwing).
const NOTHROW: usize = 1;
/// Flag of the loop: an array form (`new[]`).
const ARRAY: usize = 2;

/// One allocation try for the loop (never unwinds).
extern "C" fn try_new(size: usize, align: usize, flags: usize) -> *mut c_void {
    // SAFETY: operator new's contract: any size, a power-of-two alignment.
    unsafe { cxx::new_once(size, align, flags & ARRAY != 0).cast() }
}

/// `std::get_new_handler` and `std::__throw_bad_alloc` of the program's
/// C++ runtime, looked up once (0: not yet, 1: absent).
static GET_NEW_HANDLER: AtomicUsize = AtomicUsize::new(0);
static THROW_BAD_ALLOC: AtomicUsize = AtomicUsize::new(0);

fn resolve(cache: &AtomicUsize, name: &core::ffi::CStr) -> Option<usize> {
    let mut f = cache.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches
        // the program and its libraries (libstdc++ in a C++ program).
        f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
        if f == 0 {
            f = 1;
        }
        cache.store(f, Ordering::Release);
    }
    (f > 1).then_some(f)
}

/// The program's new-handler, or 0 (never unwinds: `get_new_handler` is
/// `noexcept`).
extern "C" fn new_handler() -> usize {
    match resolve(&GET_NEW_HANDLER, c"_ZSt15get_new_handlerv") {
        Some(f) => {
            // SAFETY: std::get_new_handler(): no arguments, returns the
            // handler (a function pointer, null when none), never throws.
            let get: extern "C" fn() -> usize = unsafe { core::mem::transmute(f) };
            get()
        }
        None => 0,
    }
}

/// `std::__throw_bad_alloc` (called from the loop's frame), or the end of
/// the program when there is no C++ runtime to throw with.
extern "C" fn bad_alloc_thrower() -> usize {
    match resolve(&THROW_BAD_ALLOC, c"_ZSt17__throw_bad_allocv") {
        Some(f) => f,
        None => crate::util::diag::fatal(
            "operator new: out of memory, and no C++ runtime to throw std::bad_alloc",
            0,
        ),
    }
}

// The new-handler loop: rdi = size, rsi = alignment (0: default), rdx =
// flags. Callee-saved registers keep the arguments across the calls; the
// three pushes leave the stack 16-byte aligned for them.
core::arch::global_asm!(
    ".pushsection .text.mmpool_cxx_new_loop,\"ax\",@progbits",
    ".globl mmpool_cxx_new_loop",
    ".hidden mmpool_cxx_new_loop",
    ".type mmpool_cxx_new_loop,@function",
    ".p2align 4",
    "mmpool_cxx_new_loop:",
    ".cfi_startproc",
    "push rbx",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rbx, -16",
    "push r12",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r12, -24",
    "push r13",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r13, -32",
    "mov rbx, rdi",
    "mov r12, rsi",
    "mov r13, rdx",
    "2:",
    "mov rdi, rbx",
    "mov rsi, r12",
    "mov rdx, r13",
    "call {try_new}",
    "test rax, rax",
    "jz 3f",
    "4:",
    ".cfi_remember_state",
    "pop r13",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore r13",
    "pop r12",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore r12",
    "pop rbx",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore rbx",
    "ret",
    ".cfi_restore_state",
    "3:",
    "call {new_handler}",
    "test rax, rax",
    "jz 5f",
    // The handler frees memory and returns (try again), or throws, or
    // ends the program.
    "call rax",
    "jmp 2b",
    "5:",
    "test r13, {nothrow}",
    "jnz 4b",
    "call {thrower}",
    "call rax",
    "ud2",
    ".cfi_endproc",
    ".size mmpool_cxx_new_loop, .-mmpool_cxx_new_loop",
    ".popsection",
    try_new = sym try_new,
    new_handler = sym new_handler,
    thrower = sym bad_alloc_thrower,
    nothrow = const NOTHROW,
);

/// Export an `operator new` form: set the loop's alignment (rsi) and
/// flags (rdx) as the form says, and jump into it (no frame of its own).
macro_rules! new_forms {
    ($( $(#[$doc:meta])* $name:ident => [$($setup:literal),*]; )*) => {
        $(
            $(#[$doc])*
            #[unsafe(naked)]
            #[no_mangle]
            pub unsafe extern "C" fn $name() {
                core::arch::naked_asm!($($setup,)* "jmp mmpool_cxx_new_loop")
            }
        )*
    };
}

new_forms! {
    /// `operator new(size_t)`.
    _Znwm => ["xor esi, esi", "xor edx, edx"];
    /// `operator new[](size_t)`.
    _Znam => ["xor esi, esi", "mov edx, 2"];
    /// `operator new(size_t, const std::nothrow_t&)`.
    _ZnwmRKSt9nothrow_t => ["xor esi, esi", "mov edx, 1"];
    /// `operator new[](size_t, const std::nothrow_t&)`.
    _ZnamRKSt9nothrow_t => ["xor esi, esi", "mov edx, 3"];
    /// `operator new(size_t, std::align_val_t)`.
    _ZnwmSt11align_val_t => ["xor edx, edx"];
    /// `operator new[](size_t, std::align_val_t)`.
    _ZnamSt11align_val_t => ["mov edx, 2"];
    /// `operator new(size_t, std::align_val_t, const std::nothrow_t&)`.
    _ZnwmSt11align_val_tRKSt9nothrow_t => ["mov edx, 1"];
    /// `operator new[](size_t, std::align_val_t, const std::nothrow_t&)`.
    _ZnamSt11align_val_tRKSt9nothrow_t => ["mov edx, 3"];
}

const _: () = assert!(NOTHROW == 1 && ARRAY == 2, "the flags the forms above set");

/// Export `operator delete` forms as one-line calls.
macro_rules! delete_forms {
    ($( $(#[$doc:meta])* $name:ident ( $($arg:ident : $ty:ty),* ) => $body:expr; )*) => {
        $(
            $(#[$doc])*
            #[no_mangle]
            pub unsafe extern "C" fn $name($($arg: $ty),*) {
                // SAFETY: the C++ contract of this operator delete.
                unsafe { $body }
            }
        )*
    };
}

delete_forms! {
    /// `operator delete(void*)`.
    _ZdlPv(p: *mut c_void) => cxx::delete(p.cast(), None, 0, false, "operator delete");
    /// `operator delete[](void*)`.
    _ZdaPv(p: *mut c_void) => cxx::delete(p.cast(), None, 0, true, "operator delete[]");
    /// `operator delete(void*, size_t)`.
    _ZdlPvm(p: *mut c_void, n: usize) =>
        cxx::delete(p.cast(), Some(n), 0, false, "operator delete");
    /// `operator delete[](void*, size_t)`.
    _ZdaPvm(p: *mut c_void, n: usize) =>
        cxx::delete(p.cast(), Some(n), 0, true, "operator delete[]");
    /// `operator delete(void*, const std::nothrow_t&)`.
    _ZdlPvRKSt9nothrow_t(p: *mut c_void, _nt: *const c_void) =>
        cxx::delete(p.cast(), None, 0, false, "operator delete");
    /// `operator delete[](void*, const std::nothrow_t&)`.
    _ZdaPvRKSt9nothrow_t(p: *mut c_void, _nt: *const c_void) =>
        cxx::delete(p.cast(), None, 0, true, "operator delete[]");
    /// `operator delete(void*, std::align_val_t)`.
    _ZdlPvSt11align_val_t(p: *mut c_void, al: usize) =>
        cxx::delete(p.cast(), None, al, false, "operator delete");
    /// `operator delete[](void*, std::align_val_t)`.
    _ZdaPvSt11align_val_t(p: *mut c_void, al: usize) =>
        cxx::delete(p.cast(), None, al, true, "operator delete[]");
    /// `operator delete(void*, size_t, std::align_val_t)`.
    _ZdlPvmSt11align_val_t(p: *mut c_void, n: usize, al: usize) =>
        cxx::delete(p.cast(), Some(n), al, false, "operator delete");
    /// `operator delete[](void*, size_t, std::align_val_t)`.
    _ZdaPvmSt11align_val_t(p: *mut c_void, n: usize, al: usize) =>
        cxx::delete(p.cast(), Some(n), al, true, "operator delete[]");
    /// `operator delete(void*, std::align_val_t, const std::nothrow_t&)`.
    _ZdlPvSt11align_val_tRKSt9nothrow_t(p: *mut c_void, al: usize, _nt: *const c_void) =>
        cxx::delete(p.cast(), None, al, false, "operator delete");
    /// `operator delete[](void*, std::align_val_t, const std::nothrow_t&)`.
    _ZdaPvSt11align_val_tRKSt9nothrow_t(p: *mut c_void, al: usize, _nt: *const c_void) =>
        cxx::delete(p.cast(), None, al, true, "operator delete[]");
}
