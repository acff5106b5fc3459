//! HTTP checks as Consul runs them: the configured method, headers and body; redirects followed unless
//! `disable_redirects`; 2xx passing, 429 warning, anything else critical; the output names the request
//! and the status and keeps the last 4 KB of the body. Each run makes a fresh connection (Consul
//! disables keep-alives for checks).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::{Outcome, Tail};
use crate::state::definitions::{HttpProbe, Status};
use crate::util::addr::bare_host;

/// Consul's User-Agent for checks.
const USER_AGENT: &str = "Consul Health Check";
/// Consul's Accept for checks.
const ACCEPT: &str = "text/plain, text/*, */*";
/// Redirects followed, as Go's client does.
const MAX_REDIRECTS: usize = 10;

/// Runs the check.
pub async fn check(p: &HttpProbe, deadline: Instant) -> Outcome {
    match request(p, deadline).await {
        Ok((code, body)) => {
            let status = match code.as_u16() {
                200..=299 => Status::Passing,
                429 => Status::Warning,
                _ => Status::Critical,
            };
            let reason = code.canonical_reason().unwrap_or("");
            let out = format!(
                "HTTP {} {}: {} {reason} Output: {body}",
                p.method,
                p.url,
                code.as_u16()
            );
            (status, out)
        }
        Err(e) => (Status::Critical, e),
    }
}

/// The final status and body tail, following redirects.
async fn request(p: &HttpProbe, deadline: Instant) -> Result<(StatusCode, String), String> {
    let go_method = capitalized(&p.method);
    let fail = |url: &Uri, e: String| format!("{go_method} \"{url}\": {e}");
    let mut url: Uri = p
        .url
        .parse()
        .map_err(|e| format!("parse \"{}\": {e}", p.url))?;
    let mut method = Method::from_bytes(p.method.as_bytes())
        .map_err(|_| format!("net/http: invalid method {:?}", p.method))?;
    let mut body = p.body.clone();
    for _ in 0..=MAX_REDIRECTS {
        let (code, location, tail) =
            match timeout_at(deadline, once(&url, &method, p, &body, deadline)).await {
                Ok(r) => r.map_err(|e| fail(&url, e))?,
                Err(_) => {
                    return Err(fail(
                    &url,
                    "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                        .into(),
                ));
                }
            };
        let redirect = matches!(code.as_u16(), 301 | 302 | 303 | 307 | 308);
        match location {
            Some(loc) if redirect && !p.disable_redirects => {
                url = resolve(&url, &loc).map_err(|e| fail(&url, e))?;
                if matches!(code.as_u16(), 301..=303)
                    && method != Method::GET
                    && method != Method::HEAD
                {
                    method = Method::GET;
                    body.clear();
                }
            }
            _ => return Ok((code, tail.text())),
        }
    }
    Err(fail(
        &url,
        format!("stopped after {MAX_REDIRECTS} redirects"),
    ))
}

fn capitalized(m: &str) -> String {
    let mut c = m.chars();
    match c.next() {
        Some(f) => f
            .to_uppercase()
            .chain(c.flat_map(|x| x.to_lowercase()))
            .collect(),
        None => String::new(),
    }
}

/// A redirect's `Location`, absolute or relative to `base`.
fn resolve(base: &Uri, loc: &str) -> Result<Uri, String> {
    if loc.contains("://") {
        return loc
            .parse()
            .map_err(|e| format!("bad Location {loc:?}: {e}"));
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or("");
    let path = if loc.starts_with('/') {
        loc.to_owned()
    } else {
        let dir = base.path().rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{loc}")
    };
    format!("{scheme}://{authority}{path}")
        .parse()
        .map_err(|e| format!("bad Location {loc:?}: {e}"))
}

/// One request on a fresh connection: status, `Location` and the body's tail.
async fn once(
    url: &Uri,
    method: &Method,
    p: &HttpProbe,
    body: &str,
    deadline: Instant,
) -> Result<(StatusCode, Option<String>, Tail), String> {
    let https = match url.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        other => {
            return Err(format!(
                "unsupported protocol scheme {:?}",
                other.unwrap_or("")
            ));
        }
    };
    let host = url.host().ok_or("no Host in request URL")?.to_owned();
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((bare_host(&host), port))
        .await
        .map_err(|e| format!("dial tcp {host}:{port}: connect: {}", super::go_errno(&e)))?;
    if https {
        let tls = super::tls_connect(tcp, &host, p.tls_skip_verify, &[b"http/1.1"]).await?;
        exchange(tls, url, method, p, body, deadline).await
    } else {
        exchange(tcp, url, method, p, body, deadline).await
    }
}

async fn exchange<S>(
    io: S,
    url: &Uri,
    method: &Method,
    p: &HttpProbe,
    body: &str,
    deadline: Instant,
) -> Result<(StatusCode, Option<String>, Tail), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = url.path_and_query().map_or("/", |pq| pq.as_str());
    let mut req = Request::builder()
        .method(method.clone())
        .uri(path)
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| e.to_string())?;
    let h = req.headers_mut();
    for (k, values) in &p.header {
        let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else {
            return Err(format!("invalid header name {k:?}"));
        };
        for v in values {
            let v =
                HeaderValue::from_str(v).map_err(|_| format!("invalid value for header {k:?}"))?;
            h.append(name.clone(), v);
        }
    }
    if !h.contains_key(hyper::header::HOST)
        && let Some(a) = url.authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        h.insert(hyper::header::HOST, v);
    }
    for (k, v) in [
        (hyper::header::USER_AGENT, USER_AGENT),
        (hyper::header::ACCEPT, ACCEPT),
    ] {
        if !h.contains_key(&k) {
            h.insert(k, HeaderValue::from_static(v));
        }
    }
    h.insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let code = resp.status();
    let location = resp
        .headers()
        .get(hyper::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut tail = Tail::default();
    let mut body = resp.into_body();
    loop {
        match timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    tail.push(d);
                }
            }
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) | Err(_) => break,
        }
    }
    Ok((code, location, tail))
}
