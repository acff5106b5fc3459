//! A client agent's way to the replicated store: every request goes to an alive server of the
//! datacenter (taken in turn), which answers it or forwards it to its leader.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::bootstrap::gossip_servers;
use super::command::Command;
use super::network::{CallError, Transport};
use super::rpc::{Answer, Rpc};
use super::server::HOLD;
use crate::state::MemberTable;
use crate::state::autopilot::{OperatorOp, OperatorReply};
use crate::state::remote::{self, RemoteAnswer, RemoteRequest};
use crate::state::replicated::{
    BoxFuture, Change, RaftConfiguration, ReadRequest, ReadResult, Replicated, StoreError, Written,
};
use crate::state::sessions::Session;

/// Extra time over a request's own hold or wait.
const SLACK: Duration = Duration::from_secs(10);

/// Forwards to the servers.
pub struct Forwarder {
    transport: Arc<Transport>,
    members: Arc<MemberTable>,
    datacenter: String,
    default_port: u16,
    next: AtomicUsize,
    /// Whether the last server heard from knew a leader.
    known: AtomicBool,
}

impl Forwarder {
    /// Forwards through `transport` to the servers gossip shows in `datacenter`.
    pub fn new(
        transport: Arc<Transport>,
        members: Arc<MemberTable>,
        datacenter: String,
        default_port: u16,
    ) -> Self {
        Forwarder {
            transport,
            members,
            datacenter,
            default_port,
            next: AtomicUsize::new(0),
            known: AtomicBool::new(false),
        }
    }

    /// Sends `rpc` to a server; a server that cannot be reached is passed over for the next.
    async fn call(&self, rpc: Rpc, timeout: Duration) -> Result<Answer, StoreError> {
        let mut servers: Vec<SocketAddr> =
            gossip_servers(&self.members, &self.datacenter, self.default_port)
                .iter()
                .filter_map(|c| c.node.addr.parse().ok())
                .collect();
        if servers.is_empty() {
            return Err(StoreError::NoServers);
        }
        // In turn, and servers that just failed last (gossip may not have noticed a crash yet).
        let start = self.next.fetch_add(1, Ordering::Relaxed) % servers.len();
        servers.rotate_left(start);
        servers.sort_by_key(|a| self.transport.recently_down(*a));
        let mut last = String::new();
        for addr in servers {
            match self.transport.call(addr, &rpc, timeout).await {
                Ok(Answer::Refused(why)) => return Err(StoreError::Unavailable(why)),
                Ok(a) => {
                    self.note(&a);
                    return Ok(a);
                }
                // Never sent: another server may take it.
                Err(CallError::Unreachable(e)) => last = e,
                Err(e) => return Err(StoreError::Unavailable(format!("server {addr}: {e}"))),
            }
        }
        Err(StoreError::Unavailable(format!(
            "no server could be reached: {last}"
        )))
    }

    /// Remembers whether the answering server knew a leader.
    fn note(&self, a: &Answer) {
        let known = match a {
            Answer::Read(Ok(r)) => r.known_leader,
            Answer::Write(Ok(_)) => true,
            Answer::Write(Err(StoreError::NoLeader)) | Answer::Read(Err(StoreError::NoLeader)) => {
                false
            }
            Answer::Status(s) => s.leader.is_some(),
            _ => return,
        };
        self.known.store(known, Ordering::Relaxed);
    }

    async fn status(&self) -> Option<super::rpc::Status> {
        match self.call(Rpc::Status, Duration::from_secs(5)).await {
            Ok(Answer::Status(s)) => Some(s),
            _ => None,
        }
    }
}

fn unexpected() -> StoreError {
    StoreError::Unavailable("unexpected answer from a server".into())
}

impl Replicated for Forwarder {
    fn write(&self, change: Change) -> BoxFuture<'_, Result<Written, StoreError>> {
        Box::pin(async move {
            let rpc = Rpc::Write {
                command: Command::encode_write(&change),
                hops: 0,
            };
            match self.call(rpc, HOLD + SLACK).await? {
                Answer::Write(r) => r,
                _ => Err(unexpected()),
            }
        })
    }

    fn renew(&self, id: String) -> BoxFuture<'_, Result<Option<Session>, StoreError>> {
        Box::pin(async move {
            match self.call(Rpc::Renew { id, hops: 0 }, HOLD + SLACK).await? {
                Answer::Renew(r) => r,
                _ => Err(unexpected()),
            }
        })
    }

    fn read(&self, req: ReadRequest) -> BoxFuture<'_, Result<ReadResult, StoreError>> {
        Box::pin(async move {
            let timeout = req.wait.max(HOLD) + SLACK;
            match self
                .call(
                    Rpc::Read {
                        request: req,
                        hops: 0,
                    },
                    timeout,
                )
                .await?
            {
                Answer::Read(r) => r,
                _ => Err(unexpected()),
            }
        })
    }

    fn leader(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move { self.status().await.and_then(|s| s.leader) })
    }

    fn peers(&self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async move { self.status().await.map(|s| s.peers).unwrap_or_default() })
    }

    fn known_leader(&self) -> bool {
        self.known.load(Ordering::Relaxed)
    }

    fn configuration(&self) -> BoxFuture<'_, Result<RaftConfiguration, StoreError>> {
        Box::pin(async move {
            match self.call(Rpc::Status, HOLD + SLACK).await? {
                Answer::Status(s) => Ok(s.configuration),
                _ => Err(unexpected()),
            }
        })
    }

    fn remote(
        &self,
        dc: String,
        request: RemoteRequest,
    ) -> BoxFuture<'_, Result<RemoteAnswer, StoreError>> {
        Box::pin(async move {
            let rpc = Rpc::Remote {
                dc,
                request,
                hops: 0,
            };
            match self.call(rpc, remote::TIMEOUT).await? {
                Answer::Remote(r) => r,
                _ => Err(unexpected()),
            }
        })
    }

    fn operator(&self, op: OperatorOp) -> BoxFuture<'_, Result<OperatorReply, StoreError>> {
        Box::pin(async move {
            match self
                .call(Rpc::Operator { op, hops: 0 }, HOLD + SLACK)
                .await?
            {
                Answer::Operator(r) => r,
                _ => Err(unexpected()),
            }
        })
    }
}
