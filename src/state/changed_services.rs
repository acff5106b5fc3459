//! The service names the catalog changed lately, with the index of each change, so a reader that keeps
//! something derived per name (the DNS answer cache) drops only the names that changed instead of
//! everything it holds; and when the external nodes changed, which node answers read. Bounded: past
//! [`KEPT`] changes the oldest are forgotten, and a reader that asks from before them is told to start
//! over.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Changes remembered. At 10 check flips a second cluster-wide this is minutes of history; a DNS
/// server syncs with every batch of queries it reads.
pub const KEPT: usize = 4096;

/// What changed after an index.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// The services changed, by name in lower case (DNS names are case-insensitive); one may repeat.
    pub services: Vec<String>,
    /// The external nodes changed: whatever is read about nodes rather than services (a node's
    /// address, reverse lookups) may have changed. Their services are in `services`.
    pub nodes: bool,
}

/// The log.
#[derive(Default)]
pub struct ChangedServices {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (catalog index, service name in lower case, or `None` for the external nodes), oldest first.
    changes: VecDeque<(u64, Option<String>)>,
    /// Every change with an index above this is in `changes`.
    floor: u64,
}

impl Inner {
    fn push(&mut self, index: u64, change: Option<String>) {
        if self.changes.len() == KEPT
            && let Some((oldest, _)) = self.changes.pop_front()
        {
            self.floor = oldest;
        }
        self.changes.push_back((index, change));
    }
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
            inner.push(index, Some(name.to_ascii_lowercase()));
        }
    }

    /// The external nodes changed at `index` (called before it is published, as [`Self::record`]).
    pub fn record_nodes(&self, index: u64) {
        self.lock().push(index, None);
    }

    /// What changed after index `since`, or `None` when changes from then are no longer all known.
    pub fn since(&self, since: u64) -> Option<Changes> {
        let inner = self.lock();
        if since < inner.floor {
            return None;
        }
        let first = inner.changes.partition_point(|(i, _)| *i <= since);
        let mut out = Changes::default();
        for (_, change) in inner.changes.range(first..) {
            match change {
                Some(name) => out.services.push(name.clone()),
                None => out.nodes = true,
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services(names: &[&str]) -> Option<Changes> {
        Some(Changes {
            services: names.iter().map(|n| n.to_string()).collect(),
            nodes: false,
        })
    }

    #[test]
    fn names_after_an_index_until_the_oldest_are_forgotten() {
        let log = ChangedServices::default();
        assert_eq!(log.since(0), services(&[]));
        log.record(2, &["web".into()]);
        log.record(3, &["DB".into()]);
        log.record(5, &["web".into()]);
        assert_eq!(log.since(0), services(&["web", "db", "web"]));
        assert_eq!(log.since(2), services(&["db", "web"]));
        assert_eq!(log.since(4), services(&["web"]));
        assert_eq!(log.since(5), services(&[]));

        log.record_nodes(6);
        log.record(7, &["api".into()]);
        let nodes = |names: &[&str]| {
            let mut c = services(names).unwrap();
            c.nodes = true;
            Some(c)
        };
        assert_eq!(log.since(4), nodes(&["web", "api"]));
        assert_eq!(log.since(5), nodes(&["api"]));
        assert_eq!(log.since(6), services(&["api"]));

        for i in 0..KEPT as u64 + 2 {
            log.record(10 + i, &["api".into()]);
        }
        // The first five are gone, and changes 10 and 11: a reader from before 11 has missed some.
        assert_eq!(log.since(5), None);
        assert_eq!(log.since(10), None);
        assert_eq!(log.since(11).map(|c| c.services.len()), Some(KEPT));
        assert_eq!(log.since(12).map(|c| c.services.len()), Some(KEPT - 1));
    }
}
