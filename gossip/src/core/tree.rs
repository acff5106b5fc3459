//! The broadcast tree for records: a changed record reaches each member about once, passed down a tree
//! laid over the ring, where gossip would have each holder send it to random members several times
//! (most of them holding it already).
//!
//! The tree of member O's record is counted from O's ring position: an arc at level `l` is one of the
//! `2^l` equal arcs of the ring starting there. O holds the level-0 arc, the whole ring. A member that
//! holds an arc at level `l` splits it in two, hands the half it is not in to that half's first live
//! member ([`Message::Tree`] at level `l + 1`), and goes on with its own half until that half holds no
//! other live member. So each member is handed the record once, about `log2 N` hops from its owner,
//! and sends about one datagram per change; the message names only the level, as the arc is the one at
//! that level that holds the receiver.
//!
//! Every member splits its arc by its own view, so a member the sender's view lacks is still reached
//! by whoever's arc holds it. What a failed hop or a disagreeing view drops, the news lists repair; a
//! member repaired that way hands the change to its ring neighbours, which walk it through the rest of
//! the failed hop's arc (a stretch of the ring), and gossips it as before. The tree is used only while
//! every live member passes records down it and reads news lists: an older member would drop the
//! message and leave its arc unserved.
//!
//! A member that holds a version already when the tree's message comes (a news answer or a full-state
//! exchange brought it first) passes it down then, once.
//!
//! Not checked: that a tree message comes from the member whose half it hands on (the core keeps no
//! index of members by address). A trusted sender can hand anyone any level; each member passes a
//! version down once, so this costs at most one extra subtree's datagrams per version.

use super::*;
use crate::ring;

/// Most ring entries one arc lookup visits: past it (a stretch of members that are not alive in this
/// view) the arc is left to the news lists' repair, and the ring's lock is never held long.
const ARC_LOOK_LIMIT: usize = 256;

impl Core {
    /// True when changed records go down the broadcast tree: it is on here, and every live member
    /// passes records down it and repairs misses through news lists.
    pub(super) fn tree_in_use(&self) -> bool {
        self.cfg.record_tree
            && self.news_repairs()
            && self.view.live_without_news() == 0
            && self.view.live_without_tree() == 0
    }

    /// The state of member `m` in our view, unless it is us or `owner` (who hold the record already).
    fn other_state(&self, m: Id, owner: Id) -> Option<State> {
        let s = self.view.get(m).filter(|_| m != self.me_id && m != owner)?;
        Some(s.state)
    }

    /// Hands member `id`'s record on from the arc at `level` that holds us: an [`Out::Record`] for the
    /// first alive member of each half we split off, which serves the whole half. A half with only
    /// suspects in it sends them the record as leaves: one that is alive after all (Lifeguard's false
    /// positives) is not left to the repair, and one that has failed is not handed an arc to drop.
    pub(super) fn pass_down(&mut self, id: Id, level: u8) {
        let Some(owner) = self.view.get(id) else {
            return;
        };
        let origin = ring::position(owner.ident.name());
        let ring = self.roster.ring();
        let state = |m: Id| self.other_state(m, id);
        let live = |m: Id| state(m).is_some_and(State::is_live);
        // Offsets from the origin. Our arc holds another member while our nearest neighbours on either
        // side (within the ring as counted from the origin) are inside it.
        let x = self.me_pos.wrapping_sub(origin);
        let offset = |(pos, _): (u64, Id)| pos.wrapping_sub(origin);
        let after = ring
            .first_in(self.me_pos.wrapping_add(1), !x, ARC_LOOK_LIMIT, live)
            .map(offset);
        let before = ring.last_in(origin, x, ARC_LOOK_LIMIT, live).map(offset);
        let mut children = Vec::new();
        for l in level..wire::MAX_TREE_LEVEL {
            let half = 1u64 << (63 - l);
            // Our arc at level `l`: `2 * half` offsets from `start`.
            let start = if l == 0 { 0 } else { x & !(2 * half - 1) };
            let inside = |o: u64| o >= start && (o - start) / 2 < half;
            if !after.is_some_and(inside) && !before.is_some_and(inside) {
                break;
            }
            let other = if x - start < half {
                start + half
            } else {
                start
            };
            let mut suspects = Vec::new();
            let first_alive = |m: Id| match state(m) {
                Some(State::Alive) => true,
                Some(State::Suspect) => {
                    suspects.push(m);
                    false
                }
                _ => false,
            };
            match ring.first_in(
                origin.wrapping_add(other),
                half,
                ARC_LOOK_LIMIT,
                first_alive,
            ) {
                // Its arc is the whole half, suspects before it included.
                Some((_, child)) => children.push((child, l + 1)),
                None => children.extend(suspects.into_iter().map(|m| (m, wire::MAX_TREE_LEVEL))),
            }
        }
        for (child, level) in children {
            let Some(s) = self.view.get(child) else {
                continue;
            };
            let (dst, patches) = (s.ident.addr, self.takes_patches(s));
            self.stats.records_passed_down += 1;
            self.out.push_back(Out::Record {
                dst,
                id,
                tree: Some(level),
                patches,
            });
        }
    }

    /// Member `id`'s record reached us around the tree (a news answer, gossip, a neighbour): the tree
    /// most likely lost it at a failed hop, and that hop's whole arc, a stretch of the ring around us,
    /// went without. Hands it to our live neighbours on the ring, bar the one it came from; each that
    /// lacked it does the same, so the stretch is walked end to end, and the walk stops where members
    /// hold it already. Two neighbours each way, so that a walk steps over one failed member nobody
    /// has noticed yet (the stretch's own failed hop is at its start, but another may be inside).
    pub(super) fn pass_around(&mut self, id: Id, heard_from: Option<SocketAddr>) {
        let ring = self.roster.ring();
        let alive = |m: Id| self.other_state(m, id) == Some(State::Alive);
        let mut near = Vec::with_capacity(4);
        // Clockwise: the arcs from just after us, then from just after the first found, up to us.
        let mut from = self.me_pos.wrapping_add(1);
        for _ in 0..2 {
            let Some((pos, m)) =
                ring.first_in(from, self.me_pos.wrapping_sub(from), ARC_LOOK_LIMIT, alive)
            else {
                break;
            };
            near.push(m);
            from = pos.wrapping_add(1);
        }
        // Counter-clockwise: the arcs from just after us that end just before us, then before the first.
        let mut until = self.me_pos;
        for _ in 0..2 {
            let len = until.wrapping_sub(self.me_pos).wrapping_sub(1);
            let Some((pos, m)) =
                ring.last_in(self.me_pos.wrapping_add(1), len, ARC_LOOK_LIMIT, alive)
            else {
                break;
            };
            near.push(m);
            until = pos;
        }
        let mut sent = Vec::with_capacity(4);
        for m in near {
            let Some(s) = self.view.get(m) else {
                continue;
            };
            let dst = s.ident.addr;
            if Some(dst) == heard_from || sent.contains(&dst) {
                continue;
            }
            sent.push(dst);
            let patches = self.takes_patches(s);
            self.stats.records_passed_around += 1;
            self.out.push_back(Out::Record {
                dst,
                id,
                tree: None,
                patches,
            });
        }
    }
}
