//! The state machine: applies committed commands into [`KvStore`] in log order and keeps snapshots.
//!
//! As Consul's FSM, the applied state lives in memory and is rebuilt at start from the last snapshot
//! plus the committed log after it; a snapshot is written to a temporary file, fsynced and renamed
//! over `snapshots/current.snap`, so a crash leaves either the old snapshot or the new one.

use std::collections::{HashMap, VecDeque};
use std::io::{Cursor, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::command::{Command, DecodeError, IGNORABLE, Reply, Request};
use super::{ServerNode, TypeConfig};
use crate::state::replicated::{
    Applied, Change, Replica, StateImage, StateImageV1, StateImageV2, decode_exact,
};

type StErr = StorageError<u64>;
type Meta = SnapshotMeta<u64, ServerNode>;

/// What a snapshot's bytes hold.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Image {
    /// The replicated state.
    pub state: StateImage,
    /// Recent write IDs and their replies, oldest first.
    recent: Vec<(u128, Reply)>,
}

/// [`Image`] in an earlier layout of the state (`S`: [`StateImageV1`], before the external catalog;
/// [`StateImageV2`], before coordinates).
#[derive(Deserialize)]
struct OldImage<S> {
    state: S,
    recent: Vec<(u128, Reply)>,
}

impl<S: Into<StateImage>> OldImage<S> {
    fn upgrade(self) -> Image {
        Image {
            state: self.state.into(),
            recent: self.recent,
        }
    }
}

impl Image {
    /// Reads a snapshot's bytes, in this version's layout or an earlier one.
    pub fn decode(data: &[u8]) -> Result<Self, postcard::Error> {
        decode_exact::<Image>(data).or_else(|e| {
            decode_exact::<OldImage<StateImageV2>>(data)
                .map(OldImage::upgrade)
                .or_else(|_| decode_exact::<OldImage<StateImageV1>>(data).map(OldImage::upgrade))
                .map_err(|_| e)
        })
    }
}

/// Write IDs remembered; a retry comes within seconds, long before this many other writes.
const RECENT: usize = 65_536;

/// The replies of recent writes by ID, so a retried write is answered, not applied again. Part of
/// the replicated state (in snapshots too): every server must skip the same duplicates.
#[derive(Default)]
struct Recent {
    replies: HashMap<u128, Reply>,
    order: VecDeque<u128>,
}

/// Largest transaction result remembered for a retry, in key and value bytes.
const MAX_REMEMBERED: usize = 64 << 10;

fn txn_size(entries: &[crate::state::kv::KvEntry]) -> usize {
    entries
        .iter()
        .map(|e| e.key.len() + e.value.as_ref().map_or(0, Vec::len))
        .sum()
}

impl Recent {
    fn remember(&mut self, id: u128, reply: Reply) {
        // A transaction's reads can carry much of the store: past a bound, a retry is told the write
        // was applied rather than given the results again (this table is in every snapshot).
        let reply = match reply {
            Reply::Txn(Ok(entries)) if txn_size(&entries) > MAX_REMEMBERED => Reply::Unreadable(
                "the transaction was applied; its results were too large to keep for a retry"
                    .into(),
            ),
            other => other,
        };
        if self.replies.insert(id, reply).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > RECENT {
            if let Some(old) = self.order.pop_front() {
                self.replies.remove(&old);
            }
        }
    }

    fn image(&self) -> Vec<(u128, Reply)> {
        self.order
            .iter()
            .filter_map(|id| self.replies.get(id).map(|r| (*id, r.clone())))
            .collect()
    }

    fn restore(image: Vec<(u128, Reply)>) -> Self {
        let mut r = Recent::default();
        for (id, reply) in image {
            r.remember(id, reply);
        }
        r
    }
}

/// A snapshot as kept: its meta and its bytes.
#[derive(Clone, Serialize, Deserialize)]
struct Stored {
    meta: Meta,
    data: Vec<u8>,
}

/// Where snapshots are kept: a directory, or memory only (`-dev`).
#[derive(Clone)]
struct Shelf {
    dir: Option<PathBuf>,
    current: Arc<Mutex<Option<Stored>>>,
}

const CURRENT: &str = "current.snap";

impl Shelf {
    fn load(dir: Option<PathBuf>) -> Result<Self, String> {
        let current = match &dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
                let p = d.join(CURRENT);
                match std::fs::read(&p) {
                    Ok(bytes) => Some(
                        postcard::from_bytes::<Stored>(&bytes)
                            .map_err(|e| format!("{}: not a murmur snapshot: {e}", p.display()))?,
                    ),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(format!("{}: {e}", p.display())),
                }
            }
            None => None,
        };
        Ok(Shelf {
            dir,
            current: Arc::new(Mutex::new(current)),
        })
    }

    /// Keeps `s` as the current snapshot, on disk first, unless a newer one is already kept: a build
    /// (its own task in openraft) may finish after a newer snapshot was installed, and must not
    /// replace it, or the log purged behind the newer one would be missing after a restart. The
    /// lock makes concurrent keeps take turns over the file.
    fn keep(&self, s: Stored) -> Result<(), AnyError> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current
            .as_ref()
            .is_some_and(|c| c.meta.last_log_id > s.meta.last_log_id)
        {
            return Ok(());
        }
        if let Some(d) = &self.dir {
            let bytes = postcard::to_allocvec(&s).map_err(|e| AnyError::new(&e))?;
            super::log_store::blocking(|| -> Result<(), AnyError> {
                let tmp = d.join(format!("{CURRENT}.tmp"));
                let io = |e: std::io::Error| AnyError::new(&e);
                let mut f = std::fs::File::create(&tmp).map_err(io)?;
                f.write_all(&bytes).map_err(io)?;
                f.sync_all().map_err(io)?;
                std::fs::rename(&tmp, d.join(CURRENT)).map_err(io)?;
                // The rename itself must reach the disk before the log behind it may be purged.
                std::fs::File::open(d)
                    .and_then(|f| f.sync_all())
                    .map_err(io)
            })?;
        }
        *current = Some(s);
        Ok(())
    }

    fn get(&self) -> Option<Stored> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The state machine openraft drives.
pub struct StateMachine {
    state: Arc<Replica>,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, ServerNode>,
    recent: Recent,
    shelf: Shelf,
    snapshots_built: u64,
}

impl StateMachine {
    /// Restores from the snapshot in `dir` (none: memory only) into `state`.
    pub fn open(dir: Option<PathBuf>, state: Arc<Replica>) -> Result<Self, String> {
        let shelf = Shelf::load(dir)?;
        let mut sm = StateMachine {
            state,
            last_applied: None,
            membership: StoredMembership::default(),
            recent: Recent::default(),
            shelf,
            snapshots_built: 0,
        };
        if let Some(s) = sm.shelf.get() {
            sm.restore(&s.meta, &s.data)
                .map_err(|e| format!("restoring the snapshot: {e}"))?;
        }
        Ok(sm)
    }

    fn restore(&mut self, meta: &Meta, data: &[u8]) -> Result<(), postcard::Error> {
        let image = Image::decode(data)?;
        self.state.restore(image.state);
        self.recent = Recent::restore(image.recent);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        Ok(())
    }

    /// Applies one entry; an entry this server cannot apply is returned with why.
    fn apply_one(&mut self, e: &Entry<TypeConfig>) -> Result<Reply, (LogId<u64>, DecodeError)> {
        self.last_applied = Some(e.log_id);
        let index = e.log_id.index;
        let req = match &e.payload {
            EntryPayload::Blank => return Ok(Reply::Nothing),
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(e.log_id), m.clone());
                return Ok(Reply::Nothing);
            }
            EntryPayload::Normal(req) => req,
        };
        match Command::unbatch(req) {
            None => self.apply_request(e.log_id, req),
            Some(Ok(reqs)) => self.apply_batch(e.log_id, &reqs).map(Reply::Batch),
            Some(Err(err)) => {
                tracing::error!("raft entry {index} cannot be applied: {err}");
                Err((e.log_id, err))
            }
        }
    }

    /// Applies a group of KV writes at one index, all under one lock of the store (once per write ID;
    /// a write seen earlier, also earlier in the group, gets that answer). A group holding anything
    /// else (coordinate updates, alone or among KV writes) is applied one write after another, alike
    /// on every server.
    fn apply_batch(
        &mut self,
        log_id: LogId<u64>,
        reqs: &[Request],
    ) -> Result<Vec<Reply>, (LogId<u64>, DecodeError)> {
        let mut ops = Vec::new();
        let mut fresh = Vec::new();
        for (i, r) in reqs.iter().enumerate() {
            let seen = r.id != 0
                && (self.recent.replies.contains_key(&r.id)
                    || reqs[..i].iter().any(|earlier| earlier.id == r.id));
            if seen {
                continue;
            }
            match Command::decode(r) {
                Ok(Change::Kv(op)) => {
                    ops.push(op);
                    fresh.push(i);
                }
                _ => {
                    return reqs.iter().map(|r| self.apply_request(log_id, r)).collect();
                }
            }
        }
        let mut unnamed = HashMap::new();
        let sessions = &self.state.sessions;
        let results = self
            .state
            .kv
            .apply_all(log_id.index, &ops, |id| sessions.exists(id));
        for (i, result) in fresh.into_iter().zip(results) {
            let reply = match result {
                Ok(b) => Reply::Done(b),
                Err(r) => Reply::Refused(r),
            };
            if reqs[i].id == 0 {
                unnamed.insert(i, reply);
            } else {
                self.recent.remember(reqs[i].id, reply);
            }
        }
        Ok(reqs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                unnamed
                    .remove(&i)
                    .or_else(|| self.recent.replies.get(&r.id).cloned())
                    .unwrap_or_default()
            })
            .collect())
    }

    /// Applies one write at the index of the entry that carries it (once per write ID).
    fn apply_request(
        &mut self,
        log_id: LogId<u64>,
        req: &Request,
    ) -> Result<Reply, (LogId<u64>, DecodeError)> {
        let index = log_id.index;
        if req.id != 0
            && let Some(reply) = self.recent.replies.get(&req.id)
        {
            return Ok(reply.clone());
        }
        let reply = match Command::decode(req) {
            Ok(change) => match self.state.apply(index, &change) {
                Ok(Applied::Answer(b)) => Reply::Done(b),
                Ok(Applied::Txn(outcome)) => Reply::Txn(outcome),
                Err(r) => Reply::Refused(r),
            },
            // Every server that does not know an ignorable command skips it alike.
            Err(err @ DecodeError::UnknownTag(t)) if t & IGNORABLE != 0 => {
                tracing::warn!("raft entry {index} skipped: {err}");
                Reply::Unreadable(err.to_string())
            }
            // Applying less than the others would make this server's state differ: stop instead.
            Err(err) => {
                tracing::error!("raft entry {index} cannot be applied: {err}");
                return Err((log_id, err));
            }
        };
        if req.id != 0 {
            self.recent.remember(req.id, reply.clone());
        }
        Ok(reply)
    }
}

/// Builds a snapshot of the state as of the moment it was asked for.
pub struct Builder {
    meta: Meta,
    image: Image,
    shelf: Shelf,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StErr> {
        let data = postcard::to_allocvec(&self.image)
            .map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)))?;
        let stored = Stored {
            meta: self.meta.clone(),
            data,
        };
        let data = stored.data.clone();
        self.shelf
            .keep(stored)
            .map_err(|e| StorageIOError::write_snapshot(Some(self.meta.signature()), e))?;
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, ServerNode>), StErr> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        entries
            .into_iter()
            .map(|e| self.apply_one(&e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|(id, err)| StorageIOError::apply(id, AnyError::error(err.to_string())).into())
    }

    async fn get_snapshot_builder(&mut self) -> Builder {
        self.snapshots_built += 1;
        let last = self.last_applied;
        let id = match last {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.snapshots_built),
            None => format!("0-0-{}", self.snapshots_built),
        };
        Builder {
            meta: SnapshotMeta {
                last_log_id: last,
                last_membership: self.membership.clone(),
                snapshot_id: id,
            },
            image: Image {
                state: self.state.image(),
                recent: self.recent.image(),
            },
            shelf: self.shelf.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StErr> {
        let data = snapshot.into_inner();
        self.restore(meta, &data).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e))
        })?;
        self.shelf
            .keep(Stored {
                meta: meta.clone(),
                data,
            })
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StErr> {
        Ok(self.shelf.get().map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::kv::{KvOp, KvQuery};
    use crate::state::replicated::Change;
    use openraft::CommittedLeaderId;

    #[test]
    fn snapshots_in_earlier_layouts_still_restore() {
        // The previous layout: the state's three fields, then the recent writes.
        #[derive(Serialize)]
        struct Old {
            kv: crate::state::kv::KvImage,
            sessions_index: u64,
            sessions: Vec<crate::state::sessions::Session>,
            recent: Vec<(u128, Reply)>,
        }
        let mut kv = crate::state::kv::KvImage::default();
        kv.tombstones.push(("gone".into(), 3));
        let old = Old {
            kv: kv.clone(),
            sessions_index: 5,
            sessions: Vec::new(),
            recent: vec![(42, Reply::Done(true))],
        };
        let image = Image::decode(&postcard::to_allocvec(&old).unwrap()).unwrap();
        assert_eq!(image.state.kv, kv);
        assert_eq!(image.state.sessions_index, 5);
        assert_eq!(image.recent, vec![(42, Reply::Done(true))]);
        assert!(image.state.external.nodes.is_empty());
        // The layout before coordinates, and this version's, read as themselves.
        #[derive(Serialize)]
        struct V2<'a> {
            kv: &'a crate::state::kv::KvImage,
            sessions_index: u64,
            sessions: Vec<crate::state::sessions::Session>,
            external: &'a crate::state::external::ExternalImage,
            recent: Vec<(u128, Reply)>,
        }
        let mut now = image;
        now.state.external.index = 9;
        let v2 = V2 {
            kv: &now.state.kv,
            sessions_index: 5,
            sessions: Vec::new(),
            external: &now.state.external,
            recent: now.recent.clone(),
        };
        let back = Image::decode(&postcard::to_allocvec(&v2).unwrap()).unwrap();
        assert_eq!(back.state, now.state);
        now.state.coordinates.index = 11;
        let back = Image::decode(&postcard::to_allocvec(&now).unwrap()).unwrap();
        assert_eq!(back.state, now.state);
    }

    fn set(index: u64, key: &str) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::encode(&Change::Kv(KvOp::Set {
                key: key.into(),
                value: Some(b"v".to_vec()),
                flags: 0,
            }))),
        }
    }

    #[tokio::test]
    async fn snapshots_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("murmur-fsm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let st = Arc::new(Replica::default());
        let mut sm = StateMachine::open(Some(dir.clone()), st.clone()).unwrap();
        let r = sm.apply(vec![set(1, "a"), set(2, "b")]).await.unwrap();
        assert_eq!(r, vec![Reply::Done(true), Reply::Done(true)]);
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(2));
        // After the snapshot: not in it.
        sm.apply(vec![set(3, "c")]).await.unwrap();

        let st2 = Arc::new(Replica::default());
        let kv2 = &st2.kv;
        let mut sm2 = StateMachine::open(Some(dir.clone()), st2.clone()).unwrap();
        let (applied, _) = sm2.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(2));
        assert_eq!(kv2.len(), 2);
        assert_eq!(kv2.query(&KvQuery::Get("b".into())).0, 2);

        // Installing a snapshot replaces the state.
        let st3 = Arc::new(Replica::default());
        let kv3 = &st3.kv;
        let mut sm3 = StateMachine::open(None, st3.clone()).unwrap();
        sm3.apply(vec![set(1, "stale")]).await.unwrap();
        let cur = sm2.get_current_snapshot().await.unwrap().unwrap();
        sm3.install_snapshot(&cur.meta, cur.snapshot).await.unwrap();
        assert_eq!(kv3.len(), 2);
        assert_eq!(kv3.query(&KvQuery::Get("stale".into())).0, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn raw(index: u64, id: u128, tag: u16, body: Vec<u8>) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(super::super::command::Request { id, tag, body }),
        }
    }

    #[tokio::test]
    async fn an_unknown_command_is_skipped_only_when_ignorable() {
        let mut sm = StateMachine::open(None, Arc::new(Replica::default())).unwrap();
        let r = sm
            .apply(vec![raw(1, 0, IGNORABLE | 7, vec![])])
            .await
            .unwrap();
        assert!(matches!(&r[0], Reply::Unreadable(t) if t.contains("32775")));
        assert_eq!(
            sm.applied_state().await.unwrap().0.map(|l| l.index),
            Some(1)
        );
        assert!(sm.apply(vec![raw(2, 0, 4242, vec![])]).await.is_err());
    }

    #[tokio::test]
    async fn a_batch_applies_its_writes_in_order_at_one_index() {
        let st = Arc::new(Replica::default());
        let mut sm = StateMachine::open(None, st.clone()).unwrap();
        let cas = |id, index| {
            let mut r = Command::encode(&Change::Kv(KvOp::Cas {
                key: "k".into(),
                value: Some(vec![index as u8]),
                flags: 0,
                index,
            }));
            r.id = id;
            r
        };
        // Create-only CAS twice in one entry: the first wins, the second sees the key.
        let batch = Command::batch(&[cas(100, 0), cas(101, 0)]);
        let r = sm
            .apply(vec![raw(5, 0, batch.tag, batch.body)])
            .await
            .unwrap();
        assert_eq!(
            r,
            vec![Reply::Batch(vec![Reply::Done(true), Reply::Done(false)])]
        );
        let (index, _) = st.kv.query(&KvQuery::Get("k".into()));
        assert_eq!(index, 5, "the key was written at the batch's index");
        // A batch with a write seen before answers it from memory, and applies the rest.
        let batch = Command::batch(&[cas(100, 0), cas(102, 5)]);
        let r = sm
            .apply(vec![raw(6, 0, batch.tag, batch.body)])
            .await
            .unwrap();
        assert_eq!(
            r,
            vec![Reply::Batch(vec![Reply::Done(true), Reply::Done(true)])]
        );
        assert_eq!(st.kv.query(&KvQuery::Get("k".into())).0, 6);
        // A batch that does not decode stops the server rather than apply part of it.
        assert!(sm.apply(vec![raw(7, 0, batch.tag, vec![9])]).await.is_err());
    }

    #[tokio::test]
    async fn a_retried_write_is_applied_once_also_after_a_snapshot() {
        let st = Arc::new(Replica::default());
        let mut sm = StateMachine::open(None, st.clone()).unwrap();
        let body = Command::encode(&Change::Kv(KvOp::Cas {
            key: "k".into(),
            value: None,
            flags: 0,
            index: 0,
        }))
        .body;
        let r = sm
            .apply(vec![
                raw(1, 77, 1, body.clone()),
                raw(2, 77, 1, body.clone()),
            ])
            .await
            .unwrap();
        assert_eq!(
            r,
            vec![Reply::Done(true), Reply::Done(true)],
            "the retry gets the first answer"
        );
        assert_eq!(
            st.kv.query(&KvQuery::Get("k".into())).0,
            1,
            "applied once, at index 1"
        );
        // A server restored from a snapshot skips the same duplicate.
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let st2 = Arc::new(Replica::default());
        let mut sm2 = StateMachine::open(None, st2.clone()).unwrap();
        sm2.install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        let r = sm2.apply(vec![raw(3, 77, 1, body.clone())]).await.unwrap();
        assert_eq!(r, vec![Reply::Done(true)]);
        assert_eq!(st2.kv.query(&KvQuery::Get("k".into())).0, 1);
        // A different ID is a new write: the CAS now fails.
        let r = sm2.apply(vec![raw(4, 78, 1, body)]).await.unwrap();
        assert_eq!(r, vec![Reply::Done(false)]);
    }
}
