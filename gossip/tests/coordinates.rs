//! Network coordinates on the simulated network: probes measure round trips, acks carry coordinates,
//! and the estimates converge to the latencies planted in the network; members that do not announce the
//! extension are never sent it.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use murmur_gossip::sim::{NetModel, Sim};
use murmur_gossip::{GossipConfig, Rng, tags, wire};

/// A node's place: a point in a plane plus its access link, all in seconds of round trip.
#[derive(Clone, Copy)]
struct Place {
    x: f64,
    y: f64,
    link: f64,
}

fn rtt(a: Place, b: Place) -> f64 {
    ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt() + a.link + b.link
}

fn tags() -> Vec<u8> {
    tags::encode(&[("role", "node")]).unwrap()
}

/// `n` nodes scattered over a continent (up to ~110 ms apart) with 0-5 ms access links; each path's
/// one-way latency is half its planted round trip.
fn planted(n: usize, seed: u64) -> (Sim, Vec<Place>) {
    let mut rng = Rng::new(seed);
    let mut unit = move || rng.next_u64() as f64 / u64::MAX as f64;
    let places: Vec<Place> = (0..n)
        .map(|_| Place {
            x: unit() * 0.08,
            y: unit() * 0.08,
            link: unit() * 0.005,
        })
        .collect();
    let net = NetModel {
        jitter: Duration::from_micros(200),
        ..NetModel::default()
    };
    let mut sim = Sim::new(seed, net);
    let p = places.clone();
    sim.set_link_latency(Box::new(move |a, b| {
        Duration::from_secs_f64(rtt(p[a], p[b]) / 2.0)
    }));
    for i in 0..n {
        sim.add_node(&format!("node-{i}"), GossipConfig::lan(), tags());
    }
    for i in 1..n {
        sim.join(i, (i - 1) % 3);
    }
    (sim, places)
}

/// Median over every pair of |estimate - planted| / planted.
fn median_error(sim: &Sim, places: &[Place]) -> f64 {
    let coords: Vec<_> = (0..sim.len())
        .map(|i| {
            sim.node(i)
                .core
                .coordinate()
                .expect("on by default")
                .clone()
        })
        .collect();
    let mut errors = Vec::new();
    for i in 0..coords.len() {
        for j in i + 1..coords.len() {
            let truth = rtt(places[i], places[j]);
            let est = coords[i].distance(&coords[j]).as_secs_f64();
            errors.push((est - truth).abs() / truth);
        }
    }
    errors.sort_by(f64::total_cmp);
    errors[errors.len() / 2]
}

/// The goal: within 20% median relative error among 200 nodes. Each node probes one member a
/// second, so five minutes give each about 300 samples.
#[test]
fn two_hundred_nodes_estimate_planted_latencies_within_twenty_percent() {
    let (mut sim, places) = planted(200, 5);
    let start = median_error(&sim, &places);
    assert!(start > 0.9, "everyone starts at the origin: {start:.3}");
    for secs in [30, 60, 120, 300] {
        let until = Duration::from_secs(secs) - sim.elapsed();
        sim.run_for(until);
        eprintln!(
            "after {secs} s: median relative error {:.3}",
            median_error(&sim, &places)
        );
    }
    let err = median_error(&sim, &places);
    assert!(err < 0.20, "median relative error {err:.3} after 300 s");
    let samples: u64 = (0..sim.len())
        .map(|i| sim.node(i).core.stats().coordinate_samples)
        .sum();
    let rejected: u64 = (0..sim.len())
        .map(|i| sim.node(i).core.stats().coordinate_rejected)
        .sum();
    assert!(samples > 200 * 250, "{samples} samples");
    assert_eq!(rejected, 0);
}

/// A member without coordinates (an older build, or `disable_coordinates`) announces no extension, so
/// nobody sends it a ping that asks for one: an older decoder would drop it and see a failed probe.
#[test]
fn members_that_do_not_announce_coordinates_get_plain_probes() {
    let mut sim = Sim::new(8, NetModel::default());
    let plain = GossipConfig {
        coordinates: false,
        record_patches: false,
        record_news: false,
        short_records: false,
        record_tree: false,
        ..GossipConfig::lan()
    };
    for i in 0..4 {
        let cfg = if i == 3 {
            plain.clone()
        } else {
            GossipConfig::lan()
        };
        sim.add_node(&format!("node-{i}"), cfg, tags());
    }
    for i in 1..4 {
        sim.join(i, 0);
    }
    let (to_plain, extended) = (Rc::new(Cell::new(0u32)), Rc::new(Cell::new(0u32)));
    let (tp, ex) = (to_plain.clone(), extended.clone());
    sim.set_tap(Box::new(move |_, dst, bytes| {
        if let Ok(p) = wire::decode(bytes)
            && let wire::Message::Ping { want_coord, .. } = p.msg
        {
            if dst == 3 {
                tp.set(tp.get() + 1);
                assert!(!want_coord, "a coordinate ping went to the plain member");
            } else if want_coord {
                ex.set(ex.get() + 1);
            }
        }
    }));
    sim.run_for(Duration::from_secs(60));
    assert!(
        to_plain.get() > 10,
        "{} pings to the plain member",
        to_plain.get()
    );
    assert!(extended.get() > 30, "{} coordinate pings", extended.get());
    for i in 0..3 {
        let core = &sim.node(i).core;
        assert_eq!(core.num_live(), 4);
        assert!(core.stats().coordinate_samples > 0);
        assert_eq!(core.stats().probes_failed, 0);
        let local = core.local();
        assert_eq!(
            tags::get(&local.tags, wire::FEATURES_TAG),
            Some(wire::FEATURES.to_string().as_str())
        );
    }
    let old = &sim.node(3).core;
    assert!(old.coordinate().is_none());
    assert_eq!(old.stats().probes_failed, 0);
    assert_eq!(tags::get(&old.local().tags, wire::FEATURES_TAG), None);
    assert_eq!(tags::get(&old.local().tags, "role"), Some("node"));
}

/// A coordinate from a hostile peer (non-finite numbers) in the answer to our own probe is counted
/// and refused, and ours stays sound.
#[test]
fn a_non_finite_coordinate_is_refused() {
    let (mut sim, _) = planted(3, 9);
    // Slow paths leave time to answer a probe before its target does.
    sim.set_link_latency(Box::new(|_, _| Duration::from_millis(50)));
    sim.run_for(Duration::from_secs(20));
    let probe = Rc::new(Cell::new(None));
    let seen = probe.clone();
    sim.set_tap(Box::new(move |src, dst, bytes| {
        if let Ok(p) = wire::decode(bytes)
            && let wire::Message::Ping {
                seq,
                want_coord: true,
                ..
            } = p.msg
            && src == 0
        {
            seen.set(Some((seq, dst)));
        }
    }));
    let found = sim.run_until_cond(Duration::from_millis(1), Duration::from_secs(5), |_| {
        probe.get().is_some()
    });
    assert!(found, "node 0 probes within 5 s");
    let (seq, target) = probe.get().unwrap();
    let good = sim.node(0).core.coordinate().unwrap().clone();
    let mut bad = good.clone();
    bad.vec[0] = f64::NAN;
    let mut b = Vec::new();
    let coord = Some(wire::WireCoord::from_coordinate(&bad));
    let at = wire::encode_header(
        &mut b,
        &wire::Message::Ack {
            seq,
            known: 0,
            coord,
        },
    );
    wire::set_count(&mut b, at, 0);
    let before = sim.node(0).core.stats().clone();
    sim.deliver_raw(0, murmur_gossip::sim::sim_addr(target), &b);
    let after = sim.node(0).core.stats();
    assert_eq!(after.coordinate_rejected, before.coordinate_rejected + 1);
    assert_eq!(after.coordinate_samples, before.coordinate_samples);
    assert_eq!(sim.node(0).core.coordinate(), Some(&good));
}
