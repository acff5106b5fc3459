//! `/v1/agent/metrics` on a real agent: Consul's JSON shape and Prometheus's text (checked by
//! `promtool check metrics`), both read from the same counters; gossip garbage moves the drop counter
//! in both, and HTTP requests are counted by route, method and status.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{Agent, dig, dns_status, tmp, wait_for};

/// The Prometheus text of `a`.
fn prometheus(a: &Agent) -> String {
    let (code, text) = a
        .http("GET", "/v1/agent/metrics?format=prometheus")
        .expect("agent answers");
    assert_eq!(code, 200, "{text}");
    text
}

/// A sample's value in the text, by its full line prefix (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
}

/// The sum of the LAN pool's gossip drops in Consul's JSON.
fn json_drops(a: &Agent) -> u64 {
    let m = a.get_json("/v1/agent/metrics");
    m["Counters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["Name"] == "murmur.memberlist.dropped" && c["Labels"]["pool"] == "lan")
        .map(|c| c["Count"].as_u64().unwrap())
        .sum()
}

#[test]
fn metrics_in_consul_s_json_and_prometheus_s_text_move_with_traffic() {
    let dir = tmp("metrics");
    let a = Agent::start("met-a", "127.0.71.1", &dir, &["-server", "-bootstrap"]);
    let m = a.get_json("/v1/agent/metrics");
    for key in ["Timestamp", "Gauges", "Points", "Counters", "Samples"] {
        assert!(!m[key].is_null(), "{key} missing: {m}");
    }
    let members = m["Gauges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["Name"] == "murmur.serf.members" && g["Labels"]["pool"] == "lan")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(members["Value"], 1.0, "{m}");

    // Gossip garbage: dropped, and counted in both formats.
    let before = json_drops(&a);
    let sock = std::net::UdpSocket::bind("127.0.71.9:0").unwrap();
    for _ in 0..5 {
        sock.send_to(&[0x01, 0x02, 0x03, 0x04, 0x05], "127.0.71.1:8301")
            .unwrap();
    }
    assert!(
        wait_for(Duration::from_secs(10), || json_drops(&a) >= before + 5),
        "{}",
        a.get_json("/v1/agent/metrics")
    );
    let text = prometheus(&a);
    let drops: f64 = text
        .lines()
        .filter(|l| l.starts_with("murmur_memberlist_dropped_total{pool=\"lan\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(drops >= (before + 5) as f64, "{text}");
    // Ring monitoring's probes are counted apart; an agent alone has no ring successor to probe.
    for name in ["probes_ring", "probes_monitor"] {
        let prefix = format!("murmur_memberlist_{name}_total{{pool=\"lan\"}}");
        assert_eq!(sample(&text, &prefix), Some(0.0), "{text}");
    }

    // Requests by route pattern, method and status, as a histogram in seconds.
    assert_eq!(a.http("GET", "/v1/kv/nothing-here").unwrap().0, 404);
    let text = prometheus(&a);
    let served = sample(
        &text,
        "murmur_api_http_count{method=\"GET\",path=\"/v1/kv/{*key}\",code=\"404\"}",
    );
    assert_eq!(served, Some(1.0), "{text}");
    assert!(text.contains("# TYPE murmur_api_http histogram"), "{text}");

    // DNS by question type and response code.
    assert_eq!(
        dns_status(&dig("127.0.71.1", &["met-a.node.consul", "A"])),
        "NOERROR"
    );
    assert_eq!(
        dns_status(&dig("127.0.71.1", &["consul.service.consul", "SRV"])),
        "NOERROR"
    );
    assert_eq!(
        dns_status(&dig("127.0.71.1", &["nobody.node.consul", "A"])),
        "NXDOMAIN"
    );
    let text = prometheus(&a);
    assert_eq!(
        sample(&text, "murmur_dns_queries_type_total{type=\"A\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "murmur_dns_queries_type_total{type=\"SRV\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "murmur_dns_responses_total{rcode=\"NOERROR\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "murmur_dns_responses_total{rcode=\"NXDOMAIN\"}"),
        Some(1.0)
    );

    // The server's raft: its term, leadership, and a write's commit.
    assert!(wait_for(Duration::from_secs(10), || a.leader().is_some()));
    assert_eq!(a.http_body("PUT", "/v1/kv/metrics/a", "1").unwrap().0, 200);
    let text = prometheus(&a);
    assert_eq!(sample(&text, "murmur_raft_is_leader"), Some(1.0), "{text}");
    assert!(sample(&text, "murmur_raft_term").unwrap_or(0.0) >= 1.0);
    assert!(
        sample(&text, "murmur_raft_apply_total").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert!(
        sample(&text, "murmur_raft_commit_time_count").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert!(sample(&text, "murmur_raft_state_leader_total").unwrap_or(0.0) >= 1.0);

    // A blocking query is counted while it waits.
    let headers = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null"])
        .arg("http://127.0.71.1:8500/v1/health/state/any")
        .output()
        .unwrap();
    let index: u64 = String::from_utf8_lossy(&headers.stdout)
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-consul-index: ")?
                .trim()
                .parse()
                .ok()
        })
        .expect("an X-Consul-Index");
    let held = std::thread::spawn(move || {
        Command::new("curl")
            .arg("-s")
            .arg(format!(
                "http://127.0.71.1:8500/v1/health/state/any?index={index}&wait=60s"
            ))
            .output()
    });
    assert!(
        wait_for(Duration::from_secs(10), || sample(
            &prometheus(&a),
            "murmur_rpc_queries_blocking"
        ) == Some(1.0)),
        "{}",
        prometheus(&a)
    );

    // A check registered (which also ends that wait: the node's checks changed), then its runs counted
    // by the status they report.
    let check =
        r#"{"Name": "self", "HTTP": "http://127.0.71.1:8500/v1/status/leader", "Interval": "1s"}"#;
    assert_eq!(
        a.http_body("PUT", "/v1/agent/check/register", check)
            .unwrap()
            .0,
        200
    );
    let _ = held.join();
    assert!(wait_for(Duration::from_secs(10), || sample(
        &prometheus(&a),
        "murmur_rpc_queries_blocking"
    ) == Some(0.0)));
    assert!(
        wait_for(Duration::from_secs(10), || sample(
            &prometheus(&a),
            "murmur_agent_check_runs_total{status=\"passing\"}"
        )
        .unwrap_or(0.0)
            >= 1.0),
        "{}",
        prometheus(&a)
    );
    let text = prometheus(&a);

    // promtool accepts the text as Prometheus would scrape it (the test client trims the body's final
    // newline; the format ends in one).
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (tools/test.sh installs prometheus)");
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n", text.trim_end()).as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn consul_s_metric_names_with_its_prefix() {
    let dir = tmp("metrics-prefix");
    let cfg = dir.join("telemetry.json");
    std::fs::write(&cfg, r#"{"telemetry": {"metrics_prefix": "consul"}}"#).unwrap();
    let a = Agent::start(
        "met-b",
        "127.0.71.2",
        &dir,
        &["-config-file", cfg.to_str().unwrap()],
    );
    let text = prometheus(&a);
    assert!(
        text.contains("consul_memberlist_udp_sent_total{pool=\"lan\"}"),
        "{text}"
    );
    assert!(!text.contains("murmur_"), "{text}");
    let m = a.get_json("/v1/agent/metrics");
    assert!(
        m["Counters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["Name"] == "consul.dns.queries"),
        "{m}"
    );
}
