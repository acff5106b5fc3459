//! A node as catalog, health and DNS reads show it: a gossip member (its health includes `serfHealth`)
//! or an external node registered at the servers (no agent: only its registered checks).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::catalog::Catalog;
use super::external::ExternalNode;
use super::members::{MemberRecord, MemberStatus, MemberTable, Snapshot};
use super::registration::node_tagged_addresses;

/// The node meta key of an agent's network segment.
pub const SEGMENT_KEY: &str = "consul-network-segment";

/// One catalog node.
#[derive(Debug, Clone)]
pub enum NodeView {
    /// A member of the gossip pool.
    Member(Arc<MemberRecord>),
    /// A node registered through `/v1/catalog/register`.
    External(Arc<ExternalNode>),
}

/// True when a member belongs in the catalog of datacenter `dc` (left members are deregistered).
pub fn in_catalog(m: &MemberRecord, dc: &str) -> bool {
    m.tag("dc") == dc && m.status != MemberStatus::Left
}

impl NodeView {
    /// Node name.
    pub fn name(&self) -> &str {
        match self {
            NodeView::Member(m) => &m.name,
            NodeView::External(n) => &n.info.node,
        }
    }

    /// The address as the catalog shows it (an external node's may be a host name).
    pub fn address(&self) -> String {
        match self {
            NodeView::Member(m) => m.addr.ip().to_string(),
            NodeView::External(n) => n.info.address.clone(),
        }
    }

    /// The address when it is an IP.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            NodeView::Member(m) => Some(m.addr.ip()),
            NodeView::External(n) => n.info.address.parse().ok(),
        }
    }

    /// Datacenter.
    pub fn datacenter(&self) -> &str {
        match self {
            NodeView::Member(m) => m.tag("dc"),
            NodeView::External(n) => &n.info.datacenter,
        }
    }

    /// Node ID.
    pub fn id(&self) -> &str {
        match self {
            NodeView::Member(m) => m.tag("id"),
            NodeView::External(n) => &n.info.id,
        }
    }

    /// Node metadata as the catalog shows it: an agent adds its network segment (empty: the default
    /// one) under `consul-network-segment`, as every Consul agent does; an external node has only what
    /// was registered.
    pub fn meta(&self) -> Cow<'_, BTreeMap<String, String>> {
        match self {
            NodeView::Member(m) => {
                let mut meta = m.meta.clone();
                meta.insert(SEGMENT_KEY.to_string(), String::new());
                Cow::Owned(meta)
            }
            NodeView::External(n) => Cow::Borrowed(&n.info.meta),
        }
    }

    /// One value of [`NodeView::meta`], without building the map.
    pub fn meta_value(&self, key: &str) -> Option<&str> {
        match self {
            NodeView::Member(_) if key == SEGMENT_KEY => Some(""),
            NodeView::Member(m) => m.meta.get(key).map(String::as_str),
            NodeView::External(n) => n.info.meta.get(key).map(String::as_str),
        }
    }

    /// Tagged addresses: a member's from its gossip address, an external node's as registered with
    /// `lan` and `wan` filled in.
    pub fn tagged_addresses(&self) -> BTreeMap<String, String> {
        match self {
            NodeView::Member(m) => {
                let ip = m.addr.ip().to_string();
                let family = if m.addr.is_ipv4() { "ipv4" } else { "ipv6" };
                [
                    "lan",
                    "wan",
                    &format!("lan_{family}"),
                    &format!("wan_{family}"),
                ]
                .into_iter()
                .map(|k| (k.to_owned(), ip.clone()))
                .collect()
            }
            NodeView::External(n) => {
                node_tagged_addresses(&n.info.address, &n.info.tagged_addresses)
            }
        }
    }

    /// Create and modify index.
    pub fn indexes(&self) -> (u64, u64) {
        match self {
            NodeView::Member(m) => (m.create_index, m.modify_index),
            NodeView::External(n) => (n.create_index, n.modify_index),
        }
    }

    /// The member, for a gossip node.
    pub fn member(&self) -> Option<&MemberRecord> {
        match self {
            NodeView::Member(m) => Some(m),
            NodeView::External(_) => None,
        }
    }

    /// False once gossip declared the member failed (an external node has no such signal).
    pub fn serf_passing(&self) -> bool {
        self.member()
            .is_none_or(|m| matches!(m.status, MemberStatus::Alive | MemberStatus::Leaving))
    }
}

/// Finds catalog nodes of datacenter `dc` among the members and the catalog's external nodes.
pub struct NodeLookup<'a> {
    /// The member table.
    pub members: &'a MemberTable,
    /// The catalog.
    pub catalog: &'a Catalog,
    /// This datacenter.
    pub dc: &'a str,
}

impl NodeLookup<'_> {
    /// Node `name`: the member if one is in the catalog, else an external node of this datacenter.
    pub fn get(&self, name: &str) -> Option<NodeView> {
        if let Some(m) = self.members.get(name).filter(|m| in_catalog(m, self.dc)) {
            return Some(NodeView::Member(m));
        }
        let e = self.catalog.node(name)?.external.clone()?;
        (e.info.datacenter == self.dc).then_some(NodeView::External(e))
    }

    /// Every catalog node, sorted by name: members from `snap`, and the external nodes no member
    /// shadows.
    pub fn all(&self, snap: &Snapshot) -> Vec<NodeView> {
        let mut out: Vec<NodeView> = snap
            .members
            .iter()
            .filter(|m| in_catalog(m, self.dc))
            .map(|m| NodeView::Member(m.clone()))
            .collect();
        let externals = self.catalog.external_nodes();
        let shadowed = |n: &ExternalNode| {
            self.members
                .get(&n.info.node)
                .is_some_and(|m| in_catalog(&m, self.dc))
        };
        let before = out.len();
        out.extend(
            externals
                .iter()
                .filter(|n| n.info.datacenter == self.dc && !shadowed(n))
                .map(|n| NodeView::External(n.clone())),
        );
        if out.len() > before {
            out.sort_by(|a, b| a.name().cmp(b.name()));
        }
        out
    }
}
