//! Requests answered in another datacenter (`?dc=`, `NAME.node.DC.consul`): what travels over the
//! server transport, and the hook through which a server answers one as if it had been asked itself.
//!
//! A whole HTTP request or DNS query is forwarded, not a decoded read: the other datacenter's server
//! runs the same handlers a local caller would reach, so every endpoint answers with the same shapes,
//! status codes and `X-Consul-*` headers, blocking queries included, with one code path to keep right.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::replicated::BoxFuture;

/// Longest a forwarded request may take: Consul's longest blocking wait (10 minutes, plus its jitter
/// of wait/16) and room for the hops.
pub const TIMEOUT: Duration = Duration::from_secs(10 * 60 + 60);

/// Largest forwarded request body (a KV value or transaction is at most 512 KiB).
pub const MAX_REQUEST_BODY: usize = 4 << 20;

/// Largest forwarded answer body (a catalog listing of a very large datacenter: 5000 nodes take
/// about 2 MiB).
pub const MAX_ANSWER_BODY: usize = 16 << 20;

/// Request headers that travel with a forwarded request; the rest describe the first hop only.
pub const REQUEST_HEADERS: &[&str] = &["content-type", "x-consul-token", "authorization"];

/// An HTTP request to answer in another datacenter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The path (`/v1/catalog/nodes`).
    pub path: String,
    /// The query string without `dc`, as received (still percent-encoded).
    pub query: String,
    /// The headers of [`REQUEST_HEADERS`] that were present.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// `Content-Type` and the `X-Consul-*` headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// What is asked of the other datacenter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteRequest {
    /// An HTTP API request.
    Http(HttpRequest),
    /// A DNS query (wire format); `tcp` says which size limits apply to the answer.
    Dns {
        /// The query.
        query: Vec<u8>,
        /// Whether it came over TCP.
        tcp: bool,
        /// The asking agent's DNS settings (domain, TTLs, limits), encoded by the DNS layer: the
        /// answer is built with them, as the asking agent would build it.
        settings: Vec<u8>,
    },
}

/// The other datacenter's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteAnswer {
    /// To [`RemoteRequest::Http`].
    Http(HttpResponse),
    /// To [`RemoteRequest::Dns`]: the response in wire format.
    Dns(Vec<u8>),
}

/// Answers a request as this agent's own HTTP API or DNS server would (the agent implements it).
pub trait LocalAnswerer: Send + Sync {
    /// The answer to `req`.
    fn answer(&self, req: RemoteRequest) -> BoxFuture<'_, RemoteAnswer>;
}

/// The datacenter a query string names, as Consul reads it (Go's `Query().Get("dc")`: the first `dc`
/// parameter, percent-decoded; empty means this one), and the query string without any `dc`
/// parameter, the others kept as sent (still percent-encoded).
pub fn split_dc(query: &str) -> (Option<String>, String) {
    let mut dc: Option<String> = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let decoded = form_urlencoded::parse(pair.as_bytes()).next();
        match decoded {
            Some((k, v)) if k == "dc" => {
                if dc.is_none() {
                    dc = Some(v.into_owned());
                }
            }
            _ => rest.push(pair),
        }
    }
    (dc.filter(|d| !d.is_empty()), rest.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dc_parameter_is_taken_out_and_the_rest_kept_as_sent() {
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            split_dc("dc=dc2&index=5&wait=1s"),
            (some("dc2"), "index=5&wait=1s".to_string())
        );
        assert_eq!(
            split_dc("recurse&dc=east&keys"),
            (some("east"), "recurse&keys".to_string())
        );
        assert_eq!(split_dc("dc=&near=_agent"), (None, "near=_agent".into()));
        assert_eq!(split_dc(""), (None, String::new()));
        // The first, as Go's Get: an empty first one means this datacenter, whatever follows.
        assert_eq!(split_dc("dc=a&dc=b"), (some("a"), String::new()));
        assert_eq!(split_dc("dc=&dc=b"), (None, String::new()));
        // Percent-encoded keys and values are what they decode to.
        assert_eq!(split_dc("d%63=my%2Ddc&x=1"), (some("my-dc"), "x=1".into()));
        assert_eq!(split_dc("dc"), (None, String::new()));
        assert_eq!(
            split_dc("node-meta=a%3Db&dcx=1"),
            (None, "node-meta=a%3Db&dcx=1".into())
        );
    }

    #[test]
    fn requests_survive_postcard() {
        let r = RemoteRequest::Http(HttpRequest {
            method: "PUT".into(),
            path: "/v1/kv/a".into(),
            query: "cas=3".into(),
            headers: vec![("content-type".into(), "text/plain".into())],
            body: b"v".to_vec(),
        });
        let b = postcard::to_allocvec(&r).unwrap();
        assert_eq!(postcard::from_bytes::<RemoteRequest>(&b).unwrap(), r);
    }
}
