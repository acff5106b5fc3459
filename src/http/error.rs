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

/// Consul's 405 names the method in its body (`method DELETE not allowed`); the router's own 405 is
/// empty. A handler's own 405 text is left as it is.
pub async fn name_refused_method(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::body::HttpBody;
    let method = req.method().clone();
    let mut resp = next.run(req).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED && resp.body().size_hint().exact() == Some(0)
    {
        let text = format!("method {method} not allowed");
        resp.headers_mut()
            .remove(axum::http::header::CONTENT_LENGTH);
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        *resp.body_mut() = axum::body::Body::from(text);
    }
    resp
}

/// 400 with `msg`.
pub fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// 500 with `msg` (Consul answers most refused operations so).
pub fn server_error(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, msg.into())
}

/// The body, or 413 with Consul's text when it is, by its `Content-Length` or its length, over `max`
/// bytes (`None`: over the server's own buffer limit); `setting` names the config key that sets the
/// limit.
pub fn check_body_size<'a>(
    headers: &axum::http::HeaderMap,
    body: &'a super::body::SizedBody,
    max: usize,
    setting: &str,
) -> Result<&'a [u8], ApiError> {
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let len = body
        .0
        .as_ref()
        .map_or(super::body::BUFFERED_MAX + 1, |b| b.len());
    let size = declared.unwrap_or(0).max(len);
    if size > max || body.0.is_none() {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Request body({size} bytes) too large, max size: {max} bytes. See \
                 https://developer.hashicorp.com/docs/agent/config/config-files#{setting}."
            ),
        ));
    }
    Ok(body.0.as_deref().unwrap_or_default())
}

/// What a handler returns.
pub type ApiResult = Result<Response, ApiError>;

/// The servers' store could not answer: 500 with its text, as Consul answers RPC errors.
pub fn store_error(e: crate::state::replicated::StoreError) -> ApiError {
    server_error(e.to_string())
}
