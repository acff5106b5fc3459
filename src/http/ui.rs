//! The web UI at `/ui/` (`-ui`, `ui_config { enabled, content_path }`, on with `-dev`): three files built
//! into the binary, so the UI needs no network access, no CDN and no files beside the agent. `/`
//! redirects to it when it is on, and answers Consul's "UI disabled" text when it is off; any other path
//! outside the API gets Consul's 404 text.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The UI's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSettings {
    /// Serve the UI (`ui_config.enabled`, `-ui`).
    pub enabled: bool,
    /// Where it is served, with a slash at each end (`ui_config.content_path`, default `/ui/`).
    pub content_path: String,
}

impl Default for UiSettings {
    fn default() -> Self {
        UiSettings {
            enabled: false,
            content_path: "/ui/".into(),
        }
    }
}

/// `content_path` as Consul normalizes it: one slash at each end; empty means `/ui/`. Refused: characters
/// a URL path would need escaped or a route pattern reads as syntax, and paths the API owns.
pub fn content_path(given: &str) -> Result<String, String> {
    let inner = given.trim_matches('/');
    if inner.is_empty() {
        return Ok("/ui/".into());
    }
    let plain = inner
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b));
    let segments_ok = inner
        .split('/')
        .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if !plain || !segments_ok {
        return Err(format!(
            "ui_config.content_path {given:?}: use letters, digits, '-', '.', '_', '~' and single '/'"
        ));
    }
    if inner == "v1" || inner.starts_with("v1/") {
        return Err(format!(
            "ui_config.content_path {given:?}: /v1/ is the HTTP API's"
        ));
    }
    Ok(format!("/{inner}/"))
}

/// The UI's files: name, media type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("ui_assets/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("ui_assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("ui_assets/app.css"),
    ),
];

/// The page may load only its own files and talk only to its own agent: data shown in it can never
/// pull in a script or leak to another origin.
const CSP: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

fn asset(name: &str) -> Response {
    let name = if name.is_empty() { "index.html" } else { name };
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CSP),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            *body,
        )
            .into_response(),
        None => not_found(),
    }
}

/// A 301, as Consul answers `/` with the UI on.
fn moved(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(v) => (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, v)]).into_response(),
        Err(_) => not_found(),
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

/// Consul's answer to a path that is not part of the API.
async fn fallback(uri: Uri) -> Response {
    let text = if uri.path().contains("/v1/") {
        "Invalid URL path: not a recognized HTTP API endpoint\n"
    } else {
        "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n"
    };
    (StatusCode::NOT_FOUND, text).into_response()
}

/// The API router with `/`, the UI (when on) and the 404 for everything else.
pub fn with_ui(api: Router, ui: &UiSettings) -> Router {
    let root = if ui.enabled {
        let to = ui.content_path.clone();
        Router::new().route("/", get(move || async move { moved(&to) }))
    } else {
        Router::new().route(
            "/",
            get(|| async {
                "murmur agent: UI disabled. To enable, set ui_config.enabled=true in the agent \
                 configuration and restart."
            }),
        )
    };
    let mut r = api.merge(root);
    if ui.enabled {
        let base = ui.content_path.trim_end_matches('/');
        r = r
            .route(&format!("{base}/"), get(|| async { asset("") }))
            .route(
                &format!("{base}/{{*file}}"),
                get(|Path(f): Path<String>| async move { asset(&f) }),
            );
        // The path without its last slash redirects, as a file server does.
        let to = ui.content_path.clone();
        r = r.route(base, get(move || async move { moved(&to) }));
    }
    r.fallback(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_path(r: &Router, path: &str) -> (StatusCode, Option<String>, String) {
        let resp = r
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let loc = resp
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, loc, String::from_utf8(body.to_vec()).unwrap())
    }

    #[test]
    fn content_paths_are_normalized_as_consul_does() {
        let ok = |p: &str| content_path(p).unwrap();
        assert_eq!(ok(""), "/ui/");
        assert_eq!(ok("/"), "/ui/");
        assert_eq!(ok("console"), "/console/");
        assert_eq!(ok("/a/b/"), "/a/b/");
        for bad in ["v1/kv", "/v1/", "a/{x}", "a//b", "a/../b", "a b"] {
            assert!(content_path(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn ui_on_serves_its_files_and_redirects_the_root() {
        let ui = UiSettings {
            enabled: true,
            content_path: content_path("console").unwrap(),
        };
        let r = with_ui(Router::new(), &ui);
        let (st, loc, _) = get_path(&r, "/").await;
        assert_eq!(
            (st, loc.as_deref()),
            (StatusCode::MOVED_PERMANENTLY, Some("/console/"))
        );
        let (st, _, body) = get_path(&r, "/console/").await;
        assert_eq!(st, StatusCode::OK);
        assert!(body.contains("<script src=\"app.js\""), "{body}");
        let (st, _, body) = get_path(&r, "/console/app.js").await;
        assert_eq!(st, StatusCode::OK);
        assert!(body.contains("internal/ui/nodes"));
        assert_eq!(
            get_path(&r, "/console/nope.js").await.0,
            StatusCode::NOT_FOUND
        );
        let (st, loc, _) = get_path(&r, "/console").await;
        assert_eq!(
            (st, loc.as_deref()),
            (StatusCode::MOVED_PERMANENTLY, Some("/console/"))
        );
        // The default path is not served when another was configured.
        assert_eq!(get_path(&r, "/ui/").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn ui_off_says_so_and_other_paths_get_consuls_404() {
        let r = with_ui(Router::new(), &UiSettings::default());
        let (st, _, body) = get_path(&r, "/").await;
        assert_eq!(st, StatusCode::OK);
        assert!(body.contains("UI disabled"), "{body}");
        let (st, _, body) = get_path(&r, "/ui/").await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert!(
            body.contains("ensure the path starts with '/v1/'"),
            "{body}"
        );
        let (_, _, body) = get_path(&r, "/v1/nothing/here").await;
        assert!(
            body.contains("not a recognized HTTP API endpoint"),
            "{body}"
        );
    }
}
