//! `murmur snapshot save|restore|inspect`: the servers' state to and from a snapshot file, with
//! Consul's messages (`consul snapshot ...`).

use std::path::Path;

use super::ops::parse;
use super::{HTTP_ADDR, boolean, target, unexpected};
use crate::raft::archive;
// A saved file came through the server transport: its state fits one frame.
use crate::raft::rpc::MAX_FRAME;
use crate::util::files::{Access, write_atomic};

const USAGE: &str = "Usage: murmur snapshot save [-stale] FILE\n       murmur snapshot restore FILE\n       murmur snapshot inspect FILE";

/// Runs `murmur snapshot ...`; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let Some((sub, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return 1;
    };
    let r = match sub.as_str() {
        "save" => save(rest),
        "restore" => restore(rest),
        "inspect" => inspect(rest),
        _ => Err(USAGE.to_string()),
    };
    match r {
        Ok(done) => {
            println!("{done}");
            0
        }
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            1
        }
    }
}

/// The one file argument, or the usage text.
fn file_arg(p: &crate::util::flags::Parsed) -> Result<&Path, String> {
    match p.args.as_slice() {
        [f] => Ok(Path::new(f)),
        [] => Err(format!("Missing FILE argument\n{USAGE}")),
        _ => Err(format!(
            "Too many arguments (expected 1, got {})",
            p.args.len()
        )),
    }
}

fn save(args: &[String]) -> Result<String, String> {
    let p = parse(
        args,
        &[
            HTTP_ADDR,
            boolean("stale", "Let any server answer, also without a leader."),
        ],
    )
    .ok_or_else(String::new)?;
    let file = file_arg(&p)?;
    let t = target(p.get("http-addr")).ok_or_else(String::new)?;
    let path = if p.is_set("stale") {
        "/v1/snapshot?stale"
    } else {
        "/v1/snapshot"
    };
    let r = t
        .call("GET", path)
        .map_err(|e| format!("Error saving snapshot: {e}"))?;
    if r.status != 200 {
        return Err(format!("Error saving snapshot: {}", unexpected(&r)));
    }
    // Check the file before it replaces anything at FILE (Consul verifies its download the same way).
    let (meta, _) = archive::read(&r.body, MAX_FRAME)
        .map_err(|e| format!("Error verifying snapshot file: {e}"))?;
    write_atomic(file, &r.body, Access::Owner)
        .map_err(|e| format!("Error writing snapshot file: {e}"))?;
    Ok(format!(
        "Saved and verified snapshot to index {}",
        meta.index
    ))
}

fn restore(args: &[String]) -> Result<String, String> {
    let p = parse(args, &[HTTP_ADDR]).ok_or_else(String::new)?;
    let file = file_arg(&p)?;
    let data = std::fs::read(file).map_err(|e| format!("Error opening snapshot file: {e}"))?;
    let t = target(p.get("http-addr")).ok_or_else(String::new)?;
    let r = t
        .call_with_body("PUT", "/v1/snapshot", &data)
        .map_err(|e| format!("Error restoring snapshot: {e}"))?;
    if r.status != 200 {
        return Err(format!("Error restoring snapshot: {}", unexpected(&r)));
    }
    Ok("Restored snapshot".into())
}

fn inspect(args: &[String]) -> Result<String, String> {
    let p = parse(args, &[]).ok_or_else(String::new)?;
    let file = file_arg(&p)?;
    let data = std::fs::read(file).map_err(|e| format!("Error opening snapshot file: {e}"))?;
    let (m, _) =
        archive::read(&data, MAX_FRAME).map_err(|e| format!("Error inspecting snapshot: {e}"))?;
    let rows = [
        ("ID", m.id),
        ("Size", m.size.to_string()),
        ("Index", m.index.to_string()),
        ("Term", m.term.to_string()),
        ("Version", m.version.to_string()),
    ];
    Ok(rows
        .iter()
        .map(|(k, v)| format!(" {k:<12} {v}"))
        .collect::<Vec<_>>()
        .join("\n"))
}
