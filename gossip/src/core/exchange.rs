//! Joins and full-state exchanges: the join handshake, periodic and catch-up exchanges, and the chain of
//! exchanges after a join that closes what a join storm leaves open.

use super::*;

/// Join and exchange state.
#[derive(Default)]
pub(super) struct Exchanges {
    pub(super) joins: Vec<PendingJoin>,
    /// Full-state replies in flight.
    pub(super) sync_replies: usize,
    /// A chain of post-join exchanges is scheduled.
    pub(super) post_join_armed: bool,
    pub(super) behind: Option<Behind>,
}

pub(super) struct PendingJoin {
    pub(super) seq: u32,
    pub(super) addr: SocketAddr,
    pub(super) attempts: u32,
}

/// Since when peers' pings and acks have said they know more members than our view holds.
pub(super) struct Behind {
    pub(super) since: Instant,
    /// Our member count then; any change restarts the wait.
    pub(super) known: usize,
}

/// Members missing from our view past which a catch-up exchange asks for records whole, however
/// large the cluster (two halves healing from a partition are each "only" half behind).
const FAR_BEHIND: usize = 64;

/// What a merged full state held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merged {
    /// Member entries (the records riding along are not counted).
    pub members: usize,
    /// It came authenticated: only then may the answer carry records whole.
    pub trusted: bool,
    /// Its sender wrote records in the short form, so it reads them too: the `short_records` to
    /// answer with ([`Core::encode_state`]).
    pub short_records: bool,
}

impl Core {
    /// Starts a join: sends our full state to `addr` and asks for theirs, retrying every [`JOIN_RETRY`].
    /// Returns the sequence number that [`Event::SyncReply`] (or [`Event::JoinTimeout`]) will carry.
    pub fn join(&mut self, now: Instant, addr: SocketAddr) -> u32 {
        // A joiner does not know what the seed reads: the long form.
        let seq = self.send_sync(addr, true, false);
        tracing::debug!(%addr, seq, "joining");
        self.exchanges.joins.push(PendingJoin {
            seq,
            addr,
            attempts: 1,
        });
        self.timers.push(now + JOIN_RETRY, Timer::JoinRetry(seq));
        seq
    }

    /// Starts a full-state exchange with `addr`: with `whole_records` for a join (the joiner needs
    /// every record), else with record versions only (anti-entropy: what differs is then pulled).
    /// `short_records` when the peer reads records in the short form.
    pub(super) fn send_sync(
        &mut self,
        addr: SocketAddr,
        whole_records: bool,
        short_records: bool,
    ) -> u32 {
        let seq = self.next_seq();
        self.resend_sync(addr, seq, whole_records, short_records);
        seq
    }

    pub(super) fn resend_sync(
        &mut self,
        addr: SocketAddr,
        seq: u32,
        whole_records: bool,
        short_records: bool,
    ) {
        self.out.push_back(Out::Sync {
            dst: addr,
            seq,
            want_reply: true,
            is_reply: false,
            whole_records,
            short_records,
            cursor: 0,
        });
    }

    /// True when member `m` reads records in the short form and this node writes it.
    pub(super) fn short_records_for(&self, m: &Ident) -> bool {
        self.cfg.short_records && m.features & wire::FEATURE_SHORT_RECORDS != 0
    }

    /// Appends states from `cursor` on (0: ourselves, then id `c - 1` onwards) while they fit in `mtu`;
    /// returns how many, and where to go on if some are left.
    pub(super) fn fill_states(
        &self,
        buf: &mut Vec<u8>,
        cursor: usize,
        mtu: usize,
        whole_records: bool,
        short_records: bool,
    ) -> (usize, Option<usize>) {
        let inline = if whole_records {
            records::inline_limit(mtu)
        } else {
            0
        };
        let mut n = 0;
        if cursor == 0 {
            let me = self.local_slot();
            let prev = wire::encode_delta_after(buf, &self.state_delta(me), None);
            n = 1;
            if let Some(r) = records::record_delta(me, inline, false) {
                wire::encode_delta_after(buf, &r, prev.filter(|_| short_records));
                n += 1;
            }
        }
        let from = cursor.saturating_sub(1);
        for s in self.view.iter_from(from) {
            let id = s.ident.id();
            if id == self.me_id {
                continue;
            }
            let mark = buf.len();
            let prev = wire::encode_delta_after(buf, &self.state_delta(s), None);
            let record = records::record_delta(s, inline, false);
            if let Some(r) = &record {
                wire::encode_delta_after(buf, r, prev.filter(|_| short_records));
            }
            if buf.len() > mtu && n > 0 {
                buf.truncate(mark);
                return (n, Some(id as usize + 1));
            }
            n += 1 + usize::from(record.is_some());
        }
        (n, None)
    }

    /// One random member other than us that `eligible` accepts.
    pub(super) fn pick_one(&mut self, eligible: impl Fn(&Slot) -> bool) -> Option<Arc<Ident>> {
        self.pick_random(1, |_, s| eligible(s));
        let id = *self.picks.first()?;
        self.view.get(id).map(|s| s.ident.clone())
    }

    pub(super) fn sync_with_random(&mut self, eligible: impl Fn(&Slot) -> bool) {
        if let Some(m) = self.pick_one(eligible) {
            self.exchange_with(m.addr, false, self.short_records_for(&m));
        }
    }

    /// Exchanges state with `addr`: record versions only (what differs is then pulled), or with
    /// `whole_records` every record whole, as a join does. `short_records` when the peer reads records
    /// in the short form.
    pub(super) fn exchange_with(
        &mut self,
        addr: SocketAddr,
        whole_records: bool,
        short_records: bool,
    ) {
        if self.cfg.external_push_pull {
            self.events.push_back(Event::PushPull {
                addr,
                whole_records,
                short_records,
            });
        } else {
            // Periodic anti-entropy: one attempt, no retries (the next period tries again).
            self.send_sync(addr, whole_records, short_records);
        }
    }

    /// A hole that gossip will not fill: a member whose news died out before it reached us (or before
    /// anyone knew us), missed by our post-join exchanges too. In 5000-node UDP runs such holes waited up
    /// to 150 s for the periodic push/pull (270 s apart at that size). Pings and acks carry the sender's
    /// member count; if peers keep knowing more than we do while our view stands still for longer than
    /// news takes to spread, exchange state with one of them. Only a node that is behind and stuck pays,
    /// at most once per wait; news that is merely still spreading changes our view and restarts it.
    pub(super) fn compare_known(&mut self, now: Instant, from: SocketAddr, known: u32) {
        let mine = self.view.len();
        // An unauthenticated count must not make us send our state anywhere. A member that knows
        // only itself still catches up: one restarted with a wiped state whose join list named only
        // itself is probed by the others (to them it never left), and this is how it finds them.
        if known == 0 || !self.trusted || self.leaving {
            return;
        }
        if known as usize <= mine {
            // Someone is level with us or behind: whatever we lack may still be spreading.
            self.exchanges.behind = None;
            return;
        }
        let wait = self.post_join_settle() * 2;
        match &self.exchanges.behind {
            Some(b) if b.known == mine && now.saturating_duration_since(b.since) >= wait => {
                self.stats.catch_up_syncs += 1;
                // Far behind (a wiped restart, a long partition): most records would differ, and
                // pulling each from this one peer would be a burst of thousands of datagrams; ask
                // for them whole instead. Only the address is known here: the long form, which
                // every member reads.
                let (known, behind) = (known as usize, known as usize - mine);
                let far_behind = known > 2 * mine || behind > FAR_BEHIND;
                self.exchange_with(from, far_behind, false);
                self.exchanges.behind = Some(Behind {
                    since: now,
                    known: mine,
                });
            }
            Some(b) if b.known == mine => {}
            _ => {
                self.exchanges.behind = Some(Behind {
                    since: now,
                    known: mine,
                })
            }
        }
    }

    /// Appends our full state (every member, ourselves first) for a stream push/pull: with
    /// `whole_records` (a join) every record whole, whatever its size; else their versions only. With
    /// `short_records` (the peer reads them: [`Event::PushPull`], [`Merged`]) records go in the short
    /// form.
    pub fn encode_state(&self, buf: &mut Vec<u8>, whole_records: bool, short_records: bool) {
        let me = self.local_slot();
        let others = self.view.iter().filter(|s| s.ident.id() != self.me_id);
        // Whole records up to half the largest state a peer accepts, versions past that (pulled or
        // fetched after the join): thousands of large records must not make every join fail.
        let budget = std::cell::Cell::new(if whole_records {
            wire::MAX_STATE / 2
        } else {
            0
        });
        wire::encode_state_with(
            buf,
            std::iter::once(me).chain(others).flat_map(|s| {
                let size = s.record.as_ref().map_or(0, |r| r.body.len());
                let inline = if size <= budget.get() {
                    budget.set(budget.get() - size);
                    wire::MAX_RECORD
                } else {
                    0
                };
                std::iter::once(self.state_delta(s)).chain(records::record_delta(s, inline, false))
            }),
            short_records && self.cfg.short_records,
        );
    }

    /// Like [`Core::merge_state`] for a state that did not arrive authenticated: membership applies,
    /// records (and user events) do not.
    pub fn merge_untrusted_state(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<Merged, DecodeError> {
        self.trusted = false;
        let r = self.merge_state(now, from, bytes);
        self.trusted = true;
        r
    }

    /// Merges a full state received from `from` (remote failures are only suspected).
    pub fn merge_state(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<Merged, DecodeError> {
        let st = wire::decode_state(bytes)?;
        self.stats.states_merged += 1;
        for (k, d) in st.deltas().enumerate() {
            // The sender puts itself first (see `encode_state`), under the address it announces, which
            // need not be where the stream came from (an advertise address, NAT).
            let from = match d {
                Delta::Alive { addr, .. } if k == 0 => addr,
                _ => from,
            };
            self.apply(now, d, Some(from));
        }
        self.records.clock = Some(now);
        self.records.exchanged = true;
        self.apply_records(now, from, st.deltas());
        self.records.exchanged = false;
        Ok(Merged {
            members: st
                .deltas()
                .filter(|d| !matches!(d, Delta::Record { .. }))
                .count(),
            trusted: self.trusted,
            short_records: st.has_short_records(),
        })
    }

    /// Notes that a join completed (here or by a stream push/pull). Deltas that spread while we were
    /// joining may have died out before anyone knew us; the exchanges that follow once they have run
    /// their course close that gap.
    pub fn joined(&mut self, now: Instant) {
        self.arm_post_join_sync(now);
    }

    /// Starts a chain of post-join exchanges unless one is running: after our own join, and when a
    /// node we did not know joins through us. A seed never joins itself, yet in a join storm it misses
    /// members that joined through other seeds as much as any joiner does; without its own exchanges
    /// it (and everyone who joins through it) waited for the periodic push/pull.
    pub(super) fn arm_post_join_sync(&mut self, now: Instant) {
        if self.exchanges.post_join_armed {
            return;
        }
        self.exchanges.post_join_armed = true;
        let settle = self.post_join_settle();
        self.timers.push(
            now + settle,
            Timer::PostJoinSync {
                left: POST_JOIN_SYNCS,
                mark: u64::MAX,
            },
        );
    }

    pub(super) fn post_join_settle(&self) -> Duration {
        self.cfg.gossip_interval * self.cfg.retransmit_limit(self.view.live())
    }

    /// In a join storm the queues serve the newest deltas first, so older ones can die out before
    /// reaching us, and the peer of a single exchange may lack the same ones. An exchange that still
    /// teaches members is a sign of such holes: exchange again, up to [`POST_JOIN_SYNCS`] in all,
    /// rather than wait for the periodic push/pull (minutes apart in large clusters).
    pub(super) fn post_join_sync(&mut self, now: Instant, left: u8, mark: u64) {
        let first = mark == u64::MAX;
        if left == 0 || (!first && self.stats.learned_by_sync == mark) {
            self.exchanges.post_join_armed = false;
            return;
        }
        self.stats.post_join_syncs += 1;
        let mark = self.stats.learned_by_sync;
        self.sync_with_random(|s| s.state.is_live());
        let settle = self.post_join_settle();
        self.timers.push(
            now + settle,
            Timer::PostJoinSync {
                left: left - 1,
                mark,
            },
        );
    }

    pub(super) fn state_delta<'a>(&'a self, s: &'a Slot) -> Delta<'a> {
        let name = s.ident.name();
        match s.state {
            State::Alive => Delta::Alive {
                name,
                incarnation: s.incarnation,
                addr: s.ident.addr,
                tags: &s.ident.tags,
            },
            State::Suspect => Delta::Suspect {
                name,
                incarnation: s.incarnation,
                from: &self.me,
            },
            State::Dead => Delta::Dead {
                name,
                incarnation: s.incarnation,
                from: &self.me,
            },
            State::Left => Delta::Left {
                name,
                incarnation: s.incarnation,
            },
        }
    }
}
