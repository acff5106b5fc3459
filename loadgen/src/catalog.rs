//! The `catalog` scenario: every node publishes a catalog record (`--services`, default 3, and 1 check,
//! as the agent encodes them), then checks flip at a set rate cluster-wide; with no services, nothing is
//! published and the run measures membership alone. Reports how long a flip takes to reach
//! 50/99/100% of the other nodes, gossip bytes and packets per node per second with records held and
//! while flipping, and memory per virtual node.

use std::time::Duration;

use murmur::state::node_record::{CheckRecord, NodeRecord, ServiceRecord};
use serde_json::json;

use crate::cluster::Cluster;
use crate::measure::{Recorder, quantile, rusage, time_to_fraction};
use crate::scenario::{Opts, Outcome, STEP, bootstrap_with, fmt, secs};

/// Length of each traffic window (membership only, then with records).
const WINDOW: Duration = Duration::from_secs(10);

/// The services each node runs, in turn: name, port, tags.
const KINDS: [(&str, u16, &[&str]); 3] = [
    ("web", 80, &["v1", "primary"]),
    ("api", 8080, &["v2"]),
    ("metrics", 9100, &[]),
];

/// Node `i`'s record of `services` services with its check `passing` or not; the check is on the
/// first service.
pub fn record_of(i: usize, services: usize, passing: bool) -> Vec<u8> {
    let service = |k: usize| {
        let (name, port, tags) = KINDS[k % KINDS.len()];
        // The first round keeps the names the three-service figures were measured with.
        let id = match k / KINDS.len() {
            0 => format!("{name}-{i}"),
            round => format!("{name}-{i}-{round}"),
        };
        ServiceRecord::plain(&id, name, tags, port)
    };
    NodeRecord {
        services: (0..services).map(service).collect(),
        checks: vec![CheckRecord {
            id: format!("service:web-{i}"),
            name: "Service 'web' check".into(),
            status: if passing { 0 } else { 2 },
            notes: String::new(),
            output: format!(
                "HTTP GET http://127.0.0.1/health: {}",
                if passing {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                }
            ),
            service_id: format!("web-{i}"),
            kind: "http".into(),
        }],
    }
    .encode()
}

/// A random node that is not `down` (at most `down.len()` draws; node 0 if all of them miss).
fn pick_up(rng: &mut murmur_gossip::Rng, down: &[bool]) -> usize {
    let n = down.len();
    (0..n)
        .map(|_| rng.below(n))
        .find(|&i| !down[i])
        .unwrap_or(0)
}

/// Advances the cluster by `d`.
fn settle(c: &mut dyn Cluster, rec: &mut Recorder, d: Duration) {
    let until = c.now() + d;
    while c.now() < until {
        let step = (c.now() + STEP * 4).min(until);
        c.advance(step, rec);
    }
}

/// Bytes and packets per node per second over `window`, advancing the cluster through it.
fn traffic_rate(c: &mut dyn Cluster, rec: &mut Recorder, window: Duration) -> (f64, f64) {
    let (p0, b0) = c.traffic();
    settle(c, rec, window);
    let (p1, b1) = c.traffic();
    let per = c.len() as f64 * window.as_secs_f64();
    ((b1 - b0) as f64 / per, (p1 - p0) as f64 / per)
}

/// `catalog`: records everywhere, then `flip_rate` check flips per second for `duration`.
pub fn run(c: &mut dyn Cluster, o: &Opts, rec: &mut Recorder) -> Outcome {
    // Every node has its record from the start, as an agent does: it rides the join's full-state
    // exchanges (or, with a converged start, the view every node starts from).
    // Without services there is nothing to publish: membership alone, the baseline.
    let s = o.services;
    let (boot, mut summary, _) = bootstrap_with(c, o, rec, &|c, i| {
        if s > 0 {
            c.set_record(i, record_of(i, s, true))
        }
    });
    let n = c.len();
    settle(c, rec, WINDOW);
    let (held_bytes, held_packets) = traffic_rate(c, rec, WINDOW);

    let mut rng = murmur_gossip::Rng::new(o.seed ^ 0xca7a);
    // Failed members nobody has noticed yet: they neither flip nor count as observers.
    let mut down = vec![false; n];
    for _ in 0..o.crashed.min(n / 2) {
        let i = pick_up(&mut rng, &down);
        down[i] = true;
        c.crash(i);
    }
    let mut version = vec![1u32; n];
    let mut passing = vec![true; n];
    let mut flips: Vec<(u32, u32, Duration)> = Vec::new();
    let every = Duration::from_secs_f64(1.0 / o.flip_rate.max(0.01));
    let (p0, b0) = c.traffic();
    let t0 = c.now();
    let mut next = t0;
    let flipping = s > 0 && o.flip_rate > 0.0;
    while c.now() < t0 + o.duration {
        while flipping && c.now() >= next {
            next += every;
            let i = pick_up(&mut rng, &down);
            passing[i] = !passing[i];
            version[i] += 1;
            c.set_record(i, record_of(i, s, passing[i]));
            flips.push((i as u32, version[i], c.now()));
        }
        let step = c.now() + STEP;
        c.advance(step, rec);
    }
    let (p1, b1) = c.traffic();
    let per = n as f64 * o.duration.as_secs_f64();
    let (flip_bytes, flip_packets) = ((b1 - b0) as f64 / per, (p1 - p0) as f64 / per);
    // Let the last flips finish spreading.
    settle(c, rec, WINDOW);
    let (_, max_rss_kib) = rusage();

    let observers = n - 1 - down.iter().filter(|&&d| d).count();
    let (mut r50, mut r99, mut r100) = (Vec::new(), Vec::new(), Vec::new());
    let mut incomplete = 0;
    for &(s, v, at) in &flips {
        // A flip its node flipped again within 3 s of is judged by the newer one.
        let superseded = flips
            .iter()
            .any(|f| f.0 == s && f.1 == v + 1 && f.2 < at + Duration::from_secs(3));
        if superseded {
            continue;
        }
        let mut times: Vec<Duration> = rec
            .records
            .get(&(s, v))
            .map(|t| t.iter().map(|x| x.saturating_sub(at)).collect())
            .unwrap_or_default();
        times.sort();
        match time_to_fraction(&times, observers, 1.0) {
            Some(t) => r100.push(t),
            None => incomplete += 1,
        }
        if let Some(t) = time_to_fraction(&times, observers, 0.5) {
            r50.push(t);
        }
        if let Some(t) = time_to_fraction(&times, observers, 0.99) {
            r99.push(t);
        }
    }
    for v in [&mut r50, &mut r99, &mut r100] {
        v.sort();
    }
    let record_bytes = if s > 0 {
        record_of(0, s, true).len()
    } else {
        0
    };
    summary.push(format!(
        "{} flips at {:.0}/s ({record_bytes}-byte records): reach 50% p50 {} | 99% p50 {} p99 {} max {} | 100% p50 {} p99 {} max {} ({incomplete} never reached all)",
        flips.len(),
        o.flip_rate,
        fmt(quantile(&r50, 0.5)),
        fmt(quantile(&r99, 0.5)),
        fmt(quantile(&r99, 0.99)),
        fmt(r99.last().copied()),
        fmt(quantile(&r100, 0.5)),
        fmt(quantile(&r100, 0.99)),
        fmt(r100.last().copied()),
    ));
    summary.push(format!(
        "gossip per node: {held_bytes:.0} B/s {held_packets:.1} pkt/s with records held; {flip_bytes:.0} B/s {flip_packets:.1} pkt/s while flipping (run the same command with --services 0 for membership alone)"
    ));
    let rss_per_node = max_rss_kib as f64 / n as f64;
    summary.push(format!(
        "memory: max RSS {:.0} MiB, {rss_per_node:.0} KiB per virtual node (whole process)",
        max_rss_kib as f64 / 1024.0
    ));
    let curve = r100
        .iter()
        .enumerate()
        .map(|(k, t)| (t.as_secs_f64(), (k + 1) as f64 / r100.len().max(1) as f64))
        .collect();
    Outcome {
        json: json!({
            "bootstrap": boot,
            "flips": flips.len(), "flip_rate": o.flip_rate, "crashed": o.crashed.min(n / 2), "services": s, "record_bytes": record_bytes,
            "reach_50pct_p50_s": secs(quantile(&r50, 0.5)),
            "reach_99pct_p50_s": secs(quantile(&r99, 0.5)),
            "reach_99pct_p99_s": secs(quantile(&r99, 0.99)),
            "reach_99pct_max_s": secs(r99.last().copied()),
            "reach_100pct_p50_s": secs(quantile(&r100, 0.5)),
            "reach_100pct_p99_s": secs(quantile(&r100, 0.99)),
            "reach_100pct_max_s": secs(r100.last().copied()),
            "never_complete": incomplete,
            "bytes_per_node_s": {"records_held": held_bytes, "flipping": flip_bytes},
            "packets_per_node_s": {"records_held": held_packets, "flipping": flip_packets},
            "max_rss_kib": max_rss_kib, "rss_kib_per_node": rss_per_node,
        }),
        summary,
        curve,
        curve_label: "fraction of flips that reached every node (s since the flip)".into(),
    }
}
