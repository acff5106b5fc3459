//! Applying membership deltas: the incarnation rules, suspicion and its timeout, refutation of claims
//! about ourselves, leaving, and reaping the gone.

use super::*;

impl Core {
    /// Leaves gracefully: announces `left` at a higher incarnation and stops probing.
    pub fn leave(&mut self, now: Instant) {
        if self.leaving {
            return;
        }
        self.leaving = true;
        self.probing.current = None;
        let inc = incarnation::next(self.local_slot().incarnation);
        self.set_state(now, self.me_id, State::Left, inc);
        self.enqueue(self.me_id, State::Left, None);
    }

    /// True once our `left` announcement went to enough peers (or there is nobody to tell).
    pub fn leave_propagated(&self) -> bool {
        if !self.leaving {
            return false;
        }
        let peers = self.view.live();
        match self.broadcasts.transmits(self.me_id) {
            None => true,
            Some(t) => t as usize >= self.cfg.gossip_nodes.min(peers),
        }
    }

    /// Replaces the local tags and announces them.
    pub fn set_tags(&mut self, encoded: Vec<u8>) -> Result<(), tags::TagsError> {
        tags::validate(&encoded)?;
        let encoded = announced_tags(&self.cfg, encoded)?;
        let inc = incarnation::next(self.local_slot().incarnation);
        self.reannounce_self(inc, &encoded);
        Ok(())
    }

    /// Marks a member `left` cluster-wide. A live member refutes it and stays.
    pub fn force_leave(&mut self, now: Instant, name: &str) -> Result<(), ForceLeaveError> {
        let id = self.lookup(name).ok_or(ForceLeaveError::NotFound)?;
        if id == self.me_id {
            return Err(ForceLeaveError::IsLocal);
        }
        let inc = self.view.get(id).map_or(0, |s| s.incarnation);
        self.on_left(now, id, inc);
        Ok(())
    }

    /// Queues a delta announcing member `id`'s current `state` (`from`: who suspected or declared it
    /// dead), superseding any older one about the same member.
    pub(super) fn enqueue(&mut self, id: Id, state: State, from: Option<&str>) {
        let from = from.map(|f| {
            if f == &*self.me {
                self.me.clone()
            } else {
                Arc::from(f)
            }
        });
        self.broadcasts.push(Item::Member { id, state, from });
    }

    /// Interns `name`'s announced record and puts it in the view alive at `inc`; returns its id.
    pub(super) fn insert_alive(
        &mut self,
        name: &str,
        (addr, tags): (SocketAddr, &[u8]),
        inc: u32,
    ) -> Id {
        let n = self.roster.name(name);
        let ident = self.roster.ident(&n, addr, tags, inc);
        let token = self.next_token();
        // A re-announcement keeps the record; a new member has none yet.
        let record = self.view.get(n.id()).and_then(|s| s.record.clone());
        self.view.insert(Slot {
            ident,
            incarnation: inc,
            state: State::Alive,
            token,
            record,
        });
        n.id()
    }

    /// Announces ourselves alive at `inc` with `tags`.
    pub(super) fn reannounce_self(&mut self, inc: u32, tags: &[u8]) {
        let addr = self.local_slot().ident.addr;
        let me = self.me.clone();
        self.insert_alive(&me, (addr, tags), inc);
        self.enqueue(self.me_id, State::Alive, None);
        self.events.push_back(Event::Member(self.local()));
    }

    pub(super) fn set_state(&mut self, now: Instant, id: Id, state: State, incarnation: u32) {
        let token = self.next_token();
        let changed = self.view.update(id, |s| {
            s.state = state;
            s.incarnation = incarnation;
            s.token = token;
        });
        if changed.is_none() {
            return;
        }
        if state != State::Suspect {
            self.suspicions.remove(&id);
        }
        if state == State::Dead {
            self.died.entry(id).or_insert(now);
        } else {
            self.died.remove(&id);
        }
        if let Some(s) = self.view.get(id) {
            self.events.push_back(Event::Member(self.member_of(s)));
        }
    }

    pub(super) fn refute(&mut self, inc: u32) {
        self.stats.refutes += 1;
        self.awareness.apply(1);
        let me = self.local_slot();
        let claimed = inc;
        let inc = incarnation::next(incarnation::later(me.incarnation, inc));
        tracing::debug!(
            claimed,
            incarnation = inc,
            "refuting a claim that this node is not alive"
        );
        let tags = me.ident.tags.clone();
        self.reannounce_self(inc, &tags);
    }

    /// Applies one delta; `sync_from` is the sender when it came in a full-state exchange.
    pub(super) fn apply(&mut self, now: Instant, d: Delta<'_>, sync_from: Option<SocketAddr>) {
        let from_sync = sync_from.is_some();
        match d {
            Delta::Alive {
                name,
                incarnation,
                addr,
                tags,
            } => {
                let via = match sync_from {
                    None => Via::Gossip,
                    Some(f) if f == addr => Via::SyncPeer,
                    Some(_) => Via::SyncThirdParty,
                };
                self.on_alive(now, name, incarnation, (addr, tags), via)
            }
            // A full-state exchange only hints at a failure, and its sender names itself as the
            // suspector whether or not it ever probed the member. Taken in our own name, as memberlist's
            // mergeState does, it adds at most one confirmation however many peers relay it: evidence
            // towards a floor must come from probes.
            Delta::Suspect {
                name, incarnation, ..
            }
            | Delta::Dead {
                name, incarnation, ..
            } if from_sync => {
                let me = self.me.clone();
                self.on_suspect(now, name, incarnation, &me)
            }
            Delta::Suspect {
                name,
                incarnation,
                from,
            } => self.on_suspect(now, name, incarnation, from),
            Delta::Dead {
                name,
                incarnation,
                from,
            } => {
                if let Some(id) = self.lookup(name) {
                    self.on_dead(now, id, incarnation, from);
                }
            }
            Delta::Left { name, incarnation } => {
                if let Some(id) = self.lookup(name) {
                    self.on_left(now, id, incarnation);
                }
            }
            Delta::User {
                origin,
                id,
                payload,
            } => {
                if !self.trusted {
                    self.stats.dropped_untrusted_events += 1;
                    return;
                }
                let origin: Arc<str> = match self.roster.find(origin) {
                    Some(n) => n.text().clone(),
                    None => Arc::from(origin),
                };
                if self.remember_event(&origin, id) {
                    self.enqueue_event(&origin, id, payload);
                    // Relayed whatever its kind (a newer node may speak kinds we do not); only
                    // well-formed ones are reported.
                    if let [kind, rest @ ..] = payload {
                        self.events.push_back(Event::User {
                            origin,
                            kind: EventKind(*kind),
                            payload: rest.to_vec(),
                        });
                    }
                }
            }
            // Applied by the caller after the packet's membership deltas (`apply_record`).
            Delta::Record { .. } => {}
        }
    }

    pub(super) fn on_alive(
        &mut self,
        now: Instant,
        name: &str,
        inc: u32,
        (addr, tags): (SocketAddr, &[u8]),
        via: Via,
    ) {
        let Some(id) = self.lookup(name) else {
            let id = self.insert_alive(name, (addr, tags), inc);
            self.probing.order.add_late(id, &mut self.rng);
            if let Some(s) = self.view.get(id) {
                self.events.push_back(Event::Member(self.member_of(s)));
            }
            // A member that is merely new to us in a full-state exchange is mostly old news to the
            // cluster: re-gossiping it at the full limit would make every joiner re-send the whole
            // membership (O(N^2) traffic in a join storm). It gets one transmission, enough to patch
            // holes a join race leaves. The exchanging peer itself and real updates are news.
            if via != Via::SyncThirdParty {
                self.enqueue(id, State::Alive, None);
                if via == Via::SyncPeer {
                    // A newcomer exchanging state with us: it is joining through us.
                    self.arm_post_join_sync(now);
                }
            } else {
                self.stats.learned_by_sync += 1;
                self.broadcasts.push_once(id);
            }
            return;
        };
        let Some(s) = self.view.get(id) else { return };
        if !plausible(&mut self.stats, inc, s.incarnation) {
            return;
        }
        if id == self.me_id {
            let conflicting =
                inc == s.incarnation && (addr != s.ident.addr || *tags != *s.ident.tags);
            if !self.leaving && (incarnation::newer(inc, s.incarnation) || conflicting) {
                self.refute(inc);
            }
            return;
        }
        let restarted = !s.state.is_live() && inc == s.incarnation && addr != s.ident.addr;
        if !incarnation::newer(inc, s.incarnation) && !restarted {
            return;
        }
        let ident = match self.roster.find(name) {
            Some(n) => self.roster.ident(&n, addr, tags, inc),
            None => return,
        };
        self.view.update(id, |s| s.ident = ident);
        self.set_state(now, id, State::Alive, inc);
        self.enqueue(id, State::Alive, None);
    }

    pub(super) fn on_suspect(&mut self, now: Instant, name: &str, inc: u32, from: &str) {
        let Some(id) = self.lookup(name) else {
            return;
        };
        let Some(s) = self.view.get(id) else { return };
        if !plausible(&mut self.stats, inc, s.incarnation) {
            return;
        }
        if id == self.me_id {
            if !self.leaving && incarnation::at_least(inc, s.incarnation) {
                self.refute(inc);
            }
            return;
        }
        if incarnation::newer(s.incarnation, inc) || !s.state.is_live() {
            return;
        }
        if s.state == State::Suspect && inc == s.incarnation {
            let token = s.token;
            let Some(sus) = self.suspicions.get_mut(&id) else {
                return;
            };
            if sus.confirm(from) {
                self.stats.suspicion_confirmations += 1;
                let at = sus.deadline();
                tracing::debug!(member = name, confirmed_by = from, "suspicion confirmed");
                self.timers.push(at, Timer::Suspicion(id, token));
                self.enqueue(id, State::Suspect, Some(from));
            }
            return;
        }
        // memberlist: k confirmations expected, none when the cluster is too small to supply them.
        let n = self.view.live().max(1);
        let mut k = self.cfg.suspicion_mult.saturating_sub(2);
        if (n as u32).saturating_sub(2) < k || !self.cfg.lifeguard {
            k = 0;
        }
        let min = self.cfg.suspicion_timeout(n);
        let max = if self.cfg.lifeguard {
            min * self.cfg.suspicion_max_timeout_mult
        } else {
            min
        };
        // One confirmation more than Lifeguard's, when the cluster can supply it.
        let fast = self.ring_monitoring() && k > 0 && (n as u32).saturating_sub(2) > k;
        tracing::debug!(
            member = name,
            incarnation = inc,
            suspector = from,
            timeout_ms = min.as_millis() as u64,
            confirmations = k,
            fast,
            "suspect"
        );
        self.set_state(now, id, State::Suspect, inc);
        self.stats.suspicions += 1;
        let mut sus = Suspicion::new(now, min, max, k, Arc::from(from));
        if fast {
            sus = sus.with_fast_floor(self.cfg.fast_suspicion_timeout(n));
        }
        let at = sus.deadline();
        self.suspicions.insert(id, Box::new(sus));
        let token = self.view.get(id).map_or(0, |s| s.token);
        self.timers.push(at, Timer::Suspicion(id, token));
        self.enqueue(id, State::Suspect, Some(from));
        if from != &*self.me {
            self.check_if_monitored(id, token);
        }
    }

    pub(super) fn on_dead(&mut self, now: Instant, id: Id, inc: u32, from: &str) {
        let Some(s) = self.view.get(id) else { return };
        if !plausible(&mut self.stats, inc, s.incarnation) {
            return;
        }
        if id != self.me_id && (incarnation::newer(s.incarnation, inc) || !s.state.is_live()) {
            return;
        }
        self.mark_gone(now, id, State::Dead, inc, from);
    }

    pub(super) fn on_left(&mut self, now: Instant, id: Id, inc: u32) {
        let Some(s) = self.view.get(id) else { return };
        if !plausible(&mut self.stats, inc, s.incarnation) {
            return;
        }
        if id != self.me_id && (incarnation::newer(s.incarnation, inc) || s.state == State::Left) {
            return;
        }
        self.mark_gone(now, id, State::Left, inc, "");
    }

    /// Moves member `id` to `Dead` or `Left`, schedules its reaping and spreads the news; about
    /// ourselves it is a claim to refute (unless we are leaving).
    pub(super) fn mark_gone(&mut self, now: Instant, id: Id, state: State, inc: u32, from: &str) {
        if id == self.me_id {
            if !self.leaving && incarnation::at_least(inc, self.local_slot().incarnation) {
                self.refute(inc);
            }
            return;
        }
        tracing::debug!(
            member = self.view.get(id).map(|s| &**s.ident.name()),
            incarnation = inc,
            ?state,
            by = from,
            "member gone"
        );
        self.set_state(now, id, state, inc);
        if state == State::Left {
            // A member that left has no services; one that failed keeps them, shown critical.
            self.view.update(id, |s| s.record = None);
            self.forget_fetch(id);
        }
        let Some((token, inc)) = self.view.get(id).map(|s| (s.token, s.incarnation)) else {
            return;
        };
        let keep = if state == State::Dead {
            self.cfg.reconnect_timeout
        } else {
            self.cfg.tombstone_timeout
        };
        self.timers.push(now + keep, Timer::Reap(id, token, inc));
        self.enqueue(id, state, (state == State::Dead).then_some(from));
    }

    pub(super) fn on_suspicion_timer(&mut self, now: Instant, id: Id, token: u16) {
        let Some(s) = self.view.get(id) else {
            return;
        };
        if s.token != token || s.state != State::Suspect {
            return;
        }
        let Some(deadline) = self.suspicions.get(&id).map(|s| s.deadline()) else {
            return;
        };
        if now < deadline {
            return;
        }
        self.stats.declared_failed += 1;
        tracing::debug!(
            member = &**s.ident.name(),
            incarnation = s.incarnation,
            "suspicion timed out without a refutation: declared dead"
        );
        let (inc, me) = (s.incarnation, self.me.clone());
        self.on_dead(now, id, inc, &me);
    }

    /// Forgets a member that stayed dead or left since the timer was set: same token, and the same
    /// incarnation, which also tells a member that came back and went again from a wrapped token.
    pub(super) fn reap(&mut self, id: Id, token: u16, inc: u32) {
        let Some(s) = self.view.get(id) else {
            return;
        };
        if id == self.me_id || s.token != token || s.incarnation != inc || s.state.is_live() {
            return;
        }
        self.suspicions.remove(&id);
        self.died.remove(&id);
        self.forget_fetch(id);
        if let Some(v) = self.vivaldi.as_mut() {
            v.forget(id);
        }
        if let Some(gone) = self.view.remove(id) {
            self.events
                .push_back(Event::Reaped(gone.ident.name().clone()));
        }
    }
}

/// False (and counted) for a claim too far ahead of the incarnation we know to be genuine.
pub(super) fn plausible(stats: &mut Stats, claim: u32, known: u32) -> bool {
    let ok = incarnation::plausible(claim, known);
    if !ok {
        implausible(stats, claim, known);
    }
    ok
}

// Out of line: the check runs for every delta, the drop almost never, and the log call's expansion would
// otherwise weigh on the inlining of the hot path around it.
#[cold]
#[inline(never)]
fn implausible(stats: &mut Stats, claim: u32, known: u32) {
    stats.dropped_implausible += 1;
    tracing::debug!(
        claim,
        known,
        "dropped a claim too far ahead of the member's incarnation"
    );
}
