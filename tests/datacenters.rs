//! Two datacenters on loopback, one server and one client each: the servers' WAN pool (`join -wan`,
//! `members -wan`, encrypted with the same gossip key), `?dc=` answered by the other datacenter over
//! HTTP (reads, writes, a blocking query) and DNS (`NAME.node.dc2.consul`, `web.service.dc2.consul`),
//! and Consul's errors, without hanging, once the other datacenter's server is gone.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Agent, dig, dns_status, keygen, tmp, wait_for};

const SETTLE: Duration = Duration::from_secs(30);

/// `GET path` on `a`: status and body.
fn get(a: &Agent, path: &str) -> (u16, String) {
    a.http("GET", path).expect("agent answers")
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["Node"]
                .as_str()
                .or(m["Name"].as_str())
                .unwrap()
                .to_string()
        })
        .collect();
    n.sort();
    n
}

#[test]
fn two_datacenters_answer_each_other_through_their_servers() {
    let dir = tmp("dcs");
    let key = keygen();
    // The WAN pool with LAN timings, so a crash is noticed in seconds rather than the WAN profile's
    // half minute; what is tested is what happens once it is.
    let fast_wan = dir.join("wan.json");
    std::fs::write(&fast_wan, r#"{"gossip_wan": {"profile": "lan"}}"#).unwrap();
    let web = dir.join("web.json");
    std::fs::write(
        &web,
        r#"{"service": {"name": "web", "port": 8080, "tags": ["v2"]}}"#,
    )
    .unwrap();
    let enc = format!("-encrypt={key}");
    let cfg = fast_wan.to_str().unwrap();
    let s1 = Agent::start(
        "dc-s1",
        "127.0.68.1",
        &dir,
        &[
            "-server",
            "-bootstrap-expect=1",
            "-datacenter=dc1",
            &enc,
            "-config-file",
            cfg,
        ],
    );
    let mut s2 = Agent::start(
        "dc-s2",
        "127.0.68.2",
        &dir,
        &[
            "-server",
            "-bootstrap-expect=1",
            "-datacenter=dc2",
            &enc,
            "-config-file",
            cfg,
        ],
    );
    // dc1's client answers with a node TTL of its own: another datacenter's answers to it too.
    let ttl = dir.join("ttl.json");
    std::fs::write(&ttl, r#"{"dns_config": {"node_ttl": "30s"}}"#).unwrap();
    let c1 = Agent::start(
        "dc-c1",
        "127.0.68.3",
        &dir,
        &[
            "-datacenter=dc1",
            "-retry-join=127.0.68.1",
            &enc,
            "-config-file",
            ttl.to_str().unwrap(),
        ],
    );
    let c2 = Agent::start(
        "dc-c2",
        "127.0.68.4",
        &dir,
        &[
            "-datacenter=dc2",
            "-retry-join=127.0.68.2",
            &enc,
            "-config-file",
            web.to_str().unwrap(),
        ],
    );

    // A client is in no WAN pool, and cannot join one (Consul's words).
    assert_eq!(get(&c1, "/v1/agent/members?wan=1"), (200, "[]".into()));
    assert_eq!(
        c1.http("PUT", "/v1/agent/join/127.0.68.2?wan=1").unwrap(),
        (500, "Must be a server to join WAN cluster".into())
    );
    let out = c1.cli(&["join", "-wan", "127.0.68.2"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Must be a server to join WAN cluster"),
        "{out:?}"
    );
    // Before the servers are linked, dc2 is no datacenter dc1 knows.
    assert!(wait_for(SETTLE, || s1.leader().is_some() && s2.leader().is_some()));
    assert_eq!(
        get(&c1, "/v1/catalog/nodes?dc=dc2"),
        (500, "No path to datacenter".into())
    );
    assert_eq!(
        dns_status(&dig("127.0.68.3", &["dc-c2.node.dc2.consul", "A"])),
        "NXDOMAIN"
    );

    let out = s1.cli(&["join", "-wan", "127.0.68.2"]);
    assert!(out.status.success(), "{out:?}");
    let wan = ["dc-s1.dc1".to_string(), "dc-s2.dc2".to_string()];
    for s in [&s1, &s2] {
        assert!(
            wait_for(SETTLE, || names(&s.get_json("/v1/agent/members?wan=1"))
                == wan),
            "{}: {}",
            s.name,
            s.get_json("/v1/agent/members?wan=1")
        );
        let out = s.cli(&["members", "-wan"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("dc-s1.dc1")
                && text.contains("dc-s2.dc2")
                && text.contains("127.0.68.2:8302"),
            "{text}"
        );
    }
    // The WAN pool is sealed with the gossip key as the LAN pool is: nothing was refused.
    let dropped = s1.get_json("/v1/agent/self")["Stats"]["serf_wan"]["dropped_decrypt"].clone();
    assert_eq!(dropped, "0", "{dropped}");
    // The LAN pools stay apart: each holds its own datacenter's two agents.
    assert!(wait_for(SETTLE, || c1.members().len() == 2
        && c2.members().len() == 2));
    for a in [&c1, &s1] {
        let dcs = a.get_json("/v1/catalog/datacenters");
        assert_eq!(dcs, serde_json::json!(["dc1", "dc2"]), "{}", a.name);
    }
    assert_eq!(
        c2.get_json("/v1/catalog/datacenters"),
        serde_json::json!(["dc2", "dc1"])
    );

    // The servers' WAN coordinates, from probes across the pool; a client asks its server.
    let has_both = |v: &Value| {
        let areas = v.as_array().unwrap();
        let node = |dc: &str| {
            areas
                .iter()
                .find(|a| a["Datacenter"] == dc)
                .and_then(|a| a["Coordinates"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .map(|c| c["Node"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        areas.iter().all(|a| a["AreaID"] == "WAN")
            && node("dc1") == ["dc-s1"]
            && node("dc2") == ["dc-s2"]
    };
    // Each server lists what it measured itself: wait for both views.
    for a in [&c1, &s2] {
        assert!(
            wait_for(SETTLE, || has_both(
                &a.get_json("/v1/coordinate/datacenters")
            )),
            "{}: {}",
            a.name,
            a.get_json("/v1/coordinate/datacenters")
        );
    }
    let out = c1.cli(&["rtt", "-wan", "dc-s1.dc1", "dc-s2.dc2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("(using WAN coordinates)"),
        "{out:?}"
    );
    let out = s2.cli(&["rtt", "-wan", "dc-s1.dc1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("dc-s1.dc1 <-> dc-s2.dc2"),
        "{out:?}"
    );

    // HTTP reads through dc1's server, answered by dc2's, with dc2's headers.
    assert!(wait_for(SETTLE, || {
        let (code, body) = get(&c1, "/v1/catalog/nodes?dc=dc2");
        code == 200
            && names(&serde_json::from_str(&body).unwrap()) == ["dc-c2".to_string(), "dc-s2".into()]
    }));
    let t = murmur::http::client::Target::parse(&c1.http_addr()).unwrap();
    let r = t.call("GET", "/v1/catalog/nodes?dc=dc2").unwrap();
    let index: u64 = r.header("x-consul-index").unwrap().parse().unwrap();
    assert!(index > 0);
    assert_eq!(r.header("x-consul-knownleader"), Some("true"));
    let nodes: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["Datacenter"] == "dc2")
    );
    assert!(wait_for(SETTLE, || c1
        .get_json("/v1/health/service/web?dc=dc2&passing")
        .as_array()
        .is_some_and(|a| a.len() == 1)));
    let web_dc2 = c1.get_json("/v1/catalog/service/web?dc=dc2");
    assert_eq!(web_dc2[0]["Node"], "dc-c2");
    assert_eq!(web_dc2[0]["ServicePort"], 8080);
    assert_eq!(
        get(&c1, "/v1/catalog/service/web"),
        (200, "[]".into()),
        "dc1 has no web"
    );

    // A KV write forwarded to dc2 lands in dc2's store, not dc1's.
    let (code, body) = c1
        .http_body("PUT", "/v1/kv/where?dc=dc2", "in-dc2")
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "true"));
    let (code, raw) = get(&c2, "/v1/kv/where?raw");
    assert_eq!((code, raw.as_str()), (200, "in-dc2"));
    assert_eq!(get(&c1, "/v1/kv/where").0, 404);
    // A blocking read forwarded to dc2 wakes on dc2's change.
    let r = t.call("GET", "/v1/kv/where?dc=dc2").unwrap();
    let kv_index: u64 = r.header("x-consul-index").unwrap().parse().unwrap();
    let waiter = {
        let path = format!("/v1/kv/where?dc=dc2&index={kv_index}&wait=20s&raw");
        std::thread::spawn(move || t.call("GET", &path).unwrap())
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        c2.http_body("PUT", "/v1/kv/where", "changed").unwrap().0,
        200
    );
    let woke = waiter.join().unwrap();
    assert_eq!(woke.status, 200);
    assert_eq!(woke.body, b"changed");
    let woke_index: u64 = woke.header("x-consul-index").unwrap().parse().unwrap();
    assert!(woke_index > kv_index);

    // DNS for dc2's names, from dc1's client.
    let a = dig("127.0.68.3", &["dc-c2.node.dc2.consul", "A", "+short"]);
    assert_eq!(a.trim(), "127.0.68.4");
    let srv = dig("127.0.68.3", &["web.service.dc2.consul", "SRV"]);
    assert_eq!(dns_status(&srv), "NOERROR", "{srv}");
    assert!(
        srv.contains("8080 dc-c2.node.dc2.consul.") && srv.contains("127.0.68.4"),
        "{srv}"
    );
    let tagged = dig("127.0.68.3", &["v2.web.service.dc2.consul", "A", "+short"]);
    assert_eq!(tagged.trim(), "127.0.68.4");
    let unknown = dig("127.0.68.3", &["dc-c2.node.dc9.consul", "A"]);
    assert_eq!(dns_status(&unknown), "NXDOMAIN", "{unknown}");
    assert!(unknown.contains("SOA"), "{unknown}");
    assert!(c1.stat("dns", "remote") >= 3);
    // Built with the asking agent's settings: c1's node TTL, not dc2's (0), and then cached there.
    let with_ttl = dig(
        "127.0.68.3",
        &["dc-c2.node.dc2.consul", "A", "+noall", "+answer"],
    );
    assert!(with_ttl.contains("\t30\tIN\tA\t127.0.68.4"), "{with_ttl}");
    let hits = c1.stat("dns", "remote_cache_hits");
    let again = dig("127.0.68.3", &["dc-c2.node.dc2.consul", "A", "+short"]);
    assert_eq!(again.trim(), "127.0.68.4");
    assert_eq!(c1.stat("dns", "remote_cache_hits"), hits + 1);
    let no_ttl = dig(
        "127.0.68.1",
        &["dc-c2.node.dc2.consul", "A", "+noall", "+answer"],
    );
    assert!(no_ttl.contains("\t0\tIN\tA\t127.0.68.4"), "{no_ttl}");

    // dc2's server crashes: dc1's answers fail at once, with an error and not a hang; once the WAN
    // pool has declared it failed, with Consul's "No path to datacenter" and NXDOMAIN.
    s2.crash();
    let started = Instant::now();
    let (code, body) = get(&c1, "/v1/catalog/nodes?dc=dc2");
    assert_eq!(code, 500, "{body}");
    assert!(started.elapsed() < Duration::from_secs(10), "{body}");
    assert!(
        wait_for(SETTLE, || s1.status_of_wan("dc-s2.dc2").as_deref()
            == Some("failed")),
        "{}",
        s1.get_json("/v1/agent/members?wan=1")
    );
    assert_eq!(
        get(&c1, "/v1/catalog/nodes?dc=dc2"),
        (500, "No path to datacenter".into())
    );
    assert_eq!(
        get(&c1, "/v1/kv/where?dc=dc2"),
        (500, "No path to datacenter".into())
    );
    // (c1 still holds its answer for dc-c2 for the TTL it gave it, as a DNS cache does.)
    for (at, name) in [
        ("127.0.68.1", "dc-c2.node.dc2.consul"),
        ("127.0.68.3", "dc-s2.node.dc2.consul"),
    ] {
        let gone = dig(at, &[name, "A"]);
        assert_eq!(dns_status(&gone), "NXDOMAIN", "{gone}");
    }
    // dc1 itself is untouched.
    assert_eq!(get(&c1, "/v1/catalog/nodes?dc=dc1").0, 200);
    // A failed server's datacenter stays known, as in Consul, until it is reaped or forced out.
    assert_eq!(
        c1.get_json("/v1/catalog/datacenters"),
        serde_json::json!(["dc1", "dc2"])
    );
    let out = s1.cli(&["force-leave", "-wan", "dc-s2.dc2"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(s1.status_of_wan("dc-s2.dc2").as_deref(), Some("left"));
    assert_eq!(
        c1.get_json("/v1/catalog/datacenters"),
        serde_json::json!(["dc1"])
    );
    let out = c1.cli(&["force-leave", "-wan", "dc-s2.dc2"]);
    assert!(!out.status.success(), "a client has no WAN pool: {out:?}");
}

#[test]
fn forwarding_checks_that_the_other_datacenter_s_server_is_one() {
    let dir = tmp("dcs-tls");
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let tls = |args: &[&str]| {
        let out = std::process::Command::new(support::BIN)
            .arg("tls")
            .args(args)
            .current_dir(&pki)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    tls(&["ca", "create"]);
    tls(&["cert", "create", "-server", "-dc", "dc1"]);
    tls(&["cert", "create", "-server", "-dc", "dc2"]);
    let cfg = |cert: &str| {
        let f = dir.join(format!("{cert}.json"));
        let body = serde_json::json!({
            "ca_file": pki.join("murmur-agent-ca.pem"),
            "cert_file": pki.join(format!("{cert}.pem")),
            "key_file": pki.join(format!("{cert}-key.pem")),
            "verify_incoming": true,
            "verify_outgoing": true,
            "verify_server_hostname": true,
            "gossip_wan": {"profile": "lan"},
        });
        std::fs::write(&f, body.to_string()).unwrap();
        f.to_string_lossy().into_owned()
    };
    let (dc1, dc2) = (cfg("dc1-server-murmur-0"), cfg("dc2-server-murmur-0"));
    let server = |name: &str, ip: &str, dc: &str, cfg: &str, join: &str| {
        let dc = format!("-datacenter={dc}");
        let mut args = vec!["-server", "-bootstrap", dc.as_str(), "-config-file", cfg];
        if !join.is_empty() {
            args.push(join);
        }
        Agent::start(name, ip, &dir, &args)
    };
    let s1 = server("tls-s1", "127.0.68.11", "dc1", &dc1, "");
    // Joined at start, once (-join-wan), and with retries (-retry-join-wan).
    let s2 = server(
        "tls-s2",
        "127.0.68.12",
        "dc2",
        &dc2,
        "-join-wan=127.0.68.11",
    );
    // A server of dc3 holding dc1's certificate: the CA signed it, so it may gossip in the WAN pool,
    // but it is no server of dc3.
    let s3 = server(
        "tls-s3",
        "127.0.68.13",
        "dc3",
        &dc1,
        "-retry-join-wan=127.0.68.11",
    );
    assert!(wait_for(SETTLE, || s1
        .get_json("/v1/agent/members?wan=1")
        .as_array()
        .unwrap()
        .len()
        == 3));
    assert!(wait_for(SETTLE, || s2.leader().is_some() && s3.leader().is_some()));
    assert!(wait_for(SETTLE, || get(&s1, "/v1/catalog/nodes?dc=dc2").0 == 200));
    assert_eq!(
        names(&s1.get_json("/v1/catalog/nodes?dc=dc2")),
        ["tls-s2".to_string()]
    );
    let (code, body) = get(&s1, "/v1/catalog/nodes?dc=dc3");
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("server.dc3.murmur") || body.contains("certificate"),
        "{body}"
    );
    assert_eq!(
        s1.get_json("/v1/catalog/datacenters")
            .as_array()
            .unwrap()
            .len(),
        3
    );
}
