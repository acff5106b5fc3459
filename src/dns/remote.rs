//! Names in other datacenters (`NAME.node.DC.consul`, `NAME.service.DC.consul`): the query goes whole
//! to a server of that datacenter (through this datacenter's servers from a client), which answers it
//! as its own; the answer is cached here for its smallest TTL, as Consul caches remote answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;

use super::DnsConfig;
use crate::state::remote::{RemoteAnswer, RemoteRequest};
use crate::state::replicated::{Replicated, StoreError};

/// Answers kept at most; a full cache drops what expired, then everything.
const MAX_ENTRIES: usize = 4096;

/// What an answer is cached under: the question and what shapes the answer (transport, EDNS size).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    name: String,
    qtype: u16,
    qclass: u16,
    tcp: bool,
    edns: Option<u16>,
}

impl Key {
    fn of(req: &Message, tcp: bool) -> Option<Key> {
        let [q] = req.queries.as_slice() else {
            return None;
        };
        Some(Key {
            name: q.name().to_ascii().to_ascii_lowercase(),
            qtype: q.query_type().into(),
            qclass: q.query_class().into(),
            tcp,
            edns: req.edns.as_ref().map(|e| e.max_payload()),
        })
    }
}

/// Why another datacenter gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteFailure {
    /// No server of it is known and alive (NXDOMAIN, as Consul answers `ErrNoDCPath`).
    NoPath,
    /// Its servers could not be reached or failed (SERVFAIL).
    Failed(String),
}

/// The way to other datacenters' DNS, with its cache.
pub struct RemoteDns {
    store: Arc<dyn Replicated>,
    /// This agent's settings as they travel with each query.
    settings: Vec<u8>,
    cache: Mutex<HashMap<Key, (Instant, Vec<u8>)>>,
}

impl RemoteDns {
    /// Asks through `store` (this agent's way to the servers), for answers built with `cfg`.
    pub fn new(store: Arc<dyn Replicated>, cfg: &DnsConfig) -> Self {
        RemoteDns {
            store,
            settings: encode_settings(cfg),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// `dc`'s answer to `req` (raw bytes `raw`), from the cache while its TTL lasts; true with it when
    /// it came from the cache.
    pub async fn answer(
        &self,
        dc: &str,
        req: &Message,
        raw: &[u8],
        tcp: bool,
    ) -> Result<(Vec<u8>, bool), RemoteFailure> {
        let key = Key::of(req, tcp);
        if let Some(k) = &key
            && let Some(mut hit) = self.cached(k)
        {
            hit[..2].copy_from_slice(&req.metadata.id.to_be_bytes());
            return Ok((hit, true));
        }
        let asked = RemoteRequest::Dns {
            query: raw.to_vec(),
            tcp,
            settings: self.settings.clone(),
        };
        let bytes = match self.store.remote(dc.to_string(), asked).await {
            Ok(RemoteAnswer::Dns(b)) if b.len() >= 12 => b,
            Ok(_) => return Err(RemoteFailure::Failed("not a DNS answer".into())),
            Err(StoreError::NoPathToDatacenter) => return Err(RemoteFailure::NoPath),
            Err(e) => return Err(RemoteFailure::Failed(e.to_string())),
        };
        if let (Some(k), Some(ttl)) = (key, cache_for(&bytes)) {
            self.keep(k, ttl, &bytes);
        }
        Ok((bytes, false))
    }

    fn cached(&self, k: &Key) -> Option<Vec<u8>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (until, bytes) = cache.get(k)?;
        (Instant::now() < *until).then(|| bytes.clone())
    }

    fn keep(&self, k: Key, ttl: Duration, bytes: &[u8]) {
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, (until, _)| *until > now);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(k, (now + ttl, bytes.to_vec()));
    }
}

/// The settings that shape an answer, as they travel (the recursors stay home: a forwarded name is
/// always under the domain).
fn encode_settings(cfg: &DnsConfig) -> Vec<u8> {
    let cfg = DnsConfig {
        recursors: Vec::new(),
        ..cfg.clone()
    };
    postcard::to_allocvec(&cfg).unwrap_or_default()
}

/// The settings a forwarded query carries, for an answer in datacenter `dc`; `None` when they do not
/// decode (the answering server then uses its own).
pub fn decode_settings(bytes: &[u8], dc: &str) -> Option<DnsConfig> {
    let mut cfg: DnsConfig = postcard::from_bytes(bytes).ok()?;
    cfg.datacenter = dc.to_string();
    cfg.recursors = Vec::new();
    let sane = cfg.domain.ends_with('.') && cfg.domain.len() <= 253;
    sane.then_some(cfg)
}

/// How long an answer may be served again: its records' smallest TTL (none when that is zero, or the
/// answer does not parse).
fn cache_for(bytes: &[u8]) -> Option<Duration> {
    let m = Message::from_vec(bytes).ok()?;
    let ttl = m
        .answers
        .iter()
        .chain(m.additionals.iter())
        .chain(m.authorities.iter())
        .map(|r| r.ttl)
        .min()?;
    (ttl > 0).then(|| Duration::from_secs(ttl.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::autopilot::{OperatorOp, OperatorReply};
    use crate::state::replicated::{
        BoxFuture, Change, RaftConfiguration, ReadRequest, ReadResult, Written,
    };
    use crate::state::sessions::Session;
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RData, Record, RecordType, rdata::A};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store whose other datacenter answers every query with one A record of `ttl`.
    struct Fake {
        ttl: u32,
        calls: AtomicUsize,
        known: bool,
    }

    impl Replicated for Fake {
        fn remote(
            &self,
            dc: String,
            req: RemoteRequest,
        ) -> BoxFuture<'_, Result<RemoteAnswer, StoreError>> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let ttl = self.ttl;
            let known = self.known && dc == "dc2";
            Box::pin(async move {
                if !known {
                    return Err(StoreError::NoPathToDatacenter);
                }
                let RemoteRequest::Dns { query, .. } = req else {
                    unreachable!("only DNS here")
                };
                let q = Message::from_vec(&query).unwrap();
                let mut m = Message::response(q.metadata.id, q.metadata.op_code);
                let name = q.queries[0].name().clone();
                m.add_query(q.queries[0].clone());
                m.add_answer(Record::from_rdata(name, ttl, RData::A(A::new(10, 0, 0, 2))));
                Ok(RemoteAnswer::Dns(m.to_vec().unwrap()))
            })
        }
        fn write(&self, _: Change) -> BoxFuture<'_, Result<Written, StoreError>> {
            unreachable!("DNS only forwards")
        }
        fn renew(&self, _: String) -> BoxFuture<'_, Result<Option<Session>, StoreError>> {
            unreachable!("DNS only forwards")
        }
        fn read(&self, _: ReadRequest) -> BoxFuture<'_, Result<ReadResult, StoreError>> {
            unreachable!("DNS only forwards")
        }
        fn leader(&self) -> BoxFuture<'_, Option<String>> {
            unreachable!("DNS only forwards")
        }
        fn peers(&self) -> BoxFuture<'_, Vec<String>> {
            unreachable!("DNS only forwards")
        }
        fn known_leader(&self) -> bool {
            unreachable!("DNS only forwards")
        }
        fn configuration(&self) -> BoxFuture<'_, Result<RaftConfiguration, StoreError>> {
            unreachable!("DNS only forwards")
        }
        fn operator(&self, _: OperatorOp) -> BoxFuture<'_, Result<OperatorReply, StoreError>> {
            unreachable!("DNS only forwards")
        }
    }

    fn query(id: u16) -> (Message, Vec<u8>) {
        let mut m = Message::query();
        m.metadata.id = id;
        m.add_query(Query::query(
            Name::from_ascii("agent-x.node.dc2.consul.").unwrap(),
            RecordType::A,
        ));
        let raw = m.to_vec().unwrap();
        (m, raw)
    }

    #[tokio::test]
    async fn answers_are_cached_for_their_ttl_and_keep_the_asker_s_id() {
        let fake = Arc::new(Fake {
            ttl: 30,
            calls: AtomicUsize::new(0),
            known: true,
        });
        let remote = RemoteDns::new(fake.clone(), &DnsConfig::default());
        let (m, raw) = query(7);
        let (first, hit) = remote.answer("dc2", &m, &raw, false).await.unwrap();
        assert!(!hit);
        let (m2, raw2) = query(9);
        let (second, hit) = remote.answer("dc2", &m2, &raw2, false).await.unwrap();
        assert!(hit);
        assert_eq!(fake.calls.load(Ordering::Relaxed), 1);
        assert_eq!(Message::from_vec(&first).unwrap().metadata.id, 7);
        assert_eq!(Message::from_vec(&second).unwrap().metadata.id, 9);
        assert_eq!(first[2..], second[2..]);
        // Over TCP the answer may differ (no truncation): asked again.
        remote.answer("dc2", &m, &raw, true).await.unwrap();
        assert_eq!(fake.calls.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn settings_travel_without_the_recursors_and_answer_as_the_receiving_datacenter() {
        let cfg = DnsConfig {
            domain: "example.".into(),
            node_ttl: std::time::Duration::from_secs(30),
            only_passing: true,
            recursors: vec!["127.0.0.53:53".parse().unwrap()],
            ..DnsConfig::default()
        };
        let got = decode_settings(&encode_settings(&cfg), "dc2").unwrap();
        assert_eq!(
            got,
            DnsConfig {
                datacenter: "dc2".into(),
                recursors: Vec::new(),
                ..cfg
            }
        );
        assert!(decode_settings(b"\xff\xff", "dc2").is_none());
    }

    #[tokio::test]
    async fn zero_ttl_answers_are_not_cached_and_an_unknown_datacenter_has_no_path() {
        let fake = Arc::new(Fake {
            ttl: 0,
            calls: AtomicUsize::new(0),
            known: true,
        });
        let remote = RemoteDns::new(fake.clone(), &DnsConfig::default());
        let (m, raw) = query(1);
        remote.answer("dc2", &m, &raw, false).await.unwrap();
        remote.answer("dc2", &m, &raw, false).await.unwrap();
        assert_eq!(fake.calls.load(Ordering::Relaxed), 2);
        assert_eq!(
            remote.answer("dc9", &m, &raw, false).await.unwrap_err(),
            RemoteFailure::NoPath
        );
    }
}
