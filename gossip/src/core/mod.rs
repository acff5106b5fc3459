//! The SWIM + Lifeguard state machine. Inputs: `handle_packet`, `handle_timeout` and commands; outputs are
//! polled: `poll_transmit`, `poll_timeout`, `poll_event`. Time is whatever `Instant` the driver passes in.
//!
//! This file holds the state and the entry points; the work is split by concern: `probing.rs` (failure
//! detection: probes, indirect probes, reconnect pings), `membership.rs` (applying deltas: the
//! incarnation rules, suspicion, refutation, reaping), `dissemination.rs` (what goes out: piggybacked
//! deltas, user events) and `exchange.rs` (joins and full-state exchanges).

use std::collections::VecDeque;

// foldhash: several times faster than SipHash on short names, still seeded per process.
use foldhash::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::awareness::Awareness;
use super::broadcast::{BroadcastQueue, Encoded, Item};
use super::config::GossipConfig;
use super::coordinate::{Coordinate, Vivaldi, VivaldiConfig};
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

mod dissemination;
mod errors;
mod exchange;
mod membership;
mod probing;
mod records;
mod tree;

pub use self::errors::{ForceLeaveError, NewCoreError, UserEventError};
pub use self::exchange::Merged;
pub use self::records::{RECORD_FETCH_TIMEOUT, RECORD_SENDS};
use super::record::Record;

/// Which protocol above the core a user event belongs to: its first byte on the wire. Protocols share
/// the one event channel (ordering, de-duplication, trust) without stepping on each other; each takes
/// a kind from the list below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventKind(pub u8);

impl EventKind {
    /// Gossip key-ring changes (`murmur keyring`).
    pub const KEYRING: EventKind = EventKind(b'K');
    /// Consul's user events (`/v1/event/fire`).
    pub const USER: EventKind = EventKind(b'E');
}

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
        /// The protocol it belongs to.
        kind: EventKind,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// Exchange full state with `addr` over the driver's stream transport (only with
    /// [`GossipConfig::external_push_pull`]; otherwise the core does it over datagrams itself).
    PushPull {
        /// Member to exchange with.
        addr: SocketAddr,
        /// Ask for every record whole, as a join does (we are far behind): pass to
        /// [`Core::encode_state`], and ask the peer for the same.
        whole_records: bool,
        /// It reads records in the short form: pass to [`Core::encode_state`].
        short_records: bool,
    },
    /// A member's record changed (ours included: [`Core::set_record`] reports it here too).
    Record {
        /// The member.
        name: Arc<str>,
        /// Its newest record.
        record: Arc<Record>,
    },
    /// A member's record is newer than ours but too large for a datagram: fetch it over a stream from
    /// `from` (which holds it) and hand it in with [`Core::handle_record`].
    FetchRecord {
        /// The member whose record to fetch.
        name: Arc<str>,
        /// The version announced.
        version: u32,
        /// Gossip address of the member that announced it.
        from: SocketAddr,
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
    /// Member records (ours and others') installed.
    pub records_applied: u64,
    /// Records queued to hand on down the broadcast tree (one per datagram).
    pub records_passed_down: u64,
    /// Records that reached us around the tree (a repair) queued for a ring neighbour, which most
    /// likely missed them too.
    pub records_passed_around: u64,
    /// Record fetches asked of the driver.
    pub record_fetches: u64,
    /// Records about members this core does not know (dropped; a later exchange brings them).
    pub records_unknown_member: u64,
    /// Records in packets that were not authenticated (dropped).
    pub dropped_untrusted_records: u64,
    /// Times the cluster held a version of our record we did not, and we republished above it.
    pub records_refuted: u64,
    /// Records asked for by datagram from the member that announced them.
    pub record_pulls: u64,
    /// Records made by applying a patch to the version held.
    pub record_patches_applied: u64,
    /// Patches whose result did not match its length or checksum (the base differed); the version is
    /// pulled whole instead.
    pub record_patches_refused: u64,
    /// Records sent in acks because the prober's news list lacked them.
    pub record_news_sent: u64,
    /// Pulls answered.
    pub pulls_answered: u64,
    /// Pulls dropped: unauthenticated, from an address that is not the requester's, or for a record we
    /// do not hold.
    pub pulls_dropped: u64,
    /// Probe round trips that moved our network coordinate.
    pub coordinate_samples: u64,
    /// Coordinates or round trips refused as implausible (non-finite values, a stalled answer).
    pub coordinate_rejected: u64,
    /// Probes sent (one per probe interval while there is a member to probe).
    pub probes_sent: u64,
    /// Probes answered, directly or through helpers, with the time from the ping to its ack.
    pub probe_rtt: RttCounts,
    /// Members this node came to suspect (by its own probe or by gossip).
    pub suspicions: u64,
    /// Independent confirmations of suspicions this node held (Lifeguard's evidence).
    pub suspicion_confirmations: u64,
    /// Periodic full-state exchanges started (anti-entropy; joins and catch-ups are counted apart).
    pub push_pulls: u64,
    /// Full states merged from peers (`merge_state`: stream exchanges, either side).
    pub states_merged: u64,
    /// Probes sent to our successor on the monitoring ring.
    pub ring_probes: u64,
    /// Probes a ring monitor sent to a suspect it watches, as soon as it heard of the suspicion.
    pub monitor_probes: u64,
}

/// Upper bounds, in microseconds, of the probe round-trip buckets: the agent's latency buckets.
pub const RTT_BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Round-trip times summed up in integers (the core keeps no floats in its counters): count, sum,
/// sum of squares, extremes, and the count per bucket of [`RTT_BUCKETS_US`] (one more above the last).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RttCounts {
    /// How many.
    pub count: u64,
    /// Their sum, in microseconds.
    pub sum_us: u64,
    /// The sum of their squares, in square microseconds.
    pub sum_sq_us: u128,
    /// The smallest, in microseconds.
    pub min_us: u64,
    /// The largest, in microseconds.
    pub max_us: u64,
    /// Per bucket (not cumulative).
    pub buckets: [u64; RTT_BUCKETS_US.len() + 1],
}

impl RttCounts {
    /// Counts one round trip.
    pub fn add(&mut self, rtt: Duration) {
        let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        if self.count == 0 || us < self.min_us {
            self.min_us = us;
        }
        self.max_us = self.max_us.max(us);
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.sum_sq_us = self
            .sum_sq_us
            .saturating_add(u128::from(us) * u128::from(us));
        let at = RTT_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(RTT_BUCKETS_US.len());
        self.buckets[at] += 1;
    }
}

#[derive(Debug)]
enum Out {
    Ping {
        dst: SocketAddr,
        seq: u32,
        target: Arc<str>,
        want_coord: bool,
    },
    PingReq {
        dst: SocketAddr,
        seq: u32,
        target: Arc<str>,
        addr: SocketAddr,
        /// `dst` takes record patches.
        patches: bool,
    },
    Ack {
        dst: SocketAddr,
        seq: u32,
        /// Whether to carry our coordinate (the prober asked and we have one).
        coord: bool,
        /// The prober takes record patches.
        patches: bool,
        /// Records the prober's news list lacked, sent first.
        repair: Box<[Id]>,
    },
    Nack {
        dst: SocketAddr,
        seq: u32,
    },
    Gossip {
        dst: SocketAddr,
        /// `dst` takes record patches.
        patches: bool,
    },
    Sync {
        dst: SocketAddr,
        seq: u32,
        want_reply: bool,
        is_reply: bool,
        whole_records: bool,
        /// Records in the short form (the receiver reads it).
        short_records: bool,
        cursor: usize,
    },
    /// Ask `dst` for `name`'s record at `version`; `whole` after a patch for it did not check out here
    /// (else the pull says the version held, so the answer can be a patch).
    Pull {
        dst: SocketAddr,
        name: Arc<str>,
        version: u32,
        whole: bool,
    },
    /// Member `id`'s record to `dst` who pulled it: whole, or as a patch when `dst` takes patches and
    /// holds `have`, the record's patch base.
    PullReply {
        dst: SocketAddr,
        id: Id,
        have: Option<u32>,
    },
    /// Member `id`'s record to `dst`, as a patch when `dst` takes patches: down the broadcast tree, for
    /// `dst` to serve the arc at level `tree` that holds it, or else as gossip (a repair passed on to
    /// a ring neighbour).
    Record {
        dst: SocketAddr,
        id: Id,
        tree: Option<u8>,
        patches: bool,
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
    Suspicion(Id, u16),
    Reap(Id, u16, u32),
    PushPull,
    Reconnect,
    JoinRetry(u32),
    /// A record pull of member `id` may be overdue.
    RecordPull(Id),
    /// `left` exchanges may still run; `mark` is [`Stats::learned_by_sync`] when the last one began.
    PostJoinSync {
        left: u8,
        mark: u64,
    },
}

/// The tags we announce: the application's, plus the wire extensions we understand when any is on.
fn announced_tags(cfg: &GossipConfig, app: Vec<u8>) -> Result<Vec<u8>, tags::TagsError> {
    let on = |yes: bool, feature: u32| if yes { feature } else { 0 };
    let features = on(cfg.coordinates, wire::FEATURE_COORDINATES)
        | on(cfg.record_patches, wire::FEATURE_RECORD_PATCHES)
        | on(cfg.record_news, wire::FEATURE_RECORD_NEWS)
        | on(cfg.short_records, wire::FEATURE_SHORT_RECORDS)
        | on(cfg.record_tree, wire::FEATURE_RECORD_TREE);
    if features == 0 {
        return Ok(app);
    }
    tags::with(&app, wire::FEATURES_TAG, &features.to_string())
}

/// The gossip state machine of one node.
pub struct Core {
    cfg: GossipConfig,
    rng: Rng,
    awareness: Awareness,
    roster: Arc<Roster>,
    me: Arc<str>,
    me_id: Id,
    /// Our position on the monitoring ring.
    me_pos: u64,
    view: View,
    /// When the next periodic full-state exchange is due; an earlier [`Timer::PushPull`] is stale.
    push_pull_due: Instant,
    /// Members declared dead here within `gossip_to_the_dead_time`, and when: gossip still goes to them
    /// (memberlist's rule), so a wrongly declared member hears of it. Apart from the slots, which
    /// every member has and only the recently dead would use.
    died: HashMap<Id, Instant>,
    probing: probing::Probing,
    seq: u32,
    broadcasts: BroadcastQueue,
    out: VecDeque<Out>,
    events: VecDeque<Event>,
    timers: TimerHeap<Timer>,
    // Boxed and apart from the slots: only suspects carry one.
    suspicions: HashMap<Id, Box<Suspicion>>,
    leaving: bool,
    exchanges: exchange::Exchanges,
    user_events: dissemination::UserEvents,
    records: records::Records,
    /// Whether the packet being handled may carry user events.
    trusted: bool,
    token: u16,
    stats: Stats,
    picks: Vec<Id>,
    /// Where a ping's news list is written, kept to save an allocation per probe.
    news_scratch: Vec<u8>,
    /// Network coordinates, unless [`GossipConfig::coordinates`] is off. Boxed: most of a core's
    /// state is per member, this is per core, and loadgen's cores are many.
    vivaldi: Option<Box<Vivaldi>>,
}

impl Core {
    /// Creates a core for `id`, starting its timers at `now`; `seed` makes it deterministic.
    pub fn new(
        cfg: GossipConfig,
        id: Identity,
        now: Instant,
        seed: u64,
    ) -> Result<Self, NewCoreError> {
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
    ) -> Result<Self, NewCoreError> {
        cfg.validate().map_err(NewCoreError::Config)?;
        if !wire::valid_name(&id.name) {
            return Err(NewCoreError::Name);
        }
        tags::validate(&id.tags).map_err(NewCoreError::Tags)?;
        let own_tags = announced_tags(&cfg, id.tags).map_err(NewCoreError::Tags)?;
        let name = roster.name(&id.name);
        let me_ident = roster.ident(&name, id.addr, &own_tags, id.incarnation);
        let me_id = name.id();
        let mut view = View::default();
        view.insert(Slot {
            ident: me_ident,
            incarnation: id.incarnation,
            state: State::Alive,
            token: 0,
            record: None,
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
            me_pos: name.pos(),
            roster,
            view,
            push_pull_due: now,
            died: HashMap::default(),
            probing: probing::Probing::default(),
            seq,
            broadcasts: BroadcastQueue::default(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            timers: TimerHeap::default(),
            suspicions: HashMap::default(),
            leaving: false,
            exchanges: exchange::Exchanges::default(),
            user_events: dissemination::UserEvents::starting_at(seq),
            records: records::Records::default(),
            trusted: true,
            token: 0,
            stats: Stats::default(),
            picks: Vec::new(),
            news_scratch: Vec::new(),
            vivaldi: cfg.coordinates.then(|| {
                Box::new(Vivaldi::remembering(
                    VivaldiConfig::default(),
                    cfg.peer_coordinates,
                ))
            }),
            cfg,
        };
        core.records.clock = Some(now);
        // Random phases keep thousands of nodes started together from probing in lockstep.
        let jitter = |rng: &mut Rng, d: Duration| d.mul_f64(rng.below(1000) as f64 / 1000.0);
        let p = jitter(&mut core.rng, core.cfg.probe_interval);
        core.timers.push(now + p, Timer::Probe);
        let g = jitter(&mut core.rng, core.cfg.gossip_interval);
        core.timers.push(now + g, Timer::Gossip);
        let pp = core.cfg.push_pull_interval + jitter(&mut core.rng, core.cfg.push_pull_interval);
        core.push_pull_due = now + pp;
        core.timers.push(now + pp, Timer::PushPull);
        core.timers
            .push(now + core.cfg.reconnect_interval, Timer::Reconnect);
        core.events.push_back(Event::Member(core.local()));
        Ok(core)
    }

    /// Starts from `view`, a membership known some other way (loadgen begins large runs from one
    /// converged view that all its cores share copy-on-write). Our own slot in it is replaced by ours.
    /// No member events are emitted for what the view holds. The next full-state exchange falls anywhere
    /// in the interval for the view's size, as in a cluster that has run a while; cores started together
    /// would otherwise all make their first one within the same half minute.
    pub fn adopt_view(&mut self, now: Instant, view: &View) {
        let me = self.local_slot().clone();
        self.suspicions.clear();
        self.died.clear();
        self.view = view.clone();
        if self
            .view
            .get(self.me_id)
            .is_none_or(|s| !Arc::ptr_eq(&s.ident, &me.ident) || s.state != me.state)
        {
            self.view.insert(me);
        }
        self.probing.order = ProbeOrder::empty();
        // Their tokens came from our own counter; the adopted view's come from another's.
        self.probing.checks.clear();
        let every = self.cfg.push_pull_interval_for(self.view.live());
        self.push_pull_due = now + every.mul_f64(self.rng.below(1000) as f64 / 1000.0);
        self.timers.push(self.push_pull_due, Timer::PushPull);
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

    /// Our network coordinate, unless coordinates are off.
    pub fn coordinate(&self) -> Option<&Coordinate> {
        self.vivaldi.as_deref().map(Vivaldi::coordinate)
    }

    /// The latest coordinates of the peers this node measured, by name, when it remembers them
    /// ([`GossipConfig::peer_coordinates`]).
    pub fn peer_coordinates(&self) -> Vec<(Arc<str>, Coordinate)> {
        let Some(v) = self.vivaldi.as_deref() else {
            return Vec::new();
        };
        v.peers()
            .iter()
            .filter_map(|(id, c)| Some((self.view.get(*id)?.ident.name().clone(), c.clone())))
            .collect()
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
        self.records.clock = Some(now);
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
        self.records.exchanged = is_sync;
        if let Message::Tree { level } = p.msg {
            self.records.tree = Some(level);
        }
        self.apply_records(now, from, p.deltas());
        self.records.exchanged = false;
        self.records.tree = None;
        match p.msg {
            Message::Ping {
                seq,
                target,
                known,
                want_coord,
                takes_patches,
                news,
            } => {
                if target == &*self.me {
                    // Only a ping meant for us says anything about our cluster: one for whoever held
                    // our address before us (another cluster's member) must not make us catch up with
                    // it, least of all when we know no one else.
                    self.compare_known(now, from, known);
                    let coord = want_coord && self.vivaldi.is_some();
                    // Records go only in authenticated answers, as everywhere else.
                    let repair = match news {
                        Some(n) if self.trusted && self.cfg.record_news => {
                            self.news_answer(now, seq, n)
                        }
                        _ => Box::default(),
                    };
                    self.out.push_back(Out::Ack {
                        dst: from,
                        seq,
                        coord,
                        patches: takes_patches && self.cfg.record_patches,
                        repair,
                    });
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
            Message::Ack { seq, known, coord } => {
                self.compare_known(now, from, known);
                self.on_ack(now, seq, coord);
            }
            Message::Nack { seq } => {
                if let Some(p) = self.probing.current.as_mut().filter(|p| p.seq == seq) {
                    p.nacks += 1;
                }
            }
            Message::Gossip | Message::Tree { .. } => {}
            Message::Pull {
                requester,
                name,
                version,
            } => {
                // The requester's own version of the record, when it told us.
                let have = p.deltas().find_map(|d| match d {
                    Delta::Record {
                        name: n, version, ..
                    } if n == name => Some(version),
                    _ => None,
                });
                self.on_pull(from, requester, (name, version), have)
            }
            Message::Sync {
                seq,
                want_reply,
                is_reply,
                whole_records,
            } => {
                if is_reply && let Some(k) = self.exchanges.joins.iter().position(|j| j.seq == seq)
                {
                    self.exchanges.joins.swap_remove(k);
                    self.events.push_back(Event::SyncReply { seq, from });
                    self.joined(now);
                }
                if want_reply {
                    if self.exchanges.sync_replies >= self.cfg.max_sync_replies {
                        self.stats.dropped_sync_busy += 1;
                    } else {
                        self.exchanges.sync_replies += 1;
                        // Answered in kind: whole records to a joiner, versions otherwise; never whole
                        // to an unauthenticated request (a spoofed source would get the catalog).
                        self.out.push_back(Out::Sync {
                            dst: from,
                            seq,
                            want_reply: false,
                            is_reply: true,
                            whole_records: whole_records && self.trusted,
                            // A requester that wrote the short form reads it.
                            short_records: self.cfg.short_records && p.has_short_records(),
                            cursor: 0,
                        });
                    }
                }
            }
        }
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.records.clock = Some(now);
        while let Some(t) = self.timers.pop_expired(now) {
            match t {
                Timer::Probe => self.on_probe_tick(now),
                Timer::Gossip => self.on_gossip_tick(now),
                Timer::ProbeDirect(seq) => self.on_probe_direct_timeout(seq),
                Timer::RelayNack(seq) => {
                    if let Some(r) = self.probing.relays.get(&seq).filter(|r| r.nack) {
                        let (dst, seq) = (r.origin, r.origin_seq);
                        self.out.push_back(Out::Nack { dst, seq });
                    }
                }
                Timer::RelayExpire(seq) => {
                    self.probing.relays.remove(&seq);
                }
                Timer::Suspicion(id, token) => self.on_suspicion_timer(now, id, token),
                Timer::Reap(id, token, inc) => self.reap(id, token, inc),
                // One set before `adopt_view` moved the exchange is not due.
                Timer::PushPull if now >= self.push_pull_due => {
                    let every = self.cfg.push_pull_interval_for(self.view.live());
                    self.push_pull_due = now + every;
                    self.timers.push(now + every, Timer::PushPull);
                    self.stats.push_pulls += 1;
                    self.sync_with_random(|s| s.state.is_live());
                }
                Timer::PushPull => {}
                Timer::JoinRetry(seq) => {
                    let Some(k) = self.exchanges.joins.iter().position(|j| j.seq == seq) else {
                        continue;
                    };
                    if self.exchanges.joins[k].attempts >= JOIN_ATTEMPTS {
                        let j = self.exchanges.joins.swap_remove(k);
                        self.events
                            .push_back(Event::JoinTimeout { seq, addr: j.addr });
                    } else {
                        // UDP may lose the request or the reply: ask again under the same number.
                        self.exchanges.joins[k].attempts += 1;
                        let addr = self.exchanges.joins[k].addr;
                        self.resend_sync(addr, seq, true, false);
                        self.timers.push(now + JOIN_RETRY, Timer::JoinRetry(seq));
                    }
                }
                Timer::PostJoinSync { left, mark } => self.post_join_sync(now, left, mark),
                Timer::RecordPull(id) => self.on_pull_timeout(now, id),
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

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn next_token(&mut self) -> u16 {
        self.token = self.token.wrapping_add(1);
        self.token
    }
}
