//! DNS interface (`NAME.node[.DC].consul`, services, SOA/NS), answered from the local member table:
//! a batched UDP fast path serving pre-encoded answers, and a TCP path sharing the same answer builder.

pub mod answer;
pub mod cache;
pub mod names;
pub mod server;
pub mod services;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::util::duration::Dur;

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

/// `dns_config { ... }` as a config file writes it; what is not given keeps [`DnsConfig::default`].
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsSection {
    /// TTL of node records.
    pub node_ttl: Option<Dur>,
    /// TTL of service records.
    pub service_ttl: Option<Dur>,
    /// Answers in a UDP reply without EDNS.
    pub udp_answer_limit: Option<u32>,
    /// Cap on A/AAAA answers.
    pub a_record_limit: Option<u32>,
    /// Set TC on trimmed UDP answers.
    pub enable_truncate: Option<bool>,
    /// Omit warning instances.
    pub only_passing: Option<bool>,
    /// Node metadata TXT records in the additional section.
    pub enable_additional_node_meta_txt: Option<bool>,
    /// Accepted for compatibility: answers always come from the local table.
    pub allow_stale: Option<bool>,
    /// Accepted for compatibility, as `allow_stale`.
    pub max_stale: Option<Dur>,
}

impl DnsSection {
    /// Applies what was given onto `cfg`.
    pub fn apply(&self, cfg: &mut DnsConfig) {
        if let Some(Dur(d)) = self.node_ttl {
            cfg.node_ttl = d;
        }
        if let Some(Dur(d)) = self.service_ttl {
            cfg.service_ttl = d;
        }
        if let Some(n) = self.udp_answer_limit {
            cfg.udp_answer_limit = n;
        }
        if let Some(n) = self.a_record_limit {
            cfg.a_record_limit = n;
        }
        if let Some(b) = self.enable_truncate {
            cfg.enable_truncate = b;
        }
        if let Some(b) = self.only_passing {
            cfg.only_passing = b;
        }
        if let Some(b) = self.enable_additional_node_meta_txt {
            cfg.additional_node_meta_txt = b;
        }
    }
}
