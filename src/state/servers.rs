//! The servers of the local datacenter and the leader, as gossip tells them (role, `port` and `expect`
//! tags). Until the replicated log exists the leader is an interim rule every member computes alike.

use std::net::SocketAddr;
use std::sync::Arc;

use super::members::{MemberRecord, MemberStatus, Snapshot};

/// Alive servers, by name.
pub fn alive(snap: &Snapshot) -> impl Iterator<Item = &Arc<MemberRecord>> {
    snap.members
        .iter()
        .filter(|m| m.is_server() && m.status == MemberStatus::Alive)
}

/// A server's RPC address: its gossip IP and the port its `port` tag announces (`default_port` when
/// the tag is missing or bad).
pub fn rpc_addr(m: &MemberRecord, default_port: u16) -> SocketAddr {
    SocketAddr::new(m.addr.ip(), m.tag("port").parse().unwrap_or(default_port))
}

/// Interim leader until the replicated log exists: once as many servers as the highest `expect` tag are
/// alive, the one with the lowest name leads.
pub fn leader(snap: &Snapshot) -> Option<&Arc<MemberRecord>> {
    let expect = alive(snap)
        .filter_map(|m| m.tag("expect").parse::<usize>().ok())
        .max()
        .unwrap_or(1)
        .max(1);
    if alive(snap).count() < expect {
        return None;
    }
    // Snapshots are sorted by name, so the first alive server is the lowest name.
    alive(snap).next()
}

/// RPC addresses of the alive servers of datacenter `dc`.
pub fn peers(snap: &Snapshot, dc: &str, default_port: u16) -> Vec<SocketAddr> {
    alive(snap)
        .filter(|m| m.tag("dc") == dc)
        .map(|m| rpc_addr(m, default_port))
        .collect()
}
