//! Where a server member takes RPCs, as its gossip tags say (the leader and the peers come from the
//! replicated log: `crate::raft`).

use std::net::SocketAddr;

use super::members::MemberRecord;

/// A server's RPC address: its gossip IP and the port its `port` tag announces (`default_port` when
/// the tag is missing or bad).
pub fn rpc_addr(m: &MemberRecord, default_port: u16) -> SocketAddr {
    SocketAddr::new(m.addr.ip(), m.tag("port").parse().unwrap_or(default_port))
}
