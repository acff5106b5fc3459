//! Network coordinates across real agents: each agent's probes place it, it reports its coordinate to
//! the servers, and every agent reads them back (`/v1/coordinate/*`, `murmur rtt`); an agent with
//! `disable_coordinates` (as an older build would) gets plain probes and stays alive; a node that
//! leaves loses its coordinate.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Agent, tmp, wait_for};

const SETTLE: Duration = Duration::from_secs(60);

fn nodes_with_coordinates(a: &Agent) -> Vec<String> {
    a.get_json("/v1/coordinate/nodes")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Node"].as_str().unwrap().to_string())
        .collect()
}

fn rtt_ms(out: &std::process::Output, a: &str, b: &str) -> f64 {
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("Estimated {a} <-> {b} rtt: ");
    let rest = text
        .trim()
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("unexpected rtt output: {text:?}"));
    assert!(rest.ends_with(" ms (using LAN coordinates)"), "{text:?}");
    rest.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn agents_report_coordinates_and_estimate_round_trips() {
    let dir = tmp("coordinates");
    let server = Agent::start("co-s", "127.0.65.10", &dir, &["-server", "-bootstrap"]);
    let one = Agent::start("co-1", "127.0.65.11", &dir, &["-retry-join=127.0.65.10"]);
    let mut two = Agent::start("co-2", "127.0.65.12", &dir, &["-retry-join=127.0.65.10"]);
    let off = dir.join("off.hcl");
    std::fs::write(&off, "disable_coordinates = true\n").unwrap();
    let plain = Agent::start(
        "co-plain",
        "127.0.65.13",
        &dir,
        &[
            "-retry-join=127.0.65.10",
            "-config-file",
            off.to_str().unwrap(),
        ],
    );
    assert!(wait_for(SETTLE, || one.leader().is_some()));

    // Each agent with coordinates reports its own; every agent reads them all back.
    let expected = ["co-1", "co-2", "co-s"];
    assert!(
        wait_for(SETTLE, || nodes_with_coordinates(&one) == expected),
        "coordinates listed: {:?}",
        nodes_with_coordinates(&one)
    );
    let all = server.get_json("/v1/coordinate/nodes?stale");
    for e in all.as_array().unwrap() {
        assert_eq!(e["Segment"], "");
        assert_eq!(e["Coord"]["Vec"].as_array().unwrap().len(), 8);
        assert!(e["Coord"]["Error"].as_f64().unwrap() <= 1.5);
    }
    let me = one.get_json("/v1/agent/self");
    assert_eq!(me["Coord"]["Vec"].as_array().unwrap().len(), 8);
    let n = me["Stats"]["serf_lan"]["coordinate_samples"]
        .as_str()
        .unwrap();
    assert!(n.parse::<u64>().unwrap() > 0, "{n} samples");

    // Loopback round trips are well under a millisecond; the estimate must be small and positive.
    let out = one.cli(&["rtt", "co-1", "co-2"]);
    assert!(out.status.success(), "{out:?}");
    let ms = rtt_ms(&out, "co-1", "co-2");
    assert!(ms > 0.0 && ms < 50.0, "{ms} ms");
    // One name: from the agent's own node.
    let out = two.cli(&["rtt", "co-s"]);
    assert!(out.status.success(), "{out:?}");
    rtt_ms(&out, "co-s", "co-2");
    let out = one.cli(&["rtt", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        r#"Could not find a coordinate for node "nope""#
    );

    // One node's coordinate, and Consul's 404 for a node without one.
    let single = one.get_json("/v1/coordinate/node/co-2");
    assert_eq!(single.as_array().unwrap().len(), 1);
    assert_eq!(single[0]["Node"], "co-2");
    assert_eq!(one.http("GET", "/v1/coordinate/node/nope").unwrap().0, 404);
    assert_eq!(
        one.http("GET", "/v1/coordinate/node/co-plain").unwrap().0,
        404
    );
    let dcs = one.get_json("/v1/coordinate/datacenters");
    assert_eq!(dcs[0]["Datacenter"], "dc1");
    assert_eq!(dcs[0]["Coordinates"][0]["Node"], "co-s");

    // An update through the API (lowercase keys, as some clients send them) is read back. co-2 reports
    // its own now and then, so the update is repeated until a read shows it.
    let planted = r#"{"node": "co-2", "coord": {"vec": [0.25, 0, 0, 0, 0, 0, 0, 0], "error": 0.1, "adjustment": 0, "height": 0.001}}"#;
    assert!(wait_for(SETTLE, || {
        let put = one.http_body("PUT", "/v1/coordinate/update", planted);
        assert_eq!(put, Some((200, String::new())));
        let back = server.get_json("/v1/coordinate/node/co-2");
        back[0]["Coord"]["Vec"][0] == 0.25 && back[0]["Coord"]["Height"] == 0.001
    }));
    // Consul's refusals.
    let short = r#"{"Node": "co-2", "Coord": {"Vec": [0, 0, 0], "Error": 1, "Height": 0}}"#;
    assert_eq!(
        one.http_body("PUT", "/v1/coordinate/update", short),
        Some((
            500,
            "rejected bad coordinate: dimensionality mismatch".into()
        ))
    );
    let (code, body) = one
        .http_body("PUT", "/v1/coordinate/update", "{nope")
        .unwrap();
    assert_eq!(code, 400);
    assert!(body.starts_with("Request decode failed"), "{body}");

    // The agent without coordinates: refused as Consul refuses, no coordinate of its own, and alive
    // everywhere (nobody sent it a probe it could not read).
    assert_eq!(
        plain.http("GET", "/v1/coordinate/nodes"),
        Some((401, "Coordinate support disabled".into()))
    );
    assert_eq!(plain.get_json("/v1/agent/self")["Coord"], Value::Null);
    for a in [&server, &one, &two] {
        assert_eq!(a.status_of("co-plain").as_deref(), Some("alive"));
    }

    // `?near=`: results sorted by estimated round trip from a node (`_agent`: the agent's own), nodes
    // without a coordinate last. The agents' own reports would move them, so the places are planted
    // again until a read shows them.
    let place = |node: &str, x: f64| {
        let body = format!(
            r#"{{"Node": "{node}", "Coord": {{"Vec": [{x}, 0, 0, 0, 0, 0, 0, 0], "Error": 0.1, "Adjustment": 0, "Height": 0.0001}}}}"#
        );
        one.http_body("PUT", "/v1/coordinate/update", &body)
            .unwrap()
            .0
            == 200
    };
    let names = |v: Value, key: &str| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| match &e[key] {
                Value::String(n) => n.clone(),
                node => node["Node"].as_str().unwrap().to_string(),
            })
            .collect()
    };
    let near_order = || {
        place("co-1", 0.0)
            && place("co-2", 0.1)
            && place("co-s", 0.3)
            && names(one.get_json("/v1/catalog/nodes?near=_agent"), "Node")
                == ["co-1", "co-2", "co-s", "co-plain"]
            && names(one.get_json("/v1/catalog/nodes?near=co-s"), "Node")
                == ["co-s", "co-2", "co-1", "co-plain"]
            && names(two.get_json("/v1/health/state/any?near=co-1"), "Node")
                == ["co-1", "co-2", "co-s", "co-plain"]
    };
    assert!(wait_for(SETTLE, near_order));
    // Without `near`, and near a node without a coordinate: name order.
    assert_eq!(
        names(one.get_json("/v1/catalog/nodes?near=co-plain"), "Node"),
        ["co-1", "co-2", "co-plain", "co-s"]
    );

    // A node that leaves drops out of the coordinates read (the leader also prunes its row).
    assert!(two.cli(&["leave"]).status.success());
    two.wait_exit(Duration::from_secs(20));
    assert!(wait_for(SETTLE, || nodes_with_coordinates(&one) == ["co-1", "co-s"]));
}
