//! `/v1/agent/*`: members, the agent's own facts and counters, join, leave and force-leave.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ApiState;
use super::error::{ApiResult, server_error};
use super::json::agent_member;
use super::params::{Params, flag};
use crate::dns::server::DnsStats;
use crate::net::DriverStats;
use crate::version;

pub(super) async fn members(State(s): State<ApiState>, Query(q): Params) -> Response {
    let snap = if flag(&q, "wan") {
        // A client is in no WAN pool: it lists none, as Consul's clients do.
        match s.state.wan_pool() {
            Some(p) => p.members.snapshot(),
            None => return axum::Json(Vec::<Value>::new()).into_response(),
        }
    } else {
        s.state.members.snapshot()
    };
    let list: Vec<Value> = snap.members.iter().map(|m| agent_member(m)).collect();
    axum::Json(list).into_response()
}

pub(super) async fn agent_self(State(s): State<ApiState>) -> Response {
    let i = &s.state.local;
    let member = s.state.members.get(&i.node_name).map(|m| agent_member(&m));
    let stats = s.state.gossip_stats().await.unwrap_or_default();
    let c = &stats.core;
    let coord = s.state.coordinate().await;
    let wan = s.state.wan_stats().await;
    let body = json!({
        "Config": {
            "Datacenter": i.datacenter,
            "NodeName": i.node_name,
            "NodeID": i.node_id,
            "Server": i.server,
            "BootstrapExpect": i.bootstrap_expect,
            "Revision": version::REVISION,
            "Version": version::VERSION,
        },
        "Coord": coord,
        "Member": member,
        "Meta": {},
        "Stats": {
            "serf_lan": serf_stats(&stats),
            "serf_wan": wan.as_ref().map(serf_stats),
            "catalog": {
                "index": s.state.catalog.index().to_string(),
                "nodes_with_records": s.state.catalog.node_count().to_string(),
                "watched_services": s.state.catalog.watched_services().to_string(),
                "undecodable_records": s.state.catalog.undecodable.load(Ordering::Relaxed).to_string(),
                "records_applied": c.records_applied.to_string(),
                "record_pulls": c.record_pulls.to_string(),
                "record_patches_applied": c.record_patches_applied.to_string(),
                "record_patches_refused": c.record_patches_refused.to_string(),
                "record_news_sent": c.record_news_sent.to_string(),
                "records_passed_down": c.records_passed_down.to_string(),
                "records_passed_around": c.records_passed_around.to_string(),
                "pulls_answered": c.pulls_answered.to_string(),
                "pulls_dropped": c.pulls_dropped.to_string(),
                "record_fetches": c.record_fetches.to_string(),
                "records_unknown_member": c.records_unknown_member.to_string(),
                "dropped_untrusted_records": c.dropped_untrusted_records.to_string(),
                "records_refuted": c.records_refuted.to_string(),
            },
            "dns": dns_stats(&s.dns),
            "user_events": {
                "received": s.state.events.received.load(Ordering::Relaxed).to_string(),
                "undecodable": s.state.events.undecodable.load(Ordering::Relaxed).to_string(),
            },
            "push_pull": s.state.push_pull_stats().map(|st| {
                json!({
                    "served": st.served.load(Ordering::Relaxed).to_string(),
                    "refused_busy": st.refused_busy.load(Ordering::Relaxed).to_string(),
                    "failed_in": st.failed_in.load(Ordering::Relaxed).to_string(),
                })
            }),
        }
    });
    axum::Json(body).into_response()
}

/// A gossip pool's counters, in `Stats.serf_lan` and `Stats.serf_wan`.
fn serf_stats(stats: &DriverStats) -> Value {
    let c = &stats.core;
    json!({
        "members": stats.members.to_string(),
        "live": stats.live.to_string(),
        "health_score": stats.health_score.to_string(),
        "pending_broadcasts": stats.pending_broadcasts.to_string(),
        "packets_in": c.packets_in.to_string(),
        "packets_out": c.packets_out.to_string(),
        "bytes_in": c.bytes_in.to_string(),
        "bytes_out": c.bytes_out.to_string(),
        "dropped_malformed": c.dropped_malformed.to_string(),
        "dropped_version": c.dropped_version.to_string(),
        "dropped_oversize": (c.dropped_oversize + stats.dropped_truncated).to_string(),
        "dropped_relay_full": c.dropped_relay_full.to_string(),
        "dropped_sync_busy": c.dropped_sync_busy.to_string(),
        "refutes": c.refutes.to_string(),
        "probes_failed": c.probes_failed.to_string(),
        "declared_failed": c.declared_failed.to_string(),
        "send_errors": stats.send_errors.to_string(),
        "dropped_decrypt": stats.dropped_decrypt.to_string(),
        "dropped_plaintext": stats.dropped_plaintext.to_string(),
        "dropped_quic": stats.dropped_quic.to_string(),
        "dropped_untrusted_events": c.dropped_untrusted_events.to_string(),
        "dropped_implausible": c.dropped_implausible.to_string(),
        "coordinate_samples": c.coordinate_samples.to_string(),
        "coordinate_rejected": c.coordinate_rejected.to_string(),
    })
}

fn dns_stats(d: &DnsStats) -> serde_json::Value {
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
    json!({
        "queries": n(&d.queries),
        "cache_hits": n(&d.cache_hits),
        "formerr": n(&d.formerr),
        "dropped": n(&d.dropped),
        "forwarded": n(&d.forwarded),
        "responses_dropped": n(&d.responses_dropped),
        "tcp_refused": n(&d.tcp_refused),
        "remote": n(&d.remote),
        "remote_cache_hits": n(&d.remote_cache_hits),
    })
}

pub(super) async fn join(
    State(s): State<ApiState>,
    Path(address): Path<String>,
    Query(q): Params,
) -> ApiResult {
    if flag(&q, "wan") {
        if !s.state.local.server {
            // Consul's words, before anything else is tried.
            return Err(server_error("Must be a server to join WAN cluster"));
        }
        let port = s.state.local.serf_wan_port;
        let addr = crate::util::addr::resolve(&address, port)
            .await
            .map_err(server_error)?;
        s.state
            .join_wan(addr)
            .await
            .map_err(|e| server_error(format!("failed to join {addr} (WAN): {e}")))?;
        return Ok(StatusCode::OK.into_response());
    }
    let addr = crate::util::addr::resolve(&address, s.state.local.serf_lan_port)
        .await
        .map_err(server_error)?;
    s.state
        .join(addr)
        .await
        .map_err(|e| server_error(format!("failed to join {addr}: {e}")))?;
    Ok(StatusCode::OK.into_response())
}

pub(super) async fn leave(State(s): State<ApiState>) -> Response {
    s.state.leave().await;
    let _ = s.shutdown.try_send(());
    StatusCode::OK.into_response()
}

pub(super) async fn force_leave(
    State(s): State<ApiState>,
    Path(node): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let left = if flag(&q, "wan") {
        s.state.force_leave_wan(&node).await
    } else {
        s.state.force_leave(&node).await
    };
    left.map_err(|e| server_error(format!("force-leave {node:?}: {e}")))?;
    Ok(StatusCode::OK.into_response())
}

pub(super) async fn reload(State(s): State<ApiState>) -> ApiResult {
    let (reply, rx) = tokio::sync::oneshot::channel();
    s.reload
        .send(reply)
        .await
        .map_err(|_| server_error("agent is shutting down"))?;
    rx.await
        .map_err(|_| server_error("agent is shutting down"))?
        .map_err(|e| server_error(format!("Failed reloading config: {e}")))?;
    Ok(StatusCode::OK.into_response())
}
