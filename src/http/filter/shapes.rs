//! One element of each listing, with every field the listing's JSON has, built by the same functions
//! that build the listing: a filter is checked against it before anything waits or is listed, as
//! go-bexpr checks a filter against the Go type, so a wrong selector fails even when nothing is listed.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::http::json::{
    catalog_node, health_check, node_info, node_service, serf_health, service_node,
};
use crate::state::catalog::Instance;
use crate::state::catalog_node::NodeView;
use crate::state::node_record::{CheckRecord, ServiceRecord};
use crate::state::{MemberRecord, MemberStatus};

/// The element types of the filtered listings.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// `/v1/catalog/nodes`: structs.Node.
    Node,
    /// `/v1/catalog/service/:s`, `/v1/catalog/services`: structs.ServiceNode.
    ServiceNode,
    /// `/v1/health/service/:s`: structs.CheckServiceNode.
    CheckServiceNode,
    /// `/v1/health/node|checks|state`: structs.HealthCheck.
    HealthCheck,
    /// `/v1/catalog/node/:n`, `/v1/catalog/node-services/:n`: structs.NodeService.
    NodeService,
    /// `/v1/internal/ui/nodes`: structs.NodeInfo.
    NodeInfo,
}

/// A specimen of `shape`, every list of objects in it holding one element.
pub fn specimen(shape: Shape) -> Value {
    let member = Arc::new(MemberRecord {
        name: Arc::from("node"),
        addr: "127.0.0.1:8301".parse().expect("a socket address"),
        status: MemberStatus::Alive,
        incarnation: 1,
        tags: BTreeMap::new(),
        meta: BTreeMap::new(),
        create_index: 1,
        modify_index: 1,
    });
    let node = NodeView::Member(member.clone());
    // With a tagged address: an empty map is left out of the JSON.
    let service = ServiceRecord {
        tagged_addresses: json!({"lan": {"Address": "127.0.0.1", "Port": 1}}).to_string(),
        ..ServiceRecord::plain("svc", "svc", &["tag"], 1)
    };
    let check = CheckRecord {
        id: "check".into(),
        name: "check".into(),
        status: 0,
        notes: String::new(),
        output: String::new(),
        service_id: "svc".into(),
        kind: "ttl".into(),
    };
    let idx = (1, 1);
    match shape {
        Shape::Node => catalog_node(&node),
        Shape::ServiceNode => service_node(
            &node,
            &Instance {
                node: member.name.clone(),
                service,
                checks: vec![check],
                create_index: 1,
                modify_index: 1,
            },
        ),
        Shape::CheckServiceNode => json!({
            "Node": catalog_node(&node),
            "Service": node_service(&service, idx),
            "Checks": [serf_health(&member), health_check("node", &check, Some(&service), idx)],
        }),
        Shape::HealthCheck => health_check("node", &check, Some(&service), idx),
        Shape::NodeService => node_service(&service, idx),
        Shape::NodeInfo => node_info(
            &node,
            vec![node_service(&service, idx)],
            vec![
                serf_health(&member),
                health_check("node", &check, Some(&service), idx),
            ],
        ),
    }
}
