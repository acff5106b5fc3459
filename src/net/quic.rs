//! Request/answer exchanges over QUIC bi-directional streams, multiplexed on the gossip port: full-state
//! push/pull and member-record fetches, told apart by a leading [`Stream`] byte; bounded concurrency
//! (excess refused and counted), bounded message size, timeouts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, mpsc};

use super::mux::MuxSocket;
use super::tls::{self, TlsSettings};
use murmur_gossip::wire::MAX_STATE;

/// Concurrent push/pulls served; more are refused (memberlist allows 128).
pub const MAX_CONCURRENT: usize = 128;
/// Whole-exchange deadline.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Application close code of a push/pull the answering member refused; the reason text follows it.
const REFUSED: u32 = 1;
/// Longest refusal reason sent back (it must fit a packet with room to spare).
const MAX_REASON: usize = 512;
/// Largest frame accepted (a sealed full state).
pub const MAX_FRAME: usize = MAX_STATE + 64;

/// Counters.
#[derive(Debug, Default)]
pub struct QuicStats {
    /// Exchanges answered.
    pub served: AtomicU64,
    /// Connections refused because too many were in progress.
    pub refused_busy: AtomicU64,
    /// Incoming exchanges that failed (handshake, certificate, size, timeout, bad state).
    pub failed_in: AtomicU64,
}

/// What a stream asks for: its request frame's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stream {
    /// Periodic full-state push/pull: the request is our state, the answer theirs, records as versions.
    PushPull = b'S',
    /// A join's push/pull: as `PushPull`, with every record whole.
    Join = b'J',
    /// A member record: the request is the member's name, the answer the record held for it.
    Record = b'R',
}

impl Stream {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'S' => Some(Stream::PushPull),
            b'J' => Some(Stream::Join),
            b'R' => Some(Stream::Record),
            _ => None,
        }
    }
}

/// Whom an exchange goes to, which decides how the peer's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// An address an operator named (`-join`, `murmur join`).
    Named,
    /// A member gossip chose (periodic and reconnect exchanges).
    Member,
}

/// The agent's QUIC endpoint.
pub struct Quic {
    endpoint: quinn::Endpoint,
    join: quinn::ClientConfig,
    member: quinn::ClientConfig,
    server_name: String,
    limit: Arc<Semaphore>,
    /// Counters.
    pub stats: QuicStats,
}

/// Reads one length-prefixed frame of at most `limit` bytes.
pub(crate) async fn read_frame(r: &mut quinn::RecvStream, limit: usize) -> Result<Vec<u8>, String> {
    let n = r
        .read_u32()
        .await
        .map_err(|e| format!("reading frame length: {e}"))? as usize;
    if n > limit {
        return Err(format!("frame of {n} bytes exceeds the {limit}-byte limit"));
    }
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf)
        .await
        .map_err(|e| format!("reading frame: {e}"))?;
    Ok(buf)
}

/// Writes one length-prefixed frame and finishes the stream.
pub(crate) async fn write_frame(w: &mut quinn::SendStream, data: &[u8]) -> Result<(), String> {
    w.write_u32(data.len() as u32)
        .await
        .map_err(|e| format!("writing frame: {e}"))?;
    w.write_all(data)
        .await
        .map_err(|e| format!("writing frame: {e}"))?;
    w.finish().map_err(|e| format!("finishing stream: {e}"))
}

impl Quic {
    /// Opens the endpoint on the shared gossip socket; `incoming` carries the QUIC datagrams.
    pub fn new(
        io: Arc<UdpSocket>,
        incoming: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
        settings: &TlsSettings,
        server_name: String,
    ) -> Result<Arc<Self>, String> {
        let configs = tls::quic_configs(settings)?;
        let mux = MuxSocket::new(io, incoming);
        let mut ecfg = quinn::EndpointConfig::default();
        // The port is shared with gossip and demultiplexed on the QUIC fixed bit (0x40): it must
        // never be greased away (RFC 9287).
        ecfg.grease_quic_bit(false);
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            ecfg,
            Some(configs.server),
            Arc::new(mux),
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|e| format!("QUIC endpoint: {e}"))?;
        Ok(Arc::new(Quic {
            endpoint,
            join: configs.join,
            member: configs.member,
            server_name,
            limit: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            stats: QuicStats::default(),
        }))
    }

    /// Sends a `kind` request carrying `ours` to `addr` and returns the answer.
    pub async fn exchange(
        &self,
        addr: SocketAddr,
        kind: Stream,
        ours: &[u8],
        peer: Peer,
    ) -> Result<Vec<u8>, String> {
        let config = match peer {
            Peer::Named => self.join.clone(),
            Peer::Member => self.member.clone(),
        };
        let work = async {
            let conn = self
                .endpoint
                .connect_with(config, addr, &self.server_name)
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            let exchanged = async {
                let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
                let mut request = Vec::with_capacity(ours.len() + 1);
                request.push(kind as u8);
                request.extend_from_slice(ours);
                write_frame(&mut send, &request).await?;
                read_frame(&mut recv, MAX_FRAME).await
            }
            .await;
            match exchanged {
                Ok(theirs) => {
                    conn.close(0u32.into(), b"done");
                    Ok(theirs)
                }
                // The peer said why it refused (wrong key, plaintext): tell that, not "connection lost".
                Err(e) => Err(match conn.close_reason() {
                    Some(quinn::ConnectionError::ApplicationClosed(c))
                        if c.error_code == REFUSED.into() =>
                    {
                        format!("{addr} refused it: {}", String::from_utf8_lossy(&c.reason))
                    }
                    _ => e,
                }),
            }
        };
        tokio::time::timeout(TIMEOUT, work)
            .await
            .map_err(|_| format!("push/pull with {addr} timed out after {TIMEOUT:?}"))?
    }

    /// Answers incoming requests with `answer(from, kind, request) -> answer` until the endpoint closes.
    pub fn serve<F, Fut>(self: &Arc<Self>, answer: F)
    where
        F: Fn(SocketAddr, Stream, Vec<u8>) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Vec<u8>, String>> + Send,
    {
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(incoming) = me.endpoint.accept().await {
                let Ok(permit) = me.limit.clone().try_acquire_owned() else {
                    me.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
                    incoming.refuse();
                    continue;
                };
                let (me2, answer) = (me.clone(), answer.clone());
                tokio::spawn(async move {
                    let from = incoming.remote_address();
                    let r = tokio::time::timeout(TIMEOUT, Self::serve_one(incoming, answer)).await;
                    match r {
                        Ok(Ok(())) => {
                            me2.stats.served.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Err(e)) => {
                            me2.stats.failed_in.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("push/pull from {from} rejected: {e}");
                        }
                        Err(_) => {
                            me2.stats.failed_in.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("push/pull from {from} timed out");
                        }
                    }
                    drop(permit);
                });
            }
        });
    }

    async fn serve_one<F, Fut>(incoming: quinn::Incoming, answer: F) -> Result<(), String>
    where
        F: Fn(SocketAddr, Stream, Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<u8>, String>>,
    {
        let from = incoming.remote_address();
        let conn = incoming.await.map_err(|e| format!("handshake: {e}"))?;
        let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let mut theirs = read_frame(&mut recv, MAX_FRAME).await?;
        let kind = theirs.first().and_then(|b| Stream::from_byte(*b));
        let answered = match kind {
            Some(kind) => {
                theirs.remove(0);
                answer(from, kind, theirs).await
            }
            None => Err("unknown request kind (a different murmur version?)".to_string()),
        };
        let ours = match answered {
            Ok(ours) => ours,
            Err(e) => {
                // Closing with the reason lets the joiner say why instead of "connection lost".
                let reason = &e.as_bytes()[..e.len().min(MAX_REASON)];
                conn.close(REFUSED.into(), reason);
                return Err(e);
            }
        };
        write_frame(&mut send, &ours).await?;
        // Let the peer read everything before the connection goes away.
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
        Ok(())
    }
}
