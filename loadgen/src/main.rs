//! `loadgen`: thousands of in-process murmur gossip cores on loopback UDP or a simulated network,
//! timing convergence, dissemination and failure detection.

mod announce;
mod catalog;
mod cluster;
mod measure;
mod report;
mod scenario;

use std::time::{Duration, Instant};

use murmur::util::flags::{self, Arity, Flag};
use murmur_gossip::GossipConfig;
use murmur_gossip::sim::NetModel;
use serde_json::json;

use cluster::{Cluster, SimCluster, UdpCluster};
use measure::{Recorder, rusage};
use scenario::Opts;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const fn f(name: &'static str, arity: Arity, help: &'static str) -> Flag {
    Flag { name, arity, help }
}

const SPEC: &[Flag] = &[
    f("nodes", Arity::One, "Virtual nodes (default 1000)."),
    f(
        "net",
        Arity::One,
        "udp (real loopback sockets, default) or sim (virtual time).",
    ),
    f(
        "scenario",
        Arity::One,
        "join, broadcast, crash, leave, false-positives, partition, churn, catalog, hold.",
    ),
    f(
        "seed",
        Arity::One,
        "Seed for every random choice (default 1).",
    ),
    f(
        "profile",
        Arity::One,
        "Gossip profile: lan (default), wan, local.",
    ),
    f(
        "no-lifeguard",
        Arity::Bool,
        "Plain SWIM: no local health, dynamic suspicion, buddy system or nacks.",
    ),
    f(
        "suspicion-mult",
        Arity::One,
        "Suspicion timeout multiplier, as gossip_lan.suspicion_mult (default: the profile's, lan 4).",
    ),
    f(
        "join-rate",
        Arity::One,
        "Joins per second while bootstrapping (default: 1000 sim; udp 100000/nodes, at most 250).",
    ),
    f(
        "timeout",
        Arity::One,
        "Give up a phase after this many seconds (default 300).",
    ),
    f(
        "crash",
        Arity::One,
        "Nodes killed by the crash scenario (default 1).",
    ),
    f(
        "crashed",
        Arity::One,
        "Nodes the catalog scenario kills as the flips begin, so flips meet failed members nobody has noticed yet (default 0).",
    ),
    f(
        "loss",
        Arity::One,
        "Datagram loss for false-positives, 0..1 (default 0.05).",
    ),
    f(
        "stalled",
        Arity::One,
        "Nodes that freeze now and then in false-positives (default 0).",
    ),
    f(
        "deaf",
        Arity::One,
        "sim, false-positives: nodes that send but receive nothing (one-way partition; default 0).",
    ),
    f(
        "slow",
        Arity::One,
        "sim, false-positives: CPU-starved nodes that handle every datagram --slow-ms late (default 0).",
    ),
    f(
        "slow-ms",
        Arity::One,
        "How late a --slow node handles each datagram, in milliseconds (default 1000).",
    ),
    f(
        "no-ring-monitors",
        Arity::Bool,
        "memberlist's detection: no ring probes, no monitor checks, Lifeguard's suspicion floor.",
    ),
    f(
        "duration",
        Arity::One,
        "Seconds of faults, split, churn or hold (default 60).",
    ),
    f(
        "flip-rate",
        Arity::One,
        "catalog: check flips per second cluster-wide (default 10); announce: members whose check flips each second (default 0).",
    ),
    f(
        "services",
        Arity::One,
        "catalog: services per node, the first with a check (default 3; 0: no records, membership alone).",
    ),
    f(
        "no-record-patches",
        Arity::Bool,
        "Records travel whole, never as patches against the version before (as builds before them).",
    ),
    f(
        "no-record-news",
        Arity::Bool,
        "Pings carry no news lists, and records are retransmitted as often as membership news (as builds before them).",
    ),
    f(
        "no-short-records",
        Arity::Bool,
        "Full-state exchanges name every record's member again after its state (as builds before the short form).",
    ),
    f(
        "no-record-tree",
        Arity::Bool,
        "Changed records are gossiped by every holder instead of passed down the broadcast tree (as builds before it).",
    ),
    f(
        "churn-rate",
        Arity::One,
        "Churn events per second (default 1).",
    ),
    f(
        "latency-us",
        Arity::One,
        "sim: one-way latency in microseconds (default 200).",
    ),
    f(
        "jitter-us",
        Arity::One,
        "sim: extra random latency up to this (default 100).",
    ),
    f(
        "port",
        Arity::One,
        "udp: port every node binds on its own 127.1.x.y address (default 17946).",
    ),
    f(
        "join",
        Arity::One,
        "hold: address of an outside agent to join (e.g. 127.0.0.1:8301).",
    ),
    f(
        "start",
        Arity::One,
        "join (default: every node joins through three seeds) or converged (every node starts \
         knowing all others, as a cluster that has run a while; for sizes whose join storm does not fit).",
    ),
    f("out", Arity::One, "Write the results as JSON to this file."),
    f(
        "plot",
        Arity::One,
        "Draw the run's curve (or, with --compare, several runs' curves) as SVG to this file.",
    ),
    f(
        "compare",
        Arity::One,
        "Run nothing: draw the curves of earlier runs' --out files side by side into --plot \
         (FILE[=LEGEND],FILE[=LEGEND],...; --title names the chart).",
    ),
    f("title", Arity::One, "The chart's title (with --compare)."),
    f(
        "progress",
        Arity::Bool,
        "Show a progress bar on stderr (drawn only when it is a terminal; on by default there).",
    ),
];

fn num<T: std::str::FromStr>(p: &flags::Parsed, k: &str, d: T) -> Result<T, String> {
    match p.get(k) {
        None => Ok(d),
        Some(v) => v
            .parse()
            .map_err(|_| format!("invalid value for --{k}: {v:?}")),
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let p = flags::parse(&args, SPEC)?;
    if let Some(list) = p.get("compare") {
        let out = p.get("plot").ok_or("--compare draws into --plot FILE")?;
        return compare(list, p.get("title").unwrap_or(""), out);
    }
    let nodes: usize = num(&p, "nodes", 1000)?;
    if nodes < 4 {
        return Err("--nodes must be at least 4".into());
    }
    let net = p.get("net").unwrap_or("udp").to_string();
    let scenario = p.get("scenario").unwrap_or("join").to_string();
    let seed: u64 = num(&p, "seed", 1)?;
    let profile = p.get("profile").unwrap_or("lan");
    let mut cfg =
        GossipConfig::profile(profile).ok_or_else(|| format!("unknown profile {profile:?}"))?;
    cfg.lifeguard = !p.is_set("no-lifeguard");
    cfg.ring_monitors = !p.is_set("no-ring-monitors");
    cfg.record_patches = !p.is_set("no-record-patches");
    cfg.record_news = !p.is_set("no-record-news");
    cfg.short_records = !p.is_set("no-short-records");
    cfg.record_tree = !p.is_set("no-record-tree");
    cfg.suspicion_mult = num(&p, "suspicion-mult", cfg.suspicion_mult)?;
    cfg.validate()
        .map_err(|e| format!("--suspicion-mult: {e}"))?;
    // Real time has a CPU budget: about 100k joins x nodes per second keeps a 2-core machine's timers on
    // time (5000 nodes at 20 joins/s: timer lag p99 6 ms; at 25/s: 180 ms).
    let default_rate = if net == "sim" {
        1000.0
    } else {
        (100_000.0 / nodes as f64).clamp(1.0, 250.0)
    };
    let opts = Opts {
        nodes,
        join_rate: num(&p, "join-rate", default_rate)?,
        timeout: Duration::from_secs_f64(num(&p, "timeout", 300.0)?),
        crash: num(&p, "crash", 1)?,
        crashed: num(&p, "crashed", 0)?,
        loss: num(&p, "loss", 0.05)?,
        stalled: num(&p, "stalled", 0)?,
        deaf: num(&p, "deaf", 0)?,
        slow: num(&p, "slow", 0)?,
        slow_lag: Duration::from_millis(num(&p, "slow-ms", 1000)?),
        duration: Duration::from_secs_f64(num(&p, "duration", 60.0)?),
        churn_rate: num(&p, "churn-rate", 1.0)?,
        flip_rate: num(&p, "flip-rate", 10.0)?,
        services: num(&p, "services", 3)?,
        seed,
        converged_start: match p.get("start").unwrap_or("join") {
            "join" => false,
            "converged" => true,
            other => return Err(format!("--start must be join or converged, got {other:?}")),
        },
        progress: p.is_set("progress") || std::io::IsTerminal::is_terminal(&std::io::stderr()),
        join: p
            .get("join")
            .map(|a| {
                a.parse()
                    .map_err(|_| format!("--join wants IP:port, got {a:?}"))
            })
            .transpose()?,
    };
    if let Some(a) = opts.join
        && !a.ip().is_loopback()
    {
        return Err("--join must be a loopback address".into());
    }
    if net != "sim" && (opts.deaf > 0 || opts.slow > 0) {
        return Err("--deaf and --slow are simulated faults: add --net sim".into());
    }
    if scenario == "announce" {
        let agent = opts.join.ok_or("announce needs --join AGENT_ADDR")?;
        let bind = cluster::udp_addr(0, num(&p, "port", 17946)?);
        println!(
            "{}",
            announce::run(
                agent,
                bind,
                nodes,
                opts.duration,
                num(&p, "flip-rate", 0.0)?
            )?
        );
        return Ok(());
    }
    let mut cluster: Box<dyn Cluster> = match net.as_str() {
        "sim" => {
            let model = NetModel {
                latency: Duration::from_micros(num(&p, "latency-us", 200)?),
                jitter: Duration::from_micros(num(&p, "jitter-us", 100)?),
                loss: 0.0,
            };
            Box::new(SimCluster::new(seed, model, cfg.clone()))
        }
        "udp" => Box::new(
            UdpCluster::new(seed, cfg.clone(), num(&p, "port", 17946)?)
                .map_err(|e| format!("cannot start the runtime: {e}"))?,
        ),
        other => return Err(format!("--net must be udp or sim, got {other:?}")),
    };
    let wall = Instant::now();
    let mut rec = Recorder::default();
    let c = cluster.as_mut();
    let out = match scenario.as_str() {
        "join" => scenario::join(c, &opts, &mut rec),
        "broadcast" => scenario::broadcast(c, &opts, &mut rec),
        "crash" => scenario::crash(c, &opts, &mut rec),
        "leave" => scenario::leave(c, &opts, &mut rec),
        "false-positives" => scenario::false_positives(c, &opts, &mut rec),
        "partition" => scenario::partition(c, &opts, &mut rec),
        "churn" => scenario::churn(c, &opts, &mut rec),
        "catalog" => catalog::run(c, &opts, &mut rec),
        "hold" => scenario::hold(c, &opts, &mut rec),
        other => return Err(format!("unknown scenario {other:?}")),
    };
    let wall_s = wall.elapsed().as_secs_f64();
    let sim_s = c.now().as_secs_f64();
    let (cpu_s, rss_kib) = rusage();
    let (packets, bytes) = c.traffic();
    let total = c.len().max(1) as f64;
    let lag = c.lag().map(|h| (h.quantile(0.5), h.quantile(0.99)));
    let resources = json!({
        "wall_s": wall_s,
        "cluster_time_s": sim_s,
        "cpu_s": cpu_s,
        "peak_rss_kib": rss_kib,
        "rss_per_node_kib": rss_kib as f64 / total,
        "packets_per_node_per_s": packets as f64 / total / sim_s.max(1e-9),
        "bytes_per_node_per_s": bytes as f64 / total / sim_s.max(1e-9),
        "timer_lag_p50_ms": lag.map(|l| l.0.as_secs_f64() * 1000.0),
        "timer_lag_p99_ms": lag.map(|l| l.1.as_secs_f64() * 1000.0),
    });
    println!(
        "loadgen: scenario={scenario} net={net} nodes={nodes} seed={seed} lifeguard={} ring_monitors={} record_patches={} record_news={} short_records={} record_tree={} suspicion_mult={} start={}",
        cfg.lifeguard,
        cfg.ring_monitors,
        cfg.record_patches,
        cfg.record_news,
        cfg.short_records,
        cfg.record_tree,
        cfg.suspicion_mult,
        if opts.converged_start {
            "converged"
        } else {
            "join"
        }
    );
    for line in &out.summary {
        println!("  {line}");
    }
    println!(
        "  resources: wall {wall_s:.1}s for {sim_s:.1}s of cluster time, CPU {cpu_s:.1}s, peak RSS {:.0} MiB ({:.0} KiB/node), {:.1} pkt/s and {:.0} B/s per node",
        rss_kib as f64 / 1024.0,
        rss_kib as f64 / total,
        packets as f64 / total / sim_s.max(1e-9),
        bytes as f64 / total / sim_s.max(1e-9)
    );
    if let Some((p50, p99)) = lag {
        println!(
            "  timer lag p50 {:.1} ms, p99 {:.1} ms{}",
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            if p99 > Duration::from_millis(50) {
                "  (saturated: figures above are slowed by CPU, not by the protocol)"
            } else {
                ""
            }
        );
    }
    let doc = json!({
        "scenario": scenario, "net": net, "nodes": nodes, "seed": seed, "profile": profile,
        "start": if opts.converged_start { "converged" } else { "join" },
        "join_rate": opts.join_rate,
        "lifeguard": cfg.lifeguard, "ring_monitors": cfg.ring_monitors, "record_patches": cfg.record_patches, "record_news": cfg.record_news, "short_records": cfg.short_records, "record_tree": cfg.record_tree, "suspicion_mult": cfg.suspicion_mult, "results": out.json, "resources": resources,
        "curve": { "label": out.curve_label, "points": out.curve },
    });
    if let Some(path) = p.get("out") {
        std::fs::write(path, serde_json::to_string_pretty(&doc).expect("json"))
            .map_err(|e| format!("writing {path}: {e}"))?;
    }
    if let Some(path) = p.get("plot") {
        let title = format!("{scenario}, {nodes} nodes, {net}");
        let one = report::Series {
            name: String::new(),
            points: out.curve,
        };
        let svg = report::chart(&title, &out.curve_label, &[one])?;
        std::fs::write(path, svg).map_err(|e| format!("writing {path}: {e}"))?;
    }
    Ok(())
}

/// `--compare`: the curves of earlier runs' JSON files on one chart, each named in the legend by its
/// `=LEGEND` or else by its scenario settings.
fn compare(list: &str, title: &str, out: &str) -> Result<(), String> {
    let mut series = Vec::new();
    let mut x_label = String::new();
    for item in list.split(',').filter(|s| !s.is_empty()) {
        let (file, legend) = item.split_once('=').unwrap_or((item, ""));
        let text = std::fs::read_to_string(file).map_err(|e| format!("reading {file}: {e}"))?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
        let points: Vec<(f64, f64)> = serde_json::from_value(doc["curve"]["points"].clone())
            .map_err(|_| format!("{file} holds no curve (written by an older loadgen?)"))?;
        if x_label.is_empty() {
            x_label = doc["curve"]["label"].as_str().unwrap_or("").to_owned();
        }
        let name = if legend.is_empty() {
            format!(
                "{} nodes, lifeguard {}, suspicion_mult {}",
                doc["nodes"], doc["lifeguard"], doc["suspicion_mult"]
            )
        } else {
            legend.to_owned()
        };
        series.push(report::Series { name, points });
    }
    if series.is_empty() {
        return Err("--compare needs at least one FILE".into());
    }
    let svg = report::chart(title, &x_label, &series)?;
    std::fs::write(out, svg).map_err(|e| format!("writing {out}: {e}"))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}
