//! What DNS needs to know about services: a small interface, and the agent's catalog behind it.

use std::net::IpAddr;
use std::sync::Arc;

use crate::state::catalog::{self, Catalog};
use crate::state::catalog_node::NodeView;
use crate::state::changed_services::Changes;
use crate::state::definitions::Status;
use crate::state::external::ExternalNode;
use crate::state::node_record::{NodeRecord, consul_service_record};
use crate::state::{MemberStatus, MemberTable};
use crate::util::addr::bare_host;

/// Health of an instance as DNS filters it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// All checks passing.
    Passing,
    /// Some check warning.
    Warning,
    /// Some check critical (never answered).
    Critical,
}

/// One service instance.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The node it runs on.
    pub node: NodeView,
    /// Service port.
    pub port: u16,
    /// Service address, if it has its own.
    pub address: Option<IpAddr>,
    /// The host name answers point to: the service's own address when it is a host name (it wins
    /// over the node's, as in Consul), or its node's when the node has no IP (an external service
    /// registered as `www.example.com`).
    pub host: Option<String>,
    /// Whether `host` is the service's own address (not its node's).
    pub own_host: bool,
    /// Service tags.
    pub tags: Vec<String>,
    /// SRV weight while passing.
    pub weight_passing: u16,
    /// SRV weight while warning.
    pub weight_warning: u16,
    /// Aggregated health (service checks and the node's serfHealth).
    pub health: Health,
}

impl Instance {
    /// The IP answers give: the service's own, else its node's unless the answer is a host name.
    pub fn ip(&self) -> Option<IpAddr> {
        match (self.address, &self.host) {
            (Some(ip), _) => Some(ip),
            (None, Some(_)) => None,
            (None, None) => self.node.ip(),
        }
    }
}

/// Source of service instances for DNS.
pub trait ServiceCatalog: Send + Sync {
    /// Instances of `service` (case-insensitive name) in any health.
    fn instances(&self, service: &str) -> Vec<Instance>;
    /// Moves with every change to the services (the member table has its own index): drives the
    /// answer cache.
    fn version(&self) -> u64;
    /// What changed since `version`, or `None` when that is not known: then every cached answer is
    /// dropped.
    fn changed_since(&self, version: u64) -> Option<Changes> {
        let _ = version;
        None
    }
    /// External node `name` (case-insensitive), registered at the servers.
    fn external_node(&self, name: &str) -> Option<Arc<ExternalNode>> {
        let _ = name;
        None
    }
}

/// The agent's catalog as DNS sees it: each published instance with its node from the member table and
/// its health from its checks and the node's `serfHealth`.
pub struct CatalogServices {
    table: Arc<MemberTable>,
    catalog: Arc<Catalog>,
}

impl CatalogServices {
    /// DNS's view of `catalog`, with nodes from `table`.
    pub fn new(table: Arc<MemberTable>, catalog: Arc<Catalog>) -> Self {
        CatalogServices { table, catalog }
    }

    /// A catalog holding only the `consul` service of each server in `table` (port from its tags), as a
    /// cluster without registrations shows it: for benches, fuzzing and tests of the DNS layer alone.
    pub fn with_servers(table: Arc<MemberTable>) -> Self {
        let catalog = Arc::new(Catalog::new());
        for m in table.snapshot().members.iter().filter(|m| m.is_server()) {
            let port = m.tag("port").parse().unwrap_or(8300);
            let record = NodeRecord {
                services: vec![consul_service_record(port)],
                checks: Vec::new(),
            };
            catalog.apply_record(&m.name, 1, &record.encode());
        }
        CatalogServices { table, catalog }
    }

    /// The catalog behind it.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }
}

fn health(n: &NodeView, i: &catalog::Instance) -> Health {
    if !n.serf_passing() {
        return Health::Critical;
    }
    let worst = i.checks.iter().map(|c| c.status()).max();
    match worst {
        Some(Status::Critical) => Health::Critical,
        Some(Status::Warning) => Health::Warning,
        _ => Health::Passing,
    }
}

impl ServiceCatalog for CatalogServices {
    fn instances(&self, service: &str) -> Vec<Instance> {
        let mut entries = self.catalog.service(service);
        if entries.instances.is_empty() {
            // DNS names are case-insensitive; catalog names keep the case they were registered with.
            let listing = self.catalog.listing();
            if let Some(name) = listing
                .services
                .keys()
                .find(|n| n.eq_ignore_ascii_case(service))
            {
                entries = self.catalog.service(name);
            }
        }
        entries
            .instances
            .iter()
            .filter_map(|i| {
                let node = match self.table.get(&i.node) {
                    Some(m) if m.status == MemberStatus::Left => return None,
                    Some(m) => NodeView::Member(m),
                    None => NodeView::External(self.catalog.node(&i.node)?.external.clone()?),
                };
                let health = health(&node, i);
                let s = &i.service;
                // An IPv6 literal may come in brackets ("[::1]"), as in a URL.
                let address: Option<IpAddr> = bare_host(&s.address).parse().ok();
                let host = match (&address, s.address.is_empty()) {
                    (Some(_), _) => None,
                    (None, false) => Some(s.address.clone()),
                    (None, true) => node.ip().is_none().then(|| node.address()),
                };
                Some(Instance {
                    port: s.port,
                    address,
                    own_host: host.is_some() && !s.address.is_empty(),
                    host,
                    tags: s.tags.clone(),
                    weight_passing: s.weights.0.min(u16::MAX as u32) as u16,
                    weight_warning: s.weights.1.min(u16::MAX as u32) as u16,
                    health,
                    node,
                })
            })
            .collect()
    }

    fn version(&self) -> u64 {
        self.catalog.index()
    }

    fn changed_since(&self, version: u64) -> Option<Changes> {
        self.catalog.changed_since(version)
    }

    fn external_node(&self, name: &str) -> Option<Arc<ExternalNode>> {
        if let Some(e) = self.catalog.node(name).and_then(|e| e.external.clone()) {
            return Some(e);
        }
        self.catalog
            .external_nodes()
            .iter()
            .find(|n| n.info.node.eq_ignore_ascii_case(name))
            .cloned()
    }
}
