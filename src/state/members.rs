//! Lock-free member table: the gossip driver writes (through [`super::publish`]), DNS and HTTP read
//! without ever blocking it.
//!
//! Point lookups go to a papaya map; listings read an arc-swapped, name-sorted snapshot that the writer
//! republishes after each batch of changes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;

use murmur_gossip::{Event, State, tags};

/// Consul's serf member status codes (`/v1/agent/members` `Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MemberStatus {
    /// Up (serf shows suspects as alive too).
    Alive = 1,
    /// Announced its leave, not yet gone.
    Leaving = 2,
    /// Left gracefully.
    Left = 3,
    /// Declared failed.
    Failed = 4,
}

impl MemberStatus {
    /// Lower-case name as printed by `members`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Left => "left",
            MemberStatus::Failed => "failed",
        }
    }

    fn from_state(s: State) -> Self {
        match s {
            State::Alive | State::Suspect => MemberStatus::Alive,
            State::Dead => MemberStatus::Failed,
            State::Left => MemberStatus::Left,
        }
    }
}

/// What readers see of one member.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRecord {
    /// Node name.
    pub name: Arc<str>,
    /// Gossip address.
    pub addr: SocketAddr,
    /// Status.
    pub status: MemberStatus,
    /// Incarnation number.
    pub incarnation: u32,
    /// Decoded tags (role, dc, build, ...).
    pub tags: BTreeMap<String, String>,
    /// Node metadata (`node_meta`), gossiped as tags prefixed with [`META_PREFIX`].
    pub meta: BTreeMap<String, String>,
    /// Table index when the member first appeared (catalog `CreateIndex`).
    pub create_index: u64,
    /// Table index of its last change (catalog `ModifyIndex`).
    pub modify_index: u64,
}

impl MemberRecord {
    /// A tag value, or "".
    pub fn tag(&self, k: &str) -> &str {
        self.tags.get(k).map(String::as_str).unwrap_or("")
    }

    /// True for a server (`role=consul`).
    pub fn is_server(&self) -> bool {
        self.tag("role") == "consul"
    }
}

/// Tag-key prefix that marks node metadata inside the gossiped tags.
pub const META_PREFIX: &str = "m:";

fn split_meta(
    all: BTreeMap<String, String>,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let (meta, tags): (BTreeMap<_, _>, BTreeMap<_, _>) = all
        .into_iter()
        .partition(|(k, _)| k.starts_with(META_PREFIX));
    let meta = meta
        .into_iter()
        .map(|(k, v)| (k[META_PREFIX.len()..].to_string(), v))
        .collect();
    (tags, meta)
}

/// What one applied event changed, in Serf's event names (Consul logs them as `EventMemberJoin: ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing a reader sees.
    None,
    /// A new member, or one back alive.
    Join,
    /// Left gracefully.
    Leave,
    /// Declared failed.
    Failed,
    /// Alive still, with a new address, tags or incarnation.
    Update,
    /// Forgotten after its failure or leave.
    Reap,
}

impl Change {
    fn between(old: Option<&MemberRecord>, new: &MemberRecord) -> Change {
        let Some(old) = old else {
            return Change::Join;
        };
        let same = old.addr == new.addr
            && old.status == new.status
            && old.incarnation == new.incarnation
            && old.tags == new.tags
            && old.meta == new.meta;
        match new.status {
            _ if same => Change::None,
            s if s == old.status => Change::Update,
            MemberStatus::Alive => Change::Join,
            MemberStatus::Left | MemberStatus::Leaving => Change::Leave,
            MemberStatus::Failed => Change::Failed,
        }
    }

    /// Serf's name for the event (`EventMemberJoin`, ...), or `None` when nothing changed.
    pub fn serf_name(self) -> Option<&'static str> {
        Some(match self {
            Change::None => return None,
            Change::Join => "EventMemberJoin",
            Change::Leave => "EventMemberLeave",
            Change::Failed => "EventMemberFailed",
            Change::Update => "EventMemberUpdate",
            Change::Reap => "EventMemberReap",
        })
    }
}

/// A consistent, name-sorted listing of the table.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Table index this listing reflects (never 0).
    pub index: u64,
    /// Members sorted by name.
    pub members: Vec<Arc<MemberRecord>>,
}

/// The shared member table.
pub struct MemberTable {
    map: papaya::HashMap<Arc<str>, Arc<MemberRecord>>,
    snapshot: ArcSwap<Snapshot>,
    index: AtomicU64,
    dirty: AtomicBool,
}

impl Default for MemberTable {
    fn default() -> Self {
        MemberTable {
            map: papaya::HashMap::new(),
            snapshot: ArcSwap::from_pointee(Snapshot {
                index: 1,
                members: Vec::new(),
            }),
            index: AtomicU64::new(1),
            dirty: AtomicBool::new(false),
        }
    }
}

impl MemberTable {
    /// Empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one core event and says what it changed. Only the gossip driver calls this. An event
    /// that changes nothing a reader sees (a suspicion, a repeat) leaves the index alone, so blocking
    /// queries do not wake for it.
    pub fn apply(&self, ev: &Event) -> Change {
        let map = self.map.pin();
        let change = match ev {
            Event::Member(m) => {
                let old = map.get(&*m.name).cloned();
                let (tags, meta) = match &old {
                    Some(o) if o.incarnation == m.incarnation => (o.tags.clone(), o.meta.clone()),
                    _ => split_meta(tags::decode(&m.tags).unwrap_or_default()),
                };
                let mut rec = MemberRecord {
                    name: m.name.clone(),
                    addr: m.addr,
                    status: MemberStatus::from_state(m.state),
                    incarnation: m.incarnation,
                    tags,
                    meta,
                    create_index: 0,
                    modify_index: 0,
                };
                let change = Change::between(old.as_deref(), &rec);
                if change == Change::None {
                    return Change::None;
                }
                let index = self.index.fetch_add(1, Ordering::AcqRel) + 1;
                rec.create_index = old.as_ref().map_or(index, |o| o.create_index);
                rec.modify_index = index;
                map.insert(m.name.clone(), Arc::new(rec));
                change
            }
            Event::Reaped(name) => {
                if map.remove(&**name).is_none() {
                    return Change::None;
                }
                self.index.fetch_add(1, Ordering::AcqRel);
                Change::Reap
            }
            Event::SyncReply { .. }
            | Event::JoinTimeout { .. }
            | Event::User { .. }
            | Event::PushPull { .. }
            | Event::Record { .. }
            | Event::FetchRecord { .. } => return Change::None,
        };
        self.dirty.store(true, Ordering::Release);
        change
    }

    /// The index of the last change applied, published or not.
    pub fn index(&self) -> u64 {
        self.index.load(Ordering::Acquire)
    }

    /// Republishes the sorted snapshot if anything changed since the last call; returns whether it did.
    pub fn publish(&self) -> bool {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return false;
        }
        let index = self.index.load(Ordering::Acquire);
        let mut members: Vec<Arc<MemberRecord>> = self.map.pin().values().cloned().collect();
        members.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        self.snapshot.store(Arc::new(Snapshot { index, members }));
        true
    }

    /// One member by exact name.
    pub fn get(&self, name: &str) -> Option<Arc<MemberRecord>> {
        self.map.pin().get(name).cloned()
    }

    /// The latest published listing.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Number of members (including failed and left ones not yet reaped).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_gossip::Member;

    fn member(name: &str, inc: u32, state: State) -> Event {
        Event::Member(Member {
            name: Arc::from(name),
            addr: "127.0.0.2:8301".parse().unwrap(),
            incarnation: inc,
            state,
            tags: Arc::from(tags::encode(&[("role", "consul"), ("m:rack", "r1")]).unwrap()),
        })
    }

    #[test]
    fn snapshot_follows_publish_and_keeps_create_index() {
        let t = MemberTable::new();
        t.apply(&member("b", 1, State::Alive));
        t.apply(&member("a", 1, State::Alive));
        assert!(
            t.snapshot().members.is_empty(),
            "unpublished changes are invisible to listings"
        );
        assert!(t.get("a").is_some(), "point lookups see changes at once");
        assert!(t.publish());
        assert!(!t.publish());
        let s = t.snapshot();
        let names: Vec<&str> = s.members.iter().map(|m| &*m.name).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(s.members[0].is_server());
        assert_eq!(s.members[0].meta["rack"], "r1");
        assert!(
            !s.members[0].tags.contains_key("m:rack"),
            "metadata is not a tag"
        );

        let created = t.get("b").unwrap().create_index;
        t.apply(&member("b", 2, State::Dead));
        t.publish();
        let b = t.get("b").unwrap();
        assert_eq!(b.status, MemberStatus::Failed);
        assert_eq!(b.create_index, created);
        assert!(b.modify_index > created);
        assert!(t.snapshot().index >= b.modify_index);

        t.apply(&Event::Reaped(Arc::from("b")));
        t.publish();
        assert_eq!(t.snapshot().members.len(), 1);
        assert!(t.get("b").is_none());
    }

    #[test]
    fn events_say_what_changed_and_repeats_keep_the_index() {
        let t = MemberTable::new();
        assert_eq!(t.apply(&member("a", 1, State::Alive)), Change::Join);
        t.publish();
        let index = t.snapshot().index;
        assert_eq!(t.apply(&member("a", 1, State::Alive)), Change::None);
        assert_eq!(
            t.apply(&member("a", 1, State::Suspect)),
            Change::None,
            "serf shows a suspect as alive"
        );
        assert!(!t.publish(), "nothing a reader sees changed");
        assert_eq!(t.snapshot().index, index);
        assert_eq!(t.apply(&member("a", 2, State::Alive)), Change::Update);
        assert_eq!(t.apply(&member("a", 2, State::Dead)), Change::Failed);
        assert_eq!(t.apply(&member("a", 3, State::Alive)), Change::Join);
        assert_eq!(t.apply(&member("a", 4, State::Left)), Change::Leave);
        assert_eq!(t.apply(&Event::Reaped(Arc::from("a"))), Change::Reap);
        assert_eq!(t.apply(&Event::Reaped(Arc::from("a"))), Change::None);
        assert!(t.publish());
        assert_eq!(t.snapshot().index, index + 5);
        assert_eq!(Change::Failed.serf_name(), Some("EventMemberFailed"));
        assert_eq!(Change::None.serf_name(), None);
    }

    #[test]
    fn readers_never_block_a_writer() {
        let t = Arc::new(MemberTable::new());
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (t, stop) = (t.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut reads = 0u64;
                    while !stop.load(Ordering::Relaxed) && reads < 5_000_000 {
                        let s = t.snapshot();
                        assert!(s.members.windows(2).all(|w| w[0].name < w[1].name));
                        let _ = t.get("n7");
                        reads += 1;
                    }
                })
            })
            .collect();
        for i in 0..2000u32 {
            t.apply(&member(&format!("n{}", i % 50), i, State::Alive));
            t.publish();
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(t.snapshot().members.len(), 50);
    }
}
