//! `murmur kv get|put|delete|export|import`: Consul's KV commands over the agent's HTTP API, with
//! Consul's messages and exit codes.

use std::io::Read;

use base64::Engine;
use serde_json::{Value, json};

use super::ops::{parse, segment};
use super::{HTTP_ADDR, boolean, one, target};
use crate::http::client::Target;

const USAGE: &str = "Usage: murmur kv <get|put|delete|export|import> [options] KEY [DATA]";

/// A key as a URL path: each segment percent-encoded, the slashes kept.
pub(crate) fn key_path(key: &str) -> String {
    let parts: Vec<String> = key.split('/').map(segment).collect();
    format!("/v1/kv/{}", parts.join("/"))
}

fn b64(v: &Value) -> Vec<u8> {
    v.as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default()
}

/// Data from the argument: `-` reads stdin, `@file` a file, anything else is the data itself.
fn data_arg(arg: Option<&String>) -> Result<Vec<u8>, String> {
    match arg.map(String::as_str) {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .map_err(|e| format!("Error! Failed to read stdin: {e}"))?;
            Ok(b)
        }
        Some(a) if a.starts_with('@') => {
            std::fs::read(&a[1..]).map_err(|e| format!("Error! Failed to read file: {e}"))
        }
        Some(a) => Ok(a.as_bytes().to_vec()),
    }
}

fn call(t: &Target, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    t.call_with_body(method, path, body)
        .map(|r| (r.status, r.body))
        .map_err(|e| format!("Error! {e}"))
}

/// Runs a `kv` subcommand; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let Some((sub, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return 1;
    };
    let r = match sub.as_str() {
        "get" => get(rest),
        "put" => put(rest),
        "delete" => delete(rest),
        "export" => export(rest),
        "import" => import(rest),
        _ => Err(USAGE.to_string()),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn get(args: &[String]) -> Result<(), String> {
    let p = parse(
        args,
        &[
            HTTP_ADDR,
            boolean("recurse", "Every key under the prefix, as key:value."),
            boolean("keys", "Key names only."),
            one(
                "separator",
                "With -keys: list up to this separator (default /).",
            ),
            boolean("detailed", "Every field of the entry."),
            boolean("stale", "Let any server answer."),
        ],
    )
    .ok_or_else(String::new)?;
    let key = p.args.first().cloned().unwrap_or_default();
    let t = target(p.get("http-addr")).ok_or_else(String::new)?;
    let stale = if p.is_set("stale") { "&stale" } else { "" };
    if p.is_set("keys") {
        let sep = p.get("separator").unwrap_or("/");
        let path = format!("{}?keys&separator={}{stale}", key_path(&key), segment(sep));
        let (code, body) = call(&t, "GET", &path, &[])?;
        if code == 404 {
            return Ok(());
        }
        let v: Value = ok_json(code, &body)?;
        for k in v.as_array().into_iter().flatten() {
            println!("{}", k.as_str().unwrap_or(""));
        }
        return Ok(());
    }
    if key.is_empty() && !p.is_set("recurse") {
        return Err("Error! Missing KEY argument".into());
    }
    let recurse = if p.is_set("recurse") { "?recurse" } else { "?" };
    let (code, body) = call(
        &t,
        "GET",
        &format!("{}{recurse}{stale}", key_path(&key)),
        &[],
    )?;
    if code == 404 {
        if p.is_set("recurse") {
            return Ok(());
        }
        return Err(format!("Error! No key exists at: {key}"));
    }
    let v: Value = ok_json(code, &body)?;
    for e in v.as_array().into_iter().flatten() {
        let value = String::from_utf8_lossy(&b64(&e["Value"])).into_owned();
        if p.is_set("detailed") {
            for f in [
                "CreateIndex",
                "Flags",
                "Key",
                "LockIndex",
                "ModifyIndex",
                "Session",
            ] {
                let shown = match &e[f] {
                    Value::String(s) => s.clone(),
                    Value::Null => "-".into(),
                    other => other.to_string(),
                };
                println!("{f:<15} {shown}");
            }
            println!("{:<15} {value}", "Value");
        } else if p.is_set("recurse") {
            println!("{}:{value}", e["Key"].as_str().unwrap_or(""));
        } else {
            println!("{value}");
        }
    }
    Ok(())
}

fn ok_json(code: u16, body: &[u8]) -> Result<Value, String> {
    if code != 200 {
        return Err(format!(
            "Error! Unexpected response code: {code} ({})",
            String::from_utf8_lossy(body)
        ));
    }
    serde_json::from_slice(body).map_err(|e| format!("Error! {e}"))
}

fn put(args: &[String]) -> Result<(), String> {
    let p = parse(
        args,
        &[
            HTTP_ADDR,
            one("flags", "Unsigned integer flags stored with the key."),
            boolean(
                "cas",
                "Write only if -modify-index matches (0: only a new key).",
            ),
            one("modify-index", "The ModifyIndex -cas compares with."),
            boolean("acquire", "Take the key's lock for -session."),
            boolean("release", "Give up the key's lock held by -session."),
            one("session", "Session ID for -acquire and -release."),
        ],
    )
    .ok_or_else(String::new)?;
    let key = p
        .args
        .first()
        .cloned()
        .ok_or("Error! Missing KEY argument")?;
    let data = data_arg(p.args.get(1))?;
    let t = target(p.get("http-addr")).ok_or_else(String::new)?;
    let mut q = vec![format!("flags={}", p.get("flags").unwrap_or("0"))];
    let session = p.get("session").unwrap_or("");
    let (verb, done) = if p.is_set("cas") {
        let index = p
            .get("modify-index")
            .ok_or("Error! Must specify -modify-index with -cas!")?;
        q.push(format!("cas={index}"));
        ("write", format!("Success! Data written to: {key}"))
    } else if p.is_set("acquire") {
        if session.is_empty() {
            return Err("Error! Missing -session (required with -acquire)".into());
        }
        q.push(format!("acquire={session}"));
        ("acquire lock", format!("Success! Lock acquired on: {key}"))
    } else if p.is_set("release") {
        if session.is_empty() {
            return Err("Error! Missing -session (required with -release)".into());
        }
        q.push(format!("release={session}"));
        ("release lock", format!("Success! Lock released on: {key}"))
    } else {
        ("write", format!("Success! Data written to: {key}"))
    };
    let path = format!("{}?{}", key_path(&key), q.join("&"));
    let (code, body) = call(&t, "PUT", &path, &data)?;
    match ok_json(code, &body)? {
        Value::Bool(true) => {
            println!("{done}");
            Ok(())
        }
        _ if verb == "write" => Err(format!("Error! Did not write to {key}: CAS failed")),
        _ => Err(format!("Error! Did not {verb} on {key}")),
    }
}

fn delete(args: &[String]) -> Result<(), String> {
    let p = parse(
        args,
        &[
            HTTP_ADDR,
            boolean("recurse", "Delete every key under the prefix."),
            boolean("cas", "Delete only if -modify-index matches."),
            one("modify-index", "The ModifyIndex -cas compares with."),
        ],
    )
    .ok_or_else(String::new)?;
    let key = p.args.first().cloned().unwrap_or_default();
    if key.is_empty() && !p.is_set("recurse") {
        return Err("Error! Missing KEY argument".into());
    }
    let t = target(p.get("http-addr")).ok_or_else(String::new)?;
    let query = if p.is_set("recurse") {
        "?recurse".to_string()
    } else if p.is_set("cas") {
        let index = p
            .get("modify-index")
            .ok_or("Error! Must specify -modify-index with -cas!")?;
        format!("?cas={index}")
    } else {
        String::new()
    };
    let (code, body) = call(&t, "DELETE", &format!("{}{query}", key_path(&key)), &[])?;
    match ok_json(code, &body)? {
        Value::Bool(true) if p.is_set("recurse") => {
            println!("Success! Deleted keys with prefix: {key}");
            Ok(())
        }
        Value::Bool(true) => {
            println!("Success! Deleted key: {key}");
            Ok(())
        }
        _ => Err(format!("Error! Did not delete key {key}: CAS failed")),
    }
}

fn export(args: &[String]) -> Result<(), String> {
    let p = parse(args, &[HTTP_ADDR]).ok_or_else(String::new)?;
    let prefix = p.args.first().cloned().unwrap_or_default();
    let t = target(p.get("http-addr")).ok_or_else(String::new)?;
    let (code, body) = call(&t, "GET", &format!("{}?recurse", key_path(&prefix)), &[])?;
    let entries = if code == 404 {
        Value::Array(Vec::new())
    } else {
        ok_json(code, &body)?
    };
    let out: Vec<Value> = entries
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            json!({
                "key": e["Key"],
                "flags": e["Flags"],
                "value": e["Value"].as_str().unwrap_or(""),
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
    );
    Ok(())
}

fn import(args: &[String]) -> Result<(), String> {
    let p = parse(args, &[HTTP_ADDR]).ok_or_else(String::new)?;
    let data = data_arg(p.args.first())?;
    let entries: Vec<Value> =
        serde_json::from_slice(&data).map_err(|e| format!("Error! Cannot unmarshal data: {e}"))?;
    let t = target(p.get("http-addr")).ok_or_else(String::new)?;
    for e in &entries {
        let key = e["key"].as_str().ok_or("Error! An entry has no key")?;
        let flags = e["flags"].as_u64().unwrap_or(0);
        let value = match e["value"].as_str() {
            None => Vec::new(),
            Some(v) => base64::engine::general_purpose::STANDARD
                .decode(v)
                .map_err(|err| format!("Error! Cannot base 64 decode value for {key}: {err}"))?,
        };
        let (code, body) = call(
            &t,
            "PUT",
            &format!("{}?flags={flags}", key_path(key)),
            &value,
        )?;
        ok_json(code, &body)?;
        println!("Imported: {key}");
    }
    Ok(())
}
