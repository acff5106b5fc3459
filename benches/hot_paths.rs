//! Criterion benches of the per-packet and per-query hot paths.

use std::sync::Arc;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use murmur::dns::DnsConfig;
use murmur::dns::answer::{Answerer, Transport};
use murmur::dns::cache::{AnswerCache, shape};
use murmur::dns::services::CatalogServices;
use murmur::state::MemberTable;
use murmur_gossip::Rng;
use murmur_gossip::wire::{self, Delta, Message as GossipMessage};
use murmur_gossip::{BroadcastQueue, Item};
use murmur_gossip::{Core, Event, GossipConfig, Identity, Member, State, tags};

fn gossip_packet(n: usize) -> Vec<u8> {
    let mut b = Vec::new();
    let at = wire::encode_header(
        &mut b,
        &GossipMessage::Ping {
            seq: 7,
            target: "node-0",
            known: n as u32,
            want_coord: true,
            takes_patches: false,
            news: None,
        },
    );
    for i in 0..n {
        let name = format!("node-{i}");
        wire::encode_delta(
            &mut b,
            &Delta::Alive {
                name: &name,
                incarnation: i as u32,
                addr: "127.0.0.1:8301".parse().unwrap(),
                tags: &[],
            },
        );
    }
    wire::set_count(&mut b, at, n as u16);
    b
}

fn codec(c: &mut Criterion) {
    let pkt = gossip_packet(40);
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(pkt.len() as u64));
    g.bench_function("decode_40_deltas", |b| {
        b.iter(|| {
            let p = wire::decode(std::hint::black_box(&pkt)).unwrap();
            p.deltas().count()
        })
    });
    let mut buf = Vec::with_capacity(1500);
    g.bench_function("encode_40_deltas", |b| {
        b.iter(|| {
            buf.clear();
            let at = wire::encode_header(&mut buf, &GossipMessage::Gossip);
            for i in 0..40u32 {
                wire::encode_delta(
                    &mut buf,
                    &Delta::Suspect {
                        name: "node-1234",
                        incarnation: i,
                        from: "node-42",
                    },
                );
            }
            wire::set_count(&mut buf, at, 40);
            buf.len()
        })
    });
    g.finish();
}

fn broadcast_queue(c: &mut Criterion) {
    // Fresh news (full entries) and old news from a join exchange (bare ids, sent once).
    let fresh = |q: &mut BroadcastQueue, id| {
        q.push(Item::Member {
            id,
            state: State::Alive,
            from: None,
        })
    };
    let old = |q: &mut BroadcastQueue, id| q.push_once(id);
    type Push<'a> = &'a dyn Fn(&mut BroadcastQueue, u32);
    let cases: [(&str, Push); 2] = [
        ("broadcast/fill_1400B_from_5000_queued", &fresh),
        ("broadcast/fill_1400B_from_5000_old_news", &old),
    ];
    for (name, push) in cases {
        c.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let mut q = BroadcastQueue::default();
                    for id in 0..5000 {
                        push(&mut q, id);
                    }
                    (q, Vec::with_capacity(1500))
                },
                |(mut q, mut out)| {
                    for _ in 0..100 {
                        out.clear();
                        // A typical alive delta is about 28 bytes.
                        q.fill(&mut out, 1400, 16, 1000, |_, _, out| {
                            out.extend_from_slice(&[0u8; 28]);
                            true
                        });
                    }
                    q.len()
                },
                BatchSize::LargeInput,
            )
        });
    }
}

fn member(name: &str, inc: u32) -> Event {
    Event::Member(Member {
        name: Arc::from(name),
        addr: "127.0.0.2:8301".parse().unwrap(),
        incarnation: inc,
        state: State::Alive,
        tags: Arc::from(tags::encode(&[("role", "node"), ("dc", "dc1")]).unwrap()),
    })
}

fn table_with(n: usize) -> Arc<MemberTable> {
    let t = Arc::new(MemberTable::new());
    for i in 0..n {
        t.apply(&member(&format!("node-{i}"), 1));
    }
    t.publish();
    t
}

fn member_table(c: &mut Criterion) {
    let t = table_with(5000);
    let ev = member("node-17", 9);
    let mut g = c.benchmark_group("table_5000");
    g.bench_function("update_one", |b| b.iter(|| t.apply(&ev)));
    g.bench_function("get_one", |b| b.iter(|| t.get("node-4321").is_some()));
    g.bench_function("snapshot_read", |b| b.iter(|| t.snapshot().members.len()));
    g.bench_function("publish_after_change", |b| {
        b.iter(|| {
            t.apply(&ev);
            t.publish()
        })
    });
    g.finish();
}

fn core_packet(c: &mut Criterion) {
    let now = Instant::now();
    let pkt = gossip_packet(40);
    let mut core = Core::new(
        GossipConfig::lan(),
        Identity {
            name: "node-0".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            tags: vec![],
            incarnation: 0,
        },
        now,
        1,
    )
    .unwrap();
    core.handle_packet(now, "127.0.0.9:1".parse().unwrap(), &pkt);
    while core.poll_event().is_some() {}
    let mut buf = Vec::with_capacity(1500);
    c.bench_function("core/handle_ping_with_40_known_deltas", |b| {
        b.iter(|| {
            core.handle_packet(now, "127.0.0.9:1".parse().unwrap(), &pkt);
            while core.poll_transmit(&mut buf).is_some() {}
        })
    });
}

fn query(name: &str, qt: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 99;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qt));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    m.set_edns(e);
    m.to_vec().unwrap()
}

fn dns(c: &mut Criterion) {
    let t = table_with(5000);
    let cfg = DnsConfig::default();
    let services = CatalogServices::with_servers(t.clone());
    let a = Answerer {
        cfg: &cfg,
        table: &t,
        services: &services,
    };
    let raw = query("node-1234.node.consul.", RecordType::A);
    let req = Message::from_vec(&raw).unwrap();
    let mut rng = Rng::new(1);
    let mut g = c.benchmark_group("dns_5000");
    g.bench_function("answer_built", |b| {
        b.iter(|| a.respond(&req, Transport::Udp, &mut rng))
    });
    let mut cache = AnswerCache::default();
    cache.sync(1, 1, |_| None);
    let mut key = Vec::new();
    let sh = shape(&raw, &mut key).unwrap();
    if let Some(murmur::dns::answer::Reply::Bytes(bytes, reuse)) =
        a.respond(&req, Transport::Udp, &mut rng)
    {
        cache.insert(&key, &bytes, &reuse);
    }
    let mut out = Vec::with_capacity(512);
    g.bench_function("answer_cached", |b| {
        b.iter(|| {
            let sh2 = shape(std::hint::black_box(&raw), &mut key).unwrap();
            debug_assert_eq!(sh2, sh);
            cache.serve(&key, &raw, sh2, &mut out)
        })
    });
    // What the metrics add to the cached path: one query's type and one answer's code, tallied.
    let mut tally = murmur::dns::tally::Tally::default();
    g.bench_function("tally_query_and_answer", |b| {
        b.iter(|| {
            tally.query(std::hint::black_box(&raw));
            tally.answer(std::hint::black_box(&out));
        })
    });
    g.finish();
}

fn aead(c: &mut Criterion) {
    use murmur::net::crypto::Keyring;
    let mut ring = Keyring::new(&[7u8; 32]).unwrap();
    let plain = vec![0x5au8; 1400];
    let mut sealed = Vec::with_capacity(1500);
    let mut g = c.benchmark_group("aead_1400B");
    g.throughput(Throughput::Bytes(1400));
    g.bench_function("seal", |b| {
        b.iter(|| ring.seal(&plain, &mut sealed).unwrap())
    });
    ring.seal(&plain, &mut sealed).unwrap();
    let mut buf = sealed.clone();
    g.bench_function("open", |b| {
        b.iter(|| {
            buf.copy_from_slice(&sealed);
            ring.open(&mut buf).map(|p| p.len()).unwrap()
        })
    });
    ring.install(&[9u8; 32]).unwrap();
    ring.use_key(&[9u8; 32]).unwrap();
    g.bench_function("open_with_second_key_during_rotation", |b| {
        b.iter(|| {
            buf.copy_from_slice(&sealed);
            ring.open(&mut buf).map(|p| p.len()).unwrap()
        })
    });
    g.finish();
}

/// What timing one HTTP request adds to it (the metrics middleware's record), with the label sets of a
/// busy agent already present.
fn http_metrics(c: &mut Criterion) {
    let r = murmur::metrics::requests::Requests::default();
    for (i, route) in [
        "/v1/kv/{*key}",
        "/v1/catalog/nodes",
        "/v1/health/service/{name}",
    ]
    .iter()
    .enumerate()
    {
        for status in [200, 404, 500] {
            r.record("GET", route, status, 0.001 * i as f64);
        }
    }
    c.bench_function("metrics/record_http_request", |b| {
        b.iter(|| r.record("GET", "/v1/kv/{*key}", 200, 0.0004))
    });
}

criterion_group!(
    benches,
    codec,
    broadcast_queue,
    member_table,
    core_packet,
    dns,
    aead,
    http_metrics
);
criterion_main!(benches);
