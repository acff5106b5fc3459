//! Consul's user events (`/v1/event/fire`, `/v1/event/list`, `murmur event`): named events with an
//! optional payload, spread to every agent by gossip, kept by each agent that their node, service and
//! tag filters select, in a ring of the most recent [`RING`].
//!
//! An event's list index is derived from the newest event's ID (Consul's: the ID's two 64-bit halves
//! XORed), so it is not monotonic: a blocked reader waits for it to differ, as Consul's do.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

/// Events an agent keeps (Consul's buffer size).
pub const RING: usize = 256;
/// Largest event, in bytes: its name plus its encoding (ID, name, payload, filters), as Serf counts
/// an event against its default `UserEventSizeLimit`. It also bounds the filters an agent compiles.
pub const SIZE_LIMIT: usize = 512;
/// Most memory one compiled filter may take: a filter is at most a few hundred bytes of pattern, and
/// each agent compiles the filters of every event it receives.
const REGEX_SIZE_LIMIT: usize = 1 << 18;

/// One user event, as the API shows it and gossip carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    /// Random UUID.
    pub id: String,
    /// Event name.
    pub name: String,
    /// Opaque payload.
    pub payload: Option<Vec<u8>>,
    /// Regular expression on node names (empty: every node).
    pub node_filter: String,
    /// Regular expression on the names of the node's services.
    pub service_filter: String,
    /// Regular expression on the tags of the services the service filter selects.
    pub tag_filter: String,
    /// Lamport time: above every event the firing agent had seen.
    pub ltime: u64,
}

/// Why an event cannot be fired, with Consul's texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FireError {
    /// No name.
    MissingName,
    /// A tag filter needs a service filter.
    TagWithoutService,
    /// A filter is not a regular expression.
    BadFilter(&'static str, String),
    /// Name and payload above [`SIZE_LIMIT`].
    TooLarge,
}

impl std::fmt::Display for FireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FireError::MissingName => f.write_str("User event missing name"),
            FireError::TagWithoutService => {
                f.write_str("Cannot provide tag filter without service filter")
            }
            FireError::BadFilter(which, e) => write!(f, "Invalid {which} filter: {e}"),
            FireError::TooLarge => write!(
                f,
                "user event exceeds configured limit of {SIZE_LIMIT} bytes before encoding"
            ),
        }
    }
}

impl std::error::Error for FireError {}

fn compile(which: &'static str, re: &str) -> Result<Option<regex::Regex>, FireError> {
    if re.is_empty() {
        return Ok(None);
    }
    regex::RegexBuilder::new(re)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(Some)
        .map_err(|e| FireError::BadFilter(which, e.to_string()))
}

/// An event's filters, compiled once.
#[derive(Debug)]
pub struct Filters {
    node: Option<regex::Regex>,
    service: Option<regex::Regex>,
    tag: Option<regex::Regex>,
}

impl Filters {
    /// Whether an agent on `node` whose services are `services` (name, tags) keeps the event
    /// (Consul's rules: the node's name, then any service whose name and one of whose tags match).
    pub fn select<'a>(
        &self,
        node: &str,
        services: impl IntoIterator<Item = (&'a str, &'a [String])>,
    ) -> bool {
        if self.node.as_ref().is_some_and(|re| !re.is_match(node)) {
            return false;
        }
        let Some(s) = &self.service else {
            return true;
        };
        services.into_iter().any(|(name, tags)| {
            s.is_match(name)
                && self
                    .tag
                    .as_ref()
                    .is_none_or(|t| tags.iter().any(|x| t.is_match(x)))
        })
    }

    /// [`Filters::select`] with the services `node`'s catalog record shows (what gossip has of this
    /// node's own definitions).
    pub fn select_node(&self, node: &str, catalog: &super::catalog::Catalog) -> bool {
        let own = catalog.node(node);
        let services = own
            .iter()
            .flat_map(|e| e.record.services.iter())
            .map(|s| (s.name.as_str(), s.tags.as_slice()));
        self.select(node, services)
    }
}

impl UserEvent {
    /// Refuses what Consul refuses before an event is sent; the compiled filters otherwise.
    pub fn validate(&self) -> Result<Filters, FireError> {
        if self.name.is_empty() {
            return Err(FireError::MissingName);
        }
        if !self.tag_filter.is_empty() && self.service_filter.is_empty() {
            return Err(FireError::TagWithoutService);
        }
        if self.name.len() + self.encode().len() > SIZE_LIMIT {
            return Err(FireError::TooLarge);
        }
        self.filters()
    }

    /// The compiled filters (a filter that does not compile, or one too large, is an error).
    pub fn filters(&self) -> Result<Filters, FireError> {
        Ok(Filters {
            node: compile("node", &self.node_filter)?,
            service: compile("service", &self.service_filter)?,
            tag: compile("tag", &self.tag_filter)?,
        })
    }

    /// The bytes gossip carries.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("events encode")
    }

    /// Reads the bytes gossip carried.
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        super::replicated::decode_exact(bytes)
    }

    /// Whether an agent on `node` with `services` keeps the event; unreadable filters select nothing.
    pub fn selects<'a>(
        &self,
        node: &str,
        services: impl IntoIterator<Item = (&'a str, &'a [String])>,
    ) -> bool {
        self.filters().is_ok_and(|f| f.select(node, services))
    }

    /// Consul's list index for this event as the newest.
    pub fn index(&self) -> u64 {
        id_index(&self.id)
    }
}

/// Consul's event index of an event ID: the UUID's two 64-bit halves XORed.
pub fn id_index(id: &str) -> u64 {
    let hex: String = id.chars().filter(char::is_ascii_hexdigit).collect();
    let half = |r: std::ops::Range<usize>| {
        hex.get(r)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or(0)
    };
    half(0..16) ^ half(16..32)
}

/// The events this agent keeps.
pub struct UserEvents {
    ring: RwLock<VecDeque<Arc<UserEvent>>>,
    /// The highest Lamport time seen.
    clock: AtomicU64,
    /// Events kept so far; blocked readers wait on it.
    kept: watch::Sender<u64>,
    /// Gossiped events received (decoded, whether kept or not).
    pub received: AtomicU64,
    /// Gossiped events that did not decode (dropped).
    pub undecodable: AtomicU64,
}

impl Default for UserEvents {
    fn default() -> Self {
        UserEvents {
            ring: RwLock::new(VecDeque::with_capacity(RING)),
            clock: AtomicU64::new(0),
            kept: watch::Sender::new(0),
            received: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
        }
    }
}

impl UserEvents {
    /// The Lamport time for an event fired now (it stops at the top: a forged event may carry it).
    pub fn next_ltime(&self) -> u64 {
        let step = |c: u64| Some(c.saturating_add(1));
        let before = self
            .clock
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, step)
            .unwrap_or(u64::MAX);
        before.saturating_add(1)
    }

    /// Keeps `ev` (already filtered) as the newest, dropping the oldest past [`RING`].
    pub fn keep(&self, ev: UserEvent) {
        self.clock.fetch_max(ev.ltime, Ordering::Relaxed);
        {
            let mut ring = self.ring.write().unwrap_or_else(|p| p.into_inner());
            if ring.len() == RING {
                ring.pop_front();
            }
            ring.push_back(Arc::new(ev));
        }
        self.kept.send_modify(|n| *n += 1);
    }

    /// Moves the clock past a gossiped event the filters did not select.
    pub fn witness(&self, ltime: u64) {
        self.clock.fetch_max(ltime, Ordering::Relaxed);
    }

    /// Events named `name` (all with `None`), oldest first, and their index (1 when there are none,
    /// so a watch does not spin).
    pub fn list(&self, name: Option<&str>) -> (u64, Vec<Arc<UserEvent>>) {
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
        let events: Vec<Arc<UserEvent>> = ring
            .iter()
            .filter(|e| name.is_none_or(|n| e.name == n))
            .cloned()
            .collect();
        let index = events.last().map_or(1, |e| e.index());
        (index, events)
    }

    /// [`UserEvents::list`] once its index differs from `min`, or at `deadline`.
    pub async fn wait(
        &self,
        name: Option<&str>,
        min: u64,
        deadline: Instant,
    ) -> (u64, Vec<Arc<UserEvent>>) {
        let mut rx = self.kept.subscribe();
        loop {
            let current = self.list(name);
            if current.0 != min {
                return current;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return self.list(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, id: &str) -> UserEvent {
        UserEvent {
            id: id.into(),
            name: name.into(),
            payload: Some(b"p".to_vec()),
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            ltime: 0,
        }
    }

    #[test]
    fn validation_uses_consuls_texts() {
        let mut e = event("", "x");
        assert_eq!(
            e.validate().unwrap_err().to_string(),
            "User event missing name"
        );
        e.name = "deploy".into();
        e.tag_filter = "v1".into();
        assert_eq!(
            e.validate().unwrap_err().to_string(),
            "Cannot provide tag filter without service filter"
        );
        e.service_filter = "(web".into();
        assert!(
            e.validate()
                .unwrap_err()
                .to_string()
                .starts_with("Invalid service filter")
        );
        e.service_filter = "web".into();
        assert!(e.validate().is_ok());
        // The name twice, the ID, the filters and the encoding's lengths come to 27 bytes here.
        e.payload = Some(vec![0; SIZE_LIMIT - 27]);
        assert!(e.validate().is_ok());
        e.payload = Some(vec![0; SIZE_LIMIT - 26]);
        assert!(matches!(e.validate(), Err(FireError::TooLarge)));
        e.payload = None;
        e.node_filter = "x".repeat(SIZE_LIMIT);
        assert!(
            matches!(e.validate(), Err(FireError::TooLarge)),
            "filters count too"
        );
        let wire = event("n", "i").encode();
        assert_eq!(UserEvent::decode(&wire).unwrap(), event("n", "i"));
        assert!(UserEvent::decode(&wire[..wire.len() - 1]).is_err());
    }

    #[test]
    fn filters_select_nodes_services_and_tags() {
        let tags = vec!["v1".to_string(), "blue".to_string()];
        let services = || [("web", tags.as_slice()), ("db", &[][..])];
        let mut e = event("deploy", "x");
        assert!(e.selects("node-1", services()));
        e.node_filter = "^node-[0-9]$".into();
        assert!(e.selects("node-1", services()));
        assert!(!e.selects("other", services()));
        e.service_filter = "^we".into();
        assert!(e.selects("node-1", services()));
        e.tag_filter = "blu".into();
        assert!(e.selects("node-1", services()));
        e.tag_filter = "green".into();
        assert!(!e.selects("node-1", services()));
        e.service_filter = "cache".into();
        e.tag_filter = String::new();
        assert!(!e.selects("node-1", services()));
    }

    #[tokio::test]
    async fn the_ring_keeps_the_newest_and_readers_wait_for_a_different_index() {
        let events = Arc::new(UserEvents::default());
        assert_eq!(events.list(None).0, 1);
        for i in 0..RING + 3 {
            let mut e = event(
                if i % 2 == 0 { "even" } else { "odd" },
                &format!("{i:032x}"),
            );
            e.ltime = i as u64;
            events.keep(e);
        }
        let (index, all) = events.list(None);
        assert_eq!(all.len(), RING);
        assert_eq!(all[0].id, format!("{:032x}", 3));
        assert_eq!(
            index,
            (RING + 2) as u64,
            "the low half XOR a zero high half"
        );
        let (_, odd) = events.list(Some("odd"));
        assert!(odd.iter().all(|e| e.name == "odd"));
        assert_eq!(events.next_ltime(), (RING + 3) as u64);
        events.witness(u64::MAX);
        assert_eq!(events.next_ltime(), u64::MAX, "a forged top time saturates");
        // A blocked reader wakes on the next event, and times out with the same index otherwise.
        let deadline = Instant::now() + std::time::Duration::from_millis(50);
        assert_eq!(events.wait(None, index, deadline).await.0, index);
        let waiter = {
            let events = events.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + std::time::Duration::from_secs(10);
                events.wait(None, index, deadline).await.0
            })
        };
        tokio::task::yield_now().await;
        events.keep(event("new", "ffffffffffffffff0000000000000001"));
        assert_eq!(waiter.await.unwrap(), 0xffff_ffff_ffff_fffe);
    }
}
