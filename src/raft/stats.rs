//! What a server counts about its raft for the metrics: commit times of the leader's write groups,
//! writes applied through them, leader changes seen and terms this server led.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::metrics::{Agg, Snapshot, Value};

/// The counts.
#[derive(Debug, Default)]
pub struct RaftStats {
    commit: Mutex<Agg>,
    applied_writes: AtomicU64,
    leader_changes: AtomicU64,
    became_leader: AtomicU64,
}

impl RaftStats {
    /// A write group committed `took` after it was handed to raft, carrying `writes` writes.
    pub fn committed(&self, took: Duration, writes: usize) {
        self.commit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(took.as_secs_f64());
        self.applied_writes
            .fetch_add(writes as u64, Ordering::Relaxed);
    }

    /// The known leader changed; `to_me` if this server is the new one.
    pub fn leader_changed(&self, to_me: bool) {
        self.leader_changes.fetch_add(1, Ordering::Relaxed);
        if to_me {
            self.became_leader.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds the counts, with `now`'s gauges (term, last log index, applied index, leadership).
    pub fn read_into(&self, snap: &mut Snapshot, now: &RaftNow) {
        let gauges = [
            ("raft.term", "The current raft term.", now.term as f64),
            (
                "raft.last_index",
                "Index of the last entry in this server's log.",
                now.last_index as f64,
            ),
            (
                "raft.applied_index",
                "Index of the last entry applied to this server's state.",
                now.applied_index as f64,
            ),
            (
                "raft.is_leader",
                "1 while this server leads, else 0.",
                if now.leader { 1.0 } else { 0.0 },
            ),
        ];
        for (name, help, v) in gauges {
            snap.gauge(name, help, &[], v);
        }
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        snap.counter(
            "raft.state.leader",
            "Times this server became the leader.",
            &[],
            n(&self.became_leader),
        );
        snap.counter(
            "raft.leader.changes",
            "Changes of the known leader this server saw.",
            &[],
            n(&self.leader_changes),
        );
        snap.counter(
            "raft.apply",
            "Writes committed through this server while it led.",
            &[],
            n(&self.applied_writes),
        );
        let commit = self
            .commit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        snap.push(
            "raft.commit_time",
            "Time from handing a write group to raft until it committed.",
            &[],
            Value::Sample(commit),
        );
    }
}

/// Raft's figures at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct RaftNow {
    /// Current term.
    pub term: u64,
    /// Last log index.
    pub last_index: u64,
    /// Last applied index.
    pub applied_index: u64,
    /// Whether this server leads.
    pub leader: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_gauges_reach_the_snapshot() {
        let s = RaftStats::default();
        s.committed(Duration::from_millis(3), 4);
        s.committed(Duration::from_millis(5), 1);
        s.leader_changed(true);
        s.leader_changed(false);
        let mut snap = Snapshot::default();
        let now = RaftNow {
            term: 7,
            last_index: 42,
            applied_index: 41,
            leader: true,
        };
        s.read_into(&mut snap, &now);
        let get = |name: &str| {
            snap.metrics
                .iter()
                .find(|m| m.name == name)
                .map(|m| m.value.clone())
                .unwrap()
        };
        assert_eq!(get("raft.term"), Value::Gauge(7.0));
        assert_eq!(get("raft.applied_index"), Value::Gauge(41.0));
        assert_eq!(get("raft.is_leader"), Value::Gauge(1.0));
        assert_eq!(get("raft.apply"), Value::Counter(5));
        assert_eq!(get("raft.leader.changes"), Value::Counter(2));
        assert_eq!(get("raft.state.leader"), Value::Counter(1));
        match get("raft.commit_time") {
            Value::Sample(a) => assert_eq!((a.count, a.max), (2, 0.005)),
            other => panic!("{other:?}"),
        }
    }
}
