//! The replicated catalog across real agents: services from a config file and from the API seen on
//! another agent over HTTP and DNS, health (TTL expiry, a crashed node's serfHealth), blocking queries
//! that wake for their own service only, reload, and registrations that come back after a restart.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Agent, dig, dns_status, tmp, wait_for};

const CONVERGE: Duration = Duration::from_secs(20);

/// Nodes serving `service` as agent `a` lists them in `/v1/catalog/service/:name`, sorted.
fn catalog_nodes(a: &Agent, service: &str) -> Vec<String> {
    let v = a.get_json(&format!("/v1/catalog/service/{service}"));
    let mut n: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Node"].as_str().unwrap().to_owned())
        .collect();
    n.sort();
    n
}

/// Nodes `?passing` keeps for `service`, sorted.
fn passing_nodes(a: &Agent, service: &str) -> Vec<String> {
    let v = a.get_json(&format!("/v1/health/service/{service}?passing"));
    let mut n: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Node"]["Node"].as_str().unwrap().to_owned())
        .collect();
    n.sort();
    n
}

/// SRV targets `dig web.service.consul SRV` returns from agent `a`, sorted.
fn srv_targets(a: &Agent, service: &str) -> Vec<String> {
    let out = dig(
        &a.ip,
        &["+short", &format!("{service}.service.consul"), "SRV"],
    );
    let mut t: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
        .collect();
    t.sort();
    t
}

fn index_of(a: &Agent, path: &str) -> u64 {
    let t = murmur::http::client::Target::parse(&a.http_addr()).unwrap();
    let r = t.call("GET", path).unwrap();
    r.header("x-consul-index")
        .and_then(|v| v.parse().ok())
        .expect("X-Consul-Index")
}

#[test]
fn services_health_and_blocking_queries_across_agents() {
    let dir = tmp("catalog");
    let conf = dir.join("one.d");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("web.json"),
        r#"{"service": {"name": "web", "tags": ["rails"], "port": 80}}"#,
    )
    .unwrap();
    let config_dir = conf.to_str().unwrap();
    let one = Agent::start(
        "cat-one",
        "127.0.50.1",
        &dir,
        &[
            "-server",
            "-bootstrap-expect",
            "1",
            "-config-dir",
            config_dir,
        ],
    );
    let mut two = Agent::start("cat-two", "127.0.50.2", &dir, &["-join", "127.0.50.1"]);
    let three = Agent::start("cat-three", "127.0.50.3", &dir, &["-join", "127.0.50.1"]);

    // A service registered over the API on cat-two, with a TTL check that passes.
    let reg =
        json!({"Name": "web", "ID": "web-2", "Port": 8080, "Tags": ["v2"], "Check": {"TTL": "5s"}});
    let put = |a: &Agent, path: &str, body: &str| a.http_body("PUT", path, body).map(|r| r.0);
    assert_eq!(
        put(&two, "/v1/agent/service/register", &reg.to_string()),
        Some(200)
    );
    assert_eq!(
        put(&two, "/v1/agent/check/pass/service:web-2", ""),
        Some(200)
    );

    // cat-three, which registered nothing, sees both instances: over HTTP and over DNS.
    let both = vec!["cat-one".to_string(), "cat-two".to_string()];
    assert!(
        wait_for(CONVERGE, || catalog_nodes(&three, "web") == both),
        "catalog on cat-three: {:?}",
        three.get_json("/v1/catalog/service/web")
    );
    let services = three.get_json("/v1/catalog/services");
    assert_eq!(services["web"], json!(["rails", "v2"]));
    assert_eq!(
        services["consul"],
        json!([]),
        "the server carries the consul service"
    );
    let entry = &three.get_json("/v1/catalog/service/web?tag=v2")[0];
    assert_eq!(entry["ServiceID"], "web-2");
    assert_eq!(entry["ServicePort"], 8080);
    assert_eq!(entry["Address"], "127.0.50.2");
    assert!(wait_for(CONVERGE, || passing_nodes(&three, "web") == both));
    assert_eq!(
        srv_targets(&three, "web"),
        ["cat-one.node.dc1.consul.", "cat-two.node.dc1.consul."]
    );
    let a = dig("127.0.50.3", &["+short", "web.service.consul", "A"]);
    let mut ips: Vec<&str> = a.lines().collect();
    ips.sort();
    assert_eq!(ips, ["127.0.50.1", "127.0.50.2"]);
    let health = three.get_json("/v1/health/node/cat-two");
    let ids: Vec<&str> = health
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["CheckID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["serfHealth", "service:web-2"]);

    // A watcher of web on cat-three: a new db service does not wake it; web's TTL running out does.
    let web_index = index_of(&three, "/v1/health/service/web");
    let watcher = {
        let addr = three.http_addr();
        std::thread::spawn(move || {
            let t = murmur::http::client::Target::parse(&addr).unwrap();
            let path = format!("/v1/health/service/web?index={web_index}&wait=20s");
            let r = t.call("GET", &path).unwrap();
            let index: u64 = r.header("x-consul-index").unwrap().parse().unwrap();
            (index, serde_json::from_str::<Value>(&r.text()).unwrap())
        })
    };
    // And a watcher of node cat-two: the db service on cat-one is not its change either.
    let node_index = index_of(&three, "/v1/health/node/cat-two");
    let node_watcher = {
        let addr = three.http_addr();
        std::thread::spawn(move || {
            let t = murmur::http::client::Target::parse(&addr).unwrap();
            let path = format!("/v1/health/node/cat-two?index={node_index}&wait=20s");
            let r = t.call("GET", &path).unwrap();
            let index: u64 = r.header("x-consul-index").unwrap().parse().unwrap();
            (index, serde_json::from_str::<Value>(&r.text()).unwrap())
        })
    };
    let db_watch = {
        let addr = three.http_addr();
        let db_index = index_of(&three, "/v1/catalog/service/db");
        std::thread::spawn(move || {
            let t = murmur::http::client::Target::parse(&addr).unwrap();
            let path = format!("/v1/catalog/service/db?index={db_index}&wait=20s");
            let r = t.call("GET", &path).unwrap();
            serde_json::from_str::<Value>(&r.text()).unwrap()
        })
    };
    assert_eq!(
        put(
            &one,
            "/v1/agent/service/register",
            r#"{"Name": "db", "Port": 5432}"#
        ),
        Some(200)
    );
    // The db watcher wakes with db in it; the web watcher is still asleep until web's check expires.
    let db = db_watch.join().unwrap();
    assert_eq!(db[0]["Node"], "cat-one");
    assert!(
        !watcher.is_finished(),
        "a change to db woke a watcher of web"
    );
    assert!(
        !node_watcher.is_finished(),
        "a change on cat-one woke a watcher of cat-two"
    );
    let (node_woke_at, node_checks) = node_watcher.join().unwrap();
    assert!(node_woke_at > node_index);
    // As in Consul, the index is never below a ModifyIndex in the answer.
    for c in node_checks.as_array().unwrap() {
        assert!(c["ModifyIndex"].as_u64().unwrap() <= node_woke_at, "{c}");
    }
    assert_eq!(node_checks[1]["CheckID"], "service:web-2");
    assert_eq!(node_checks[1]["Status"], "critical", "{node_checks}");
    let (woke_at, body) = watcher.join().unwrap();
    assert!(woke_at > web_index);
    let two_checks = body
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Node"]["Node"] == "cat-two")
        .map(|e| e["Checks"][1]["Status"].clone());
    assert_eq!(two_checks, Some(json!("critical")), "{body}");
    // The flip reached cat-three as a patch against the version it held, not as the whole record.
    let stats = three.get_json("/v1/agent/self")["Stats"]["catalog"].clone();
    let patched: u64 = stats["record_patches_applied"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(patched >= 1, "{stats}");
    assert_eq!(stats["record_patches_refused"], "0", "{stats}");
    // Critical instances leave ?passing and DNS, and stay in the catalog.
    assert!(wait_for(CONVERGE, || passing_nodes(&three, "web") == ["cat-one"]));
    assert_eq!(srv_targets(&three, "web"), ["cat-one.node.dc1.consul."]);
    assert_eq!(catalog_nodes(&three, "web"), both);

    // Passing again, then cat-two is killed: its serfHealth goes critical and DNS drops it.
    assert_eq!(
        put(&two, "/v1/agent/check/pass/service:web-2", ""),
        Some(200)
    );
    assert!(wait_for(CONVERGE, || passing_nodes(&three, "web") == both));
    two.crash();
    assert!(
        wait_for(Duration::from_secs(40), || {
            let h = three.get_json("/v1/health/node/cat-two");
            h[0]["CheckID"] == "serfHealth" && h[0]["Status"] == "critical"
        }),
        "serfHealth of the crashed node never went critical"
    );
    assert_eq!(passing_nodes(&three, "web"), ["cat-one"]);
    assert_eq!(srv_targets(&three, "web"), ["cat-one.node.dc1.consul."]);
    assert_eq!(
        catalog_nodes(&three, "web"),
        both,
        "a failed node stays in the catalog"
    );

    // Restarted, cat-two comes back with its API registration from the data dir.
    two.restart();
    assert_eq!(two.cli(&["join", "127.0.50.1"]).status.code(), Some(0));
    assert!(
        wait_for(CONVERGE, || {
            let h = three.get_json("/v1/health/node/cat-two");
            h[0]["Status"] == "passing" && h.as_array().unwrap().len() == 2
        }),
        "{}",
        three.get_json("/v1/health/node/cat-two")
    );

    // Reload on cat-one with web.json gone: web leaves cat-one, everywhere.
    std::fs::remove_file(conf.join("web.json")).unwrap();
    let out = one.cli(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_for(CONVERGE, || catalog_nodes(&three, "web") == ["cat-two"]),
        "on cat-one: {}\n{}\non cat-three: {}",
        one.get_json("/v1/agent/services"),
        one.get_json("/v1/catalog/service/web"),
        three.get_json("/v1/catalog/service/web")
    );
    let out = dig("127.0.50.3", &["web.service.consul", "SRV"]);
    assert!(!out.contains("cat-one.node"), "{out}");

    // The CLI reads the same catalog; maintenance mode takes cat-two's web out of ?passing everywhere.
    let text = |o: std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let nodes = text(three.cli(&["catalog", "nodes", "-service", "web"]));
    assert_eq!(nodes.lines().count(), 2, "{nodes}");
    assert!(
        nodes.lines().nth(1).unwrap().starts_with("cat-two "),
        "{nodes}"
    );
    let listed = text(three.cli(&["catalog", "services", "-tags"]));
    assert!(
        listed
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["web", "v2"]),
        "{listed}"
    );
    assert_eq!(
        put(&two, "/v1/agent/check/pass/service:web-2", ""),
        Some(200)
    );
    assert!(wait_for(CONVERGE, || passing_nodes(&three, "web") == ["cat-two"]));
    let out = two.cli(&[
        "maint", "-enable", "-service", "web-2", "-reason", "new disk",
    ]);
    assert_eq!(text(out).trim(), "Service entered maintenance mode");
    assert!(wait_for(CONVERGE, || passing_nodes(&three, "web").is_empty()));
    let maint = three.get_json("/v1/health/checks/web");
    assert!(
        maint
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["CheckID"] == "_service_maintenance:web-2"
                && c["Notes"] == "new disk"
                && c["Status"] == "critical"),
        "{maint}"
    );
    let out = two.cli(&["maint", "-disable", "-service", "web-2"]);
    assert_eq!(text(out).trim(), "Service left maintenance mode");
    // And cat-two's instance answers once its check passes.
    assert_eq!(
        put(&two, "/v1/agent/check/pass/service:web-2", ""),
        Some(200)
    );
    assert!(wait_for(CONVERGE, || {
        let out = dig("127.0.50.3", &["web.service.consul", "SRV"]);
        dns_status(&out) == "NOERROR" && srv_targets(&three, "web") == ["cat-two.node.dc1.consul."]
    }));
}
