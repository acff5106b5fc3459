//! `/v1/status/*`: the leader and the peers of the datacenter.

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use crate::state::servers;

pub(super) async fn leader(State(s): State<ApiState>) -> Response {
    let snap = s.state.members.snapshot();
    let l = servers::leader(&snap)
        .map(|m| servers::rpc_addr(m, s.state.local.server_port).to_string())
        .unwrap_or_default();
    axum::Json(l).into_response()
}

pub(super) async fn peers(State(s): State<ApiState>) -> Response {
    let snap = s.state.members.snapshot();
    let local = &s.state.local;
    let peers: Vec<String> = servers::peers(&snap, &local.datacenter, local.server_port)
        .iter()
        .map(|a| a.to_string())
        .collect();
    axum::Json(peers).into_response()
}
