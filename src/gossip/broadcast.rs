//! Queue of membership deltas awaiting piggybacking.
//!
//! One entry per member: a newer delta replaces the older one in O(1) (the old slot's generation is bumped,
//! so references to it left in the buckets are skipped when met). Entries sit in buckets indexed by how often
//! they were sent; packing takes the least-sent, newest entries first and retires an entry at the limit.
//!
//! A member entry holds no bytes: it is encoded from the core's view when packed (the view always holds
//! the state the newest delta announced). In a join storm every core queues a delta about nearly every
//! member, so the entry's size is paid N^2 times across loadgen's cores; pre-encoded bytes, a name and a
//! name-keyed index made it about 160 bytes, this about 60.

use std::collections::VecDeque;
use std::sync::Arc;

use foldhash::HashMap;

use super::member::State;
use super::roster::Id;

/// What an entry sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The `state` of member `id` as the view holds it; `from` names who suspected or declared it dead.
    Member {
        /// Member.
        id: Id,
        /// State the delta announces.
        state: State,
        /// Suspector (suspect and dead deltas).
        from: Option<Arc<str>>,
    },
    /// A pre-encoded delta (user events); boxed so member entries stay small.
    Encoded(Box<Encoded>),
}

/// A user event delta, keyed by origin and event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Origin node.
    pub origin: Arc<str>,
    /// Event id at the origin.
    pub event: u32,
    /// Encoded delta.
    pub bytes: Box<[u8]>,
}

/// 32 bytes: a join storm puts one per member in every core's queue.
struct Slot {
    /// `None` once retired.
    item: Option<Item>,
    transmits: u16,
    /// Transmissions allowed at most, whatever the cluster-size limit says (`u16::MAX`: no cap).
    cap: u16,
    generation: u32,
}

/// (slot index, slot generation): 8 bytes, as every core keeps up to one per member in flight.
type Ref = (u32, u32);

/// Per-member broadcast queue with retransmit accounting.
#[derive(Default)]
pub struct BroadcastQueue {
    slots: Vec<Slot>,
    free: Vec<usize>,
    members: HashMap<Id, u32>,
    events: HashMap<(Arc<str>, u32), u32>,
    buckets: Vec<VecDeque<Ref>>,
    skipped: Vec<Ref>,
    moved: Vec<Ref>,
}

impl BroadcastQueue {
    /// Queues `item`, superseding any older entry about the same member (or the same event).
    pub fn push(&mut self, item: Item) {
        self.push_capped(item, u32::MAX);
    }

    /// Like [`BroadcastQueue::push`], sent at most `cap` times (for low-value repeats of known state).
    pub fn push_capped(&mut self, item: Item, cap: u32) {
        let old = match &item {
            Item::Member { id, .. } => self.members.get(id),
            Item::Encoded(e) => self.events.get(&(e.origin.clone(), e.event)),
        };
        if let Some(&old) = old {
            self.retire(old as usize);
        }
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    item: None,
                    transmits: 0,
                    cap: 0,
                    generation: 0,
                });
                self.slots.len() - 1
            }
        };
        match &item {
            Item::Member { id, .. } => self.members.insert(*id, idx as u32),
            Item::Encoded(e) => self.events.insert((e.origin.clone(), e.event), idx as u32),
        };
        let s = &mut self.slots[idx];
        s.item = Some(item);
        s.transmits = 0;
        s.cap = cap.min(u16::MAX as u32) as u16;
        s.generation = s.generation.wrapping_add(1);
        if self.buckets.is_empty() {
            self.buckets.push(VecDeque::new());
        }
        self.buckets[0].push_back((idx as u32, s.generation));
    }

    fn retire(&mut self, idx: usize) {
        let s = &mut self.slots[idx];
        let Some(item) = s.item.take() else {
            return;
        };
        s.generation = s.generation.wrapping_add(1);
        match item {
            Item::Member { id, .. } => {
                self.members.remove(&id);
            }
            Item::Encoded(e) => {
                self.events.remove(&(e.origin, e.event));
            }
        }
        self.free.push(idx);
        if self.members.capacity() > 64 && self.members.len() * 4 < self.members.capacity() {
            self.members.shrink_to(self.members.len() * 2);
        }
    }

    /// Once drained, gives back what a burst grew: a join storm leaves thousands of retired slots per
    /// core, and nothing refers to them any more except stale bucket references, which go too.
    fn release_if_drained(&mut self) {
        if self.is_empty() && self.slots.len() > 64 {
            *self = BroadcastQueue::default();
        }
    }

    fn valid(&self, (idx, generation): Ref) -> bool {
        let s = &self.slots[idx as usize];
        s.item.is_some() && s.generation == generation
    }

    /// Number of queued deltas.
    pub fn len(&self) -> usize {
        self.members.len() + self.events.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.events.is_empty()
    }

    /// How often the queued delta about member `id` was sent; `None` once retired or never queued.
    pub fn transmits(&self, id: Id) -> Option<u32> {
        self.members
            .get(&id)
            .map(|&i| self.slots[i as usize].transmits as u32)
    }

    /// Appends as many deltas as fit in `budget` bytes to `out` (least-sent and newest first), counts a
    /// transmission for each, retires those that reached `limit`. `encode` writes a member item and
    /// returns false when it is stale (its member gone or in another state); such items are dropped.
    /// Returns how many deltas were appended.
    pub fn fill(
        &mut self,
        out: &mut Vec<u8>,
        budget: usize,
        limit: u32,
        max_count: usize,
        mut encode: impl FnMut(&Item, &mut Vec<u8>) -> bool,
    ) -> usize {
        let start = out.len();
        let mut count = 0;
        let limit = limit.max(1);
        self.moved.clear();
        'outer: for b in 0..self.buckets.len() {
            self.skipped.clear();
            while let Some(r) = self.buckets[b].pop_back() {
                if !self.valid(r) {
                    continue;
                }
                let mark = out.len();
                let s = &self.slots[r.0 as usize];
                let fresh = match &s.item {
                    Some(Item::Encoded(e)) => {
                        out.extend_from_slice(&e.bytes);
                        true
                    }
                    Some(item) => encode(item, out),
                    None => false,
                };
                if !fresh {
                    out.truncate(mark);
                    self.retire(r.0 as usize);
                    continue;
                }
                if out.len() - start > budget {
                    out.truncate(mark);
                    self.skipped.push(r);
                    // Smaller deltas further down may still fit; stop once the packet is nearly full.
                    if budget - (mark - start) < 16 || self.skipped.len() > 64 {
                        self.restore_skipped(b);
                        break 'outer;
                    }
                    continue;
                }
                count += 1;
                let s = &mut self.slots[r.0 as usize];
                s.transmits = s.transmits.saturating_add(1);
                if s.transmits as u32 >= limit.min(s.cap as u32) {
                    self.retire(r.0 as usize);
                } else {
                    self.moved.push(r);
                }
                if count >= max_count {
                    self.restore_skipped(b);
                    break 'outer;
                }
            }
            self.restore_skipped(b);
        }
        for i in 0..self.moved.len() {
            let r = self.moved[i];
            if !self.valid(r) {
                continue;
            }
            let t = self.slots[r.0 as usize].transmits as usize;
            if self.buckets.len() <= t {
                self.buckets.resize_with(t + 1, VecDeque::new);
            }
            // Sent entries go behind the fresh ones of their new bucket.
            self.buckets[t].push_front(r);
        }
        self.release_if_drained();
        count
    }

    fn restore_skipped(&mut self, b: usize) {
        let Some(q) = self.buckets.get_mut(b) else {
            self.skipped.clear();
            return;
        };
        while let Some(r) = self.skipped.pop() {
            q.push_back(r);
        }
        if q.capacity() > 64 && q.len() * 4 < q.capacity() {
            // Every bucket sees the whole join burst pass through; keep only what it holds now.
            q.shrink_to(q.len() * 2);
        }
    }

    /// Drops every queued delta.
    pub fn clear(&mut self) {
        *self = BroadcastQueue::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test items: member `id` encodes as `len` copies of byte `id`; ids in `stale` are gone.
    fn enc(len: usize, stale: &[Id]) -> impl FnMut(&Item, &mut Vec<u8>) -> bool + '_ {
        move |item, out| match item {
            Item::Member { id, .. } if !stale.contains(id) => {
                out.extend(std::iter::repeat_n(*id as u8, len));
                true
            }
            _ => false,
        }
    }

    fn member(id: Id, state: State) -> Item {
        Item::Member {
            id,
            state,
            from: None,
        }
    }

    #[test]
    fn superseded_delta_replaces_old_one() {
        let mut q = BroadcastQueue::default();
        q.push(member(1, State::Alive));
        q.push(member(1, State::Suspect));
        assert_eq!(q.len(), 1);
        let mut seen = Vec::new();
        let mut out = Vec::new();
        let n = q.fill(&mut out, 1000, 4, 100, |item, out| {
            seen.push(item.clone());
            out.push(1);
            true
        });
        assert_eq!(n, 1);
        assert_eq!(seen, vec![member(1, State::Suspect)]);
    }

    #[test]
    fn retires_at_limit_and_prefers_least_sent() {
        let mut q = BroadcastQueue::default();
        q.push(member(1, State::Alive));
        let mut out = Vec::new();
        q.fill(&mut out, 1000, 3, 100, enc(10, &[]));
        q.push(member(2, State::Alive));
        out.clear();
        // Budget for one: the unsent member 2 goes first.
        assert_eq!(q.fill(&mut out, 15, 3, 100, enc(10, &[])), 1);
        assert_eq!(out, vec![2u8; 10]);
        for _ in 0..5 {
            out.clear();
            q.fill(&mut out, 1000, 3, 100, enc(10, &[]));
        }
        assert!(q.is_empty());
        assert_eq!(q.transmits(1), None);
    }

    #[test]
    fn skips_large_entries_to_fit_small_ones() {
        let mut q = BroadcastQueue::default();
        q.push(member(1, State::Alive));
        q.push(member(2, State::Alive));
        let mut out = vec![9u8; 3];
        let n = q.fill(&mut out, 50, 4, 100, |item, out| {
            let Item::Member { id, .. } = item else {
                return false;
            };
            let len = if *id == 2 { 100 } else { 5 };
            out.extend(std::iter::repeat_n(*id as u8, len));
            true
        });
        assert_eq!(n, 1);
        assert_eq!(out, [9, 9, 9, 1, 1, 1, 1, 1], "what was there is kept");
        assert_eq!(q.transmits(2), Some(0));
        assert_eq!(q.transmits(1), Some(1));
    }

    #[test]
    fn stale_items_are_dropped_not_sent() {
        let mut q = BroadcastQueue::default();
        q.push(member(1, State::Dead));
        q.push(member(2, State::Alive));
        let mut out = Vec::new();
        assert_eq!(q.fill(&mut out, 1000, 4, 100, enc(4, &[1])), 1);
        assert_eq!(out, vec![2u8; 4]);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn capped_entries_retire_early() {
        let mut q = BroadcastQueue::default();
        q.push_capped(member(7, State::Alive), 2);
        let mut out = Vec::new();
        for _ in 0..5 {
            q.fill(&mut out, 100, 16, 10, enc(1, &[]));
        }
        assert_eq!(out.len(), 2, "sent exactly twice");
        assert!(q.is_empty());
    }

    #[test]
    fn events_are_keyed_apart_from_members_and_sent_as_encoded() {
        let mut q = BroadcastQueue::default();
        let origin: Arc<str> = Arc::from("n1");
        q.push(member(1, State::Alive));
        for payload in [b"ab", b"cd"] {
            q.push(Item::Encoded(Box::new(Encoded {
                origin: origin.clone(),
                event: 5,
                bytes: payload.to_vec().into(),
            })));
        }
        assert_eq!(q.len(), 2, "the second event 5 of n1 replaced the first");
        let mut out = Vec::new();
        assert_eq!(q.fill(&mut out, 100, 4, 10, enc(1, &[])), 2);
        assert!(out.windows(2).any(|w| w == b"cd"));
        assert!(!out.windows(2).any(|w| w == b"ab"));
    }

    #[test]
    fn max_count_respected_and_memory_released_when_drained() {
        let mut q = BroadcastQueue::default();
        for i in 0..100 {
            q.push(member(i, State::Alive));
        }
        let mut out = Vec::new();
        assert_eq!(q.fill(&mut out, 1000, 1, 3, enc(4, &[])), 3);
        assert_eq!(q.len(), 97);
        q.push(member(500, State::Alive));
        assert_eq!(q.slots.len(), 100, "retired slots are reused");
        while !q.is_empty() {
            out.clear();
            q.fill(&mut out, 1000, 1, 50, enc(4, &[]));
        }
        assert_eq!(q.slots.capacity(), 0);
        assert!(q.buckets.is_empty());
    }

    #[test]
    fn entries_stay_small() {
        assert!(
            std::mem::size_of::<Slot>() <= 32,
            "{}",
            std::mem::size_of::<Slot>()
        );
    }
}
