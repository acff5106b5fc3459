//! `keygen` and `keyring`: gossip encryption keys, generated locally or rotated cluster-wide.

use serde_json::Value;

use super::{HTTP_ADDR, target};
use crate::net::crypto;
use crate::util::flags::{self, Arity, Flag};

/// `murmur keygen`: prints a new random 32-byte key in base64.
pub fn keygen(args: &[String]) -> i32 {
    if !args.is_empty() {
        eprintln!("Error found unexpected args: {args:?}");
        return 1;
    }
    match crypto::generate_key() {
        Ok(k) => {
            println!("{k}");
            0
        }
        Err(e) => {
            eprintln!("Error generating key: {e}");
            1
        }
    }
}

const SPEC: &[Flag] = &[
    HTTP_ADDR,
    Flag {
        name: "list",
        arity: Arity::Bool,
        help: "List the installed keys and how many members hold each.",
    },
    Flag {
        name: "install",
        arity: Arity::One,
        help: "Install a new key on every member.",
    },
    Flag {
        name: "use",
        arity: Arity::One,
        help: "Make an installed key primary on every member.",
    },
    Flag {
        name: "remove",
        arity: Arity::One,
        help: "Remove a key from every member.",
    },
];

/// `murmur keyring -list | -install KEY | -use KEY | -remove KEY`.
pub fn keyring(args: &[String]) -> i32 {
    let p = match flags::parse(args, SPEC) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let ops: Vec<(&str, &str, &str)> = [
        (
            "install",
            "POST",
            "==> Installing new gossip encryption key...",
        ),
        (
            "use",
            "PUT",
            "==> Changing primary gossip encryption key...",
        ),
        ("remove", "DELETE", "==> Removing gossip encryption key..."),
    ]
    .into_iter()
    .filter(|(f, _, _)| p.get(f).is_some())
    .collect();
    let list = p.is_set("list");
    if ops.len() + usize::from(list) != 1 {
        eprintln!("Exactly one of -list, -install, -use, or -remove must be provided");
        return 1;
    }
    let Some(t) = target(p.get("http-addr")) else {
        return 1;
    };
    if list {
        println!("==> Gathering installed encryption keys...");
        let r = match t.call("GET", "/v1/operator/keyring") {
            Ok(r) if r.status == 200 => r,
            Ok(r) => {
                eprintln!("Error: {}", r.text());
                return 1;
            }
            Err(e) => {
                eprintln!("Error: {e}");
                return 1;
            }
        };
        let Ok(v) = serde_json::from_slice::<Value>(&r.body) else {
            eprintln!("Error: malformed reply");
            return 1;
        };
        for pool in v.as_array().into_iter().flatten() {
            let total = pool["NumNodes"].as_u64().unwrap_or(0);
            println!("\n{} (LAN):", pool["Datacenter"].as_str().unwrap_or(""));
            for (k, n) in pool["Keys"].as_object().into_iter().flatten() {
                println!("  {k} [{}/{total}]", n.as_u64().unwrap_or(0));
            }
        }
        return 0;
    }
    let (flag, method, banner) = ops[0];
    let key = p.get(flag).unwrap_or_default();
    if let Err(e) = crypto::parse_key(key) {
        eprintln!("Error: {e}");
        return 1;
    }
    println!("{banner}");
    let body = serde_json::json!({ "Key": key }).to_string();
    match t.call_with_body(method, "/v1/operator/keyring", body.as_bytes()) {
        Ok(r) if r.status == 200 => 0,
        Ok(r) => {
            eprintln!("Error: {}", r.text());
            1
        }
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}
