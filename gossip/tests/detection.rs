//! Failure detection with ring monitors: how much evidence shortens a suspicion, who probes a suspect,
//! and what a single bad prober (deaf, starved) can and cannot do. Core-level cases drive one core by
//! hand; cluster cases run the simulator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use murmur_gossip::sim::{NetModel, Sim, sim_addr};
use murmur_gossip::wire::{self, Delta, Message};
use murmur_gossip::{Core, Event, GossipConfig, Identity, Roster, Slot, State, View, ring};

const STEP: Duration = Duration::from_millis(50);

/// One core that knows `n` members `m0..m{n-1}` (it is `m0`), all alive, and answers nothing itself.
struct Observer {
    core: Core,
    names: Vec<String>,
    t0: Instant,
    buf: Vec<u8>,
    /// When the core sent gossip, and to whom.
    gossiped: Vec<(Duration, SocketAddr)>,
}

impl Observer {
    fn new(n: usize, cfg: GossipConfig) -> Self {
        let t0 = Instant::now();
        let roster = Roster::new();
        let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        let id = Identity {
            name: names[0].clone(),
            addr: sim_addr(0),
            tags: Vec::new(),
            incarnation: 0,
        };
        let mut core = Core::with_roster(cfg, id, t0, 7, roster.clone()).unwrap();
        let mut view = View::default();
        for (i, name) in names.iter().enumerate().skip(1) {
            let interned = roster.name(name);
            view.insert(Slot {
                ident: roster.ident(&interned, sim_addr(i), &[], 0),
                incarnation: 0,
                state: State::Alive,
                token: 0,
                record: None,
            });
        }
        core.adopt_view(t0, &view);
        Observer {
            core,
            names,
            t0,
            buf: Vec::new(),
            gossiped: Vec::new(),
        }
    }

    fn addr_of(&self, name: &str) -> SocketAddr {
        let i = self.names.iter().position(|n| n == name).unwrap();
        sim_addr(i)
    }

    /// Hands the core a gossip packet in which `from` suspects `subject` at incarnation 0.
    fn suspect(&mut self, at: Duration, subject: &str, from: &str) {
        let delta = Delta::Suspect {
            name: subject,
            incarnation: 0,
            from,
        };
        self.deliver(at, from, &delta);
    }

    /// Hands the core a gossip packet from `from` carrying `delta`.
    fn deliver(&mut self, at: Duration, from: &str, delta: &Delta) {
        let mut b = Vec::new();
        let h = wire::encode_header(&mut b, &Message::Gossip);
        wire::encode_delta(&mut b, delta);
        wire::set_count(&mut b, h, 1);
        let src = self.addr_of(from);
        self.core.handle_packet(self.t0 + at, src, &b);
        self.answer(at);
    }

    /// Answers every ping the core sent as its target would (everyone is reachable from here, so the
    /// observer never suspects anyone itself); returns the targets pinged.
    fn answer(&mut self, at: Duration) -> Vec<String> {
        let mut pinged = Vec::new();
        let mut acks = Vec::new();
        while let Some(t) = self.core.poll_transmit(&mut self.buf) {
            match wire::decode(&self.buf[..t.len]).map(|p| p.msg) {
                Ok(Message::Ping { seq, target, .. }) => {
                    pinged.push(target.to_owned());
                    acks.push((t.dst, seq));
                }
                Ok(Message::Gossip) => self.gossiped.push((at, t.dst)),
                _ => {}
            }
        }
        for (dst, seq) in acks {
            let mut b = Vec::new();
            let h = wire::encode_header(
                &mut b,
                &Message::Ack {
                    seq,
                    known: 0,
                    coord: None,
                },
            );
            wire::set_count(&mut b, h, 0);
            self.core.handle_packet(self.t0 + at, dst, &b);
        }
        pinged
    }

    /// Runs the core's timers in small steps up to `until` (answering its pings); the time at which it
    /// first saw `subject` dead, if it did.
    fn run_until(&mut self, from: Duration, until: Duration, subject: &str) -> Option<Duration> {
        let mut at = from;
        while at <= until {
            self.core.handle_timeout(self.t0 + at);
            self.answer(at);
            if self.state(subject) == State::Dead {
                return Some(at);
            }
            at += STEP;
        }
        None
    }

    fn state(&self, name: &str) -> State {
        self.core.member(name).unwrap().state
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn near(got: Option<Duration>, want: Duration) -> bool {
    got.is_some_and(|g| g >= want && g <= want + STEP * 2)
}

#[test]
fn evidence_shortens_a_suspicion_step_by_step() {
    // 200 members: Lifeguard's floor is 4 x log10(200) = 9.2 s, its start 6 times that; the fast floor
    // is (4 + 1) x 1 s.
    let cfg = GossipConfig::lan();
    let floor = cfg.suspicion_timeout(200);
    let fast = cfg.fast_suspicion_timeout(200);
    assert_eq!(fast, secs(5.0));
    assert!(floor > secs(9.0) && floor < secs(9.3), "{floor:?}");

    // One suspector, however often it repeats itself: far from any floor.
    let mut o = Observer::new(200, cfg.clone());
    for _ in 0..3 {
        o.suspect(secs(0.0), "m50", "m1");
    }
    assert_eq!(o.state("m50"), State::Suspect);
    assert_eq!(o.run_until(STEP, floor + secs(2.0), "m50"), None);

    // Lifeguard's k = 2 confirmations: its floor, as in memberlist.
    let mut o = Observer::new(200, cfg.clone());
    for from in ["m1", "m2", "m3"] {
        o.suspect(secs(0.0), "m50", from);
    }
    assert!(near(o.run_until(STEP, secs(20.0), "m50"), floor));

    // One more: the fast floor.
    let mut o = Observer::new(200, cfg.clone());
    for from in ["m1", "m2", "m3", "m4"] {
        o.suspect(secs(0.0), "m50", from);
    }
    assert!(near(o.run_until(STEP, secs(20.0), "m50"), fast));

    // Evidence that comes after the fast floor has passed declares at once.
    let mut o = Observer::new(200, cfg.clone());
    o.suspect(secs(0.0), "m50", "m1");
    o.suspect(secs(1.0), "m50", "m2");
    o.suspect(secs(1.0), "m50", "m3");
    assert_eq!(o.run_until(secs(1.0), secs(7.0), "m50"), None);
    o.suspect(secs(7.0), "m50", "m4");
    assert_eq!(o.state("m50"), State::Suspect);
    assert!(near(o.run_until(secs(7.0), secs(8.0), "m50"), secs(7.0)));

    // memberlist's rule when ring monitoring is off: confirmations past k change nothing.
    let classic = GossipConfig {
        ring_monitors: false,
        ..cfg
    };
    let mut o = Observer::new(200, classic);
    for from in ["m1", "m2", "m3", "m4", "m5", "m6"] {
        o.suspect(secs(0.0), "m50", from);
    }
    assert!(near(o.run_until(STEP, secs(20.0), "m50"), floor));
}

#[test]
fn an_explicit_suspicion_mult_still_sets_both_floors() {
    // suspicion_mult 6: Lifeguard wants 4 confirmations for 6 x log10(200) = 13.8 s; the fast floor
    // needs a fifth and is 7 s.
    let cfg = GossipConfig {
        suspicion_mult: 6,
        ..GossipConfig::lan()
    };
    assert_eq!(cfg.fast_suspicion_timeout(200), secs(7.0));
    let mut o = Observer::new(200, cfg.clone());
    for from in ["m1", "m2", "m3", "m4", "m5"] {
        o.suspect(secs(0.0), "m50", from);
    }
    assert!(near(
        o.run_until(STEP, secs(20.0), "m50"),
        cfg.suspicion_timeout(200)
    ));
    let mut o = Observer::new(200, cfg);
    for from in ["m1", "m2", "m3", "m4", "m5", "m6"] {
        o.suspect(secs(0.0), "m50", from);
    }
    assert!(near(o.run_until(STEP, secs(20.0), "m50"), secs(7.0)));
}

/// The members after `name` on the ring, nearest first.
fn ring_after(names: &[String], name: &str) -> Vec<String> {
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort_by_key(|n| ring::position(n));
    let at = sorted.iter().position(|n| *n == name).unwrap();
    (1..sorted.len())
        .map(|k| sorted[(at + k) % sorted.len()].clone())
        .collect()
}

#[test]
fn a_monitor_probes_a_suspect_at_its_next_tick_and_carries_the_suspicion() {
    let mut o = Observer::new(50, GossipConfig::lan());
    let after = ring_after(&o.names, "m0");
    // Ring probes alternate with the round's order: over 20 ticks, 10 go to the first successor.
    let mut to_successor = 0;
    for k in 0..20 {
        let at = secs(1.0 + k as f64);
        o.core.handle_timeout(o.t0 + at);
        to_successor += o.answer(at).iter().filter(|t| **t == after[0]).count();
    }
    assert!((10..=12).contains(&to_successor), "{to_successor}");
    assert_eq!(o.core.stats().ring_probes, 10);

    // The third member after us is suspected by someone else: we are one of its four monitors.
    let watched = after[2].clone();
    let someone = after[10].clone();
    o.suspect(secs(21.0), &watched, &someone);
    let mut probe = None;
    for k in 0..3 {
        let at = secs(21.1 + k as f64);
        o.core.handle_timeout(o.t0 + at);
        while let Some(t) = o.core.poll_transmit(&mut o.buf) {
            let p = wire::decode(&o.buf[..t.len]).unwrap();
            if let Message::Ping { target, .. } = p.msg
                && target == watched
            {
                let carried = p.deltas().any(|d| {
                    matches!(d, Delta::Suspect { name, from, .. } if name == watched && from == "m0")
                });
                probe = Some((k, carried));
            }
        }
        if probe.is_some() {
            break;
        }
    }
    assert_eq!(
        probe,
        Some((0, true)),
        "probed at the next tick, with the suspicion"
    );
    assert_eq!(o.core.stats().monitor_probes, 1);

    // A member far from us on the ring is someone else's to watch.
    let far = after[30].clone();
    o.suspect(secs(25.0), &far, &someone);
    let mut pinged = Vec::new();
    for k in 0..3 {
        let at = secs(25.1 + k as f64);
        o.core.handle_timeout(o.t0 + at);
        pinged.extend(o.answer(at));
    }
    assert_eq!(o.core.stats().monitor_probes, 1);
    assert!(!pinged.is_empty() && !pinged.contains(&far), "{pinged:?}");
}

fn cluster(n: usize, seed: u64, cfg: impl Fn(usize) -> GossipConfig) -> Sim {
    let mut sim = Sim::new(seed, NetModel::default());
    for i in 0..n {
        sim.add_node(&format!("node-{i}"), cfg(i), Vec::new());
    }
    let mut full = View::default();
    for i in 0..n {
        full.insert(sim.node(i).core.local_slot().clone());
    }
    for i in 0..n {
        let now = sim.now;
        sim.node_mut(i).core.adopt_view(now, &full);
    }
    sim
}

/// Crashes `victim`; how long until every other running node sees it dead (at most a minute), and how
/// many dead declarations about anyone else were seen on the way.
fn crash_and_time(sim: &mut Sim, victim: usize) -> (Option<Duration>, usize) {
    let observers = (0..sim.len())
        .filter(|&i| i != victim && sim.node(i).up)
        .count();
    let start = sim.now;
    sim.crash(victim);
    let name: Arc<str> = Arc::from(format!("node-{victim}"));
    let mut known = 0;
    let mut wrong = 0;
    let mut all = None;
    for _ in 0..600 {
        let until = sim.now + Duration::from_millis(100);
        sim.run_until(until, |_, _, ev| {
            if let Event::Member(m) = ev
                && m.state == State::Dead
            {
                if m.name == name {
                    known += 1;
                } else {
                    wrong += 1;
                }
            }
        });
        if known >= observers {
            all = Some(sim.now - start);
            break;
        }
    }
    (all, wrong)
}

#[test]
fn a_crash_is_known_everywhere_well_inside_lifeguards_floor() {
    let n = 200;
    let floor = GossipConfig::lan().suspicion_timeout(n);
    let mut with_ring = Vec::new();
    let mut without = Vec::new();
    for seed in 1..=3 {
        let mut sim = cluster(n, seed, |_| GossipConfig::lan());
        sim.run_for(Duration::from_secs(5));
        let (t, wrong) = crash_and_time(&mut sim, 17);
        assert_eq!(wrong, 0);
        with_ring.push(t.expect("every node learns of the crash"));
        let monitors: u64 = (0..n)
            .map(|i| sim.node(i).core.stats().monitor_probes)
            .sum();
        assert!(monitors >= 2, "monitors probed the suspect: {monitors}");

        let mut sim = cluster(n, seed, |_| GossipConfig {
            ring_monitors: false,
            ..GossipConfig::lan()
        });
        sim.run_for(Duration::from_secs(5));
        let (t, wrong) = crash_and_time(&mut sim, 17);
        assert_eq!(wrong, 0);
        without.push(t.expect("every node learns of the crash"));
    }
    // Without the ring nobody can declare before Lifeguard's floor; with it every run is well inside it.
    assert!(without.iter().all(|t| *t > floor), "{without:?}");
    assert!(with_ring.iter().all(|t| *t < floor), "{with_ring:?}");
}

#[test]
fn a_mixed_cluster_of_old_and_new_rules_detects_and_declares_nobody_else() {
    // Half the nodes run memberlist's rules (an older murmur during a rolling upgrade): no wire change,
    // so both halves understand each other, and a crash is still known everywhere.
    let n = 100;
    let mut sim = cluster(n, 4, |i| GossipConfig {
        ring_monitors: i % 2 == 0,
        ..GossipConfig::lan()
    });
    sim.run_for(Duration::from_secs(5));
    for victim in [10, 11] {
        let (t, wrong) = crash_and_time(&mut sim, victim);
        assert!(t.is_some(), "node-{victim} known dead everywhere");
        assert_eq!(wrong, 0);
        // (the second crash leaves the first one's declarations out of the count: it starts afresh)
        sim.run_for(Duration::from_secs(2));
    }
}

/// Runs `d` of faults and returns the healthy nodes (all but `faulty`) that another healthy node
/// declared dead, with the number of declarations about `faulty` itself. What `faulty` concludes in its
/// own view is left out: a node that hears nothing cannot know better.
fn declared_during(sim: &mut Sim, d: Duration, faulty: usize) -> (Vec<Arc<str>>, usize) {
    let me: Arc<str> = Arc::from(format!("node-{faulty}"));
    let mut healthy = Vec::new();
    let mut about_faulty = 0;
    let until = sim.now + d;
    sim.run_until(until, |_, observer, ev| {
        if let Event::Member(m) = ev
            && observer != faulty
            && m.state == State::Dead
        {
            if m.name == me {
                about_faulty += 1;
            } else {
                healthy.push(m.name);
            }
        }
    });
    (healthy, about_faulty)
}

#[test]
fn a_deaf_prober_gets_no_healthy_node_declared() {
    // The semi-detached node of hashicorp/consul #5928: it sends but hears nothing, so every probe it
    // makes fails and it suspects whoever it probes. It is one suspector each time; its suspicions
    // never reach a floor, and its targets refute.
    let n = 60;
    let mut sim = cluster(n, 5, |_| GossipConfig::lan());
    sim.run_for(Duration::from_secs(5));
    sim.node_mut(9).deaf = true;
    let (healthy, about_deaf) = declared_during(&mut sim, Duration::from_secs(120), 9);
    assert!(healthy.is_empty(), "healthy nodes declared: {healthy:?}");
    let deaf = sim.node(9).core.stats();
    assert!(
        deaf.probes_failed >= 10,
        "{} failed probes",
        deaf.probes_failed
    );
    // Its suspicions did set its victims' monitors probing: the new path was exercised, and held.
    let checks: u64 = (0..n)
        .map(|i| sim.node(i).core.stats().monitor_probes)
        .sum();
    assert!(checks > 0);
    // The others cannot reach it, and say so: unreachable is what failed means here.
    assert!(about_deaf > 0);
}

#[test]
fn a_starved_node_gets_no_healthy_node_declared() {
    // Lifeguard's slow prober: every datagram reaches it a second late, so its probes time out and it
    // suspects healthy nodes, while its own answers come too late for others' probes.
    let n = 60;
    let mut sim = cluster(n, 6, |_| GossipConfig::lan());
    sim.run_for(Duration::from_secs(5));
    sim.node_mut(9).lag = Duration::from_secs(1);
    let (healthy, about_starved) = declared_during(&mut sim, Duration::from_secs(120), 9);
    assert!(healthy.is_empty(), "healthy nodes declared: {healthy:?}");
    let st = sim.node(9).core.stats();
    // Others' probes of it time out again and again; the monitors' probes carry the suspicion to it,
    // and it refutes each time, well inside the fast floor: slow is not dead.
    assert!(st.refutes >= 10, "{} refutations", st.refutes);
    assert_eq!(about_starved, 0);
    // Its local health fell (Lifeguard): it probes less often and waits longer for answers, rather
    // than accuse healthy nodes at full rate.
    assert!(sim.node(9).core.health_score() >= 4);
    assert!(st.probes_sent < 60, "{} probes in 120 s", st.probes_sent);
}

#[test]
fn gossip_goes_to_a_dead_member_for_the_window_and_then_stops() {
    // memberlist's gossip_to_the_dead_time: a member declared dead still hears gossip for a while (it
    // learns it was declared and can refute), then no more.
    let cfg = GossipConfig::lan();
    let window = cfg.gossip_to_the_dead_time;
    let mut o = Observer::new(5, cfg);
    let dead = Delta::Dead {
        name: "m4",
        incarnation: 0,
        from: "m1",
    };
    o.deliver(secs(0.0), "m1", &dead);
    assert_eq!(o.state("m4"), State::Dead);
    let m4 = o.addr_of("m4");
    let end = window + secs(10.0);
    let mut at = STEP;
    let mut news = 0;
    while at <= end {
        // Fresh news every gossip interval, so every gossip round has something to send.
        if at.as_millis().is_multiple_of(200) {
            news += 1;
            let alive = Delta::Alive {
                name: "m1",
                incarnation: news,
                addr: o.addr_of("m1"),
                tags: &[],
            };
            o.deliver(at, "m1", &alive);
        }
        o.core.handle_timeout(o.t0 + at);
        o.answer(at);
        at += STEP;
    }
    let to_dead: Vec<Duration> = o
        .gossiped
        .iter()
        .filter(|(_, dst)| *dst == m4)
        .map(|(t, _)| *t)
        .collect();
    assert!(
        to_dead.len() >= 10,
        "gossip went to the dead member {} times",
        to_dead.len()
    );
    let last = *to_dead.last().unwrap();
    assert!(
        last < window && last >= window - secs(1.0),
        "last gossip to the dead member at {last:?}"
    );
    let after = o.gossiped.iter().filter(|(t, _)| *t > window).count();
    assert!(after > 20, "only {after} gossip sends after the window");
}
