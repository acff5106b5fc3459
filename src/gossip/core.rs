//! The SWIM + Lifeguard state machine. Inputs: `handle_packet`, `handle_timeout` and commands; outputs are
//! polled: `poll_transmit`, `poll_timeout`, `poll_event`. Time is whatever `Instant` the driver passes in.

use std::collections::VecDeque;

// foldhash: several times faster than SipHash on short names, still seeded per process.
use foldhash::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::awareness::Awareness;
use super::broadcast::{BroadcastQueue, Encoded, Item};
use super::config::GossipConfig;
use super::incarnation;
use super::member::{Member, State};
use super::probe_order::ProbeOrder;
use super::rng::Rng;
use super::roster::{Id, Ident, Roster};
use super::suspicion::Suspicion;
use super::tags;
use super::timers::TimerHeap;
use super::view::{Slot, View};
use super::wire::{self, DecodeError, Delta, Message};

/// Who the local node is.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Unique node name (1-255 bytes).
    pub name: String,
    /// Address others reach our gossip socket at.
    pub addr: SocketAddr,
    /// Encoded tags (see [`tags::encode`]).
    pub tags: Vec<u8>,
    /// Starting incarnation; refutation raises it past anything the cluster remembers.
    pub incarnation: u32,
}

/// A datagram written into the caller's buffer by [`Core::poll_transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub dst: SocketAddr,
    /// Bytes written.
    pub len: usize,
}

/// Something the driver or the application should know about.
#[derive(Debug, Clone)]
pub enum Event {
    /// A member appeared or its state, address, incarnation or tags changed.
    Member(Member),
    /// A failed or left member was forgotten.
    Reaped(Arc<str>),
    /// A full-state reply to our request `seq` arrived from `from` (a join succeeded).
    SyncReply {
        /// Sequence number returned by [`Core::join`].
        seq: u32,
        /// Who answered.
        from: SocketAddr,
    },
    /// An application event (see [`Core::user_event`]) arrived in a trusted packet.
    User {
        /// Node that sent it.
        origin: Arc<str>,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// Exchange full state with `addr` over the driver's stream transport (only with
    /// [`GossipConfig::external_push_pull`]; otherwise the core does it over datagrams itself).
    PushPull {
        /// Member to exchange with.
        addr: SocketAddr,
    },
    /// The join `seq` got no reply after every attempt.
    JoinTimeout {
        /// Sequence number returned by [`Core::join`].
        seq: u32,
        /// The address that never answered.
        addr: SocketAddr,
    },
}

/// Most full-state exchanges a join is followed by; the first always runs, the others only while the
/// exchanges before them still taught us members that gossip had not.
const POST_JOIN_SYNCS: u8 = 4;

/// Time between join attempts.
pub const JOIN_RETRY: Duration = Duration::from_secs(1);
/// Join attempts before [`Event::JoinTimeout`].
pub const JOIN_ATTEMPTS: u32 = 5;

/// `force_leave` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForceLeaveError {
    /// No member by that name.
    NotFound,
    /// The local node cannot force-leave itself.
    IsLocal,
}

impl std::fmt::Display for ForceLeaveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForceLeaveError::NotFound => f.write_str("no member by that name"),
            ForceLeaveError::IsLocal => f.write_str("cannot force-leave the local node"),
        }
    }
}
impl std::error::Error for ForceLeaveError {}

/// Counters for operators and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to `handle_packet`.
    pub packets_in: u64,
    /// Datagrams produced by `poll_transmit`.
    pub packets_out: u64,
    /// Bytes in.
    pub bytes_in: u64,
    /// Bytes out.
    pub bytes_out: u64,
    /// Dropped: malformed or truncated.
    pub dropped_malformed: u64,
    /// Dropped: unknown protocol version.
    pub dropped_version: u64,
    /// Dropped: larger than the codec accepts.
    pub dropped_oversize: u64,
    /// Dropped: too many indirect probes in flight.
    pub dropped_relay_full: u64,
    /// Dropped: too many full-state replies in flight.
    pub dropped_sync_busy: u64,
    /// Pings addressed to another node name (stale address).
    pub ping_name_mismatch: u64,
    /// Times we refuted a suspicion of ourselves.
    pub refutes: u64,
    /// Probes that ended in suspicion.
    pub probes_failed: u64,
    /// Members we declared failed.
    pub declared_failed: u64,
    /// User events ignored because their packet was not trusted (e.g. unencrypted).
    pub dropped_untrusted_events: u64,
    /// Full-state exchanges started after a join to close gaps it left.
    pub post_join_syncs: u64,
    /// Members first learned from a full-state exchange with a third node, not through gossip.
    pub learned_by_sync: u64,
    /// Pings sent to a failed member to learn whether it is reachable again.
    pub reconnect_pings: u64,
    /// Full-state exchanges begun with a failed member that answered its reconnect ping.
    pub reconnects: u64,
    /// Full-state exchanges begun because peers kept knowing more members than we did.
    pub catch_up_syncs: u64,
    /// Claims dropped for an incarnation too far ahead of the member's known one (forged).
    pub dropped_implausible: u64,
}

#[derive(Debug)]
enum Out {
    Ping {
        dst: SocketAddr,
        seq: u32,
        target: Arc<str>,
    },
    PingReq {
        dst: SocketAddr,
        seq: u32,
        target: Arc<str>,
        addr: SocketAddr,
    },
    Ack {
        dst: SocketAddr,
        seq: u32,
    },
    Nack {
        dst: SocketAddr,
        seq: u32,
    },
    Gossip {
        dst: SocketAddr,
    },
    Sync {
        dst: SocketAddr,
        seq: u32,
        want_reply: bool,
        is_reply: bool,
        cursor: usize,
    },
}

/// How an alive delta reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Gossip,
    /// A full-state exchange, about the exchanging peer itself.
    SyncPeer,
    /// A full-state exchange, about someone else.
    SyncThirdParty,
}

#[derive(Debug)]
enum Timer {
    Probe,
    Gossip,
    ProbeDirect(u32),
    RelayNack(u32),
    RelayExpire(u32),
    Suspicion(Id, u32),
    Reap(Id, u32),
    PushPull,
    Reconnect,
    JoinRetry(u32),
    /// `left` exchanges may still run; `mark` is [`Stats::learned_by_sync`] when the last one began.
    PostJoinSync {
        left: u8,
        mark: u64,
    },
}

struct PendingJoin {
    seq: u32,
    addr: SocketAddr,
    attempts: u32,
}

struct Probe {
    seq: u32,
    /// Holding the record keeps the target's id valid while the probe runs.
    target: Arc<Ident>,
    expected_nacks: u32,
    nacks: u32,
}

/// A reconnect ping in flight; only an answer from the failed member earns it a full-state exchange.
struct ReconnectPing {
    seq: u32,
    /// Holding the record keeps the member's id valid until the answer.
    target: Arc<Ident>,
}

/// Since when peers' pings and acks have said they know more members than our view holds.
struct Behind {
    since: Instant,
    /// Our member count then; any change restarts the wait.
    known: usize,
}

struct Relay {
    origin: SocketAddr,
    origin_seq: u32,
    nack: bool,
}

/// Tenths of a second: the resolution of [`Slot::since`].
const SINCE_UNIT: Duration = Duration::from_millis(100);

/// The gossip state machine of one node.
pub struct Core {
    cfg: GossipConfig,
    rng: Rng,
    awareness: Awareness,
    roster: Arc<Roster>,
    me: Arc<str>,
    me_id: Id,
    view: View,
    /// Origin of [`Slot::since`].
    epoch: Instant,
    /// This probe round's order over ids.
    probe_order: ProbeOrder,
    probe: Option<Probe>,
    reconnect: Option<ReconnectPing>,
    behind: Option<Behind>,
    relays: HashMap<u32, Relay>,
    seq: u32,
    broadcasts: BroadcastQueue,
    out: VecDeque<Out>,
    events: VecDeque<Event>,
    timers: TimerHeap<Timer>,
    // Boxed and apart from the slots: only suspects carry one.
    suspicions: HashMap<Id, Box<Suspicion>>,
    leaving: bool,
    joins: Vec<PendingJoin>,
    /// Recently seen user events (origin, id), oldest first, for de-duplication.
    seen_events: VecDeque<(Arc<str>, u32)>,
    next_event_id: u32,
    /// Whether the packet being handled may carry user events.
    trusted: bool,
    sync_replies: usize,
    /// A chain of post-join exchanges is scheduled.
    post_join_armed: bool,
    token: u32,
    stats: Stats,
    picks: Vec<Id>,
}

impl Core {
    /// Creates a core for `id`, starting its timers at `now`; `seed` makes it deterministic.
    pub fn new(cfg: GossipConfig, id: Identity, now: Instant, seed: u64) -> Result<Self, String> {
        Self::with_roster(cfg, id, now, seed, Roster::new())
    }

    /// Like [`Core::new`], interning member names in `roster`, which other cores of this process may
    /// share (each keeps its own view; only names and announced records are shared).
    pub fn with_roster(
        cfg: GossipConfig,
        id: Identity,
        now: Instant,
        seed: u64,
        roster: Arc<Roster>,
    ) -> Result<Self, String> {
        cfg.validate()?;
        if !wire::valid_name(&id.name) {
            return Err("node name must be 1-255 bytes".into());
        }
        tags::validate(&id.tags).map_err(|e| e.to_string())?;
        let name = roster.name(&id.name);
        let me_ident = roster.ident(&name, id.addr, &id.tags, id.incarnation);
        let me_id = name.id();
        let mut view = View::default();
        view.insert(Slot {
            ident: me_ident,
            incarnation: id.incarnation,
            state: State::Alive,
            token: 0,
            since: 0,
        });
        let mut rng = Rng::new(seed);
        let seq = rng.next_u64() as u32;
        let mut core = Core {
            awareness: Awareness::new(if cfg.lifeguard {
                cfg.awareness_max_multiplier
            } else {
                1
            }),
            rng,
            me: name.text().clone(),
            me_id,
            roster,
            view,
            epoch: now,
            probe_order: ProbeOrder::empty(),
            probe: None,
            reconnect: None,
            behind: None,
            relays: HashMap::default(),
            seq,
            broadcasts: BroadcastQueue::default(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            timers: TimerHeap::default(),
            suspicions: HashMap::default(),
            leaving: false,
            joins: Vec::new(),
            seen_events: VecDeque::new(),
            next_event_id: seq,
            trusted: true,
            sync_replies: 0,
            post_join_armed: false,
            token: 0,
            stats: Stats::default(),
            picks: Vec::new(),
            cfg,
        };
        // Random phases keep thousands of nodes started together from probing in lockstep.
        let jitter = |rng: &mut Rng, d: Duration| d.mul_f64(rng.below(1000) as f64 / 1000.0);
        let p = jitter(&mut core.rng, core.cfg.probe_interval);
        core.timers.push(now + p, Timer::Probe);
        let g = jitter(&mut core.rng, core.cfg.gossip_interval);
        core.timers.push(now + g, Timer::Gossip);
        let pp = core.cfg.push_pull_interval + jitter(&mut core.rng, core.cfg.push_pull_interval);
        core.timers.push(now + pp, Timer::PushPull);
        core.timers
            .push(now + core.cfg.reconnect_interval, Timer::Reconnect);
        core.events.push_back(Event::Member(core.local()));
        Ok(core)
    }

    /// Starts from `view`, a membership known some other way (loadgen begins large runs from one
    /// converged view that all its cores share copy-on-write). Our own slot in it is replaced by ours.
    /// No member events are emitted for what the view holds.
    pub fn adopt_view(&mut self, view: &View) {
        let me = self.local_slot().clone();
        self.suspicions.clear();
        self.view = view.clone();
        if self
            .view
            .get(self.me_id)
            .is_none_or(|s| !Arc::ptr_eq(&s.ident, &me.ident) || s.state != me.state)
        {
            self.view.insert(me);
        }
        self.probe_order = ProbeOrder::empty();
    }

    /// This core's view of the membership.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// The roster this core interns names in.
    pub fn roster(&self) -> &Arc<Roster> {
        &self.roster
    }

    /// The local member.
    pub fn local(&self) -> Member {
        self.member_of(self.local_slot())
    }

    /// Every known member, in id order.
    pub fn members(&self) -> impl Iterator<Item = Member> + '_ {
        self.view.iter().map(|s| self.member_of(s))
    }

    /// A member by name.
    pub fn member(&self, name: &str) -> Option<Member> {
        self.lookup(name)
            .and_then(|id| self.view.get(id))
            .map(|s| self.member_of(s))
    }

    fn member_of(&self, s: &Slot) -> Member {
        Member {
            name: s.ident.name().clone(),
            addr: s.ident.addr,
            incarnation: s.incarnation,
            state: s.state,
            tags: s.ident.tags.clone(),
            since: self.epoch + SINCE_UNIT * s.since,
        }
    }

    /// The local member's slot.
    pub fn local_slot(&self) -> &Slot {
        self.view
            .get(self.me_id)
            .expect("the local member is never removed from its own view")
    }

    /// The id of `name` if this core knows it. Valid while its slot lives: the slot holds the name.
    fn lookup(&self, name: &str) -> Option<Id> {
        let id = self.roster.find(name)?.id();
        self.view.get(id).map(|_| id)
    }

    fn since(&self, now: Instant) -> u32 {
        let t = now.saturating_duration_since(self.epoch);
        (t.as_millis() / SINCE_UNIT.as_millis()).min(u32::MAX as u128) as u32
    }

    /// Members currently alive or suspect (including the local node unless it left).
    pub fn num_live(&self) -> usize {
        self.view.live()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Lifeguard local health score (0 = healthy).
    pub fn health_score(&self) -> u32 {
        self.awareness.score()
    }

    /// Deltas waiting to be piggybacked.
    pub fn pending_broadcasts(&self) -> usize {
        self.broadcasts.len()
    }

    /// The configuration in use.
    pub fn config(&self) -> &GossipConfig {
        &self.cfg
    }

    /// Starts a join: sends our full state to `addr` and asks for theirs, retrying every [`JOIN_RETRY`].
    /// Returns the sequence number that [`Event::SyncReply`] (or [`Event::JoinTimeout`]) will carry.
    pub fn join(&mut self, now: Instant, addr: SocketAddr) -> u32 {
        let seq = self.send_sync(addr);
        self.joins.push(PendingJoin {
            seq,
            addr,
            attempts: 1,
        });
        self.timers.push(now + JOIN_RETRY, Timer::JoinRetry(seq));
        seq
    }

    fn send_sync(&mut self, addr: SocketAddr) -> u32 {
        let seq = self.next_seq();
        self.resend_sync(addr, seq);
        seq
    }

    fn resend_sync(&mut self, addr: SocketAddr, seq: u32) {
        self.out.push_back(Out::Sync {
            dst: addr,
            seq,
            want_reply: true,
            is_reply: false,
            cursor: 0,
        });
    }

    /// Leaves gracefully: announces `left` at a higher incarnation and stops probing.
    pub fn leave(&mut self, now: Instant) {
        if self.leaving {
            return;
        }
        self.leaving = true;
        self.probe = None;
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

    /// Spreads an application event to every member (delivered as [`Event::User`] in trusted packets).
    pub fn user_event(&mut self, payload: &[u8]) -> Result<(), String> {
        if payload.len() > wire::MAX_USER_PAYLOAD {
            return Err(format!(
                "user event payload above {} bytes",
                wire::MAX_USER_PAYLOAD
            ));
        }
        self.next_event_id = self.next_event_id.wrapping_add(1);
        let id = self.next_event_id;
        let me = self.me.clone();
        self.remember_event(&me, id);
        self.enqueue_event(&me, id, payload);
        Ok(())
    }

    fn remember_event(&mut self, origin: &Arc<str>, id: u32) -> bool {
        if self
            .seen_events
            .iter()
            .any(|(o, i)| *i == id && **o == **origin)
        {
            return false;
        }
        if self.seen_events.len() >= 1024 {
            self.seen_events.pop_front();
        }
        self.seen_events.push_back((origin.clone(), id));
        true
    }

    fn enqueue_event(&mut self, origin: &Arc<str>, id: u32, payload: &[u8]) {
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

    /// Feeds a datagram that did not arrive authenticated (e.g. plaintext while a keyring is set):
    /// membership deltas apply, user events are dropped.
    pub fn handle_untrusted_packet(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.trusted = false;
        self.handle_packet(now, from, bytes);
        self.trusted = true;
    }

    /// Feeds one received datagram.
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.stats.packets_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        let p = match wire::decode(bytes) {
            Ok(p) => p,
            Err(DecodeError::Version(_)) => {
                self.stats.dropped_version += 1;
                return;
            }
            Err(DecodeError::Oversize) => {
                self.stats.dropped_oversize += 1;
                return;
            }
            Err(_) => {
                self.stats.dropped_malformed += 1;
                return;
            }
        };
        let is_sync = matches!(p.msg, Message::Sync { .. });
        for d in p.deltas() {
            self.apply(now, d, is_sync.then_some(from));
        }
        match p.msg {
            Message::Ping { seq, target, known } => {
                self.compare_known(now, from, known);
                if target == &*self.me {
                    self.out.push_back(Out::Ack { dst: from, seq });
                } else {
                    self.stats.ping_name_mismatch += 1;
                }
            }
            Message::PingReq {
                seq,
                target,
                addr,
                nack,
            } => self.relay(now, from, seq, target, addr, nack),
            Message::Ack { seq, known } => {
                self.compare_known(now, from, known);
                self.on_ack(seq);
            }
            Message::Nack { seq } => {
                if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) {
                    p.nacks += 1;
                }
            }
            Message::Gossip => {}
            Message::Sync {
                seq,
                want_reply,
                is_reply,
            } => {
                if is_reply && let Some(k) = self.joins.iter().position(|j| j.seq == seq) {
                    self.joins.swap_remove(k);
                    self.events.push_back(Event::SyncReply { seq, from });
                    self.joined(now);
                }
                if want_reply {
                    if self.sync_replies >= self.cfg.max_sync_replies {
                        self.stats.dropped_sync_busy += 1;
                    } else {
                        self.sync_replies += 1;
                        self.out.push_back(Out::Sync {
                            dst: from,
                            seq,
                            want_reply: false,
                            is_reply: true,
                            cursor: 0,
                        });
                    }
                }
            }
        }
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.timers.pop_expired(now) {
            match t {
                Timer::Probe => self.on_probe_tick(now),
                Timer::Gossip => self.on_gossip_tick(now),
                Timer::ProbeDirect(seq) => self.on_probe_direct_timeout(seq),
                Timer::RelayNack(seq) => {
                    if let Some(r) = self.relays.get(&seq).filter(|r| r.nack) {
                        let (dst, seq) = (r.origin, r.origin_seq);
                        self.out.push_back(Out::Nack { dst, seq });
                    }
                }
                Timer::RelayExpire(seq) => {
                    self.relays.remove(&seq);
                }
                Timer::Suspicion(id, token) => self.on_suspicion_timer(now, id, token),
                Timer::Reap(id, token) => self.reap(id, token),
                Timer::PushPull => {
                    let every = self.cfg.push_pull_interval_for(self.view.live());
                    self.timers.push(now + every, Timer::PushPull);
                    self.sync_with_random(|s| s.state.is_live());
                }
                Timer::JoinRetry(seq) => {
                    let Some(k) = self.joins.iter().position(|j| j.seq == seq) else {
                        continue;
                    };
                    if self.joins[k].attempts >= JOIN_ATTEMPTS {
                        let j = self.joins.swap_remove(k);
                        self.events
                            .push_back(Event::JoinTimeout { seq, addr: j.addr });
                    } else {
                        // UDP may lose the request or the reply: ask again under the same number.
                        self.joins[k].attempts += 1;
                        let addr = self.joins[k].addr;
                        self.resend_sync(addr, seq);
                        self.timers.push(now + JOIN_RETRY, Timer::JoinRetry(seq));
                    }
                }
                Timer::PostJoinSync { left, mark } => self.post_join_sync(now, left, mark),
                Timer::Reconnect => {
                    self.timers
                        .push(now + self.cfg.reconnect_interval, Timer::Reconnect);
                    self.ping_a_failed_member();
                }
            }
        }
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        let ev = self.events.pop_front();
        if ev.is_none() && self.events.capacity() > 16 {
            // Member events come in bursts (a join, a full-state exchange) and are ~100 bytes each;
            // keeping a burst's capacity cost loadgen's 5000 cores 10 KB each for nothing.
            self.events.shrink_to(4);
        }
        ev
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
            let mtu = self.cfg.mtu;
            let (dst, at, mut count, piggyback) = match out {
                Out::Ping {
                    dst,
                    seq,
                    ref target,
                } => {
                    let known = self.view.len() as u32;
                    let at = wire::encode_header(buf, &Message::Ping { seq, target, known });
                    // Buddy system: tell a suspect it is suspected so it can refute at once.
                    let mut n = 0;
                    if self.cfg.lifeguard
                        && let Some(s) = self.lookup(target).and_then(|id| self.view.get(id))
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
                } => {
                    let msg = Message::PingReq {
                        seq,
                        target,
                        addr,
                        nack: self.cfg.lifeguard,
                    };
                    (dst, wire::encode_header(buf, &msg), 0, true)
                }
                Out::Ack { dst, seq } => {
                    let known = self.view.len() as u32;
                    let at = wire::encode_header(buf, &Message::Ack { seq, known });
                    (dst, at, 0, true)
                }
                Out::Nack { dst, seq } => (
                    dst,
                    wire::encode_header(buf, &Message::Nack { seq }),
                    0,
                    true,
                ),
                Out::Gossip { dst } => (dst, wire::encode_header(buf, &Message::Gossip), 0, true),
                Out::Sync {
                    dst,
                    seq,
                    want_reply,
                    is_reply,
                    cursor,
                } => {
                    let msg = Message::Sync {
                        seq,
                        want_reply,
                        is_reply,
                    };
                    let at = wire::encode_header(buf, &msg);
                    let (n, next) = self.fill_states(buf, cursor, mtu);
                    if let Some(next) = next {
                        self.out.push_front(Out::Sync {
                            dst,
                            seq,
                            want_reply: false,
                            is_reply,
                            cursor: next,
                        });
                    } else if is_reply {
                        self.sync_replies = self.sync_replies.saturating_sub(1);
                    }
                    (dst, at, n, false)
                }
            };
            if piggyback {
                let room = mtu.saturating_sub(buf.len());
                let (view, me) = (&self.view, &self.me);
                count += self.broadcasts.fill(
                    buf,
                    room,
                    limit,
                    u16::MAX as usize - count,
                    |item, out| encode_item(view, me, item, out),
                );
            }
            if matches!(out, Out::Gossip { .. }) && count == 0 {
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

    /// Appends states from `cursor` on (0: ourselves, then id `c - 1` onwards) while they fit in `mtu`;
    /// returns how many, and where to go on if some are left.
    fn fill_states(&self, buf: &mut Vec<u8>, cursor: usize, mtu: usize) -> (usize, Option<usize>) {
        let mut n = 0;
        if cursor == 0 {
            wire::encode_delta(buf, &self.state_delta(self.local_slot()));
            n = 1;
        }
        let from = cursor.saturating_sub(1);
        for s in self.view.iter_from(from) {
            let id = s.ident.id();
            if id == self.me_id {
                continue;
            }
            let mark = buf.len();
            wire::encode_delta(buf, &self.state_delta(s));
            if buf.len() > mtu && n > 0 {
                buf.truncate(mark);
                return (n, Some(id as usize + 1));
            }
            n += 1;
        }
        (n, None)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn next_token(&mut self) -> u32 {
        self.token = self.token.wrapping_add(1);
        self.token
    }

    /// Queues a delta announcing member `id`'s current `state` (`from`: who suspected or declared it
    /// dead), superseding any older one about the same member.
    fn enqueue(&mut self, id: Id, state: State, from: Option<&str>) {
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
    fn insert_alive(
        &mut self,
        name: &str,
        (addr, tags): (SocketAddr, &[u8]),
        inc: u32,
        since: u32,
    ) -> Id {
        let n = self.roster.name(name);
        let ident = self.roster.ident(&n, addr, tags, inc);
        let token = self.next_token();
        self.view.insert(Slot {
            ident,
            incarnation: inc,
            state: State::Alive,
            token,
            since,
        });
        n.id()
    }

    /// Announces ourselves alive at `inc` with `tags`.
    fn reannounce_self(&mut self, inc: u32, tags: &[u8]) {
        let (addr, since) = (self.local_slot().ident.addr, self.local_slot().since);
        let me = self.me.clone();
        self.insert_alive(&me, (addr, tags), inc, since);
        self.enqueue(self.me_id, State::Alive, None);
        self.events.push_back(Event::Member(self.local()));
    }

    fn set_state(&mut self, now: Instant, id: Id, state: State, incarnation: u32) {
        let token = self.next_token();
        let since = self.since(now);
        let changed = self.view.update(id, |s| {
            if s.state != state {
                s.since = since;
            }
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
        if let Some(s) = self.view.get(id) {
            self.events.push_back(Event::Member(self.member_of(s)));
        }
    }

    fn refute(&mut self, inc: u32) {
        self.stats.refutes += 1;
        self.awareness.apply(1);
        let me = self.local_slot();
        let inc = incarnation::next(incarnation::later(me.incarnation, inc));
        let tags = me.ident.tags.clone();
        self.reannounce_self(inc, &tags);
    }

    /// Applies one delta; `sync_from` is the sender when it came in a full-state exchange.
    fn apply(&mut self, now: Instant, d: Delta<'_>, sync_from: Option<SocketAddr>) {
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
            Delta::Suspect {
                name,
                incarnation,
                from,
            } => self.on_suspect(now, name, incarnation, from),
            // A full-state exchange only hints at a failure: verify it ourselves (memberlist mergeState).
            Delta::Dead {
                name,
                incarnation,
                from,
            } if from_sync => self.on_suspect(now, name, incarnation, from),
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
                    self.events.push_back(Event::User {
                        origin,
                        payload: payload.to_vec(),
                    });
                }
            }
        }
    }

    fn on_alive(
        &mut self,
        now: Instant,
        name: &str,
        inc: u32,
        (addr, tags): (SocketAddr, &[u8]),
        via: Via,
    ) {
        let Some(id) = self.lookup(name) else {
            let since = self.since(now);
            let id = self.insert_alive(name, (addr, tags), inc, since);
            self.probe_order.add_late(id, &mut self.rng);
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

    fn on_suspect(&mut self, now: Instant, name: &str, inc: u32, from: &str) {
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
                let at = sus.deadline();
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
        let min = self
            .cfg
            .probe_interval
            .mul_f64(self.cfg.suspicion_mult as f64 * (n as f64).log10().max(1.0));
        let max = if self.cfg.lifeguard {
            min * self.cfg.suspicion_max_timeout_mult
        } else {
            min
        };
        self.set_state(now, id, State::Suspect, inc);
        let sus = Suspicion::new(now, min, max, k, Arc::from(from));
        let at = sus.deadline();
        self.suspicions.insert(id, Box::new(sus));
        let token = self.view.get(id).map_or(0, |s| s.token);
        self.timers.push(at, Timer::Suspicion(id, token));
        self.enqueue(id, State::Suspect, Some(from));
    }

    fn on_dead(&mut self, now: Instant, id: Id, inc: u32, from: &str) {
        let Some(s) = self.view.get(id) else { return };
        if !plausible(&mut self.stats, inc, s.incarnation) {
            return;
        }
        if id != self.me_id && (incarnation::newer(s.incarnation, inc) || !s.state.is_live()) {
            return;
        }
        self.mark_gone(now, id, State::Dead, inc, from);
    }

    fn on_left(&mut self, now: Instant, id: Id, inc: u32) {
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
    fn mark_gone(&mut self, now: Instant, id: Id, state: State, inc: u32, from: &str) {
        if id == self.me_id {
            if !self.leaving && incarnation::at_least(inc, self.local_slot().incarnation) {
                self.refute(inc);
            }
            return;
        }
        self.set_state(now, id, state, inc);
        let Some(token) = self.view.get(id).map(|s| s.token) else {
            return;
        };
        let keep = if state == State::Dead {
            self.cfg.reconnect_timeout
        } else {
            self.cfg.tombstone_timeout
        };
        self.timers.push(now + keep, Timer::Reap(id, token));
        self.enqueue(id, state, (state == State::Dead).then_some(from));
    }

    fn on_suspicion_timer(&mut self, now: Instant, id: Id, token: u32) {
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
        let (inc, me) = (s.incarnation, self.me.clone());
        self.on_dead(now, id, inc, &me);
    }

    fn reap(&mut self, id: Id, token: u32) {
        let Some(s) = self.view.get(id) else {
            return;
        };
        if id == self.me_id || s.token != token || s.state.is_live() {
            return;
        }
        self.suspicions.remove(&id);
        if let Some(gone) = self.view.remove(id) {
            self.events
                .push_back(Event::Reaped(gone.ident.name().clone()));
        }
    }

    fn relay(
        &mut self,
        now: Instant,
        origin: SocketAddr,
        origin_seq: u32,
        target: &str,
        addr: SocketAddr,
        nack: bool,
    ) {
        if self.relays.len() >= self.cfg.max_relays {
            self.stats.dropped_relay_full += 1;
            return;
        }
        let seq = self.next_seq();
        self.relays.insert(
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
        self.out.push_back(Out::Ping {
            dst: addr,
            seq,
            target,
        });
        if nack {
            // Leave the origin time to count our nack before its probe interval ends.
            let wait = self.cfg.probe_timeout.mul_f64(0.8);
            self.timers.push(now + wait, Timer::RelayNack(seq));
        }
        self.timers
            .push(now + self.cfg.probe_interval, Timer::RelayExpire(seq));
    }

    fn on_ack(&mut self, seq: u32) {
        if self.probe.as_ref().is_some_and(|p| p.seq == seq) {
            self.probe = None;
            self.awareness.apply(-1);
            return;
        }
        if let Some(r) = self.reconnect.take_if(|r| r.seq == seq) {
            self.on_reconnect_answer(&r.target);
            return;
        }
        if let Some(r) = self.relays.remove(&seq) {
            self.out.push_back(Out::Ack {
                dst: r.origin,
                seq: r.origin_seq,
            });
        }
    }

    fn on_probe_tick(&mut self, now: Instant) {
        let interval = self.awareness.scale(self.cfg.probe_interval);
        self.timers.push(now + interval, Timer::Probe);
        // The previous probe's deadline is this tick.
        if let Some(p) = self.probe.take() {
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
        let Some(target) = self.next_probe_target() else {
            return;
        };
        let seq = self.next_seq();
        let (dst, name) = (target.addr, target.name().clone());
        self.probe = Some(Probe {
            seq,
            target,
            expected_nacks: 0,
            nacks: 0,
        });
        self.out.push_back(Out::Ping {
            dst,
            seq,
            target: name,
        });
        let direct = self.awareness.scale(self.cfg.probe_timeout);
        self.timers.push(now + direct, Timer::ProbeDirect(seq));
    }

    /// The next live member in this round's order; a new round starts when one ends.
    fn next_probe_target(&mut self) -> Option<Arc<Ident>> {
        // Alone (not joined yet), a round would walk every id below ours to find nobody.
        if self.view.live() <= 1 {
            return None;
        }
        // Bounded: at most the rest of this round and one full new round.
        for round in 0..2 {
            while let Some(id) = self.probe_order.next_id() {
                if id == self.me_id {
                    continue;
                }
                if let Some(s) = self.view.get(id).filter(|s| s.state.is_live()) {
                    return Some(s.ident.clone());
                }
            }
            if round == 0 {
                self.probe_order = ProbeOrder::new(self.view.id_bound(), &mut self.rng);
            }
        }
        None
    }

    fn on_probe_direct_timeout(&mut self, seq: u32) {
        let Some(p) = self.probe.as_ref().filter(|p| p.seq == seq) else {
            return;
        };
        let (target, addr, tid) = (p.target.name().clone(), p.target.addr, p.target.id());
        self.pick_random(self.cfg.indirect_checks, |id, s| {
            id != tid && s.state == State::Alive
        });
        for k in 0..self.picks.len() {
            let Some(dst) = self.view.get(self.picks[k]).map(|s| s.ident.addr) else {
                continue;
            };
            self.out.push_back(Out::PingReq {
                dst,
                seq,
                target: target.clone(),
                addr,
            });
        }
        let sent = self.picks.len() as u32;
        if let Some(p) = self.probe.as_mut() {
            p.expected_nacks = sent;
        }
    }

    fn on_gossip_tick(&mut self, now: Instant) {
        self.timers
            .push(now + self.cfg.gossip_interval, Timer::Gossip);
        if self.broadcasts.is_empty() {
            return;
        }
        let dead_window = self.since(now).saturating_sub(
            (self.cfg.gossip_to_the_dead_time.as_millis() / SINCE_UNIT.as_millis()) as u32,
        );
        self.pick_random(self.cfg.gossip_nodes, |_, s| {
            s.state.is_live() || (s.state == State::Dead && s.since > dead_window)
        });
        for k in 0..self.picks.len() {
            if let Some(s) = self.view.get(self.picks[k]) {
                self.out.push_back(Out::Gossip { dst: s.ident.addr });
            }
        }
    }

    /// One random member other than us that `eligible` accepts.
    fn pick_one(&mut self, eligible: impl Fn(&Slot) -> bool) -> Option<Arc<Ident>> {
        self.pick_random(1, |_, s| eligible(s));
        let id = *self.picks.first()?;
        self.view.get(id).map(|s| s.ident.clone())
    }

    fn sync_with_random(&mut self, eligible: impl Fn(&Slot) -> bool) {
        if let Some(m) = self.pick_one(eligible) {
            self.exchange_with(m.addr);
        }
    }

    fn exchange_with(&mut self, addr: SocketAddr) {
        if self.cfg.external_push_pull {
            self.events.push_back(Event::PushPull { addr });
        } else {
            // Periodic anti-entropy: one attempt, no retries (the next period tries again).
            self.send_sync(addr);
        }
    }

    /// Reconnecting is how the halves of a healed partition find each other again. It starts with a
    /// ping, because most failed members are simply gone: a full-state exchange sent to each of them
    /// every interval cost a 5000-node cluster's nodes together ~167 exchanges per second towards dead
    /// addresses, and on one machine that load delayed the very failure news it followed.
    fn ping_a_failed_member(&mut self) {
        let Some(target) = self.pick_one(|s| s.state == State::Dead) else {
            return;
        };
        let seq = self.next_seq();
        self.stats.reconnect_pings += 1;
        self.out.push_back(Out::Ping {
            dst: target.addr,
            seq,
            target: target.name().clone(),
        });
        // An answer later than the next interval's ping is ignored; that ping replaces this one.
        self.reconnect = Some(ReconnectPing { seq, target });
    }

    /// A hole that gossip will not fill: a member whose news died out before it reached us (or before
    /// anyone knew us), missed by our post-join exchanges too. In 5000-node UDP runs such holes waited up
    /// to 150 s for the periodic push/pull (270 s apart at that size). Pings and acks carry the sender's
    /// member count; if peers keep knowing more than we do while our view stands still for longer than
    /// news takes to spread, exchange state with one of them. Only a node that is behind and stuck pays,
    /// at most once per wait; news that is merely still spreading changes our view and restarts it.
    fn compare_known(&mut self, now: Instant, from: SocketAddr, known: u32) {
        let mine = self.view.len();
        // An unauthenticated count must not make us send our state anywhere.
        if known == 0 || !self.trusted || self.view.live() <= 1 {
            return;
        }
        if known as usize <= mine {
            // Someone is level with us or behind: whatever we lack may still be spreading.
            self.behind = None;
            return;
        }
        let wait = self.post_join_settle() * 2;
        match &self.behind {
            Some(b) if b.known == mine && now.saturating_duration_since(b.since) >= wait => {
                self.stats.catch_up_syncs += 1;
                self.exchange_with(from);
                self.behind = Some(Behind {
                    since: now,
                    known: mine,
                });
            }
            Some(b) if b.known == mine => {}
            _ => {
                self.behind = Some(Behind {
                    since: now,
                    known: mine,
                })
            }
        }
    }

    fn on_reconnect_answer(&mut self, target: &Arc<Ident>) {
        let still_failed = self
            .view
            .get(target.id())
            .is_some_and(|s| Arc::ptr_eq(s.ident.name(), target.name()) && s.state == State::Dead);
        if still_failed {
            self.stats.reconnects += 1;
            self.exchange_with(target.addr);
        }
    }

    /// Appends our full state (every member, ourselves first) for a stream push/pull.
    pub fn encode_state(&self, buf: &mut Vec<u8>) {
        let me = self.local_slot();
        let others = self.view.iter().filter(|s| s.ident.id() != self.me_id);
        wire::encode_state(
            buf,
            std::iter::once(me)
                .chain(others)
                .map(|s| self.state_delta(s)),
        );
    }

    /// Merges a full state received from `from` (remote failures are only suspected); returns how many
    /// entries it held.
    pub fn merge_state(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<usize, DecodeError> {
        let st = wire::decode_state(bytes)?;
        for (k, d) in st.deltas().enumerate() {
            // The sender puts itself first (see `encode_state`), under the address it announces, which
            // need not be where the stream came from (an advertise address, NAT).
            let from = match d {
                Delta::Alive { addr, .. } if k == 0 => addr,
                _ => from,
            };
            self.apply(now, d, Some(from));
        }
        Ok(st.len())
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
    fn arm_post_join_sync(&mut self, now: Instant) {
        if self.post_join_armed {
            return;
        }
        self.post_join_armed = true;
        let settle = self.post_join_settle();
        self.timers.push(
            now + settle,
            Timer::PostJoinSync {
                left: POST_JOIN_SYNCS,
                mark: u64::MAX,
            },
        );
    }

    fn post_join_settle(&self) -> Duration {
        self.cfg.gossip_interval * self.cfg.retransmit_limit(self.view.live())
    }

    /// In a join storm the queues serve the newest deltas first, so older ones can die out before
    /// reaching us, and the peer of a single exchange may lack the same ones. An exchange that still
    /// teaches members is a sign of such holes: exchange again, up to [`POST_JOIN_SYNCS`] in all,
    /// rather than wait for the periodic push/pull (minutes apart in large clusters).
    fn post_join_sync(&mut self, now: Instant, left: u8, mark: u64) {
        let first = mark == u64::MAX;
        if left == 0 || (!first && self.stats.learned_by_sync == mark) {
            self.post_join_armed = false;
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

    fn state_delta<'a>(&'a self, s: &'a Slot) -> Delta<'a> {
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

    /// Fills `self.picks` with up to `k` distinct random non-local members accepted by `ok`.
    fn pick_random(&mut self, k: usize, ok: impl Fn(Id, &Slot) -> bool) {
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
/// False (and counted) for a claim too far ahead of the incarnation we know to be genuine.
fn plausible(stats: &mut Stats, claim: u32, known: u32) -> bool {
    let ok = incarnation::plausible(claim, known);
    if !ok {
        stats.dropped_implausible += 1;
    }
    ok
}

fn encode_item(view: &View, me: &str, item: &Item, out: &mut Vec<u8>) -> bool {
    let Item::Member { id, state, from } = item else {
        return false;
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
