//! `/v1/event/fire/:name` and `/v1/event/list`: Consul's user events. A fired event goes out by gossip
//! and is kept here too when its filters select this node; the list is this agent's recent ones.

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use base64::Engine;
use serde_json::{Value, json};

use super::ApiState;
use super::blocking::{Blocking, with_index};
use super::body::Body;
use super::error::{ApiError, ApiResult, bad_request, server_error};
use super::params::{Params, check_dc};
use crate::state::user_events::UserEvent;
use murmur_gossip::EventKind;

/// Consul's version of the event encoding.
const VERSION: u8 = 1;

/// An event as Consul shows it (the payload base64, or null).
fn event_json(e: &UserEvent) -> Value {
    json!({
        "ID": e.id,
        "Name": e.name,
        "Payload": e.payload.as_ref().map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
        "NodeFilter": e.node_filter,
        "ServiceFilter": e.service_filter,
        "TagFilter": e.tag_filter,
        "Version": VERSION,
        "LTime": e.ltime,
    })
}

/// `PUT /v1/event/fire/` without a name, refused as Consul refuses it.
pub(super) async fn missing_name() -> ApiError {
    bad_request("Missing name")
}

/// `PUT /v1/event/fire/:name`: sends the event and answers it in Consul's shape.
pub(super) async fn fire(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Params,
    Body(body): Body,
) -> ApiResult {
    check_dc(&s, &q)?;
    let param = |k: &str| q.get(k).cloned().unwrap_or_default();
    let ev = UserEvent {
        id: crate::util::entropy::uuid().map_err(server_error)?,
        name,
        payload: (!body.is_empty()).then(|| body.to_vec()),
        node_filter: param("node"),
        service_filter: param("service"),
        tag_filter: param("tag"),
        ltime: s.state.events.next_ltime(),
    };
    let filters = ev.validate().map_err(|e| server_error(e.to_string()))?;
    s.state
        .user_event(EventKind::USER, ev.encode())
        .await
        .map_err(server_error)?;
    if filters.select_node(&s.state.local.node_name, &s.state.catalog) {
        s.state.events.keep(ev.clone());
    }
    Ok(axum::Json(event_json(&ev)).into_response())
}

/// `GET /v1/event/list`: this agent's recent events, oldest first, blocking on Consul's event index.
pub(super) async fn list(State(s): State<ApiState>, Query(q): Params) -> ApiResult {
    let blocking = Blocking::from_query(&q)?;
    let name = q.get("name").map(String::as_str).filter(|n| !n.is_empty());
    let (index, events) = match blocking.index() {
        Some(min) => {
            let _held = super::blocking::Held::enter();
            let deadline = tokio::time::Instant::now() + blocking.wait_with_jitter();
            s.state.events.wait(name, min, deadline).await
        }
        None => s.state.events.list(name),
    };
    let body: Vec<Value> = events.iter().map(|e| event_json(e)).collect();
    Ok(with_index(
        index,
        s.state.store.known_leader(),
        Value::Array(body),
    ))
}
