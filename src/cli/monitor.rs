//! `murmur monitor [-log-level LEVEL] [-log-json]`: follows the agent's log (Consul's
//! `consul monitor`) until the agent stops or the command is interrupted.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use super::ops::{parse, segment};
use super::{HTTP_ADDR, boolean, one, target};
use crate::util::flags::Flag;

const FLAGS: [Flag; 3] = [
    HTTP_ADDR,
    one(
        "log-level",
        "Level of the lines to show: trace, debug, info (default), warn or error.",
    ),
    boolean("log-json", "Show the lines as JSON objects."),
];

/// `murmur monitor`.
pub fn main(args: &[String]) -> i32 {
    let Some(p) = parse(args, &FLAGS) else {
        return 1;
    };
    let Some(t) = target(p.get("http-addr")) else {
        return 1;
    };
    let level = p.get("log-level").unwrap_or("info");
    let json = if p.is_set("log-json") { "&logjson" } else { "" };
    let path = format!("/v1/agent/monitor?loglevel={}{json}", segment(level));
    match follow(&t.authority, &path) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error starting monitor: {e}");
            1
        }
    }
}

/// Streams the body of `GET path` to standard output line by line. HTTP/1.0, so the body ends when
/// the agent closes the connection (no chunked framing to undo).
fn follow(authority: &str, path: &str) -> Result<(), String> {
    let mut conn = TcpStream::connect(authority).map_err(|e| format!("{authority}: {e}"))?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut r = BufReader::new(conn);
    let mut status = String::new();
    r.read_line(&mut status).map_err(|e| e.to_string())?;
    let code = status.split_whitespace().nth(1).unwrap_or("");
    loop {
        let mut header = String::new();
        let n = r.read_line(&mut header).map_err(|e| e.to_string())?;
        if n == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    if code != "200" {
        let mut body = String::new();
        let _ = std::io::Read::read_to_string(&mut r, &mut body);
        return Err(format!(
            "Unexpected response code: {code} ({})",
            body.trim_end()
        ));
    }
    let out = std::io::stdout();
    for line in r.lines() {
        let line = line.map_err(|e| e.to_string())?;
        let mut o = out.lock();
        // A closed pipe (`| head`) ends the command quietly.
        if writeln!(o, "{line}").and_then(|()| o.flush()).is_err() {
            return Ok(());
        }
    }
    Ok(())
}
