//! README claims that no other test exercises, checked against real agents on 127.0.40.x … 127.0.48.x
//! (one /24 per test): join retries and `-retry-max`, server vs client signals, the stored keyring
//! winning over `-encrypt`, `encrypt_verify_incoming` / `encrypt_verify_outgoing`, `dns_config` TTLs and
//! limits with a custom `-domain`, and `verify_server_hostname`.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{Agent, dig, dns_status, keygen, run_to_exit, tls_files, tmp, wait_for};

const CONVERGE: Duration = Duration::from_secs(20);
/// Bound on an agent that is expected to exit by itself: a refused join exits within a second, the
/// slowest case here (two attempts that each wait out the 10 s push/pull timeout) in about 21 s; a run
/// still going at 60 s has started by mistake.
const EXIT_LIMIT: Duration = Duration::from_secs(60);

/// `murmur agent` arguments as `Agent::start` builds them, for `run_to_exit`.
fn agent_args(name: &str, ip: &str, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        "agent".to_string(),
        format!("-node={name}"),
        format!("-bind={ip}"),
        format!("-client={ip}"),
        format!("-data-dir={}", dir.join(name).display()),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// Writes a config file into `dir`; returns its path as a string for `-config-file`.
fn config(dir: &Path, file: &str, body: &str) -> String {
    let p = dir.join(file);
    std::fs::write(&p, body).unwrap();
    p.to_string_lossy().into_owned()
}

/// Exactly `names` are members and all are alive, as `a` sees it.
fn all_alive(a: &Agent, names: &[&str]) -> bool {
    let m = a.members();
    m.len() == names.len()
        && names
            .iter()
            .all(|n| m.iter().any(|(name, st, _)| name == n && st == "alive"))
}

fn await_alive(agents: &[&Agent], names: &[&str]) {
    for a in agents {
        assert!(
            wait_for(CONVERGE, || all_alive(a, names)),
            "{} never saw {names:?} alive: {:?}\n{}",
            a.name,
            a.members(),
            a.log_text()
        );
    }
}

/// Waits until every agent has taken in `n` more gossip datagrams than now: a window of real traffic
/// to check drop counters over. With a probe per second and few members an agent takes in about two
/// datagrams a second, and probes go round-robin, so 10 cover every peer of a 2- or 3-node cluster
/// more than once.
fn await_gossip(agents: &[&Agent], n: u64) {
    let before: Vec<u64> = agents
        .iter()
        .map(|a| a.stat("serf_lan", "packets_in"))
        .collect();
    for (a, b) in agents.iter().zip(before) {
        assert!(
            wait_for(CONVERGE, || a.stat("serf_lan", "packets_in") >= b + n),
            "{}: gossip stopped",
            a.name
        );
    }
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

fn keyring_list(a: &Agent) -> String {
    let out = a.cli(&["keyring", "-list"]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------------
// 1. -retry-join, -retry-interval, -retry-max
// ---------------------------------------------------------------------------------------------------

/// Nothing listens on 127.0.40.9: each attempt ends with the 10 s push/pull timeout, and after
/// `-retry-max=2` attempts the agent exits 1 naming the address. Fails if -retry-max is ignored (the
/// agent keeps running and is killed: no exit code), off by one (1 or 3 attempts) or exits 0.
#[test]
fn retry_join_exhausts_retry_max_and_exits_with_an_error() {
    let dir = tmp("rc-retry-max");
    let out = run_to_exit(
        &agent_args(
            "rj-lonely",
            "127.0.40.1",
            &dir,
            &[
                "-retry-join=127.0.40.9",
                "-retry-max=2",
                "-retry-interval=1s",
            ],
        ),
        EXIT_LIMIT,
    );
    assert_eq!(out.code, Some(1), "{}", out.output);
    assert!(
        out.output.contains("==> max join retry exhausted, exiting"),
        "{}",
        out.output
    );
    assert_eq!(
        count(&out.output, "Error joining address '127.0.40.9'"),
        2,
        "two attempts: {}",
        out.output
    );
    assert_eq!(
        count(&out.output, "Join failed, retrying in"),
        1,
        "one retry between the two attempts: {}",
        out.output
    );
    assert!(
        out.output
            .contains("Join failed, retrying in 1s (attempt 1)"),
        "{}",
        out.output
    );
}

/// The backoff doubles from 1 s up to `-retry-interval`. The target is an agent with another gossip
/// key, which refuses each push/pull at once, so the time between attempts is the backoff alone
/// (against a silent address every attempt would also wait out the 10 s push/pull timeout). Fails
/// with a fixed interval (1s 1s 1s, or 2s 2s 2s), with no cap (1s 2s 4s), or without any wait.
#[test]
fn retry_join_backs_off_doubling_up_to_retry_interval() {
    let dir = tmp("rc-backoff");
    let refuser = Agent::start(
        "rj-refuser",
        "127.0.41.9",
        &dir,
        &[&format!("-encrypt={}", keygen())],
    );
    let started = Instant::now();
    let out = run_to_exit(
        &agent_args(
            "rj-backoff",
            "127.0.41.1",
            &dir,
            &[
                &format!("-encrypt={}", keygen()),
                "-retry-join=127.0.41.9",
                "-retry-max=4",
                "-retry-interval=2s",
            ],
        ),
        EXIT_LIMIT,
    );
    let took = started.elapsed();
    assert_eq!(out.code, Some(1), "{}", out.output);
    assert!(out.output.contains("max join retry exhausted"));
    assert_eq!(
        count(&out.output, "Error joining address '127.0.41.9'"),
        4,
        "{}",
        out.output
    );
    let retries: Vec<&str> = out
        .output
        .lines()
        .filter_map(|l| l.split("Join failed, ").nth(1))
        .collect();
    assert_eq!(
        retries,
        [
            "retrying in 1s (attempt 1)",
            "retrying in 2s (attempt 2)",
            "retrying in 2s (attempt 3)",
        ],
        "{}",
        out.output
    );
    assert!(
        took >= Duration::from_secs(5),
        "1+2+2 s of backoff, took {took:?}"
    );
    // Each attempt really reached the target (and was refused there for the key).
    assert!(
        wait_for(Duration::from_secs(5), || count(
            &refuser.log_text(),
            "push/pull from 127.0.41.1:8301 rejected"
        ) == 4),
        "{}",
        refuser.log_text()
    );
}

/// The retry target comes up after the first attempt failed: the agent keeps running and joins it.
/// Fails if a failed first attempt is fatal or never retried.
#[test]
fn retry_join_succeeds_once_the_target_comes_up() {
    let dir = tmp("rc-retry-late");
    let early = Agent::start(
        "rj-early",
        "127.0.42.1",
        &dir,
        &["-retry-join=127.0.42.2", "-retry-interval=2s"],
    );
    // The first attempt waits out the 10 s push/pull timeout.
    assert!(
        wait_for(Duration::from_secs(20), || early
            .log_text()
            .contains("Join failed, retrying in 1s (attempt 1)")),
        "{}",
        early.log_text()
    );
    assert_eq!(early.members().len(), 1);
    let late = Agent::start("rj-late", "127.0.42.2", &dir, &["-server"]);
    // Backoff 1 s, then 2 s; an attempt that starts before the target's socket is up still completes
    // (QUIC retransmits its Initial) or times out after 10 s: 30 s covers both.
    for a in [&early, &late] {
        assert!(
            wait_for(Duration::from_secs(30), || all_alive(
                a,
                &["rj-early", "rj-late"]
            )),
            "{}: {:?}\n{}",
            a.name,
            a.members(),
            early.log_text()
        );
    }
    assert!(
        early
            .log_text()
            .contains("Join completed. Synced with 1 initial agents"),
        "{}",
        early.log_text()
    );
}

// ---------------------------------------------------------------------------------------------------
// 2. Signals: clients leave on SIGINT and SIGTERM; servers leave on neither
// ---------------------------------------------------------------------------------------------------

/// README "Leaving": Ctrl-C (SIGINT) on a client leaves (others show `left`); a server exits on SIGINT
/// without leaving (`skip_leave_on_interrupt`), so others show it `failed`; SIGTERM leaves only clients
/// (`leave_on_terminate`). Both keys are also set against the role's default to show they are read.
/// Fails if either signal's behaviour is the same for both roles or the config keys are ignored.
#[test]
fn signals_leave_clients_but_not_servers() {
    let dir = tmp("rc-signals");
    // Faster failure detection than the LAN profile (suspicion 2-12 s instead of 4-24 s) so the
    // failed-node half of the test stays short; still well above loopback round trips.
    let fast = config(
        &dir,
        "fast.json",
        r#"{"gossip_lan": {"probe_interval": "500ms", "probe_timeout": "250ms"}}"#,
    );
    let leave_on_term = config(&dir, "lot.json", r#"{"leave_on_terminate": true}"#);
    let skip_on_int = config(&dir, "skip.json", r#"{"skip_leave_on_interrupt": true}"#);
    let obs = Agent::start(
        "sig-obs",
        "127.0.43.1",
        &dir,
        &["-server", "-config-file", &fast],
    );
    let join = "-join=127.0.43.1";
    let start = |name: &str, ip: &str, extra: &[&str]| {
        let mut args = vec![join, "-config-file", fast.as_str()];
        args.extend_from_slice(extra);
        Agent::start(name, ip, &dir, &args)
    };
    // (agent, signal): these three leave, the next three do not.
    let mut leavers = [
        (start("sig-cli-int", "127.0.43.2", &[]), libc::SIGINT),
        (start("sig-cli-term", "127.0.43.3", &[]), libc::SIGTERM),
        (
            start(
                "sig-srv-term-lot",
                "127.0.43.4",
                &["-server", "-config-file", &leave_on_term],
            ),
            libc::SIGTERM,
        ),
    ];
    let mut stayers = [
        (
            start("sig-srv-int", "127.0.43.5", &["-server"]),
            libc::SIGINT,
        ),
        (
            start("sig-srv-term", "127.0.43.6", &["-server"]),
            libc::SIGTERM,
        ),
        (
            start(
                "sig-cli-int-skip",
                "127.0.43.7",
                &["-config-file", &skip_on_int],
            ),
            libc::SIGINT,
        ),
    ];
    let names: Vec<&str> = std::iter::once("sig-obs")
        .chain(leavers.iter().map(|(a, _)| a.name.as_str()))
        .chain(stayers.iter().map(|(a, _)| a.name.as_str()))
        .collect();
    await_alive(&[&obs], &names);

    // Leavers first, while every other member is alive to hear the leave.
    for (a, sig) in &leavers {
        a.signal(*sig);
    }
    for (a, _) in &mut leavers {
        assert_eq!(
            a.wait_exit(Duration::from_secs(15)),
            Some(0),
            "{}:\n{}",
            a.name,
            a.log_text()
        );
        assert!(
            a.log_text().contains("Graceful leave complete"),
            "{}:\n{}",
            a.name,
            a.log_text()
        );
        assert!(
            wait_for(CONVERGE, || obs.status_of(&a.name).as_deref()
                == Some("left")),
            "{} not left: {:?}",
            a.name,
            obs.members()
        );
    }
    for (a, _) in &stayers {
        assert_eq!(obs.status_of(&a.name).as_deref(), Some("alive"));
    }

    for (a, sig) in &stayers {
        a.signal(*sig);
    }
    for (a, _) in &mut stayers {
        assert_eq!(
            a.wait_exit(Duration::from_secs(15)),
            Some(0),
            "{}:\n{}",
            a.name,
            a.log_text()
        );
        let log = a.log_text();
        assert!(
            log.contains("Shutting down without leaving") && !log.contains("Graceful leave"),
            "{}:\n{log}",
            a.name
        );
    }
    // `left` is final, so reaching `failed` also shows no leave was announced. Suspicion lasts at most
    // 12 s here (6 x 2 s without confirmations), plus a probe round.
    for (a, _) in &stayers {
        assert!(
            wait_for(Duration::from_secs(30), || obs
                .status_of(&a.name)
                .as_deref()
                == Some("failed")),
            "{} not failed: {:?}",
            a.name,
            obs.members()
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// 3. The stored keyring wins over -encrypt
// ---------------------------------------------------------------------------------------------------

/// Stops `a` with SIGTERM (a client: it leaves and exits 0), gives it `-encrypt=KEY`, runs `between`
/// and starts it again; returns what the new run logged up to answering HTTP (the keyring is loaded
/// before that).
fn restart_with_key(a: &mut Agent, key: &str, between: impl FnOnce()) -> String {
    a.signal(libc::SIGTERM);
    assert_eq!(a.wait_exit(Duration::from_secs(15)), Some(0));
    for arg in a.args.iter_mut() {
        if arg.starts_with("-encrypt=") {
            *arg = format!("-encrypt={key}");
        }
    }
    between();
    // The log file is appended to: keep only this run's part.
    let from = a.log_text().len();
    a.restart();
    a.log_text()[from..].to_string()
}

/// Restarted with another `-encrypt`, an agent keeps the keyring in `<data-dir>/serf/local.keyring`
/// and says so; only removing that file lets `-encrypt` in. Fails if `-encrypt` replaces or joins the
/// stored ring, if the ring is only listed but not used, or if the file lives elsewhere.
#[test]
fn stored_keyring_wins_over_encrypt_on_restart() {
    let dir = tmp("rc-keyring");
    let (k1, k2) = (keygen(), keygen());
    let ring_file = dir.join("kr-a/serf/local.keyring");
    let stored = |p: &PathBuf| -> Vec<String> {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let mut a = Agent::start("kr-a", "127.0.44.1", &dir, &[&format!("-encrypt={k1}")]);
    assert!(
        keyring_list(&a).contains(&format!("{k1} [1/1]")),
        "{}",
        keyring_list(&a)
    );
    assert_eq!(stored(&ring_file), std::slice::from_ref(&k1));

    let log = restart_with_key(&mut a, &k2, || {});
    assert!(
        log.contains(
            "a keyring exists in the data dir; -encrypt is ignored (change keys with murmur keyring)"
        ),
        "{log}"
    );
    let list = keyring_list(&a);
    assert!(
        list.contains(&format!("{k1} [1/1]")) && !list.contains(&k2),
        "{list}"
    );
    assert_eq!(
        stored(&ring_file),
        std::slice::from_ref(&k1),
        "the file is unchanged"
    );

    // The ring is in use, not only listed: a K1 node joins, a K2 node is refused.
    let b = Agent::start(
        "kr-b",
        "127.0.44.2",
        &dir,
        &[&format!("-encrypt={k1}"), "-join=127.0.44.1"],
    );
    await_alive(&[&a, &b], &["kr-a", "kr-b"]);
    let out = run_to_exit(
        &agent_args(
            "kr-c",
            "127.0.44.3",
            &dir,
            &[&format!("-encrypt={k2}"), "-join=127.0.44.1"],
        ),
        EXIT_LIMIT,
    );
    assert_eq!(out.code, Some(1), "{}", out.output);
    let refused = "push/pull from 127.0.44.3:8301 rejected: state from 127.0.44.3:8301: \
                   no installed key opens it";
    assert!(
        wait_for(Duration::from_secs(5), || a.log_text().contains(refused)),
        "{}",
        a.log_text()
    );
    assert!(!a.members().iter().any(|(n, _, _)| n == "kr-c"));
    drop(b);

    // That file is the stored keyring: without it, -encrypt is taken (and persisted) again.
    let log = restart_with_key(&mut a, &k2, || std::fs::remove_file(&ring_file).unwrap());
    assert!(!log.contains("-encrypt is ignored"), "{log}");
    let list = keyring_list(&a);
    assert!(
        list.contains(&format!("{k2} [1/1]")) && !list.contains(&k1),
        "{list}"
    );
    assert_eq!(stored(&ring_file), [k2]);
}

// ---------------------------------------------------------------------------------------------------
// 4. encrypt_verify_incoming / encrypt_verify_outgoing
// ---------------------------------------------------------------------------------------------------

/// Moving a plaintext cluster to encryption by rolling restarts, in Consul's documented order: every
/// agent gets the key with both checks off (sends plaintext, accepts both), then
/// `encrypt_verify_outgoing` (seals, still accepts plaintext), then `encrypt_verify_incoming`. This
/// covers the first two stages, and that the defaults (both on) refuse plaintext. Fails if either key
/// is ignored: B could not join the plaintext A (sealed state), C could not join B (plaintext reply
/// refused), a drop counter moves, or a strict agent gets in.
#[test]
fn encrypt_verify_keys_allow_a_rolling_move_to_encryption() {
    let dir = tmp("rc-verify");
    let key = format!("-encrypt={}", keygen());
    let off = config(
        &dir,
        "off.json",
        r#"{"encrypt_verify_incoming": false, "encrypt_verify_outgoing": false}"#,
    );
    let out_only = config(&dir, "out.json", r#"{"encrypt_verify_incoming": false}"#);

    // Restart 1 in progress: A still plaintext, B has the key with both checks off.
    let mut a = Agent::start("ev-a", "127.0.45.1", &dir, &["-server"]);
    let b = Agent::start(
        "ev-b",
        "127.0.45.2",
        &dir,
        &[&key, "-config-file", &off, "-join=127.0.45.1"],
    );
    await_alive(&[&a, &b], &["ev-a", "ev-b"]);
    assert!(
        b.log_text()
            .contains("gossip encryption on (verify incoming: false, outgoing: false)"),
        "{}",
        b.log_text()
    );
    // A reads every datagram of B's (its only peer), so B sends plaintext, and B takes A's plaintext.
    await_gossip(&[&a, &b], 10);
    assert_eq!(a.stat("serf_lan", "dropped_decrypt"), 0);
    assert_eq!(b.stat("serf_lan", "dropped_plaintext"), 0);

    // An agent with the key and the defaults seals its state: the plaintext A cannot read it.
    let out = run_to_exit(
        &agent_args(
            "ev-strict-a",
            "127.0.45.4",
            &dir,
            &[&key, "-join=127.0.45.1"],
        ),
        EXIT_LIMIT,
    );
    assert_eq!(out.code, Some(1), "{}", out.output);
    assert!(
        out.output.contains("Error joining the cluster"),
        "{}",
        out.output
    );
    let refused = "push/pull from 127.0.45.4:8301 rejected: state from 127.0.45.4:8301 is \
                   encrypted but this agent has no key";
    assert!(
        wait_for(Duration::from_secs(5), || a.log_text().contains(refused)),
        "{}",
        a.log_text()
    );
    assert!(!a.members().iter().any(|(n, _, _)| n == "ev-strict-a"));

    // Restart 1 completes: A gets the key with both checks off.
    let out = a.cli(&["leave"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(a.wait_exit(Duration::from_secs(15)), Some(0));
    assert!(wait_for(CONVERGE, || b.status_of("ev-a").as_deref() == Some("left")));
    a.args.extend(
        [key.as_str(), "-config-file", &off, "-join=127.0.45.2"]
            .iter()
            .map(|s| s.to_string()),
    );
    a.restart();
    await_alive(&[&a, &b], &["ev-a", "ev-b"]);

    // Restart 2 begins: C seals (outgoing on) and still accepts the others' plaintext.
    let c = Agent::start(
        "ev-c",
        "127.0.45.3",
        &dir,
        &[&key, "-config-file", &out_only, "-join=127.0.45.2"],
    );
    let names = ["ev-a", "ev-b", "ev-c"];
    await_alive(&[&a, &b, &c], &names);
    assert!(
        c.log_text()
            .contains("gossip encryption on (verify incoming: false, outgoing: true)"),
        "{}",
        c.log_text()
    );
    await_gossip(&[&a, &b, &c], 12);
    for x in [&a, &b, &c] {
        assert_eq!(x.stat("serf_lan", "dropped_decrypt"), 0, "{}", x.name);
        assert_eq!(x.stat("serf_lan", "dropped_plaintext"), 0, "{}", x.name);
        assert!(all_alive(x, &names), "{}: {:?}", x.name, x.members());
    }
    assert_eq!(c.stat("serf_lan", "declared_failed"), 0);

    // The defaults refuse plaintext: a strict agent cannot join through B, whose reply is plaintext.
    // (Last, because B merges the joiner's sealed state before the joiner refuses B's reply.)
    let out = run_to_exit(
        &agent_args(
            "ev-strict-b",
            "127.0.45.5",
            &dir,
            &[&key, "-join=127.0.45.2"],
        ),
        EXIT_LIMIT,
    );
    assert_eq!(out.code, Some(1), "{}", out.output);
    assert!(
        out.output
            .contains("state from 127.0.45.2:8301 is not encrypted (encrypt_verify_incoming)"),
        "{}",
        out.output
    );
}

// ---------------------------------------------------------------------------------------------------
// 5. dns_config TTLs and a_record_limit, custom domain
// ---------------------------------------------------------------------------------------------------

/// Records of a `+noall +answer` (or `+additional`) dig as whitespace-separated fields.
fn records(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// `node_ttl`, `service_ttl` and `a_record_limit` from an HCL `dns_config` block, with `-domain=example`.
/// Fails if a TTL stays 0, the limit is ignored (3 A records) or applied to SRV, or if `consul.` is still
/// answered.
#[test]
fn dns_config_ttls_limits_and_custom_domain() {
    let dir = tmp("rc-dns");
    let cfg = config(
        &dir,
        "dns.hcl",
        "dns_config {\n  node_ttl = \"10s\"\n  service_ttl = \"5s\"\n  a_record_limit = 2\n}\n",
    );
    let servers: Vec<Agent> = [
        ("dns-a", "127.0.46.1"),
        ("dns-b", "127.0.46.2"),
        ("dns-c", "127.0.46.3"),
    ]
    .iter()
    .map(|(name, ip)| {
        Agent::start(
            name,
            ip,
            &dir,
            &[
                "-server",
                "-domain=example",
                "-config-file",
                &cfg,
                "-join=127.0.46.1",
            ],
        )
    })
    .collect();
    let names = ["dns-a", "dns-b", "dns-c"];
    await_alive(&[&servers[0]], &names);
    let ns = "127.0.46.1";

    let out = dig(ns, &["+noall", "+answer", "dns-b.node.example"]);
    assert_eq!(
        records(&out),
        [["dns-b.node.example.", "10", "IN", "A", "127.0.46.2"]],
        "{out}"
    );

    // SRV: every server, each with the service TTL; a_record_limit does not apply to SRV.
    let out = dig(ns, &["+noall", "+answer", "SRV", "consul.service.example"]);
    let srv = records(&out);
    let mut targets: Vec<&str> = srv.iter().map(|r| r[7].as_str()).collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            "dns-a.node.dc1.example.",
            "dns-b.node.dc1.example.",
            "dns-c.node.dc1.example."
        ],
        "{out}"
    );
    for r in &srv {
        assert_eq!(
            r[..7],
            [
                "consul.service.example.",
                "5",
                "IN",
                "SRV",
                "1",
                "1",
                "8300"
            ],
            "{out}"
        );
    }
    let out = dig(
        ns,
        &["+noall", "+additional", "SRV", "consul.service.example"],
    );
    let extra = records(&out);
    assert!(extra.iter().all(|r| r[1] == "5"), "{out}");
    let of_type = |t: &str| {
        let mut owners: Vec<&str> = extra
            .iter()
            .filter(|r| r[3] == t)
            .map(|r| r[0].as_str())
            .collect();
        owners.sort();
        owners
    };
    // Each target's address, and its node's meta as TXT (enable_additional_node_meta_txt).
    assert_eq!(of_type("A"), targets, "{out}");
    assert_eq!(of_type("TXT"), targets, "{out}");
    assert_eq!(extra.len(), 6, "{out}");

    // A: three servers, but at most a_record_limit answers, over UDP and TCP alike.
    let all_ips = ["127.0.46.1", "127.0.46.2", "127.0.46.3"];
    for transport in ["+notcp", "+tcp"] {
        let out = dig(
            ns,
            &[transport, "+noall", "+answer", "consul.service.example"],
        );
        let a = records(&out);
        assert_eq!(a.len(), 2, "{transport}: {out}");
        assert!(
            a.iter()
                .all(|r| r[..4] == ["consul.service.example.", "5", "IN", "A"]
                    && all_ips.contains(&r[4].as_str())),
            "{out}"
        );
        assert_ne!(a[0][4], a[1][4], "{out}");
    }

    // The default domain is not ours any more: refused (no recursors), not answered.
    let out = dig(ns, &["dns-b.node.consul"]);
    assert_eq!(dns_status(&out), "REFUSED", "{out}");
    assert!(out.contains("ANSWER: 0,"), "{out}");
    assert!(!out.contains("flags: qr aa"), "not authoritative: {out}");
    let out = dig(ns, &["nobody.node.example"]);
    assert_eq!(dns_status(&out), "NXDOMAIN", "{out}");
    assert!(
        out.contains("SOA\tns.example. hostmaster.example."),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------------
// 6. verify_server_hostname
// ---------------------------------------------------------------------------------------------------

fn tls_config(pki: &Path, cert: &str, name: &str, verify_server_hostname: bool) -> String {
    let body = serde_json::json!({
        "ca_file": pki.join("murmur-agent-ca.pem"),
        "cert_file": pki.join(format!("{cert}.pem")),
        "key_file": pki.join(format!("{cert}-key.pem")),
        "verify_incoming": true,
        "verify_outgoing": true,
        "verify_server_hostname": verify_server_hostname,
    });
    config(pki, &format!("{name}.json"), &body.to_string())
}

/// The name check is made by the side that opens the push/pull (the QUIC client), on the certificate
/// of whichever member answers, server or client: with `verify_server_hostname` a join succeeds only
/// through a member whose certificate names `server.dc1.murmur`. Fails if the setting is ignored (the
/// join through a client succeeds) or misapplied (the join through the server fails, or the same
/// node without the setting cannot join through the client).
#[test]
fn verify_server_hostname_joins_only_through_a_server_certificate() {
    let dir = tmp("rc-vsh");
    let pki = dir.join("pki");
    tls_files(&pki, &["-server", "-client", "-client", "-client"]);
    let server = Agent::start(
        "vsh-server",
        "127.0.47.1",
        &dir,
        &[
            "-server",
            "-config-file",
            &tls_config(&pki, "dc1-server-murmur-0", "s", false),
        ],
    );
    let client = Agent::start(
        "vsh-client",
        "127.0.47.2",
        &dir,
        &[
            "-config-file",
            &tls_config(&pki, "dc1-client-murmur-0", "c", false),
            "-join=127.0.47.1",
        ],
    );
    // verify_server_hostname through the server: its certificate names server.dc1.murmur.
    let checked = Agent::start(
        "vsh-checked",
        "127.0.47.3",
        &dir,
        &[
            "-config-file",
            &tls_config(&pki, "dc1-client-murmur-1", "v1", true),
            "-join=127.0.47.1",
        ],
    );
    await_alive(
        &[&server, &client, &checked],
        &["vsh-server", "vsh-client", "vsh-checked"],
    );

    // Through the client: a valid certificate from the same CA, but for client.dc1.murmur.
    let strict = tls_config(&pki, "dc1-client-murmur-2", "v2", true);
    let out = run_to_exit(
        &agent_args(
            "vsh-through-client",
            "127.0.47.4",
            &dir,
            &["-config-file", &strict, "-join=127.0.47.2"],
        ),
        EXIT_LIMIT,
    );
    assert_eq!(out.code, Some(1), "{}", out.output);
    assert!(
        out.output
            .contains("certificate not valid for name \"server.dc1.murmur\""),
        "{}",
        out.output
    );
    assert!(
        wait_for(Duration::from_secs(5), || client
            .log_text()
            .contains("push/pull from 127.0.47.4:8301 rejected")),
        "{}",
        client.log_text()
    );
    assert!(
        !client
            .members()
            .iter()
            .any(|(n, _, _)| n == "vsh-through-client")
    );

    // Control: the same node, certificate and seed without verify_server_hostname joins.
    let relaxed = tls_config(&pki, "dc1-client-murmur-2", "v2-off", false);
    let joined = Agent::start(
        "vsh-through-client",
        "127.0.47.4",
        &dir,
        &["-config-file", &relaxed, "-join=127.0.47.2"],
    );
    await_alive(
        &[&server, &joined],
        &[
            "vsh-server",
            "vsh-client",
            "vsh-checked",
            "vsh-through-client",
        ],
    );
}

// ---------------------------------------------------------------------------------------------------
// 7. Periodic anti-entropy over QUIC
// ---------------------------------------------------------------------------------------------------

/// README: "Joins and the periodic anti-entropy exchange send the full member state over a QUIC
/// stream". With `push_pull_interval = "1s"` two agents answer about one QUIC push/pull per second
/// between them (`Stats.push_pull.served`). Fails if the periodic exchange goes over datagrams (only
/// the join's exchange would be served), as it did before the agent set `external_push_pull`.
#[test]
fn periodic_push_pull_goes_over_quic() {
    let dir = tmp("rc-pushpull");
    let pp = config(
        &dir,
        "pp.json",
        r#"{"gossip_lan": {"push_pull_interval": "1s"}}"#,
    );
    let a = Agent::start("pp-a", "127.0.48.1", &dir, &["-config-file", &pp]);
    let b = Agent::start(
        "pp-b",
        "127.0.48.2",
        &dir,
        &["-config-file", &pp, "-join=127.0.48.1"],
    );
    await_alive(&[&a, &b], &["pp-a", "pp-b"]);
    let served = |x: &Agent| -> u64 {
        let (_, body) = x.http("GET", "/v1/agent/self").unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["Stats"]["push_pull"]["served"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    // 15 s of 1 s periods (with jitter) from both sides: far more than the join's single exchange.
    assert!(
        wait_for(Duration::from_secs(15), || served(&a) + served(&b) >= 6),
        "QUIC push/pulls served: {} + {}",
        served(&a),
        served(&b)
    );
}
