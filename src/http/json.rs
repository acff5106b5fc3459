//! Consul's JSON shapes for members, catalog nodes, services and health checks, built from member
//! records and the catalog's published records.

use serde_json::{Value, json};

use crate::state::catalog::Instance;
use crate::state::catalog_node::NodeView;
use crate::state::node_record::{CheckRecord, ServiceRecord};
use crate::state::{MemberRecord, MemberStatus};
use crate::version;

/// Tags murmur's agents gossip for each other (wire features, keyring fingerprints); Consul's clients
/// and tools list every tag they get, so these stay off the API.
const INTERNAL_TAGS: [&str; 2] = [murmur_gossip::wire::FEATURES_TAG, "kr"];

/// `/v1/agent/members` entry (api.AgentMember).
pub fn agent_member(m: &MemberRecord) -> Value {
    let tags: serde_json::Map<String, Value> = m
        .tags
        .iter()
        .filter(|(k, _)| !INTERNAL_TAGS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({
        "Name": &*m.name,
        "Addr": m.addr.ip().to_string(),
        "Port": m.addr.port(),
        "Tags": tags,
        "Status": m.status as u8,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": version::PROTOCOL,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    })
}

/// A node with its services and checks (structs.NodeInfo, `/v1/internal/ui/nodes`): a catalog node
/// without its datacenter and raft indexes.
pub fn node_info(n: &NodeView, services: Vec<Value>, checks: Vec<Value>) -> Value {
    let mut node = catalog_node(n);
    if let Some(info) = node.as_object_mut() {
        for k in ["Datacenter", "CreateIndex", "ModifyIndex"] {
            info.remove(k);
        }
        info.insert("Services".into(), Value::Array(services));
        info.insert("Checks".into(), Value::Array(checks));
    }
    node
}

/// Catalog node (structs.Node).
pub fn catalog_node(n: &NodeView) -> Value {
    let meta = json!(n.meta());
    let (create, modify) = n.indexes();
    json!({
        "ID": n.id(),
        "Node": n.name(),
        "Address": n.address(),
        "Datacenter": n.datacenter(),
        "TaggedAddresses": n.tagged_addresses(),
        "Meta": meta,
        "CreateIndex": create,
        "ModifyIndex": modify,
    })
}

/// The `serfHealth` check every catalog node carries, from its membership status.
pub fn serf_health(m: &MemberRecord) -> Value {
    let (status, output) = match m.status {
        MemberStatus::Alive | MemberStatus::Leaving => ("passing", "Agent alive and reachable"),
        MemberStatus::Failed | MemberStatus::Left => ("critical", "Agent not live or unreachable"),
    };
    json!({
        "Node": &*m.name,
        "CheckID": "serfHealth",
        "Name": "Serf Health Status",
        "Status": status,
        "Notes": "",
        "Output": output,
        "ServiceID": "",
        "ServiceName": "",
        "ServiceTags": [],
        "Type": "",
        "Interval": "",
        "Timeout": "",
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": m.create_index,
        "ModifyIndex": m.modify_index,
    })
}

/// A published check (structs.HealthCheck); `service` names the service it belongs to, if any.
pub fn health_check(
    node: &str,
    c: &CheckRecord,
    service: Option<&ServiceRecord>,
    (create, modify): (u64, u64),
) -> Value {
    json!({
        "Node": node,
        "CheckID": c.id,
        "Name": c.name,
        "Status": c.status().as_str(),
        "Notes": c.notes,
        "Output": c.output,
        "ServiceID": c.service_id,
        "ServiceName": service.map(|s| s.name.as_str()).unwrap_or(""),
        "ServiceTags": service.map(|s| s.tags.clone()).unwrap_or_default(),
        "Type": c.kind,
        "Interval": "",
        "Timeout": "",
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": create,
        "ModifyIndex": modify,
    })
}

fn tagged(s: &ServiceRecord) -> Value {
    serde_json::from_str(&s.tagged_addresses).unwrap_or_else(|_| json!({}))
}

/// Removes `key` from `v` when it holds an empty map: a service's tagged addresses are `omitempty` in
/// Consul's JSON.
pub fn omit_empty(mut v: Value, key: &str) -> Value {
    if let Some(o) = v.as_object_mut()
        && o.get(key)
            .is_some_and(|m| m.as_object().is_some_and(|m| m.is_empty()))
    {
        o.remove(key);
    }
    v
}

/// A published service as a node's service (structs.NodeService: `/v1/catalog/node`, health entries).
pub fn node_service(s: &ServiceRecord, (create, modify): (u64, u64)) -> Value {
    let v = json!({
        "ID": s.id,
        "Service": s.name,
        "Tags": s.tags,
        "Address": s.address,
        "Meta": s.meta,
        "Port": s.port,
        "TaggedAddresses": tagged(s),
        "Weights": {"Passing": s.weights.0, "Warning": s.weights.1},
        "EnableTagOverride": s.enable_tag_override,
        "Kind": "",
        "Proxy": {},
        "Connect": {},
        "CreateIndex": create,
        "ModifyIndex": modify,
    });
    omit_empty(v, "TaggedAddresses")
}

/// A service instance with its node's fields (structs.ServiceNode: `/v1/catalog/service/:name`).
pub fn service_node(n: &NodeView, i: &Instance) -> Value {
    let node = catalog_node(n);
    let s = &i.service;
    let v = json!({
        "ID": node["ID"],
        "Node": node["Node"],
        "Address": node["Address"],
        "Datacenter": node["Datacenter"],
        "TaggedAddresses": node["TaggedAddresses"],
        "NodeMeta": node["Meta"],
        "ServiceKind": "",
        "ServiceID": s.id,
        "ServiceName": s.name,
        "ServiceTags": s.tags,
        "ServiceAddress": s.address,
        "ServiceTaggedAddresses": tagged(s),
        "ServiceWeights": {"Passing": s.weights.0, "Warning": s.weights.1},
        "ServiceMeta": s.meta,
        "ServicePort": s.port,
        "ServiceEnableTagOverride": s.enable_tag_override,
        "ServiceProxy": {},
        "ServiceConnect": {},
        "CreateIndex": i.create_index,
        "ModifyIndex": i.modify_index,
    });
    omit_empty(v, "ServiceTaggedAddresses")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_show_consuls_tags_and_not_murmurs_own() {
        let tags = [
            ("role", "consul"),
            ("dc", "dc1"),
            ("mwf", "1"),
            ("kr", "ab12"),
        ];
        let m = MemberRecord {
            name: "a".into(),
            addr: "127.0.0.1:8301".parse().unwrap(),
            status: MemberStatus::Alive,
            incarnation: 1,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            meta: Default::default(),
            create_index: 1,
            modify_index: 1,
        };
        assert_eq!(
            agent_member(&m)["Tags"],
            json!({"dc": "dc1", "role": "consul"})
        );
    }
}
