//! User events across real agents: `murmur event` on a client, listed by every agent whose node,
//! service and tag filters select it (judged once each agent's counter shows it received them);
//! `/v1/event/list` by name and blocking on Consul's event index;
//! Consul's refusals.

mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use support::{Agent, tmp, wait_for};

const SETTLE: Duration = Duration::from_secs(30);

fn events(a: &Agent, query: &str) -> Vec<Value> {
    a.get_json(&format!("/v1/event/list{query}"))
        .as_array()
        .unwrap()
        .clone()
}

fn has(a: &Agent, id: &str) -> bool {
    events(a, "").iter().any(|e| e["ID"] == id)
}

fn fire(a: &Agent, args: &[&str]) -> String {
    let mut all = vec!["event"];
    all.extend_from_slice(args);
    let out = a.cli(&all);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .strip_prefix("Event ID: ")
        .unwrap_or_else(|| panic!("{text:?}"))
        .to_string()
}

/// The list's `X-Consul-Index` and body, straight from the API.
fn list_with_index(a: &Agent, query: &str) -> (u64, Vec<Value>) {
    let t = murmur::http::client::Target::parse(&a.http_addr()).unwrap();
    let r = t.call("GET", &format!("/v1/event/list{query}")).unwrap();
    assert_eq!(r.status, 200);
    let index = r.header("x-consul-index").unwrap().parse().unwrap();
    (index, serde_json::from_slice(&r.body).unwrap())
}

#[test]
fn events_reach_the_agents_their_filters_select() {
    let dir = tmp("events");
    let web = dir.join("web.json");
    std::fs::write(
        &web,
        r#"{"service": {"name": "web", "tags": ["v1"], "port": 80}}"#,
    )
    .unwrap();
    let agents = [
        Agent::start("ev-s", "127.0.66.10", &dir, &["-server", "-bootstrap"]),
        Agent::start(
            "ev-c1",
            "127.0.66.11",
            &dir,
            &[
                "-retry-join=127.0.66.10",
                "-config-file",
                web.to_str().unwrap(),
            ],
        ),
        Agent::start("ev-c2", "127.0.66.12", &dir, &["-retry-join=127.0.66.10"]),
    ];
    let [s, c1, c2] = &agents;
    assert!(wait_for(SETTLE, || s.members().len() == 3
        && c2.members().len() == 3
        && c1.members().len() == 3));
    // The web service must have reached the catalog of c1 itself for its tag filter to match.
    assert!(wait_for(SETTLE, || c1
        .get_json("/v1/catalog/service/web")
        .as_array()
        .unwrap()
        .len()
        == 1));

    // Fired on a client, listed on every agent.
    let started = Instant::now();
    let id = fire(c1, &["-name", "deploy", "hello"]);
    assert!(has(c1, &id), "the firing agent keeps its own event");
    assert!(wait_for(SETTLE, || agents.iter().all(|a| has(a, &id))));
    eprintln!("event listed on all 3 agents after {:?}", started.elapsed());
    let e = &events(s, "?name=deploy")[0];
    assert_eq!(e["Name"], "deploy");
    let payload = base64::engine::general_purpose::STANDARD
        .decode(e["Payload"].as_str().unwrap())
        .unwrap();
    assert_eq!(payload, b"hello");
    assert_eq!(e["Version"], 1);
    assert!(e["LTime"].as_u64().unwrap() >= 1);
    assert!(events(s, "?name=other").is_empty());

    // Filters: a service and tag only c1 has; a node name only c2 has (the firing agent then does not
    // keep it). A later unfiltered event from the same agent marks when the others have heard.
    let received = |a: &Agent| -> u64 {
        let v = a.get_json("/v1/agent/self");
        v["Stats"]["user_events"]["received"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let before: Vec<u64> = agents.iter().map(received).collect();
    let tagged = fire(
        c2,
        &["-name", "restart", "-service", "^web$", "-tag", "v[0-9]"],
    );
    let named = fire(c1, &["-name", "restart", "-node", "^ev-c2$"]);
    // Each agent has received both from the others (s: both; c1: c2's; c2: c1's) before the filters
    // are judged by what it kept.
    let heard = [2, 1, 1];
    assert!(wait_for(SETTLE, || agents
        .iter()
        .zip(&before)
        .zip(heard)
        .all(|((a, b), n)| received(a) >= b + n)));
    assert!(has(c1, &tagged) && has(c2, &named));
    assert!(!has(s, &tagged) && !has(c2, &tagged));
    assert!(!has(s, &named) && !has(c1, &named));

    // A blocked list returns when the next event arrives, with a different index.
    let (index, listed) = list_with_index(s, "");
    assert_eq!(listed.len(), 1, "only deploy is the server's");
    let waiter = {
        let t = murmur::http::client::Target::parse(&s.http_addr()).unwrap();
        std::thread::spawn(move || {
            let r = t
                .call("GET", &format!("/v1/event/list?index={index}&wait=20s"))
                .unwrap();
            let i: u64 = r.header("x-consul-index").unwrap().parse().unwrap();
            let body: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
            (i, body.len())
        })
    };
    // Still blocked after a second: nothing new yet (the check the py-consul test makes too).
    assert!(!wait_for(Duration::from_secs(1), || waiter.is_finished()));
    let late = fire(c2, &["-name", "late"]);
    let (after, n) = waiter.join().unwrap();
    assert_ne!(after, index);
    assert_eq!(n, 2);
    assert!(has(s, &late));

    // Consul's refusals.
    let refuse = |path: &str, body: &str| c1.http_body("PUT", path, body).unwrap();
    assert_eq!(
        refuse("/v1/event/fire/x?tag=v1", ""),
        (
            500,
            "Cannot provide tag filter without service filter".into()
        )
    );
    let (code, text) = refuse("/v1/event/fire/x?node=(", "");
    assert_eq!(code, 500);
    assert!(text.starts_with("Invalid node filter"), "{text}");
    assert_eq!(
        refuse("/v1/event/fire/x", &"p".repeat(600)),
        (
            500,
            "user event exceeds configured limit of 512 bytes before encoding".into()
        )
    );
    let out = c1.cli(&["event", "payload"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "Event name must be specified"
    );
}
