//! Leak records: every live block with its requested size and allocation
//! site, and the report at exit.
//!
//! Owns the live-block table (open addressing over mapped memory,
//! backward-shift deletion) and the site table (distinct call stacks,
//! interned). Both live in memory mapped straight from the OS, never from
//! the pool, and sit behind one lock. Used only in instrumented mode
//! (`MMPOOL_LEAK_CHECK`, or `MMPOOL_STATS` for the requested sizes).
//!
//! The report at exit lists every block still live, grouped by site and
//! sorted by bytes. Blocks the C library keeps for the whole run (stdio
//! buffers, locale and loader data) are suppressed by default, and so is
//! any site with a frame whose function or module contains one of the
//! comma-separated substrings of `MMPOOL_LEAK_SUPPRESS`.
//!
//! Invariants, under the lock: `live == |entries with addr != 0|`; every
//! entry's `site < nsites`; site 0 is the empty stack.
//!
//! Uses: `insight::mode`, `insight::stack`, `insight::symbols`, `os::env`,
//! `util::diag`, `util::lock`, `util::mapped`.

use crate::insight::stack::{Stack, MAX_FRAMES};
use crate::util::diag::Line;
use crate::util::lock::Lock;
use crate::util::mapped::Mapped;

#[derive(Clone, Copy)]
#[repr(C)]
struct Entry {
    addr: usize,
    size: usize,
    site: u32,
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Site {
    hash: u64,
    frames: [usize; MAX_FRAMES],
    len: u32,
    blocks: usize,
    bytes: usize,
}

struct State {
    /// Live blocks by address (0 = empty slot).
    table: Mapped<Entry>,
    live: usize,
    /// Distinct stacks; index 0 is "no stack".
    sites: Mapped<Site>,
    nsites: usize,
    /// Site indices by stack hash (0 = empty slot).
    site_index: Mapped<u32>,
}

// SAFETY: the raw mappings are only touched under the lock.
unsafe impl Send for State {}

static STATE: Lock<State> = Lock::new(State::EMPTY);

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn stack_hash(st: &Stack) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64 ^ st.len as u64;
    for &f in &st.frames[..st.len] {
        h = mix(h ^ f as u64);
    }
    h | 1
}

impl State {
    const EMPTY: State = State {
        table: Mapped::EMPTY,
        live: 0,
        sites: Mapped::EMPTY,
        nsites: 0,
        site_index: Mapped::EMPTY,
    };

    fn grow_table(&mut self) -> bool {
        let cap = if self.table.cap() == 0 {
            1 << 12
        } else {
            self.table.cap() * 2
        };
        let new = match Mapped::<Entry>::new(cap) {
            Some(m) => m,
            None => return false,
        };
        let old = core::mem::replace(&mut self.table, new);
        for i in 0..old.cap() {
            let e = *old.at(i);
            if e.addr != 0 {
                self.place(e);
            }
        }
        let mut old = old;
        old.free();
        true
    }

    fn place(&mut self, e: Entry) {
        let mask = self.table.cap() - 1;
        let mut i = mix(e.addr as u64) as usize & mask;
        loop {
            let slot = self.table.at(i);
            if slot.addr == 0 || slot.addr == e.addr {
                *slot = e;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    fn insert(&mut self, e: Entry) {
        if (self.live + 1) * 2 > self.table.cap() && !self.grow_table() {
            return; // out of memory: the block goes unrecorded
        }
        let mask = self.table.cap() - 1;
        let mut i = mix(e.addr as u64) as usize & mask;
        loop {
            let slot = self.table.at(i);
            if slot.addr == 0 {
                *slot = e;
                self.live += 1;
                return;
            }
            if slot.addr == e.addr {
                *slot = e;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    fn remove(&mut self, addr: usize) -> Option<Entry> {
        if self.table.cap() == 0 {
            return None;
        }
        let mask = self.table.cap() - 1;
        let mut i = mix(addr as u64) as usize & mask;
        loop {
            let e = *self.table.at(i);
            if e.addr == 0 {
                return None;
            }
            if e.addr == addr {
                break;
            }
            i = (i + 1) & mask;
        }
        let found = *self.table.at(i);
        // Backward-shift deletion keeps probe chains intact.
        let mut hole = i;
        let mut j = (i + 1) & mask;
        loop {
            let e = *self.table.at(j);
            if e.addr == 0 {
                break;
            }
            let home = mix(e.addr as u64) as usize & mask;
            // Move e into the hole if its home is not in (hole, j].
            let between = if hole <= j {
                home > hole && home <= j
            } else {
                home > hole || home <= j
            };
            if !between {
                *self.table.at(hole) = e;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.table.at(hole).addr = 0;
        self.live -= 1;
        Some(found)
    }

    fn intern(&mut self, st: &Stack) -> u32 {
        if st.len == 0 {
            return 0;
        }
        if self.sites.cap() == 0 {
            match (Mapped::<Site>::new(1024), Mapped::<u32>::new(2048)) {
                (Some(s), Some(ix)) => {
                    self.sites = s;
                    self.site_index = ix;
                    self.nsites = 1; // site 0: no stack
                }
                _ => return 0,
            }
        }
        let h = stack_hash(st);
        let mask = self.site_index.cap() - 1;
        let mut i = h as usize & mask;
        loop {
            let idx = *self.site_index.at(i) as usize;
            if idx == 0 {
                break;
            }
            let s = self.sites.at(idx);
            if s.hash == h && s.len as usize == st.len && s.frames[..st.len] == st.frames[..st.len]
            {
                return idx as u32;
            }
            i = (i + 1) & mask;
        }
        if (self.nsites + 1) * 2 > self.site_index.cap() && !self.grow_sites() {
            return 0;
        }
        let idx = self.nsites;
        self.nsites += 1;
        *self.sites.at(idx) = Site {
            hash: h,
            frames: st.frames,
            len: st.len as u32,
            blocks: 0,
            bytes: 0,
        };
        self.index_site(idx);
        idx as u32
    }

    fn index_site(&mut self, idx: usize) {
        let mask = self.site_index.cap() - 1;
        let mut i = self.sites.at(idx).hash as usize & mask;
        while *self.site_index.at(i) != 0 {
            i = (i + 1) & mask;
        }
        *self.site_index.at(i) = idx as u32;
    }

    fn grow_sites(&mut self) -> bool {
        let (cap, icap) = (self.sites.cap() * 2, self.site_index.cap() * 2);
        let (sites, index) = match (Mapped::<Site>::new(cap), Mapped::<u32>::new(icap)) {
            (Some(s), Some(ix)) => (s, ix),
            _ => return false,
        };
        for i in 0..self.nsites {
            *sites.at(i) = *self.sites.at(i);
        }
        self.sites.free();
        self.site_index.free();
        self.sites = sites;
        self.site_index = index;
        for i in 1..self.nsites {
            self.index_site(i);
        }
        true
    }
}

/// In a fork child: a table whose lock was held by a thread that does not
/// exist here may be half updated: start afresh (the child's report then
/// covers only what it allocates itself).
pub(crate) fn after_fork_child() {
    if STATE.held_by_other_thread() {
        // SAFETY: the child's only thread; no guard exists.
        unsafe { STATE.reset_in_child(|_| State::EMPTY) };
    }
}

/// Record live block `addr` of `size` requested bytes, allocated at `st`.
pub(crate) fn insert(addr: usize, size: usize, st: &Stack) {
    let mut s = STATE.lock();
    let site = if crate::insight::mode::leaks_on() {
        s.intern(st)
    } else {
        0
    };
    s.insert(Entry { addr, size, site });
}

/// Forget block `addr`; its requested size and site when it was recorded.
pub(crate) fn remove(addr: usize) -> Option<(usize, u32)> {
    STATE.lock().remove(addr).map(|e| (e.size, e.site))
}

/// Functions and modules whose blocks live for the whole run by design:
/// stdio buffers, locale data, the dynamic loader's tables, thread stacks'
/// TLS blocks. Extend with `MMPOOL_LEAK_SUPPRESS`.
const DEFAULT_SUPPRESS: &[&[u8]] = &[
    b"_IO_file_doallocate",
    b"_nl_",
    b"_dl_",
    b"ld-linux",
    b"__libc_setlocale",
    b"__gconv",
];

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn suppressed(site: &Site, user: Option<&[u8]>) -> bool {
    for &f in &site.frames[..site.len as usize] {
        let d = crate::insight::symbols::describe(f);
        let name = d.symbol.map_or(&b""[..], |s| s.0);
        let hit = |pat: &[u8]| contains(name, pat) || contains(d.module, pat);
        if DEFAULT_SUPPRESS.iter().any(|p| hit(p)) {
            return true;
        }
        if let Some(list) = user {
            if list.split(|&c| c == b',').any(hit) {
                return true;
            }
        }
    }
    false
}

/// Print the leak report on stderr; with `MMPOOL_LEAK_EXITCODE=n` and
/// leaks found, end the process with status `n`.
pub(crate) fn report_at_exit() {
    let mut s = STATE.lock();
    if s.nsites == 0 && s.live == 0 {
        drop(s);
        summary(0, 0, 0, (0, 0, 0));
        return;
    }
    if s.nsites == 0 {
        s.nsites = 1;
        // No stacks at all: only site 0, which needs storage.
        if let (Some(st), Some(ix)) = (Mapped::<Site>::new(16), Mapped::<u32>::new(32)) {
            s.sites = st;
            s.site_index = ix;
        } else {
            return;
        }
    }
    for i in 0..s.nsites {
        let site = s.sites.at(i);
        site.blocks = 0;
        site.bytes = 0;
    }
    for i in 0..s.table.cap() {
        let e = *s.table.at(i);
        if e.addr != 0 {
            let site = s.sites.at(e.site as usize);
            site.blocks += 1;
            site.bytes += e.size;
        }
    }
    let user = crate::os::env::value(b"MMPOOL_LEAK_SUPPRESS").filter(|v| !v.is_empty());
    let order = match Mapped::<u32>::new(s.nsites) {
        Some(m) => m,
        None => return,
    };
    let mut n = 0;
    let (mut sup_bytes, mut sup_blocks, mut sup_sites) = (0, 0, 0);
    for i in 0..s.nsites {
        let site = *s.sites.at(i);
        if site.blocks == 0 {
            continue;
        }
        if suppressed(&site, user) {
            sup_bytes += site.bytes;
            sup_blocks += site.blocks;
            sup_sites += 1;
            continue;
        }
        *order.at(n) = i as u32;
        n += 1;
    }
    // Sort by bytes, largest first: heap sort, in place, O(n log n)
    // (a program can leak from a very large number of distinct stacks).
    {
        let bytes_of = |i: usize| s.sites.at(*order.at(i) as usize).bytes;
        // Sift down in a min-heap on bytes, so the smallest ends last
        // when popped to the back: the result is largest first.
        let sift = |mut root: usize, end: usize| loop {
            let mut child = 2 * root + 1;
            if child >= end {
                break;
            }
            if child + 1 < end && bytes_of(child + 1) < bytes_of(child) {
                child += 1;
            }
            if bytes_of(child) >= bytes_of(root) {
                break;
            }
            let t = *order.at(root);
            *order.at(root) = *order.at(child);
            *order.at(child) = t;
            root = child;
        };
        for start in (0..n / 2).rev() {
            sift(start, n);
        }
        for end in (1..n).rev() {
            let t = *order.at(0);
            *order.at(0) = *order.at(end);
            *order.at(end) = t;
            sift(0, end);
        }
    }
    let max_sites = crate::os::env::number(b"MMPOOL_LEAK_MAX_SITES").unwrap_or(30);
    let (mut bytes, mut blocks) = (0, 0);
    for k in 0..n {
        let site = *s.sites.at(*order.at(k) as usize);
        bytes += site.bytes;
        blocks += site.blocks;
        if k >= max_sites {
            continue;
        }
        let mut l = Line::new();
        l.str("mmpool: leak of ")
            .dec(site.bytes as u64)
            .str(" bytes in ")
            .dec(site.blocks as u64);
        l.str(if site.blocks == 1 {
            " block"
        } else {
            " blocks"
        })
        .str(" allocated at:\n");
        l.write_to(2);
        if site.len == 0 {
            let mut l = Line::new();
            l.str("    (no stack: allocated before mmpool's constructor ran)\n");
            l.write_to(2);
        }
        for (fi, &f) in site.frames[..site.len as usize].iter().enumerate() {
            let mut l = Line::new();
            l.str("    #").dec(fi as u64).str(" ");
            crate::insight::symbols::write_frame(&mut l, f);
            l.str("\n");
            l.write_to(2);
        }
    }
    if n > max_sites {
        let mut l = Line::new();
        l.str("mmpool: ... and ").dec((n - max_sites) as u64);
        l.str(" more sites (MMPOOL_LEAK_MAX_SITES shows more)\n");
        l.write_to(2);
    }
    let mut order = order;
    order.free();
    drop(s);
    summary(bytes, blocks, n, (sup_bytes, sup_blocks, sup_sites));
    if blocks > 0 {
        if let Some(code) = crate::os::env::number(b"MMPOOL_LEAK_EXITCODE") {
            // SAFETY: flush the program's stdio (exit would have, after
            // us), then end with the requested status.
            unsafe {
                libc::fflush(core::ptr::null_mut());
                libc::_exit(code as i32);
            }
        }
    }
}

fn summary(bytes: usize, blocks: usize, sites: usize, sup: (usize, usize, usize)) {
    let mut l = Line::new();
    l.str("mmpool: ")
        .dec(bytes as u64)
        .str(" bytes leaked in ")
        .dec(blocks as u64);
    l.str(" blocks from ").dec(sites as u64).str(" sites");
    if sup.1 > 0 {
        l.str(" (suppressed: ")
            .dec(sup.0 as u64)
            .str(" bytes in ")
            .dec(sup.1 as u64);
        l.str(" blocks from ").dec(sup.2 as u64).str(" sites)");
    }
    l.str("\n");
    l.write_to(2);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_inserts_finds_and_removes_with_backward_shift() {
        let mut s = State {
            table: Mapped::EMPTY,
            live: 0,
            sites: Mapped::EMPTY,
            nsites: 0,
            site_index: Mapped::EMPTY,
        };
        let n = 20_000usize;
        for i in 1..=n {
            s.insert(Entry {
                addr: i * 16,
                size: i,
                site: 0,
            });
        }
        assert_eq!(s.live, n);
        for i in (1..=n).step_by(2) {
            assert_eq!(s.remove(i * 16).map(|e| e.size), Some(i));
        }
        for i in 1..=n {
            let want = if i % 2 == 0 { Some(i) } else { None };
            assert_eq!(s.remove(i * 16).map(|e| e.size), want, "addr {}", i * 16);
        }
        assert_eq!(s.live, 0);
        s.table.free();
    }

    #[test]
    fn identical_stacks_share_a_site() {
        let mut s = State {
            table: Mapped::EMPTY,
            live: 0,
            sites: Mapped::EMPTY,
            nsites: 0,
            site_index: Mapped::EMPTY,
        };
        let mut a = Stack::EMPTY;
        a.frames[0] = 0x1234;
        a.frames[1] = 0x5678;
        a.len = 2;
        let mut b = a;
        b.frames[1] = 0x9999;
        let ia = s.intern(&a);
        let ib = s.intern(&b);
        assert!(ia != 0 && ib != 0 && ia != ib);
        assert_eq!(s.intern(&a), ia);
        for k in 0..5000usize {
            let mut c = a;
            c.frames[2] = k + 1;
            c.len = 3;
            assert_eq!(s.intern(&c), s.intern(&c));
        }
        assert_eq!(s.intern(&b), ib);
        assert_eq!(s.intern(&Stack::EMPTY), 0);
        s.sites.free();
        s.site_index.free();
    }
}
