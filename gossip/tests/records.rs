//! Member records (the catalog's carrier) on the simulated network: how a record, a change to it, a large
//! one, a failed or left owner and a restarted owner are seen by every node.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use murmur_gossip::sim::{NetModel, Sim, sim_addr};
use murmur_gossip::wire::{self, Delta, Message, RecordBody};
use murmur_gossip::{GossipConfig, State};

const STEP: Duration = Duration::from_millis(100);

fn cluster(n: usize, seed: u64, net: NetModel) -> Sim {
    let mut sim = Sim::new(seed, net);
    for i in 0..n {
        sim.add_node(&format!("node-{i}"), GossipConfig::lan(), Vec::new());
    }
    for i in 1..n {
        sim.join(i, 0);
    }
    let converged = |s: &Sim| (0..s.len()).all(|i| s.node(i).core.num_live() == s.len());
    assert!(sim.run_until_cond(STEP, Duration::from_secs(30), converged));
    sim
}

fn publish(sim: &mut Sim, i: usize, body: &[u8]) -> u32 {
    let v = sim.node_mut(i).core.set_record(body.to_vec()).unwrap();
    sim.touch(i);
    v
}

/// Nodes other than `owner` (and up) that hold exactly `body` at `version` for `owner`.
fn holders(sim: &Sim, owner: usize, version: u32, body: &[u8]) -> usize {
    let name = format!("node-{owner}");
    (0..sim.len())
        .filter(|&i| i != owner && sim.node(i).up)
        .filter(|&i| {
            sim.node(i)
                .core
                .record(&name)
                .is_some_and(|r| r.version == version && *r.body == *body)
        })
        .count()
}

fn everyone_holds(
    sim: &mut Sim,
    owner: usize,
    version: u32,
    body: &[u8],
    within: Duration,
) -> bool {
    let others = (0..sim.len())
        .filter(|&i| i != owner && sim.node(i).up)
        .count();
    sim.run_until_cond(STEP, within, |s| holders(s, owner, version, body) == others)
}

#[test]
fn a_record_and_each_change_to_it_reach_every_node() {
    let mut sim = cluster(30, 1, NetModel::default());
    let v1 = publish(&mut sim, 3, b"web:80");
    assert_eq!(v1, 1);
    assert!(everyone_holds(
        &mut sim,
        3,
        v1,
        b"web:80",
        Duration::from_secs(5)
    ));
    let v2 = publish(&mut sim, 3, b"web:80,db:5432");
    assert_eq!(v2, 2);
    assert!(everyone_holds(
        &mut sim,
        3,
        v2,
        b"web:80,db:5432",
        Duration::from_secs(5)
    ));
    // Small records need no stream. They go whole on a holder's first sends, so most nodes get the
    // content with the news; the rest pull it by datagram, once.
    let stat = |f: fn(&murmur_gossip::Stats) -> u64| -> u64 {
        (0..sim.len()).map(|i| f(sim.node(i).core.stats())).sum()
    };
    assert_eq!(stat(|s| s.record_fetches), 0);
    let pulls = stat(|s| s.record_pulls);
    assert!(pulls < 2 * 29, "{pulls} pulls for 2 versions x 29 nodes");
    assert_eq!(stat(|s| s.pulls_answered), pulls);
}

#[test]
fn a_record_too_large_for_a_datagram_spreads_by_fetching_from_whoever_told() {
    let mut sim = cluster(30, 2, NetModel::default());
    let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let v = publish(&mut sim, 5, &big);
    assert!(everyone_holds(
        &mut sim,
        5,
        v,
        &big,
        Duration::from_secs(10)
    ));
    let fetches: u64 = (0..sim.len())
        .map(|i| sim.node(i).core.stats().record_fetches)
        .sum();
    // One fetch per node, give or take a retry: the content is not pulled again and again.
    assert!((29..=40).contains(&fetches), "{fetches} fetches");
}

#[test]
fn a_joiner_learns_every_record_in_its_first_exchange() {
    let mut sim = cluster(10, 3, NetModel::default());
    for i in 0..10 {
        publish(&mut sim, i, format!("svc-{i}").as_bytes());
    }
    sim.run_for(Duration::from_secs(5));
    let j = sim.add_node("node-10", GossipConfig::lan(), Vec::new());
    sim.join(j, 4);
    // Within a couple of round trips, long before any piggybacked repeat could have taught it.
    sim.run_for(Duration::from_millis(50));
    for i in 0..10 {
        let r = sim
            .node(j)
            .core
            .record(&format!("node-{i}"))
            .expect("record");
        assert_eq!(*r.body, *format!("svc-{i}").as_bytes());
    }
}

#[test]
fn a_failed_member_keeps_its_record_and_a_left_one_loses_it() {
    let mut sim = cluster(8, 4, NetModel::default());
    publish(&mut sim, 6, b"six");
    publish(&mut sim, 7, b"seven");
    sim.run_for(Duration::from_secs(5));
    sim.crash(6);
    sim.leave(7);
    let observers: Vec<usize> = (0..6).collect();
    let settled = sim.run_until_cond(STEP, Duration::from_secs(60), |s| {
        observers.iter().all(|&o| {
            let c = &s.node(o).core;
            c.member("node-6").map(|m| m.state) == Some(State::Dead)
                && c.member("node-7").map(|m| m.state) == Some(State::Left)
        })
    });
    assert!(settled);
    for &o in &observers {
        let c = &sim.node(o).core;
        assert_eq!(*c.record("node-6").expect("kept").body, *b"six");
        assert!(c.record("node-7").is_none());
    }
}

#[test]
fn a_restarted_node_publishes_above_the_version_the_cluster_remembers() {
    let mut sim = cluster(6, 5, NetModel::default());
    for k in 0..5 {
        publish(&mut sim, 2, format!("old-{k}").as_bytes());
    }
    assert!(everyone_holds(
        &mut sim,
        2,
        5,
        b"old-4",
        Duration::from_secs(5)
    ));
    sim.crash(2);
    sim.run_for(Duration::from_secs(1));
    sim.restart_node(2, GossipConfig::lan(), Vec::new());
    // The new process starts counting at 1, far below what the cluster holds.
    assert_eq!(publish(&mut sim, 2, b"fresh"), 1);
    sim.join(2, 0);
    let fresh = sim.run_until_cond(STEP, Duration::from_secs(10), |s| {
        (0..6).filter(|&i| i != 2).all(|i| {
            s.node(i)
                .core
                .record("node-2")
                .is_some_and(|r| *r.body == *b"fresh" && r.version > 5)
        })
    });
    assert!(fresh);
    assert!(sim.node(2).core.stats().records_refuted >= 1);
}

#[test]
fn records_spread_through_heavy_loss() {
    let net = NetModel {
        loss: 0.2,
        ..NetModel::default()
    };
    let mut sim = cluster(40, 6, net);
    let v = publish(&mut sim, 9, b"through the storm");
    assert!(everyone_holds(
        &mut sim,
        9,
        v,
        b"through the storm",
        Duration::from_secs(60)
    ));
}

fn record_packet(name: &str, version: u32, body: &[u8]) -> Vec<u8> {
    record_packet_in(&Message::Gossip, name, version, body)
}

/// A `msg` datagram carrying member `name`'s record at `version` whole.
fn record_packet_in(msg: &Message<'_>, name: &str, version: u32, body: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    let at = wire::encode_header(&mut buf, msg);
    wire::encode_delta(
        &mut buf,
        &Delta::Record {
            name,
            version,
            body: RecordBody::Inline(body),
        },
    );
    wire::set_count(&mut buf, at, 1);
    buf
}

#[test]
fn records_need_an_authenticated_packet_and_a_known_member() {
    let mut sim = cluster(3, 7, NetModel::default());
    let now = sim.now;
    let core = &mut sim.node_mut(0).core;
    core.handle_untrusted_packet(now, sim_addr(1), &record_packet("node-1", 9, b"forged"));
    assert!(core.record("node-1").is_none());
    assert_eq!(core.stats().dropped_untrusted_records, 1);
    core.handle_packet(now, sim_addr(1), &record_packet("stranger", 1, b"x"));
    assert!(core.record("stranger").is_none());
    assert_eq!(core.stats().records_unknown_member, 1);
    core.handle_packet(now, sim_addr(1), &record_packet("node-1", 9, b"ok"));
    assert_eq!(*core.record("node-1").unwrap().body, *b"ok");
    // An older version changes nothing.
    core.handle_packet(now, sim_addr(1), &record_packet("node-1", 8, b"older"));
    assert_eq!(*core.record("node-1").unwrap().body, *b"ok");
    // A pull is answered only to the requester's own address (no reflection to a spoofed source).
    let pull = |requester: &str| {
        let mut buf = Vec::new();
        let msg = Message::Pull {
            requester,
            name: "node-1",
            version: 9,
        };
        let at = wire::encode_header(&mut buf, &msg);
        wire::set_count(&mut buf, at, 0);
        buf
    };
    core.handle_packet(now, sim_addr(1), &pull("node-2"));
    core.handle_packet(now, sim_addr(2), &pull("node-2"));
    assert_eq!(core.stats().pulls_dropped, 1);
    assert_eq!(core.stats().pulls_answered, 1);
    let mut buf = Vec::new();
    let t = core.poll_transmit(&mut buf).expect("the answer");
    assert_eq!(t.dst, sim_addr(2));
    let answer = wire::decode(&buf[..t.len]).unwrap();
    assert!(answer.deltas().any(|d| d
        == Delta::Record {
            name: "node-1",
            version: 9,
            body: RecordBody::Inline(b"ok")
        }));
}

#[test]
fn a_record_over_the_limit_is_refused() {
    let mut sim = cluster(1, 8, NetModel::default());
    let too_big = vec![0u8; wire::MAX_RECORD + 1];
    assert_eq!(
        sim.node_mut(0).core.set_record(too_big),
        Err(murmur_gossip::RecordError::TooLarge(wire::MAX_RECORD + 1))
    );
}

#[test]
fn every_flip_reaches_every_node_and_most_get_the_content_with_the_news() {
    let n = 200;
    let mut sim = cluster(n, 11, NetModel::default());
    for i in 0..n {
        publish(&mut sim, i, format!("rec-{i}-0").as_bytes());
    }
    sim.run_for(Duration::from_secs(5));
    let mut rng = murmur_gossip::Rng::new(5);
    let mut flips = vec![];
    // Ten flips a second cluster-wide, as loadgen's catalog scenario.
    for k in 0..50 {
        let i = rng.below(n);
        let body = format!("rec-{i}-{k}");
        let v = publish(&mut sim, i, body.as_bytes());
        flips.push((i, v, body));
        sim.run_for(Duration::from_millis(100));
    }
    sim.run_for(Duration::from_secs(3));
    for (i, v, body) in &flips {
        let newest = sim
            .node(*i)
            .core
            .local_slot()
            .record
            .as_ref()
            .unwrap()
            .version;
        if newest == *v {
            assert_eq!(
                holders(&sim, *i, *v, body.as_bytes()),
                n - 1,
                "node-{i} v{v}"
            );
        }
    }
    let stat = |f: fn(&murmur_gossip::Stats) -> u64| -> u64 {
        (0..sim.len()).map(|i| f(sim.node(i).core.stats())).sum()
    };
    // Announcements arrive many times; the content comes with the first ones or is pulled, at most
    // once per node and version.
    let versions: u64 = (0..n)
        .map(|i| {
            u64::from(
                sim.node(i)
                    .core
                    .local_slot()
                    .record
                    .as_ref()
                    .unwrap()
                    .version,
            )
        })
        .sum();
    let pulls = stat(|s| s.record_pulls);
    assert!(pulls < versions * (n as u64 - 1) / 2, "{pulls} pulls");
    assert_eq!(stat(|s| s.pulls_dropped), 0);
}

#[test]
fn anti_entropy_compares_versions_and_pulls_only_what_differs() {
    let mut sim = cluster(10, 12, NetModel::default());
    for i in 0..10 {
        publish(&mut sim, i, format!("svc-{i}").as_bytes());
    }
    sim.run_for(Duration::from_secs(5));
    // Node 9 is cut off while node 3 changes its record; the news dies out before it heals.
    sim.node_mut(9).group = 1;
    let v = publish(&mut sim, 3, b"changed while 9 was away");
    sim.run_for(Duration::from_secs(3));
    sim.node_mut(9).group = 0;
    let before = sim.node(9).core.stats().record_pulls;
    assert_ne!(
        sim.node(9).core.record("node-3").map(|r| r.version),
        Some(v)
    );
    // The periodic exchange (30 s apart, first within 60 s) brings the version; node 9 pulls that one
    // record, not the nine it already holds.
    let healed = sim.run_until_cond(STEP, Duration::from_secs(90), |s| {
        s.node(9)
            .core
            .record("node-3")
            .is_some_and(|r| r.version == v)
    });
    assert!(healed);
    let pulled = sim.node(9).core.stats().record_pulls - before;
    assert!((1..=2).contains(&pulled), "{pulled} pulls");
}

/// A node restarted with a wiped state and no one to join but itself catches up through the others'
/// probes (their pings say they know more members). So far behind, it asks for every record whole, as a
/// joiner does, instead of pulling each one from the peer it exchanged with: a burst that, at 5000
/// records, would be thousands of datagrams to one member.
#[test]
fn a_catch_up_from_far_behind_brings_every_record_whole() {
    let mut sim = Sim::new(23, NetModel::default());
    let cfg = GossipConfig {
        push_pull_interval: Duration::from_secs(600),
        ..GossipConfig::lan()
    };
    for i in 0..12 {
        sim.add_node(&format!("node-{i}"), cfg.clone(), Vec::new());
    }
    for i in 1..12 {
        sim.join(i, 0);
    }
    let converged = |s: &Sim| (0..s.len()).all(|i| s.node(i).core.num_live() == s.len());
    assert!(sim.run_until_cond(STEP, Duration::from_secs(30), converged));
    let versions: Vec<u32> = (0..12)
        .map(|i| publish(&mut sim, i, format!("svc-{i}").as_bytes()))
        .collect();
    // Long enough for every record's news to have stopped travelling.
    sim.run_for(Duration::from_secs(60));
    sim.restart_node(5, cfg, Vec::new());
    let holds_all = |s: &Sim| {
        (0..12).filter(|&i| i != 5).all(|i| {
            s.node(5)
                .core
                .record(&format!("node-{i}"))
                .is_some_and(|r| r.version == versions[i])
        })
    };
    assert!(sim.run_until_cond(STEP, Duration::from_secs(30), holds_all));
    let st = sim.node(5).core.stats();
    assert!(st.catch_up_syncs >= 1);
    assert_eq!(
        st.record_pulls, 0,
        "every record came whole in the exchange"
    );
}

#[test]
fn an_unauthenticated_join_request_gets_versions_not_records() {
    let mut sim = cluster(3, 13, NetModel::default());
    for i in 0..3 {
        publish(&mut sim, i, format!("secret-{i}").as_bytes());
    }
    sim.run_for(Duration::from_secs(3));
    let sync = |whole_records| {
        let mut buf = Vec::new();
        let msg = Message::Sync {
            seq: 7,
            want_reply: true,
            is_reply: false,
            whole_records,
        };
        let at = wire::encode_header(&mut buf, &msg);
        wire::set_count(&mut buf, at, 0);
        buf
    };
    let bodies = |core: &mut murmur_gossip::Core| {
        let mut inline = 0;
        let mut buf = Vec::new();
        while let Some(t) = core.poll_transmit(&mut buf) {
            if let Ok(p) = wire::decode(&buf[..t.len]) {
                inline += p
                    .deltas()
                    .filter(|d| {
                        matches!(
                            d,
                            Delta::Record {
                                body: RecordBody::Inline(_),
                                ..
                            }
                        )
                    })
                    .count();
            }
        }
        inline
    };
    let now = sim.now;
    let stranger = "127.9.9.9:7946".parse().unwrap();
    let core = &mut sim.node_mut(0).core;
    bodies(core);
    core.handle_untrusted_packet(now, stranger, &sync(true));
    assert_eq!(
        bodies(core),
        0,
        "records went to an unauthenticated requester"
    );
    core.handle_packet(now, stranger, &sync(true));
    assert_eq!(bodies(core), 3, "a join gets every record whole");
}

/// A record of about the agent's size: `n` services, the first one's check passing or not.
fn catalog_body(n: usize, passing: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for k in 0..n {
        body.extend_from_slice(
            format!("service web-{k} port {} tags v1,primary;", 8000 + k).as_bytes(),
        );
    }
    let output = if passing {
        "HTTP GET http://127.0.0.1/health: 200 OK"
    } else {
        "HTTP GET http://127.0.0.1/health: 503 Service Unavailable"
    };
    body.extend_from_slice(format!("check web-0 status {} output {output}", !passing).as_bytes());
    body
}

fn stat(sim: &Sim, f: fn(&murmur_gossip::Stats) -> u64) -> u64 {
    (0..sim.len()).map(|i| f(sim.node(i).core.stats())).sum()
}

/// A converged 12-node cluster where node 5 runs `node5` and the others the defaults (an older build
/// among newer ones).
fn cluster_with_node5(seed: u64, node5: GossipConfig) -> Sim {
    cluster_of_12(seed, |i| {
        if i == 5 {
            node5.clone()
        } else {
            GossipConfig::lan()
        }
    })
}

/// A converged 12-node cluster, node `i` running `config(i)`.
fn cluster_of_12(seed: u64, config: impl Fn(usize) -> GossipConfig) -> Sim {
    let mut sim = Sim::new(seed, NetModel::default());
    for i in 0..12 {
        let cfg = config(i);
        sim.add_node(&format!("node-{i}"), cfg, Vec::new());
    }
    for i in 1..12 {
        sim.join(i, 0);
    }
    assert!(sim.run_until_cond(STEP, Duration::from_secs(30), |s| {
        (0..s.len()).all(|i| s.node(i).core.num_live() == s.len())
    }));
    sim
}

/// Record deltas of a datagram: (patches, whole records).
fn record_forms(bytes: &[u8]) -> (usize, usize) {
    let Ok(p) = wire::decode(bytes) else {
        return (0, 0);
    };
    let mut forms = (0, 0);
    for d in p.deltas() {
        match d {
            Delta::Record {
                body: RecordBody::Patch { .. },
                ..
            } => forms.0 += 1,
            Delta::Record {
                body: RecordBody::Inline(_),
                ..
            } => forms.1 += 1,
            _ => {}
        }
    }
    forms
}

#[test]
fn a_check_flip_travels_as_a_patch_and_every_node_rebuilds_the_record() {
    let mut sim = cluster(30, 21, NetModel::default());
    let (up, down) = (catalog_body(3, true), catalog_body(3, false));
    let v1 = publish(&mut sim, 4, &up);
    assert!(everyone_holds(&mut sim, 4, v1, &up, Duration::from_secs(5)));
    sim.run_for(Duration::from_secs(3));
    let sizes = Rc::new(RefCell::new((0usize, 0usize)));
    let seen = sizes.clone();
    sim.set_tap(Box::new(move |_, _, bytes| {
        let (patches, _) = record_forms(bytes);
        if patches > 0 {
            let mut s = seen.borrow_mut();
            s.0 += patches;
            s.1 += bytes.len();
        }
    }));
    let v2 = publish(&mut sim, 4, &down);
    assert!(everyone_holds(
        &mut sim,
        4,
        v2,
        &down,
        Duration::from_secs(5)
    ));
    // And back: the patch from v2 to v3 is rebuilt by every node from the v2 it made itself.
    let v3 = publish(&mut sim, 4, &up);
    assert!(everyone_holds(&mut sim, 4, v3, &up, Duration::from_secs(5)));
    let applied = stat(&sim, |s| s.record_patches_applied);
    // Most of the 29 other nodes rebuilt each version from a patch; the rest pulled it (as a patch too,
    // since they held the version before).
    assert!(applied >= 2 * 25, "{applied} patches applied");
    assert_eq!(stat(&sim, |s| s.record_patches_refused), 0);
    let (patches, bytes) = *sizes.borrow();
    assert!(patches > 0);
    assert!(
        bytes / patches < up.len() / 2,
        "{bytes} bytes in datagrams carrying {patches} patches of a {}-byte record",
        up.len()
    );
}

#[test]
fn a_member_that_does_not_read_patches_gets_records_whole() {
    let older = GossipConfig {
        record_patches: false,
        ..GossipConfig::lan()
    };
    let mut sim = cluster_with_node5(22, older);
    let to_older = Rc::new(RefCell::new((0usize, 0usize, 0usize)));
    let seen = to_older.clone();
    sim.set_tap(Box::new(move |src, dst, bytes| {
        let mut s = seen.borrow_mut();
        if dst == 5 {
            let (patches, whole) = record_forms(bytes);
            s.0 += patches;
            s.1 += whole;
            if let Ok(p) = wire::decode(bytes)
                && let Message::Ping { takes_patches, .. } = p.msg
            {
                s.2 += usize::from(takes_patches);
            }
        }
        if src == 5 {
            s.0 += record_forms(bytes).0;
        }
    }));
    let mut version = 0;
    for k in 0..6 {
        let body = catalog_body(2, k % 2 == 0);
        version = publish(&mut sim, 7, &body);
        assert!(everyone_holds(
            &mut sim,
            7,
            version,
            &body,
            Duration::from_secs(5)
        ));
    }
    let (patches, whole, flagged_pings) = *to_older.borrow();
    assert_eq!(patches, 0, "patches to or from the older member");
    assert_eq!(flagged_pings, 0, "pings the older member cannot read");
    assert!(whole > 0, "no record reached the older member whole");
    assert_eq!(version, 6);
    assert!(stat(&sim, |s| s.record_patches_applied) > 0);
}

#[test]
fn a_patch_on_another_base_is_refused_and_the_record_pulled() {
    let mut sim = cluster(3, 23, NetModel::default());
    let now = sim.now;
    let core = &mut sim.node_mut(0).core;
    let (old, new) = (catalog_body(2, true), catalog_body(2, false));
    core.handle_packet(now, sim_addr(1), &record_packet("node-1", 1, &old));
    let hunks = murmur_gossip::patch::diff(&old, &new).unwrap();
    let patch_packet = |name: &str, base: u32, crc: u32| {
        let mut buf = Vec::new();
        let at = wire::encode_header(&mut buf, &Message::Gossip);
        let body = RecordBody::Patch {
            base,
            len: new.len() as u32,
            crc,
            hunks: &hunks,
        };
        let d = Delta::Record {
            name,
            version: 2,
            body,
        };
        wire::encode_delta(&mut buf, &d);
        wire::set_count(&mut buf, at, 1);
        buf
    };
    // Made against a body this node does not hold under that version: the checksum gives it away.
    let crc = murmur_gossip::patch::checksum(&new);
    core.handle_packet(now, sim_addr(1), &patch_packet("node-1", 1, crc ^ 1));
    assert_eq!(core.record("node-1").unwrap().version, 1);
    assert_eq!(core.stats().record_patches_refused, 1);
    // The version is news all the same, and is pulled whole: said with the version held, the answer
    // would be the same patch again.
    let pulls = |core: &mut murmur_gossip::Core| {
        let mut buf = Vec::new();
        let mut pulls = Vec::new();
        while let Some(t) = core.poll_transmit(&mut buf) {
            let p = wire::decode(&buf[..t.len]).unwrap();
            if let Message::Pull { name, version, .. } = p.msg {
                let said = p.deltas().find_map(|d| match d {
                    Delta::Record { version, .. } => Some(version),
                    _ => None,
                });
                pulls.push((t.dst, name.to_string(), version, said));
            }
        }
        pulls
    };
    assert_eq!(
        pulls(core),
        [(sim_addr(1), "node-1".to_string(), 2, None)],
        "a pull for the whole record"
    );
    // A patch on a base it does not hold at all is news too; its pull says the version held.
    core.handle_packet(now, sim_addr(1), &record_packet("node-2", 1, &old));
    core.handle_packet(now, sim_addr(1), &patch_packet("node-2", 5, crc));
    assert_eq!(core.record("node-2").unwrap().version, 1);
    assert_eq!(
        pulls(core),
        [(sim_addr(1), "node-2".to_string(), 2, Some(1))]
    );
    // The right patch applies.
    core.handle_packet(now, sim_addr(1), &patch_packet("node-1", 1, crc));
    assert_eq!(*core.record("node-1").unwrap().body, *new);
    assert_eq!(core.stats().record_patches_applied, 1);
    assert_eq!(core.stats().record_patches_refused, 1);
}

#[test]
fn a_restarted_owner_that_reuses_a_version_for_other_content_converges_everywhere() {
    let mut sim = cluster(8, 25, NetModel::default());
    let old = catalog_body(2, true);
    let v = publish(&mut sim, 2, &old);
    assert!(everyone_holds(&mut sim, 2, v, &old, Duration::from_secs(5)));
    sim.crash(2);
    sim.run_for(Duration::from_secs(1));
    sim.restart_node(2, GossipConfig::lan(), Vec::new());
    // Version 1 again, for other bytes of the same length; then a change on top, whose patch is made
    // against the new version 1, which nobody else holds under that number.
    let mut other = old.clone();
    other[0] ^= 0x20;
    assert_eq!(publish(&mut sim, 2, &other), 1);
    let newest = catalog_body(2, false);
    assert_eq!(publish(&mut sim, 2, &newest), 2);
    sim.join(2, 0);
    let settled = sim.run_until_cond(STEP, Duration::from_secs(15), |s| {
        (0..s.len()).filter(|&i| i != 2).all(|i| {
            let mine = s.node(2).core.record("node-2");
            let theirs = s.node(i).core.record("node-2");
            mine.zip(theirs)
                .is_some_and(|(m, t)| m.version == t.version && *t.body == *newest)
        })
    });
    assert!(
        settled,
        "every node holds the restarted owner's newest record"
    );
}

#[test]
fn a_change_whose_patch_would_not_fit_a_datagram_goes_as_before() {
    let mut sim = cluster(20, 26, NetModel::default());
    let mut rng = murmur_gossip::Rng::new(9);
    let big: Vec<u8> = (0..4000).map(|_| rng.below(256) as u8).collect();
    let v1 = publish(&mut sim, 3, &big);
    assert!(everyone_holds(
        &mut sim,
        3,
        v1,
        &big,
        Duration::from_secs(10)
    ));
    // Half of it rewritten: the patch is larger than a datagram, so the change is announced and
    // fetched whole, and nothing stays queued for want of room.
    let mut changed = big.clone();
    for b in &mut changed[1000..3000] {
        *b = rng.below(256) as u8;
    }
    let v2 = publish(&mut sim, 3, &changed);
    assert!(everyone_holds(
        &mut sim,
        3,
        v2,
        &changed,
        Duration::from_secs(10)
    ));
    assert!(
        sim.node(3)
            .core
            .local_slot()
            .record
            .as_ref()
            .unwrap()
            .patch
            .is_none()
    );
    sim.run_for(Duration::from_secs(10));
    assert!((0..sim.len()).all(|i| sim.node(i).core.pending_broadcasts() == 0));
}

#[test]
fn a_pull_that_says_the_version_held_is_answered_with_a_patch() {
    let mut sim = cluster(3, 24, NetModel::default());
    let (old, new) = (catalog_body(2, true), catalog_body(2, false));
    publish(&mut sim, 1, &old);
    sim.run_for(Duration::from_secs(2));
    let v = publish(&mut sim, 1, &new);
    assert!(everyone_holds(&mut sim, 1, v, &new, Duration::from_secs(5)));
    sim.run_for(Duration::from_secs(10));
    let now = sim.now;
    let core = &mut sim.node_mut(0).core;
    let mut buf = Vec::new();
    while core.poll_transmit(&mut buf).is_some() {}
    let pull = |have: Option<u32>| {
        let mut buf = Vec::new();
        let msg = Message::Pull {
            requester: "node-2",
            name: "node-1",
            version: v,
        };
        let at = wire::encode_header(&mut buf, &msg);
        if let Some(have) = have {
            let d = Delta::Record {
                name: "node-1",
                version: have,
                body: RecordBody::Digest(old.len() as u32),
            };
            wire::encode_delta(&mut buf, &d);
        }
        wire::set_count(&mut buf, at, u16::from(have.is_some()));
        buf
    };
    let mut answer = |have| {
        core.handle_packet(now, sim_addr(2), &pull(have));
        let mut buf = Vec::new();
        let t = core.poll_transmit(&mut buf).expect("an answer");
        assert_eq!(t.dst, sim_addr(2));
        record_forms(&buf[..t.len])
    };
    assert_eq!(answer(Some(v - 1)), (1, 0), "the version before: a patch");
    assert_eq!(answer(None), (0, 1), "nothing said: whole");
    assert_eq!(answer(Some(v - 2)), (0, 1), "an older one: whole");
}

#[test]
fn pings_to_a_failed_member_do_not_say_the_prober_takes_patches() {
    let mut sim = cluster(4, 27, NetModel::default());
    sim.crash(3);
    let pings = Rc::new(RefCell::new((0usize, 0usize)));
    let seen = pings.clone();
    sim.set_tap(Box::new(move |_, dst, bytes| {
        if dst == 3
            && let Ok(p) = wire::decode(bytes)
            && let Message::Ping { takes_patches, .. } = p.msg
        {
            let mut s = seen.borrow_mut();
            if takes_patches {
                s.0 += 1;
            } else {
                s.1 += 1;
            }
        }
    }));
    let failed = |s: &Sim| {
        (0..3).all(|i| {
            s.node(i)
                .core
                .member("node-3")
                .is_some_and(|m| m.state == State::Dead)
        })
    };
    assert!(sim.run_until_cond(STEP, Duration::from_secs(30), failed));
    let before = *pings.borrow();
    // Failed members get a ping now and then, to learn whether they are back; it may be as an older
    // build, which could not read the flagged form.
    sim.run_for(Duration::from_secs(70));
    let after = *pings.borrow();
    assert_eq!(
        after.0, before.0,
        "a flagged ping went to the failed member"
    );
    assert!(after.1 > before.1, "no reconnect pings");
}

/// True when a datagram carries a record delta about `owner`, in any form.
fn carries_record_of(bytes: &[u8], owner: &str) -> bool {
    wire::decode(bytes).is_ok_and(|p| {
        p.deltas()
            .any(|d| matches!(d, Delta::Record { name, .. } if name == owner))
    })
}

/// Node 7 hears nothing of node 3's change while it spreads; once the push is over, only the news
/// lists can tell it (the next full-state exchange is 30 s away). `news` sets them on or off everywhere.
/// Returns whether node 7 got the change in time, how many records acks carried in answer to news
/// lists, and how many acks to node 7 carried the change.
fn missed_push_is_repaired(news: bool) -> (bool, u64, usize) {
    let mut sim = Sim::new(31, NetModel::default());
    // Gossiped, not passed down the tree: node 7 would then also leave its arc unserved.
    let cfg = GossipConfig {
        record_news: news,
        record_tree: false,
        ..GossipConfig::lan()
    };
    for i in 0..20 {
        sim.add_node(&format!("node-{i}"), cfg.clone(), Vec::new());
    }
    for i in 1..20 {
        sim.join(i, 0);
    }
    assert!(sim.run_until_cond(STEP, Duration::from_secs(30), |s| {
        (0..s.len()).all(|i| s.node(i).core.num_live() == s.len())
    }));
    sim.run_for(Duration::from_secs(2));
    sim.set_filter(Box::new(|_, dst, bytes| {
        dst != 7 || !carries_record_of(bytes, "node-3")
    }));
    let body = catalog_body(2, true);
    let v = publish(&mut sim, 3, &body);
    sim.run_for(Duration::from_millis(1500));
    let others = holders(&sim, 3, v, &body);
    assert_eq!(
        others, 18,
        "the push reached every node but the cut-off one"
    );
    sim.clear_filter();
    let acks = Rc::new(RefCell::new(0usize));
    let seen = acks.clone();
    sim.set_tap(Box::new(move |_, dst, bytes| {
        let ack = wire::decode(bytes).is_ok_and(|p| matches!(p.msg, Message::Ack { .. }));
        if dst == 7 && ack && carries_record_of(bytes, "node-3") {
            *seen.borrow_mut() += 1;
        }
    }));
    let repaired = everyone_holds(&mut sim, 3, v, &body, Duration::from_secs(2));
    let acks = *acks.borrow();
    (repaired, stat(&sim, |s| s.record_news_sent), acks)
}

#[test]
fn a_node_the_push_missed_gets_the_record_through_its_next_probe() {
    let (repaired, sent, acks) = missed_push_is_repaired(true);
    assert!(repaired, "the news lists did not repair the miss");
    assert!(sent > 0);
    assert_eq!(
        acks, 1,
        "the change reached node 7 in one answer to its ping"
    );
    // Without news lists, nothing tells it before the next full-state exchange.
    let (repaired, sent, acks) = missed_push_is_repaired(false);
    assert!(!repaired, "repaired without news lists");
    assert_eq!((sent, acks), (0, 0));
}

/// A ping from node 1 to node 0 listing `listed` fingerprints, reaching `span_ds` tenths back.
fn news_ping(listed: &[u16], span_ds: u8) -> Vec<u8> {
    let mut fps = Vec::new();
    listed.iter().for_each(|&f| wire::News::put(&mut fps, f));
    let mut buf = Vec::new();
    let msg = Message::Ping {
        seq: 99,
        target: "node-0",
        known: 0,
        want_coord: false,
        takes_patches: true,
        news: wire::News::new(span_ds, &fps),
    };
    let at = wire::encode_header(&mut buf, &msg);
    wire::set_count(&mut buf, at, 0);
    buf
}

#[test]
fn an_ack_carries_the_recent_records_a_news_list_lacks_and_only_those() {
    let mut sim = cluster(4, 33, NetModel::default());
    sim.run_for(Duration::from_secs(1));
    let bodies: Vec<_> = (1..4).map(|i| format!("rec-{i}").into_bytes()).collect();
    for (k, b) in bodies.iter().enumerate() {
        publish(&mut sim, k + 1, b);
    }
    assert!(sim.run_until_cond(STEP, Duration::from_secs(5), |s| {
        (1..4).all(|i| s.node(0).core.record(&format!("node-{i}")).is_some())
    }));
    // Quiet the queues: what an ack then carries is the answer to its ping.
    sim.run_for(Duration::from_millis(1500));
    let answer = |sim: &mut Sim, ping: &[u8]| -> Vec<String> {
        let now = sim.now;
        let core = &mut sim.node_mut(0).core;
        core.handle_packet(now, sim_addr(1), ping);
        let mut buf = Vec::new();
        let mut names = Vec::new();
        while let Some(t) = core.poll_transmit(&mut buf) {
            let p = wire::decode(&buf[..t.len]).unwrap();
            if t.dst == sim_addr(1) && matches!(p.msg, Message::Ack { seq: 99, .. }) {
                for d in p.deltas() {
                    if let Delta::Record { name, .. } = d {
                        names.push(name.to_string());
                    }
                }
            }
        }
        names.sort();
        names
    };
    let fp = |i: usize| wire::news_fingerprint(&format!("node-{i}"), 1, 99);
    let all: Vec<String> = (1..4).map(|i| format!("node-{i}")).collect();
    assert_eq!(answer(&mut sim, &news_ping(&[], 40)), all);
    assert_eq!(
        answer(&mut sim, &news_ping(&[fp(1), fp(3)], 40)),
        ["node-2"]
    );
    assert!(answer(&mut sim, &news_ping(&[fp(1), fp(2), fp(3)], 40)).is_empty());
    // A list that reaches back two seconds (a full one) lacks the versions installed 1.5 s ago, but
    // the prober may have installed them up to a second earlier, before its list's reach: nothing is
    // sent.
    assert!(answer(&mut sim, &news_ping(&[], 20)).is_empty());
    let sent = sim.node(0).core.stats().record_news_sent;
    assert_eq!(sent, 4);
    // Past the answering window, an old version is no news.
    sim.run_for(Duration::from_secs(4));
    assert!(answer(&mut sim, &news_ping(&[], 40)).is_empty());
}

#[test]
fn a_member_that_does_not_read_news_gets_no_news_list_and_still_every_record() {
    let older = GossipConfig {
        record_news: false,
        ..GossipConfig::lan()
    };
    let mut sim = cluster_with_node5(35, older);
    let lists = Rc::new(RefCell::new((0usize, 0usize)));
    let seen = lists.clone();
    sim.set_tap(Box::new(move |src, dst, bytes| {
        if let Ok(p) = wire::decode(bytes)
            && let Message::Ping { news, .. } = p.msg
        {
            let mut s = seen.borrow_mut();
            if src == 5 || dst == 5 {
                s.0 += usize::from(news.is_some());
            } else {
                s.1 += usize::from(news.is_some());
            }
        }
    }));
    for (k, owner) in [5, 7, 5, 2].into_iter().enumerate() {
        let body = catalog_body(2, k % 2 == 0);
        let version = publish(&mut sim, owner, &body);
        assert!(everyone_holds(
            &mut sim,
            owner,
            version,
            &body,
            Duration::from_secs(5)
        ));
    }
    let (to_or_from_older, among_newer) = *lists.borrow();
    assert_eq!(
        to_or_from_older, 0,
        "news lists to or from the older member"
    );
    assert!(among_newer > 0, "no news lists among the newer members");
}

/// How many datagrams carry node 7's record for one change, in a 12-node cluster that gossips records
/// (no broadcast tree) where node 5 has `node5` as its config.
fn sends_of_one_change(node5: GossipConfig) -> usize {
    let gossiped = GossipConfig {
        record_tree: false,
        ..GossipConfig::lan()
    };
    sends_in(cluster_of_12(37, |i| {
        if i == 5 {
            node5.clone()
        } else {
            gossiped.clone()
        }
    }))
}

/// How many datagrams carry node 7's record for one change in `sim` (12 nodes).
fn sends_in(mut sim: Sim) -> usize {
    sim.run_for(Duration::from_secs(5));
    let sends = Rc::new(RefCell::new(0usize));
    let seen = sends.clone();
    sim.set_tap(Box::new(move |_, _, bytes| {
        let pull = wire::decode(bytes).is_ok_and(|p| matches!(p.msg, Message::Pull { .. }));
        if !pull && carries_record_of(bytes, "node-7") {
            *seen.borrow_mut() += 1;
        }
    }));
    let body = catalog_body(2, true);
    let v = publish(&mut sim, 7, &body);
    assert!(everyone_holds(
        &mut sim,
        7,
        v,
        &body,
        Duration::from_secs(5)
    ));
    sim.run_for(Duration::from_secs(5));
    *sends.borrow()
}

#[test]
fn records_are_sent_fewer_times_only_while_every_member_reads_news() {
    let all_new = sends_of_one_change(GossipConfig {
        record_tree: false,
        ..GossipConfig::lan()
    });
    let mixed = sends_of_one_change(GossipConfig {
        record_news: false,
        record_tree: false,
        ..GossipConfig::lan()
    });
    // Each of the 12 holders sends the change at most RECORD_SENDS times, plus at most one pull
    // answer or news repair per node; with a member that cannot repair, the membership limit (8 at
    // this size) applies.
    let bound = 12 * (murmur_gossip::RECORD_SENDS as usize + 1);
    assert!(
        all_new <= bound,
        "{all_new} sends with every member reading news"
    );
    assert!(mixed > bound, "{mixed} sends with one member that does not");
    // A probe interval so long that a news list cannot say its reach (a byte of tenths of a second
    // covers 4 intervals of at most 6.375 s): no repair, so the full count of sends.
    let slow = GossipConfig {
        probe_interval: Duration::from_secs(7),
        probe_timeout: Duration::from_secs(3),
        record_tree: false,
        ..GossipConfig::lan()
    };
    let slow = sends_in(cluster_of_12(37, |_| slow.clone()));
    assert!(slow > bound, "{slow} sends with probes 7 s apart");
    // Passed down the tree instead, the change crosses the network once to each of the 11 others.
    assert_eq!(sends_in(cluster_of_12(37, |_| GossipConfig::lan())), 11);
}

#[test]
fn a_burst_of_news_shortens_the_reach_a_list_claims() {
    let n = 72;
    let mut sim = cluster(n, 39, NetModel::default());
    sim.run_for(Duration::from_secs(1));
    // More members' new versions than a node remembers (64), within a second.
    for i in 2..n {
        publish(&mut sim, i, format!("burst-{i}").as_bytes());
        sim.run_for(Duration::from_millis(10));
    }
    let spans = Rc::new(RefCell::new(Vec::new()));
    let seen = spans.clone();
    sim.set_tap(Box::new(move |src, _, bytes| {
        if src == 1
            && let Ok(p) = wire::decode(bytes)
            && let Message::Ping { news: Some(n), .. } = p.msg
        {
            seen.borrow_mut().push((n.span_ds, n.len()));
        }
    }));
    sim.run_for(Duration::from_millis(1500));
    let spans = spans.borrow();
    assert!(!spans.is_empty(), "no ping from node 1");
    for &(span, len) in spans.iter() {
        // It forgot the oldest of the burst, learnt a second or two ago: its list reaches no further
        // back than them, short of the 4 s it would claim otherwise.
        assert!(span < 30, "span {span} tenths of a second");
        assert!(len <= wire::MAX_NEWS);
    }
}

/// Full-state exchanges between members that read the short form name each record once (in its
/// member's state); with an older member both ways stay in the long form; and a change either kind of
/// member missed reaches it through an exchange.
#[test]
fn full_states_name_each_record_once_where_the_peer_reads_it() {
    let older = GossipConfig {
        short_records: false,
        ..GossipConfig::lan()
    };
    let mut sim = cluster_with_node5(31, older);
    for i in 0..12 {
        publish(&mut sim, i, format!("svc-{i}").as_bytes());
    }
    sim.run_for(Duration::from_secs(5));
    // Sync datagrams carrying records: (short form between newer members, long form between them,
    // short form to or from the older one, long form to or from it); then requests to the older one.
    let seen = Rc::new(RefCell::new([0usize; 5]));
    let tally = seen.clone();
    sim.set_tap(Box::new(move |src, dst, bytes| {
        let Ok(p) = wire::decode(bytes) else { return };
        if !matches!(p.msg, Message::Sync { .. })
            || !p.deltas().any(|d| matches!(d, Delta::Record { .. }))
        {
            return;
        }
        let with_older = src == 5 || dst == 5;
        let k = 2 * usize::from(with_older) + usize::from(!p.has_short_records());
        let mut t = tally.borrow_mut();
        t[k] += 1;
        if dst == 5
            && matches!(
                p.msg,
                Message::Sync {
                    want_reply: true,
                    ..
                }
            )
        {
            t[4] += 1;
        }
    }));
    // Nodes 5 (older) and 9 (newer) miss node 3's change until its news has left every news list
    // (they stay live members: only the record is kept from them), so only an exchange brings it.
    sim.set_filter(Box::new(|_, dst, bytes| {
        !(dst == 5 || dst == 9)
            || wire::decode(bytes).is_ok_and(|p| matches!(p.msg, Message::Sync { .. }))
            || !carries_record_of(bytes, "node-3")
    }));
    let v = publish(&mut sim, 3, b"changed while 5 and 9 were away");
    sim.run_for(Duration::from_secs(8));
    sim.clear_filter();
    for i in [5, 9] {
        assert_ne!(
            sim.node(i).core.record("node-3").map(|r| r.version),
            Some(v)
        );
    }
    // And until the older member has started an exchange of its own and been asked for one, so that
    // both directions are seen.
    let started = sim.node(5).core.stats().push_pulls;
    let asked = seen.clone();
    let healed = sim.run_until_cond(STEP, Duration::from_secs(300), |s| {
        s.node(5).core.stats().push_pulls > started
            && asked.borrow()[4] > 0
            && [5, 9].iter().all(|&i| {
                s.node(i)
                    .core
                    .record("node-3")
                    .is_some_and(|r| r.version == v)
            })
    });
    assert!(healed);
    let [short, long, short_older, long_older, _] = *seen.borrow();
    assert!(short > 0, "no short-form exchange between newer members");
    assert_eq!(short_older, 0, "the short form to or from the older member");
    assert!(long_older > 0, "no exchange with the older member");
    // Only an exchange started from an address alone (a member that keeps knowing more) goes long
    // between newer members; none is due here.
    assert_eq!(long, 0, "the long form between newer members");
}

/// A failed member that answers its reconnect ping is sent our state in the long form, whatever it
/// announced before it failed: it may be back as another build at the same address.
#[test]
fn reconnect_exchanges_use_the_long_form() {
    // No periodic exchanges: every exchange after the heal comes from a reconnect.
    let quiet = GossipConfig {
        push_pull_interval: Duration::from_secs(3600),
        ..GossipConfig::lan()
    };
    let mut sim = cluster_of_12(33, |_| quiet.clone());
    for i in 0..12 {
        publish(&mut sim, i, format!("svc-{i}").as_bytes());
    }
    sim.run_for(Duration::from_secs(5));
    for i in 6..12 {
        sim.node_mut(i).group = 1;
    }
    let split = sim.run_until_cond(STEP, Duration::from_secs(90), |s| {
        (0..12).all(|i| {
            let other = if i < 6 { "node-6" } else { "node-0" };
            s.node(i)
                .core
                .member(other)
                .is_some_and(|m| m.state == State::Dead)
        })
    });
    assert!(split);
    // Requests carrying records: (short, long).
    let seen = Rc::new(RefCell::new((0usize, 0usize)));
    let tally = seen.clone();
    sim.set_tap(Box::new(move |_, _, bytes| {
        if let Ok(p) = wire::decode(bytes)
            && let Message::Sync {
                is_reply: false, ..
            } = p.msg
            && p.deltas().any(|d| matches!(d, Delta::Record { .. }))
        {
            let mut t = tally.borrow_mut();
            if p.has_short_records() {
                t.0 += 1;
            } else {
                t.1 += 1;
            }
        }
    }));
    for i in 6..12 {
        sim.node_mut(i).group = 0;
    }
    let healed = sim.run_until_cond(STEP, Duration::from_secs(120), |s| {
        (0..12).all(|i| s.node(i).core.num_live() == 12)
    });
    assert!(healed);
    assert!(
        stat(&sim, |s| s.reconnects) > 0,
        "the halves met through reconnects"
    );
    let (short, long) = *seen.borrow();
    assert_eq!(short, 0, "a reconnect exchange in the short form");
    assert!(long > 0, "no reconnect exchange");
}

/// A full state larger than a datagram goes in chunks, each a run of whole entries (a member's state and
/// its short record never split), and what one node missed still reaches it through them.
#[test]
fn short_records_survive_a_full_state_in_several_chunks() {
    let mut sim = cluster(60, 34, NetModel::default());
    for i in 0..60 {
        publish(&mut sim, i, format!("svc-{i}").as_bytes());
    }
    sim.run_for(Duration::from_secs(5));
    // Continuation chunks of requests and replies that carry short records.
    let chunks = Rc::new(RefCell::new(0usize));
    let tally = chunks.clone();
    sim.set_tap(Box::new(move |_, _, bytes| {
        if let Ok(p) = wire::decode(bytes)
            && let Message::Sync { want_reply, .. } = p.msg
            && p.has_short_records()
            && !matches!(p.deltas().next(), Some(Delta::Alive { .. }) if want_reply)
        {
            *tally.borrow_mut() += 1;
        }
    }));
    // Node 9 misses the changes' news (it stays a live member: only records are kept from it) until
    // they have left every news list; after that only a full-state exchange brings them.
    sim.set_filter(Box::new(|_, dst, bytes| {
        dst != 9
            || wire::decode(bytes).is_ok_and(|p| matches!(p.msg, Message::Sync { .. }))
            || !["node-3", "node-40", "node-55"]
                .iter()
                .any(|o| carries_record_of(bytes, o))
    }));
    let changed: Vec<(usize, u32)> = [3, 40, 55]
        .into_iter()
        .map(|i| (i, publish(&mut sim, i, format!("svc-{i} moved").as_bytes())))
        .collect();
    sim.run_for(Duration::from_secs(8));
    sim.clear_filter();
    let holds = |s: &Sim| {
        changed.iter().all(|&(i, v)| {
            s.node(9)
                .core
                .record(&format!("node-{i}"))
                .is_some_and(|r| r.version == v)
        })
    };
    assert!(!holds(&sim));
    assert!(sim.run_until_cond(STEP, Duration::from_secs(150), holds));
    assert!(*chunks.borrow() > 0, "no state went in several chunks");
}

/// Counts, from now on, the datagrams that carry `owner`'s record outside full-state exchanges: tree
/// messages by destination, and any other (gossip, pull answers, news repairs).
fn tally_record_sends(sim: &mut Sim, owner: &'static str) -> Rc<RefCell<(Vec<usize>, usize)>> {
    let seen = Rc::new(RefCell::new((Vec::new(), 0)));
    let tally = seen.clone();
    sim.set_tap(Box::new(move |_, dst, bytes| {
        let Ok(p) = wire::decode(bytes) else { return };
        if !carries_record_of(bytes, owner) || matches!(p.msg, Message::Sync { .. }) {
            return;
        }
        let mut t = tally.borrow_mut();
        match p.msg {
            Message::Tree { .. } => t.0.push(dst),
            _ => t.1 += 1,
        }
    }));
    seen
}

/// A converged cluster of `n` where node 9 published its record (check passing) 5 s ago.
fn node9_published(n: usize, seed: u64) -> Sim {
    let mut sim = cluster(n, seed, NetModel::default());
    publish(&mut sim, 9, &catalog_body(2, true));
    sim.run_for(Duration::from_secs(5));
    sim
}

/// A change goes down the broadcast tree: each member is handed it once, long before a gossip round
/// could have carried it past the first hop, and no holder gossips it.
#[test]
fn a_change_goes_down_the_tree_once_to_each_member() {
    let n = 40;
    let mut sim = node9_published(n, 41);
    let passed = stat(&sim, |s| s.records_passed_down);
    let seen = tally_record_sends(&mut sim, "node-9");
    let body = catalog_body(2, false);
    let v = publish(&mut sim, 9, &body);
    // About log2(40) hops of a fraction of a millisecond each; gossip goes every 200 ms.
    assert!(everyone_holds(&mut sim, 9, v, &body, STEP));
    sim.run_for(Duration::from_secs(5));
    let (mut tree, other) = seen.borrow().clone();
    tree.sort();
    let expected: Vec<usize> = (0..n).filter(|&i| i != 9).collect();
    assert_eq!(tree, expected, "each member handed the change once");
    assert_eq!(other, 0, "datagrams other than the tree's carried it");
    assert_eq!(stat(&sim, |s| s.records_passed_down) - passed, n as u64 - 1);
    assert_eq!(stat(&sim, |s| s.record_pulls), 0, "every hop got the patch");
}

/// A crashed member that the tree hands its half of the ring to (before anyone noticed the crash)
/// drops the change for that whole half. The first member there to be repaired (by a news answer;
/// here by a datagram the test hands it) passes the change to its ring neighbours, and they to theirs:
/// the half is walked end to end, stepping over another failed member inside it, long before probes
/// could repair it member by member.
#[test]
fn what_a_failed_hop_drops_is_walked_from_the_first_repair() {
    let n = 40;
    let mut sim = node9_published(n, 43);
    let (hop, far) = first_hand_off(n, 9);
    assert!(far > 10, "{far} members across the ring");
    let origin = murmur_gossip::ring::position("node-9");
    let mut across: Vec<(u64, usize)> = (0..n)
        .map(|i| {
            let pos = murmur_gossip::ring::position(&format!("node-{i}"));
            (pos.wrapping_sub(origin), i)
        })
        .filter(|&(o, i)| o >= 1 << 63 && i != hop)
        .collect();
    across.sort();
    // Another failed member inside the half, which the walk must step over.
    let inner = across[across.len() / 4].1;
    sim.crash(hop);
    sim.crash(inner);
    let body = catalog_body(2, false);
    let v = publish(&mut sim, 9, &body);
    sim.run_for(STEP);
    assert_eq!(
        holders(&sim, 9, v, &body),
        n - 1 - far,
        "the tree served every arc but the crashed hop's"
    );
    // A member in the middle of the missed half: its walk goes both ways.
    let repaired = across[across.len() / 2].1;
    let around = stat(&sim, |s| s.records_passed_around);
    sim.deliver_raw(repaired, sim_addr(9), &record_packet("node-9", v, &body));
    assert!(everyone_holds(&mut sim, 9, v, &body, STEP));
    let walked = stat(&sim, |s| s.records_passed_around) - around;
    // Each walked member hands it to up to 3 neighbours; the walk ends at members that had it.
    assert!(
        (far as u64 - 2..=3 * far as u64 + 6).contains(&walked),
        "{walked} hand-offs for {far} members"
    );
}

/// The owner's first hand-off in the tree of `owner`'s record, in a cluster of `n` (everyone alive): the
/// first member of the half of the ring across from it; and how many members that half holds.
fn first_hand_off(n: usize, owner: usize) -> (usize, usize) {
    let origin = murmur_gossip::ring::position(&format!("node-{owner}"));
    let offset =
        |i: usize| murmur_gossip::ring::position(&format!("node-{i}")).wrapping_sub(origin);
    let far: Vec<usize> = (0..n).filter(|&i| offset(i) >= 1 << 63).collect();
    (*far.iter().min_by_key(|&&i| offset(i)).unwrap(), far.len())
}

/// A member that heard of a change before the tree handed it over (a news answer can race the tree)
/// still passes it down when the tree's message comes, once: else its whole arc would wait for the
/// repair.
#[test]
fn a_member_that_heard_of_a_change_first_still_passes_it_down() {
    let n = 40;
    let mut sim = node9_published(n, 53);
    let (hop, far) = first_hand_off(n, 9);
    assert!(far > 10, "{far} members across the ring");
    let body = catalog_body(2, false);
    sim.deliver_raw(hop, sim_addr(9), &record_packet("node-9", 2, &body));
    assert_eq!(sim.node(hop).core.record("node-9").unwrap().version, 2);
    let passed = stat(&sim, |s| s.records_passed_down);
    assert_eq!(publish(&mut sim, 9, &body), 2);
    assert!(everyone_holds(&mut sim, 9, 2, &body, STEP));
    sim.run_for(Duration::from_secs(2));
    assert_eq!(stat(&sim, |s| s.records_passed_down) - passed, n as u64 - 1);
}

/// Likewise for a member that installed the change from a full-state exchange (old news to it, so
/// not listed in its pings) just before the tree's message came: it passes it down all the same.
#[test]
fn a_member_that_got_a_change_by_exchange_first_still_passes_it_down() {
    let n = 40;
    let mut sim = node9_published(n, 59);
    let (hop, far) = first_hand_off(n, 9);
    assert!(far > 10, "{far} members across the ring");
    let body = catalog_body(2, false);
    let sync = Message::Sync {
        seq: 7,
        want_reply: false,
        is_reply: true,
        whole_records: true,
    };
    sim.deliver_raw(
        hop,
        sim_addr(9),
        &record_packet_in(&sync, "node-9", 2, &body),
    );
    assert_eq!(sim.node(hop).core.record("node-9").unwrap().version, 2);
    let (down, around) = (
        stat(&sim, |s| s.records_passed_down),
        stat(&sim, |s| s.records_passed_around),
    );
    assert_eq!(publish(&mut sim, 9, &body), 2);
    assert!(everyone_holds(&mut sim, 9, 2, &body, STEP));
    sim.run_for(Duration::from_secs(2));
    assert_eq!(stat(&sim, |s| s.records_passed_down) - down, n as u64 - 1);
    assert_eq!(stat(&sim, |s| s.records_passed_around) - around, 0);
}

/// A member already fetching a record when the tree hands it the same version (too large for a
/// datagram, so as its version) passes it down once the fetch brings it: the tree's level is kept with
/// the fetch, and the arc is served by the tree, not walked.
#[test]
fn a_fetch_under_way_keeps_the_trees_level() {
    let n = 40;
    let mut sim = cluster(n, 67, NetModel::default());
    let big = |k: u32| -> Vec<u8> { (0..20_000u32).map(|i| ((i * k) % 251) as u8).collect() };
    let v1 = publish(&mut sim, 9, &big(1));
    assert!(everyone_holds(
        &mut sim,
        9,
        v1,
        &big(1),
        Duration::from_secs(10)
    ));
    let (hop, far) = first_hand_off(n, 9);
    assert!(far > 10, "{far} members across the ring");
    let (down, around) = (
        stat(&sim, |s| s.records_passed_down),
        stat(&sim, |s| s.records_passed_around),
    );
    let v2 = publish(&mut sim, 9, &big(2));
    // Before the tree's message lands, the hop hears of the version and starts fetching it.
    let mut digest = Vec::new();
    let at = wire::encode_header(&mut digest, &Message::Gossip);
    let d = Delta::Record {
        name: "node-9",
        version: v2,
        body: RecordBody::Digest(20_000),
    };
    wire::encode_delta(&mut digest, &d);
    wire::set_count(&mut digest, at, 1);
    let fetches = sim.node(hop).core.stats().record_fetches;
    sim.deliver_raw(hop, sim_addr(9), &digest);
    assert_eq!(sim.node(hop).core.stats().record_fetches, fetches + 1);
    assert!(everyone_holds(
        &mut sim,
        9,
        v2,
        &big(2),
        Duration::from_secs(1)
    ));
    assert_eq!(stat(&sim, |s| s.records_passed_down) - down, n as u64 - 1);
    assert_eq!(stat(&sim, |s| s.records_passed_around) - around, 0);
}

/// A datagram from node 2 that says member `hop` is `state` (suspect or dead) at its incarnation.
fn claim(sim: &Sim, hop: usize, dead: bool) -> Vec<u8> {
    let incarnation = sim.node(hop).core.local_slot().incarnation;
    let name = format!("node-{hop}");
    let mut buf = Vec::new();
    let at = wire::encode_header(&mut buf, &Message::Gossip);
    let (name, from) = (name.as_str(), "node-2");
    let d = if dead {
        Delta::Dead {
            name,
            incarnation,
            from,
        }
    } else {
        Delta::Suspect {
            name,
            incarnation,
            from,
        }
    };
    wire::encode_delta(&mut buf, &d);
    wire::set_count(&mut buf, at, 1);
    buf
}

/// Each member splits its arc by its own view: a member the sender's view skips (here the owner holds
/// it dead) is served by the member its half went to instead, as that member finds it before itself in
/// its arc.
#[test]
fn a_member_the_senders_view_skips_is_served_by_its_arc() {
    let n = 40;
    let mut sim = node9_published(n, 59);
    let (hop, _) = first_hand_off(n, 9);
    let dead = claim(&sim, hop, true);
    sim.deliver_raw(9, sim_addr(2), &dead);
    let name = format!("node-{hop}");
    assert_eq!(sim.node(9).core.member(&name).unwrap().state, State::Dead);
    let seen = tally_record_sends(&mut sim, "node-9");
    let body = catalog_body(2, false);
    let v = publish(&mut sim, 9, &body);
    assert!(everyone_holds(&mut sim, 9, v, &body, STEP));
    let (mut tree, _) = seen.borrow().clone();
    tree.sort();
    let expected: Vec<usize> = (0..n).filter(|&i| i != 9).collect();
    assert_eq!(tree, expected, "each member handed the change once");
}

/// A member every view holds suspect is not handed an arc (it may have failed) but gets the change as
/// a leaf: if it is alive after all, it is not left to the repair.
#[test]
fn a_suspect_gets_the_change_as_a_leaf() {
    let n = 40;
    let mut sim = node9_published(n, 61);
    let (hop, far) = first_hand_off(n, 9);
    assert!(far > 10, "{far} members across the ring");
    let suspect = claim(&sim, hop, false);
    let name = format!("node-{hop}");
    for i in (0..n).filter(|&i| i != hop) {
        sim.deliver_raw(i, sim_addr(2), &suspect);
        assert_eq!(
            sim.node(i).core.member(&name).unwrap().state,
            State::Suspect
        );
    }
    let seen = tally_record_sends(&mut sim, "node-9");
    let body = catalog_body(2, false);
    let v = publish(&mut sim, 9, &body);
    assert!(everyone_holds(&mut sim, 9, v, &body, STEP));
    let (mut tree, other) = seen.borrow().clone();
    tree.sort();
    let expected: Vec<usize> = (0..n).filter(|&i| i != 9).collect();
    assert_eq!(tree, expected, "each member handed the change once");
    assert_eq!(other, 0);
}

/// While a live member does not pass records down the tree (an older build), nobody uses it: that
/// member would drop the message and leave its arc unserved. Records are gossiped, and reach everyone.
#[test]
fn the_tree_waits_until_every_live_member_reads_it() {
    let older = GossipConfig {
        record_tree: false,
        ..GossipConfig::lan()
    };
    let mut sim = cluster_with_node5(47, older);
    publish(&mut sim, 7, &catalog_body(2, true));
    sim.run_for(Duration::from_secs(5));
    let seen = tally_record_sends(&mut sim, "node-7");
    let body = catalog_body(2, false);
    let v = publish(&mut sim, 7, &body);
    assert!(everyone_holds(
        &mut sim,
        7,
        v,
        &body,
        Duration::from_secs(5)
    ));
    let (tree, other) = seen.borrow().clone();
    assert!(tree.is_empty(), "tree messages to {tree:?}");
    assert!(other > 11, "{other} gossip datagrams");
    assert_eq!(stat(&sim, |s| s.records_passed_down), 0);
}
