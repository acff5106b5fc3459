//! `GET /v1/agent/metrics` (`?format=prometheus`): one snapshot of the counters the gossip drivers, the
//! DNS server and the HTTP API keep, in Consul's JSON or Prometheus's text; and the middleware that
//! times every request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::error::{ApiResult, server_error};
use super::params::Params;
use crate::dns::server::DnsStats;
use crate::metrics::requests::Requests;
use crate::metrics::{self, Snapshot};
use crate::net::DriverStats;
use crate::state::definitions::Status;

/// What the metrics endpoint needs beyond the agent's state.
#[derive(Debug)]
pub struct Telemetry {
    /// Names' prefix (`telemetry { metrics_prefix }`, `murmur` by default).
    pub prefix: String,
    /// HTTP requests served.
    pub requests: Requests,
    /// When the agent started.
    pub started: Instant,
}

impl Telemetry {
    /// Metrics named under `prefix`, counted from now.
    pub fn new(prefix: String) -> Arc<Self> {
        Arc::new(Telemetry {
            prefix,
            requests: Requests::default(),
            started: Instant::now(),
        })
    }
}

/// Middleware: times each request and counts it under its route pattern.
pub(super) async fn record(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    s.telemetry.requests.record(
        &method,
        &route,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

pub(super) async fn metrics(State(s): State<ApiState>, Query(q): Params) -> ApiResult {
    let snap = gather(&s).await;
    let prefix = &s.telemetry.prefix;
    match q.get("format").map(String::as_str) {
        Some("prometheus") => {
            let text = metrics::prometheus::render(snap, prefix)
                .map_err(|e| server_error(format!("encoding metrics: {e}")))?;
            Ok((
                [(header::CONTENT_TYPE, metrics::prometheus::CONTENT_TYPE)],
                text,
            )
                .into_response())
        }
        _ => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            Ok(axum::Json(metrics::json::render(&snap, prefix, now)).into_response())
        }
    }
}

/// Reads every counter once.
async fn gather(s: &ApiState) -> Snapshot {
    let mut snap = Snapshot {
        uptime_secs: s.telemetry.started.elapsed().as_secs_f64(),
        ..Snapshot::default()
    };
    let lan = s.state.gossip_stats().await.unwrap_or_default();
    let wan = s.state.wan_stats().await;
    let pools: Vec<(&str, &DriverStats)> = std::iter::once(("lan", &lan))
        .chain(wan.as_ref().map(|w| ("wan", w)))
        .collect();
    gossip(&mut snap, &pools);
    dns(&mut snap, &s.dns);
    let events = &s.state.events;
    snap.counter(
        "serf.events",
        "User events received by gossip.",
        &[],
        events.received.load(Ordering::Relaxed),
    );
    s.telemetry.requests.read_into(&mut snap);
    snap.gauge(
        "rpc.queries_blocking",
        "Blocking queries waiting now.",
        &[],
        super::blocking::held() as f64,
    );
    // Indexed by the status itself, as `record_result` counts them.
    for status in [Status::Passing, Status::Warning, Status::Critical] {
        snap.counter(
            "agent.check.runs",
            "Check runs by the status the check reported (before its thresholds).",
            &[("status", status.as_str())],
            s.state.services.runs[status as usize].load(Ordering::Relaxed),
        );
    }
    s.state.store.record_metrics(&mut snap);
    snap
}

fn gossip(snap: &mut Snapshot, pools: &[(&str, &DriverStats)]) {
    type Read = fn(&DriverStats) -> f64;
    let gauges: [(&'static str, &'static str, Read); 4] = [
        (
            "serf.members",
            "Members known, failed and left included.",
            |d| d.members as f64,
        ),
        ("serf.members.live", "Members alive or suspect.", |d| {
            d.live as f64
        }),
        (
            "memberlist.health.score",
            "Lifeguard's local health score (0 is healthy).",
            |d| f64::from(d.health_score),
        ),
        (
            "memberlist.broadcasts.pending",
            "Deltas waiting to be piggybacked.",
            |d| d.pending_broadcasts as f64,
        ),
    ];
    for (name, help, read) in gauges {
        for (pool, d) in pools {
            snap.gauge(name, help, &[("pool", pool)], read(d));
        }
    }
    type Count = fn(&DriverStats) -> u64;
    let counters: [(&'static str, &'static str, Count); 14] = [
        ("memberlist.probes.sent", "Probes sent.", |d| {
            d.core.probes_sent
        }),
        (
            "memberlist.probes.ring",
            "Probes sent to this node's successor on the monitoring ring.",
            |d| d.core.ring_probes,
        ),
        (
            "memberlist.probes.monitor",
            "Probes this node sent, as a ring monitor, to a suspect it watches.",
            |d| d.core.monitor_probes,
        ),
        (
            "memberlist.suspicions",
            "Members this node came to suspect.",
            |d| d.core.suspicions,
        ),
        (
            "memberlist.suspicions.confirmed",
            "Independent confirmations of suspicions this node held.",
            |d| d.core.suspicion_confirmations,
        ),
        (
            "memberlist.push_pulls",
            "Periodic full-state exchanges started.",
            |d| d.core.push_pulls,
        ),
        (
            "memberlist.states.merged",
            "Full states merged from peers.",
            |d| d.core.states_merged,
        ),
        (
            "memberlist.packets.received",
            "Gossip datagrams received.",
            |d| d.core.packets_in,
        ),
        ("memberlist.packets.sent", "Gossip datagrams sent.", |d| {
            d.core.packets_out
        }),
        ("memberlist.udp.received", "Gossip bytes received.", |d| {
            d.core.bytes_in
        }),
        ("memberlist.udp.sent", "Gossip bytes sent.", |d| {
            d.core.bytes_out
        }),
        ("memberlist.probes.failed", "Probes no ack answered.", |d| {
            d.core.probes_failed
        }),
        (
            "memberlist.msg.dead",
            "Members this node declared failed.",
            |d| d.core.declared_failed,
        ),
        (
            "memberlist.refutes",
            "Suspicions of this node it refuted.",
            |d| d.core.refutes,
        ),
    ];
    for (name, help, read) in counters {
        for (pool, d) in pools {
            snap.counter(name, help, &[("pool", pool)], read(d));
        }
    }
    for (pool, d) in pools {
        snap.push(
            "memberlist.probe_rtt",
            "Time from a probe's ping to its ack (direct or through helpers).",
            &[("pool", pool)],
            metrics::Value::Sample(rtt_agg(&d.core.probe_rtt)),
        );
    }
    let drops: [(&str, Count); 10] = [
        ("malformed", |d| d.core.dropped_malformed),
        ("version", |d| d.core.dropped_version),
        ("size", |d| d.core.dropped_oversize + d.dropped_truncated),
        ("decrypt", |d| d.dropped_decrypt),
        ("plaintext", |d| d.dropped_plaintext),
        ("relay_full", |d| d.core.dropped_relay_full),
        ("sync_busy", |d| d.core.dropped_sync_busy),
        ("quic_queue", |d| d.dropped_quic),
        ("untrusted_event", |d| d.core.dropped_untrusted_events),
        ("implausible", |d| d.core.dropped_implausible),
    ];
    for (reason, read) in drops {
        for (pool, d) in pools {
            snap.counter(
                "memberlist.dropped",
                "Gossip input dropped, by reason.",
                &[("pool", pool), ("reason", reason)],
                read(d),
            );
        }
    }
}

/// The core's integer round-trip counts as the metrics' timings.
fn rtt_agg(r: &murmur_gossip::RttCounts) -> metrics::Agg {
    metrics::Agg {
        count: r.count,
        sum: r.sum_us as f64 / 1e6,
        min: r.min_us as f64 / 1e6,
        max: r.max_us as f64 / 1e6,
        sum_sq: r.sum_sq_us as f64 / 1e12,
        buckets: r.buckets,
    }
}

fn dns(snap: &mut Snapshot, d: &DnsStats) {
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let counters: [(&'static str, &'static str, &AtomicU64); 5] = [
        (
            "dns.queries",
            "DNS queries received (UDP and TCP).",
            &d.queries,
        ),
        (
            "dns.cache.hits",
            "DNS queries answered from the pre-encoded answer cache.",
            &d.cache_hits,
        ),
        (
            "dns.forwarded",
            "DNS queries sent to the recursors.",
            &d.forwarded,
        ),
        (
            "dns.remote",
            "DNS queries for another datacenter's names sent to its servers.",
            &d.remote,
        ),
        (
            "dns.remote.cache.hits",
            "DNS queries for another datacenter answered from the cache of its answers.",
            &d.remote_cache_hits,
        ),
    ];
    for (name, help, c) in counters {
        snap.counter(name, help, &[], n(c));
    }
    for (qtype, n) in d.kinds.types() {
        snap.counter(
            "dns.queries.type",
            "DNS queries by question type.",
            &[("type", qtype)],
            n,
        );
    }
    for (rcode, n) in d.kinds.codes() {
        snap.counter(
            "dns.responses",
            "DNS answers by response code.",
            &[("rcode", rcode)],
            n,
        );
    }
    for (reason, c) in [
        ("formerr", &d.formerr),
        ("dropped", &d.dropped),
        ("response", &d.responses_dropped),
        ("tcp_refused", &d.tcp_refused),
    ] {
        snap.counter(
            "dns.refused",
            "DNS input not answered normally, by reason.",
            &[("reason", reason)],
            n(c),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_core_buckets_round_trips_as_the_metrics_do() {
        let secs: Vec<f64> = murmur_gossip::RTT_BUCKETS_US
            .iter()
            .map(|us| *us as f64 / 1e6)
            .collect();
        assert_eq!(secs, metrics::BUCKETS);
        let mut r = murmur_gossip::RttCounts::default();
        r.add(std::time::Duration::from_micros(800));
        r.add(std::time::Duration::from_millis(30));
        let a = rtt_agg(&r);
        assert_eq!((a.count, a.min, a.max), (2, 0.0008, 0.03));
        let mut direct = metrics::Agg::default();
        direct.add(0.0008);
        direct.add(0.03);
        assert_eq!(a.buckets, direct.buckets);
        assert!((a.stddev() - direct.stddev()).abs() < 1e-9);
    }
}
