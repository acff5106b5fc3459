//! Consul's JSON shape of `/v1/agent/metrics` (go-metrics' in-memory summary): `Timestamp`, `Gauges`,
//! `Points`, `Counters` and `Samples`, names dotted under the prefix. Timings are in milliseconds, as
//! Consul reports them. murmur's counters are totals since the agent started (Consul's cover its last
//! 10 s interval): `Count` and `Sum` are the total, `Rate` the total per second of uptime.

use serde_json::{Map, Value as Json, json};

use super::{Agg, Snapshot, Value};

/// The snapshot as Consul's JSON, names under `prefix` (`murmur`, or `consul` with
/// `telemetry { metrics_prefix = "consul" }`), stamped `now` (seconds since the Unix epoch).
pub fn render(snap: &Snapshot, prefix: &str, now: i64) -> Json {
    let (mut gauges, mut counters, mut samples) = (Vec::new(), Vec::new(), Vec::new());
    for m in &snap.metrics {
        let name = format!("{prefix}.{}", m.name);
        let labels: Map<String, Json> = m
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect();
        match &m.value {
            Value::Gauge(v) => gauges.push(json!({"Name": name, "Value": v, "Labels": labels})),
            Value::Counter(n) => {
                let sum = *n as f64;
                let each = if *n > 0 { 1.0 } else { 0.0 };
                counters.push(json!({
                    "Name": name, "Count": n, "Rate": sum / snap.uptime_secs.max(1.0), "Sum": sum,
                    "Min": each, "Max": each, "Mean": each, "Stddev": 0.0, "Labels": labels,
                }));
            }
            Value::Sample(a) => samples.push(sample(name, a, labels, snap.uptime_secs)),
        }
    }
    json!({
        "Timestamp": timestamp(now),
        "Gauges": gauges,
        "Points": [],
        "Counters": counters,
        "Samples": samples,
    })
}

fn sample(name: String, a: &Agg, labels: Map<String, Json>, uptime: f64) -> Json {
    let ms = 1000.0;
    json!({
        "Name": name,
        "Count": a.count,
        "Rate": a.sum * ms / uptime.max(1.0),
        "Sum": a.sum * ms,
        "Min": a.min * ms,
        "Max": a.max * ms,
        "Mean": a.mean() * ms,
        "Stddev": a.stddev() * ms,
        "Labels": labels,
    })
}

/// Go's default time format in UTC, as Consul prints it: `2026-12-03 03:40:00 +0000 UTC`.
fn timestamp(now: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(now).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000 UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consul_s_shape() {
        let mut snap = Snapshot {
            uptime_secs: 10.0,
            ..Snapshot::default()
        };
        snap.gauge("serf.members", "Members.", &[("pool", "lan")], 3.0);
        snap.counter("dns.queries", "Queries.", &[], 50);
        let mut a = Agg::default();
        a.add(0.002);
        a.add(0.004);
        snap.push(
            "api.http",
            "Requests.",
            &[("code", "200")],
            Value::Sample(a),
        );
        let j = render(&snap, "murmur", 1_796_265_600);
        assert_eq!(j["Timestamp"], "2026-12-03 02:40:00 +0000 UTC");
        assert_eq!(j["Points"], json!([]));
        assert_eq!(
            j["Gauges"],
            json!([{"Name": "murmur.serf.members", "Value": 3.0, "Labels": {"pool": "lan"}}])
        );
        let c = &j["Counters"][0];
        assert_eq!(
            (c["Name"].as_str(), c["Count"].as_u64()),
            (Some("murmur.dns.queries"), Some(50))
        );
        assert_eq!(c["Rate"], 5.0);
        let s = &j["Samples"][0];
        assert_eq!(s["Count"], 2);
        assert!(
            (s["Mean"].as_f64().unwrap() - 3.0).abs() < 1e-9,
            "milliseconds: {s}"
        );
        assert!((s["Max"].as_f64().unwrap() - 4.0).abs() < 1e-9);
        assert_eq!(s["Labels"], json!({"code": "200"}));
    }
}
