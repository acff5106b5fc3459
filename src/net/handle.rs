//! The command handle of a running gossip driver: what the agent and the HTTP API ask of it (join, leave,
//! force-leave, keyring changes, counters), and the full-state exchanges QUIC carries.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use murmur_gossip::coordinate::Coordinate;
use murmur_gossip::{EventKind, Merged, Record, Stats};
use tokio::sync::{mpsc, oneshot};

use super::keyring_sync::KeyOp;
use super::quic::{Peer, Quic, Stream};

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

pub(super) enum Command {
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
        whole_records: bool,
        /// The peer reads records in the short form.
        short_records: bool,
        reply: oneshot::Sender<Result<Vec<u8>, String>>,
    },
    ImportState {
        from: SocketAddr,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Merged, String>>,
    },
    Joined,
    SetRecord {
        body: Vec<u8>,
        reply: oneshot::Sender<Result<u32, String>>,
    },
    /// A record request from a peer: answered sealed, like a full state.
    ExportRecord {
        request: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, String>>,
    },
    ImportRecord {
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    LocalRecord {
        reply: oneshot::Sender<Option<std::sync::Arc<Record>>>,
    },
    Coordinate {
        reply: oneshot::Sender<Option<Coordinate>>,
    },
    PeerCoordinates {
        reply: oneshot::Sender<Vec<(std::sync::Arc<str>, Coordinate)>>,
    },
    UserEvent {
        kind: EventKind,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// Cheap, cloneable handle the agent uses to command a running driver.
#[derive(Clone)]
pub struct GossipHandle {
    pub(super) tx: mpsc::Sender<Command>,
    pub(super) quic: Arc<OnceLock<Arc<Quic>>>,
}

const GONE: &str = "gossip layer has shut down";

impl GossipHandle {
    /// Attaches the QUIC endpoint: joins and periodic exchanges then use stream push/pull.
    pub fn set_quic(&self, quic: Arc<Quic>) {
        let _ = self.quic.set(quic);
    }

    /// True once the driver stopped (after a leave, or at shutdown).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
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

    /// Full-state exchange with `addr` over QUIC (`whole_records` to send and ask for every record
    /// whole, as a join does; `short_records` when it reads records in the short form); returns how
    /// many entries they sent.
    pub async fn push_pull(
        &self,
        addr: SocketAddr,
        peer: Peer,
        whole_records: bool,
        short_records: bool,
    ) -> Result<usize, String> {
        let quic = self
            .quic
            .get()
            .ok_or("QUIC push/pull is not enabled")?
            .clone();
        // A join needs every record; periodic exchanges only compare versions and pull what differs.
        let kind = if whole_records {
            Stream::Join
        } else {
            Stream::PushPull
        };
        let ours = self
            .ask(|reply| Command::ExportState {
                whole_records,
                short_records,
                reply,
            })
            .await??;
        let theirs = quic.exchange(addr, kind, &ours, peer).await?;
        let merged = self
            .ask(|reply| Command::ImportState {
                from: addr,
                bytes: theirs,
                reply,
            })
            .await??;
        Ok(merged.members)
    }

    /// Answers a peer's stream request: a push/pull merges their state and returns ours; a record
    /// request returns the record we hold for the member it names.
    pub async fn answer_stream(
        &self,
        from: SocketAddr,
        kind: Stream,
        theirs: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        match kind {
            Stream::PushPull | Stream::Join => {
                let merged = self
                    .ask(|reply| Command::ImportState {
                        from,
                        bytes: theirs,
                        reply,
                    })
                    .await??;
                // Whole records only to a peer whose state came authenticated, as over datagrams.
                let whole_records = kind == Stream::Join && merged.trusted;
                self.ask(|reply| Command::ExportState {
                    whole_records,
                    // A peer that wrote the short form reads it.
                    short_records: merged.short_records,
                    reply,
                })
                .await?
            }
            Stream::Record => {
                self.ask(|reply| Command::ExportRecord {
                    request: theirs,
                    reply,
                })
                .await?
            }
        }
    }

    /// Fetches the record `request` (sealed member name) names from `addr` and hands it to the core.
    pub(super) async fn fetch_record(
        &self,
        addr: SocketAddr,
        request: Vec<u8>,
    ) -> Result<(), String> {
        let quic = self.quic.get().ok_or("record fetches need QUIC")?.clone();
        let bytes = quic
            .exchange(addr, Stream::Record, &request, Peer::Member)
            .await?;
        self.tx
            .send(Command::ImportRecord { from: addr, bytes })
            .await
            .map_err(|_| GONE.to_string())
    }

    /// Publishes this node's record (its services and checks) to the cluster; returns its version.
    pub async fn set_record(&self, body: Vec<u8>) -> Result<u32, String> {
        self.ask(|reply| Command::SetRecord { body, reply }).await?
    }

    /// The record this node publishes, as the core holds it.
    pub async fn local_record(&self) -> Option<std::sync::Arc<Record>> {
        self.ask(|reply| Command::LocalRecord { reply })
            .await
            .ok()
            .flatten()
    }

    /// Spreads an application event of `kind` to every member.
    pub async fn user_event(&self, kind: EventKind, payload: Vec<u8>) -> Result<(), String> {
        self.ask(|reply| Command::UserEvent {
            kind,
            payload,
            reply,
        })
        .await?
    }

    /// This node's network coordinate (none when `disable_coordinates` is set or the driver stopped).
    pub async fn coordinate(&self) -> Option<Coordinate> {
        self.ask(|reply| Command::Coordinate { reply })
            .await
            .ok()
            .flatten()
    }

    /// The latest coordinates of the peers the core remembers them for (the WAN pool's servers).
    pub async fn peer_coordinates(&self) -> Vec<(std::sync::Arc<str>, Coordinate)> {
        self.ask(|reply| Command::PeerCoordinates { reply })
            .await
            .unwrap_or_default()
    }

    /// Joins the cluster through `addr`: one full-state push/pull over QUIC when enabled (the joiner
    /// learns every member in one exchange), else the datagram exchange. Succeeds once their state arrived.
    pub async fn join(&self, addr: SocketAddr) -> Result<(), String> {
        if self.quic.get().is_some() {
            // A named address may run any build: the long form.
            self.push_pull(addr, Peer::Named, true, false).await?;
            return self
                .tx
                .send(Command::Joined)
                .await
                .map_err(|_| GONE.to_string());
        }
        self.ask(|reply| Command::Join { addr, reply }).await?
    }

    /// Leaves gracefully; returns when the leave was announced (or timed out). The driver then stops.
    pub async fn leave(&self) {
        let _ = self.ask(|reply| Command::Leave { reply }).await;
    }

    /// Marks a member `left` cluster-wide.
    pub async fn force_leave(&self, name: &str) -> Result<(), String> {
        let name = name.to_owned();
        self.ask(|reply| Command::ForceLeave { name, reply })
            .await?
    }

    /// Current counters.
    pub async fn stats(&self) -> Option<DriverStats> {
        self.ask(|reply| Command::Stats { reply }).await.ok()
    }

    /// Applies a keyring change here and spreads it to every member over (encrypted) gossip.
    pub async fn keyring(&self, op: KeyOp, key: Vec<u8>) -> Result<(), String> {
        self.ask(|reply| Command::Keyring { op, key, reply })
            .await?
    }

    /// The local keys, primary first (empty without encryption).
    pub async fn keys(&self) -> Vec<Vec<u8>> {
        self.ask(|reply| Command::ListKeys { reply })
            .await
            .unwrap_or_default()
    }
}
