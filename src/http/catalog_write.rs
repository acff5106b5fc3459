//! `PUT /v1/catalog/register` and `/v1/catalog/deregister`: external nodes, services and checks,
//! written through the servers' log. A gossip member's services and checks belong to its agent
//! (`/v1/agent/service/register`), so the catalog endpoints refuse to write under a member's name.

use axum::extract::{Query, State};
use axum::response::IntoResponse;

use super::ApiState;
use super::body::Body;
use super::error::{ApiError, ApiResult, bad_request, server_error, store_error};
use super::params::{Params, check_dc, json_body};
use crate::state::external::CatalogOp;
use crate::state::registration;
use crate::state::replicated::Change;

/// The operation a body asks for, after Consul's checks and murmur's own: this datacenter only, no
/// member's name.
fn operation(
    s: &ApiState,
    q: &std::collections::HashMap<String, String>,
    raw: &[u8],
    parse: impl Fn(&serde_json::Value) -> Result<CatalogOp, crate::state::definitions::DefinitionError>,
) -> Result<CatalogOp, ApiError> {
    check_dc(s, q)?;
    let v = json_body(raw)?;
    let dc = registration::datacenter(&v).map_err(|e| bad_request(e.0))?;
    if dc.is_some_and(|dc| dc != s.state.local.datacenter) {
        return Err(server_error("No path to datacenter"));
    }
    let op = parse(&v).map_err(|e| bad_request(e.0))?;
    let member = s.state.members.get(op.node());
    if member.is_some_and(|m| m.status != crate::state::MemberStatus::Left) {
        return Err(bad_request(format!(
            "Node {:?} is a member of the cluster: its agent owns its catalog entries \
             (register with its /v1/agent/service/register; remove a dead node with force-leave)",
            op.node()
        )));
    }
    Ok(op)
}

/// Longest wait for this agent's mirror to show a write before answering.
const MIRROR_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Commits `op`; answers once this agent's own reads show it, as Consul's do (its reads go to the
/// leader), or after [`MIRROR_WAIT`].
async fn write(s: &ApiState, op: CatalogOp) -> ApiResult {
    let written = s
        .state
        .store
        .write(Change::Catalog(op))
        .await
        .map_err(store_error)?;
    // `ok` is false for a write that changed nothing: there is nothing to wait for.
    if written.ok {
        let deadline = tokio::time::Instant::now() + MIRROR_WAIT;
        if !s.state.catalog.wait_mirrored(written.index, deadline).await {
            tracing::debug!(
                "catalog write at index {} not yet mirrored here after {MIRROR_WAIT:?}",
                written.index
            );
        }
    }
    Ok(axum::Json(true).into_response())
}

pub(super) async fn register(
    State(s): State<ApiState>,
    Query(q): Params,
    Body(raw): Body,
) -> ApiResult {
    let dc = s.state.local.datacenter.clone();
    let op = operation(&s, &q, &raw, |v| registration::register(v, &dc))?;
    write(&s, op).await
}

pub(super) async fn deregister(
    State(s): State<ApiState>,
    Query(q): Params,
    Body(raw): Body,
) -> ApiResult {
    let op = operation(&s, &q, &raw, registration::deregister)?;
    write(&s, op).await
}
