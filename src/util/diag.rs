//! Allocation-free diagnostics: the `mmpool: ...` messages on stderr,
//! and [`Line`], the stack buffer every report is formatted in (the
//! global allocator cannot be used inside `malloc`).
//!
//! Uses: `os::file`.

/// A fixed-capacity text buffer on the stack.
pub(crate) struct Line {
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
    pub(crate) const fn new() -> Self {
        Line {
            buf: [0; 512],
            len: 0,
        }
    }

    /// Append text; what does not fit is dropped.
    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// Append raw bytes; what does not fit is dropped.
    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        let n = b.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        self
    }

    /// Append an unsigned decimal number.
    pub(crate) fn dec(&mut self, mut v: u64) -> &mut Self {
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
    pub(crate) fn hex(&mut self, mut v: u64) -> &mut Self {
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
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Write the line to a file descriptor, retrying short writes.
    pub(crate) fn write_to(&self, fd: i32) {
        crate::os::file::write_all(fd, self.as_bytes());
    }

    /// Append a byte count in B, KiB, MiB or GiB with one decimal.
    pub(crate) fn size(&mut self, n: usize) -> &mut Self {
        const UNITS: [&str; 4] = [" B", " KiB", " MiB", " GiB"];
        let mut unit = 0;
        let mut scaled = n as u64 * 10;
        while scaled >= 10240 && unit < 3 {
            scaled /= 1024;
            unit += 1;
        }
        if unit == 0 {
            self.dec(n as u64);
        } else {
            self.dec(scaled / 10).str(".").dec(scaled % 10);
        }
        self.str(UNITS[unit])
    }

    /// Append what `f` writes, right-aligned in `width` columns.
    pub(crate) fn right(&mut self, width: usize, f: impl FnOnce(&mut Line)) -> &mut Self {
        let mut tmp = Line::new();
        f(&mut tmp);
        for _ in tmp.as_bytes().len()..width {
            self.str(" ");
        }
        self.bytes(tmp.as_bytes())
    }
}

/// Print `mmpool: <what> <addr>` and abort the process: the heap is in a
/// state where going on would corrupt memory silently.
#[cold]
#[inline(never)]
pub(crate) fn fatal(what: &str, addr: usize) -> ! {
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

/// Print `mmpool: <what> <addr> (<size>-byte block)` and abort: a heap
/// bug found in (or around) a block of `size` bytes.
#[cold]
#[inline(never)]
pub(crate) fn fatal_block(what: &str, addr: usize, size: usize) -> ! {
    fatal_block_with(what, addr, size, |_| {})
}

/// [`fatal_block`], then a second line, `mmpool:   <detail>` (what
/// `detail` writes, if anything): what the check saw, for whoever
/// debugs the report. Tools that read the report take its first line.
#[cold]
#[inline(never)]
pub(crate) fn fatal_block_with(
    what: &str,
    addr: usize,
    size: usize,
    detail: impl FnOnce(&mut Line),
) -> ! {
    let mut l = Line::new();
    l.str("mmpool: ")
        .str(what)
        .str(" ")
        .hex(addr as u64)
        .str(" (")
        .dec(size as u64)
        .str("-byte block)\n");
    l.write_to(2);
    let mut d = Line::new();
    detail(&mut d);
    if !d.as_bytes().is_empty() {
        let mut l = Line::new();
        l.str("mmpool:   ").bytes(d.as_bytes()).str("\n");
        l.write_to(2);
    }
    // SAFETY: abort never returns and is async-signal-safe.
    unsafe { libc::abort() }
}

/// Print a warning `mmpool: <what>` without stopping.
#[cold]
pub(crate) fn warn(what: &str) {
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
    fn formats_sizes_and_columns() {
        let mut l = Line::new();
        l.size(100).str("|").size(1536).str("|").size(3 << 20);
        l.str("|").right(6, |l| {
            l.dec(42);
        });
        assert_eq!(l.as_bytes(), b"100 B|1.5 KiB|3.0 MiB|    42");
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
