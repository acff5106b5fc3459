//! Queue of pre-encoded membership deltas awaiting piggybacking.
//!
//! One entry per member: a newer delta replaces the older one in O(1) (the old slot's generation is bumped,
//! so references to it left in the buckets are skipped when met). Entries sit in buckets indexed by how often
//! they were sent; packing takes the least-sent, newest entries first and retires an entry at the limit.

use std::collections::VecDeque;

use foldhash::HashMap;
use std::sync::Arc;

struct Slot {
    name: Arc<str>,
    bytes: Vec<u8>,
    transmits: u32,
    /// Transmissions allowed at most, whatever the cluster-size limit says.
    cap: u32,
    generation: u32,
    live: bool,
}

/// (slot index, slot generation): 8 bytes, as every core keeps up to one per member in flight.
type Ref = (u32, u32);

/// Per-member broadcast queue with retransmit accounting.
#[derive(Default)]
pub struct BroadcastQueue {
    slots: Vec<Slot>,
    free: Vec<usize>,
    by_name: HashMap<Arc<str>, usize>,
    buckets: Vec<VecDeque<Ref>>,
    skipped: Vec<Ref>,
    moved: Vec<Ref>,
}

impl BroadcastQueue {
    /// Queues an encoded delta about `name`, superseding any older one about the same member.
    pub fn push(&mut self, name: &Arc<str>, encode: impl FnOnce(&mut Vec<u8>)) {
        self.push_capped(name, u32::MAX, encode);
    }

    /// Like [`BroadcastQueue::push`], sent at most `cap` times (for low-value repeats of known state).
    pub fn push_capped(&mut self, name: &Arc<str>, cap: u32, encode: impl FnOnce(&mut Vec<u8>)) {
        if let Some(&old) = self.by_name.get(name) {
            self.retire(old);
        }
        let idx = match self.free.pop() {
            Some(i) => {
                let s = &mut self.slots[i];
                s.name = name.clone();
                s.bytes.clear();
                s.transmits = 0;
                s.cap = cap;
                s.generation = s.generation.wrapping_add(1);
                s.live = true;
                i
            }
            None => {
                self.slots.push(Slot {
                    name: name.clone(),
                    bytes: Vec::new(),
                    transmits: 0,
                    cap,
                    generation: 0,
                    live: true,
                });
                self.slots.len() - 1
            }
        };
        encode(&mut self.slots[idx].bytes);
        self.by_name.insert(name.clone(), idx);
        if self.buckets.is_empty() {
            self.buckets.push(VecDeque::new());
        }
        self.buckets[0].push_back((idx as u32, self.slots[idx].generation));
    }

    fn retire(&mut self, idx: usize) {
        let s = &mut self.slots[idx];
        if s.live {
            s.live = false;
            s.generation = s.generation.wrapping_add(1);
            self.by_name.remove(&s.name);
            // A few warm buffers are kept for reuse; beyond that, give the memory back.
            if self.free.len() >= 64 {
                s.bytes = Vec::new();
            }
            self.free.push(idx);
        }
        if self.by_name.capacity() > 64 && self.by_name.len() * 4 < self.by_name.capacity() {
            self.by_name.shrink_to(self.by_name.len() * 2);
        }
    }

    fn valid(&self, (idx, generation): Ref) -> bool {
        let s = &self.slots[idx as usize];
        s.live && s.generation == generation
    }

    /// Number of queued deltas.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// How often the queued delta about `name` was sent; `None` once retired or never queued.
    pub fn transmits(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).map(|&i| self.slots[i].transmits)
    }

    /// Appends as many deltas as fit in `budget` bytes to `out` (least-sent and newest first), counts a
    /// transmission for each, retires those that reached `limit`. Returns how many were appended.
    pub fn fill(
        &mut self,
        out: &mut Vec<u8>,
        budget: usize,
        limit: u32,
        max_count: usize,
    ) -> usize {
        let mut room = budget;
        let mut count = 0;
        let limit = limit.max(1);
        self.moved.clear();
        'outer: for b in 0..self.buckets.len() {
            self.skipped.clear();
            while let Some(r) = self.buckets[b].pop_back() {
                if !self.valid(r) {
                    continue;
                }
                let s = &self.slots[r.0 as usize];
                if s.bytes.len() > room {
                    self.skipped.push(r);
                    // Smaller deltas further down may still fit; stop once the packet is nearly full.
                    if room < 16 || self.skipped.len() > 64 {
                        self.restore_skipped(b);
                        break 'outer;
                    }
                    continue;
                }
                out.extend_from_slice(&s.bytes);
                room -= s.bytes.len();
                count += 1;
                let s = &mut self.slots[r.0 as usize];
                s.transmits += 1;
                if s.transmits >= limit.min(s.cap) {
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
            let t = self.slots[r.0 as usize].transmits as usize;
            if self.buckets.len() <= t {
                self.buckets.resize_with(t + 1, VecDeque::new);
            }
            // Sent entries go behind the fresh ones of their new bucket.
            self.buckets[t].push_front(r);
        }
        count
    }

    fn restore_skipped(&mut self, b: usize) {
        while let Some(r) = self.skipped.pop() {
            self.buckets[b].push_back(r);
        }
        let q = &mut self.buckets[b];
        if q.capacity() > 64 && q.len() * 4 < q.capacity() {
            // Every bucket sees the whole join burst pass through; keep only what it holds now.
            q.shrink_to(q.len() * 2);
        }
    }

    /// Drops every queued delta.
    pub fn clear(&mut self) {
        let live: Vec<usize> = self.by_name.values().copied().collect();

        for i in live {
            self.retire(i);
        }
        for b in &mut self.buckets {
            b.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(q: &mut BroadcastQueue, name: &str, len: usize, byte: u8) {
        q.push(&Arc::from(name), |b| {
            b.extend(std::iter::repeat_n(byte, len))
        });
    }

    #[test]
    fn superseded_delta_replaces_old_one() {
        let mut q = BroadcastQueue::default();
        push(&mut q, "a", 10, 1);
        push(&mut q, "a", 10, 2);
        assert_eq!(q.len(), 1);
        let mut out = Vec::new();
        assert_eq!(q.fill(&mut out, 1000, 4, 100), 1);
        assert_eq!(out, vec![2u8; 10]);
    }

    #[test]
    fn retires_at_limit_and_prefers_least_sent() {
        let mut q = BroadcastQueue::default();
        push(&mut q, "a", 10, 1);
        let mut out = Vec::new();
        q.fill(&mut out, 1000, 3, 100);
        push(&mut q, "b", 10, 2);
        out.clear();
        // Budget for one: the unsent "b" goes first.
        assert_eq!(q.fill(&mut out, 15, 3, 100), 1);
        assert_eq!(out[0], 2);
        for _ in 0..5 {
            out.clear();
            q.fill(&mut out, 1000, 3, 100);
        }
        assert!(q.is_empty());
        assert_eq!(q.transmits("a"), None);
    }

    #[test]
    fn skips_large_entries_to_fit_small_ones() {
        let mut q = BroadcastQueue::default();
        push(&mut q, "small", 5, 1);
        push(&mut q, "big", 100, 2);
        let mut out = Vec::new();
        assert_eq!(q.fill(&mut out, 50, 4, 100), 1);
        assert_eq!(out, vec![1u8; 5]);
        assert_eq!(q.transmits("big"), Some(0));
        assert_eq!(q.transmits("small"), Some(1));
    }

    #[test]
    fn capped_entries_retire_early() {
        let mut q = BroadcastQueue::default();
        q.push_capped(&Arc::from("x"), 2, |b| b.push(1));
        let mut out = Vec::new();
        for _ in 0..5 {
            q.fill(&mut out, 100, 16, 10);
        }
        assert_eq!(out.len(), 2, "sent exactly twice");
        assert!(q.is_empty());
    }

    #[test]
    fn max_count_respected_and_slots_reused() {
        let mut q = BroadcastQueue::default();
        for i in 0..10 {
            push(&mut q, &format!("n{i}"), 4, i as u8);
        }
        let mut out = Vec::new();
        assert_eq!(q.fill(&mut out, 1000, 1, 3), 3);
        assert_eq!(q.len(), 7);
        push(&mut q, "x", 4, 9);
        assert_eq!(q.slots.len(), 10, "retired slots are reused");
    }
}
