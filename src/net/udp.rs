//! Runs a gossip core on a real UDP socket under tokio: batched receive, timers, commands from the agent.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use super::batch::RecvBatch;
use crate::gossip::core::JOIN_ATTEMPTS;
use crate::gossip::{Core, Event, Stats, wire};
use crate::table::MemberTable;

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
}

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
}

/// Cheap, cloneable handle the agent uses to command a running driver.
#[derive(Clone)]
pub struct GossipHandle {
    tx: mpsc::Sender<Command>,
    changes: watch::Receiver<u64>,
}

const GONE: &str = "gossip layer has shut down";

impl GossipHandle {
    /// Joins the cluster through `addr`; succeeds once that member sent its state back.
    pub async fn join(&self, addr: SocketAddr) -> Result<(), String> {
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
    socket: UdpSocket,
    table: Arc<MemberTable>,
    rx: mpsc::Receiver<Command>,
    changes: watch::Sender<u64>,
    joins: Vec<PendingJoin>,
    leave: Option<PendingLeave>,
    recv: RecvBatch,
    buf: Vec<u8>,
    dropped_truncated: u64,
    send_errors: u64,
}

impl UdpDriver {
    /// Wires a core to a bound socket and a table; returns the driver and its handle.
    pub fn new(core: Core, socket: UdpSocket, table: Arc<MemberTable>) -> (Self, GossipHandle) {
        let (tx, rx) = mpsc::channel(64);
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
            dropped_truncated: 0,
            send_errors: 0,
        };
        (
            d,
            GossipHandle {
                tx,
                changes: changes_rx,
            },
        )
    }

    /// Runs until a graceful leave completes (returns true) or every handle is dropped (false).
    pub async fn run(mut self) -> bool {
        loop {
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
                let Some((from, data, truncated)) = self.recv.get(i) else {
                    continue;
                };
                if truncated {
                    self.dropped_truncated += 1;
                    continue;
                }
                self.core.handle_packet(now, from, data);
            }
            if n < super::batch::BATCH {
                return;
            }
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
                let _ = reply.send(r);
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
                });
            }
        }
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
            let data = &self.buf[..t.len];
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
        let mut changed = false;
        while let Some(ev) = self.core.poll_event() {
            let done = match ev {
                Event::SyncReply { seq, .. } => Some((seq, Ok(()))),
                Event::JoinTimeout { seq, addr } => Some((
                    seq,
                    Err(format!(
                        "no response from {addr} after {JOIN_ATTEMPTS} attempts"
                    )),
                )),
                Event::Member(_) | Event::Reaped(_) => None,
            };
            if let Some((seq, r)) = done {
                if let Some(k) = self.joins.iter().position(|j| j.seq == seq) {
                    let _ = self.joins.swap_remove(k).reply.send(r);
                }
                continue;
            }
            self.table.apply(&ev);
            changed = true;
        }
        if changed && self.table.publish() {
            let _ = self.changes.send(self.table.snapshot().index);
        }
    }
}
