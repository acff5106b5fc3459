//! The KV store the servers replicate: Consul's keys, values, flags and locks, with the raft index of
//! every change, tombstones for deleted keys, and a watch per key and per prefix so a blocking read
//! wakes only when its own result changes.
//!
//! Writes come only from the raft state machine ([`KvStore::apply`], in log order, with the entry's
//! index); readers take a short read lock. The store knows nothing of raft: the same [`KvOp`]s are
//! applied on every server, so every server holds the same data at the same index.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::txn::{self, TxnCheck, TxnError, TxnOp, TxnOutcome};

/// Largest value Consul accepts (`raft_multiplier`-independent: 512 KiB).
pub const MAX_VALUE: usize = 512 * 1024;

/// One key, as `/v1/kv` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value; `None` for a key stored without a body (Consul shows `null`).
    pub value: Option<Vec<u8>>,
    /// Opaque client flags.
    pub flags: u64,
    /// How many times a session has acquired the key.
    pub lock_index: u64,
    /// The session holding the lock, if any.
    pub session: Option<String>,
    /// Index at which the key was created.
    pub create_index: u64,
    /// Index of the key's last change.
    pub modify_index: u64,
}

/// A write to the store; applied in log order on every server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    /// Sets a key unconditionally.
    Set {
        /// Key.
        key: String,
        /// Value (`None`: no body).
        value: Option<Vec<u8>>,
        /// Flags.
        flags: u64,
    },
    /// Sets a key if its modify index is `index` (0: only if the key does not exist).
    Cas {
        /// Key.
        key: String,
        /// Value.
        value: Option<Vec<u8>>,
        /// Flags.
        flags: u64,
        /// Expected modify index.
        index: u64,
    },
    /// Sets a key and takes its lock for `session` if nobody else holds it.
    Lock {
        /// Key.
        key: String,
        /// Value.
        value: Option<Vec<u8>>,
        /// Flags.
        flags: u64,
        /// Session ID.
        session: String,
    },
    /// Sets a key and gives up its lock if `session` holds it.
    Unlock {
        /// Key.
        key: String,
        /// Value.
        value: Option<Vec<u8>>,
        /// Flags.
        flags: u64,
        /// Session ID.
        session: String,
    },
    /// Deletes a key.
    Delete {
        /// Key.
        key: String,
    },
    /// Deletes a key if its modify index is `index`.
    DeleteCas {
        /// Key.
        key: String,
        /// Expected modify index.
        index: u64,
    },
    /// Deletes every key under a prefix.
    DeleteTree {
        /// Prefix.
        prefix: String,
    },
}

/// Why an operation was not applied (the store is unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// A lock operation named a session the store does not hold.
    UnknownSession(String),
    /// A session was created with an ID already in use.
    SessionExists(String),
    /// A catalog registration that skips the node update named a node the catalog lacks.
    MissingNode(String),
    /// A catalog check named a service its node does not have.
    MissingService(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::UnknownSession(s) => write!(f, "invalid session \"{s}\""),
            Refusal::SessionExists(s) => write!(f, "session {s:?} already exists"),
            // Consul's texts (state.ErrMissingNode, state.ErrMissingService).
            Refusal::MissingNode(_) => f.write_str("Missing node registration"),
            Refusal::MissingService(_) => f.write_str("Missing service registration"),
        }
    }
}

/// What a read asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvQuery {
    /// One key.
    Get(String),
    /// Every key under a prefix.
    Recurse(String),
    /// Key names under a prefix, cut after the first `separator` past the prefix.
    Keys {
        /// Prefix.
        prefix: String,
        /// Separator (empty: none).
        separator: String,
    },
}

/// A read's answer and the index it carries (`X-Consul-Index`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvAnswer {
    /// Entries (empty: nothing found).
    Entries(Vec<KvEntry>),
    /// Key names.
    Keys(Vec<String>),
}

/// The store's whole contents, as a snapshot carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvImage {
    /// Every key.
    pub entries: Vec<KvEntry>,
    /// Deleted keys and the index of their deletion.
    pub tombstones: Vec<(String, u64)>,
}

#[derive(Default)]
struct Data {
    entries: BTreeMap<String, Arc<KvEntry>>,
    tombstones: BTreeMap<String, u64>,
}

/// Per-key and per-prefix watches, created by readers that block.
#[derive(Default)]
struct Watches {
    keys: HashMap<String, watch::Sender<u64>>,
    prefixes: HashMap<String, watch::Sender<u64>>,
}

impl Watches {
    /// Tells the watchers of `key` and of every prefix of it; drops watches nobody holds any more.
    fn notify(&mut self, key: &str, index: u64) {
        if let Some(w) = self.keys.get(key) {
            if w.receiver_count() == 0 {
                self.keys.remove(key);
            } else {
                w.send_replace(index);
            }
        }
        if self.prefixes.is_empty() {
            return;
        }
        // Every prefix of the key, by char boundary: a lookup per length, not a walk over all watches.
        let cuts = key
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(key.len()));
        for cut in cuts {
            let p = &key[..cut];
            if let Some(w) = self.prefixes.get(p) {
                if w.receiver_count() == 0 {
                    self.prefixes.remove(p);
                } else {
                    w.send_replace(index);
                }
            }
        }
    }
}

/// The replicated KV store.
#[derive(Default)]
pub struct KvStore {
    data: RwLock<Data>,
    watches: Mutex<Watches>,
}

fn max_under<'a, V>(
    map: &'a BTreeMap<String, V>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
    map.range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
}

impl KvStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Data> {
        self.data.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Data> {
        self.data.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `op` at raft index `index`. `session_ok` says whether a session exists. Returns Consul's
    /// boolean answer (false: a compare or lock that did not hold), or why the op was refused.
    pub fn apply(
        &self,
        index: u64,
        op: &KvOp,
        session_ok: impl Fn(&str) -> bool,
    ) -> Result<bool, Refusal> {
        let mut all = self.apply_all(index, std::slice::from_ref(op), session_ok);
        all.pop().unwrap_or(Ok(false))
    }

    /// Applies `ops` in order at `index` under one lock: a reader sees none of them or all (the writes
    /// the leader grouped into one log entry share its index, so a reader must not see half of them).
    pub fn apply_all(
        &self,
        index: u64,
        ops: &[KvOp],
        session_ok: impl Fn(&str) -> bool,
    ) -> Vec<Result<bool, Refusal>> {
        let mut changed: Vec<String> = Vec::new();
        let results = {
            let mut d = self.write();
            ops.iter()
                .map(|op| apply_locked(&mut d, index, op, &session_ok, &mut changed))
                .collect()
        };
        if !changed.is_empty() {
            let mut w = self.watches.lock().unwrap_or_else(|p| p.into_inner());
            for k in &changed {
                w.notify(k, index);
            }
        }
        results
    }

    /// Applies a transaction at `index`: every operation, or none when any fails (then each failure is
    /// reported, and the store is left as it was).
    pub fn apply_txn(
        &self,
        index: u64,
        ops: &[TxnOp],
        session_ok: impl Fn(&str) -> bool,
    ) -> TxnOutcome {
        let mut changed: Vec<String> = Vec::new();
        let outcome = {
            let mut d = self.write();
            // Each touched key's entry and tombstone as they were, to put back on failure.
            let mut undo: HashMap<String, (Option<Arc<KvEntry>>, Option<u64>)> = HashMap::new();
            let mut results = Vec::new();
            let mut errors = Vec::new();
            for (op_index, op) in ops.iter().enumerate() {
                let fail = |what: String| TxnError { op_index, what };
                let w = match op {
                    TxnOp::Check(c) => {
                        match check_locked(&d, c) {
                            Ok(found) => results.extend(found),
                            Err(what) => errors.push(fail(what)),
                        }
                        continue;
                    }
                    TxnOp::Write(w) => w,
                };
                if let KvOp::Lock { session, .. } | KvOp::Unlock { session, .. } = w
                    && session.is_empty()
                {
                    errors.push(fail("missing session".into()));
                    continue;
                }
                let touched: Vec<String> = match w {
                    KvOp::DeleteTree { prefix } => max_under(&d.entries, prefix)
                        .map(|(k, _)| k.clone())
                        .collect(),
                    KvOp::Set { key, .. }
                    | KvOp::Cas { key, .. }
                    | KvOp::Lock { key, .. }
                    | KvOp::Unlock { key, .. }
                    | KvOp::Delete { key }
                    | KvOp::DeleteCas { key, .. } => vec![key.clone()],
                };
                for k in touched {
                    let was = (d.entries.get(&k).cloned(), d.tombstones.get(&k).copied());
                    undo.entry(k).or_insert(was);
                }
                match apply_locked(&mut d, index, w, &session_ok, &mut changed) {
                    Ok(true) => {
                        if let Some(e) = txn::reported_key(w).and_then(|k| d.entries.get(k)) {
                            results.push(KvEntry {
                                value: None,
                                ..(**e).clone()
                            });
                        }
                    }
                    Ok(false) => errors.push(fail(txn::refused_text(w))),
                    Err(r) => errors.push(fail(r.to_string())),
                }
            }
            if errors.is_empty() {
                Ok(results)
            } else {
                for (k, (entry, tombstone)) in undo {
                    match tombstone {
                        Some(t) => d.tombstones.insert(k.clone(), t),
                        None => d.tombstones.remove(&k),
                    };
                    match entry {
                        Some(e) => d.entries.insert(k, e),
                        None => d.entries.remove(&k),
                    };
                }
                changed.clear();
                Err(errors)
            }
        };
        if !changed.is_empty() {
            let mut w = self.watches.lock().unwrap_or_else(|p| p.into_inner());
            for k in &changed {
                w.notify(k, index);
            }
        }
        outcome
    }

    /// Answers a transaction that only reads and compares; the index is the store's highest.
    pub fn read_txn(&self, checks: &[TxnCheck]) -> (u64, TxnOutcome) {
        let d = self.read();
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (op_index, c) in checks.iter().enumerate() {
            match check_locked(&d, c) {
                Ok(found) => results.extend(found),
                Err(what) => errors.push(TxnError { op_index, what }),
            }
        }
        let index = prefix_index(&d, "").max(1);
        (
            index,
            if errors.is_empty() {
                Ok(results)
            } else {
                Err(errors)
            },
        )
    }

    /// Releases every lock `session` holds (behavior `release`) or deletes its keys (`delete`), at
    /// `index`; returns the keys touched.
    pub fn release_session(&self, index: u64, session: &str, delete: bool) -> Vec<String> {
        let touched: Vec<String> = {
            let mut d = self.write();
            let held: Vec<String> = d
                .entries
                .values()
                .filter(|e| e.session.as_deref() == Some(session))
                .map(|e| e.key.clone())
                .collect();
            for k in &held {
                if delete {
                    d.entries.remove(k);
                    d.tombstones.insert(k.clone(), index);
                } else if let Some(e) = d.entries.get_mut(k) {
                    let e = Arc::make_mut(e);
                    e.session = None;
                    e.modify_index = index;
                }
            }
            held
        };
        let mut w = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        for k in &touched {
            w.notify(k, index);
        }
        touched
    }

    /// Answers `q` now: the result and its index, at least 1 (as Consul reports it), so a blocking
    /// read of a key that never existed waits for its creation.
    pub fn query(&self, q: &KvQuery) -> (u64, KvAnswer) {
        let (index, answer) = self.query_raw(q);
        (index.max(1), answer)
    }

    fn query_raw(&self, q: &KvQuery) -> (u64, KvAnswer) {
        let d = self.read();
        match q {
            KvQuery::Get(key) => match d.entries.get(key) {
                Some(e) => (e.modify_index, KvAnswer::Entries(vec![(**e).clone()])),
                None => (
                    d.tombstones.get(key).copied().unwrap_or(0),
                    KvAnswer::Entries(Vec::new()),
                ),
            },
            KvQuery::Recurse(prefix) => {
                let entries: Vec<KvEntry> = max_under(&d.entries, prefix)
                    .map(|(_, e)| (**e).clone())
                    .collect();
                (prefix_index(&d, prefix), KvAnswer::Entries(entries))
            }
            KvQuery::Keys { prefix, separator } => {
                let mut keys: Vec<String> = Vec::new();
                for (k, _) in max_under(&d.entries, prefix) {
                    let name = cut_at_separator(k, prefix.len(), separator);
                    if keys.last().map(String::as_str) != Some(name) {
                        keys.push(name.to_owned());
                    }
                }
                (prefix_index(&d, prefix), KvAnswer::Keys(keys))
            }
        }
    }

    /// Waits until `q`'s index differs from `min` (or `deadline`), then answers it.
    pub async fn wait(&self, q: &KvQuery, min: u64, deadline: Instant) -> (u64, KvAnswer) {
        let (is_key, name) = match q {
            KvQuery::Get(k) => (true, k),
            KvQuery::Recurse(p) | KvQuery::Keys { prefix: p, .. } => (false, p),
        };
        let mut rx = {
            let mut w = self.watches.lock().unwrap_or_else(|p| p.into_inner());
            let map = if is_key { &mut w.keys } else { &mut w.prefixes };
            map.entry(name.clone())
                .or_insert_with(|| watch::Sender::new(0))
                .subscribe()
        };
        let answer = block_past(&mut rx, min, deadline, || self.query(q)).await;
        drop(rx);
        // The last reader of a key nobody writes takes its watch along, so reads of random keys
        // cannot grow the map.
        let mut w = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        let map = if is_key { &mut w.keys } else { &mut w.prefixes };
        if map.get(name).is_some_and(|s| s.receiver_count() == 0) {
            map.remove(name);
        }
        answer
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// True when the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name of every key held or deleted (tombstoned), without their values.
    pub fn names(&self) -> Vec<String> {
        let d = self.read();
        d.entries
            .keys()
            .chain(d.tombstones.keys())
            .cloned()
            .collect()
    }

    /// Index of the oldest tombstone, if any.
    pub fn oldest_tombstone(&self) -> Option<u64> {
        self.read().tombstones.values().min().copied()
    }

    /// Drops the tombstones of deletions at or below `up_to`; returns how many. Nobody is woken:
    /// no result changes, and a key's or prefix's index that falls back below a reader's keeps
    /// that reader waiting for the next real change.
    pub fn reap(&self, up_to: u64) -> usize {
        let mut d = self.write();
        let before = d.tombstones.len();
        d.tombstones.retain(|_, i| *i > up_to);
        before - d.tombstones.len()
    }

    /// The whole contents, for a snapshot.
    pub fn image(&self) -> KvImage {
        let d = self.read();
        KvImage {
            entries: d.entries.values().map(|e| (**e).clone()).collect(),
            tombstones: d.tombstones.iter().map(|(k, i)| (k.clone(), *i)).collect(),
        }
    }

    /// Replaces the contents with a snapshot's, waking every watcher whose result changed.
    pub fn restore(&self, image: KvImage) {
        let old = {
            let mut d = self.write();
            let new = Data {
                entries: image
                    .entries
                    .into_iter()
                    .map(|e| (e.key.clone(), Arc::new(e)))
                    .collect(),
                tombstones: image.tombstones.into_iter().collect(),
            };
            std::mem::replace(&mut *d, new)
        };
        // Every watcher re-reads; those whose index did not move go back to waiting.
        let w = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        for s in w.keys.values().chain(w.prefixes.values()) {
            s.send_modify(|v| *v = v.wrapping_add(1));
        }
        drop(old);
    }
}

/// Reads with `read` until its index passes `min` (Consul's rule: a result at or below the client's
/// index keeps the read waiting, so a server that lags behind the one that answered before does not
/// send the client back in time) or until `deadline`, waking on `rx`.
pub(super) async fn block_past<T>(
    rx: &mut watch::Receiver<u64>,
    min: u64,
    deadline: Instant,
    read: impl Fn() -> (u64, T),
) -> (u64, T) {
    loop {
        let current = read();
        if current.0 > min {
            return current;
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return read();
        }
    }
}

/// A transaction's check against the store as it stands.
fn check_locked(d: &Data, c: &TxnCheck) -> Result<Vec<KvEntry>, String> {
    txn::check(
        c,
        |k| d.entries.get(k).map(|e| (**e).clone()),
        |p| {
            max_under(&d.entries, p)
                .map(|(_, e)| (**e).clone())
                .collect()
        },
    )
}

/// Highest index under a prefix, counting deletions.
fn prefix_index(d: &Data, prefix: &str) -> u64 {
    let live = max_under(&d.entries, prefix)
        .map(|(_, e)| e.modify_index)
        .max()
        .unwrap_or(0);
    let dead = max_under(&d.tombstones, prefix)
        .map(|(_, i)| *i)
        .max()
        .unwrap_or(0);
    live.max(dead)
}

/// `key` up to and including the first `separator` after `from` (the whole key without one).
fn cut_at_separator<'k>(key: &'k str, from: usize, separator: &str) -> &'k str {
    if separator.is_empty() {
        return key;
    }
    match key.get(from..).and_then(|rest| rest.find(separator)) {
        Some(at) => &key[..from + at + separator.len()],
        None => key,
    }
}

/// Writes `key` as Consul's state store does: the creation index stays, the session stays unless
/// `session` says otherwise, and a write that changes nothing is no write (its index does not move).
/// Returns whether anything changed.
fn put(
    d: &mut Data,
    index: u64,
    key: &str,
    value: &Option<Vec<u8>>,
    flags: u64,
    lock_index: u64,
    session: Option<Option<&str>>,
) -> bool {
    let existing = d.entries.get(key);
    let session = match session {
        Some(s) => s.map(str::to_owned),
        None => existing.and_then(|e| e.session.clone()),
    };
    if let Some(e) = existing
        && e.value == *value
        && e.flags == flags
        && e.lock_index == lock_index
        && e.session == session
    {
        return false;
    }
    let create_index = existing.map_or(index, |e| e.create_index);
    d.tombstones.remove(key);
    d.entries.insert(
        key.to_owned(),
        Arc::new(KvEntry {
            key: key.to_owned(),
            value: value.clone(),
            flags,
            lock_index,
            session,
            create_index,
            modify_index: index,
        }),
    );
    true
}

fn remove(d: &mut Data, index: u64, key: &str) -> bool {
    if d.entries.remove(key).is_some() {
        d.tombstones.insert(key.to_owned(), index);
        true
    } else {
        false
    }
}

fn apply_locked(
    d: &mut Data,
    index: u64,
    op: &KvOp,
    session_ok: &dyn Fn(&str) -> bool,
    changed: &mut Vec<String>,
) -> Result<bool, Refusal> {
    match op {
        KvOp::Set { key, value, flags } => {
            // A plain write carries no lock index (Consul stores the request's, 0) and keeps the holder.
            if put(d, index, key, value, *flags, 0, None) {
                changed.push(key.clone());
            }
            Ok(true)
        }
        KvOp::Cas {
            key,
            value,
            flags,
            index: expect,
        } => {
            let current = d.entries.get(key).map(|e| e.modify_index);
            let holds = match (current, *expect) {
                (None, 0) => true,
                (Some(m), e) => m == e && e != 0,
                (None, _) => false,
            };
            if holds && put(d, index, key, value, *flags, 0, None) {
                changed.push(key.clone());
            }
            Ok(holds)
        }
        KvOp::Lock {
            key,
            value,
            flags,
            session,
        } => {
            if !session_ok(session) {
                return Err(Refusal::UnknownSession(session.clone()));
            }
            let (holder, lock_index) = d
                .entries
                .get(key)
                .map_or((None, 0), |e| (e.session.clone(), e.lock_index));
            // Re-acquiring a lock one already holds only updates the value.
            let lock_index = match holder {
                Some(h) if h != *session => return Ok(false),
                Some(_) => lock_index,
                None => lock_index + 1,
            };
            if put(
                d,
                index,
                key,
                value,
                *flags,
                lock_index,
                Some(Some(session)),
            ) {
                changed.push(key.clone());
            }
            Ok(true)
        }
        KvOp::Unlock {
            key,
            value,
            flags,
            session,
        } => {
            let Some(held) = d.entries.get(key) else {
                return Ok(false);
            };
            if held.session.as_deref() != Some(session.as_str()) {
                return Ok(false);
            }
            let lock_index = held.lock_index;
            if put(d, index, key, value, *flags, lock_index, Some(None)) {
                changed.push(key.clone());
            }
            Ok(true)
        }
        KvOp::Delete { key } => {
            if remove(d, index, key) {
                changed.push(key.clone());
            }
            Ok(true)
        }
        KvOp::DeleteCas { key, index: expect } => {
            // As Consul's state store: deleting a key that is already gone succeeds whatever the index.
            let holds = d.entries.get(key).is_none_or(|e| e.modify_index == *expect);
            if holds && remove(d, index, key) {
                changed.push(key.clone());
            }
            Ok(holds)
        }
        KvOp::DeleteTree { prefix } => {
            let doomed: Vec<String> = max_under(&d.entries, prefix)
                .map(|(k, _)| k.clone())
                .collect();
            for k in &doomed {
                remove(d, index, k);
            }
            changed.extend(doomed);
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &KvStore, i: u64, k: &str, v: &str) {
        let op = KvOp::Set {
            key: k.into(),
            value: Some(v.as_bytes().to_vec()),
            flags: 0,
        };
        assert_eq!(s.apply(i, &op, |_| true), Ok(true));
    }

    fn entries(a: KvAnswer) -> Vec<KvEntry> {
        match a {
            KvAnswer::Entries(e) => e,
            KvAnswer::Keys(k) => panic!("keys {k:?}"),
        }
    }

    #[test]
    fn set_get_and_indexes() {
        let s = KvStore::new();
        set(&s, 5, "a/b", "1");
        set(&s, 7, "a/b", "2");
        let (i, a) = s.query(&KvQuery::Get("a/b".into()));
        assert_eq!(i, 7);
        let e = &entries(a)[0];
        assert_eq!((e.create_index, e.modify_index), (5, 7));
        assert_eq!(e.value.as_deref(), Some(&b"2"[..]));
        let (i, a) = s.query(&KvQuery::Get("missing".into()));
        assert_eq!((i, entries(a).len()), (1, 0));
    }

    #[test]
    fn deletes_leave_tombstones_so_indexes_never_go_back() {
        let s = KvStore::new();
        set(&s, 3, "p/x", "1");
        set(&s, 4, "p/y", "1");
        assert_eq!(s.query(&KvQuery::Recurse("p/".into())).0, 4);
        s.apply(9, &KvOp::Delete { key: "p/y".into() }, |_| true)
            .unwrap();
        let (i, a) = s.query(&KvQuery::Recurse("p/".into()));
        assert_eq!((i, entries(a).len()), (9, 1));
        assert_eq!(s.query(&KvQuery::Get("p/y".into())).0, 9);
        // Recreating the key replaces its tombstone.
        set(&s, 11, "p/y", "2");
        assert_eq!(s.query(&KvQuery::Get("p/y".into())).0, 11);
        s.apply(
            12,
            &KvOp::DeleteTree {
                prefix: "p/".into(),
            },
            |_| true,
        )
        .unwrap();
        assert_eq!(s.query(&KvQuery::Recurse("p/".into())).0, 12);
        assert!(s.is_empty());
    }

    #[test]
    fn reaping_drops_only_old_tombstones() {
        let s = KvStore::new();
        for (i, k) in [(2, "a"), (3, "b"), (4, "c")] {
            set(&s, i, k, "v");
        }
        for (i, k) in [(5, "a"), (8, "b")] {
            s.apply(i, &KvOp::Delete { key: k.into() }, |_| true)
                .unwrap();
        }
        assert_eq!(s.oldest_tombstone(), Some(5));
        assert_eq!(s.reap(6), 1);
        assert_eq!(s.oldest_tombstone(), Some(8));
        // The reaped key's index falls back (no tombstone), the kept one's does not.
        assert_eq!(s.query(&KvQuery::Get("a".into())).0, 1);
        assert_eq!(s.query(&KvQuery::Get("b".into())).0, 8);
        assert_eq!(s.query(&KvQuery::Recurse(String::new())).0, 8);
        assert_eq!(s.reap(8), 1);
        assert_eq!(s.oldest_tombstone(), None);
        assert_eq!(s.query(&KvQuery::Recurse(String::new())).0, 4);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn cas_creates_only_with_zero_and_updates_only_at_the_index() {
        let s = KvStore::new();
        let cas = |index: u64| KvOp::Cas {
            key: "k".into(),
            value: Some(vec![index as u8]),
            flags: 42,
            index,
        };
        assert_eq!(s.apply(2, &cas(5), |_| true), Ok(false));
        assert_eq!(s.apply(3, &cas(0), |_| true), Ok(true));
        assert_eq!(s.apply(4, &cas(0), |_| true), Ok(false));
        assert_eq!(s.apply(5, &cas(2), |_| true), Ok(false));
        assert_eq!(s.apply(6, &cas(3), |_| true), Ok(true));
        let e = &entries(s.query(&KvQuery::Get("k".into())).1)[0];
        assert_eq!((e.flags, e.modify_index, e.create_index), (42, 6, 3));
        let del = |index| KvOp::DeleteCas {
            key: "k".into(),
            index,
        };
        assert_eq!(s.apply(7, &del(3), |_| true), Ok(false));
        assert_eq!(s.apply(8, &del(6), |_| true), Ok(true));
        assert!(s.is_empty());
    }

    #[test]
    fn locks_exclude_other_sessions_and_count_acquisitions() {
        let s = KvStore::new();
        let lock = |session: &str| KvOp::Lock {
            key: "l".into(),
            value: Some(b"me".to_vec()),
            flags: 0,
            session: session.into(),
        };
        let unlock = |session: &str| KvOp::Unlock {
            key: "l".into(),
            value: None,
            flags: 0,
            session: session.into(),
        };
        assert_eq!(
            s.apply(1, &lock("nope"), |x| x != "nope"),
            Err(Refusal::UnknownSession("nope".into()))
        );
        assert!(s.is_empty(), "a refused lock writes nothing");
        assert_eq!(s.apply(2, &lock("a"), |_| true), Ok(true));
        assert_eq!(s.apply(3, &lock("b"), |_| true), Ok(false));
        assert_eq!(s.apply(4, &lock("a"), |_| true), Ok(true));
        let e = &entries(s.query(&KvQuery::Get("l".into())).1)[0];
        assert_eq!((e.lock_index, e.session.as_deref()), (1, Some("a")));
        assert_eq!(s.apply(5, &unlock("b"), |_| true), Ok(false));
        assert_eq!(s.apply(6, &unlock("a"), |_| true), Ok(true));
        assert_eq!(s.apply(7, &lock("b"), |_| true), Ok(true));
        let e = &entries(s.query(&KvQuery::Get("l".into())).1)[0];
        assert_eq!((e.lock_index, e.session.as_deref()), (2, Some("b")));
        assert_eq!(s.release_session(8, "b", false), vec!["l".to_string()]);
        let e = &entries(s.query(&KvQuery::Get("l".into())).1)[0];
        assert_eq!((e.session.as_deref(), e.modify_index), (None, 8));
    }

    #[test]
    fn a_write_that_changes_nothing_keeps_its_index_and_a_plain_write_keeps_the_holder() {
        let s = KvStore::new();
        set(&s, 1, "k", "v");
        set(&s, 2, "k", "v");
        assert_eq!(s.query(&KvQuery::Get("k".into())).0, 1);
        let lock = KvOp::Lock {
            key: "k".into(),
            value: Some(b"v".to_vec()),
            flags: 0,
            session: "s".into(),
        };
        s.apply(3, &lock, |_| true).unwrap();
        set(&s, 4, "k", "w");
        let e = &entries(s.query(&KvQuery::Get("k".into())).1)[0];
        assert_eq!(
            (e.session.as_deref(), e.lock_index, e.modify_index),
            (Some("s"), 0, 4)
        );
    }

    #[test]
    fn keys_cut_at_the_separator() {
        let s = KvStore::new();
        for (i, k) in ["web/a", "web/b/c", "web/b/d", "web/e/", "webx", "x"]
            .iter()
            .enumerate()
        {
            set(&s, i as u64 + 1, k, "v");
        }
        let q = KvQuery::Keys {
            prefix: "web/".into(),
            separator: "/".into(),
        };
        assert_eq!(
            s.query(&q).1,
            KvAnswer::Keys(vec!["web/a".into(), "web/b/".into(), "web/e/".into()])
        );
        let q = KvQuery::Keys {
            prefix: "web".into(),
            separator: String::new(),
        };
        let KvAnswer::Keys(all) = s.query(&q).1 else {
            panic!()
        };
        assert_eq!(all.len(), 5);
    }

    #[tokio::test]
    async fn a_blocked_read_wakes_for_its_own_key_only() {
        let s = Arc::new(KvStore::new());
        set(&s, 1, "watched", "1");
        set(&s, 2, "other", "1");
        let s2 = s.clone();
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let waiter =
            tokio::spawn(
                async move { s2.wait(&KvQuery::Get("watched".into()), 1, deadline).await },
            );
        // Wait until the waiter has subscribed, then write elsewhere: it must keep waiting.
        while s.watches.lock().unwrap().keys.is_empty() {
            tokio::task::yield_now().await;
        }
        set(&s, 3, "other", "2");
        set(&s, 4, "watchedx", "2");
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        set(&s, 5, "watched", "2");
        let (i, a) = waiter.await.unwrap();
        assert_eq!(i, 5);
        assert_eq!(entries(a)[0].value.as_deref(), Some(&b"2"[..]));
        // A read of a key nobody writes leaves no watch behind once it times out.
        let soon = Instant::now() + std::time::Duration::from_millis(10);
        s.wait(&KvQuery::Get("never".into()), 1, soon).await;
        assert!(s.watches.lock().unwrap().keys.is_empty());
    }

    #[tokio::test]
    async fn a_prefix_watch_wakes_for_a_key_under_it() {
        let s = Arc::new(KvStore::new());
        let s2 = s.clone();
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let q = KvQuery::Recurse("svc/".into());
        let waiter = tokio::spawn(async move { s2.wait(&q, 1, deadline).await });
        while s.watches.lock().unwrap().prefixes.is_empty() {
            tokio::task::yield_now().await;
        }
        set(&s, 3, "svc", "outside the prefix");
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        set(&s, 4, "svc/deep/key", "in");
        assert_eq!(waiter.await.unwrap().0, 4);
    }

    #[test]
    fn a_transaction_applies_all_at_one_index_or_nothing() {
        let s = KvStore::new();
        set(&s, 1, "a", "1");
        set(&s, 2, "t/x", "x");
        set(&s, 3, "t/y", "y");
        let w = |op| TxnOp::Write(op);
        let put = |k: &str| {
            w(KvOp::Set {
                key: k.into(),
                value: Some(b"new".to_vec()),
                flags: 3,
            })
        };
        // Success: writes share the index; results carry no value except reads'.
        let ok = s
            .apply_txn(
                10,
                &[
                    TxnOp::Check(TxnCheck::Index {
                        key: "a".into(),
                        index: 1,
                    }),
                    put("a"),
                    put("b"),
                    w(KvOp::Delete { key: "t/x".into() }),
                    TxnOp::Check(TxnCheck::Get { key: "t/y".into() }),
                ],
                |_| true,
            )
            .unwrap();
        let seen: Vec<(&str, u64, bool)> = ok
            .iter()
            .map(|e| (e.key.as_str(), e.modify_index, e.value.is_some()))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("a", 1, false),
                ("a", 10, false),
                ("b", 10, false),
                ("t/y", 3, true)
            ]
        );
        assert_eq!(
            s.query(&KvQuery::Get("t/x".into())).0,
            10,
            "tombstone at 10"
        );

        // Failure: every failing operation is told, and nothing changes (also a deleted tree and a
        // tombstone written over come back).
        let before = s.image();
        let err = s
            .apply_txn(
                11,
                &[
                    w(KvOp::DeleteTree { prefix: "".into() }),
                    put("t/x"),
                    w(KvOp::Cas {
                        key: "a".into(),
                        value: None,
                        flags: 0,
                        index: 1,
                    }),
                    w(KvOp::Lock {
                        key: "a".into(),
                        value: None,
                        flags: 0,
                        session: "nope".into(),
                    }),
                    w(KvOp::Unlock {
                        key: "a".into(),
                        value: None,
                        flags: 0,
                        session: String::new(),
                    }),
                    TxnOp::Check(TxnCheck::NotExists { key: "t/y".into() }),
                    TxnOp::Check(TxnCheck::Session {
                        key: "b".into(),
                        session: "s".into(),
                    }),
                ],
                |id| id != "nope",
            )
            .unwrap_err();
        let whats: Vec<(usize, &str)> = err.iter().map(|e| (e.op_index, e.what.as_str())).collect();
        assert_eq!(
            whats,
            vec![
                (2, "failed to set key \"a\", index is stale"),
                (3, "invalid session \"nope\""),
                (4, "missing session"),
                // Operations see the ones before them: the tree is gone by now.
                (6, "failed to check session, key \"b\" doesn't exist"),
            ]
        );
        assert_eq!(
            s.image(),
            before,
            "a failed transaction leaves the store as it was"
        );

        // A read-only transaction answers from the store as it stands.
        let (_, read) = s.read_txn(&[TxnCheck::GetTree { prefix: "".into() }]);
        let keys: Vec<String> = read.unwrap().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, vec!["a", "b", "t/y"]);
        let (_, read) = s.read_txn(&[
            TxnCheck::NotExists { key: "a".into() },
            TxnCheck::Session {
                key: "b".into(),
                session: "s".into(),
            },
        ]);
        let whats: Vec<String> = read.unwrap_err().into_iter().map(|e| e.what).collect();
        assert_eq!(
            whats,
            vec![
                "key \"a\" exists",
                "failed session check for key \"b\", current session \"\" != \"s\""
            ]
        );
    }

    #[test]
    fn image_round_trips() {
        let s = KvStore::new();
        set(&s, 1, "a", "1");
        set(&s, 2, "b", "2");
        s.apply(3, &KvOp::Delete { key: "a".into() }, |_| true)
            .unwrap();
        let img = s.image();
        let t = KvStore::new();
        t.restore(img.clone());
        assert_eq!(t.image(), img);
        assert_eq!(t.query(&KvQuery::Get("a".into())).0, 3);
    }
}
