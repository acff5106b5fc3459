//! Drives several gossip cores on the simulated network with virtual time: the SWIM/Lifeguard behaviours.

use std::time::Duration;

use murmur_gossip::sim::{NetModel, Sim};
use murmur_gossip::wire::{self, Delta};
use murmur_gossip::{Core, Event, GossipConfig, Identity, State, View, tags};

const STEP: Duration = Duration::from_millis(100);

fn cluster(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::new(seed, NetModel::default());
    for i in 0..n {
        let t = tags::encode(&[("role", "node")]).unwrap();
        sim.add_node(&format!("node-{i}"), GossipConfig::lan(), t);
    }
    for i in 1..n {
        sim.join(i, 0);
    }
    sim
}

/// State of member `name` as seen by node `observer`.
fn seen(sim: &Sim, observer: usize, name: &str) -> Option<State> {
    sim.node(observer).core.member(name).map(|m| m.state)
}

fn all_see(sim: &Sim, observers: &[usize], name: &str, state: State) -> bool {
    observers.iter().all(|&o| seen(sim, o, name) == Some(state))
}

fn converged(sim: &Sim) -> bool {
    (0..sim.len()).all(|i| sim.node(i).core.num_live() == sim.len())
}

/// Crashes node `victim` and runs until every one of `observers` sees it failed (within a minute).
fn crash_and_await_failed(sim: &mut Sim, victim: usize, observers: &[usize]) -> bool {
    sim.crash(victim);
    let name = format!("node-{victim}");
    sim.run_until_cond(STEP, Duration::from_secs(60), |s| {
        all_see(s, observers, &name, State::Dead)
    })
}

#[test]
fn join_through_one_member_spreads_to_all() {
    let mut sim = cluster(5, 1);
    assert!(sim.run_until_cond(STEP, Duration::from_secs(10), converged));
    // Node 4 joined through node 0 only, yet knows node 3 alive with its tags.
    let m = sim.node(4).core.member("node-3").unwrap();
    assert_eq!(m.state, State::Alive);
    assert_eq!(tags::decode(&m.tags).unwrap()["role"], "node");
}

/// Node `i` joins through `seed`; true if the sync reply to that join reached it `within`.
fn join_replied(sim: &mut Sim, i: usize, seed: usize, within: Duration) -> bool {
    let seq = sim.join(i, seed);
    let mut replied = false;
    let until = sim.now + within;
    sim.run_until(until, |_, node, ev| {
        if let Event::SyncReply { seq: s, .. } = ev {
            replied |= node == i && s == seq;
        }
    });
    replied
}

#[test]
fn join_reports_sync_reply() {
    let mut sim = cluster(2, 2);
    assert!(join_replied(&mut sim, 1, 0, Duration::from_secs(1)));
}

#[test]
fn crash_is_suspected_then_declared_failed_everywhere() {
    let mut sim = cluster(6, 3);
    assert!(sim.run_until_cond(STEP, Duration::from_secs(10), converged));
    sim.crash(5);
    let others: Vec<usize> = (0..5).collect();
    let mut suspected = false;
    let mut failed_at = None;
    let end = sim.now + Duration::from_secs(60);
    while sim.now < end && failed_at.is_none() {
        let next = sim.now + STEP;
        sim.run_until(next, |_, _, ev| {
            if let Event::Member(m) = ev {
                suspected |= &*m.name == "node-5" && m.state == State::Suspect;
            }
        });
        if all_see(&sim, &others, "node-5", State::Dead) {
            failed_at = Some(sim.now);
        }
    }
    assert!(suspected, "a crash goes through suspicion first");
    assert!(
        failed_at.is_some(),
        "every live node marks the crashed one failed"
    );
    assert!(others.iter().all(|&o| sim.node(o).core.num_live() == 5));
    // The counters the agent's metrics read: every survivor probed, got answers in about the simulated
    // latency, and suspected the crashed node; suspicions held by several got confirmed.
    for &o in &others {
        let st = sim.node(o).core.stats();
        assert!(st.probes_sent > 0 && st.probe_rtt.count > 0, "{st:?}");
        assert!(st.probe_rtt.count <= st.probes_sent);
        assert!(st.probe_rtt.max_us < 1_000_000, "{:?}", st.probe_rtt);
        assert_eq!(st.probe_rtt.buckets.iter().sum::<u64>(), st.probe_rtt.count);
        assert!(st.suspicions >= 1, "node-{o}: {st:?}");
    }
    let confirmations: u64 = others
        .iter()
        .map(|&o| sim.node(o).core.stats().suspicion_confirmations)
        .sum();
    assert!(confirmations >= 1);
}

#[test]
fn stalled_node_refutes_suspicion_and_stays_alive() {
    let mut sim = cluster(6, 4);
    assert!(sim.run_until_cond(STEP, Duration::from_secs(10), converged));
    let before = sim.node(0).core.member("node-2").unwrap().incarnation;
    // Frozen for 2.5 s: long enough to miss probes, far shorter than the suspicion timeout.
    let until = sim.now + Duration::from_millis(2500);
    sim.node_mut(2).stalled_until = Some(until);
    let mut suspected = false;
    let end = sim.now + Duration::from_secs(20);
    while sim.now < end {
        let next = sim.now + STEP;
        sim.run_until(next, |_, _, ev| {
            if let Event::Member(m) = ev {
                suspected |= &*m.name == "node-2" && m.state == State::Suspect;
                assert!(
                    !(&*m.name == "node-2" && m.state == State::Dead),
                    "refutable suspicion turned into a death"
                );
            }
        });
    }
    assert!(suspected, "the stall was noticed");
    assert!(sim.node(2).core.stats().refutes >= 1);
    for o in [0, 1, 3, 4, 5] {
        let m = sim.node(o).core.member("node-2").unwrap();
        assert_eq!(m.state, State::Alive);
        assert!(m.incarnation > before, "refutation raises the incarnation");
    }
}

#[test]
fn graceful_leave_is_seen_as_left() {
    let mut sim = cluster(4, 5);
    assert!(sim.run_until_cond(STEP, Duration::from_secs(10), converged));
    sim.leave(3);
    assert!(sim.run_until_cond(STEP, Duration::from_secs(5), |s| {
        s.node(3).core.leave_propagated()
    }));
    assert!(
        sim.run_until_cond(STEP, Duration::from_secs(5), |s| all_see(
            s,
            &[0, 1, 2],
            "node-3",
            State::Left
        ))
    );
    // Left is final: nobody later turns it into failed.
    sim.crash(3);
    sim.run_for(Duration::from_secs(40));
    assert!(all_see(&sim, &[0, 1, 2], "node-3", State::Left));
}

#[test]
fn restarted_node_rejoins_alive_with_higher_incarnation() {
    let mut sim = cluster(4, 6);
    assert!(sim.run_until_cond(STEP, Duration::from_secs(10), converged));
    assert!(crash_and_await_failed(&mut sim, 2, &[0, 1, 3]));
    let dead_inc = sim.node(0).core.member("node-2").unwrap().incarnation;
    sim.restart_node(2, GossipConfig::lan(), Vec::new());
    sim.join(2, 0);
    assert!(
        sim.run_until_cond(STEP, Duration::from_secs(10), |s| all_see(
            s,
            &[0, 1, 3],
            "node-2",
            State::Alive
        ))
    );
    assert!(sim.node(1).core.member("node-2").unwrap().incarnation > dead_inc);
    assert!(converged(&sim));
}

/// A restart with a wiped state and no one to join but itself (its own address first in its join
/// list): the others never noticed it was gone, so they keep probing it, and it answers. Their pings
/// say they know more members than it does; that must bring it back long before the periodic
/// exchange would, or the others keep its old tags (for a server, its old raft ID) for minutes.
#[test]
fn a_restarted_node_that_joined_only_itself_catches_up_with_those_who_probe_it() {
    let mut sim = Sim::new(17, NetModel::default());
    let cfg = GossipConfig {
        push_pull_interval: Duration::from_secs(600),
        ..GossipConfig::lan()
    };
    let old = tags::encode(&[("id", "old")]).unwrap();
    for i in 0..4 {
        sim.add_node(&format!("node-{i}"), cfg.clone(), old.clone());
    }
    for i in 1..4 {
        sim.join(i, 0);
    }
    assert!(sim.run_until_cond(STEP, Duration::from_secs(10), converged));
    // Long enough for every join's news to have stopped travelling: nothing rides the probes now.
    sim.run_for(Duration::from_secs(60));
    let new = tags::encode(&[("id", "new")]).unwrap();
    sim.restart_node(2, cfg, new.clone());
    assert_eq!(sim.node(2).core.num_live(), 1);
    let caught_up = |s: &Sim| {
        s.node(2).core.num_live() == 4
            && [0, 1, 3].iter().all(|&o| {
                tags::get(&s.node(o).core.member("node-2").unwrap().tags, "id") == Some("new")
            })
    };
    assert!(
        sim.run_until_cond(STEP, Duration::from_secs(30), caught_up),
        "still apart after 30 s: node-2 knows {} members",
        sim.node(2).core.num_live()
    );
    assert!(sim.node(2).core.stats().catch_up_syncs >= 1);
}

#[test]
fn force_leave_moves_failed_node_to_left() {
    let mut sim = cluster(4, 7);
    assert!(sim.run_until_cond(STEP, Duration::from_secs(10), converged));
    assert!(crash_and_await_failed(&mut sim, 1, &[0, 2, 3]));
    let now = sim.now;
    sim.node_mut(0).core.force_leave(now, "node-1").unwrap();
    sim.touch(0);
    assert!(
        sim.run_until_cond(STEP, Duration::from_secs(5), |s| all_see(
            s,
            &[0, 2, 3],
            "node-1",
            State::Left
        ))
    );
    assert!(sim.node_mut(0).core.force_leave(now, "nope").is_err());
}

#[test]
fn force_leave_of_live_node_is_refuted() {
    let mut sim = cluster(3, 8);
    assert!(sim.run_until_cond(STEP, Duration::from_secs(10), converged));
    let now = sim.now;
    sim.node_mut(0).core.force_leave(now, "node-2").unwrap();
    sim.touch(0);
    assert!(
        sim.run_until_cond(STEP, Duration::from_secs(10), |s| all_see(
            s,
            &[0, 1],
            "node-2",
            State::Alive
        ))
    );
    assert!(sim.node(2).core.stats().refutes >= 1);
}

#[test]
fn isolated_node_lowers_its_own_health() {
    let mut sim = cluster(5, 9);
    assert!(sim.run_until_cond(STEP, Duration::from_secs(10), converged));
    assert_eq!(sim.node(4).core.health_score(), 0);
    sim.node_mut(4).group = 1;
    assert!(sim.run_until_cond(
        STEP,
        Duration::from_secs(10),
        |s| s.node(4).core.health_score() > 0
    ));
}

#[test]
fn partition_heals_by_reconnecting_to_failed_members() {
    let mut sim = cluster(6, 10);
    assert!(sim.run_until_cond(STEP, Duration::from_secs(10), converged));
    for i in 3..6 {
        sim.node_mut(i).group = 1;
    }
    assert!(
        sim.run_until_cond(STEP, Duration::from_secs(90), |s| all_see(
            s,
            &[0, 1, 2],
            "node-4",
            State::Dead
        ) && all_see(
            s,
            &[3, 4, 5],
            "node-0",
            State::Dead
        ))
    );
    for i in 3..6 {
        sim.node_mut(i).group = 0;
    }
    assert!(sim.run_until_cond(STEP, Duration::from_secs(120), converged));
    let reconnects: u64 = (0..6).map(|i| sim.node(i).core.stats().reconnects).sum();
    assert!(reconnects > 0, "the halves met through reconnects");
}

#[test]
fn reconnecting_to_a_crashed_member_costs_a_ping_not_an_exchange() {
    let mut sim = cluster(4, 12);
    assert!(sim.run_until_cond(STEP, Duration::from_secs(10), converged));
    assert!(crash_and_await_failed(&mut sim, 3, &[0, 1, 2]));
    let before: Vec<_> = (0..3).map(|i| sim.node(i).core.stats().clone()).collect();
    sim.run_for(GossipConfig::lan().reconnect_interval * 4);
    for (i, b) in before.iter().enumerate() {
        let st = sim.node(i).core.stats();
        // The only failed member is node-3: every interval pings it, and it never answers.
        assert!(
            st.reconnect_pings >= b.reconnect_pings + 3,
            "node {i}: {st:?}"
        );
        assert_eq!(st.reconnects, 0, "node {i}");
    }
}

#[test]
fn two_hundred_nodes_converge_through_three_seeds() {
    let mut sim = Sim::new(11, NetModel::default());
    let n = 200;
    for i in 0..n {
        sim.add_node(&format!("n{i}"), GossipConfig::lan(), Vec::new());
    }
    for i in 1..3 {
        sim.join(i, 0);
    }
    sim.run_for(Duration::from_secs(2));
    for i in 3..n {
        sim.join(i, i % 3);
    }
    assert!(sim.run_until_cond(STEP, Duration::from_secs(60), converged));
    let deaths: u64 = (0..n)
        .map(|i| sim.node(i).core.stats().declared_failed)
        .sum();
    assert_eq!(deaths, 0, "no false positives in a fault-free run");
}

#[test]
fn malformed_and_foreign_packets_are_counted_not_fatal() {
    let mut sim = cluster(2, 12);
    let now = sim.now;
    let from = murmur_gossip::sim::sim_addr(1);
    let core = &mut sim.node_mut(0).core;
    core.handle_packet(now, from, &[]);
    core.handle_packet(now, from, &[3, 200, 0, 0]);
    core.handle_packet(now, from, &[7, 1, 0, 0, 0, 1]);
    core.handle_packet(now, from, &vec![1u8; 20_000]);
    let s = core.stats();
    assert_eq!(s.dropped_malformed, 2);
    assert_eq!(s.dropped_version, 1);
    assert_eq!(s.dropped_oversize, 1);
}

#[test]
fn join_retries_then_times_out_against_a_silent_address() {
    let mut sim = cluster(3, 13);
    sim.crash(2);
    let seq = sim.join(1, 2);
    let mut timed_out = false;
    let mut replied = false;
    let until = sim.now + Duration::from_secs(10);
    sim.run_until(until, |_, i, ev| match ev {
        Event::JoinTimeout { seq: s, .. } if i == 1 && s == seq => timed_out = true,
        Event::SyncReply { seq: s, .. } if i == 1 && s == seq => replied = true,
        _ => {}
    });
    assert!(timed_out && !replied);
    // Five attempts went out before giving up.
    assert!(sim.node(1).core.stats().packets_out >= 5);
}

#[test]
fn join_survives_heavy_loss_by_retrying() {
    // At 50% loss one attempt (request and reply) gets through a quarter of the time; five attempts
    // three times in four. Over 20 seeded runs, retries are what lifts the count above 10.
    let joined = (0..20u64)
        .filter(|&seed| {
            let mut sim = Sim::new(
                seed,
                NetModel {
                    loss: 0.5,
                    ..NetModel::default()
                },
            );
            sim.add_node("a", GossipConfig::lan(), Vec::new());
            sim.add_node("b", GossipConfig::lan(), Vec::new());
            join_replied(&mut sim, 1, 0, Duration::from_secs(6))
        })
        .count();
    assert!(joined >= 10, "{joined} of 20 joins got through at 50% loss");
}

#[test]
fn cores_started_from_one_shared_view_share_it_and_still_detect_a_crash() {
    let n = 200;
    let mut sim = Sim::new(11, NetModel::default());
    for i in 0..n {
        sim.add_node(&format!("node-{i}"), GossipConfig::lan(), Vec::new());
    }
    let mut full = View::default();
    for i in 0..n {
        full.insert(sim.node(i).core.local_slot().clone());
    }
    for i in 0..n {
        let now = sim.now;
        sim.node_mut(i).core.adopt_view(now, &full);
    }
    assert!(converged(&sim), "every node knows all {n} at once");
    // Nothing was copied: each core still points at the shared chunks.
    assert!((0..n).all(|i| sim.node(i).core.view().unshared_chunks() == 0));
    let others: Vec<usize> = (0..n).filter(|&i| i != 7).collect();
    assert!(crash_and_await_failed(&mut sim, 7, &others));
    // Changing node-7 and noting the suspector copied at most a chunk or two per core.
    let copied = others
        .iter()
        .map(|&i| sim.node(i).core.view().unshared_chunks())
        .max()
        .unwrap();
    assert!(copied <= 2, "a core copied {copied} chunks");
    assert_eq!(
        full.get(sim.node(7).core.local_slot().ident.id())
            .unwrap()
            .state,
        State::Alive
    );
}

#[test]
fn reaped_members_release_their_roster_names() {
    let mut cfg = GossipConfig::lan();
    cfg.reconnect_timeout = Duration::from_secs(5);
    let t0 = std::time::Instant::now();
    let me = Identity {
        name: "me".into(),
        addr: "127.0.0.1:7000".parse().unwrap(),
        tags: Vec::new(),
        incarnation: 0,
    };
    let mut core = Core::new(cfg, me, t0, 1).unwrap();
    let from = "127.0.0.2:7000".parse().unwrap();
    let gossip = |d: Delta| {
        let mut buf = Vec::new();
        let at = wire::encode_header(&mut buf, &wire::Message::Gossip);
        wire::encode_delta(&mut buf, &d);
        wire::set_count(&mut buf, at, 1);
        buf
    };
    let alive = gossip(Delta::Alive {
        name: "ghost",
        incarnation: 1,
        addr: from,
        tags: &[],
    });
    core.handle_packet(t0, from, &alive);
    assert!(core.roster().find("ghost").is_some());
    let dead = gossip(Delta::Dead {
        name: "ghost",
        incarnation: 1,
        from: "someone",
    });
    core.handle_packet(t0, from, &dead);
    assert_eq!(core.member("ghost").map(|m| m.state), Some(State::Dead));
    let mut now = t0;
    while core.member("ghost").is_some() && now < t0 + Duration::from_secs(30) {
        now = core.poll_timeout().unwrap().max(now);
        core.handle_timeout(now);
    }
    assert!(
        core.member("ghost").is_none(),
        "reaped after reconnect_timeout"
    );
    assert!(now >= t0 + Duration::from_secs(5));
    assert!(
        core.roster().find("ghost").is_none(),
        "its name and id were released"
    );
    assert_eq!(core.roster().len(), 1);
}

#[test]
fn a_member_that_crashes_soon_after_joining_is_detected_promptly() {
    // 320 = 5 x 64: the newcomer's id opens a view chunk no probe round in progress covers.
    let n = 320;
    let mut sim = cluster(n, 13);
    assert!(sim.run_until_cond(STEP, Duration::from_secs(60), converged));
    // Let everyone be well into a probe round (a round lasts about N seconds).
    let until = sim.now + Duration::from_secs(40);
    sim.run_until(until, |_, _, _| {});
    let x = sim.add_node("young", GossipConfig::lan(), Vec::new());
    sim.join(x, 0);
    let others: Vec<usize> = (0..n).collect();
    assert!(
        sim.run_until_cond(STEP, Duration::from_secs(10), |s| all_see(
            s,
            &others,
            "young",
            State::Alive
        ))
    );
    sim.crash(x);
    let t0 = sim.now;
    assert!(
        sim.run_until_cond(STEP, Duration::from_secs(120), |s| all_see(
            s,
            &others,
            "young",
            State::Dead
        ))
    );
    // Suspicion alone takes 4 x log10(321) = 10 s; probers must find the newcomer within the round they
    // are in, not only after their next round starts (tens of seconds at this size).
    let took = sim.now - t0;
    assert!(took < Duration::from_secs(25), "took {took:?}");
}

/// Cores wired by hand: a datagram arrives only if it is a full-state exchange, so what a core learns
/// after its join comes from those exchanges alone.
struct SyncOnly {
    cores: Vec<Core>,
}

impl SyncOnly {
    fn addr(i: usize) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16))
    }

    fn new(names: &[&str], cfg: &GossipConfig, t0: std::time::Instant) -> Self {
        let cores = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let me = Identity {
                    name: (*name).into(),
                    addr: Self::addr(i),
                    tags: Vec::new(),
                    incarnation: 0,
                };
                Core::new(cfg.clone(), me, t0, i as u64 + 1).unwrap()
            })
            .collect();
        SyncOnly { cores }
    }

    /// Delivers queued datagrams until none is left (bounded); returns how many sync requests went out.
    fn pump(&mut self, now: std::time::Instant) -> usize {
        let mut buf = Vec::new();
        let mut requests = 0;
        for _ in 0..1000 {
            let mut moved = false;
            for i in 0..self.cores.len() {
                while let Some(t) = self.cores[i].poll_transmit(&mut buf) {
                    moved = true;
                    let bytes = &buf[..t.len];
                    let Ok(p) = wire::decode(bytes) else { continue };
                    let wire::Message::Sync { want_reply, .. } = p.msg else {
                        continue;
                    };
                    requests += usize::from(want_reply);
                    let dst = (t.dst.port() - 7000) as usize;
                    self.cores[dst].handle_packet(now, Self::addr(i), bytes);
                }
            }
            if !moved {
                return requests;
            }
        }
        panic!("datagrams kept flowing");
    }
}

#[test]
fn post_join_exchange_repeats_only_while_it_teaches() {
    // No probes and no periodic exchange within the test window: only the post-join ones run.
    let t0 = std::time::Instant::now();
    let mut w = SyncOnly::new(&["seed", "joiner", "x", "y"], &quiet_config(), t0);
    let (seed, joiner) = (0, 1);
    w.cores[joiner].join(t0, SyncOnly::addr(seed));
    assert_eq!(w.pump(t0), 1, "the join request");
    assert_eq!(w.cores[joiner].num_live(), 2);
    // x and y join through the seed after the joiner did; the joiner never hears of them by gossip.
    for i in [2, 3] {
        w.cores[i].join(t0, SyncOnly::addr(seed));
        w.pump(t0);
    }
    let requests = run_alone(&mut w, joiner, t0);
    let st = w.cores[joiner].stats();
    // The first exchange (with the seed, the only member it knew) taught x and y; the second taught
    // nothing, so there was no third.
    assert_eq!(w.cores[joiner].num_live(), 4);
    assert_eq!(st.learned_by_sync, 2);
    assert_eq!(st.post_join_syncs, 2);
    assert_eq!(requests, 2);
}

#[test]
fn post_join_exchanges_are_bounded() {
    let t0 = std::time::Instant::now();
    let names: Vec<String> = (0..12).map(|i| format!("n{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut w = SyncOnly::new(&names, &quiet_config(), t0);
    w.cores[1].join(t0, SyncOnly::addr(0));
    w.pump(t0);
    // Before each exchange of the joiner a newcomer joins every other node, so every exchange teaches
    // the joiner something new and only the bound stops it.
    let mut next = 2;
    let mut now = t0;
    let mut requests = 0;
    while now < t0 + Duration::from_secs(60) {
        now = w.cores[1].poll_timeout().unwrap().max(now);
        if w.cores[1].stats().post_join_syncs == (next - 2) as u64 && next < names.len() {
            for j in (0..next).filter(|&j| j != 1) {
                w.cores[next].join(now, SyncOnly::addr(j));
            }
            w.pump(now);
            next += 1;
        }
        w.cores[1].handle_timeout(now);
        requests += w.pump(now);
    }
    assert_eq!(w.cores[1].stats().post_join_syncs, 4);
    assert_eq!(requests, 4);
    assert_eq!(w.cores[1].stats().learned_by_sync, 4);
    assert_eq!(
        w.cores[1].num_live(),
        6,
        "the seed, itself and one newcomer per exchange"
    );
}

/// Runs only core `i`'s timers for a minute of virtual time, delivering exchanges; returns the
/// requests sent.
fn run_alone(w: &mut SyncOnly, i: usize, t0: std::time::Instant) -> usize {
    let mut now = t0;
    let mut requests = 0;
    while now < t0 + Duration::from_secs(60) {
        now = w.cores[i].poll_timeout().unwrap().max(now);
        w.cores[i].handle_timeout(now);
        requests += w.pump(now);
    }
    requests
}

fn quiet_config() -> GossipConfig {
    let mut cfg = GossipConfig::lan();
    cfg.probe_interval = Duration::from_secs(3600);
    cfg.push_pull_interval = Duration::from_secs(3600);
    cfg
}

#[test]
fn a_seed_exchanges_state_after_nodes_join_through_it() {
    let t0 = std::time::Instant::now();
    let mut w = SyncOnly::new(&["seed", "a", "b"], &quiet_config(), t0);
    w.cores[1].join(t0, SyncOnly::addr(0));
    w.pump(t0);
    // b joins through a, so the seed hears of b only if it exchanges state itself.
    w.cores[2].join(t0, SyncOnly::addr(1));
    w.pump(t0);
    assert_eq!(w.cores[0].num_live(), 2);
    assert_eq!(run_alone(&mut w, 0, t0), 2);
    let st = w.cores[0].stats();
    assert_eq!(
        st.post_join_syncs, 2,
        "the first taught b, the second nothing"
    );
    assert_eq!(st.learned_by_sync, 1);
    assert_eq!(w.cores[0].num_live(), 3);
}

#[test]
fn joins_through_a_seed_share_one_chain_of_exchanges() {
    let t0 = std::time::Instant::now();
    let mut w = SyncOnly::new(&["seed", "a", "b", "c"], &quiet_config(), t0);
    for i in 1..4 {
        w.cores[i].join(t0, SyncOnly::addr(0));
        w.pump(t0);
    }
    // Three joins, one chain; its first exchange teaches nothing, so it is also the last.
    assert_eq!(run_alone(&mut w, 0, t0), 1);
    assert_eq!(w.cores[0].stats().post_join_syncs, 1);
}

#[test]
fn a_stream_sender_is_news_whatever_address_the_stream_came_from() {
    let t0 = std::time::Instant::now();
    let mut w = SyncOnly::new(&["me"], &quiet_config(), t0);
    let peer: std::net::SocketAddr = "127.0.0.9:8301".parse().unwrap();
    let other: std::net::SocketAddr = "127.0.0.10:8301".parse().unwrap();
    let mut state = Vec::new();
    wire::encode_state(
        &mut state,
        [
            Delta::Alive {
                name: "peer",
                incarnation: 1,
                addr: peer,
                tags: &[],
            },
            Delta::Alive {
                name: "other",
                incarnation: 1,
                addr: other,
                tags: &[],
            },
        ]
        .into_iter(),
    );
    // The stream arrives from another port (an advertise address, NAT): the first record is still the
    // sender, so it is news; "other" is old news learned from it.
    let from: std::net::SocketAddr = "127.0.0.9:40000".parse().unwrap();
    let merged = w.cores[0].merge_state(t0, from, &state).unwrap();
    assert_eq!(merged.members, 2);
    assert!(!merged.short_records, "no record, no short form");
    assert_eq!(w.cores[0].num_live(), 3);
    assert_eq!(w.cores[0].stats().learned_by_sync, 1);
}

/// A bare ping to `target` from a node that says it knows `known` members.
fn ping_saying(target: &str, known: u32) -> Vec<u8> {
    let mut b = Vec::new();
    let at = wire::encode_header(
        &mut b,
        &wire::Message::Ping {
            seq: 1,
            target,
            known,
            want_coord: false,
            takes_patches: false,
            news: None,
        },
    );
    wire::set_count(&mut b, at, 0);
    b
}

#[test]
fn a_node_peers_keep_outnumbering_catches_up_by_exchange() {
    let t0 = std::time::Instant::now();
    let mut w = SyncOnly::new(&["a", "b", "x", "m"], &quiet_config(), t0);
    let (a, b, x, m) = (0, 1, 2, 3);
    for i in [x, b, m] {
        w.cores[i].join(t0, SyncOnly::addr(a));
        w.pump(t0);
    }
    // x joined before b and m and runs no timers: a knows all four, x only a and itself.
    assert_eq!(w.cores[a].num_live(), 4);
    let before = w.cores[x].num_live();
    assert_eq!(before, 2);
    let from_a = |w: &mut SyncOnly, at, known| {
        w.cores[x].handle_packet(at, SyncOnly::addr(a), &ping_saying("x", known));
        w.pump(at)
    };
    let s = Duration::from_secs;
    assert_eq!(from_a(&mut w, t0, 4), 0, "being behind once is no reason");
    // b is level with x: what x lacks may still be spreading, so the wait starts over.
    w.cores[x].handle_packet(
        t0 + s(10),
        SyncOnly::addr(b),
        &ping_saying("x", before as u32),
    );
    assert_eq!(from_a(&mut w, t0 + s(11), 4), 0);
    assert_eq!(w.cores[x].stats().catch_up_syncs, 0);
    w.cores[x].handle_untrusted_packet(t0 + s(21), SyncOnly::addr(a), &ping_saying("x", 4));
    assert_eq!(
        w.pump(t0 + s(21)),
        0,
        "an unauthenticated count is not acted on"
    );
    assert_eq!(
        from_a(&mut w, t0 + s(21), 4),
        1,
        "still behind ten seconds on"
    );
    assert_eq!(w.cores[x].stats().catch_up_syncs, 1);
    assert_eq!(w.cores[x].num_live(), 4);
    // Level now: later pings that say the same change nothing.
    assert_eq!(from_a(&mut w, t0 + s(40), 4), 0);
}

/// A node alone (a fresh agent, or one just restarted) catches up with members whose pings name it, but
/// not on pings meant for whoever held its address before it: another cluster's member there must not
/// draw it into that cluster.
#[test]
fn a_lone_node_catches_up_only_on_pings_that_name_it() {
    let t0 = std::time::Instant::now();
    let mut w = SyncOnly::new(&["a", "b", "x"], &quiet_config(), t0);
    let (a, x) = (0, 2);
    w.cores[1].join(t0, SyncOnly::addr(a));
    w.pump(t0);
    assert_eq!(w.cores[x].num_live(), 1);
    let s = Duration::from_secs;
    for at in [0, 10, 20, 40] {
        w.cores[x].handle_packet(t0 + s(at), SyncOnly::addr(a), &ping_saying("old-x", 2));
        assert_eq!(w.pump(t0 + s(at)), 0, "a ping for another name at {at} s");
    }
    assert_eq!(w.cores[x].stats().catch_up_syncs, 0);
    assert_eq!(w.cores[x].num_live(), 1);
    for at in [50, 60] {
        w.cores[x].handle_packet(t0 + s(at), SyncOnly::addr(a), &ping_saying("x", 2));
        w.pump(t0 + s(at));
    }
    assert_eq!(w.cores[x].stats().catch_up_syncs, 1);
    assert_eq!(w.cores[x].num_live(), 3);
}

/// A ping to `target` carrying one forged delta.
fn forged(target: &str, d: &Delta<'_>) -> Vec<u8> {
    let mut b = Vec::new();
    let at = wire::encode_header(
        &mut b,
        &wire::Message::Ping {
            seq: 9,
            target,
            known: 0,
            want_coord: false,
            takes_patches: false,
            news: None,
        },
    );
    wire::encode_delta(&mut b, d);
    wire::set_count(&mut b, at, 1);
    b
}

/// Sends `d` to every node as if node 0 had gossiped it.
fn forge_to_all(sim: &mut Sim, d: &Delta<'_>) {
    for i in 0..sim.len() {
        let bytes = forged(&format!("node-{i}"), d);
        sim.deliver_raw(i, murmur_gossip::sim::sim_addr(0), &bytes);
    }
}

#[test]
fn a_forged_death_at_the_top_incarnation_changes_nothing() {
    let mut sim = cluster(4, 21);
    assert!(sim.run_until_cond(STEP, Duration::from_secs(10), converged));
    let victim = "node-3";
    let known = sim.node(0).core.member(victim).unwrap().incarnation;
    // The top of the range is older than any small incarnation in serial order; two steps of the jump
    // bound ahead is newer but too far to come from the member itself.
    let far = known.wrapping_add(2 * murmur_gossip::incarnation::MAX_AHEAD);
    let mut claims = Vec::new();
    for inc in [u32::MAX, far] {
        claims.extend([
            Delta::Dead {
                name: victim,
                incarnation: inc,
                from: "node-0",
            },
            Delta::Suspect {
                name: victim,
                incarnation: inc,
                from: "node-0",
            },
            Delta::Left {
                name: victim,
                incarnation: inc,
            },
        ]);
    }
    for d in &claims {
        forge_to_all(&mut sim, d);
    }
    // Past the longest suspicion timeout: nobody saw the victim anything but alive.
    let mut changed = Vec::new();
    let until = sim.now + Duration::from_secs(60);
    sim.run_until(until, |_, _, e| {
        if let Event::Member(m) = e
            && &*m.name == victim
        {
            changed.push(m.state);
        }
    });
    assert!(
        changed.iter().all(|s| *s == State::Alive),
        "victim changed state: {changed:?}"
    );
    assert!(all_see(&sim, &[0, 1, 2], victim, State::Alive));
    let implausible: u64 = (0..4)
        .map(|i| sim.node(i).core.stats().dropped_implausible)
        .sum();
    assert_eq!(implausible, 12, "every far claim dropped by every node");
}

#[test]
fn forged_claims_across_the_incarnation_wrap_are_always_refuted() {
    let mut sim = cluster(4, 22);
    assert!(sim.run_until_cond(STEP, Duration::from_secs(10), converged));
    let victim = "node-3";
    let inc_of = |sim: &Sim| sim.node(0).core.member(victim).unwrap().incarnation;
    // Each forged `left` sits as far ahead as a claim may; 4100 of them carry the victim's incarnation
    // around the whole u32 range.
    let rounds = (u32::MAX / murmur_gossip::incarnation::MAX_AHEAD) as usize + 4;
    let mut wrapped = false;
    for round in 0..rounds {
        let before = inc_of(&sim);
        let claim = before.wrapping_add(murmur_gossip::incarnation::MAX_AHEAD);
        forge_to_all(
            &mut sim,
            &Delta::Left {
                name: victim,
                incarnation: claim,
            },
        );
        assert_eq!(seen(&sim, 0, victim), Some(State::Left), "round {round}");
        assert!(
            sim.run_until_cond(STEP, Duration::from_secs(10), |s| all_see(
                s,
                &[0, 1, 2],
                victim,
                State::Alive
            )),
            "round {round}: the victim's refutation did not win"
        );
        wrapped |= inc_of(&sim) < before;
    }
    assert!(wrapped, "the incarnation went past u32::MAX");
    sim.run_for(Duration::from_secs(60));
    assert!(all_see(&sim, &[0, 1, 2], victim, State::Alive));
    assert!(sim.node(3).core.stats().refutes >= rounds as u64);
}
