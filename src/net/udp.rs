//! Runs a gossip core on a real UDP socket under tokio: batched receive, timers, commands from the agent.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use std::path::PathBuf;

use super::batch::RecvBatch;
use super::crypto::{self, Keyring};
use super::mux;
use super::quic::{Peer, Quic};
use crate::gossip::core::JOIN_ATTEMPTS;
use crate::gossip::{Core, Event, Stats, tags, wire};
use crate::table::MemberTable;
use std::sync::OnceLock;

/// Upper bound on a graceful leave.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// After the left notice went out, keep answering for this long so stragglers hear it.
const LEAVE_LINGER: Duration = Duration::from_millis(500);

/// Driver and core counters.
#[derive(Debug, Clone, Default)]
pub struct DriverStats {
    /// Core counters.
    pub core: Stats,
    /// Lifeguard local health score.
    pub health_score: u32,
    /// Members known, including failed and left.
    pub members: usize,
    /// Members alive or suspect.
    pub live: usize,
    /// Deltas waiting to be piggybacked.
    pub pending_broadcasts: usize,
    /// Datagrams longer than the codec accepts, dropped at receive.
    pub dropped_truncated: u64,
    /// Failed `send_to` calls.
    pub send_errors: u64,
    /// Sealed datagrams no installed key could open (wrong key or tampering).
    pub dropped_decrypt: u64,
    /// Plaintext datagrams refused because `encrypt_verify_incoming` is on.
    pub dropped_plaintext: u64,
    /// QUIC datagrams dropped because the QUIC queue was full or QUIC is off.
    pub dropped_quic: u64,
}

/// Gossip encryption settings of a driver.
#[derive(Default)]
pub struct Security {
    /// Keys; `None` = no encryption.
    pub keyring: Option<Keyring>,
    /// Refuse plaintext datagrams.
    pub verify_incoming: bool,
    /// Seal outgoing datagrams.
    pub verify_outgoing: bool,
    /// Where the keyring is persisted (none in `-dev`).
    pub keyring_file: Option<PathBuf>,
    /// Member tags without the keyring fingerprint tag, which the driver maintains.
    pub base_tags: Vec<(String, String)>,
}

impl Security {
    /// Tags to gossip: the base tags plus `kr` (key fingerprints, primary first) when encrypting.
    pub fn tags(&self) -> Vec<(String, String)> {
        let mut t = self.base_tags.clone();
        if let Some(k) = &self.keyring {
            t.push(("kr".to_string(), k.fingerprints()));
        }
        t
    }
}

/// A keyring change, applied locally and spread to every member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOp {
    /// Add a key.
    Install = 1,
    /// Make a key primary.
    Use = 2,
    /// Drop a key.
    Remove = 3,
}

impl KeyOp {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(KeyOp::Install),
            2 => Some(KeyOp::Use),
            3 => Some(KeyOp::Remove),
            _ => None,
        }
    }
}

/// User-event payload tag of keyring operations.
const EV_KEYRING: u8 = b'K';

enum Command {
    Join {
        addr: SocketAddr,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Leave {
        reply: oneshot::Sender<()>,
    },
    ForceLeave {
        name: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Stats {
        reply: oneshot::Sender<DriverStats>,
    },
    Keyring {
        op: KeyOp,
        key: Vec<u8>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    ListKeys {
        reply: oneshot::Sender<Vec<Vec<u8>>>,
    },
    ExportState {
        reply: oneshot::Sender<Result<Vec<u8>, String>>,
    },
    ImportState {
        from: SocketAddr,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<usize, String>>,
    },
    Joined,
}

/// Cheap, cloneable handle the agent uses to command a running driver.
#[derive(Clone)]
pub struct GossipHandle {
    tx: mpsc::Sender<Command>,
    changes: watch::Receiver<u64>,
    quic: Arc<OnceLock<Arc<Quic>>>,
}

const GONE: &str = "gossip layer has shut down";

impl GossipHandle {
    /// Attaches the QUIC endpoint: joins and periodic exchanges then use stream push/pull.
    pub fn set_quic(&self, quic: Arc<Quic>) {
        let _ = self.quic.set(quic);
    }

    /// The QUIC endpoint, if attached.
    pub fn quic(&self) -> Option<&Arc<Quic>> {
        self.quic.get()
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| GONE.to_string())?;
        rx.await.map_err(|_| GONE.to_string())
    }

    /// Full-state exchange with `addr` over QUIC; returns how many entries they sent.
    pub async fn push_pull(&self, addr: SocketAddr, peer: Peer) -> Result<usize, String> {
        let quic = self
            .quic
            .get()
            .ok_or("QUIC push/pull is not enabled")?
            .clone();
        let ours = self.ask(|reply| Command::ExportState { reply }).await??;
        let theirs = quic.exchange(addr, &ours, peer).await?;
        self.ask(|reply| Command::ImportState {
            from: addr,
            bytes: theirs,
            reply,
        })
        .await?
    }

    /// Answers a peer's push/pull: merges their state, returns ours.
    pub async fn answer_push_pull(
        &self,
        from: SocketAddr,
        theirs: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        self.ask(|reply| Command::ImportState {
            from,
            bytes: theirs,
            reply,
        })
        .await??;
        self.ask(|reply| Command::ExportState { reply }).await?
    }

    /// Joins the cluster through `addr`: one full-state push/pull over QUIC when enabled (the joiner
    /// learns every member in one exchange), else the datagram exchange. Succeeds once their state arrived.
    pub async fn join(&self, addr: SocketAddr) -> Result<(), String> {
        if self.quic.get().is_some() {
            self.push_pull(addr, Peer::Named).await?;
            return self
                .tx
                .send(Command::Joined)
                .await
                .map_err(|_| GONE.to_string());
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Join { addr, reply })
            .await
            .map_err(|_| GONE.to_string())?;
        rx.await.map_err(|_| GONE.to_string())?
    }

    /// Leaves gracefully; returns when the leave was announced (or timed out). The driver then stops.
    pub async fn leave(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Leave { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Marks a member `left` cluster-wide.
    pub async fn force_leave(&self, name: &str) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        let name = name.to_owned();
        self.tx
            .send(Command::ForceLeave { name, reply })
            .await
            .map_err(|_| GONE.to_string())?;
        rx.await.map_err(|_| GONE.to_string())?
    }

    /// Current counters.
    pub async fn stats(&self) -> Option<DriverStats> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Stats { reply }).await.ok()?;
        rx.await.ok()
    }

    /// Applies a keyring change here and spreads it to every member over (encrypted) gossip.
    pub async fn keyring(&self, op: KeyOp, key: Vec<u8>) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Keyring { op, key, reply })
            .await
            .map_err(|_| GONE.to_string())?;
        rx.await.map_err(|_| GONE.to_string())?
    }

    /// The local keys, primary first (empty without encryption).
    pub async fn keys(&self) -> Vec<Vec<u8>> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::ListKeys { reply }).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// A receiver that changes whenever the member table publishes (value = table index).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }
}

struct PendingJoin {
    seq: u32,
    reply: oneshot::Sender<Result<(), String>>,
}

struct PendingLeave {
    deadline: Instant,
    propagated_at: Option<Instant>,
    reply: Option<oneshot::Sender<()>>,
}

/// Owns the core and the socket; run it with [`UdpDriver::run`].
pub struct UdpDriver {
    core: Core,
    socket: Arc<UdpSocket>,
    table: Arc<MemberTable>,
    rx: mpsc::Receiver<Command>,
    changes: watch::Sender<u64>,
    joins: Vec<PendingJoin>,
    leave: Option<PendingLeave>,
    recv: RecvBatch,
    buf: Vec<u8>,
    sealed: Vec<u8>,
    quic_tx: Option<mpsc::Sender<(SocketAddr, Vec<u8>)>>,
    quic_dropped: u64,
    /// For push/pull tasks the driver starts itself; weak, so dropping every handle still stops it.
    weak: mpsc::WeakSender<Command>,
    quic: Arc<OnceLock<Arc<Quic>>>,
    dropped_truncated: u64,
    send_errors: u64,
    security: Security,
    dropped_decrypt: u64,
    dropped_plaintext: u64,
    warned_at: Option<Instant>,
}

impl UdpDriver {
    /// Wires a core to a bound socket and a table; returns the driver and its handle.
    pub fn new(
        core: Core,
        socket: Arc<UdpSocket>,
        table: Arc<MemberTable>,
        security: Security,
        quic_tx: Option<mpsc::Sender<(SocketAddr, Vec<u8>)>>,
    ) -> (Self, GossipHandle) {
        let (tx, rx) = mpsc::channel(64);
        let quic = Arc::new(OnceLock::new());
        let (changes_tx, changes_rx) = watch::channel(table.snapshot().index);
        let mtu = core.config().mtu;
        let d = UdpDriver {
            core,
            socket,
            table,
            rx,
            changes: changes_tx,
            joins: Vec::new(),
            leave: None,
            recv: RecvBatch::new(wire::MAX_DATAGRAM),
            buf: Vec::with_capacity(mtu.max(wire::MAX_DATAGRAM)),
            sealed: Vec::with_capacity(mtu.max(wire::MAX_DATAGRAM) + crypto::OVERHEAD),
            quic_tx,
            quic_dropped: 0,
            weak: tx.downgrade(),
            quic: quic.clone(),
            dropped_truncated: 0,
            send_errors: 0,
            security,
            dropped_decrypt: 0,
            dropped_plaintext: 0,
            warned_at: None,
        };
        (
            d,
            GossipHandle {
                tx,
                changes: changes_rx,
                quic,
            },
        )
    }

    /// Runs until a graceful leave completes (returns true) or every handle is dropped (false).
    pub async fn run(mut self) -> bool {
        loop {
            // Like the DNS loop: a flooded socket must not keep this task from yielding.
            tokio::task::coop::consume_budget().await;
            self.flush().await;
            if self.leave_done(Instant::now()) {
                self.flush().await;
                return true;
            }
            let wake = self.next_wake();
            tokio::select! {
                r = self.socket.readable() => {
                    if r.is_ok() {
                        self.receive();
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    self.core.handle_timeout(Instant::now());
                }
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => return false,
                },
            }
        }
    }

    fn next_wake(&self) -> Instant {
        let mut wake = self
            .core
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        if let Some(l) = &self.leave {
            wake = wake.min(l.deadline);
            if let Some(p) = l.propagated_at {
                wake = wake.min(p + LEAVE_LINGER);
            }
        }
        wake
    }

    fn receive(&mut self) {
        let fd = self.socket.as_raw_fd();
        // Bounded: at most 8 batches per wake-up so timers and commands are never starved.
        for _ in 0..8 {
            let recv = &mut self.recv;
            let n = match self
                .socket
                .try_io(tokio::io::Interest::READABLE, || recv.recv(fd))
            {
                Ok(n) => n,
                Err(_) => return,
            };
            let now = Instant::now();
            for i in 0..n {
                let Some((from, data, truncated)) = self.recv.get_mut(i) else {
                    continue;
                };
                if truncated {
                    self.dropped_truncated += 1;
                    continue;
                }
                if data.first().is_some_and(|b| mux::is_quic(*b)) {
                    let sent = self
                        .quic_tx
                        .as_ref()
                        .is_some_and(|q| q.try_send((from, data.to_vec())).is_ok());
                    if !sent {
                        self.quic_dropped += 1;
                    }
                    continue;
                }
                let sec = &mut self.security;
                let sealed = data.first() == Some(&crypto::SEALED_VERSION);
                match (&mut sec.keyring, sealed) {
                    (Some(ring), true) => match ring.open(data) {
                        Ok(plain) => self.core.handle_packet(now, from, plain),
                        Err(_) => {
                            self.dropped_decrypt += 1;
                            self.warn(
                                now,
                                from,
                                "no installed key opens it (is -encrypt the cluster's key?)",
                            );
                        }
                    },
                    (None, true) => {
                        self.dropped_decrypt += 1;
                        self.warn(
                            now,
                            from,
                            "it is encrypted but this agent has no key (-encrypt)",
                        );
                    }
                    (Some(_), false) if sec.verify_incoming => {
                        self.dropped_plaintext += 1;
                        self.warn(
                            now,
                            from,
                            "it is not encrypted and encrypt_verify_incoming is on",
                        );
                    }
                    (Some(_), false) => self.core.handle_untrusted_packet(now, from, data),
                    (None, false) => self.core.handle_packet(now, from, data),
                }
            }
            if n < super::batch::BATCH {
                return;
            }
        }
    }

    /// Logs a dropped datagram, at most once every 10 s so a flood cannot flood the log.
    fn warn(&mut self, now: Instant, from: SocketAddr, why: &str) {
        if self
            .warned_at
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
        {
            self.warned_at = Some(now);
            tracing::warn!(
                "dropped gossip packet from {from}: {why} (dropped so far: {} undecryptable, {} plaintext)",
                self.dropped_decrypt,
                self.dropped_plaintext
            );
        }
    }

    /// Our full state, sealed with the gossip key when encrypting (push/pull is as protected as gossip).
    fn export_state(&mut self) -> Result<Vec<u8>, String> {
        let mut plain = Vec::new();
        self.core.encode_state(&mut plain);
        match &self.security.keyring {
            Some(ring) if self.security.verify_outgoing => {
                let mut out = Vec::with_capacity(plain.len() + crypto::OVERHEAD);
                ring.seal(&plain, &mut out)?;
                Ok(out)
            }
            _ => Ok(plain),
        }
    }

    fn import_state(
        &mut self,
        now: Instant,
        from: SocketAddr,
        mut bytes: Vec<u8>,
    ) -> Result<usize, String> {
        let sealed = bytes.first() == Some(&crypto::SEALED_VERSION);
        let sec = &mut self.security;
        let plain: &[u8] = match (&mut sec.keyring, sealed) {
            (Some(ring), true) => ring
                .open(&mut bytes)
                .map_err(|_| format!("state from {from}: no installed key opens it"))?,
            (None, true) => {
                return Err(format!(
                    "state from {from} is encrypted but this agent has no key"
                ));
            }
            (Some(_), false) if sec.verify_incoming => {
                return Err(format!(
                    "state from {from} is not encrypted (encrypt_verify_incoming)"
                ));
            }
            (_, false) => &bytes,
        };
        self.core
            .merge_state(now, from, plain)
            .map_err(|e| format!("state from {from}: {e}"))
    }

    fn start_push_pull(&mut self, addr: SocketAddr) {
        let Some(tx) = self.weak.upgrade() else {
            return;
        };
        let (changes, quic) = (self.changes.subscribe(), self.quic.clone());
        let handle = GossipHandle { tx, changes, quic };
        tokio::spawn(async move {
            if let Err(e) = handle.push_pull(addr, Peer::Member).await {
                tracing::debug!("periodic push/pull with {addr} failed: {e}");
            }
        });
    }

    fn apply_key_op(&mut self, op: KeyOp, key: &[u8]) -> Result<(), String> {
        let ring = self
            .security
            .keyring
            .as_mut()
            .ok_or("gossip encryption is not enabled on this agent")?;
        match op {
            KeyOp::Install => ring.install(key)?,
            KeyOp::Use => ring.use_key(key)?,
            KeyOp::Remove => ring.remove(key)?,
        }
        if let Some(path) = &self.security.keyring_file {
            crypto::save(path, ring)?;
        }
        let tags = tags::encode(&self.security.tags()).map_err(|e| e.to_string())?;
        self.core.set_tags(tags).map_err(|e| e.to_string())
    }

    fn on_user_event(&mut self, payload: &[u8]) {
        let [EV_KEYRING, op, len, key @ ..] = payload else {
            return;
        };
        let (Some(op), true) = (KeyOp::from_u8(*op), key.len() == *len as usize) else {
            return;
        };
        match self.apply_key_op(op, key) {
            Ok(()) => tracing::info!(
                "keyring: applied {op:?} of key {}",
                crypto::fingerprint(key)
            ),
            Err(e) => tracing::warn!(
                "keyring: could not apply {op:?} of key {}: {e}",
                crypto::fingerprint(key)
            ),
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Join { addr, reply } => {
                let seq = self.core.join(now, addr);
                self.joins.push(PendingJoin { seq, reply });
            }
            Command::Leave { reply } => {
                self.core.leave(now);
                self.leave = Some(PendingLeave {
                    deadline: now + LEAVE_TIMEOUT,
                    propagated_at: None,
                    reply: Some(reply),
                });
            }
            Command::ForceLeave { name, reply } => {
                let r = self.core.force_leave(now, &name).map_err(|e| e.to_string());
                self.answer(reply, r);
            }
            Command::Stats { reply } => {
                let _ = reply.send(DriverStats {
                    core: self.core.stats().clone(),
                    health_score: self.core.health_score(),
                    members: self.core.members().count(),
                    live: self.core.num_live(),
                    pending_broadcasts: self.core.pending_broadcasts(),
                    dropped_truncated: self.dropped_truncated,
                    send_errors: self.send_errors,
                    dropped_decrypt: self.dropped_decrypt,
                    dropped_plaintext: self.dropped_plaintext,
                    dropped_quic: self.quic_dropped,
                });
            }
            Command::Keyring { op, key, reply } => {
                let r = self.apply_key_op(op, &key).and_then(|()| {
                    let mut payload = vec![EV_KEYRING, op as u8, key.len() as u8];
                    payload.extend_from_slice(&key);
                    self.core.user_event(&payload)
                });
                self.answer(reply, r);
            }
            Command::ExportState { reply } => {
                let _ = reply.send(self.export_state());
            }
            Command::ImportState { from, bytes, reply } => {
                let r = self.import_state(now, from, bytes);
                self.answer(reply, r);
            }
            Command::Joined => self.core.joined(now),
            Command::ListKeys { reply } => {
                let keys = self
                    .security
                    .keyring
                    .as_ref()
                    .map(Keyring::keys)
                    .unwrap_or_default();
                let _ = reply.send(keys);
            }
        }
    }

    /// Replies to a command that changed members. The caller may read the member list as soon as it
    /// hears back (`murmur join` then `murmur members`), so the change is published first.
    fn answer<T>(&mut self, reply: oneshot::Sender<T>, r: T) {
        self.drain_events();
        let _ = reply.send(r);
    }

    fn leave_done(&mut self, now: Instant) -> bool {
        let Some(l) = &mut self.leave else {
            return false;
        };
        if l.propagated_at.is_none() && self.core.leave_propagated() {
            l.propagated_at = Some(now);
        }
        let done = now >= l.deadline || l.propagated_at.is_some_and(|p| now >= p + LEAVE_LINGER);
        if done && let Some(r) = l.reply.take() {
            let _ = r.send(());
        }
        done
    }

    async fn flush(&mut self) {
        while let Some(t) = self.core.poll_transmit(&mut self.buf) {
            let mut data = &self.buf[..t.len];
            if let Some(ring) = &self.security.keyring
                && self.security.verify_outgoing
            {
                if ring.seal(data, &mut self.sealed).is_err() {
                    self.send_errors += 1;
                    continue;
                }
                data = &self.sealed;
            }
            let sent = match self.socket.try_send_to(data, t.dst) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.socket.send_to(data, t.dst).await
                }
                r => r,
            };
            if sent.is_err() {
                self.send_errors += 1;
            }
        }
        self.drain_events();
    }

    /// Applies the core's events to the member table and publishes it. Join replies go out only after
    /// the publish, so a caller whose join returned reads a member list that already holds the merge.
    fn drain_events(&mut self) {
        let mut changed = false;
        let mut done = Vec::new();
        while let Some(ev) = self.core.poll_event() {
            match ev {
                Event::SyncReply { seq, .. } => done.push((seq, Ok(()))),
                Event::JoinTimeout { seq, addr } => done.push((
                    seq,
                    Err(format!(
                        "no response from {addr} after {JOIN_ATTEMPTS} attempts"
                    )),
                )),
                Event::User { payload, .. } => self.on_user_event(&payload),
                Event::PushPull { addr } => self.start_push_pull(addr),
                Event::Member(_) | Event::Reaped(_) => {
                    let change = self.table.apply(&ev);
                    if let Some(what) = change.serf_name() {
                        log_change(what, &ev);
                        changed = true;
                    }
                }
            }
        }
        if changed && self.table.publish() {
            let _ = self.changes.send(self.table.snapshot().index);
        }
        for (seq, r) in done {
            if let Some(k) = self.joins.iter().position(|j| j.seq == seq) {
                let _ = self.joins.swap_remove(k).reply.send(r);
            }
        }
    }
}

/// One INFO line per membership change, worded as Consul's (`EventMemberJoin: agent-two 127.0.0.11`).
fn log_change(what: &str, ev: &Event) {
    match ev {
        Event::Member(m) => tracing::info!("{what}: {} {}", m.name, m.addr.ip()),
        Event::Reaped(name) => tracing::info!("{what}: {name}"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::{Identity, config::GossipConfig};

    fn core(name: &str, addr: SocketAddr, seed: u64) -> Core {
        let id = Identity {
            name: name.to_owned(),
            addr,
            tags: Vec::new(),
            incarnation: 0,
        };
        Core::new(GossipConfig::local(), id, Instant::now(), seed).unwrap()
    }

    /// A join over QUIC returns once its `ImportState` is answered, a force-leave once it is applied; the
    /// caller then reads the member list at once (`murmur join` then `murmur members`).
    #[tokio::test]
    async fn member_changes_are_published_before_the_reply() {
        let socket = Arc::new(UdpSocket::bind("127.0.17.1:0").await.unwrap());
        let here = socket.local_addr().unwrap();
        let table = Arc::new(MemberTable::new());
        let (mut driver, _handle) = UdpDriver::new(
            core("here", here, 1),
            socket,
            table.clone(),
            Security::default(),
            None,
        );
        driver.flush().await;
        assert_eq!(table.snapshot().members.len(), 1);

        let there: SocketAddr = "127.0.17.2:7946".parse().unwrap();
        let mut peer = core("there", there, 2);
        let now = Instant::now();
        for i in 0..5u8 {
            let mut other = Vec::new();
            let addr = SocketAddr::from(([127, 0, 17, 10 + i], 7946));
            core(&format!("n{i}"), addr, 10 + u64::from(i)).encode_state(&mut other);
            peer.merge_state(now, addr, &other).unwrap();
        }
        let mut state = Vec::new();
        peer.encode_state(&mut state);

        let (reply, mut rx) = oneshot::channel();
        driver.command(Command::ImportState {
            from: there,
            bytes: state,
            reply,
        });
        let merged = rx.try_recv().expect("answered at once").unwrap();
        assert_eq!(merged, 6, "the peer sent itself and five members");
        let names: Vec<String> = table
            .snapshot()
            .members
            .iter()
            .map(|m| m.name.to_string())
            .collect();
        assert_eq!(names, ["here", "n0", "n1", "n2", "n3", "n4", "there"]);

        let (reply, mut rx) = oneshot::channel();
        driver.command(Command::ForceLeave {
            name: "n3".into(),
            reply,
        });
        rx.try_recv().expect("answered at once").unwrap();
        let n3 = table.get("n3").unwrap();
        assert_eq!(n3.status.as_str(), "left");
    }
}
