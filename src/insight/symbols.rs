//! Naming code addresses for reports, without allocating.
//!
//! Owns [`describe`]: address -> module path, module-relative offset (what
//! `addr2line -e MODULE OFFSET` takes), and a function name with offset.
//! `dladdr` knows only exported (dynamic) symbols; most functions of a
//! program are not exported, so when `dladdr` has no name the module's
//! own `.symtab` is read from its file (mapped read-only, never copied).
//! Used at exit and for trace lines, never on allocation fast paths.
//!
//! Uses: `os::file`, `util::diag`, `util::lock`.

use core::ffi::{c_char, c_void, CStr};

/// What is known about a code address.
pub(crate) struct Described {
    /// Path of the module (NUL-free bytes), empty when unknown.
    pub(crate) module: &'static [u8],
    /// Address minus the module's load base (0 when unknown).
    pub(crate) offset: usize,
    /// Function name and the address's offset into it, when found.
    pub(crate) symbol: Option<(&'static [u8], usize)>,
}

/// What `dladdr` knows of `addr`: `None` when it lies in no loaded
/// module.
pub(crate) fn dl_info(addr: usize) -> Option<libc::Dl_info> {
    let mut info = libc::Dl_info {
        dli_fname: core::ptr::null(),
        dli_fbase: core::ptr::null_mut(),
        dli_sname: core::ptr::null(),
        dli_saddr: core::ptr::null_mut(),
    };
    // SAFETY: valid out-parameter; dladdr accepts any address.
    let found = unsafe { libc::dladdr(addr as *const c_void, &mut info) } != 0;
    (found && !info.dli_fbase.is_null()).then_some(info)
}

/// Describe code address `addr`.
pub(crate) fn describe(addr: usize) -> Described {
    let Some(info) = dl_info(addr) else {
        return Described {
            module: b"",
            offset: 0,
            symbol: None,
        };
    };
    let base = info.dli_fbase as usize;
    let module = cstr(info.dli_fname);
    let offset = addr - base;
    let symbol = if !info.dli_sname.is_null() && !info.dli_saddr.is_null() {
        Some((cstr(info.dli_sname), addr - info.dli_saddr as usize))
    } else {
        symtab_lookup(module, offset)
    };
    Described {
        module,
        offset,
        symbol,
    }
}

fn cstr(p: *const c_char) -> &'static [u8] {
    if p.is_null() {
        return b"";
    }
    // SAFETY: dladdr returns NUL-terminated strings that live as long as
    // the module stays loaded (for reports: until exit).
    unsafe { CStr::from_ptr(p) }.to_bytes()
}

/// Look `offset` up in the `.symtab` of the module file `path`. The main
/// program's `dli_fname` may be a relative or empty path; then
/// `/proc/self/exe` is used.
fn symtab_lookup(path: &[u8], offset: usize) -> Option<(&'static [u8], usize)> {
    let p: &[u8] = if path.is_empty() || !path.starts_with(b"/") {
        b"/proc/self/exe"
    } else {
        path
    };
    find_symbol(map_file(p)?, offset)
}

/// Module files mapped so far (by the last 64 bytes of their path), so
/// that a file is mapped once; the names found point into the mappings,
/// which are never unmapped.
struct Cache {
    keys: [[u8; 64]; 16],
    maps: [Option<&'static [u8]>; 16],
    n: usize,
}

impl Cache {
    const EMPTY: Cache = Cache {
        keys: [[0; 64]; 16],
        maps: [None; 16],
        n: 0,
    };
}

static CACHE: crate::util::lock::Lock<Cache> = crate::util::lock::Lock::new(Cache::EMPTY);

/// In a fork child: a cache whose lock was held by a thread that does not
/// exist here may be half updated: start afresh.
pub(crate) fn after_fork_child() {
    if CACHE.held_by_other_thread() {
        // SAFETY: the child's only thread; no guard exists.
        unsafe { CACHE.reset_in_child(|_| Cache::EMPTY) };
    }
}

fn map_file(path: &[u8]) -> Option<&'static [u8]> {
    let mut key = [0u8; 64];
    let tail = &path[path.len().saturating_sub(64)..];
    key[..tail.len()].copy_from_slice(tail);
    let mut c = CACHE.lock();
    if let Some(i) = c.keys[..c.n].iter().position(|k| *k == key) {
        return c.maps[i];
    }
    let mapped = crate::os::file::map_readonly(path).filter(|f| f.len() > 64);
    if c.n < c.keys.len() {
        let n = c.n;
        c.keys[n] = key;
        c.maps[n] = mapped;
        c.n += 1;
    }
    mapped
}

fn read_at<T: Copy>(file: &[u8], off: usize) -> Option<T> {
    let end = off.checked_add(core::mem::size_of::<T>())?;
    if end > file.len() {
        return None;
    }
    // SAFETY: in bounds; unaligned read of plain data.
    Some(unsafe { (file.as_ptr().add(off) as *const T).read_unaligned() })
}

/// The function of a 64-bit ELF file containing virtual address `vaddr`
/// (for PIE executables and shared libraries, the module-relative offset).
fn find_symbol(file: &'static [u8], vaddr: usize) -> Option<(&'static [u8], usize)> {
    if file.len() < 64 || &file[..4] != b"\x7fELF" || file[4] != 2 {
        return None;
    }
    let eh: libc::Elf64_Ehdr = read_at(file, 0)?;
    let shoff = eh.e_shoff as usize;
    let shentsize = eh.e_shentsize as usize;
    let mut best: Option<(&'static [u8], usize)> = None;
    for i in 0..eh.e_shnum as usize {
        let sh: libc::Elf64_Shdr = read_at(file, shoff + i * shentsize)?;
        // Prefer .symtab (all functions); fall back to .dynsym.
        if sh.sh_type != 2 && sh.sh_type != 11 {
            continue;
        }
        let strtab: libc::Elf64_Shdr = read_at(file, shoff + sh.sh_link as usize * shentsize)?;
        let count = sh.sh_size as usize / core::mem::size_of::<libc::Elf64_Sym>();
        for k in 0..count {
            let sym: libc::Elf64_Sym = read_at(
                file,
                sh.sh_offset as usize + k * core::mem::size_of::<libc::Elf64_Sym>(),
            )?;
            let is_func = sym.st_info & 0xf == 2;
            let (start, size) = (sym.st_value as usize, sym.st_size as usize);
            if !is_func || vaddr < start || vaddr >= start + size.max(1) {
                continue;
            }
            let name_off = strtab.sh_offset as usize + sym.st_name as usize;
            if name_off >= file.len() {
                continue;
            }
            let rest = &file[name_off..];
            let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            best = Some((&rest[..len], vaddr - start));
            if sh.sh_type == 2 {
                return best;
            }
        }
    }
    best
}

/// Append `name+0xoff (module+0xoffset)` to `line`.
pub(crate) fn write_frame(line: &mut crate::util::diag::Line, addr: usize) {
    let d = describe(addr);
    match d.symbol {
        Some((name, off)) => {
            line.bytes(name).str("+").hex(off as u64);
        }
        None => {
            line.str("??");
        }
    }
    line.str(" (");
    if d.module.is_empty() {
        line.hex(addr as u64);
    } else {
        line.bytes(d.module).str("+").hex(d.offset as u64);
    }
    line.str(")");
}
