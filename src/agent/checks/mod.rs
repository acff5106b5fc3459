//! The check runners: one task per interval check (HTTP, TCP, UDP, gRPC, script) and per alias check,
//! started and stopped as definitions come and go. Each run is bounded by its timeout; results go
//! through the registry's thresholds ([`LocalServices::record_result`]). A runner never blocks the agent:
//! it is its own task, and a thousand of them are a thousand sleeping timers.
//!
//! One file per kind: `http.rs`, `tcp.rs` (TCP and UDP), `script.rs`, `grpc.rs`, `alias.rs`.

mod alias;
mod grpc;
mod http;
mod script;
mod tcp;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::state::catalog::Catalog;
use crate::state::definitions::{CheckDef, CheckKind, Status};
use crate::state::local_services::{LocalServices, MAX_OUTPUT};
use crate::state::members::MemberTable;
use crate::util::addr::bare_host;
use crate::util::duration::go_string;

/// What an alias check reads besides this agent's registry.
#[derive(Clone)]
pub struct ClusterView {
    /// This node's name.
    pub node: String,
    /// Every node's published services and checks.
    pub catalog: Arc<Catalog>,
    /// Members (a node's `serfHealth`).
    pub members: Arc<MemberTable>,
}

/// One run's result.
pub type Outcome = (Status, String);

/// Keeps one runner per check until the registry goes away.
pub async fn supervise(services: Arc<LocalServices>, view: ClusterView) {
    let mut defs = services.definitions.subscribe();
    let mut running: HashMap<String, (CheckDef, JoinHandle<()>)> = HashMap::new();
    loop {
        let wanted: HashMap<String, CheckDef> = services
            .checks()
            .into_iter()
            .filter(|c| {
                c.def.kind.runs_on_interval() || matches!(c.def.kind, CheckKind::Alias { .. })
            })
            .map(|c| (c.def.id.clone(), c.def))
            .collect();
        running.retain(|id, (def, task)| {
            let keep = wanted.get(id) == Some(def);
            if !keep {
                task.abort();
            }
            keep
        });
        for (id, def) in wanted {
            if running.contains_key(&id) {
                continue;
            }
            let task = match def.kind {
                CheckKind::Alias { .. } => {
                    tokio::spawn(alias::run(services.clone(), view.clone(), def.clone()))
                }
                _ => tokio::spawn(run_interval(services.clone(), def.clone())),
            };
            running.insert(id, (def, task));
        }
        if defs.changed().await.is_err() {
            break;
        }
    }
    for (_, (_, task)) in running {
        task.abort();
    }
}

/// Runs an interval check: first after a random part of the interval (so checks registered together
/// do not run together, as Consul staggers them), then an interval after each run ends.
async fn run_interval(services: Arc<LocalServices>, def: CheckDef) {
    let interval = def.schedule.interval;
    let stagger = crate::util::entropy::u64().unwrap_or(0) % (interval.as_millis().max(1) as u64);
    tokio::time::sleep(Duration::from_millis(stagger)).await;
    loop {
        let (status, output) = run_once(&def.kind, def.schedule.timeout).await;
        services.record_result(&def.id, status, &output, std::time::Instant::now());
        tokio::time::sleep(interval).await;
    }
}

/// One run of an interval check, bounded by `timeout` whatever the kind does.
pub async fn run_once(kind: &CheckKind, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let run = async {
        match kind {
            CheckKind::Http(p) => http::check(p, deadline).await,
            CheckKind::Tcp(addr) => tcp::check_tcp(addr, deadline).await,
            CheckKind::Udp(addr) => tcp::check_udp(addr, deadline).await,
            CheckKind::Grpc {
                target,
                tls,
                tls_skip_verify,
            } => grpc::check(target, *tls, *tls_skip_verify, deadline).await,
            CheckKind::Script(args) => script::check(args, timeout).await,
            CheckKind::Ttl(_) | CheckKind::Alias { .. } | CheckKind::Maintenance => {
                (Status::Critical, "not an interval check".into())
            }
        }
    };
    // Script checks kill their process at the timeout themselves (and say so); this bounds the rest.
    let limit = match kind {
        CheckKind::Script(_) => timeout + Duration::from_secs(1),
        _ => timeout,
    };
    match tokio::time::timeout(limit, run).await {
        Ok(outcome) => outcome,
        Err(_) => (
            Status::Critical,
            format!("Timed out ({}) running check", go_string(timeout)),
        ),
    }
}

/// A system error as Go prints a syscall errno ("connection refused"), where Rust's text reads
/// "Connection refused (os error 111)": check outputs keep Consul's words.
pub fn go_errno(e: &std::io::Error) -> String {
    let text = e.to_string();
    let Some(code) = e.raw_os_error() else {
        return text;
    };
    let bare = text
        .strip_suffix(&format!(" (os error {code})"))
        .unwrap_or(&text);
    let mut chars = bare.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// TLS over a check's connection to `host`, verified against the system's roots unless `skip_verify`,
/// offering `alpn`.
pub async fn tls_connect(
    tcp: TcpStream,
    host: &str,
    skip_verify: bool,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let cfg = crate::net::tls::check_client(skip_verify, alpn)?;
    let name = rustls::pki_types::ServerName::try_from(bare_host(host).to_owned())
        .map_err(|e| format!("tls: {e}"))?;
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))
}

/// The last `MAX_OUTPUT` bytes of a stream, as Consul's circular buffer keeps them.
#[derive(Default)]
pub struct Tail {
    buf: std::collections::VecDeque<u8>,
    total: usize,
}

impl Tail {
    /// Appends bytes, dropping the oldest beyond the cap.
    pub fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len();
        self.buf.extend(bytes);
        while self.buf.len() > MAX_OUTPUT {
            self.buf.pop_front();
        }
    }

    /// Bytes seen in all.
    pub fn total(&self) -> usize {
        self.total
    }

    /// What is kept, as text.
    pub fn text(&self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut v = a.to_vec();
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_errors_read_as_go_prints_them() {
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(go_errno(&refused), "connection refused");
        let unreachable = std::io::Error::from_raw_os_error(libc::ENETUNREACH);
        assert_eq!(go_errno(&unreachable), "network is unreachable");
        let other = std::io::Error::other("Something else");
        assert_eq!(go_errno(&other), "Something else");
    }
}
