//! Application records (each member's services and checks, opaque to the core): the owner raises the
//! version on every change; the record rides the same piggybacked dissemination as membership deltas,
//! whole on a holder's first sends and as its version after, and joins' full-state exchanges carry every
//! record whole (periodic ones carry versions). A core that hears of a newer version it lacks pulls the
//! content from the member that told it — by datagram when it fits one ([`Message::Pull`]), else
//! through its driver's stream transport ([`Event::FetchRecord`]) — and passes the news on only once
//! it holds the content, so every pull goes to a member that has it. Epidemic spreading delivers each
//! announcement to a node many times (that is what makes it reach everyone); the content crosses the
//! network to each node about once.
//!
//! Where every member reads them, pings carry news lists (fingerprints of the versions the prober
//! learnt lately) and acks the records a list lacks: a node the push missed catches up at its next
//! probe, so a push need not reach everyone, and each holder sends a change [`RECORD_SENDS`] times.
//!
//! Where every member also passes records down the broadcast tree (`tree.rs`), a change is not gossiped
//! at all: the owner sends it down the tree, each member receiving it once, and only a member that got
//! it around the tree (a repair) gossips it and walks it along the ring.

use super::*;
use std::borrow::Cow;

use crate::patch::{self, PatchError};
use crate::record::{Record, RecordError, RecordPatch};
use crate::wire::{MAX_RECORD, RecordBody};

/// How long a stream fetch may stay unanswered before news of the same version asks again.
pub const RECORD_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a datagram pull may stay unanswered before it is asked again (see [`MAX_PULL_ATTEMPTS`]).
pub const RECORD_PULL_TIMEOUT: Duration = Duration::from_millis(500);

/// Sends of a record (by each holder) that carry it whole; later ones carry its version only.
pub(super) const INLINE_SENDS: u32 = 2;
/// Sends of a record (by each holder) that carry its patch, to members that take patches; later ones
/// carry its version only. More than [`INLINE_SENDS`], as a patch costs a fraction of the record.
pub(super) const PATCH_SENDS: u32 = 3;
/// Largest record a patch is made for: one that can travel whole in a jumbo datagram.
const PATCHED_MAX: usize = wire::MAX_DATAGRAM;

/// Sends of a changed record by each holder while every live member repairs what the push missed
/// through news lists ([`GossipConfig::record_news`]); otherwise a record is sent as often as
/// membership news.
pub const RECORD_SENDS: u32 = 4;
/// How far back a ping's news list reaches, in probe intervals.
const NEWS_LISTED: u32 = 4;
/// For how many probe intervals after installing a version a node sends it to a prober whose news
/// list lacks it: every member probes about once in that time. Shorter than [`NEWS_LISTED`], as
/// nodes install a version up to about a second apart, and one the prober installed before its
/// list's reach would be sent again for nothing.
const NEWS_ANSWERED: u32 = 3;
/// How long after installing a version a node leaves it out of news answers while the broadcast tree
/// is in use: the tree reaches every member well within it (a few hops of network latency), so a
/// prober that lacks the version yet is most likely about to be handed it.
const TREE_GRACE: Duration = Duration::from_millis(250);
/// Most records one ack carries in answer to a news list.
const NEWS_REPAIRS: usize = 8;

/// Datagram pulls of one version before it is given up (to the next announcement or full-state
/// exchange); the retries go to the record's owner and the announcer in turn, so a lossy path or a holder
/// that went away does not strand a node.
const MAX_PULL_ATTEMPTS: u8 = 5;

/// A record asked for and not yet received.
#[derive(Clone, Copy)]
pub(super) struct Pending {
    version: u32,
    /// When the ask lapses (and a pull is retried).
    until: Instant,
    /// Who announced the version.
    from: SocketAddr,
    attempts: u8,
    /// Asked of the driver's stream transport rather than by datagram.
    stream: bool,
    /// A patch for this version did not check out on the version held: ask for it whole.
    whole: bool,
    /// Asked for after a full-state exchange: old news, not remembered for news lists.
    exchanged: bool,
    /// Announced down the broadcast tree, to be passed on from the arc at this level once held.
    tree: Option<u8>,
}

/// Where an installed record's patch comes from.
enum PatchFrom {
    /// The patch it arrived as.
    Arrived(RecordPatch),
    /// Made here against the version held before, when that is the version just before.
    Held,
    /// None: the record goes whole.
    Without,
}

/// A record version installed here lately, for news lists.
struct Installed {
    at: Instant,
    id: Id,
    version: u32,
    /// Passed down the broadcast tree here.
    passed_down: bool,
}

/// Record bookkeeping beyond the slots.
#[derive(Default)]
pub(super) struct Records {
    /// Records asked for, by member.
    pending: HashMap<Id, Pending>,
    /// Highest version of our own record heard before we published one (from before a restart).
    own_floor: Option<u32>,
    /// Versions of records (ours too, for answers) learnt as news within [`NEWS_LISTED`] probe
    /// intervals (at most [`wire::MAX_NEWS`], as only that many are listed), oldest first.
    recent: VecDeque<Installed>,
    /// Versions installed from full-state exchanges within [`NEWS_LISTED`] probe intervals (at most
    /// [`wire::MAX_NEWS`], oldest first), while the tree is in use: not news, but one that the tree
    /// hands us after the exchange brought it must still be passed down.
    exchanged_recent: VecDeque<Installed>,
    /// When the newest entry dropped from `recent` for room (not for age) was learnt: our news list
    /// reaches back no further.
    dropped: Option<Instant>,
    /// The latest time the driver gave (set from the start): [`Core::set_record`] takes none.
    pub(super) clock: Option<Instant>,
    /// The records being applied came in a full-state exchange: not news, so not remembered for news
    /// lists (a join installs every record at once, and probers hold them from long before).
    pub(super) exchanged: bool,
    /// The records being applied came down the broadcast tree to serve the arc at this level.
    pub(super) tree: Option<u8>,
}

impl Core {
    /// Publishes a new local record (replacing the previous one); returns its version.
    pub fn set_record(&mut self, body: Vec<u8>) -> Result<u32, RecordError> {
        if body.len() > MAX_RECORD {
            return Err(RecordError::TooLarge(body.len()));
        }
        if self.leaving {
            return Err(RecordError::Left);
        }
        let version = self
            .local_slot()
            .record
            .as_ref()
            .map(|r| r.version)
            .or(self.records.own_floor)
            .map_or(1, incarnation::next);
        self.install_record(self.me_id, version, &body, PatchFrom::Held, Some(0), None);
        Ok(version)
    }

    /// The newest record held for member `name`.
    pub fn record(&self, name: &str) -> Option<Arc<Record>> {
        let id = self.lookup(name)?;
        self.view.get(id)?.record.clone()
    }

    /// Hands in a record the driver fetched after [`Event::FetchRecord`] (over an authenticated stream).
    pub fn handle_record(
        &mut self,
        now: Instant,
        from: SocketAddr,
        name: &str,
        version: u32,
        body: &[u8],
    ) {
        self.records.clock = Some(now);
        self.apply_record(now, from, name, version, RecordBody::Inline(body));
    }

    /// Installs `body` as member `id`'s record at `version`, with the patch `from` says, and passes it
    /// on: down the broadcast tree from the arc at level `tree` when it came that way (or is ours) and
    /// the tree is in use, else by gossip.
    fn install_record(
        &mut self,
        id: Id,
        version: u32,
        body: &[u8],
        from: PatchFrom,
        tree: Option<u8>,
        heard_from: Option<SocketAddr>,
    ) {
        let Some((ident, held)) = self
            .view
            .get(id)
            .map(|s| (s.ident.clone(), s.record.clone()))
        else {
            return;
        };
        let (on, room) = (self.cfg.record_patches, inline_limit(self.cfg.mtu));
        let patch = || match from {
            // One that came in a larger datagram than ours would never leave the broadcast queue.
            PatchFrom::Arrived(p) => Some(p).filter(|p| p.hunks.len() <= room),
            PatchFrom::Held if on => make_patch(held.as_deref()?, version, body, room),
            PatchFrom::Held | PatchFrom::Without => None,
        };
        let record = self.roster.record(ident.interned(), version, body, patch);
        let Some(name) = self.view.update(id, |s| {
            s.record = Some(record.clone());
            s.ident.name().clone()
        }) else {
            return;
        };
        self.stats.records_applied += 1;
        let in_use = self.tree_in_use();
        let tree = tree.filter(|_| in_use);
        self.note_installed(id, version, tree.is_some());
        match tree {
            Some(level) => self.pass_down(id, level),
            None => {
                // News of others' records, not a full state's: the tree missed us.
                if in_use && !self.records.exchanged && id != self.me_id {
                    self.pass_around(id, heard_from);
                }
                self.broadcasts.push(Item::Record { id });
            }
        }
        self.events.push_back(Event::Record { name, record });
    }

    /// Remembers member `id`'s record at `version` for our news lists and answers, unless it came in
    /// a full-state exchange (then only for a tree message that comes after it).
    fn note_installed(&mut self, id: Id, version: u32, passed_down: bool) {
        let Some(at) = self.records.clock else {
            return;
        };
        let listed = self.cfg.probe_interval * NEWS_LISTED;
        let installed = Installed {
            at,
            id,
            version,
            passed_down,
        };
        if self.records.exchanged {
            if self.tree_in_use() {
                let held = &mut self.records.exchanged_recent;
                while held.front().is_some_and(|n| {
                    held.len() >= wire::MAX_NEWS || at.saturating_duration_since(n.at) > listed
                }) {
                    held.pop_front();
                }
                held.push_back(installed);
            }
            return;
        }
        if !self.cfg.record_news {
            return;
        }
        let recent = &mut self.records.recent;
        while let Some(n) = recent.front() {
            if at.saturating_duration_since(n.at) > listed {
                recent.pop_front();
            } else if recent.len() >= wire::MAX_NEWS {
                self.records.dropped = Some(n.at);
                recent.pop_front();
            } else {
                break;
            }
        }
        recent.push_back(installed);
    }

    /// The tree hands us member `id`'s record at `version`, which we already hold: if it reached us
    /// another way first (a news answer or a full-state exchange racing the tree), we have not passed
    /// it on, and our arc would go without it; pass it on now, once.
    fn pass_down_late(&mut self, id: Id, version: u32, level: u8) {
        if !self.tree_in_use() {
            return;
        }
        let r = &mut self.records;
        let Some(n) = r
            .recent
            .iter_mut()
            .chain(r.exchanged_recent.iter_mut())
            .rev()
            .find(|n| n.id == id && n.version == version)
        else {
            return;
        };
        if !n.passed_down {
            n.passed_down = true;
            self.pass_down(id, level);
        }
    }

    /// True when a ping's news list can reach back [`NEWS_LISTED`] probe intervals (its reach is one
    /// byte of tenths of a second), so members the push missed are repaired and records need fewer sends.
    pub(super) fn news_repairs(&self) -> bool {
        self.cfg.record_news
            && self.cfg.probe_interval * NEWS_LISTED <= Duration::from_millis(255 * 100)
    }

    /// The fingerprint, in the ping numbered `seq`, of the record `s` holds.
    fn fingerprint(s: &Slot, seq: u32) -> Option<u16> {
        let r = s.record.as_ref()?;
        Some(wire::news_fingerprint(s.ident.name(), r.version, seq))
    }

    /// Writes the news list of the ping numbered `seq` into `out` (cleared first): our own record's
    /// version (so nobody sends it back to us), then the versions learnt within [`NEWS_LISTED`] probe
    /// intervals, newest first, at most [`wire::MAX_NEWS`] in all; returns how far back it reaches in
    /// tenths of a second.
    pub(super) fn news_list(&self, seq: u32, out: &mut Vec<u8>) -> u8 {
        out.clear();
        let mine = Self::fingerprint(self.local_slot(), seq);
        mine.into_iter().for_each(|f| wire::News::put(out, f));
        let Some(now) = self.records.clock else {
            return 0;
        };
        let listed = self.cfg.probe_interval * NEWS_LISTED;
        // Versions dropped for room were learnt before the list's reach.
        let mut reach = match self.records.dropped {
            Some(d) => listed.min(now.saturating_duration_since(d)),
            None => listed,
        };
        let mut room = wire::MAX_NEWS - usize::from(mine.is_some());
        for n in self.records.recent.iter().rev() {
            let age = now.saturating_duration_since(n.at);
            if age > reach {
                break;
            }
            if room == 0 {
                // Full: the list reaches back only as far as its oldest entry.
                reach = age;
                break;
            }
            // Ours heads the list; a superseded version is listed by its newer entry.
            let slot = self.view.get(n.id).filter(|s| {
                n.id != self.me_id && s.record.as_ref().is_some_and(|r| r.version == n.version)
            });
            if let Some(f) = slot.and_then(|s| Self::fingerprint(s, seq)) {
                wire::News::put(out, f);
                room -= 1;
            }
        }
        (reach.as_millis() / 100).min(255) as u8
    }

    /// The records to send a prober whose ping numbered `seq` listed `news`: versions we learnt lately
    /// that its list lacks and that we still hold, newest first, at most [`NEWS_REPAIRS`]. Only those
    /// learnt well inside the list's reach: one from before it may be listed nowhere and held all the
    /// same.
    pub(super) fn news_answer(&self, now: Instant, seq: u32, news: wire::News<'_>) -> Box<[Id]> {
        let reach = Duration::from_millis(u64::from(news.span_ds) * 100);
        let slack = self.cfg.probe_interval * (NEWS_LISTED - NEWS_ANSWERED);
        let window = (self.cfg.probe_interval * NEWS_ANSWERED).min(reach.saturating_sub(slack));
        let mut ids = Vec::new();
        // The tree hands a change to everyone within moments; told of it sooner by a news answer, a
        // prober would pass it around (and gossip it) for nothing.
        let grace = if self.tree_in_use() {
            TREE_GRACE
        } else {
            Duration::ZERO
        };
        for n in self.records.recent.iter().rev() {
            let age = now.saturating_duration_since(n.at);
            if age >= window || ids.len() == NEWS_REPAIRS {
                break;
            }
            if age < grace {
                continue;
            }
            let Some(s) = self.view.get(n.id) else {
                continue;
            };
            let current =
                s.state != State::Left && s.record.as_ref().is_some_and(|r| r.version == n.version);
            if current
                && !ids.contains(&n.id)
                && Self::fingerprint(s, seq).is_some_and(|f| !news.contains(f))
            {
                ids.push(n.id);
            }
        }
        ids.into()
    }

    /// The record a patch makes of the version we hold, when it is the patch's base and the result
    /// checks out. `Err` when it did not check out: the version must then come whole. The work is
    /// bounded by [`PATCHED_MAX`], whatever a (trusted) sender puts in a datagram.
    fn patched(
        &mut self,
        held: Option<&Record>,
        (base, len, crc): (u32, u32, u32),
        hunks: &[u8],
    ) -> Result<Option<(Vec<u8>, RecordPatch)>, PatchError> {
        let Some(held) = held.filter(|h| h.version == base) else {
            return Ok(None);
        };
        if len as usize > PATCHED_MAX {
            self.stats.record_patches_refused += 1;
            return Err(PatchError::OutOfRange);
        }
        match patch::apply(&held.body, hunks, len, crc) {
            Ok(body) => {
                self.stats.record_patches_applied += 1;
                let hunks = hunks.into();
                Ok(Some((body, RecordPatch { base, crc, hunks })))
            }
            Err(e) => {
                self.stats.record_patches_refused += 1;
                Err(e)
            }
        }
    }

    /// Applies the record deltas among `deltas` (a packet's or a full state's), heard from `from`; called
    /// after their membership deltas, so a record about a member announced alongside it applies.
    pub(super) fn apply_records<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        deltas: impl Iterator<Item = Delta<'a>>,
    ) {
        for d in deltas {
            if let Delta::Record {
                name,
                version,
                body,
            } = d
            {
                self.apply_record(now, from, name, version, body);
            }
        }
    }

    /// Applies news of member `name`'s record at `version`, heard from `from`.
    pub(super) fn apply_record(
        &mut self,
        now: Instant,
        from: SocketAddr,
        name: &str,
        version: u32,
        body: RecordBody<'_>,
    ) {
        // A record names services to route traffic to: only authenticated packets may change one.
        if !self.trusted {
            self.stats.dropped_untrusted_records += 1;
            return;
        }
        let Some(id) = self.lookup(name) else {
            self.stats.records_unknown_member += 1;
            return;
        };
        let Some(s) = self.view.get(id) else { return };
        if s.state == State::Left {
            return;
        }
        let held = s.record.clone();
        if id == self.me_id {
            self.refute_record(held, version, body);
            return;
        }
        if let Some(h) = held
            .as_ref()
            .filter(|h| incarnation::at_least(h.version, version))
        {
            if let Some(level) = self.records.tree.filter(|_| h.version == version) {
                self.pass_down_late(id, version, level);
            }
            return;
        }
        let name = s.ident.name().clone();
        // A patch on a version we do not hold is news of the version; one that does not check out on
        // the version we hold is too, and the version must then come whole.
        let mut whole = false;
        let content = match body {
            RecordBody::Inline(b) => Some((Cow::Borrowed(b), PatchFrom::Held)),
            RecordBody::Digest(_) => None,
            RecordBody::Patch {
                base,
                len,
                crc,
                hunks,
            } => match self.patched(held.as_deref(), (base, len, crc), hunks) {
                Ok(made) => made.map(|(b, p)| (Cow::Owned(b), PatchFrom::Arrived(p))),
                Err(_) => {
                    whole = true;
                    None
                }
            },
        };
        match content {
            Some((b, patch)) => {
                let asked = self
                    .records
                    .pending
                    .get(&id)
                    .filter(|p| incarnation::at_least(version, p.version))
                    .copied();
                if asked.is_some() {
                    self.records.pending.remove(&id);
                }
                // The answer to a pull an exchange started is as old as the exchange's news; the
                // answer to one the tree started goes on down the tree.
                let was = self.records.exchanged;
                self.records.exchanged |= asked.is_some_and(|p| p.exchanged);
                let tree = self.records.tree.or(asked.and_then(|p| p.tree));
                self.install_record(id, version, &b, patch, tree, Some(from));
                self.records.exchanged = was;
            }
            None => {
                let len = body.record_len();
                let tree = self.records.tree;
                let asked = self.records.pending.get_mut(&id);
                // Whatever asked first, the answer goes on down the tree if the tree handed it.
                let tree = match asked {
                    Some(p) if p.version == version => {
                        p.tree = p.tree.or(tree);
                        p.tree
                    }
                    _ => tree,
                };
                if self.records.pending.get(&id).is_some_and(|p| {
                    incarnation::at_least(p.version, version)
                        && now < p.until
                        && (p.whole || !whole)
                }) {
                    return;
                }
                let stream = len as usize > inline_limit(self.cfg.mtu);
                let until = now
                    + if stream {
                        RECORD_FETCH_TIMEOUT
                    } else {
                        RECORD_PULL_TIMEOUT
                    };
                let pending = Pending {
                    version,
                    until,
                    from,
                    attempts: 1,
                    stream,
                    whole,
                    exchanged: self.records.exchanged,
                    tree,
                };
                self.records.pending.insert(id, pending);
                if !stream {
                    // Small enough for one datagram: pull it from the member that announced it.
                    self.stats.record_pulls += 1;
                    self.out.push_back(Out::Pull {
                        dst: from,
                        name,
                        version,
                        whole,
                    });
                    self.timers.push(until, Timer::RecordPull(id));
                } else {
                    self.stats.record_fetches += 1;
                    self.events.push_back(Event::FetchRecord {
                        name,
                        version,
                        from,
                    });
                }
            }
        }
    }

    /// The cluster holds a version of our record we do not: one from before a restart (or a forgery).
    /// Republish ours above it, as an incarnation refutes a claim.
    fn refute_record(&mut self, mine: Option<Arc<Record>>, version: u32, body: RecordBody<'_>) {
        let Some(mine) = mine else {
            // Nothing published yet: the application's first record will be raised past this one.
            self.stats.records_refuted += 1;
            self.records.own_floor = Some(match self.records.own_floor {
                Some(f) => incarnation::later(f, version),
                None => version,
            });
            return;
        };
        let differs = match body {
            RecordBody::Inline(b) => *b != *mine.body,
            RecordBody::Patch { len, crc, .. } => {
                len as usize != mine.body.len() || crc != patch::checksum(&mine.body)
            }
            RecordBody::Digest(len) => len as usize != mine.body.len(),
        };
        if incarnation::newer(version, mine.version) || (version == mine.version && differs) {
            self.stats.records_refuted += 1;
            let version = incarnation::next(incarnation::later(version, mine.version));
            // Whole: the cluster holds another body under our old version, so no patch fits it.
            self.install_record(
                self.me_id,
                version,
                &mine.body,
                PatchFrom::Without,
                Some(0),
                None,
            );
        }
    }

    /// Answers a pull from `from` (who must be `requester`'s address) of `name`'s record at `version`
    /// with the record we hold; `have` is the version the requester holds, if it said.
    pub(super) fn on_pull(
        &mut self,
        from: SocketAddr,
        requester: &str,
        (name, version): (&str, u32),
        have: Option<u32>,
    ) {
        let asker = self
            .lookup(requester)
            .and_then(|r| self.view.get(r))
            .filter(|r| r.ident.addr == from);
        let genuine = self.trusted && asker.is_some();
        let have = have.filter(|_| asker.is_some_and(|r| self.takes_patches(r)));
        let held = self.lookup(name).filter(|&id| {
            self.view
                .get(id)
                .and_then(|s| s.record.as_ref())
                .is_some_and(|r| incarnation::at_least(r.version, version))
        });
        match held {
            Some(id) if genuine => {
                self.stats.pulls_answered += 1;
                self.out.push_back(Out::PullReply {
                    dst: from,
                    id,
                    have,
                });
            }
            _ => self.stats.pulls_dropped += 1,
        }
    }

    /// A pull's answer is overdue: ask again (the owner and the announcer in turn), up to
    /// [`MAX_PULL_ATTEMPTS`] in all.
    pub(super) fn on_pull_timeout(&mut self, now: Instant, id: Id) {
        let Some(mut p) = self.records.pending.get(&id).copied() else {
            return;
        };
        if p.stream || now < p.until {
            return;
        }
        let Some(s) = self.view.get(id) else {
            self.records.pending.remove(&id);
            return;
        };
        let held = s
            .record
            .as_ref()
            .is_some_and(|r| incarnation::at_least(r.version, p.version));
        if held || p.attempts >= MAX_PULL_ATTEMPTS || s.state == State::Left {
            self.records.pending.remove(&id);
            return;
        }
        p.attempts += 1;
        p.until = now + RECORD_PULL_TIMEOUT;
        let dst = if p.attempts % 2 == 0 {
            s.ident.addr
        } else {
            p.from
        };
        let name = s.ident.name().clone();
        self.records.pending.insert(id, p);
        self.stats.record_pulls += 1;
        self.out.push_back(Out::Pull {
            dst,
            name,
            version: p.version,
            whole: p.whole,
        });
        self.timers.push(p.until, Timer::RecordPull(id));
    }

    /// True when member `s` reads record patches and this node sends them.
    pub(super) fn takes_patches(&self, s: &Slot) -> bool {
        self.cfg.record_patches && s.ident.features & wire::FEATURE_RECORD_PATCHES != 0
    }

    /// True when member `s` reads news lists and this node sends them.
    pub(super) fn takes_news(&self, s: &Slot) -> bool {
        self.cfg.record_news && s.ident.features & wire::FEATURE_RECORD_NEWS != 0
    }

    /// Forgets pending fetches for a member that is gone.
    pub(super) fn forget_fetch(&mut self, id: Id) {
        self.records.pending.remove(&id);
    }
}

/// The record delta of a slot: its patch when `patch` allows and it has one, else whole when it fits in
/// `inline_limit` bytes, else its version and size.
pub(super) fn record_delta(s: &Slot, inline_limit: usize, patch: bool) -> Option<Delta<'_>> {
    let r = s.record.as_ref()?;
    if s.state == State::Left {
        return None;
    }
    let len = r.body.len() as u32;
    let body = match &r.patch {
        Some(p) if patch => RecordBody::Patch {
            base: p.base,
            len,
            crc: p.crc,
            hunks: &p.hunks,
        },
        _ if r.body.len() <= inline_limit => RecordBody::Inline(&r.body),
        _ => RecordBody::Digest(len),
    };
    Some(Delta::Record {
        name: s.ident.name(),
        version: r.version,
        body,
    })
}

/// The patch from `prev` to `body` at `version`, when `prev` is the version just before (a patch on an
/// older one would send most receivers to pull), both are small enough to travel by datagram (larger
/// ones go by stream, whole), and the patch fits in `room` bytes and is smaller than the record.
fn make_patch(prev: &Record, version: u32, body: &[u8], room: usize) -> Option<RecordPatch> {
    if incarnation::next(prev.version) != version
        || body.len() > PATCHED_MAX
        || prev.body.len() > PATCHED_MAX
    {
        return None;
    }
    let hunks = patch::diff(&prev.body, body).filter(|h| h.len() <= room)?;
    Some(RecordPatch {
        base: prev.version,
        crc: patch::checksum(body),
        hunks: hunks.into(),
    })
}

/// Largest record sent whole inside a datagram of `mtu` bytes (room left for the header and a name).
pub(super) fn inline_limit(mtu: usize) -> usize {
    mtu.saturating_sub(wire::MAX_NAME + 64)
}
