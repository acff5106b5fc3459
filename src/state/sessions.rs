//! Sessions, as the servers replicate them: who holds locks in the KV store, with Consul's behaviors
//! (`release` or `delete` the session's keys when it ends), lock delays, and a watch so that session
//! reads can block.
//!
//! Like the KV store, writes come only from the raft state machine in log order. What is not
//! replicated: TTL timers (the leader keeps them, as Consul's does) and lock delays (each server notes
//! them when it applies the end of a session; only the leader consults them, before it proposes).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::definitions::Status;
use super::node_record::NodeRecord;
use super::watched::Watched;
use super::{MemberRecord, MemberStatus};

/// Longest lock delay Consul honours.
pub const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);
/// Shortest and longest session TTL (Consul's `session_ttl_min` default and `SessionTTLMax`).
pub const TTL_MIN: Duration = Duration::from_secs(10);
/// Longest session TTL.
pub const TTL_MAX: Duration = Duration::from_secs(24 * 3600);

/// What happens to a session's locks when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Behavior {
    /// The locks are released; the keys stay.
    Release,
    /// The locked keys are deleted.
    Delete,
}

impl Behavior {
    /// Consul's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Behavior::Release => "release",
            Behavior::Delete => "delete",
        }
    }
}

/// A service check a session depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCheck {
    /// Check ID.
    pub id: String,
    /// Namespace (always empty here).
    pub namespace: String,
}

/// One session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Session ID (a UUID).
    pub id: String,
    /// Free-form name.
    pub name: String,
    /// The node it belongs to.
    pub node: String,
    /// Lock delay.
    pub lock_delay: Duration,
    /// Release or delete.
    pub behavior: Behavior,
    /// TTL as the client wrote it ("" for none).
    pub ttl: String,
    /// Node checks that end the session when critical (default `serfHealth`).
    pub node_checks: Vec<String>,
    /// Service checks that end it when critical.
    pub service_checks: Vec<ServiceCheck>,
    /// Index of its creation.
    pub create_index: u64,
    /// Index of its last change.
    pub modify_index: u64,
}

/// How a session's node and checks stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionHealth {
    /// Its node is a member and none of its checks is critical.
    Healthy,
    /// Its node is not a member.
    MissingNode,
    /// One of its checks is not in its node's record.
    MissingCheck(String),
    /// One of its checks is critical (`serfHealth`: the node failed or left).
    Critical(String),
}

/// How long a session's node or check may be missing before the leader ends it. Consul ends a session
/// at once when its node or check is deregistered; here a missing one may also be one whose record
/// gossip has not yet brought to the leader (seconds at 5000 nodes), so it waits this long first.
pub const MISSING_GRACE: Duration = Duration::from_secs(30);

/// The leader's view, for one term, of sessions whose node or check is missing, and since when.
#[derive(Debug, Default)]
pub struct MissingSince {
    since: HashMap<String, Instant>,
}

impl MissingSince {
    /// Takes session `id`'s `health` at `now`: true when the session is to end (a critical check, or a
    /// node or check missing for [`MISSING_GRACE`]).
    pub fn ends(&mut self, id: &str, health: &SessionHealth, now: Instant) -> bool {
        match health {
            SessionHealth::Critical(_) => true,
            SessionHealth::Healthy => {
                self.since.remove(id);
                false
            }
            SessionHealth::MissingNode | SessionHealth::MissingCheck(_) => {
                let first = *self.since.entry(id.to_owned()).or_insert(now);
                now.duration_since(first) >= MISSING_GRACE
            }
        }
    }

    /// Forgets sessions that `live` no longer holds.
    pub fn retain(&mut self, live: impl Fn(&str) -> bool) {
        self.since.retain(|id, _| live(id));
    }

    /// Forgets everything (a new term: another leader's observations are not ours).
    pub fn clear(&mut self) {
        self.since.clear();
    }
}

impl Session {
    /// How its node (`member`, from gossip) and its checks (in the node's catalog `record`) stand: a
    /// critical check first (so a missing one cannot hide it), then a missing one.
    pub fn health(
        &self,
        member: Option<&MemberRecord>,
        record: Option<&NodeRecord>,
    ) -> SessionHealth {
        let Some(member) = member else {
            return SessionHealth::MissingNode;
        };
        let ids = self
            .node_checks
            .iter()
            .chain(self.service_checks.iter().map(|c| &c.id));
        let mut missing = None;
        for id in ids {
            let critical = if id == "serfHealth" {
                matches!(member.status, MemberStatus::Failed | MemberStatus::Left)
            } else {
                match record.and_then(|r| r.checks.iter().find(|c| c.id == *id)) {
                    None => {
                        missing.get_or_insert(id);
                        false
                    }
                    Some(c) => c.status() == Status::Critical,
                }
            };
            if critical {
                return SessionHealth::Critical(id.clone());
            }
        }
        missing.map_or(SessionHealth::Healthy, |id| {
            SessionHealth::MissingCheck(id.clone())
        })
    }

    /// The TTL as a duration (none when unset).
    pub fn ttl(&self) -> Option<Duration> {
        if self.ttl.is_empty() {
            return None;
        }
        crate::util::duration::parse(&self.ttl)
            .ok()
            .filter(|d| !d.is_zero())
    }
}

/// A session write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionOp {
    /// Creates a session (the proposer chose its ID; indexes are set at apply).
    Create(Session),
    /// Ends a session, releasing or deleting what it holds.
    Destroy {
        /// Session ID.
        id: String,
    },
}

/// What a session read asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionQuery {
    /// One session.
    Info(String),
    /// The sessions of a node.
    Node(String),
    /// Every session.
    List,
}

/// Why a session request was refused: the body did not decode (400 in Consul), or a value is not
/// allowed (500, as Consul's servers answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRequestError {
    /// Malformed body.
    Decode(String),
    /// A value Consul refuses.
    Invalid(String),
}

fn decode_err<T>(m: impl Into<String>) -> Result<T, SessionRequestError> {
    Err(SessionRequestError::Decode(m.into()))
}

fn strings(v: Option<&Value>, k: &str) -> Result<Option<Vec<String>>, SessionRequestError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                other => decode_err(format!("{k}: expected strings, got {other}")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => decode_err(format!("{k}: expected a list, got {other}")),
    }
}

impl Session {
    /// A session from a `PUT /v1/session/create` body (keys matched case-insensitively, as Go's JSON
    /// decoding does), with Consul's defaults: this agent's node, a 15 s lock delay, `release`, and
    /// the node's `serfHealth` check.
    pub fn from_request(
        body: Option<&Value>,
        id: String,
        agent_node: &str,
    ) -> Result<Session, SessionRequestError> {
        let empty = Value::Object(Default::default());
        let f = super::definitions::fields(body.unwrap_or(&empty), "session")
            .map_err(|e| SessionRequestError::Decode(e.0))?;
        let text = |k: &str| {
            super::definitions::string(&f, k).map_err(|e| SessionRequestError::Decode(e.0))
        };
        let lock_delay = match f.get("lockdelay") {
            None | Some(Value::Null) => Duration::from_secs(15),
            Some(Value::String(s)) => crate::util::duration::parse(s)
                .map_err(|e| SessionRequestError::Decode(format!("LockDelay: {e}")))?,
            Some(Value::Number(n)) => match n.as_u64() {
                // Consul reads a small number as seconds, a large one as nanoseconds.
                Some(n) if n < 1000 => Duration::from_secs(n),
                Some(n) => Duration::from_nanos(n),
                None => return decode_err(format!("LockDelay: {n} is not a duration")),
            },
            Some(other) => {
                return decode_err(format!("LockDelay: expected a duration, got {other}"));
            }
        };
        let behavior = match text("behavior")?.as_deref() {
            None | Some("") | Some("release") => Behavior::Release,
            Some("delete") => Behavior::Delete,
            Some(b) => {
                return Err(SessionRequestError::Invalid(format!(
                    "Invalid Behavior setting '{b}'"
                )));
            }
        };
        let ttl = text("ttl")?.unwrap_or_default();
        if !ttl.is_empty() {
            let d = crate::util::duration::parse(&ttl).map_err(|e| {
                SessionRequestError::Invalid(format!("Session TTL '{ttl}' invalid: {e}"))
            })?;
            if !d.is_zero() && !(TTL_MIN..=TTL_MAX).contains(&d) {
                return Err(SessionRequestError::Invalid(format!(
                    "Invalid Session TTL '{}', must be between [10s=24h0m0s]",
                    d.as_nanos()
                )));
            }
        }
        // `Checks` is the older name of `NodeChecks`; either replaces the default.
        let node_checks = match strings(f.get("nodechecks"), "NodeChecks")? {
            Some(c) => c,
            None => strings(f.get("checks"), "Checks")?
                .unwrap_or_else(|| vec!["serfHealth".to_string()]),
        };
        let service_checks = match f.get("servicechecks") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|c| {
                    let cf = super::definitions::fields(c, "ServiceChecks")
                        .map_err(|e| SessionRequestError::Decode(e.0))?;
                    let get = |k| {
                        super::definitions::string(&cf, k)
                            .map_err(|e| SessionRequestError::Decode(e.0))
                    };
                    Ok(ServiceCheck {
                        id: get("id")?.unwrap_or_default(),
                        namespace: get("namespace")?.unwrap_or_default(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(other) => {
                return decode_err(format!("ServiceChecks: expected a list, got {other}"));
            }
        };
        Ok(Session {
            id,
            name: text("name")?.unwrap_or_default(),
            node: text("node")?
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| agent_node.to_string()),
            lock_delay,
            behavior,
            ttl,
            node_checks,
            service_checks,
            create_index: 0,
            modify_index: 0,
        })
    }
}

#[derive(Default)]
struct Data {
    sessions: BTreeMap<String, Session>,
    /// Index of the last session change (Consul reports the sessions table's index).
    index: u64,
}

/// The replicated sessions.
#[derive(Default)]
pub struct SessionStore {
    table: Watched<Data>,
    /// Keys in their lock delay, until when (this server's clock).
    delays: Mutex<HashMap<String, Instant>>,
}

impl SessionStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when session `id` exists.
    pub fn exists(&self, id: &str) -> bool {
        self.table.read().sessions.contains_key(id)
    }

    /// Session `id`.
    pub fn get(&self, id: &str) -> Option<Session> {
        self.table.read().sessions.get(id).cloned()
    }

    /// Every session.
    pub fn all(&self) -> Vec<Session> {
        self.table.read().sessions.values().cloned().collect()
    }

    /// Adds `s` at `index`; false (and nothing changes) when its ID is taken.
    pub fn create(&self, index: u64, mut s: Session) -> bool {
        s.create_index = index;
        s.modify_index = index;
        {
            let mut d = self.table.write();
            if d.sessions.contains_key(&s.id) {
                return false;
            }
            d.sessions.insert(s.id.clone(), s);
            d.index = index;
        }
        self.table.notify(index);
        true
    }

    /// Removes session `id` at `index`; returns it if it existed.
    pub fn destroy(&self, index: u64, id: &str) -> Option<Session> {
        let gone = {
            let mut d = self.table.write();
            let gone = d.sessions.remove(id);
            if gone.is_some() {
                d.index = index;
            }
            gone
        };
        if gone.is_some() {
            self.table.notify(index);
        }
        gone
    }

    /// Starts the lock delay of `keys` (capped at Consul's 60 s).
    pub fn delay(&self, keys: &[String], delay: Duration) {
        if delay.is_zero() || keys.is_empty() {
            return;
        }
        let until = Instant::now() + delay.min(MAX_LOCK_DELAY);
        let mut d = self.delays.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        d.retain(|_, t| *t > now);
        for k in keys {
            d.insert(k.clone(), until);
        }
    }

    /// True while `key` is in a lock delay.
    pub fn delayed(&self, key: &str) -> bool {
        self.delays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .is_some_and(|t| *t > Instant::now())
    }

    /// Answers `q` now, with the sessions' index (at least 1).
    pub fn query(&self, q: &SessionQuery) -> (u64, Vec<Session>) {
        let d = self.table.read();
        let list = match q {
            SessionQuery::Info(id) => d.sessions.get(id).cloned().into_iter().collect(),
            SessionQuery::Node(n) => d
                .sessions
                .values()
                .filter(|s| s.node == *n)
                .cloned()
                .collect(),
            SessionQuery::List => d.sessions.values().cloned().collect(),
        };
        (d.index.max(1), list)
    }

    /// Waits until the sessions' index differs from `min` (or `deadline`), then answers.
    pub async fn wait(&self, q: &SessionQuery, min: u64, deadline: Instant) -> (u64, Vec<Session>) {
        self.table.wait(min, deadline, || self.query(q)).await
    }

    /// The whole contents, for a snapshot.
    pub fn image(&self) -> (u64, Vec<Session>) {
        let d = self.table.read();
        (d.index, d.sessions.values().cloned().collect())
    }

    /// Replaces the contents with a snapshot's.
    pub fn restore(&self, index: u64, sessions: Vec<Session>) {
        {
            let mut d = self.table.write();
            d.index = index;
            d.sessions = sessions.into_iter().map(|s| (s.id.clone(), s)).collect();
        }
        self.table.notify(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, node: &str) -> Session {
        Session {
            id: id.into(),
            name: String::new(),
            node: node.into(),
            lock_delay: Duration::from_secs(15),
            behavior: Behavior::Release,
            ttl: "10s".into(),
            node_checks: vec!["serfHealth".into()],
            service_checks: Vec::new(),
            create_index: 0,
            modify_index: 0,
        }
    }

    #[test]
    fn a_missing_node_or_check_ends_a_session_only_after_the_grace() {
        let mut m = MissingSince::default();
        let t0 = Instant::now();
        let missing = SessionHealth::MissingCheck("web".into());
        assert!(!m.ends("s", &missing, t0));
        assert!(!m.ends("s", &missing, t0 + MISSING_GRACE / 2));
        // Back in time: the clock starts over when it is missing again.
        assert!(!m.ends("s", &SessionHealth::Healthy, t0 + MISSING_GRACE / 2));
        assert!(!m.ends("s", &SessionHealth::MissingNode, t0 + MISSING_GRACE));
        assert!(m.ends("s", &SessionHealth::MissingNode, t0 + MISSING_GRACE * 2));
        // A critical check ends it at once; a forgotten session starts over.
        assert!(m.ends("t", &SessionHealth::Critical("serfHealth".into()), t0));
        m.retain(|id| id != "s");
        assert!(!m.ends("s", &missing, t0 + MISSING_GRACE * 3));
    }

    #[test]
    fn health_finds_a_critical_check_behind_a_missing_one() {
        let member = |status| MemberRecord {
            name: "n1".into(),
            addr: "127.0.0.1:8301".parse().unwrap(),
            status,
            incarnation: 1,
            tags: Default::default(),
            meta: Default::default(),
            create_index: 1,
            modify_index: 1,
        };
        let check = |id: &str, status: u8| crate::state::node_record::CheckRecord {
            id: id.into(),
            name: id.into(),
            status,
            notes: String::new(),
            output: String::new(),
            service_id: String::new(),
            kind: "ttl".into(),
        };
        let record = NodeRecord {
            services: Vec::new(),
            checks: vec![check("ok", 0), check("bad", 2)],
        };
        let mut s = session("a", "n1");
        s.node_checks = vec!["serfHealth".into(), "gone".into(), "bad".into()];
        let alive = member(MemberStatus::Alive);
        assert_eq!(
            s.health(Some(&alive), Some(&record)),
            SessionHealth::Critical("bad".into())
        );
        s.node_checks = vec!["serfHealth".into(), "gone".into(), "ok".into()];
        assert_eq!(
            s.health(Some(&alive), Some(&record)),
            SessionHealth::MissingCheck("gone".into())
        );
        s.node_checks = vec!["serfHealth".into(), "ok".into()];
        assert_eq!(
            s.health(Some(&alive), Some(&record)),
            SessionHealth::Healthy
        );
        assert_eq!(
            s.health(Some(&member(MemberStatus::Failed)), Some(&record)),
            SessionHealth::Critical("serfHealth".into())
        );
        assert_eq!(s.health(None, Some(&record)), SessionHealth::MissingNode);
    }

    #[test]
    fn sessions_are_created_listed_and_destroyed_with_indexes() {
        let s = SessionStore::new();
        assert_eq!(s.query(&SessionQuery::List), (1, vec![]));
        assert!(s.create(4, session("a", "n1")));
        assert!(s.create(5, session("b", "n2")));
        assert!(
            !s.create(6, session("b", "n3")),
            "an ID is never taken over"
        );
        let (i, l) = s.query(&SessionQuery::Node("n1".into()));
        assert_eq!((i, l.len(), l[0].create_index), (5, 1, 4));
        assert_eq!(s.get("b").unwrap().ttl(), Some(Duration::from_secs(10)));
        assert!(s.destroy(7, "a").is_some());
        assert!(s.destroy(8, "a").is_none());
        assert_eq!(s.query(&SessionQuery::Info("a".into())), (7, vec![]));
        let (idx, all) = s.image();
        let t = SessionStore::new();
        t.restore(idx, all);
        assert_eq!(t.query(&SessionQuery::List).1.len(), 1);
    }

    #[test]
    fn requests_get_consul_defaults_and_refusals() {
        let s = Session::from_request(None, "id".into(), "me").unwrap();
        assert_eq!(s.node, "me");
        assert_eq!(s.lock_delay, Duration::from_secs(15));
        assert_eq!(s.behavior, Behavior::Release);
        assert_eq!(s.node_checks, vec!["serfHealth".to_string()]);
        let body = serde_json::json!({"name": "x", "Behavior": "delete", "ttl": "30s",
            "LockDelay": 5, "Checks": [], "ServiceChecks": [{"ID": "web"}]});
        let s = Session::from_request(Some(&body), "id".into(), "me").unwrap();
        assert_eq!(
            (
                s.name.as_str(),
                s.behavior,
                s.lock_delay,
                s.node_checks.len()
            ),
            ("x", Behavior::Delete, Duration::from_secs(5), 0)
        );
        assert_eq!(s.service_checks[0].id, "web");
        assert_eq!(s.ttl(), Some(Duration::from_secs(30)));
        let ns = serde_json::json!({"LockDelay": 2_000_000_000u64});
        let s = Session::from_request(Some(&ns), "id".into(), "me").unwrap();
        assert_eq!(s.lock_delay, Duration::from_secs(2));
        let bad = |v: Value| Session::from_request(Some(&v), "id".into(), "me").unwrap_err();
        assert_eq!(
            bad(serde_json::json!({"Behavior": "explode"})),
            SessionRequestError::Invalid("Invalid Behavior setting 'explode'".into())
        );
        assert_eq!(
            bad(serde_json::json!({"TTL": "5s"})),
            SessionRequestError::Invalid(
                "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]".into()
            )
        );
        assert!(matches!(
            bad(serde_json::json!({"TTL": "soon"})),
            SessionRequestError::Invalid(m) if m.starts_with("Session TTL 'soon' invalid")
        ));
        assert!(matches!(
            bad(serde_json::json!({"NodeChecks": "serfHealth"})),
            SessionRequestError::Decode(_)
        ));
    }

    #[test]
    fn lock_delays_expire_and_are_capped() {
        let s = SessionStore::new();
        s.delay(&["k".into()], Duration::from_secs(3600));
        assert!(s.delayed("k"));
        assert!(!s.delayed("other"));
        let until = *s.delays.lock().unwrap().get("k").unwrap();
        assert!(until <= Instant::now() + MAX_LOCK_DELAY);
        s.delay(&["z".into()], Duration::ZERO);
        assert!(!s.delayed("z"));
    }
}
