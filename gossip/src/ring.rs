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

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(u64, Id)>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
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
}
