//! `/v1/snapshot`: `GET` saves the servers' state as a snapshot file (the leader's, or with `?stale` any
//! server's), `PUT` replaces the state with one, through the leader.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::IntoResponse;

use super::ApiState;
use super::blocking::meta;
use super::error::{ApiResult, server_error, store_error};
use super::params::Params;
use crate::state::autopilot::{OperatorOp, OperatorReply};

/// `GET /v1/snapshot`: the file, with its state's index in `X-Consul-Index`.
pub(super) async fn save(State(s): State<ApiState>, Query(q): Params) -> ApiResult {
    let stale = q.contains_key("stale");
    let reply = s
        .state
        .store
        .operator(OperatorOp::Save { stale })
        .await
        .map_err(store_error)?;
    let OperatorReply::Snapshot { index, file } = reply else {
        return Err(server_error(
            "a server answered the snapshot request with something else",
        ));
    };
    let mut headers = meta(index, s.state.store.known_leader(), 0);
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok((headers, file).into_response())
}

/// `PUT /v1/snapshot`: restores the state from the file in the body (its size capped by the route).
pub(super) async fn restore(State(s): State<ApiState>, Query(q): Params, body: Bytes) -> ApiResult {
    // A restore is a write: only the leader may apply it (Consul's text, a 500 as its RPC error).
    if q.contains_key("stale") {
        return Err(server_error("stale not allowed for restore"));
    }
    s.state
        .store
        .operator(OperatorOp::Restore(body.to_vec()))
        .await
        .map_err(store_error)?;
    Ok(StatusCode::OK.into_response())
}
