//! `murmur operator raft list-peers`: the servers of the replicated log, as `consul operator raft
//! list-peers` prints them; `remove-peer -id=|-address=` takes one out, as Consul's does.

use serde_json::Value;

use super::catalog::get_json;
use super::ops::parse;
use super::{HTTP_ADDR, one, target, unexpected};

/// `remove-peer`: what it prints on success, or the error after "Error removing peer: ".
fn remove_peer(args: &[String]) -> Result<String, String> {
    let p = parse(
        args,
        &[
            HTTP_ADDR,
            one("id", "The ID of the server to remove."),
            one("address", "The IP:port of the server to remove."),
        ],
    )
    .ok_or_else(String::new)?;
    let (query, done) = match (p.get("id"), p.get("address")) {
        (Some(_), Some(_)) => return Err("cannot give both an address and id".into()),
        (None, None) => return Err("an address or id is required for the peer to remove".into()),
        (Some(id), None) => (format!("id={id}"), format!("Removed peer with id {id:?}")),
        (None, Some(a)) => (
            format!("address={a}"),
            format!("Removed peer with address {a:?}"),
        ),
    };
    let t = target(p.get("http-addr")).ok_or_else(String::new)?;
    let r = t
        .call("DELETE", &format!("/v1/operator/raft/peer?{query}"))
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(unexpected(&r));
    }
    Ok(done)
}

const USAGE: &str = "Usage: murmur operator raft list-peers\n       murmur operator raft remove-peer -id=ID | -address=IP:PORT";

/// Runs `murmur operator ...`; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["raft", "list-peers", ..] => list_peers(&args[2..]),
        ["raft", "remove-peer", ..] => match remove_peer(&args[2..]) {
            Ok(done) => {
                println!("{done}");
                0
            }
            Err(e) => {
                if !e.is_empty() {
                    eprintln!("Error removing peer: {e}");
                }
                1
            }
        },
        ["raft", other, ..] => {
            eprintln!(
                "operator raft {other} is a Consul command that murmur does not support yet\n{USAGE}"
            );
            1
        }
        _ => {
            eprintln!("{USAGE}");
            1
        }
    }
}

fn list_peers(args: &[String]) -> i32 {
    let Some(p) = parse(args, &[HTTP_ADDR]) else {
        return 1;
    };
    let Some(t) = target(p.get("http-addr")) else {
        return 1;
    };
    let what = "Failed to retrieve raft configuration";
    let Some(v) = get_json(&t, "/v1/operator/raft/configuration", what) else {
        return 1;
    };
    let mut rows = vec![vec![
        "Node".to_string(),
        "ID".into(),
        "Address".into(),
        "State".into(),
        "Voter".into(),
        "RaftProtocol".into(),
    ]];
    for s in v["Servers"].as_array().into_iter().flatten() {
        let text = |k: &str| s[k].as_str().unwrap_or("").to_string();
        let state = if s["Leader"] == Value::Bool(true) {
            "leader"
        } else {
            "follower"
        };
        rows.push(vec![
            text("Node"),
            text("ID"),
            text("Address"),
            state.into(),
            (s["Voter"] == Value::Bool(true)).to_string(),
            text("ProtocolVersion"),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    0
}
