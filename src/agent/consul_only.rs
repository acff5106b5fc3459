//! Consul settings murmur does not implement yet. A Consul user's file or command line that uses one
//! gets an error saying exactly that, instead of "unknown key" (which reads like a typo) or a silent
//! ignore (which would run something other than what was asked for).

/// Config keys (dotted paths) of Consul's agent that murmur does not implement yet.
const KEYS: &[&str] = &[
    "acl",
    "addresses",
    "advertise_addr_ipv4",
    "advertise_addr_ipv6",
    "advertise_reconnect_timeout",
    "alt_domain",
    "audit",
    "auto_config",
    "auto_encrypt",
    "auto_reload_config",
    "autopilot.disable_upgrade_migration",
    "autopilot.redundancy_zone_tag",
    "autopilot.upgrade_version_tag",
    "ca_path",
    "cache",
    "cloud",
    "config_entries",
    "connect",
    "disable_anonymous_signature",
    "disable_host_node_id",
    "disable_http_unprintable_char_filter",
    "disable_keyring_file",
    "disable_remote_exec",
    "disable_update_check",
    "discard_check_output",
    "discovery_max_stale",
    "dns_config.cache_max_age",
    "dns_config.prefer_namespace",
    "dns_config.recursor_strategy",
    "dns_config.recursor_timeout",
    "dns_config.soa",
    "dns_config.use_cache",
    "enable_agent_tls_for_checks",
    "enable_central_service_config",
    "enable_debug",
    "enable_syslog",
    "http_config",
    "limits.https_handshake_timeout",
    "limits.kv_max_value_size",
    "limits.request_limits",
    "limits.rpc_client_timeout",
    "limits.rpc_handshake_timeout",
    "limits.rpc_max_burst",
    "limits.rpc_max_conns_per_client",
    "limits.rpc_rate",
    "limits.txn_max_req_len",
    "node_id",
    "non_voting_server",
    "peering",
    "performance",
    "pid_file",
    "ports.expose_max_port",
    "ports.expose_min_port",
    "ports.grpc",
    "ports.grpc_tls",
    "ports.https",
    "ports.sidecar_max_port",
    "ports.sidecar_min_port",
    "primary_datacenter",
    "primary_gateways",
    "protocol",
    "raft_boltdb",
    "raft_logstore",
    "raft_protocol",
    "raft_snapshot_interval",
    "raft_snapshot_threshold",
    "raft_trailing_logs",
    "read_replica",
    "rejoin_after_leave",
    "segment",
    "segments",
    "serf_lan",
    "server_name",
    "session_ttl_min",
    "syslog_facility",
    "telemetry.circonus_api_token",
    "telemetry.dogstatsd_addr",
    "telemetry.dogstatsd_tags",
    "telemetry.enable_host_metrics",
    "telemetry.filter_default",
    "telemetry.prefix_filter",
    "telemetry.statsd_address",
    "telemetry.statsite_address",
    "tls",
    "translate_wan_addrs",
    "ui_config.dashboard_url_templates",
    "ui_config.dir",
    "ui_config.metrics_provider",
    "ui_config.metrics_provider_files",
    "ui_config.metrics_provider_options_json",
    "ui_config.metrics_proxy",
    "ui_dir",
    "unix_sockets",
    "verify_incoming_https",
    "verify_incoming_rpc",
    "watches",
];

/// Flags of `consul agent` that murmur does not implement yet.
const FLAGS: &[&str] = &[
    "alt-domain",
    "auto-reload-config",
    "check_output_max_size",
    "config-format",
    "disable-host-node-id",
    "disable-keyring-file",
    "enable-local-script-checks",
    "enable-script-checks",
    "grpc-port",
    "grpc-tls-port",
    "hcl",
    "https-port",
    "node-id",
    "pid-file",
    "primary-gateway",
    "protocol",
    "raft-protocol",
    "rejoin",
    "segment",
    "serf-lan-allowed-cidrs",
    "serf-lan-bind",
    "serf-wan-allowed-cidrs",
    "serf-wan-bind",
    "syslog",
    "ui-dir",
];

/// The error for config key `path`, if it is a Consul setting murmur does not implement yet.
pub fn key(path: &str) -> Option<String> {
    KEYS.contains(&path)
        .then(|| format!("key {path:?} is a Consul setting that murmur does not support yet"))
}

/// The error for `-name`, if it is a Consul agent flag murmur does not implement yet.
pub fn flag(name: &str) -> Option<String> {
    FLAGS
        .contains(&name)
        .then(|| format!("-{name} is a Consul flag that murmur does not support yet"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consul_settings_are_named_as_such() {
        let e = key("connect").unwrap();
        assert_eq!(
            e,
            "key \"connect\" is a Consul setting that murmur does not support yet"
        );
        assert!(key("ports.grpc").is_some());
        assert!(key("mystery_key").is_none());
        assert!(
            flag("serf-wan-bind")
                .unwrap()
                .contains("does not support yet")
        );
        assert!(flag("mystery").is_none());
        let mut sorted = KEYS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, KEYS, "kept sorted, so a duplicate or a gap shows");
        let mut sorted = FLAGS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, FLAGS);
    }
}
