//! The secure build's quarantine: a block a thread frees waits here,
//! zeroed, before it goes back to its slab, so the memory is not handed
//! out again at once (a use after free does not reach the next owner's
//! data) and a write to it in the meantime is seen.
//!
//! One quarantine per thread heap (no lock): [`SLOTS`] entries, at most
//! [`BYTES`] bytes. A new block takes a random slot; the block that held
//! it, if any, leaves (and more leave, at random, while the bytes are over
//! the bound). The caller checks that a leaving block is still zero and
//! frees it for real. Each addition also names one resident entry, in
//! turn, for the caller to re-check ([`Quarantine::sweep`]), so a write
//! after free is found within [`SLOTS`] frees even when the block stays.
//!
//! Uses: nothing of this crate.

/// Entries of a thread's quarantine.
pub(crate) const SLOTS: usize = 64;
/// Bytes a thread's quarantine holds at most.
pub(crate) const BYTES: usize = 256 << 10;

/// A thread's quarantine (a field of its heap in the secure build).
#[repr(C)]
pub(crate) struct Quarantine {
    /// Block starts (0: empty slot) and their sizes.
    addr: [usize; SLOTS],
    size: [u32; SLOTS],
    bytes: usize,
    rng: u64,
    sweep: usize,
}

/// Blocks that left the quarantine, for the caller to check and free.
pub(crate) struct Leaving {
    pub(crate) blocks: [(usize, usize); 4],
    pub(crate) n: usize,
}

impl Quarantine {
    pub(crate) const EMPTY: Quarantine = Quarantine {
        addr: [0; SLOTS],
        size: [0; SLOTS],
        bytes: 0,
        rng: 0,
        sweep: 0,
    };

    fn random(&mut self, seed: usize) -> usize {
        if self.rng == 0 {
            self.rng = (seed as u64) | 1;
        }
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 7) as usize % SLOTS
    }

    fn take(&mut self, i: usize, out: &mut Leaving) {
        if self.addr[i] != 0 {
            out.blocks[out.n] = (self.addr[i], self.size[i] as usize);
            out.n += 1;
            self.bytes -= self.size[i] as usize;
            self.addr[i] = 0;
            self.size[i] = 0;
        }
    }

    /// Quarantine block `[b, b + size)`: it takes a random slot, and the
    /// block that held the slot, if any, leaves (returned). `seed` starts
    /// the random sequence (a secret, the first time). While the bytes
    /// held are over [`BYTES`], [`Quarantine::over`] is true and the
    /// caller takes more out with [`Quarantine::shed`].
    #[inline]
    pub(crate) fn put(&mut self, b: usize, size: usize, seed: usize) -> Option<(usize, usize)> {
        let i = self.random(seed);
        let old = (self.addr[i], self.size[i] as usize);
        self.addr[i] = b;
        self.size[i] = size as u32;
        self.bytes = self.bytes + size - old.1;
        (old.0 != 0).then_some(old)
    }

    /// Does the quarantine hold more than [`BYTES`]?
    #[inline]
    pub(crate) fn over(&self) -> bool {
        self.bytes > BYTES
    }

    /// Take up to [`Leaving::blocks`]`.len()` random blocks out while the
    /// bytes are over the bound (never the slot of `keep`, the block just
    /// put).
    pub(crate) fn shed(&mut self, keep: usize, seed: usize, out: &mut Leaving) {
        let mut tries = 0;
        while self.bytes > BYTES && out.n < out.blocks.len() && tries < 4 * SLOTS {
            tries += 1;
            let j = self.random(seed);
            if self.addr[j] != keep {
                self.take(j, out);
            }
        }
    }

    /// Bytes of the quarantined blocks of at most `max` bytes each, read
    /// by any thread while the owner may change them (statistics).
    ///
    /// # Safety
    /// `q` points at a quarantine that stays mapped.
    pub(crate) unsafe fn bytes_up_to(q: *const Quarantine, max: usize) -> usize {
        let mut n = 0;
        for i in 0..SLOTS {
            // SAFETY: contract; plain words read as they are.
            let (a, s) = unsafe {
                (
                    core::ptr::read_volatile(&raw const (*q).addr[i]),
                    core::ptr::read_volatile(&raw const (*q).size[i]) as usize,
                )
            };
            if a != 0 && s <= max {
                n += s;
            }
        }
        n
    }

    /// The next resident entry to re-check (one per call, in turn).
    pub(crate) fn sweep(&mut self) -> Option<(usize, usize)> {
        self.sweep = (self.sweep + 1) % SLOTS;
        let i = self.sweep;
        (self.addr[i] != 0).then(|| (self.addr[i], self.size[i] as usize))
    }

    /// Empty the quarantine, [`Leaving::blocks`]`.len()` blocks at a time:
    /// false when nothing was left.
    pub(crate) fn drain(&mut self, out: &mut Leaving) -> bool {
        for i in 0..SLOTS {
            if out.n == out.blocks.len() {
                break;
            }
            self.take(i, out);
        }
        out.n > 0
    }
}

impl Leaving {
    pub(crate) const fn new() -> Self {
        Leaving {
            blocks: [(0, 0); 4],
            n: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_wait_in_random_slots_and_bytes_are_bounded() {
        let mut q = Quarantine::EMPTY;
        let mut left = 0;
        let mut out = Leaving::new();
        for b in 1..=1000usize {
            left += usize::from(q.put(b * 64, 32, 12345).is_some());
        }
        let held = q.addr.iter().filter(|&&a| a != 0).count();
        assert_eq!(left + held, 1000, "every block is held or left once");
        assert!(held > SLOTS / 2, "{held} held");
        // The first block does not leave first: slots are random.
        let mut q = Quarantine::EMPTY;
        let mut order = [0usize; 8];
        let mut k = 0;
        for b in 1..=200usize {
            if let Some((a, _)) = q.put(b * 64, 32, 99) {
                if k < order.len() {
                    order[k] = a / 64;
                    k += 1;
                }
            }
        }
        assert_ne!(order, [1, 2, 3, 4, 5, 6, 7, 8], "not first in, first out");
        // Bytes: large blocks push others out.
        let mut q = Quarantine::EMPTY;
        for b in 1..=100usize {
            out.n = 0;
            q.put(b << 20, 32 << 10, 7);
            q.shed(b << 20, 7, &mut out);
            assert!(q.bytes <= BYTES, "{} bytes held", q.bytes);
        }
        let mut all = 0;
        loop {
            out.n = 0;
            if !q.drain(&mut out) {
                break;
            }
            all += out.n;
        }
        assert!(all > 0 && q.bytes == 0);
    }
}
