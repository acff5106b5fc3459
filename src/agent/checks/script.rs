//! Script (`args`) checks: the command runs in its own process group with stdin closed; exit 0 is
//! passing, 1 warning, anything else critical; stdout and stderr go to one output (its last 4 KB). At
//! the timeout the whole group is killed, so a hung script and its children never pile up.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::{Outcome, Tail};
use crate::state::definitions::Status;
use crate::state::local_services::MAX_OUTPUT;
use crate::util::duration::go_string;

/// Runs `args` once, for at most `timeout`.
pub async fn check(args: &[String], timeout: Duration) -> Outcome {
    let Some((program, rest)) = args.split_first() else {
        return (Status::Critical, "no command to run".into());
    };
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (Status::Critical, format!("fork/exec {program}: {e}")),
    };
    let tail = Arc::new(Mutex::new(Tail::default()));
    let readers = [
        child
            .stdout
            .take()
            .map(|s| tokio::spawn(drain(s, tail.clone()))),
        child
            .stderr
            .take()
            .map(|s| tokio::spawn(drain(s, tail.clone()))),
    ];
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    if waited.is_err()
        && let Some(pid) = child.id()
    {
        // SAFETY: kill(2) on the process group this check started (the child leads it).
        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        let _ = child.wait().await;
    }
    for r in readers.into_iter().flatten() {
        // The pipes close when the group dies; a grandchild that escaped the group cannot hold us.
        let _ = tokio::time::timeout(Duration::from_secs(1), r).await;
    }
    let output = {
        let t = tail.lock().unwrap_or_else(|p| p.into_inner());
        if t.total() > MAX_OUTPUT {
            format!(
                "Captured {MAX_OUTPUT} of {} bytes\n...\n{}",
                t.total(),
                t.text()
            )
        } else {
            t.text()
        }
    };
    match waited {
        Err(_) => {
            let mut msg = format!("Timed out ({}) running check", go_string(timeout));
            if !output.is_empty() {
                msg.push_str("\n\n");
                msg.push_str(&output);
            }
            (Status::Critical, msg)
        }
        Ok(Err(e)) => (Status::Critical, e.to_string()),
        Ok(Ok(st)) => match st.code() {
            Some(0) => (Status::Passing, output),
            Some(1) => (Status::Warning, output),
            _ => (Status::Critical, output),
        },
    }
}

async fn drain(mut r: impl AsyncRead + Unpin, tail: Arc<Mutex<Tail>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(&buf[..n]);
    }
}
