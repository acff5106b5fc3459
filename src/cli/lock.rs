//! `murmur lock PREFIX COMMAND`: runs a command while holding a lock in the KV store, as `consul lock`
//! does: a session with a TTL (renewed while it waits and while the command runs), the key
//! `PREFIX/.lock` acquired with it, the command run through the shell, and the lock released and the
//! session destroyed when the command ends. If the lock is lost (the session ended), the command is
//! stopped.

use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::kv::key_path;
use super::ops::parse;
use super::{HTTP_ADDR, boolean, one, target};
use crate::http::client::Target;

/// TTL of the lock's session (Consul's `DefaultLockSessionTTL`).
const SESSION_TTL: &str = "15s";
/// How often the session is renewed and the lock checked: well inside the TTL.
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How often the command is looked at while it runs.
const POLL: Duration = Duration::from_millis(100);

struct Lock<'a> {
    t: &'a Target,
    key: String,
    session: String,
}

/// What a look at the lock found.
#[derive(PartialEq)]
enum Held {
    /// Still ours.
    Yes,
    /// The session or the lock is gone.
    Lost,
    /// No answer (the agent or the servers are busy, or a leader is being elected): the session's
    /// TTL decides, so the command keeps running, as `consul lock` retries.
    Unknown,
}

impl Lock<'_> {
    fn renew(&self) -> Held {
        match self
            .t
            .call("PUT", &format!("/v1/session/renew/{}", self.session))
        {
            Ok(r) if r.status == 200 => Held::Yes,
            Ok(r) if r.status == 404 => Held::Lost,
            _ => Held::Unknown,
        }
    }

    fn try_acquire(&self) -> Result<bool, String> {
        let r = self
            .t
            .call(
                "PUT",
                &format!("{}?acquire={}", key_path(&self.key), self.session),
            )
            .map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!("{} ({})", r.status, r.text()));
        }
        Ok(r.text().trim() == "true")
    }

    /// Blocks (up to a few seconds) until the lock key changes past `index`; returns the new index.
    fn wait_change(&self, index: u64) -> u64 {
        let path = format!("{}?index={index}&wait=5s", key_path(&self.key));
        match self.t.call("GET", &path) {
            Ok(r) => r
                .header("x-consul-index")
                .and_then(|v| v.parse().ok())
                .unwrap_or(index),
            Err(_) => {
                std::thread::sleep(Duration::from_secs(1));
                index
            }
        }
    }

    fn still_held(&self) -> Held {
        match self.t.call("GET", &key_path(&self.key)) {
            Ok(r) if r.status == 404 => Held::Lost,
            Ok(r) if r.status == 200 => {
                let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                if v[0]["Session"].as_str() == Some(self.session.as_str()) {
                    Held::Yes
                } else {
                    Held::Lost
                }
            }
            _ => Held::Unknown,
        }
    }

    fn release(&self) {
        let _ = self.t.call(
            "PUT",
            &format!("{}?release={}", key_path(&self.key), self.session),
        );
        let _ = self
            .t
            .call("PUT", &format!("/v1/session/destroy/{}", self.session));
    }
}

/// Runs `murmur lock`; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let Some(p) = parse(
        args,
        &[
            HTTP_ADDR,
            one("n", "Holders allowed at once (only 1 is supported)."),
            one("name", "Name of the lock's session."),
            one(
                "timeout",
                "Give up waiting for the lock after this long (default: wait forever).",
            ),
            boolean("child-exit-code", "Exit 2 when the command fails."),
            boolean("verbose", "Say what the lock does."),
        ],
    ) else {
        return 1;
    };
    if p.get("n").is_some_and(|n| n != "1") {
        eprintln!("-n above 1 (a semaphore) is a Consul option that murmur does not support yet");
        return 1;
    }
    if p.args.len() < 2 {
        eprintln!("Usage: murmur lock [options] PREFIX COMMAND");
        return 1;
    }
    let timeout = match p.get("timeout").map(crate::util::duration::parse) {
        None => None,
        Some(Ok(d)) if d.is_zero() => None,
        Some(Ok(d)) => Some(Instant::now() + d),
        Some(Err(e)) => {
            eprintln!("Error parsing -timeout: {e}");
            return 1;
        }
    };
    let verbose = p.is_set("verbose");
    let Some(t) = target(p.get("http-addr")) else {
        return 1;
    };
    let name = p.get("name").unwrap_or("Consul lock");
    let body = serde_json::json!({"Name": name, "TTL": SESSION_TTL, "LockDelay": "0s"});
    let session = match t.call_with_body("PUT", "/v1/session/create", body.to_string().as_bytes()) {
        Ok(r) if r.status == 200 => serde_json::from_slice::<Value>(&r.body)
            .ok()
            .and_then(|v| v["ID"].as_str().map(str::to_owned)),
        Ok(r) => {
            eprintln!("Lock acquisition failed: {} ({})", r.status, r.text());
            return 1;
        }
        Err(e) => {
            eprintln!("Lock acquisition failed: {e}");
            return 1;
        }
    };
    let Some(session) = session else {
        eprintln!("Lock acquisition failed: no session ID in the answer");
        return 1;
    };
    let lock = Lock {
        t: &t,
        key: format!("{}/.lock", p.args[0].trim_end_matches('/')),
        session,
    };
    let mut index = 0;
    loop {
        let _ = lock.renew();
        match lock.try_acquire() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                eprintln!("Lock acquisition failed: {e}");
                lock.release();
                return 1;
            }
        }
        if timeout.is_some_and(|d| Instant::now() >= d) {
            eprintln!("Lock acquisition failed: timeout");
            lock.release();
            return 1;
        }
        index = lock.wait_change(index);
    }
    if verbose {
        eprintln!("Lock acquired on {}", lock.key);
    }
    let code = run_holding(&lock, &p.args[1..].join(" "));
    lock.release();
    if verbose {
        eprintln!("Lock released on {}", lock.key);
    }
    match code {
        Ok(st) if !st.success() && p.is_set("child-exit-code") => 2,
        Ok(_) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// Runs `cmd` through the shell, renewing the session and checking the lock while it runs; stops it
/// (SIGTERM) if the lock is lost.
fn run_holding(lock: &Lock, cmd: &str) -> Result<ExitStatus, String> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .spawn()
        .map_err(|e| format!("Error running the command: {e}"))?;
    let mut checked = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status);
        }
        if checked.elapsed() >= RENEW_EVERY {
            checked = Instant::now();
            if lock.renew() == Held::Lost || lock.still_held() == Held::Lost {
                eprintln!("Lock lost, stopping the command");
                // SAFETY: kill(2) on our own child. Only this function reaps it, and it has not
                // (try_wait just returned None), so the pid still names it.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                return child.wait().map_err(|e| e.to_string());
            }
        }
        std::thread::sleep(POLL);
    }
}
