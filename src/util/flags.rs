//! Go-style command-line flags as Consul spells them: `-flag`, `--flag`, `-flag=value`, `-flag value`.

/// A boolean as Go's `strconv.ParseBool` reads it (flags, query parameters, filter values).
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// Boolean: `-x` or `-x=true|false` (never a separate value, as in Go).
    Bool,
    /// One value; the last occurrence wins.
    One,
    /// Repeatable; every occurrence is kept.
    Many,
}

/// A flag a command accepts.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// Name without dashes.
    pub name: &'static str,
    /// Value handling.
    pub arity: Arity,
    /// One-line help.
    pub help: &'static str,
}

/// Parsed command line: flags in order of appearance, then positional arguments.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// `(name, value)` pairs; booleans carry "true"/"false".
    pub flags: Vec<(&'static str, String)>,
    /// Arguments after the last flag.
    pub args: Vec<String>,
}

impl Parsed {
    /// Last value of a flag.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable flag.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.flags
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Whether a boolean flag is set to true.
    pub fn is_set(&self, name: &str) -> bool {
        self.get(name) == Some("true")
    }
}

/// Parses `args` against `spec`. Like Go's `flag` package, parsing stops at the first non-flag or `--`.
/// `-h`/`-help` yields `Err` with the usage text.
pub fn parse(args: &[String], spec: &[Flag]) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        let Some(body) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            break;
        };
        if body.is_empty() || body.starts_with('-') {
            return Err(format!("bad flag syntax: {a}"));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if name == "h" || name == "help" {
            return Err(usage(spec));
        }
        let Some(f) = spec.iter().find(|f| f.name == name) else {
            return Err(format!("flag provided but not defined: -{name}"));
        };
        let value = match (f.arity, inline) {
            (Arity::Bool, None) => "true".to_string(),
            (Arity::Bool, Some(v)) => match parse_go_bool(&v) {
                Some(b) => b.to_string(),
                None => return Err(format!("invalid boolean value {v:?} for -{name}")),
            },
            (_, Some(v)) => v,
            (_, None) => {
                i += 1;
                args.get(i)
                    .cloned()
                    .ok_or_else(|| format!("flag needs an argument: -{name}"))?
            }
        };
        out.flags.push((f.name, value));
        i += 1;
    }
    out.args = args[i..].to_vec();
    Ok(out)
}

/// Usage text listing the flags.
pub fn usage(spec: &[Flag]) -> String {
    let mut s = String::from("Options:\n");
    for f in spec {
        let v = match f.arity {
            Arity::Bool => "",
            _ => "=<value>",
        };
        s.push_str(&format!("\n  -{}{}\n      {}\n", f.name, v, f.help));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &[Flag] = &[
        Flag {
            name: "server",
            arity: Arity::Bool,
            help: "",
        },
        Flag {
            name: "node",
            arity: Arity::One,
            help: "",
        },
        Flag {
            name: "join",
            arity: Arity::Many,
            help: "",
        },
    ];

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn consul_spellings() {
        let p = parse(
            &args("-server --node=a -join x --join y rest -node z"),
            SPEC,
        )
        .unwrap();
        assert!(p.is_set("server"));
        assert_eq!(p.get("node"), Some("a"));
        assert_eq!(p.all("join"), ["x", "y"]);
        assert_eq!(p.args, ["rest", "-node", "z"]);
        let p = parse(&args("-server=false -node b"), SPEC).unwrap();
        assert!(!p.is_set("server"));
        assert_eq!(p.get("node"), Some("b"));
    }

    #[test]
    fn errors_are_clear() {
        assert!(parse(&args("-nope"), SPEC).unwrap_err().contains("-nope"));
        assert!(
            parse(&args("-node"), SPEC)
                .unwrap_err()
                .contains("needs an argument")
        );
        assert!(
            parse(&args("-server=maybe"), SPEC)
                .unwrap_err()
                .contains("boolean")
        );
        assert!(parse(&args("-h"), SPEC).unwrap_err().contains("-join"));
    }
}
