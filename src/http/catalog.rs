//! `/v1/catalog/*`: nodes (blocking), one node with its services, datacenters.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ApiState;
use super::blocking::{Blocking, with_meta};
use super::error::ApiResult;
use super::json::{catalog_node, consul_service, in_catalog};
use super::params::{Params, check_dc};
use crate::state::servers;

pub(super) async fn catalog_nodes(State(s): State<ApiState>, Query(q): Params) -> ApiResult {
    check_dc(&s, &q)?;
    let snap = Blocking::from_query(&q)?.members(&s.state).await;
    let nodes: Vec<Value> = snap
        .members
        .iter()
        .filter(|m| in_catalog(m, &s.state.local.datacenter))
        .map(|m| catalog_node(m))
        .collect();
    Ok(with_meta(&snap, Value::Array(nodes)))
}

pub(super) async fn catalog_node_one(
    State(s): State<ApiState>,
    Path(node): Path<String>,
    Query(q): Params,
) -> ApiResult {
    check_dc(&s, &q)?;
    let snap = Blocking::from_query(&q)?.members(&s.state).await;
    let found = snap
        .members
        .iter()
        .find(|m| *m.name == *node && in_catalog(m, &s.state.local.datacenter));
    let body = match found {
        None => Value::Null,
        Some(m) => {
            let mut services = serde_json::Map::new();
            if m.is_server() {
                let rpc = servers::rpc_addr(m, s.state.local.server_port);
                services.insert("consul".into(), consul_service(rpc.port()));
            }
            json!({ "Node": catalog_node(m), "Services": services })
        }
    };
    Ok(with_meta(&snap, body))
}

pub(super) async fn datacenters(State(s): State<ApiState>) -> Response {
    axum::Json(vec![s.state.local.datacenter.clone()]).into_response()
}
