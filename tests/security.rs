//! Encrypted gossip with real agents: forming, rotating keys, keeping a wrong-key node out, and no
//! plaintext on the wire.

mod support;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{Agent, keygen, run_to_exit, tls_files, tmp, wait_for};

const CONVERGE: Duration = Duration::from_secs(20);

fn alive_count(a: &Agent) -> usize {
    a.members()
        .iter()
        .filter(|(_, st, _)| st == "alive")
        .count()
}

fn keyring_list(a: &Agent) -> String {
    String::from_utf8_lossy(&a.cli(&["keyring", "-list"]).stdout).to_string()
}

fn declared_failed(a: &Agent) -> u64 {
    a.stat("serf_lan", "declared_failed")
}

#[test]
fn encrypted_cluster_rotates_keys_without_failures_and_keeps_wrong_key_out() {
    let dir = tmp("sec");
    let k1 = keygen();
    let k2 = keygen();
    let enc = format!("-encrypt={k1}");
    let a = Agent::start("sec-a", "127.0.11.1", &dir, &["-server", &enc]);
    let b = Agent::start("sec-b", "127.0.11.2", &dir, &[&enc, "-join=127.0.11.1"]);
    let c = Agent::start("sec-c", "127.0.11.3", &dir, &[&enc, "-join=127.0.11.2"]);
    let all = [&a, &b, &c];
    for x in all {
        assert!(
            wait_for(CONVERGE, || alive_count(x) == 3),
            "{}: {:?}",
            x.name,
            x.members()
        );
    }
    assert!(
        keyring_list(&a).contains(&format!("{k1} [3/3]")),
        "{}",
        keyring_list(&a)
    );

    for (flag, key) in [("-install", &k2), ("-use", &k2), ("-remove", &k1)] {
        let out = b.cli(&["keyring", flag, key]);
        assert!(
            out.status.success(),
            "{flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for x in all {
            assert_eq!(
                alive_count(x),
                3,
                "a member looked failed during {flag}: {} {:?}\n{}",
                x.name,
                x.members(),
                x.log_text()
            );
        }
    }
    let list = keyring_list(&c);
    assert!(
        list.contains(&format!("{k2} [3/3]")) && !list.contains(&k1),
        "{list}"
    );
    // Gossip keeps flowing on the new key alone: every agent takes in plenty more packets, and not one
    // fails to decrypt (a node still sealing with the removed key would show here long before anyone's
    // suspicion of it could time out).
    let before: Vec<u64> = all
        .iter()
        .map(|x| x.stat("serf_lan", "packets_in"))
        .collect();
    for (x, b) in all.iter().zip(&before) {
        assert!(
            wait_for(CONVERGE, || x.stat("serf_lan", "packets_in") >= b + 30),
            "{}: gossip stopped",
            x.name
        );
    }
    for x in all {
        assert_eq!(x.stat("serf_lan", "dropped_decrypt"), 0, "{}", x.name);
        assert_eq!(alive_count(x), 3);
        assert_eq!(declared_failed(x), 0, "{} declared someone failed", x.name);
    }
    let stored = std::fs::read_to_string(dir.join("sec-a/serf/local.keyring")).unwrap();
    assert!(stored.contains(&k2) && !stored.contains(&k1), "{stored}");

    // A node with the old key cannot join, and the cluster says why.
    let out = run_to_exit(
        &[
            "agent".into(),
            "-node=sec-wrong".into(),
            "-bind=127.0.11.4".into(),
            "-client=127.0.11.4".into(),
            format!("-data-dir={}", dir.join("sec-wrong").display()),
            format!("-encrypt={k1}"),
            "-join=127.0.11.1".into(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(out.code, Some(1), "wrong-key agent must fail to join");
    assert!(out.output.contains("Error joining the cluster"));
    // The joiner hears why: the cluster closed the push/pull with its reason.
    assert!(
        out.output.contains(
            "127.0.11.1:8301 refused it: state from 127.0.11.4:8301: no installed key opens it"
        ),
        "{}",
        out.output
    );
    assert!(
        a.log_text().contains("no installed key opens it"),
        "{}",
        a.log_text()
    );
    assert!(!a.members().iter().any(|(n, _, _)| n == "sec-wrong"));
    let bad = c.cli(&["keyring", "-use", &k1]);
    assert_eq!(
        bad.status.code(),
        Some(1),
        "using a key that is not installed fails"
    );
}

/// A relay between the agents that records every datagram it forwards (a userspace capture).
struct Tap {
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl Tap {
    /// Listens on `listen`, forwards to `target`; replies go back through per-peer sockets.
    fn start(listen: &str, target: SocketAddr) -> Tap {
        let front = UdpSocket::bind(listen).unwrap();
        front
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let ip = front.local_addr().unwrap().ip();
        std::thread::spawn(move || {
            let mut peers: HashMap<SocketAddr, UdpSocket> = HashMap::new();
            let mut buf = [0u8; 65536];
            while !stop2.load(Ordering::Relaxed) {
                if let Ok((n, from)) = front.recv_from(&mut buf) {
                    seen2.lock().unwrap().push(buf[..n].to_vec());
                    let back = peers.entry(from).or_insert_with(|| {
                        let s = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
                        s.set_nonblocking(true).unwrap();
                        s
                    });
                    let _ = back.send_to(&buf[..n], target);
                }
                for (peer, s) in &peers {
                    while let Ok((n, _)) = s.recv_from(&mut buf) {
                        seen2.lock().unwrap().push(buf[..n].to_vec());
                        let _ = front.send_to(&buf[..n], peer);
                    }
                }
            }
        });
        Tap { seen, stop }
    }

    fn contains(&self, needle: &[u8]) -> bool {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.windows(needle.len()).any(|w| w == needle))
    }

    /// Gossip datagrams seen (QUIC ones, first byte with bit 0x40, are not counted).
    fn gossip_count(&self) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.first().is_some_and(|b| b & 0x40 == 0))
            .count()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn capture(tag: &str, ip_a: &str, ip_b: &str, tap_ip: &str, extra: &[&str]) -> Tap {
    let dir = tmp(tag);
    // alpha advertises the tap, so everything the cluster sends to alpha crosses it.
    let mut a_args = extra.to_vec();
    let adv = format!("-advertise={tap_ip}");
    a_args.push(&adv);
    let a = Agent::start(&format!("{tag}-alpha"), ip_a, &dir, &a_args);
    let tap = Tap::start(
        &format!("{tap_ip}:8301"),
        format!("{ip_a}:8301").parse().unwrap(),
    );
    let mut args = extra.to_vec();
    let join = format!("-join={tap_ip}");
    args.push(&join);
    let b = Agent::start(&format!("{tag}-bravo"), ip_b, &dir, &args);
    assert!(
        wait_for(CONVERGE, || alive_count(&b) == 2),
        "{:?}",
        b.members()
    );
    // Let a few probe rounds cross the tap.
    assert!(
        wait_for(CONVERGE, || tap.gossip_count() >= 6),
        "only {} gossip datagrams crossed",
        tap.gossip_count()
    );
    drop((a, b));
    tap
}

#[test]
fn no_plaintext_node_names_on_the_wire_when_encrypted() {
    // Control: without a key the relay does see node names, so the capture works.
    let plain = capture("plain", "127.0.12.1", "127.0.12.2", "127.0.12.9", &[]);
    assert!(
        plain.contains(b"plain-alpha"),
        "the control capture saw no node name"
    );
    let key = format!("-encrypt={}", keygen());
    let enc = capture("cipher", "127.0.13.1", "127.0.13.2", "127.0.13.9", &[&key]);
    assert!(enc.gossip_count() >= 6);
    assert!(
        !enc.contains(b"cipher-bravo") && !enc.contains(b"cipher-alpha"),
        "a node name crossed in plaintext"
    );
}

fn tls_config(dir: &std::path::Path, cert: &str, name: &str) -> std::path::PathBuf {
    let cfg = dir.join(format!("{name}.json"));
    let body = serde_json::json!({
        "ca_file": dir.join("murmur-agent-ca.pem"),
        "cert_file": dir.join(format!("{cert}.pem")),
        "key_file": dir.join(format!("{cert}-key.pem")),
        "verify_incoming": true,
        "verify_outgoing": true,
    });
    std::fs::write(&cfg, body.to_string()).unwrap();
    cfg
}

/// A node that trusts the cluster CA (so its own side of the handshake accepts the cluster) but
/// authenticates with `cert` (a certificate from elsewhere, or none at all).
fn outsider_config(
    ca_dir: &std::path::Path,
    cert: Option<(&std::path::Path, &str)>,
    name: &str,
) -> std::path::PathBuf {
    let cfg = ca_dir.join(format!("{name}.json"));
    let mut body = serde_json::json!({
        "ca_file": ca_dir.join("murmur-agent-ca.pem"),
        "verify_incoming": false,
        "verify_outgoing": true,
    });
    if let Some((dir, cert)) = cert {
        body["cert_file"] = dir.join(format!("{cert}.pem")).to_string_lossy().into();
        body["key_file"] = dir.join(format!("{cert}-key.pem")).to_string_lossy().into();
    }
    std::fs::write(&cfg, body.to_string()).unwrap();
    cfg
}

/// Starts an agent that is expected to fail its `-join` and exit.
fn failed_join(
    dir: &std::path::Path,
    name: &str,
    ip: &str,
    key: &str,
    cfg: &std::path::Path,
    seed: &str,
) -> support::Exit {
    run_to_exit(
        &[
            "agent".into(),
            format!("-node={name}"),
            format!("-bind={ip}"),
            format!("-client={ip}"),
            key.into(),
            format!("-join={seed}"),
            format!("-data-dir={}", dir.join(name).display()),
            "-config-file".into(),
            cfg.to_string_lossy().into(),
        ],
        Duration::from_secs(60),
    )
}

#[test]
fn mutual_tls_cluster_forms_and_a_foreign_ca_stays_out() {
    let dir = tmp("mtls");
    let pki = dir.join("pki");
    tls_files(&pki, &["-server", "-client", "-client"]);
    let other = dir.join("other-pki");
    tls_files(&other, &["-client"]);
    let key = format!("-encrypt={}", keygen());
    let cfg = |cert: &str, name: &str| tls_config(&pki, cert, name).to_string_lossy().to_string();
    let (c1, c2, c3) = (
        cfg("dc1-server-murmur-0", "m1"),
        cfg("dc1-client-murmur-0", "m2"),
        cfg("dc1-client-murmur-1", "m3"),
    );
    let a = Agent::start(
        "mtls-a",
        "127.0.15.1",
        &dir,
        &["-server", &key, "-config-file", &c1],
    );
    let b = Agent::start(
        "mtls-b",
        "127.0.15.2",
        &dir,
        &[&key, "-config-file", &c2, "-join=127.0.15.1"],
    );
    let c = Agent::start(
        "mtls-c",
        "127.0.15.3",
        &dir,
        &[&key, "-config-file", &c3, "-join=127.0.15.2"],
    );
    for x in [&a, &b, &c] {
        assert!(
            wait_for(CONVERGE, || alive_count(x) == 3),
            "{}: {:?}",
            x.name,
            x.members()
        );
    }
    assert!(
        a.log_text().contains("push/pull over QUIC with mutual TLS"),
        "{}",
        a.log_text()
    );
    assert!(!a.log_text().contains("without mutual TLS"));

    // Right gossip key, certificate from another CA: the push/pull handshake fails and the join with it.
    let foreign = tls_config(&other, "dc1-client-murmur-0", "foreign");
    let out = failed_join(&dir, "mtls-x", "127.0.15.4", &key, &foreign, "127.0.15.1");
    assert_eq!(out.code, Some(1), "{}", out.output);
    assert!(
        out.output.contains("certificate") || out.output.contains("Certificate"),
        "{}",
        out.output
    );
    assert!(
        wait_for(Duration::from_secs(5), || a
            .log_text()
            .contains("push/pull from 127.0.15.4")),
        "{}",
        a.log_text()
    );
    // The server's own client-certificate check, isolated: these nodes trust the cluster CA, so their
    // side of the handshake accepts the server; only the server can refuse them.
    let foreign_cert = outsider_config(&pki, Some((&other, "dc1-client-murmur-0")), "outsider-y");
    let no_cert = outsider_config(&pki, None, "outsider-z");
    for (name, ip, cfg) in [
        ("mtls-y", "127.0.15.5", &foreign_cert),
        ("mtls-z", "127.0.15.6", &no_cert),
    ] {
        let out = failed_join(&dir, name, ip, &key, cfg, "127.0.15.1");
        assert_eq!(out.code, Some(1), "{name}: {}", out.output);
        assert!(
            wait_for(Duration::from_secs(5), || a
                .log_text()
                .contains(&format!("push/pull from {ip}:8301 rejected"))),
            "{name}: {}",
            a.log_text()
        );
        assert!(!a.members().iter().any(|(n, _, _)| n == name));
    }
    assert!(!a.members().iter().any(|(n, _, _)| n == "mtls-x"));
}
