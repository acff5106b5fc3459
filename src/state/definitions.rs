//! Service and check definitions as Consul writes them: in config files (`service { name = "web" }`,
//! snake_case) and in HTTP bodies (`{"Name": "web"}`, PascalCase, matched case-insensitively as Go's
//! decoder does). Both spellings are read by one parser: a definition's own keys are compared lower-cased
//! without underscores; the keys of the user's maps inside it (`meta`, `tagged_addresses`) are data and
//! stay as written.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

/// A service as registered on this agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDef {
    /// Unique on this agent (defaults to the name).
    pub id: String,
    /// Service name.
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Address, if not the node's.
    pub address: String,
    /// Port.
    pub port: u16,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// Tagged addresses, kept as given.
    pub tagged_addresses: Map<String, Value>,
    /// Lets the catalog's tags override ours.
    pub enable_tag_override: bool,
    /// DNS SRV weights (passing, warning).
    pub weights: (u32, u32),
}

use super::check_kind::{self, duration_of};
pub use super::check_kind::{CheckKind, HttpProbe, Schedule};

/// Shortest `deregister_critical_service_after` (Consul's `check_deregister_interval_min`).
pub const DEREGISTER_MIN: Duration = Duration::from_secs(60);

/// How many results in a row move a check's status (Consul's `success_before_passing`,
/// `failures_before_warning`, `failures_before_critical`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Thresholds {
    /// Passing results in a row before the check turns passing.
    pub success_before_passing: u32,
    /// Failing results in a row before the check turns warning.
    pub failures_before_warning: u32,
    /// Failing results in a row before the check turns critical.
    pub failures_before_critical: u32,
}

/// A health check as registered on this agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckDef {
    /// Unique on this agent.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The service it belongs to, if any.
    pub service_id: Option<String>,
    /// How it runs.
    pub kind: CheckKind,
    /// Interval and timeout (interval checks).
    pub schedule: Schedule,
    /// Results in a row before the status moves.
    pub thresholds: Thresholds,
    /// Deregister the check's service once it has been critical this long.
    pub deregister_after: Option<Duration>,
    /// Status at registration (`critical` unless given, as in Consul).
    pub status: Status,
    /// Notes for humans.
    pub notes: String,
}

/// A check's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Healthy.
    Passing,
    /// Degraded.
    Warning,
    /// Unhealthy.
    Critical,
}

impl Status {
    /// Consul's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passing => "passing",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }

    /// Parses Consul's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "passing" => Some(Status::Passing),
            "warning" => Some(Status::Warning),
            "critical" => Some(Status::Critical),
            _ => None,
        }
    }
}

/// A definition murmur refuses, with Consul's wording where Consul has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError(pub String);

impl std::fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DefinitionError {}

/// A refusal with `msg`.
pub(super) fn err<T>(msg: impl Into<String>) -> Result<T, DefinitionError> {
    Err(DefinitionError(msg.into()))
}

fn norm(k: &str) -> String {
    k.chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The object's own fields under normalized keys (nested values untouched).
pub(super) fn fields(v: &Value, what: &str) -> Result<BTreeMap<String, Value>, DefinitionError> {
    let Value::Object(o) = v else {
        return err(format!("{what}: expected an object"));
    };
    let mut out = BTreeMap::new();
    for (k, v) in o {
        out.insert(norm(k), v.clone());
    }
    Ok(out)
}

/// An optional string field of normalized fields `f`.
pub(super) fn string(
    f: &BTreeMap<String, Value>,
    k: &str,
) -> Result<Option<String>, DefinitionError> {
    match f.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => err(format!("{k}: expected a string, got {other}")),
    }
}

/// Refuses the first of normalized fields `f` not in `known`, naming it as a field of `what`.
pub(super) fn only_known(
    f: &BTreeMap<String, Value>,
    known: &[&str],
    what: &str,
) -> Result<(), DefinitionError> {
    match f.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => err(format!("{what} field {k:?} is not supported by murmur yet")),
        None => Ok(()),
    }
}

/// An optional map of strings (`meta`, a node's `tagged_addresses`), `what` naming it in errors.
pub(super) fn string_map(
    v: Option<&Value>,
    what: &str,
) -> Result<BTreeMap<String, String>, DefinitionError> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect::<Option<BTreeMap<_, _>>>()
            .ok_or_else(|| DefinitionError(format!("{what}: values must be strings"))),
        Some(other) => err(format!("{what}: expected an object, got {other}")),
    }
}

/// A service definition in a config file and the checks it carries. A weight left out of `weights` is
/// 1, as Consul's config builder fills it in.
pub fn service(v: &Value) -> Result<(ServiceDef, Vec<CheckDef>), DefinitionError> {
    service_with(v, Reading::File)
}

/// A service as the agent's HTTP API (and this agent's own persisted registrations) gives it. A weight
/// left out of `weights` is 0, as Go decodes it there: `{"Weights": {"Warning": 1}}` is refused, as in
/// Consul.
pub fn api_service(v: &Value) -> Result<(ServiceDef, Vec<CheckDef>), DefinitionError> {
    service_with(v, Reading::AgentApi)
}

/// A service in a `/v1/catalog/register` body: the agent's own checks on it (tagged addresses that
/// must be IPs) are not Consul's catalog's.
pub fn catalog_service(v: &Value) -> Result<(ServiceDef, Vec<CheckDef>), DefinitionError> {
    service_with(v, Reading::Catalog)
}

/// Where a service definition comes from: Consul reads each a little differently.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reading {
    File,
    AgentApi,
    Catalog,
}

fn service_with(
    v: &Value,
    reading: Reading,
) -> Result<(ServiceDef, Vec<CheckDef>), DefinitionError> {
    let f = fields(v, "service")?;
    const KNOWN: &[&str] = &[
        "id",
        "name",
        "tags",
        "address",
        "port",
        "meta",
        "taggedaddresses",
        "enabletagoverride",
        "weights",
        "check",
        "checks",
        "kind",
    ];
    only_known(&f, KNOWN, "service")?;
    let Some(name) = string(&f, "name")?.filter(|n| !n.is_empty()) else {
        return err("Missing service name");
    };
    if string(&f, "kind")?.is_some_and(|k| !k.is_empty()) {
        return err("service kinds (Connect proxies, gateways) are not supported by murmur yet");
    }
    let id = string(&f, "id")?
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| name.clone());
    let tags = match f.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| t.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| DefinitionError("tags: expected a list of strings".into()))?,
        Some(other) => return err(format!("tags: expected a list of strings, got {other}")),
    };
    let port = match f.get("port") {
        None | Some(Value::Null) => 0,
        Some(p) => p
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| DefinitionError(format!("port: expected 0-65535, got {p}")))?,
    };
    let address = string(&f, "address")?.unwrap_or_default();
    // Consul's ipaddr.IsAny: a service cannot be reached at "any address".
    if matches!(address.as_str(), "0.0.0.0" | "::" | "[::]") {
        return err("Invalid service address");
    }
    let meta = string_map(f.get("meta"), "meta")?;
    let tagged_addresses = match f.get("taggedaddresses") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| Ok((k.clone(), service_address(k, v)?)))
            .collect::<Result<_, DefinitionError>>()?,
        Some(other) => return err(format!("tagged_addresses: expected an object, got {other}")),
    };
    let enable_tag_override = match f.get("enabletagoverride") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return err(format!(
                "enable_tag_override: expected a boolean, got {other}"
            ));
        }
    };
    let weights = match f.get("weights") {
        None | Some(Value::Null) => (1, 1),
        Some(w) => {
            let missing = if reading == Reading::AgentApi { 0 } else { 1 };
            weights(&fields(w, "weights")?, missing)?
        }
    };
    validate_meta(&meta).map_err(|e| DefinitionError(format!("Invalid Service Meta: {e}")))?;
    // The agent's own check, after the API's (as Consul orders them), then its defaults.
    let mut tagged_addresses = tagged_addresses;
    if reading != Reading::Catalog {
        ip_tagged_addresses(&tagged_addresses)?;
        default_tagged_addresses(&mut tagged_addresses, &address, port);
    }
    let def = ServiceDef {
        id: id.clone(),
        name: name.clone(),
        tags,
        address,
        port,
        meta,
        tagged_addresses,
        enable_tag_override,
        weights,
    };
    let mut raw_checks = Vec::new();
    match f.get("check") {
        None | Some(Value::Null) => {}
        Some(c) => raw_checks.push(c.clone()),
    }
    match f.get("checks") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => raw_checks.extend(a.iter().cloned()),
        Some(other) => return err(format!("checks: expected a list, got {other}")),
    }
    let many = raw_checks.len() > 1;
    let mut checks = Vec::new();
    for (i, c) in raw_checks.iter().enumerate() {
        // Consul's default IDs: "service:<id>", numbered from 1 when there are several.
        let default_id = if many {
            format!("service:{id}:{}", i + 1)
        } else {
            format!("service:{id}")
        };
        let default_name = format!("Service '{name}' check");
        checks.push(check_with(
            &fields(c, "check")?,
            Some(&id),
            (&default_id, &default_name),
            "Status for checks must 'passing', 'warning', 'critical'",
        )?);
    }
    Ok((def, checks))
}

/// A tagged address as Consul's `ServiceAddress` decodes it: `Address` and `Port` (any case, other
/// fields ignored), written back in Consul's spelling.
fn service_address(tag: &str, v: &Value) -> Result<Value, DefinitionError> {
    let Value::Object(_) = v else {
        return err(format!(
            "tagged_addresses: {tag:?}: expected an object with Address and Port, got {v}"
        ));
    };
    let f = fields(v, "tagged address")?;
    let port = match f.get("port") {
        None | Some(Value::Null) => 0,
        Some(p) => p.as_i64().ok_or_else(|| {
            DefinitionError(format!(
                "tagged_addresses: {tag:?}: port: expected a number, got {p}"
            ))
        })?,
    };
    Ok(serde_json::json!({
        "Address": string(&f, "address")?.unwrap_or_default(),
        "Port": port,
    }))
}

/// Consul's agent refuses a service whose `lan_ipv4`/`wan_ipv4` tagged address is not an IPv4
/// address, or whose `lan_ipv6` is not an IPv6 one, with these texts. Consul checks `lan_ipv6` twice
/// and `wan_ipv6` never (a slip in its code); `wan_ipv6` is checked here too. Consul answers 500, as
/// for any error from its agent; this is the caller's mistake, so it is a 400 here.
fn ip_tagged_addresses(tagged: &Map<String, Value>) -> Result<(), DefinitionError> {
    for (tag, v) in tagged {
        let want_v4 = match tag.as_str() {
            "lan_ipv4" | "wan_ipv4" => true,
            "lan_ipv6" | "wan_ipv6" => false,
            _ => continue,
        };
        if v["Address"].as_str().and_then(is_ipv4) != Some(want_v4) {
            let family = if want_v4 { "ipv4" } else { "ipv6" };
            return err(format!(
                "Service tagged address {tag:?} must be a valid {family} address"
            ));
        }
    }
    Ok(())
}

/// Whether `s` is an IPv4 address as Go's `ParseIP(s).To4()` reads it (an IPv4-mapped IPv6 address
/// is one); `None` when it is no IP at all.
fn is_ipv4(s: &str) -> Option<bool> {
    match s.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(_) => Some(true),
        std::net::IpAddr::V6(v6) => Some(v6.to_ipv4_mapped().is_some()),
    }
}

/// Consul's agent gives a service with an IP address of its own `lan_ipv4` and `wan_ipv4` tagged
/// addresses (`lan_ipv6` and `wan_ipv6` for IPv6) where it has none: that address and port.
fn default_tagged_addresses(tagged: &mut Map<String, Value>, address: &str, port: u16) {
    let tags = match is_ipv4(address) {
        Some(true) => ["lan_ipv4", "wan_ipv4"],
        Some(false) => ["lan_ipv6", "wan_ipv6"],
        None => return,
    };
    for tag in tags {
        tagged
            .entry(tag)
            .or_insert_with(|| serde_json::json!({"Address": address, "Port": port}));
    }
}

/// DNS SRV weights (passing, warning) as Consul's `ValidateWeights` allows them; a field left out is
/// `missing`.
fn weights(w: &BTreeMap<String, Value>, missing: i64) -> Result<(u32, u32), DefinitionError> {
    let get = |k: &str| match w.get(k) {
        None | Some(Value::Null) => Ok(missing),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| DefinitionError(format!("weights: {k}: expected a number, got {v}"))),
    };
    let (passing, warning) = (get("passing")?, get("warning")?);
    let why = if passing < 1 {
        "Passing must be greater than 0"
    } else if warning < 0 {
        "Warning must be greater or equal than 0"
    } else if passing > 65535 || warning > 65535 {
        "DNS Weight must be between 0 and 65535"
    } else {
        return Ok((passing as u32, warning as u32));
    };
    err(format!("Invalid Weights: {why}"))
}

/// Consul's limits on metadata: pairs per map, key and value lengths.
const META_MAX_PAIRS: usize = 64;
const META_KEY_MAX: usize = 128;
const META_VALUE_MAX: usize = 512;

/// Consul's `validateMetadata` on a service's meta, with its texts.
fn validate_meta(meta: &BTreeMap<String, String>) -> Result<(), String> {
    if meta.len() > META_MAX_PAIRS {
        // Consul says "Node" for services too.
        return Err(format!(
            "Node metadata cannot contain more than {META_MAX_PAIRS} key/value pairs"
        ));
    }
    for (k, v) in meta {
        let why = if k.is_empty() {
            "Key cannot be blank".to_owned()
        } else if !k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            "Key contains invalid characters".to_owned()
        } else if k.len() > META_KEY_MAX {
            format!("Key is too long (limit: {META_KEY_MAX} characters)")
        } else if k.starts_with("consul-") {
            "Key prefix 'consul-' is reserved for internal use".to_owned()
        } else if v.len() > META_VALUE_MAX {
            format!("Value is too long (limit: {META_VALUE_MAX} characters)")
        } else {
            continue;
        };
        return Err(format!("Couldn't load metadata pair ('{k}', '{v}'): {why}"));
    }
    Ok(())
}

/// A check definition (config file or `PUT /v1/agent/check/register`).
pub fn check(v: &Value) -> Result<CheckDef, DefinitionError> {
    let f = fields(v, "check")?;
    let Some(name) = string(&f, "name")?.filter(|n| !n.is_empty()) else {
        return err("Missing check name");
    };
    let service_id = string(&f, "serviceid")?.filter(|s| !s.is_empty());
    // A check's ID defaults to its name.
    check_with(
        &f,
        service_id.as_deref(),
        (&name, &name),
        "Bad check status",
    )
}

/// A check from its normalized fields; the default ID and name stand where it gives none, and
/// `bad_status` is Consul's text for a status it does not know (it differs by endpoint).
fn check_with(
    f: &BTreeMap<String, Value>,
    service_id: Option<&str>,
    (default_id, default_name): (&str, &str),
    bad_status: &str,
) -> Result<CheckDef, DefinitionError> {
    const KNOWN: &[&str] = &[
        "id",
        "checkid",
        "name",
        "serviceid",
        "status",
        "notes",
        "deregistercriticalserviceafter",
        "interval",
        "timeout",
        "ttl",
        "http",
        "method",
        "header",
        "body",
        "tlsskipverify",
        "disableredirects",
        "tcp",
        "udp",
        "grpc",
        "grpcusetls",
        "args",
        "scriptargs",
        "aliasservice",
        "aliasnode",
        "successbeforepassing",
        "failuresbeforewarning",
        "failuresbeforecritical",
        "h2ping",
        "dockercontainerid",
        "oscservice",
        "shell",
    ];
    only_known(f, KNOWN, "check")?;
    let (kind, schedule) = check_kind::parse(f)?;
    let count = |k: &str| -> Result<u32, DefinitionError> {
        match f.get(k) {
            None | Some(Value::Null) => Ok(0),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| DefinitionError(format!("{k}: expected a count, got {v}"))),
        }
    };
    let critical = count("failuresbeforecritical")?;
    let thresholds = Thresholds {
        success_before_passing: count("successbeforepassing")?,
        // Consul: unset, it is the same as failures_before_critical.
        failures_before_warning: match f.get("failuresbeforewarning") {
            None | Some(Value::Null) => critical,
            Some(_) => count("failuresbeforewarning")?,
        },
        failures_before_critical: critical,
    };
    if thresholds.failures_before_warning > thresholds.failures_before_critical {
        return err(
            "Invalid check: FailuresBeforeWarning can't be higher than FailuresBeforeCritical",
        );
    }
    // Consul raises shorter deregistration timeouts to its one-minute minimum.
    let deregister_after =
        duration_of(f, "deregistercriticalserviceafter")?.map(|d| d.max(DEREGISTER_MIN));
    let status = match string(f, "status")? {
        // Consul: an empty status is the default.
        None => Status::Critical,
        Some(s) if s.is_empty() => Status::Critical,
        Some(s) => Status::parse(&s).ok_or_else(|| DefinitionError(bad_status.to_owned()))?,
    };
    Ok(CheckDef {
        id: string(f, "checkid")?
            .or(string(f, "id")?)
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| default_id.to_owned()),
        name: string(f, "name")?
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| default_name.to_owned()),
        service_id: service_id.map(str::to_owned),
        kind,
        schedule,
        thresholds,
        deregister_after,
        status,
        notes: string(f, "notes")?.unwrap_or_default(),
    })
}

/// The definitions a config file's `service`, `services`, `check` and `checks` keys hold (a key may hold
/// one object or a list, as HCL's repeated blocks give).
pub fn from_config(
    key: &str,
    v: &Value,
) -> Result<(Vec<ServiceDef>, Vec<CheckDef>), DefinitionError> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let (mut services, mut checks) = (Vec::new(), Vec::new());
    for item in items {
        match key {
            "service" | "services" => {
                let (s, c) = service(item)?;
                services.push(s);
                checks.extend(c);
            }
            _ => checks.push(check(item)?),
        }
    }
    Ok((services, checks))
}

/// `def` as the JSON this agent persists and reads back with [`service`] (its checks apart).
pub fn service_json(def: &ServiceDef) -> Value {
    serde_json::json!({
        "ID": def.id,
        "Name": def.name,
        "Tags": def.tags,
        "Address": def.address,
        "Port": def.port,
        "Meta": def.meta,
        "TaggedAddresses": def.tagged_addresses,
        "EnableTagOverride": def.enable_tag_override,
        "Weights": {"Passing": def.weights.0, "Warning": def.weights.1},
    })
}

/// `def` as the JSON this agent persists and reads back with [`check`].
pub fn check_json(def: &CheckDef) -> Value {
    let mut m = check_kind::to_json(&def.kind, def.schedule);
    let t = &def.thresholds;
    for (k, v) in [
        ("CheckID", serde_json::json!(def.id)),
        ("Name", serde_json::json!(def.name)),
        ("ServiceID", serde_json::json!(def.service_id)),
        ("Status", serde_json::json!(def.status.as_str())),
        ("Notes", serde_json::json!(def.notes)),
        (
            "SuccessBeforePassing",
            serde_json::json!(t.success_before_passing),
        ),
        (
            "FailuresBeforeWarning",
            serde_json::json!(t.failures_before_warning),
        ),
        (
            "FailuresBeforeCritical",
            serde_json::json!(t.failures_before_critical),
        ),
    ] {
        m.insert(k.to_owned(), v);
    }
    if let Some(d) = def.deregister_after {
        m.insert(
            "DeregisterCriticalServiceAfter".into(),
            serde_json::json!(format!("{}ms", d.as_millis())),
        );
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_spellings_read_alike_and_user_maps_keep_their_keys() {
        let (a, ca) = service(&json!({
            "name": "web", "port": 80, "tags": ["v1"], "enable_tag_override": true,
            "meta": {"Some_Key": "x"}, "check": {"ttl": "30s"}
        }))
        .unwrap();
        let (b, cb) = service(&json!({
            "Name": "web", "Port": 80, "Tags": ["v1"], "EnableTagOverride": true,
            "Meta": {"Some_Key": "x"}, "Check": {"TTL": "30s"}
        }))
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(ca, cb);
        assert_eq!(a.id, "web", "the id defaults to the name");
        assert_eq!(a.meta["Some_Key"], "x");
        assert_eq!(ca[0].id, "service:web");
        assert_eq!(ca[0].name, "Service 'web' check");
        assert_eq!(ca[0].status, Status::Critical, "critical until it reports");
        assert_eq!(ca[0].kind, CheckKind::Ttl(Duration::from_secs(30)));
        let (_, two) =
            service(&json!({"name": "db", "checks": [{"ttl": "1s"}, {"ttl": "2s"}]})).unwrap();
        let ids: Vec<&str> = two.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["service:db:1", "service:db:2"]);
        // A definition this agent persisted reads back the same.
        assert_eq!(service(&service_json(&a)).unwrap().0, a);
        assert_eq!(check(&check_json(&ca[0])).unwrap(), ca[0]);
        let full = check(
            &json!({"name": "h", "http": "http://127.0.0.1:1/", "interval": "2s",
            "failures_before_critical": 3, "success_before_passing": 2,
            "deregister_critical_service_after": "10s"}),
        )
        .unwrap();
        assert_eq!(check(&check_json(&full)).unwrap(), full);
        assert_eq!(
            full.deregister_after,
            Some(DEREGISTER_MIN),
            "raised to the minimum"
        );
    }

    #[test]
    fn refusals_use_consul_wording_or_say_not_supported_yet() {
        let e = |v: Value| service(&v).unwrap_err().0;
        assert_eq!(e(json!({"port": 80})), "Missing service name");
        assert_eq!(
            e(json!({"name": "w", "check": {"http": "http://x"}})),
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"
        );
        assert!(
            e(json!({"name": "w", "check": {"h2ping": "x", "interval": "1s"}}))
                .contains("not supported by murmur yet")
        );
        assert!(e(json!({"name": "w", "connect": {}})).contains("not supported by murmur yet"));
        assert!(e(json!({"name": "w", "port": 70000})).contains("port"));
        assert!(e(json!({"name": "w", "check": {"ttl": "0s"}})).contains("TTL must be > 0"));
        assert_eq!(
            check(&json!({"ttl": "5s"})).unwrap_err().0,
            "Missing check name"
        );
        assert_eq!(
            check(&json!({"name": "c", "ttl": "5s", "status": "sick"}))
                .unwrap_err()
                .0,
            "Bad check status"
        );
        assert_eq!(
            e(json!({"name": "w", "checks": [{"ttl": "5s", "status": "sick"}]})),
            "Status for checks must 'passing', 'warning', 'critical'"
        );
        let fine = check(&json!({"name": "c", "ttl": "5s", "status": ""})).unwrap();
        assert_eq!(
            fine.status,
            Status::Critical,
            "an empty status is the default"
        );
        let (s, c) = from_config(
            "services",
            &json!([{"name": "a"}, {"name": "b", "check": {"ttl": "5s"}}]),
        )
        .unwrap();
        assert_eq!((s.len(), c.len()), (2, 1));
    }

    /// What Consul's AgentRegisterService validates before it registers anything, with its texts.
    #[test]
    fn addresses_weights_and_meta_are_validated_as_consul_validates_them() {
        let e = |v: Value| service(&v).unwrap_err().0;
        for any in ["0.0.0.0", "::", "[::]"] {
            assert_eq!(
                e(json!({"name": "w", "address": any})),
                "Invalid service address"
            );
        }
        assert_eq!(
            e(json!({"name": "w", "weights": {"passing": -1, "warning": -3}})),
            "Invalid Weights: Passing must be greater than 0"
        );
        assert_eq!(
            e(json!({"name": "w", "weights": {"passing": 0, "warning": 0}})),
            "Invalid Weights: Passing must be greater than 0"
        );
        assert_eq!(
            e(json!({"name": "w", "weights": {"passing": 3, "warning": -1}})),
            "Invalid Weights: Warning must be greater or equal than 0"
        );
        assert_eq!(
            e(json!({"name": "w", "weights": {"passing": 70000}})),
            "Invalid Weights: DNS Weight must be between 0 and 65535"
        );
        let (ok, _) = service(&json!({"name": "w", "weights": {"warning": 0}})).unwrap();
        assert_eq!(ok.weights, (1, 0), "a weight left out of a file is 1");
        assert_eq!(
            api_service(&json!({"name": "w", "weights": {"warning": 1}}))
                .unwrap_err()
                .0,
            "Invalid Weights: Passing must be greater than 0",
            "over the API, Go reads a weight left out as 0"
        );
        let (ok, _) = api_service(&json!({"name": "w", "weights": {"passing": 4}})).unwrap();
        assert_eq!(ok.weights, (4, 0));
        let (ok, _) = api_service(&json!({"name": "w"})).unwrap();
        assert_eq!(ok.weights, (1, 1), "no weights at all: 1 and 1");

        let tagged = |tag: &str, addr: &str| {
            api_service(
                &json!({"name": "w", "tagged_addresses": {tag: {"address": addr, "port": 1}}}),
            )
            .map(|_| ())
            .map_err(|e| e.0)
        };
        let (def, _) = api_service(&json!({"name": "w", "address": "10.0.0.5", "port": 80,
            "tagged_addresses": {"wan_ipv4": {"address": "198.51.100.1", "port": 8080}}}))
        .unwrap();
        assert_eq!(
            Value::Object(def.tagged_addresses),
            json!({
                "lan_ipv4": {"Address": "10.0.0.5", "Port": 80},
                "wan_ipv4": {"Address": "198.51.100.1", "Port": 8080},
            }),
            "Consul's defaults fill in what was not given"
        );
        let (def, _) = service(&json!({"name": "w", "address": "fe80::2", "port": 81})).unwrap();
        assert_eq!(
            Value::Object(def.tagged_addresses),
            json!({
                "lan_ipv6": {"Address": "fe80::2", "Port": 81},
                "wan_ipv6": {"Address": "fe80::2", "Port": 81},
            })
        );
        for address in ["", "db.example.com"] {
            let (def, _) = api_service(&json!({"name": "w", "address": address})).unwrap();
            assert!(def.tagged_addresses.is_empty(), "{address:?}");
        }
        assert_eq!(tagged("lan_ipv4", "10.0.0.1"), Ok(()));
        assert_eq!(tagged("wan_ipv4", "::ffff:10.0.0.1"), Ok(()), "Go's To4");
        assert_eq!(tagged("lan_ipv6", "fe80::1"), Ok(()));
        assert_eq!(
            tagged("lan", "db.example.com"),
            Ok(()),
            "other tags are free"
        );
        assert_eq!(
            tagged("lan_ipv4", "fe80::1"),
            Err("Service tagged address \"lan_ipv4\" must be a valid ipv4 address".into())
        );
        assert_eq!(
            tagged("wan_ipv4", "db.example.com"),
            Err("Service tagged address \"wan_ipv4\" must be a valid ipv4 address".into())
        );
        assert_eq!(
            tagged("wan_ipv6", "10.0.0.1"),
            Err("Service tagged address \"wan_ipv6\" must be a valid ipv6 address".into())
        );

        let meta = |k: &str, v: &str| e(json!({"name": "w", "meta": {k: v}}));
        assert_eq!(
            meta("consul-foo", "b"),
            "Invalid Service Meta: Couldn't load metadata pair ('consul-foo', 'b'): Key prefix \
             'consul-' is reserved for internal use"
        );
        assert!(meta("a b", "b").ends_with("Key contains invalid characters"));
        assert!(meta("", "b").ends_with("Key cannot be blank"));
        assert!(meta(&"k".repeat(129), "b").ends_with("Key is too long (limit: 128 characters)"));
        assert!(meta("k", &"v".repeat(513)).ends_with("Value is too long (limit: 512 characters)"));
        let (ok, _) = service(&json!({"name": "w", "meta": {"k_1-x": "v".repeat(512)}})).unwrap();
        assert_eq!(ok.meta["k_1-x"].len(), 512);
        let many: Map<String, Value> = (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert_eq!(
            e(json!({"name": "w", "meta": many})),
            "Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs"
        );

        // Tagged addresses decode as Consul's ServiceAddress, whatever the case of their fields.
        let (d, _) = service(&json!({"name": "w", "tagged_addresses":
            {"lan": {"address": "127.0.0.5", "port": 81}, "wan": {"bogus": 1}}}))
        .unwrap();
        assert_eq!(
            Value::Object(d.tagged_addresses),
            json!({"lan": {"Address": "127.0.0.5", "Port": 81},
                   "wan": {"Address": "", "Port": 0}})
        );
        assert!(e(json!({"name": "w", "tagged_addresses": {"lan": "1.2.3.4"}})).contains("lan"));
        assert!(
            e(json!({"name": "w", "tagged_addresses": {"lan": {"Port": "x"}}})).contains("port")
        );
    }
}
