//! CI smoke runs: small clusters on both networks must converge (how fast is for perf/RESULTS.md).

use std::process::Command;

fn run(args: &[&str], tag: &str) -> serde_json::Value {
    let out = std::env::temp_dir().join(format!("loadgen-smoke-{tag}-{}.json", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .args(["--out", out.to_str().unwrap(), "--timeout", "120"])
        .status()
        .unwrap();
    assert!(status.success());
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(out);
    v
}

#[test]
fn sim_200_nodes_converge_and_broadcast_reaches_all() {
    let v = run(
        &[
            "--nodes",
            "200",
            "--net",
            "sim",
            "--scenario",
            "broadcast",
            "--seed",
            "3",
        ],
        "sim",
    );
    assert_eq!(v["results"]["bootstrap"]["converged"], true, "{v}");
    assert_eq!(v["results"]["reached"], 200, "{v}");
    assert!(v["results"]["reach_100pct_s"].is_number());
    assert_eq!(v["results"]["bootstrap"]["false_positives"], 0);
}

#[test]
fn udp_50_nodes_converge_and_detect_a_crash() {
    let v = run(
        &[
            "--nodes",
            "50",
            "--net",
            "udp",
            "--scenario",
            "crash",
            "--port",
            "17950",
        ],
        "udp",
    );
    assert_eq!(v["results"]["bootstrap"]["converged"], true, "{v}");
    assert_eq!(v["results"]["all_detected"], true, "{v}");
    assert!(v["resources"]["timer_lag_p99_ms"].is_number());
}

#[test]
fn sim_runs_are_deterministic() {
    let a = run(
        &[
            "--nodes",
            "60",
            "--net",
            "sim",
            "--scenario",
            "crash",
            "--seed",
            "9",
        ],
        "det-a",
    );
    let b = run(
        &[
            "--nodes",
            "60",
            "--net",
            "sim",
            "--scenario",
            "crash",
            "--seed",
            "9",
        ],
        "det-b",
    );
    assert_eq!(a["results"], b["results"]);
}

/// `--suspicion-mult` moves the suspicion floor (mult x log10(N) probe intervals): at 60 nodes with
/// memberlist's rules, 4 gives 7.1 s and 2 gives 3.6 s, so the same crash in the same simulated cluster
/// is declared 3.6 s sooner. Ring monitoring (the default) declares sooner than memberlist at 4, and
/// never before its fast floor of (4 + 1) probe intervals.
#[test]
fn suspicion_mult_moves_the_detection_time() {
    let crash = |m: &str, extra: &[&str]| {
        let args = ["--nodes", "60", "--net", "sim", "--scenario", "crash"];
        run(
            &[&args[..], &["--seed", "9", "--suspicion-mult", m], extra].concat(),
            &format!("{m}{}", extra.len()),
        )
    };
    let classic = ["--no-ring-monitors"];
    let (slow, fast) = (crash("4", &classic), crash("2", &classic));
    assert_eq!(slow["suspicion_mult"], 4);
    assert_eq!(fast["suspicion_mult"], 2);
    assert_eq!(slow["ring_monitors"], false);
    let first = |v: &serde_json::Value| v["results"]["first_detection_p50_s"].as_f64().unwrap();
    let gained = first(&slow) - first(&fast);
    assert!(
        (2.5..4.5).contains(&gained),
        "declared {gained:.2} s sooner: {slow} {fast}"
    );
    let ring = crash("4", &[]);
    assert_eq!(ring["ring_monitors"], true);
    assert!(
        (5.0..first(&slow)).contains(&first(&ring)),
        "ring {ring} memberlist {slow}"
    );
    let refused = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--net", "sim", "--suspicion-mult", "0"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("--suspicion-mult") && err.contains("at least 1"),
        "{err}"
    );
}
