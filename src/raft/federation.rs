//! How a server reaches other datacenters: a request for datacenter DC goes to one of DC's alive
//! servers in the WAN pool, over the server transport; a request for this datacenter is answered here,
//! through the agent's own HTTP API or DNS server. Clients reach this through their servers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::network::{CallError, Transport};
use super::rpc::{Answer, Rpc};
use crate::state::remote::{self, LocalAnswerer, RemoteAnswer, RemoteRequest};
use crate::state::replicated::StoreError;
use crate::state::wan::WanPool;

/// A server's way to every datacenter.
pub struct Federation {
    transport: Arc<Transport>,
    wan: Option<Arc<WanPool>>,
    datacenter: String,
    local: OnceLock<Arc<dyn LocalAnswerer>>,
    next: AtomicUsize,
}

impl Federation {
    /// Routes through `transport` to the servers `wan` knows (none when the WAN pool is off).
    pub fn new(transport: Arc<Transport>, wan: Option<Arc<WanPool>>, datacenter: String) -> Self {
        Federation {
            transport,
            wan,
            datacenter,
            local: OnceLock::new(),
            next: AtomicUsize::new(0),
        }
    }

    /// Sets what answers requests for this datacenter (the agent's HTTP API and DNS server, which
    /// exist only after the server started).
    pub fn set_local(&self, answerer: Arc<dyn LocalAnswerer>) {
        let _ = self.local.set(answerer);
    }

    /// The WAN pool, when this server gossips across datacenters.
    pub fn wan(&self) -> Option<&Arc<WanPool>> {
        self.wan.as_ref()
    }

    /// Answers `req` for `dc`; `hops` counts the servers it passed (a request that came from another
    /// datacenter's server is answered here or refused, never passed on again).
    pub async fn answer(
        &self,
        dc: String,
        req: RemoteRequest,
        hops: u8,
    ) -> Result<RemoteAnswer, StoreError> {
        if dc == self.datacenter {
            let local = self.local.get().ok_or_else(|| {
                StoreError::Unavailable("this server is still starting".to_string())
            })?;
            return Ok(local.answer(req).await);
        }
        if hops > 0 {
            return Err(StoreError::NoPathToDatacenter);
        }
        self.forward(&dc, req).await
    }

    /// Sends `req` to an alive server of `dc`, trying the next when one cannot be reached.
    async fn forward(&self, dc: &str, req: RemoteRequest) -> Result<RemoteAnswer, StoreError> {
        let mut servers = self.wan.as_ref().map(|w| w.servers(dc)).unwrap_or_default();
        if servers.is_empty() {
            return Err(StoreError::NoPathToDatacenter);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % servers.len();
        servers.rotate_left(start);
        servers.sort_by_key(|a| self.transport.recently_down(*a));
        let rpc = Rpc::Remote {
            dc: dc.to_string(),
            request: req,
            hops: 1,
        };
        let mut last = String::new();
        for addr in servers {
            match self
                .transport
                .call_in(Some(dc), addr, &rpc, remote::TIMEOUT)
                .await
            {
                Ok(Answer::Remote(r)) => return r,
                Ok(Answer::Refused(why)) => return Err(StoreError::Unavailable(why)),
                Ok(_) => {
                    return Err(StoreError::Unavailable(format!(
                        "unexpected answer from server {addr} of {dc}"
                    )));
                }
                Err(CallError::Unreachable(e)) => last = format!("{addr}: {e}"),
                Err(e) => {
                    return Err(StoreError::Unavailable(format!(
                        "server {addr} of {dc}: {e}"
                    )));
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "no server of datacenter {dc} could be reached (last: {last})"
        )))
    }
}
