//! `murmur watch` against a real agent: a key watch runs its handler on each change of the key (first
//! with null, as Consul's does for a missing key), an event watch once per event with only the new one.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use support::{Agent, tmp, wait_for};

const SETTLE: Duration = Duration::from_secs(30);

/// A running watch, killed when dropped (a failed assertion must not leave it retrying forever).
struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `murmur watch ARGS -handler 'cat >> OUT'` against `a`: each run appends one JSON line.
fn watch(a: &Agent, args: &[&str], out: &Path) -> Watch {
    let handler = format!("cat >> {}", out.display());
    let child = Command::new(env!("CARGO_BIN_EXE_murmur"))
        .arg("watch")
        .args(args)
        .args(["-handler", &handler])
        .env("MURMUR_HTTP_ADDR", a.http_addr())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Watch(child)
}

/// The handler's runs so far; a line still being written is not one yet.
fn runs(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn handlers_run_once_per_change() {
    let dir = tmp("watch");
    let a = Agent::start("wa-s", "127.0.67.10", &dir, &["-server", "-bootstrap"]);
    assert!(wait_for(SETTLE, || a.leader().is_some()));

    let key_out = dir.join("key.jsonl");
    let key = watch(&a, &["-type", "key", "-key", "app/color"], &key_out);
    assert!(wait_for(SETTLE, || runs(&key_out) == [Value::Null]));
    let value = |v: &Value| {
        let b = base64::engine::general_purpose::STANDARD
            .decode(v["Value"].as_str().unwrap())
            .unwrap();
        String::from_utf8(b).unwrap()
    };
    for (i, color) in ["red", "green", "blue"].iter().enumerate() {
        assert!(a.cli(&["kv", "put", "app/color", color]).status.success());
        assert!(wait_for(SETTLE, || runs(&key_out).len() == i + 2));
        assert_eq!(value(&runs(&key_out)[i + 1]), *color);
    }
    // Another key's change moves the store's index but not this key: no run.
    assert!(a.cli(&["kv", "put", "app/size", "xl"]).status.success());
    assert!(a.cli(&["kv", "put", "app/color", "black"]).status.success());
    assert!(wait_for(SETTLE, || runs(&key_out).len() == 5));
    assert_eq!(value(&runs(&key_out)[4]), "black");

    let ev_out = dir.join("events.jsonl");
    let events = watch(&a, &["-type", "event", "-name", "deploy"], &ev_out);
    assert!(wait_for(SETTLE, || runs(&ev_out) == [Value::Array(vec![])]));
    let fire = |name: &str| {
        let out = a.cli(&["event", "-name", name]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_start_matches("Event ID: ")
            .to_string()
    };
    let first = fire("deploy");
    assert!(wait_for(SETTLE, || runs(&ev_out).len() == 2));
    fire("other");
    let second = fire("deploy");
    assert!(wait_for(SETTLE, || runs(&ev_out).len() == 3));
    let got = runs(&ev_out);
    assert_eq!(got[1].as_array().unwrap().len(), 1);
    assert_eq!(got[1][0]["ID"], first.as_str());
    assert_eq!(got[2].as_array().unwrap().len(), 1, "only the new event");
    assert_eq!(got[2][0]["ID"], second.as_str());

    drop((key, events));
    // Without a handler the first result is printed and the watch ends.
    let out = a.cli(&["watch", "-type", "key", "-key", "app/size"]);
    assert!(out.status.success(), "{out:?}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["Key"], "app/size");
}
