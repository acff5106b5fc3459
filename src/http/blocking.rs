//! Blocking queries: `?index=&wait=` parsing, the wait on the change index, and the `X-Consul-*` headers
//! every catalog read carries.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::{ApiError, bad_request};
use crate::state::{AgentState, Snapshot, servers};

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

    /// Waits until the index passes the client's, or the wait elapses (then with the same index), and
    /// returns the members as of then.
    pub async fn members(&self, s: &AgentState) -> Arc<Snapshot> {
        if let Some(min) = self.index {
            let deadline = tokio::time::Instant::now() + self.wait;
            // The table may have published before the index moved; either is enough.
            if s.members.snapshot().index <= min {
                s.changes.wait_past(min, deadline).await;
            }
        }
        s.members.snapshot()
    }
}

/// `body` as JSON with `X-Consul-Index`, `X-Consul-KnownLeader` and `X-Consul-LastContact`.
pub fn with_meta(snap: &Snapshot, body: Value) -> Response {
    let mut h = HeaderMap::new();
    let index = snap.index.max(1);
    h.insert("X-Consul-Index", HeaderValue::from(index));
    let known = servers::leader(snap).is_some();
    h.insert(
        "X-Consul-KnownLeader",
        HeaderValue::from_static(if known { "true" } else { "false" }),
    );
    h.insert("X-Consul-LastContact", HeaderValue::from_static("0"));
    (h, axum::Json(body)).into_response()
}
