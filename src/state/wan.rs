//! The WAN pool as a server sees it: the servers of every datacenter, gossiped by a second core on the
//! Serf WAN port. Members are named `NODE.DC`, as in Consul; readers ask which datacenters exist and
//! which of their servers can take a forwarded request.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use murmur_gossip::Event;
use murmur_gossip::coordinate::Coordinate;

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
    /// This server's own WAN name.
    me: String,
}

impl std::fmt::Debug for WanPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WanPool")
            .field("members", &self.members.len())
            .finish()
    }
}

impl WanPool {
    /// An empty pool, seen by the server named `me` in it.
    pub fn new(me: String, default_port: u16) -> Self {
        WanPool {
            members: Arc::new(MemberTable::new()),
            default_port,
            me,
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

/// A server's WAN coordinates: its own and the latest of each server it measured, by WAN name.
#[derive(Debug, Clone, Default)]
pub struct WanCoordinates {
    /// This server's.
    pub own: Option<Coordinate>,
    /// The servers it measured.
    pub peers: Vec<(Arc<str>, Coordinate)>,
}

impl WanPool {
    /// Every known datacenter: `local` first, then by the median estimated round trip to their
    /// servers (Consul's order for `/v1/catalog/datacenters`); datacenters with no measured server
    /// come last, names breaking ties.
    pub fn nearest_first(&self, local: &str, coords: &WanCoordinates) -> Vec<String> {
        let per_dc = self.coordinates(coords);
        let median = |dc: &str| -> Option<Duration> {
            let own = coords.own.as_ref()?;
            let (_, servers) = per_dc.iter().find(|(d, _)| d == dc)?;
            let mut rtts: Vec<Duration> = servers.iter().map(|(_, c)| own.distance(c)).collect();
            rtts.sort();
            rtts.get(rtts.len() / 2).copied()
        };
        let mut others: Vec<(Option<Duration>, String)> = self
            .datacenters()
            .into_iter()
            .filter(|dc| dc != local)
            .map(|dc| (median(&dc), dc))
            .collect();
        others.sort_by(|a, b| match (a.0, b.0) {
            (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.1.cmp(&b.1)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.1.cmp(&b.1),
        });
        std::iter::once(local.to_string())
            .chain(others.into_iter().map(|(_, dc)| dc))
            .collect()
    }

    /// Each known datacenter's servers that have a coordinate (this server's own included), by node
    /// name without the `.DC` suffix, as Consul's `/v1/coordinate/datacenters` lists them.
    pub fn coordinates(&self, coords: &WanCoordinates) -> Vec<(String, Vec<(String, Coordinate)>)> {
        let snap = self.members.snapshot();
        let own = coords.own.as_ref().and_then(|c| {
            let me = snap.members.iter().find(|m| *m.name == *self.me)?;
            Some((me.name.clone(), c.clone()))
        });
        let mut per_dc: Vec<(String, Vec<(String, Coordinate)>)> = self
            .datacenters()
            .into_iter()
            .map(|dc| (dc, Vec::new()))
            .collect();
        for (name, c) in own.iter().chain(coords.peers.iter()) {
            let Some(m) = self.members.get(name) else {
                continue;
            };
            let dc = m.tag("dc");
            if let Some((_, servers)) = per_dc.iter_mut().find(|(d, _)| d == dc) {
                let node = name.strip_suffix(&format!(".{dc}")).unwrap_or(name);
                servers.push((node.to_string(), c.clone()));
            }
        }
        for (_, servers) in &mut per_dc {
            servers.sort_by(|a, b| a.0.cmp(&b.0));
        }
        per_dc
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
        })
    }

    #[test]
    fn datacenters_and_their_alive_servers() {
        let pool = WanPool::new("a.dc1".into(), 8300);
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

    fn at(x: f64) -> Coordinate {
        let mut c = Coordinate::origin(&Default::default());
        c.vec[0] = x;
        c.height = 0.0;
        c.error = 0.1;
        c
    }

    #[test]
    fn datacenters_are_ordered_by_the_median_distance_to_their_servers() {
        let pool = WanPool::new("a.dc1".into(), 8300);
        for ev in [
            member("a.dc1", "dc1", 1, State::Alive, "consul"),
            member("far1.far", "far", 2, State::Alive, "consul"),
            member("far2.far", "far", 3, State::Alive, "consul"),
            member("far3.far", "far", 4, State::Alive, "consul"),
            member("near.near", "near", 5, State::Alive, "consul"),
            member("x.blind", "blind", 6, State::Alive, "consul"),
            member("y.aaa", "aaa", 7, State::Alive, "consul"),
        ] {
            pool.apply(&ev);
        }
        pool.publish();
        let coords = WanCoordinates {
            own: Some(at(0.0)),
            peers: vec![
                // One close server of "far" does not make it near: the median counts.
                ("far1.far".into(), at(0.001)),
                ("far2.far".into(), at(0.2)),
                ("far3.far".into(), at(0.3)),
                ("near.near".into(), at(0.05)),
                ("gone.zzz".into(), at(0.0)),
            ],
        };
        assert_eq!(
            pool.nearest_first("dc1", &coords),
            ["dc1", "near", "far", "aaa", "blind"]
        );
        // Without our own coordinate, names alone.
        let none = WanCoordinates::default();
        assert_eq!(
            pool.nearest_first("dc1", &none),
            ["dc1", "aaa", "blind", "far", "near"]
        );
        let per_dc = pool.coordinates(&coords);
        let far = &per_dc.iter().find(|(dc, _)| dc == "far").unwrap().1;
        let names: Vec<&str> = far.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["far1", "far2", "far3"],
            "names without the .DC suffix"
        );
        let dc1 = &per_dc.iter().find(|(dc, _)| dc == "dc1").unwrap().1;
        assert_eq!(dc1.len(), 1, "this server's own coordinate");
        assert_eq!(dc1[0].0, "a");
        assert!(
            per_dc
                .iter()
                .find(|(dc, _)| dc == "blind")
                .unwrap()
                .1
                .is_empty()
        );
    }
}
