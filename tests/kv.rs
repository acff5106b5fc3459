//! The servers' replicated KV store across real agents: `-bootstrap-expect 3` elects one leader that
//! every agent agrees on, a write on any agent is read on every other, a `kill -9` of the leader loses
//! no acknowledged write and a new leader takes writes, servers restarted with their data dirs have the
//! data; and Consul's KV semantics and error texts on one server.

mod support;

use std::time::Duration;

use murmur::http::client::Target;
use serde_json::Value;
use support::{Agent, tmp, wait_for};

const SETTLE: Duration = Duration::from_secs(40);

fn peers(a: &Agent) -> Vec<String> {
    let Some((200, body)) = a.http("GET", "/v1/status/peers") else {
        return Vec::new();
    };
    let mut p: Vec<String> = serde_json::from_str(&body).unwrap_or_default();
    p.sort();
    p
}

/// PUT `value` at `key` through `a`; true once the store answered `true`.
fn put(a: &Agent, key: &str, value: &str) -> bool {
    a.http_body("PUT", &format!("/v1/kv/{key}"), value)
        .is_some_and(|(code, body)| code == 200 && body == "true")
}

/// The value at `key` as `a` reads it with `mode` ("" or "?stale" ...), decoded.
fn get(a: &Agent, key: &str, mode: &str) -> Option<String> {
    entry(a, key, mode).map(|(_, v)| v)
}

/// The `ModifyIndex` and decoded value at `key` as `a` reads it with `mode`.
fn entry(a: &Agent, key: &str, mode: &str) -> Option<(u64, String)> {
    let (code, body) = a.http("GET", &format!("/v1/kv/{key}{mode}"))?;
    if code != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    let b64 = v[0]["Value"].as_str()?;
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some((v[0]["ModifyIndex"].as_u64()?, String::from_utf8(raw).ok()?))
}

/// Whether `s` knows a leader other than itself.
fn is_follower(s: &Agent) -> bool {
    s.leader()
        .is_some_and(|l| !l.starts_with(&format!("{}:", s.ip)))
}

/// The position of a server that knows a leader other than itself.
fn follower(servers: &[Agent]) -> usize {
    servers.iter().position(is_follower).expect("a follower")
}

#[test]
fn three_servers_elect_replicate_and_survive_a_leader_crash() {
    let dir = tmp("kv-cluster");
    let join = "-retry-join=127.0.52.1";
    let server = |n: u8| {
        Agent::start(
            &format!("kv-s{n}"),
            &format!("127.0.52.{n}"),
            &dir,
            &["-server", "-bootstrap-expect=3", join],
        )
    };
    let mut servers = [server(1), server(2), server(3)];
    let client = Agent::start("kv-c", "127.0.52.4", &dir, &[join]);
    let want_peers: Vec<String> = (1..=3).map(|n| format!("127.0.52.{n}:8300")).collect();

    // One leader, the same on every agent, and the three servers as peers.
    assert!(
        wait_for(SETTLE, || {
            let l = client.leader();
            l.is_some() && servers.iter().all(|s| s.leader() == l) && peers(&client) == want_peers
        }),
        "no agreed leader; logs:\n{}",
        servers[0].log_text()
    );

    // The configuration as Consul's operator API and CLI show it: three voters, one leader.
    let c = client.get_json("/v1/operator/raft/configuration");
    let servers_json = c["Servers"].as_array().unwrap();
    assert_eq!(servers_json.len(), 3, "{c}");
    assert!(servers_json.iter().all(|s| s["Voter"] == true));
    assert_eq!(
        servers_json.iter().filter(|s| s["Leader"] == true).count(),
        1
    );
    let leader_node = servers_json.iter().find(|s| s["Leader"] == true).unwrap();
    assert_eq!(
        format!("\"{}\"", leader_node["Address"].as_str().unwrap()),
        client.http("GET", "/v1/status/leader").unwrap().1
    );
    let self_id = servers[0].get_json("/v1/agent/self")["Config"]["NodeID"].clone();
    assert!(
        servers_json
            .iter()
            .any(|s| s["ID"] == self_id && s["Node"] == "kv-s1"),
        "{c} lacks kv-s1 with ID {self_id}"
    );
    let out = client.cli(&["operator", "raft", "list-peers"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("Node"), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
    assert_eq!(table.matches("leader").count(), 1, "{table}");

    // A write on any agent is read on every other.
    let mut acknowledged = Vec::new();
    for (i, a) in servers.iter().chain([&client]).enumerate() {
        let key = format!("app/k{i}");
        assert!(put(a, &key, &format!("v{i}")), "write through {}", a.name);
        acknowledged.push((key, format!("v{i}")));
    }
    for a in servers.iter().chain([&client]) {
        for (k, v) in &acknowledged {
            assert_eq!(
                get(a, k, "").as_deref(),
                Some(v.as_str()),
                "{} reads {k}",
                a.name
            );
        }
    }

    // Compare-and-set increments from eight threads through every agent at once (the leader commits
    // concurrent writes together, in one log entry): none is lost, none counted twice.
    assert!(put(&client, "counter", "0"));
    let agents: Vec<&Agent> = servers.iter().chain([&client]).collect();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let a = agents[t % agents.len()];
            scope.spawn(move || {
                for _ in 0..5 {
                    let mut tries = 0;
                    loop {
                        tries += 1;
                        assert!(tries <= 500, "an increment through {} never held", a.name);
                        let (index, n) = entry(a, "counter", "").expect("the counter reads");
                        let next = n.parse::<u64>().expect("a number") + 1;
                        let path = format!("/v1/kv/counter?cas={index}");
                        let r = a.http_body("PUT", &path, &next.to_string());
                        if r == Some((200, "true".to_string())) {
                            break;
                        }
                    }
                }
            });
        }
    });
    for a in &agents {
        assert_eq!(get(a, "counter", "?consistent").as_deref(), Some("40"));
    }

    // Crash the leader: another is elected and takes writes; nothing acknowledged is lost.
    let old = client.leader().unwrap();
    let victim = servers
        .iter()
        .position(|s| old.starts_with(&format!("{}:", s.ip)))
        .expect("the leader is one of the servers");
    servers[victim].crash();
    let mut n = 0;
    assert!(
        wait_for(SETTLE, || {
            n += 1;
            let key = format!("after/k{n}");
            let ok = put(&client, &key, "x");
            if ok {
                acknowledged.push((key, "x".into()));
            }
            ok
        }),
        "no write accepted after the leader crashed"
    );
    let new = client.leader().unwrap();
    assert_ne!(new, old);
    let alive: Vec<&Agent> = servers.iter().filter(|s| s.child.is_some()).collect();
    for (k, v) in &acknowledged {
        for a in &alive {
            assert_eq!(
                get(a, k, "?consistent").as_deref(),
                Some(v.as_str()),
                "{} reads {k}",
                a.name
            );
        }
    }

    // The crashed server comes back with its data dir and catches up.
    servers[victim].restart();
    assert!(
        wait_for(SETTLE, || acknowledged.iter().all(|(k, v)| get(
            &servers[victim],
            k,
            "?stale"
        )
        .as_deref()
            == Some(v.as_str()))),
        "restarted server did not catch up"
    );

    // Every server down at once, then up again: the data is still there.
    for s in servers.iter_mut() {
        s.crash();
    }
    for s in servers.iter_mut() {
        s.restart();
    }
    assert!(
        wait_for(SETTLE, || acknowledged.iter().all(|(k, v)| get(
            &client,
            k,
            "?consistent"
        )
        .as_deref()
            == Some(v.as_str()))),
        "data lost over a restart of every server"
    );
}

#[test]
fn kv_semantics_and_errors_as_consul() {
    let dir = tmp("kv-one");
    let a = Agent::start("kv-one", "127.0.52.10", &dir, &["-server", "-bootstrap"]);
    assert!(wait_for(SETTLE, || a.leader().is_some()));
    let t = Target::parse(&a.http_addr()).unwrap();

    // Flags, CAS (0 = create only), indexes.
    let r = t
        .call_with_body("PUT", "/v1/kv/web/config?flags=42", b"one")
        .unwrap();
    assert_eq!(r.text(), "true");
    let v = a.get_json("/v1/kv/web/config");
    assert_eq!(v[0]["Flags"], 42);
    assert_eq!(v[0]["Value"], "b25l");
    assert!(v[0].get("Session").is_none());
    let modify = v[0]["ModifyIndex"].as_u64().unwrap();
    assert_eq!(v[0]["CreateIndex"].as_u64().unwrap(), modify);
    assert_eq!(
        a.http_body("PUT", "/v1/kv/web/config?cas=0", "two")
            .unwrap(),
        (200, "false".into())
    );
    assert_eq!(
        a.http_body("PUT", &format!("/v1/kv/web/config?cas={modify}"), "two")
            .unwrap(),
        (200, "true".into())
    );
    assert_eq!(
        a.http_body("PUT", &format!("/v1/kv/web/config?cas={modify}"), "three")
            .unwrap(),
        (200, "false".into()),
        "a stale CAS index fails"
    );
    let raw = t.call("GET", "/v1/kv/web/config?raw").unwrap();
    assert_eq!(raw.text(), "two");
    assert_eq!(raw.header("content-type"), Some("text/plain"));

    // An empty body is a null value; keys with a separator.
    assert!(put(&a, "web/folder/", ""));
    assert!(put(&a, "web/folder/deep", "d"));
    assert!(put(&a, "webx", "x"));
    assert_eq!(a.get_json("/v1/kv/web/folder/")[0]["Value"], Value::Null);
    assert_eq!(
        a.get_json("/v1/kv/web/?keys&separator=/"),
        serde_json::json!(["web/config", "web/folder/"])
    );
    assert_eq!(
        a.get_json("/v1/kv/web?recurse").as_array().unwrap().len(),
        4
    );

    // A missing key: 404 with the index headers, no body.
    let r = t.call("GET", "/v1/kv/nothing/here").unwrap();
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());
    assert_eq!(r.header("x-consul-knownleader"), Some("true"));
    assert!(r.header("x-consul-index").is_some());

    // A blocking read on one key wakes for that key, not for a write elsewhere.
    let r = t.call("GET", "/v1/kv/web/config").unwrap();
    let index: u64 = r.header("x-consul-index").unwrap().parse().unwrap();
    let t2 = t.clone();
    let waiter = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let r = t2
            .call("GET", &format!("/v1/kv/web/config?index={index}&wait=20s"))
            .unwrap();
        (started.elapsed(), r)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(put(&a, "webx", "elsewhere"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !waiter.is_finished(),
        "a write to another key woke the reader"
    );
    assert!(put(&a, "web/config", "four"));
    let (took, r) = waiter.join().unwrap();
    assert!(took < Duration::from_secs(15));
    let new_index: u64 = r.header("x-consul-index").unwrap().parse().unwrap();
    assert!(new_index > index);
    assert!(r.text().contains("Zm91cg=="), "{}", r.text());

    // Deletes: CAS, recurse; a deleted key's index does not go back.
    let idx = a.get_json("/v1/kv/webx")[0]["ModifyIndex"]
        .as_u64()
        .unwrap();
    assert_eq!(
        a.http("DELETE", "/v1/kv/webx?cas=1").unwrap(),
        (200, "false".into())
    );
    assert_eq!(
        a.http("DELETE", &format!("/v1/kv/webx?cas={idx}")).unwrap(),
        (200, "true".into())
    );
    let r = t.call("GET", "/v1/kv/webx").unwrap();
    assert_eq!(r.status, 404);
    assert!(r.header("x-consul-index").unwrap().parse::<u64>().unwrap() > idx);
    assert_eq!(
        a.http("DELETE", "/v1/kv/web?recurse").unwrap(),
        (200, "true".into())
    );
    assert_eq!(t.call("GET", "/v1/kv/web?recurse").unwrap().status, 404);

    // Bad input gets Consul's status codes and texts.
    assert_eq!(
        a.http("GET", "/v1/kv/").unwrap(),
        (400, "Missing key name".into())
    );
    assert_eq!(
        a.http("GET", "/v1/kv/x?stale&consistent").unwrap(),
        (
            400,
            "Cannot specify ?stale with ?consistent, conflicting semantics.".into()
        )
    );
    // Consul counts a `?max_stale` above zero as `?stale`.
    assert_eq!(
        a.http("GET", "/v1/kv/x?max_stale=5s&consistent").unwrap(),
        (
            400,
            "Cannot specify ?stale with ?consistent, conflicting semantics.".into()
        )
    );
    assert_eq!(
        a.http("GET", "/v1/kv/x?max_stale=soon").unwrap(),
        (400, r#"Invalid max_stale value "soon""#.into())
    );
    for fine in ["0s", "-1s", "5s"] {
        let r = t
            .call("GET", &format!("/v1/kv/x?max_stale={fine}"))
            .unwrap();
        assert_eq!(r.status, 404, "max_stale={fine}");
    }
    assert_eq!(
        t.call("GET", "/v1/kv/x?max_stale=0s&consistent")
            .unwrap()
            .status,
        404
    );
    let (code, body) = a.http_body("PUT", "/v1/kv/x?cas=1&acquire=s", "v").unwrap();
    assert_eq!(code, 400);
    assert!(body.starts_with("Conflicting flags: "), "{body}");
    let (code, body) = a.http_body("PUT", "/v1/kv/x?flags=lots", "v").unwrap();
    assert_eq!(code, 500);
    assert!(body.contains("invalid syntax"), "{body}");
    let big = "v".repeat(512 * 1024 + 1);
    let (code, body) = a.http_body("PUT", "/v1/kv/big", &big).unwrap();
    assert_eq!(code, 413);
    assert!(
        body.starts_with("Request body(524289 bytes) too large"),
        "{body}"
    );
    // Past the server's own 2 MiB buffer: still Consul's KV text, not the HTTP library's.
    let huge = "v".repeat(3 << 20);
    let (code, body) = a.http_body("PUT", "/v1/kv/big", &huge).unwrap();
    assert_eq!(code, 413);
    assert!(
        body.starts_with("Request body(3145728 bytes) too large"),
        "{body}"
    );
    assert!(put(&a, "fits", &"v".repeat(512 * 1024)));
    let (code, body) = a
        .http_body(
            "PUT",
            "/v1/kv/lock?acquire=00000000-0000-0000-0000-000000000000",
            "v",
        )
        .unwrap();
    assert_eq!(code, 500);
    assert!(body.contains("invalid session"), "{body}");
    assert_eq!(
        t.call("GET", "/v1/kv/lock").unwrap().status,
        404,
        "nothing half-applied"
    );
}

#[test]
fn locks_exclude_and_a_failed_node_gives_its_locks_up() {
    let dir = tmp("kv-locks");
    let server = Agent::start("lk-s", "127.0.52.20", &dir, &["-server", "-bootstrap"]);
    let mut client = Agent::start("lk-c", "127.0.52.21", &dir, &["-retry-join=127.0.52.20"]);
    assert!(wait_for(SETTLE, || client.leader().is_some()));

    // `murmur kv` round trip through the client agent.
    let out = client.cli(&["kv", "put", "cfg/name", "value one"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Success! Data written to: cfg/name\n"
    );
    let out = server.cli(&["kv", "get", "cfg/name"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "value one\n");
    let out = server.cli(&["kv", "get", "cfg/missing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No key exists at: cfg/missing"));

    // Two `murmur lock` contenders: the command of one never overlaps the other's.
    let log = dir.join("critical.txt");
    let cmd = format!("echo in >> {0}; sleep 1; echo out >> {0}", log.display());
    let contenders: Vec<std::process::Child> = [&server, &client]
        .iter()
        .map(|a| {
            std::process::Command::new(support::BIN)
                .args(["lock", "jobs/nightly", &cmd])
                .env("MURMUR_HTTP_ADDR", a.http_addr())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in contenders {
        assert!(c.wait().unwrap().success());
    }
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines,
        ["in", "out", "in", "out"],
        "the critical sections overlapped"
    );

    // A session on the client's node holds a lock; the client crashes; the lock is released.
    let (code, body) = client.http("PUT", "/v1/session/create").unwrap();
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let id = v["ID"].as_str().unwrap().to_string();
    let info = server.get_json(&format!("/v1/session/info/{id}"));
    assert_eq!(info[0]["Node"], "lk-c");
    assert_eq!(info[0]["NodeChecks"], serde_json::json!(["serfHealth"]));
    assert_eq!(
        client
            .http_body("PUT", &format!("/v1/kv/leader?acquire={id}"), "lk-c")
            .unwrap(),
        (200, "true".into())
    );
    assert_eq!(server.get_json("/v1/kv/leader")[0]["Session"], id.as_str());

    // Transactions through the client agent: all or nothing, Consul's shapes and texts.
    let txn = |body: &str| {
        let (code, text) = client.http_body("PUT", "/v1/txn", body).unwrap();
        (
            code,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
        )
    };
    let (code, v) = txn(&format!(
        r#"[{{"KV":{{"Verb":"check-session","Key":"leader","Session":"{id}"}}}},
            {{"kv":{{"verb":"set","key":"tx/a","value":"YQ==","flags":7}},"Node":null,"Service":null,"Check":null}},
            {{"KV":{{"Verb":"set","Key":"tx/b","Value":"Yg=="}}}},
            {{"KV":{{"Verb":"get-tree","Key":"tx/"}}}}]"#
    ));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["Errors"], Value::Null);
    let results = v["Results"].as_array().unwrap();
    assert_eq!(results.len(), 5, "{v}");
    assert_eq!(results[0]["KV"]["Session"], id.as_str());
    assert_eq!(
        results[1]["KV"]["Value"],
        Value::Null,
        "a write reports no value"
    );
    assert_eq!(results[1]["KV"]["Flags"], 7);
    assert_eq!(
        results[1]["KV"]["ModifyIndex"], results[2]["KV"]["ModifyIndex"],
        "one index for the whole transaction"
    );
    assert_eq!(
        results[3]["KV"]["Value"], "YQ==",
        "a read reports the value"
    );
    assert_eq!(results[4]["KV"]["Key"], "tx/b");
    let before = server.get_json("/v1/kv/tx/?recurse");
    let (code, v) = txn(r#"[{"KV":{"Verb":"delete-tree","Key":"tx/"}},
            {"KV":{"Verb":"cas","Key":"tx/a","Value":"eA==","Index":1}},
            {"KV":{"Verb":"lock","Key":"leader","Session":"00000000-0000-0000-0000-000000000000"}},
            {"KV":{"Verb":"frobnicate","Key":"k"}}]"#);
    assert_eq!(code, 409, "{v}");
    assert_eq!(
        v["Errors"],
        serde_json::json!([{"OpIndex": 3, "What": "unknown KV verb \"frobnicate\""}]),
        "a verb it does not know stops the transaction before the log"
    );
    let (code, v) = txn(r#"[{"KV":{"Verb":"delete-tree","Key":"tx/"}},
            {"KV":{"Verb":"cas","Key":"tx/a","Value":"eA==","Index":1}},
            {"KV":{"Verb":"lock","Key":"leader","Session":"00000000-0000-0000-0000-000000000000"}}]"#);
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["Results"], Value::Null);
    assert_eq!(
        v["Errors"],
        serde_json::json!([
            {"OpIndex": 1, "What": "failed to set key \"tx/a\", index is stale"},
            {"OpIndex": 2, "What": "invalid session \"00000000-0000-0000-0000-000000000000\""}
        ])
    );
    assert_eq!(
        server.get_json("/v1/kv/tx/?recurse"),
        before,
        "a failed transaction changes nothing"
    );
    // Read-only: served as a read, with the leader headers and no index.
    let r = Target::parse(&client.http_addr())
        .unwrap()
        .call_with_body(
            "PUT",
            "/v1/txn?stale",
            br#"[{"KV":{"Verb":"get","Key":"tx/missing"}}]"#,
        )
        .unwrap();
    assert_eq!(r.status, 409);
    assert!(
        r.text().contains(r#"key \"tx/missing\" doesn't exist"#),
        "{}",
        r.text()
    );
    assert_eq!(r.header("x-consul-knownleader"), Some("true"));
    assert!(r.header("x-consul-index").is_none());
    // Bad bodies.
    assert_eq!(txn("[{").0, 400);
    let many = format!(
        "[{}]",
        vec![r#"{"KV":{"Verb":"get","Key":"k"}}"#; 129].join(",")
    );
    assert_eq!(
        txn(&many),
        (
            413,
            Value::String("Transaction contains too many operations (129 > 128)".into())
        )
    );
    let (code, v) = txn(r#"[{"Node":{"Verb":"get"}}]"#);
    assert_eq!(code, 400);
    assert!(
        v.as_str()
            .unwrap()
            .contains("does not implement node operations"),
        "{v}"
    );

    // A session bound to one of the client's own checks ends when that check turns critical, and
    // gives up its lock; serfHealth is still passing.
    let (code, body) = client
        .http_body(
            "PUT",
            "/v1/agent/check/register",
            r#"{"ID": "lk-ttl", "Name": "lease", "TTL": "60s", "Status": "passing"}"#,
        )
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let (code, body) = client
        .http_body(
            "PUT",
            "/v1/session/create",
            r#"{"Name": "on-check", "NodeChecks": ["serfHealth", "lk-ttl"]}"#,
        )
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let bound: Value = serde_json::from_str(&body).unwrap();
    let bound = bound["ID"].as_str().unwrap().to_string();
    assert_eq!(
        client.http_body("PUT", &format!("/v1/kv/bound?acquire={bound}"), "x"),
        Some((200, "true".into()))
    );
    assert_eq!(
        client
            .http("PUT", "/v1/agent/check/fail/lk-ttl?note=gone")
            .map(|r| r.0),
        Some(200)
    );
    assert!(
        wait_for(SETTLE, || server.get_json("/v1/kv/bound")[0]
            .get("Session")
            .is_none()),
        "the session of a critical check kept its lock"
    );
    assert_eq!(
        server.get_json(&format!("/v1/session/info/{bound}")),
        serde_json::json!([])
    );
    // A session cannot be created on a check that is critical (Consul's text).
    assert_eq!(
        client.http_body(
            "PUT",
            "/v1/session/create",
            r#"{"NodeChecks": ["serfHealth", "lk-ttl"]}"#
        ),
        Some((500, "Check 'lk-ttl' is in critical state".into()))
    );

    client.crash();
    assert!(
        wait_for(SETTLE, || server.get_json("/v1/kv/leader")[0]
            .get("Session")
            .is_none()),
        "the lock of a failed node's session was not released"
    );
    assert_eq!(server.get_json("/v1/session/list"), serde_json::json!([]));
    assert_eq!(
        server
            .http("PUT", &format!("/v1/session/renew/{id}"))
            .unwrap(),
        (404, format!("Session id '{id}' not found"))
    );
}

#[test]
fn a_later_server_joins_as_a_non_voter_and_a_wiped_server_rejoins() {
    let dir = tmp("kv-grow");
    let fast = dir.join("autopilot.json");
    std::fs::write(
        &fast,
        r#"{"autopilot": {"server_stabilization_time": "1s"}}"#,
    )
    .unwrap();
    let fast = format!("-config-file={}", fast.display());
    let join = "-retry-join=127.0.52.30";
    let server = |n: u8, extra: &[&str]| {
        let mut args = vec!["-server", join, fast.as_str()];
        args.extend_from_slice(extra);
        Agent::start(
            &format!("kv-g{n}"),
            &format!("127.0.52.{}", 30 + n),
            &dir,
            &args,
        )
    };
    let mut servers = vec![
        server(0, &["-bootstrap-expect=3"]),
        server(1, &["-bootstrap-expect=3"]),
        server(2, &["-bootstrap-expect=3"]),
    ];
    let addrs = |ns: &[u8]| -> Vec<String> {
        let mut v: Vec<String> = ns
            .iter()
            .map(|n| format!("127.0.52.{}:8300", 30 + n))
            .collect();
        v.sort();
        v
    };
    assert!(
        wait_for(SETTLE, || peers(&servers[0]) == addrs(&[0, 1, 2])),
        "three voters"
    );
    assert!(put(&servers[0], "grow/before", "1"));

    // A fourth server without -bootstrap-expect is added by the leader, first without a vote.
    servers.push(server(3, &[]));
    assert!(
        wait_for(SETTLE, || peers(&servers[0]) == addrs(&[0, 1, 2, 3])),
        "the fourth server was not promoted to voter"
    );
    assert!(wait_for(SETTLE, || get(
        &servers[3],
        "grow/before",
        "?stale"
    )
    .as_deref()
        == Some("1")));

    // Autopilot's view through the newest server (forwarded to the leader): four healthy voters, one
    // of which may fail.
    let mut health = Value::Null;
    assert!(
        wait_for(SETTLE, || {
            let (code, body) = servers[3]
                .http("GET", "/v1/operator/autopilot/health")
                .unwrap();
            health = serde_json::from_str(&body).unwrap_or(Value::Null);
            code == 200
        }),
        "never healthy: {health}"
    );
    assert_eq!(health["Healthy"], true);
    assert_eq!(health["FailureTolerance"], 1);
    let list = health["Servers"].as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(list.iter().filter(|s| s["Leader"] == true).count(), 1);
    for s in list {
        assert_eq!(
            (s["Voter"].clone(), s["SerfStatus"].clone()),
            (true.into(), "alive".into())
        );
        let contact = s["LastContact"].as_str().unwrap();
        assert!(contact == "0s" || contact.ends_with("ms"), "{contact}");
        assert!(s["StableSince"].as_str().unwrap().ends_with('Z'), "{s}");
    }

    // remove-peer as Consul's: refused without a peer or for an unknown one; a live server removed
    // comes back (gossip still shows it), first without a vote.
    let out = servers[1].cli(&["operator", "raft", "remove-peer"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error removing peer: an address or id is required for the peer to remove\n"
    );
    let out = servers[1].cli(&[
        "operator",
        "raft",
        "remove-peer",
        "-address=127.0.0.99:8300",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error removing peer: Unexpected response code: 500 (address \"127.0.0.99:8300\" was not \
         found in the Raft configuration)\n"
    );
    assert_eq!(
        servers[1]
            .http("DELETE", "/v1/operator/raft/peer")
            .unwrap()
            .0,
        400
    );
    let out = servers[1].cli(&[
        "operator",
        "raft",
        "remove-peer",
        "-address=127.0.52.33:8300",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Removed peer with address \"127.0.52.33:8300\"\n"
    );
    assert!(
        wait_for(SETTLE, || peers(&servers[0]) == addrs(&[0, 1, 2, 3])),
        "the removed live server did not come back"
    );

    // A server whose data dir is wiped comes back with a new node ID under its old name: the leader
    // replaces the old entry instead of counting a dead voter, and the cluster keeps taking writes.
    // It comes back with only itself to join, as the first server would (every -retry-join names
    // it): it finds the others through their probes, which say they know more members than it does,
    // not at their next periodic push/pull.
    let victim = follower(&servers);
    servers[victim].crash();
    std::fs::remove_dir_all(dir.join(&servers[victim].name)).unwrap();
    let at = servers[victim].args.iter().position(|a| a == join).unwrap();
    servers[victim].args[at] = format!("-retry-join={}", servers[victim].ip);
    servers[victim].restart();
    // The peer list shows addresses only, and the old entry has the same address as the new one:
    // wait for the configuration to hold the new node ID as a voter.
    let new_id = servers[victim].get_json("/v1/agent/self")["Config"]["NodeID"].clone();
    let victim_addr = format!("{}:8300", servers[victim].ip);
    let mut config = Value::Null;
    assert!(
        wait_for(SETTLE, || {
            config = servers[0]
                .http("GET", "/v1/operator/raft/configuration")
                .and_then(|(_, body)| serde_json::from_str(&body).ok())
                .unwrap_or(Value::Null);
            let list = config["Servers"].as_array().cloned().unwrap_or_default();
            let mine: Vec<&Value> = list
                .iter()
                .filter(|s| s["Address"] == *victim_addr)
                .collect();
            list.len() == 4
                && mine.len() == 1
                && mine[0]["ID"] == new_id
                && mine[0]["Voter"] == true
                && put(&servers[victim], "grow/after", "2")
        }),
        "the wiped server did not rejoin with its new node ID: {config}"
    );
    let (_, body) = servers[0].http("GET", "/v1/status/peers").unwrap();
    assert_eq!(serde_json::from_str::<Vec<String>>(&body).unwrap().len(), 4);
    assert!(wait_for(SETTLE, || get(
        &servers[victim],
        "grow/before",
        "?stale"
    )
    .as_deref()
        == Some("1")));
    assert!(
        servers
            .iter()
            .any(|s| s.log_text().contains("from the raft configuration")),
        "the old node ID was not taken out"
    );

    // A server that crashes and stays down is removed once gossip declares it failed (autopilot's
    // cleanup_dead_servers); the other three keep the quorum.
    let gone = follower(&servers);
    servers[gone].crash();
    let rest: Vec<u8> = (0..4u8).filter(|n| usize::from(*n) != gone).collect();
    let watcher = &servers[usize::from(rest[0])];
    assert!(
        wait_for(SETTLE, || peers(watcher) == addrs(&rest)),
        "the failed server stayed in the raft configuration"
    );
    assert!(put(watcher, "grow/three", "3"));
}
