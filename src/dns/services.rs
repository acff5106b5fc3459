//! What DNS needs to know about services: a small interface the service catalog fills. Until that catalog
//! exists, servers contribute the `consul` service, as Consul's servers do.

use std::net::IpAddr;
use std::sync::Arc;

use crate::state::{MemberRecord, MemberStatus, MemberTable};

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
    pub node: Arc<MemberRecord>,
    /// Service port.
    pub port: u16,
    /// Service address, if it has its own.
    pub address: Option<IpAddr>,
    /// Service tags.
    pub tags: Vec<String>,
    /// SRV weight while passing.
    pub weight_passing: u16,
    /// SRV weight while warning.
    pub weight_warning: u16,
    /// Aggregated health (service checks and the node's serfHealth).
    pub health: Health,
}

/// Source of service instances for DNS.
pub trait ServiceCatalog: Send + Sync {
    /// Instances of `service` (case-insensitive name) in any health.
    fn instances(&self, service: &str) -> Vec<Instance>;
    /// Changes whenever any answer could change (drives the answer cache).
    fn version(&self) -> u64;
}

/// Servers of the member table as instances of the `consul` service (port = server RPC port).
pub struct ServersCatalog {
    table: Arc<MemberTable>,
}

impl ServersCatalog {
    /// Catalog backed by `table`.
    pub fn new(table: Arc<MemberTable>) -> Self {
        ServersCatalog { table }
    }
}

impl ServiceCatalog for ServersCatalog {
    fn instances(&self, service: &str) -> Vec<Instance> {
        if !service.eq_ignore_ascii_case("consul") {
            return Vec::new();
        }
        self.table
            .snapshot()
            .members
            .iter()
            .filter(|m| m.is_server() && m.status != MemberStatus::Left)
            .map(|m| Instance {
                node: m.clone(),
                port: m.tag("port").parse().unwrap_or(8300),
                address: None,
                tags: Vec::new(),
                weight_passing: 1,
                weight_warning: 1,
                // serfHealth: a failed server's node check is critical.
                health: if m.status == MemberStatus::Alive {
                    Health::Passing
                } else {
                    Health::Critical
                },
            })
            .collect()
    }

    fn version(&self) -> u64 {
        self.table.snapshot().index
    }
}
