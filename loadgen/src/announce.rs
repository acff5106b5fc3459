//! `--scenario announce`: fills one outside agent's member table with N synthetic members that all
//! live behind a single loopback socket, answering the agent's probes for every one of them, and its
//! catalog with each member's record: member `i` runs `web-K`, `api-K` and `metrics-K` with K = i / 3,
//! so every service name has three instances. Used by perf/dns-bench.sh, which needs an agent that knows
//! thousands of members and services without the O(N^2) cost of running that many full gossip nodes on
//! the same two cores. With `--flip-rate F` (default 0 here), F members a second (in turn, spread over the
//! members) flip their node check between passing and warning and send their new record, as check flips
//! reach every agent in a large cluster: the agent's answers about those services are dropped and built
//! again (their bytes stay the same, as weights are 1 passing and warning alike), the rest are not.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use murmur::state::node_record::{CheckRecord, NodeRecord, ServiceRecord};
use murmur_gossip::wire::{self, Delta, Message, RecordBody};

use crate::measure::node_name;

/// Member `i`'s catalog record: three services, each name shared by members 3K..3K+2, and a node check
/// (passing, or warning: never critical, so every name keeps its instances in DNS).
pub fn services_of(i: usize, warning: bool) -> Vec<u8> {
    let k = i / 3;
    let service = |name: &str, port: u16| {
        let name = format!("{name}-{k}");
        ServiceRecord::plain(&name, &name, &["v1"], port)
    };
    NodeRecord {
        services: vec![
            service("web", 80),
            service("api", 8080),
            service("metrics", 9100),
        ],
        checks: vec![CheckRecord {
            id: "load".into(),
            name: "load".into(),
            status: u8::from(warning),
            notes: String::new(),
            output: String::new(),
            service_id: String::new(),
            kind: "ttl".into(),
        }],
    }
    .encode()
}

/// Appends member `i`'s record at `version` to a gossip packet.
fn put_record(buf: &mut Vec<u8>, i: usize, version: u32, warning: bool) {
    wire::encode_delta(
        buf,
        &Delta::Record {
            name: &node_name(i),
            version,
            body: RecordBody::Inline(&services_of(i, warning)),
        },
    );
}

/// Announces `n` members to `agent` from `bind`, then answers probes until `duration` has passed,
/// flipping `flip_rate` members' checks a second.
pub fn run(
    agent: SocketAddr,
    bind: SocketAddr,
    n: usize,
    duration: Duration,
    flip_rate: f64,
) -> Result<String, String> {
    let sock = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let me = sock.local_addr().map_err(|e| e.to_string())?;
    let tags = murmur_gossip::tags::encode(&[("role", "node"), ("dc", "dc1")])
        .map_err(|e| e.to_string())?;
    // Each member's record version and whether its check warns.
    let mut records = vec![(1u32, false); n];
    let announce = |sock: &UdpSocket, records: &[(u32, bool)]| -> Result<usize, String> {
        let mut sent = 0;
        let mut i = 0;
        while i < n {
            let mut buf = Vec::with_capacity(1400);
            let at = wire::encode_header(&mut buf, &Message::Gossip);
            let mut count = 0u16;
            while i < n && buf.len() < 1100 {
                let name = node_name(i);
                wire::encode_delta(
                    &mut buf,
                    &Delta::Alive {
                        name: &name,
                        incarnation: 1,
                        addr: me,
                        tags: &tags,
                    },
                );
                // After its member in the same packet, so the agent knows whose record it is.
                let (version, warning) = records[i];
                put_record(&mut buf, i, version, warning);
                i += 1;
                count += 2;
            }
            wire::set_count(&mut buf, at, count);
            sock.send_to(&buf, agent).map_err(|e| e.to_string())?;
            sent += 1;
            // Pace the burst so the agent's socket buffer never overflows.
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(sent)
    };
    let packets = announce(&sock, &records)?;
    let end = Instant::now() + duration;
    let mut next_refresh = Instant::now() + Duration::from_secs(30);
    let (mut acks, mut buf, mut out) = (0u64, vec![0u8; 65536], Vec::with_capacity(64));
    let every =
        (flip_rate > 0.0 && n > 0).then(|| Duration::from_secs_f64(1.0 / flip_rate.max(0.01)));
    // Primes: one of them is coprime with n, so the walk reaches every member before repeating one.
    let stride = if n.is_multiple_of(7919) { 7907 } else { 7919 };
    let (mut next_flip, mut flips, mut turn) = (Instant::now(), 0u64, 0usize);
    while Instant::now() < end {
        if Instant::now() >= next_refresh {
            // Anything the agent lost (or suspected) is restated now and then.
            announce(&sock, &records)?;
            next_refresh = Instant::now() + Duration::from_secs(30);
        }
        if let Some(every) = every {
            // Bounded: after a stall, at most 64 flips go at once and the rest are skipped.
            for _ in 0..64 {
                if Instant::now() < next_flip {
                    break;
                }
                turn = (turn + stride) % n;
                let (version, warning) = &mut records[turn];
                *version += 1;
                *warning = !*warning;
                out.clear();
                let at = wire::encode_header(&mut out, &Message::Gossip);
                put_record(&mut out, turn, *version, *warning);
                wire::set_count(&mut out, at, 1);
                sock.send_to(&out, agent).map_err(|e| e.to_string())?;
                flips += 1;
                next_flip += every;
            }
            next_flip = next_flip.max(Instant::now());
            let wait = next_flip.saturating_duration_since(Instant::now());
            sock.set_read_timeout(Some(
                wait.clamp(Duration::from_millis(1), Duration::from_millis(100)),
            ))
            .map_err(|e| e.to_string())?;
        }
        let Ok((len, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(p) = wire::decode(&buf[..len]) else {
            continue;
        };
        let seq = match p.msg {
            Message::Ping { seq, .. } | Message::PingReq { seq, .. } => seq,
            _ => continue,
        };
        out.clear();
        let ack = Message::Ack {
            seq,
            known: 0,
            coord: None,
        };
        let at = wire::encode_header(&mut out, &ack);
        wire::set_count(&mut out, at, 0);
        let _ = sock.send_to(&out, from);
        acks += 1;
    }
    Ok(format!(
        "announced {n} members in {packets} datagrams from {me}; answered {acks} probes; flipped \
         {flips} checks"
    ))
}
