//! What the agent asks of the servers' replicated store, whatever answers it: the raft module on a
//! server, or a forward over the server transport on a client. HTTP handlers hold a
//! [`Replicated`] and never see raft.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::kv::{KvAnswer, KvOp, KvQuery, KvRefusal};

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

/// A read, possibly blocking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadRequest {
    /// What to read.
    pub query: KvQuery,
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
    pub answer: KvAnswer,
    /// Whether the answering server knew a leader.
    pub known_leader: bool,
    /// Milliseconds since the answering server last heard from the leader (0 on the leader).
    pub last_contact_ms: u64,
}

/// A write's outcome once committed and applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// Log index of the write.
    pub index: u64,
    /// Consul's answer: false for a compare or lock that did not hold.
    pub ok: bool,
}

/// Why the store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreError {
    /// No leader within the hold time.
    NoLeader,
    /// A client agent knows no server.
    NoServers,
    /// The state refused the operation.
    Refused(KvRefusal),
    /// The servers could not be reached or failed.
    Unavailable(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Consul's texts (structs.ErrNoLeader, structs.ErrNoServers).
            StoreError::NoLeader => f.write_str("No cluster leader"),
            StoreError::NoServers => f.write_str("No known Consul servers"),
            StoreError::Refused(r) => write!(f, "{r}"),
            StoreError::Unavailable(e) => f.write_str(e),
        }
    }
}

/// A boxed future, as trait objects return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The replicated store as the agent sees it.
pub trait Replicated: Send + Sync {
    /// Commits a KV write.
    fn write(&self, op: KvOp) -> BoxFuture<'_, Result<Written, StoreError>>;
    /// Reads, by consistency mode, blocking when asked.
    fn read(&self, req: ReadRequest) -> BoxFuture<'_, Result<ReadResult, StoreError>>;
    /// The leader's RPC address, when one is known.
    fn leader(&self) -> BoxFuture<'_, Option<String>>;
    /// RPC addresses of the voting servers.
    fn peers(&self) -> BoxFuture<'_, Vec<String>>;
}
