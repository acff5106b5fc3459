//! `/v1/session/*`: sessions in the servers' store (create, destroy, renew at the leader, and reads by
//! consistency mode that can block).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::ApiState;
use super::blocking::{meta, store_read};
use super::body::Body;
use super::error::{ApiError, ApiResult, bad_request, server_error, store_error};
use super::params::{Params, check_dc};
use crate::state::replicated::{Change, Query as StoreQuery, ReadAnswer};
use crate::state::sessions::{
    Session, SessionHealth, SessionOp, SessionQuery, SessionRequestError,
};

/// A session as Consul shows it (api.SessionEntry).
fn session_json(s: &Session) -> Value {
    let service_checks: Option<Vec<Value>> = (!s.service_checks.is_empty()).then(|| {
        s.service_checks
            .iter()
            .map(|c| json!({"ID": c.id, "Namespace": c.namespace}))
            .collect()
    });
    json!({
        "ID": s.id,
        "Name": s.name,
        "Node": s.node,
        "LockDelay": s.lock_delay.as_nanos() as u64,
        "Behavior": s.behavior.as_str(),
        "TTL": s.ttl,
        "NodeChecks": s.node_checks,
        "ServiceChecks": service_checks,
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    })
}

/// Refuses a session whose node or checks are missing or critical, with Consul's texts.
fn check_health(s: &ApiState, session: &Session) -> Result<(), ApiError> {
    let member = s.state.members.get(&session.node);
    let record = s.state.catalog.node(&session.node);
    match session.health(member.as_deref(), record.as_ref().map(|r| &r.record)) {
        SessionHealth::Healthy => Ok(()),
        SessionHealth::MissingNode => Err(server_error("Missing node registration")),
        SessionHealth::MissingCheck(id) => {
            Err(server_error(format!("Missing check '{id}' registration")))
        }
        SessionHealth::Critical(id) => {
            Err(server_error(format!("Check '{id}' is in critical state")))
        }
    }
}

pub(super) async fn create(
    State(s): State<ApiState>,
    Query(q): Params,
    Body(body): Body,
) -> ApiResult {
    check_dc(&s, &q)?;
    let parsed: Option<Value> = if body.is_empty() {
        None
    } else {
        Some(
            serde_json::from_slice(&body)
                .map_err(|e| bad_request(format!("Request decode failed: {e}")))?,
        )
    };
    let id = crate::util::entropy::uuid().map_err(server_error)?;
    let session = Session::from_request(parsed.as_ref(), id.clone(), &s.state.local.node_name)
        .map_err(|e| match e {
            SessionRequestError::Decode(m) => bad_request(format!("Request decode failed: {m}")),
            SessionRequestError::Invalid(m) => server_error(m),
        })?;
    check_health(&s, &session)?;
    s.state
        .store
        .write(Change::Session(SessionOp::Create(session)))
        .await
        .map_err(store_error)?;
    Ok(axum::Json(json!({ "ID": id })).into_response())
}

pub(super) async fn destroy(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult {
    check_dc(&s, &q)?;
    if id.is_empty() {
        return Err(bad_request("Missing session"));
    }
    s.state
        .store
        .write(Change::Session(SessionOp::Destroy { id }))
        .await
        .map_err(store_error)?;
    Ok(axum::Json(true).into_response())
}

pub(super) async fn renew(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult {
    check_dc(&s, &q)?;
    match s.state.store.renew(id.clone()).await.map_err(store_error)? {
        Some(session) => Ok(axum::Json(json!([session_json(&session)])).into_response()),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("Session id '{id}' not found"),
        )),
    }
}

async fn list(s: &ApiState, q: &HashMap<String, String>, query: SessionQuery) -> ApiResult {
    check_dc(s, q)?;
    let r = store_read(&s.state, q, StoreQuery::Session(query)).await?;
    let ReadAnswer::Sessions(sessions) = r.answer else {
        return Err(server_error("a server answered a session read with keys"));
    };
    let body: Vec<Value> = sessions.iter().map(session_json).collect();
    Ok((
        meta(r.index, r.known_leader, r.last_contact_ms),
        axum::Json(Value::Array(body)),
    )
        .into_response())
}

pub(super) async fn info(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult {
    list(&s, &q, SessionQuery::Info(id)).await
}

pub(super) async fn node(
    State(s): State<ApiState>,
    Path(node): Path<String>,
    Query(q): Params,
) -> ApiResult {
    if node.is_empty() {
        return Err(bad_request("Missing node name"));
    }
    list(&s, &q, SessionQuery::Node(node)).await
}

pub(super) async fn all(State(s): State<ApiState>, Query(q): Params) -> ApiResult {
    list(&s, &q, SessionQuery::List).await
}
