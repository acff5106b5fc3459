//! Consul-style errors: a status code and a plain-text reason, as Consul's HTTP server writes them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error reply.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// 400 with `msg`.
pub fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// 500 with `msg` (Consul answers most refused operations so).
pub fn server_error(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, msg.into())
}

/// What a handler returns.
pub type ApiResult = Result<Response, ApiError>;

/// The servers' store could not answer: 500 with its text, as Consul answers RPC errors.
pub fn store_error(e: crate::state::replicated::StoreError) -> ApiError {
    server_error(e.to_string())
}
