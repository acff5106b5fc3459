//! DNS against real agents, queried with `dig` (bind9-dnsutils) as a user would.

mod support;

use std::net::UdpSocket;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};
use support::{Agent, dig, dns_status, tmp, wait_for};

#[test]
fn node_lookups_with_dig() {
    let dir = tmp("dns-nodes");
    let one = Agent::start(
        "agent-one",
        "127.0.6.1",
        &dir,
        &["-server", "-bootstrap-expect=1"],
    );
    let mut two = Agent::start(
        "agent-two",
        "127.0.6.2",
        &dir,
        &["-join=127.0.6.1", "-node-meta=rack:r2"],
    );
    assert!(wait_for(Duration::from_secs(20), || one.members().len() == 2));

    // The seed page's query.
    let out = dig("127.0.6.1", &["agent-two.node.consul"]);
    assert_eq!(dns_status(&out), "NOERROR", "{out}");
    assert!(
        out.contains("agent-two.node.consul.\t0\tIN\tA\t127.0.6.2"),
        "{out}"
    );
    assert!(out.contains("flags: qr aa"), "authoritative: {out}");
    assert_eq!(
        dig("127.0.6.1", &["+short", "agent-two.node.dc1.consul"]).trim(),
        "127.0.6.2"
    );
    assert!(dig("127.0.6.1", &["+short", "TXT", "agent-two.node.consul"]).contains("rack=r2"));

    let out = dig("127.0.6.1", &["nobody.node.consul"]);
    assert_eq!(dns_status(&out), "NXDOMAIN", "{out}");
    assert!(
        out.contains("IN\tSOA\tns.consul. hostmaster.consul."),
        "{out}"
    );
    assert_eq!(
        dns_status(&dig("127.0.6.1", &["agent-two.node.dc2.consul"])),
        "NXDOMAIN"
    );
    let out = dig("127.0.6.1", &["AAAA", "agent-two.node.consul"]);
    assert_eq!(dns_status(&out), "NOERROR");
    assert!(out.contains("ANSWER: 0"), "{out}");
    assert_eq!(
        dig("127.0.6.1", &["+short", "SRV", "consul.service.consul"]).trim(),
        "1 1 8300 agent-one.node.dc1.consul."
    );

    // A failed node is no longer answered.
    two.crash();
    assert!(wait_for(Duration::from_secs(40), || one
        .status_of("agent-two")
        .as_deref()
        == Some("failed")));
    assert!(wait_for(Duration::from_secs(5), || dns_status(&dig(
        "127.0.6.1",
        &["agent-two.node.consul"]
    )) == "NXDOMAIN"));
}

#[test]
fn truncated_udp_answer_falls_back_to_tcp() {
    let dir = tmp("dns-tc");
    let cfg = dir.join("dns.json");
    std::fs::write(&cfg, r#"{"dns_config": {"enable_truncate": true}, "node_meta": {"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}}"#).unwrap();
    let _a = Agent::start(
        "meta-node",
        "127.0.7.1",
        &dir,
        &["-config-file", cfg.to_str().unwrap()],
    );
    // Without EDNS a UDP answer carries at most 3 records: TC is set, dig retries over TCP and gets all 6
    // (the five keys and the agent's network segment).
    let out = dig("127.0.7.1", &["+noedns", "TXT", "meta-node.node.consul"]);
    assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
    assert!(out.contains("ANSWER: 6"), "{out}");
    assert!(out.contains("\"consul-network-segment=\""), "{out}");
    let out = dig(
        "127.0.7.1",
        &[
            "+notcp",
            "+noedns",
            "+ignore",
            "TXT",
            "meta-node.node.consul",
        ],
    );
    assert!(
        out.contains("flags: qr aa tc") && out.contains("ANSWER: 3"),
        "{out}"
    );
}

#[test]
fn recursors_forward_other_names_and_garbage_gets_formerr() {
    let dir = tmp("dns-rec");
    // A tiny upstream started by the test: answers every A query with 127.0.8.99.
    let upstream = UdpSocket::bind("127.0.8.53:0").unwrap();
    upstream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok((n, from)) = upstream.recv_from(&mut buf) else {
                continue;
            };
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
            resp.metadata.message_type = MessageType::Response;
            resp.metadata.recursion_available = true;
            resp.queries = req.queries.clone();
            let name = req.queries[0].name().clone();
            resp.add_answer(Record::from_rdata(
                name,
                60,
                RData::A(A("127.0.8.99".parse().unwrap())),
            ));
            let _ = upstream.send_to(&resp.to_vec().unwrap(), from);
        }
    });
    let a = Agent::start(
        "rec-node",
        "127.0.8.1",
        &dir,
        &[&format!("-recursor={up_addr}")],
    );
    let out = dig("127.0.8.1", &["example.test"]);
    assert!(
        out.contains("example.test.\t\t60\tIN\tA\t127.0.8.99") || out.contains("127.0.8.99"),
        "{out}"
    );
    assert!(out.contains(" ra"), "recursion available: {out}");

    // Garbage: a header plus junk gets FORMERR; a 3-byte datagram gets nothing; the server stays up.
    let s = UdpSocket::bind("127.0.8.2:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(&[0x3f, b'x']);
    s.send_to(&q, "127.0.8.1:8600").unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = s.recv_from(&mut buf).unwrap();
    let r = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(
        (r.metadata.id, r.metadata.response_code),
        (0xabcd, ResponseCode::FormErr)
    );
    s.send_to(&[1, 2, 3], "127.0.8.1:8600").unwrap();
    assert_eq!(
        dig("127.0.8.1", &["+short", "rec-node.node.consul"]).trim(),
        "127.0.8.1"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    server.join().unwrap();
    drop(a);
}

/// `dns_config` is reloaded as Consul reloads it (`murmur reload`, SIGHUP): the next answers follow the
/// new settings, those cached under the old ones included, over UDP and TCP.
#[test]
fn a_reload_applies_dns_config() {
    let dir = tmp("dns-reload");
    let cfg = dir.join("dns.json");
    std::fs::write(
        &cfg,
        r#"{"dns_config": {"node_ttl": "0s"}, "node_meta": {"rack": "r1"}}"#,
    )
    .unwrap();
    let a = Agent::start(
        "reload-node",
        "127.0.9.1",
        &dir,
        &["-config-file", cfg.to_str().unwrap()],
    );
    // dig's columns, one space apart.
    let answer = |transport: &str| {
        let out = dig(
            "127.0.9.1",
            &[
                transport,
                "+noall",
                "+answer",
                "+additional",
                "reload-node.node.consul",
            ],
        );
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    // Twice over UDP: the second comes from the answer cache.
    for _ in 0..2 {
        let out = answer("+notcp");
        assert!(
            out.contains("reload-node.node.consul. 0 IN A 127.0.9.1"),
            "{out}"
        );
        assert!(out.contains("\"rack=r1\""), "{out}");
    }
    std::fs::write(
        &cfg,
        r#"{"dns_config": {"node_ttl": "30s", "enable_additional_node_meta_txt": false}, "node_meta": {"rack": "r1"}}"#,
    )
    .unwrap();
    let out = a.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for transport in ["+notcp", "+tcp"] {
        let out = answer(transport);
        assert!(
            out.contains("reload-node.node.consul. 30 IN A 127.0.9.1"),
            "{transport}: {out}"
        );
        assert!(!out.contains("TXT"), "{transport}: {out}");
    }
}
