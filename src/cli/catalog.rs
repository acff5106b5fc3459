//! `services register|deregister`, `catalog services|nodes` and `maint`: Consul's commands for the
//! service catalog and maintenance mode, over the agent's HTTP API, with Consul's output.

use serde_json::Value;

use super::ops::{parse, segment};
use super::{HTTP_ADDR, boolean, many, one, target};
use crate::http::client::Target;

/// A call that must answer 200: the reply's JSON body, or the error printed as `what: ...`.
pub(super) fn get_json(t: &Target, path: &str, what: &str) -> Option<Value> {
    match t.call("GET", path) {
        Ok(r) if r.status == 200 => match serde_json::from_slice(&r.body) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("{what}: {e}");
                None
            }
        },
        Ok(r) => {
            eprintln!(
                "{what}: Unexpected response code: {} ({})",
                r.status,
                r.text()
            );
            None
        }
        Err(e) => {
            eprintln!("{what}: {e}");
            None
        }
    }
}

fn put(t: &Target, path: &str, body: &[u8], what: &str) -> bool {
    match t.call_with_body("PUT", path, body) {
        Ok(r) if r.status == 200 => true,
        Ok(r) => {
            eprintln!(
                "{what}: Unexpected response code: {} ({})",
                r.status,
                r.text()
            );
            false
        }
        Err(e) => {
            eprintln!("{what}: {e}");
            false
        }
    }
}

/// The service definitions in a Consul file (JSON or HCL): its `service` and `services` entries.
fn definitions_in(path: &str) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("Error reading {path}: {e}"))?;
    let v: Value = if path.ends_with(".hcl") {
        hcl::from_str(&text).map_err(|e| format!("Error parsing {path}: {e}"))?
    } else {
        serde_json::from_str(&text).map_err(|e| format!("Error parsing {path}: {e}"))?
    };
    let mut out = Vec::new();
    for key in ["service", "services"] {
        match v.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => out.extend(a.iter().cloned()),
            Some(one) => out.push(one.clone()),
        }
    }
    if out.is_empty() {
        return Err(format!("Error: {path} defines no service"));
    }
    Ok(out)
}

/// The service `-name`, `-id`, `-address`, `-port`, `-tag`, `-meta` and `-tagged-address` describe
/// (Consul's `services register` without a file).
fn definition_from_flags(p: &crate::util::flags::Parsed) -> Result<Value, String> {
    let pairs = |flag: &str| -> Result<serde_json::Map<String, Value>, String> {
        p.all(flag)
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => Ok((k.to_owned(), Value::String(v.to_owned()))),
                None => Err(format!(
                    "Invalid -{flag}: {kv:?} is not of the form key=value"
                )),
            })
            .collect()
    };
    let port: u16 = match p.get("port") {
        None => 0,
        Some(v) => v.parse().map_err(|_| format!("Invalid -port: {v:?}"))?,
    };
    let mut tagged = serde_json::Map::new();
    for (k, v) in pairs("tagged-address")? {
        let addr = v.as_str().unwrap_or_default();
        // Consul's ParseServiceAddr: host, host:port or [v6]:port; a bare IPv6 address has too many
        // colons to tell its port.
        let invalid = || format!("Invalid Tagged address: {addr:?}");
        let (host, port) = match addr.rsplit_once(':') {
            None => (addr, 0),
            Some((h, p)) => {
                let host = match h.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                    Some(v6) => v6,
                    None if h.contains(':') => return Err(invalid()),
                    None => h,
                };
                (host, p.parse::<u16>().map_err(|_| invalid())?)
            }
        };
        tagged.insert(k, serde_json::json!({"Address": host, "Port": port}));
    }
    Ok(serde_json::json!({
        "ID": p.get("id").unwrap_or(""),
        "Name": p.get("name").unwrap_or(""),
        "Address": p.get("address").unwrap_or(""),
        "Port": port,
        "Tags": p.all("tag"),
        "Meta": pairs("meta")?,
        "TaggedAddresses": tagged,
    }))
}

/// `murmur services register (FILE... | -name NAME [-id -address -port -tag -meta -tagged-address])`
/// / `murmur services deregister FILE... | -id ID`.
pub fn services(args: &[String]) -> i32 {
    let Some((sub, rest)) = args.split_first() else {
        eprintln!("Usage: murmur services register FILE... | deregister (FILE... | -id ID)");
        return 1;
    };
    let spec = [
        HTTP_ADDR,
        one("id", "Service ID (to deregister: the service to remove)."),
        one("name", "Name of the service to register (without a file)."),
        one("address", "Address of the service to register."),
        one("port", "Port of the service to register."),
        many("tag", "Tag of the service to register (repeatable)."),
        many(
            "meta",
            "Metadata of the service to register, key=value (repeatable).",
        ),
        many(
            "tagged-address",
            "Tagged address of the service to register, key=host:port (repeatable).",
        ),
    ];
    let Some(p) = parse(rest, &spec) else {
        return 1;
    };
    let Some(t) = target(p.get("http-addr")) else {
        return 1;
    };
    let mut defs = Vec::new();
    for f in &p.args {
        match definitions_in(f) {
            Ok(d) => defs.extend(d),
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        }
    }
    let name_of = |d: &Value, k: &[&str]| {
        k.iter()
            .find_map(|k| d.get(*k).and_then(Value::as_str))
            .unwrap_or("")
            .to_owned()
    };
    match sub.as_str() {
        "register" => {
            // As in Consul, files win over the flags.
            if defs.is_empty() {
                if p.get("name").is_none_or(str::is_empty) {
                    eprintln!("Service registration requires at least one argument or flags.");
                    return 1;
                }
                match definition_from_flags(&p) {
                    Ok(d) => defs.push(d),
                    Err(e) => {
                        eprintln!("{e}");
                        return 1;
                    }
                }
            }
            for d in &defs {
                let name = name_of(d, &["name", "Name"]);
                let body = file_weights(d.clone()).to_string();
                if !put(
                    &t,
                    "/v1/agent/service/register",
                    body.as_bytes(),
                    &format!("Error registering service {name:?}"),
                ) {
                    return 1;
                }
                println!("Registered service: {name}");
            }
            0
        }
        "deregister" => {
            let mut ids: Vec<String> = defs
                .iter()
                .map(|d| {
                    let id = name_of(d, &["id", "ID"]);
                    if id.is_empty() {
                        name_of(d, &["name", "Name"])
                    } else {
                        id
                    }
                })
                .collect();
            ids.extend(p.get("id").map(str::to_owned));
            if ids.is_empty() {
                eprintln!("Either a service definition file or -id must be given.");
                return 1;
            }
            for id in ids {
                let path = format!("/v1/agent/service/deregister/{}", segment(&id));
                if !put(&t, &path, b"", "Error deregistering service") {
                    return 1;
                }
                println!("Deregistered service: {id}");
            }
            0
        }
        other => {
            eprintln!("Unknown services subcommand {other:?}: use register or deregister");
            1
        }
    }
}

/// `murmur catalog services [-tags] [-node NODE]` / `murmur catalog nodes [-service NAME]`.
pub fn catalog(args: &[String]) -> i32 {
    let Some((sub, rest)) = args.split_first() else {
        eprintln!("Usage: murmur catalog services|nodes [options]");
        return 1;
    };
    let spec = [
        HTTP_ADDR,
        boolean("tags", "Show each service's tags."),
        boolean(
            "detailed",
            "Show each node's full ID, tagged addresses and metadata.",
        ),
        one("node", "Only the services of this node."),
        one("service", "Only the nodes serving this service."),
    ];
    let Some(p) = parse(rest, &spec) else {
        return 1;
    };
    let Some(t) = target(p.get("http-addr")) else {
        return 1;
    };
    match sub.as_str() {
        "services" => catalog_services(&t, p.get("node"), p.is_set("tags")),
        "nodes" => catalog_nodes(&t, p.get("service"), p.is_set("detailed")),
        other => {
            eprintln!("Unknown catalog subcommand {other:?}: use services or nodes");
            1
        }
    }
}

fn catalog_services(t: &Target, node: Option<&str>, tags: bool) -> i32 {
    let what = "Error listing services";
    let mut rows: Vec<(String, Vec<String>)> = match node {
        None => {
            let Some(Value::Object(m)) = get_json(t, "/v1/catalog/services", what) else {
                return 1;
            };
            m.into_iter()
                .map(|(k, v)| (k, serde_json::from_value(v).unwrap_or_default()))
                .collect()
        }
        Some(n) => {
            let path = format!("/v1/catalog/node-services/{}", segment(n));
            let Some(v) = get_json(t, &path, what) else {
                return 1;
            };
            let Some(list) = v.get("Services").and_then(Value::as_array) else {
                eprintln!("{what}: No node {n:?} in the catalog");
                return 1;
            };
            list.iter()
                .map(|s| {
                    let name = s["Service"].as_str().unwrap_or("").to_owned();
                    (
                        name,
                        serde_json::from_value(s["Tags"].clone()).unwrap_or_default(),
                    )
                })
                .collect()
        }
    };
    rows.sort();
    rows.dedup_by(|a, b| a.0 == b.0);
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    for (name, t) in rows {
        if tags {
            println!("{}", format!("{name:<width$}  {}", t.join(",")).trim_end());
        } else {
            println!("{name}");
        }
    }
    0
}

/// A map as Consul's CLI prints one: `k=v` pairs in key order, joined by `, `.
fn map_text(v: &Value) -> String {
    let Some(m) = v.as_object() else {
        return String::new();
    };
    let mut pairs: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    pairs.join(", ")
}

fn catalog_nodes(t: &Target, service: Option<&str>, detailed: bool) -> i32 {
    let what = "Error listing nodes";
    let path = match service {
        None => "/v1/catalog/nodes".to_owned(),
        Some(s) => format!("/v1/catalog/service/{}", segment(s)),
    };
    let Some(Value::Array(list)) = get_json(t, &path, what) else {
        return 1;
    };
    if list.is_empty() {
        eprintln!("No nodes match the given query - try expanding your search.");
        return 0;
    }
    // One row per entry, as Consul's: with -service, a node with two instances shows twice.
    let mut rows: Vec<Vec<String>> = list
        .iter()
        .map(|n| {
            let s = |k: &str| n[k].as_str().unwrap_or("").to_owned();
            let mut id = s("ID");
            if !detailed {
                id.truncate(8);
            }
            let mut row = vec![s("Node"), id, s("Address"), s("Datacenter")];
            if detailed {
                // A node list says "Meta", a service's entries "NodeMeta".
                let meta = n.get("NodeMeta").unwrap_or(&n["Meta"]);
                row.extend([map_text(&n["TaggedAddresses"]), map_text(meta)]);
            }
            row
        })
        .collect();
    rows.sort();
    let mut head: Vec<String> = ["Node", "ID", "Address", "DC"].map(str::to_owned).into();
    if detailed {
        head.extend(["TaggedAddresses", "Meta"].map(str::to_owned));
    }
    let mut widths = vec![0usize; head.len()];
    for r in std::iter::once(&head).chain(&rows) {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    for r in std::iter::once(&head).chain(&rows) {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    0
}

/// `murmur maint [-enable|-disable] [-reason TEXT] [-service ID]`; without flags, what is in maintenance.
pub fn maint(args: &[String]) -> i32 {
    let spec = [
        HTTP_ADDR,
        boolean("enable", "Enable maintenance mode."),
        boolean("disable", "Disable maintenance mode."),
        one("reason", "Text saying why (shown as the check's notes)."),
        one("service", "A service ID (the whole node when absent)."),
    ];
    let Some(p) = parse(args, &spec) else {
        return 1;
    };
    let (enable, disable) = (p.is_set("enable"), p.is_set("disable"));
    if enable && disable {
        eprintln!("Only one of -enable or -disable may be provided");
        return 1;
    }
    if !enable && p.get("reason").is_some() {
        eprintln!("Reason may only be provided with -enable");
        return 1;
    }
    let Some(t) = target(p.get("http-addr")) else {
        return 1;
    };
    if !enable && !disable {
        return list_maintenance(&t);
    }
    let reason = p.get("reason").unwrap_or("");
    let query = format!("?enable={enable}&reason={}", segment(reason));
    let (path, who) = match p.get("service") {
        None => (format!("/v1/agent/maintenance{query}"), "Node"),
        Some(s) => (
            format!("/v1/agent/service/maintenance/{}{query}", segment(s)),
            "Service",
        ),
    };
    if !put(&t, &path, b"", "Error toggling maintenance mode") {
        return 1;
    }
    if enable {
        println!("{who} entered maintenance mode");
    } else {
        println!("{who} left maintenance mode");
    }
    0
}

fn list_maintenance(t: &Target) -> i32 {
    let Some(Value::Object(checks)) = get_json(t, "/v1/agent/checks", "Error listing checks")
    else {
        return 1;
    };
    let name = get_json(t, "/v1/agent/self", "Error reading the agent")
        .and_then(|v| v["Config"]["NodeName"].as_str().map(str::to_owned))
        .unwrap_or_default();
    for c in checks.values() {
        let id = c["CheckID"].as_str().unwrap_or("");
        let notes = c["Notes"].as_str().unwrap_or("");
        if id == crate::state::maintenance::NODE_CHECK_ID {
            println!("Node:\n  Name:   {name}\n  Reason: {notes}\n");
        } else if id.starts_with("_service_maintenance:") {
            let service = c["ServiceID"].as_str().unwrap_or("");
            println!("Service:\n  ID:     {service}\n  Reason: {notes}\n");
        }
    }
    0
}

/// A file's service as the API must read it: a weight the file leaves out is 1, as Consul reads its
/// config files; the API, as Go decodes JSON, would read it as 0 and refuse a missing `passing`.
fn file_weights(mut d: Value) -> Value {
    let weights = d.as_object_mut().and_then(|o| {
        o.iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case("weights"))
            .and_then(|(_, w)| w.as_object_mut())
    });
    if let Some(w) = weights {
        for key in ["Passing", "Warning"] {
            if !w.keys().any(|k| k.eq_ignore_ascii_case(key)) {
                w.insert(key.into(), Value::from(1));
            }
        }
    }
    d
}
