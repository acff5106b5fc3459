//! The raft log, vote and committed index in `data-dir/raft/raft.db` (redb). Appends and votes are
//! committed with `Durability::Immediate` (fsync) before openraft hears they are done. The committed
//! index rides along with the next of those transactions: it only spares re-applying entries after a
//! restart, and an older value is always safe. (A transaction of its own after every commit wrote
//! about 20 KB per write, 16 times etcd's, and cut writes per second by half; perf/kv-bench.sh.)

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};
use redb::{Database, ReadableTable, TableDefinition};

use super::TypeConfig;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";

type StErr = StorageError<u64>;

/// Wraps any error as openraft's.
fn any(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

/// Runs blocking disk work without stalling the other tasks of a multi-threaded runtime.
pub(super) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The log store; clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    /// The committed log ID (encoded) waiting for the next write transaction.
    committed: Arc<Mutex<Option<Vec<u8>>>>,
}

impl LogStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, String> {
        let db = Database::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::with_tables(db)
    }

    /// A store in memory only (`-dev`: nothing survives the process, as Consul's dev mode).
    pub fn memory() -> Result<Self, String> {
        let db = redb::Builder::new()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| e.to_string())?;
        Self::with_tables(db)
    }

    fn with_tables(db: Database) -> Result<Self, String> {
        let w = db.begin_write().map_err(|e| e.to_string())?;
        w.open_table(LOG).map_err(|e| e.to_string())?;
        w.open_table(META).map_err(|e| e.to_string())?;
        w.commit().map_err(|e| e.to_string())?;
        Ok(LogStore {
            db: Arc::new(db),
            committed: Arc::default(),
        })
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, AnyError> {
        let r = self.db.begin_read().map_err(any)?;
        let t = r.open_table(META).map_err(any)?;
        match t.get(key).map_err(any)? {
            None => Ok(None),
            Some(v) => postcard::from_bytes(v.value()).map(Some).map_err(any),
        }
    }

    /// Writes the waiting committed log ID, if any, in transaction `w`.
    fn carry_committed(&self, w: &redb::WriteTransaction) -> Result<(), AnyError> {
        let waiting = self
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(c) = waiting {
            w.open_table(META)
                .map_err(any)?
                .insert(COMMITTED, c.as_slice())
                .map_err(any)?;
        }
        Ok(())
    }

    fn put_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), AnyError> {
        let bytes = postcard::to_allocvec(value).map_err(any)?;
        blocking(|| {
            let w = self.db.begin_write().map_err(any)?;
            self.carry_committed(&w)?;
            w.open_table(META)
                .map_err(any)?
                .insert(key, bytes.as_slice())
                .map_err(any)?;
            w.commit().map_err(any)
        })
    }

    /// True when the log holds anything at all: a vote, an entry or a purge mark (a server that ran
    /// raft before, whose data dir must not be bootstrapped again).
    pub fn has_state(&self) -> Result<bool, String> {
        let vote: Option<Vote<u64>> = self.meta(VOTE).map_err(|e| e.to_string())?;
        let purged: Option<LogId<u64>> = self.meta(PURGED).map_err(|e| e.to_string())?;
        let r = self.db.begin_read().map_err(|e| e.to_string())?;
        let t = r.open_table(LOG).map_err(|e| e.to_string())?;
        let any_entry = t.first().map_err(|e| e.to_string())?.is_some();
        Ok(vote.is_some() || purged.is_some() || any_entry)
    }

    fn entries(
        &self,
        from: Bound<u64>,
        to: Bound<u64>,
    ) -> Result<Vec<Entry<TypeConfig>>, AnyError> {
        let r = self.db.begin_read().map_err(any)?;
        let t = r.open_table(LOG).map_err(any)?;
        let mut out = Vec::new();
        for row in t.range::<u64>((from, to)).map_err(any)? {
            let (_, v) = row.map_err(any)?;
            out.push(postcard::from_bytes(v.value()).map_err(any)?);
        }
        Ok(out)
    }
}

fn bound(b: Bound<&u64>) -> Bound<u64> {
    match b {
        Bound::Included(i) => Bound::Included(*i),
        Bound::Excluded(i) => Bound::Excluded(*i),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StErr> {
        self.entries(bound(range.start_bound()), bound(range.end_bound()))
            .map_err(|e| StorageIOError::read_logs(e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StErr> {
        let purged: Option<LogId<u64>> = self.meta(PURGED).map_err(StorageIOError::read_logs)?;
        let last = {
            let r = self
                .db
                .begin_read()
                .map_err(|e| StorageIOError::read_logs(any(e)))?;
            let t = r
                .open_table(LOG)
                .map_err(|e| StorageIOError::read_logs(any(e)))?;
            match t.last().map_err(|e| StorageIOError::read_logs(any(e)))? {
                Some((_, v)) => {
                    let e: Entry<TypeConfig> = postcard::from_bytes(v.value())
                        .map_err(|e| StorageIOError::read_logs(any(e)))?;
                    Some(e.log_id)
                }
                None => None,
            }
        };
        Ok(LogState {
            last_log_id: last.or(purged),
            last_purged_log_id: purged,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StErr> {
        self.put_meta(VOTE, vote)
            .map_err(|e| StorageIOError::write_vote(e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StErr> {
        self.meta(VOTE)
            .map_err(|e| StorageIOError::read_vote(e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), StErr> {
        let bytes = postcard::to_allocvec(&committed).map_err(|e| StorageIOError::write(any(e)))?;
        *self.committed.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StErr> {
        let c: Option<Option<LogId<u64>>> = self.meta(COMMITTED).map_err(StorageIOError::read)?;
        Ok(c.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for e in entries {
            let bytes =
                postcard::to_allocvec(&e).map_err(|x| StorageIOError::write_logs(any(x)))?;
            rows.push((e.log_id.index, bytes));
        }
        let written = blocking(|| -> Result<(), AnyError> {
            let w = self.db.begin_write().map_err(any)?;
            self.carry_committed(&w)?;
            {
                let mut t = w.open_table(LOG).map_err(any)?;
                for (i, b) in &rows {
                    t.insert(*i, b.as_slice()).map_err(any)?;
                }
            }
            w.commit().map_err(any)
        });
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StErr> {
        blocking(|| -> Result<(), AnyError> {
            let w = self.db.begin_write().map_err(any)?;
            self.carry_committed(&w)?;
            w.open_table(LOG)
                .map_err(any)?
                .retain_in(log_id.index.., |_, _| false)
                .map_err(any)?;
            w.commit().map_err(any)
        })
        .map_err(|e| StorageIOError::write_logs(e).into())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StErr> {
        let mark =
            postcard::to_allocvec(&log_id).map_err(|e| StorageIOError::write_logs(any(e)))?;
        blocking(|| -> Result<(), AnyError> {
            let w = self.db.begin_write().map_err(any)?;
            self.carry_committed(&w)?;
            w.open_table(META)
                .map_err(any)?
                .insert(PURGED, mark.as_slice())
                .map_err(any)?;
            w.open_table(LOG)
                .map_err(any)?
                .retain_in(..=log_id.index, |_, _| false)
                .map_err(any)?;
            w.commit().map_err(any)
        })
        .map_err(|e| StorageIOError::write_logs(e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    #[tokio::test]
    async fn the_log_survives_a_reopen_and_truncates_and_purges() {
        let dir = std::env::temp_dir().join(format!("murmur-logstore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("raft.db");
        {
            let mut s = LogStore::open(&path).unwrap();
            assert!(!s.has_state().unwrap());
            let rows: Vec<_> = (1..=10).map(|i| entry(1, i)).collect();
            // Writes go straight through: append's flush callback needs a live raft, so the table is
            // filled the way append fills it.
            let w = s.db.begin_write().unwrap();
            {
                let mut t = w.open_table(LOG).unwrap();
                for e in &rows {
                    t.insert(e.log_id.index, postcard::to_allocvec(e).unwrap().as_slice())
                        .unwrap();
                }
            }
            w.commit().unwrap();
            s.save_vote(&Vote::new(3, 7)).await.unwrap();
            s.save_committed(Some(LogId::new(CommittedLeaderId::new(1, 1), 6)))
                .await
                .unwrap();
            s.truncate(LogId::new(CommittedLeaderId::new(1, 1), 9))
                .await
                .unwrap();
            s.purge(LogId::new(CommittedLeaderId::new(1, 1), 3))
                .await
                .unwrap();
        }
        let mut s = LogStore::open(&path).unwrap();
        assert!(s.has_state().unwrap());
        assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(3, 7)));
        assert_eq!(s.read_committed().await.unwrap().map(|l| l.index), Some(6));
        let st = s.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id.map(|l| l.index), Some(3));
        assert_eq!(st.last_log_id.map(|l| l.index), Some(8));
        let got = s.try_get_log_entries(0..100).await.unwrap();
        let idx: Vec<u64> = got.iter().map(|e| e.log_id.index).collect();
        assert_eq!(idx, vec![4, 5, 6, 7, 8]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
