//! The HTTP listener: accepts connections, caps them per client address (Consul's
//! `limits.http_max_conns_per_client`, answered 429 past the cap), bounds how long a client may take to
//! send a request head, and drains connections on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::util::connlimit::ConnLimiter;

/// How long a client may take to send a whole request head, and how long an idle keep-alive connection
/// stays open waiting for the next one (a partial request otherwise holds a socket forever).
pub const READ_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for requests in flight (blocking queries are cut short after it).
const DRAIN: Duration = Duration::from_secs(2);
/// Pause after an accept error such as running out of file descriptors, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Consul's text for a client over its connection cap.
pub const TOO_MANY_TEXT: &str = "Your IP is issuing too many queries.";

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limiter: Arc<ConnLimiter>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(READ_HEADER_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(guard) = limiter.try_acquire(peer.ip()) else {
            tokio::spawn(refuse(stream, peer));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client going away mid-request is routine, not an error worth a log line.
            if let Err(e) = conn.await {
                debug!("HTTP connection from {peer}: {e}");
            }
            drop(guard);
        });
    }
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
}

/// Answers a connection over the client's cap with 429 and closes it, as Consul does.
async fn refuse(mut stream: TcpStream, peer: SocketAddr) {
    debug!("HTTP connection from {peer} refused: over limits.http_max_conns_per_client");
    let _ = tokio::time::timeout(DRAIN, async {
        let reply = format!(
            "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{TOO_MANY_TEXT}",
            TOO_MANY_TEXT.len()
        );
        let _ = stream.write_all(reply.as_bytes()).await;
        let _ = stream.shutdown().await;
        // Lingering close: read what the client still sends until it closes too. Closing with unread
        // bytes makes the kernel reset the connection, which can destroy the 429 before it is read.
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}
