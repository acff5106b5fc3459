//! The service names the catalog changed lately, with the index of each change, so a reader that keeps
//! something derived per name (the DNS answer cache) drops only the names that changed instead of
//! everything it holds. Bounded: past [`KEPT`] changes the oldest are forgotten, and a reader that
//! asks from before them is told to start over.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Changes remembered. At 10 check flips a second cluster-wide this is minutes of history; a DNS
/// server syncs with every batch of queries it reads.
pub const KEPT: usize = 4096;

/// The log.
#[derive(Default)]
pub struct ChangedServices {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (catalog index, service name), oldest first.
    changes: VecDeque<(u64, String)>,
    /// Every change to a service with an index above this is in `changes`.
    floor: u64,
}

impl ChangedServices {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Services `names` changed at catalog index `index`. Called before the index is published, so a
    /// reader that saw the index finds the change here.
    pub fn record(&self, index: u64, names: &[String]) {
        let mut inner = self.lock();
        for name in names {
            if inner.changes.len() == KEPT
                && let Some((oldest, _)) = inner.changes.pop_front()
            {
                inner.floor = oldest;
            }
            inner.changes.push_back((index, name.clone()));
        }
    }

    /// Something every reader must take whole changed at `index` (the external nodes): readers from
    /// before it start over.
    pub fn reset(&self, index: u64) {
        let mut inner = self.lock();
        inner.changes.clear();
        inner.floor = index;
    }

    /// The names changed after index `since` (a name may repeat), or `None` when changes from then
    /// are no longer all known.
    pub fn since(&self, since: u64) -> Option<Vec<String>> {
        let inner = self.lock();
        if since < inner.floor {
            return None;
        }
        let first = inner.changes.partition_point(|(i, _)| *i <= since);
        Some(
            inner
                .changes
                .range(first..)
                .map(|(_, n)| n.clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_after_an_index_until_the_oldest_are_forgotten() {
        let log = ChangedServices::default();
        assert_eq!(log.since(0), Some(vec![]));
        log.record(2, &["web".into()]);
        log.record(3, &["db".into()]);
        log.record(5, &["web".into()]);
        assert_eq!(log.since(0).unwrap(), ["web", "db", "web"]);
        assert_eq!(log.since(2).unwrap(), ["db", "web"]);
        assert_eq!(log.since(4).unwrap(), ["web"]);
        assert_eq!(log.since(5).unwrap(), Vec::<String>::new());

        for i in 0..KEPT as u64 + 2 {
            log.record(10 + i, &["api".into()]);
        }
        // The first three are gone, and changes 10 and 11: a reader from before 11 has missed some.
        assert_eq!(log.since(5), None);
        assert_eq!(log.since(10), None);
        assert_eq!(log.since(11).map(|v| v.len()), Some(KEPT));
        assert_eq!(log.since(12).map(|v| v.len()), Some(KEPT - 1));

        log.reset(9000);
        assert_eq!(log.since(8999), None);
        assert_eq!(log.since(9000), Some(vec![]));
    }
}
