//! `join`, `leave` and `force-leave`: one HTTP call each, with Consul's messages and exit codes.

use super::{HTTP_ADDR, target};
use crate::util::flags::{self, Arity, Flag};

const WAN: Flag = Flag {
    name: "wan",
    arity: Arity::Bool,
    help: "Use the WAN pool (not supported yet).",
};

pub(super) fn parse(args: &[String], spec: &[Flag]) -> Option<flags::Parsed> {
    match flags::parse(args, spec) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

/// Percent-encodes one path segment (or query value).
pub(super) use crate::util::percent::encode as segment;

/// `murmur join [-wan] ADDR...`.
pub fn join(args: &[String]) -> i32 {
    let Some(p) = parse(args, &[HTTP_ADDR, WAN]) else {
        return 1;
    };
    if p.args.is_empty() {
        eprintln!("At least one address to join must be specified.");
        return 1;
    }
    let Some(t) = target(p.get("http-addr")) else {
        return 1;
    };
    let wan = if p.is_set("wan") { "?wan=1" } else { "" };
    let mut ok = 0;
    for a in &p.args {
        match t.call("PUT", &format!("/v1/agent/join/{}{wan}", segment(a))) {
            Ok(r) if r.status == 200 => ok += 1,
            Ok(r) => eprintln!(
                "Error joining address '{a}': Unexpected response code: {} ({})",
                r.status,
                r.text()
            ),
            Err(e) => eprintln!("Error joining address '{a}': {e}"),
        }
    }
    if ok == 0 {
        eprintln!("Failed to join any nodes.");
        return 1;
    }
    println!("Successfully joined cluster by contacting {ok} nodes.");
    0
}

/// `murmur leave`.
pub fn leave(args: &[String]) -> i32 {
    put_no_args(
        args,
        "/v1/agent/leave",
        "Graceful leave complete",
        "Error leaving",
    )
}

/// `murmur reload`: re-reads the agent's config files (service and check definitions).
pub fn reload(args: &[String]) -> i32 {
    put_no_args(
        args,
        "/v1/agent/reload",
        "Configuration reload triggered",
        "Error reloading",
    )
}

/// A command that takes only `-http-addr` and PUTs to `path`.
fn put_no_args(args: &[String], path: &str, done: &str, failed: &str) -> i32 {
    let Some(p) = parse(args, &[HTTP_ADDR]) else {
        return 1;
    };
    if !p.args.is_empty() {
        eprintln!("Error found unexpected args: {:?}", p.args);
        return 1;
    }
    let Some(t) = target(p.get("http-addr")) else {
        return 1;
    };
    match t.call("PUT", path) {
        Ok(r) if r.status == 200 => {
            println!("{done}");
            0
        }
        Ok(r) => {
            eprintln!(
                "{failed}: Unexpected response code: {} ({})",
                r.status,
                r.text()
            );
            1
        }
        Err(e) => {
            eprintln!("{failed}: {e}");
            1
        }
    }
}

/// `murmur force-leave NODE`.
pub fn force_leave(args: &[String]) -> i32 {
    let Some(p) = parse(args, &[HTTP_ADDR, WAN]) else {
        return 1;
    };
    if p.args.len() != 1 {
        eprintln!("A single node name must be specified to force leave.");
        return 1;
    }
    let Some(t) = target(p.get("http-addr")) else {
        return 1;
    };
    let wan = if p.is_set("wan") { "?wan=1" } else { "" };
    match t.call(
        "PUT",
        &format!("/v1/agent/force-leave/{}{wan}", segment(&p.args[0])),
    ) {
        Ok(r) if r.status == 200 => 0,
        Ok(r) => {
            eprintln!(
                "Error force leaving: Unexpected response code: {} ({})",
                r.status,
                r.text()
            );
            1
        }
        Err(e) => {
            eprintln!("Error force leaving: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(super::segment("127.0.0.2:8301"), "127.0.0.2:8301");
        assert_eq!(super::segment("a b/c"), "a%20b%2Fc");
    }
}
