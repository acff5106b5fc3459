//! Runs a gossip core on a real UDP socket under tokio: batched receive, timers, commands from the agent.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use murmur_gossip::{Core, Event, EventKind, JOIN_ATTEMPTS, Merged, wire};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::crypto::{self, Keyring};
use super::envelope::{Opened, Refused, Security};
use super::handle::{Command, DriverStats, GossipHandle};
use super::keyring_sync;
use super::mux;
use super::quic::{Peer, Quic};
use super::sink::MemberSink;
use crate::util::batch::{self, RecvBatch};

/// Upper bound on a graceful leave.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// After the left notice went out, keep answering for this long so stragglers hear it.
const LEAVE_LINGER: Duration = Duration::from_millis(500);

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
    sink: Arc<dyn MemberSink>,
    rx: mpsc::Receiver<Command>,
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
    /// Wires a core to a bound socket and a member sink; returns the driver and its handle.
    pub fn new(
        core: Core,
        socket: Arc<UdpSocket>,
        sink: Arc<dyn MemberSink>,
        security: Security,
        quic_tx: Option<mpsc::Sender<(SocketAddr, Vec<u8>)>>,
    ) -> (Self, GossipHandle) {
        let (tx, rx) = mpsc::channel(64);
        let quic = Arc::new(OnceLock::new());
        let mtu = core.config().mtu;
        let d = UdpDriver {
            core,
            socket,
            sink,
            rx,
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
        (d, GossipHandle { tx, quic })
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
                match self.security.open(data) {
                    Ok(Opened::Trusted(plain)) => self.core.handle_packet(now, from, plain),
                    Ok(Opened::Untrusted(plain)) => {
                        self.core.handle_untrusted_packet(now, from, plain)
                    }
                    Err(why) => {
                        if why == Refused::Plaintext {
                            self.dropped_plaintext += 1;
                        } else {
                            self.dropped_decrypt += 1;
                        }
                        self.warn(now, from, why);
                    }
                }
            }
            if n < batch::BATCH {
                return;
            }
        }
    }

    /// Logs a dropped datagram, at most once every 10 s so a flood cannot flood the log.
    fn warn(&mut self, now: Instant, from: SocketAddr, why: Refused) {
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
    fn export_state(
        &mut self,
        whole_records: bool,
        short_records: bool,
    ) -> Result<Vec<u8>, String> {
        let mut plain = Vec::new();
        self.core
            .encode_state(&mut plain, whole_records, short_records);
        let mut sealed = Vec::new();
        self.security.seal(&plain, &mut sealed).map(<[u8]>::to_vec)
    }

    fn import_state(
        &mut self,
        now: Instant,
        from: SocketAddr,
        mut bytes: Vec<u8>,
    ) -> Result<Merged, String> {
        let merged = match self.security.open(&mut bytes) {
            Ok(Opened::Trusted(p)) => self.core.merge_state(now, from, p),
            Ok(Opened::Untrusted(p)) => self.core.merge_untrusted_state(now, from, p),
            Err(why) => return Err(why.for_state(from)),
        };
        merged.map_err(|e| format!("state from {from}: {e}"))
    }

    /// Answers a peer's record request (the sealed name of a member) with the record we hold, sealed.
    fn export_record(&mut self, mut request: Vec<u8>) -> Result<Vec<u8>, String> {
        let name = match self.security.open(&mut request) {
            Ok(Opened::Trusted(p)) => std::str::from_utf8(p)
                .map_err(|_| "record request: the name is not UTF-8".to_string())?
                .to_owned(),
            Ok(Opened::Untrusted(_)) => {
                return Err("record requests must be encrypted with the gossip key".into());
            }
            Err(why) => return Err(why.to_string()),
        };
        let record = self
            .core
            .record(&name)
            .ok_or_else(|| format!("no record held for {name:?}"))?;
        let mut plain = Vec::new();
        let delta = wire::Delta::Record {
            name: &name,
            version: record.version,
            body: wire::RecordBody::Inline(&record.body),
        };
        wire::encode_state(&mut plain, std::iter::once(delta));
        let mut sealed = Vec::new();
        self.security.seal(&plain, &mut sealed).map(<[u8]>::to_vec)
    }

    /// Hands a fetched record to the core (only an authenticated one: records route traffic).
    fn import_record(&mut self, now: Instant, from: SocketAddr, mut bytes: Vec<u8>) {
        let plain = match self.security.open(&mut bytes) {
            Ok(Opened::Trusted(p)) => p,
            Ok(Opened::Untrusted(_)) | Err(_) => {
                tracing::debug!("record from {from} dropped: not authenticated");
                return;
            }
        };
        let Ok(state) = wire::decode_state(plain) else {
            tracing::debug!("record from {from} dropped: malformed");
            return;
        };
        for d in state.deltas() {
            if let wire::Delta::Record {
                name,
                version,
                body: wire::RecordBody::Inline(body),
            } = d
            {
                self.core.handle_record(now, from, name, version, body);
            }
        }
    }

    /// A handle for tasks the driver starts itself (None once the agent dropped every handle).
    fn own_handle(&self) -> Option<GossipHandle> {
        Some(GossipHandle {
            tx: self.weak.upgrade()?,
            quic: self.quic.clone(),
        })
    }

    fn start_fetch(&mut self, name: &str, from: SocketAddr) {
        let Some(handle) = self.own_handle() else {
            return;
        };
        let mut sealed = Vec::new();
        let Ok(request) = self.security.seal(name.as_bytes(), &mut sealed) else {
            return;
        };
        let request = request.to_vec();
        let name = name.to_owned();
        tokio::spawn(async move {
            if let Err(e) = handle.fetch_record(from, request).await {
                tracing::debug!("fetching the record of {name} from {from} failed: {e}");
            }
        });
    }

    fn start_push_pull(&mut self, addr: SocketAddr, whole_records: bool, short_records: bool) {
        let Some(handle) = self.own_handle() else {
            return;
        };
        tokio::spawn(async move {
            let r = handle
                .push_pull(addr, Peer::Member, whole_records, short_records)
                .await;
            if let Err(e) = r {
                tracing::debug!("periodic push/pull with {addr} failed: {e}");
            }
        });
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
                let r = keyring_sync::change(&mut self.core, &mut self.security, op, &key);
                self.answer(reply, r);
            }
            Command::ExportState {
                whole_records,
                short_records,
                reply,
            } => {
                let _ = reply.send(self.export_state(whole_records, short_records));
            }
            Command::ImportState { from, bytes, reply } => {
                let r = self.import_state(now, from, bytes);
                self.answer(reply, r);
            }
            Command::Joined => self.core.joined(now),
            Command::SetRecord { body, reply } => {
                let r = self.core.set_record(body).map_err(|e| e.to_string());
                self.answer(reply, r);
            }
            Command::ExportRecord { request, reply } => {
                let _ = reply.send(self.export_record(request));
            }
            Command::ImportRecord { from, bytes } => self.import_record(now, from, bytes),
            Command::LocalRecord { reply } => {
                let _ = reply.send(self.core.local_slot().record.clone());
            }
            Command::Coordinate { reply } => {
                let _ = reply.send(self.core.coordinate().cloned());
            }
            Command::PeerCoordinates { reply } => {
                let _ = reply.send(self.core.peer_coordinates());
            }
            Command::UserEvent {
                kind,
                payload,
                reply,
            } => {
                let _ = reply.send(
                    self.core
                        .user_event(kind, &payload)
                        .map_err(|e| e.to_string()),
                );
            }
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
            let Ok(data) = self.security.seal(&self.buf[..t.len], &mut self.sealed) else {
                self.send_errors += 1;
                continue;
            };
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
                Event::User { kind, payload, .. } if kind == EventKind::KEYRING => {
                    keyring_sync::on_event(&mut self.core, &mut self.security, &payload);
                }
                // The application's own events (Consul's user events) go where members go.
                Event::User { .. } => {
                    self.sink.apply(&ev);
                }
                Event::PushPull {
                    addr,
                    whole_records,
                    short_records,
                } => self.start_push_pull(addr, whole_records, short_records),
                Event::FetchRecord { name, from, .. } => self.start_fetch(&name, from),
                Event::Member(_) | Event::Reaped(_) | Event::Record { .. } => {
                    changed |= self.sink.apply(&ev)
                }
            }
        }
        if changed {
            self.sink.publish();
        }
        for (seq, r) in done {
            if let Some(k) = self.joins.iter().position(|j| j.seq == seq) {
                let _ = self.joins.swap_remove(k).reply.send(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_gossip::{GossipConfig, Identity, State};
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// A sink that keeps what was applied apart from what was published, as the member table does.
    #[derive(Default)]
    struct Recorder {
        applied: Mutex<BTreeMap<String, State>>,
        published: Mutex<BTreeMap<String, State>>,
    }

    impl MemberSink for Recorder {
        fn apply(&self, ev: &Event) -> bool {
            if let Event::Member(m) = ev {
                self.applied
                    .lock()
                    .unwrap()
                    .insert(m.name.to_string(), m.state);
            }
            true
        }
        fn publish(&self) {
            *self.published.lock().unwrap() = self.applied.lock().unwrap().clone();
        }
    }

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
        let table = Arc::new(Recorder::default());
        let (mut driver, _handle) = UdpDriver::new(
            core("here", here, 1),
            socket,
            table.clone(),
            Security::default(),
            None,
        );
        driver.flush().await;
        assert_eq!(table.published.lock().unwrap().len(), 1);

        let there: SocketAddr = "127.0.17.2:7946".parse().unwrap();
        let mut peer = core("there", there, 2);
        let now = Instant::now();
        for i in 0..5u8 {
            let mut other = Vec::new();
            let addr = SocketAddr::from(([127, 0, 17, 10 + i], 7946));
            core(&format!("n{i}"), addr, 10 + u64::from(i)).encode_state(&mut other, true, true);
            peer.merge_state(now, addr, &other).unwrap();
        }
        // The peer's own record rides in the short form, which tells us it reads that form.
        peer.set_record(b"services".to_vec()).unwrap();
        let mut state = Vec::new();
        peer.encode_state(&mut state, true, true);

        let (reply, mut rx) = oneshot::channel();
        driver.command(Command::ImportState {
            from: there,
            bytes: state,
            reply,
        });
        let merged = rx.try_recv().expect("answered at once").unwrap();
        assert_eq!(merged.members, 6, "the peer sent itself and five members");
        assert!(merged.short_records);
        assert_eq!(
            driver.core.record("there").map(|r| r.body.to_vec()),
            Some(b"services".to_vec())
        );
        let names: Vec<String> = table.published.lock().unwrap().keys().cloned().collect();
        assert_eq!(names, ["here", "n0", "n1", "n2", "n3", "n4", "there"]);

        let (reply, mut rx) = oneshot::channel();
        driver.command(Command::ForceLeave {
            name: "n3".into(),
            reply,
        });
        rx.try_recv().expect("answered at once").unwrap();
        let n3 = table.published.lock().unwrap()["n3"];
        assert_eq!(n3, State::Left);
    }
}
