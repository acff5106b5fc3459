//! `/v1/coordinate/*`: the network coordinates agents report to the servers (read with Consul's
//! blocking and consistency modes), and `PUT /v1/coordinate/update`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiState;
use super::blocking::{meta, store_read};
use super::body::Body;
use super::error::{ApiError, ApiResult, bad_request, server_error, store_error};
use super::params::{Params, check_dc, json_body};
use crate::state::coordinates::{Coord, CoordinateEntry, CoordinateOp, parse_update};
use crate::state::replicated::{Change, Query as StoreQuery, ReadAnswer};

/// Consul's refusal when the agent runs with `disable_coordinates`.
fn enabled(s: &ApiState) -> Result<(), ApiError> {
    if s.state.local.coordinates {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "Coordinate support disabled".into(),
        ))
    }
}

/// The coordinates of catalog nodes (a node that left keeps its row until the leader prunes it),
/// filtered by `?segment=` as Consul filters them, with the read's headers.
async fn read(
    s: &ApiState,
    q: &HashMap<String, String>,
) -> Result<(axum::http::HeaderMap, Vec<CoordinateEntry>), ApiError> {
    enabled(s)?;
    check_dc(s, q)?;
    let r = store_read(&s.state, q, StoreQuery::Coordinates).await?;
    let ReadAnswer::Coordinates(all) = r.answer else {
        return Err(server_error(crate::state::coordinates::UNEXPECTED));
    };
    let lookup = s.state.catalog_nodes();
    let segment = q.get("segment");
    let entries = all
        .into_iter()
        .filter(|e| segment.is_none_or(|seg| &e.segment == seg))
        .filter(|e| lookup.get(&e.node).is_some())
        .collect();
    Ok((meta(r.index, r.known_leader, r.last_contact_ms), entries))
}

/// `GET /v1/coordinate/nodes`.
pub(super) async fn nodes(State(s): State<ApiState>, Query(q): Params) -> ApiResult {
    let (headers, entries) = read(&s, &q).await?;
    Ok((headers, axum::Json(entries)).into_response())
}

/// `GET /v1/coordinate/node/:node`: 404 with an empty body when it has none, as Consul answers.
pub(super) async fn node(
    State(s): State<ApiState>,
    Path(node): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let (headers, mut entries) = read(&s, &q).await?;
    entries.retain(|e| e.node == node);
    if entries.is_empty() {
        return Ok((StatusCode::NOT_FOUND, headers).into_response());
    }
    Ok((headers, axum::Json(entries)).into_response())
}

/// Servers' WAN coordinates by datacenter, from the WAN pool (node names without their `.DC`
/// suffix), as Consul lists them. A client asks a server of its datacenter; a server outside any WAN
/// pool lists its own datacenter's servers with their LAN coordinates.
pub(super) async fn datacenters(
    State(s): State<ApiState>,
    Query(q): Params,
    req: axum::extract::Request,
) -> ApiResult {
    enabled(&s)?;
    if let Some(r) = super::remote_dc::on_own_servers(&s, req).await? {
        return Ok(r);
    }
    let own = &s.state.local.datacenter;
    let Some(pool) = s.state.wan_pool() else {
        let (_, entries) = read(&s, &q).await?;
        let servers: Vec<&CoordinateEntry> = entries
            .iter()
            .filter(|e| s.state.members.get(&e.node).is_some_and(|m| m.is_server()))
            .collect();
        return Ok(axum::Json(
            json!([{"Datacenter": own, "AreaID": "WAN", "Coordinates": servers}]),
        )
        .into_response());
    };
    let coords = s.state.wan_coordinates().await;
    let maps: Vec<serde_json::Value> = pool
        .coordinates(&coords)
        .into_iter()
        .map(|(dc, servers)| {
            let entries: Vec<CoordinateEntry> = servers
                .iter()
                .map(|(node, c)| CoordinateEntry {
                    node: node.clone(),
                    segment: String::new(),
                    coord: Coord::from_core(c),
                })
                .collect();
            json!({"Datacenter": dc, "AreaID": "WAN", "Coordinates": entries})
        })
        .collect();
    Ok(axum::Json(maps).into_response())
}

/// `PUT /v1/coordinate/update`: 200 with an empty body, as Consul answers. An update for a node the
/// catalog does not hold is dropped, as Consul's state store drops it.
pub(super) async fn update(
    State(s): State<ApiState>,
    Query(q): Params,
    Body(raw): Body,
) -> Result<Response, ApiError> {
    enabled(&s)?;
    check_dc(&s, &q)?;
    let entry = parse_update(&json_body(&raw)?)
        .map_err(|e| bad_request(format!("Request decode failed: {e}")))?;
    entry
        .coord
        .check()
        .map_err(|e| server_error(e.to_string()))?;
    if s.state.catalog_nodes().get(&entry.node).is_none() {
        return Ok(StatusCode::OK.into_response());
    }
    s.state
        .store
        .write(Change::Coordinates(CoordinateOp::Update(vec![entry])))
        .await
        .map_err(store_error)?;
    Ok(StatusCode::OK.into_response())
}
