//! A member as the gossip core knows it.

use std::net::SocketAddr;
use std::sync::Arc;

/// SWIM state of a member. At equal incarnation later variants override earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// Answering probes.
    Alive,
    /// Missed a probe; will be declared failed unless it refutes.
    Suspect,
    /// Declared failed.
    Dead,
    /// Left gracefully (or was force-left).
    Left,
}

impl State {
    /// Still counted as part of the cluster (probed, gossiped to).
    pub fn is_live(self) -> bool {
        matches!(self, State::Alive | State::Suspect)
    }
}

/// One member's record.
#[derive(Debug, Clone)]
pub struct Member {
    /// Unique node name.
    pub name: Arc<str>,
    /// Gossip address.
    pub addr: SocketAddr,
    /// Incarnation number; only the member itself raises it.
    pub incarnation: u32,
    /// Current state.
    pub state: State,
    /// Encoded tags (see [`crate::tags`]).
    pub tags: Arc<[u8]>,
}
