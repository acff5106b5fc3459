//! The servers' replicated log (openraft): the type configuration, the commands the log carries, durable
//! storage in the data dir (redb), the state machine that applies commands into [`crate::state::kv`],
//! RPCs over QUIC on the server port, `bootstrap_expect`, and the [`server::RaftServer`] handle the agent
//! and the HTTP API use.
//!
//! - `command.rs`: what a log entry carries (a tag and a body, so an older server can skip a newer command)
//! - `log_store.rs`: log, vote and committed index in `data-dir/raft/raft.db`
//! - `fsm.rs`: the state machine and its snapshots (`data-dir/raft/snapshots/`)
//! - `rpc.rs`: the RPC messages and their codec; `network.rs`: the QUIC transport both ways
//! - `bootstrap.rs`: when and with whom a datacenter's servers initialize the log
//! - `server.rs`: start-up, leadership, forwarding, reads by consistency mode
//! - `archive.rs`: the operator's snapshot file; `backup.rs`: saving one and restoring from one

pub mod archive;
pub mod backup;
pub mod batcher;
pub mod bootstrap;
pub mod command;
pub mod federation;
pub mod forward;
pub mod fsm;
pub mod log_store;
pub mod network;
pub mod rpc;
pub mod server;
pub mod stats;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// A server as the raft configuration names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerNode {
    /// Node name.
    pub name: String,
    /// Node ID (UUID), as `/v1/operator/raft/configuration` shows it.
    pub id: String,
    /// RPC address (`IP:server-port`).
    pub addr: String,
}

openraft::declare_raft_types!(
    /// murmur's raft types.
    pub TypeConfig:
        D = command::Request,
        R = command::Reply,
        NodeId = u64,
        Node = ServerNode,
);

/// The raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// The raft ID of a node: the first 64 bits of its node ID (a random UUID, so they differ between the
/// few servers of a datacenter); `None` for something that is not a UUID.
pub fn raft_id(node_id: &str) -> Option<u64> {
    let hex: String = node_id.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    u64::from_str_radix(&hex[..16], 16).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn raft_ids_come_from_node_ids() {
        assert_eq!(
            super::raft_id("0123abcd-0000-4000-8000-00000000000f"),
            Some(0x0123_abcd_0000_4000)
        );
        assert_eq!(super::raft_id("not-a-uuid"), None);
    }
}
