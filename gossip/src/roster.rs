//! Interned member identities: node name -> small numeric id, plus the (address, tags, incarnation)
//! records members announce. One roster can serve many cores in one process (loadgen's virtual nodes),
//! so thousands of cores that know the same member share one copy of its name and record, and each core
//! can index its view of the cluster by id instead of keeping a hash index of its own.
//!
//! Ids are recycled: a name's id is freed when the last record that uses it is dropped, so a long-lived
//! agent that sees many short-lived node names does not grow the roster without bound.

use std::net::SocketAddr;

use super::record::{Record, RecordPatch};
use super::ring::{self, Ring};
use std::sync::{Arc, Mutex, Weak};

/// Ids are dense from 0; a core's view uses them as indices.
pub type Id = u32;

/// One interned node name. Alive while any record ([`Ident`]) for it is held.
pub struct Name {
    id: Id,
    text: Arc<str>,
    /// Position on the monitoring ring.
    pos: u64,
    /// Newest record announced for this name, for sharing between cores.
    latest: Mutex<Weak<Ident>>,
    /// Newest application record held for this name, for sharing between cores.
    latest_record: Mutex<Weak<Record>>,
    roster: Weak<Roster>,
}

impl Name {
    /// The id, unique among live names of its roster.
    pub fn id(&self) -> Id {
        self.id
    }

    /// The node name.
    pub fn text(&self) -> &Arc<str> {
        &self.text
    }

    /// Position on the monitoring ring ([`ring::position`] of the name).
    pub fn pos(&self) -> u64 {
        self.pos
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let Some(roster) = self.roster.upgrade() else {
            return;
        };
        let mut ids = roster.ids.lock().unwrap_or_else(|p| p.into_inner());
        let map = roster.by_name.pin();
        // A new `Name` for the same text may have replaced ours already (under this lock); keep that one.
        if map.get(&*self.text).is_some_and(|w| w.strong_count() == 0) {
            map.remove(&*self.text);
        }
        roster.ring.remove(self.pos, self.id);
        ids.free.push(self.id);
    }
}

/// What a member announced at one incarnation: address and tags. Shared by every core holding it.
pub struct Ident {
    name: Arc<Name>,
    /// Gossip address.
    pub addr: SocketAddr,
    /// Encoded tags.
    pub tags: Arc<[u8]>,
    /// Incarnation this record was announced at.
    pub incarnation: u32,
    /// Wire extensions the member announced in its tags ([`crate::wire::FEATURES_TAG`]).
    pub features: u32,
}

impl Ident {
    /// The member's id.
    pub fn id(&self) -> Id {
        self.name.id
    }

    /// The member's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name.text
    }

    /// The interned name.
    pub(crate) fn interned(&self) -> &Arc<Name> {
        &self.name
    }
}

#[derive(Default)]
struct Ids {
    next: Id,
    free: Vec<Id>,
}

/// Name interner shared by the cores of one process.
pub struct Roster {
    by_name: papaya::HashMap<Arc<str>, Weak<Name>, foldhash::fast::RandomState>,
    /// Serialises creation and removal of names (lookups do not take it).
    ids: Mutex<Ids>,
    empty_tags: Arc<[u8]>,
    /// Every held name at its ring position.
    ring: Ring,
}

impl Roster {
    /// An empty roster.
    pub fn new() -> Arc<Self> {
        Arc::new(Roster {
            by_name: papaya::HashMap::with_hasher(foldhash::fast::RandomState::default()),
            ids: Mutex::new(Ids::default()),
            empty_tags: Arc::from(&[][..]),
            ring: Ring::default(),
        })
    }

    /// The live name `text`, if anyone holds it.
    pub fn find(&self, text: &str) -> Option<Arc<Name>> {
        self.by_name.pin().get(text).and_then(Weak::upgrade)
    }

    /// The name `text`, created with a fresh id if nobody holds it.
    pub fn name(self: &Arc<Self>, text: &str) -> Arc<Name> {
        if let Some(n) = self.find(text) {
            return n;
        }
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let map = self.by_name.pin();
        if let Some(n) = map.get(text).and_then(Weak::upgrade) {
            return n;
        }
        let id = ids.free.pop().unwrap_or_else(|| {
            ids.next += 1;
            ids.next - 1
        });
        let text: Arc<str> = Arc::from(text);
        let pos = ring::position(&text);
        self.ring.insert(pos, id);
        let name = Arc::new(Name {
            id,
            text: text.clone(),
            pos,
            latest: Mutex::new(Weak::new()),
            latest_record: Mutex::new(Weak::new()),
            roster: Arc::downgrade(self),
        });
        map.insert(text, Arc::downgrade(&name));
        name
    }

    /// The record (`addr`, `tags`, `incarnation`) of `name`, shared with any core that holds an equal one.
    pub fn ident(
        &self,
        name: &Arc<Name>,
        addr: SocketAddr,
        tags: &[u8],
        incarnation: u32,
    ) -> Arc<Ident> {
        let mut latest = name.latest.lock().unwrap_or_else(|p| p.into_inner());
        let prev = latest.upgrade();
        if let Some(p) = &prev
            && p.incarnation == incarnation
            && p.addr == addr
            && *p.tags == *tags
        {
            return p.clone();
        }
        let tags = match &prev {
            _ if tags.is_empty() => self.empty_tags.clone(),
            Some(p) if *p.tags == *tags => p.tags.clone(),
            _ => Arc::from(tags),
        };
        let features = crate::tags::get(&tags, crate::wire::FEATURES_TAG)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let ident = Arc::new(Ident {
            name: name.clone(),
            addr,
            tags,
            incarnation,
            features,
        });
        if prev.is_none_or(|p| super::incarnation::at_least(incarnation, p.incarnation)) {
            *latest = Arc::downgrade(&ident);
        }
        ident
    }

    /// `name`'s application record at `version`, shared with any core that holds an equal one (a
    /// catalog of thousands of records in thousands of loadgen cores is then held once). A new one
    /// takes its patch from `patch`, which runs only then.
    pub fn record(
        &self,
        name: &Name,
        version: u32,
        body: &[u8],
        patch: impl FnOnce() -> Option<RecordPatch>,
    ) -> Arc<Record> {
        let mut latest = name.latest_record.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = latest.upgrade()
            && p.version == version
            && *p.body == *body
        {
            return p;
        }
        let r = Arc::new(Record {
            version,
            body: body.into(),
            patch: patch(),
        });
        *latest = Arc::downgrade(&r);
        r
    }

    /// The monitoring ring of the held names.
    pub(crate) fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Names currently held.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when no name is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One past the highest id handed out so far (the size a view indexed by id may need).
    pub fn id_bound(&self) -> usize {
        self.ids.lock().unwrap_or_else(|p| p.into_inner()).next as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn names_are_shared_while_held_and_their_ids_recycled_after() {
        let r = Roster::new();
        let a = r.name("a");
        let a2 = r.name("a");
        assert!(Arc::ptr_eq(&a, &a2));
        let b = r.name("b");
        assert_ne!(a.id(), b.id());
        assert_eq!(r.len(), 2);
        let (a_id, b_id) = (a.id(), b.id());
        drop((a, a2));
        assert!(r.find("a").is_none());
        assert_eq!(r.len(), 1);
        let c = r.name("c");
        assert_eq!(c.id(), a_id, "freed id is reused");
        assert_eq!(r.find("b").map(|n| n.id()), Some(b_id));
        assert_eq!(r.id_bound(), 2);
        assert_eq!(r.ring().len(), 2, "a's place on the ring went with it");
    }

    #[test]
    fn equal_records_are_shared_and_newer_ones_replace_them() {
        let r = Roster::new();
        let n = r.name("n");
        let i1 = r.ident(&n, addr(1), b"t", 3);
        let i2 = r.ident(&n, addr(1), b"t", 3);
        assert!(Arc::ptr_eq(&i1, &i2));
        let i3 = r.ident(&n, addr(2), b"t", 4);
        assert!(!Arc::ptr_eq(&i1, &i3));
        assert!(Arc::ptr_eq(&i1.tags, &i3.tags), "unchanged tags shared");
        // An older announcement still gets its own record but does not displace the newest.
        let old = r.ident(&n, addr(1), b"t", 2);
        assert_eq!(old.incarnation, 2);
        assert!(Arc::ptr_eq(&r.ident(&n, addr(2), b"t", 4), &i3));
        assert_eq!(i3.name().as_ref(), "n");
        assert_eq!(i3.id(), n.id());
    }

    #[test]
    fn a_name_lives_as_long_as_any_record_of_it() {
        let r = Roster::new();
        let ident = {
            let n = r.name("x");
            r.ident(&n, addr(1), b"", 0)
        };
        assert!(r.find("x").is_some());
        drop(ident);
        assert!(r.find("x").is_none());
        assert!(r.is_empty());
    }

    #[test]
    fn concurrent_interning_agrees_on_ids() {
        let r = Roster::new();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    (0..500)
                        .map(|i| r.name(&format!("n{i}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let got: Vec<Vec<Arc<Name>>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for (a, b) in got[0].iter().zip(&got[1]) {
            assert!(Arc::ptr_eq(a, b));
        }
        assert_eq!(r.len(), 500);
        assert_eq!(r.id_bound(), 500);
    }
}
