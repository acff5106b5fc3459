//! gRPC checks: the standard health protocol (`grpc.health.v1.Health/Check`) over HTTP/2, with TLS when
//! `grpc_use_tls`. The target is `host:port` or `host:port/service`; only SERVING is passing.
//!
//! The two messages are encoded by hand (a string field out, an enum field back): a gRPC stack with a
//! protobuf code generator would be the larger part of the agent's dependencies for them.

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::Outcome;
use crate::state::definitions::Status;

/// The health RPC's path.
const PATH: &str = "/grpc.health.v1.Health/Check";
/// Largest response message read.
const MAX_MESSAGE: usize = 4096;

/// Runs the check against `target`.
pub async fn check(target: &str, tls: bool, skip_verify: bool, deadline: Instant) -> Outcome {
    let (addr, service) = target.split_once('/').unwrap_or((target, ""));
    match timeout_at(deadline, call(addr, service, tls, skip_verify)).await {
        Ok(Ok(1)) => (Status::Passing, format!("gRPC check {target}: success")),
        Ok(Ok(code)) => (
            Status::Critical,
            format!("gRPC {target} serving status: {}", serving_name(code)),
        ),
        Ok(Err(e)) => (Status::Critical, e),
        Err(_) => (
            Status::Critical,
            "rpc error: code = DeadlineExceeded desc = context deadline exceeded".into(),
        ),
    }
}

fn serving_name(code: u64) -> &'static str {
    match code {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "UNKNOWN",
    }
}

/// `HealthCheckRequest { service = 1 }` in a gRPC frame.
fn request_frame(service: &str) -> Vec<u8> {
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a);
        put_varint(&mut msg, service.len() as u64);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    frame
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The `status` (field 1) of a `HealthCheckResponse` frame; unknown fields are skipped.
pub fn serving_status(frame: &[u8]) -> Result<u64, String> {
    let bad = || "rpc error: code = Internal desc = malformed health response".to_string();
    if frame.len() < 5 || frame[0] != 0 {
        return Err(bad());
    }
    let n = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    let mut m = frame.get(5..5 + n).ok_or_else(bad)?;
    let mut status = 0;
    while !m.is_empty() {
        let key = varint(&mut m).ok_or_else(bad)?;
        match key & 7 {
            0 => {
                let v = varint(&mut m).ok_or_else(bad)?;
                if key >> 3 == 1 {
                    status = v;
                }
            }
            2 => {
                let len = varint(&mut m).ok_or_else(bad)? as usize;
                m = m.get(len..).ok_or_else(bad)?;
            }
            5 => m = m.get(4..).ok_or_else(bad)?,
            1 => m = m.get(8..).ok_or_else(bad)?,
            _ => return Err(bad()),
        }
    }
    Ok(status)
}

async fn call(addr: &str, service: &str, tls: bool, skip_verify: bool) -> Result<u64, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("rpc error: code = Unavailable desc = dial tcp {addr}: {e}"))?;
    if tls {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let stream = super::tls_connect(tcp, host, skip_verify, &[b"h2"])
            .await
            .map_err(|e| format!("rpc error: code = Unavailable desc = {e}"))?;
        rpc(stream, "https", addr, service).await
    } else {
        rpc(tcp, "http", addr, service).await
    }
}

async fn rpc<S>(io: S, scheme: &str, addr: &str, service: &str) -> Result<u64, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let unavailable = |e: hyper::Error| format!("rpc error: code = Unavailable desc = {e}");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .map_err(unavailable)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::builder()
        .method("POST")
        .uri(format!("{scheme}://{addr}{PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "Consul Health Check")
        .body(Full::new(Bytes::from(request_frame(service))))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(unavailable)?;
    if !resp.status().is_success() {
        return Err(format!(
            "rpc error: code = Unknown desc = unexpected HTTP status code received from server: {}",
            resp.status().as_u16()
        ));
    }
    // A trailers-only answer carries grpc-status in the headers.
    let mut grpc_status = resp.headers().get("grpc-status").cloned();
    let mut grpc_message = resp.headers().get("grpc-message").cloned();
    let mut body = resp.into_body();
    let mut message = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(unavailable)?;
        match frame.into_data() {
            Ok(mut d) => {
                if message.len() + d.remaining() > MAX_MESSAGE {
                    return Err(
                        "rpc error: code = ResourceExhausted desc = response too large".into(),
                    );
                }
                message.extend_from_slice(&d.copy_to_bytes(d.remaining()));
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    grpc_status = t.get("grpc-status").cloned().or(grpc_status);
                    grpc_message = t.get("grpc-message").cloned().or(grpc_message);
                }
            }
        }
    }
    let code = grpc_status
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(2);
    if code != 0 {
        let desc = grpc_message
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        return Err(format!(
            "rpc error: code = {} desc = {desc}",
            code_name(code)
        ));
    }
    serving_status(&message)
}

fn code_name(code: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES.get(code as usize).copied().unwrap_or("Unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_messages_encode_and_decode() {
        assert_eq!(request_frame(""), [0, 0, 0, 0, 0]);
        assert_eq!(
            request_frame("web"),
            [0, 0, 0, 0, 5, 0x0a, 3, b'w', b'e', b'b']
        );
        assert_eq!(serving_status(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(1));
        assert_eq!(
            serving_status(&[0, 0, 0, 0, 0]),
            Ok(0),
            "an empty message is UNKNOWN"
        );
        // An unknown string field before the status is skipped.
        assert_eq!(
            serving_status(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 2]),
            Ok(2)
        );
        for bad in [
            &[][..],
            &[1, 0, 0, 0, 0],
            &[0, 0, 0, 0, 9, 0x08],
            &[0, 0, 0, 0, 1, 0x0b],
        ] {
            assert!(serving_status(bad).is_err(), "{bad:?}");
        }
    }
}
