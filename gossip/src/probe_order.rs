//! A fresh random order of `0..n` for each probe round, in O(1) memory: a keyed bijection on the next
//! power of two, walked until it lands below `n` (cycle walking). A stored, shuffled list of member
//! indices per core was O(N) per core, which loadgen pays N times.
//!
//! Members learned during a round are slotted into what is left of it at a random point, as memberlist
//! does: left for the next round, a member that joined and crashed would wait for probers whose rounds
//! happened to restart, and detection of young members slowed from seconds to minutes at N = 5000.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::rng::Rng;

/// Odd multiplier of the permutation steps, and its inverse modulo 2^32 (which also inverts modulo any
/// smaller power of two).
const MUL: u32 = 0x9E37_79B1;
const MUL_INV: u32 = inverse_mod_pow2(MUL);

/// Late slots a round holds before it gives way to a new round over the grown id space.
const LATE_MAX: usize = 64;

/// One probe round's order over ids `0..n`.
#[derive(Debug, Clone)]
pub struct ProbeOrder {
    n: u32,
    mask: u32,
    shift: u32,
    keys: [u32; 3],
    pos: u32,
    /// Members added during the round: (position at which they are due, id), earliest first.
    late: BinaryHeap<Reverse<(u32, u32)>>,
}

impl ProbeOrder {
    /// A new random order of `0..n`.
    pub fn new(n: usize, rng: &mut Rng) -> Self {
        let n = n.min(u32::MAX as usize) as u32;
        let bits = (u32::BITS - n.saturating_sub(1).leading_zeros()).max(1);
        let mask = if bits >= 32 {
            u32::MAX
        } else {
            (1u32 << bits) - 1
        };
        let keys = [
            rng.next_u64() as u32,
            rng.next_u64() as u32,
            rng.next_u64() as u32,
        ];
        ProbeOrder {
            n,
            mask,
            shift: bits.div_ceil(2),
            keys,
            pos: 0,
            late: BinaryHeap::new(),
        }
    }

    /// An order that is already exhausted (the next round starts on first use).
    pub(crate) fn empty() -> Self {
        ProbeOrder {
            n: 0,
            mask: 0,
            shift: 1,
            keys: [0; 3],
            pos: 0,
            late: BinaryHeap::new(),
        }
    }

    /// Slots `id`, learned during this round, at a random point in what is left of it. Between rounds
    /// it is left out: the next round is drawn over every id known by then. An id the round has yet to
    /// reach needs no slot: a joiner learns most of the cluster at once, and queueing those would cost
    /// every core a heap entry per member. Nor do ids beyond the round once [`LATE_MAX`] wait: a
    /// round begun while the joiner knew a handful of members ends there, and the next one covers
    /// everyone at once (a late heap of thousands per core would otherwise last a whole round).
    pub fn add_late(&mut self, id: u32, rng: &mut Rng) {
        if self.pos >= self.n || (id < self.n && self.position_of(id) >= self.pos) {
            return;
        }
        if self.late.len() >= LATE_MAX {
            // Drop the late slots too: walked one per probe, they would have the node probe nothing but
            // recent joiners for a minute (crash detection at N = 5000 slowed from 17 s to 28 s).
            self.late.clear();
            self.n = self.pos;
            return;
        }
        let left = (self.n - self.pos) as usize;
        let due = self.pos + rng.below(left + 1) as u32;
        self.late.push(Reverse((due, id)));
    }

    /// Each step is a bijection on `0..=mask`: xor with a key, multiply by an odd constant, xorshift.
    fn permute(&self, mut x: u32) -> u32 {
        for k in self.keys {
            x = (x ^ k) & self.mask;
            x = x.wrapping_mul(MUL) & self.mask;
            x ^= x >> self.shift;
        }
        x
    }

    /// Inverse of [`Self::permute`]: each step undone in reverse order.
    fn unpermute(&self, mut x: u32) -> u32 {
        // 2 * shift >= bits, so the xorshift is its own inverse.
        for &k in self.keys.iter().rev() {
            x ^= x >> self.shift;
            x = x.wrapping_mul(MUL_INV) & self.mask;
            x ^= k & self.mask;
        }
        x
    }

    /// Position in the round at which `id` (below `n`) is given: the cycle walk run backwards.
    fn position_of(&self, id: u32) -> u32 {
        let mut x = self.unpermute(id);
        // Terminates: the backward walk stays on id's cycle, which holds values below n.
        while x >= self.n {
            x = self.unpermute(x);
        }
        x
    }

    /// The next id of the round, `None` once all `n` (and every late one) were given.
    pub fn next_id(&mut self) -> Option<u32> {
        if let Some(&Reverse((due, id))) = self.late.peek()
            && (due <= self.pos || self.pos >= self.n)
        {
            self.late.pop();
            return Some(id);
        }
        if self.pos >= self.n {
            return None;
        }
        let mut x = self.permute(self.pos);
        // Terminates: the walk stays on the cycle of `pos`, which contains values below n (pos itself).
        while x >= self.n {
            x = self.permute(x);
        }
        self.pos += 1;
        Some(x)
    }

    /// Ids given out so far this round.
    #[cfg(test)]
    fn position(&self) -> usize {
        self.pos as usize
    }
}

/// Multiplicative inverse of odd `a` modulo 2^32 (Newton's iteration doubles the correct bits each step).
const fn inverse_mod_pow2(a: u32) -> u32 {
    let mut x = a; // correct to 3 bits for odd a
    let mut i = 0;
    while i < 4 {
        x = x.wrapping_mul(2u32.wrapping_sub(a.wrapping_mul(x)));
        i += 1;
    }
    x
}

impl Default for ProbeOrder {
    fn default() -> Self {
        Self::empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_round_is_a_permutation() {
        let mut rng = Rng::new(7);
        for n in [0usize, 1, 2, 3, 63, 64, 65, 1000, 4097] {
            let mut o = ProbeOrder::new(n, &mut rng);
            let mut seen = vec![false; n];
            while let Some(x) = o.next_id() {
                assert!(!seen[x as usize], "n={n}: {x} twice");
                seen[x as usize] = true;
            }
            assert!(seen.iter().all(|&s| s), "n={n}: not all ids given");
            assert_eq!(o.position(), n);
        }
    }

    #[test]
    fn late_members_come_within_the_round() {
        let mut rng = Rng::new(3);
        let mut o = ProbeOrder::new(100, &mut rng);
        for _ in 0..50 {
            o.next_id();
        }
        o.add_late(500, &mut rng);
        o.add_late(501, &mut rng);
        let rest: Vec<u32> = std::iter::from_fn(|| o.next_id()).collect();
        assert_eq!(rest.len(), 52, "the 50 left plus both late ones");
        assert!(rest.contains(&500) && rest.contains(&501));
        // Between rounds nothing is queued: the next round covers it.
        o.add_late(7, &mut rng);
        assert_eq!(o.next_id(), None);
        let mut e = ProbeOrder::empty();
        e.add_late(9, &mut rng);
        assert_eq!(e.next_id(), None);
    }

    #[test]
    fn position_of_inverts_the_walk() {
        assert_eq!(MUL.wrapping_mul(MUL_INV), 1);
        let mut rng = Rng::new(11);
        for n in [1usize, 2, 5, 64, 65, 1000, 4097] {
            let mut o = ProbeOrder::new(n, &mut rng);
            let mut p = 0;
            while let Some(x) = o.next_id() {
                assert_eq!(o.position_of(x), p, "n={n}");
                p += 1;
            }
        }
    }

    #[test]
    fn relearned_members_come_once_in_the_rest_of_the_round() {
        let mut rng = Rng::new(5);
        let mut o = ProbeOrder::new(100, &mut rng);
        for _ in 0..10 {
            o.next_id();
        }
        // A joiner learning everyone at once: the 90 still ahead keep their place, the 10 already
        // given get one late slot each.
        for id in 0..100 {
            o.add_late(id, &mut rng);
        }
        assert_eq!(o.late.len(), 10);
        let mut rest: Vec<u32> = std::iter::from_fn(|| o.next_id()).collect();
        rest.sort_unstable();
        assert_eq!(rest, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn a_round_outgrown_by_late_members_ends_at_once() {
        let mut rng = Rng::new(9);
        let mut o = ProbeOrder::new(64, &mut rng);
        o.next_id().unwrap();
        for id in 64..64 + LATE_MAX as u32 {
            o.add_late(id, &mut rng);
        }
        assert_eq!(o.late.len(), LATE_MAX);
        // One more: the round gives way, late slots and all, so the next round (over every id) starts
        // with the next probe.
        o.add_late(1000, &mut rng);
        assert_eq!(o.next_id(), None);
        assert!(o.late.is_empty());
        o.add_late(5, &mut rng);
        assert_eq!(o.next_id(), None, "between rounds nothing is slotted");
    }

    #[test]
    fn rounds_differ_and_are_not_the_identity() {
        let mut rng = Rng::new(1);
        let round = |rng: &mut Rng| {
            let mut o = ProbeOrder::new(1000, rng);
            std::iter::from_fn(move || o.next_id()).collect::<Vec<_>>()
        };
        let (a, b) = (round(&mut rng), round(&mut rng));
        assert_ne!(a, b);
        let fixed = a
            .iter()
            .enumerate()
            .filter(|&(i, &x)| i as u32 == x)
            .count();
        assert!(fixed < 20, "{fixed} fixed points");
        // Consecutive positions should not map to neighbouring ids most of the time.
        let near = a.windows(2).filter(|w| w[0].abs_diff(w[1]) <= 2).count();
        assert!(near < 50, "{near} near neighbours");
    }
}
