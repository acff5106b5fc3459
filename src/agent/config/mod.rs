//! Agent configuration: defaults, then config files (JSON/HCL, in command-line order, directories
//! alphabetically), then flags. Every setting is declared once (`settings.rs`): files are checked against
//! it, so a mistake names its file and key, and the flag table derives from it. The merged result is
//! read as typed sections (`sections.rs`) and applied onto each subsystem's own defaults.

mod sections;
mod settings;
mod sources;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use murmur_gossip::GossipConfig;
use serde_json::{Map, Value};

use crate::util::duration::Dur;
use crate::util::flags::Parsed;

pub use self::settings::agent_flags;
pub use self::sources::read_file;

/// Defaults that belong to no subsystem's own config type (Consul's values); the others are
/// `Ports::default()`, `DnsConfig::default()` and `GossipConfig::lan()`.
mod defaults {
    use std::time::Duration;

    pub const DATACENTER: &str = "dc1";
    pub const LOG_LEVEL: &str = "info";
    pub const RETRY_INTERVAL: Duration = Duration::from_secs(30);
    pub const HTTP_MAX_CONNS_PER_CLIENT: u32 = 200;
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

/// Consul's default WAN gossip port (`ports.serf_wan`).
pub const DEFAULT_SERF_WAN_PORT: u16 = 8302;

/// A server's WAN pool: its gossip with the servers of every datacenter.
#[derive(Debug, Clone)]
pub struct WanSettings {
    /// Gossip port (`ports.serf_wan`, `-serf-wan-port`).
    pub port: u16,
    /// Address advertised to the pool (`advertise_addr_wan`; the LAN advertise address when unset).
    pub advertise: Option<IpAddr>,
    /// Joined at start (`start_join_wan`, `-join-wan`); failure is fatal.
    pub start_join: Vec<String>,
    /// Joined at start with retries (`retry_join_wan`, `-retry-join-wan`).
    pub retry_join: Vec<String>,
    /// Ceiling of the join retry backoff.
    pub retry_interval: Duration,
    /// Join attempts before giving up (0 = forever).
    pub retry_max: u32,
    /// Gossip tuning (`gossip_wan`, the `wan` profile by default).
    pub gossip: GossipConfig,
}

/// Consul's default `check_update_interval`.
pub const DEFAULT_CHECK_UPDATE_INTERVAL: Duration = Duration::from_secs(300);

/// Replicated-log tuning (Consul's defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftSettings {
    /// Entries between snapshots (`raft_snapshot_threshold`, 16384).
    pub snapshot_threshold: u64,
    /// Entries kept behind a snapshot (`raft_trailing_logs`, 10240).
    pub trailing_logs: u64,
    /// Consul's `autopilot` settings.
    pub autopilot: crate::state::autopilot::AutopilotConfig,
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
    /// Bootstrap the replicated log alone (`-bootstrap`, and `-dev`).
    pub bootstrap: bool,
    /// Replicated-log tuning.
    pub raft: RaftSettings,
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
    /// Log as JSON lines (`log_json`, `-log-json`).
    pub log_json: bool,
    /// Also log to a rotated file (`log_file`, `-log-file` and the `log_rotate_*` settings).
    pub log_file: Option<crate::util::log_file::LogFileSettings>,
    /// Leave gracefully on SIGTERM.
    pub leave_on_terminate: bool,
    /// Which script checks may be registered.
    pub scripts: crate::state::local_services::ScriptPolicy,
    /// How long a change of check output alone may wait before it is published.
    pub check_update_interval: Duration,
    /// Exit without leaving on SIGINT.
    pub skip_leave_on_interrupt: bool,
    /// Ports.
    pub ports: Ports,
    /// Gossip tuning.
    pub gossip: GossipConfig,
    /// The WAN pool, on a server whose `ports.serf_wan` is not -1.
    pub wan: Option<WanSettings>,
    /// Metric names' prefix (`telemetry { metrics_prefix }`; Consul's is `consul`).
    pub metrics_prefix: String,
    /// The web UI (`ui_config`, `-ui`).
    pub ui: crate::http::ui::UiSettings,
    /// Node metadata, served in the catalog and as DNS TXT records.
    pub node_meta: Vec<(String, String)>,
    /// DNS settings (`domain`, `recursors`, `dns_config`).
    pub dns: crate::dns::DnsConfig,
    /// Services defined in config files (`service`, `services`).
    pub services: Vec<crate::state::definitions::ServiceDef>,
    /// Checks defined in config files, the services' own included.
    pub checks: Vec<crate::state::definitions::CheckDef>,
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
            "config-file" => sources::merge(&mut merged, read_file(Path::new(value))?),
            "config-dir" => {
                for f in sources::dir_files(Path::new(value))? {
                    sources::merge(&mut merged, read_file(&f)?);
                }
            }
            _ => {}
        }
    }
    let mut from_flags = Value::Object(Map::new());
    for (name, value) in &p.flags {
        let Some(setting) = settings::by_flag(name) else {
            continue;
        };
        let v = settings::coerce(setting.kind, value)
            .map_err(|e| format!("invalid value for -{name}: {e}"))?;
        sources::set_path(&mut from_flags, setting.key, v);
    }
    for kv in p.all("node-meta") {
        let (k, v) = kv
            .split_once(':')
            .ok_or_else(|| format!("invalid value for -node-meta: {kv:?} (want key:value)"))?;
        sources::set_path(
            &mut from_flags,
            &format!("node_meta.{k}"),
            Value::String(v.to_owned()),
        );
    }
    sources::merge(&mut merged, from_flags);
    // Checked against the settings already, so only a value out of a type's range can fail here.
    let file: sections::File =
        serde_json::from_value(merged).map_err(|e| format!("configuration: {e}"))?;
    build(file, dev)
}

fn ip(key: &str, given: Option<String>) -> Result<Option<IpAddr>, String> {
    match given {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("{key}: {s:?} is not an IP address")),
    }
}

fn log_level(given: &str) -> Result<tracing::Level, String> {
    crate::util::log_tap::parse_level(given).ok_or_else(|| {
        format!(
            "log_level {:?}: use trace, debug, info, warn or error",
            given.to_ascii_lowercase()
        )
    })
}

/// The WAN pool's settings: `None` on a client, or with `ports.serf_wan = -1`.
fn wan_settings(
    f: &sections::File,
    server: bool,
    coordinates: bool,
) -> Result<Option<WanSettings>, String> {
    if !server {
        if !f.start_join_wan.is_empty() || !f.retry_join_wan.is_empty() {
            return Err(
                "start_join_wan / retry_join_wan (-join-wan, -retry-join-wan) require server mode \
                 (-server): only servers gossip across datacenters"
                    .into(),
            );
        }
        return Ok(None);
    }
    let port = match f.ports.serf_wan {
        Some(-1) => return Ok(None),
        Some(p) => u16::try_from(p)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("ports.serf_wan: {p} is not a port (1-65535) or -1"))?,
        None => DEFAULT_SERF_WAN_PORT,
    };
    let mut gossip = f.gossip_wan.build("gossip_wan", "wan")?;
    if let Some(Dur(d)) = f.reconnect_timeout_wan {
        gossip.reconnect_timeout = d;
    }
    gossip.coordinates = coordinates;
    // Whatever the timings, a WAN pool orders datacenters by its servers' coordinates.
    gossip.peer_coordinates = gossip
        .peer_coordinates
        .max(GossipConfig::wan().peer_coordinates);
    gossip.validate().map_err(|e| format!("gossip_wan: {e}"))?;
    Ok(Some(WanSettings {
        port,
        advertise: ip("advertise_addr_wan", f.advertise_addr_wan.clone())?,
        start_join: f.start_join_wan.clone(),
        retry_join: f.retry_join_wan.clone(),
        retry_interval: f
            .retry_interval_wan
            .map_or(defaults::RETRY_INTERVAL, |d| d.0),
        retry_max: f.retry_max_wan.unwrap_or(0),
        gossip,
    }))
}

fn build(f: sections::File, dev: bool) -> Result<Config, String> {
    let server = f.server.unwrap_or(dev);
    let bootstrap_expect = f.bootstrap_expect.unwrap_or(0);
    if bootstrap_expect > 0 && !server {
        return Err("bootstrap_expect (-bootstrap-expect) requires server mode (-server)".into());
    }
    if bootstrap_expect > 0 && dev {
        return Err("bootstrap_expect (-bootstrap-expect) is not allowed in -dev mode".into());
    }
    let bootstrap = f.bootstrap.unwrap_or(false);
    if bootstrap && !server {
        return Err("bootstrap (-bootstrap) requires server mode (-server)".into());
    }
    if bootstrap && bootstrap_expect > 0 {
        return Err(
            "bootstrap (-bootstrap) and bootstrap_expect (-bootstrap-expect) are mutually exclusive"
                .into(),
        );
    }
    let wan = wan_settings(&f, server, !f.disable_coordinates.unwrap_or(false))?;
    let metrics_prefix = f
        .telemetry
        .metrics_prefix
        .clone()
        .unwrap_or_else(|| "murmur".into());
    let valid_prefix = metrics_prefix
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && metrics_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_prefix {
        return Err(format!(
            "telemetry.metrics_prefix {metrics_prefix:?}: letters, digits and '_', not starting with a digit"
        ));
    }
    if f.telemetry.disable_hostname == Some(false) {
        return Err(
            "telemetry.disable_hostname = false: murmur never puts the host name into metric names \
             (Prometheus labels each target itself); leave the key out or set it true"
                .into(),
        );
    }
    let node_name = match f.node_name {
        Some(n) => n,
        None => hostname()?,
    };
    if !murmur_gossip::wire::valid_name(&node_name) || node_name.chars().any(char::is_whitespace) {
        return Err(format!(
            "node_name {node_name:?} must be 1-255 bytes without spaces"
        ));
    }
    let datacenter = f.datacenter.unwrap_or_else(|| defaults::DATACENTER.into());
    if datacenter.is_empty()
        || !datacenter
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(format!(
            "datacenter {datacenter:?} may only contain lower-case letters, digits, '-' and '_'"
        ));
    }
    let data_dir = f.data_dir.map(PathBuf::from);
    if data_dir.is_none() && !dev {
        return Err("data_dir is required: pass -data-dir=<path> (or use -dev)".into());
    }
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let default_bind = if dev {
        loopback
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let bind_addr = ip("bind_addr", f.bind_addr)?.unwrap_or(default_bind);
    let advertise_addr = ip("advertise_addr", f.advertise_addr)?;
    let client_addr = ip("client_addr", f.client_addr)?.unwrap_or(loopback);
    let encrypt = f
        .encrypt
        .map(|k| crate::net::crypto::parse_key(&k).map_err(|e| format!("encrypt: {e}")))
        .transpose()?;
    let log_level = log_level(f.log_level.as_deref().unwrap_or(defaults::LOG_LEVEL))?;
    let d = Ports::default();
    let ports = Ports {
        http: f.ports.http.unwrap_or(d.http),
        dns: f.ports.dns.unwrap_or(d.dns),
        serf_lan: f.ports.serf_lan.unwrap_or(d.serf_lan),
        server: f.ports.server.unwrap_or(d.server),
    };
    let mut gossip = f.gossip_lan.build("gossip_lan", "lan")?;
    if let Some(Dur(d)) = f.reconnect_timeout {
        gossip.reconnect_timeout = d;
    }
    gossip.coordinates = !f.disable_coordinates.unwrap_or(false);
    gossip.validate().map_err(|e| format!("gossip_lan: {e}"))?;
    let node_meta: Vec<(String, String)> = f.node_meta.into_iter().collect();
    if node_meta.len() > 64
        || node_meta
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > 128 || v.len() > 253)
    {
        return Err("node_meta: at most 64 keys, keys 1-128 bytes, values up to 253 bytes".into());
    }
    let mut dns = crate::dns::DnsConfig::default();
    let mut domain = f.domain.unwrap_or(dns.domain).to_ascii_lowercase();
    if !domain.ends_with('.') {
        domain.push('.');
    }
    if domain.len() < 2 || domain.starts_with('.') || domain.contains("..") {
        return Err(format!("domain {domain:?} is not a valid DNS domain"));
    }
    dns.domain = domain;
    dns.datacenter = datacenter.clone();
    dns.recursors = f
        .recursors
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
    f.dns_config.apply(&mut dns);
    let (mut services, mut checks) = (Vec::new(), Vec::new());
    for (key, given) in [
        ("service", &f.service),
        ("services", &f.services),
        ("check", &f.check),
        ("checks", &f.checks),
    ] {
        if let Some(v) = given {
            let (s, c) = crate::state::definitions::from_config(key, v)
                .map_err(|e| format!("key {key:?}: {e}"))?;
            services.extend(s);
            checks.extend(c);
        }
    }
    Ok(Config {
        node_name,
        datacenter,
        data_dir,
        bind_addr,
        advertise_addr,
        client_addr,
        server,
        bootstrap_expect,
        bootstrap: bootstrap || dev,
        raft: RaftSettings {
            snapshot_threshold: f.raft_snapshot_threshold.map_or(16384, u64::from),
            trailing_logs: f.raft_trailing_logs.map_or(10240, u64::from),
            autopilot: {
                let a = &f.autopilot;
                let d = crate::state::autopilot::AutopilotConfig::default();
                crate::state::autopilot::AutopilotConfig {
                    cleanup_dead_servers: a.cleanup_dead_servers.unwrap_or(d.cleanup_dead_servers),
                    last_contact_threshold: a
                        .last_contact_threshold
                        .map_or(d.last_contact_threshold, |t| t.0),
                    max_trailing_logs: a.max_trailing_logs.map_or(d.max_trailing_logs, u64::from),
                    min_quorum: a.min_quorum.map_or(d.min_quorum, u64::from),
                    server_stabilization_time: a
                        .server_stabilization_time
                        .map_or(d.server_stabilization_time, |t| t.0),
                }
            },
        },
        dev,
        start_join: f.start_join,
        retry_join: f.retry_join,
        retry_interval: f.retry_interval.map_or(defaults::RETRY_INTERVAL, |d| d.0),
        retry_max: f.retry_max.unwrap_or(0),
        http_max_conns_per_client: f
            .limits
            .http_max_conns_per_client
            .unwrap_or(defaults::HTTP_MAX_CONNS_PER_CLIENT),
        encrypt,
        tls: crate::net::tls::TlsSettings {
            ca_file: f.ca_file.map(PathBuf::from),
            cert_file: f.cert_file.map(PathBuf::from),
            key_file: f.key_file.map(PathBuf::from),
            verify_incoming: f.verify_incoming.unwrap_or(false),
            verify_outgoing: f.verify_outgoing.unwrap_or(false),
            verify_server_hostname: f.verify_server_hostname.unwrap_or(false),
        },
        encrypt_verify_incoming: f.encrypt_verify_incoming.unwrap_or(true),
        encrypt_verify_outgoing: f.encrypt_verify_outgoing.unwrap_or(true),
        log_level,
        log_json: f.log_json.unwrap_or(false),
        log_file: f.log_file.as_deref().map(|path| {
            use crate::util::log_file::{DEFAULT_EVERY, Keep, LogFileSettings};
            let mut s = LogFileSettings::new(path);
            s.max_bytes = f.log_rotate_bytes.unwrap_or(0);
            s.every = match f.log_rotate_duration {
                Some(Dur(d)) if !d.is_zero() => d,
                _ => DEFAULT_EVERY,
            };
            s.keep = Keep::from_setting(f.log_rotate_max_files.unwrap_or(0));
            s
        }),
        // Consul: servers stay on SIGINT and clients leave; SIGTERM the other way round.
        leave_on_terminate: f.leave_on_terminate.unwrap_or(!server),
        scripts: crate::state::local_services::ScriptPolicy {
            any: f.enable_script_checks.unwrap_or(false),
            local: f.enable_local_script_checks.unwrap_or(false),
        },
        check_update_interval: f
            .check_update_interval
            .map_or(DEFAULT_CHECK_UPDATE_INTERVAL, |Dur(d)| d),
        skip_leave_on_interrupt: f.skip_leave_on_interrupt.unwrap_or(server),
        ports,
        gossip,
        wan,
        metrics_prefix,
        ui: crate::http::ui::UiSettings {
            enabled: f.ui_config.enabled.or(f.ui).unwrap_or(dev),
            content_path: crate::http::ui::content_path(
                f.ui_config.content_path.as_deref().unwrap_or(""),
            )?,
        },
        node_meta,
        dns,
        services,
        checks,
    })
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
    fn every_declared_setting_has_a_typed_home() {
        use settings::{Kind, SETTINGS};
        for s in SETTINGS {
            let sample = match s.kind {
                Kind::Str => serde_json::json!("x"),
                Kind::Bool => serde_json::json!(true),
                Kind::Port => serde_json::json!(8000),
                Kind::PortOrOff => serde_json::json!(-1),
                Kind::Count => serde_json::json!(3),
                Kind::Int => serde_json::json!(-1),
                Kind::Dur => serde_json::json!("5s"),
                Kind::DurMap => serde_json::json!({"*": "5s", "web": "30s"}),
                Kind::List => serde_json::json!(["a"]),
                Kind::StrMap => serde_json::json!({"k": "v"}),
                Kind::Definitions => serde_json::json!({"name": "web"}),
            };
            let mut v = Value::Object(Map::new());
            sources::set_path(&mut v, s.key, sample);
            // The sections refuse fields they do not have, so a declared key without a field fails.
            serde_json::from_value::<sections::File>(v)
                .unwrap_or_else(|e| panic!("{}: {e}", s.key));
        }
    }

    #[test]
    fn definitions_accumulate_across_files() {
        let d = tmpdir("defs");
        std::fs::write(
            d.join("a.json"),
            r#"{"service": {"name": "web", "port": 80}}"#,
        )
        .unwrap();
        std::fs::write(
            d.join("b.hcl"),
            "service {\n  name = \"db\"\n}\nchecks = [{ name = \"disk\", ttl = \"1m\" }]\n",
        )
        .unwrap();
        let c = load_args(&["-dev", "-config-dir", d.to_str().unwrap()]).unwrap();
        let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["web", "db"], "each file's service stands alone");
        assert_eq!(c.services[0].port, 80);
        assert_eq!(c.checks.len(), 1);
        assert_eq!(c.checks[0].id, "disk");
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
            "retry_join = [\"127.0.0.3\"]\nports { dns = 8601 }\ngossip_lan { profile = \"local\" }\n\
             gossip_wan { ring_monitors = false }\n\
             dns_config {\n  service_ttl = {\n    \"*\" = \"5s\"\n    web = \"30s\"\n  }\n}\n",
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
        assert!(
            c.gossip.ring_monitors,
            "ring monitoring is on unless turned off"
        );
        assert!(
            !c.wan
                .as_ref()
                .expect("-dev is a server")
                .gossip
                .ring_monitors
        );
        assert_eq!(c.dns.domain, "consul.");
        assert_eq!(c.dns.datacenter, "east");
        assert_eq!(c.dns.udp_answer_limit, 3);
        // Consul's service_ttl map, from HCL.
        assert_eq!(c.dns.service_ttl.of("web"), Duration::from_secs(30));
        assert_eq!(c.dns.service_ttl.of("api"), Duration::from_secs(5));
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
    fn the_ui_is_on_in_dev_and_where_asked_for() {
        assert!(load_args(&["-dev"]).unwrap().ui.enabled);
        let c = load_args(&["-data-dir=/tmp/x"]).unwrap();
        assert!(!c.ui.enabled);
        assert_eq!(c.ui.content_path, "/ui/");
        let c = load_args(&["-data-dir=/tmp/x", "-ui", "-ui-content-path=console"]).unwrap();
        assert!(c.ui.enabled);
        assert_eq!(c.ui.content_path, "/console/");
        let d = tmpdir("ui");
        let f = d.join("ui.hcl");
        std::fs::write(&f, "ui = true\n").unwrap();
        let c = load_args(&["-data-dir=/tmp/x", "-config-file", f.to_str().unwrap()]).unwrap();
        assert!(c.ui.enabled, "Consul's older top-level key");
        std::fs::write(&f, "ui_config { enabled = false }\n").unwrap();
        assert!(
            !load_args(&["-dev", "-config-file", f.to_str().unwrap()])
                .unwrap()
                .ui
                .enabled
        );
        std::fs::write(
            &f,
            "telemetry {\n prometheus_retention_time = \"60s\"\n disable_hostname = true\n}\n",
        )
        .unwrap();
        assert!(load_args(&["-dev", "-config-file", f.to_str().unwrap()]).is_ok());
        std::fs::write(&f, "telemetry { disable_hostname = false }\n").unwrap();
        let e = load_args(&["-dev", "-config-file", f.to_str().unwrap()]).unwrap_err();
        assert!(e.contains("never puts the host name"), "{e}");
        std::fs::write(&f, "ui_config { dir = \"/srv/ui\" }\n").unwrap();
        let e = load_args(&["-dev", "-config-file", f.to_str().unwrap()]).unwrap_err();
        assert!(
            e.contains("ui_config.dir") && e.contains("does not support yet"),
            "{e}"
        );
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
