//! Consul's JSON shapes for members and catalog nodes, built from member records.

use serde_json::{Value, json};

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

/// The `consul` service every server carries in the catalog.
pub fn consul_service(server_port: u16) -> Value {
    json!({
        "ID": "consul",
        "Service": "consul",
        "Tags": [],
        "Meta": {},
        "Port": server_port,
        "Address": "",
        "TaggedAddresses": {},
        "Weights": { "Passing": 1, "Warning": 1 },
        "EnableTagOverride": false,
    })
}
