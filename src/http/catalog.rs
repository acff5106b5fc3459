//! `/v1/catalog/*`: nodes (blocking), one node with its services, services and their instances (blocking
//! per service), datacenters.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::ApiState;
use super::blocking::{Blocking, cached, with_index};
use super::error::{ApiError, ApiResult};
use super::filter::{self, Filter, Shape};
use super::json::{catalog_node, node_service, service_node};
use super::listing;
use super::params::{Params, check_conflicts, check_dc};
use crate::state::Snapshot;
use crate::state::catalog::{Instance, ServiceEntries};
use crate::state::catalog_node::NodeView;

pub(super) async fn catalog_nodes(State(s): State<ApiState>, Query(q): Params) -> ApiResult {
    check_dc(&s, &q)?;
    let filter = Filter::for_listing(&q, Shape::Node)?;
    let (index, snap) = Blocking::from_query(&q)?.node_list(&s.state).await;
    let nodes: Vec<Value> = s
        .state
        .catalog_nodes()
        .all(&snap)
        .iter()
        .filter(|n| node_meta_matches(n, &q))
        .map(catalog_node)
        .collect();
    listing::respond(&s, &q, filter, nodes, index).await
}

/// The node's published services as NodeService values.
pub(super) fn services_of(s: &ApiState, node: &str) -> Vec<Value> {
    s.state.catalog.node(node).map_or_else(Vec::new, |e| {
        e.record
            .services
            .iter()
            .map(|svc| node_service(svc, (e.create_index, e.modify_index)))
            .collect()
    })
}

pub(super) async fn catalog_node_one(
    State(s): State<ApiState>,
    Path(node): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let filter = Filter::for_listing(&q, Shape::NodeService)?;
    let index = node_read(&s, &node, &q).await?;
    let body = match s.state.catalog_nodes().get(&node) {
        None => Value::Null,
        Some(m) => {
            let services: Map<String, Value> = services_of(&s, &node)
                .into_iter()
                .map(|v| (v["ID"].as_str().unwrap_or_default().to_owned(), v))
                .collect();
            let services = filter::keep_values(&filter, services)?;
            json!({ "Node": catalog_node(&m), "Services": services })
        }
    };
    Ok(with_index(index, s.state.store.known_leader(), body))
}

pub(super) async fn node_services(
    State(s): State<ApiState>,
    Path(node): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let filter = Filter::for_listing(&q, Shape::NodeService)?;
    let index = node_read(&s, &node, &q).await?;
    let body = match s.state.catalog_nodes().get(&node) {
        None => Value::Null,
        Some(m) => {
            let services = filter::keep(&filter, services_of(&s, &node))?;
            json!({ "Node": catalog_node(&m), "Services": services })
        }
    };
    Ok(with_index(index, s.state.store.known_leader(), body))
}

pub(super) async fn catalog_services(State(s): State<ApiState>, Query(q): Params) -> ApiResult {
    check_dc(&s, &q)?;
    check_conflicts(&q)?;
    let filter = Filter::for_listing(&q, Shape::ServiceNode)?;
    let blocking = Blocking::from_query(&q)?;
    let selective = filter.is_some() || q.contains_key("node-meta");
    let (index, listing) = if selective {
        // A filtered listing depends on every instance's fields and on their nodes, not only on the
        // names and tags: it waits on any catalog or member change.
        let (index, _) = blocking.nodes(&s.state).await;
        (index, s.state.catalog.listing())
    } else {
        let listing = blocking.listing(&s.state).await;
        (listing.index, listing)
    };
    let body: Map<String, Value> = if !selective {
        listing
            .services
            .iter()
            .map(|(name, tags)| (name.clone(), json!(tags)))
            .collect()
    } else {
        // `?node-meta` and the filter select instances (the filter by their ServiceNode fields, as
        // Consul's does); a name stays with the tags of the instances that pass.
        let mut out = Map::new();
        for name in listing.services.keys() {
            let entries = s.state.catalog.service(name);
            let mut tags = std::collections::BTreeSet::new();
            let mut any = false;
            for (m, i) in on_matching_nodes(&s, &entries.instances, &q) {
                let pass = match &filter {
                    Some(f) => f.matches(&service_node(&m, i))?,
                    None => true,
                };
                if pass {
                    any = true;
                    tags.extend(i.service.tags.iter().cloned());
                }
            }
            if any {
                out.insert(name.clone(), json!(tags));
            }
        }
        out
    };
    let response = with_index(index, s.state.store.known_leader(), Value::Object(body));
    Ok(cached(&q, response))
}

/// A (blocking) read of anything about nodes: the index and the members once the index passes `?index`.
pub(super) async fn nodes_read(
    s: &ApiState,
    q: &HashMap<String, String>,
) -> Result<(u64, Arc<Snapshot>), ApiError> {
    check_dc(s, q)?;
    Ok(Blocking::from_query(q)?.nodes(&s.state).await)
}

/// A (blocking) read of node `node` alone: its index once it passes `?index`.
pub(super) async fn node_read(
    s: &ApiState,
    node: &str,
    q: &HashMap<String, String>,
) -> Result<u64, ApiError> {
    check_dc(s, q)?;
    Ok(Blocking::from_query(q)?.node(&s.state, node).await)
}

/// A (blocking) read of service `name`: its entries once they pass `?index`.
pub(super) async fn service_read(
    s: &ApiState,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<Arc<ServiceEntries>, ApiError> {
    check_dc(s, q)?;
    Ok(Blocking::from_query(q)?.service(&s.state, name).await)
}

pub(super) async fn catalog_service(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Params,
) -> ApiResult {
    check_conflicts(&q)?;
    let filter = Filter::for_listing(&q, Shape::ServiceNode)?;
    let entries = service_read(&s, &name, &q).await?;
    let body: Vec<Value> = visible(&s, &entries.instances, &q)
        .map(|(m, i)| service_node(&m, i))
        .collect();
    let response = listing::respond(&s, &q, filter, body, entries.index).await?;
    Ok(cached(&q, response))
}

/// The instances a read shows: of nodes in this datacenter's catalog, with `?tag=` and `?node-meta=`
/// applied, each with its node.
///
/// Members are looked up in the table itself, not a published listing: the gossip driver writes a
/// member there before it applies the record events of the same batch, which wake these readers.
pub(super) fn visible<'a>(
    s: &'a ApiState,
    instances: &'a [Arc<Instance>],
    q: &'a HashMap<String, String>,
) -> impl Iterator<Item = (NodeView, &'a Instance)> + 'a {
    let tag = q.get("tag");
    on_matching_nodes(s, instances, q)
        .filter(move |(_, i)| tag.is_none_or(|t| i.service.tags.iter().any(|x| x == t)))
}

/// Like [`visible`] without `?tag`, which Consul's `/v1/catalog/services` ignores.
fn on_matching_nodes<'a>(
    s: &'a ApiState,
    instances: &'a [Arc<Instance>],
    q: &'a HashMap<String, String>,
) -> impl Iterator<Item = (NodeView, &'a Instance)> + 'a {
    let nodes = s.state.catalog_nodes();
    instances.iter().filter_map(move |i| {
        let n = nodes.get(&i.node)?;
        node_meta_matches(&n, q).then_some((n, &**i))
    })
}

/// `?node-meta=key:value`.
fn node_meta_matches(n: &NodeView, q: &HashMap<String, String>) -> bool {
    q.get("node-meta").is_none_or(|kv| {
        let (k, v) = kv.split_once(':').unwrap_or((kv, ""));
        n.meta_value(k) == Some(v)
    })
}

/// Every datacenter the WAN pool knows, this one first and the others nearest first. A client asks a server of its datacenter,
/// as Consul's clients do; a server outside any WAN pool knows only its own.
pub(super) async fn datacenters(
    State(s): State<ApiState>,
    req: axum::extract::Request,
) -> Response {
    match super::remote_dc::on_own_servers(&s, req).await {
        Ok(Some(r)) => return r,
        Err(e) => return e.into_response(),
        Ok(None) => {}
    }
    let own = &s.state.local.datacenter;
    let dcs = match s.state.wan_pool() {
        Some(pool) => pool.nearest_first(own, &s.state.wan_coordinates().await),
        None => vec![own.clone()],
    };
    axum::Json(dcs).into_response()
}
