//! `/v1/status/*`: the leader and the peers of the datacenter, from the replicated log.

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::ApiState;

pub(super) async fn leader(State(s): State<ApiState>) -> Response {
    axum::Json(s.state.store.leader().await.unwrap_or_default()).into_response()
}

pub(super) async fn peers(State(s): State<ApiState>) -> Response {
    axum::Json(s.state.store.peers().await).into_response()
}
