//! External services (`/v1/catalog/register`) across real agents: registered through a client agent,
//! committed by the server, and answered by every agent's catalog, health and DNS, with host-name
//! addresses as CNAMEs; Consul's refusals; a blocked node read waking on a deregistration; a server
//! restart keeping them, and a snapshot restore bringing a removed one back.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Agent, dig, dns_status, tmp, wait_for};

const SETTLE: Duration = Duration::from_secs(40);

fn put(a: &Agent, path: &str, body: &str) -> (u16, String) {
    a.http_body("PUT", path, body).expect("agent answers")
}

fn service_nodes(a: &Agent, path: &str) -> Vec<String> {
    a.get_json(path)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let node = if e["Node"].is_string() {
                &e["Node"]
            } else {
                &e["Node"]["Node"]
            };
            node.as_str().unwrap().to_string()
        })
        .collect()
}

fn node_names(a: &Agent) -> Vec<String> {
    service_nodes(a, "/v1/catalog/nodes")
}

#[test]
fn external_services_are_answered_by_every_agent() {
    let dir = tmp("external");
    let mut server = Agent::start("ex-s", "127.0.61.10", &dir, &["-server", "-bootstrap"]);
    let client = Agent::start("ex-c", "127.0.61.11", &dir, &["-retry-join=127.0.61.10"]);
    assert!(wait_for(SETTLE, || client.leader().is_some()));

    // Consul's external-service example, through the client: a host name and a passing check.
    let google = r#"{"Node": "google", "Address": "www.google.com",
        "NodeMeta": {"external-node": "true"},
        "Service": {"ID": "search1", "Service": "search", "Port": 80, "Tags": ["v1"]},
        "Check": {"Name": "search alive", "Status": "passing", "ServiceID": "search1"}}"#;
    assert_eq!(
        put(&client, "/v1/catalog/register", google),
        (200, "true".into())
    );
    // Read-your-writes on the agent that took the write.
    let search = client.get_json("/v1/catalog/service/search");
    assert_eq!(search[0]["Node"], "google");
    assert_eq!(search[0]["Address"], "www.google.com");
    assert_eq!(search[0]["ServiceID"], "search1");
    assert_eq!(search[0]["NodeMeta"]["external-node"], "true");
    // py-consul's lowercase spelling, an IP address, and a critical check (the default status).
    let db = r#"{"node": "db1", "address": "10.61.0.7",
        "service": {"service": "pg", "port": 5432},
        "check": {"name": "pg up", "serviceid": "pg"}}"#;
    assert_eq!(
        put(&client, "/v1/catalog/register", db),
        (200, "true".into())
    );

    // Every agent answers from its own catalog: the server too, with no serfHealth for them.
    assert!(wait_for(SETTLE, || node_names(&server)
        == ["db1", "ex-c", "ex-s", "google"]));
    let health = server.get_json("/v1/health/service/search?passing");
    let checks: Vec<&str> = health[0]["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["CheckID"].as_str().unwrap())
        .collect();
    assert_eq!(checks, ["search alive"]);
    assert!(service_nodes(&client, "/v1/health/service/pg?passing").is_empty());
    assert_eq!(
        client.get_json("/v1/health/node/db1")[0]["Status"],
        "critical"
    );

    // DNS: a host name is a CNAME, an IP an A record; a critical instance is not answered.
    let cname = dig(&client.ip, &["search.service.consul", "A"]);
    assert!(cname.contains("CNAME\twww.google.com."), "{cname}");
    let srv = dig(&client.ip, &["+short", "search.service.consul", "SRV"]);
    assert_eq!(srv.trim(), "1 1 80 www.google.com.");
    assert_eq!(
        dig(&client.ip, &["+short", "db1.node.consul"]).trim(),
        "10.61.0.7"
    );
    assert_eq!(
        dns_status(&dig(&client.ip, &["pg.service.consul"])),
        "NXDOMAIN"
    );
    // The check turns passing with a registration that leaves the node as it is.
    let passing = r#"{"Node": "db1", "SkipNodeUpdate": true,
        "Check": {"Name": "pg up", "ServiceID": "pg", "Status": "passing"}}"#;
    assert_eq!(
        put(&server, "/v1/catalog/register", passing),
        (200, "true".into())
    );
    assert!(wait_for(SETTLE, || dig(
        &client.ip,
        &["+short", "pg.service.consul"]
    )
    .trim()
        == "10.61.0.7"));
    // A new address for the node: its node answer, cached since it was asked above, follows.
    assert_eq!(
        put(
            &server,
            "/v1/catalog/register",
            r#"{"Node": "db1", "Address": "10.61.0.8"}"#
        ),
        (200, "true".into())
    );
    assert!(wait_for(SETTLE, || dig(
        &client.ip,
        &["+short", "db1.node.consul"]
    )
    .trim()
        == "10.61.0.8"));

    // Refusals: a member's name, a check of a missing service, a broken body, another datacenter.
    let (code, body) = put(
        &client,
        "/v1/catalog/register",
        r#"{"Node": "ex-c", "Address": "1.2.3.4"}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("member of the cluster"), "{body}");
    let (code, body) = put(
        &client,
        "/v1/catalog/register",
        r#"{"Node": "db1", "Address": "10.61.0.7", "Check": {"Name": "x", "ServiceID": "nope"}}"#,
    );
    assert_eq!((code, body.as_str()), (500, "Missing service registration"));
    let (code, body) = put(&client, "/v1/catalog/register", "{\"Node\":");
    assert_eq!(code, 400);
    assert!(body.starts_with("Request decode failed"), "{body}");
    let (code, body) = put(
        &client,
        "/v1/catalog/register",
        r#"{"Datacenter": "dc9", "Node": "n", "Address": "1.2.3.4"}"#,
    );
    assert_eq!((code, body.as_str()), (500, "No path to datacenter"));
    assert_eq!(
        node_names(&client),
        ["db1", "ex-c", "ex-s", "google"],
        "refusals changed nothing"
    );

    // A blocked node list wakes when an external node goes.
    let index = {
        let t = murmur::http::client::Target::parse(&client.http_addr()).unwrap();
        let r = t.call("GET", "/v1/catalog/nodes").unwrap();
        r.header("x-consul-index").unwrap().parse::<u64>().unwrap()
    };
    let blocked = {
        let addr = client.http_addr();
        std::thread::spawn(move || {
            let t = murmur::http::client::Target::parse(&addr).unwrap();
            let r = t
                .call("GET", &format!("/v1/catalog/nodes?index={index}&wait=30s"))
                .unwrap();
            let v: Value = serde_json::from_str(&r.text()).unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .map(|n| n["Node"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(!blocked.is_finished(), "the blocking read returned at once");
    assert_eq!(
        put(&server, "/v1/catalog/deregister", r#"{"Node": "db1"}"#),
        (200, "true".into())
    );
    assert_eq!(blocked.join().unwrap(), ["ex-c", "ex-s", "google"]);

    // The server keeps them across a crash; the client's mirror picks up again.
    server.crash();
    server.restart();
    assert!(wait_for(SETTLE, || server.leader().is_some()));
    assert!(wait_for(SETTLE, || node_names(&server) == ["ex-c", "ex-s", "google"]));

    // A snapshot holds them: a removed service comes back with a restore, on every agent.
    let file = dir.join("ext.snap");
    let out = client.cli(&["snapshot", "save", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        put(
            &client,
            "/v1/catalog/deregister",
            r#"{"Node": "google", "ServiceID": "search1"}"#
        ),
        (200, "true".into())
    );
    assert!(service_nodes(&client, "/v1/catalog/service/search").is_empty());
    let services = client.get_json("/v1/catalog/services");
    assert!(services.get("search").is_none(), "{services}");
    let out = client.cli(&["snapshot", "restore", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(wait_for(SETTLE, || service_nodes(
        &client,
        "/v1/catalog/service/search"
    ) == ["google"]));
    assert_eq!(
        dig(&client.ip, &["+short", "search.service.consul", "SRV"]).trim(),
        "1 1 80 www.google.com."
    );
}
