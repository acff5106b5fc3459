//! Min-heap of deadlines with payloads; stale entries are filtered by the caller (lazy deletion).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

struct Entry<T> {
    at: Instant,
    order: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.order == other.order
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest deadline on top.
        other
            .at
            .cmp(&self.at)
            .then_with(|| other.order.cmp(&self.order))
    }
}

/// Timer queue ordered by deadline, FIFO among equal deadlines.
pub struct TimerHeap<T> {
    heap: BinaryHeap<Entry<T>>,
    order: u64,
}

impl<T> Default for TimerHeap<T> {
    fn default() -> Self {
        TimerHeap {
            heap: BinaryHeap::new(),
            order: 0,
        }
    }
}

impl<T> TimerHeap<T> {
    /// Schedules `item` at `at`.
    pub fn push(&mut self, at: Instant, item: T) {
        self.order += 1;
        self.heap.push(Entry {
            at,
            order: self.order,
            item,
        });
    }

    /// Earliest scheduled deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.at)
    }

    /// Removes and returns the earliest item whose deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<T> {
        if self.heap.peek()?.at <= now {
            self.heap.pop().map(|e| e.item)
        } else {
            None
        }
    }

    /// Number of scheduled entries (including stale ones).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let t0 = Instant::now();
        let mut h = TimerHeap::default();
        h.push(t0 + Duration::from_secs(3), 'c');
        h.push(t0 + Duration::from_secs(1), 'a');
        h.push(t0 + Duration::from_secs(1), 'b');
        assert_eq!(h.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(h.pop_expired(t0), None);
        let now = t0 + Duration::from_secs(2);
        assert_eq!(h.pop_expired(now), Some('a'));
        assert_eq!(h.pop_expired(now), Some('b'));
        assert_eq!(h.pop_expired(now), None);
        assert_eq!(h.len(), 1);
    }
}
