//! Query parameters every route family shares (`?dc=`, flags such as `?wan`).

use std::collections::HashMap;

use axum::extract::Query;

use super::ApiState;
use super::error::{ApiError, bad_request, server_error};
use crate::state::replicated::Consistency;
use crate::util::flags::parse_go_bool;

/// The query string as a map.
pub type Params = Query<HashMap<String, String>>;

/// A boolean query parameter as Consul's `getBoolQueryParam` reads it: absent is false, empty is
/// true, else Go's booleans; `None` for anything else.
pub fn bool_param(q: &HashMap<String, String>, k: &str) -> Option<bool> {
    match q.get(k).map(String::as_str) {
        None => Some(false),
        Some("") => Some(true),
        Some(v) => parse_go_bool(v),
    }
}

/// Consul treats a present key as true unless it is explicitly "0"/"false".
pub fn flag(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v != "0" && v != "false")
}

/// Refuses `?dc=` naming another datacenter (there is no WAN pool yet), as Consul words it.
pub fn check_dc(s: &ApiState, q: &HashMap<String, String>) -> Result<(), ApiError> {
    match q.get("dc") {
        Some(dc) if !dc.is_empty() && *dc != s.state.local.datacenter => {
            Err(server_error("No path to datacenter"))
        }
        _ => Ok(()),
    }
}

/// A JSON request body, or Consul's 400.
pub fn json_body(raw: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(raw).map_err(|e| bad_request(format!("Request decode failed: {e}")))
}

/// Refuses a `?max_stale` that is not a duration, and `?stale` (or a `?max_stale` above zero, which
/// Consul counts as one) or `?cached` with `?consistent`, in Consul's words and in its order (the
/// `?stale` conflict first).
///
/// A `?max_stale` read is otherwise served as it would be without it (a KV read by the leader), which
/// is never staler than it allows.
pub fn check_conflicts(q: &HashMap<String, String>) -> Result<(), ApiError> {
    let max_stale = match q.get("max_stale").filter(|v| !v.is_empty()) {
        None => false,
        // Go's durations may be negative; one is no stale read.
        Some(v) => match v.strip_prefix('-') {
            Some(d) => crate::util::duration::parse(d).map(|_| false),
            None => crate::util::duration::parse(v).map(|d| !d.is_zero()),
        }
        .map_err(|_| bad_request(format!("Invalid max_stale value {v:?}")))?,
    };
    if !q.contains_key("consistent") {
        return Ok(());
    }
    if q.contains_key("stale") || max_stale {
        return Err(bad_request(
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
        ));
    }
    if q.contains_key("cached") {
        return Err(bad_request(
            "Cannot specify ?cached with ?consistent, conflicting semantics.",
        ));
    }
    Ok(())
}

/// The read consistency a query asks for (`?stale`, `?consistent`), with Consul's conflict errors.
pub fn consistency(q: &HashMap<String, String>) -> Result<Consistency, ApiError> {
    check_conflicts(q)?;
    match (q.contains_key("stale"), q.contains_key("consistent")) {
        (true, false) => Ok(Consistency::Stale),
        // With `?stale` as well it was refused above.
        (_, true) => Ok(Consistency::Consistent),
        (false, false) => Ok(Consistency::Default),
    }
}
