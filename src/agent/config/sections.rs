//! The merged settings as typed sections. Defaults are not here: each section applies only what was
//! given onto its subsystem's own defaults (`DnsConfig::default()`, `GossipConfig::lan()`, ...).

use serde::Deserialize;
use std::collections::BTreeMap;

use crate::util::duration::Dur;

/// Every setting a file or flag may give (checked against `settings.rs` before it gets here).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct File {
    pub(super) node_name: Option<String>,
    pub(super) datacenter: Option<String>,
    pub(super) data_dir: Option<String>,
    pub(super) bind_addr: Option<String>,
    pub(super) advertise_addr: Option<String>,
    pub(super) advertise_addr_wan: Option<String>,
    pub(super) client_addr: Option<String>,
    pub(super) server: Option<bool>,
    pub(super) bootstrap_expect: Option<u32>,
    pub(super) bootstrap: Option<bool>,
    pub(super) raft_snapshot_threshold: Option<u32>,
    pub(super) raft_trailing_logs: Option<u32>,
    pub(super) autopilot: AutopilotSection,
    pub(super) start_join: Vec<String>,
    pub(super) retry_join: Vec<String>,
    pub(super) retry_interval: Option<Dur>,
    pub(super) retry_max: Option<u32>,
    pub(super) start_join_wan: Vec<String>,
    pub(super) retry_join_wan: Vec<String>,
    pub(super) retry_interval_wan: Option<Dur>,
    pub(super) retry_max_wan: Option<u32>,
    pub(super) reconnect_timeout_wan: Option<Dur>,
    pub(super) encrypt: Option<String>,
    pub(super) encrypt_verify_incoming: Option<bool>,
    pub(super) encrypt_verify_outgoing: Option<bool>,
    pub(super) ca_file: Option<String>,
    pub(super) cert_file: Option<String>,
    pub(super) key_file: Option<String>,
    pub(super) verify_incoming: Option<bool>,
    pub(super) verify_outgoing: Option<bool>,
    pub(super) verify_server_hostname: Option<bool>,
    pub(super) log_level: Option<String>,
    pub(super) log_json: Option<bool>,
    pub(super) log_file: Option<String>,
    pub(super) log_rotate_bytes: Option<u64>,
    pub(super) log_rotate_duration: Option<Dur>,
    pub(super) log_rotate_max_files: Option<i64>,
    pub(super) leave_on_terminate: Option<bool>,
    pub(super) disable_coordinates: Option<bool>,
    pub(super) enable_script_checks: Option<bool>,
    pub(super) enable_local_script_checks: Option<bool>,
    pub(super) check_update_interval: Option<Dur>,
    pub(super) skip_leave_on_interrupt: Option<bool>,
    pub(super) reconnect_timeout: Option<Dur>,
    pub(super) node_meta: BTreeMap<String, String>,
    pub(super) domain: Option<String>,
    pub(super) recursors: Vec<String>,
    pub(super) dns_config: crate::dns::DnsSection,
    pub(super) ports: PortsSection,
    pub(super) gossip_lan: GossipSection,
    pub(super) gossip_wan: GossipSection,
    pub(super) limits: LimitsSection,
    pub(super) telemetry: TelemetrySection,
    pub(super) ui: Option<bool>,
    pub(super) ui_config: UiConfigSection,
    pub(super) service: Option<serde_json::Value>,
    pub(super) services: Option<serde_json::Value>,
    pub(super) check: Option<serde_json::Value>,
    pub(super) checks: Option<serde_json::Value>,
}

/// `ports { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct PortsSection {
    pub(super) http: Option<u16>,
    pub(super) dns: Option<u16>,
    pub(super) serf_lan: Option<u16>,
    pub(super) serf_wan: Option<i32>,
    pub(super) server: Option<u16>,
}

/// `autopilot { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct AutopilotSection {
    pub(super) cleanup_dead_servers: Option<bool>,
    pub(super) last_contact_threshold: Option<Dur>,
    pub(super) max_trailing_logs: Option<u32>,
    pub(super) min_quorum: Option<u32>,
    pub(super) server_stabilization_time: Option<Dur>,
}

/// `telemetry { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct TelemetrySection {
    pub(super) metrics_prefix: Option<String>,
    // Accepted so Consul's files work: murmur always serves Prometheus's text and reads every series
    // live at the scrape, so there is nothing to keep or expire.
    pub(super) prometheus_retention_time: Option<Dur>,
    pub(super) disable_hostname: Option<bool>,
}

/// `ui_config { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct UiConfigSection {
    pub(super) enabled: Option<bool>,
    pub(super) content_path: Option<String>,
}

/// `limits { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct LimitsSection {
    pub(super) http_max_conns_per_client: Option<u32>,
}

/// `gossip_lan { ... }` and `gossip_wan { ... }`: a memberlist profile and overrides of its timings.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct GossipSection {
    pub(super) profile: Option<String>,
    pub(super) probe_interval: Option<Dur>,
    pub(super) probe_timeout: Option<Dur>,
    pub(super) gossip_interval: Option<Dur>,
    pub(super) gossip_nodes: Option<u32>,
    pub(super) retransmit_mult: Option<u32>,
    pub(super) suspicion_mult: Option<u32>,
    pub(super) push_pull_interval: Option<Dur>,
    pub(super) gossip_to_the_dead_time: Option<Dur>,
    pub(super) reconnect_interval: Option<Dur>,
    /// murmur's own key: ring monitoring and the fast suspicion floor (`false`: memberlist's detection).
    pub(super) ring_monitors: Option<bool>,
}

impl GossipSection {
    /// The profile's settings (`default_profile` unless one is named) with these overrides; `section`
    /// names the section in errors.
    pub(super) fn build(
        &self,
        section: &str,
        default_profile: &str,
    ) -> Result<murmur_gossip::GossipConfig, String> {
        let profile = self.profile.as_deref().unwrap_or(default_profile);
        let mut g = murmur_gossip::GossipConfig::profile(profile)
            .ok_or_else(|| format!("{section}.profile {profile:?}: use lan, wan or local"))?;
        let durs = [
            (self.probe_interval, &mut g.probe_interval),
            (self.probe_timeout, &mut g.probe_timeout),
            (self.gossip_interval, &mut g.gossip_interval),
            (self.push_pull_interval, &mut g.push_pull_interval),
            (self.gossip_to_the_dead_time, &mut g.gossip_to_the_dead_time),
            (self.reconnect_interval, &mut g.reconnect_interval),
        ];
        for (given, slot) in durs {
            if let Some(Dur(d)) = given {
                *slot = d;
            }
        }
        if let Some(n) = self.gossip_nodes {
            g.gossip_nodes = n as usize;
        }
        if let Some(n) = self.retransmit_mult {
            g.retransmit_mult = n;
        }
        if let Some(n) = self.suspicion_mult {
            g.suspicion_mult = n;
        }
        if let Some(on) = self.ring_monitors {
            g.ring_monitors = on;
        }
        Ok(g)
    }
}
