//! Runs the README's "Getting started" section as written: every command of its code blocks, in order,
//! with temporary directories standing in for `/etc/murmur.d` and `/tmp/murmur`. `murmur agent` lines
//! start agents in the background; a command shown with `$ ` and its output must print that output
//! (whitespace-insensitive; dig's answers in any order, since service answers are shuffled) within a
//! bounded wait, and every other command must succeed. Editing the section edits this test.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{BIN, tmp, wait_for};

/// One command of the section, with the output it is shown with (if any).
struct Step {
    command: String,
    output: Option<Vec<String>>,
}

/// The commands of the README's "Getting started" section.
fn steps(readme: &str) -> Vec<Step> {
    let start = readme
        .find("## Getting started")
        .expect("the README has a Getting started section");
    let rest = &readme[start + 3..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    // Code blocks: runs of lines indented by four spaces.
    let mut blocks: Vec<Vec<&str>> = vec![];
    let mut current: Vec<&str> = vec![];
    for line in section.lines() {
        match line.strip_prefix("    ") {
            Some(code) => current.push(code),
            None if line.trim().is_empty() && !current.is_empty() => current.push(""),
            None => {
                if !current.is_empty() {
                    blocks.push(std::mem::take(&mut current));
                }
            }
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    let mut steps = Vec::new();
    for block in blocks {
        let prompted = block.iter().any(|l| l.starts_with("$ "));
        let mut lines = block.into_iter().peekable();
        while let Some(line) = lines.next() {
            if line.is_empty() {
                continue;
            }
            let mut command = line.strip_prefix("$ ").unwrap_or(line).to_owned();
            while command.ends_with('\\') {
                command.pop();
                command.push_str(lines.next().unwrap_or("").trim());
            }
            let mut output = None;
            if prompted {
                let mut out = vec![];
                while let Some(l) = lines.peek() {
                    if l.starts_with("$ ") || l.is_empty() {
                        break;
                    }
                    out.push(lines.next().unwrap().to_owned());
                }
                output = Some(out);
            }
            steps.push(Step { command, output });
        }
    }
    steps
}

fn normalized(lines: impl Iterator<Item = String>) -> Vec<String> {
    lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// Runs `command` with bash, `murmur` resolving to the binary under test.
fn shell(command: &str, bin_dir: &Path) -> Command {
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(command)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env_remove("MURMUR_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_ADDR");
    c
}

struct Agents(Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn the_readme_getting_started_runs_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let steps = steps(&readme);
    assert!(steps.len() >= 10, "found only {} commands", steps.len());
    let dir = tmp("getting-started");
    let etc = dir.join("etc-murmur.d");
    let data = dir.join("data");
    let bin_dir = Path::new(BIN).parent().unwrap().to_path_buf();
    let mut agents = Agents(vec![]);
    for step in &steps {
        let command = step
            .command
            .replace("/etc/murmur.d", &etc.display().to_string())
            .replace("/tmp/murmur", &data.display().to_string());
        // Building is what produced the binary under test; the path is set by `shell`.
        if command.starts_with("cargo build") || command.starts_with("export PATH") {
            continue;
        }
        if command.starts_with("murmur agent") {
            let log =
                std::fs::File::create(dir.join(format!("agent-{}.log", agents.0.len()))).unwrap();
            let child = shell(&command, &bin_dir)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            agents.0.push(child);
            continue;
        }
        let run = || {
            let out = shell(&command, &bin_dir)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let mut last = (false, String::new(), String::new());
        let ok = wait_for(Duration::from_secs(30), || {
            last = run();
            match &step.output {
                None => last.0,
                Some(want) => {
                    let mut got = normalized(last.1.lines().map(str::to_owned));
                    let mut want = normalized(want.iter().cloned());
                    if command.starts_with("dig") {
                        got.sort();
                        want.sort();
                    }
                    last.0 && got == want
                }
            }
        });
        let logs: Vec<String> = (0..agents.0.len())
            .map(|i| {
                std::fs::read_to_string(dir.join(format!("agent-{i}.log"))).unwrap_or_default()
            })
            .collect();
        assert!(
            ok,
            "README command failed: {command}\nexpected: {:?}\nstdout: {}\nstderr: {}\nagent logs:\n{}",
            step.output,
            last.1,
            last.2,
            logs.join("\n---\n")
        );
    }
    assert_eq!(
        agents.0.len(),
        2,
        "the section starts a server and a client"
    );
}
