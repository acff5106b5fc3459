//! `?near=NODE` (`_agent`: this agent's node) on catalog and health reads: results sorted by the
//! round trip their nodes' network coordinates estimate from that node, nearest first.

use std::collections::HashMap;

use serde_json::Value;

use super::ApiState;
use crate::state::coordinates::sort_near;

/// The node a result is about: `"Node"` is its name, or (health service entries) the node object.
fn node_of(v: &Value) -> &str {
    match &v["Node"] {
        Value::String(n) => n,
        node => node["Node"].as_str().unwrap_or_default(),
    }
}

/// Sorts `items` as `?near=` asks, if it does. The read itself is local; when the coordinates cannot
/// be had (no server reachable, coordinates off) the results keep their name order.
pub(super) async fn sort(s: &ApiState, q: &HashMap<String, String>, items: &mut [Value]) {
    let Some(near) = q.get("near").filter(|n| !n.is_empty()) else {
        return;
    };
    if !s.state.local.coordinates {
        return;
    }
    let source = if near == "_agent" {
        s.state.local.node_name.as_str()
    } else {
        near.as_str()
    };
    match s.state.near.get(s.state.store.as_ref()).await {
        Ok(coords) => sort_near(items, &coords, source, node_of),
        Err(e) => tracing::debug!("?near={near}: coordinates unavailable, name order kept: {e}"),
    }
}
