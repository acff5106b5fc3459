//! How a check decides its status — TTL, HTTP, TCP, UDP, gRPC, script (`args`) or alias — read from a
//! definition's normalized fields with Consul's defaults and limits, and written back in Consul's
//! spelling for the data dir.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::definitions::{DefinitionError, err, string};
use crate::util::duration;

/// Shortest interval a check runs at; shorter ones are raised to it, as Consul does.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Timeout of network checks that name none (Consul's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of script checks that name none (Consul's default).
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP check's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    /// URL (http or https).
    pub url: String,
    /// Method (GET unless given).
    pub method: String,
    /// Extra headers, each with its values.
    pub header: BTreeMap<String, Vec<String>>,
    /// Request body.
    pub body: String,
    /// Skip certificate verification for https.
    pub tls_skip_verify: bool,
    /// Do not follow redirects.
    pub disable_redirects: bool,
}

/// How a check's status is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// The application reports; critical once `ttl` passes without a report.
    Ttl(Duration),
    /// An HTTP request: 2xx passing, 429 warning, anything else critical.
    Http(HttpProbe),
    /// A TCP connect to `host:port`.
    Tcp(String),
    /// A UDP datagram to `host:port`: passing unless the port is refused.
    Udp(String),
    /// The standard gRPC health protocol against `host:port[/service]`.
    Grpc {
        /// `host:port`, optionally `/service`.
        target: String,
        /// Connect with TLS.
        tls: bool,
        /// Skip certificate verification.
        tls_skip_verify: bool,
    },
    /// A command: exit 0 passing, 1 warning, anything else critical.
    Script(Vec<String>),
    /// Maintenance mode (`/v1/agent/maintenance`, `murmur maint`): critical while it exists.
    Maintenance,
    /// Mirrors the health of another service (on `node`, or on this agent).
    Alias {
        /// Node of the aliased service (this agent's when absent).
        node: Option<String>,
        /// Service ID.
        service: String,
    },
}

impl CheckKind {
    /// Consul's `Type` for the check.
    pub fn type_name(&self) -> &'static str {
        match self {
            CheckKind::Ttl(_) => "ttl",
            CheckKind::Http(_) => "http",
            CheckKind::Tcp(_) => "tcp",
            CheckKind::Udp(_) => "udp",
            CheckKind::Grpc { .. } => "grpc",
            CheckKind::Script(_) => "script",
            CheckKind::Alias { .. } => "alias",
            CheckKind::Maintenance => "maintenance",
        }
    }

    /// True for kinds the agent runs on an interval.
    pub fn runs_on_interval(&self) -> bool {
        !matches!(
            self,
            CheckKind::Ttl(_) | CheckKind::Alias { .. } | CheckKind::Maintenance
        )
    }
}

/// When and for how long an interval check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Schedule {
    /// Time between runs (zero for TTL and alias checks).
    pub interval: Duration,
    /// Longest a run may take.
    pub timeout: Duration,
}

fn boolean(f: &BTreeMap<String, Value>, k: &str) -> Result<bool, DefinitionError> {
    match f.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => err(format!("{k}: expected a boolean, got {other}")),
    }
}

/// A duration field: Consul's strings ("10s") or a number of nanoseconds, as Go's decoder takes.
pub fn duration_of(
    f: &BTreeMap<String, Value>,
    k: &str,
) -> Result<Option<Duration>, DefinitionError> {
    match f.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => duration::parse(s).map(Some).map_err(DefinitionError),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|ns| Some(Duration::from_nanos(ns)))
            .ok_or_else(|| DefinitionError(format!("{k}: expected a duration, got {n}"))),
        Some(other) => err(format!("{k}: expected a duration, got {other}")),
    }
}

fn headers(v: Option<&Value>) -> Result<BTreeMap<String, Vec<String>>, DefinitionError> {
    let bad = || DefinitionError("header: expected an object of string lists".into());
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| {
                let values = match v {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(bad)?,
                    _ => return Err(bad()),
                };
                Ok((k.clone(), values))
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// The kind and schedule a definition's normalized fields describe, with Consul's defaults and errors.
pub fn parse(f: &BTreeMap<String, Value>) -> Result<(CheckKind, Schedule), DefinitionError> {
    const UNSUPPORTED: &[&str] = &["h2ping", "dockercontainerid", "oscservice", "shell"];
    if let Some(k) = f.keys().find(|k| UNSUPPORTED.contains(&k.as_str())) {
        return err(format!(
            "{} checks are not supported by murmur yet",
            k.to_ascii_uppercase()
        ));
    }
    let interval = duration_of(f, "interval")?.filter(|i| !i.is_zero());
    // Consul: a timeout of zero (or none) means the kind's default.
    let timeout = duration_of(f, "timeout")?.filter(|t| !t.is_zero());
    let scheduled = |default_timeout: Duration| -> Result<Schedule, DefinitionError> {
        match interval {
            Some(i) => Ok(Schedule {
                interval: i.max(MIN_INTERVAL),
                timeout: timeout.unwrap_or(default_timeout),
            }),
            None => err(
                "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks",
            ),
        }
    };
    let args = match f.get("args").or(f.get("scriptargs")) {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|x| x.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| DefinitionError("args: expected a list of strings".into()))?,
        ),
        Some(other) => return err(format!("args: expected a list of strings, got {other}")),
    };
    if let Some(ttl) = duration_of(f, "ttl")? {
        if interval.is_some() {
            return err("Invalid check: Interval and TTL cannot both be specified");
        }
        if ttl.is_zero() {
            return err("Invalid check: TTL must be > 0 for TTL checks");
        }
        return Ok((CheckKind::Ttl(ttl), Schedule::default()));
    }
    if let Some(url) = string(f, "http")? {
        let probe = HttpProbe {
            url,
            method: string(f, "method")?
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "GET".into()),
            header: headers(f.get("header"))?,
            body: string(f, "body")?.unwrap_or_default(),
            tls_skip_verify: boolean(f, "tlsskipverify")?,
            disable_redirects: boolean(f, "disableredirects")?,
        };
        return Ok((CheckKind::Http(probe), scheduled(DEFAULT_TIMEOUT)?));
    }
    if let Some(addr) = string(f, "tcp")? {
        return Ok((CheckKind::Tcp(addr), scheduled(DEFAULT_TIMEOUT)?));
    }
    if let Some(addr) = string(f, "udp")? {
        return Ok((CheckKind::Udp(addr), scheduled(DEFAULT_TIMEOUT)?));
    }
    if let Some(target) = string(f, "grpc")? {
        let kind = CheckKind::Grpc {
            target,
            tls: boolean(f, "grpcusetls")?,
            tls_skip_verify: boolean(f, "tlsskipverify")?,
        };
        return Ok((kind, scheduled(DEFAULT_TIMEOUT)?));
    }
    if let Some(args) = args {
        return Ok((CheckKind::Script(args), scheduled(DEFAULT_SCRIPT_TIMEOUT)?));
    }
    if let Some(service) = string(f, "aliasservice")? {
        if interval.is_some() {
            return err("Invalid check: Interval cannot be set for Alias checks");
        }
        let node = string(f, "aliasnode")?.filter(|n| !n.is_empty());
        return Ok((CheckKind::Alias { node, service }, Schedule::default()));
    }
    // Consul validates a definition naming no kind as a TTL check without a TTL.
    err("Invalid check: TTL must be > 0 for TTL checks")
}

fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// The kind's fields in Consul's spelling, as the data dir keeps them (and [`parse`] reads back).
pub fn to_json(kind: &CheckKind, s: Schedule) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    if !s.interval.is_zero() {
        put("Interval", json!(go_duration(s.interval)));
        put("Timeout", json!(go_duration(s.timeout)));
    }
    match kind {
        CheckKind::Ttl(ttl) => put("TTL", json!(go_duration(*ttl))),
        CheckKind::Http(p) => {
            put("HTTP", json!(p.url));
            put("Method", json!(p.method));
            put("Header", json!(p.header));
            put("Body", json!(p.body));
            put("TLSSkipVerify", json!(p.tls_skip_verify));
            put("DisableRedirects", json!(p.disable_redirects));
        }
        CheckKind::Tcp(a) => put("TCP", json!(a)),
        CheckKind::Udp(a) => put("UDP", json!(a)),
        CheckKind::Grpc {
            target,
            tls,
            tls_skip_verify,
        } => {
            put("GRPC", json!(target));
            put("GRPCUseTLS", json!(tls));
            put("TLSSkipVerify", json!(tls_skip_verify));
        }
        CheckKind::Script(args) => put("Args", json!(args)),
        CheckKind::Alias { node, service } => {
            put("AliasService", json!(service));
            if let Some(n) = node {
                put("AliasNode", json!(n));
            }
        }
        // Kept in the data dir's maintenance file, never as a check definition.
        CheckKind::Maintenance => {}
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: Value) -> BTreeMap<String, Value> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase().replace('_', ""), v.clone()))
            .collect()
    }

    #[test]
    fn kinds_defaults_and_consul_errors() {
        let (k, s) = parse(&fields(
            json!({"http": "http://127.0.0.1/health", "interval": "500ms"}),
        ))
        .unwrap();
        let CheckKind::Http(p) = &k else { panic!() };
        assert_eq!(p.method, "GET");
        assert_eq!(s.interval, MIN_INTERVAL, "raised to the minimum");
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        let (k, s) = parse(&fields(json!({"args": ["/bin/true"], "interval": "5s"}))).unwrap();
        assert_eq!(k, CheckKind::Script(vec!["/bin/true".into()]));
        assert_eq!(s.timeout, DEFAULT_SCRIPT_TIMEOUT);
        let (k, _) = parse(&fields(json!({"alias_service": "web"}))).unwrap();
        assert_eq!(
            k,
            CheckKind::Alias {
                node: None,
                service: "web".into()
            }
        );
        let e = |v| parse(&fields(v)).unwrap_err().0;
        assert_eq!(
            e(json!({"tcp": "127.0.0.1:1"})),
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"
        );
        assert_eq!(
            e(json!({"name": "x"})),
            "Invalid check: TTL must be > 0 for TTL checks"
        );
        assert_eq!(
            e(json!({"ttl": "5s", "interval": "5s"})),
            "Invalid check: Interval and TTL cannot both be specified"
        );
        assert_eq!(
            e(json!({"alias_service": "web", "interval": "5s"})),
            "Invalid check: Interval cannot be set for Alias checks"
        );
        assert!(
            e(json!({"h2ping": "x", "interval": "1s"})).contains("not supported by murmur yet")
        );
        assert_eq!(
            e(json!({"ttl": "0s"})),
            "Invalid check: TTL must be > 0 for TTL checks"
        );
        // What the data dir keeps reads back the same.
        for v in [
            json!({"http": "https://x/h", "method": "POST", "header": {"A": ["1", "2"]}, "body": "b",
                   "tls_skip_verify": true, "interval": "10s", "timeout": "2s"}),
            json!({"grpc": "127.0.0.1:9/svc", "grpc_use_tls": true, "interval": "3s"}),
            json!({"udp": "127.0.0.1:53", "interval": "3s"}),
            json!({"alias_node": "n", "alias_service": "web"}),
        ] {
            let (k, s) = parse(&fields(v)).unwrap();
            let back = Value::Object(to_json(&k, s));
            assert_eq!(parse(&fields(back)).unwrap(), (k, s));
        }
    }
}
