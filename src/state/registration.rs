//! The bodies of `PUT /v1/catalog/register` and `/v1/catalog/deregister` (structs.RegisterRequest and
//! DeregisterRequest), read with the same case-insensitive rules as service definitions, validated with
//! Consul's texts where Consul has them.

use std::collections::BTreeMap;

use serde_json::Value;

use super::definitions::{
    self, DefinitionError, Status, err, fields, only_known, string, string_map,
};
use super::external::{CatalogOp, NodeInfo, Registration};
use super::node_record::{CheckRecord, service_record, status_code};

/// A register body as an operation; `datacenter` fills an absent `Datacenter`.
pub fn register(v: &Value, datacenter: &str) -> Result<CatalogOp, DefinitionError> {
    let f = fields(v, "registration")?;
    const KNOWN: &[&str] = &[
        "id",
        "node",
        "address",
        "datacenter",
        "taggedaddresses",
        "nodemeta",
        "service",
        "check",
        "checks",
        "skipnodeupdate",
        // An ACL token (py-consul sends one in the body): murmur has no ACLs, so, as a Consul
        // without ACLs does, it has no use for it.
        "writerequest",
    ];
    only_known(&f, KNOWN, "registration")?;
    let node = string(&f, "node")?.unwrap_or_default();
    if node.is_empty() {
        return err("Must provide node");
    }
    let skip_node_update = match f.get("skipnodeupdate") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return err(format!("SkipNodeUpdate: expected a boolean, got {other}")),
    };
    let address = string(&f, "address")?.unwrap_or_default();
    if address.is_empty() && !skip_node_update {
        return err("Must provide address if SkipNodeUpdate is not set");
    }
    let id = string(&f, "id")?.unwrap_or_default();
    if !id.is_empty() && !crate::util::entropy::is_uuid(&id) {
        return err(format!("Bad node ID: {id:?} is not a UUID"));
    }
    let service = match f.get("service") {
        None | Some(Value::Null) => None,
        Some(s) => Some(catalog_service(s)?),
    };
    let mut raw_checks: Vec<&Value> = Vec::new();
    if let Some(c) = f.get("check").filter(|c| !c.is_null()) {
        raw_checks.push(c);
    }
    match f.get("checks") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => raw_checks.extend(a),
        Some(other) => return err(format!("Checks: expected a list, got {other}")),
    }
    let checks = raw_checks
        .into_iter()
        .map(|c| catalog_check(c, &node))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CatalogOp::Register(Box::new(Registration {
        info: NodeInfo {
            datacenter: string(&f, "datacenter")?
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| datacenter.to_owned()),
            tagged_addresses: string_map(f.get("taggedaddresses"), "TaggedAddresses")?,
            meta: string_map(f.get("nodemeta"), "NodeMeta")?,
            node,
            id,
            address,
        },
        skip_node_update,
        service,
        checks,
    })))
}

/// The datacenter a body names, if it names one (the caller refuses other datacenters).
pub fn datacenter(v: &Value) -> Result<Option<String>, DefinitionError> {
    Ok(string(&fields(v, "request")?, "datacenter")?.filter(|d| !d.is_empty()))
}

/// A catalog service (structs.NodeService: the name is `Service`), read as an agent's service
/// definition is.
fn catalog_service(v: &Value) -> Result<crate::state::node_record::ServiceRecord, DefinitionError> {
    let Value::Object(o) = v else {
        return err("Service: expected an object");
    };
    let mut renamed = serde_json::Map::new();
    for (k, v) in o {
        let key = if k.eq_ignore_ascii_case("service") {
            "Name".to_owned()
        } else if k.eq_ignore_ascii_case("name") {
            // NodeService has no Name; Go's decoder would drop it, and a second name would confuse.
            continue;
        } else {
            k.clone()
        };
        renamed.insert(key, v.clone());
    }
    let (def, checks) = definitions::catalog_service(&Value::Object(renamed)).map_err(|e| {
        DefinitionError(match e.0.as_str() {
            "Missing service name" => "Must provide service name".to_owned(),
            other => format!("Service: {other}"),
        })
    })?;
    if !checks.is_empty() {
        return err("Service: a catalog registration carries its checks in Check or Checks");
    }
    Ok(service_record(&def))
}

/// A catalog check (structs.HealthCheck) on `node`. Consul stores what it is given: no check runs.
fn catalog_check(v: &Value, node: &str) -> Result<CheckRecord, DefinitionError> {
    let f = fields(v, "check")?;
    const KNOWN: &[&str] = &[
        "node",
        "checkid",
        "name",
        "status",
        "notes",
        "output",
        "serviceid",
        "servicename",
        "servicetags",
        "type",
        "definition",
    ];
    only_known(&f, KNOWN, "check")?;
    match f.get("definition") {
        None | Some(Value::Null) => {}
        Some(Value::Object(o)) if o.is_empty() => {}
        Some(_) => {
            return err("check Definition (probes for consul-esm) is not supported by murmur yet");
        }
    }
    let own = string(&f, "node")?.filter(|n| !n.is_empty());
    if let Some(other) = own.filter(|n| n != node) {
        return err(format!("Check node {other:?} does not match node {node:?}"));
    }
    let name = string(&f, "name")?.unwrap_or_default();
    // Consul's checkPreApply: an ID defaults to the name.
    let id = string(&f, "checkid")?
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| name.clone());
    if id.is_empty() {
        return err("Missing check ID");
    }
    let status = match string(&f, "status")?.filter(|s| !s.is_empty()) {
        None => Status::Critical,
        Some(s) => Status::parse(&s)
            .ok_or_else(|| DefinitionError(format!("Invalid check status: {s:?}")))?,
    };
    Ok(CheckRecord {
        id,
        name,
        status: status_code(status),
        notes: string(&f, "notes")?.unwrap_or_default(),
        output: string(&f, "output")?.unwrap_or_default(),
        service_id: string(&f, "serviceid")?.unwrap_or_default(),
        kind: string(&f, "type")?.unwrap_or_default(),
    })
}

/// A deregister body as an operation.
pub fn deregister(v: &Value) -> Result<CatalogOp, DefinitionError> {
    let f = fields(v, "deregistration")?;
    const KNOWN: &[&str] = &["node", "datacenter", "serviceid", "checkid", "writerequest"];
    only_known(&f, KNOWN, "deregistration")?;
    let node = string(&f, "node")?.unwrap_or_default();
    if node.is_empty() {
        return err("Must provide node");
    }
    let nonempty = |k: &str| -> Result<Option<String>, DefinitionError> {
        Ok(string(&f, k)?.filter(|s| !s.is_empty()))
    };
    Ok(CatalogOp::Deregister {
        node,
        service_id: nonempty("serviceid")?,
        check_id: nonempty("checkid")?,
    })
}

/// Tagged addresses as a catalog node shows them: the ones registered, `lan` and `wan` defaulting to
/// the node's address (as Consul fills them).
pub fn node_tagged_addresses(
    address: &str,
    registered: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = registered.clone();
    for k in ["lan", "wan"] {
        out.entry(k.to_owned())
            .or_insert_with(|| address.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn py_consul_and_api_spellings_both_read() {
        // py-consul sends lowercase keys and a lowercase service; Consul's docs use PascalCase.
        let lower = json!({"node": "google", "address": "www.google.com",
            "service": {"service": "search", "port": 80},
            "check": {"name": "search up", "status": "passing", "serviceid": "search"}});
        let pascal = json!({"Node": "google", "Address": "www.google.com", "Datacenter": "dc1",
            "Service": {"Service": "search", "Port": 80},
            "Check": {"Name": "search up", "Status": "passing", "ServiceID": "search"}});
        let (a, b) = (
            register(&lower, "dc1").unwrap(),
            register(&pascal, "dc1").unwrap(),
        );
        assert_eq!(a, b);
        let CatalogOp::Register(r) = a else {
            panic!("not a registration")
        };
        let s = r.service.unwrap();
        assert_eq!(
            (s.id.as_str(), s.name.as_str(), s.port),
            ("search", "search", 80)
        );
        assert_eq!(r.checks[0].id, "search up", "the ID defaults to the name");
        assert_eq!(r.checks[0].status, 0);
    }

    #[test]
    fn bad_bodies_get_consuls_texts() {
        let cases = [
            (json!({"Address": "1.2.3.4"}), "Must provide node"),
            (
                json!({"Node": "n"}),
                "Must provide address if SkipNodeUpdate is not set",
            ),
            (
                json!({"Node": "n", "Address": "a", "Service": {"Port": 1}}),
                "Must provide service name",
            ),
            (
                json!({"Node": "n", "Address": "a", "Check": {"Node": "m", "Name": "c"}}),
                "Check node \"m\" does not match node \"n\"",
            ),
            (
                json!({"Node": "n", "Address": "a", "Check": {"Name": "c", "Status": "fine"}}),
                "Invalid check status: \"fine\"",
            ),
            (
                json!({"Node": "n", "Address": "a", "Check": {"Status": "passing"}}),
                "Missing check ID",
            ),
            (
                json!({"Node": "n", "Address": "a", "ID": "abc"}),
                "Bad node ID: \"abc\" is not a UUID",
            ),
            (
                json!({"Node": "n", "Address": "a", "Partition": "p"}),
                "registration field \"partition\" is not supported by murmur yet",
            ),
            (json!([1]), "registration: expected an object"),
        ];
        for (body, want) in cases {
            assert_eq!(register(&body, "dc1").unwrap_err().0, want, "{body}");
        }
        // Skipping the node update needs no address.
        assert!(register(&json!({"Node": "n", "SkipNodeUpdate": true}), "dc1").is_ok());
    }

    #[test]
    fn deregistration_reads_its_target() {
        let op = deregister(&json!({"node": "n", "ServiceID": "s", "CheckID": ""})).unwrap();
        assert_eq!(
            op,
            CatalogOp::Deregister {
                node: "n".into(),
                service_id: Some("s".into()),
                check_id: None
            }
        );
        assert_eq!(deregister(&json!({})).unwrap_err().0, "Must provide node");
        assert_eq!(
            datacenter(&json!({"datacenter": "dc2"}))
                .unwrap()
                .as_deref(),
            Some("dc2")
        );
    }

    #[test]
    fn lan_and_wan_default_to_the_address() {
        let t = node_tagged_addresses(
            "10.0.0.1",
            &BTreeMap::from([("wan".into(), "1.1.1.1".into())]),
        );
        assert_eq!(t["lan"], "10.0.0.1");
        assert_eq!(t["wan"], "1.1.1.1");
    }
}
