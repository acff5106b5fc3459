//! `murmur rtt NODE1 [NODE2]`: the round trip between two nodes as their network coordinates
//! estimate it (Consul's `consul rtt`; the second node defaults to the agent's own).

use super::catalog::get_json;
use super::ops::parse;
use super::{HTTP_ADDR, boolean, target};
use crate::state::coordinates::{Coord, CoordinateEntry};
use crate::util::flags::Flag;

const WAN: Flag = boolean(
    "wan",
    "Use WAN coordinates: nodes are servers named NODE.DC (the second defaults to this agent's).",
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
    let wan = p.is_set("wan");
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
            Some(v) => {
                let node = v["Config"]["NodeName"].as_str().unwrap_or_default();
                match (wan, v["Config"]["Datacenter"].as_str()) {
                    (true, Some(dc)) => format!("{node}.{dc}"),
                    _ => node.to_owned(),
                }
            }
            None => return 1,
        },
    };
    let what = "Error getting coordinates";
    let entries = if wan {
        wan_entries(&t, what)
    } else {
        get_json(&t, "/v1/coordinate/nodes", what).map(|v| {
            serde_json::from_value::<Vec<CoordinateEntry>>(v).map_err(|e| format!("{what}: {e}"))
        })
    };
    let entries = match entries {
        Some(Ok(e)) => e,
        Some(Err(e)) => {
            eprintln!("{e}");
            return 1;
        }
        None => return 1,
    };
    let source = if wan { "WAN" } else { "LAN" };
    match find(&entries, &a).and_then(|ca| Ok((ca, find(&entries, &b)?))) {
        Ok((ca, cb)) => {
            let ms = ca.rtt(cb).as_secs_f64() * 1000.0;
            println!("Estimated {a} <-> {b} rtt: {ms:.3} ms (using {source} coordinates)");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// The servers' WAN coordinates from `/v1/coordinate/datacenters`, named `NODE.DC`.
fn wan_entries(
    t: &crate::http::client::Target,
    what: &str,
) -> Option<Result<Vec<CoordinateEntry>, String>> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Area {
        datacenter: String,
        coordinates: Vec<CoordinateEntry>,
    }
    let v = get_json(t, "/v1/coordinate/datacenters", what)?;
    Some(
        serde_json::from_value::<Vec<Area>>(v)
            .map_err(|e| format!("{what}: {e}"))
            .map(|areas| {
                areas
                    .into_iter()
                    .flat_map(|a| {
                        let dc = a.datacenter;
                        a.coordinates.into_iter().map(move |mut e| {
                            e.node = format!("{}.{dc}", e.node);
                            e
                        })
                    })
                    .collect()
            }),
    )
}
