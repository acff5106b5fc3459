//! Full-state import (`Core::merge_state`), which the stream push/pull (QUIC, `ImportState` in
//! `net::udp`) feeds with whatever a peer sent; without mutual TLS that peer is unauthenticated.
//!
//! The core first learns a few members (alive, suspect, dead, left; IPv4 and IPv6) so the input's
//! entries about them take the update paths, not only the newcomer path. Invariants: `merge_state`
//! accepts exactly what `wire::decode_state` accepts and reports its entry count; the local node stays
//! alive in its own view, before and after its timers run, from incarnation 0 and from just below the
//! serial wrap; everything the core sends decodes; its own exported state decodes, starts with itself
//! and is accepted by another node; and each entry about the local node, imported alone, moves its
//! incarnation exactly as the refutation rules say (`common::expected_after`).
#![no_main]

mod common;

use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use murmur_gossip::{State, tags, wire};
use wire::Delta;

use common::Via;

/// The state the core knows before the input arrives.
fn base_state() -> &'static [u8] {
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    BASE.get_or_init(|| {
        let t = tags::encode(&[("role", "consul"), ("dc", "dc1"), ("port", "8300")]).unwrap();
        let ds = [
            Delta::Alive {
                name: "peer-a",
                incarnation: 3,
                addr: common::peer(),
                tags: &t,
            },
            Delta::Alive {
                name: "peer-v6",
                incarnation: 7,
                addr: "[2001:db8::6]:8301".parse().unwrap(),
                tags: &[],
            },
            Delta::Alive {
                name: "peer-b",
                incarnation: 1,
                addr: "127.0.0.4:8301".parse().unwrap(),
                tags: &t,
            },
            Delta::Suspect {
                name: "peer-b",
                incarnation: 1,
                from: "peer-a",
            },
            Delta::Alive {
                name: "peer-c",
                incarnation: u32::MAX,
                addr: "127.0.0.5:8301".parse().unwrap(),
                tags: &[],
            },
            Delta::Alive {
                name: "peer-d",
                incarnation: 0,
                addr: "127.0.0.6:8301".parse().unwrap(),
                tags: &[],
            },
            Delta::Left {
                name: "peer-d",
                incarnation: 1,
            },
        ];
        let mut b = Vec::new();
        wire::encode_state(&mut b, ds.into_iter());
        b
    })
}

/// A gossip datagram declaring peer-c failed.
fn base_dead() -> &'static [u8] {
    static DEAD: OnceLock<Vec<u8>> = OnceLock::new();
    DEAD.get_or_init(|| {
        let mut b = Vec::new();
        let at = wire::encode_header(&mut b, &wire::Message::Gossip);
        wire::encode_delta(
            &mut b,
            &Delta::Dead {
                name: "peer-c",
                incarnation: u32::MAX,
                from: "peer-a",
            },
        );
        wire::set_count(&mut b, at, 1);
        b
    })
}

fuzz_target!(|data: &[u8]| {
    let decoded = wire::decode_state(data);
    if let Ok(st) = &decoded {
        assert_eq!(st.deltas().count(), st.len());
    }
    let now = Instant::now();
    let mut buf = Vec::new();
    for start in common::START_INCS {
        let mut core = common::core(start, now);
        let base = base_state();
        assert_eq!(
            core.merge_state(now, common::peer(), base).unwrap().members,
            7
        );
        // A full state only ever suspects; gossip declares peer-c failed.
        core.handle_packet(now, common::peer(), base_dead());
        assert_eq!(core.member("peer-c").unwrap().state, State::Dead);
        common::drain(&mut core, &mut buf);
        match (core.merge_state(now, common::peer(), data), &decoded) {
            // Node records ride along in a state but are not members.
            (Ok(n), Ok(st)) => {
                assert_eq!(
                    n.members,
                    st.deltas()
                        .filter(|d| !matches!(d, Delta::Record { .. }))
                        .count()
                );
                assert_eq!(n.short_records, st.has_short_records());
            }
            (Err(e), Err(d)) => assert_eq!(e, *d),
            (got, _) => panic!("merge_state and decode_state disagree: {got:?}"),
        }
        common::check(&core);
        common::check_export(&core, now);
        common::drive(&mut core, now, &mut buf);
        common::check_export(&core, now);
        if let Ok(st) = &decoded {
            common::check_claims(now, st.deltas(), start, Via::State);
        }
    }
});
