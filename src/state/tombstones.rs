//! When the leader may reap KV tombstones (Consul's tombstone GC). A deleted key leaves a tombstone so
//! the index of its key and prefixes never goes back while a blocking reader may still hold the
//! deletion's index; after `ttl` (15 min, longer than any blocking wait) nobody can, and keeping them
//! longer only grows the store. Sans-IO: the caller passes the time and the applied index.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Consul's `TombstoneTTL`.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(15 * 60);
/// Consul's `TombstoneTTLGranularity`: reaps are batched at most this often.
pub const GRANULARITY: Duration = Duration::from_secs(30);

/// The leader's record of which index it had applied when, for the current term.
#[derive(Debug)]
pub struct TombstoneGc {
    ttl: Duration,
    granularity: Duration,
    term: u64,
    /// (when, applied index), oldest first, one per granularity.
    marks: VecDeque<(Instant, u64)>,
    /// When the store's tombstones were last looked at.
    last_check: Option<Instant>,
}

impl Default for TombstoneGc {
    fn default() -> Self {
        Self::new(TOMBSTONE_TTL, GRANULARITY)
    }
}

impl TombstoneGc {
    /// A collector reaping tombstones older than `ttl`, at most once per `granularity`.
    pub fn new(ttl: Duration, granularity: Duration) -> Self {
        TombstoneGc {
            ttl,
            granularity,
            term: 0,
            marks: VecDeque::new(),
            last_check: None,
        }
    }

    /// Notes that the leader of `term` had applied `applied` at `now`. A new term starts over: the
    /// new leader knows nothing of when its predecessor applied what.
    pub fn observe(&mut self, now: Instant, term: u64, applied: u64) {
        if term != self.term {
            self.term = term;
            self.marks.clear();
            self.last_check = None;
        }
        let fresh = self
            .marks
            .back()
            .is_none_or(|(t, _)| now.duration_since(*t) >= self.granularity);
        if fresh {
            self.marks.push_back((now, applied));
        }
    }

    /// The index up to which tombstones may be reaped now, if a reap is due: the highest index the
    /// leader had applied at least `ttl` ago, when the oldest tombstone (`oldest()`, asked only once
    /// the time has come: it walks the store) is at or below it.
    pub fn due(&mut self, now: Instant, oldest: impl FnOnce() -> Option<u64>) -> Option<u64> {
        let old_enough = |t: &Instant| now.duration_since(*t) >= self.ttl;
        while self.marks.len() >= 2 && old_enough(&self.marks[1].0) {
            self.marks.pop_front();
        }
        let &(at, index) = self.marks.front()?;
        if !old_enough(&at) {
            return None;
        }
        if self
            .last_check
            .is_some_and(|t| now.duration_since(t) < self.granularity)
        {
            return None;
        }
        self.last_check = Some(now);
        (oldest()? <= index).then_some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn tombstones_are_reaped_only_after_the_ttl_and_at_most_once_per_granularity() {
        let t0 = Instant::now();
        let mut gc = TombstoneGc::new(100 * S, 10 * S);
        // Applied index grows by 10 a second.
        for s in 0..=300u64 {
            gc.observe(t0 + s as u32 * S, 1, s * 10);
            if s < 100 {
                assert_eq!(
                    gc.due(t0 + s as u32 * S, || Some(0)),
                    None,
                    "before the TTL"
                );
            }
        }
        let now = t0 + 300 * S;
        // Applied at least 100 s ago: at most index 2000 (second 200, a mark every 10 s).
        assert_eq!(gc.due(now, || Some(1500)), Some(2000));
        assert_eq!(
            gc.due(now + S, || Some(1500)),
            None,
            "within the granularity"
        );
        // Nothing old enough to reap: no reap, and the store is next looked at a granularity later.
        let mut gc2 = TombstoneGc::new(100 * S, 10 * S);
        gc2.observe(t0, 1, 5);
        assert_eq!(gc2.due(t0 + 200 * S, || Some(6)), None);
        assert_eq!(gc2.due(t0 + 210 * S, || None), None);
        // The store is walked at most once per granularity.
        assert_eq!(gc2.due(t0 + 215 * S, || panic!("walked again")), None);
        assert_eq!(gc2.due(t0 + 220 * S, || Some(5)), Some(5));
    }

    #[test]
    fn a_new_term_starts_over() {
        let t0 = Instant::now();
        let mut gc = TombstoneGc::new(100 * S, 10 * S);
        gc.observe(t0, 1, 10);
        gc.observe(t0 + 150 * S, 2, 900);
        assert_eq!(gc.due(t0 + 150 * S, || Some(1)), None);
        assert_eq!(gc.due(t0 + 250 * S, || Some(1)), Some(900));
    }
}
