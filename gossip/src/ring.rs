//! The monitoring ring: every member sits at a position hashed from its name, and each node watches the
//! members that follow it. Every node computes the same ring from the names it knows, with no
//! coordination, so "who monitors X" has one answer cluster-wide (up to views that differ during joins).
//!
//! The positions must agree between processes and between murmur versions, so the hash is a fixed
//! function (FNV-1a with a SplitMix64 finish), never a per-process seeded one; a test pins its values.
//!
//! The ring is held once per roster: loadgen's thousands of cores share it as they share names, and each
//! core walks it through its own view, skipping members that are not live there.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Mutex;

use super::roster::Id;

/// A member's position on the ring.
pub fn position(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's high bits barely move between names that differ in their last byte (n1, n2, ...); the
    // finisher spreads every input bit over the whole word.
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// Members ordered by position (ties, which need a 64-bit collision, broken by id).
#[derive(Default)]
pub struct Ring {
    members: Mutex<BTreeSet<(u64, Id)>>,
}

impl Ring {
    /// Places member `id` at `pos`.
    pub(crate) fn insert(&self, pos: u64, id: Id) {
        self.lock().insert((pos, id));
    }

    /// Takes member `id` off `pos`.
    pub(crate) fn remove(&self, pos: u64, id: Id) {
        self.lock().remove(&(pos, id));
    }

    /// Members on the ring.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Visits the members that follow `(pos, id)` clockwise, each once, until `f` breaks; the starting
    /// member itself is not visited. The ring's lock is held meanwhile, so `f` must neither intern a
    /// name nor drop the last hold on one (both take the roster's lock and then this one).
    pub fn walk_after(&self, pos: u64, id: Id, mut f: impl FnMut(Id) -> ControlFlow<()>) {
        let members = self.lock();
        let start = (pos, id);
        let after = members.range((std::ops::Bound::Excluded(start), std::ops::Bound::Unbounded));
        let before = members.range(..start);
        for &(_, m) in after.chain(before) {
            if f(m).is_break() {
                return;
            }
        }
    }

    /// The first member (and its position), clockwise from `from`, whose position lies in the arc of
    /// `len` positions starting at `from` and for which `keep` holds; at most `limit` members of the
    /// arc are looked at, so the lock is held for a bounded time whatever the view skips.
    pub fn first_in(
        &self,
        from: u64,
        len: u64,
        limit: usize,
        keep: impl FnMut(Id) -> bool,
    ) -> Option<(u64, Id)> {
        let members = self.lock();
        let mut arc = Sweep {
            from,
            len,
            left: limit,
            keep,
        };
        // Up to the top of the ring, then on from its bottom where the arc wraps.
        arc.scan(members.range((from, 0)..))
            .or_else(|| arc.scan(members.range(..(from, 0))))
    }

    /// The last member (and its position) of the arc of `len` positions starting at `from` for which
    /// `keep` holds, looking counter-clockwise from the arc's end at most `limit` members.
    pub fn last_in(
        &self,
        from: u64,
        len: u64,
        limit: usize,
        keep: impl FnMut(Id) -> bool,
    ) -> Option<(u64, Id)> {
        let end = from.wrapping_add(len.checked_sub(1)?);
        let members = self.lock();
        let mut arc = Sweep {
            from,
            len,
            left: limit,
            keep,
        };
        let above = (
            std::ops::Bound::Excluded((end, Id::MAX)),
            std::ops::Bound::Unbounded,
        );
        arc.scan(members.range(..=(end, Id::MAX)).rev())
            .or_else(|| arc.scan(members.range(above).rev()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(u64, Id)>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A search along an arc of the ring: stops at the arc's end or after `left` members.
struct Sweep<F> {
    from: u64,
    len: u64,
    left: usize,
    keep: F,
}

impl<F: FnMut(Id) -> bool> Sweep<F> {
    /// The first member of `members` (in the order given) for which `keep` holds, stopping at the first
    /// one outside the arc or when the budget runs out; `None` also means the caller may look on only
    /// when the arc wraps.
    fn scan<'a>(&mut self, members: impl Iterator<Item = &'a (u64, Id)>) -> Option<(u64, Id)> {
        for &(pos, id) in members {
            if pos.wrapping_sub(self.from) >= self.len || self.left == 0 {
                self.left = 0;
                return None;
            }
            self.left -= 1;
            if (self.keep)(id) {
                return Some((pos, id));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_fixed_across_processes_and_versions() {
        // Changing these values changes who monitors whom, which nodes of mixed versions must agree on.
        assert_eq!(position(""), PINNED_EMPTY);
        assert_eq!(position("agent-one"), PINNED_AGENT_ONE);
        assert_ne!(position("n1"), position("n2"));
        let top: u64 = (0..1000).map(|i| position(&format!("n{i}")) >> 63).sum();
        assert!((430..570).contains(&top), "top bit set in {top} of 1000");
    }

    // Computed by an independent implementation of the same function (Python), not by this one.
    const PINNED_EMPTY: u64 = 0xf52a_15e9_a9b5_e89b;
    const PINNED_AGENT_ONE: u64 = 0xce6e_cfe6_1d51_35fa;

    #[test]
    fn walks_go_clockwise_once_around() {
        let r = Ring::default();
        for (pos, id) in [(10, 1), (20, 2), (30, 3), (40, 4)] {
            r.insert(pos, id);
        }
        let mut seen = Vec::new();
        r.walk_after(30, 3, |m| {
            seen.push(m);
            ControlFlow::Continue(())
        });
        assert_eq!(seen, [4, 1, 2], "after 3, wrapping, without 3 itself");
        seen.clear();
        r.walk_after(20, 2, |m| {
            seen.push(m);
            if m == 4 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(seen, [3, 4]);
        r.remove(40, 4);
        seen.clear();
        r.walk_after(30, 3, |m| {
            seen.push(m);
            ControlFlow::Continue(())
        });
        assert_eq!(seen, [1, 2]);
        // A position not on the ring (a member not yet placed) walks from where it would be.
        seen.clear();
        r.walk_after(25, 9, |m| {
            seen.push(m);
            ControlFlow::Continue(())
        });
        assert_eq!(seen, [3, 1, 2]);
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn arcs_find_their_first_and_last_members() {
        let r = Ring::default();
        for (pos, id) in [(10, 1), (20, 2), (30, 3), (u64::MAX - 5, 4)] {
            r.insert(pos, id);
        }
        let all = |_| true;
        assert_eq!(r.first_in(15, 10, 8, all).map(|m| m.1), Some(2));
        assert_eq!(
            r.first_in(21, 9, 8, all).map(|m| m.1),
            None,
            "30 is one past the arc"
        );
        assert_eq!(r.first_in(21, 10, 8, all).map(|m| m.1), Some(3));
        assert_eq!(r.first_in(u64::MAX - 10, 30, 8, all).map(|m| m.1), Some(4));
        assert_eq!(
            r.first_in(u64::MAX - 10, 30, 8, |m| m != 4).map(|m| m.1),
            Some(1),
            "wraps past the top"
        );
        assert_eq!(
            r.first_in(u64::MAX - 10, 30, 1, |m| m != 4).map(|m| m.1),
            None,
            "one look only"
        );
        assert_eq!(r.last_in(0, 30, 8, all).map(|m| m.1), Some(2));
        assert_eq!(r.last_in(0, 31, 8, all).map(|m| m.1), Some(3));
        assert_eq!(
            r.last_in(u64::MAX - 10, 25, 8, all).map(|m| m.1),
            Some(1),
            "the arc ends at 14"
        );
        assert_eq!(
            r.last_in(u64::MAX - 10, 25, 8, |m| m != 1).map(|m| m.1),
            Some(4),
            "back past the top"
        );
        assert_eq!(
            r.last_in(u64::MAX - 4, 12, 8, all).map(|m| m.1),
            None,
            "4 is before the arc"
        );
        assert_eq!(r.last_in(5, 0, 8, all).map(|m| m.1), None);
        // All of the ring but position 30, the one before the arc's start.
        assert_eq!(r.first_in(31, u64::MAX, 8, all).map(|m| m.1), Some(4));
        assert_eq!(r.last_in(31, u64::MAX, 8, all).map(|m| m.1), Some(2));
    }
}
