//! Names in other datacenters (`NAME.node.DC.consul`, `NAME.service.DC.consul`): the query goes whole
//! to a server of that datacenter (through this datacenter's servers from a client), which answers it
//! as its own; the answer is cached here for its smallest TTL, as Consul caches remote answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;

use super::DnsConfig;
use crate::state::remote::{RemoteAnswer, RemoteRequest};
use crate::state::replicated::{Replicated, StoreError};

/// Bytes of answers kept at most; a full cache drops what expired, then everything.
const MAX_CACHE_BYTES: usize = 8 << 20;

/// Longest wait for another datacenter's answer: resolvers retry after a few seconds, and a query
/// must not hold a task for the transport's blocking-query limit.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Queries for other datacenters in flight at once; more are answered SERVFAIL at once, so a flood of
/// them cannot turn into as many cross-datacenter requests.
const MAX_IN_FLIGHT: usize = 256;

/// What an answer is cached under: the question as asked (letter case included: resolvers that
/// randomise it check that it comes back) and what shapes the answer (transport, EDNS size).
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
            name: q.name().to_ascii(),
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
    /// Its servers could not be reached, failed, were too slow, or answered something that is not
    /// an answer to the question (SERVFAIL).
    Failed(String),
}

/// A cached answer: when it arrived, until when it may be served, and its bytes.
struct Cached {
    at: Instant,
    until: Instant,
    bytes: Vec<u8>,
}

/// The way to other datacenters' DNS, with its cache.
pub struct RemoteDns {
    store: Arc<dyn Replicated>,
    /// This agent's settings as they travel with each query.
    settings: Mutex<Arc<Vec<u8>>>,
    /// Moves with each change of `settings`, under the cache's lock: an answer asked for with the
    /// settings before is not kept.
    generation: AtomicU64,
    in_flight: Arc<tokio::sync::Semaphore>,
    cache: Mutex<(HashMap<Key, Cached>, usize)>,
}

impl RemoteDns {
    /// Asks through `store` (this agent's way to the servers), for answers built with `cfg`.
    pub fn new(store: Arc<dyn Replicated>, cfg: &DnsConfig) -> Self {
        RemoteDns {
            store,
            settings: Mutex::new(Arc::new(encode_settings(cfg))),
            generation: AtomicU64::new(0),
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            cache: Mutex::new((HashMap::new(), 0)),
        }
    }

    /// Sends `cfg` with queries from now on, and forgets answers built with the settings before.
    pub fn reconfigure(&self, cfg: &DnsConfig) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(encode_settings(cfg));
        self.generation.fetch_add(1, Ordering::SeqCst);
        *cache = (HashMap::new(), 0);
    }

    fn settings(&self) -> Arc<Vec<u8>> {
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
            && let Some(hit) = self.cached(k, req)
        {
            return Ok((hit, true));
        }
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
            return Err(RemoteFailure::Failed(
                "too many queries for other datacenters in flight".into(),
            ));
        };
        // The generation first: settings that change in between make the answer not kept, never
        // kept under the wrong settings.
        let generation = self.generation.load(Ordering::SeqCst);
        let settings = self.settings();
        let asked = RemoteRequest::Dns {
            query: raw.to_vec(),
            tcp,
            settings: settings.to_vec(),
        };
        let answered = tokio::time::timeout(TIMEOUT, self.store.remote(dc.to_string(), asked))
            .await
            .map_err(|_| RemoteFailure::Failed(format!("no answer from {dc} in {TIMEOUT:?}")))?;
        let bytes = match answered {
            Ok(RemoteAnswer::Dns(b)) => b,
            Ok(_) => return Err(RemoteFailure::Failed("not a DNS answer".into())),
            Err(StoreError::NoPathToDatacenter) => return Err(RemoteFailure::NoPath),
            Err(e) => return Err(RemoteFailure::Failed(e.to_string())),
        };
        let resp = check_answer(req, &bytes, tcp)?;
        if let (Some(k), Some(ttl)) = (key, cache_for(&resp)) {
            self.keep(k, ttl, &bytes, generation);
        }
        Ok((bytes, false))
    }

    /// A cached answer for `req`: its ID, and its TTLs lowered by the time it has been kept.
    fn cached(&self, k: &Key, req: &Message) -> Option<Vec<u8>> {
        let (bytes, age) = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            let c = cache.0.get(k)?;
            let now = Instant::now();
            if now >= c.until {
                return None;
            }
            (c.bytes.clone(), (now - c.at).as_secs() as u32)
        };
        let mut m = Message::from_vec(&bytes).ok()?;
        m.metadata.id = req.metadata.id;
        m.metadata.recursion_desired = req.metadata.recursion_desired;
        for r in m
            .answers
            .iter_mut()
            .chain(m.additionals.iter_mut())
            .chain(m.authorities.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(age);
        }
        m.to_vec().ok()
    }

    fn keep(&self, k: Key, ttl: Duration, bytes: &[u8], generation: u64) {
        let now = Instant::now();
        let mut guard = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::SeqCst) != generation {
            // Asked with settings a reload has replaced since.
            return;
        }
        let (cache, size) = &mut *guard;
        if *size + bytes.len() > MAX_CACHE_BYTES {
            cache.retain(|_, c| c.until > now);
            *size = cache.values().map(|c| c.bytes.len()).sum();
            if *size + bytes.len() > MAX_CACHE_BYTES {
                cache.clear();
                *size = 0;
            }
        }
        let new = Cached {
            at: now,
            until: now + ttl,
            bytes: bytes.to_vec(),
        };
        *size += new.bytes.len();
        if let Some(old) = cache.insert(k, new) {
            *size -= old.bytes.len();
        }
    }
}

/// `bytes` as an answer to `req`: a response to its ID and question, within the transport's size
/// limit (64 KiB over TCP; over UDP what the asker can take). Anything else is refused: a server
/// of another datacenter cannot plant an answer to a question that was not asked.
pub fn check_answer(req: &Message, bytes: &[u8], tcp: bool) -> Result<Message, RemoteFailure> {
    let limit = match (tcp, &req.edns) {
        (true, _) => usize::from(u16::MAX),
        (false, Some(e)) => usize::from(e.max_payload()).clamp(512, super::answer::MAX_UDP_PAYLOAD),
        (false, None) => 512,
    };
    let bad = |why: &str| RemoteFailure::Failed(format!("an answer refused: {why}"));
    if bytes.len() > limit {
        return Err(bad("too large for the transport"));
    }
    let m = Message::from_vec(bytes).map_err(|_| bad("it does not parse"))?;
    if m.metadata.message_type != hickory_proto::op::MessageType::Response
        || m.metadata.id != req.metadata.id
        || m.queries != req.queries
    {
        return Err(bad("not a response to the question"));
    }
    Ok(m)
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

/// How long an answer may be served again: its records' smallest TTL (none when that is zero).
fn cache_for(m: &Message) -> Option<Duration> {
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

    /// A store whose other datacenter answers every query with one A record of `ttl` (for another
    /// name than asked when `lie`).
    struct Fake {
        ttl: u32,
        calls: AtomicUsize,
        known: bool,
        lie: bool,
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
            let lie = self.lie;
            Box::pin(async move {
                if !known {
                    return Err(StoreError::NoPathToDatacenter);
                }
                let RemoteRequest::Dns { query, .. } = req else {
                    unreachable!("only DNS here")
                };
                let q = Message::from_vec(&query).unwrap();
                let mut m = Message::response(q.metadata.id, q.metadata.op_code);
                let mut asked = q.queries[0].clone();
                if lie {
                    asked.set_name(Name::from_ascii("bank.node.dc2.consul.").unwrap());
                }
                let name = asked.name().clone();
                m.add_query(asked);
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
            lie: false,
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
    async fn an_answer_to_another_question_is_refused_and_not_cached() {
        let fake = Arc::new(Fake {
            ttl: 30,
            calls: AtomicUsize::new(0),
            known: true,
            lie: true,
        });
        let remote = RemoteDns::new(fake.clone(), &DnsConfig::default());
        let (m, raw) = query(3);
        for _ in 0..2 {
            assert!(matches!(
                remote.answer("dc2", &m, &raw, false).await,
                Err(RemoteFailure::Failed(_))
            ));
        }
        assert_eq!(fake.calls.load(Ordering::Relaxed), 2);
        let big = vec![0u8; 600];
        assert!(
            check_answer(&m, &big, false).is_err(),
            "over 512 bytes on UDP"
        );
    }

    #[tokio::test]
    async fn zero_ttl_answers_are_not_cached_and_an_unknown_datacenter_has_no_path() {
        let fake = Arc::new(Fake {
            ttl: 0,
            calls: AtomicUsize::new(0),
            known: true,
            lie: false,
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
