//! Hostile input against real agents on loopback: DNS reply loops and floods, slow and greedy HTTP and
//! DNS-over-TCP clients, secret file modes, a shared data dir, and what the log tells an operator.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use support::{Agent, dig, dns_status, keygen, run_to_exit, tls_files, tmp, wait_for};

const CONVERGE: Duration = Duration::from_secs(20);

fn query(name: &str, id: u16) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

/// The DNS header of a response (QR set, opcode QUERY, NOERROR) and nothing else: what a spoofed
/// reflection packet looks like.
const RESPONSE: [u8; 12] = [0x12, 0x34, 0x85, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// Sends `payload` over UDP with a forged source address, through a raw socket (the test runs as root,
/// as CI does). Loopback only.
fn send_spoofed(from: SocketAddr, to: SocketAddr, payload: &[u8]) {
    let (SocketAddr::V4(from), SocketAddr::V4(to)) = (from, to) else {
        panic!("IPv4 only")
    };
    assert!(to.ip().is_loopback() && from.ip().is_loopback());
    let mut pkt = Vec::with_capacity(28 + payload.len());
    let total = (28 + payload.len()) as u16;
    // IPv4 header; the kernel fills in the checksum and the ID.
    pkt.extend_from_slice(&[0x45, 0]);
    pkt.extend_from_slice(&total.to_be_bytes());
    pkt.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    pkt.extend_from_slice(&from.ip().octets());
    pkt.extend_from_slice(&to.ip().octets());
    // UDP header, checksum 0 (none, allowed over IPv4).
    pkt.extend_from_slice(&from.port().to_be_bytes());
    pkt.extend_from_slice(&to.port().to_be_bytes());
    pkt.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    pkt.extend_from_slice(&[0, 0]);
    pkt.extend_from_slice(payload);
    // SAFETY: plain socket/sendto/close on a descriptor and buffers we own.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
        assert!(
            fd >= 0,
            "a raw socket needs root: {}",
            std::io::Error::last_os_error()
        );
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from(*to.ip()).to_be();
        let n = libc::sendto(
            fd,
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        assert_eq!(n, pkt.len() as isize, "raw send failed: {err}");
    }
}

#[test]
fn a_dns_response_is_never_answered_not_even_one_from_ourselves() {
    let dir = tmp("hard-reflect");
    let a = Agent::start("reflect-a", "127.0.30.1", &dir, &[]);
    let dns: SocketAddr = "127.0.30.1:8600".parse().unwrap();

    // A response from a client: nothing comes back, so the next datagram received answers our query.
    let s = UdpSocket::bind("127.0.30.9:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.send_to(&RESPONSE, dns).unwrap();
    s.send_to(&query("reflect-a.node.consul.", 0x7777), dns)
        .unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = s.recv_from(&mut buf).unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, 0x7777, "the response packet was answered");

    // The one-packet loop: a response whose source is the agent's own DNS address.
    send_spoofed(dns, dns, &RESPONSE);
    let out = dig("127.0.30.1", &["+short", "reflect-a.node.consul"]);
    assert_eq!(out.trim(), "127.0.30.1");
    // Everything the DNS socket received: two responses, our query and dig's. A loop would count on.
    assert_eq!(a.stat("dns", "queries"), 4);
    assert_eq!(a.stat("dns", "responses_dropped"), 2);
}

#[test]
fn a_flooded_dns_port_starves_neither_http_nor_gossip() {
    let dir = tmp("hard-flood");
    let a = Agent::start("flood-a", "127.0.31.1", &dir, &[]);
    let b = Agent::start("flood-b", "127.0.31.2", &dir, &["-join=127.0.31.1"]);
    assert!(wait_for(CONVERGE, || a.members().len() == 2));

    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..2)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let s = UdpSocket::bind(format!("127.0.31.{}:0", 50 + t)).unwrap();
                let q = query("flood-a.node.consul.", 1);
                let mut sent = 0u64;
                let end = Instant::now() + Duration::from_secs(30);
                // Bounded in count and time; stops early when the checks are done.
                while sent < 3_000_000 && !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    let pkt: &[u8] = if sent.is_multiple_of(8) {
                        &RESPONSE
                    } else {
                        &q
                    };
                    if s.send_to(pkt, "127.0.31.1:8600").is_ok() {
                        sent += 1;
                    }
                }
                sent
            })
        })
        .collect();
    // The flood is on once the agent has counted a good share of it.
    assert!(wait_for(Duration::from_secs(10), || a
        .stat("dns", "queries")
        > 50_000));
    // Meanwhile HTTP answers every time (the client gives up after 30 s), and gossip keeps b's view.
    for _ in 0..20 {
        let t = Instant::now();
        let (code, _) = a.http("GET", "/v1/agent/self").expect("HTTP answers");
        assert_eq!(code, 200);
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
    let during = a.stat("dns", "queries");
    // Longer than the suspicion timeout of a 2-node cluster (4 x 1 s): a starved agent would be failed.
    let watch_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < watch_until {
        assert_eq!(b.status_of("flood-a").as_deref(), Some("alive"));
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = flooders.into_iter().map(|f| f.join().unwrap()).sum();
    assert!(a.stat("dns", "queries") > during, "still serving DNS");
    assert!(a.stat("dns", "responses_dropped") > 0);
    assert!(!b.log_text().contains("EventMemberFailed: flood-a"));
    assert!(sent > 50_000, "sent {sent}");
}

#[test]
fn badvers_and_reverse_lookups_with_dig() {
    let dir = tmp("hard-dnsconf");
    let a = Agent::start("ptr-a", "127.0.32.1", &dir, &[]);
    let _b = Agent::start("ptr-b", "127.0.32.2", &dir, &["-join=127.0.32.1"]);
    assert!(wait_for(CONVERGE, || a.members().len() == 2));

    let out = dig(
        "127.0.32.1",
        &["+edns=1", "+noednsnegotiation", "ptr-a.node.consul"],
    );
    assert_eq!(dns_status(&out), "BADVERS", "{out}");
    assert!(out.contains("EDNS: version: 0"), "{out}");
    assert_eq!(
        dns_status(&dig("127.0.32.1", &["ptr-a.node.consul"])),
        "NOERROR"
    );

    let out = dig("127.0.32.1", &["-x", "127.0.32.2"]);
    assert_eq!(dns_status(&out), "NOERROR", "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("2.32.0.127.in-addr.arpa.")
                && l.ends_with("0\tIN\tPTR\tptr-b.node.dc1.consul.")),
        "{out}"
    );
    let out = dig("127.0.32.1", &["-x", "127.0.32.77"]);
    assert_eq!(dns_status(&out), "NXDOMAIN", "{out}");
    assert!(out.contains("SOA"), "{out}");
}

/// A TCP connection from `src` (any loopback address) to `dst`.
fn connect_from(src: Ipv4Addr, dst: &str) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::from((src, 0))).unwrap();
        let c = s.connect(dst.parse().unwrap()).await.unwrap();
        let std = c.into_std().unwrap();
        std.set_nonblocking(false).unwrap();
        std
    })
}

fn get(mut s: TcpStream, path: &str) -> String {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // A refused connection may already be closing: the reply is read even if the write fails.
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Reads until the peer closes; true if it did within `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn http_caps_connections_per_client_and_closes_slow_requests() {
    let dir = tmp("hard-http");
    let cfg = dir.join("limits.hcl");
    std::fs::write(&cfg, "limits { http_max_conns_per_client = 4 }\n").unwrap();
    let a = Agent::start(
        "http-a",
        "127.0.33.1",
        &dir,
        &["-config-file", cfg.to_str().unwrap()],
    );
    let greedy: Ipv4Addr = "127.0.33.50".parse().unwrap();
    let other: Ipv4Addr = "127.0.33.51".parse().unwrap();
    let http = "127.0.33.1:8500";

    // A partial request head: closed after the header timeout instead of held for minutes.
    let mut slow = connect_from(other, http);
    slow.write_all(b"GET /v1/agent/self HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let t = Instant::now();
    assert!(closed_within(&mut slow, Duration::from_secs(30)));
    assert!(
        t.elapsed() >= Duration::from_secs(5),
        "closed too soon: {:?}",
        t.elapsed()
    );

    // Four idle connections are this client's share; the fifth gets Consul's 429.
    let held: Vec<TcpStream> = (0..4).map(|_| connect_from(greedy, http)).collect();
    assert!(wait_for(Duration::from_secs(5), || {
        get(connect_from(greedy, http), "/v1/agent/self").starts_with("HTTP/1.1 429")
    }));
    let refused = get(connect_from(greedy, http), "/v1/agent/self");
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(
        refused.ends_with("Your IP is issuing too many queries."),
        "{refused}"
    );
    // Another client is served meanwhile.
    assert!(get(connect_from(other, http), "/v1/agent/self").starts_with("HTTP/1.1 200"));
    // A freed place can be taken again.
    drop(held);
    assert!(wait_for(Duration::from_secs(5), || get(
        connect_from(greedy, http),
        "/v1/agent/self"
    )
    .starts_with("HTTP/1.1 200")));
    drop(a);
}

#[test]
fn one_client_cannot_take_every_dns_tcp_slot() {
    let dir = tmp("hard-dnstcp");
    let a = Agent::start("tcp-a", "127.0.34.1", &dir, &[]);
    let greedy: Ipv4Addr = "127.0.34.50".parse().unwrap();
    let mut held: Vec<TcpStream> = (0..260)
        .map(|_| connect_from(greedy, "127.0.34.1:8600"))
        .collect();
    // Past its share the greedy client's connections are closed at once.
    let closed = held
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_millis(300)))
        .filter(|c| *c)
        .count();
    assert_eq!(closed, 260 - 16, "per-client share is 16");
    for i in 0..10 {
        let out = dig(
            "127.0.34.1",
            &["+tcp", "-b", "127.0.34.51", "tcp-a.node.consul"],
        );
        assert_eq!(dns_status(&out), "NOERROR", "query {i}: {out}");
    }
    assert_eq!(a.stat("dns", "tcp_refused"), 244);
}

#[test]
fn keys_and_keyrings_are_written_for_the_owner_only() {
    let dir = tmp("hard-modes");
    let pki = dir.join("pki");
    tls_files(&pki, &["-server"]);
    let mode = |p: &std::path::Path| murmur::util::files::mode(p).unwrap();
    assert_eq!(mode(&pki.join("murmur-agent-ca-key.pem")), 0o600);
    assert_eq!(mode(&pki.join("dc1-server-murmur-0-key.pem")), 0o600);
    assert_eq!(mode(&pki.join("murmur-agent-ca.pem")), 0o644);
    assert_eq!(mode(&pki.join("dc1-server-murmur-0.pem")), 0o644);

    let _a = Agent::start(
        "modes-a",
        "127.0.35.1",
        &dir,
        &[&format!("-encrypt={}", keygen())],
    );
    let data = dir.join("modes-a");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("serf")), 0o700);
    assert_eq!(mode(&data.join("serf/local.keyring")), 0o600);
}

#[test]
fn a_data_dir_serves_one_agent_and_one_node_name() {
    let dir = tmp("hard-lock");
    let mut a = Agent::start("lock-a", "127.0.36.1", &dir, &[]);
    let data = format!("-data-dir={}", dir.join("lock-a").display());
    let second = |node: &str, ip: &str| {
        run_to_exit(
            &[
                "agent".into(),
                format!("-node={node}"),
                format!("-bind={ip}"),
                format!("-client={ip}"),
                data.clone(),
            ],
            Duration::from_secs(15),
        )
    };
    let pid = a.child.as_ref().unwrap().id();
    let e = second("lock-b", "127.0.36.2");
    assert_eq!(e.code, Some(1), "{}", e.output);
    assert!(
        e.output
            .contains(&format!("is in use by another murmur agent (pid {pid})")),
        "{}",
        e.output
    );
    a.crash();
    // The lock goes with the process, even a killed one; the name stays with the data dir.
    let e = second("lock-b", "127.0.36.2");
    assert_eq!(e.code, Some(1), "{}", e.output);
    assert!(
        e.output.contains("belongs to node \"lock-a\""),
        "{}",
        e.output
    );
    a.restart();
    assert_eq!(a.members().len(), 1);
}

#[test]
fn the_log_tells_joins_leaves_and_failures() {
    let dir = tmp("hard-events");
    let a = Agent::start("ev-a", "127.0.37.1", &dir, &[]);
    let mut b = Agent::start("ev-b", "127.0.37.2", &dir, &["-join=127.0.37.1"]);
    let mut c = Agent::start("ev-c", "127.0.37.3", &dir, &["-join=127.0.37.1"]);
    assert!(wait_for(CONVERGE, || a.members().len() == 3));
    let logged = |line: &str| wait_for(CONVERGE, || a.log_text().contains(line));
    assert!(
        logged("EventMemberJoin: ev-b 127.0.37.2"),
        "{}",
        a.log_text()
    );
    assert!(logged("EventMemberJoin: ev-c 127.0.37.3"));
    // Ctrl-C: a client leaves gracefully.
    b.signal(libc::SIGINT);
    assert!(
        logged("EventMemberLeave: ev-b 127.0.37.2"),
        "{}",
        a.log_text()
    );
    // The leaver's own log: a clean exit, nothing at ERROR level (quinn used to log a broken pipe).
    assert_eq!(b.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!b.log_text().contains("ERROR"), "{}", b.log_text());
    c.crash();
    assert!(
        logged("EventMemberFailed: ev-c 127.0.37.3"),
        "{}",
        a.log_text()
    );
    // A clean client disconnect is routine: nothing at ERROR level.
    for _ in 0..3 {
        let mut s = TcpStream::connect("127.0.37.1:8500").unwrap();
        s.write_all(b"GET /v1/agent/members?index=1&wait=5s HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
    }
    assert!(a.http("GET", "/v1/agent/self").is_some());
    assert!(!a.log_text().contains("ERROR"), "{}", a.log_text());
}
