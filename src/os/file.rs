//! Files, by byte-string path, without allocating: the statistics file,
//! the trace log, module files read for their symbols, and stderr.
//!
//! Uses: `os::errno`.

use core::ffi::c_char;

/// Longest path accepted, NUL excluded.
const PATH_MAX: usize = 511;

/// A path copied onto the stack with its terminating NUL.
pub(crate) struct CPath {
    buf: [u8; PATH_MAX + 1],
}

impl CPath {
    /// `None` for an empty path, one too long, or one holding a NUL.
    pub(crate) fn new(path: &[u8]) -> Option<CPath> {
        if path.is_empty() || path.len() > PATH_MAX || path.contains(&0) {
            return None;
        }
        let mut c = CPath {
            buf: [0; PATH_MAX + 1],
        };
        c.buf[..path.len()].copy_from_slice(path);
        Some(c)
    }

    /// The NUL-terminated path.
    pub(crate) fn as_ptr(&self) -> *const c_char {
        self.buf.as_ptr().cast()
    }
}

/// Open `path` for writing, created or truncated (mode 0644, close on
/// exec). `None` when it cannot be opened.
pub(crate) fn create(path: &[u8]) -> Option<i32> {
    let p = CPath::new(path)?;
    // SAFETY: a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            p.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        )
    };
    (fd >= 0).then_some(fd)
}

/// Map a whole file read-only. The mapping is never unmapped: the caller
/// keeps slices into it for the rest of the process.
pub(crate) fn map_readonly(path: &[u8]) -> Option<&'static [u8]> {
    let p = CPath::new(path)?;
    // SAFETY: a NUL-terminated path; a private read-only mapping of the
    // file's size, never unmapped, so the slice stays valid.
    unsafe {
        let fd = libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let mut st: libc::stat = core::mem::zeroed();
        let m = if libc::fstat(fd, &mut st) == 0 && st.st_size > 0 {
            let size = st.st_size as usize;
            let a = libc::mmap(
                core::ptr::null_mut(),
                size,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                fd,
                0,
            );
            (a != libc::MAP_FAILED).then(|| core::slice::from_raw_parts(a as *const u8, size))
        } else {
            None
        };
        libc::close(fd);
        m
    }
}

/// Write all of `b` to `fd`, retrying short writes and EINTR, ignoring
/// errors (there is nobody to tell).
pub(crate) fn write_all(fd: i32, mut b: &[u8]) {
    while !b.is_empty() {
        // SAFETY: `b` is a valid readable slice for its length.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n <= 0 {
            if n < 0 && crate::os::errno::get() == libc::EINTR {
                continue;
            }
            return;
        }
        b = &b[n as usize..];
    }
}

/// Read the start of a small file (a `/proc` or `/sys` one) into `buf`:
/// how many bytes were read, `None` when it cannot be opened or read.
/// `errno` is left as it was.
pub(crate) fn read_into(path: &[u8], buf: &mut [u8]) -> Option<usize> {
    let _errno = crate::os::errno::ErrnoGuard::save();
    let p = CPath::new(path)?;
    // SAFETY: a NUL-terminated path; the read writes at most `buf.len()`
    // bytes into `buf`; the descriptor is ours and closed here.
    unsafe {
        let fd = libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let n = loop {
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if n < 0 && crate::os::errno::get() == libc::EINTR {
                continue;
            }
            break n;
        };
        libc::close(fd);
        (n >= 0).then_some(n as usize)
    }
}

/// Close a descriptor this crate opened.
pub(crate) fn close(fd: i32) {
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(fd) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_and_terminated() {
        assert!(CPath::new(b"").is_none());
        assert!(CPath::new(b"a\0b").is_none());
        assert!(CPath::new(&[b'a'; PATH_MAX + 1]).is_none());
        let p = CPath::new(b"/tmp/x").unwrap();
        // SAFETY: NUL-terminated by construction.
        let c = unsafe { core::ffi::CStr::from_ptr(p.as_ptr()) };
        assert_eq!(c.to_bytes(), b"/tmp/x");
    }

    #[test]
    fn maps_a_file_read_only() {
        let f = map_readonly(b"/proc/self/exe").expect("our own executable");
        assert_eq!(&f[..4], b"\x7fELF");
        assert!(map_readonly(b"/nonexistent/file").is_none());
        let mut buf = [0u8; 64];
        let n = read_into(b"/proc/self/stat", &mut buf).expect("our own stat");
        assert!(n > 0 && buf[..n].iter().all(|&c| c != 0));
        assert!(read_into(b"/nonexistent/file", &mut buf).is_none());
    }
}
