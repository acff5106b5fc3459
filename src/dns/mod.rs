//! DNS interface (`NAME.node[.DC].consul`, services, SOA/NS), answered from the local member table:
//! a batched UDP fast path serving pre-encoded answers, and a TCP path sharing the same answer builder.

pub mod answer;
pub mod cache;
pub mod names;
pub mod server;
pub mod services;

use std::net::SocketAddr;
use std::time::Duration;

/// DNS settings of the agent.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Domain, lower-case and fully qualified (`consul.`).
    pub domain: String,
    /// Local datacenter.
    pub datacenter: String,
    /// TTL of node records.
    pub node_ttl: Duration,
    /// TTL of service records.
    pub service_ttl: Duration,
    /// Answers in a UDP reply without EDNS (Consul caps it at 8).
    pub udp_answer_limit: u32,
    /// Cap on A/AAAA answers on any transport (0 = none).
    pub a_record_limit: u32,
    /// Set TC when a UDP answer was trimmed, so clients retry over TCP.
    pub enable_truncate: bool,
    /// Omit warning instances as well as critical ones.
    pub only_passing: bool,
    /// Node metadata TXT records in the additional section of A answers.
    pub additional_node_meta_txt: bool,
    /// Upstream servers for names outside the domain.
    pub recursors: Vec<SocketAddr>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            domain: "consul.".into(),
            datacenter: "dc1".into(),
            node_ttl: Duration::ZERO,
            service_ttl: Duration::ZERO,
            udp_answer_limit: 3,
            a_record_limit: 0,
            enable_truncate: false,
            only_passing: false,
            additional_node_meta_txt: true,
            recursors: Vec::new(),
        }
    }
}
