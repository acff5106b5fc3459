//! The agent's state: the one place HTTP and DNS read from, wait on and ask of the cluster. The gossip
//! driver writes member changes in through [`publish::Publisher`]; the catalog and the replicated store
//! will write into this layer too.
//!
//! - `members.rs`: the lock-free member table (point lookups, sorted snapshots)
//! - `changes.rs`: the change index behind `X-Consul-Index` and every blocking wait
//! - `servers.rs`: servers and the leader of the datacenter
//! - `keyring.rs`: who holds which gossip key, and the wait for a keyring change to reach everyone
//! - `publish.rs`: the driver's member sink
//! - `definitions.rs`, `local_services.rs`: this agent's own services and checks (config files and the
//!   HTTP API), TTL deadlines, persistence
//! - `maintenance.rs`: node and service maintenance mode (a critical check, kept in the data dir)
//! - `node_record.rs`: the record a node publishes about its services and checks (gossip's bytes)
//! - `catalog.rs`: every node's record, indexed by service, with a watch per service name
//! - `changed_services.rs`: the service names (and external nodes) the catalog changed lately, so the
//!   DNS cache drops just those answers
//! - `kv.rs`: the servers' KV store, with a watch per key and per prefix
//! - `external.rs`, `registration.rs`: the servers' external catalog (`/v1/catalog/register`) and the
//!   bodies that write it
//! - `sessions.rs`: the servers' sessions (lock holders, behaviors, lock delays)
//! - `tombstones.rs`: when the leader reaps the KV store's tombstones
//! - `replicated.rs`: what the agent asks of the servers' store, wherever it is answered

pub mod autopilot;
pub mod catalog;
pub mod catalog_node;
pub mod changed_services;
pub mod changes;
pub mod check_kind;
pub mod coordinates;
pub mod definitions;
pub mod external;
pub mod keyring;
pub mod kv;
pub mod local_services;
pub mod maintenance;
pub mod members;
pub mod node_indexes;
pub mod node_record;
pub mod publish;
pub mod registration;
pub mod remote;
pub mod replicated;
pub mod servers;
pub mod sessions;
pub mod tombstones;
pub mod txn;
pub mod user_events;
pub mod wan;
pub mod watched;

use std::net::SocketAddr;
use std::sync::Arc;

pub use self::changes::ChangeIndex;
pub use self::members::{Change, MemberRecord, MemberStatus, MemberTable, Snapshot};
use crate::net::GossipHandle;
pub use crate::net::{DriverStats, KeyOp};

/// Facts about the local agent.
#[derive(Debug, Clone)]
pub struct LocalAgent {
    /// Node name.
    pub node_name: String,
    /// Node ID (UUID).
    pub node_id: String,
    /// Datacenter.
    pub datacenter: String,
    /// Server mode.
    pub server: bool,
    /// bootstrap_expect (0 = unset).
    pub bootstrap_expect: u32,
    /// Advertised gossip address.
    pub advertise: SocketAddr,
    /// Server RPC port (this agent's, and the default for servers whose tags do not say).
    pub server_port: u16,
    /// Gossip port joins use when an address names none.
    pub serf_lan_port: u16,
    /// WAN gossip port (where `join -wan` goes when an address names none).
    pub serf_wan_port: u16,
    /// Network coordinates are on (no `disable_coordinates`).
    pub coordinates: bool,
}

/// Shared state of the agent; cheap to clone.
#[derive(Clone)]
pub struct AgentState {
    /// Members as gossip reports them.
    pub members: Arc<MemberTable>,
    /// The change index.
    pub changes: Arc<ChangeIndex>,
    /// Local facts.
    pub local: Arc<LocalAgent>,
    /// This agent's own services and checks.
    pub services: Arc<local_services::LocalServices>,
    /// Every node's services and checks.
    pub catalog: Arc<catalog::Catalog>,
    /// The servers' replicated store (KV), here on a server, forwarded from a client.
    pub store: Arc<dyn replicated::Replicated>,
    /// Coordinates read for `?near=`.
    pub near: Arc<coordinates::NearCache>,
    /// User events this agent keeps.
    pub events: Arc<user_events::UserEvents>,
    gossip: GossipHandle,
    /// The WAN pool, on a server that gossips across datacenters.
    wan: Option<(GossipHandle, Arc<wan::WanPool>)>,
}

impl AgentState {
    /// Reads what the gossip driver writes through `published` (members, the change index, the
    /// catalog, user events), with the driver's handle.
    pub fn new(
        published: &publish::Publisher,
        local: LocalAgent,
        services: Arc<local_services::LocalServices>,
        store: Arc<dyn replicated::Replicated>,
        gossip: GossipHandle,
    ) -> Self {
        AgentState {
            members: published.members.clone(),
            changes: published.changes.clone(),
            local: Arc::new(local),
            services,
            catalog: published.catalog.clone(),
            store,
            near: Arc::default(),
            events: published.events.clone(),
            gossip,
            wan: None,
        }
    }

    /// The same, on a server in the WAN pool through `gossip`.
    pub fn with_wan(mut self, gossip: GossipHandle, pool: Arc<wan::WanPool>) -> Self {
        self.wan = Some((gossip, pool));
        self
    }

    /// The WAN pool's members, on a server in it.
    pub fn wan_pool(&self) -> Option<&Arc<wan::WanPool>> {
        self.wan.as_ref().map(|(_, p)| p)
    }

    /// Joins the WAN pool through `addr`; only servers are in it (Consul's error otherwise).
    pub async fn join_wan(&self, addr: SocketAddr) -> Result<(), String> {
        match &self.wan {
            Some((g, _)) => g.join(addr).await,
            None if self.local.server => {
                Err("the WAN pool is off on this server (ports.serf_wan = -1)".into())
            }
            None => Err("Must be a server to join WAN cluster".into()),
        }
    }

    /// This server's WAN coordinate and the latest of the servers it measured (empty on a client).
    pub async fn wan_coordinates(&self) -> wan::WanCoordinates {
        let Some((g, _)) = &self.wan else {
            return wan::WanCoordinates::default();
        };
        wan::WanCoordinates {
            own: g.coordinate().await,
            peers: g.peer_coordinates().await,
        }
    }

    /// The WAN pool's gossip counters, on a server in it.
    pub async fn wan_stats(&self) -> Option<DriverStats> {
        self.wan.as_ref()?.0.stats().await
    }

    /// Marks a failed WAN member (`NODE.DC`) `left`.
    pub async fn force_leave_wan(&self, node: &str) -> Result<(), String> {
        match &self.wan {
            Some((g, _)) => g.force_leave(node).await,
            None => Err("Must be a server to force-leave a WAN member".into()),
        }
    }

    /// Catalog nodes of this datacenter: members and external nodes.
    pub fn catalog_nodes(&self) -> catalog_node::NodeLookup<'_> {
        catalog_node::NodeLookup {
            members: &self.members,
            catalog: &self.catalog,
            dc: &self.local.datacenter,
        }
    }

    /// Joins the cluster through `addr`.
    pub async fn join(&self, addr: SocketAddr) -> Result<(), String> {
        self.gossip.join(addr).await
    }

    /// Leaves the cluster gracefully (the driver stops afterwards).
    pub async fn leave(&self) {
        self.gossip.leave().await
    }

    /// Spreads an application event of `kind` to every member.
    pub async fn user_event(
        &self,
        kind: murmur_gossip::EventKind,
        payload: Vec<u8>,
    ) -> Result<(), String> {
        self.gossip.user_event(kind, payload).await
    }

    /// This node's network coordinate (`None` when coordinates are off or the driver stopped).
    pub async fn coordinate(&self) -> Option<coordinates::Coord> {
        let c = self.gossip.coordinate().await?;
        Some(coordinates::Coord::from_core(&c))
    }

    /// Marks a failed member `left`.
    pub async fn force_leave(&self, node: &str) -> Result<(), String> {
        self.gossip.force_leave(node).await
    }

    /// Gossip counters, `None` once the driver stopped.
    pub async fn gossip_stats(&self) -> Option<DriverStats> {
        self.gossip.stats().await
    }

    /// Applies a keyring change everywhere and waits until every alive member reports it.
    pub async fn change_keyring(&self, op: KeyOp, key: Vec<u8>) -> Result<(), String> {
        // A server's WAN pool takes the change too (as Consul's keyring operations reach it), and
        // first: its members hear it over gossip sealed with keys they already hold.
        if let Some((wan, _)) = &self.wan {
            wan.keyring(op, key.clone())
                .await
                .map_err(|e| format!("WAN pool: {e}"))?;
        }
        self.gossip.keyring(op, key.clone()).await?;
        keyring::await_everyone(self, op, &key)
            .await
            .map_err(|e| e.to_string())
    }

    /// The keyring as the datacenter sees it; `None` without gossip encryption.
    pub async fn keyring_report(&self) -> Option<keyring::Report> {
        let keys = self.gossip.keys().await;
        if keys.is_empty() {
            return None;
        }
        Some(keyring::report(
            &self.members.snapshot(),
            &self.local.datacenter,
            &keys,
        ))
    }

    /// QUIC push/pull counters, when QUIC is on.
    pub fn push_pull_stats(&self) -> Option<&crate::net::quic::QuicStats> {
        self.gossip.quic().map(|q| &q.stats)
    }
}
