//! Blocking queries: `?index=&wait=` parsing, the wait on the change index, and the `X-Consul-*` headers
//! every catalog read carries.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::{ApiError, bad_request};
use crate::state::catalog::{Listing, ServiceEntries};
use crate::state::replicated::{Query, ReadRequest, ReadResult};
use crate::state::{AgentState, Snapshot};
use tokio::time::Instant;

/// Blocking queries waiting now, in this process (one agent per process outside tests).
static HELD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many blocking queries are waiting now (`rpc.queries_blocking`).
pub fn held() -> u64 {
    HELD.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts one waiting query while it lives.
pub(super) struct Held;

impl Held {
    /// Counts a query that is about to wait.
    pub(super) fn enter() -> Held {
        HELD.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Held
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Parsed `?index=&wait=` of a blocking query.
pub struct Blocking {
    index: Option<u64>,
    wait: Duration,
}

/// Consul's default and maximum waits.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
const MAX_WAIT: Duration = Duration::from_secs(600);

impl Blocking {
    /// Reads the parameters, with Consul's error texts.
    pub fn from_query(q: &HashMap<String, String>) -> Result<Self, ApiError> {
        let index = match q.get("index") {
            None => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| bad_request("Invalid index"))?),
        };
        let wait = match q.get("wait") {
            None => DEFAULT_WAIT,
            Some(v) => crate::util::duration::parse(v)
                .map_err(|_| bad_request("Invalid wait time"))?
                .min(MAX_WAIT),
        };
        Ok(Blocking { index, wait })
    }

    /// The client's index, if it gave one (the read blocks then).
    pub fn index(&self) -> Option<u64> {
        self.index
    }

    /// The requested wait plus up to a sixteenth of it, as Consul spreads the returns of watchers that
    /// started together.
    pub fn wait_with_jitter(&self) -> Duration {
        let jitter = self.wait.as_millis() as u64 / 16;
        let extra = if jitter > 0 {
            crate::util::entropy::u64().unwrap_or(0) % jitter
        } else {
            0
        };
        self.wait + Duration::from_millis(extra)
    }

    /// When a wait that starts now ends (with the jitter).
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.wait_with_jitter()
    }

    /// Waits on service `name` alone: a change to another service does not end the wait.
    pub async fn service(&self, s: &AgentState, name: &str) -> Arc<ServiceEntries> {
        match self.index {
            Some(min) => {
                let _held = Held::enter();
                s.catalog.wait_service(name, min, self.deadline()).await
            }
            None => s.catalog.service(name),
        }
    }

    /// Waits on node `name` alone: a change to another node does not end the wait. Returns the node's
    /// index.
    pub async fn node(&self, s: &AgentState, name: &str) -> u64 {
        match self.index {
            Some(min) => {
                let _held = Held::enter();
                s.catalog.wait_node(name, min, self.deadline()).await
            }
            None => s.catalog.node_index(name),
        }
    }

    /// Waits on the list of service names and tags.
    pub async fn listing(&self, s: &AgentState) -> Arc<Listing> {
        match self.index {
            Some(min) => {
                let _held = Held::enter();
                s.catalog.wait_listing(min, self.deadline()).await
            }
            None => s.catalog.listing(),
        }
    }

    /// Waits on anything about nodes (members or any record); returns the index and the members then.
    pub async fn nodes(&self, s: &AgentState) -> (u64, Arc<Snapshot>) {
        self.nodes_by(s, |s| s.catalog.index()).await
    }

    /// Waits on the list of nodes (members, or the external nodes' own fields), not on their services.
    pub async fn node_list(&self, s: &AgentState) -> (u64, Arc<Snapshot>) {
        self.nodes_by(s, |s| s.catalog.external_index()).await
    }

    /// Waits until the member table or `catalog_index` moves past the client's index.
    async fn nodes_by(
        &self,
        s: &AgentState,
        catalog_index: impl Fn(&AgentState) -> u64,
    ) -> (u64, Arc<Snapshot>) {
        // Both counters only grow, so their sum moves whenever either does (a max would hide a change
        // to the smaller one).
        let index = |s: &AgentState| s.members.snapshot().index + catalog_index(s);
        if let Some(min) = self.index
            && index(s) == min
        {
            let _held = Held::enter();
            let deadline = self.deadline();
            let (mut members, mut records) = (s.changes.subscribe(), s.catalog.subscribe());
            while index(s) == min {
                let changed = tokio::select! {
                    r = members.changed() => r.is_ok(),
                    r = records.changed() => r.is_ok(),
                    _ = tokio::time::sleep_until(deadline) => false,
                };
                if !changed {
                    break;
                }
            }
        }
        (index(s), s.members.snapshot())
    }
}

/// A read of the servers' store with the request's consistency mode and blocking parameters.
pub async fn store_read(
    s: &AgentState,
    q: &HashMap<String, String>,
    query: Query,
) -> Result<ReadResult, ApiError> {
    let blocking = Blocking::from_query(q)?;
    let request = ReadRequest {
        query,
        consistency: super::params::consistency(q)?,
        min_index: blocking.index(),
        wait: blocking.wait_with_jitter(),
    };
    let _held = request.min_index.map(|_| Held::enter());
    s.store
        .read(request)
        .await
        .map_err(super::error::store_error)
}

/// `body` as JSON with `X-Consul-Index`, `X-Consul-KnownLeader` and `X-Consul-LastContact` (0: the
/// agent answers catalog reads from its own replica).
pub fn with_index(index: u64, known_leader: bool, body: Value) -> Response {
    (meta(index, known_leader, 0), axum::Json(body)).into_response()
}

/// `response` with `?cached`'s headers when the request asked for them. The agent's own replica is the
/// cache Consul's agents keep, fed by gossip instead of background fetches, so every such read is a hit
/// as fresh as the last change the agent applied: `X-Cache: HIT`, `Age: 0`.
pub fn cached(q: &HashMap<String, String>, mut response: Response) -> Response {
    if q.contains_key("cached") {
        let h = response.headers_mut();
        h.insert("X-Cache", HeaderValue::from_static("HIT"));
        h.insert("Age", HeaderValue::from_static("0"));
    }
    response
}

/// The `X-Consul-*` headers of a read.
pub fn meta(index: u64, known_leader: bool, last_contact_ms: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("X-Consul-Index", HeaderValue::from(index.max(1)));
    h.insert(
        "X-Consul-KnownLeader",
        HeaderValue::from_static(if known_leader { "true" } else { "false" }),
    );
    h.insert("X-Consul-LastContact", HeaderValue::from(last_contact_ms));
    h
}
