//! Test harness: real `murmur` agent processes on loopback addresses, killed when dropped.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_murmur");

/// Polls `cond` every 50 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a process that was expected to exit left behind.
pub struct Exit {
    /// Exit code; `None` when it had to be killed (it did not exit within the limit).
    pub code: Option<i32>,
    /// Standard output and error, concatenated.
    pub output: String,
}

/// Runs `murmur ARGS` that is expected to exit by itself (a refused start, a failed join). Unlike
/// `Command::output()`, an agent that starts by mistake cannot hang the test: it is killed after
/// `limit` and reported with no exit code.
pub fn run_to_exit(args: &[String], limit: Duration) -> Exit {
    let dir = std::env::temp_dir().join(format!(
        "murmur-exit-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let out_path = dir.join("out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn murmur");
    let end = Instant::now() + limit;
    let code = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st.code();
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    Exit { code, output }
}

/// A fresh temporary directory for one test.
pub fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("murmur-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One agent process bound to `ip` with Consul's default ports.
pub struct Agent {
    pub name: String,
    pub ip: String,
    pub args: Vec<String>,
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Agent {
    /// Starts `murmur agent -node NAME -bind IP -client IP ARGS...`, logging to a file in `dir`.
    pub fn start(name: &str, ip: &str, dir: &std::path::Path, extra: &[&str]) -> Agent {
        let mut args: Vec<String> = vec![
            "agent".into(),
            format!("-node={name}"),
            format!("-bind={ip}"),
            format!("-client={ip}"),
            format!("-data-dir={}", dir.join(name).display()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut a = Agent {
            name: name.into(),
            ip: ip.into(),
            args,
            child: None,
            log: dir.join(format!("{name}.log")),
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BIN)
            .args(&self.args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn murmur agent");
        self.child = Some(child);
        assert!(
            wait_for(Duration::from_secs(10), || self
                .http("GET", "/v1/agent/self")
                .is_some()),
            "agent {} did not come up; log:\n{}",
            self.name,
            self.log_text()
        );
    }

    /// Starts the same agent again after it stopped.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }

    pub fn http_addr(&self) -> String {
        format!("{}:8500", self.ip)
    }

    /// Runs a CLI command against this agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("MURMUR_HTTP_ADDR", self.http_addr())
            .env_remove("CONSUL_HTTP_ADDR")
            .output()
            .unwrap()
    }

    /// The leader this agent reports (`IP:port`), if any.
    pub fn leader(&self) -> Option<String> {
        let (code, body) = self.http("GET", "/v1/status/leader")?;
        let l: String = serde_json::from_str(&body).ok()?;
        (code == 200 && !l.is_empty()).then_some(l)
    }

    /// Raw HTTP call: (status, body), or None if the agent is unreachable.
    pub fn http(&self, method: &str, path: &str) -> Option<(u16, String)> {
        let t = murmur::http::client::Target::parse(&self.http_addr()).unwrap();
        t.call(method, path).ok().map(|r| (r.status, r.text()))
    }

    /// Raw HTTP call with a body: (status, body), or None if the agent is unreachable.
    pub fn http_body(&self, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
        let t = murmur::http::client::Target::parse(&self.http_addr()).unwrap();
        t.call_with_body(method, path, body.as_bytes())
            .ok()
            .map(|r| (r.status, r.text()))
    }

    /// A GET that must answer 200 with JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (code, body) = self.http("GET", path).expect("agent answers");
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// `murmur members` parsed into (name -> (status, type)).
    pub fn members(&self) -> Vec<(String, String, String)> {
        let out = self.cli(&["members"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .map(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                (c[0].to_string(), c[2].to_string(), c[3].to_string())
            })
            .collect()
    }

    /// Status of `node` as this agent's `members` shows it.
    pub fn status_of(&self, node: &str) -> Option<String> {
        self.members()
            .into_iter()
            .find(|(n, _, _)| n == node)
            .map(|(_, s, _)| s)
    }

    /// A WAN member's status as `/v1/agent/members?wan=1` shows it (a server's view).
    pub fn status_of_wan(&self, member: &str) -> Option<String> {
        let list = self.get_json("/v1/agent/members?wan=1");
        list.as_array()?
            .iter()
            .find(|m| m["Name"] == member)
            .map(|m| match m["Status"].as_u64() {
                Some(1) => "alive".to_string(),
                Some(2) => "leaving".to_string(),
                Some(3) => "left".to_string(),
                Some(4) => "failed".to_string(),
                other => format!("{other:?}"),
            })
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(pid, sig) };
    }

    /// kill -9, reaped.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit by itself; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        let c = self.child.as_mut()?;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                return st.code();
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.crash();
    }
}

/// `dig @SERVER -p 8600 ARGS` (one try, 2 s), its standard output.
pub fn dig(server: &str, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{server}"))
        .args(["-p", "8600", "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig is installed (tools/test.sh installs bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The response code dig printed (`NOERROR`, `NXDOMAIN`, ...), or "".
pub fn dns_status(out: &str) -> &str {
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
}

/// A new gossip key from `murmur keygen`.
pub fn keygen() -> String {
    let out = Command::new(BIN).arg("keygen").output().unwrap();
    let k = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(k.len(), 44, "32 bytes in base64: {k}");
    k
}

/// The cluster CA and the given node certificates (`-server`, `-client`, ...) in `dir`.
pub fn tls_files(dir: &std::path::Path, certs: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["tls", "ca", "create"]);
    for role in certs {
        run(&["tls", "cert", "create", role]);
    }
}

impl Agent {
    /// A counter from `/v1/agent/self` `Stats.<section>.<key>`.
    pub fn stat(&self, section: &str, key: &str) -> u64 {
        let (_, body) = self.http("GET", "/v1/agent/self").expect("agent answers");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["Stats"][section][key]
            .as_str()
            .unwrap_or_else(|| panic!("no Stats.{section}.{key} in {body}"))
            .parse()
            .unwrap()
    }
}
