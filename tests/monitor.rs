//! The agent's log: `murmur monitor` streams it at the level it asks for (debug lines of an agent that
//! logs at info included), `-log-json` writes JSON lines with hclog's keys, and a bad level is a 400.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{Agent, BIN, tmp, wait_for};

/// Waits up to `limit` for a line containing `needle`, doing `poke` between tries (the monitor may
/// not have attached yet when the first one happens).
fn expect_line(
    rx: &mpsc::Receiver<String>,
    needle: &str,
    limit: Duration,
    mut poke: impl FnMut(),
) -> Option<String> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        poke();
        // Read for a moment (a monitor at debug never goes quiet), then poke again.
        let window = Instant::now() + Duration::from_millis(500);
        while let Some(left) = window.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
    None
}

#[test]
fn monitor_follows_the_log_at_its_own_level_and_the_log_can_be_json() {
    let dir = tmp("monitor");
    let a = Agent::start(
        "mon-a",
        "127.0.72.1",
        &dir,
        &["-server", "-bootstrap", "-log-json"],
    );
    let mut child = Command::new(BIN)
        .args(["monitor", "-log-level=debug"])
        .env("MURMUR_HTTP_ADDR", a.http_addr())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let reload = || {
        let _ = a.http("PUT", "/v1/agent/reload");
    };
    let seen = expect_line(&rx, "Reload complete", Duration::from_secs(20), reload);
    let seen = seen.expect("the monitor shows the agent's info lines");
    assert!(seen.contains("[INFO]"), "{seen}");
    // Debug lines (the servers' raft narrates at debug), though the agent itself logs at info.
    let debug = expect_line(&rx, "[DEBUG]", Duration::from_secs(20), || {});
    assert!(debug.is_some());
    let _ = child.kill();
    let _ = child.wait();

    // The agent's own log: JSON lines with hclog's keys, at its own level.
    assert!(wait_for(Duration::from_secs(5), || a
        .log_text()
        .contains("Reload complete")));
    let log = a.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 3, "{log}");
    assert!(lines.iter().all(|l| l["@level"].is_string()
        && l["@timestamp"].is_string()
        && l["@module"].is_string()
        && l["@message"].is_string()));
    assert!(
        lines
            .iter()
            .any(|l| l["@message"] == "Reload complete: service and check definitions applied")
    );
    assert!(
        lines.iter().all(|l| l["@level"] != "debug"),
        "the agent's own log stays at info"
    );

    assert_eq!(
        a.http("GET", "/v1/agent/monitor?loglevel=loud").unwrap(),
        (400, "Unknown log level: loud".into())
    );
}

#[test]
fn the_log_file_rotates_by_size_and_keeps_the_newest_archives() {
    let dir = tmp("logfile");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let a = Agent::start(
        "logfile-a",
        "127.0.72.2",
        &dir,
        &[
            "-server",
            "-bootstrap",
            &format!("-log-file={}/", logs.display()),
            "-log-rotate-bytes=600",
            "-log-rotate-max-files=2",
        ],
    );
    let archives = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&logs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "murmur.log")
            .collect();
        v.sort();
        v
    };
    let mut seen = std::collections::BTreeSet::new();
    // Each reload logs a line of about 100 bytes: 60 of them rotate a 600-byte file several times.
    for _ in 0..60 {
        let _ = a.http("PUT", "/v1/agent/reload");
        let now = archives();
        assert!(now.len() <= 2, "at most two archives kept: {now:?}");
        for n in &now {
            assert!(
                n.starts_with("murmur-") && n.ends_with(".log"),
                "Consul's archive names: {n}"
            );
        }
        seen.extend(now);
        if seen.len() >= 4 {
            break;
        }
    }
    assert!(seen.len() >= 4, "rotated at least four times: {seen:?}");
    let kept = archives();
    let newest = std::fs::read_to_string(logs.join(kept.last().unwrap())).unwrap();
    assert!(newest.contains("Reload complete"), "{newest}");
    assert!(
        // A reload's line is about 100 bytes; 2 KiB of slack is far more than any one line.
        newest.len() >= 600 && newest.len() < 600 + 2048,
        "rotated at the first write past 600 bytes: {}",
        newest.len()
    );
    assert!(logs.join("murmur.log").exists());
}
