//! `/v1/internal/ui/nodes` and `/v1/internal/ui/services`: the two summaries Consul's web UI reads (and
//! murmur's), each in one blocking request instead of one request per node or per service. Both wake on
//! any member or catalog change, since a node's status and every check count can move with either.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Query, State};
use serde_json::{Value, json};

use super::ApiState;
use super::blocking::with_index;
use super::catalog::{nodes_read, services_of};
use super::error::ApiResult;
use super::health::node_checks;
use super::json::catalog_node;
use super::params::Params;
use crate::state::catalog_node::NodeView;
use crate::state::definitions::Status;

/// Every node with its services and checks (structs.NodeInfo).
pub(super) async fn nodes(State(s): State<ApiState>, Query(q): Params) -> ApiResult {
    let (index, snap) = nodes_read(&s, &q).await?;
    let body: Vec<Value> = s
        .state
        .catalog_nodes()
        .all(&snap)
        .iter()
        .map(|n| {
            let mut node = catalog_node(n);
            let info = node.as_object_mut().expect("catalog_node is an object");
            // NodeInfo carries no datacenter and no raft indexes.
            for k in ["Datacenter", "CreateIndex", "ModifyIndex"] {
                info.remove(k);
            }
            info.insert("Services".into(), json!(services_of(&s, n.name())));
            info.insert("Checks".into(), json!(node_checks(&s, n)));
            node
        })
        .collect();
    Ok(with_index(
        index,
        s.state.store.known_leader(),
        Value::Array(body),
    ))
}

/// Per service: its instances, nodes, tags and check counts (structs.ServiceListingSummary).
#[derive(Default)]
struct Summary {
    tags: BTreeSet<String>,
    nodes: BTreeSet<String>,
    instances: u64,
    // Unique (node, check) pairs, as Consul counts them: a node-level check counts once per service on
    // that node, not once per instance.
    checks: BTreeMap<(String, String), Status>,
}

/// Every service with its instance count and how many of its checks pass, warn and fail.
pub(super) async fn services(State(s): State<ApiState>, Query(q): Params) -> ApiResult {
    let (index, snap) = nodes_read(&s, &q).await?;
    let mut by_name: BTreeMap<String, Summary> = BTreeMap::new();
    for n in s.state.catalog_nodes().all(&snap) {
        summarize_node(&s, &n, &mut by_name);
    }
    let dc = &s.state.local.datacenter;
    let body: Vec<Value> = by_name
        .into_iter()
        .map(|(name, sum)| {
            let count = |st: Status| sum.checks.values().filter(|&&x| x == st).count();
            let list = |set: BTreeSet<String>| {
                if set.is_empty() {
                    Value::Null
                } else {
                    json!(set)
                }
            };
            json!({
                "Name": name,
                "Datacenter": dc,
                "Tags": list(sum.tags),
                "Nodes": list(sum.nodes),
                "ExternalSources": Value::Null,
                "InstanceCount": sum.instances,
                "ChecksPassing": count(Status::Passing),
                "ChecksWarning": count(Status::Warning),
                "ChecksCritical": count(Status::Critical),
                "GatewayConfig": {},
                "TransparentProxy": false,
                "ConnectNative": false,
                "ConnectedWithProxy": false,
                "ConnectedWithGateway": false,
            })
        })
        .collect();
    Ok(with_index(
        index,
        s.state.store.known_leader(),
        Value::Array(body),
    ))
}

fn summarize_node(s: &ApiState, n: &NodeView, out: &mut BTreeMap<String, Summary>) {
    let Some(entry) = s.state.catalog.node(n.name()) else {
        return;
    };
    let record = &entry.record;
    let serf = n.member().map(|_| {
        let st = if n.serf_passing() {
            Status::Passing
        } else {
            Status::Critical
        };
        ("serfHealth".to_owned(), st)
    });
    for svc in &record.services {
        let sum = out.entry(svc.name.clone()).or_default();
        sum.instances += 1;
        sum.nodes.insert(n.name().to_owned());
        sum.tags.extend(svc.tags.iter().cloned());
        let own = record
            .checks
            .iter()
            .filter(|c| c.service_id.is_empty() || c.service_id == svc.id)
            .map(|c| (c.id.clone(), c.status()));
        for (id, st) in serf.clone().into_iter().chain(own) {
            sum.checks.insert((n.name().to_owned(), id), st);
        }
    }
}
