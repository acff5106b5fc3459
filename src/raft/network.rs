//! The server transport: QUIC on the server port (`-server-port`, 8300), with the cluster's TLS (mutual
//! when configured; server names checked with `verify_server_hostname`). Connections are kept per peer
//! and each request takes its own bi-directional stream, so a long blocking read never holds up a
//! heartbeat. Also openraft's [`RaftNetworkFactory`] over it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::AnyError;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tokio::sync::Semaphore;

use super::rpc::{self, Answer, MAX_FRAME, Rpc};
use super::{ServerNode, TypeConfig};
use crate::net::quic::{read_frame, write_frame};
use crate::net::tls::{self, TlsSettings};
use crate::util::files::{Access, read_or_create};

/// How long a small request may go unacknowledged by the peer's QUIC stack before the peer counts as
/// gone (so the request goes to another server or waits for a new leader). A live peer acknowledges
/// in a round trip plus its ack delay (25 ms); a peer that crashed never does, and waiting for QUIC's
/// idle timeout instead would hold every request sent to it for seconds. A late acknowledgement can
/// still mean the request arrived: resending is safe because raft's own RPCs are idempotent, reads
/// have no effect, and writes carry an ID the state machine applies once (`raft::command`).
const DELIVERY: Duration = Duration::from_millis(500);
/// Bytes a large request may take per millisecond on top of [`DELIVERY`] (10 MB/s: a batch of entries
/// at the value limit is not taken for a dead peer on a slow link).
const DELIVERY_BYTES_PER_MS: usize = 10_000;
/// Longest connection handshake.
const CONNECT: Duration = Duration::from_millis(500);

/// Connections served at once; more are refused. Every client agent keeps one to each server it
/// forwarded to (kept alive for its blocking reads), so this is sized for thousands of clients; an
/// idle QUIC connection costs a few kilobytes.
const MAX_CONNECTIONS: usize = 16_384;
/// Streams one connection may have open: concurrent RPCs, blocking reads included.
const MAX_STREAMS: u32 = 4096;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No connection could be made, or the peer did not acknowledge the request in time.
    Unreachable(String),
    /// The connection was made but the exchange failed.
    Failed(String),
    /// No answer in time.
    Timeout,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "unreachable: {e}"),
            CallError::Failed(e) => f.write_str(e),
            CallError::Timeout => f.write_str("timed out"),
        }
    }
}

impl std::error::Error for CallError {}

/// Counters.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Requests answered.
    pub served: AtomicU64,
    /// Incoming requests that failed (handshake, size, decode).
    pub failed_in: AtomicU64,
    /// Connections made.
    pub connects: AtomicU64,
}

/// The endpoint and its cached connections.
pub struct Transport {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    server_name: String,
    /// Connections by peer and the server name its certificate was checked for: one made to a server
    /// of this datacenter is not reused for a request that must reach another's.
    conns: Mutex<HashMap<(SocketAddr, String), quinn::Connection>>,
    /// Peers that last failed to acknowledge or connect, and when.
    down: Mutex<HashMap<SocketAddr, Instant>>,
    /// Counters.
    pub stats: TransportStats,
}

/// A server's QUIC stateless-reset secret, kept in the data dir so it outlives the process.
///
/// Why: a peer that cached a connection to this server's previous process keeps sending on it after
/// a restart. With the same secret, the new process answers those packets with a stateless reset the
/// peer can verify, and the peer reconnects at once. With a fresh secret the packets vanish, and
/// raft's calls (100 ms for an append) end before the transport's own 500 ms delivery limit could
/// notice: a restarted follower got no appends for quinn's 15 s idle timeout and stood for election.
pub struct ResetKey(pub [u8; 32]);

impl ResetKey {
    /// The key in `file`, created on first use; a random one when there is no data dir.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, String> {
        let random = || {
            let mut key = [0u8; 32];
            crate::util::entropy::fill(&mut key).map(|()| key.to_vec())
        };
        let b = match file {
            None => random()?,
            Some(file) => read_or_create(file, Access::Owner, random)?.0,
        };
        let key: [u8; 32] = b.as_slice().try_into().map_err(|_| {
            let shown = file.map_or_else(String::new, |f| f.display().to_string());
            format!("{shown}: {} bytes, expected 32", b.len())
        })?;
        Ok(ResetKey(key))
    }
}

/// The name a server of `dc` has in its certificate (Consul's `server.DC.consul`).
pub fn server_name(dc: &str) -> String {
    format!("server.{dc}.murmur")
}

/// How long a peer that failed is tried only after the others.
const DOWN_FOR: Duration = Duration::from_secs(10);

fn rpc_transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // Keep-alives hold idle client connections and long blocking reads open.
    t.keep_alive_interval(Some(Duration::from_secs(2)));
    t.max_idle_timeout(Some(
        Duration::from_secs(15).try_into().expect("small timeout"),
    ));
    t.max_concurrent_bidi_streams(MAX_STREAMS.into());
    t.stream_receive_window((8u32 << 20).into());
    t.receive_window((64u32 << 20).into());
    t.send_window(64 << 20);
    Arc::new(t)
}

impl Transport {
    /// Opens the endpoint: bound to `listen` on a server, on an ephemeral port otherwise.
    /// `reset_key` is the server's stateless-reset secret (see [`ResetKey`]).
    pub fn open(
        listen: Option<(SocketAddr, &ResetKey)>,
        local_ip: std::net::IpAddr,
        settings: &TlsSettings,
        datacenter: &str,
    ) -> Result<Arc<Self>, String> {
        let configs = tls::quic_configs(settings)?;
        let transport = rpc_transport();
        let mut client = configs.join;
        client.transport_config(transport.clone());
        let endpoint = match listen {
            Some((addr, key)) => {
                let mut server = configs.server;
                server.transport_config(transport);
                let bind_failed =
                    |e: std::io::Error| format!("Failed to bind the server port on {addr}: {e}");
                let socket = std::net::UdpSocket::bind(addr).map_err(bind_failed)?;
                let runtime = quinn::default_runtime()
                    .ok_or_else(|| "server transport: no async runtime".to_string())?;
                let config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
                    ring::hmac::HMAC_SHA256,
                    &key.0,
                )));
                quinn::Endpoint::new(config, Some(server), socket, runtime).map_err(bind_failed)?
            }
            None => quinn::Endpoint::client(SocketAddr::new(local_ip, 0))
                .map_err(|e| format!("server transport: {e}"))?,
        };
        Ok(Arc::new(Transport {
            endpoint,
            client,
            server_name: server_name(datacenter),
            conns: Mutex::new(HashMap::new()),
            down: Mutex::new(HashMap::new()),
            stats: TransportStats::default(),
        }))
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// A connection to `addr` and whether it came from the cache (it may lead to a process that has
    /// since restarted, which drops its packets without a word).
    async fn connection(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<(quinn::Connection, bool), CallError> {
        let cached = self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(addr, server_name.to_string()))
            .cloned();
        if let Some(c) = cached
            && c.close_reason().is_none()
        {
            return Ok((c, true));
        }
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), addr, server_name)
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        let c = tokio::time::timeout(CONNECT, connecting)
            .await
            .map_err(|_| {
                CallError::Unreachable(format!("no handshake with {addr} in {CONNECT:?}"))
            })?
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((addr, server_name.to_string()), c.clone());
        Ok((c, false))
    }

    /// True when `addr` failed to answer in the last few seconds.
    pub fn recently_down(&self, addr: SocketAddr) -> bool {
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&addr)
            .is_some_and(|t| t.elapsed() < DOWN_FOR)
    }

    fn forget(&self, addr: SocketAddr, server_name: &str) {
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(addr, server_name.to_string()));
    }

    /// One request on its own stream. A request the peer did not acknowledge in time is `Unreachable`:
    /// the peer is taken for gone (see [`DELIVERY`] on why sending it again is safe).
    async fn exchange(&self, conn: &quinn::Connection, req: &[u8]) -> Result<Vec<u8>, CallError> {
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        write_frame(&mut send, req)
            .await
            .map_err(CallError::Unreachable)?;
        let limit = DELIVERY + Duration::from_millis((req.len() / DELIVERY_BYTES_PER_MS) as u64);
        let acked = std::sync::atomic::AtomicBool::new(false);
        let undelivered = async {
            match tokio::time::timeout(limit, send.stopped()).await {
                // Acknowledged: wait for the answer.
                Ok(Ok(_)) => {
                    acked.store(true, Ordering::Relaxed);
                    std::future::pending::<()>().await
                }
                // The connection failed: the read below reports it.
                Ok(Err(_)) => std::future::pending::<()>().await,
                Err(_) => {}
            }
        };
        tokio::select! {
            r = read_frame(&mut recv, MAX_FRAME) => r.map_err(|e| {
                // The connection went before the peer acknowledged the request: closed here (a
                // concurrent call found it dead) or reset by a process that never had it (the peer
                // restarted). No one could have acted on the request, so it may go again.
                let gone = matches!(
                    conn.close_reason(),
                    Some(quinn::ConnectionError::Reset | quinn::ConnectionError::LocallyClosed)
                );
                if gone && !acked.load(Ordering::Relaxed) {
                    CallError::Unreachable(format!("{e} before the request was acknowledged"))
                } else {
                    CallError::Failed(e)
                }
            }),
            _ = undelivered => Err(CallError::Unreachable(format!(
                "request not acknowledged in {limit:?}"
            ))),
        }
    }

    /// Sends `rpc` to `addr`, a server of this datacenter, and waits up to `timeout` for the answer.
    /// A cached connection that has gone away is replaced once.
    pub async fn call(
        &self,
        addr: SocketAddr,
        rpc: &Rpc,
        timeout: Duration,
    ) -> Result<Answer, CallError> {
        self.call_in(None, addr, rpc, timeout).await
    }

    /// As [`Transport::call`], to a server of datacenter `dc` when given: its certificate is checked
    /// for `server.DC.murmur` (with `verify_server_hostname`).
    pub async fn call_in(
        &self,
        dc: Option<&str>,
        addr: SocketAddr,
        rpc: &Rpc,
        timeout: Duration,
    ) -> Result<Answer, CallError> {
        let req = rpc::encode(rpc).map_err(CallError::Failed)?;
        let name = dc.map_or_else(|| self.server_name.clone(), server_name);
        let work = async {
            let (conn, cached) = self.connection(addr, &name).await?;
            let bytes = match self.exchange(&conn, &req).await {
                Ok(b) => b,
                Err(e @ CallError::Unreachable(_)) => {
                    // Not delivered: drop the connection. A cached one may lead to the peer's
                    // previous process (it restarted), so try once on a new one; a peer that is
                    // really gone fails the handshake.
                    conn.close(0u32.into(), b"unresponsive");
                    self.forget(addr, &name);
                    if !cached {
                        return Err(e);
                    }
                    let (conn, _) = self.connection(addr, &name).await?;
                    self.exchange(&conn, &req).await?
                }
                Err(e) => return Err(e),
            };
            rpc::decode(&bytes).map_err(CallError::Failed)
        };
        let r = tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| CallError::Timeout)
            .and_then(|r| r);
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        match &r {
            Err(CallError::Unreachable(_)) => {
                down.insert(addr, Instant::now());
            }
            _ => {
                down.remove(&addr);
            }
        }
        r
    }

    /// Answers incoming requests with `handler(from, rpc)` until the endpoint closes.
    pub fn serve<F, Fut>(self: &Arc<Self>, handler: F)
    where
        F: Fn(SocketAddr, Rpc) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Answer> + Send + 'static,
    {
        let me = self.clone();
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::spawn(async move {
            while let Some(incoming) = me.endpoint.accept().await {
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    incoming.refuse();
                    continue;
                };
                let (me, handler) = (me.clone(), handler.clone());
                tokio::spawn(async move {
                    let from = incoming.remote_address();
                    match incoming.await {
                        Ok(conn) => me.serve_connection(from, conn, handler).await,
                        Err(e) => {
                            me.stats.failed_in.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("server RPC handshake from {from} failed: {e}");
                        }
                    }
                    drop(permit);
                });
            }
        });
    }

    async fn serve_connection<F, Fut>(
        self: Arc<Self>,
        from: SocketAddr,
        conn: quinn::Connection,
        handler: F,
    ) where
        F: Fn(SocketAddr, Rpc) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Answer> + Send + 'static,
    {
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            let (me, handler) = (self.clone(), handler.clone());
            tokio::spawn(async move {
                let answered = async {
                    let req = read_frame(&mut recv, MAX_FRAME).await?;
                    let answer = match rpc::decode::<Rpc>(&req) {
                        Ok(rpc) => handler(from, rpc).await,
                        Err(e) => Answer::Refused(format!("{e} (a different murmur version?)")),
                    };
                    write_frame(&mut send, &rpc::encode(&answer)?).await
                }
                .await;
                match answered {
                    Ok(()) => me.stats.served.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        tracing::debug!("server RPC from {from} failed: {e}");
                        me.stats.failed_in.fetch_add(1, Ordering::Relaxed)
                    }
                };
            });
        }
    }

    /// Closes every connection and the endpoint.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"shutdown");
    }
}

/// openraft's view of the transport.
#[derive(Clone)]
pub struct Network {
    /// The transport.
    pub transport: Arc<Transport>,
}

/// One peer, as openraft's replication stream talks to it.
pub struct Peer {
    target: u64,
    addr: Result<SocketAddr, String>,
    transport: Arc<Transport>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &ServerNode) -> Peer {
        Peer {
            target,
            addr: node
                .addr
                .parse()
                .map_err(|_| format!("server {} has a bad address {:?}", node.name, node.addr)),
            transport: self.transport.clone(),
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<u64, ServerNode, RaftError<u64, E>>;

fn network_error<E: std::error::Error>(e: impl std::fmt::Display) -> RPCError<u64, ServerNode, E> {
    RPCError::Network(NetworkError::new(&AnyError::error(e.to_string())))
}

impl Peer {
    async fn send<E: std::error::Error>(
        &self,
        rpc: Rpc,
        option: &RPCOption,
    ) -> Result<Answer, RPCError<u64, ServerNode, E>> {
        let addr = self.addr.clone().map_err(network_error)?;
        match self.transport.call(addr, &rpc, option.hard_ttl()).await {
            Ok(Answer::Refused(why)) => Err(network_error(why)),
            Ok(a) => Ok(a),
            // Back off from a peer that is down (or too slow to answer a heartbeat in time) rather
            // than spinning on it and logging each failure.
            Err(e @ (CallError::Unreachable(_) | CallError::Timeout)) => {
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(e) => Err(network_error(e)),
        }
    }

    fn remote<E: std::error::Error>(
        &self,
        e: RaftError<u64, E>,
    ) -> RPCError<u64, ServerNode, RaftError<u64, E>> {
        RPCError::RemoteError(RemoteError::new(self.target, e))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_secs(1)))
    }

    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcErr> {
        let (req, cut) = bounded_append(req);
        match self.send(Rpc::Append(req), &option).await? {
            // Only the first entries went: openraft sends the rest next.
            Answer::Append(Ok(AppendEntriesResponse::Success)) if cut.is_some() => {
                Ok(AppendEntriesResponse::PartialSuccess(cut))
            }
            Answer::Append(r) => r.map_err(|e| self.remote(e)),
            _ => Err(network_error("unexpected answer to append entries")),
        }
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RpcErr<InstallSnapshotError>> {
        match self.send(Rpc::Snapshot(req), &option).await? {
            Answer::Snapshot(r) => r.map_err(|e| self.remote(e)),
            _ => Err(network_error("unexpected answer to install snapshot")),
        }
    }

    async fn vote(
        &mut self,
        req: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RpcErr> {
        match self.send(Rpc::Vote(req), &option).await? {
            Answer::Vote(r) => r.map_err(|e| self.remote(e)),
            _ => Err(network_error("unexpected answer to vote")),
        }
    }
}

/// Most entry bytes one append carries. openraft 0.9 bounds an append by entry count only and gives
/// it its heartbeat interval (100 ms): a follower that fell behind by a few hundred 512 KiB values
/// would get them all in one request that can never finish in time, and would never catch up.
const APPEND_BYTES: usize = 1 << 20;

/// The request cut to its first entries that fit [`APPEND_BYTES`] (at least one), and the log ID of
/// the last entry kept when it was cut.
fn bounded_append(
    mut req: AppendEntriesRequest<TypeConfig>,
) -> (
    AppendEntriesRequest<TypeConfig>,
    Option<openraft::LogId<u64>>,
) {
    let size = |e: &openraft::Entry<TypeConfig>| match &e.payload {
        openraft::EntryPayload::Normal(r) => r.body.len() + 32,
        _ => 256,
    };
    let mut total = 0;
    let keep = req
        .entries
        .iter()
        .take_while(|e| {
            total += size(e);
            total <= APPEND_BYTES
        })
        .count()
        .max(1);
    if keep >= req.entries.len() {
        return (req, None);
    }
    req.entries.truncate(keep);
    let last = req.entries.last().map(|e| e.log_id);
    (req, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_are_cut_by_bytes_and_keep_at_least_one_entry() {
        let entry = |index: u64, bytes: usize| openraft::Entry::<TypeConfig> {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Normal(super::super::command::Request {
                id: 0,
                tag: 1,
                body: vec![0; bytes],
            }),
        };
        let req = |sizes: &[usize]| AppendEntriesRequest::<TypeConfig> {
            vote: openraft::Vote::new_committed(1, 1),
            prev_log_id: None,
            entries: sizes
                .iter()
                .enumerate()
                .map(|(i, b)| entry(i as u64 + 1, *b))
                .collect(),
            leader_commit: None,
        };
        let (r, cut) = bounded_append(req(&[512 << 10, 400 << 10, 512 << 10, 10]));
        assert_eq!(r.entries.len(), 2);
        assert_eq!(cut.map(|l| l.index), Some(2));
        let (r, cut) = bounded_append(req(&[4 << 20, 10]));
        assert_eq!(
            (r.entries.len(), cut.map(|l| l.index)),
            (1, Some(1)),
            "one oversized entry alone"
        );
        let (r, cut) = bounded_append(req(&[10, 10, 10]));
        assert_eq!((r.entries.len(), cut), (3, None));
        let (r, cut) = bounded_append(req(&[]));
        assert_eq!((r.entries.len(), cut), (0, None), "a heartbeat");
    }

    #[test]
    fn the_reset_key_outlives_the_process_and_a_bad_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("murmur-reset-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = dir.join("raft").join("quic-reset-key");
        let first = ResetKey::load(Some(&file)).unwrap();
        assert_eq!(crate::util::files::mode(&file).unwrap() & 0o777, 0o600);
        let again = ResetKey::load(Some(&file)).unwrap();
        assert_eq!(first.0, again.0, "the same key after a restart");
        assert_ne!(first.0, [0u8; 32]);
        assert_ne!(ResetKey::load(None).unwrap().0, first.0);
        std::fs::write(&file, b"short").unwrap();
        let err = ResetKey::load(Some(&file)).err().unwrap();
        assert!(err.contains("5 bytes, expected 32"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
