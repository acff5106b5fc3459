//! `kvload`: one load client for two Raft KV stores, murmur (`/v1/kv`) and etcd (its `/v3/kv/*` JSON
//! gateway), so perf/kv-bench.sh compares them with the same connections, keys, values and timing.
//!
//! Each of `--clients` tasks holds one HTTP/1.1 keep-alive connection to one endpoint (clients are
//! spread over the endpoints in turn) and sends its next request when the last one is answered. Writes
//! put `--value-size` bytes under one of `--keys` keys; reads are linearizable on both (murmur
//! `?consistent`, etcd's default range). Prints one JSON object: operations per second over the
//! measured window (after a warm-up), latency percentiles and errors.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use murmur::util::flags::{self, Arity, Flag};
use serde_json::json;
use tokio::net::TcpStream;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SPEC: &[Flag] = &[
    Flag {
        name: "target",
        arity: Arity::One,
        help: "murmur or etcd.",
    },
    Flag {
        name: "endpoints",
        arity: Arity::One,
        help: "Comma-separated IP:port of the HTTP APIs (loopback only).",
    },
    Flag {
        name: "mode",
        arity: Arity::One,
        help: "write (default) or read.",
    },
    Flag {
        name: "clients",
        arity: Arity::One,
        help: "Concurrent clients, one connection each (default 64).",
    },
    Flag {
        name: "duration",
        arity: Arity::One,
        help: "Measured seconds (default 10).",
    },
    Flag {
        name: "warmup",
        arity: Arity::One,
        help: "Seconds run before measuring (default 2).",
    },
    Flag {
        name: "value-size",
        arity: Arity::One,
        help: "Bytes per value (default 256).",
    },
    Flag {
        name: "keys",
        arity: Arity::One,
        help: "Distinct keys (default 1000).",
    },
];

/// Which store's API a client speaks.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    Murmur,
    Etcd,
}

/// What a client sends.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Write,
    Read,
}

/// One client's tally over the measured window.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

struct Plan {
    target: Target,
    mode: Mode,
    value: Bytes,
    keys: usize,
    measure_from: Instant,
    until: Instant,
}

fn num<T: std::str::FromStr>(p: &flags::Parsed, k: &str, d: T) -> Result<T, String> {
    p.get(k).map_or(Ok(d), |v| {
        v.parse().map_err(|_| format!("invalid --{k}: {v:?}"))
    })
}

fn request(plan: &Plan, host: &str, key: &str) -> Request<Full<Bytes>> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let (method, uri, body) = match (plan.target, plan.mode) {
        (Target::Murmur, Mode::Write) => ("PUT", format!("/v1/kv/{key}"), plan.value.clone()),
        (Target::Murmur, Mode::Read) => ("GET", format!("/v1/kv/{key}?consistent"), Bytes::new()),
        (Target::Etcd, Mode::Write) => (
            "POST",
            "/v3/kv/put".to_string(),
            Bytes::from(json!({"key": b64(key.as_bytes()), "value": b64(&plan.value)}).to_string()),
        ),
        (Target::Etcd, Mode::Read) => (
            "POST",
            "/v3/kv/range".to_string(),
            Bytes::from(json!({"key": b64(key.as_bytes())}).to_string()),
        ),
    };
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host)
        .body(Full::new(body))
        .expect("a request built from valid parts")
}

/// Sends requests one after another until the plan's end; reconnects after a failed connection.
async fn client(n: usize, addr: SocketAddr, plan: std::sync::Arc<Plan>) -> Tally {
    let mut tally = Tally::default();
    let host = addr.to_string();
    let mut i = n.wrapping_mul(7919);
    'connect: while Instant::now() < plan.until {
        let conn = async {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            hyper::client::conn::http1::handshake(TokioIo::new(s))
                .await
                .map_err(std::io::Error::other)
        };
        let mut sender = match conn.await {
            Ok((sender, conn)) => {
                tokio::spawn(conn);
                sender
            }
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(format!("connect: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while Instant::now() < plan.until {
            i = i.wrapping_add(1);
            let key = format!("bench/k{}", i % plan.keys);
            let start = Instant::now();
            let answer = async {
                let resp = sender.send_request(request(&plan, &host, &key)).await?;
                let status = resp.status();
                let body = resp.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>((status, body))
            }
            .await;
            let took = start.elapsed();
            let counted = start >= plan.measure_from && Instant::now() <= plan.until;
            match answer {
                Ok((status, _)) if status.is_success() => {
                    if counted {
                        tally
                            .latencies_us
                            .push(took.as_micros().min(u32::MAX as u128) as u32);
                    }
                }
                Ok((status, body)) => {
                    tally.errors += 1;
                    tally.first_error.get_or_insert(format!(
                        "{status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    ));
                }
                Err(e) => {
                    tally.errors += 1;
                    tally.first_error.get_or_insert(e.to_string());
                    continue 'connect;
                }
            }
        }
    }
    tally
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let p = flags::parse(&args, SPEC)?;
    let target = match p.get("target") {
        Some("murmur") => Target::Murmur,
        Some("etcd") => Target::Etcd,
        other => return Err(format!("--target must be murmur or etcd, got {other:?}")),
    };
    let mode = match p.get("mode").unwrap_or("write") {
        "write" => Mode::Write,
        "read" => Mode::Read,
        other => return Err(format!("--mode must be write or read, got {other:?}")),
    };
    let endpoints: Vec<SocketAddr> = p
        .get("endpoints")
        .ok_or("--endpoints is required")?
        .split(',')
        .map(|a| {
            a.trim()
                .parse::<SocketAddr>()
                .map_err(|_| format!("bad endpoint {a:?}"))
        })
        .collect::<Result<_, _>>()?;
    if endpoints.is_empty() || endpoints.iter().any(|a| !a.ip().is_loopback()) {
        return Err("--endpoints must be loopback addresses".into());
    }
    let clients: usize = num(&p, "clients", 64)?;
    let duration = Duration::from_secs_f64(num(&p, "duration", 10.0)?);
    let warmup = Duration::from_secs_f64(num(&p, "warmup", 2.0)?);
    let keys: usize = num(&p, "keys", 1000)?;
    if clients == 0 || keys == 0 {
        return Err("--clients and --keys must be at least 1".into());
    }
    let value_size: usize = num(&p, "value-size", 256)?;
    let start = Instant::now();
    let plan = std::sync::Arc::new(Plan {
        target,
        mode,
        value: Bytes::from(vec![b'v'; value_size]),
        keys,
        measure_from: start + warmup,
        until: start + warmup + duration,
    });
    let tasks: Vec<_> = (0..clients)
        .map(|n| tokio::spawn(client(n, endpoints[n % endpoints.len()], plan.clone())))
        .collect();
    let mut all = Vec::new();
    let (mut errors, mut first_error) = (0, None);
    for t in tasks {
        let tally = t.await.map_err(|e| e.to_string())?;
        all.extend(tally.latencies_us);
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
    }
    all.sort_unstable();
    let secs = duration.as_secs_f64();
    let out = json!({
        "target": p.get("target"),
        "mode": p.get("mode").unwrap_or("write"),
        "clients": clients,
        "value_size": value_size,
        "seconds": secs,
        "ops": all.len(),
        "ops_per_s": (all.len() as f64 / secs).round(),
        "p50_ms": percentile(&all, 0.50),
        "p99_ms": percentile(&all, 0.99),
        "max_ms": percentile(&all, 1.0),
        "errors": errors,
        "first_error": first_error,
    });
    println!("{out}");
    Ok(())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = rt.block_on(run()) {
        eprintln!("kvload: {e}");
        std::process::exit(2);
    }
}
