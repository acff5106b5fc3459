//! The Consul-compatible HTTP API (`/v1/agent/*`, `/v1/catalog/*`, `/v1/status/*`) served by axum.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::json::{agent_member, catalog_node, consul_service, in_catalog};
use crate::dns::server::DnsStats;
use crate::net::crypto;
use crate::net::udp::{GossipHandle, KeyOp};
use crate::table::{MemberRecord, MemberStatus, MemberTable, Snapshot};
use crate::version;

/// Facts about the local agent the API reports.
#[derive(Debug, Clone)]
pub struct AgentInfo {
    /// Node name.
    pub node_name: String,
    /// Node ID (UUID).
    pub node_id: String,
    /// Datacenter.
    pub datacenter: String,
    /// Server mode.
    pub server: bool,
    /// bootstrap_expect (0 = unset).
    pub bootstrap_expect: u32,
    /// Advertised gossip address.
    pub advertise: SocketAddr,
    /// Server RPC port advertised in tags.
    pub server_port: u16,
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct ApiState {
    /// Member table.
    pub table: Arc<MemberTable>,
    /// Gossip commands.
    pub gossip: GossipHandle,
    /// Local facts.
    pub info: Arc<AgentInfo>,
    /// Asks the agent to exit after `PUT /v1/agent/leave`.
    pub shutdown: mpsc::Sender<()>,
    /// DNS counters.
    pub dns: Arc<DnsStats>,
}

/// Builds the router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/agent/members", get(members))
        .route("/v1/agent/self", get(agent_self))
        .route("/v1/agent/join/{address}", put(join))
        .route("/v1/agent/leave", put(leave))
        .route("/v1/agent/force-leave/{node}", put(force_leave))
        .route("/v1/catalog/nodes", get(catalog_nodes))
        .route("/v1/catalog/node/{node}", get(catalog_node_one))
        .route("/v1/catalog/datacenters", get(datacenters))
        .route("/v1/status/leader", get(status_leader))
        .route("/v1/status/peers", get(status_peers))
        .route(
            "/v1/operator/keyring",
            get(keyring_list)
                .post(|s, b| keyring_op(s, KeyOp::Install, b))
                .put(|s, b| keyring_op(s, KeyOp::Use, b))
                .delete(|s, b| keyring_op(s, KeyOp::Remove, b)),
        )
        .with_state(state)
}

type Params = Query<HashMap<String, String>>;

/// A Consul-style error: status code and a plain-text reason.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn server_error(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, msg.into())
}

type ApiResult = Result<Response, ApiError>;

fn flag_param(q: &HashMap<String, String>, k: &str) -> bool {
    // Consul treats a present key as true unless it is explicitly "0"/"false".
    q.get(k).is_some_and(|v| v != "0" && v != "false")
}

async fn members(State(s): State<ApiState>, Query(q): Params) -> Response {
    if flag_param(&q, "wan") {
        // No WAN pool exists yet: a single datacenter has nothing to list there.
        return axum::Json(Vec::<Value>::new()).into_response();
    }
    let snap = s.table.snapshot();
    let list: Vec<Value> = snap.members.iter().map(|m| agent_member(m)).collect();
    axum::Json(list).into_response()
}

async fn agent_self(State(s): State<ApiState>) -> Response {
    let i = &s.info;
    let member = s.table.get(&i.node_name).map(|m| agent_member(&m));
    let stats = s.gossip.stats().await.unwrap_or_default();
    let c = &stats.core;
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
        "Member": member,
        "Meta": {},
        "Stats": {
            "serf_lan": {
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
            },
            "dns": dns_stats(&s.dns),
            "push_pull": s.gossip.quic().map(|q| {
                let st = &q.stats;
                json!({
                    "served": st.served.load(std::sync::atomic::Ordering::Relaxed).to_string(),
                    "refused_busy": st.refused_busy.load(std::sync::atomic::Ordering::Relaxed).to_string(),
                    "failed_in": st.failed_in.load(std::sync::atomic::Ordering::Relaxed).to_string(),
                })
            }),
        }
    });
    axum::Json(body).into_response()
}

fn dns_stats(d: &DnsStats) -> serde_json::Value {
    let n =
        |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed).to_string();
    json!({
        "queries": n(&d.queries),
        "cache_hits": n(&d.cache_hits),
        "formerr": n(&d.formerr),
        "dropped": n(&d.dropped),
        "forwarded": n(&d.forwarded),
        "responses_dropped": n(&d.responses_dropped),
        "tcp_refused": n(&d.tcp_refused),
    })
}

/// Resolves `host`, `host:port`, `ip` or `[v6]:port`; the port defaults to Consul's serf LAN port 8301.
pub async fn resolve_join_addr(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = addr.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 8301));
    }
    let with_port = if addr
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        addr.to_string()
    } else {
        format!("{addr}:8301")
    };
    tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| format!("cannot resolve {addr:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {addr:?}: no addresses"))
}

async fn join(
    State(s): State<ApiState>,
    Path(address): Path<String>,
    Query(q): Params,
) -> ApiResult {
    if flag_param(&q, "wan") {
        return Err(server_error(
            "WAN join is not supported: murmur has no WAN pool yet",
        ));
    }
    let addr = resolve_join_addr(&address).await.map_err(server_error)?;
    s.gossip
        .join(addr)
        .await
        .map_err(|e| server_error(format!("failed to join {addr}: {e}")))?;
    Ok(StatusCode::OK.into_response())
}

async fn leave(State(s): State<ApiState>) -> Response {
    s.gossip.leave().await;
    let _ = s.shutdown.try_send(());
    StatusCode::OK.into_response()
}

async fn force_leave(State(s): State<ApiState>, Path(node): Path<String>) -> ApiResult {
    s.gossip
        .force_leave(&node)
        .await
        .map_err(|e| server_error(format!("force-leave {node:?}: {e}")))?;
    Ok(StatusCode::OK.into_response())
}

/// Parsed `?index=&wait=` of a blocking query.
struct Blocking {
    index: Option<u64>,
    wait: Duration,
}

const DEFAULT_WAIT: Duration = Duration::from_secs(300);
const MAX_WAIT: Duration = Duration::from_secs(600);

fn blocking_params(q: &HashMap<String, String>) -> Result<Blocking, ApiError> {
    let index = match q.get("index") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| bad_request("Invalid index"))?),
    };
    let wait = match q.get("wait") {
        None => DEFAULT_WAIT,
        Some(v) => crate::duration::parse(v)
            .map_err(|_| bad_request("Invalid wait time"))?
            .min(MAX_WAIT),
    };
    Ok(Blocking { index, wait })
}

/// Waits until the table index exceeds the client's, or the wait elapses (then with the same index).
async fn block(s: &ApiState, b: &Blocking) -> Arc<Snapshot> {
    if let Some(min) = b.index {
        let mut rx = s.gossip.changes();
        let deadline = tokio::time::Instant::now() + b.wait;
        while *rx.borrow_and_update() <= min && s.table.snapshot().index <= min {
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                break;
            }
        }
    }
    s.table.snapshot()
}

fn check_dc(s: &ApiState, q: &HashMap<String, String>) -> Result<(), ApiError> {
    match q.get("dc") {
        Some(dc) if !dc.is_empty() && *dc != s.info.datacenter => {
            Err(server_error("No path to datacenter"))
        }
        _ => Ok(()),
    }
}

fn with_meta(snap: &Snapshot, body: Value) -> Response {
    let mut h = HeaderMap::new();
    let index = snap.index.max(1);
    h.insert("X-Consul-Index", HeaderValue::from(index));
    let known = leader(snap).is_some();
    h.insert(
        "X-Consul-KnownLeader",
        HeaderValue::from_static(if known { "true" } else { "false" }),
    );
    h.insert("X-Consul-LastContact", HeaderValue::from_static("0"));
    (h, axum::Json(body)).into_response()
}

async fn catalog_nodes(State(s): State<ApiState>, Query(q): Params) -> ApiResult {
    check_dc(&s, &q)?;
    let b = blocking_params(&q)?;
    let snap = block(&s, &b).await;
    let nodes: Vec<Value> = snap
        .members
        .iter()
        .filter(|m| in_catalog(m, &s.info.datacenter))
        .map(|m| catalog_node(m))
        .collect();
    Ok(with_meta(&snap, Value::Array(nodes)))
}

async fn catalog_node_one(
    State(s): State<ApiState>,
    Path(node): Path<String>,
    Query(q): Params,
) -> ApiResult {
    check_dc(&s, &q)?;
    let b = blocking_params(&q)?;
    let snap = block(&s, &b).await;
    let found = snap
        .members
        .iter()
        .find(|m| *m.name == *node && in_catalog(m, &s.info.datacenter));
    let body = match found {
        None => Value::Null,
        Some(m) => {
            let mut services = serde_json::Map::new();
            if m.is_server() {
                let port = m.tag("port").parse().unwrap_or(8300u16);
                services.insert("consul".into(), consul_service(port));
            }
            json!({ "Node": catalog_node(m), "Services": services })
        }
    };
    Ok(with_meta(&snap, body))
}

async fn datacenters(State(s): State<ApiState>) -> Response {
    axum::Json(vec![s.info.datacenter.clone()]).into_response()
}

fn server_addr(m: &MemberRecord) -> String {
    let port = m.tag("port");
    let port = if port.is_empty() { "8300" } else { port };
    SocketAddr::new(m.addr.ip(), port.parse().unwrap_or(8300)).to_string()
}

fn alive_servers(snap: &Snapshot) -> impl Iterator<Item = &Arc<MemberRecord>> {
    snap.members
        .iter()
        .filter(|m| m.is_server() && m.status == MemberStatus::Alive)
}

/// Interim leader until the replicated log exists: once as many servers as the highest `expect` tag are
/// alive, the one with the lowest name leads. Every member computes the same answer from gossip.
fn leader(snap: &Snapshot) -> Option<&Arc<MemberRecord>> {
    let expect = alive_servers(snap)
        .filter_map(|m| m.tag("expect").parse::<usize>().ok())
        .max()
        .unwrap_or(1)
        .max(1);
    if alive_servers(snap).count() < expect {
        return None;
    }
    // Snapshots are sorted by name, so the first alive server is the lowest name.
    alive_servers(snap).next()
}

async fn status_leader(State(s): State<ApiState>) -> Response {
    let snap = s.table.snapshot();
    let l = leader(&snap).map(|m| server_addr(m)).unwrap_or_default();
    axum::Json(l).into_response()
}

async fn status_peers(State(s): State<ApiState>) -> Response {
    let snap = s.table.snapshot();
    let peers: Vec<String> = alive_servers(&snap)
        .filter(|m| m.tag("dc") == s.info.datacenter)
        .map(|m| server_addr(m))
        .collect();
    axum::Json(peers).into_response()
}

/// Alive members of the local datacenter and the key fingerprints (`kr` tag) each reports.
fn keyring_views(s: &ApiState) -> Vec<Vec<String>> {
    s.table
        .snapshot()
        .members
        .iter()
        .filter(|m| m.status == MemberStatus::Alive && m.tag("dc") == s.info.datacenter)
        .map(|m| {
            m.tag("kr")
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

async fn keyring_list(State(s): State<ApiState>) -> ApiResult {
    let keys = s.gossip.keys().await;
    if keys.is_empty() {
        return Err(server_error(
            "gossip encryption is not enabled on this agent",
        ));
    }
    let views = keyring_views(&s);
    let mut all = serde_json::Map::new();
    let mut primary = serde_json::Map::new();
    for k in &keys {
        let fp = crypto::fingerprint(k);
        let holders = views.iter().filter(|v| v.contains(&fp)).count();
        let as_primary = views.iter().filter(|v| v.first() == Some(&fp)).count();
        all.insert(crypto::key_text(k), json!(holders));
        if as_primary > 0 {
            primary.insert(crypto::key_text(k), json!(as_primary));
        }
    }
    Ok(axum::Json(json!([{
        "WAN": false,
        "Datacenter": s.info.datacenter,
        "Segment": "",
        "Keys": all,
        "PrimaryKeys": primary,
        "NumNodes": views.len(),
        "Messages": {},
    }]))
    .into_response())
}

/// How long a keyring change may take to reach every alive member.
const KEYRING_WAIT: Duration = Duration::from_secs(15);

async fn keyring_op(State(s): State<ApiState>, op: KeyOp, body: axum::body::Bytes) -> ApiResult {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("Request decode failed: {e}")))?;
    // Go decodes bodies case-insensitively; accept "Key" and "key".
    let key_text = v
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("key")))
        .and_then(|(_, v)| v.as_str())
        .ok_or_else(|| bad_request("Request decode failed: missing \"Key\""))?;
    let key = crypto::parse_key(key_text).map_err(bad_request)?;
    s.gossip
        .keyring(op, key.clone())
        .await
        .map_err(server_error)?;
    let fp = crypto::fingerprint(&key);
    let done = |v: &Vec<String>| match op {
        KeyOp::Install => v.contains(&fp),
        KeyOp::Use => v.first() == Some(&fp),
        KeyOp::Remove => !v.contains(&fp),
    };
    let mut rx = s.gossip.changes();
    let deadline = tokio::time::Instant::now() + KEYRING_WAIT;
    loop {
        let views = keyring_views(&s);
        let ok = views.iter().filter(|v| done(v)).count();
        if ok == views.len() {
            return Ok(StatusCode::OK.into_response());
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return Err(server_error(format!(
                "keyring change reached {ok} of {} alive members within {KEYRING_WAIT:?}",
                views.len()
            )));
        }
    }
}
