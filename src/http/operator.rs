//! `/v1/operator/keyring`: list, install, use and remove gossip keys cluster-wide;
//! `/v1/operator/raft/configuration` and `/peer`: the servers of the replicated log, and removing one;
//! `/v1/operator/autopilot/health`: each server's health as the leader judges it.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

use super::ApiState;
use super::body::Body;
use super::error::{ApiResult, bad_request, server_error, store_error};
use super::params::Params;
use crate::state::KeyOp;
use crate::state::autopilot::{OperatorOp, OperatorReply, PeerRef};
use crate::state::keyring::{KeyCount, parse_key};
use crate::util::duration::go_string;

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

pub(super) async fn change(State(s): State<ApiState>, op: KeyOp, Body(body): Body) -> ApiResult {
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

/// `DELETE /v1/operator/raft/peer?id=|?address=`: takes a server out of the raft configuration.
pub(super) async fn remove_peer(State(s): State<ApiState>, Query(q): Params) -> ApiResult {
    let peer = match (q.get("id"), q.get("address")) {
        (Some(_), Some(_)) => return Err(bad_request("Must specify only one of ?id or ?address")),
        (Some(id), None) => PeerRef::Id(id.clone()),
        (None, Some(a)) => PeerRef::Address(a.clone()),
        (None, None) => {
            return Err(bad_request(
                "Must specify either ?id with the server's ID or ?address with IP:port of peer to \
                 remove",
            ));
        }
    };
    s.state
        .store
        .operator(OperatorOp::RemovePeer(peer))
        .await
        .map_err(store_error)?;
    Ok(StatusCode::OK.into_response())
}

/// A time as Go's JSON writes a UTC `time.Time` rounded to the second (RFC 3339, `Z`).
fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(d) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        Err(_) => "0001-01-01T00:00:00Z".into(),
    }
}

/// `GET /v1/operator/autopilot/health`: 200 when every server is healthy, 429 otherwise (same body).
pub(super) async fn autopilot_health(State(s): State<ApiState>) -> ApiResult {
    let OperatorReply::Health(h) = s
        .state
        .store
        .operator(OperatorOp::Health)
        .await
        .map_err(store_error)?
    else {
        return Err(server_error(
            "a server answered the health request with something else",
        ));
    };
    let servers: Vec<Value> = h
        .servers
        .iter()
        .map(|v| {
            json!({
                "ID": v.id,
                "Name": v.name,
                "Address": v.address,
                "SerfStatus": v.serf_status,
                "Version": v.version,
                "Leader": v.leader,
                "LastContact": go_string(v.last_contact),
                "LastTerm": v.last_term,
                "LastIndex": v.last_index,
                "Healthy": v.healthy,
                "Voter": v.voter,
                "StableSince": rfc3339(v.stable_since),
            })
        })
        .collect();
    let code = if h.healthy {
        StatusCode::OK
    } else {
        StatusCode::TOO_MANY_REQUESTS
    };
    let body = json!({
        "Healthy": h.healthy,
        "FailureTolerance": h.failure_tolerance,
        "Servers": servers,
    });
    Ok((code, axum::Json(body)).into_response())
}
