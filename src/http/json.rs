//! Consul's JSON shapes for members, catalog nodes, services and health checks, built from member
//! records and the catalog's published records.

use serde_json::{Value, json};

use crate::state::catalog::Instance;
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

/// Catalog node (structs.Node) for a member.
pub fn catalog_node(m: &MemberRecord) -> Value {
    let ip = m.addr.ip().to_string();
    let mut tagged = json!({ "lan": ip, "wan": ip });
    let family = if m.addr.is_ipv4() { "ipv4" } else { "ipv6" };
    tagged[format!("lan_{family}")] = json!(ip);
    tagged[format!("wan_{family}")] = json!(ip);
    let mut meta = json!(m.meta);
    meta["consul-network-segment"] = json!("");
    json!({
        "ID": m.tag("id"),
        "Node": &*m.name,
        "Address": ip,
        "Datacenter": m.tag("dc"),
        "TaggedAddresses": tagged,
        "Meta": meta,
        "CreateIndex": m.create_index,
        "ModifyIndex": m.modify_index,
    })
}

/// True when a member belongs in the catalog of datacenter `dc` (left members are deregistered).
pub fn in_catalog(m: &MemberRecord, dc: &str) -> bool {
    m.tag("dc") == dc && m.status != MemberStatus::Left
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

/// True when the member's `serfHealth` is passing.
pub fn serf_passing(m: &MemberRecord) -> bool {
    matches!(m.status, MemberStatus::Alive | MemberStatus::Leaving)
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
pub fn service_node(m: &MemberRecord, i: &Instance) -> Value {
    let node = catalog_node(m);
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
