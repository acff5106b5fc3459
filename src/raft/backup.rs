//! Operator snapshots (`/v1/snapshot`, `murmur snapshot save|restore`): this server's raft snapshot,
//! brought up to what it has applied and packed as a snapshot file; and a snapshot file turned into
//! the log entry that restores it on every server.

use std::time::Duration;

use tokio::time::Instant;

use super::Raft;
use super::archive::{self, ArchiveConfiguration, ArchiveMeta, ArchiveServer};
use super::fsm::Image;
use crate::state::replicated::{Change, MAX_RESTORE_STATE, StateImage, StoreError};

/// How long a save waits for the snapshot it asked raft to build.
const BUILD_WAIT: Duration = Duration::from_secs(30);
/// How often it asks again (raft ignores the request while it builds another).
const ASK_EVERY: Duration = Duration::from_secs(1);

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {e}"))
}

/// A snapshot file of this server's state as of everything it had applied when asked, and its index.
pub async fn save(raft: &Raft) -> Result<(u64, Vec<u8>), StoreError> {
    let applied = raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
    let deadline = Instant::now() + BUILD_WAIT;
    let covered = |m: &openraft::RaftMetrics<u64, super::ServerNode>| {
        m.snapshot.map_or(0, |l| l.index) >= applied
    };
    while !covered(&raft.metrics().borrow()) {
        if Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "no snapshot at index {applied} was built within {BUILD_WAIT:?}"
            )));
        }
        raft.trigger()
            .snapshot()
            .await
            .map_err(|e| unavailable("asking for a snapshot", e))?;
        // Timing out here only means: ask again.
        let _ = raft
            .wait(Some(ASK_EVERY))
            .metrics(covered, "snapshot for save")
            .await;
    }
    let snap = raft
        .get_snapshot()
        .await
        .map_err(|e| unavailable("reading the snapshot", e))?
        .ok_or_else(|| StoreError::Unavailable("no snapshot was built".into()))?;
    let last = snap.meta.last_log_id.unwrap_or_default();
    let membership = snap.meta.last_membership.membership();
    let servers = membership
        .nodes()
        .map(|(id, n)| ArchiveServer {
            suffrage: if membership.voter_ids().any(|v| v == *id) {
                "Voter"
            } else {
                "Nonvoter"
            }
            .into(),
            id: n.id.clone(),
            address: n.addr.clone(),
        })
        .collect();
    let meta = ArchiveMeta {
        version: 1,
        id: snap.meta.snapshot_id.clone(),
        index: last.index,
        term: last.leader_id.term,
        configuration: ArchiveConfiguration { servers },
        configuration_index: snap.meta.last_membership.log_id().map_or(0, |l| l.index),
        size: 0,
        format: String::new(),
    };
    // Only the replicated state: the table of recent write IDs means nothing to another cluster.
    let image = Image::decode(snap.snapshot.get_ref())
        .map_err(|e| unavailable("reading the snapshot", e))?;
    let state =
        postcard::to_allocvec(&image.state).map_err(|e| unavailable("encoding the snapshot", e))?;
    let file = archive::write(&meta, &state).map_err(|e| unavailable("packing the snapshot", e))?;
    Ok((last.index, file))
}

/// The change that replaces the state with `file`'s (checked whole before anything is proposed).
pub fn restore_change(file: &[u8]) -> Result<Change, StoreError> {
    let (_, state) = archive::read(file, MAX_RESTORE_STATE)
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let image = StateImage::decode(&state)
        .map_err(|e| unavailable("failed to decode the snapshot's state", e))?;
    Ok(Change::Restore(image))
}
