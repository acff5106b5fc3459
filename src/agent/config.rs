//! Agent configuration: defaults, then config files (JSON/HCL, in command-line order, directories
//! alphabetically), then flags. Every key is checked against a schema so mistakes name file and key.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::util::duration;
use crate::util::flags::{Arity, Flag, Parsed};
use murmur_gossip::GossipConfig;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Port,
    Count,
    Dur,
    List,
    StrMap,
    Obj(&'static [(&'static str, Kind)]),
}

const PORTS: &[(&str, Kind)] = &[
    ("http", Kind::Port),
    ("dns", Kind::Port),
    ("serf_lan", Kind::Port),
    ("server", Kind::Port),
];

const GOSSIP: &[(&str, Kind)] = &[
    ("profile", Kind::Str),
    ("probe_interval", Kind::Dur),
    ("probe_timeout", Kind::Dur),
    ("gossip_interval", Kind::Dur),
    ("gossip_nodes", Kind::Count),
    ("retransmit_mult", Kind::Count),
    ("suspicion_mult", Kind::Count),
    ("push_pull_interval", Kind::Dur),
    ("gossip_to_the_dead_time", Kind::Dur),
    ("reconnect_interval", Kind::Dur),
];

const DNS: &[(&str, Kind)] = &[
    ("node_ttl", Kind::Dur),
    ("service_ttl", Kind::Dur),
    ("udp_answer_limit", Kind::Count),
    ("a_record_limit", Kind::Count),
    ("enable_truncate", Kind::Bool),
    ("only_passing", Kind::Bool),
    ("enable_additional_node_meta_txt", Kind::Bool),
    // Reads are always served from the local table, i.e. stale-allowed; accepted for compatibility.
    ("allow_stale", Kind::Bool),
    ("max_stale", Kind::Dur),
];

const LIMITS: &[(&str, Kind)] = &[("http_max_conns_per_client", Kind::Count)];

const SCHEMA: &[(&str, Kind)] = &[
    ("node_name", Kind::Str),
    ("datacenter", Kind::Str),
    ("data_dir", Kind::Str),
    ("bind_addr", Kind::Str),
    ("advertise_addr", Kind::Str),
    ("client_addr", Kind::Str),
    ("server", Kind::Bool),
    ("bootstrap_expect", Kind::Count),
    ("start_join", Kind::List),
    ("retry_join", Kind::List),
    ("retry_interval", Kind::Dur),
    ("retry_max", Kind::Count),
    ("encrypt", Kind::Str),
    ("encrypt_verify_incoming", Kind::Bool),
    ("ca_file", Kind::Str),
    ("cert_file", Kind::Str),
    ("key_file", Kind::Str),
    ("verify_incoming", Kind::Bool),
    ("verify_outgoing", Kind::Bool),
    ("verify_server_hostname", Kind::Bool),
    ("encrypt_verify_outgoing", Kind::Bool),
    ("log_level", Kind::Str),
    ("leave_on_terminate", Kind::Bool),
    ("skip_leave_on_interrupt", Kind::Bool),
    ("reconnect_timeout", Kind::Dur),
    ("node_meta", Kind::StrMap),
    ("domain", Kind::Str),
    ("recursors", Kind::List),
    ("dns_config", Kind::Obj(DNS)),
    ("ports", Kind::Obj(PORTS)),
    ("gossip_lan", Kind::Obj(GOSSIP)),
    ("limits", Kind::Obj(LIMITS)),
];

/// Flags of `murmur agent`, with the config key each one sets (None: handled specially).
const AGENT_FLAGS: &[(Flag, Option<&str>)] = &[
    (
        flag("node", Arity::One, "Node name (default: hostname)."),
        Some("node_name"),
    ),
    (
        flag(
            "bind",
            Arity::One,
            "Address to bind gossip to (default 0.0.0.0).",
        ),
        Some("bind_addr"),
    ),
    (
        flag(
            "advertise",
            Arity::One,
            "Address advertised to the cluster.",
        ),
        Some("advertise_addr"),
    ),
    (
        flag(
            "client",
            Arity::One,
            "Address HTTP and DNS listen on (default 127.0.0.1).",
        ),
        Some("client_addr"),
    ),
    (
        flag("datacenter", Arity::One, "Datacenter name (default dc1)."),
        Some("datacenter"),
    ),
    (
        flag("data-dir", Arity::One, "Directory for agent state."),
        Some("data_dir"),
    ),
    (
        flag("server", Arity::Bool, "Run in server mode."),
        Some("server"),
    ),
    (
        flag(
            "bootstrap-expect",
            Arity::One,
            "Servers expected before bootstrapping (needs -server).",
        ),
        Some("bootstrap_expect"),
    ),
    (
        flag(
            "join",
            Arity::Many,
            "Address to join at start (repeatable).",
        ),
        Some("start_join"),
    ),
    (
        flag(
            "retry-join",
            Arity::Many,
            "Address to join at start, retried until it works (repeatable).",
        ),
        Some("retry_join"),
    ),
    (
        flag(
            "retry-interval",
            Arity::One,
            "Time between join retries (default 30s).",
        ),
        Some("retry_interval"),
    ),
    (
        flag(
            "retry-max",
            Arity::One,
            "Join attempts before giving up (0 = forever).",
        ),
        Some("retry_max"),
    ),
    (
        flag("http-port", Arity::One, "HTTP API port (default 8500)."),
        Some("ports.http"),
    ),
    (
        flag("dns-port", Arity::One, "DNS port (default 8600)."),
        Some("ports.dns"),
    ),
    (
        flag("serf-lan-port", Arity::One, "Gossip port (default 8301)."),
        Some("ports.serf_lan"),
    ),
    (
        flag(
            "server-port",
            Arity::One,
            "Server RPC port advertised in tags (default 8300).",
        ),
        Some("ports.server"),
    ),
    (
        flag("domain", Arity::One, "DNS domain (default consul.)."),
        Some("domain"),
    ),
    (
        flag(
            "recursor",
            Arity::Many,
            "Upstream DNS server for other names (repeatable).",
        ),
        Some("recursors"),
    ),
    (
        flag(
            "node-meta",
            Arity::Many,
            "Node metadata as key:value (repeatable).",
        ),
        None,
    ),
    (
        flag("encrypt", Arity::One, "Base64 gossip encryption key."),
        Some("encrypt"),
    ),
    (
        flag(
            "log-level",
            Arity::One,
            "trace, debug, info, warn or error (default info).",
        ),
        Some("log_level"),
    ),
    (
        flag(
            "dev",
            Arity::Bool,
            "Development mode: a server on 127.0.0.1 with no data dir.",
        ),
        None,
    ),
    (
        flag(
            "config-file",
            Arity::Many,
            "A JSON or HCL config file (repeatable).",
        ),
        None,
    ),
    (
        flag(
            "config-dir",
            Arity::Many,
            "A directory of *.json and *.hcl files (repeatable).",
        ),
        None,
    ),
];

const fn flag(name: &'static str, arity: Arity, help: &'static str) -> Flag {
    Flag { name, arity, help }
}

/// Flags accepted by `murmur agent`.
pub fn agent_flags() -> Vec<Flag> {
    AGENT_FLAGS.iter().map(|(f, _)| *f).collect()
}

/// Agent ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    /// HTTP API.
    pub http: u16,
    /// DNS.
    pub dns: u16,
    /// Gossip (UDP).
    pub serf_lan: u16,
    /// Server RPC, advertised in the `port` tag.
    pub server: u16,
}

impl Default for Ports {
    /// Consul's ports.
    fn default() -> Self {
        Ports {
            http: 8500,
            dns: 8600,
            serf_lan: 8301,
            server: 8300,
        }
    }
}

/// The agent's final configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Node name.
    pub node_name: String,
    /// Datacenter.
    pub datacenter: String,
    /// State directory (none in `-dev`).
    pub data_dir: Option<PathBuf>,
    /// Gossip bind address.
    pub bind_addr: IpAddr,
    /// Address advertised to others (resolved from bind when unset).
    pub advertise_addr: Option<IpAddr>,
    /// HTTP/DNS listen address.
    pub client_addr: IpAddr,
    /// Server mode.
    pub server: bool,
    /// Expected servers (0 = not set).
    pub bootstrap_expect: u32,
    /// Development mode.
    pub dev: bool,
    /// Joined at start; failure is fatal.
    pub start_join: Vec<String>,
    /// Joined at start with retries.
    pub retry_join: Vec<String>,
    /// Ceiling of the join retry backoff.
    pub retry_interval: Duration,
    /// Join attempts before giving up (0 = forever).
    pub retry_max: u32,
    /// Open HTTP connections one client address may hold (Consul's `limits`; 0 = no limit).
    pub http_max_conns_per_client: u32,
    /// Decoded gossip key, if any.
    pub encrypt: Option<Vec<u8>>,
    /// TLS for QUIC push/pull.
    pub tls: crate::net::tls::TlsSettings,
    /// Refuse unencrypted gossip (turn off while enabling encryption on a running cluster).
    pub encrypt_verify_incoming: bool,
    /// Encrypt outgoing gossip (turn off while enabling encryption on a running cluster).
    pub encrypt_verify_outgoing: bool,
    /// Log level.
    pub log_level: tracing::Level,
    /// Leave gracefully on SIGTERM.
    pub leave_on_terminate: bool,
    /// Exit without leaving on SIGINT.
    pub skip_leave_on_interrupt: bool,
    /// Ports.
    pub ports: Ports,
    /// Gossip tuning.
    pub gossip: GossipConfig,
    /// Node metadata, served in the catalog and as DNS TXT records.
    pub node_meta: Vec<(String, String)>,
    /// DNS settings (`domain`, `recursors`, `dns_config`).
    pub dns: crate::dns::DnsConfig,
}

/// Builds the configuration from `murmur agent` flags.
pub fn load(p: &Parsed) -> Result<Config, String> {
    if !p.args.is_empty() {
        return Err(format!("unexpected arguments: {:?}", p.args));
    }
    let dev = p.is_set("dev");
    let mut merged = Value::Object(Map::new());
    for (name, value) in &p.flags {
        match *name {
            "config-file" => merge(&mut merged, read_file(Path::new(value))?),
            "config-dir" => {
                for f in dir_files(Path::new(value))? {
                    merge(&mut merged, read_file(&f)?);
                }
            }
            _ => {}
        }
    }
    let mut from_flags = Value::Object(Map::new());
    for (name, value) in &p.flags {
        let Some((_, Some(key))) = AGENT_FLAGS.iter().find(|(f, _)| f.name == *name) else {
            continue;
        };
        let kind = kind_of(key).expect("flag keys are in the schema");
        let v = coerce(kind, value).map_err(|e| format!("invalid value for -{name}: {e}"))?;
        set_path(&mut from_flags, key, v);
    }
    for kv in p.all("node-meta") {
        let (k, v) = kv
            .split_once(':')
            .ok_or_else(|| format!("invalid value for -node-meta: {kv:?} (want key:value)"))?;
        set_path(
            &mut from_flags,
            &format!("node_meta.{k}"),
            Value::String(v.to_owned()),
        );
    }
    merge(&mut merged, from_flags);
    build(&merged, dev)
}

/// Parses one JSON or HCL file and checks it against the schema.
pub fn read_file(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("Error reading config file {}: {e}", path.display()))?;
    let v: Value = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text)
            .map_err(|e| format!("Error parsing {}: {e}", path.display()))?,
        Some("hcl") => {
            hcl::from_str(&text).map_err(|e| format!("Error parsing {}: {e}", path.display()))?
        }
        _ => {
            return Err(format!(
                "Error reading config file {}: extension must be .json or .hcl",
                path.display()
            ));
        }
    };
    check(&v, SCHEMA, "").map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(v)
}

fn dir_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| format!("Error reading config dir {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("json" | "hcl"))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn kind_of(path: &str) -> Option<Kind> {
    let mut schema = SCHEMA;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let (_, kind) = schema.iter().find(|(k, _)| *k == part)?;
        match (kind, parts.peek()) {
            (Kind::Obj(sub), Some(_)) => schema = sub,
            (_, None) => return Some(*kind),
            _ => return None,
        }
    }
    None
}

fn check(v: &Value, schema: &[(&str, Kind)], prefix: &str) -> Result<(), String> {
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
        let Some((_, kind)) = schema.iter().find(|(name, _)| name == k) else {
            return Err(
                super::consul_only::key(&path).unwrap_or_else(|| format!("unknown key {path:?}"))
            );
        };
        check_value(*kind, val).map_err(|e| format!("key {path:?}: {e}"))?;
        if let Kind::Obj(sub) = kind {
            check(val, sub, &path)?;
        }
    }
    Ok(())
}

fn check_value(kind: Kind, v: &Value) -> Result<(), String> {
    let ok = match kind {
        Kind::Str => v.is_string(),
        Kind::Bool => v.is_boolean(),
        Kind::Port => v.as_u64().is_some_and(|n| (1..=65535).contains(&n)),
        Kind::Count => v.as_u64().is_some_and(|n| n <= u32::MAX as u64),
        Kind::Dur => match v.as_str() {
            Some(s) => return duration::parse(s).map(|_| ()),
            None => false,
        },
        Kind::List => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        Kind::StrMap => v
            .as_object()
            .is_some_and(|o| o.values().all(Value::is_string)),
        Kind::Obj(_) => v.is_object(),
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
        Kind::Count => "a non-negative integer",
        Kind::Dur => "a duration string such as \"30s\"",
        Kind::List => "a list of strings",
        Kind::StrMap => "an object of string values",
        Kind::Obj(_) => "an object",
    }
}

fn coerce(kind: Kind, s: &str) -> Result<Value, String> {
    let v = match kind {
        Kind::Str | Kind::Dur => Value::String(s.to_owned()),
        Kind::Bool => Value::Bool(s == "true"),
        Kind::Port | Kind::Count => Value::from(
            s.parse::<u64>()
                .map_err(|_| format!("expected {}, got {s:?}", describe(kind)))?,
        ),
        Kind::List => Value::Array(vec![Value::String(s.to_owned())]),
        Kind::Obj(_) | Kind::StrMap => return Err("not settable from a flag".into()),
    };
    check_value(kind, &v)?;
    Ok(v)
}

fn set_path(root: &mut Value, path: &str, v: Value) {
    let mut cur = root;
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        let map = cur.as_object_mut().expect("objects along config paths");
        if parts.peek().is_none() {
            merge_key(map, p, v);
            return;
        }
        cur = map
            .entry(p.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

fn merge_key(map: &mut Map<String, Value>, k: &str, v: Value) {
    match (map.get_mut(k), v) {
        (Some(Value::Array(a)), Value::Array(b)) => a.extend(b),
        (Some(Value::Object(a)), Value::Object(b)) => {
            for (k, v) in b {
                merge_key(a, &k, v);
            }
        }
        (_, v) => {
            map.insert(k.to_owned(), v);
        }
    }
}

/// Later sources override earlier ones; lists (joins) accumulate, objects merge key by key.
fn merge(base: &mut Value, over: Value) {
    if let (Value::Object(a), Value::Object(b)) = (base, over) {
        for (k, v) in b {
            merge_key(a, &k, v);
        }
    }
}

fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, p| cur.get(p))
}

fn get_str(v: &Value, path: &str) -> Option<String> {
    get(v, path).and_then(Value::as_str).map(str::to_owned)
}

fn get_dur(v: &Value, path: &str) -> Option<Duration> {
    get(v, path)
        .and_then(Value::as_str)
        .and_then(|s| duration::parse(s).ok())
}

fn get_u32(v: &Value, path: &str) -> Option<u32> {
    get(v, path).and_then(Value::as_u64).map(|n| n as u32)
}

fn get_ip(v: &Value, key: &str) -> Result<Option<IpAddr>, String> {
    match get_str(v, key) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("{key}: {s:?} is not an IP address")),
    }
}

fn build(v: &Value, dev: bool) -> Result<Config, String> {
    let server = get(v, "server").and_then(Value::as_bool).unwrap_or(dev);
    let bootstrap_expect = get_u32(v, "bootstrap_expect").unwrap_or(0);
    if bootstrap_expect > 0 && !server {
        return Err("bootstrap_expect (-bootstrap-expect) requires server mode (-server)".into());
    }
    if bootstrap_expect > 0 && dev {
        return Err("bootstrap_expect (-bootstrap-expect) is not allowed in -dev mode".into());
    }
    let node_name = match get_str(v, "node_name") {
        Some(n) => n,
        None => hostname()?,
    };
    if !murmur_gossip::wire::valid_name(&node_name) || node_name.chars().any(char::is_whitespace) {
        return Err(format!(
            "node_name {node_name:?} must be 1-255 bytes without spaces"
        ));
    }
    let datacenter = get_str(v, "datacenter").unwrap_or_else(|| "dc1".into());
    if datacenter.is_empty()
        || !datacenter
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(format!(
            "datacenter {datacenter:?} may only contain lower-case letters, digits, '-' and '_'"
        ));
    }
    let data_dir = get_str(v, "data_dir").map(PathBuf::from);
    if data_dir.is_none() && !dev {
        return Err("data_dir is required: pass -data-dir=<path> (or use -dev)".into());
    }
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let default_bind = if dev {
        loopback
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let bind_addr = get_ip(v, "bind_addr")?.unwrap_or(default_bind);
    let advertise_addr = get_ip(v, "advertise_addr")?;
    let client_addr = get_ip(v, "client_addr")?.unwrap_or(loopback);
    let encrypt = get_str(v, "encrypt")
        .map(|k| crate::net::crypto::parse_key(&k).map_err(|e| format!("encrypt: {e}")))
        .transpose()?;
    let log_level = match get_str(v, "log_level")
        .unwrap_or_else(|| "info".into())
        .to_ascii_lowercase()
        .as_str()
    {
        "trace" => tracing::Level::TRACE,
        "debug" => tracing::Level::DEBUG,
        "info" => tracing::Level::INFO,
        "warn" => tracing::Level::WARN,
        "err" | "error" => tracing::Level::ERROR,
        other => {
            return Err(format!(
                "log_level {other:?}: use trace, debug, info, warn or error"
            ));
        }
    };
    let port = |k: &str, d: u16| get_u32(v, k).map_or(d, |p| p as u16);
    let d = Ports::default();
    let ports = Ports {
        http: port("ports.http", d.http),
        dns: port("ports.dns", d.dns),
        serf_lan: port("ports.serf_lan", d.serf_lan),
        server: port("ports.server", d.server),
    };
    let gossip = gossip_config(v)?;
    let node_meta: Vec<(String, String)> = get(v, "node_meta")
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default();
    if node_meta.len() > 64
        || node_meta
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > 128 || v.len() > 253)
    {
        return Err("node_meta: at most 64 keys, keys 1-128 bytes, values up to 253 bytes".into());
    }
    // The DNS defaults live in one place: `DnsConfig::default()`.
    let dns_default = crate::dns::DnsConfig::default();
    let mut domain = get_str(v, "domain")
        .unwrap_or(dns_default.domain)
        .to_ascii_lowercase();
    if !domain.ends_with('.') {
        domain.push('.');
    }
    if domain.len() < 2 || domain.starts_with('.') || domain.contains("..") {
        return Err(format!("domain {domain:?} is not a valid DNS domain"));
    }
    let flag_of = |k: &str, d: bool| {
        get(v, &format!("dns_config.{k}"))
            .and_then(Value::as_bool)
            .unwrap_or(d)
    };
    let recursors = list(v, "recursors")
        .iter()
        .map(|r| {
            r.parse::<std::net::SocketAddr>()
                .or_else(|_| {
                    r.parse::<IpAddr>()
                        .map(|ip| std::net::SocketAddr::new(ip, 53))
                })
                .map_err(|_| format!("recursors: {r:?} is not an IP address or IP:port"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let dns = crate::dns::DnsConfig {
        domain,
        datacenter: datacenter.clone(),
        node_ttl: get_dur(v, "dns_config.node_ttl").unwrap_or(dns_default.node_ttl),
        service_ttl: get_dur(v, "dns_config.service_ttl").unwrap_or(dns_default.service_ttl),
        udp_answer_limit: get_u32(v, "dns_config.udp_answer_limit")
            .unwrap_or(dns_default.udp_answer_limit),
        a_record_limit: get_u32(v, "dns_config.a_record_limit")
            .unwrap_or(dns_default.a_record_limit),
        enable_truncate: flag_of("enable_truncate", dns_default.enable_truncate),
        only_passing: flag_of("only_passing", dns_default.only_passing),
        additional_node_meta_txt: flag_of(
            "enable_additional_node_meta_txt",
            dns_default.additional_node_meta_txt,
        ),
        recursors,
    };
    Ok(Config {
        node_name,
        datacenter,
        data_dir,
        bind_addr,
        advertise_addr,
        client_addr,
        server,
        bootstrap_expect,
        dev,
        start_join: list(v, "start_join"),
        retry_join: list(v, "retry_join"),
        retry_interval: get_dur(v, "retry_interval").unwrap_or(Duration::from_secs(30)),
        retry_max: get_u32(v, "retry_max").unwrap_or(0),
        http_max_conns_per_client: get_u32(v, "limits.http_max_conns_per_client").unwrap_or(200),
        encrypt,
        tls: crate::net::tls::TlsSettings {
            ca_file: get_str(v, "ca_file").map(PathBuf::from),
            cert_file: get_str(v, "cert_file").map(PathBuf::from),
            key_file: get_str(v, "key_file").map(PathBuf::from),
            verify_incoming: get(v, "verify_incoming")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            verify_outgoing: get(v, "verify_outgoing")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            verify_server_hostname: get(v, "verify_server_hostname")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        },
        encrypt_verify_incoming: get(v, "encrypt_verify_incoming")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        encrypt_verify_outgoing: get(v, "encrypt_verify_outgoing")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        log_level,
        leave_on_terminate: get(v, "leave_on_terminate")
            .and_then(Value::as_bool)
            .unwrap_or(!server),
        skip_leave_on_interrupt: get(v, "skip_leave_on_interrupt")
            .and_then(Value::as_bool)
            .unwrap_or(server),
        ports,
        gossip,
        node_meta,
        dns,
    })
}

fn list(v: &Value, key: &str) -> Vec<String> {
    get(v, key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn gossip_config(v: &Value) -> Result<GossipConfig, String> {
    let profile = get_str(v, "gossip_lan.profile").unwrap_or_else(|| "lan".into());
    let mut g = GossipConfig::profile(&profile)
        .ok_or_else(|| format!("gossip_lan.profile {profile:?}: use lan, wan or local"))?;
    let durs: [(&str, &mut Duration); 6] = [
        ("probe_interval", &mut g.probe_interval),
        ("probe_timeout", &mut g.probe_timeout),
        ("gossip_interval", &mut g.gossip_interval),
        ("push_pull_interval", &mut g.push_pull_interval),
        ("gossip_to_the_dead_time", &mut g.gossip_to_the_dead_time),
        ("reconnect_interval", &mut g.reconnect_interval),
    ];
    for (k, slot) in durs {
        if let Some(d) = get_dur(v, &format!("gossip_lan.{k}")) {
            *slot = d;
        }
    }
    if let Some(n) = get_u32(v, "gossip_lan.gossip_nodes") {
        g.gossip_nodes = n as usize;
    }
    if let Some(n) = get_u32(v, "gossip_lan.retransmit_mult") {
        g.retransmit_mult = n;
    }
    if let Some(n) = get_u32(v, "gossip_lan.suspicion_mult") {
        g.suspicion_mult = n;
    }
    if let Some(d) = get_dur(v, "reconnect_timeout") {
        g.reconnect_timeout = d;
    }
    g.validate().map_err(|e| format!("gossip_lan: {e}"))?;
    Ok(g)
}

/// The machine's host name (the default node name).
pub fn hostname() -> Result<String, String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err("cannot read the host name; pass -node".into());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec()).map_err(|_| "host name is not UTF-8; pass -node".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::flags;

    fn load_args(a: &[&str]) -> Result<Config, String> {
        let args: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        load(&flags::parse(&args, &agent_flags())?)
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("murmur-cfg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn seed_page_command_line() {
        let c = load_args(&[
            "-server",
            "-bootstrap-expect",
            "1",
            "-data-dir",
            "/tmp/murmur",
            "-node=agent-one",
            "-bind=127.0.0.10",
        ])
        .unwrap();
        assert!(c.server);
        assert_eq!(c.bootstrap_expect, 1);
        assert_eq!(c.node_name, "agent-one");
        assert_eq!(c.bind_addr, "127.0.0.10".parse::<IpAddr>().unwrap());
        assert_eq!(c.ports.serf_lan, 8301);
        assert_eq!(c.datacenter, "dc1");
        assert!(
            c.skip_leave_on_interrupt && !c.leave_on_terminate,
            "server leave defaults"
        );
    }

    #[test]
    fn validation_errors_are_clear() {
        let e = load_args(&["-bootstrap-expect=1", "-data-dir=/tmp/x"]).unwrap_err();
        assert!(e.contains("requires server mode"), "{e}");
        let e = load_args(&["-node=a"]).unwrap_err();
        assert!(e.contains("data_dir is required"), "{e}");
        let e = load_args(&["-dev", "-http-port=http"]).unwrap_err();
        assert!(e.contains("-http-port"), "{e}");
        let e = load_args(&["-dev", "-encrypt=abc"]).unwrap_err();
        assert!(e.contains("encrypt"), "{e}");
        let dev = load_args(&["-dev"]).unwrap();
        assert!(dev.server && dev.data_dir.is_none());
        assert_eq!(dev.bind_addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn files_merge_in_order_and_flags_win() {
        let d = tmpdir("merge");
        std::fs::write(
            d.join("a.json"),
            r#"{"datacenter": "east", "retry_join": ["127.0.0.2"], "ports": {"http": 8501}}"#,
        )
        .unwrap();
        std::fs::write(
            d.join("b.hcl"),
            "retry_join = [\"127.0.0.3\"]\nports { dns = 8601 }\ngossip_lan { profile = \"local\" }\n",
        )
        .unwrap();
        std::fs::write(d.join("ignored.txt"), "not config").unwrap();
        let c = load_args(&[
            "-dev",
            "-config-dir",
            d.to_str().unwrap(),
            "-http-port=9000",
        ])
        .unwrap();
        assert_eq!(c.datacenter, "east");
        assert_eq!(c.retry_join, ["127.0.0.2", "127.0.0.3"]);
        assert_eq!(c.ports.http, 9000);
        assert_eq!(c.ports.dns, 8601);
        assert_eq!(c.gossip, GossipConfig::local());
        assert_eq!(c.dns.domain, "consul.");
        assert_eq!(c.dns.datacenter, "east");
        assert_eq!(c.dns.udp_answer_limit, 3);
        let c = load_args(&[
            "-dev",
            "-node-meta=rack:r1",
            "-domain=Example",
            "-recursor=127.0.0.53",
        ])
        .unwrap();
        assert_eq!(c.node_meta, [("rack".to_string(), "r1".to_string())]);
        assert_eq!(c.dns.domain, "example.");
        assert_eq!(c.dns.recursors, ["127.0.0.53:53".parse().unwrap()]);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_file_and_key() {
        let d = tmpdir("bad");
        let f = d.join("x.json");
        std::fs::write(&f, r#"{"ports": {"htp": 1}}"#).unwrap();
        let e = load_args(&["-dev", "-config-file", f.to_str().unwrap()]).unwrap_err();
        assert!(e.contains("x.json") && e.contains("ports.htp"), "{e}");
        let h = d.join("y.hcl");
        std::fs::write(&h, "ports { http = \"abc\" }").unwrap();
        let e = load_args(&["-dev", "-config-file", h.to_str().unwrap()]).unwrap_err();
        assert!(
            e.contains("y.hcl") && e.contains("ports.http") && e.contains("port number"),
            "{e}"
        );
        std::fs::write(&f, "{not json").unwrap();
        let e = load_args(&["-dev", "-config-file", f.to_str().unwrap()]).unwrap_err();
        assert!(e.contains("Error parsing") && e.contains("x.json"), "{e}");
        std::fs::write(&f, r#"{"gossip_lan": {"probe_interval": "fast"}}"#).unwrap();
        let e = load_args(&["-dev", "-config-file", f.to_str().unwrap()]).unwrap_err();
        assert!(e.contains("gossip_lan.probe_interval"), "{e}");
    }
}
