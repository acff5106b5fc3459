//! Multi-process tests: real agents on loopback addresses, driven through the CLI and the HTTP API.

mod support;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use support::{Agent, BIN, run_to_exit, tmp, wait_for};

const CONVERGE: Duration = Duration::from_secs(20);
const DETECT: Duration = Duration::from_secs(40);

fn all_alive(a: &Agent, names: &[&str]) -> bool {
    let m = a.members();
    m.len() == names.len()
        && names
            .iter()
            .all(|n| m.iter().any(|(name, st, _)| name == n && st == "alive"))
}

#[test]
fn three_agents_join_fail_leave_and_rejoin() {
    let dir = tmp("cluster");
    let one = Agent::start(
        "agent-one",
        "127.0.1.1",
        &dir,
        &["-server", "-bootstrap-expect", "1"],
    );
    let mut two = Agent::start("agent-two", "127.0.1.2", &dir, &[]);
    let retry = ["-retry-join", "127.0.1.1"];
    let mut three = Agent::start("agent-three", "127.0.1.3", &dir, &retry);

    // Before joining, agent-two only knows itself.
    assert_eq!(two.members().len(), 1);
    let out = one.cli(&["join", "127.0.1.2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Successfully joined cluster by contacting 1 nodes."
    );
    let names = ["agent-one", "agent-two", "agent-three"];
    for a in [&one, &two, &three] {
        assert!(
            wait_for(CONVERGE, || all_alive(a, &names)),
            "{} never saw all three: {:?}",
            a.name,
            a.members()
        );
        let m = a.members();
        let kind = |n: &str| m.iter().find(|(name, _, _)| name == n).unwrap().2.clone();
        assert_eq!(kind("agent-one"), "server");
        assert_eq!(kind("agent-two"), "client");
        assert_eq!(kind("agent-three"), "client");
    }
    let header = String::from_utf8_lossy(&two.cli(&["members"]).stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "Node", "Address", "Status", "Type", "Build", "Protocol", "DC"
        ]
    );

    // Crash: the others detect it as failed.
    let id_before = std::fs::read_to_string(dir.join("agent-three/node-id")).unwrap();
    three.crash();
    for a in [&one, &two] {
        assert!(
            wait_for(DETECT, || a.status_of("agent-three").as_deref()
                == Some("failed")),
            "{} did not mark agent-three failed: {:?}",
            a.name,
            a.members()
        );
    }
    let out = one.cli(&["members", "-status", "failed"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("agent-three"));

    // Restart with the same data dir: it rejoins and is alive again everywhere, with the same node ID.
    three.restart();
    for a in [&one, &two, &three] {
        assert!(
            wait_for(CONVERGE, || all_alive(a, &names)),
            "{} after restart: {:?}",
            a.name,
            a.members()
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("agent-three/node-id")).unwrap(),
        id_before
    );

    // Ctrl-C on a client is a graceful leave: the others see `left`, the process exits 0.
    two.signal(libc::SIGINT);
    assert_eq!(
        two.wait_exit(Duration::from_secs(15)),
        Some(0),
        "log:\n{}",
        two.log_text()
    );
    for a in [&one, &three] {
        assert!(
            wait_for(CONVERGE, || a.status_of("agent-two").as_deref()
                == Some("left")),
            "{} did not see agent-two left: {:?}",
            a.name,
            a.members()
        );
    }
    assert!(two.log_text().contains("Graceful leave complete"));
}

#[test]
fn cli_leave_and_force_leave() {
    let dir = tmp("leave");
    let a = Agent::start("fl-a", "127.0.2.1", &dir, &["-server"]);
    let mut b = Agent::start("fl-b", "127.0.2.2", &dir, &["-join", "127.0.2.1"]);
    let mut c = Agent::start("fl-c", "127.0.2.3", &dir, &["-join", "127.0.2.1"]);
    let names = ["fl-a", "fl-b", "fl-c"];
    assert!(wait_for(CONVERGE, || all_alive(&a, &names)));

    let out = b.cli(&["leave"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Graceful leave complete"
    );
    assert_eq!(b.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(wait_for(CONVERGE, || a.status_of("fl-b").as_deref() == Some("left")));

    c.crash();
    assert!(wait_for(DETECT, || a.status_of("fl-c").as_deref() == Some("failed")));
    let out = a.cli(&["force-leave", "fl-c"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_for(CONVERGE, || a.status_of("fl-c").as_deref() == Some("left")));

    let out = a.cli(&["force-leave", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Error force leaving"));
    let out = a.cli(&["force-leave"]);
    assert_eq!(out.status.code(), Some(1));
    // `-status` that matches nobody exits 2, as Consul does.
    assert_eq!(
        a.cli(&["members", "-status", "^leaving$"]).status.code(),
        Some(2)
    );
    assert_eq!(a.cli(&["members", "-status", "("]).status.code(), Some(1));
}

#[test]
fn http_api_shapes_and_errors() {
    let dir = tmp("http");
    let s = Agent::start(
        "api-server",
        "127.0.3.1",
        &dir,
        &["-server", "-bootstrap-expect=1"],
    );
    let c = Agent::start(
        "api-client",
        "127.0.3.2",
        &dir,
        &["-retry-join=127.0.3.1:8301"],
    );
    assert!(wait_for(CONVERGE, || all_alive(
        &c,
        &["api-server", "api-client"]
    )));

    let (st, body) = c.http("GET", "/v1/agent/members").unwrap();
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let server = v
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Name"] == "api-server")
        .unwrap();
    assert_eq!(server["Addr"], "127.0.3.1");
    assert_eq!(server["Port"], 8301);
    assert_eq!(server["Status"], 1);
    assert_eq!(server["Tags"]["role"], "consul");
    assert_eq!(server["Tags"]["dc"], "dc1");
    assert_eq!(server["Tags"]["expect"], "1");
    assert_eq!(server["Tags"]["port"], "8300");

    let (_, body) = c.http("GET", "/v1/status/leader").unwrap();
    assert_eq!(body, "\"127.0.3.1:8300\"");
    let (_, body) = c.http("GET", "/v1/status/peers").unwrap();
    assert_eq!(body, "[\"127.0.3.1:8300\"]");

    let (st, body) = c.http("GET", "/v1/catalog/node/api-server").unwrap();
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Node"]["Address"], "127.0.3.1");
    assert_eq!(v["Services"]["consul"]["Port"], 8300);
    assert_eq!(
        c.http("GET", "/v1/catalog/node/ghost").unwrap(),
        (200, "null".into())
    );

    let (_, body) = c.http("GET", "/v1/agent/self").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Config"]["NodeName"], "api-client");
    assert_eq!(v["Member"]["Tags"]["role"], "node");

    assert_eq!(
        c.http("GET", "/v1/catalog/nodes?index=x").unwrap(),
        (400, "Invalid index".into())
    );
    assert_eq!(
        c.http("GET", "/v1/catalog/nodes?wait=soon").unwrap(),
        (400, "Invalid wait time".into())
    );
    assert_eq!(c.http("GET", "/v1/catalog/nodes?dc=mars").unwrap().0, 500);
    assert_eq!(
        c.http("DELETE", "/v1/agent/members").unwrap(),
        (405, "method DELETE not allowed".into())
    );
    let (st, body) = c.http("PUT", "/v1/agent/join/127.0.3.99").unwrap();
    assert_eq!(st, 500, "{body}");
    assert!(body.contains("127.0.3.99"), "{body}");
    assert_eq!(c.http("PUT", "/v1/agent/force-leave/ghost").unwrap().0, 500);

    // Blocking query: waits for a change past the given index, then returns the new state.
    let t = murmur::http::client::Target::parse(&c.http_addr()).unwrap();
    let r = t.call("GET", "/v1/catalog/nodes").unwrap();
    let index: u64 = r.header("x-consul-index").unwrap().parse().unwrap();
    assert!(index >= 1);
    assert_eq!(r.header("x-consul-knownleader"), Some("true"));
    let r = t
        .call("GET", &format!("/v1/catalog/nodes?index={index}&wait=1s"))
        .unwrap();
    assert_eq!(
        r.header("x-consul-index"),
        Some(index.to_string().as_str()),
        "nothing changed"
    );
    let waiter = std::thread::spawn(move || {
        t.call("GET", &format!("/v1/catalog/nodes?index={index}&wait=30s"))
            .unwrap()
    });
    let late = Agent::start("api-late", "127.0.3.3", &dir, &["-join=127.0.3.1"]);
    let r = waiter.join().unwrap();
    assert!(r.header("x-consul-index").unwrap().parse::<u64>().unwrap() > index);
    assert!(
        String::from_utf8_lossy(&r.body).contains("api-late"),
        "{}",
        r.text()
    );
    drop(late);

    // A join from the CLI to a dead address fails with Consul's message and exit code.
    let out = c.cli(&["join", "127.0.3.98"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Error joining address '127.0.3.98'")
            && err.contains("Failed to join any nodes."),
        "{err}"
    );
    assert_eq!(c.cli(&["join"]).status.code(), Some(1));
    drop(s);
}

#[test]
fn garbage_datagrams_are_dropped_and_counted() {
    let dir = tmp("garbage");
    let a = Agent::start("junk-a", "127.0.4.1", &dir, &[]);
    let sock = UdpSocket::bind("127.0.4.9:0").unwrap();
    let target = "127.0.4.1:8301";
    sock.send_to(b"", target).unwrap();
    sock.send_to(&[3, 99, 0, 0], target).unwrap(); // unknown kind
    sock.send_to(&[42, 1, 0, 0, 0, 0], target).unwrap(); // unknown protocol version
    sock.send_to(&[3, 1, 0, 0, 0, 1, 5, b'x'], target).unwrap(); // truncated name
    sock.send_to(&vec![1u8; 20_000], target).unwrap(); // oversize
    let stat = |k: &str| -> u64 {
        let (_, body) = a.http("GET", "/v1/agent/self").unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["Stats"]["serf_lan"][k].as_str().unwrap().parse().unwrap()
    };
    assert!(wait_for(Duration::from_secs(5), || stat(
        "dropped_malformed"
    ) == 3
        && stat("dropped_version") == 1
        && stat("dropped_oversize") == 1));
    // Still healthy and answering.
    assert_eq!(a.members().len(), 1);
}

#[test]
fn bad_configuration_is_refused_with_a_clear_error() {
    let dir = tmp("badcfg");
    // An agent that starts by mistake is killed after the limit and fails the test (no exit code).
    let run = |args: &[&str]| {
        let mut all = vec!["agent".to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        let out = run_to_exit(&all, Duration::from_secs(20));
        (out.code, out.output)
    };
    let cfg = dir.join("bad.json");
    std::fs::write(&cfg, r#"{"ports": {"http": "eighty"}}"#).unwrap();
    let (code, err) = run(&["-dev", "-config-file", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("bad.json") && err.contains("ports.http"),
        "{err}"
    );

    let conf_dir = dir.join("conf.d");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::write(conf_dir.join("x.hcl"), "mystery_key = 1\n").unwrap();
    let (code, err) = run(&["-dev", "-config-dir", conf_dir.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("x.hcl") && err.contains("mystery_key"),
        "{err}"
    );

    let file = dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let bad_dir = file.join("data");
    let (code, err) = run(&[
        "-node=x",
        "-bind=127.0.5.1",
        "-client=127.0.5.1",
        "-data-dir",
        bad_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("data_dir") && err.contains("a-file"), "{err}");

    let (code, err) = run(&["-bootstrap-expect=1", "-data-dir=/tmp/x"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("requires server mode"), "{err}");

    // Consul's own files and flags that murmur does not implement yet say so, not "unknown".
    let consul_dir = dir.join("consul.d");
    std::fs::create_dir_all(&consul_dir).unwrap();
    std::fs::write(
        consul_dir.join("mesh.json"),
        r#"{"connect": {"enabled": true}}"#,
    )
    .unwrap();
    let (code, err) = run(&["-dev", "-config-dir", consul_dir.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("mesh.json")
            && err.contains("key \"connect\" is a Consul setting that murmur does not support yet"),
        "{err}"
    );
    let (code, err) = run(&["-dev", "-serf-wan-bind=127.0.0.1"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("-serf-wan-bind is a Consul flag that murmur does not support yet"),
        "{err}"
    );
    let (code, err) = run(&["-dev", "-serf-wan-port=70000"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("-serf-wan-port") && err.contains("-1 for off"),
        "{err}"
    );
    let (code, err) = run(&["-join-wan=127.0.0.1", "-data-dir=/tmp/x"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("require server mode"), "{err}");
}

#[test]
fn dev_agent_runs_with_no_configuration() {
    let dir = tmp("dev");
    // -dev binds 127.0.0.1; move ports so this does not collide with anything on the defaults.
    let mut child = Command::new(BIN)
        .args([
            "agent",
            "-dev",
            "-node=dev-node",
            "-http-port=18611",
            "-serf-lan-port=18612",
            "-serf-wan-port=18613",
        ])
        .stdout(std::fs::File::create(dir.join("dev.log")).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = murmur::http::client::Target::parse("127.0.0.1:18611").unwrap();
    let up = wait_for(Duration::from_secs(10), || {
        t.call("GET", "/v1/agent/members")
            .is_ok_and(|r| String::from_utf8_lossy(&r.body).contains("dev-node"))
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    assert!(up);
}
