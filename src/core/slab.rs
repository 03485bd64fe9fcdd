//! Slabs: a span carved into equal blocks of one size class.
//!
//! Owns the slab header and its free lists. `malloc` pops `free`, and the
//! owning thread's fast-path `free` pushes there too, so the block freed
//! last is handed out next while it is still in the CPU's caches (what
//! tcache and the thread caches of jemalloc and tcmalloc give, without a
//! cache of their own to check on every call). The owner's slow paths
//! (remote frees collected, user data that looked free) push on `local_free`,
//! taken over when `free` runs dry. (Blocks freed by other threads travel
//! through the owning heap's `remote` queue, see `heap`.) Blocks carry no
//! header: a free block holds its encoded link in its first word.
//!
//! Never-used blocks are carved lazily from `bump`, the blocks that end in
//! the page in use at a time (at least one), so a slab's resident memory
//! follows its use.
//!
//! Hardening, paid for on the fast paths in a few instructions:
//! - **encoded links** (glibc's safe-linking, with a secret of the slab's
//!   own): a free block's first word is `next ^ link_key`, the lists end at
//!   the slab's own address, and `pop` stops the program when a link
//!   decodes to a misaligned address (a write after free, a forged link);
//! - **free-looking blocks**: a block that looks free (its first word
//!   decodes to an address inside the slab) is a double free, or user data
//!   that equals the secret's encoding of such an address (1 in 2^48); a
//!   block handed out holds 0 there, which never looks free;
//! - **block starts**: `is_block_start` tells a carved block start from
//!   any other address with one multiply and one compare: for the offset
//!   `t = p - first` (mod 2^64), `t * magic mod 2^64 < limit` exactly when
//!   `t` is a multiple of the block size below the carved part (`magic =
//!   floor(2^64 / bs) + 1`, `e = step = bs * magic mod 2^64 <= bs`, `limit
//!   = carved * step`). With `t = q * bs + r`, the product is `q * e + r *
//!   magic`: for `r = 0` it is `q * e` (below `t`, no wrap), under `limit`
//!   exactly when `q < carved`; otherwise `r * magic` lies between
//!   `2^64 / bs` and `2^64 - 2^64 / bs + bs`, so while `t < 2^64 / bs - bs`
//!   the sum neither wraps nor drops below `magic > limit`. An address
//!   below the first block (`t = 2^64 - d`) gives `2^64 - (d * magic)`,
//!   at least `2^64 / bs - bs - d`, so it fails while `d < 2^64 / bs - bs
//!   - limit`. Blocks are at most 64 KiB and user addresses below 2^47:
//!   the test is exact for every address a program can pass (unit test
//!   `only_carved_block_starts_are_block_starts`). The high half of the
//!   128-bit product `t * magic` is `t / bs` for `t < 2^32`
//!   (`block_containing` maps an interior pointer without a division).
//!
//! Invariants, for a slab owned by a live heap that is not its class's
//! current slab: `used + |free| + |local_free| + (end - bump) / block_size
//! == capacity`; `limit == (bump - first) / block_size * step`; every
//! block on `free` or `local_free` is a carved block start holding
//! `encode(next)`. The current slab's `used` is not kept by `malloc` (one
//! instruction less on the fast path): `free` counts it down from
//! [`CURRENT_TICKS`] (its upkeep tick), and the exact count is recomputed
//! ([`Slab::exact_used`], or [`Slab::used_by_scan`] for an idle one) when
//! the slab stops being current.
//!
//! Uses: `core::config`, `core::pagemap`, `core::size_class`, `os`,
//! `os::pages`, `util::diag`, `util::list`, `util::lock`.

use crate::core::pagemap::{SpanHead, TAG_SLAB};

// `Slab::pop` finds a list's end by the misaligned link its span head
// decodes to: the tag's low four bits must be neither 0 (key 0, the
// empty slab) nor 0xf (a slab's key, whose low four bits are 0xf).
const _: () = assert!(TAG_SLAB & 0xf != 0 && TAG_SLAB & 0xf != 0xf);
// (The tag is the low half of that word.)
const _: () = assert!(cfg!(target_endian = "little"));
use crate::core::size_class::{
    block_size, capacity_at, span_base, span_head, GRANULE, SLAB_HEADER,
};
use crate::os::PAGE;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicUsize, Ordering};

/// A block as the allocator sees it while it is free.
#[repr(C)]
pub(crate) struct Block {
    /// On a slab's lists: `next ^ link_key` (see [`Slab::encode`]); while
    /// the block waits in a remote queue or a medium cache: a link to
    /// itself (it looks free); once handed out: 0, then whatever the
    /// program writes.
    pub(crate) link: usize,
    /// The next block of a remote queue or a medium cache.
    pub(crate) chain: *mut Block,
}

/// The header at the head of a slab span. The fast paths read only its
/// first 64-byte line (free: the tag and owner, the block-start test,
/// the free-block test, `free` and `used`; malloc: `free` and
/// `link_key`): a free into a slab whose header is not in cache costs one
/// miss, not two. (The secure build's fast paths read more of it: the
/// check key, the block size.)
#[repr(C)]
pub(crate) struct Slab {
    /// Tag `SLAB`, length, owner (heap address | flags).
    pub(crate) head: SpanHead,
    /// Blocks `malloc` pops, and the owner's fast-path `free` pushes (so
    /// the block freed last is handed out next); ends at the slab's own
    /// address.
    pub(crate) free: *mut Block,
    /// The slab's secret for links: `next ^ link_key` is stored.
    pub(crate) link_key: usize,
    /// `link_key ^ slab address`: a word `w` of a free block has
    /// `w ^ check_key < span size` (see [`Slab::looks_free_fast`]).
    pub(crate) check_key: usize,
    /// Block-start test: `floor(2^64 / block_size) + 1`.
    pub(crate) magic: u64,
    /// Block-start test: carved blocks times `step`.
    pub(crate) limit: u64,
    /// Blocks handed out and not yet back on this slab's lists (see the
    /// module invariant for the current slab).
    pub(crate) used: u32,
    /// Size class.
    pub(crate) class: u16,
    /// Its heap's current slab of its class: `used` counts down
    /// [`CURRENT_TICKS`] frees, not blocks.
    pub(crate) current: bool,
    /// The secure build: the span's guard pages are closed
    /// (`core::span::set_guards`); kept while the span is a spare.
    pub(crate) guarded: bool,
    // Second line: the slow paths'.
    /// Blocks freed by the owner's slow paths (remote frees collected,
    /// user data that looked free) since the last refill; ends at the
    /// slab's own
    /// address.
    pub(crate) local_free: *mut Block,
    /// Block-start test: `block_size * magic mod 2^64`.
    pub(crate) step: u64,
    /// Blocks in the slab.
    pub(crate) capacity: u32,
    /// Size of each block.
    pub(crate) block_size: u32,
    /// First block never carved. Written by the owner only; atomic because
    /// other threads read it to validate pointers they free.
    pub(crate) bump: AtomicUsize,
    /// End of the block area.
    pub(crate) end: usize,
    /// Link in the owner's (or the abandoned) list.
    pub(crate) next: *mut Slab,
    /// Link in the owner's (or the abandoned) list.
    pub(crate) prev: *mut Slab,
    /// On an abandoned list of generation `abandoned_in - 1`; 0 when on
    /// none (see `heap::abandoned`).
    pub(crate) abandoned_in: u32,
    /// A keyed word of the slab's address ([`Slab::canary_of`]), the
    /// header's last bytes: in the default build the first block follows
    /// it, so an underflow out of that block overwrites it before it
    /// reaches `next`, `prev`, `end` or `bump`. Checked before every list
    /// operation on the slab and every carve ([`Slab::check_canary`]): a
    /// corrupted header stops the program instead of steering a list
    /// write anywhere.
    pub(crate) canary: u32,
}

const _: () = assert!(core::mem::offset_of!(Slab, local_free) == 64);
const _: () = assert!(core::mem::size_of::<Slab>() <= SLAB_HEADER);
// The canary ends the header: the first block starts right after it.
const _: () =
    assert!(core::mem::offset_of!(Slab, canary) + 4 == SLAB_HEADER || cfg!(feature = "secure"));

// SAFETY: `next` and `prev` are distinct fields of the slab header.
unsafe impl crate::util::list::Linked for Slab {
    unsafe fn links(this: *mut Self) -> (*mut *mut Self, *mut *mut Self) {
        // SAFETY: `this` is a live slab header (contract).
        unsafe {
            (*this).check_canary();
            (&raw mut (*this).next, &raw mut (*this).prev)
        }
    }
}

/// The `used` count of a heap's current slab of each class is not a
/// count of blocks: malloc does not count at all (one instruction less on
/// its fast path), and `free` counts down from this many. When it reaches
/// zero, `free` takes its slow path (`heap::free::emptied` or
/// `heap::slabs::slab_emptied`), which restarts the count (one lower, so
/// that this count means no free since the slab became current) and makes the
/// heap's periodic upkeep due: a thread that frees and allocates in a
/// loop without ever emptying its current slab still collects its remote
/// frees and sends its outbox. When the slab stops being current its
/// count is recomputed ([`Slab::exact_used`], [`Slab::used_by_scan`]).
pub(crate) const CURRENT_TICKS: u32 = 256;

/// Blocks [`Slab::used_by_scan`] keeps a bit for (on its stack): every
/// one-granule slab's (blocks of 16 bytes or more).
const SCAN_BLOCKS: usize = 4096;
const _: () = assert!(SCAN_BLOCKS * crate::core::size_class::MIN_ALIGN >= GRANULE);

/// Owner flag: the slab is on its heap's full list.
pub(crate) const OWNER_FULL: usize = 1;
/// Owner flag: aligned allocations handed out interior pointers.
pub(crate) const OWNER_INTERIOR: usize = 2;
/// Owner flag: the owning heap is instrumented (statistics, leak checks,
/// tracing), so every free of the slab's blocks takes the slow path.
pub(crate) const OWNER_INSTR: usize = 4;
/// Owner flag bits (heap structs are 64-byte aligned).
pub(crate) const OWNER_FLAGS: usize = 7;

/// The block-start test's multiplier for block size `bs`.
pub(crate) const fn start_magic(bs: usize) -> u64 {
    ((1u128 << 64) / bs as u128 + 1) as u64
}

/// A slab's count of blocks in use reached zero with blocks still in use,
/// or its lists hold more blocks than it carved: a block was freed twice
/// (a write after free wiped its mark in between).
fn listed_twice(b: *mut Block, bs: u32) -> ! {
    stop_at("free(): double free (a block of this slab was freed twice; a write after free wiped its mark) near", b, bs)
}

/// A slab whose count of blocks in use reached zero holds a block that
/// is not free ([`Slab::check_empty`]).
fn not_empty(b: *mut Block, bs: u32) -> ! {
    stop_at("free(): double free or write after free (this block of a slab counted empty is in use, or its free-list link was overwritten) at", b, bs)
}

/// A block freed again while it heads its slab's `free` or `local_free`
/// list.
pub(crate) fn freed_twice(b: *mut Block, bs: u32) -> ! {
    stop_at("free(): double free", b, bs)
}

/// A free list's link decoded to a misaligned address: the block was
/// written after it was freed (or its link forged).
fn corrupted(b: *mut Block, bs: u32) -> ! {
    stop_at(
        "malloc(): corrupted free list (a write after free?) at",
        b,
        bs,
    )
}

/// Stop the program: `what` happened at block `b` of `bs` bytes.
#[cold]
#[inline(never)]
fn stop_at(what: &'static str, b: *mut Block, bs: u32) -> ! {
    crate::util::diag::fatal_block(what, b as usize, bs as usize)
}

impl Slab {
    /// Write a fresh header for class `class` at `span` (the header
    /// position of a span, `size_class::span_head`), owned by `owner`.
    ///
    /// # Safety
    /// `span` must head a span of `granules` granules (enough for one
    /// block of the class at least after the header) that nobody else
    /// uses.
    pub(crate) unsafe fn init(
        span: *mut u8,
        granules: usize,
        class: usize,
        owner: usize,
    ) -> *mut Slab {
        let s = span.cast::<Slab>();
        let bs = block_size(class);
        let first = span as usize + SLAB_HEADER;
        let cap = capacity_at(bs, granules, span as usize - span_base(span as usize));
        debug_assert!(cap >= 1);
        let key = crate::core::config::slab_key(span as usize);
        let magic = start_magic(bs);
        // SAFETY: the span is ours (contract) and large enough.
        unsafe {
            s.write(Slab {
                head: SpanHead {
                    tag: TAG_SLAB,
                    granules: granules as u32,
                    owner: AtomicUsize::new(owner),
                },
                free: s.cast(),
                local_free: s.cast(),
                link_key: key ^ span as usize,
                check_key: key,
                magic,
                limit: 0,
                step: (bs as u64).wrapping_mul(magic),
                used: 0,
                capacity: cap as u32,
                block_size: bs as u32,
                class: class as u16,
                current: false,
                guarded: false,
                bump: AtomicUsize::new(first),
                end: first + cap * bs,
                next: null_mut(),
                prev: null_mut(),
                abandoned_in: 0,
                canary: Slab::canary_of(s as usize, key),
            });
        }
        s
    }

    /// The canary of a slab header at `s` whose check key is `key`.
    fn canary_of(s: usize, key: usize) -> u32 {
        let x = (s ^ key.rotate_left(23)) as u64;
        (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32
    }

    /// Stop the program when the header's canary was overwritten (a heap
    /// underflow out of the slab's first block, or a wild write).
    #[inline]
    pub(crate) fn check_canary(&self) {
        let s = self as *const Slab as usize;
        // (Read as it is: another thread may check the same slab.)
        // SAFETY: a live slab header.
        let c = unsafe { core::ptr::read_volatile(&raw const self.canary) };
        if c != Slab::canary_of(s, self.check_key) {
            // Named after the slab's first block, whose underflow is the
            // likely cause.
            stop_at(
                "heap underflow: the slab header before this block was overwritten at",
                (s + SLAB_HEADER) as *mut Block,
                self.block_size,
            );
        }
    }

    /// The end of the slab's lists: its own address.
    #[inline(always)]
    pub(crate) fn terminator(&self) -> *mut Block {
        self as *const Slab as *mut Block
    }

    /// The word a free block holds to link to `next`.
    #[inline(always)]
    pub(crate) fn encode(&self, next: *mut Block) -> usize {
        next as usize ^ self.link_key
    }

    /// The block a free block's word links to.
    #[inline(always)]
    pub(crate) fn decode(&self, word: usize) -> *mut Block {
        (word ^ self.link_key) as *mut Block
    }

    /// The first block never carved.
    #[inline]
    pub(crate) fn bump(&self) -> usize {
        self.bump.load(Ordering::Relaxed)
    }

    /// Address of the first block.
    #[inline]
    pub(crate) fn first_block(&self) -> usize {
        self as *const Slab as usize + SLAB_HEADER
    }

    /// Is `p` the start of a carved block? Exact for any address `p` (see
    /// the module documentation: any offset from the first block below
    /// 2^48, either way).
    #[inline(always)]
    pub(crate) fn is_block_start(&self, p: usize) -> bool {
        self.is_block_offset(p.wrapping_sub(self.first_block()))
    }

    /// Is `t` (an address minus [`first_block`](Self::first_block), mod
    /// 2^64) the offset of a carved block? The test of
    /// [`is_block_start`](Self::is_block_start), for callers that hold
    /// the first block's address already (the free fast path).
    #[inline(always)]
    pub(crate) fn is_block_offset(&self, t: usize) -> bool {
        (t as u64).wrapping_mul(self.magic) < self.limit
    }

    /// Pop a block from `free`, or null; stops the program when the next
    /// link decodes to a misaligned address.
    ///
    /// The end of the list needs no test of its own: the list ends at the
    /// slab itself, whose first word (the span head, tag `SLAB`) decodes
    /// to a misaligned address with any key (the low four bits of a link
    /// key are 0xf, or the key is 0 for the empty slab, and those of the
    /// tag are neither), so the one misalignment test sends both the end
    /// and a corrupted link to [`Slab::pop_end`].
    ///
    /// # Safety
    /// Only the owning thread may call this; `free` must be a valid list.
    #[inline(always)]
    pub(crate) unsafe fn pop(&mut self) -> *mut Block {
        let b = self.free;
        // SAFETY: `b` is a free block of this slab (list invariant) or the
        // slab itself, whose header starts with the span head.
        unsafe {
            let next = self.decode((*b).link);
            if next as usize % 16 != 0 {
                return self.pop_end(b);
            }
            self.free = next;
            (*b).link = 0;
        }
        b
    }

    /// [`pop`](Self::pop) read a misaligned link from `b`: null at the
    /// list's end, else the list is corrupted.
    #[cold]
    #[inline(never)]
    fn pop_end(&self, b: *mut Block) -> *mut Block {
        if b != self.terminator() {
            corrupted(b, self.block_size);
        }
        null_mut()
    }

    /// Does `b`, a block of this one-granule slab, look free (see the
    /// module documentation)? Four instructions.
    ///
    /// # Safety
    /// `b` is a readable block of this slab, which is one granule long.
    #[inline(always)]
    pub(crate) unsafe fn looks_free_fast(&self, b: *const Block) -> bool {
        // SAFETY: contract.
        unsafe { (*b).link ^ self.check_key < GRANULE }
    }

    /// Does `b`, a block of this slab, look free: does its first word
    /// decode to an address inside the slab?
    ///
    /// # Safety
    /// `b` is a readable block of this slab.
    #[inline]
    pub(crate) unsafe fn looks_free(&self, b: *const Block) -> bool {
        let span = self.head.granules as usize * GRANULE;
        // SAFETY: contract.
        let d = self.decode(unsafe { (*b).link }) as usize;
        d.wrapping_sub(self as *const Slab as usize) < span
    }

    /// Make `b` look free while it waits in a remote queue or a medium
    /// cache (its first word links to itself).
    ///
    /// # Safety
    /// `b` is a block of this slab being freed.
    #[inline]
    pub(crate) unsafe fn mark_waiting(&self, b: *mut Block) {
        // SAFETY: contract.
        unsafe { (*b).link = self.encode(b) }
    }

    /// Does `b` carry the waiting mark ([`Slab::mark_waiting`])?
    ///
    /// # Safety
    /// `b` is a readable block of this slab.
    #[inline]
    pub(crate) unsafe fn is_waiting(&self, b: *const Block) -> bool {
        // SAFETY: contract.
        unsafe { (*b).link == self.encode(b as *mut Block) }
    }

    /// The slab of `b`, a block of a small class: small slabs are one
    /// granule (`core::size_class`), their header at its start.
    #[inline(always)]
    pub(crate) fn of_small_block(b: *const Block) -> *const Slab {
        span_head(b as usize & !(GRANULE - 1)) as *const Slab
    }

    /// Hand out `b`, which waited in a medium cache: it no longer looks
    /// free.
    ///
    /// # Safety
    /// `b` is a block of a slab, taken off the cache by its owner.
    #[inline]
    pub(crate) unsafe fn hand_out(b: *mut Block) {
        // SAFETY: contract.
        unsafe { (*b).link = 0 }
    }

    /// Walk a list of this slab from `head`, calling `f` on each block;
    /// stops at the end, or at a link that does not name a carved block
    /// (then returns false), after `capacity` blocks at most.
    ///
    /// # Safety
    /// Owner thread only (or any thread for a racy count: every read
    /// stays inside the slab's span, which is never unmapped).
    unsafe fn walk(&self, head: *mut Block, mut f: impl FnMut(*mut Block) -> bool) -> bool {
        let mut b = head;
        let mut n = 0;
        while b != self.terminator() {
            if !self.is_block_start(b as usize) || n >= self.capacity {
                return false;
            }
            if !f(b) {
                return true;
            }
            n += 1;
            // SAFETY: `b` is a carved block of this slab (checked).
            b = self.decode(unsafe { core::ptr::read_volatile(&raw const (*b).link) });
        }
        true
    }

    /// Blocks handed out and not back on this slab's lists, counted (walks
    /// the free lists). For a slab that stops being current, and one whose
    /// count reached zero before it goes back. Stops the program when the
    /// lists hold more blocks than were carved: a block on them twice (a
    /// double free after a write wiped its mark, which the free-block test
    /// cannot see), or a loop.
    ///
    /// # Safety
    /// Owner thread only.
    pub(crate) unsafe fn exact_used(&self) -> u32 {
        let mut n = 0u32;
        for head in [self.free, self.local_free] {
            // SAFETY: forwarded contract.
            let whole = unsafe {
                self.walk(head, |_| {
                    n += 1;
                    true
                })
            };
            if !whole {
                corrupted(head, self.block_size);
            }
        }
        let uncarved = ((self.end - self.bump()) / self.block_size as usize) as u32;
        match self.capacity.checked_sub(n + uncarved) {
            Some(used) => used,
            None => listed_twice(self.free, self.block_size),
        }
    }

    /// Is this slab, whose `used` count reached zero, really empty? Its
    /// count goes down once per free, so a block freed twice without being
    /// seen (a write after free wiped its mark, and it was not its list's
    /// head) brings it to zero early: the slab must not go back while a
    /// block of it is in use. Stops the program then.
    ///
    /// Every carved block must be on a list: its link decodes to another
    /// block of this slab or to the lists' end. A block pushed twice
    /// leaves another one off the lists while the count says none is: one
    /// in use holds 0 (from `malloc`) or the program's data, which decodes
    /// to a block only for a program that knows the slab's secret key, and
    /// one waiting in a remote queue, an outbox or a medium cache links to
    /// itself ([`Slab::mark_waiting`]). The blocks are read in address
    /// order, a pass the prefetcher streams, where a walk of the lists
    /// ([`Slab::exact_used`]) waits for each link in turn.
    ///
    /// # Safety
    /// Owner thread only (or under the abandoned-slabs lock).
    pub(crate) unsafe fn check_empty(&self) {
        // SAFETY: forwarded contract.
        if let Some(b) = unsafe { self.first_unlisted() } {
            not_empty(b, self.block_size);
        }
    }

    /// The first carved block that is on no list by its link (see
    /// [`Slab::check_empty`]), if any.
    ///
    /// # Safety
    /// As [`Slab::check_empty`].
    unsafe fn first_unlisted(&self) -> Option<*mut Block> {
        let bs = self.block_size as usize;
        // SAFETY: forwarded contract.
        (self.first_block()..self.bump())
            .step_by(bs)
            .find(|&b| unsafe { self.listed_link(b) }.is_none())
            .map(|b| b as *mut Block)
    }

    /// Where the link of the carved block at `b` leads if the block is on
    /// a list by it (another block or the lists' end); `None` when it is
    /// on no list (in use, or waiting elsewhere: see
    /// [`Slab::check_empty`]).
    ///
    /// # Safety
    /// As [`Slab::check_empty`]; `b` is a carved block of this slab.
    #[inline(always)]
    unsafe fn listed_link(&self, b: usize) -> Option<*mut Block> {
        // SAFETY: contract: a carved block (below `bump`).
        let next = self.decode(unsafe { core::ptr::read_volatile(b as *const usize) });
        let listed =
            next as usize != b && (next == self.terminator() || self.is_block_start(next as usize));
        listed.then_some(next)
    }

    /// Blocks handed out and not back on this slab's lists, counted in
    /// address order by their links ([`Slab::check_empty`]'s test: 0 here
    /// is that test passing): a pass the prefetcher streams, where
    /// [`Slab::exact_used`]'s walk of the lists waits for each link in
    /// turn. It stops the program where the walk would: a block that two
    /// links name, or a list head that a link names (a block pushed while
    /// it was on a list: a double free after a write wiped its mark makes
    /// such a loop), or a link to no block. A slab of more than
    /// [`SCAN_BLOCKS`] blocks is walked instead (and, counted empty,
    /// checked as `check_empty` does).
    ///
    /// # Safety
    /// As [`Slab::check_empty`].
    pub(crate) unsafe fn used_by_scan(&self) -> u32 {
        if self.capacity as usize > SCAN_BLOCKS {
            // SAFETY: forwarded contract.
            let used = unsafe { self.exact_used() };
            if used == 0 {
                // SAFETY: as above.
                unsafe { self.check_empty() };
            }
            return used;
        }
        let first = self.first_block();
        // Which blocks some link names (the lists' heads count as named:
        // nothing links to a head).
        let mut named = [0u64; SCAN_BLOCKS / 64];
        let mut name = |b: *mut Block| {
            if b == self.terminator() {
                return;
            }
            if !self.is_block_start(b as usize) {
                corrupted(b, self.block_size);
            }
            // The index by the reciprocal (see `block_containing`).
            let t = (b as usize - first) as u64;
            let i = ((t as u128 * self.magic as u128) >> 64) as usize;
            let bit = 1u64 << (i % 64);
            if named[i / 64] & bit != 0 {
                // Two links to one block, or a link to a head: a block
                // pushed while it was on a list already.
                listed_twice(b, self.block_size);
            }
            named[i / 64] |= bit;
        };
        name(self.free);
        name(self.local_free);
        let mut in_use = 0;
        for b in (first..self.bump()).step_by(self.block_size as usize) {
            // SAFETY: contract: a carved block (below `bump`).
            match unsafe { self.listed_link(b) } {
                Some(next) => name(next),
                None => in_use += 1,
            }
        }
        in_use
    }

    /// Push a block freed by the owner onto `local_free` (the owner's slow
    /// paths). As [`push_free`](Self::push_free).
    ///
    /// # Safety
    /// As [`push_free`](Self::push_free).
    #[inline(always)]
    pub(crate) unsafe fn push_local(&mut self, b: *mut Block) -> bool {
        // SAFETY: forwarded contract.
        unsafe { self.push_on(true, b) }
    }

    /// Push a block freed by the owner onto `free`, where malloc takes it
    /// next (while the block is still in the CPU's caches) if this is the
    /// current slab. Returns true when `used` reached zero: the slab has
    /// become empty, or (the current slab) its count of frees ran out. A
    /// block that already heads the list is a double free even when the
    /// program wrote over its link in between (the free-block test cannot
    /// see it then): it would make the list a loop that hands the block
    /// out again and again.
    ///
    /// # Safety
    /// Owner thread only; `b` must be a block of this slab that is in use.
    #[inline(always)]
    pub(crate) unsafe fn push_free(&mut self, b: *mut Block) -> bool {
        // SAFETY: forwarded contract.
        unsafe { self.push_on(false, b) }
    }

    /// [`push_free`](Self::push_free) (`local` false) or
    /// [`push_local`](Self::push_local).
    ///
    /// # Safety
    /// As [`push_free`](Self::push_free).
    #[inline(always)]
    unsafe fn push_on(&mut self, local: bool, b: *mut Block) -> bool {
        let head = if local {
            &raw mut self.local_free
        } else {
            &raw mut self.free
        };
        // SAFETY: `head` is one of our list heads; the block is ours and
        // at least 16 bytes (contract).
        unsafe {
            // (The slow paths' push also looks at the other list's head:
            // the fast path pushes there.)
            if b == *head || (local && b == self.free) {
                freed_twice(b, self.block_size);
            }
            (*b).link = self.encode(*head);
            *head = b;
        }
        self.used -= 1;
        self.used == 0
    }

    /// Refill `free`: from `local_free`, else by carving fresh blocks.
    /// Returns false when the slab has no free block at all.
    ///
    /// # Safety
    /// Owner thread only.
    pub(crate) unsafe fn refill(&mut self) -> bool {
        // SAFETY: forwarded contract.
        self.refill_freed() || unsafe { self.carve() }
    }

    /// Are all of the slab's blocks carved (no fresh block left to carve)?
    pub(crate) fn carved_out(&self) -> bool {
        self.bump() + self.block_size as usize > self.end
    }

    /// Refill `free` from the blocks freed into this slab only (`free`
    /// itself, else `local_free`), touching no fresh page. Returns false
    /// when no freed block waits here.
    ///
    /// Owner thread only (the lists are the owner's).
    pub(crate) fn refill_freed(&mut self) -> bool {
        if self.free != self.terminator() {
            return true;
        }
        if self.local_free != self.terminator() {
            self.free = self.local_free;
            self.local_free = self.terminator();
            return true;
        }
        false
    }

    /// Carve the never-used blocks that end in the page where the bump
    /// pointer is (at least one) onto `free`: a carve touches no page
    /// beyond the one it must (blocks start 128 bytes into the span, so a
    /// page's worth of blocks would spill into the next page).
    unsafe fn carve(&mut self) -> bool {
        self.check_canary();
        let bs = self.block_size as usize;
        let start = self.bump();
        if start + bs > self.end {
            return false;
        }
        let page_end = (start | (PAGE - 1)) + 1;
        let n = ((page_end - start) / bs)
            .max(1)
            .min((self.end - start) / bs);
        self.bump.store(start + n * bs, Ordering::Relaxed);
        self.limit = ((start + n * bs - self.first_block()) / bs) as u64 * self.step;
        if crate::core::config::SECURE {
            // SAFETY: as below.
            unsafe { self.carve_secure(start, n) };
            return true;
        }
        let mut next = self.free;
        for i in (0..n).rev() {
            let b = (start + i * bs) as *mut Block;
            // SAFETY: the block lies in the never-used part of our span.
            unsafe { (*b).link = self.encode(next) };
            next = b;
        }
        self.free = next;
        true
    }

    /// The secure build's carve: the blocks are zeroed (a span from the
    /// span cache holds old data; `malloc` checks that a block it hands
    /// out is still zero) and linked in a random order, so neighbours in
    /// memory are not handed out one after the other.
    ///
    /// # Safety
    /// `[start, start + n * block_size)` is the never-used part of our
    /// span just carved; `n <= 256`.
    unsafe fn carve_secure(&mut self, start: usize, n: usize) {
        let bs = self.block_size as usize;
        // SAFETY: contract.
        unsafe { core::ptr::write_bytes(start as *mut u8, 0, n * bs) };
        let mut order = [0u16; 256];
        let n = n.min(order.len());
        for (i, o) in order.iter_mut().enumerate().take(n) {
            *o = i as u16;
        }
        // Mixed: carves of one slab differ in a few bits of `start`,
        // which xorshift alone would turn into related orders.
        let mut x = crate::core::config::mix((self.check_key ^ start) as u64) | 1;
        for i in (1..n).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // An index below i + 1 from the high half of x's low 32
            // bits times i + 1 (a multiply, not a division).
            order.swap(i, (((x & 0xffff_ffff) * (i as u64 + 1)) >> 32) as usize);
        }
        let mut next = self.free;
        for &i in order[..n].iter() {
            let b = (start + i as usize * bs) as *mut Block;
            // SAFETY: contract: a block of the carved part.
            unsafe { (*b).link = self.encode(next) };
            next = b;
        }
        self.free = next;
    }

    /// The start of the block containing `p`, or `None` when `p` is not
    /// inside a block that was ever handed out.
    pub(crate) fn block_containing(&self, p: usize) -> Option<usize> {
        let first = self.first_block();
        if p < first || p >= self.bump() {
            return None;
        }
        // The index by the block-start test's reciprocal (exact for
        // offsets below 2^32: see the module's comment), not a division.
        let t = (p - first) as u64;
        let i = ((t as u128 * self.magic as u128) >> 64) as usize;
        let bs = self.block_size as usize;
        debug_assert_eq!(i, (p - first) / bs);
        Some(first + i * bs)
    }

    /// Blocks handed out and not back on the slab's lists, read by any
    /// thread while the owner may be changing them (statistics): exact
    /// when the owner is idle, approximate otherwise (`current` and `used`
    /// are read apart: while the owner changes its current slab, up to
    /// [`CURRENT_TICKS`] blocks may be counted that are not in use). Every read stays
    /// inside the slab's span (which is never unmapped): a free-list walk
    /// follows only links that name a carved block of this slab.
    ///
    /// # Safety
    /// `s` must be the header of a slab span (a carved span tagged SLAB).
    pub(crate) unsafe fn used_now(s: *const Slab) -> usize {
        // SAFETY: contract: the header lies in mapped span memory; the
        // fields are read as they are (volatile: another thread writes
        // them).
        unsafe {
            let cap = core::ptr::read_volatile(&raw const (*s).capacity) as usize;
            let used = core::ptr::read_volatile(&raw const (*s).used);
            if !core::ptr::read_volatile(&raw const (*s).current) {
                return (used as usize).min(cap);
            }
            // Its heap's current slab: malloc does not count; count the
            // free lists instead.
            let bs = core::ptr::read_volatile(&raw const (*s).block_size) as usize;
            let first = (*s).first_block();
            let bump = (*s).bump();
            if bs == 0 || bump < first || bump > first + cap * bs {
                return 0;
            }
            let carved = (bump - first) / bs;
            let mut free = 0;
            for head in [
                core::ptr::read_volatile(&raw const (*s).free),
                core::ptr::read_volatile(&raw const (*s).local_free),
            ] {
                (*s).walk(head, |_| {
                    free += 1;
                    free < carved
                });
            }
            carved - free.min(carved)
        }
    }

    /// Is `b` on `free` or `local_free`? (The double-free check; O(free).)
    ///
    /// # Safety
    /// Owner thread only, or under the abandoned-slabs lock.
    pub(crate) unsafe fn is_on_free_lists(&self, b: usize) -> bool {
        let mut found = false;
        for head in [self.free, self.local_free] {
            // SAFETY: forwarded contract.
            unsafe {
                self.walk(head, |x| {
                    found |= x as usize == b;
                    !found
                })
            };
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::size_class::{class_of, GRANULE, NUM_CLASSES, SLAB_GRANULES};
    use crate::os::pages::testing::HeapSource;
    use crate::os::PageSource;
    use std::collections::BTreeSet;

    fn with_slab(class: usize, f: impl FnOnce(&mut Slab)) {
        let src = HeapSource::default();
        let size = SLAB_GRANULES[class] as usize * GRANULE;
        let span = src.map(size, GRANULE).unwrap();
        // The header where the span cache would put it (a colour).
        let head = span_head(span.as_ptr() as usize) as *mut u8;
        // SAFETY: fresh span of the class's size.
        let s = unsafe { &mut *Slab::init(head, SLAB_GRANULES[class] as usize, class, 0x1000) };
        f(s);
        // SAFETY: from map above.
        unsafe { src.unmap(span, size) };
    }

    #[test]
    fn hands_out_every_block_once_then_runs_dry() {
        for class in [0, 5, 12, 20, NUM_CLASSES - 1] {
            with_slab(class, |s| {
                let mut seen = BTreeSet::new();
                // SAFETY: single-threaded owner.
                while unsafe { s.refill() } {
                    // SAFETY: single-threaded owner; refill succeeded.
                    let b = unsafe { s.pop() } as usize;
                    assert_eq!(b % 16, 0);
                    assert!(b >= s.first_block() && b + s.block_size as usize <= s.end);
                    assert!(seen.insert(b), "block handed out twice");
                }
                assert_eq!(seen.len(), s.capacity as usize);
                // SAFETY: owner.
                assert_eq!(unsafe { s.exact_used() }, s.capacity);
                // SAFETY: owner.
                assert_eq!(unsafe { s.used_by_scan() }, s.capacity);
                // SAFETY: owner.
                assert!(!unsafe { s.refill() }, "nothing left to hand out");
            });
        }
    }

    #[test]
    fn a_slab_counted_empty_with_a_block_off_its_lists_is_found() {
        with_slab(class_of(48), |s| {
            // SAFETY: single-threaded owner; blocks come from pop.
            unsafe {
                assert!(s.refill());
                let a = s.pop();
                let c = s.pop();
                let x = s.pop();
                s.used = s.exact_used();
                assert_eq!(s.used, 3);
                assert_eq!(s.used_by_scan(), 3, "the scan counts as the walk");
                // x waits in another thread's queue; a is freed, written
                // over, c freed, a freed again: the count reaches zero.
                s.mark_waiting(x);
                assert!(!s.push_local(a));
                (*a).link = 0x2222_2222_2222_2222;
                assert!(!s.push_local(c));
                assert!(s.push_local(a), "the count says empty");
                assert_eq!(s.first_unlisted(), Some(x), "x is on no list");
                // Handed out instead (its first word cleared): the same.
                (*x).link = 0;
                assert_eq!(s.first_unlisted(), Some(x));
                // All back, each once: nothing off the lists.
                (*a).link = s.encode(c);
                (*c).link = s.encode(x);
                (*x).link = s.encode(s.terminator());
                s.local_free = a;
                assert_eq!(s.first_unlisted(), None);
                assert_eq!(s.used_by_scan(), 0);
            }
        });
    }

    /// A block pushed twice (a double free after a write wiped its mark)
    /// makes its list a loop, which the scan stops at as the walk does:
    /// in a child process, which must end on `abort`.
    #[test]
    fn the_scan_stops_at_a_block_pushed_twice() {
        let _turn = crate::util::lock::fork_turn();
        // SAFETY: fork; the child touches only the slab's span and exits
        // (or aborts) without taking a lock.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // A failed assertion must not look like a clean exit, nor
            // return into the test harness. (Not a panic hook: setting
            // one takes std's hook lock, which another test's thread may
            // have held, printing its own panic, when we forked; the
            // child then waited for it forever.)
            let body = std::panic::AssertUnwindSafe(|| {
                with_slab(class_of(48), |s| {
                    // SAFETY: single-threaded owner; blocks come from pop.
                    unsafe {
                        assert!(s.refill());
                        let a = s.pop();
                        let c = s.pop();
                        let _in_use = s.pop();
                        s.used = 3;
                        assert!(!s.push_local(a));
                        (*a).link = 0x2222_2222_2222_2222;
                        assert!(!s.push_local(c));
                        s.push_local(a);
                        let _ = s.used_by_scan();
                    }
                })
            });
            let code = if std::panic::catch_unwind(body).is_ok() {
                0
            } else {
                2
            };
            // SAFETY: `_exit` ends the child at once.
            unsafe { libc::_exit(code) };
        }
        assert!(pid > 0, "fork failed");
        let status = crate::util::lock::wait_child(pid, "the scan of a looped list");
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGABRT,
            "the scan went on past a loop: status {status:#x}"
        );
    }

    #[test]
    fn freed_blocks_come_back_and_emptiness_is_reported() {
        with_slab(class_of(48), |s| {
            // SAFETY: single-threaded owner; blocks come from pop.
            unsafe {
                assert!(s.refill());
                let a = s.pop();
                let b = s.pop();
                // pop does not count; the heap keeps `used` for non-current
                // slabs (here: set it as the heap would on un-biasing).
                s.used = s.exact_used();
                assert_eq!(s.used, 2);
                assert_eq!(s.used_by_scan(), 2);
                assert!(!s.push_local(a));
                assert_eq!(s.used_by_scan(), 1);
                assert!(s.is_on_free_lists(a as usize));
                assert!(!s.is_on_free_lists(b as usize));
                assert!(s.push_local(b), "last block back: empty");
                assert!(
                    s.looks_free(b) && s.looks_free_fast(b),
                    "a free block looks free"
                );
                // Drain `free`, then local_free is swapped in.
                while !s.pop().is_null() {}
                assert!(s.refill());
                let c = s.pop();
                assert!(c == a || c == b);
                assert_eq!((*c).link, 0, "pop clears the link");
                assert!(
                    !s.looks_free(c) && !s.looks_free_fast(c),
                    "a live block does not"
                );
            }
        });
    }

    #[test]
    fn interior_pointers_map_to_their_block() {
        with_slab(class_of(100), |s| {
            // SAFETY: owner.
            unsafe { s.refill() };
            let first = s.first_block();
            let bs = s.block_size as usize;
            assert_eq!(s.block_containing(first), Some(first));
            assert_eq!(s.block_containing(first + bs + 5), Some(first + bs));
            assert_eq!(s.block_containing(first - 1), None);
            assert_eq!(s.block_containing(s.bump()), None, "never carved");
        });
        // The reciprocal gives the block of every byte, in every class.
        for class in 0..NUM_CLASSES {
            with_slab(class, |s| {
                // SAFETY: owner.
                unsafe { s.refill() };
                let (first, bs) = (s.first_block(), s.block_size as usize);
                for p in (first..s.bump()).step_by(7) {
                    let want = first + (p - first) / bs * bs;
                    assert_eq!(s.block_containing(p), Some(want), "class {class}");
                }
            });
        }
    }

    #[test]
    fn only_carved_block_starts_are_block_starts() {
        for class in 0..NUM_CLASSES {
            with_slab(class, |s| {
                // SAFETY: owner.
                unsafe { s.refill() };
                let first = s.first_block();
                let bs = s.block_size as usize;
                let bump = s.bump();
                let slab = s as *const Slab as usize;
                for p in (slab..slab + s.head.granules as usize * GRANULE).step_by(8) {
                    let want = p >= first && p < bump && (p - first) % bs == 0;
                    assert_eq!(s.is_block_start(p), want, "class {class} p {:#x}", p - slab);
                }
                // Never an address outside the span, however far: not a
                // carved block's address a multiple of 4 GiB away (the low
                // 32 bits of the offset alone would say yes), nor one
                // below the slab, nor one up to 2^47 away.
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ class as u64;
                for k in 1..=64usize {
                    for j in 0..4 {
                        let b = first + j * bs;
                        for far in [b.wrapping_add(k << 32), b.wrapping_sub(k << 32)] {
                            assert!(!s.is_block_start(far), "class {class}: {far:#x}");
                        }
                    }
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let d = (x as usize) & ((1 << 47) - 1);
                    let d = d - d % bs + GRANULE * 16;
                    for far in [first.wrapping_add(d), first.wrapping_sub(d)] {
                        assert!(!s.is_block_start(far), "class {class}: {far:#x}");
                    }
                }
            });
        }
    }

    #[test]
    fn a_corrupted_link_is_caught_when_its_block_is_popped() {
        with_slab(class_of(32), |s| {
            // SAFETY: owner; the test overwrites a free block's link as a
            // write after free would.
            unsafe {
                s.refill();
                let head = s.free;
                assert_eq!(s.decode((*head).link) as usize % 16, 0);
                (*head).link = 0x4242_4242_4242_4242;
                assert!(
                    s.decode((*head).link) as usize % 16 != 0,
                    "garbage decodes misaligned"
                );
                (*head).link = 0;
                assert!(s.decode((*head).link) as usize % 16 != 0, "zeros too");
            }
        });
    }
}
