//! The server transport's messages: raft's own RPCs, and what agents forward to servers (writes, reads,
//! status). Each travels as one postcard frame on its own QUIC stream; the first field of every
//! request says which it is, and an unknown one is answered with an error, not a dropped stream.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::TypeConfig;
use super::command::Request;
use crate::state::autopilot::{OperatorOp, OperatorReply};
use crate::state::remote::{RemoteAnswer, RemoteRequest};
use crate::state::replicated::{RaftConfiguration, ReadRequest, ReadResult, StoreError, Written};
use crate::state::sessions::Session;

/// Largest frame either way: a batch of entries at the value limit, or a snapshot chunk.
pub const MAX_FRAME: usize = 64 << 20;

/// Forwards a request may take (client to server to leader).
pub const MAX_HOPS: u8 = 2;

/// A request on the server transport.
#[derive(Debug, Serialize, Deserialize)]
pub enum Rpc {
    /// Raft: append entries (also the heartbeat).
    Append(AppendEntriesRequest<TypeConfig>),
    /// Raft: request a vote.
    Vote(VoteRequest<u64>),
    /// Raft: a snapshot chunk.
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A write for the leader; `hops` counts forwards so far.
    Write {
        /// The command.
        command: Request,
        /// Forwards so far.
        hops: u8,
    },
    /// A read for a server (or, by its mode, the leader).
    Read {
        /// The read.
        request: ReadRequest,
        /// Forwards so far.
        hops: u8,
    },
    /// Whether the server holds raft state, and whom it knows as leader (for `bootstrap_expect`).
    Status,
    /// Renews a session's TTL (the leader keeps the timers).
    Renew {
        /// Session ID.
        id: String,
        /// Forwards so far.
        hops: u8,
    },
    /// An operator request for the leader.
    Operator {
        /// The request.
        op: OperatorOp,
        /// Forwards so far.
        hops: u8,
    },
    /// A request for a server of datacenter `dc` (this one included) to answer as if asked itself.
    Remote {
        /// The datacenter that answers.
        dc: String,
        /// The request.
        request: RemoteRequest,
        /// Forwards so far (a request from another datacenter's server is never passed on).
        hops: u8,
    },
}

/// A server's raft status as [`Rpc::Status`] answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// True when the server has a raft configuration (bootstrapped, or joined one).
    pub initialized: bool,
    /// The leader's RPC address, when known.
    pub leader: Option<String>,
    /// The voters' RPC addresses.
    pub peers: Vec<String>,
    /// The whole configuration.
    pub configuration: RaftConfiguration,
    /// Milliseconds since it last heard from the leader (0 on the leader; `None`: never).
    pub last_contact_ms: Option<u64>,
    /// Term and index of its last log entry.
    pub last_log: (u64, u64),
}

/// The answer to an [`Rpc`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Answer {
    /// To [`Rpc::Append`].
    Append(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    /// To [`Rpc::Vote`].
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    /// To [`Rpc::Snapshot`].
    Snapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    /// To [`Rpc::Write`].
    Write(Result<Written, StoreError>),
    /// To [`Rpc::Read`].
    Read(Result<ReadResult, StoreError>),
    /// To [`Rpc::Status`].
    Status(Status),
    /// To [`Rpc::Renew`]: the session, or `None` when there is none.
    Renew(Result<Option<Session>, StoreError>),
    /// To [`Rpc::Operator`].
    Operator(Result<OperatorReply, StoreError>),
    /// A request this server cannot serve (not a server, or a request it cannot read).
    Refused(String),
    /// To [`Rpc::Remote`].
    Remote(Result<RemoteAnswer, StoreError>),
}

/// Encodes a message.
pub fn encode<T: Serialize>(m: &T) -> Result<Vec<u8>, String> {
    postcard::to_allocvec(m).map_err(|e| format!("encoding an RPC: {e}"))
}

/// Decodes a message.
pub fn decode<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, String> {
    postcard::from_bytes(b).map_err(|e| format!("undecodable RPC: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::kv::{KvAnswer, KvEntry, KvQuery};
    use crate::state::replicated::{Consistency, Query, ReadAnswer};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};

    #[test]
    fn raft_messages_survive_postcard() {
        let req = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 9),
            prev_log_id: Some(LogId::new(CommittedLeaderId::new(3, 9), 41)),
            entries: vec![Entry {
                log_id: LogId::new(CommittedLeaderId::new(3, 9), 42),
                payload: EntryPayload::Normal(Request {
                    id: 9,
                    tag: 1,
                    body: vec![1, 2, 3],
                }),
            }],
            leader_commit: Some(LogId::new(CommittedLeaderId::new(3, 9), 40)),
        };
        let back: Rpc = decode(&encode(&Rpc::Append(req.clone())).unwrap()).unwrap();
        let Rpc::Append(got) = back else { panic!() };
        assert_eq!(got.vote, req.vote);
        assert_eq!(got.entries.len(), 1);
        assert_eq!(got.leader_commit, req.leader_commit);

        let a = Answer::Append(Ok(AppendEntriesResponse::Conflict));
        let back: Answer = decode(&encode(&a).unwrap()).unwrap();
        assert!(matches!(
            back,
            Answer::Append(Ok(AppendEntriesResponse::Conflict))
        ));

        let r = Answer::Read(Ok(ReadResult {
            index: 7,
            answer: ReadAnswer::Kv(KvAnswer::Entries(vec![KvEntry {
                key: "k".into(),
                value: None,
                flags: 1,
                lock_index: 0,
                session: Some("s".into()),
                create_index: 2,
                modify_index: 7,
            }])),
            known_leader: true,
            last_contact_ms: 3,
        }));
        let back: Answer = decode(&encode(&r).unwrap()).unwrap();
        assert!(matches!(
            back,
            Answer::Read(Ok(ReadResult { index: 7, .. }))
        ));
        let q = Rpc::Read {
            request: ReadRequest {
                query: Query::Kv(KvQuery::Get("x".into())),
                consistency: Consistency::Stale,
                min_index: Some(3),
                wait: std::time::Duration::from_secs(5),
            },
            hops: 1,
        };
        assert!(matches!(
            decode::<Rpc>(&encode(&q).unwrap()).unwrap(),
            Rpc::Read { hops: 1, .. }
        ));
        assert!(decode::<Rpc>(&[250, 1, 2]).is_err());
    }

    #[test]
    fn forwarded_requests_keep_their_wire_layout() {
        use crate::state::remote::{HttpRequest, RemoteAnswer, RemoteRequest};
        // The fuzz corpus holds these bytes as written by hand from the layout: a change to the
        // enum's order (which older servers would misread) fails here.
        let http = include_bytes!("../../fuzz/corpus/server_rpc/remote-http");
        let Rpc::Remote { dc, request, hops } = decode::<Rpc>(http).unwrap() else {
            panic!("not a remote request")
        };
        assert_eq!((dc.as_str(), hops), ("dc2", 0));
        assert_eq!(
            request,
            RemoteRequest::Http(HttpRequest {
                method: "GET".into(),
                path: "/v1/kv/a".into(),
                query: "recurse".into(),
                headers: vec![("x-consul-token".into(), "t".into())],
                body: Vec::new(),
            })
        );
        let dns = include_bytes!("../../fuzz/corpus/server_rpc/remote-dns");
        assert!(matches!(
            decode::<Rpc>(dns).unwrap(),
            Rpc::Remote {
                request: RemoteRequest::Dns { tcp: true, .. },
                ..
            }
        ));
        let a = Answer::Remote(Err(StoreError::NoPathToDatacenter));
        assert!(matches!(
            decode::<Answer>(&encode(&a).unwrap()).unwrap(),
            Answer::Remote(Err(StoreError::NoPathToDatacenter))
        ));
        let a = Answer::Remote(Ok(RemoteAnswer::Dns(vec![1, 2, 3])));
        assert!(matches!(
            decode::<Answer>(&encode(&a).unwrap()).unwrap(),
            Answer::Remote(Ok(RemoteAnswer::Dns(b))) if b == [1, 2, 3]
        ));
    }
}
