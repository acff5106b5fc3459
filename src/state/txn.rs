//! Consul's KV transactions (`/v1/txn`): a list of KV operations applied all or none, at one raft
//! index. A failed transaction reports every failing operation (as Consul's state store does) and
//! leaves the store as it was.

use serde::{Deserialize, Serialize};

use super::kv::{KvEntry, KvOp};

/// Most operations in one transaction (Consul 1.14 and later).
pub const MAX_OPS: usize = 128;

/// A KV operation that reads or compares without writing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnCheck {
    /// `get`: the key, with its value; fails when it does not exist.
    Get {
        /// Key.
        key: String,
    },
    /// `get-tree`: every key under the prefix, with values.
    GetTree {
        /// Prefix.
        prefix: String,
    },
    /// `check-index`: the key's modify index must be `index`.
    Index {
        /// Key.
        key: String,
        /// Expected modify index.
        index: u64,
    },
    /// `check-session`: the key's lock holder must be `session` (empty: unlocked).
    Session {
        /// Key.
        key: String,
        /// Expected holder.
        session: String,
    },
    /// `check-not-exists`: the key must not exist.
    NotExists {
        /// Key.
        key: String,
    },
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// A write (set, cas, lock, unlock, delete, delete-cas, delete-tree).
    Write(KvOp),
    /// A read or comparison.
    Check(TxnCheck),
}

impl TxnOp {
    /// Whether the operation writes (a transaction with one goes through the log).
    pub fn writes(&self) -> bool {
        matches!(self, TxnOp::Write(_))
    }
}

/// Why one operation of a transaction failed (`{"OpIndex", "What"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnError {
    /// Position of the operation in the request.
    pub op_index: usize,
    /// Consul's text.
    pub what: String,
}

/// A transaction's outcome: the entries it reports (values only for reads), or every failure.
pub type TxnOutcome = Result<Vec<KvEntry>, Vec<TxnError>>;

/// Consul's text for a write that did not hold (the store's answer was `false`).
pub fn refused_text(op: &KvOp) -> String {
    match op {
        KvOp::Cas { key, .. } | KvOp::Set { key, .. } => {
            format!("failed to set key {key:?}, index is stale")
        }
        KvOp::Lock { key, .. } => format!("failed to lock key {key:?}, lock is already held"),
        KvOp::Unlock { key, .. } => {
            format!("failed to unlock key {key:?}, lock isn't held, or is held by another session")
        }
        KvOp::DeleteCas { key, .. } | KvOp::Delete { key } => {
            format!("failed to delete key {key:?}, index is stale")
        }
        KvOp::DeleteTree { prefix } => format!("failed to delete tree {prefix:?}"),
    }
}

/// The key a write reports in the results, if it reports one (deletes report nothing).
pub fn reported_key(op: &KvOp) -> Option<&str> {
    match op {
        KvOp::Set { key, .. }
        | KvOp::Cas { key, .. }
        | KvOp::Lock { key, .. }
        | KvOp::Unlock { key, .. } => Some(key),
        KvOp::Delete { .. } | KvOp::DeleteCas { .. } | KvOp::DeleteTree { .. } => None,
    }
}

/// Evaluates a check against `lookup` (the key's current entry) and `tree` (entries under a prefix):
/// the entries it reports, or Consul's text for its failure.
pub fn check(
    c: &TxnCheck,
    lookup: impl Fn(&str) -> Option<KvEntry>,
    tree: impl Fn(&str) -> Vec<KvEntry>,
) -> Result<Vec<KvEntry>, String> {
    let without_value = |mut e: KvEntry| {
        e.value = None;
        e
    };
    match c {
        TxnCheck::Get { key } => lookup(key)
            .map(|e| vec![e])
            .ok_or_else(|| format!("key {key:?} doesn't exist")),
        TxnCheck::GetTree { prefix } => Ok(tree(prefix)),
        TxnCheck::Index { key, index } => match lookup(key) {
            None => Err(format!("failed to check index, key {key:?} doesn't exist")),
            Some(e) if e.modify_index != *index => Err(format!(
                "failed index check for key {key:?}, current modify index {} != {index}",
                e.modify_index
            )),
            Some(e) => Ok(vec![without_value(e)]),
        },
        TxnCheck::Session { key, session } => match lookup(key) {
            None => Err(format!(
                "failed to check session, key {key:?} doesn't exist"
            )),
            Some(e) if e.session.as_deref().unwrap_or("") != session => Err(format!(
                "failed session check for key {key:?}, current session {:?} != {session:?}",
                e.session.as_deref().unwrap_or("")
            )),
            Some(e) => Ok(vec![without_value(e)]),
        },
        TxnCheck::NotExists { key } => match lookup(key) {
            Some(_) => Err(format!("key {key:?} exists")),
            None => Ok(Vec::new()),
        },
    }
}
