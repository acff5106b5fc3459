//! What a log entry carries. Each command is a tag and a postcard body, so a server can tell a command
//! it does not know (a newer server wrote it during a rolling upgrade) from a broken one. As in Consul,
//! a tag with the [`IGNORABLE`] bit may be skipped by a server that does not know it; any other unknown
//! command stops the server rather than let it diverge from the others.
//!
//! Each write also carries an ID its proposer chose, so a request retried after a lost answer is
//! applied once: the state machine remembers the replies of recent IDs.

use serde::{Deserialize, Serialize};

use crate::state::kv::Refusal;
use crate::state::replicated::Change;
use crate::state::txn::TxnOutcome;

/// A command as the log stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The proposer's ID for this write (0: none); a second entry with the same ID is not applied again.
    pub id: u128,
    /// Which command ([`Command`]'s tags).
    pub tag: u16,
    /// The command's own encoding.
    pub body: Vec<u8>,
}

/// A tag with this bit is a command an older server may skip.
pub const IGNORABLE: u16 = 0x8000;

/// The log's tags: a new command takes the next number; a number is never reused.
const TAG_KV: u16 = 1;
const TAG_SESSION: u16 = 2;
/// Several writes in one entry (the leader's group commit): each applied in order, at the entry's index.
const TAG_BATCH: u16 = 3;
const TAG_TXN: u16 = 4;
/// An operator's snapshot replacing the state; never ignorable (skipping it would diverge).
const TAG_RESTORE: u16 = 5;
/// Tombstones reaped. Ignorable: a server that keeps them differs only in the indexes of deleted keys
/// (higher, never lower), which no reader can tell from a later write.
const TAG_REAP: u16 = 6 | IGNORABLE;
/// An external catalog registration or deregistration.
const TAG_CATALOG: u16 = 7;
/// Network coordinates. Ignorable: a server that skips them only has older estimates.
const TAG_COORDINATES: u16 = 8 | IGNORABLE;

/// Why a request could not be read as a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A tag this version does not know.
    UnknownTag(u16),
    /// A known tag whose body does not decode.
    Body(u16, String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::UnknownTag(t) => write!(
                f,
                "log command {t} is unknown to this version (written by a newer server?)"
            ),
            DecodeError::Body(t, e) => write!(f, "log command {t} does not decode: {e}"),
        }
    }
}

/// Encodes and decodes [`Change`]s as log commands.
pub struct Command;

impl Command {
    /// The change as a log entry carries it.
    pub fn encode(change: &Change) -> Request {
        let (tag, body) = match change {
            Change::Kv(op) => (TAG_KV, postcard::to_allocvec(op)),
            Change::Session(op) => (TAG_SESSION, postcard::to_allocvec(op)),
            Change::Txn(ops) => (TAG_TXN, postcard::to_allocvec(ops)),
            Change::Restore(image) => (TAG_RESTORE, postcard::to_allocvec(image)),
            Change::Reap(up_to) => (TAG_REAP, postcard::to_allocvec(up_to)),
            Change::Catalog(op) => (TAG_CATALOG, postcard::to_allocvec(op)),
            Change::Coordinates(op) => (TAG_COORDINATES, postcard::to_allocvec(op)),
        };
        Request {
            id: 0,
            tag,
            // Encoding into a Vec fails only on types postcard cannot express, which ours are not.
            body: body.expect("commands encode"),
        }
    }

    /// The change as a log entry carries it, with a fresh write ID.
    pub fn encode_write(change: &Change) -> Request {
        let id = (u128::from(crate::util::entropy::u64().unwrap_or(0)) << 64)
            | u128::from(crate::util::entropy::u64().unwrap_or(0));
        Request {
            id: id.max(1),
            ..Self::encode(change)
        }
    }

    /// Whether the leader may group `r` with others in one entry: plain KV writes (the state machine
    /// applies a group of them under one lock) and coordinate updates (every agent sends one now and
    /// then: alone, 5000 agents would cost an entry each); sessions and transactions go alone.
    pub fn groupable(r: &Request) -> bool {
        r.tag == TAG_KV || r.tag == TAG_COORDINATES
    }

    /// One entry carrying `requests`, applied in order at its index.
    pub fn batch(requests: &[Request]) -> Request {
        Request {
            id: 0,
            tag: TAG_BATCH,
            body: postcard::to_allocvec(requests).expect("commands encode"),
        }
    }

    /// The requests of a batch entry; `None` when `r` is not one.
    pub fn unbatch(r: &Request) -> Option<Result<Vec<Request>, DecodeError>> {
        (r.tag == TAG_BATCH).then(|| {
            postcard::from_bytes(&r.body).map_err(|e| DecodeError::Body(r.tag, e.to_string()))
        })
    }

    /// Reads a log entry's command.
    pub fn decode(r: &Request) -> Result<Change, DecodeError> {
        let body = |e: postcard::Error| DecodeError::Body(r.tag, e.to_string());
        match r.tag {
            TAG_KV => Ok(Change::Kv(postcard::from_bytes(&r.body).map_err(body)?)),
            TAG_SESSION => Ok(Change::Session(
                postcard::from_bytes(&r.body).map_err(body)?,
            )),
            TAG_TXN => Ok(Change::Txn(postcard::from_bytes(&r.body).map_err(body)?)),
            TAG_REAP => Ok(Change::Reap(postcard::from_bytes(&r.body).map_err(body)?)),
            TAG_RESTORE => Ok(Change::Restore(
                crate::state::replicated::StateImage::decode(&r.body).map_err(body)?,
            )),
            TAG_CATALOG => Ok(Change::Catalog(
                postcard::from_bytes(&r.body).map_err(body)?,
            )),
            TAG_COORDINATES => Ok(Change::Coordinates(
                postcard::from_bytes(&r.body).map_err(body)?,
            )),
            t => Err(DecodeError::UnknownTag(t)),
        }
    }
}

/// What applying a command answered.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Reply {
    /// Applied (or an entry that carries no command); the boolean is Consul's answer (a CAS or lock
    /// that did not hold is `false`).
    Done(bool),
    /// Not applied: the state refused it.
    Refused(Refusal),
    /// Not applied: this server cannot read the command.
    Unreadable(String),
    /// No command (blank and membership entries).
    #[default]
    Nothing,
    /// A batch's replies, one per request in order.
    Batch(Vec<Reply>),
    /// A transaction's outcome.
    Txn(TxnOutcome),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_unknown_tags_are_told_apart() {
        let c = Change::Kv(crate::state::kv::KvOp::Set {
            key: "k".into(),
            value: Some(vec![1, 2]),
            flags: 7,
        });
        assert_eq!(Command::decode(&Command::encode(&c)), Ok(c.clone()));
        let d = Change::Session(crate::state::sessions::SessionOp::Destroy { id: "x".into() });
        assert_eq!(Command::decode(&Command::encode(&d)), Ok(d.clone()));
        let mut image = crate::state::replicated::StateImage::default();
        image.kv.tombstones.push(("gone".into(), 4));
        for other in [Change::Reap(41), Change::Restore(image)] {
            assert_eq!(Command::decode(&Command::encode(&other)), Ok(other.clone()));
        }
        // Reaping may be skipped by a server that does not know it; a restore may not.
        assert_ne!(Command::encode(&Change::Reap(1)).tag & IGNORABLE, 0);
        assert_eq!(
            Command::encode(&Change::Restore(Default::default())).tag & IGNORABLE,
            0
        );
        let future = Request {
            id: 0,
            tag: 999,
            body: vec![1],
        };
        assert_eq!(Command::decode(&future), Err(DecodeError::UnknownTag(999)));
        let broken = Request {
            id: 0,
            tag: TAG_KV,
            body: vec![200],
        };
        assert!(matches!(
            Command::decode(&broken),
            Err(DecodeError::Body(1, _))
        ));
        // A batch is no single command, and gives back its requests in order.
        let both = Command::batch(&[Command::encode(&c), Command::encode(&d)]);
        assert!(matches!(
            Command::decode(&both),
            Err(DecodeError::UnknownTag(TAG_BATCH))
        ));
        let back = Command::unbatch(&both).unwrap().unwrap();
        assert_eq!(Command::decode(&back[1]), Ok(d));
        assert!(Command::unbatch(&Command::encode(&c)).is_none());
    }
}
