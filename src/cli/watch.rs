//! `murmur watch -type TYPE [options] [-handler CMD]`: Consul's watches. A blocking query runs in a
//! loop; whenever its index moves and its result differs from the last one, the handler runs with the
//! result as JSON on its standard input (and `CONSUL_INDEX` set), as Consul's does. Without a handler the
//! first result is printed and the watch ends.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::kv::key_path;
use super::ops::{parse, segment};
use super::{HTTP_ADDR, boolean, one, target, unexpected};
use crate::http::client::Target;
use crate::state::user_events::id_index;
use crate::util::flags::{Flag, Parsed};

const FLAGS: [Flag; 10] = [
    HTTP_ADDR,
    one(
        "type",
        "What to watch: key, keyprefix, services, nodes, service, checks or event.",
    ),
    one("key", "The key of a key watch."),
    one("prefix", "The prefix of a keyprefix watch."),
    one(
        "service",
        "The service of a service watch (or of a checks watch).",
    ),
    one("tag", "Only instances with this tag (service watch)."),
    one("state", "Only checks in this state (checks watch)."),
    one("name", "Only events of this name (event watch)."),
    one(
        "handler",
        "Command run through sh with each result as JSON on its stdin (or give it after the options).",
    ),
    boolean(
        "passingonly",
        "Only instances whose checks all pass (service watch).",
    ),
];

/// Longest block of one query (Consul's watches use the agent's default of 5 minutes).
const WAIT: &str = "5m";
/// Wait after a failed query before the next; doubled up to [`MAX_RETRY`].
const RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(20);

/// What one watch type queries, and how its answer becomes the handler's input.
struct Plan {
    /// Path and query, without the blocking parameters.
    path: String,
    /// A key watch answers one entry (or null), not the list the endpoint returns.
    single: bool,
    /// An event watch hands over only the events after the last index it saw.
    events: bool,
}

fn plan(p: &Parsed) -> Result<Plan, String> {
    let need = |flag: &str, kind: &str| {
        p.get(flag)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("Must specify a single {flag} to watch ({kind} watch)"))
    };
    let kind = p.get("type").ok_or("Must specify watch type")?;
    let mut plan = Plan {
        path: String::new(),
        single: false,
        events: false,
    };
    plan.path = match kind {
        "key" => {
            plan.single = true;
            format!("{}?", key_path(&need("key", kind)?))
        }
        "keyprefix" => format!("{}?recurse&", key_path(&need("prefix", kind)?)),
        "services" => "/v1/catalog/services?".into(),
        "nodes" => "/v1/catalog/nodes?".into(),
        "service" => {
            let mut path = format!("/v1/health/service/{}?", segment(&need("service", kind)?));
            if let Some(tag) = p.get("tag") {
                path.push_str(&format!("tag={}&", segment(tag)));
            }
            if p.is_set("passingonly") {
                path.push_str("passing&");
            }
            path
        }
        "checks" => match (p.get("service"), p.get("state")) {
            (Some(_), Some(_)) => return Err("Cannot specify service and state".into()),
            (Some(s), None) => format!("/v1/health/checks/{}?", segment(s)),
            (None, state) => format!("/v1/health/state/{}?", segment(state.unwrap_or("any"))),
        },
        "event" => {
            plan.events = true;
            match p.get("name") {
                Some(n) => format!("/v1/event/list?name={}&", segment(n)),
                None => "/v1/event/list?".into(),
            }
        }
        other => return Err(format!("Unsupported watch type: {other}")),
    };
    Ok(plan)
}

/// One blocking query: the index and the result, or why it failed.
fn query(t: &Target, plan: &Plan, index: Option<u64>) -> Result<(u64, Value), String> {
    let block = index.map_or(String::new(), |i| format!("index={i}&wait={WAIT}"));
    let r = t.call("GET", &format!("{}{block}", plan.path))?;
    let idx = r
        .header("x-consul-index")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let value = match r.status {
        // A missing key is a result too: null.
        404 if plan.single => Value::Null,
        200 => {
            let v: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
            if plan.single {
                v.get(0).cloned().unwrap_or(Value::Null)
            } else {
                v
            }
        }
        _ => return Err(unexpected(&r)),
    };
    Ok((idx, value))
}

/// The events that came after the one whose index was `last` (all of them on the first call).
fn new_events(events: Value, last: Option<u64>) -> Value {
    let Value::Array(list) = events else {
        return events;
    };
    let Some(last) = last else {
        return Value::Array(list);
    };
    let index = |e: &Value| id_index(e["ID"].as_str().unwrap_or_default());
    match list.iter().position(|e| index(e) == last) {
        Some(k) => Value::Array(list[k + 1..].to_vec()),
        None => Value::Array(list),
    }
}

/// Runs `cmd` through `sh` with `input` on its stdin; waits for it, as Consul does.
fn run_handler(cmd: &str, input: &Value, index: u64) {
    let child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("CONSUL_INDEX", index.to_string())
        .stdin(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Failed to run handler {cmd:?}: {e}");
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // One write, so a handler appending its input somewhere gets it whole; a handler that does
        // not read its input closes the pipe early, which is not an error.
        let _ = stdin.write_all(format!("{input}\n").as_bytes());
    }
    match child.wait() {
        Ok(s) if !s.success() => eprintln!("Handler {cmd:?} exited with {s}"),
        Ok(_) => {}
        Err(e) => eprintln!("Failed to wait for handler {cmd:?}: {e}"),
    }
}

/// `murmur watch`.
pub fn main(args: &[String]) -> i32 {
    let Some(p) = parse(args, &FLAGS) else {
        return 1;
    };
    let plan = match plan(&p) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let Some(t) = target(p.get("http-addr")) else {
        return 1;
    };
    // Consul also takes the handler as the arguments after the options.
    let handler = match (p.get("handler"), p.args.is_empty()) {
        (Some(h), true) => Some(h.to_owned()),
        (None, false) => Some(p.args.join(" ")),
        (None, true) => None,
        (Some(_), false) => {
            eprintln!("Cannot give both -handler and a handler after the options");
            return 1;
        }
    };
    let mut index: Option<u64> = None;
    let mut last: Option<Value> = None;
    let mut retry = RETRY;
    loop {
        let (idx, result) = match query(&t, &plan, index) {
            Ok(r) => r,
            Err(e) if handler.is_none() => {
                eprintln!("Error querying the agent: {e}");
                return 1;
            }
            Err(e) => {
                eprintln!("Watch query failed, retrying in {retry:?}: {e}");
                std::thread::sleep(retry);
                retry = (retry * 2).min(MAX_RETRY);
                continue;
            }
        };
        retry = RETRY;
        if index == Some(idx) {
            continue;
        }
        let result = if plan.events {
            new_events(result, index)
        } else {
            result
        };
        index = Some(idx);
        if last.as_ref() == Some(&result) {
            continue;
        }
        match &handler {
            None => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&result).unwrap_or_default()
                );
                return 0;
            }
            Some(cmd) => run_handler(cmd, &result, idx),
        }
        last = Some(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_watch_hands_over_only_what_came_after_the_last_index() {
        let a = "00000000-0000-0000-0000-000000000001";
        let b = "00000000-0000-0000-0000-000000000002";
        let list = json!([{"ID": a}, {"ID": b}]);
        assert_eq!(new_events(list.clone(), None), list);
        assert_eq!(new_events(list.clone(), Some(1)), json!([{"ID": b}]));
        assert_eq!(new_events(list.clone(), Some(2)), json!([]));
        assert_eq!(
            new_events(list.clone(), Some(99)),
            list,
            "older than the ring: all"
        );
    }

    #[test]
    fn plans_follow_consuls_types() {
        let parsed = |args: &[&str]| {
            let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            crate::util::flags::parse(&v, &FLAGS).unwrap()
        };
        let p = plan(&parsed(&["-type", "key", "-key", "app/x"])).unwrap();
        assert_eq!((p.path.as_str(), p.single), ("/v1/kv/app/x?", true));
        let p = plan(&parsed(&[
            "-type",
            "service",
            "-service",
            "web",
            "-tag",
            "v1",
            "-passingonly",
        ]));
        assert_eq!(p.unwrap().path, "/v1/health/service/web?tag=v1&passing&");
        let p = plan(&parsed(&["-type", "checks"])).unwrap();
        assert_eq!(p.path, "/v1/health/state/any?");
        assert!(plan(&parsed(&["-type", "event"])).unwrap().events);
        assert_eq!(
            plan(&parsed(&["-type", "key"])).err().unwrap(),
            "Must specify a single key to watch (key watch)"
        );
        assert_eq!(
            plan(&parsed(&["-type", "moon"])).err().unwrap(),
            "Unsupported watch type: moon"
        );
        assert_eq!(plan(&parsed(&[])).err().unwrap(), "Must specify watch type");
    }
}
