//! Allocation-free diagnostics.
//!
//! Owns the `mmpool: ...` messages written to stderr. Formats into stack
//! buffers and writes with `write(2)`, because it runs inside `malloc`,
//! where the global allocator cannot be used. May call only `libc`.

/// A fixed-capacity text buffer on the stack.
pub struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Line {
    /// An empty line.
    pub const fn new() -> Self {
        Line {
            buf: [0; 512],
            len: 0,
        }
    }

    /// Append text; what does not fit is dropped.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// Append raw bytes; what does not fit is dropped.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        let n = b.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        self
    }

    /// Append an unsigned decimal number.
    pub fn dec(&mut self, mut v: u64) -> &mut Self {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.bytes(&tmp[i..])
    }

    /// Append `0x` and a hexadecimal number.
    pub fn hex(&mut self, mut v: u64) -> &mut Self {
        let mut tmp = [0u8; 18];
        let mut i = tmp.len();
        loop {
            i -= 1;
            let d = (v & 15) as u8;
            tmp[i] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        i -= 2;
        tmp[i] = b'0';
        tmp[i + 1] = b'x';
        self.bytes(&tmp[i..])
    }

    /// The text so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Write the line to a file descriptor, retrying short writes.
    pub fn write_to(&self, fd: i32) {
        write_all(fd, self.as_bytes());
    }
}

/// Write all of `b` to `fd`, ignoring errors (there is nobody to tell).
pub fn write_all(fd: i32, mut b: &[u8]) {
    while !b.is_empty() {
        // SAFETY: `b` is a valid readable slice for its length.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n <= 0 {
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            return;
        }
        b = &b[n as usize..];
    }
}

/// The calling thread's `errno`.
pub fn errno() -> i32 {
    // SAFETY: `__errno_location` returns the calling thread's errno slot,
    // valid for the life of the thread.
    unsafe { *libc::__errno_location() }
}

/// Set the calling thread's `errno`.
pub fn set_errno(v: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = v }
}

/// Print `mmpool: <what> <addr>` and abort the process: the heap is in a
/// state where going on would corrupt memory silently.
#[cold]
#[inline(never)]
pub fn fatal(what: &str, addr: usize) -> ! {
    let mut l = Line::new();
    l.str("mmpool: ").str(what);
    if addr != 0 {
        l.str(" ").hex(addr as u64);
    }
    l.str("\n");
    l.write_to(2);
    // SAFETY: abort never returns and is async-signal-safe.
    unsafe { libc::abort() }
}

/// Print a warning `mmpool: <what>` without stopping.
#[cold]
pub fn warn(what: &str) {
    let mut l = Line::new();
    l.str("mmpool: ").str(what).str("\n");
    l.write_to(2);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        let mut l = Line::new();
        l.dec(0)
            .str(" ")
            .dec(1234567)
            .str(" ")
            .hex(0xdead_beef)
            .str(" ")
            .hex(0);
        assert_eq!(l.as_bytes(), b"0 1234567 0xdeadbeef 0x0");
    }

    #[test]
    fn truncates_instead_of_overflowing() {
        let mut l = Line::new();
        for _ in 0..100 {
            l.str("0123456789");
        }
        assert_eq!(l.as_bytes().len(), 512);
    }
}
