//! `murmur event -name NAME [-node RE] [-service RE] [-tag RE] [PAYLOAD]`: fires a user event (Consul's
//! `consul event`) and prints its ID.

use super::ops::{parse, segment};
use super::{HTTP_ADDR, one, target, unexpected};
use crate::util::flags::Flag;

const FLAGS: [Flag; 5] = [
    HTTP_ADDR,
    one("name", "Name of the event."),
    one(
        "node",
        "Regular expression on the names of the nodes that keep the event.",
    ),
    one(
        "service",
        "Regular expression on the services of the nodes that keep it.",
    ),
    one(
        "tag",
        "Regular expression on the tags of those services (needs -service).",
    ),
];

/// Query string for the filters that are set.
fn filters(p: &crate::util::flags::Parsed) -> String {
    let pairs: Vec<String> = ["node", "service", "tag"]
        .iter()
        .filter_map(|k| p.get(k).map(|v| format!("{k}={}", segment(v))))
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// `murmur event`.
pub fn main(args: &[String]) -> i32 {
    let Some(p) = parse(args, &FLAGS) else {
        return 1;
    };
    let Some(name) = p.get("name").filter(|n| !n.is_empty()) else {
        eprintln!("Event name must be specified");
        return 1;
    };
    if p.args.len() > 1 {
        eprintln!("Too many command line arguments: a payload is one argument");
        return 1;
    }
    if p.get("tag").is_some() && p.get("service").is_none() {
        eprintln!("Cannot provide tag filter without service filter.");
        return 1;
    }
    let Some(t) = target(p.get("http-addr")) else {
        return 1;
    };
    let payload = p.args.first().map(String::as_bytes).unwrap_or_default();
    let path = format!("/v1/event/fire/{}{}", segment(name), filters(&p));
    match t.call_with_body("PUT", &path, payload) {
        Ok(r) if r.status == 200 => {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            println!("Event ID: {}", v["ID"].as_str().unwrap_or_default());
            0
        }
        Ok(r) => {
            eprintln!("Error firing event: {}", unexpected(&r));
            1
        }
        Err(e) => {
            eprintln!("Error firing event: {e}");
            1
        }
    }
}
