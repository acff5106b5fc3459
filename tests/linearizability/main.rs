//! The KV store is linearizable through leader crashes: clients on every server write, read
//! (`?consistent` and the default mode) and compare-and-swap one key while the leader is killed with
//! `kill -9` and restarted, twice, and the recorded history is checked with a Wing-Gong search
//! (`checker.rs`). Default reads belong in the check because nothing here cuts a leader off while it
//! serves (Consul's one window for them); a restarted leader confirms its term before it answers.

#[path = "../support/mod.rs"]
mod support;

mod checker;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checker::{Kind, Op};
use murmur::http::client::Target;
use serde_json::Value;
use support::{Agent, tmp, wait_for};

const SETTLE: Duration = Duration::from_secs(40);
const CLIENTS: u64 = 4;
/// Operations per client at most (the history stays small enough to search).
const MAX_OPS: u64 = 1000;
const KEY: &str = "/v1/kv/lin";

/// What became of a request.
enum Outcome {
    /// Answered with this status and body.
    Answered(u16, Vec<u8>),
    /// Never sent: the agent's port was closed (it is down).
    NotSent,
    /// Sent, no answer: it may or may not have taken effect.
    Unknown,
}

/// A client's agents: it sends to one and moves to the next when that one is down.
struct Conn {
    agents: Vec<Target>,
    at: usize,
}

impl Conn {
    fn call(&mut self, method: &str, path: &str, body: &[u8]) -> Outcome {
        for _ in 0..self.agents.len() {
            match self.agents[self.at].call_with_body(method, path, body) {
                Ok(r) => return Outcome::Answered(r.status, r.body),
                Err(e) if e.contains("Connection refused") => {
                    self.at = (self.at + 1) % self.agents.len();
                }
                Err(_) => return Outcome::Unknown,
            }
        }
        Outcome::NotSent
    }
}

/// A read (`mode`: `?consistent` or Consul's default, the leader's state): `Some((value,
/// ModifyIndex))`, `Some(None)` for no key, `None` if it failed.
fn read(t: &mut Conn, mode: &str) -> Option<Option<(u64, u64)>> {
    match t.call("GET", &format!("{KEY}{mode}"), b"") {
        Outcome::Answered(404, _) => Some(None),
        Outcome::Answered(200, body) => {
            let v: Value = serde_json::from_slice(&body).ok()?;
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v[0]["Value"].as_str()?)
                .ok()?;
            let value: u64 = String::from_utf8(raw).ok()?.parse().ok()?;
            Some(Some((value, v[0]["ModifyIndex"].as_u64()?)))
        }
        _ => None,
    }
}

struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Op>>,
    done: AtomicUsize,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn keep(&self, call: u64, ret: Option<u64>, kind: Kind) {
        self.ops.lock().unwrap().push(Op { call, ret, kind });
        if ret.is_some() {
            self.done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes of a request whose answer is not `200 true|false` are of unknown outcome (an error may
/// follow a commit, as a timeout may); a request never sent is not recorded.
fn write_outcome(o: Outcome) -> Option<Option<bool>> {
    match o {
        Outcome::NotSent => None,
        Outcome::Answered(200, b) if b == b"true" => Some(Some(true)),
        Outcome::Answered(200, b) if b == b"false" => Some(Some(false)),
        _ => Some(None),
    }
}

fn client(n: u64, mut target: Conn, rec: Arc<Recorder>, stop: Arc<AtomicBool>) -> (u64, u64) {
    let mut unknown = 0;
    let mut cas_ok = 0;
    for seq in 1..=MAX_OPS {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let value = n * 1_000_000 + seq;
        match seq % 3 {
            0 => {
                let call_at = rec.now();
                let o = target.call("PUT", KEY, value.to_string().as_bytes());
                match write_outcome(o) {
                    None => {}
                    Some(Some(true)) => rec.keep(call_at, Some(rec.now()), Kind::Write(value)),
                    Some(_) => {
                        unknown += 1;
                        rec.keep(call_at, None, Kind::Write(value));
                    }
                }
            }
            r => {
                let call_at = rec.now();
                // Both modes: the default one too, as no leader here is cut off while it serves.
                let mode = if seq % 2 == 0 { "?consistent" } else { "" };
                let Some(seen) = read(&mut target, mode) else {
                    continue;
                };
                rec.keep(call_at, Some(rec.now()), Kind::Read(seen.map(|s| s.0)));
                let (r, Some((expect, index))) = (r, seen) else {
                    continue;
                };
                if r != 2 {
                    continue;
                }
                let call_at = rec.now();
                let path = format!("{KEY}?cas={index}");
                let o = target.call("PUT", &path, value.to_string().as_bytes());
                if let Some(ok) = write_outcome(o) {
                    let ret = ok.map(|_| rec.now());
                    unknown += u64::from(ok.is_none());
                    cas_ok += u64::from(ok == Some(true));
                    rec.keep(
                        call_at,
                        ret,
                        Kind::Cas {
                            expect,
                            new: value,
                            ok,
                        },
                    );
                }
            }
        }
    }
    (unknown, cas_ok)
}

#[test]
fn kv_history_through_a_leader_crash_is_linearizable() {
    let dir = tmp("linear");
    let join = "-retry-join=127.0.55.1";
    let server = |n: u8| {
        Agent::start(
            &format!("lz-s{n}"),
            &format!("127.0.55.{n}"),
            &dir,
            &["-server", "-bootstrap-expect=3", join],
        )
    };
    let mut servers = [server(1), server(2), server(3)];
    assert!(
        wait_for(SETTLE, || {
            let l = servers[0].leader();
            l.is_some() && servers.iter().all(|s| s.leader() == l)
        }),
        "no agreed leader"
    );
    let first = servers[0].http_body("PUT", KEY, "0");
    assert_eq!(first, Some((200, "true".into())));

    let rec = Arc::new(Recorder {
        start: Instant::now(),
        ops: Mutex::new(Vec::new()),
        done: AtomicUsize::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let agents = servers
                .iter()
                .map(|s| Target::parse(&s.http_addr()).unwrap())
                .collect();
            let t = Conn {
                agents,
                at: (n % 3) as usize,
            };
            let (rec, stop) = (rec.clone(), stop.clone());
            std::thread::spawn(move || client(n + 1, t, rec, stop))
        })
        .collect();
    let progress = |more: usize| {
        let want = rec.done.load(Ordering::Relaxed) + more;
        assert!(
            wait_for(SETTLE, || rec.done.load(Ordering::Relaxed) >= want),
            "no progress"
        );
    };

    // Twice: load, kill the leader, wait for a new one and for progress, bring the old one back.
    let mut crashed_at = u64::MAX;
    for _ in 0..2 {
        progress(100);
        let alive = servers.iter().position(|s| s.child.is_some()).unwrap();
        let old = servers[alive].leader().unwrap();
        let victim = servers
            .iter()
            .position(|s| old == format!("{}:8300", s.ip))
            .unwrap();
        crashed_at = crashed_at.min(rec.now());
        servers[victim].crash();
        let other = (victim + 1) % 3;
        assert!(
            wait_for(SETTLE, || servers[other].leader().is_some_and(|l| l != old)),
            "no new leader"
        );
        progress(100);
        servers[victim].restart();
        assert!(wait_for(SETTLE, || servers[victim].leader().is_some()));
    }
    progress(100);
    stop.store(true, Ordering::Relaxed);
    let mut unknown = 0;
    let mut cas_ok = 0;
    for c in clients {
        let (u, ok) = c.join().unwrap();
        unknown += u;
        cas_ok += ok;
    }

    let history = rec.ops.lock().unwrap().clone();
    let count = |f: fn(&Kind) -> bool| history.iter().filter(|o| f(&o.kind)).count();
    let writes = count(|k| matches!(k, Kind::Write(_)));
    let reads = count(|k| matches!(k, Kind::Read(_)));
    let cas_failed = count(|k| {
        matches!(
            k,
            Kind::Cas {
                ok: Some(false),
                ..
            }
        )
    });
    let after_crash = history
        .iter()
        .filter(|o| o.call > crashed_at && o.ret.is_some())
        .count();
    eprintln!(
        "history: {} operations ({writes} writes, {reads} reads, {cas_ok} CAS held, {cas_failed} \
         CAS failed, {unknown} of unknown outcome, {after_crash} completed after the first crash)",
        history.len()
    );
    // The history must exercise what it checks.
    assert!(writes >= 30 && reads >= 60, "too little load");
    assert!(cas_ok >= 5 && cas_failed >= 1, "CAS both ways");
    assert!(after_crash >= 300, "progress after the crashes");

    let started = Instant::now();
    assert!(
        checker::linearizable(Some(0), &history),
        "the KV history is not linearizable: {history:?}"
    );
    eprintln!("checked in {:?}", started.elapsed());
}
