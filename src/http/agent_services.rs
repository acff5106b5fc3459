//! `/v1/agent/service*` and `/v1/agent/check*`: this agent's own services and checks, in Consul's
//! shapes, status codes and error texts.

use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

use super::ApiState;
use super::blocking::{Blocking, Held};
use super::body::Body;
use super::error::{ApiError, ApiResult, bad_request, server_error};
use super::filter::{self, Filter};
use super::params::{Params, json_body};
use crate::state::definitions::{self, ServiceDef, Status};
use crate::state::local_services::{CheckState, RegistryError, Source, TtlError};
use crate::state::maintenance::MaintenanceError;
use crate::util::flags::parse_go_bool;

fn agent_service(s: &ApiState, d: &ServiceDef) -> Value {
    let v = json!({
        "ID": d.id,
        "Service": d.name,
        "Tags": d.tags,
        "Meta": d.meta,
        "Port": d.port,
        "Address": d.address,
        "TaggedAddresses": d.tagged_addresses,
        "Weights": {"Passing": d.weights.0, "Warning": d.weights.1},
        "EnableTagOverride": d.enable_tag_override,
        "Datacenter": s.state.local.datacenter,
    });
    super::json::omit_empty(v, "TaggedAddresses")
}

fn agent_check(s: &ApiState, c: &CheckState) -> Value {
    let service = c
        .def
        .service_id
        .as_deref()
        .and_then(|id| s.state.services.service(id));
    json!({
        "Node": s.state.local.node_name,
        "CheckID": c.def.id,
        "Name": c.def.name,
        "Status": c.status.as_str(),
        "Notes": c.def.notes,
        "Output": c.output,
        "ServiceID": c.def.service_id.clone().unwrap_or_default(),
        "ServiceName": service.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
        "ServiceTags": service.map(|s| s.tags).unwrap_or_default(),
        "Type": c.def.kind.type_name(),
        "Interval": go_duration(c.def.schedule.interval),
        "Timeout": go_duration(c.def.schedule.timeout),
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": 0,
        "ModifyIndex": 0,
    })
}

/// A duration as Go prints it for these fields ("" for none, "10s", "1m30s", "500ms").
fn go_duration(d: std::time::Duration) -> String {
    if d.is_zero() {
        return String::new();
    }
    crate::util::duration::go_string(d)
}

pub(super) async fn services(State(s): State<ApiState>, Query(q): Params) -> ApiResult {
    let filter = Filter::from_query(&q)?;
    let map: Map<String, Value> = s
        .state
        .services
        .services()
        .iter()
        .map(|d| (d.id.clone(), agent_service(&s, d)))
        .collect();
    Ok(axum::Json(filter::keep_values(&filter, map)?).into_response())
}

/// A hash of a service's JSON, as Consul's `ContentHash`: 16 hex digits that change with any field.
fn content_hash(v: &Value) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, v.to_string().as_bytes());
    crate::util::hex::lower(&digest.as_ref()[..8])
}

/// `GET /v1/agent/service/:id[?hash=&wait=]`: with `ContentHash` (and the `X-Consul-ContentHash`
/// header); given the hash it has, the call blocks until the service changes or the wait runs out.
pub(super) async fn service(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let wait = Blocking::from_query(&q)?;
    let known = q.get("hash").filter(|h| !h.is_empty());
    let deadline = wait.deadline();
    let mut changes = s.state.services.generation.subscribe();
    loop {
        changes.mark_unchanged();
        let d =
            s.state.services.service(&id).ok_or_else(|| {
                ApiError(StatusCode::NOT_FOUND, format!("unknown service ID: {id}"))
            })?;
        let mut v = agent_service(&s, &d);
        let hash = content_hash(&v);
        let now = tokio::time::Instant::now();
        if known != Some(&hash) || now >= deadline {
            v["ContentHash"] = Value::String(hash.clone());
            let mut r = axum::Json(v).into_response();
            if let Ok(h) = axum::http::HeaderValue::from_str(&hash) {
                r.headers_mut().insert("X-Consul-ContentHash", h);
            }
            return Ok(r);
        }
        let _held = Held::enter();
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return Err(server_error("agent shutting down")) },
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

pub(super) async fn register_service(State(s): State<ApiState>, Body(raw): Body) -> ApiResult {
    let (def, checks) =
        definitions::api_service(&json_body(&raw)?).map_err(|e| bad_request(e.0))?;
    s.state
        .services
        .add_service(def, checks, Source::Api, Instant::now())
        .map_err(registry_error)?;
    Ok(StatusCode::OK.into_response())
}

pub(super) async fn deregister_service(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult {
    if !s.state.services.remove_service(&id).map_err(server_error)? {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
            ),
        ));
    }
    Ok(StatusCode::OK.into_response())
}

pub(super) async fn checks(State(s): State<ApiState>, Query(q): Params) -> ApiResult {
    let filter = Filter::from_query(&q)?;
    let map: Map<String, Value> = s
        .state
        .services
        .checks()
        .iter()
        .map(|c| (c.def.id.clone(), agent_check(&s, c)))
        .collect();
    Ok(axum::Json(filter::keep_values(&filter, map)?).into_response())
}

pub(super) async fn register_check(State(s): State<ApiState>, Body(raw): Body) -> ApiResult {
    let def = definitions::check(&json_body(&raw)?).map_err(|e| bad_request(e.0))?;
    s.state
        .services
        .add_check(def, Source::Api, Instant::now())
        .map_err(registry_error)?;
    Ok(StatusCode::OK.into_response())
}

pub(super) async fn deregister_check(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult {
    if !s.state.services.remove_check(&id).map_err(server_error)? {
        return Err(ttl_error(TtlError::Unknown(id)));
    }
    Ok(StatusCode::OK.into_response())
}

/// A check naming a missing service is a 404 (Consul's `AgentRegisterCheck`), one too large to
/// publish the caller's mistake; the rest are Consul's plain 500s.
fn registry_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::NoService(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
        RegistryError::TooLarge(_) => bad_request(e.to_string()),
        _ => server_error(e.to_string()),
    }
}

fn ttl_error(e: TtlError) -> ApiError {
    let code = match e {
        TtlError::Unknown(_) => StatusCode::NOT_FOUND,
        // Consul returns its plain error: a 500.
        TtlError::NotTtl(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(code, e.to_string())
}

/// `PUT /v1/agent/check/{pass,warn,fail}/:id?note=`: the router gives each path its status.
pub(super) async fn report(
    status: Status,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let note = q.get("note").map(String::as_str).unwrap_or("");
    s.state
        .services
        .report(&id, status, note, Instant::now())
        .map_err(ttl_error)?;
    Ok(StatusCode::OK.into_response())
}

/// `PUT /v1/agent/check/update/:id` with `{"Status": "...", "Output": "..."}` (any case).
pub(super) async fn update(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Body(raw): Body,
) -> ApiResult {
    let v = json_body(&raw)?;
    let field = |k: &str| {
        v.as_object()
            .and_then(|o| o.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)))
            .and_then(|(_, v)| v.as_str())
    };
    let status_text = field("status").unwrap_or("");
    let status = Status::parse(status_text)
        .ok_or_else(|| bad_request(format!("Invalid check status: '{status_text}'")))?;
    s.state
        .services
        .report(&id, status, field("output").unwrap_or(""), Instant::now())
        .map_err(ttl_error)?;
    Ok(StatusCode::OK.into_response())
}

/// `?enable=true|false` as Consul reads it, with its error texts.
fn enable_param(q: &std::collections::HashMap<String, String>) -> Result<bool, ApiError> {
    match q.get("enable").map(String::as_str) {
        None | Some("") => Err(bad_request("Missing value for enable")),
        Some(v) => {
            parse_go_bool(v).ok_or_else(|| bad_request(format!("Invalid value for enable: {v:?}")))
        }
    }
}

fn maintenance(
    s: &ApiState,
    service: Option<&str>,
    q: &std::collections::HashMap<String, String>,
) -> ApiResult {
    let enable = enable_param(q)?;
    let services = &s.state.services;
    let r = if enable {
        let reason = q.get("reason").map(String::as_str).unwrap_or("");
        services.enable_maintenance(service, reason, Instant::now())
    } else {
        services.disable_maintenance(service)
    };
    match r {
        Ok(()) => Ok(StatusCode::OK.into_response()),
        Err(e @ MaintenanceError::NoService(_)) => {
            Err(ApiError(StatusCode::NOT_FOUND, e.to_string()))
        }
        Err(e) => Err(server_error(e.to_string())),
    }
}

/// `PUT /v1/agent/maintenance?enable=&reason=`.
pub(super) async fn node_maintenance(State(s): State<ApiState>, Query(q): Params) -> ApiResult {
    maintenance(&s, None, &q)
}

/// `PUT /v1/agent/service/maintenance/:id?enable=&reason=`.
pub(super) async fn service_maintenance(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult {
    maintenance(&s, Some(&id), &q)
}
