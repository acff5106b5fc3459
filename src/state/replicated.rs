//! What the agent asks of the servers' replicated store, whatever answers it: the raft module on a
//! server, or a forward over the server transport on a client. HTTP handlers hold a
//! [`Replicated`] and never see raft.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use tokio::time::Instant;

use super::autopilot::{OperatorOp, OperatorReply};
use super::coordinates::{CoordinateEntry, CoordinateImage, CoordinateOp, Coordinates};
use super::external::{CatalogOp, ExternalCatalog, ExternalDelta, ExternalImage};
use super::kv::{KvAnswer, KvImage, KvOp, KvQuery, KvStore, Refusal};
use super::sessions::{Behavior, Session, SessionOp, SessionQuery, SessionStore};
use super::txn::{TxnCheck, TxnOp, TxnOutcome};

/// Consul's read consistency modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consistency {
    /// The leader answers from its state (`?` nothing).
    Default,
    /// The leader first confirms with a quorum that it still leads (`?consistent`).
    Consistent,
    /// Any server answers from its own state, also without a leader (`?stale`).
    Stale,
}

/// A write to the replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A KV write.
    Kv(KvOp),
    /// A session created or ended.
    Session(SessionOp),
    /// A KV transaction, applied all or none.
    Txn(Vec<TxnOp>),
    /// The whole state replaced by a snapshot's (`/v1/snapshot` restore).
    Restore(StateImage),
    /// KV tombstones of deletions at or below this index dropped (the leader's tombstone GC).
    Reap(u64),
    /// An external node, service or check registered or deregistered.
    Catalog(CatalogOp),
    /// Nodes' network coordinates updated or dropped.
    Coordinates(CoordinateOp),
}

/// Largest state an operator's snapshot file may hold unpacked. A restore travels as one log entry,
/// and openraft 0.9 gives each append to a follower 100 ms (the heartbeat interval): an entry that
/// cannot be sent, stored and acknowledged in that time is never replicated. Chunked restores would
/// lift this.
pub const MAX_RESTORE_STATE: usize = 4 << 20;

/// Largest snapshot file a restore takes (gzip never makes the state larger than this).
pub const MAX_RESTORE_FILE: usize = MAX_RESTORE_STATE + (1 << 20);

/// The replicated state as a snapshot carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateImage {
    /// Keys and tombstones.
    pub kv: KvImage,
    /// The sessions table's index.
    pub sessions_index: u64,
    /// Sessions.
    pub sessions: Vec<Session>,
    /// The external catalog.
    pub external: ExternalImage,
    /// Network coordinates. Last, so that the layouts without it still read (see
    /// [`StateImage::decode`]).
    pub coordinates: CoordinateImage,
}

/// [`StateImage`] as servers wrote it before network coordinates.
#[derive(Deserialize)]
pub struct StateImageV2 {
    kv: KvImage,
    sessions_index: u64,
    sessions: Vec<Session>,
    external: ExternalImage,
}

impl From<StateImageV2> for StateImage {
    fn from(v: StateImageV2) -> Self {
        StateImage {
            kv: v.kv,
            sessions_index: v.sessions_index,
            sessions: v.sessions,
            external: v.external,
            coordinates: CoordinateImage::default(),
        }
    }
}

/// [`StateImage`] as servers wrote it before the external catalog.
#[derive(Deserialize)]
pub struct StateImageV1 {
    kv: KvImage,
    sessions_index: u64,
    sessions: Vec<Session>,
}

impl From<StateImageV1> for StateImage {
    fn from(v: StateImageV1) -> Self {
        StateImage {
            kv: v.kv,
            sessions_index: v.sessions_index,
            sessions: v.sessions,
            external: ExternalImage::default(),
            coordinates: CoordinateImage::default(),
        }
    }
}

/// Decodes `bytes` as a `T` that uses all of them.
pub fn decode_exact<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    match postcard::take_from_bytes(bytes)? {
        (v, []) => Ok(v),
        _ => Err(postcard::Error::DeserializeBadEncoding),
    }
}

impl StateImage {
    /// Reads an image in this version's layout or an earlier one. Postcard does not describe its
    /// fields, so the layout is told by which one reads the bytes exactly.
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        decode_exact::<StateImage>(bytes).or_else(|e| {
            decode_exact::<StateImageV2>(bytes)
                .map(Into::into)
                .or_else(|_| decode_exact::<StateImageV1>(bytes).map(Into::into))
                .map_err(|_| e)
        })
    }
}

/// What applying a change answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Consul's boolean (false: a compare or lock that did not hold).
    Answer(bool),
    /// A transaction's outcome.
    Txn(TxnOutcome),
}

/// What a read asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// Keys.
    Kv(KvQuery),
    /// Sessions.
    Session(SessionQuery),
    /// A transaction that only reads and compares.
    Txn(Vec<TxnCheck>),
    /// What changed in the external catalog since an index (0: all of it); agents mirror it.
    External {
        /// The reader's index.
        since: u64,
    },
    /// Every node's network coordinate.
    Coordinates,
}

/// A read's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadAnswer {
    /// Keys.
    Kv(KvAnswer),
    /// Sessions.
    Sessions(Vec<Session>),
    /// A read-only transaction's outcome.
    Txn(TxnOutcome),
    /// What changed in the external catalog.
    External(ExternalDelta),
    /// Network coordinates, sorted by node.
    Coordinates(Vec<CoordinateEntry>),
}

/// What a server's state machine holds: the KV store, the sessions that lock its keys, and the
/// external catalog.
#[derive(Default)]
pub struct Replica {
    /// Keys.
    pub kv: KvStore,
    /// Sessions.
    pub sessions: SessionStore,
    /// Nodes and services registered through `/v1/catalog/register`.
    pub external: ExternalCatalog,
    /// Nodes' network coordinates.
    pub coordinates: Coordinates,
}

impl Replica {
    /// The state as a snapshot carries it.
    pub fn image(&self) -> StateImage {
        let (sessions_index, sessions) = self.sessions.image();
        StateImage {
            kv: self.kv.image(),
            sessions_index,
            sessions,
            external: self.external.image(),
            coordinates: self.coordinates.image(),
        }
    }

    /// Replaces the state with a snapshot's (raft's own snapshots: indexes as they were).
    pub fn restore(&self, image: StateImage) {
        self.kv.restore(image.kv);
        self.sessions.restore(image.sessions_index, image.sessions);
        self.external.restore(image.external);
        self.coordinates.restore(image.coordinates);
    }

    /// Replaces the state with an operator's snapshot at raft index `index`. Everything in it counts
    /// as modified at `index`: the snapshot may come from another cluster whose indexes are ahead of
    /// this log (Consul moves its raft index past the snapshot's instead, which openraft cannot), and
    /// every blocking reader must see that its result changed.
    fn restore_at(&self, index: u64, mut image: StateImage) {
        for e in &mut image.kv.entries {
            e.create_index = e.create_index.min(index);
            e.modify_index = index;
        }
        for t in &mut image.kv.tombstones {
            t.1 = index;
        }
        // A key held now and absent from the snapshot is deleted by the restore: its tombstone
        // wakes the readers blocked on it (and on its prefixes) and keeps its index from falling.
        let kept: std::collections::HashSet<&str> = image
            .kv
            .entries
            .iter()
            .map(|e| e.key.as_str())
            .chain(image.kv.tombstones.iter().map(|t| t.0.as_str()))
            .collect();
        let gone: Vec<(String, u64)> = self
            .kv
            .names()
            .into_iter()
            .filter(|k| !kept.contains(k.as_str()))
            .map(|k| (k, index))
            .collect();
        image.kv.tombstones.extend(gone);
        for s in &mut image.sessions {
            s.create_index = s.create_index.min(index);
            s.modify_index = index;
        }
        image.sessions_index = index;
        for n in &mut image.external.nodes {
            n.create_index = n.create_index.min(index);
            n.modify_index = index;
        }
        image.external.index = index;
        image.coordinates.index = index;
        self.restore(image);
    }

    /// Applies `change` at raft index `index` (every server alike).
    pub fn apply(&self, index: u64, change: &Change) -> Result<Applied, Refusal> {
        let exists = |id: &str| self.sessions.exists(id);
        match change {
            Change::Kv(op) => self.kv.apply(index, op, exists).map(Applied::Answer),
            Change::Txn(ops) => Ok(Applied::Txn(self.kv.apply_txn(index, ops, exists))),
            Change::Reap(up_to) => {
                let n = self.kv.reap(*up_to);
                tracing::debug!("reaped {n} tombstones up to index {up_to}");
                Ok(Applied::Answer(true))
            }
            // The answer says whether the table changed: the writer's agent waits for its mirror
            // to reach this index only then (Consul's HTTP answer is `true` either way).
            Change::Catalog(op) => self.external.apply(index, op).map(Applied::Answer),
            Change::Coordinates(op) => Ok(Applied::Answer(self.coordinates.apply(index, op))),
            Change::Restore(image) => {
                self.restore_at(index, image.clone());
                Ok(Applied::Answer(true))
            }
            Change::Session(SessionOp::Create(s)) => {
                if self.sessions.create(index, s.clone()) {
                    Ok(Applied::Answer(true))
                } else {
                    Err(Refusal::SessionExists(s.id.clone()))
                }
            }
            Change::Session(SessionOp::Destroy { id }) => {
                if let Some(s) = self.sessions.destroy(index, id) {
                    let keys = self
                        .kv
                        .release_session(index, id, s.behavior == Behavior::Delete);
                    self.sessions.delay(&keys, s.lock_delay);
                }
                Ok(Applied::Answer(true))
            }
        }
    }

    /// Answers `q` now.
    pub fn query(&self, q: &Query) -> (u64, ReadAnswer) {
        match q {
            Query::Kv(q) => {
                let (i, a) = self.kv.query(q);
                (i, ReadAnswer::Kv(a))
            }
            Query::Session(q) => {
                let (i, s) = self.sessions.query(q);
                (i, ReadAnswer::Sessions(s))
            }
            Query::Txn(c) => {
                let (i, o) = self.kv.read_txn(c);
                (i, ReadAnswer::Txn(o))
            }
            Query::External { since } => {
                let (i, d) = self.external.delta(*since);
                (i, ReadAnswer::External(d))
            }
            Query::Coordinates => {
                let (i, c) = self.coordinates.all();
                (i, ReadAnswer::Coordinates(c))
            }
        }
    }

    /// Answers `q` once its index differs from `min`, or at `deadline`.
    pub async fn wait(&self, q: &Query, min: u64, deadline: Instant) -> (u64, ReadAnswer) {
        match q {
            Query::Kv(q) => {
                let (i, a) = self.kv.wait(q, min, deadline).await;
                (i, ReadAnswer::Kv(a))
            }
            Query::Session(q) => {
                let (i, s) = self.sessions.wait(q, min, deadline).await;
                (i, ReadAnswer::Sessions(s))
            }
            Query::External { since } => {
                let (i, d) = self.external.wait(min, *since, deadline).await;
                (i, ReadAnswer::External(d))
            }
            Query::Coordinates => {
                let (i, c) = self.coordinates.wait(min, deadline).await;
                (i, ReadAnswer::Coordinates(c))
            }
            // Transactions do not block (as Consul's).
            Query::Txn(_) => self.query(q),
        }
    }
}

/// A read, possibly blocking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadRequest {
    /// What to read.
    pub query: Query,
    /// Who may answer.
    pub consistency: Consistency,
    /// Block until the result's index differs from this one.
    pub min_index: Option<u64>,
    /// Longest block.
    pub wait: Duration,
}

/// A read's answer with what the `X-Consul-*` headers say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadResult {
    /// Index of the result.
    pub index: u64,
    /// The result.
    pub answer: ReadAnswer,
    /// Whether the answering server knew a leader.
    pub known_leader: bool,
    /// Milliseconds since the answering server last heard from the leader (0 on the leader).
    pub last_contact_ms: u64,
}

/// A write's outcome once committed and applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// Log index of the write.
    pub index: u64,
    /// Consul's answer: false for a compare or lock that did not hold (or a failed transaction).
    pub ok: bool,
    /// A transaction's outcome.
    pub txn: Option<TxnOutcome>,
}

/// Why the store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreError {
    /// No leader within the hold time.
    NoLeader,
    /// A client agent knows no server.
    NoServers,
    /// The state refused the operation.
    Refused(Refusal),
    /// The servers could not be reached or failed.
    Unavailable(String),
    /// No server of the datacenter a request names is known and alive.
    NoPathToDatacenter,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Consul's texts (structs.ErrNoLeader, structs.ErrNoServers).
            StoreError::NoLeader => f.write_str("No cluster leader"),
            StoreError::NoServers => f.write_str("No known Consul servers"),
            StoreError::Refused(r) => write!(f, "{r}"),
            StoreError::Unavailable(e) => f.write_str(e),
            // structs.ErrNoDCPath.
            StoreError::NoPathToDatacenter => f.write_str("No path to datacenter"),
        }
    }
}

/// One server of the raft configuration (`/v1/operator/raft/configuration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftPeer {
    /// Node ID (UUID).
    pub id: String,
    /// Node name.
    pub node: String,
    /// RPC address.
    pub address: String,
    /// Whether it leads.
    pub leader: bool,
    /// Whether it votes.
    pub voter: bool,
}

/// The raft configuration and the log index it was committed at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftConfiguration {
    /// The servers, voters and non-voters.
    pub servers: Vec<RaftPeer>,
    /// Index of the configuration's log entry.
    pub index: u64,
}

/// A boxed future, as trait objects return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The replicated store as the agent sees it.
pub trait Replicated: Send + Sync {
    /// Commits a write.
    fn write(&self, change: Change) -> BoxFuture<'_, Result<Written, StoreError>>;
    /// Renews a session's TTL at the leader; `None` when there is no such session.
    fn renew(&self, id: String) -> BoxFuture<'_, Result<Option<Session>, StoreError>>;
    /// Reads, by consistency mode, blocking when asked.
    fn read(&self, req: ReadRequest) -> BoxFuture<'_, Result<ReadResult, StoreError>>;
    /// The leader's RPC address, when one is known.
    fn leader(&self) -> BoxFuture<'_, Option<String>>;
    /// RPC addresses of the voting servers.
    fn peers(&self) -> BoxFuture<'_, Vec<String>>;
    /// Whether a leader was known when last heard (`X-Consul-KnownLeader` of local reads).
    fn known_leader(&self) -> bool;

    /// Adds this store's raft figures to a metrics snapshot (a server's own raft; nothing on a client).
    fn record_metrics(&self, _snap: &mut crate::metrics::Snapshot) {}
    /// The raft configuration as a server sees it.
    fn configuration(&self) -> BoxFuture<'_, Result<RaftConfiguration, StoreError>>;
    /// An operator request, served by the leader.
    fn operator(&self, op: OperatorOp) -> BoxFuture<'_, Result<OperatorReply, StoreError>>;
    /// Has a server of datacenter `dc` (this one included) answer `req` as if asked itself.
    fn remote(
        &self,
        dc: String,
        req: super::remote::RemoteRequest,
    ) -> BoxFuture<'_, Result<super::remote::RemoteAnswer, StoreError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_in_earlier_layouts_still_decode() {
        #[derive(Serialize)]
        struct Old<'a> {
            kv: &'a KvImage,
            sessions_index: u64,
            sessions: Vec<Session>,
        }
        let mut image = StateImage::default();
        image.kv.tombstones.push(("gone".into(), 4));
        image.sessions_index = 9;
        let old = postcard::to_allocvec(&Old {
            kv: &image.kv,
            sessions_index: 9,
            sessions: Vec::new(),
        })
        .unwrap();
        assert_eq!(StateImage::decode(&old).unwrap(), image);
        image.external.index = 12;
        let mut db = super::super::external::ExternalNode::default();
        db.info.node = "db".into();
        image.external.nodes.push(db);
        // The layout before coordinates: the external catalog last.
        #[derive(Serialize)]
        struct V2<'a> {
            kv: &'a KvImage,
            sessions_index: u64,
            sessions: Vec<Session>,
            external: &'a ExternalImage,
        }
        let v2 = postcard::to_allocvec(&V2 {
            kv: &image.kv,
            sessions_index: 9,
            sessions: Vec::new(),
            external: &image.external,
        })
        .unwrap();
        assert_eq!(StateImage::decode(&v2).unwrap(), image);
        image.coordinates.index = 14;
        image.coordinates.entries.push(CoordinateEntry {
            node: "db".into(),
            segment: String::new(),
            coord: super::super::coordinates::Coord {
                vec: vec![0.5; 8],
                error: 0.1,
                adjustment: 0.0,
                height: 0.001,
            },
        });
        let new = postcard::to_allocvec(&image).unwrap();
        assert_eq!(StateImage::decode(&new).unwrap(), image);
        // Neither layout with bytes to spare, nor a cut one.
        let mut longer = new.clone();
        longer.push(0);
        assert!(StateImage::decode(&longer).is_err());
        assert!(StateImage::decode(&new[..new.len() - 1]).is_err());
    }
}
