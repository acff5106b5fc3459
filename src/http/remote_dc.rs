//! `?dc=OTHER`: a request for another datacenter is sent whole to one of its servers (through this
//! datacenter's servers when this agent is a client), which answers it with its own handlers; the
//! answer comes back with its status, body and `X-Consul-*` headers. Also the other end: a forwarded
//! request answered here.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;

use super::ApiState;
use super::error::{ApiError, server_error, store_error};
use crate::state::remote::{
    self, HttpRequest, HttpResponse, MAX_ANSWER_BODY, MAX_REQUEST_BODY, RemoteAnswer,
    RemoteRequest, split_dc,
};

/// Route families another datacenter answers, as Consul forwards them. Agent endpoints are always
/// this agent's own, and the event list is the agent's own buffer.
fn forwarded(path: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "/v1/catalog/",
        "/v1/health/",
        "/v1/kv/",
        "/v1/session/",
        "/v1/txn",
        "/v1/coordinate/nodes",
        "/v1/coordinate/node/",
        "/v1/event/fire/",
    ];
    PREFIXES.iter().any(|p| path.starts_with(p)) && path != "/v1/catalog/datacenters"
}

/// Middleware: sends a request whose `dc` names another datacenter there; passes the rest on.
pub(super) async fn forward_dc(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    if !forwarded(req.uri().path()) {
        return next.run(req).await;
    }
    let query = req.uri().query().unwrap_or("");
    let (dc, rest) = split_dc(query);
    let dc = match dc {
        Some(dc) if dc != s.state.local.datacenter => dc.to_string(),
        _ => return next.run(req).await,
    };
    match relay(&s, dc, req, rest).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Sends `req` (its query now `query`) to be answered in `dc`.
pub(super) async fn relay(
    s: &ApiState,
    dc: String,
    req: Request,
    query: String,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_REQUEST_BODY)
        .await
        .map_err(|e| ApiError(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))?;
    let headers = remote::REQUEST_HEADERS
        .iter()
        .filter_map(|h| {
            let v = parts.headers.get(*h)?.to_str().ok()?;
            Some((h.to_string(), v.to_string()))
        })
        .collect();
    let request = RemoteRequest::Http(HttpRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query,
        headers,
        body: body.to_vec(),
    });
    match s
        .state
        .store
        .remote(dc, request)
        .await
        .map_err(store_error)?
    {
        RemoteAnswer::Http(a) => Ok(response(a)),
        RemoteAnswer::Dns(_) => Err(server_error("a DNS answer to an HTTP request")),
    }
}

/// The forwarded answer as this agent's response.
fn response(a: HttpResponse) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut r = (status, a.body).into_response();
    let headers = r.headers_mut();
    headers.remove(axum::http::header::CONTENT_TYPE);
    for (k, v) in a.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            headers.append(k, v);
        }
    }
    r
}

/// Answers a request forwarded from another datacenter with this agent's own handlers.
pub async fn answer_here(router: axum::Router, req: HttpRequest) -> HttpResponse {
    let fail = |status: StatusCode, msg: String| HttpResponse {
        status: status.as_u16(),
        headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
        body: msg.into_bytes(),
    };
    let uri = if req.query.is_empty() {
        req.path.clone()
    } else {
        format!("{}?{}", req.path, req.query)
    };
    let mut builder = axum::http::Request::builder()
        .method(req.method.as_str())
        .uri(uri);
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let Ok(request) = builder.body(Body::from(req.body)) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "a forwarded request that does not form an HTTP request".into(),
        );
    };
    let Ok(resp) = router.oneshot(request).await;
    let (parts, body) = resp.into_parts();
    let body = match axum::body::to_bytes(body, MAX_ANSWER_BODY).await {
        Ok(b) => b.to_vec(),
        Err(e) => return fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let headers = parts
        .headers
        .iter()
        .filter(|(k, _)| {
            *k == axum::http::header::CONTENT_TYPE || k.as_str().starts_with("x-consul-")
        })
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    HttpResponse {
        status: parts.status.as_u16(),
        headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_families_are_consuls() {
        for p in [
            "/v1/catalog/nodes",
            "/v1/catalog/service/web",
            "/v1/health/service/web",
            "/v1/kv/a/b",
            "/v1/session/list",
            "/v1/txn",
            "/v1/coordinate/nodes",
            "/v1/event/fire/deploy",
        ] {
            assert!(forwarded(p), "{p}");
        }
        for p in [
            "/v1/agent/members",
            "/v1/catalog/datacenters",
            "/v1/event/list",
            "/v1/status/leader",
            "/v1/coordinate/datacenters",
        ] {
            assert!(!forwarded(p), "{p}");
        }
    }
}
