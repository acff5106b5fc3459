//! The `murmur` command line: `agent`, `members`, `join`, `leave`, `force-leave`, `services`, `catalog`,
//! `maint`, `kv`, `lock`, `keyring`, `tls`, `version`.

pub mod catalog;
pub mod event;
pub mod keys;
pub mod kv;
pub mod lock;
pub mod members;
pub mod monitor;
pub mod operator;
pub mod ops;
pub mod rtt;
pub mod snapshot;
pub mod tls;
pub mod watch;

use crate::http::client::{Reply, Target};
use crate::util::flags::{Arity, Flag};

/// A flag that takes a value.
pub(crate) const fn one(name: &'static str, help: &'static str) -> Flag {
    Flag {
        name,
        arity: Arity::One,
        help,
    }
}

/// A repeatable flag.
pub(crate) const fn many(name: &'static str, help: &'static str) -> Flag {
    Flag {
        name,
        arity: Arity::Many,
        help,
    }
}

/// A boolean flag.
pub(crate) const fn boolean(name: &'static str, help: &'static str) -> Flag {
    Flag {
        name,
        arity: Arity::Bool,
        help,
    }
}

/// `-http-addr`, accepted by every command that talks to an agent.
pub const HTTP_ADDR: Flag = Flag {
    name: "http-addr",
    arity: Arity::One,
    help: "Agent HTTP address (default: $MURMUR_HTTP_ADDR, $CONSUL_HTTP_ADDR or 127.0.0.1:8500).",
};

const USAGE: &str = "Usage: murmur <command> [args]

Commands:
    agent          Runs a murmur agent
    members        Lists the members of the cluster
    join           Tells a running agent to join the cluster
    leave          Gracefully leaves the cluster and shuts the agent down
    reload         Re-reads the agent's service and check definitions
    force-leave    Forces a failed member into the left state
    services       Registers or deregisters services on the agent
    catalog        Lists the services and nodes of the catalog
    kv             Reads and writes the servers' key/value store
    lock           Runs a command while holding a lock in the key/value store
    operator       Shows the servers of the replicated log (operator raft list-peers)
    snapshot       Saves, restores and inspects snapshots of the servers' state
    maint          Puts the node or a service in (or out of) maintenance mode
    event          Fires a user event to the agents of the datacenter
    watch          Runs a handler whenever a key, service, node list, checks or events change
    monitor        Streams the agent's log
    rtt            Estimates the round trip between two nodes from their network coordinates
    keygen         Generates a new gossip encryption key
    keyring        Lists, installs, uses or removes gossip encryption keys cluster-wide
    tls            Creates the cluster CA and node certificates
    version        Prints the murmur version
";

/// Runs the CLI; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let Some(cmd) = args.first() else {
        eprint!("{USAGE}");
        return 1;
    };
    let rest = &args[1..];
    if cmd != "agent" {
        // A command piped into `head` should end quietly when the pipe closes, as Unix tools do, not
        // panic on the failed print (Rust ignores SIGPIPE by default). The agent keeps ignoring it:
        // a client closing its socket must never kill it.
        // SAFETY: restores the default disposition of one signal before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match cmd.as_str() {
        "agent" => crate::agent::run::main(rest),
        "members" => members::main(rest),
        "join" => ops::join(rest),
        "leave" => ops::leave(rest),
        "reload" => ops::reload(rest),
        "force-leave" => ops::force_leave(rest),
        "services" => catalog::services(rest),
        "catalog" => catalog::catalog(rest),
        "maint" => catalog::maint(rest),
        "rtt" => rtt::main(rest),
        "event" => event::main(rest),
        "watch" => watch::main(rest),
        "monitor" => monitor::main(rest),
        "kv" => kv::main(rest),
        "lock" => lock::main(rest),
        "operator" => operator::main(rest),
        "snapshot" => snapshot::main(rest),
        "keygen" => keys::keygen(rest),
        "keyring" => keys::keyring(rest),
        "tls" => tls::main(rest),
        "version" | "-v" | "-version" | "--version" => {
            println!("murmur v{}", crate::version::VERSION);
            println!("Revision {}", crate::version::REVISION);
            println!(
                "Protocol {} spoken by default, understands {} to {}",
                crate::version::PROTOCOL,
                crate::version::PROTOCOL_MIN,
                crate::version::PROTOCOL_MAX
            );
            0
        }
        "-h" | "-help" | "--help" | "help" => {
            print!("{USAGE}");
            0
        }
        other => {
            eprintln!("Unknown command: {other:?}\n\n{USAGE}");
            1
        }
    }
}

/// Consul's text for an answer other than 200, the agent's message trimmed of its line end.
pub(crate) fn unexpected(r: &Reply) -> String {
    format!(
        "Unexpected response code: {} ({})",
        r.status,
        r.text().trim_end()
    )
}

/// Resolves the agent address from `-http-addr` and the environment, printing an error on failure.
pub fn target(flag: Option<&str>) -> Option<Target> {
    match Target::resolve(flag) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}
