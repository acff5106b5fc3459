//! This agent's own services and checks against a real agent: Consul's definition files in the config
//! dir, the agent endpoints with Consul's shapes and errors, TTL checks, and API registrations that
//! survive a restart.

mod support;

use std::time::Duration;

use murmur::util::percent::encode as enc;
use serde_json::json;
use support::{Agent, dig, tmp, wait_for};

#[test]
fn definitions_from_the_config_dir_and_the_api() {
    let dir = tmp("svc");
    let conf = dir.join("murmur.d");
    std::fs::create_dir_all(&conf).unwrap();
    // The getting-started page's own file, as Consul's users write it.
    std::fs::write(
        conf.join("web.json"),
        r#"{"service": {"name": "web", "tags": ["rails"], "port": 80}}"#,
    )
    .unwrap();
    std::fs::write(
        conf.join("db.hcl"),
        "service {\n  name = \"db\"\n  port = 5432\n  meta = { Role = \"primary\" }\n  check {\n    ttl = \"30s\"\n    status = \"passing\"\n  }\n}\n",
    )
    .unwrap();
    let mut a = Agent::start(
        "svc-a",
        "127.0.38.1",
        &dir,
        &["-config-dir", conf.to_str().unwrap()],
    );

    let services = a.get_json("/v1/agent/services");
    assert_eq!(
        services["web"],
        json!({
            "ID": "web", "Service": "web", "Tags": ["rails"], "Meta": {}, "Port": 80, "Address": "",
            "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": false, "Datacenter": "dc1"
        })
    );
    assert_eq!(services["db"]["Meta"], json!({"Role": "primary"}));
    let checks = a.get_json("/v1/agent/checks");
    assert_eq!(checks["service:db"]["Status"], "passing");
    assert_eq!(checks["service:db"]["ServiceName"], "db");
    assert_eq!(checks["service:db"]["Node"], "svc-a");

    // Registered over the API as py-consul sends it (lower-case keys), with a TTL check.
    let reg = json!({"name": "api", "id": "api-1", "port": 8080, "check": {"ttl": "2s"}});
    assert_eq!(
        a.http_body("PUT", "/v1/agent/service/register", &reg.to_string()),
        Some((200, String::new()))
    );
    let check = |a: &Agent| a.get_json("/v1/agent/checks")["service:api-1"].clone();
    assert_eq!(check(&a)["Status"], "critical", "critical until it reports");
    assert_eq!(
        a.http("PUT", "/v1/agent/check/pass/service:api-1?note=all%20good")
            .map(|r| r.0),
        Some(200)
    );
    assert_eq!(check(&a)["Status"], "passing");
    // The TTL runs out without another report.
    assert!(wait_for(Duration::from_secs(10), || check(&a)["Status"]
        == "critical"));
    assert_eq!(
        check(&a)["Output"],
        "TTL expired (last output before timeout follows): all good"
    );
    let update = json!({"Status": "warning", "Output": "slow"}).to_string();
    assert_eq!(
        a.http_body("PUT", "/v1/agent/check/update/service:api-1", &update)
            .map(|r| r.0),
        Some(200)
    );
    assert_eq!(check(&a)["Status"], "warning");
    assert_eq!(check(&a)["Output"], "slow");

    // Bad input gets Consul's codes and texts.
    let bad = |path: &str, body: &str| a.http_body("PUT", path, body).unwrap();
    assert_eq!(
        bad("/v1/agent/service/register", r#"{"Port": 80}"#),
        (400, "Missing service name".into())
    );
    assert_eq!(
        bad(
            "/v1/agent/service/register",
            r#"{"Name": "x", "Check": {"HTTP": "http://127.0.0.1:1/"}}"#,
        ),
        (
            400,
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"
                .into()
        )
    );
    let (code, text) = bad(
        "/v1/agent/service/register",
        r#"{"Name": "x", "Check": {"H2PING": "127.0.0.1:1", "Interval": "5s"}}"#,
    );
    assert_eq!(code, 400);
    assert!(text.contains("not supported by murmur yet"), "{text}");
    assert_eq!(bad("/v1/agent/service/register", "{nope").0, 400);
    let huge = format!(
        r#"{{"Name": "x", "Meta": {{"k": "{}"}}}}"#,
        "v".repeat(3 << 20)
    );
    for path in ["/v1/agent/service/register", "/v1/agent/check/register"] {
        assert_eq!(
            bad(path, &huge),
            (
                400,
                "Request decode failed: http: request body too large".into()
            )
        );
    }
    assert_eq!(
        bad(
            "/v1/agent/check/update/service:api-1",
            r#"{"Status": "sick"}"#
        ),
        (400, "Invalid check status: 'sick'".into())
    );
    let (code, text) = a.http("PUT", "/v1/agent/check/pass/nope").unwrap();
    assert_eq!(code, 404);
    assert!(text.starts_with("Unknown check ID \"nope\""), "{text}");
    assert_eq!(a.http("GET", "/v1/agent/service/nope").unwrap().0, 404);
    let orphan = json!({"Name": "c", "TTL": "5s", "ServiceID": "gone"}).to_string();
    assert_eq!(
        bad("/v1/agent/check/register", &orphan),
        (404, "ServiceID \"gone\" does not exist".into())
    );

    // API registrations survive a restart; config-file ones come back from the files.
    a.crash();
    a.restart();
    let services = a.get_json("/v1/agent/services");
    let mut ids: Vec<&String> = services.as_object().unwrap().keys().collect();
    ids.sort();
    assert_eq!(ids, ["api-1", "db", "web"]);
    assert_eq!(a.get_json("/v1/agent/service/api-1")["Port"], 8080);
    assert_eq!(
        a.http("PUT", "/v1/agent/service/deregister/api-1")
            .map(|r| r.0),
        Some(200)
    );
    assert!(
        a.get_json("/v1/agent/checks")
            .get("service:api-1")
            .is_none()
    );
    a.crash();
    a.restart();
    assert!(a.get_json("/v1/agent/services").get("api-1").is_none());
}

#[test]
fn a_bad_definition_file_names_the_file_and_key() {
    let dir = tmp("svc-bad");
    let conf = dir.join("murmur.d");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("broken.json"), r#"{"service": {"port": 80}}"#).unwrap();
    let out = support::run_to_exit(
        &[
            "agent".into(),
            "-dev".into(),
            "-config-dir".into(),
            conf.to_string_lossy().into_owned(),
        ],
        Duration::from_secs(20),
    );
    assert_eq!(out.code, Some(1), "{}", out.output);
    assert!(
        out.output.contains("broken.json")
            && out.output.contains("key \"service\": Missing service name"),
        "{}",
        out.output
    );
}

#[test]
fn reload_applies_added_changed_and_removed_definitions() {
    let dir = tmp("svc-reload");
    let conf = dir.join("murmur.d");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("web.json"),
        r#"{"service": {"name": "web", "port": 80}}"#,
    )
    .unwrap();
    let a = Agent::start(
        "reload-a",
        "127.0.39.1",
        &dir,
        &["-config-dir", conf.to_str().unwrap()],
    );
    let ids = |a: &Agent| {
        let v = a.get_json("/v1/agent/services");
        let mut ids: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&a), ["web"]);

    // Added and changed, through `murmur reload`.
    std::fs::write(conf.join("db.json"), r#"{"service": {"name": "db"}}"#).unwrap();
    std::fs::write(
        conf.join("web.json"),
        r#"{"service": {"name": "web", "port": 81}}"#,
    )
    .unwrap();
    let out = a.cli(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Configuration reload triggered"
    );
    assert_eq!(ids(&a), ["db", "web"]);
    assert_eq!(a.get_json("/v1/agent/service/web")["Port"], 81);

    // Removed, through SIGHUP (asynchronous: awaited through the endpoint).
    std::fs::remove_file(conf.join("web.json")).unwrap();
    a.signal(libc::SIGHUP);
    assert!(wait_for(Duration::from_secs(10), || ids(&a) == ["db"]));

    // A bad file keeps what runs and says why.
    std::fs::write(conf.join("zz.json"), r#"{"service": {"port": 1}}"#).unwrap();
    let out = a.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("zz.json") && err.contains("Missing service name"),
        "{err}"
    );
    assert_eq!(ids(&a), ["db"]);

    // One that would register a service whose script check is refused (scripts are off) registers
    // nothing at all, not the service without its check.
    std::fs::remove_file(conf.join("zz.json")).unwrap();
    std::fs::write(
        conf.join("scr.json"),
        r#"{"service": {"name": "scr", "check": {"args": ["/bin/true"], "interval": "10s"}}}"#,
    )
    .unwrap();
    let out = a.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Scripts are disabled"), "{err}");
    assert_eq!(ids(&a), ["db"]);
    assert_eq!(a.get_json("/v1/agent/checks"), json!({}));
}

/// Consul validates a registration whole before it registers any of it; and a record too large for
/// gossip is refused up front, where it used to be accepted and then held back every later change.
#[test]
fn a_refused_registration_changes_nothing() {
    let dir = tmp("svc-refused");
    let a = Agent::start("refused-a", "127.0.38.2", &dir, &[]);
    let put = |body: &serde_json::Value| {
        a.http_body("PUT", "/v1/agent/service/register", &body.to_string())
            .unwrap()
    };
    let script = json!({"Name": "scr", "Checks": [{"TTL": "5s"},
        {"Args": ["/bin/true"], "Interval": "10s"}]});
    let (code, text) = put(&script);
    assert_eq!(code, 500);
    assert!(text.starts_with("Scripts are disabled"), "{text}");
    assert_eq!(a.http("GET", "/v1/agent/service/scr").unwrap().0, 404);
    assert_eq!(a.get_json("/v1/agent/checks"), json!({}));

    let (code, text) = put(&json!({"Name": "m", "Meta": {"k": "v".repeat(2_000_000)}}));
    assert_eq!(code, 400);
    assert!(
        text.starts_with("Invalid Service Meta: Couldn't load metadata pair")
            && text.ends_with("Value is too long (limit: 512 characters)"),
        "{}",
        &text[text.len().saturating_sub(200)..]
    );
    assert_eq!(
        put(&json!({"Name": "w", "Weights": {"Passing": -1, "Warning": 1}})),
        (
            400,
            "Invalid Weights: Passing must be greater than 0".into()
        )
    );
    assert_eq!(
        put(&json!({"Name": "z", "Address": "0.0.0.0"})),
        (400, "Invalid service address".into())
    );
    // Over the API a weight left out is Go's zero.
    assert_eq!(
        put(&json!({"Name": "w", "Weights": {"Warning": 1}})),
        (
            400,
            "Invalid Weights: Passing must be greater than 0".into()
        )
    );
    assert_eq!(
        put(&json!({"Name": "t", "TaggedAddresses": {"lan_ipv4": {"Address": "db.example.com"}}})),
        (
            400,
            "Service tagged address \"lan_ipv4\" must be a valid ipv4 address".into()
        )
    );
    assert_eq!(
        a.http("PUT", "/v1/agent/service/maintenance/?enable=true")
            .unwrap(),
        (400, "Missing service ID".into())
    );

    // Services with 200 KB of tags each: the sixth would not fit the node's record.
    let big = |i: usize| {
        let tags: Vec<String> = (0..200)
            .map(|k| format!("{i}-{k}-{}", "t".repeat(1000)))
            .collect();
        json!({"Name": format!("big{i}"), "Tags": tags})
    };
    for i in 0..5 {
        assert_eq!(put(&big(i)), (200, String::new()));
    }
    let (code, text) = put(&big(5));
    assert_eq!(code, 400);
    assert!(text.contains("more than the"), "{text}");
    assert_eq!(a.http("GET", "/v1/agent/service/big5").unwrap().0, 404);
    // What comes after is still published to the catalog.
    assert_eq!(put(&json!({"Name": "after"})), (200, String::new()));
    assert!(wait_for(Duration::from_secs(10), || {
        a.get_json("/v1/catalog/service/after")
            .as_array()
            .is_some_and(|v| v.len() == 1)
    }));

    // Health reads parse ?passing as Consul does; a state it does not know matches nothing.
    assert_eq!(
        a.http("GET", "/v1/health/service/after?passing=bogus")
            .unwrap(),
        (400, "Invalid value for ?passing".into())
    );
    assert_eq!(
        a.get_json("/v1/health/service/after?passing")
            .as_array()
            .map(Vec::len),
        Some(1),
        "an empty ?passing is true, and the instance passes"
    );
    assert_eq!(a.get_json("/v1/health/state/bogus"), json!([]));
}

#[test]
fn filter_expressions_select_as_consul_does() {
    let dir = tmp("svc-filter");
    let a = Agent::start("filter-a", "127.0.75.1", &dir, &["-node-meta=rack:r1"]);
    for body in [
        r#"{"ID": "web-1", "Name": "web", "Tags": ["primary", "v1"], "Port": 80, "Meta": {"version": "1"}}"#,
        r#"{"ID": "web-2", "Name": "web", "Tags": ["v2"], "Port": 8080, "Meta": {"version": "2"},
            "Check": {"TTL": "30s", "Status": "critical"}}"#,
        r#"{"ID": "db-1", "Name": "db", "Port": 5432}"#,
    ] {
        assert_eq!(
            a.http_body("PUT", "/v1/agent/service/register", body)
                .map(|r| r.0),
            Some(200)
        );
    }
    let get = |path: &str, filter: &str| {
        let sep = if path.contains('?') { '&' } else { '?' };
        a.get_json(&format!("{path}{sep}filter={}", enc(filter)))
    };
    let ids = |v: &serde_json::Value, at: &str| -> Vec<String> {
        let mut ids: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.pointer(at).unwrap().as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    // The agent's own listings filter their values and keep their keys.
    let svcs = get(
        "/v1/agent/services",
        r#"Service == web and "v2" not in Tags"#,
    );
    let keys: Vec<&String> = svcs.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["web-1"]);
    let checks = get("/v1/agent/checks", "Status == critical");
    let keys: Vec<&String> = checks.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["service:web-2"]);

    // Catalog and health reads, once the agent's record is in its own catalog.
    assert!(wait_for(Duration::from_secs(10), || {
        a.get_json("/v1/catalog/service/web")
            .as_array()
            .is_some_and(|v| v.len() == 2)
    }));
    let v = get("/v1/catalog/service/web", r#"ServiceMeta.version == "2""#);
    assert_eq!(ids(&v, "/ServiceID"), ["web-2"]);
    let v = get(
        "/v1/catalog/service/web",
        "ServiceTags is empty or ServicePort == 80",
    );
    assert_eq!(ids(&v, "/ServiceID"), ["web-1"]);
    let v = get("/v1/health/service/web", "Checks.Status == critical");
    assert_eq!(ids(&v, "/Service/ID"), ["web-2"]);
    let v = get("/v1/health/service/web", "not Checks.Status == critical");
    assert_eq!(ids(&v, "/Service/ID"), ["web-1"]);
    let v = get("/v1/health/state/any", r#"ServiceName == "web""#);
    assert_eq!(ids(&v, "/CheckID"), ["service:web-2"]);
    let v = get("/v1/catalog/nodes", r#"Node matches "^filter-""#);
    assert_eq!(ids(&v, "/Node"), ["filter-a"]);
    assert_eq!(
        get("/v1/catalog/nodes", "Node == nobody"),
        json!([]),
        "nothing passes"
    );
    let services = get("/v1/catalog/services", "primary in ServiceTags");
    assert_eq!(services, json!({"web": ["primary", "v1"]}));
    // `?node-meta` selects services by their nodes' meta, with a filter or without.
    let by_rack = |rack: &str| a.get_json(&format!("/v1/catalog/services?node-meta=rack:{rack}"));
    let all = a.get_json("/v1/catalog/services");
    assert_eq!(all["web"], json!(["primary", "v1", "v2"]));
    assert_eq!(by_rack("r1"), all);
    assert_eq!(
        a.get_json("/v1/catalog/services?node-meta=rack:r1&tag=v2"),
        all,
        "?tag is not a parameter of this listing"
    );
    assert_eq!(by_rack("r2"), json!({}));
    let services = get(
        "/v1/catalog/services?node-meta=rack:r2",
        "primary in ServiceTags",
    );
    assert_eq!(services, json!({}));
    let node = get("/v1/catalog/node/filter-a", "Port == 5432");
    let keys: Vec<&String> = node["Services"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["db-1"]);
    let node = get("/v1/catalog/node-services/filter-a", "Service == web");
    assert_eq!(ids(&node["Services"], "/ID"), ["web-1", "web-2"]);
    // The web UI's summaries: nodes as structs.NodeInfo, services instance by instance as
    // structs.CheckServiceNode before they are counted.
    let nodes = get(
        "/v1/internal/ui/nodes",
        "Checks.Status == critical and Meta.rack == r1",
    );
    assert_eq!(ids(&nodes, "/Node"), ["filter-a"]);
    assert_eq!(nodes[0]["Services"].as_array().map(Vec::len), Some(3));
    assert_eq!(get("/v1/internal/ui/nodes", "Meta.rack == r2"), json!([]));
    let summary = |filter: &str| -> Vec<(String, u64)> {
        get("/v1/internal/ui/services", filter)
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let name = s["Name"].as_str().unwrap().to_owned();
                (name, s["InstanceCount"].as_u64().unwrap())
            })
            .collect()
    };
    assert_eq!(summary("Service.Port == 8080"), [("web".to_owned(), 1)]);
    assert_eq!(
        summary("Checks.Status == critical"),
        [("web".to_owned(), 1)],
        "only web-2's check is critical"
    );
    assert_eq!(
        summary("Node.Meta.rack == r1"),
        [("db".to_owned(), 1), ("web".to_owned(), 2)]
    );
    let critical = get("/v1/internal/ui/services", r#"Service.ID == "web-2""#);
    assert_eq!(critical[0]["ChecksCritical"], 1);

    // Bad filters: Consul's 500 and its evaluator's words, before any blocking wait (the index given is
    // the current one, so a wait would hold the request for its full minute).
    let t = murmur::http::client::Target::parse(&a.http_addr()).unwrap();
    let bad = |path: &str, filter: &str| {
        let r = t.call("GET", path).unwrap();
        let index = r.header("x-consul-index").unwrap().to_owned();
        let asked = std::time::Instant::now();
        let full = format!("{path}?index={index}&wait=60s&filter={}", enc(filter));
        let answer = match t.call("GET", &full) {
            Ok(r) => (r.status, r.text()),
            Err(e) => panic!("{full}: {e:?}"),
        };
        assert!(asked.elapsed() < Duration::from_secs(30), "{path} waited");
        answer
    };
    let (code, text) = bad("/v1/catalog/service/web", "ServiceName ==");
    assert_eq!(code, 500);
    assert!(
        text.starts_with(
            "Failed to create boolean expression evaluator: 1:15 (14): no match found"
        ),
        "{text}"
    );
    // A wrong selector fails on an empty listing too, as go-bexpr checks it against the type.
    assert_eq!(
        bad("/v1/catalog/service/nosuch", "Bogus == 1"),
        (
            500,
            "Failed to create boolean expression evaluator: Selector \"Bogus\" is not valid".into()
        )
    );
    for path in ["/v1/internal/ui/nodes", "/v1/internal/ui/services"] {
        assert_eq!(
            bad(path, "Bogus == 1"),
            (
                500,
                "Failed to create boolean expression evaluator: Selector \"Bogus\" is not valid"
                    .into()
            ),
            "{path}"
        );
    }
    assert_eq!(
        bad("/v1/health/service/web", "Service.Bogus == 1"),
        (
            500,
            "Failed to create boolean expression evaluator: Selector \"Service.Bogus\" is not valid"
                .into()
        )
    );
}

#[test]
fn cached_reads_are_hits_on_the_agents_own_replica() {
    let dir = tmp("svc-cached");
    let a = Agent::start("cached-a", "127.0.75.2", &dir, &[]);
    assert_eq!(
        a.http_body(
            "PUT",
            "/v1/agent/service/register",
            r#"{"Name": "web", "Port": 80}"#
        )
        .map(|r| r.0),
        Some(200)
    );
    assert!(wait_for(Duration::from_secs(10), || {
        a.get_json("/v1/catalog/service/web")
            .as_array()
            .is_some_and(|v| v.len() == 1)
    }));
    let t = murmur::http::client::Target::parse(&a.http_addr()).unwrap();
    for path in [
        "/v1/catalog/services",
        "/v1/catalog/service/web",
        "/v1/health/service/web",
    ] {
        let r = t.call("GET", &format!("{path}?cached")).unwrap();
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("x-cache"), Some("HIT"), "{path}");
        assert_eq!(r.header("age"), Some("0"), "{path}");
        let r = t.call("GET", path).unwrap();
        assert_eq!(r.header("x-cache"), None, "{path} without ?cached");
        assert_eq!(
            a.http("GET", &format!("{path}?cached&consistent")),
            Some((
                400,
                "Cannot specify ?cached with ?consistent, conflicting semantics.".into()
            )),
            "{path}"
        );
        // Consul names the ?stale conflict first.
        assert_eq!(
            a.http("GET", &format!("{path}?cached&consistent&stale")),
            Some((
                400,
                "Cannot specify ?stale with ?consistent, conflicting semantics.".into()
            )),
            "{path}"
        );
    }
}

/// A service whose address is a host name is answered by that name, not by its node's address: a
/// CNAME to it for A lookups, and it as the SRV target (with no address of ours beside it).
#[test]
fn a_service_address_that_is_a_host_name_is_answered_by_name() {
    let dir = tmp("svc-host");
    let a = Agent::start("host-a", "127.0.38.3", &dir, &[]);
    let reg = json!({"ID": "pg1", "Name": "pg", "Address": "db.example.com", "Port": 5433});
    assert_eq!(
        a.http_body("PUT", "/v1/agent/service/register", &reg.to_string()),
        Some((200, String::new()))
    );
    let reg = json!({"Name": "web", "Address": "127.0.0.77", "Port": 80});
    assert_eq!(
        a.http_body("PUT", "/v1/agent/service/register", &reg.to_string()),
        Some((200, String::new()))
    );
    assert!(wait_for(Duration::from_secs(10), || {
        dig(&a.ip, &["+short", "pg.service.consul", "SRV"]).trim() == "1 1 5433 db.example.com."
    }));
    let out = dig(&a.ip, &["pg.service.consul", "A"]);
    assert!(out.contains("CNAME\tdb.example.com."), "{out}");
    assert_eq!(
        dig(&a.ip, &["+short", "pg.service.consul", "A"]).trim(),
        "db.example.com.",
        "the CNAME alone, not the node's address"
    );
    // No address for the host name in the additional section; only the node's meta, which Consul names
    // by the question when the target is the service's own host name.
    let out = dig(
        &a.ip,
        &["+noall", "+additional", "pg.service.consul", "SRV"],
    );
    let extra: Vec<&str> = out
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        .collect();
    assert!(!extra.is_empty(), "{out}");
    assert!(
        extra
            .iter()
            .all(|l| l.starts_with("pg.service.consul.") && l.contains("\tTXT\t")),
        "{out}"
    );
    // An IP address stays an address, the node's name aside.
    assert_eq!(
        dig(&a.ip, &["+short", "web.service.consul", "A"]).trim(),
        "127.0.0.77"
    );
}

/// `murmur services register` from flags, and `murmur catalog nodes` as Consul's prints it: a row per
/// instance with -service, full IDs and maps with -detailed, a note on stderr when nothing matches.
#[test]
fn the_cli_registers_from_flags_and_lists_nodes_as_consul_does() {
    let dir = tmp("svc-cli");
    let a = Agent::start("cli-a", "127.0.38.4", &dir, &["-node-meta", "rack:r1"]);
    let text = |o: &std::process::Output| {
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(
        text(&a.cli(&["services", "register"])),
        (
            Some(1),
            String::new(),
            "Service registration requires at least one argument or flags.\n".into()
        )
    );
    let out = a.cli(&[
        "services",
        "register",
        "-name=web",
        "-id=web-1",
        "-port=80",
        "-tag=v1",
        "-tag=blue",
        "-meta=team=a",
        "-tagged-address=lan=10.0.0.1:8080",
    ]);
    assert_eq!(
        text(&out),
        (Some(0), "Registered service: web\n".into(), String::new())
    );
    let web = a.get_json("/v1/agent/service/web-1");
    assert_eq!(web["Tags"], json!(["v1", "blue"]));
    assert_eq!(web["Meta"], json!({"team": "a"}));
    assert_eq!(
        web["TaggedAddresses"],
        json!({"lan": {"Address": "10.0.0.1", "Port": 8080}})
    );
    let out = a.cli(&[
        "services",
        "register",
        "-name=web",
        "-id=web-2",
        "-port=81",
        "-tagged-address=lan_ipv6=[::1]:8081",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        a.get_json("/v1/agent/service/web-2")["TaggedAddresses"],
        json!({"lan_ipv6": {"Address": "::1", "Port": 8081}})
    );
    let (code, _, err) = text(&a.cli(&[
        "services",
        "register",
        "-name=v6",
        "-tagged-address=wan=2001:db8::1",
    ]));
    assert_eq!(
        (code, err.as_str()),
        (Some(1), "Invalid Tagged address: \"2001:db8::1\"\n")
    );
    // A file reads as a config file: a weight it leaves out is 1 (over the API it would be 0).
    let file = dir.join("weighted.hcl");
    std::fs::write(
        &file,
        "service {\n  name = \"heavy\"\n  weights {\n    warning = 3\n  }\n}\n",
    )
    .unwrap();
    let out = a.cli(&["services", "register", file.to_str().unwrap()]);
    assert_eq!(
        text(&out),
        (Some(0), "Registered service: heavy\n".into(), String::new())
    );
    assert_eq!(
        a.get_json("/v1/agent/service/heavy")["Weights"],
        json!({"Passing": 1, "Warning": 3})
    );
    let (code, _, err) = text(&a.cli(&["services", "register", "-name=x", "-address=0.0.0.0"]));
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        "Error registering service \"x\": Unexpected response code: 400 (Invalid service address)\n"
    );

    assert!(wait_for(Duration::from_secs(10), || {
        a.get_json("/v1/catalog/service/web")
            .as_array()
            .is_some_and(|v| v.len() == 2)
    }));
    let (code, out, _) = text(&a.cli(&["catalog", "nodes", "-service", "web"]));
    assert_eq!(code, Some(0));
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 3, "a header and a row per instance: {out}");
    assert!(
        rows[1].starts_with("cli-a ") && rows[2].starts_with("cli-a "),
        "{out}"
    );
    let (_, out, _) = text(&a.cli(&["catalog", "nodes", "-detailed"]));
    let id = a.get_json("/v1/agent/self")["Config"]["NodeID"]
        .as_str()
        .unwrap()
        .to_owned();
    let row: Vec<&str> = out
        .lines()
        .nth(1)
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        out.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"]
    );
    assert_eq!(row[..4], ["cli-a", id.as_str(), "127.0.38.4", "dc1"]);
    assert!(row[4].contains("lan=127.0.38.4"), "{out}");
    // Consul's own key, as Consul's node meta carries it.
    assert_eq!(row[5], "consul-network-segment=, rack=r1", "{out}");
    assert_eq!(
        text(&a.cli(&["catalog", "nodes", "-service", "nosuch"])),
        (
            Some(0),
            String::new(),
            "No nodes match the given query - try expanding your search.\n".into()
        )
    );
}

/// `/v1/agent/service/:id` carries Consul's `ContentHash`; given it back with `?hash`, the read waits
/// for the service to change (a check flip does not count), and returns at once with any other hash.
#[test]
fn a_service_read_blocks_on_its_content_hash() {
    let dir = tmp("svc-hash");
    let a = Agent::start("hash-a", "127.0.38.5", &dir, &[]);
    let reg = |port: u16| {
        let body = json!({"ID": "api-1", "Name": "api", "Port": port, "Check": {"TTL": "30s"}});
        a.http_body("PUT", "/v1/agent/service/register", &body.to_string())
    };
    assert_eq!(reg(80), Some((200, String::new())));
    let t = murmur::http::client::Target::parse(&a.http_addr()).unwrap();
    let r = t.call("GET", "/v1/agent/service/api-1").unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    let hash = v["ContentHash"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 16);
    assert_eq!(r.header("x-consul-contenthash"), Some(hash.as_str()));
    let other = t
        .call("GET", "/v1/agent/service/api-1?hash=0000&wait=30s")
        .unwrap();
    assert_eq!(other.header("x-consul-contenthash"), Some(hash.as_str()));

    let blocked = {
        let addr = a.http_addr();
        let hash = hash.clone();
        std::thread::spawn(move || {
            let t = murmur::http::client::Target::parse(&addr).unwrap();
            let r = t
                .call(
                    "GET",
                    &format!("/v1/agent/service/api-1?hash={hash}&wait=30s"),
                )
                .unwrap();
            serde_json::from_str::<serde_json::Value>(&r.text()).unwrap()
        })
    };
    // A check flip changes the record, not the service: the read keeps waiting.
    assert_eq!(
        a.http("PUT", "/v1/agent/check/pass/service:api-1")
            .map(|r| r.0),
        Some(200)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(!blocked.is_finished(), "woken by a check");
    assert_eq!(reg(81), Some((200, String::new())));
    let v = blocked.join().unwrap();
    assert_eq!(v["Port"], 81);
    assert_ne!(v["ContentHash"], hash.as_str());
}
