//! How a server answers a request another datacenter forwarded to it: HTTP through the agent's own
//! router, DNS through its own DNS server, exactly as a local caller would be answered.

use crate::dns::server::DnsServer;
use crate::state::remote::{LocalAnswerer, RemoteAnswer, RemoteRequest};
use crate::state::replicated::BoxFuture;

/// The agent's HTTP router and DNS server.
pub struct AgentAnswerer {
    /// The HTTP API.
    pub router: axum::Router,
    /// The DNS server.
    pub dns: DnsServer,
}

impl LocalAnswerer for AgentAnswerer {
    fn answer(&self, req: RemoteRequest) -> BoxFuture<'_, RemoteAnswer> {
        Box::pin(async move {
            match req {
                RemoteRequest::Http(h) => RemoteAnswer::Http(
                    crate::http::remote_dc::answer_here(self.router.clone(), h).await,
                ),
                RemoteRequest::Dns {
                    query,
                    tcp,
                    settings,
                } => RemoteAnswer::Dns(self.dns.answer_forwarded(&query, tcp, &settings)),
            }
        })
    }
}
