//! DNS query path as the servers run it, over a populated member table: the fast-path shape parser and
//! answer cache, the answer builder (node A/AAAA/TXT/ANY, the `consul` service's SRV, PTR, SOA/NS,
//! forwarding) on both transports under two configurations, and the FORMERR fallback.
//!
//! Invariants: a response (QR set) is never answered, by any path; every answer parses back as a
//! response to the same ID and fits its transport (512 bytes or the advertised EDNS size, at most
//! 4096, over UDP; a 16-bit length over TCP); an answer the UDP server would cache is served back
//! from the cache byte for byte for the query that produced it.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;
use murmur::dns::DnsConfig;
use murmur::dns::answer::{Answerer, MAX_UDP_PAYLOAD, Reply, Reuse, Transport, formerr};
use murmur::dns::cache::{AnswerCache, shape};
use murmur::dns::services::{CatalogServices, ServiceCatalog};
use murmur::state::MemberTable;
use murmur_gossip::Rng;
use murmur_gossip::{Event, Member, State, tags};

struct World {
    table: Arc<MemberTable>,
    services: CatalogServices,
    configs: [DnsConfig; 2],
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let table = Arc::new(MemberTable::new());
        let add = |name: &str, addr: &str, state: State, pairs: &[(&str, &str)]| {
            table.apply(&Event::Member(Member {
                name: Arc::from(name),
                addr: addr.parse().unwrap(),
                incarnation: 1,
                state,
                tags: Arc::from(tags::encode(pairs).unwrap()),
            }));
        };
        let server = [("role", "consul"), ("dc", "dc1"), ("port", "8300")];
        let client = [("role", "node"), ("dc", "dc1")];
        let with = |base: &[(&'static str, &'static str)],
                    meta: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(meta);
            v
        };
        add(
            "agent-one",
            "127.0.0.1:8301",
            State::Alive,
            &with(&server, &[("m:rack", "r1"), ("m:env", "prod")]),
        );
        add(
            "agent-two",
            "127.0.0.2:8301",
            State::Alive,
            &with(&client, &[("m:rack", "r2")]),
        );
        add(
            "web-v6",
            "[2001:db8::6]:8301",
            State::Alive,
            &with(&client, &[("m:os", "linux"), ("m:team", "web")]),
        );
        add(
            "srv-v6",
            "[fd00::10]:8301",
            State::Alive,
            &[
                ("role", "consul"),
                ("dc", "dc1"),
                ("port", "8305"),
                ("m:az", "a"),
            ],
        );
        add(
            "Mixed.Case",
            "127.0.0.3:8301",
            State::Alive,
            &with(&client, &[("m:k", "")]),
        );
        add("suspect-srv", "127.0.0.4:8301", State::Suspect, &server);
        add(
            "gone",
            "127.0.0.5:8301",
            State::Dead,
            &with(&server, &[("m:rack", "r1")]),
        );
        add("old-one", "127.0.0.1:8302", State::Dead, &client);
        add("lefty", "127.0.0.6:8301", State::Left, &client);
        add(
            "other-dc",
            "127.0.0.8:8301",
            State::Alive,
            &[("role", "consul"), ("dc", "dc2"), ("port", "8300")],
        );
        // Enough metadata to overflow 512 bytes, so trimming and truncation run.
        let big: Vec<(String, String)> = [("role", "node"), ("dc", "dc1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain((0..9).map(|i| (format!("m:key{i}"), "v".repeat(40))))
            .collect();
        table.apply(&Event::Member(Member {
            name: Arc::from("big-meta"),
            addr: "127.0.0.9:8301".parse().unwrap(),
            incarnation: 1,
            state: State::Alive,
            tags: Arc::from(tags::encode(&big).unwrap()),
        }));
        table.publish();
        let services = CatalogServices::with_servers(table.clone());
        let tuned = DnsConfig {
            node_ttl: Duration::from_secs(30),
            service_ttl: murmur::dns::ServiceTtl {
                any: Duration::from_secs(5),
                by_name: vec![("web*".into(), Duration::from_secs(30))],
            },
            udp_answer_limit: 1,
            a_record_limit: 1,
            enable_truncate: true,
            only_passing: true,
            additional_node_meta_txt: false,
            recursors: vec!["127.0.0.53:53".parse().unwrap()],
            ..DnsConfig::default()
        };
        World {
            table,
            services,
            configs: [DnsConfig::default(), tuned],
        }
    })
}

/// Checks one reply to `req` (raw `raw`) and returns its bytes and cacheability.
fn check_reply(
    raw: &[u8],
    req: &Message,
    transport: Transport,
    reply: Option<Reply>,
) -> Option<(Vec<u8>, Reuse)> {
    if req.metadata.message_type == MessageType::Response {
        assert!(reply.is_none(), "answered a response: {reply:?}");
        return None;
    }
    let Some(reply) = reply else {
        panic!("a query went unanswered");
    };
    let Reply::Bytes(bytes, reuse) = reply else {
        return None;
    };
    let max = match (transport, &req.edns) {
        (Transport::Tcp, _) => u16::MAX as usize,
        (Transport::Udp, Some(e)) => (e.max_payload() as usize).clamp(512, MAX_UDP_PAYLOAD),
        (Transport::Udp, None) => 512,
    };
    assert!(
        bytes.len() <= max,
        "{transport:?} answer of {} bytes over the limit {max}",
        bytes.len()
    );
    let resp = Message::from_vec(&bytes).expect("our answer parses");
    assert_eq!(resp.metadata.message_type, MessageType::Response);
    assert_eq!(resp.metadata.id, req.metadata.id);
    assert_eq!(&bytes[..2], &raw[..2]);
    Some((bytes, reuse))
}

/// A name of another datacenter is that datacenter's to answer; with no path to it, the server
/// answers NXDOMAIN, which must meet the same rules as any answer.
fn other_dc(
    a: &Answerer,
    req: &Message,
    transport: Transport,
    reply: Option<Reply>,
) -> Option<Reply> {
    match reply {
        Some(Reply::Remote(dc)) => {
            assert!(
                !dc.eq_ignore_ascii_case("dc1"),
                "our own datacenter sent away"
            );
            Some(Reply::Bytes(
                a.no_such_datacenter(req, transport),
                Reuse::Never,
            ))
        }
        r => r,
    }
}

/// Another datacenter's answer, as any bytes: checked against the question asked, never a panic, and
/// only a response to that question, within the size limit, is let through.
fn remote_answer(data: &[u8]) {
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};
    let mut asked = Message::query();
    asked.metadata.id = u16::from_be_bytes([data.first().copied().unwrap_or(0), 7]);
    asked.add_query(Query::query(
        Name::from_ascii("agent-two.node.dc2.consul.").expect("literal"),
        RecordType::A,
    ));
    for tcp in [false, true] {
        if let Ok(m) = murmur::dns::remote::check_answer(&asked, data, tcp) {
            assert_eq!(m.metadata.id, asked.metadata.id);
            assert_eq!(m.queries, asked.queries);
            assert!(data.len() <= if tcp { 65_535 } else { 512 });
        }
    }
}

fuzz_target!(|data: &[u8]| {
    remote_answer(data);
    let w = world();
    let mut key = Vec::new();
    let sh = shape(data, &mut key);
    let is_response = data.len() > 2 && data[2] & 0x80 != 0;
    if is_response {
        assert!(sh.is_none(), "a response took the fast path");
        assert!(formerr(data).is_none(), "FORMERR for a response");
    }
    let parsed = Message::from_vec(data);
    // The metrics' tally reads any bytes (a query's type, an answer's code) without a panic, and agrees
    // with the full parser on the question's type.
    let mut tally = murmur::dns::tally::Tally::default();
    tally.query(data);
    tally.answer(data);
    if let Ok(req) = &parsed
        && let Some(q) = req.queries.first()
        && sh.is_some()
    {
        assert_eq!(
            murmur::dns::tally::question_type(data),
            Some(u16::from(q.query_type())),
            "the tally reads another type than the parser"
        );
    }
    if let Ok(req) = &parsed {
        assert_eq!(
            req.metadata.message_type == MessageType::Response,
            is_response,
            "QR bit and parsed type disagree"
        );
    }
    for cfg in &w.configs {
        let a = Answerer {
            cfg,
            table: &w.table,
            services: &w.services,
        };
        match &parsed {
            Ok(req) => {
                let udp = a.respond(req, Transport::Udp, &mut Rng::new(1));
                let udp = check_reply(
                    data,
                    req,
                    Transport::Udp,
                    other_dc(&a, req, Transport::Udp, udp),
                );
                let tcp = a.respond(req, Transport::Tcp, &mut Rng::new(1));
                check_reply(
                    data,
                    req,
                    Transport::Tcp,
                    other_dc(&a, req, Transport::Tcp, tcp),
                );
                // The UDP server's cache: a miss on a fresh cache, then (if it keeps the answer) the same
                // bytes served back for the same query.
                // Shuffled answers differ from one build to the next; only fixed ones can be compared.
                if let (Some(sh), Some((bytes, reuse @ Reuse::Always(_)))) = (sh, udp) {
                    let mut cache = AnswerCache::default();
                    cache.sync(w.table.snapshot().index, w.services.version(), |_| None);
                    let mut out = Vec::new();
                    assert!(!cache.serve(&key, data, sh, &mut out));
                    cache.insert(&key, &bytes, &reuse);
                    if cache.serve(&key, data, sh, &mut out) {
                        assert_eq!(out, bytes, "cached answer differs from the fresh one");
                    }
                }
            }
            Err(_) => {
                if let Some(b) = formerr(data) {
                    let m = Message::from_vec(&b).expect("FORMERR parses");
                    assert_eq!(&b[..2], &data[..2]);
                    assert_eq!(m.metadata.message_type, MessageType::Response);
                }
            }
        }
    }
});
