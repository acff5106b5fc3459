//! Each node's own change index, so a blocking read of one node (`/v1/catalog/node/:node`,
//! `/v1/health/node/:node`) waits for that node alone: a change to another node, or to any service
//! elsewhere, does not wake it (Consul wakes every watcher of the table, hashicorp/consul #3890).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Removed nodes whose last index is kept (so a watcher of a node that went away sees one change,
/// not a reset); the oldest are forgotten past this many, and then read as never seen.
const TOMBSTONES: usize = 4096;

/// Per-node indexes and the watches of the readers waiting on them.
#[derive(Default)]
pub struct NodeIndexes {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    index: HashMap<Arc<str>, u64>,
    /// Removed nodes and the index of their removal, oldest first.
    gone: VecDeque<(Arc<str>, u64)>,
    /// Created by the first reader that waits on a node, dropped once no reader holds them.
    watches: HashMap<Arc<str>, watch::Sender<u64>>,
    /// How many watches were left after the last sweep of the unheld ones: the next sweep waits
    /// until there are twice as many, so 10 000 readers arriving cost no 10 000 sweeps.
    swept_to: usize,
}

impl NodeIndexes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Node `node` changed at `index` (`removed`: it is no longer in the catalog). Called after the
    /// change is visible to readers, so a woken reader sees it.
    pub fn stamp(&self, node: &Arc<str>, index: u64, removed: bool) {
        let mut inner = self.lock();
        inner.index.insert(node.clone(), index);
        if removed {
            inner.gone.push_back((node.clone(), index));
            while inner.gone.len() > TOMBSTONES {
                let Some((old, at)) = inner.gone.pop_front() else {
                    break;
                };
                // Unless it changed since that removal (came back, or went again later).
                if inner.index.get(&old) == Some(&at) {
                    inner.index.remove(&old);
                }
            }
        }
        if let Some(tx) = inner.watches.get(node) {
            tx.send_replace(index);
        }
    }

    /// The index of `node`'s last change: 1 if this agent never saw it (or forgot it went).
    pub fn get(&self, node: &str) -> u64 {
        self.lock().index.get(node).copied().unwrap_or(1)
    }

    /// A receiver that sees `node`'s changes, and its index as of subscribing: no change between the
    /// two is missed.
    pub fn subscribe(&self, node: &str) -> (watch::Receiver<u64>, u64) {
        let mut inner = self.lock();
        if inner.watches.len() >= 2 * inner.swept_to.max(64) {
            inner.watches.retain(|_, tx| tx.receiver_count() > 0);
            inner.swept_to = inner.watches.len();
        }
        let rx = match inner.watches.get(node) {
            Some(tx) => tx.subscribe(),
            None => {
                let tx = watch::Sender::new(0);
                let rx = tx.subscribe();
                inner.watches.insert(Arc::from(node), tx);
                rx
            }
        };
        let index = inner.index.get(node).copied().unwrap_or(1);
        (rx, index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_keeps_its_index_until_it_changes_and_after_it_goes() {
        let n = NodeIndexes::default();
        let a: Arc<str> = Arc::from("a");
        assert_eq!(n.get("a"), 1);
        n.stamp(&a, 5, false);
        n.stamp(&Arc::from("b"), 6, false);
        assert_eq!(n.get("a"), 5);
        n.stamp(&a, 7, true);
        assert_eq!(n.get("a"), 7);
        assert_eq!(n.get("b"), 6);
    }

    #[test]
    fn a_waiting_reader_is_told_of_its_node_only() {
        let n = NodeIndexes::default();
        let (mut rx, at) = n.subscribe("a");
        assert_eq!(at, 1);
        n.stamp(&Arc::from("b"), 2, false);
        assert!(!rx.has_changed().unwrap());
        n.stamp(&Arc::from("a"), 3, false);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 3);
    }

    #[test]
    fn old_tombstones_are_forgotten_but_a_node_that_came_back_is_kept() {
        let n = NodeIndexes::default();
        let back: Arc<str> = Arc::from("back");
        n.stamp(&back, 2, true);
        n.stamp(&back, 3, false);
        for i in 0..TOMBSTONES as u64 {
            n.stamp(&Arc::from(format!("gone-{i}").as_str()), 10 + i, true);
        }
        // "back" left the tombstone list with the first removal past the cap, but it is alive.
        assert_eq!(n.get("back"), 3);
        n.stamp(&Arc::from("one-more"), 20_000, true);
        assert_eq!(n.get("gone-0"), 1, "the oldest tombstone is forgotten");
        assert_eq!(n.get("gone-1"), 11);
    }
}
