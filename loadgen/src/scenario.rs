//! Scenarios: bring a cluster up, inject one kind of event, and time how the cluster learns of it.

use std::net::SocketAddr;
use std::time::Duration;

use murmur_gossip::State;
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::measure::{Recorder, quantile, time_to_fraction};

/// Run options shared by every scenario.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Joins issued per second while bootstrapping.
    pub join_rate: f64,
    /// Give up waiting for any one phase after this long.
    pub timeout: Duration,
    /// Nodes killed in `crash`.
    pub crash: usize,
    /// Nodes killed in `catalog` as the flips begin (undetected at first).
    pub crashed: usize,
    /// Datagram loss during `false-positives`.
    pub loss: f64,
    /// Nodes stalling now and then during `false-positives`.
    pub stalled: usize,
    /// Nodes that send but receive nothing during `false-positives` (one-way partition).
    pub deaf: usize,
    /// Nodes that handle every datagram late during `false-positives` (CPU-starved), and how late.
    pub slow: usize,
    /// How late a slow node handles each datagram.
    pub slow_lag: Duration,
    /// Length of the fault window (`false-positives`, `partition`, `churn`).
    pub duration: Duration,
    /// Churn events per second.
    pub churn_rate: f64,
    /// Deterministic choices.
    pub seed: u64,
    /// Start from full membership everywhere instead of joining.
    pub converged_start: bool,
    /// Print progress to stderr.
    pub progress: bool,
    /// Outside agent to join (hold mode).
    pub join: Option<SocketAddr>,
    /// Check flips per second cluster-wide (catalog).
    pub flip_rate: f64,
    /// Services per node (catalog); 0 publishes no records.
    pub services: usize,
}

/// What a scenario produced.
pub struct Outcome {
    /// Machine-readable figures.
    pub json: Value,
    /// One-screen human summary.
    pub summary: Vec<String>,
    /// Fraction of nodes aware (0..1) against seconds since the event.
    pub curve: Vec<(f64, f64)>,
    /// What the curve shows.
    pub curve_label: String,
}

pub(crate) const STEP: Duration = Duration::from_millis(50);

pub(crate) fn secs(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| {
        json!((d.as_secs_f64() * 1000.0).round() / 1000.0)
    })
}

pub(crate) fn fmt(d: Option<Duration>) -> String {
    d.map_or("never".into(), |d| format!("{:.2}s", d.as_secs_f64()))
}

/// The progress bar on stderr (indicatif), hidden unless asked for.
struct Progress {
    bar: indicatif::ProgressBar,
    phase: String,
}

impl Progress {
    fn new(on: bool) -> Self {
        let bar = if on {
            indicatif::ProgressBar::new(0)
        } else {
            indicatif::ProgressBar::hidden()
        };
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("[{prefix:<10}] [{bar:30}] {pos}/{len}  {msg}")
        {
            bar.set_style(style.progress_chars("#>."));
        }
        Progress {
            bar,
            phase: String::new(),
        }
    }
    fn show(&mut self, phase: &str, done: usize, total: usize, t: Duration) {
        if phase != self.phase {
            self.phase = phase.to_owned();
            self.bar.set_prefix(self.phase.clone());
        }
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
        self.bar.set_message(format!("t={:.1}s", t.as_secs_f64()));
    }
    fn done(&mut self) {
        self.bar.finish();
    }
}

fn up_nodes(c: &dyn Cluster) -> Vec<usize> {
    (0..c.len()).filter(|&i| c.is_up(i)).collect()
}

/// Adds `n` nodes and joins them through three seeds at `join_rate`; returns bootstrap figures.
pub fn bootstrap(
    c: &mut dyn Cluster,
    o: &Opts,
    rec: &mut Recorder,
) -> (Value, Vec<String>, Vec<(f64, f64)>) {
    bootstrap_with(c, o, rec, &|_, _| {})
}

/// [`bootstrap`], calling `init` on each node as it is added (before it joins or adopts the view).
pub fn bootstrap_with(
    c: &mut dyn Cluster,
    o: &Opts,
    rec: &mut Recorder,
    init: &dyn Fn(&mut dyn Cluster, usize),
) -> (Value, Vec<String>, Vec<(f64, f64)>) {
    let n = o.nodes;
    for _ in 0..n {
        let i = c.add_node();
        init(c, i);
    }
    rec.gone.resize(n, false);
    let mut prog = Progress::new(o.progress);
    let t_start = c.now();
    if o.converged_start {
        c.preform();
        // UDP nodes adopt the view in their own tasks: wait until every one has.
        let deadline = c.now() + o.timeout;
        while (0..n).any(|i| c.live_view(i) < n) && c.now() < deadline {
            let step = c.now() + STEP;
            c.advance(step, rec);
        }
        let all = (0..n).all(|i| c.live_view(i) >= n);
        let json = json!({ "start": "converged", "converged": all });
        let summary = vec![format!(
            "started converged: {n} nodes, each knowing all {n} (no join phase)"
        )];
        return (json, summary, Vec::new());
    }
    if let Some(addr) = o.join {
        c.join_addr(0, addr);
    }
    for i in 1..n.min(3) {
        c.join(i, 0);
    }
    let per_join = Duration::from_secs_f64(1.0 / o.join_rate.max(1.0));
    let mut next = c.now();
    let mut i = 3;
    while i < n {
        next += STEP;
        c.advance(next, rec);
        let due = ((c.now() - t_start).as_secs_f64() / per_join.as_secs_f64()) as usize + 3;
        while i < n && i < due {
            c.join(i, i % 3);
            i += 1;
        }
        prog.show("joining", i, n, c.now() - t_start);
    }
    let t_joined = c.now();
    let want = n + usize::from(o.join.is_some());
    let mut t99 = None;
    let mut t100 = None;
    let mut curve = Vec::new();
    let deadline = t_joined + o.timeout;
    while c.now() < deadline {
        let conv = (0..n).filter(|&i| c.live_view(i) >= want).count();
        let frac = conv as f64 / n as f64;
        curve.push(((c.now() - t_start).as_secs_f64(), frac));
        prog.show("converging", conv, n, c.now() - t_start);
        if t99.is_none() && frac >= 0.99 {
            t99 = Some(c.now() - t_joined);
        }
        if conv == n {
            t100 = Some(c.now() - t_joined);
            break;
        }
        let step = c.now() + STEP * 2;
        c.advance(step, rec);
    }
    prog.done();
    let joins = t_joined - t_start;
    let json = json!({
        "joins_issued_over_s": secs(Some(joins)),
        "after_last_join_99pct_s": secs(t99),
        "after_last_join_100pct_s": secs(t100),
        "converged": t100.is_some(),
        "false_positives": rec.false_positives,
    });
    let summary = vec![
        format!("joins issued over {}", fmt(Some(joins))),
        format!(
            "all see all: 99% of nodes {} / 100% {} after the last join",
            fmt(t99),
            fmt(t100)
        ),
    ];
    (json, summary, curve)
}

/// `join`: time to full membership everywhere.
pub fn join(c: &mut dyn Cluster, o: &Opts, rec: &mut Recorder) -> Outcome {
    let (json, summary, curve) = bootstrap(c, o, rec);
    Outcome {
        json,
        summary,
        curve,
        curve_label: "fraction of nodes that know every member (s since start)".into(),
    }
}

fn wait_seen(
    c: &mut dyn Cluster,
    o: &Opts,
    rec: &mut Recorder,
    subjects: &[usize],
    state: State,
    observers: usize,
    phase: &str,
) -> bool {
    let t0 = c.now();
    let mut prog = Progress::new(o.progress);
    while c.now() < t0 + o.timeout {
        let step = c.now() + STEP;
        c.advance(step, rec);
        let done = subjects
            .iter()
            .map(|&s| rec.count(s, state).min(observers))
            .sum::<usize>();
        prog.show(phase, done, observers * subjects.len(), c.now() - t0);
        if done >= observers * subjects.len() {
            prog.done();
            return true;
        }
    }
    prog.done();
    false
}

/// Times until 50%, 99% and 100% of `total` observers had seen something.
fn spread_figures(
    sorted: &[Duration],
    total: usize,
) -> (Option<Duration>, Option<Duration>, Option<Duration>) {
    (
        time_to_fraction(sorted, total, 0.5),
        time_to_fraction(sorted, total, 0.99),
        time_to_fraction(sorted, total, 1.0),
    )
}

/// The fraction of `total` reached by each of the (sorted) `times`, thinned to at most about a
/// thousand points (a chart has no use for more, and 100 crashes x 5000 nodes would be half a million).
fn spread_curve(times: &[Duration], total: usize) -> Vec<(f64, f64)> {
    let step = times.len().div_ceil(1000).max(1);
    times
        .iter()
        .enumerate()
        .filter(|(k, _)| k % step == 0 || k + 1 == times.len())
        .map(|(k, t)| (t.as_secs_f64(), (k + 1) as f64 / total as f64))
        .collect()
}

/// `broadcast`: one new member after convergence; time to reach 50/99/100% of nodes.
pub fn broadcast(c: &mut dyn Cluster, o: &Opts, rec: &mut Recorder) -> Outcome {
    let (boot, mut summary, _) = bootstrap(c, o, rec);
    let x = c.add_node();
    rec.gone.resize(x + 1, false);
    rec.watched = vec![x];
    c.set_watched(&[x]);
    let observers = o.nodes;
    let t0 = c.now();
    c.join(x, 0);
    wait_seen(c, o, rec, &[x], State::Alive, observers, "broadcast");
    let times = rec.times(x, State::Alive, t0);
    let (p50, p99, p100) = spread_figures(&times, observers);
    summary.push(format!(
        "new member reached 50% {} / 99% {} / 100% {} of {} nodes",
        fmt(p50),
        fmt(p99),
        fmt(p100),
        observers
    ));
    Outcome {
        json: json!({"bootstrap": boot, "reach_50pct_s": secs(p50), "reach_99pct_s": secs(p99), "reach_100pct_s": secs(p100), "reached": times.len()}),
        summary,
        curve: spread_curve(&times, observers),
        curve_label: "fraction of nodes aware of the new member (s since its join)".into(),
    }
}

/// `crash`: kill K nodes; time until the first and until all live nodes mark each one failed.
pub fn crash(c: &mut dyn Cluster, o: &Opts, rec: &mut Recorder) -> Outcome {
    let (boot, mut summary, _) = bootstrap(c, o, rec);
    let fp_before = rec.false_positives;
    let mut rng = murmur_gossip::Rng::new(o.seed ^ 0xc0ffee);
    let mut victims = Vec::new();
    let k = o.crash.clamp(1, o.nodes.saturating_sub(4).max(1));
    while victims.len() < k {
        let v = 3 + rng.below(o.nodes.saturating_sub(3).max(1));
        if v < o.nodes && !victims.contains(&v) {
            victims.push(v);
        }
    }
    for &v in &victims {
        rec.mark_gone(v);
    }
    rec.watched = victims.clone();
    c.set_watched(&victims);
    let t0 = c.now();
    for &v in &victims {
        c.crash(v);
    }
    let observers = o.nodes - victims.len();
    let all_known = wait_seen(c, o, rec, &victims, State::Dead, observers, "detecting");
    let mut firsts = Vec::new();
    let mut alls = Vec::new();
    for &v in &victims {
        let t = rec.times(v, State::Dead, t0);
        if let Some(f) = t.first() {
            firsts.push(*f);
        }
        if let Some(a) = time_to_fraction(&t, observers, 1.0) {
            alls.push(a);
        }
    }
    firsts.sort();
    alls.sort();
    let fp = rec.false_positives - fp_before;
    summary.push(format!(
        "crash of {} node(s): first detection p50 {} / all live nodes know p50 {} p99 {} max {}",
        victims.len(),
        fmt(quantile(&firsts, 0.5)),
        fmt(quantile(&alls, 0.5)),
        fmt(quantile(&alls, 0.99)),
        fmt(alls.last().copied())
    ));
    summary.push(format!("false positives after the crash: {fp}"));
    Outcome {
        json: json!({
            "bootstrap": boot,
            "crashed": victims.len(),
            "all_detected": all_known,
            "first_detection_p50_s": secs(quantile(&firsts, 0.5)),
            "all_know_p50_s": secs(quantile(&alls, 0.5)),
            "all_know_p99_s": secs(quantile(&alls, 0.99)),
            "all_know_max_s": secs(alls.last().copied()),
            "false_positives": fp,
        }),
        summary,
        curve: {
            // Every (crashed node, live node) pair: the distribution of detection times.
            let mut pairs: Vec<Duration> = victims
                .iter()
                .flat_map(|&v| rec.times(v, State::Dead, t0))
                .collect();
            pairs.sort();
            spread_curve(&pairs, observers * victims.len())
        },
        curve_label: "s since the crash: live nodes that marked a crashed node failed".into(),
    }
}

/// `leave`: one graceful leave; time until every node shows it left.
pub fn leave(c: &mut dyn Cluster, o: &Opts, rec: &mut Recorder) -> Outcome {
    let (boot, mut summary, _) = bootstrap(c, o, rec);
    let v = o.nodes - 1;
    rec.mark_gone(v);
    rec.watched = vec![v];
    c.set_watched(&[v]);
    let t0 = c.now();
    c.leave(v);
    let observers = o.nodes - 1;
    wait_seen(c, o, rec, &[v], State::Left, observers, "leave");
    let t = rec.times(v, State::Left, t0);
    let (p50, p99, p100) = spread_figures(&t, observers);
    summary.push(format!(
        "leave seen by 50% {} / 99% {} / 100% {}",
        fmt(p50),
        fmt(p99),
        fmt(p100)
    ));
    Outcome {
        json: json!({"bootstrap": boot, "seen_50pct_s": secs(p50), "seen_99pct_s": secs(p99), "seen_100pct_s": secs(p100)}),
        summary,
        curve: spread_curve(&t, observers),
        curve_label: "fraction of nodes that see the leave (s since leave)".into(),
    }
}

/// `false-positives`: loss, stalled, deaf and slow nodes for a while; healthy nodes wrongly declared
/// failed.
pub fn false_positives(c: &mut dyn Cluster, o: &Opts, rec: &mut Recorder) -> Outcome {
    let (boot, mut summary, _) = bootstrap(c, o, rec);
    let fp0 = rec.false_positives;
    let sus0 = rec.suspicions;
    let by0 = rec.false_positive_subjects.clone();
    let mut rng = murmur_gossip::Rng::new(o.seed ^ 0x57a11);
    let stalled: Vec<usize> = (0..o.stalled.min(o.nodes))
        .map(|_| rng.below(o.nodes))
        .collect();
    // Deaf and slow nodes are drawn apart from each other and from the stalled ones.
    let mut faulty: Vec<usize> = Vec::new();
    for _ in 0..(o.deaf + o.slow).min(o.nodes / 2) {
        let pick = (0..64)
            .map(|_| rng.below(o.nodes))
            .find(|i| !faulty.contains(i) && !stalled.contains(i));
        faulty.extend(pick);
    }
    let (deaf, slow) = faulty.split_at(o.deaf.min(faulty.len()));
    // What they conclude in their own views is not evidence about anyone: a node that hears nothing
    // declares everyone it probes. The question is what they make the others conclude.
    rec.unheard.extend(faulty.iter().copied());
    for &i in deaf {
        c.deafen(i, true);
    }
    for &i in slow {
        c.slow_down(i, o.slow_lag);
    }
    c.set_loss(o.loss);
    let t0 = c.now();
    let mut next_stall = t0;
    let mut prog = Progress::new(o.progress);
    while c.now() < t0 + o.duration {
        if c.now() >= next_stall {
            for &s in &stalled {
                // Freezes of 1-4 s: long enough to miss probes, short of any suspicion timeout.
                let d = Duration::from_millis(1000 + rng.below(3000) as u64);
                c.stall(s, d);
            }
            next_stall = c.now() + Duration::from_secs(10);
        }
        let step = c.now() + STEP * 4;
        c.advance(step, rec);
        let el = c.now() - t0;
        prog.show(
            "faults",
            el.as_millis() as usize,
            o.duration.as_millis() as usize,
            el,
        );
    }
    prog.done();
    c.set_loss(0.0);
    for &i in deaf {
        c.deafen(i, false);
    }
    for &i in slow {
        c.slow_down(i, Duration::ZERO);
    }
    // Declarations about the deaf and slow nodes themselves are counted apart: a node that hears
    // nothing is unreachable, and declaring it is the detector working; the question those runs ask is
    // whether it took healthy nodes down with it.
    let mut about_faulty = 0;
    for (&subject, &n) in &rec.false_positive_subjects {
        if faulty.contains(&subject) {
            about_faulty += n - by0.get(&subject).copied().unwrap_or(0);
        }
    }
    let fp = rec.false_positives - fp0 - about_faulty;
    let subjects = rec
        .false_positive_subjects
        .iter()
        .filter(|&(s, &n)| !faulty.contains(s) && n > by0.get(s).copied().unwrap_or(0))
        .count();
    let mut faults = format!(
        "loss {:.0}% and {} stalled node(s)",
        o.loss * 100.0,
        stalled.len()
    );
    if !deaf.is_empty() {
        faults += &format!(", {} deaf node(s)", deaf.len());
    }
    if !slow.is_empty() {
        faults += &format!(
            ", {} node(s) handling datagrams {} ms late",
            slow.len(),
            o.slow_lag.as_millis()
        );
    }
    summary.push(format!(
        "{faults} for {:.0}s: {} false failure declarations about {} healthy node(s), {} suspicions",
        o.duration.as_secs_f64(),
        fp,
        subjects,
        rec.suspicions - sus0
    ));
    if !faulty.is_empty() {
        summary.push(format!(
            "declarations about the deaf or slow nodes themselves: {about_faulty}"
        ));
    }
    Outcome {
        json: json!({"bootstrap": boot, "loss": o.loss, "stalled": stalled.len(), "deaf": deaf.len(), "slow": slow.len(), "slow_lag_ms": o.slow_lag.as_millis() as u64, "window_s": o.duration.as_secs_f64(), "false_positives": fp, "false_positive_nodes": subjects, "declared_deaf_or_slow": about_faulty, "suspicions": rec.suspicions - sus0}),
        summary,
        curve: Vec::new(),
        curve_label: String::new(),
    }
}

/// `partition`: split in halves, heal, time to re-merge.
pub fn partition(c: &mut dyn Cluster, o: &Opts, rec: &mut Recorder) -> Outcome {
    let (boot, mut summary, _) = bootstrap(c, o, rec);
    let n = o.nodes;
    let groups: Vec<u32> = (0..n).map(|i| u32::from(i >= n / 2)).collect();
    c.set_groups(Some(groups));
    let t_split = c.now();
    c.advance(t_split + o.duration, rec);
    let dead_during = rec.false_positives;
    c.set_groups(None);
    let t_heal = c.now();
    let mut prog = Progress::new(o.progress);
    let mut curve = Vec::new();
    let mut merged = None;
    while c.now() < t_heal + o.timeout {
        let conv = (0..n).filter(|&i| c.live_view(i) >= n).count();
        curve.push(((c.now() - t_heal).as_secs_f64(), conv as f64 / n as f64));
        prog.show("re-merging", conv, n, c.now() - t_heal);
        if conv == n {
            merged = Some(c.now() - t_heal);
            break;
        }
        let step = c.now() + STEP * 4;
        c.advance(step, rec);
    }
    prog.done();
    summary.push(format!(
        "split {:.0}s: {} failure declarations across the split; re-merged {} after healing",
        o.duration.as_secs_f64(),
        dead_during,
        fmt(merged)
    ));
    Outcome {
        json: json!({"bootstrap": boot, "split_s": o.duration.as_secs_f64(), "declared_failed_during_split": dead_during, "remerge_s": secs(merged)}),
        summary,
        curve,
        curve_label: "fraction of nodes that know every member again (s since heal)".into(),
    }
}

/// `churn`: steady joins, leaves and crashes; false positives and time to settle afterwards.
pub fn churn(c: &mut dyn Cluster, o: &Opts, rec: &mut Recorder) -> Outcome {
    let (boot, mut summary, _) = bootstrap(c, o, rec);
    let fp0 = rec.false_positives;
    let mut rng = murmur_gossip::Rng::new(o.seed ^ 0xc4u64);
    let t0 = c.now();
    let every = Duration::from_secs_f64(1.0 / o.churn_rate.max(0.01));
    let mut next = t0;
    let (mut joins, mut leaves, mut crashes) = (0, 0, 0);
    let mut departed = 0usize;
    while c.now() < t0 + o.duration {
        if c.now() >= next {
            next += every;
            // Running members that have not already left or crashed.
            let up: Vec<usize> = up_nodes(c).into_iter().filter(|&i| !rec.gone[i]).collect();
            match rng.below(3) {
                0 => {
                    let x = c.add_node();
                    rec.gone.resize(x + 1, false);
                    c.join(x, up[rng.below(up.len())]);
                    joins += 1;
                }
                // Seeds stay, and a handful of members always remain.
                _ if up.len() <= 8 => {}
                k => {
                    let v = up[3 + rng.below(up.len() - 3)];
                    rec.mark_gone(v);
                    departed += 1;
                    if k == 1 {
                        c.leave(v);
                        leaves += 1;
                    } else {
                        c.crash(v);
                        crashes += 1;
                    }
                }
            }
        }
        let step = c.now() + STEP;
        c.advance(step, rec);
    }
    let t_end = c.now();
    let expect = c.len() - departed;
    let mut settled = None;
    while c.now() < t_end + o.timeout {
        let up = up_nodes(c);
        let live: Vec<usize> = up.iter().copied().filter(|&i| !rec.gone[i]).collect();
        if live.iter().all(|&i| c.live_view(i) == expect) {
            settled = Some(c.now() - t_end);
            break;
        }
        let step = c.now() + STEP * 4;
        c.advance(step, rec);
    }
    let fp = rec.false_positives - fp0;
    summary.push(format!(
        "churn {:.1}/s for {:.0}s: {joins} joins, {leaves} leaves, {crashes} crashes; {fp} false positives; settled {} after",
        o.churn_rate,
        o.duration.as_secs_f64(),
        fmt(settled)
    ));
    Outcome {
        json: json!({"bootstrap": boot, "joins": joins, "leaves": leaves, "crashes": crashes, "false_positives": fp, "settled_after_s": secs(settled)}),
        summary,
        curve: Vec::new(),
        curve_label: String::new(),
    }
}

/// Hold mode: join an outside agent, converge, then keep the nodes alive for `duration`.
pub fn hold(c: &mut dyn Cluster, o: &Opts, rec: &mut Recorder) -> Outcome {
    let (boot, mut summary, _) = bootstrap(c, o, rec);
    summary.push(format!(
        "holding {} nodes for {:.0}s",
        o.nodes,
        o.duration.as_secs_f64()
    ));
    let until = c.now() + o.duration;
    while c.now() < until {
        let step = (c.now() + Duration::from_secs(1)).min(until);
        c.advance(step, rec);
    }
    Outcome {
        json: json!({"bootstrap": boot}),
        summary,
        curve: Vec::new(),
        curve_label: String::new(),
    }
}
