//! Shared by the gossip targets: a core to feed, the invariants every input must leave intact, and an
//! oracle for claims about the local node (the refutation rules of `murmur_gossip::incarnation`).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use murmur_gossip::incarnation::{at_least, later, newer, next, plausible};
use murmur_gossip::wire::{self, Delta, Message};
use murmur_gossip::{Core, Event, GossipConfig, Identity, State, tags};

/// The local node's name.
pub const ME: &str = "fuzz";

/// Where fuzzed datagrams and states come from.
pub fn peer() -> SocketAddr {
    "127.0.0.2:8301".parse().unwrap()
}

/// The local node's gossip address.
pub fn me_addr() -> SocketAddr {
    "127.0.0.1:8301".parse().unwrap()
}

/// The local node's encoded tags.
pub fn me_tags() -> Vec<u8> {
    tags::encode(&[("role", "node"), ("dc", "dc1"), ("m:rack", "r1")]).unwrap()
}

/// The tags the local core announces: the application's, plus the wire extensions it understands.
pub fn announced_tags() -> Vec<u8> {
    let features = murmur_gossip::wire::FEATURES.to_string();
    tags::with(&me_tags(), murmur_gossip::wire::FEATURES_TAG, &features).unwrap()
}

/// Starting incarnations every input is tried from: the bottom, and just below the serial wrap.
pub const START_INCS: [u32; 2] = [0, u32::MAX - 1];

/// A fresh core for the local node at incarnation `inc`.
pub fn core(inc: u32, now: Instant) -> Core {
    let id = Identity {
        name: ME.into(),
        addr: me_addr(),
        tags: me_tags(),
        incarnation: inc,
    };
    Core::new(GossipConfig::lan(), id, now, 1).unwrap()
}

/// What must hold whatever a peer sent: we are alive in our own view under our own address and tags,
/// and the view's counters agree with its slots.
pub fn check(core: &Core) {
    let me = core.member(ME).expect("the local node is in its own view");
    assert_eq!(
        me.state,
        State::Alive,
        "local node not alive in its own view"
    );
    assert_eq!(me.addr, me_addr(), "local address changed");
    assert_eq!(&*me.tags, &announced_tags()[..], "local tags changed");
    let local = core.local();
    assert_eq!(local.incarnation, me.incarnation);
    let view = core.view();
    assert_eq!(view.len(), view.iter().count(), "view length");
    assert_eq!(
        view.live(),
        view.iter().filter(|s| s.state.is_live()).count(),
        "live count"
    );
    assert_eq!(core.num_live(), view.live());
    for s in view.iter() {
        let name = s.ident.name();
        let m = core.member(name).expect("every slot is found by its name");
        assert_eq!(m.state, s.state);
        assert_eq!(m.incarnation, s.incarnation);
    }
}

/// Drains transmits (each must be a datagram peers accept) and events (none may say we are not alive).
pub fn drain(core: &mut Core, buf: &mut Vec<u8>) {
    for _ in 0..10_000 {
        let Some(t) = core.poll_transmit(buf) else {
            break;
        };
        assert_eq!(t.len, buf.len());
        assert!(t.len <= wire::MAX_DATAGRAM, "oversize transmit: {}", t.len);
        let p = wire::decode(&buf[..t.len]).expect("our own transmit decodes");
        assert_eq!(p.deltas().count(), p.delta_count());
    }
    while let Some(ev) = core.poll_event() {
        if let Event::Member(m) = ev
            && &*m.name == ME
        {
            assert_eq!(
                m.state,
                State::Alive,
                "event says the local node is {:?}",
                m.state
            );
        }
    }
}

/// Runs the timers a little (probes, suspicion timeouts, reaping), checking after each step.
pub fn drive(core: &mut Core, now: Instant, buf: &mut Vec<u8>) {
    drain(core, buf);
    check(core);
    for secs in [1u64, 2, 5, 15, 40, 120, 600, 3 * 24 * 3600 + 60] {
        core.handle_timeout(now + Duration::from_secs(secs));
        drain(core, buf);
        check(core);
    }
}

/// Our exported state decodes, lists every member we know (ourselves first), and another node accepts it.
pub fn check_export(core: &Core, now: Instant) {
    let (mut out, mut long) = (Vec::new(), Vec::new());
    core.encode_state(&mut out, true, true);
    core.encode_state(&mut long, true, false);
    let st = wire::decode_state(&out).expect("our own state decodes");
    // The short form carries the same entries as the long one.
    let long = wire::decode_state(&long).expect("our own long state decodes");
    assert!(st.deltas().eq(long.deltas()));
    assert!(!long.has_short_records());
    // One state per member, each followed by its record if it has one.
    let members = st
        .deltas()
        .filter(|d| !matches!(d, Delta::Record { .. }))
        .count();
    assert_eq!(members, core.view().len());
    match st.deltas().next() {
        Some(Delta::Alive { name, addr, .. }) => {
            assert_eq!(name, ME);
            assert_eq!(addr, me_addr());
        }
        other => panic!("our state starts with {other:?}"),
    }
    let mut other = Core::new(
        GossipConfig::lan(),
        Identity {
            name: "other".into(),
            addr: "127.0.0.3:8301".parse().unwrap(),
            tags: Vec::new(),
            incarnation: 0,
        },
        now,
        2,
    )
    .unwrap();
    assert_eq!(
        other.merge_state(now, me_addr(), &out).map(|m| m.members),
        Ok(members)
    );
}

/// The incarnation the local node must be at after one claim `d` while at `b` (incarnation.rs): a claim
/// that we are suspect, dead or left is refuted when it is plausible and not older than what we know;
/// an alive claim when it is plausible and newer, or as new but announcing another address or tags.
/// Everything else leaves us as we were.
pub fn expected_after(d: &Delta<'_>, b: u32) -> u32 {
    match *d {
        Delta::Suspect {
            name, incarnation, ..
        }
        | Delta::Dead {
            name, incarnation, ..
        }
        | Delta::Left { name, incarnation }
            if name == ME =>
        {
            if plausible(incarnation, b) && at_least(incarnation, b) {
                next(later(b, incarnation))
            } else {
                b
            }
        }
        Delta::Alive {
            name,
            incarnation,
            addr,
            tags,
        } if name == ME => {
            let conflicting =
                incarnation == b && (addr != me_addr() || tags != &announced_tags()[..]);
            if plausible(incarnation, b) && (newer(incarnation, b) || conflicting) {
                next(later(b, incarnation))
            } else {
                b
            }
        }
        _ => b,
    }
}

/// How one claim is delivered to the core in [`check_claims`].
#[derive(Clone, Copy)]
pub enum Via {
    /// In a gossip datagram of its own.
    Gossip,
    /// As a one-entry full state from a stream push/pull.
    State,
}

/// Feeds (at most 256 of) `deltas` one at a time to a core starting at `start` and checks each step against
/// [`expected_after`]: every forged claim about us that could stand is refuted at once, at an
/// incarnation newer than the claim, and nothing else moves our incarnation.
pub fn check_claims<'a>(
    now: Instant,
    deltas: impl Iterator<Item = Delta<'a>>,
    start: u32,
    via: Via,
) {
    let mut core = core(start, now);
    let mut buf = Vec::new();
    let mut pkt = Vec::new();
    for d in deltas.take(256) {
        let b = core.local().incarnation;
        pkt.clear();
        match via {
            Via::Gossip => {
                let at = wire::encode_header(&mut pkt, &Message::Gossip);
                wire::encode_delta(&mut pkt, &d);
                wire::set_count(&mut pkt, at, 1);
                core.handle_packet(now, peer(), &pkt);
            }
            Via::State => {
                wire::encode_state(&mut pkt, std::iter::once(d));
                // A node record rides along but is no member entry.
                let members = usize::from(!matches!(d, Delta::Record { .. }));
                assert_eq!(
                    core.merge_state(now, peer(), &pkt).map(|m| m.members),
                    Ok(members)
                );
            }
        }
        let after = core.local().incarnation;
        let want = expected_after(&d, b);
        assert_eq!(after, want, "after {d:?} at incarnation {b}");
        if let Delta::Suspect {
            name, incarnation, ..
        }
        | Delta::Dead {
            name, incarnation, ..
        }
        | Delta::Left { name, incarnation } = d
            && name == ME
            && after != b
        {
            assert!(newer(after, incarnation), "refutation not newer than {d:?}");
        }
        let me = core.local();
        assert_eq!(me.state, State::Alive, "local node not alive after {d:?}");
        assert_eq!(me.addr, me_addr());
        drain(&mut core, &mut buf);
    }
    check(&core);
}
