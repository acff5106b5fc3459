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
        "/v1/internal/ui/",
        "/v1/kv/",
        "/v1/session/",
        "/v1/txn",
        "/v1/coordinate/nodes",
        "/v1/coordinate/node/",
        "/v1/event/fire/",
        "/v1/status/",
        "/v1/operator/raft/",
        "/v1/operator/autopilot/",
    ];
    PREFIXES.iter().any(|p| path.starts_with(p)) && !asked_of_own_servers(path)
}

/// What a client asks of its own datacenter's servers (they know the WAN pool).
fn asked_of_own_servers(path: &str) -> bool {
    path == "/v1/catalog/datacenters" || path == "/v1/coordinate/datacenters"
}

/// Whether a request that arrived over the server transport may be answered here: only the routes a
/// forward can carry. Whoever can reach the server port must not reach the rest of the API through it
/// (the agent's own endpoints, keyring, snapshots, script checks), which the HTTP listener keeps to
/// `client_addr`.
fn answerable(path: &str) -> bool {
    forwarded(path) || asked_of_own_servers(path)
}

/// Middleware: sends a request whose `dc` names another datacenter there; takes `dc` out of the rest,
/// so handlers see no datacenter but this one.
pub(super) async fn forward_dc(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    if !forwarded(req.uri().path()) {
        return next.run(req).await;
    }
    let query = req.uri().query().unwrap_or("");
    let (dc, rest) = split_dc(query);
    match dc {
        Some(dc) if dc != s.state.local.datacenter => match relay(&s, dc, req, rest).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        },
        _ => match without_query(req, &rest) {
            Ok(req) => next.run(req).await,
            Err(e) => e.into_response(),
        },
    }
}

/// `req` with its query string replaced by `query`.
fn without_query(req: Request, query: &str) -> Result<Request, ApiError> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path();
    let uri = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    };
    parts.uri = uri
        .parse()
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, "invalid request URI".into()))?;
    Ok(Request::from_parts(parts, body))
}

/// The headers an answer carries from one agent to another: its type and Consul's own.
fn carried(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-type") || name.to_ascii_lowercase().starts_with("x-consul-")
}

/// On a client, `req` answered by a server of its own datacenter (which knows the WAN pool); `None` on
/// a server, which answers itself.
pub(super) async fn on_own_servers(
    s: &ApiState,
    req: Request,
) -> Result<Option<Response>, ApiError> {
    if s.state.local.server {
        return Ok(None);
    }
    let query = req.uri().query().unwrap_or("").to_string();
    let own = s.state.local.datacenter.clone();
    relay(s, own, req, query).await.map(Some)
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

/// The forwarded answer as this agent's response: a status outside 200-599 is a 502, and only the
/// headers [`carried`] are kept (framing headers such as `Content-Length` are this agent's to set).
fn response(a: HttpResponse) -> Response {
    let status = StatusCode::from_u16(a.status)
        .ok()
        .filter(|s| (200..600).contains(&s.as_u16()))
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let mut r = (status, a.body).into_response();
    let headers = r.headers_mut();
    headers.remove(axum::http::header::CONTENT_TYPE);
    for (k, v) in a.headers.into_iter().filter(|(k, _)| carried(k)) {
        if let (Ok(k), Ok(v)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            headers.append(k, v);
        }
    }
    r
}

/// Answers a request forwarded from another datacenter (or a client's request for this one's
/// servers) with this agent's own handlers, if its route is one a forward can carry. It is answered
/// here whatever `dc` it names: a forwarded request is never passed on again.
pub async fn answer_here(router: axum::Router, req: HttpRequest) -> HttpResponse {
    let fail = |status: StatusCode, msg: String| HttpResponse {
        status: status.as_u16(),
        headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
        body: msg.into_bytes(),
    };
    if !answerable(&req.path) {
        return fail(
            StatusCode::FORBIDDEN,
            format!("{} is not answered for another agent", req.path),
        );
    }
    let (_, query) = split_dc(&req.query);
    let uri = if query.is_empty() {
        req.path.clone()
    } else {
        format!("{}?{query}", req.path)
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
            "/v1/coordinate/datacenters",
            "/v1/snapshot",
            "/v1/operator/keyring",
        ] {
            assert!(!forwarded(p), "{p}");
        }
        assert!(forwarded("/v1/status/leader"));
        assert!(answerable("/v1/catalog/datacenters"));
    }

    fn router() -> axum::Router {
        use axum::routing::{get, put};
        axum::Router::new()
            .route(
                "/v1/kv/{*key}",
                get(|uri: axum::http::Uri| async move {
                    (
                        [("x-consul-index", "7"), ("set-cookie", "a=b")],
                        uri.query().unwrap_or("").to_string(),
                    )
                }),
            )
            .route("/v1/agent/leave", put(|| async { "left" }))
    }

    fn request(path: &str, query: &str) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            path: path.into(),
            query: query.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    #[tokio::test]
    async fn only_forwardable_routes_are_answered_and_never_passed_on() {
        let mut leave = request("/v1/agent/leave", "");
        leave.method = "PUT".into();
        let r = answer_here(router(), leave).await;
        assert_eq!(r.status, 403);
        let r = answer_here(router(), request("/v1/kv/a", "dc=dc3&recurse")).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body, b"recurse",
            "the dc parameter is gone: answered here"
        );
        let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert!(names.contains(&"x-consul-index"), "{names:?}");
        assert!(!names.contains(&"set-cookie"), "{names:?}");
    }

    #[test]
    fn a_forwarded_answer_keeps_consul_s_headers_only() {
        let r = response(HttpResponse {
            status: 101,
            headers: vec![
                ("X-Consul-Index".into(), "9".into()),
                ("content-length".into(), "99999".into()),
                ("transfer-encoding".into(), "chunked".into()),
                ("content-type".into(), "application/json".into()),
            ],
            body: b"[]".to_vec(),
        });
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(r.headers()["x-consul-index"], "9");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert!(r.headers().get("transfer-encoding").is_none());
        assert_ne!(
            r.headers()
                .get("content-length")
                .map(|v| v.to_str().unwrap()),
            Some("99999")
        );
    }
}
