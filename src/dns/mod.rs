//! DNS interface (`NAME.node[.DC].consul`, services, SOA/NS), answered from the local member table:
//! a batched UDP fast path serving pre-encoded answers, and a TCP path sharing the same answer builder.

pub mod answer;
pub mod cache;
pub mod names;
pub mod remote;
pub mod server;
pub mod services;
pub mod tally;

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::util::duration::Dur;

/// DNS settings of the agent. They travel with a query sent to another datacenter, whose server
/// answers it as this agent would (Consul builds remote answers with the asking agent's settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsConfig {
    /// Domain, lower-case and fully qualified (`consul.`).
    pub domain: String,
    /// Local datacenter.
    pub datacenter: String,
    /// TTL of node records.
    pub node_ttl: Duration,
    /// TTL of service records, by service.
    pub service_ttl: ServiceTtl,
    /// Answers in a UDP reply without EDNS (Consul caps it at 8).
    pub udp_answer_limit: u32,
    /// Cap on A/AAAA answers on any transport (0 = none).
    pub a_record_limit: u32,
    /// Set TC when a UDP answer was trimmed, so clients retry over TCP.
    pub enable_truncate: bool,
    /// Omit warning instances as well as critical ones.
    pub only_passing: bool,
    /// Node metadata TXT records in the additional section of node A/AAAA answers and of SRV answers.
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
            service_ttl: ServiceTtl::default(),
            udp_answer_limit: 3,
            a_record_limit: 0,
            enable_truncate: false,
            only_passing: false,
            additional_node_meta_txt: true,
            recursors: Vec::new(),
        }
    }
}

impl DnsConfig {
    /// `next` as a reload applies it: Consul reloads `dns_config` and `recursors`; the domain and the
    /// datacenter stay as the agent started with them.
    pub fn reloaded(&self, next: &DnsConfig) -> DnsConfig {
        DnsConfig {
            domain: self.domain.clone(),
            datacenter: self.datacenter.clone(),
            ..next.clone()
        }
    }
}

/// Service TTLs as Consul's `dns_config.service_ttl` map gives them: a service's own entry, else the
/// longest `prefix*` pattern that matches, else `*`, else zero. (A bare duration, as earlier murmur
/// versions took, sets `*`.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTtl {
    /// `*`.
    pub any: Duration,
    /// Exact names and `prefix*` patterns.
    pub by_name: Vec<(String, Duration)>,
}

impl ServiceTtl {
    /// The TTL of `service` (case-insensitive, as DNS names are).
    pub fn of(&self, service: &str) -> Duration {
        let mut best: Option<(usize, Duration)> = None;
        for (pattern, ttl) in &self.by_name {
            match pattern.strip_suffix('*') {
                None if pattern.eq_ignore_ascii_case(service) => return *ttl,
                Some(prefix)
                    if service.len() >= prefix.len()
                        && service[..prefix.len()].eq_ignore_ascii_case(prefix)
                        && best.is_none_or(|(l, _)| prefix.len() > l) =>
                {
                    best = Some((prefix.len(), *ttl));
                }
                _ => {}
            }
        }
        best.map_or(self.any, |(_, ttl)| ttl)
    }
}

/// `service_ttl` as written: Consul's map, or one duration.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ServiceTtlSection {
    /// One duration for every service.
    All(Dur),
    /// Service names or patterns to durations.
    Map(std::collections::BTreeMap<String, Dur>),
}

/// `dns_config { ... }` as a config file writes it; what is not given keeps [`DnsConfig::default`].
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsSection {
    /// TTL of node records.
    pub node_ttl: Option<Dur>,
    /// TTL of service records (Consul's map of names and patterns, or one duration).
    pub service_ttl: Option<ServiceTtlSection>,
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
        match &self.service_ttl {
            None => {}
            Some(ServiceTtlSection::All(Dur(d))) => {
                cfg.service_ttl = ServiceTtl {
                    any: *d,
                    by_name: Vec::new(),
                }
            }
            Some(ServiceTtlSection::Map(m)) => {
                cfg.service_ttl = ServiceTtl {
                    any: m.get("*").map_or(Duration::ZERO, |Dur(d)| *d),
                    by_name: m
                        .iter()
                        .filter(|(k, _)| *k != "*")
                        .map(|(k, Dur(d))| (k.clone(), *d))
                        .collect(),
                };
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ttls_by_name_pattern_and_wildcard() {
        let d = Duration::from_secs;
        let t = ServiceTtl {
            any: d(5),
            by_name: vec![
                ("web".into(), d(30)),
                ("db*".into(), d(10)),
                ("db-main*".into(), d(20)),
            ],
        };
        assert_eq!(t.of("web"), d(30));
        assert_eq!(t.of("WEB"), d(30));
        assert_eq!(t.of("db-replica"), d(10));
        assert_eq!(t.of("db-main-1"), d(20), "the longest pattern wins");
        assert_eq!(t.of("api"), d(5));
        assert_eq!(ServiceTtl::default().of("api"), Duration::ZERO);
    }
}
