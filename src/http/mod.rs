//! HTTP: the Consul-compatible API the agent serves, and the small client the CLI uses to call it.
//!
//! One file per route family (`agent.rs`, `agent_services.rs`, `catalog.rs`, `health.rs`, `status.rs`,
//! `operator.rs`, `kv.rs`, `session.rs`, `txn.rs`, `snapshot.rs`); shared pieces in
//! `error.rs` (Consul's status codes and texts), `params.rs`, `blocking.rs` (`?index=&wait=` and the
//! `X-Consul-*` headers) and `json.rs` (Consul's JSON shapes). A new endpoint goes into its family's
//! file and one line of [`router`]. Handlers read and wait on [`crate::state`], never on the network.

mod agent;
mod agent_services;
mod blocking;
mod body;
mod catalog;
mod catalog_write;
pub mod client;
mod coordinate;
mod error;
mod event;
pub mod filter;
mod health;
mod internal_ui;
pub mod json;
mod kv;
mod listing;
pub mod metrics;
mod monitor;
mod near;
mod operator;
mod params;
pub mod remote_dc;
pub mod serve;
mod session;
mod snapshot;
mod status;
pub mod txn;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, put};
use tokio::sync::mpsc;

use crate::dns::server::DnsStats;
use crate::state::definitions::Status;
use crate::state::replicated::MAX_RESTORE_FILE;
use crate::state::{AgentState, KeyOp};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The agent's state.
    pub state: AgentState,
    /// Asks the agent to exit after `PUT /v1/agent/leave`.
    pub shutdown: mpsc::Sender<()>,
    /// DNS counters (shown in `/v1/agent/self`).
    pub dns: Arc<DnsStats>,
    /// Asks the agent to reload its configuration; the reply says whether it applied.
    pub reload: mpsc::Sender<tokio::sync::oneshot::Sender<Result<(), String>>>,
    /// Metrics settings and the HTTP requests counted.
    pub telemetry: Arc<metrics::Telemetry>,
    /// The agent's log, for `/v1/agent/monitor`.
    pub logs: Arc<crate::util::log_tap::LogTap>,
}

/// Builds the router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/agent/members", get(agent::members))
        .route(
            "/v1/kv/{*key}",
            get(|s, k, q| kv::get(s, Some(k), q))
                .put(|s, k, q, h, b| kv::put(s, Some(k), q, h, b))
                .delete(|s, k, q| kv::delete(s, Some(k), q)),
        )
        .route("/v1/txn", put(txn::txn))
        .route("/v1/session/create", put(session::create))
        .route("/v1/session/destroy/{id}", put(session::destroy))
        .route("/v1/session/renew/{id}", put(session::renew))
        .route("/v1/session/info/{id}", get(session::info))
        .route("/v1/session/node/{node}", get(session::node))
        .route("/v1/session/list", get(session::all))
        .route(
            "/v1/kv/",
            get(|s, q| kv::get(s, None, q))
                .put(|s, q, h, b| kv::put(s, None, q, h, b))
                .delete(|s, q| kv::delete(s, None, q)),
        )
        .route("/v1/agent/self", get(agent::agent_self))
        .route("/v1/agent/metrics", get(metrics::metrics))
        .route("/v1/agent/monitor", get(monitor::monitor))
        .route("/v1/agent/join/{address}", put(agent::join))
        .route("/v1/agent/leave", put(agent::leave))
        .route("/v1/agent/reload", put(agent::reload))
        .route("/v1/agent/force-leave/{node}", put(agent::force_leave))
        .route("/v1/agent/services", get(agent_services::services))
        .route("/v1/agent/service/{id}", get(agent_services::service))
        .route(
            "/v1/agent/service/register",
            put(agent_services::register_service),
        )
        .route(
            "/v1/agent/service/deregister/{id}",
            put(agent_services::deregister_service),
        )
        .route("/v1/agent/checks", get(agent_services::checks))
        .route(
            "/v1/agent/check/register",
            put(agent_services::register_check),
        )
        .route(
            "/v1/agent/check/deregister/{id}",
            put(agent_services::deregister_check),
        )
        .route(
            "/v1/agent/check/pass/{id}",
            put(|s, p, q| agent_services::report(Status::Passing, s, p, q)),
        )
        .route(
            "/v1/agent/check/warn/{id}",
            put(|s, p, q| agent_services::report(Status::Warning, s, p, q)),
        )
        .route(
            "/v1/agent/check/fail/{id}",
            put(|s, p, q| agent_services::report(Status::Critical, s, p, q)),
        )
        .route("/v1/agent/check/update/{id}", put(agent_services::update))
        .route(
            "/v1/agent/maintenance",
            put(agent_services::node_maintenance),
        )
        .route(
            "/v1/agent/service/maintenance/{id}",
            put(agent_services::service_maintenance),
        )
        .route(
            "/v1/agent/service/maintenance/",
            put(async || error::bad_request("Missing service ID")),
        )
        .route("/v1/catalog/register", put(catalog_write::register))
        .route("/v1/catalog/deregister", put(catalog_write::deregister))
        .route("/v1/catalog/nodes", get(catalog::catalog_nodes))
        .route("/v1/catalog/node/{node}", get(catalog::catalog_node_one))
        .route("/v1/catalog/datacenters", get(catalog::datacenters))
        .route("/v1/catalog/services", get(catalog::catalog_services))
        .route("/v1/catalog/service/{name}", get(catalog::catalog_service))
        .route(
            "/v1/catalog/node-services/{node}",
            get(catalog::node_services),
        )
        .route("/v1/health/service/{name}", get(health::service))
        .route("/v1/health/checks/{name}", get(health::checks))
        .route("/v1/health/node/{node}", get(health::node))
        .route("/v1/health/state/{state}", get(health::state))
        .route("/v1/internal/ui/nodes", get(internal_ui::nodes))
        .route("/v1/internal/ui/services", get(internal_ui::services))
        .route("/v1/coordinate/nodes", get(coordinate::nodes))
        .route("/v1/coordinate/node/{node}", get(coordinate::node))
        .route("/v1/coordinate/datacenters", get(coordinate::datacenters))
        .route("/v1/coordinate/update", put(coordinate::update))
        .route("/v1/event/fire/", put(event::missing_name))
        .route("/v1/event/fire/{name}", put(event::fire))
        .route("/v1/event/list", get(event::list))
        .route("/v1/status/leader", get(status::leader))
        .route("/v1/status/peers", get(status::peers))
        .route(
            "/v1/operator/raft/configuration",
            get(operator::raft_configuration),
        )
        .route("/v1/operator/raft/peer", delete(operator::remove_peer))
        .route(
            "/v1/operator/autopilot/health",
            get(operator::autopilot_health),
        )
        .route(
            "/v1/snapshot",
            get(snapshot::save)
                .put(snapshot::restore)
                .layer(DefaultBodyLimit::max(MAX_RESTORE_FILE)),
        )
        .route(
            "/v1/operator/keyring",
            get(operator::list)
                .post(|s, b| operator::change(s, KeyOp::Install, b))
                .put(|s, b| operator::change(s, KeyOp::Use, b))
                .delete(|s, b| operator::change(s, KeyOp::Remove, b)),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            remote_dc::forward_dc,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::record,
        ))
        .layer(axum::middleware::from_fn(error::name_refused_method))
        .with_state(state)
}
