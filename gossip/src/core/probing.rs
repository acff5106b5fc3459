//! Failure detection: the probe round, direct and indirect probes (relaying for others), and pings to
//! failed members that may be back.

use std::ops::ControlFlow;

use super::*;

/// Most ring entries a walk visits: past it (a node that has just joined and knows few of the names
/// its process holds) the regular probe order serves instead.
const RING_WALK_LIMIT: usize = 256;

/// Failure-detection state: the probe round, the probe in flight, a reconnect ping, relayed probes.
#[derive(Default)]
pub(super) struct Probing {
    /// This probe round's order over ids.
    pub(super) order: ProbeOrder,
    pub(super) current: Option<Probe>,
    pub(super) reconnect: Option<ReconnectPing>,
    pub(super) relays: HashMap<u32, Relay>,
    /// Whether the last regular probe tick was our ring successor's turn (every other one is).
    pub(super) ring_turn: bool,
    /// Suspects we monitor and have not probed since they were suspected: (id, token of the suspect
    /// state), oldest first.
    pub(super) checks: Vec<(Id, u16)>,
}

pub(super) struct Probe {
    pub(super) seq: u32,
    /// Holding the record keeps the target's id valid while the probe runs.
    pub(super) target: Arc<Ident>,
    pub(super) expected_nacks: u32,
    pub(super) nacks: u32,
    /// When the ping went out, for the round trip that feeds the coordinate.
    pub(super) sent: Instant,
    /// Whether the ping asked for the target's coordinate.
    pub(super) want_coord: bool,
}

/// A reconnect ping in flight; only an answer from the failed member earns it a full-state exchange.
pub(super) struct ReconnectPing {
    pub(super) seq: u32,
    /// Holding the record keeps the member's id valid until the answer.
    pub(super) target: Arc<Ident>,
}

pub(super) struct Relay {
    pub(super) origin: SocketAddr,
    pub(super) origin_seq: u32,
    pub(super) nack: bool,
}

impl Core {
    pub(super) fn relay(
        &mut self,
        now: Instant,
        origin: SocketAddr,
        origin_seq: u32,
        target: &str,
        addr: SocketAddr,
        nack: bool,
    ) {
        if self.probing.relays.len() >= self.cfg.max_relays {
            self.stats.dropped_relay_full += 1;
            return;
        }
        let seq = self.next_seq();
        self.probing.relays.insert(
            seq,
            Relay {
                origin,
                origin_seq,
                nack,
            },
        );
        let target = match self.roster.find(target) {
            Some(n) => n.text().clone(),
            None => Arc::from(target),
        };
        // A relayed round trip is not ours to measure.
        self.out.push_back(Out::Ping {
            dst: addr,
            seq,
            target,
            want_coord: false,
        });
        if nack {
            // Leave the origin time to count our nack before its probe interval ends.
            let wait = self.cfg.probe_timeout.mul_f64(0.8);
            self.timers.push(now + wait, Timer::RelayNack(seq));
        }
        self.timers
            .push(now + self.cfg.probe_interval, Timer::RelayExpire(seq));
    }

    pub(super) fn on_ack(&mut self, now: Instant, seq: u32, coord: Option<wire::WireCoord>) {
        if let Some(p) = self.probing.current.take_if(|p| p.seq == seq) {
            self.awareness.apply(-1);
            self.stats.probe_rtt.add(now - p.sent);
            // Only a direct answer to our own ping, in time, measures the path: indirect acks come
            // without a coordinate, and a late direct one says more about a busy peer than the path.
            let in_time = now - p.sent <= self.awareness.scale(self.cfg.probe_timeout);
            if let (Some(v), Some(c), true) =
                (self.vivaldi.as_mut(), coord, p.want_coord && in_time)
            {
                match v.observe(
                    p.target.id(),
                    &c.to_coordinate(),
                    now - p.sent,
                    &mut self.rng,
                ) {
                    Ok(()) => self.stats.coordinate_samples += 1,
                    Err(_) => self.stats.coordinate_rejected += 1,
                }
            }
            return;
        }
        if let Some(r) = self.probing.reconnect.take_if(|r| r.seq == seq) {
            self.on_reconnect_answer(&r.target);
            return;
        }
        if let Some(r) = self.probing.relays.remove(&seq) {
            self.out.push_back(Out::Ack {
                dst: r.origin,
                seq: r.origin_seq,
                coord: false,
                patches: false,
                repair: Box::default(),
            });
        }
    }

    pub(super) fn on_probe_tick(&mut self, now: Instant) {
        let interval = self.awareness.scale(self.cfg.probe_interval);
        self.timers.push(now + interval, Timer::Probe);
        // The previous probe's deadline is this tick.
        if let Some(p) = self.probing.current.take() {
            self.stats.probes_failed += 1;
            let delta = if p.expected_nacks > 0 {
                (p.expected_nacks - p.nacks.min(p.expected_nacks)) as i32
            } else {
                1
            };
            self.awareness.apply(delta);
            let id = p.target.id();
            if let Some(s) = self.view.get(id)
                && Arc::ptr_eq(s.ident.name(), p.target.name())
                && s.state.is_live()
            {
                let (inc, me) = (s.incarnation, self.me.clone());
                let name = p.target.name().clone();
                self.on_suspect(now, &name, inc, &me);
            }
        }
        if self.leaving {
            return;
        }
        let Some(target) = self.next_target() else {
            return;
        };
        let seq = self.next_seq();
        let (dst, name) = (target.addr, target.name().clone());
        let want_coord = self.vivaldi.is_some() && target.features & wire::FEATURE_COORDINATES != 0;
        self.probing.current = Some(Probe {
            seq,
            target,
            expected_nacks: 0,
            nacks: 0,
            sent: now,
            want_coord,
        });
        self.out.push_back(Out::Ping {
            dst,
            seq,
            target: name,
            want_coord,
        });
        self.stats.probes_sent += 1;
        let direct = self.awareness.scale(self.cfg.probe_timeout);
        self.timers.push(now + direct, Timer::ProbeDirect(seq));
    }

    /// Who this tick probes: a suspect we monitor first, then, with ring monitoring, our ring successor
    /// and the round's order in turn.
    fn next_target(&mut self) -> Option<Arc<Ident>> {
        if let Some(t) = self.next_check() {
            self.stats.monitor_probes += 1;
            return Some(t);
        }
        if self.ring_monitoring() {
            self.probing.ring_turn = !self.probing.ring_turn;
            if self.probing.ring_turn
                && let Some(t) = self.ring_successor()
            {
                self.stats.ring_probes += 1;
                return Some(t);
            }
        }
        self.next_probe_target()
    }

    /// Whether ring monitoring is on (it builds on Lifeguard's confirmations).
    pub(super) fn ring_monitoring(&self) -> bool {
        self.cfg.ring_monitors && self.cfg.lifeguard
    }

    /// Visits the live members after us on the ring, nearest first, until `f` breaks (or the walk
    /// limit is reached).
    fn walk_successors(&self, mut f: impl FnMut(Id) -> ControlFlow<()>) {
        let view = &self.view;
        let mut visited = 0;
        self.roster
            .ring()
            .walk_after(self.me_pos, self.me_id, |id| {
                visited += 1;
                if visited > RING_WALK_LIMIT {
                    return ControlFlow::Break(());
                }
                match view.get(id) {
                    Some(s) if s.state.is_live() => f(id),
                    _ => ControlFlow::Continue(()),
                }
            });
    }

    /// The first live member after us on the ring.
    fn ring_successor(&self) -> Option<Arc<Ident>> {
        let mut next = None;
        self.walk_successors(|id| {
            next = Some(id);
            ControlFlow::Break(())
        });
        self.view.get(next?).map(|s| s.ident.clone())
    }

    /// Queues a probe of `id`, just suspected by another node, when we are one of its monitors: the
    /// `suspicion_mult` live members before it on the ring. Our own probe is independent evidence, and
    /// it carries the suspicion to the suspect (the buddy system) so a live one refutes at once.
    pub(super) fn check_if_monitored(&mut self, id: Id, token: u16) {
        if !self.ring_monitoring() || self.leaving {
            return;
        }
        let watch = self.cfg.suspicion_mult.max(1) as usize;
        let (mut ahead, mut ours) = (0, false);
        self.walk_successors(|m| {
            if m == id {
                ours = true;
                return ControlFlow::Break(());
            }
            ahead += 1;
            if ahead >= watch {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if ours && self.probing.checks.len() < watch {
            self.probing.checks.push((id, token));
        }
    }

    /// The oldest queued check whose suspicion still stands and that we have not confirmed already.
    fn next_check(&mut self) -> Option<Arc<Ident>> {
        while !self.probing.checks.is_empty() {
            let (id, token) = self.probing.checks.remove(0);
            let Some(s) = self.view.get(id) else {
                continue;
            };
            let ours = self
                .suspicions
                .get(&id)
                .is_some_and(|sus| sus.raised_by(&self.me));
            if s.token == token && s.state == State::Suspect && !ours {
                return Some(s.ident.clone());
            }
        }
        None
    }

    /// The next live member in this round's order; a new round starts when one ends.
    pub(super) fn next_probe_target(&mut self) -> Option<Arc<Ident>> {
        // Alone (not joined yet), a round would walk every id below ours to find nobody.
        if self.view.live() <= 1 {
            return None;
        }
        // Bounded: at most the rest of this round and one full new round.
        for round in 0..2 {
            while let Some(id) = self.probing.order.next_id() {
                if id == self.me_id {
                    continue;
                }
                if let Some(s) = self.view.get(id).filter(|s| s.state.is_live()) {
                    return Some(s.ident.clone());
                }
            }
            if round == 0 {
                self.probing.order = ProbeOrder::new(self.view.id_bound(), &mut self.rng);
            }
        }
        None
    }

    pub(super) fn on_probe_direct_timeout(&mut self, seq: u32) {
        let Some(p) = self.probing.current.as_ref().filter(|p| p.seq == seq) else {
            return;
        };
        let (target, addr, tid) = (p.target.name().clone(), p.target.addr, p.target.id());
        self.pick_random(self.cfg.indirect_checks, |id, s| {
            id != tid && s.state == State::Alive
        });
        for k in 0..self.picks.len() {
            let picked = self.view.get(self.picks[k]);
            let Some((dst, patches)) = picked.map(|s| (s.ident.addr, self.takes_patches(s))) else {
                continue;
            };
            self.out.push_back(Out::PingReq {
                dst,
                seq,
                target: target.clone(),
                addr,
                patches,
            });
        }
        let sent = self.picks.len() as u32;
        if let Some(p) = self.probing.current.as_mut() {
            p.expected_nacks = sent;
        }
    }

    /// Reconnecting is how the halves of a healed partition find each other again. It starts with a
    /// ping, because most failed members are simply gone: a full-state exchange sent to each of them
    /// every interval cost a 5000-node cluster's nodes together ~167 exchanges per second towards dead
    /// addresses, and on one machine that load delayed the very failure news it followed.
    pub(super) fn ping_a_failed_member(&mut self) {
        let Some(target) = self.pick_one(|s| s.state == State::Dead) else {
            return;
        };
        let seq = self.next_seq();
        self.stats.reconnect_pings += 1;
        self.out.push_back(Out::Ping {
            dst: target.addr,
            seq,
            target: target.name().clone(),
            want_coord: false,
        });
        // An answer later than the next interval's ping is ignored; that ping replaces this one.
        self.probing.reconnect = Some(ReconnectPing { seq, target });
    }

    pub(super) fn on_reconnect_answer(&mut self, target: &Arc<Ident>) {
        let still_failed = self
            .view
            .get(target.id())
            .is_some_and(|s| Arc::ptr_eq(s.ident.name(), target.name()) && s.state == State::Dead);
        if still_failed {
            self.stats.reconnects += 1;
            // What it announced may be out of date: it may be back as another build at this address.
            self.exchange_with(target.addr, false, false);
        }
    }
}
