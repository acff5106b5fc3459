//! A joiner in a 200-node loopback cluster (one agent plus 199 loadgen nodes) learns every member
//! through one QUIC push/pull: its member list is complete the moment `join` returns.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn murmur_bin() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_loadgen"))
        .parent()
        .unwrap();
    let bin = dir.join("murmur");
    assert!(
        bin.exists(),
        "build the workspace first (cargo test --workspace builds {})",
        bin.display()
    );
    bin
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http(addr: &str, method: &str, path: &str) -> Option<(u16, String)> {
    let t = murmur::http::client::Target::parse(addr).ok()?;
    t.call(method, path).ok().map(|r| (r.status, r.text()))
}

fn alive_members(addr: &str) -> usize {
    let Some((200, body)) = http(addr, "GET", "/v1/agent/members") else {
        return 0;
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v.as_array()
        .map_or(0, |a| a.iter().filter(|m| m["Status"] == 1).count())
}

fn wait(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

fn agent(name: &str, ip: &str) -> Kill {
    let dir = std::env::temp_dir().join(format!("murmur-pp-{name}-{}", std::process::id()));
    Kill(
        Command::new(murmur_bin())
            .args([
                "agent",
                &format!("-node={name}"),
                &format!("-bind={ip}"),
                &format!("-client={ip}"),
            ])
            .arg(format!("-data-dir={}", dir.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn joiner_learns_200_members_in_one_push_pull() {
    let _seed = agent("pp-seed", "127.0.16.1");
    assert!(wait(Duration::from_secs(10), || alive_members(
        "127.0.16.1:8500"
    ) == 1));
    let _nodes = Kill(
        Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args([
                "--net",
                "udp",
                "--nodes",
                "199",
                "--scenario",
                "hold",
                "--join",
                "127.0.16.1:8301",
            ])
            .args(["--duration", "120", "--port", "17962", "--join-rate", "200"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait(Duration::from_secs(60), || alive_members("127.0.16.1:8500")
            == 200),
        "seed knows {}",
        alive_members("127.0.16.1:8500")
    );
    let _joiner = agent("pp-joiner", "127.0.16.2");
    assert!(wait(Duration::from_secs(10), || alive_members(
        "127.0.16.2:8500"
    ) == 1));
    let (status, body) = http("127.0.16.2:8500", "PUT", "/v1/agent/join/127.0.16.1").unwrap();
    assert_eq!(status, 200, "{body}");
    // Read once, right away: gossip alone needs several rounds of 200 ms to spread 200 members.
    let seen = alive_members("127.0.16.2:8500");
    assert!(
        seen >= 200,
        "joiner knew only {seen} members when join returned"
    );
}
