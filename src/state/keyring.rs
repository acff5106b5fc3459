//! What the cluster's members report about their gossip keys (the `kr` tag: key fingerprints, primary
//! first), and the wait until a keyring change has reached every alive member.

use std::time::Duration;

use tokio::time::Instant;

use super::AgentState;
use super::members::{MemberStatus, Snapshot};
use crate::net::KeyOp;
use crate::net::crypto;

/// Decodes a base64 gossip key as operators write it.
pub use crate::net::crypto::parse_key;

/// How long a keyring change may take to reach every alive member.
pub const WAIT: Duration = Duration::from_secs(15);

/// One key and how many alive members hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCount {
    /// The key, base64 as operators write it.
    pub key: String,
    /// Alive members holding it.
    pub members: usize,
}

/// The keyring as the datacenter sees it (`/v1/operator/keyring`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Every local key with its holders.
    pub keys: Vec<KeyCount>,
    /// Local keys some member uses as primary, with how many do.
    pub primary: Vec<KeyCount>,
    /// Alive members of the datacenter.
    pub members: usize,
}

/// A keyring change that did not reach everyone in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotEveryone {
    /// Members that applied it.
    pub reached: usize,
    /// Alive members.
    pub alive: usize,
}

impl std::fmt::Display for NotEveryone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "keyring change reached {} of {} alive members within {WAIT:?}",
            self.reached, self.alive
        )
    }
}

impl std::error::Error for NotEveryone {}

/// Key fingerprints each alive member of `dc` reports, primary first.
fn views(snap: &Snapshot, dc: &str) -> Vec<Vec<String>> {
    snap.members
        .iter()
        .filter(|m| m.status == MemberStatus::Alive && m.tag("dc") == dc)
        .map(|m| {
            m.tag("kr")
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// Who holds which of `keys` (the local keys, primary first).
pub fn report(snap: &Snapshot, dc: &str, keys: &[Vec<u8>]) -> Report {
    let views = views(snap, dc);
    let mut r = Report {
        keys: Vec::new(),
        primary: Vec::new(),
        members: views.len(),
    };
    for k in keys {
        let fp = crypto::fingerprint(k);
        let holders = views.iter().filter(|v| v.contains(&fp)).count();
        let as_primary = views.iter().filter(|v| v.first() == Some(&fp)).count();
        r.keys.push(KeyCount {
            key: crypto::key_text(k),
            members: holders,
        });
        if as_primary > 0 {
            r.primary.push(KeyCount {
                key: crypto::key_text(k),
                members: as_primary,
            });
        }
    }
    r
}

/// Waits until every alive member of the datacenter reports `op` on `key` applied, or [`WAIT`] passes.
pub async fn await_everyone(state: &AgentState, op: KeyOp, key: &[u8]) -> Result<(), NotEveryone> {
    let fp = crypto::fingerprint(key);
    let done = |v: &Vec<String>| match op {
        KeyOp::Install => v.contains(&fp),
        KeyOp::Use => v.first() == Some(&fp),
        KeyOp::Remove => !v.contains(&fp),
    };
    let mut rx = state.changes.subscribe();
    let deadline = Instant::now() + WAIT;
    loop {
        let views = views(&state.members.snapshot(), &state.local.datacenter);
        let reached = views.iter().filter(|v| done(v)).count();
        if reached == views.len() {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return Err(NotEveryone {
                reached,
                alive: views.len(),
            });
        }
    }
}
