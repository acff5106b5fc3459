//! Check runners against real endpoints the test starts on loopback: HTTP and TCP checks turn passing and
//! then critical when the endpoint stops, a UDP check tells a listening port from a refused one, gRPC
//! checks speak the standard health protocol, script checks map exit codes and are killed at their
//! timeout, alias checks follow what they alias, and script checks are refused unless enabled.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Agent, tmp, wait_for};

const SETTLE: Duration = Duration::from_secs(20);

/// A tiny HTTP server answering every request with `status` and body "ok", until stopped.
struct Web {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    port: u16,
}

impl Web {
    fn start(ip: &str, status: &'static str) -> Web {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(120);
            while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        let mut buf = [0u8; 4096];
                        let _ = s.read(&mut buf);
                        let reply = format!(
                            "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                        );
                        let _ = s.write_all(reply.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Web {
            stop,
            thread: Some(thread),
            port,
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        self.stop();
    }
}

fn check(a: &Agent, id: &str) -> Value {
    a.get_json("/v1/agent/checks")[id].clone()
}

fn status_becomes(a: &Agent, id: &str, want: &str) -> bool {
    wait_for(SETTLE, || check(a, id)["Status"] == want)
}

#[test]
fn http_tcp_udp_script_and_alias_checks_run_as_in_consul() {
    let dir = tmp("checks");
    let conf = dir.join("checks.d");
    std::fs::create_dir_all(&conf).unwrap();
    let mut web = Web::start("127.0.51.9", "200 OK");
    let busy = Web::start("127.0.51.9", "429 Too Many Requests");
    let udp_open = UdpSocket::bind("127.0.51.9:0").unwrap();
    let udp_closed = {
        let s = UdpSocket::bind("127.0.51.9:0").unwrap();
        s.local_addr().unwrap().port()
    };
    // The failing checks belong to another service: an alias of web counts web's checks and the
    // node's own (as Consul's does), not other services'.
    let defs = serde_json::json!({
        "services": [
            {
                "name": "web", "port": web.port,
                "checks": [
                    {"id": "web-http", "http": format!("http://127.0.51.9:{}/health", web.port), "interval": "1s"},
                    {"id": "web-tcp", "tcp": format!("127.0.51.9:{}", web.port), "interval": "1s"},
                ]
            },
            {
                "name": "misc",
                "checks": [
                    {"id": "busy", "name": "busy", "http": format!("http://127.0.51.9:{}/", busy.port), "interval": "1s"},
                    {"id": "udp-closed", "name": "udp-closed", "udp": format!("127.0.51.9:{udp_closed}"), "interval": "1s", "timeout": "1s"},
                    {"id": "script-warn", "name": "script-warn", "args": ["sh", "-c", "echo degraded; exit 1"], "interval": "1s"},
                    {"id": "script-hang", "name": "script-hang", "args": ["sleep", "30"], "interval": "1s", "timeout": "1s"},
                ]
            }
        ],
        "checks": [
            {"id": "udp-open", "name": "udp-open", "udp": format!("127.0.51.9:{}", udp_open.local_addr().unwrap().port()), "interval": "1s", "timeout": "1s"},
            {"id": "web-alias", "name": "web-alias", "alias_service": "web"},
        ]
    });
    std::fs::write(conf.join("checks.json"), defs.to_string()).unwrap();
    let a = Agent::start(
        "checker",
        "127.0.51.1",
        &dir,
        &[
            "-enable-local-script-checks",
            "-config-dir",
            conf.to_str().unwrap(),
        ],
    );

    // New checks start critical; each turns as its endpoint says.
    assert!(
        status_becomes(&a, "web-http", "passing"),
        "{}",
        check(&a, "web-http")
    );
    let out = check(&a, "web-http")["Output"].as_str().unwrap().to_owned();
    assert_eq!(
        out,
        format!(
            "HTTP GET http://127.0.51.9:{}/health: 200 OK Output: ok",
            web.port
        )
    );
    assert_eq!(check(&a, "web-http")["Type"], "http");
    assert_eq!(check(&a, "web-http")["Interval"], "1s");
    assert!(status_becomes(&a, "web-tcp", "passing"));
    assert_eq!(
        check(&a, "web-tcp")["Output"],
        format!("TCP connect 127.0.51.9:{}: Success", web.port)
    );
    assert!(status_becomes(&a, "busy", "warning"), "429 is a warning");
    assert!(status_becomes(&a, "udp-open", "passing"));
    assert!(status_becomes(&a, "script-warn", "warning"));
    assert_eq!(check(&a, "script-warn")["Output"], "degraded\n");
    assert!(
        status_becomes(&a, "web-alias", "passing"),
        "{}",
        check(&a, "web-alias")
    );
    assert_eq!(check(&a, "web-alias")["Output"], "All checks passing.");
    // A refused UDP port and a script that hangs past its timeout stay critical.
    assert!(wait_for(SETTLE, || check(&a, "udp-closed")["Output"]
        .as_str()
        .is_some_and(|o| o.ends_with(": connection refused"))));
    assert_eq!(check(&a, "udp-closed")["Status"], "critical");
    assert!(wait_for(SETTLE, || check(&a, "script-hang")["Output"]
        == "Timed out (1s) running check"));

    // The web server stops: HTTP and TCP go critical, and the alias follows.
    web.stop();
    assert!(status_becomes(&a, "web-http", "critical"));
    assert!(status_becomes(&a, "web-tcp", "critical"));
    // Go's words for the system's error, as Consul's output has them.
    assert_eq!(
        check(&a, "web-tcp")["Output"],
        format!(
            "dial tcp 127.0.51.9:{}: connect: connection refused",
            web.port
        )
    );
    assert!(status_becomes(&a, "web-alias", "critical"));
    assert!(
        check(&a, "web-alias")["Output"]
            .as_str()
            .unwrap()
            .starts_with("Aliased check"),
        "{}",
        check(&a, "web-alias")
    );
    // The catalog (what every agent answers from) shows it too.
    let health = a.get_json("/v1/health/checks/web");
    let http = health
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == "web-http")
        .cloned();
    assert!(
        wait_for(SETTLE, || {
            a.get_json("/v1/health/checks/web")
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["CheckID"] == "web-http" && c["Status"] == "critical")
        }),
        "{http:?}"
    );

    // Only the config dir may define script checks here; over the API they are refused as in Consul.
    let reg = r#"{"Name": "s", "Args": ["true"], "Interval": "10s"}"#;
    assert_eq!(
        a.http_body("PUT", "/v1/agent/check/register", reg),
        Some((
            500,
            "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' to true".into()
        ))
    );
    let bad = a
        .http_body(
            "PUT",
            "/v1/agent/check/register",
            r#"{"Name": "t", "TCP": "127.0.0.1:1"}"#,
        )
        .unwrap();
    assert_eq!(
        bad,
        (
            400,
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks".into()
        )
    );
}

/// Serves `ip:0` on a thread of its own for at most two minutes, handing each accepted connection to
/// `handle` (spawned); returns the port.
fn serve_on_thread<F, Fut>(ip: &str, handle: F) -> u16
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let ip = ip.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind((ip.as_str(), 0))
                .await
                .unwrap();
            tx.send(l.local_addr().unwrap().port()).unwrap();
            let serve = async {
                loop {
                    if let Ok((s, _)) = l.accept().await {
                        tokio::spawn(handle(s));
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(120), serve).await;
        });
    });
    rx.recv().unwrap()
}

/// A gRPC server answering `grpc.health.v1.Health/Check`: SERVING for the whole server and for "web",
/// NOT_SERVING for anything else. Runs on its own thread for at most two minutes.
fn grpc_health_server(ip: &str) -> u16 {
    use bytes::Bytes;
    use hyper::body::{Body, Frame};
    use std::pin::Pin;
    use std::task::{Context, Poll};

    struct Reply(Option<Bytes>, Option<hyper::HeaderMap>);
    impl Body for Reply {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if let Some(d) = self.0.take() {
                return Poll::Ready(Some(Ok(Frame::data(d))));
            }
            Poll::Ready(self.1.take().map(|t| Ok(Frame::trailers(t))))
        }
    }

    serve_on_thread(ip, |s| async move {
        let svc =
            hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                use http_body_util::BodyExt;
                let body = req.into_body().collect().await.unwrap().to_bytes();
                // The request frame: 5-byte prefix, then field 1 (the service name) if any.
                let service = body
                    .get(7..)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                let status = if service.is_empty() || service == "web" {
                    1
                } else {
                    2
                };
                let frame = Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]);
                let mut trailers = hyper::HeaderMap::new();
                trailers.insert("grpc-status", "0".parse().unwrap());
                let resp = hyper::Response::builder()
                    .header("content-type", "application/grpc")
                    .body(Reply(Some(frame), Some(trailers)))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(resp)
            });
        let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
            .await;
    })
}

#[test]
fn grpc_checks_speak_the_standard_health_protocol() {
    let dir = tmp("grpc");
    let port = grpc_health_server("127.0.51.8");
    let a = Agent::start("grpc-checker", "127.0.51.2", &dir, &[]);
    let put = |body: String| {
        a.http_body("PUT", "/v1/agent/check/register", &body)
            .map(|r| r.0)
    };
    for (id, target) in [
        ("g-server", format!("127.0.51.8:{port}")),
        ("g-web", format!("127.0.51.8:{port}/web")),
        ("g-db", format!("127.0.51.8:{port}/db")),
    ] {
        let body = serde_json::json!({"Name": id, "GRPC": target, "Interval": "1s"});
        assert_eq!(put(body.to_string()), Some(200));
    }
    assert!(
        status_becomes(&a, "g-server", "passing"),
        "{}",
        check(&a, "g-server")
    );
    assert!(wait_for(SETTLE, || check(&a, "g-web")["Output"]
        == format!("gRPC check 127.0.51.8:{port}/web: success")));
    assert!(status_becomes(&a, "g-db", "critical"));
    assert!(wait_for(SETTLE, || check(&a, "g-db")["Output"]
        == format!(
            "gRPC 127.0.51.8:{port}/db serving status: NOT_SERVING"
        )));
    assert_eq!(check(&a, "g-db")["Type"], "grpc");
}

/// An HTTPS server with a self-signed certificate answering 200 "ok"; runs for at most two minutes.
fn https_server(ip: &str) -> u16 {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = CertificateDer::from(ck.cert.der().to_vec());
    let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    serve_on_thread(ip, move |s| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(mut tls) = acceptor.accept(s).await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = tls.read(&mut buf).await;
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .await;
            let _ = tls.shutdown().await;
        }
    })
}

#[test]
fn https_checks_verify_certificates_unless_told_not_to() {
    let dir = tmp("https");
    let port = https_server("127.0.51.7");
    let a = Agent::start("https-checker", "127.0.51.3", &dir, &[]);
    let url = format!("https://127.0.51.7:{port}/health");
    for (id, skip) in [("skip", true), ("verify", false)] {
        let body =
            serde_json::json!({"Name": id, "HTTP": url, "Interval": "1s", "TLSSkipVerify": skip});
        assert_eq!(
            a.http_body("PUT", "/v1/agent/check/register", &body.to_string())
                .map(|r| r.0),
            Some(200)
        );
    }
    assert!(
        status_becomes(&a, "skip", "passing"),
        "{}",
        check(&a, "skip")
    );
    assert_eq!(
        check(&a, "skip")["Output"],
        format!("HTTP GET {url}: 200 OK Output: ok")
    );
    // A self-signed certificate is no proof of identity: without tls_skip_verify the check fails.
    assert!(
        wait_for(SETTLE, || check(&a, "verify")["Output"]
            .as_str()
            .is_some_and(|o| o.contains("certificate"))),
        "{}",
        check(&a, "verify")
    );
    assert_eq!(check(&a, "verify")["Status"], "critical");
}
