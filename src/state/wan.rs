//! The WAN pool as a server sees it: the servers of every datacenter, gossiped by a second core on the
//! Serf WAN port. Members are named `NODE.DC`, as in Consul; readers ask which datacenters exist and
//! which of their servers can take a forwarded request.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use murmur_gossip::Event;

use super::members::{MemberRecord, MemberStatus, MemberTable};
use super::servers::rpc_addr;
use crate::net::MemberSink;

/// A WAN member's name: `NODE.DC`.
pub fn member_name(node: &str, dc: &str) -> String {
    format!("{node}.{dc}")
}

/// The WAN pool's members.
pub struct WanPool {
    /// The members (every datacenter's servers).
    pub members: Arc<MemberTable>,
    /// The server port assumed for a member whose `port` tag is missing.
    pub default_port: u16,
}

impl std::fmt::Debug for WanPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WanPool")
            .field("members", &self.members.len())
            .finish()
    }
}

impl WanPool {
    /// An empty pool.
    pub fn new(default_port: u16) -> Self {
        WanPool {
            members: Arc::new(MemberTable::new()),
            default_port,
        }
    }

    /// Every datacenter with a server in the pool that has not left, sorted by name. A datacenter
    /// whose servers all failed stays known (as in Consul) until they are reaped.
    pub fn datacenters(&self) -> Vec<String> {
        let snap = self.members.snapshot();
        let dcs: BTreeSet<&str> = snap
            .members
            .iter()
            .filter(|m| serving(m) && m.status != MemberStatus::Left)
            .map(|m| m.tag("dc"))
            .filter(|dc| !dc.is_empty())
            .collect();
        dcs.into_iter().map(str::to_string).collect()
    }

    /// The RPC addresses of `dc`'s alive servers.
    pub fn servers(&self, dc: &str) -> Vec<SocketAddr> {
        self.alive_servers(dc)
            .iter()
            .map(|m| rpc_addr(m, self.default_port))
            .collect()
    }

    /// `dc`'s alive servers as members.
    pub fn alive_servers(&self, dc: &str) -> Vec<Arc<MemberRecord>> {
        self.members
            .snapshot()
            .members
            .iter()
            .filter(|m| serving(m) && m.status == MemberStatus::Alive && m.tag("dc") == dc)
            .cloned()
            .collect()
    }
}

/// A member that takes requests: a server (`role=consul`).
fn serving(m: &MemberRecord) -> bool {
    m.is_server()
}

impl MemberSink for WanPool {
    fn apply(&self, ev: &Event) -> bool {
        // The WAN core carries no records or user events; only membership counts here.
        if !matches!(ev, Event::Member(_) | Event::Reaped(_)) {
            return false;
        }
        let change = self.members.apply(ev);
        let Some(what) = change.serf_name() else {
            return false;
        };
        match ev {
            Event::Member(m) => tracing::info!("wan: {what}: {} {}", m.name, m.addr.ip()),
            Event::Reaped(name) => tracing::info!("wan: {what}: {name}"),
            _ => {}
        }
        true
    }

    fn publish(&self) {
        self.members.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_gossip::{Member, State, tags};

    fn member(name: &str, dc: &str, ip: u8, state: State, role: &str) -> Event {
        let t = tags::encode(&[("role", role), ("dc", dc), ("port", "8300")]).unwrap();
        Event::Member(Member {
            name: name.into(),
            addr: SocketAddr::from(([127, 0, 0, ip], 8302)),
            tags: t.into(),
            incarnation: 1,
            state,
            since: std::time::Instant::now(),
        })
    }

    #[test]
    fn datacenters_and_their_alive_servers() {
        let pool = WanPool::new(8300);
        for ev in [
            member("a.dc1", "dc1", 1, State::Alive, "consul"),
            member("b.dc2", "dc2", 2, State::Alive, "consul"),
            member("c.dc2", "dc2", 3, State::Dead, "consul"),
            member("d.dc3", "dc3", 4, State::Dead, "consul"),
            member("e.dc4", "dc4", 5, State::Left, "consul"),
            member("f.dc5", "dc5", 6, State::Alive, "node"),
        ] {
            pool.apply(&ev);
        }
        pool.publish();
        assert_eq!(pool.datacenters(), ["dc1", "dc2", "dc3"]);
        assert_eq!(
            pool.servers("dc2"),
            [SocketAddr::from(([127, 0, 0, 2], 8300))]
        );
        assert!(pool.servers("dc3").is_empty(), "known, but no server alive");
        assert!(pool.servers("dc9").is_empty());
        assert_eq!(member_name("agent-one", "dc1"), "agent-one.dc1");
    }
}
