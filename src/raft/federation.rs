//! How a server reaches other datacenters: a request for datacenter DC goes to one of DC's alive
//! servers in the WAN pool, over the server transport; a request for this datacenter is answered here,
//! through the agent's own HTTP API or DNS server. Clients reach this through their servers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

use super::network::{CallError, Transport};
use super::rpc::{Answer, Rpc};
use crate::state::remote::{self, LocalAnswerer, RemoteAnswer, RemoteRequest};
use crate::state::replicated::StoreError;
use crate::state::wan::WanPool;

/// Forwarded requests one server handles at once (each may hold an answer of up to
/// [`remote::MAX_ANSWER_BODY`] bytes, or wait out a blocking query); more are refused.
const MAX_IN_FLIGHT: usize = 1024;

/// A server's way to every datacenter.
///
/// The agent's answerer holds the HTTP router, whose state holds this server: the cycle lives as
/// long as the process, as the server does.
pub struct Federation {
    transport: Arc<Transport>,
    wan: Option<Arc<WanPool>>,
    datacenter: String,
    local: OnceLock<Arc<dyn LocalAnswerer>>,
    next: AtomicUsize,
    in_flight: Semaphore,
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
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
        }
    }

    /// Sets what answers requests for this datacenter (the agent's HTTP API and DNS server, which
    /// exist only after the server started).
    pub fn set_local(&self, answerer: Arc<dyn LocalAnswerer>) {
        let _ = self.local.set(answerer);
    }

    /// Answers `req` for `dc`; `hops` counts the servers it passed (a request that came from another
    /// datacenter's server is answered here or refused, never passed on again).
    pub async fn answer(
        &self,
        dc: String,
        req: RemoteRequest,
        hops: u8,
    ) -> Result<RemoteAnswer, StoreError> {
        let Ok(_permit) = self.in_flight.try_acquire() else {
            return Err(StoreError::Unavailable(
                "too many forwarded requests in progress on this server".into(),
            ));
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tls::TlsSettings;
    use crate::state::remote::HttpRequest;
    use crate::state::replicated::BoxFuture;

    struct Echo;

    impl LocalAnswerer for Echo {
        fn answer(&self, req: RemoteRequest) -> BoxFuture<'_, RemoteAnswer> {
            Box::pin(async move {
                match req {
                    RemoteRequest::Http(h) => RemoteAnswer::Dns(h.path.into_bytes()),
                    RemoteRequest::Dns { query, .. } => RemoteAnswer::Dns(query),
                }
            })
        }
    }

    fn get(path: &str) -> RemoteRequest {
        RemoteRequest::Http(HttpRequest {
            method: "GET".into(),
            path: path.into(),
            query: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
        })
    }

    #[tokio::test]
    async fn this_datacenter_answers_here_and_a_forwarded_request_goes_no_further() {
        let localhost = std::net::IpAddr::from([127, 0, 0, 1]);
        let transport = Transport::open(None, localhost, &TlsSettings::default(), "dc1").unwrap();
        let wan = Arc::new(WanPool::new("s1.dc1".into(), 8300));
        let f = Federation::new(transport, Some(wan), "dc1".into());
        assert!(
            matches!(
                f.answer("dc1".into(), get("/v1/kv/a"), 0).await,
                Err(StoreError::Unavailable(_))
            ),
            "not ready before the agent's answerer is set"
        );
        f.set_local(Arc::new(Echo));
        assert_eq!(
            f.answer("dc1".into(), get("/v1/kv/a"), 1).await.unwrap(),
            RemoteAnswer::Dns(b"/v1/kv/a".to_vec())
        );
        // Another datacenter: unknown to the pool, and never passed on by a request that came from
        // one already.
        assert_eq!(
            f.answer("dc2".into(), get("/v1/kv/a"), 0)
                .await
                .unwrap_err(),
            StoreError::NoPathToDatacenter
        );
        assert_eq!(
            f.answer("dc2".into(), get("/v1/kv/a"), 1)
                .await
                .unwrap_err(),
            StoreError::NoPathToDatacenter
        );
    }
}
