//! Every agent setting, declared once: its config key, the kind of value it takes, and the `murmur
//! agent` flag that sets it. The flag table, the schema files are checked against and the error texts
//! all derive from this list.

use serde_json::Value;

use crate::util::duration;
use crate::util::flags::{Arity, Flag};

/// The kind of value a setting takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    Str,
    /// true or false.
    Bool,
    /// 1-65535.
    Port,
    /// 1-65535, or -1 for off (`ports.serf_wan`).
    PortOrOff,
    /// A non-negative integer.
    Count,
    /// Any integer (`log_rotate_max_files`: -1 means none).
    Int,
    /// A duration string such as "30s".
    Dur,
    /// A duration, or an object of names to durations (`dns_config.service_ttl`).
    DurMap,
    /// A list of strings (flags repeat to add to it).
    List,
    /// An object of string values.
    StrMap,
    /// Service or check definitions: one object or a list, checked by `state::definitions`.
    Definitions,
}

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Dotted config key (`dns_config.node_ttl`).
    pub key: &'static str,
    /// Its kind.
    pub kind: Kind,
    /// The flag that sets it, with its help line.
    pub flag: Option<(&'static str, &'static str)>,
}

const fn key(key: &'static str, kind: Kind) -> Setting {
    Setting {
        key,
        kind,
        flag: None,
    }
}

const fn flagged(key: &'static str, kind: Kind, flag: &'static str, help: &'static str) -> Setting {
    Setting {
        key,
        kind,
        flag: Some((flag, help)),
    }
}

/// The settings, in the order `murmur agent -h` lists their flags.
pub const SETTINGS: &[Setting] = &[
    flagged(
        "node_name",
        Kind::Str,
        "node",
        "Node name (default: hostname).",
    ),
    flagged(
        "bind_addr",
        Kind::Str,
        "bind",
        "Address to bind gossip to (default 0.0.0.0).",
    ),
    flagged(
        "advertise_addr",
        Kind::Str,
        "advertise",
        "Address advertised to the cluster.",
    ),
    flagged(
        "client_addr",
        Kind::Str,
        "client",
        "Address HTTP and DNS listen on (default 127.0.0.1).",
    ),
    flagged(
        "datacenter",
        Kind::Str,
        "datacenter",
        "Datacenter name (default dc1).",
    ),
    flagged(
        "data_dir",
        Kind::Str,
        "data-dir",
        "Directory for agent state.",
    ),
    flagged("server", Kind::Bool, "server", "Run in server mode."),
    flagged(
        "bootstrap_expect",
        Kind::Count,
        "bootstrap-expect",
        "Servers expected before bootstrapping (needs -server).",
    ),
    flagged(
        "bootstrap",
        Kind::Bool,
        "bootstrap",
        "Bootstrap the replicated log with this server alone (needs -server; not with -bootstrap-expect).",
    ),
    flagged(
        "start_join",
        Kind::List,
        "join",
        "Address to join at start (repeatable).",
    ),
    flagged(
        "retry_join",
        Kind::List,
        "retry-join",
        "Address to join at start, retried until it works (repeatable).",
    ),
    flagged(
        "retry_interval",
        Kind::Dur,
        "retry-interval",
        "Longest wait between join retries: the wait starts at 1s and doubles up to this (default 30s).",
    ),
    flagged(
        "retry_max",
        Kind::Count,
        "retry-max",
        "Join attempts before giving up (0 = forever).",
    ),
    flagged(
        "ports.http",
        Kind::Port,
        "http-port",
        "HTTP API port (default 8500).",
    ),
    flagged(
        "ports.dns",
        Kind::Port,
        "dns-port",
        "DNS port (default 8600).",
    ),
    flagged(
        "ports.serf_lan",
        Kind::Port,
        "serf-lan-port",
        "Gossip port (default 8301).",
    ),
    flagged(
        "ports.serf_wan",
        Kind::PortOrOff,
        "serf-wan-port",
        "WAN gossip port among the servers of every datacenter (default 8302; -1 turns it off).",
    ),
    flagged(
        "advertise_addr_wan",
        Kind::Str,
        "advertise-wan",
        "Address advertised to the WAN pool (default: the advertise address).",
    ),
    flagged(
        "start_join_wan",
        Kind::List,
        "join-wan",
        "Server address of another datacenter to join over the WAN at start (repeatable).",
    ),
    flagged(
        "retry_join_wan",
        Kind::List,
        "retry-join-wan",
        "As -join-wan, retried until it works (repeatable).",
    ),
    flagged(
        "retry_interval_wan",
        Kind::Dur,
        "retry-interval-wan",
        "Longest wait between WAN join retries (default 30s).",
    ),
    flagged(
        "retry_max_wan",
        Kind::Count,
        "retry-max-wan",
        "WAN join attempts before giving up (0 = forever).",
    ),
    flagged(
        "ports.server",
        Kind::Port,
        "server-port",
        "Server RPC port advertised in tags (default 8300).",
    ),
    flagged(
        "domain",
        Kind::Str,
        "domain",
        "DNS domain (default consul.).",
    ),
    flagged(
        "recursors",
        Kind::List,
        "recursor",
        "Upstream DNS server for other names (repeatable).",
    ),
    flagged(
        "encrypt",
        Kind::Str,
        "encrypt",
        "Base64 gossip encryption key.",
    ),
    flagged(
        "log_level",
        Kind::Str,
        "log-level",
        "trace, debug, info, warn or error (default info).",
    ),
    flagged(
        "log_json",
        Kind::Bool,
        "log-json",
        "Write the log as JSON lines (hclog's keys).",
    ),
    flagged(
        "log_file",
        Kind::Str,
        "log-file",
        "Also write the log to this file (a path ending in / is a directory: murmur.log in it).",
    ),
    flagged(
        "log_rotate_bytes",
        Kind::Count,
        "log-rotate-bytes",
        "Rotate the log file once it holds this many bytes (default 0: no size limit).",
    ),
    flagged(
        "log_rotate_duration",
        Kind::Dur,
        "log-rotate-duration",
        "Rotate the log file once it is this old (default 24h).",
    ),
    flagged(
        "log_rotate_max_files",
        Kind::Int,
        "log-rotate-max-files",
        "Rotated log files to keep (default 0: all; -1: none).",
    ),
    flagged(
        "ui_config.enabled",
        Kind::Bool,
        "ui",
        "Serve the web UI (on with -dev).",
    ),
    flagged(
        "ui_config.content_path",
        Kind::Str,
        "ui-content-path",
        "Path the web UI is served under (default /ui/).",
    ),
    // Consul's older spelling of ui_config.enabled.
    key("ui", Kind::Bool),
    key("encrypt_verify_incoming", Kind::Bool),
    key("encrypt_verify_outgoing", Kind::Bool),
    key("ca_file", Kind::Str),
    key("cert_file", Kind::Str),
    key("key_file", Kind::Str),
    key("verify_incoming", Kind::Bool),
    key("verify_outgoing", Kind::Bool),
    key("verify_server_hostname", Kind::Bool),
    key("leave_on_terminate", Kind::Bool),
    key("disable_coordinates", Kind::Bool),
    flagged(
        "enable_script_checks",
        Kind::Bool,
        "enable-script-checks",
        "Allow script (args) checks from any source, the HTTP API included.",
    ),
    flagged(
        "enable_local_script_checks",
        Kind::Bool,
        "enable-local-script-checks",
        "Allow script (args) checks defined in config files.",
    ),
    key("check_update_interval", Kind::Dur),
    key("skip_leave_on_interrupt", Kind::Bool),
    key("reconnect_timeout", Kind::Dur),
    key("raft_snapshot_threshold", Kind::Count),
    key("raft_trailing_logs", Kind::Count),
    key("autopilot.cleanup_dead_servers", Kind::Bool),
    key("autopilot.last_contact_threshold", Kind::Dur),
    key("autopilot.max_trailing_logs", Kind::Count),
    key("autopilot.min_quorum", Kind::Count),
    key("autopilot.server_stabilization_time", Kind::Dur),
    key("node_meta", Kind::StrMap),
    key("dns_config.node_ttl", Kind::Dur),
    key("dns_config.service_ttl", Kind::DurMap),
    key("dns_config.udp_answer_limit", Kind::Count),
    key("dns_config.a_record_limit", Kind::Count),
    key("dns_config.enable_truncate", Kind::Bool),
    key("dns_config.only_passing", Kind::Bool),
    key("dns_config.enable_additional_node_meta_txt", Kind::Bool),
    // Reads are always served from the local table, i.e. stale-allowed; accepted for compatibility.
    key("dns_config.allow_stale", Kind::Bool),
    key("dns_config.max_stale", Kind::Dur),
    key("gossip_lan.profile", Kind::Str),
    key("gossip_lan.probe_interval", Kind::Dur),
    key("gossip_lan.probe_timeout", Kind::Dur),
    key("gossip_lan.gossip_interval", Kind::Dur),
    key("gossip_lan.gossip_nodes", Kind::Count),
    key("gossip_lan.retransmit_mult", Kind::Count),
    key("gossip_lan.suspicion_mult", Kind::Count),
    key("gossip_lan.push_pull_interval", Kind::Dur),
    key("gossip_lan.gossip_to_the_dead_time", Kind::Dur),
    key("gossip_lan.reconnect_interval", Kind::Dur),
    // murmur's own: ring monitoring and its fast floor (on by default; false = memberlist's detection).
    key("gossip_lan.ring_monitors", Kind::Bool),
    key("gossip_wan.profile", Kind::Str),
    key("gossip_wan.probe_interval", Kind::Dur),
    key("gossip_wan.probe_timeout", Kind::Dur),
    key("gossip_wan.gossip_interval", Kind::Dur),
    key("gossip_wan.gossip_nodes", Kind::Count),
    key("gossip_wan.retransmit_mult", Kind::Count),
    key("gossip_wan.suspicion_mult", Kind::Count),
    key("gossip_wan.push_pull_interval", Kind::Dur),
    key("gossip_wan.gossip_to_the_dead_time", Kind::Dur),
    key("gossip_wan.reconnect_interval", Kind::Dur),
    key("gossip_wan.ring_monitors", Kind::Bool),
    key("reconnect_timeout_wan", Kind::Dur),
    key("limits.http_max_conns_per_client", Kind::Count),
    key("telemetry.metrics_prefix", Kind::Str),
    key("telemetry.prometheus_retention_time", Kind::Dur),
    key("telemetry.disable_hostname", Kind::Bool),
    key("service", Kind::Definitions),
    key("services", Kind::Definitions),
    key("check", Kind::Definitions),
    key("checks", Kind::Definitions),
];

/// Flags that set no key of their own.
const COMMAND_FLAGS: &[Flag] = &[
    Flag {
        name: "node-meta",
        arity: Arity::Many,
        help: "Node metadata as key:value (repeatable).",
    },
    Flag {
        name: "dev",
        arity: Arity::Bool,
        help: "Development mode: a server on 127.0.0.1 with no data dir.",
    },
    Flag {
        name: "config-file",
        arity: Arity::Many,
        help: "A JSON or HCL config file (repeatable).",
    },
    Flag {
        name: "config-dir",
        arity: Arity::Many,
        help: "A directory of *.json and *.hcl files (repeatable).",
    },
];

/// Flags accepted by `murmur agent`.
pub fn agent_flags() -> Vec<Flag> {
    let from_settings = SETTINGS.iter().filter_map(|s| {
        let (name, help) = s.flag?;
        let arity = match s.kind {
            Kind::Bool => Arity::Bool,
            Kind::List => Arity::Many,
            _ => Arity::One,
        };
        Some(Flag { name, arity, help })
    });
    from_settings.chain(COMMAND_FLAGS.iter().copied()).collect()
}

/// True for a top-level key holding definitions, which accumulate across files.
pub fn is_definitions(key: &str) -> bool {
    SETTINGS
        .iter()
        .any(|s| s.key == key && s.kind == Kind::Definitions)
}

/// The setting a flag sets.
pub fn by_flag(name: &str) -> Option<&'static Setting> {
    SETTINGS
        .iter()
        .find(|s| s.flag.is_some_and(|(f, _)| f == name))
}

/// What a dotted path is in the schema.
enum Node {
    Leaf(Kind),
    Section,
}

fn node(path: &str) -> Option<Node> {
    if let Some(s) = SETTINGS.iter().find(|s| s.key == path) {
        return Some(Node::Leaf(s.kind));
    }
    SETTINGS
        .iter()
        .any(|s| {
            s.key
                .strip_prefix(path)
                .is_some_and(|rest| rest.starts_with('.'))
        })
        .then_some(Node::Section)
}

/// Checks a parsed file (or the merged flags) against the settings; the error names the key.
pub fn check(v: &Value, prefix: &str) -> Result<(), String> {
    let Value::Object(map) = v else {
        let at = if prefix.is_empty() {
            "top level"
        } else {
            prefix
        };
        return Err(format!("{at}: expected an object"));
    };
    for (k, val) in map {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match node(&path) {
            Some(Node::Leaf(Kind::Definitions)) => {
                crate::state::definitions::from_config(&path, val)
                    .map_err(|e| format!("key {path:?}: {e}"))?;
            }
            Some(Node::Leaf(kind)) => {
                check_value(kind, val).map_err(|e| format!("key {path:?}: {e}"))?
            }
            Some(Node::Section) => {
                if !val.is_object() {
                    return Err(format!("key {path:?}: expected an object, got {val}"));
                }
                check(val, &path)?;
            }
            None => {
                return Err(crate::agent::consul_only::key(&path)
                    .unwrap_or_else(|| format!("unknown key {path:?}")));
            }
        }
    }
    Ok(())
}

fn check_value(kind: Kind, v: &Value) -> Result<(), String> {
    let ok = match kind {
        Kind::Str => v.is_string(),
        Kind::Bool => v.is_boolean(),
        Kind::Port => v.as_u64().is_some_and(|n| (1..=65535).contains(&n)),
        Kind::PortOrOff => v
            .as_i64()
            .is_some_and(|n| n == -1 || (1..=65535).contains(&n)),
        Kind::Count => v.as_u64().is_some_and(|n| n <= u32::MAX as u64),
        Kind::Int => v.is_i64(),
        Kind::Dur => match v.as_str() {
            Some(s) => return duration::parse(s).map(|_| ()),
            None => false,
        },
        Kind::DurMap => match v {
            Value::String(s) => return duration::parse(s).map(|_| ()),
            Value::Object(o) => {
                for d in o.values() {
                    let Some(s) = d.as_str() else {
                        return Err(format!("expected {}, got {v}", describe(kind)));
                    };
                    duration::parse(s)?;
                }
                true
            }
            _ => false,
        },
        Kind::List => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        Kind::StrMap => v
            .as_object()
            .is_some_and(|o| o.values().all(Value::is_string)),
        Kind::Definitions => v.is_object() || v.is_array(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {}, got {v}", describe(kind)))
    }
}

fn describe(kind: Kind) -> &'static str {
    match kind {
        Kind::Str => "a string",
        Kind::Bool => "true or false",
        Kind::Port => "a port number (1-65535)",
        Kind::PortOrOff => "a port number (1-65535), or -1 for off",
        Kind::Count => "a non-negative integer",
        Kind::Int => "an integer",
        Kind::Dur => "a duration string such as \"30s\"",
        Kind::DurMap => "a duration, or an object of service names to durations",
        Kind::List => "a list of strings",
        Kind::StrMap => "an object of string values",
        Kind::Definitions => "a definition object or a list of them",
    }
}

/// A flag's text as the value its setting takes.
pub fn coerce(kind: Kind, s: &str) -> Result<Value, String> {
    let v = match kind {
        Kind::Str | Kind::Dur => Value::String(s.to_owned()),
        Kind::Bool => Value::Bool(s == "true"),
        Kind::Port | Kind::Count => Value::from(
            s.parse::<u64>()
                .map_err(|_| format!("expected {}, got {s:?}", describe(kind)))?,
        ),
        Kind::PortOrOff | Kind::Int => Value::from(
            s.parse::<i64>()
                .map_err(|_| format!("expected {}, got {s:?}", describe(kind)))?,
        ),
        Kind::List => Value::Array(vec![Value::String(s.to_owned())]),
        Kind::StrMap | Kind::DurMap | Kind::Definitions => {
            return Err("not settable from a flag".into());
        }
    };
    check_value(kind, &v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_declaration_gives_flags_and_schema() {
        let flags = agent_flags();
        let names: Vec<&str> = flags.iter().map(|f| f.name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "a flag declared twice");
        let join = flags.iter().find(|f| f.name == "join").unwrap();
        assert_eq!(join.arity, Arity::Many, "list settings repeat");
        assert_eq!(by_flag("http-port").unwrap().key, "ports.http");
        assert!(matches!(node("ports"), Some(Node::Section)));
        assert!(matches!(node("ports.http"), Some(Node::Leaf(Kind::Port))));
        assert!(
            node("port").is_none(),
            "a prefix of a name is not a section"
        );
        let mut keys: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), SETTINGS.len(), "a key declared twice");
    }
}
