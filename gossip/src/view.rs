//! One core's view of the membership: a slot per roster id, in copy-on-write chunks.
//!
//! Indexing by id replaces a per-core hash index (the core's hottest cache miss), and chunks shared with
//! other views cost nothing until one side changes a slot: loadgen can start thousands of cores from one
//! converged view, and each pays only for the chunks it changes.

use std::sync::Arc;

use super::member::State;
use super::record::Record;
use super::roster::{Id, Ident};

/// Slots per chunk: the most whose chunk, with its `Arc` counts, fits mimalloc's 1792-byte size class
/// (1776 bytes). At 64 slots the chunk took 1560 bytes of that class; the 13% lost was 17 KiB of each
/// loadgen core's memory at 5000 members (sim 5000 catalog run, 170 against 153 KiB per node).
const CHUNK: usize = 73;
const _: () = assert!(2 * size_of::<usize>() + size_of::<Chunk>() <= 1792);

/// One member as this core sees it; the shared [`Ident`] says what the member announced.
#[derive(Clone)]
pub struct Slot {
    /// Announced address and tags.
    pub ident: Arc<Ident>,
    /// Incarnation this core knows (may exceed `ident.incarnation` for suspect/dead claims).
    pub incarnation: u32,
    /// State.
    pub state: State,
    /// Taken from the core's counter on every state change, so stale timers are recognised. 16 bits
    /// keep the slot at 24 bytes (every loadgen core holds one per member). The counter wraps, so the
    /// timers check more than the token: a suspicion timer fires only past its suspicion's own
    /// deadline, and a reap timer needs the same incarnation too (a member that came back had to
    /// raise it).
    pub token: u16,
    /// The newest application record held for the member (none yet, or the member left).
    pub record: Option<Arc<Record>>,
}

// Slots are most of a loadgen core's memory; a field that grows them past 24 bytes costs a third more.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<Slot>() == 24 && size_of::<Option<Slot>>() == 24);

#[derive(Clone)]
struct Chunk {
    slots: [Option<Slot>; CHUNK],
    used: u8,
}

impl Default for Chunk {
    fn default() -> Self {
        Chunk {
            slots: std::array::from_fn(|_| None),
            used: 0,
        }
    }
}

/// Member slots indexed by id, with live and total counts.
#[derive(Clone, Default)]
pub struct View {
    chunks: Vec<Option<Arc<Chunk>>>,
    len: usize,
    live: usize,
    /// Live members that do not announce [`crate::wire::FEATURE_RECORD_NEWS`], and
    /// [`crate::wire::FEATURE_RECORD_TREE`].
    live_without: [usize; 2],
}

/// Whether `s` is live and lacks the record news lists, and the record tree: while any live member
/// lacks one, records cannot rely on it.
fn live_without(s: &Slot) -> [usize; 2] {
    let lacks = |f: u32| usize::from(s.state.is_live() && s.ident.features & f == 0);
    [
        lacks(crate::wire::FEATURE_RECORD_NEWS),
        lacks(crate::wire::FEATURE_RECORD_TREE),
    ]
}

impl View {
    /// The slot of `id`, if known.
    pub fn get(&self, id: Id) -> Option<&Slot> {
        let (c, k) = split(id);
        self.chunks.get(c)?.as_ref()?.slots[k].as_ref()
    }

    /// Members known (any state).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no member is known.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Members alive or suspect.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Members alive or suspect that do not read news lists (older builds, or the feature turned off).
    pub fn live_without_news(&self) -> usize {
        self.live_without[0]
    }

    /// Members alive or suspect that do not pass records down the broadcast tree.
    pub fn live_without_tree(&self) -> usize {
        self.live_without[1]
    }

    /// Ids are below this bound.
    pub fn id_bound(&self) -> usize {
        self.chunks.len() * CHUNK
    }

    /// Adds or replaces the slot of `id`.
    pub fn insert(&mut self, slot: Slot) {
        let id = slot.ident.id();
        let (c, k) = split(id);
        if self.chunks.len() <= c {
            self.chunks.resize(c + 1, None);
        }
        let chunk = Arc::make_mut(self.chunks[c].get_or_insert_with(Default::default));
        let live = slot.state.is_live();
        let without = live_without(&slot);
        match chunk.slots[k].replace(slot) {
            Some(old) => {
                self.live -= usize::from(old.state.is_live());
                for (n, k) in self.live_without.iter_mut().zip(live_without(&old)) {
                    *n -= k;
                }
            }
            None => {
                chunk.used += 1;
                self.len += 1;
            }
        }
        self.live += usize::from(live);
        for (n, k) in self.live_without.iter_mut().zip(without) {
            *n += k;
        }
    }

    /// Changes the slot of `id` (if known) in place; counts follow its state.
    pub fn update<R>(&mut self, id: Id, f: impl FnOnce(&mut Slot) -> R) -> Option<R> {
        let (c, k) = split(id);
        let chunk = self.chunks.get_mut(c)?.as_mut()?;
        chunk.slots[k].as_ref()?;
        let slot = Arc::make_mut(chunk).slots[k].as_mut()?;
        let was = (slot.state.is_live(), live_without(slot));
        let r = f(slot);
        let now = (slot.state.is_live(), live_without(slot));
        self.live = self.live + usize::from(now.0) - usize::from(was.0);
        for ((n, k), w) in self.live_without.iter_mut().zip(now.1).zip(was.1) {
            *n = *n + k - w;
        }
        Some(r)
    }

    /// Forgets `id`.
    pub fn remove(&mut self, id: Id) -> Option<Slot> {
        let (c, k) = split(id);
        let entry = self.chunks.get_mut(c)?;
        entry.as_ref()?.slots[k].as_ref()?;
        let chunk = Arc::make_mut(entry.as_mut()?);
        let old = chunk.slots[k].take()?;
        chunk.used -= 1;
        if chunk.used == 0 {
            *entry = None;
            while self.chunks.last().is_some_and(Option::is_none) {
                self.chunks.pop();
            }
        }
        self.len -= 1;
        self.live -= usize::from(old.state.is_live());
        for (n, k) in self.live_without.iter_mut().zip(live_without(&old)) {
            *n -= k;
        }
        Some(old)
    }

    /// Every known slot, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.chunks
            .iter()
            .flatten()
            .flat_map(|c| c.slots.iter().flatten())
    }

    /// Known slots with id at or above `from`, by id.
    pub fn iter_from(&self, from: usize) -> impl Iterator<Item = &Slot> {
        let (c, k) = (from / CHUNK, from % CHUNK);
        self.chunks
            .iter()
            .enumerate()
            .skip(c)
            .filter_map(|(i, ch)| ch.as_ref().map(|ch| (i, ch)))
            .flat_map(move |(i, ch)| {
                let skip = if i == c { k } else { 0 };
                ch.slots[skip..].iter().flatten()
            })
    }

    /// Chunks held by this view alone (the rest are shared with other views).
    pub fn unshared_chunks(&self) -> usize {
        self.chunks
            .iter()
            .flatten()
            .filter(|c| Arc::strong_count(c) == 1)
            .count()
    }
}

fn split(id: Id) -> (usize, usize) {
    (id as usize / CHUNK, id as usize % CHUNK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::Roster;
    use std::net::SocketAddr;

    fn slot(r: &Arc<Roster>, name: &str, state: State) -> Slot {
        let n = r.name(name);
        Slot {
            ident: r.ident(&n, SocketAddr::from(([127, 0, 0, 1], 1)), b"", 1),
            incarnation: 1,
            state,
            token: 0,
            record: None,
        }
    }

    #[test]
    fn counts_follow_inserts_updates_and_removals() {
        let r = Roster::new();
        let mut v = View::default();
        for i in 0..200 {
            v.insert(slot(&r, &format!("n{i}"), State::Alive));
        }
        assert_eq!((v.len(), v.live()), (200, 200));
        let id = r.find("n150").unwrap().id();
        v.update(id, |s| s.state = State::Dead);
        assert_eq!(v.live(), 199);
        assert_eq!(v.get(id).unwrap().state, State::Dead);
        assert!(v.remove(id).is_some());
        assert!(v.get(id).is_none());
        assert_eq!((v.len(), v.live()), (199, 199));
        assert_eq!(v.live_without_news(), 199);
        // A member that comes to announce news lists leaves the count, and comes back to it as it
        // stops announcing them.
        let n = r.find("n7").unwrap();
        let tags = crate::tags::encode(&[("mwf", "4")]).unwrap();
        let id7 = n.id();
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        v.update(id7, |s| s.ident = r.ident(&n, addr, &tags, 1));
        assert_eq!((v.live(), v.live_without_news()), (199, 198));
        assert_eq!(v.live_without_tree(), 199, "news lists only");
        let both = crate::tags::encode(&[("mwf", "20")]).unwrap();
        let n8 = r.find("n8").unwrap();
        v.update(n8.id(), |s| s.ident = r.ident(&n8, addr, &both, 1));
        assert_eq!((v.live_without_news(), v.live_without_tree()), (197, 198));
        // A member without either extension stops counting once failed, and counts again once back.
        let n9 = r.find("n9").unwrap().id();
        v.update(n9, |s| s.state = State::Dead);
        assert_eq!((v.live_without_news(), v.live_without_tree()), (196, 197));
        v.update(n9, |s| s.state = State::Alive);
        v.update(n8.id(), |s| s.ident = r.ident(&n8, addr, b"", 1));
        assert_eq!((v.live_without_news(), v.live_without_tree()), (198, 199));
        v.update(id7, |s| s.state = State::Left);
        assert_eq!((v.live(), v.live_without_news()), (198, 198));
        v.update(id7, |s| {
            s.state = State::Alive;
            s.ident = r.ident(&n, addr, b"", 1);
        });
        assert_eq!((v.live(), v.live_without_news()), (199, 199));
        assert!(v.remove(id).is_none());
        assert_eq!(v.iter().count(), 199);
        assert_eq!(v.iter_from(100).count(), 99);
        assert_eq!(v.iter_from(0).count(), 199);
    }

    #[test]
    fn empty_trailing_chunks_are_released() {
        let r = Roster::new();
        let mut v = View::default();
        let slots: Vec<Slot> = (0..2 * CHUNK + 2)
            .map(|i| slot(&r, &format!("n{i}"), State::Alive))
            .collect();
        for s in &slots {
            v.insert(s.clone());
        }
        assert_eq!(v.id_bound(), 3 * CHUNK);
        for s in &slots[CHUNK..] {
            v.remove(s.ident.id());
        }
        assert_eq!(v.id_bound(), CHUNK);
    }

    #[test]
    fn clones_share_chunks_until_written() {
        let r = Roster::new();
        let mut a = View::default();
        for i in 0..128 {
            a.insert(slot(&r, &format!("n{i}"), State::Alive));
        }
        let mut b = a.clone();
        assert_eq!(b.unshared_chunks(), 0);
        let id = r.find("n3").unwrap().id();
        b.update(id, |s| s.state = State::Suspect);
        assert_eq!(b.unshared_chunks(), 1);
        assert_eq!(
            a.get(id).unwrap().state,
            State::Alive,
            "the original is untouched"
        );
        assert_eq!(b.get(id).unwrap().state, State::Suspect);
    }
}
