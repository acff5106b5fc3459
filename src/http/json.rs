//! Consul's JSON shapes for members, catalog nodes, services and health checks, built from member
//! records and the catalog's published records.

use serde_json::{Value, json};

use crate::state::catalog::Instance;
use crate::state::catalog_node::NodeView;
use crate::state::node_record::{CheckRecord, ServiceRecord};
use crate::state::{MemberRecord, MemberStatus};
use crate::version;

/// `/v1/agent/members` entry (api.AgentMember).
pub fn agent_member(m: &MemberRecord) -> Value {
    json!({
        "Name": &*m.name,
        "Addr": m.addr.ip().to_string(),
        "Port": m.addr.port(),
        "Tags": m.tags,
        "Status": m.status as u8,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": version::PROTOCOL,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    })
}

/// Catalog node (structs.Node).
pub fn catalog_node(n: &NodeView) -> Value {
    let mut meta = json!(n.meta());
    if n.member().is_some() {
        // Consul's agents put their network segment in their node's meta.
        meta["consul-network-segment"] = json!("");
    }
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

/// A published service as a node's service (structs.NodeService: `/v1/catalog/node`, health entries).
pub fn node_service(s: &ServiceRecord, (create, modify): (u64, u64)) -> Value {
    json!({
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
    })
}

/// A service instance with its node's fields (structs.ServiceNode: `/v1/catalog/service/:name`).
pub fn service_node(n: &NodeView, i: &Instance) -> Value {
    let node = catalog_node(n);
    let s = &i.service;
    json!({
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
    })
}
