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
//!
//! Old news (a member merely new to us in a full-state exchange) is sent once, so it needs no
//! accounting: it waits in a plain list of ids, 4 bytes each. A joiner learns the whole membership that
//! way, and as full entries those ids were half of a 5000-node loadgen's memory per core.

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
    /// Member `id`'s record as the view holds it (newest version, whole or as a digest).
    Record {
        /// Member.
        id: Id,
    },
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
    transmits: u32,
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
    records: HashMap<Id, u32>,
    events: HashMap<(Arc<str>, u32), u32>,
    buckets: Vec<VecDeque<Ref>>,
    /// Members owed one transmission of their alive state, newest last.
    once: Vec<Id>,
    skipped: Vec<Ref>,
    moved: Vec<Ref>,
    /// Sends after which a record entry retires, when below the limit `fill` is given (0: none).
    record_limit: u32,
}

impl BroadcastQueue {
    /// Retires record entries after `sends` transmissions (when below the limit `fill` is given): with
    /// another way to reach the members a push missed, records need not be retransmitted as long as
    /// membership news.
    pub fn set_record_limit(&mut self, sends: u32) {
        self.record_limit = sends;
    }

    /// Queues `item`, superseding any older entry about the same member (or the same event).
    pub fn push(&mut self, item: Item) {
        let old = match &item {
            Item::Member { id, .. } => self.members.get(id),
            Item::Record { id } => self.records.get(id),
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
                    generation: 0,
                });
                self.slots.len() - 1
            }
        };
        match &item {
            Item::Member { id, .. } => self.members.insert(*id, idx as u32),
            Item::Record { id } => self.records.insert(*id, idx as u32),
            Item::Encoded(e) => self.events.insert((e.origin.clone(), e.event), idx as u32),
        };
        let s = &mut self.slots[idx];
        s.item = Some(item);
        s.transmits = 0;
        s.generation = s.generation.wrapping_add(1);
        if self.buckets.is_empty() {
            self.buckets.push(VecDeque::new());
        }
        self.buckets[0].push_back((idx as u32, s.generation));
    }

    /// Queues one transmission of member `id`'s alive state, sent after unsent news and before repeats.
    pub fn push_once(&mut self, id: Id) {
        self.once.push(id);
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
            Item::Record { id } => {
                self.records.remove(&id);
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
        if self.is_empty() && (self.slots.len() > 64 || self.once.capacity() > 64) {
            self.clear();
        }
    }

    fn valid(&self, (idx, generation): Ref) -> bool {
        let s = &self.slots[idx as usize];
        s.item.is_some() && s.generation == generation
    }

    /// Number of queued deltas.
    pub fn len(&self) -> usize {
        self.members.len() + self.records.len() + self.events.len() + self.once.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
            && self.records.is_empty()
            && self.events.is_empty()
            && self.once.is_empty()
    }

    /// How often the queued delta about member `id` was sent; `None` once retired or never queued.
    pub fn transmits(&self, id: Id) -> Option<u32> {
        self.members
            .get(&id)
            .map(|&i| self.slots[i as usize].transmits)
    }

    /// Appends as many deltas as fit in `budget` bytes to `out` (least-sent and newest first), counts a
    /// transmission for each, retires those that reached `limit`. `encode` writes an item (told how often
    /// it was sent already) and returns false when it is stale (its member gone or in another state);
    /// such items are dropped.
    /// Returns how many deltas were appended.
    pub fn fill(
        &mut self,
        out: &mut Vec<u8>,
        budget: usize,
        limit: u32,
        max_count: usize,
        mut encode: impl FnMut(&Item, u32, &mut Vec<u8>) -> bool,
    ) -> usize {
        let start = out.len();
        let mut count = 0;
        let limit = limit.max(1);
        self.moved.clear();
        // Unsent news (bucket 0) first, then old news, then repeats.
        'outer: for b in 0..self.buckets.len().max(2) {
            if b == 1 {
                let room = budget.saturating_sub(out.len() - start);
                if self.fill_once(
                    out,
                    room,
                    max_count.saturating_sub(count),
                    &mut encode,
                    &mut count,
                ) {
                    break 'outer;
                }
            }
            if b >= self.buckets.len() {
                continue;
            }
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
                    Some(item) => encode(item, s.transmits, out),
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
                let limit = match s.item {
                    Some(Item::Record { .. }) if self.record_limit > 0 => {
                        self.record_limit.min(limit)
                    }
                    _ => limit,
                };
                if s.transmits >= limit {
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

    /// Appends owed alive states, newest first, within `room` bytes and `max` deltas, adding them to
    /// `count`; true when the packet is full.
    fn fill_once(
        &mut self,
        out: &mut Vec<u8>,
        room: usize,
        max: usize,
        encode: &mut impl FnMut(&Item, u32, &mut Vec<u8>) -> bool,
        count: &mut usize,
    ) -> bool {
        let start = out.len();
        let mut sent = 0;
        let mut full = false;
        while let Some(&id) = self.once.last() {
            if sent >= max {
                full = true;
                break;
            }
            // A queued entry about the member will say at least as much.
            if self.members.contains_key(&id) {
                self.once.pop();
                continue;
            }
            let mark = out.len();
            let item = Item::Member {
                id,
                state: State::Alive,
                from: None,
            };
            let fresh = encode(&item, 0, out);
            if fresh && out.len() - start > room {
                // Alive deltas differ little in size: the packet is as good as full.
                out.truncate(mark);
                full = true;
                break;
            }
            self.once.pop();
            if fresh {
                sent += 1;
            } else {
                out.truncate(mark);
            }
        }
        *count += sent;
        if self.once.capacity() > 64 && self.once.len() * 4 < self.once.capacity() {
            self.once.shrink_to(self.once.len() * 2);
        }
        full
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
        *self = BroadcastQueue {
            record_limit: self.record_limit,
            ..BroadcastQueue::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test items: member `id` encodes as `len` copies of byte `id`; ids in `stale` are gone.
    fn enc(len: usize, stale: &[Id]) -> impl FnMut(&Item, u32, &mut Vec<u8>) -> bool + '_ {
        move |item, _, out| match item {
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
        let n = q.fill(&mut out, 1000, 4, 100, |item, _, out| {
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
    fn records_retire_at_their_own_limit_and_members_at_the_given_one() {
        let mut q = BroadcastQueue::default();
        q.set_record_limit(2);
        q.push(member(1, State::Alive));
        q.push(Item::Record { id: 5 });
        let mut sent = Vec::new();
        for _ in 0..6 {
            let mut out = Vec::new();
            q.fill(&mut out, 1000, 4, 100, |item, _, out| {
                sent.push(matches!(item, Item::Record { .. }));
                out.push(1);
                true
            });
        }
        assert_eq!(sent.iter().filter(|&&r| r).count(), 2, "{sent:?}");
        assert_eq!(sent.iter().filter(|&&r| !r).count(), 4, "{sent:?}");
        assert!(q.is_empty());
        // A limit below the record limit still applies to records.
        q.push(Item::Record { id: 5 });
        let mut out = Vec::new();
        q.fill(&mut out, 1000, 1, 100, |_, _, out| {
            out.push(1);
            true
        });
        assert_eq!(out, [1]);
        assert!(q.is_empty());
    }

    #[test]
    fn skips_large_entries_to_fit_small_ones() {
        let mut q = BroadcastQueue::default();
        q.push(member(1, State::Alive));
        q.push(member(2, State::Alive));
        let mut out = vec![9u8; 3];
        let n = q.fill(&mut out, 50, 4, 100, |item, _, out| {
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
    fn old_news_is_sent_once_after_unsent_news_and_before_repeats() {
        let mut q = BroadcastQueue::default();
        q.push(member(1, State::Alive));
        let mut out = Vec::new();
        q.fill(&mut out, 100, 16, 10, enc(1, &[]));
        assert_eq!(out, [1]);
        q.push(member(2, State::Alive));
        for id in [7, 8, 2] {
            q.push_once(id);
        }
        assert_eq!(q.len(), 5);
        out.clear();
        q.fill(&mut out, 100, 16, 10, enc(1, &[8]));
        // Unsent 2, then old news 7 (8 is stale, 2 is queued anyway), then the repeat of 1.
        assert_eq!(out, [2, 7, 1]);
        out.clear();
        for _ in 0..5 {
            q.fill(&mut out, 100, 16, 10, enc(1, &[]));
        }
        assert_eq!(out.iter().filter(|&&b| b == 7).count(), 0, "7 went once");
        assert_eq!(q.len(), 2, "only the full-limit entries remain");
    }

    #[test]
    fn old_news_goes_out_while_only_unsent_news_is_queued() {
        let mut q = BroadcastQueue::default();
        q.push(member(1, State::Alive));
        q.push_once(7);
        let mut out = Vec::new();
        // At limit 1 nothing ever reaches a second bucket; the old news must not wait for one.
        assert_eq!(q.fill(&mut out, 100, 1, 10, enc(1, &[])), 2);
        assert_eq!(out, [1, 7]);
        assert!(q.is_empty());
    }

    #[test]
    fn old_news_stops_at_a_full_packet_and_counts() {
        let mut q = BroadcastQueue::default();
        for id in 0..10 {
            q.push_once(id);
        }
        let mut out = Vec::new();
        assert_eq!(q.fill(&mut out, 12, 16, 100, enc(4, &[])), 3);
        assert_eq!(out.len(), 12);
        assert_eq!(
            q.fill(&mut Vec::new(), 100, 16, 2, enc(4, &[])),
            2,
            "max_count"
        );
        assert_eq!(q.len(), 5);
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
