//! `/v1/operator/keyring`: list, install, use and remove gossip keys cluster-wide; and
//! `/v1/operator/raft/configuration`: the servers of the replicated log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

use super::ApiState;
use super::error::{ApiResult, bad_request, server_error, store_error};
use crate::state::KeyOp;
use crate::state::keyring::{KeyCount, parse_key};

fn counts(list: &[KeyCount]) -> Map<String, Value> {
    list.iter()
        .map(|k| (k.key.clone(), json!(k.members)))
        .collect()
}

pub(super) async fn list(State(s): State<ApiState>) -> ApiResult {
    let r = s
        .state
        .keyring_report()
        .await
        .ok_or_else(|| server_error("gossip encryption is not enabled on this agent"))?;
    Ok(axum::Json(json!([{
        "WAN": false,
        "Datacenter": s.state.local.datacenter,
        "Segment": "",
        "Keys": counts(&r.keys),
        "PrimaryKeys": counts(&r.primary),
        "NumNodes": r.members,
        "Messages": {},
    }]))
    .into_response())
}

pub(super) async fn change(
    State(s): State<ApiState>,
    op: KeyOp,
    body: axum::body::Bytes,
) -> ApiResult {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("Request decode failed: {e}")))?;
    // Go decodes bodies case-insensitively; accept "Key" and "key".
    let key_text = v
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("key")))
        .and_then(|(_, v)| v.as_str())
        .ok_or_else(|| bad_request("Request decode failed: missing \"Key\""))?;
    let key = parse_key(key_text).map_err(bad_request)?;
    s.state
        .change_keyring(op, key)
        .await
        .map_err(server_error)?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /v1/operator/raft/configuration`, in Consul's shape.
pub(super) async fn raft_configuration(State(s): State<ApiState>) -> ApiResult {
    let c = s.state.store.configuration().await.map_err(store_error)?;
    let servers: Vec<Value> = c
        .servers
        .iter()
        .map(|p| {
            json!({
                "ID": p.id,
                "Node": p.node,
                "Address": p.address,
                "Leader": p.leader,
                "ProtocolVersion": "3",
                "Voter": p.voter,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "Servers": servers, "Index": c.index })).into_response())
}
