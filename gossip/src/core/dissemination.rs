//! What goes out: datagrams built from queued work, piggybacked member deltas, the gossip tick, and user
//! events.

use super::*;

/// User events seen and sent.
pub(super) struct UserEvents {
    /// Recently seen user events (origin, id), oldest first, for de-duplication.
    pub(super) seen: VecDeque<(Arc<str>, u32)>,
    /// Id of our last event.
    pub(super) next_id: u32,
}

impl UserEvents {
    /// No events seen; our ids start after `first`.
    pub(super) fn starting_at(first: u32) -> Self {
        UserEvents {
            seen: VecDeque::new(),
            next_id: first,
        }
    }
}

impl Core {
    /// Spreads an application event to every member (delivered as [`Event::User`] in trusted packets).
    pub fn user_event(&mut self, kind: EventKind, payload: &[u8]) -> Result<(), UserEventError> {
        // On the wire the kind is the payload's first byte.
        if payload.len() + 1 > wire::MAX_USER_PAYLOAD {
            return Err(UserEventError::TooLarge(payload.len()));
        }
        let mut tagged = Vec::with_capacity(payload.len() + 1);
        tagged.push(kind.0);
        tagged.extend_from_slice(payload);
        self.user_events.next_id = self.user_events.next_id.wrapping_add(1);
        let id = self.user_events.next_id;
        let me = self.me.clone();
        self.remember_event(&me, id);
        self.enqueue_event(&me, id, &tagged);
        Ok(())
    }

    pub(super) fn remember_event(&mut self, origin: &Arc<str>, id: u32) -> bool {
        if self
            .user_events
            .seen
            .iter()
            .any(|(o, i)| *i == id && **o == **origin)
        {
            return false;
        }
        if self.user_events.seen.len() >= 1024 {
            self.user_events.seen.pop_front();
        }
        self.user_events.seen.push_back((origin.clone(), id));
        true
    }

    pub(super) fn enqueue_event(&mut self, origin: &Arc<str>, id: u32, payload: &[u8]) {
        let mut bytes = Vec::new();
        let d = Delta::User {
            origin,
            id,
            payload,
        };
        wire::encode_delta(&mut bytes, &d);
        // Keyed apart from the origin's own state so an event never supersedes (or is superseded by) it.
        self.broadcasts.push(Item::Encoded(Box::new(Encoded {
            origin: origin.clone(),
            event: id,
            bytes: bytes.into(),
        })));
    }

    /// Writes the next datagram into `buf` (cleared first) and says where it goes.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<Transmit> {
        loop {
            let Some(out) = self.out.pop_front() else {
                if self.out.capacity() > 256 {
                    self.out.shrink_to(16);
                }
                return None;
            };
            buf.clear();
            let limit = self.cfg.retransmit_limit(self.view.live());
            // Fewer sends of a record only while every live member can repair a miss.
            let news = self.news_repairs() && self.view.live_without_news() == 0;
            self.broadcasts
                .set_record_limit(if news { records::RECORD_SENDS } else { 0 });
            let mtu = self.cfg.mtu;
            // Record patches go only to members that announced they read them.
            let mut patches = false;
            let (dst, at, mut count, piggyback) = match out {
                Out::Ping {
                    dst,
                    seq,
                    ref target,
                    want_coord,
                } => {
                    let known = self.view.len() as u32;
                    let target_slot = self.lookup(target).and_then(|id| self.view.get(id));
                    // Not to a failed member: it may be back as another build at the same address.
                    let current = target_slot.filter(|s| s.ident.addr == dst && s.state.is_live());
                    patches = current.is_some_and(|s| self.takes_patches(s));
                    let mut listed = std::mem::take(&mut self.news_scratch);
                    let news = current
                        .filter(|s| self.takes_news(s))
                        .and_then(|_| wire::News::new(self.news_list(seq, &mut listed), &listed));
                    let msg = Message::Ping {
                        seq,
                        target,
                        known,
                        want_coord,
                        takes_patches: patches,
                        news,
                    };
                    let at = wire::encode_header(buf, &msg);
                    self.news_scratch = listed;
                    // Buddy system: tell a suspect it is suspected so it can refute at once.
                    let mut n = 0;
                    if self.cfg.lifeguard
                        && let Some(s) = target_slot
                        && s.state == State::Suspect
                    {
                        wire::encode_delta(
                            buf,
                            &Delta::Suspect {
                                name: target,
                                incarnation: s.incarnation,
                                from: &self.me,
                            },
                        );
                        n = 1;
                    }
                    (dst, at, n, true)
                }
                Out::PingReq {
                    dst,
                    seq,
                    ref target,
                    addr,
                    patches: p,
                } => {
                    patches = p;
                    let msg = Message::PingReq {
                        seq,
                        target,
                        addr,
                        nack: self.cfg.lifeguard,
                    };
                    (dst, wire::encode_header(buf, &msg), 0, true)
                }
                Out::Ack {
                    dst,
                    seq,
                    coord,
                    patches: p,
                    ref repair,
                } => {
                    patches = p;
                    let known = self.view.len() as u32;
                    let coord = coord
                        .then(|| self.coordinate().map(wire::WireCoord::from_coordinate))
                        .flatten();
                    let at = wire::encode_header(buf, &Message::Ack { seq, known, coord });
                    let n = self.encode_repairs(buf, repair, patches);
                    (dst, at, n, true)
                }
                Out::Nack { dst, seq } => (
                    dst,
                    wire::encode_header(buf, &Message::Nack { seq }),
                    0,
                    true,
                ),
                Out::Gossip { dst, patches: p } => {
                    patches = p;
                    (dst, wire::encode_header(buf, &Message::Gossip), 0, true)
                }
                Out::Pull {
                    dst,
                    ref name,
                    version,
                    whole,
                } => {
                    let msg = Message::Pull {
                        requester: &self.me,
                        name,
                        version,
                    };
                    let at = wire::encode_header(buf, &msg);
                    // No piggyback on pulls and their answers: they go to members that just heard
                    // the news, and would spend its retransmissions where they teach nothing. A pull
                    // carries only the version we hold, so the answer can be a patch against it.
                    let held = self.lookup(name).and_then(|id| self.view.get(id));
                    let held = held.filter(|_| self.cfg.record_patches && !whole);
                    let n = put_delta(buf, held.and_then(|s| records::record_delta(s, 0, false)));
                    (dst, at, n, false)
                }
                Out::PullReply { dst, id, have } => {
                    let at = wire::encode_header(buf, &Message::Gossip);
                    let answer = self.view.get(id).and_then(|s| {
                        let base = s.record.as_ref()?.patch.as_ref().map(|p| p.base);
                        let patch = have.is_some() && base == have;
                        records::record_delta(s, records::inline_limit(mtu), patch)
                    });
                    let n = put_delta(buf, answer);
                    (dst, at, n, false)
                }
                Out::Record {
                    dst,
                    id,
                    tree,
                    patches,
                } => {
                    let msg = match tree {
                        Some(level) => Message::Tree { level },
                        None => Message::Gossip,
                    };
                    let at = wire::encode_header(buf, &msg);
                    let record = self.view.get(id).and_then(|s| {
                        records::record_delta(s, records::inline_limit(mtu), patches)
                    });
                    let n = put_delta(buf, record);
                    (dst, at, n, false)
                }
                Out::Sync {
                    dst,
                    seq,
                    want_reply,
                    is_reply,
                    whole_records,
                    short_records,
                    cursor,
                } => {
                    let msg = Message::Sync {
                        seq,
                        want_reply,
                        is_reply,
                        whole_records,
                    };
                    let at = wire::encode_header(buf, &msg);
                    let (n, next) =
                        self.fill_states(buf, cursor, mtu, whole_records, short_records);
                    if let Some(next) = next {
                        self.out.push_front(Out::Sync {
                            dst,
                            seq,
                            want_reply: false,
                            is_reply,
                            whole_records,
                            short_records,
                            cursor: next,
                        });
                    } else if is_reply {
                        self.exchanges.sync_replies = self.exchanges.sync_replies.saturating_sub(1);
                    }
                    (dst, at, n, false)
                }
            };
            if piggyback {
                let room = mtu.saturating_sub(buf.len());
                let (view, me) = (&self.view, &self.me);
                let inline = records::inline_limit(mtu);
                count += self.broadcasts.fill(
                    buf,
                    room,
                    limit,
                    u16::MAX as usize - count,
                    |item, sent, out| encode_item(view, me, (inline, sent, patches), item, out),
                );
            }
            if matches!(
                out,
                Out::Gossip { .. } | Out::PullReply { .. } | Out::Record { .. }
            ) && count == 0
            {
                continue;
            }
            wire::set_count(buf, at, count as u16);
            self.stats.packets_out += 1;
            self.stats.bytes_out += buf.len() as u64;
            return Some(Transmit {
                dst,
                len: buf.len(),
            });
        }
    }

    /// Appends the records of `ids` (a news list's answer) within the datagram: as patches when
    /// `patches` and they have one (the prober most likely missed only the latest change), else whole,
    /// else (too large for what room is left) as their version, which the prober then pulls or
    /// fetches. Returns how many.
    fn encode_repairs(&mut self, buf: &mut Vec<u8>, ids: &[Id], patches: bool) -> usize {
        let (mtu, inline) = (self.cfg.mtu, records::inline_limit(self.cfg.mtu));
        let mut n = 0;
        for &id in ids {
            let Some(s) = self.view.get(id) else {
                continue;
            };
            let mark = buf.len();
            for limit in [inline, 0] {
                let Some(d) = records::record_delta(s, limit, patches && limit > 0) else {
                    break;
                };
                wire::encode_delta(buf, &d);
                if buf.len() <= mtu {
                    n += 1;
                    break;
                }
                buf.truncate(mark);
            }
        }
        self.stats.record_news_sent += n as u64;
        n
    }

    pub(super) fn on_gossip_tick(&mut self, now: Instant) {
        self.timers
            .push(now + self.cfg.gossip_interval, Timer::Gossip);
        if self.broadcasts.is_empty() {
            return;
        }
        let window = self.cfg.gossip_to_the_dead_time;
        self.died
            .retain(|_, at| now.saturating_duration_since(*at) < window);
        // Taken out for the pick, which borrows the core.
        let died = std::mem::take(&mut self.died);
        self.pick_random(self.cfg.gossip_nodes, |id, s| {
            s.state.is_live() || (s.state == State::Dead && died.contains_key(&id))
        });
        self.died = died;
        for k in 0..self.picks.len() {
            if let Some(s) = self.view.get(self.picks[k]) {
                let patches = self.takes_patches(s);
                self.out.push_back(Out::Gossip {
                    dst: s.ident.addr,
                    patches,
                });
            }
        }
    }

    /// Fills `self.picks` with up to `k` distinct random non-local members accepted by `ok`.
    pub(super) fn pick_random(&mut self, k: usize, ok: impl Fn(Id, &Slot) -> bool) {
        self.picks.clear();
        let bound = self.view.id_bound();
        if self.view.len() <= 1 || k == 0 {
            return;
        }
        // Dense views: bounded rejection sampling over ids, no full scan.
        if bound > 64 && self.view.len() * 2 >= bound {
            for _ in 0..k * 8 {
                let id = self.rng.below(bound) as Id;
                if id != self.me_id
                    && !self.picks.contains(&id)
                    && self.view.get(id).is_some_and(|s| ok(id, s))
                {
                    self.picks.push(id);
                    if self.picks.len() == k {
                        return;
                    }
                }
            }
            if !self.picks.is_empty() {
                return;
            }
        }
        // Small or sparse views (or unlucky draws): reservoir sampling over all of them.
        let mut seen = 0usize;
        for s in self.view.iter() {
            let id = s.ident.id();
            if id == self.me_id || !ok(id, s) {
                continue;
            }
            seen += 1;
            if self.picks.len() < k {
                self.picks.push(id);
            } else {
                let j = self.rng.below(seen);
                if j < k {
                    self.picks[j] = id;
                }
            }
        }
        self.rng.shuffle(&mut self.picks);
    }
}

/// Encodes a queued member delta from the view's current slot; false when the slot is gone or has moved
/// on to another state (a newer delta would have replaced the entry, so this one is stale).
///
/// A record goes whole on its first [`records::INLINE_SENDS`] sends (while the news is young, a send
/// mostly reaches a member that lacks it, which then needs no pull), as a digest after that (by then
/// a send mostly reaches a member that has it: a few bytes instead of the record). To a member that
/// takes patches, a record made by a small change goes as that change on its first
/// [`records::PATCH_SENDS`] sends.
fn encode_item(
    view: &View,
    me: &str,
    (inline, sent, patches): (usize, u32, bool),
    item: &Item,
    out: &mut Vec<u8>,
) -> bool {
    let (id, state, from) = match item {
        Item::Member { id, state, from } => (id, state, from),
        Item::Record { id } => {
            let limit = if sent < records::INLINE_SENDS {
                inline
            } else {
                0
            };
            let patch = patches && sent < records::PATCH_SENDS;
            let record = view
                .get(*id)
                .and_then(|s| records::record_delta(s, limit, patch));
            let Some(d) = record else {
                return false;
            };
            wire::encode_delta(out, &d);
            return true;
        }
        Item::Encoded(_) => return false,
    };
    let Some(s) = view.get(*id).filter(|s| s.state == *state) else {
        return false;
    };
    let (name, incarnation) = (&**s.ident.name(), s.incarnation);
    let from = from.as_deref().unwrap_or(me);
    let d = match s.state {
        State::Alive => Delta::Alive {
            name,
            incarnation,
            addr: s.ident.addr,
            tags: &s.ident.tags,
        },
        State::Suspect => Delta::Suspect {
            name,
            incarnation,
            from,
        },
        State::Dead => Delta::Dead {
            name,
            incarnation,
            from,
        },
        State::Left => Delta::Left { name, incarnation },
    };
    wire::encode_delta(out, &d);
    true
}

/// Appends `d`, if any; returns how many deltas that is.
fn put_delta(buf: &mut Vec<u8>, d: Option<Delta<'_>>) -> usize {
    d.map_or(0, |d| {
        wire::encode_delta(buf, &d);
        1
    })
}
