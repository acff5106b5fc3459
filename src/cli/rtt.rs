//! `murmur rtt NODE1 [NODE2]`: the round trip between two nodes as their network coordinates
//! estimate it (Consul's `consul rtt`; the second node defaults to the agent's own).

use super::catalog::get_json;
use super::ops::parse;
use super::{HTTP_ADDR, boolean, target};
use crate::state::coordinates::{Coord, CoordinateEntry};
use crate::util::flags::Flag;

const WAN: Flag = boolean(
    "wan",
    "Use WAN coordinates (not supported yet: murmur's servers do not gossip across datacenters).",
);

/// The coordinate of `node` among `entries`, or Consul's message.
fn find<'a>(entries: &'a [CoordinateEntry], node: &str) -> Result<&'a Coord, String> {
    entries
        .iter()
        .find(|e| e.node == node)
        .map(|e| &e.coord)
        .ok_or_else(|| format!("Could not find a coordinate for node {node:?}"))
}

/// `murmur rtt`.
pub fn main(args: &[String]) -> i32 {
    let Some(p) = parse(args, &[HTTP_ADDR, WAN]) else {
        return 1;
    };
    if p.is_set("wan") {
        eprintln!(
            "murmur rtt -wan is not supported yet: murmur's servers do not gossip across datacenters"
        );
        return 1;
    }
    if p.args.is_empty() || p.args.len() > 2 {
        eprintln!("One or two node names must be specified");
        return 1;
    }
    let Some(t) = target(p.get("http-addr")) else {
        return 1;
    };
    let a = p.args[0].clone();
    let b = match p.args.get(1) {
        Some(b) => b.clone(),
        None => match get_json(&t, "/v1/agent/self", "Unable to look up agent info") {
            Some(v) => v["Config"]["NodeName"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            None => return 1,
        },
    };
    let what = "Error getting coordinates";
    let Some(v) = get_json(&t, "/v1/coordinate/nodes", what) else {
        return 1;
    };
    let entries: Vec<CoordinateEntry> = match serde_json::from_value(v) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{what}: {e}");
            return 1;
        }
    };
    match find(&entries, &a).and_then(|ca| Ok((ca, find(&entries, &b)?))) {
        Ok((ca, cb)) => {
            let ms = ca.rtt(cb).as_secs_f64() * 1000.0;
            println!("Estimated {a} <-> {b} rtt: {ms:.3} ms (using LAN coordinates)");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}
