//! `/v1/health/*`: checks by node, by service and by state, and service instances with their health
//! (`?passing`), each node's `serfHealth` included. Service reads block on their own service only.

use axum::extract::{Path, Query, State};
use serde_json::{Value, json};

use super::ApiState;
use super::blocking::{Blocking, cached, with_index};
use super::catalog::{node_read, service_read, visible};
use super::error::{ApiResult, bad_request};
use super::filter::{self, Filter, Shape};
use super::json::{catalog_node, health_check, node_service, serf_health};
use super::listing;
use super::params::{Params, bool_param, check_conflicts, check_dc};
use crate::state::catalog::Instance;
use crate::state::catalog_node::NodeView;
use crate::state::definitions::Status;

/// An instance's checks: a member's `serfHealth`, then the node's and the service's published ones.
fn instance_checks(n: &NodeView, i: &Instance) -> Vec<Value> {
    let idx = (i.create_index, i.modify_index);
    n.member()
        .map(serf_health)
        .into_iter()
        .chain(i.checks.iter().map(|c| {
            let own = (c.service_id == i.service.id).then_some(&i.service);
            health_check(n.name(), c, own, idx)
        }))
        .collect()
}

fn all_passing(n: &NodeView, i: &Instance) -> bool {
    n.serf_passing() && i.checks.iter().all(|c| c.status() == Status::Passing)
}

pub(super) async fn service(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Params,
) -> ApiResult {
    check_conflicts(&q)?;
    let filter = Filter::for_listing(&q, Shape::CheckServiceNode)?;
    let passing =
        bool_param(&q, "passing").ok_or_else(|| bad_request("Invalid value for ?passing"))?;
    let entries = service_read(&s, &name, &q).await?;
    let body: Vec<Value> = visible(&s, &entries.instances, &q)
        .filter(|(m, i)| !passing || all_passing(m, i))
        .map(|(m, i)| {
            json!({
                "Node": catalog_node(&m),
                "Service": node_service(&i.service, (i.create_index, i.modify_index)),
                "Checks": instance_checks(&m, i),
            })
        })
        .collect();
    let response = listing::respond(&s, &q, filter, body, entries.index).await?;
    Ok(cached(&q, response))
}

pub(super) async fn checks(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let filter = Filter::for_listing(&q, Shape::HealthCheck)?;
    let entries = service_read(&s, &name, &q).await?;
    let body: Vec<Value> = visible(&s, &entries.instances, &q)
        .flat_map(|(m, i)| {
            i.checks
                .iter()
                .filter(|c| c.service_id == i.service.id)
                .map(|c| {
                    health_check(
                        m.name(),
                        c,
                        Some(&i.service),
                        (i.create_index, i.modify_index),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    listing::respond(&s, &q, filter, body, entries.index).await
}

/// Every check of one node, a member's `serfHealth` first.
pub(super) fn node_checks(s: &ApiState, n: &NodeView) -> Vec<Value> {
    let mut out: Vec<Value> = n.member().map(serf_health).into_iter().collect();
    if let Some(e) = s.state.catalog.node(n.name()) {
        for c in &e.record.checks {
            let service = e.record.services.iter().find(|x| x.id == c.service_id);
            out.push(health_check(
                n.name(),
                c,
                service,
                (e.create_index, e.modify_index),
            ));
        }
    }
    out
}

pub(super) async fn node(
    State(s): State<ApiState>,
    Path(node): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let filter = Filter::for_listing(&q, Shape::HealthCheck)?;
    let index = node_read(&s, &node, &q).await?;
    let body: Vec<Value> = s
        .state
        .catalog_nodes()
        .get(&node)
        .iter()
        .flat_map(|n| node_checks(&s, n))
        .collect();
    let body = filter::keep(&filter, body)?;
    Ok(with_index(
        index,
        s.state.store.known_leader(),
        Value::Array(body),
    ))
}

pub(super) async fn state(
    State(s): State<ApiState>,
    Path(state): Path<String>,
    Query(q): Params,
) -> ApiResult {
    check_dc(&s, &q)?;
    // Consul does not check the state: one it does not know matches no check.
    let wanted = match state.as_str() {
        "any" => None,
        other => Some(Status::parse(other)),
    };
    let filter = Filter::for_listing(&q, Shape::HealthCheck)?;
    let (index, snap) = Blocking::from_query(&q)?.nodes(&s.state).await;
    let body: Vec<Value> = s
        .state
        .catalog_nodes()
        .all(&snap)
        .iter()
        .flat_map(|n| node_checks(&s, n))
        .filter(|c| wanted.is_none_or(|w| w.is_some_and(|w| c["Status"] == w.as_str())))
        .collect();
    listing::respond(&s, &q, filter, body, index).await
}
