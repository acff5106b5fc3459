//! A network partition between real server processes: each server advertises the address of a UDP
//! relay this test runs on loopback (gossip and raft both travel over UDP: QUIC), and cutting a
//! server off at the relays puts it in a minority of one. The minority cannot write, and its write
//! never shows up; the majority elects a leader and writes; once healed, every server has the
//! majority's data.

mod support;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use support::{Agent, tmp, wait_for};

const SETTLE: Duration = Duration::from_secs(40);
/// Gossip (serf LAN) and raft (server) ports, both UDP.
const PORTS: [u16; 2] = [8301, 8300];
/// How often a relay thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// IPs cut off: packets from or to them are dropped.
type Blocked = Arc<Mutex<HashSet<IpAddr>>>;

fn is_blocked(blocked: &Blocked, a: IpAddr, b: IpAddr) -> bool {
    let b_set = blocked.lock().unwrap();
    b_set.contains(&a) || b_set.contains(&b)
}

/// UDP relays, one per advertised address and port, each forwarding to one server's real address
/// (as a NAT does: one upstream socket per client, replies sent back from the relay's address).
struct Relays {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Relays {
    /// Relays `advertised` IP -> `real` IP on [`PORTS`]; `blocked` names the real IPs cut off.
    fn start(pairs: &[(IpAddr, IpAddr)], blocked: &Blocked) -> Relays {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for &(advertised, real) in pairs {
            for port in PORTS {
                let listen = UdpSocket::bind((advertised, port)).expect("bind relay");
                listen.set_read_timeout(Some(POLL)).unwrap();
                let (stop, blocked) = (stop.clone(), blocked.clone());
                threads.push(std::thread::spawn(move || {
                    relay(listen, SocketAddr::new(real, port), blocked, stop)
                }));
            }
        }
        Relays { stop, threads }
    }
}

impl Drop for Relays {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Forwards datagrams from clients of `listen` to `server`, and the server's replies back.
fn relay(listen: UdpSocket, server: SocketAddr, blocked: Blocked, stop: Arc<AtomicBool>) {
    let mut upstream: HashMap<SocketAddr, UdpSocket> = HashMap::new();
    let mut replies = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, client)) = listen.recv_from(&mut buf) else {
            continue;
        };
        if is_blocked(&blocked, client.ip(), server.ip()) {
            continue;
        }
        let up = upstream.entry(client).or_insert_with(|| {
            let s = UdpSocket::bind((listen.local_addr().unwrap().ip(), 0)).unwrap();
            s.set_read_timeout(Some(POLL)).unwrap();
            let (back, to) = (s.try_clone().unwrap(), listen.try_clone().unwrap());
            let (stop, blocked) = (stop.clone(), blocked.clone());
            replies.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = back.recv_from(&mut buf) else {
                        continue;
                    };
                    if from == server && !is_blocked(&blocked, from.ip(), client.ip()) {
                        let _ = to.send_to(&buf[..n], client);
                    }
                }
            }));
            s
        });
        let _ = up.send_to(&buf[..n], server);
    }
    for r in replies {
        let _ = r.join();
    }
}

fn value(a: &Agent, mode: &str) -> Option<String> {
    let (code, body) = a.http("GET", &format!("/v1/kv/p?raw{mode}"))?;
    (code == 200).then_some(body)
}

#[test]
fn the_minority_cannot_write_and_its_write_never_shows() {
    let dir = tmp("partition");
    let real = |n: u8| IpAddr::from([127, 0, 56, n]);
    let advertised = |n: u8| IpAddr::from([127, 0, 57, n]);
    let blocked: Blocked = Arc::default();
    let pairs: Vec<_> = (1..=3).map(|n| (advertised(n), real(n))).collect();
    let _relays = Relays::start(&pairs, &blocked);
    let servers: Vec<Agent> = (1..=3u8)
        .map(|n| {
            Agent::start(
                &format!("pt-s{n}"),
                &real(n).to_string(),
                &dir,
                &[
                    "-server",
                    "-bootstrap-expect=3",
                    &format!("-advertise={}", advertised(n)),
                    "-retry-join=127.0.57.1",
                ],
            )
        })
        .collect();
    assert!(
        wait_for(SETTLE, || {
            let l = servers[0].leader();
            l.is_some() && servers.iter().all(|s| s.leader() == l)
        }),
        "no agreed leader through the relays; log:\n{}",
        servers[0].log_text()
    );
    assert_eq!(
        servers[1].http_body("PUT", "/v1/kv/p", "before"),
        Some((200, "true".into()))
    );

    // Cut the leader off: it is the minority.
    let old = servers[0].leader().unwrap();
    let cut = (1..=3u8)
        .position(|n| old == format!("{}:8300", advertised(n)))
        .expect("the leader is one of the relayed servers");
    let n = cut as u8 + 1;
    blocked.lock().unwrap().extend([real(n), advertised(n)]);
    let minority = &servers[cut];
    let majority: Vec<&Agent> = (0..3).filter(|i| *i != cut).map(|i| &servers[i]).collect();

    // Its write fails (it cannot reach a quorum), with Consul's error, not a hang.
    let (code, body) = minority.http_body("PUT", "/v1/kv/p", "minority").unwrap();
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("timed out enqueuing operation") || body.contains("No cluster leader"),
        "{body}"
    );
    assert_eq!(
        minority.http("GET", "/v1/kv/p?consistent").map(|r| r.0),
        Some(500)
    );

    // The majority elects a leader of its own and writes.
    assert!(
        wait_for(SETTLE, || majority[0].leader().is_some_and(|l| l != old)),
        "the majority elected no leader"
    );
    assert!(wait_for(SETTLE, || majority[0]
        .http_body("PUT", "/v1/kv/p", "majority")
        == Some((200, "true".into()))));
    assert_eq!(
        value(majority[1], "&consistent").as_deref(),
        Some("majority")
    );
    // The minority's own (stale) state still has the old value: its write was never applied.
    assert_eq!(value(minority, "&stale").as_deref(), Some("before"));

    // Healed: the old leader follows, its uncommitted write is gone, everyone has the majority's.
    blocked.lock().unwrap().clear();
    assert!(
        wait_for(SETTLE, || value(minority, "&stale").as_deref()
            == Some("majority")),
        "the healed server did not catch up"
    );
    assert!(wait_for(SETTLE, || {
        let l = minority.leader();
        l.is_some() && servers.iter().all(|s| s.leader() == l)
    }));
    assert!(wait_for(SETTLE, || minority
        .http_body("PUT", "/v1/kv/q", "after")
        == Some((200, "true".into()))));
    for s in &servers {
        assert!(wait_for(SETTLE, || value(s, "&stale").as_deref() == Some("majority")));
    }
}
