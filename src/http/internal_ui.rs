//! `/v1/internal/ui/nodes` and `/v1/internal/ui/services`: the two summaries Consul's web UI reads (and
//! murmur's), each in one blocking request instead of one request per node or per service. Both wake on
//! any member or catalog change, since a node's status and every check count can move with either. A
//! `?filter` applies as in Consul: to each node (structs.NodeInfo), and to each service instance with
//! its node and checks (structs.CheckServiceNode) before the instances are summed up.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Query, State};
use serde_json::{Value, json};

use super::ApiState;
use super::blocking::with_index;
use super::catalog::{nodes_read, services_of};
use super::error::{ApiError, ApiResult};
use super::filter::{self, Filter, Shape};
use super::health::node_checks;
use super::json::{catalog_node, health_check, node_info, node_service, serf_health};
use super::params::Params;
use crate::state::catalog_node::NodeView;
use crate::state::definitions::Status;

/// Every node with its services and checks (structs.NodeInfo).
pub(super) async fn nodes(State(s): State<ApiState>, Query(q): Params) -> ApiResult {
    let filter = Filter::for_listing(&q, Shape::NodeInfo)?;
    let (index, snap) = nodes_read(&s, &q).await?;
    let body: Vec<Value> = s
        .state
        .catalog_nodes()
        .all(&snap)
        .iter()
        .map(|n| node_info(n, services_of(&s, n.name()), node_checks(&s, n)))
        .collect();
    Ok(with_index(
        index,
        s.state.store.known_leader(),
        Value::Array(filter::keep(&filter, body)?),
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
    let filter = Filter::for_listing(&q, Shape::CheckServiceNode)?;
    let (index, snap) = nodes_read(&s, &q).await?;
    let mut by_name: BTreeMap<String, Summary> = BTreeMap::new();
    for n in s.state.catalog_nodes().all(&snap) {
        summarize_node(&s, &n, filter.as_ref(), &mut by_name)?;
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

/// Adds node `n`'s service instances that pass `filter` to `out`.
fn summarize_node(
    s: &ApiState,
    n: &NodeView,
    filter: Option<&Filter>,
    out: &mut BTreeMap<String, Summary>,
) -> Result<(), ApiError> {
    let Some(entry) = s.state.catalog.node(n.name()) else {
        return Ok(());
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
        let own = || {
            record
                .checks
                .iter()
                .filter(|c| c.service_id.is_empty() || c.service_id == svc.id)
        };
        if let Some(f) = filter {
            // The instance as /v1/health/service/:name shows it.
            let idx = (entry.create_index, entry.modify_index);
            let checks: Vec<Value> = n
                .member()
                .map(serf_health)
                .into_iter()
                .chain(own().map(|c| {
                    let service = (c.service_id == svc.id).then_some(svc);
                    health_check(n.name(), c, service, idx)
                }))
                .collect();
            let instance = json!({
                "Node": catalog_node(n),
                "Service": node_service(svc, idx),
                "Checks": checks,
            });
            if !f.matches(&instance)? {
                continue;
            }
        }
        let sum = out.entry(svc.name.clone()).or_default();
        sum.instances += 1;
        sum.nodes.insert(n.name().to_owned());
        sum.tags.extend(svc.tags.iter().cloned());
        for (id, st) in serf
            .clone()
            .into_iter()
            .chain(own().map(|c| (c.id.clone(), c.status())))
        {
            sum.checks.insert((n.name().to_owned(), id), st);
        }
    }
    Ok(())
}
