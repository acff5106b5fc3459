//! DNS transports: a batched UDP loop (recvmmsg → cache or answer builder → sendmmsg) and a TCP listener,
//! plus forwarding of names outside the domain to the configured recursors.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use super::DnsConfig;
use super::answer::{Answerer, Reply, Reuse, Transport, formerr};
use super::cache::{AnswerCache, shape};
use super::remote::{RemoteDns, RemoteFailure};
use super::services::ServiceCatalog;
use super::tally::{ByKind, Tally};
use crate::state::MemberTable;
use crate::util::batch::{RecvBatch, SendBatch};
use crate::util::connlimit::ConnLimiter;
use murmur_gossip::Rng;

/// Largest query accepted over UDP.
pub const MAX_QUERY: usize = 4096;
const RECURSOR_TIMEOUT: Duration = Duration::from_secs(2);
const TCP_IDLE: Duration = Duration::from_secs(10);
const MAX_TCP_CONNECTIONS: usize = 256;
/// One client's share of the TCP connections, so a single client cannot hold every slot.
pub const MAX_TCP_PER_CLIENT: usize = 16;

/// Counters.
#[derive(Debug, Default)]
pub struct DnsStats {
    /// Queries received (UDP and TCP).
    pub queries: AtomicU64,
    /// Answered from the pre-encoded cache.
    pub cache_hits: AtomicU64,
    /// Malformed queries answered with FORMERR.
    pub formerr: AtomicU64,
    /// Datagrams dropped (too short to answer, oversize, or send failures).
    pub dropped: AtomicU64,
    /// Queries forwarded to a recursor.
    pub forwarded: AtomicU64,
    /// TCP connections closed at once: the client, or everyone, held too many.
    pub tcp_refused: AtomicU64,
    /// Responses (QR set) received and dropped unanswered.
    pub responses_dropped: AtomicU64,
    /// Queries for another datacenter's names sent to its servers.
    pub remote: AtomicU64,
    /// Queries for another datacenter's names answered from the cache of its answers.
    pub remote_cache_hits: AtomicU64,
    /// Queries by type and answers by response code.
    pub kinds: ByKind,
}

/// Everything a DNS transport needs.
#[derive(Clone)]
pub struct DnsServer {
    /// Settings, shared by every transport and swapped whole by a reload: only through
    /// [`DnsServer::reconfigure`], which updates the remote path's copy too.
    cfg: Arc<ArcSwap<DnsConfig>>,
    /// Member table.
    pub table: Arc<MemberTable>,
    /// Services.
    pub services: Arc<dyn ServiceCatalog>,
    /// Counters.
    pub stats: Arc<DnsStats>,
    /// The way to other datacenters' answers (none in tests of this datacenter alone).
    pub remote: Option<Arc<RemoteDns>>,
}

impl DnsServer {
    /// Serves with `cfg` until a reload changes it.
    pub fn new(
        cfg: DnsConfig,
        table: Arc<MemberTable>,
        services: Arc<dyn ServiceCatalog>,
        stats: Arc<DnsStats>,
        remote: Option<Arc<RemoteDns>>,
    ) -> Self {
        DnsServer {
            cfg: Arc::new(ArcSwap::from_pointee(cfg)),
            table,
            services,
            stats,
            remote,
        }
    }

    /// Applies the DNS settings of a reloaded configuration (Consul reloads `dns_config` and
    /// `recursors`): answers built from now on follow them, and the answers cached under the old ones
    /// are dropped. True when something changed.
    pub fn reconfigure(&self, next: &DnsConfig) -> bool {
        let running = self.cfg.load_full();
        if (&next.domain, &next.datacenter) != (&running.domain, &running.datacenter) {
            tracing::warn!(
                "DNS domain and datacenter changes need a restart; still {} in {}",
                running.domain,
                running.datacenter
            );
        }
        let cfg = running.reloaded(next);
        if cfg == *running {
            return false;
        }
        if let Some(r) = &self.remote {
            r.reconfigure(&cfg);
        }
        self.cfg.store(Arc::new(cfg));
        true
    }

    fn answer(&self, raw: &[u8], transport: Transport, rng: &mut Rng) -> Option<Reply> {
        self.answer_with(&self.cfg.load(), raw, transport, rng)
    }

    /// The answer to `raw` under `cfg` (this agent's settings, or those a forwarded query carries).
    fn answer_with(
        &self,
        cfg: &DnsConfig,
        raw: &[u8],
        transport: Transport,
        rng: &mut Rng,
    ) -> Option<Reply> {
        match Message::from_vec(raw) {
            Ok(req) => {
                let reply = self.answerer_with(cfg).respond(&req, transport, rng);
                if reply.is_none() {
                    self.stats.responses_dropped.fetch_add(1, Ordering::Relaxed);
                }
                reply
            }
            Err(_) => {
                self.stats.formerr.fetch_add(1, Ordering::Relaxed);
                formerr(raw).map(|b| Reply::Bytes(b, Reuse::Never))
            }
        }
    }

    /// Serves UDP until the socket fails.
    pub async fn serve_udp(self, socket: Arc<UdpSocket>) {
        let fd = socket.as_raw_fd();
        let mut recv = RecvBatch::new(MAX_QUERY);
        let mut send = SendBatch::default();
        let mut cache = AnswerCache::default();
        let mut key = Vec::with_capacity(300);
        let mut rng = Rng::new(crate::util::entropy::u64().unwrap_or(7));
        let mut tally = Tally::default();
        let mut cfg = self.cfg.load_full();
        loop {
            if socket.readable().await.is_err() {
                return;
            }
            let n = match socket.try_io(tokio::io::Interest::READABLE, || recv.recv(fd)) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => continue,
            };
            // Answers cached under settings a reload has replaced are not answers any more.
            if !Arc::ptr_eq(&cfg, &self.cfg.load()) {
                cfg = self.cfg.load_full();
                cache.clear();
            }
            cache.sync(
                self.table.snapshot().index,
                self.services.version(),
                |since| self.services.changed_since(since),
            );
            for i in 0..n {
                let Some((from, raw, truncated)) = recv.get(i) else {
                    continue;
                };
                self.stats.queries.fetch_add(1, Ordering::Relaxed);
                if truncated {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                tally.query(raw);
                if let Some(sh) = shape(raw, &mut key) {
                    let out = send.next_buf(from);
                    if cache.serve(&key, raw, sh, &mut *out) {
                        tally.answer(out);
                        self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    send.clear_last();
                }
                match self.answer_with(&cfg, raw, Transport::Udp, &mut rng) {
                    Some(Reply::Bytes(bytes, reuse)) => {
                        tally.answer(&bytes);
                        if reuse != Reuse::Never && shape(raw, &mut key).is_some() {
                            cache.insert(&key, &bytes, &reuse);
                        }
                        send.next_buf(from).extend_from_slice(&bytes);
                    }
                    Some(Reply::Forward) => {
                        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                        let (s, q, sock) = (self.clone(), raw.to_vec(), socket.clone());
                        tokio::spawn(async move {
                            let r = s.forward(&q).await;
                            s.stats.kinds.answered(&r);
                            let _ = sock.send_to(&r, from).await;
                        });
                    }
                    Some(Reply::Remote(dc)) => {
                        let (s, q, sock) = (self.clone(), raw.to_vec(), socket.clone());
                        tokio::spawn(async move {
                            let r = s.ask_datacenter(&dc, &q, Transport::Udp).await;
                            s.stats.kinds.answered(&r);
                            let _ = sock.send_to(&r, from).await;
                        });
                    }
                    None => {
                        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if send.is_full() {
                    self.flush(&socket, &mut send).await;
                }
            }
            self.flush(&socket, &mut send).await;
            tally.flush(&self.stats.kinds);
            // A socket that is always readable never makes this task wait: give the runtime back
            // every so often, or a flood (or a reply loop) starves HTTP, gossip and signal handling.
            tokio::task::coop::consume_budget().await;
        }
    }

    async fn flush(&self, socket: &UdpSocket, send: &mut SendBatch) {
        let fd = socket.as_raw_fd();
        // Bounded: a socket that stays unwritable loses the rest of the batch (counted) instead of stalling.
        for _ in 0..8 {
            if send.is_empty() {
                return;
            }
            match socket.try_io(tokio::io::Interest::WRITABLE, || send.send(fd)) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if socket.writable().await.is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        self.stats
            .dropped
            .fetch_add(send.len() as u64, Ordering::Relaxed);
        send.clear();
    }

    /// Serves TCP (2-byte length framing) until the listener fails.
    pub async fn serve_tcp(self, listener: TcpListener) {
        let limit = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
        let per_client = ConnLimiter::new(MAX_TCP_PER_CLIENT);
        loop {
            let Ok((conn, peer)) = listener.accept().await else {
                // Out of descriptors, most likely: wait rather than spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            // Over either limit: close at once rather than queue.
            let Some(share) = per_client.try_acquire(peer.ip()) else {
                self.stats.tcp_refused.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                self.stats.tcp_refused.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let s = self.clone();
            tokio::spawn(async move {
                let _ = s.tcp_conn(conn).await;
                drop((permit, share));
            });
        }
    }

    async fn tcp_conn(&self, mut conn: TcpStream) -> std::io::Result<()> {
        let mut rng = Rng::new(crate::util::entropy::u64().unwrap_or(11));
        let mut buf = vec![0u8; 65_535];
        loop {
            let mut len = [0u8; 2];
            match tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut len)).await {
                Ok(Ok(_)) => {}
                _ => return Ok(()),
            }
            let n = u16::from_be_bytes(len) as usize;
            let q = &mut buf[..n];
            tokio::time::timeout(TCP_IDLE, conn.read_exact(q))
                .await
                .map_err(|_| std::io::ErrorKind::TimedOut)??;
            self.stats.queries.fetch_add(1, Ordering::Relaxed);
            self.stats.kinds.queried(q);
            let bytes = match self.answer(q, Transport::Tcp, &mut rng) {
                Some(Reply::Bytes(b, _)) => b,
                Some(Reply::Forward) => {
                    self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    self.forward(q).await
                }
                Some(Reply::Remote(dc)) => self.ask_datacenter(&dc, q, Transport::Tcp).await,
                None => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
            };
            // Ours never exceed it; a guard, as the length is a u16.
            let bytes = if bytes.len() > usize::from(u16::MAX) {
                servfail(q)
            } else {
                bytes
            };
            self.stats.kinds.answered(&bytes);
            let mut out = Vec::with_capacity(bytes.len() + 2);
            out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            out.extend_from_slice(&bytes);
            conn.write_all(&out).await?;
        }
    }

    /// Another datacenter's answer to `query` (a name in `dc`): NXDOMAIN when no server of it is
    /// known, SERVFAIL when its servers fail.
    async fn ask_datacenter(&self, dc: &str, query: &[u8], transport: Transport) -> Vec<u8> {
        let Ok(req) = Message::from_vec(query) else {
            return servfail(query);
        };
        let answered = match &self.remote {
            Some(r) => {
                self.stats.remote.fetch_add(1, Ordering::Relaxed);
                r.answer(dc, &req, query, transport == Transport::Tcp).await
            }
            None => Err(RemoteFailure::NoPath),
        };
        match answered {
            Ok((bytes, hit)) => {
                if hit {
                    self.stats.remote_cache_hits.fetch_add(1, Ordering::Relaxed);
                }
                bytes
            }
            Err(RemoteFailure::NoPath) => self
                .answerer_with(&self.cfg.load())
                .no_such_datacenter(&req, transport),
            Err(RemoteFailure::Failed(e)) => {
                tracing::debug!("DNS query for datacenter {dc} failed: {e}");
                servfail(query)
            }
        }
    }

    /// Answers a query another datacenter forwarded (a name in this one) from this datacenter's
    /// data, with the asking agent's `settings` (its domain, TTLs and limits; this server's own when
    /// they do not decode). A name of yet another datacenter is not passed on (NXDOMAIN).
    pub fn answer_forwarded(&self, query: &[u8], tcp: bool, settings: &[u8]) -> Vec<u8> {
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        let mut rng = Rng::new(crate::util::entropy::u64().unwrap_or(13));
        let own = self.cfg.load();
        let cfg = super::remote::decode_settings(settings, &own.datacenter).unwrap_or_else(|| {
            DnsConfig {
                recursors: Vec::new(),
                ..(**own).clone()
            }
        });
        match self.answer_with(&cfg, query, transport, &mut rng) {
            Some(Reply::Bytes(b, _)) => b,
            Some(Reply::Remote(_) | Reply::Forward) => match Message::from_vec(query) {
                Ok(req) => self.answerer_with(&cfg).no_such_datacenter(&req, transport),
                Err(_) => servfail(query),
            },
            None => servfail(query),
        }
    }

    fn answerer_with<'a>(&'a self, cfg: &'a DnsConfig) -> Answerer<'a> {
        Answerer {
            cfg,
            table: &self.table,
            services: self.services.as_ref(),
        }
    }

    /// Asks each recursor in turn; SERVFAIL if none answers in time.
    async fn forward(&self, query: &[u8]) -> Vec<u8> {
        let recursors = self.cfg.load().recursors.clone();
        for r in &recursors {
            let bind: SocketAddr = if r.is_ipv4() {
                "0.0.0.0:0".parse().expect("literal")
            } else {
                "[::]:0".parse().expect("literal")
            };
            let Ok(sock) = UdpSocket::bind(bind).await else {
                continue;
            };
            if sock.send_to(query, r).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; 65_535];
            if let Ok(Ok((n, from))) =
                tokio::time::timeout(RECURSOR_TIMEOUT, sock.recv_from(&mut buf)).await
                && from == *r
                && n >= 2
                && buf[..2] == query[..2]
            {
                buf.truncate(n);
                return buf;
            }
        }
        servfail(query)
    }
}

/// SERVFAIL for `query`, with its question.
fn servfail(query: &[u8]) -> Vec<u8> {
    let id = if query.len() >= 2 {
        u16::from_be_bytes([query[0], query[1]])
    } else {
        0
    };
    let mut m = Message::error_msg(id, hickory_proto::op::OpCode::Query, ResponseCode::ServFail);
    if let Ok(req) = Message::from_vec(query) {
        m.queries = req.queries;
        m.metadata.recursion_desired = req.metadata.recursion_desired;
    }
    m.metadata.recursion_available = true;
    m.to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::services::CatalogServices;
    use crate::state::catalog::Catalog;
    use crate::state::node_record::{NodeRecord, ServiceRecord};
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RData, RecordType};
    use murmur_gossip::{Event, Member, State, tags};

    /// The port of the first SRV answer for `name` from the server at `to`.
    async fn srv_port(client: &UdpSocket, to: SocketAddr, name: &str) -> u16 {
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii(name).unwrap(),
            RecordType::SRV,
        ));
        client.send_to(&q.to_vec().unwrap(), to).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        match &m.answers.first().expect("an SRV record").data {
            RData::SRV(srv) => srv.port,
            other => panic!("not SRV: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_changed_service_is_answered_anew_while_other_names_stay_cached() {
        let table = Arc::new(MemberTable::new());
        for (name, ip) in [("n1", "127.0.0.21"), ("n2", "127.0.0.22")] {
            table.apply(&Event::Member(Member {
                name: Arc::from(name),
                addr: format!("{ip}:8301").parse().unwrap(),
                incarnation: 1,
                state: State::Alive,
                tags: Arc::from(tags::encode(&[("role", "node"), ("dc", "dc1")]).unwrap()),
            }));
        }
        table.publish();
        let catalog = Arc::new(Catalog::new());
        let publish = |node: &str, version: u32, service: &str, port: u16| {
            let record = NodeRecord {
                services: vec![ServiceRecord::plain(service, service, &[], port)],
                checks: Vec::new(),
            };
            catalog.apply_record(&Arc::from(node), version, &record.encode());
        };
        publish("n1", 1, "web", 80);
        publish("n2", 1, "db", 5432);
        let stats = Arc::new(DnsStats::default());
        let server = DnsServer::new(
            DnsConfig::default(),
            table.clone(),
            Arc::new(CatalogServices::new(table, catalog.clone())),
            stats.clone(),
            None,
        );
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let to = socket.local_addr().unwrap();
        let serving = tokio::spawn(server.serve_udp(socket));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let hits = || stats.cache_hits.load(Ordering::Relaxed);

        // The first answers are built, the next ones served from the cache.
        assert_eq!(srv_port(&client, to, "web.service.consul.").await, 80);
        assert_eq!(srv_port(&client, to, "db.service.consul.").await, 5432);
        assert_eq!(hits(), 0);
        assert_eq!(srv_port(&client, to, "web.service.consul.").await, 80);
        assert_eq!(srv_port(&client, to, "db.service.consul.").await, 5432);
        assert_eq!(hits(), 2);

        // web moves to another port: its next answer says so, and db's is still served cached.
        publish("n1", 2, "web", 8080);
        assert_eq!(srv_port(&client, to, "web.service.consul.").await, 8080);
        assert_eq!(hits(), 2, "web's answer was built anew");
        assert_eq!(srv_port(&client, to, "db.service.consul.").await, 5432);
        assert_eq!(hits(), 3, "db's answer stayed cached");
        serving.abort();
    }
}
