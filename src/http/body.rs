//! Request bodies, buffered up to the server's limit and refused past it in Consul's words rather
//! than axum's (`Failed to buffer the request body: length limit exceeded`).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;

use super::error::{ApiError, bad_request};

/// What an oversized body gets on the endpoints that read it whole (JSON bodies, event payloads):
/// Consul's decode-failure 400, worded as Go's body limit reports itself.
pub const TOO_LARGE: &str = "Request decode failed: http: request body too large";

/// The most a body may be (axum's default, which the router keeps but for snapshot restores).
pub const BUFFERED_MAX: usize = 2 * 1024 * 1024;

/// A whole request body; an oversized one is a 400 with [`TOO_LARGE`].
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(Body(b)),
            Err(e) if too_large(&e) => Err(bad_request(TOO_LARGE)),
            Err(e) => Err(ApiError(e.status(), e.body_text())),
        }
    }
}

/// A body whose size has its own Consul error (KV values, transactions): the bytes, or `None` when
/// the body is over the server's limit, for the handler to refuse with that error.
pub struct SizedBody(pub Option<Bytes>);

impl<S: Send + Sync> FromRequest<S> for SizedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(SizedBody(Some(b))),
            Err(e) if too_large(&e) => Ok(SizedBody(None)),
            Err(e) => Err(ApiError(e.status(), e.body_text())),
        }
    }
}

fn too_large(e: &BytesRejection) -> bool {
    matches!(
        e,
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_))
    ) || e.status() == StatusCode::PAYLOAD_TOO_LARGE
}
