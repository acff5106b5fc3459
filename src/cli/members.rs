//! `murmur members`: the member table as Consul prints it.

use regex::Regex;
use serde_json::Value;

use super::{HTTP_ADDR, target};
use crate::util::flags::{self, Arity, Flag};

const SPEC: &[Flag] = &[
    HTTP_ADDR,
    Flag {
        name: "detailed",
        arity: Arity::Bool,
        help: "Show all tags of each member.",
    },
    Flag {
        name: "status",
        arity: Arity::One,
        help: "Only members whose status matches this regular expression.",
    },
    Flag {
        name: "wan",
        arity: Arity::Bool,
        help: "List the WAN pool.",
    },
];

/// One member as the CLI reads it from `/v1/agent/members`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Name.
    pub name: String,
    /// `addr:port`.
    pub address: String,
    /// alive / leaving / left / failed.
    pub status: String,
    /// Tags, sorted.
    pub tags: Vec<(String, String)>,
}

impl Row {
    fn tag(&self, k: &str) -> &str {
        self.tags
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    fn kind(&self) -> &'static str {
        match self.tag("role") {
            "consul" => "server",
            "node" => "client",
            _ => "unknown",
        }
    }
}

/// Parses the `/v1/agent/members` JSON.
pub fn parse_rows(body: &[u8]) -> Result<Vec<Row>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("bad JSON: {e}"))?;
    let arr = v.as_array().ok_or("expected a JSON array")?;
    arr.iter()
        .map(|m| {
            let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let addr = s("Addr");
            let port = m.get("Port").and_then(Value::as_u64).unwrap_or(0);
            let address = if addr.contains(':') {
                format!("[{addr}]:{port}")
            } else {
                format!("{addr}:{port}")
            };
            let status = match m.get("Status").and_then(Value::as_u64) {
                Some(1) => "alive",
                Some(2) => "leaving",
                Some(3) => "left",
                Some(4) => "failed",
                _ => "none",
            };
            let mut tags: Vec<(String, String)> = m
                .get("Tags")
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            tags.sort();
            Ok(Row {
                name: s("Name"),
                address,
                status: status.to_string(),
                tags,
            })
        })
        .collect()
}

/// Lays rows out in columns separated by two spaces (as Consul's columnize does).
pub fn columnize(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Renders the table (`detailed` = tags column instead of type/build/protocol/dc).
pub fn render(mut rows: Vec<Row>, detailed: bool) -> String {
    rows.sort_by(|a, b| (a.kind() != "server", &a.name).cmp(&(b.kind() != "server", &b.name)));
    let mut table = Vec::with_capacity(rows.len() + 1);
    if detailed {
        table.push(vec![
            "Node".into(),
            "Address".into(),
            "Status".into(),
            "Tags".into(),
        ]);
        for r in &rows {
            let tags: Vec<String> = r.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            table.push(vec![
                r.name.clone(),
                r.address.clone(),
                r.status.clone(),
                tags.join(","),
            ]);
        }
    } else {
        table.push(
            [
                "Node", "Address", "Status", "Type", "Build", "Protocol", "DC",
            ]
            .map(String::from)
            .to_vec(),
        );
        for r in &rows {
            let kind = r.kind();
            let mut row = vec![
                r.name.clone(),
                r.address.clone(),
                r.status.clone(),
                kind.to_string(),
            ];
            if kind != "unknown" {
                let build = r.tag("build").split(':').next().unwrap_or("");
                let build = if build.is_empty() { "< 0.3" } else { build };
                row.extend([
                    build.to_string(),
                    r.tag("vsn").to_string(),
                    r.tag("dc").to_string(),
                ]);
            }
            table.push(row);
        }
    }
    columnize(&table)
}

/// `murmur members`.
pub fn main(args: &[String]) -> i32 {
    let p = match flags::parse(args, SPEC) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if !p.args.is_empty() {
        eprintln!("Error found unexpected args: {:?}", p.args);
        return 1;
    }
    let status_re = match p.get("status").map(Regex::new).transpose() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Failed to compile status regexp: {e}");
            return 1;
        }
    };
    let Some(t) = target(p.get("http-addr")) else {
        return 1;
    };
    let path = if p.is_set("wan") {
        "/v1/agent/members?wan=1"
    } else {
        "/v1/agent/members"
    };
    let rows = match t.call("GET", path) {
        Ok(r) if r.status == 200 => parse_rows(&r.body),
        Ok(r) => Err(format!(
            "Unexpected response code: {} ({})",
            r.status,
            r.text()
        )),
        Err(e) => Err(e),
    };
    let mut rows = match rows {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error retrieving members: {e}");
            return 1;
        }
    };
    if let Some(re) = &status_re {
        rows.retain(|r| re.is_match(&r.status));
    }
    if rows.is_empty() {
        return 2;
    }
    print!("{}", render(rows, p.is_set("detailed")));
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"[
      {"Name":"agent-two","Addr":"127.0.0.11","Port":8301,"Status":1,
       "Tags":{"role":"node","dc":"dc1","build":"0.1.0:dev","vsn":"2"}},
      {"Name":"agent-one","Addr":"127.0.0.10","Port":8301,"Status":4,
       "Tags":{"role":"consul","dc":"dc1","build":"0.1.0:dev","vsn":"2","port":"8300"}}
    ]"#;

    #[test]
    fn renders_like_consul() {
        let rows = parse_rows(BODY.as_bytes()).unwrap();
        let out = render(rows.clone(), false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "Node       Address          Status  Type    Build  Protocol  DC"
        );
        assert_eq!(
            lines[1],
            "agent-one  127.0.0.10:8301  failed  server  0.1.0  2         dc1"
        );
        assert_eq!(
            lines[2],
            "agent-two  127.0.0.11:8301  alive   client  0.1.0  2         dc1"
        );
        let d = render(rows, true);
        assert!(
            d.lines()
                .next()
                .unwrap()
                .starts_with("Node       Address          Status  Tags")
        );
        assert!(d.contains("build=0.1.0:dev,dc=dc1,port=8300,role=consul,vsn=2"));
        assert!(parse_rows(b"{}").is_err());
    }
}
