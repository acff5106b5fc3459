//! `?filter=`: Consul's boolean filter expressions over a listing's elements (go-bexpr 0.1's grammar
//! and answers). An element is listed when it passes the filter and `?tag`, `?node-meta` and
//! `?passing`; the index is the listing's, as in Consul.
//!
//! As go-bexpr checks a filter against the element's Go type when it is created, a filter is checked
//! against a specimen of the listing's elements before the read waits or lists anything, so a wrong
//! selector fails on an empty listing too. The agent's own maps (`/v1/agent/services|checks`) are
//! checked against their elements only: they never wait.

mod eval;
mod parse;
mod shapes;

pub use shapes::Shape;

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::error::{ApiError, server_error};

/// Deepest nesting of parentheses and `not`s a filter may have (chains of `and`/`or` are flat).
const MAX_DEPTH: usize = 256;

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// The text does not parse (position and what was expected).
    Parse(String),
    /// The selector names no field of the listing's elements.
    Selector(String),
    /// The operator does not apply to the selected field's type.
    Operator(&'static str, String),
    /// The value (its bytes) does not convert to the selected field's type.
    Coerce(Vec<u8>, String, String),
    /// A `matches` pattern (its bytes) that does not compile.
    Regex(Vec<u8>, String),
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilterError::Parse(m) => write!(f, "{m}"),
            FilterError::Selector(s) => {
                let s = go_quote(s.as_bytes());
                write!(f, "Selector {s} is not valid")
            }
            FilterError::Operator(op, s) => {
                let s = go_quote(s.as_bytes());
                write!(f, "Invalid match operator {op:?} for selector {s}")
            }
            FilterError::Coerce(v, s, why) => {
                let (v, s) = (go_quote(v), go_quote(s.as_bytes()));
                write!(f, "Failed to coerce value {v} for selector {s}: {why}")
            }
            FilterError::Regex(p, why) => {
                let p = go_quote(p);
                write!(f, "Failed to compile regular expression {p}: {why}")
            }
        }
    }
}

/// `bytes` quoted as Go's `%q` (`strconv.Quote`) writes a string: `\xHH` for a byte outside UTF-8 and
/// for ASCII controls, the short escapes, and `\u`/`\U` for other characters that do not print (see
/// [`prints`]).
pub fn go_quote(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                '\u{07}' => out.push_str("\\a"),
                '\u{08}' => out.push_str("\\b"),
                '\u{0c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{0b}' => out.push_str("\\v"),
                c if prints(c) => out.push(c),
                c if (c as u32) < 0x80 => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if (c as u32) < 0x10000 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}

/// Whether Go's `unicode.IsPrint` holds for `c`, closely: the space, and no control, other space,
/// format character (soft hyphen, zero-width and direction marks, word joiners, BOM) or private-use
/// character. Unassigned code points, which Go escapes too, print here: telling them apart needs
/// Unicode's tables.
fn prints(c: char) -> bool {
    let format = matches!(
        c,
        '\u{ad}'
            | '\u{600}'..='\u{605}'
            | '\u{61c}'
            | '\u{6dd}'
            | '\u{70f}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    );
    let private = matches!(c, '\u{e000}'..='\u{f8ff}' | '\u{f0000}'..);
    c == ' ' || !(c.is_control() || c.is_whitespace() || format || private)
}

impl From<FilterError> for ApiError {
    /// Consul answers a bad filter with a 500 and the evaluator's text (hashicorp/consul #7338).
    fn from(e: FilterError) -> ApiError {
        server_error(format!(
            "Failed to create boolean expression evaluator: {e}"
        ))
    }
}

/// A parsed filter.
pub struct Filter {
    expr: parse::Expr,
    /// Its `matches` patterns, compiled once per request however many elements it judges.
    compiled: std::cell::RefCell<eval::Compiled>,
}

impl Filter {
    /// Parses `text`.
    pub fn new(text: &str) -> Result<Filter, FilterError> {
        Ok(Filter {
            expr: parse::parse(text)?,
            compiled: Default::default(),
        })
    }

    /// The request's `?filter` for a listing of `shape`, checked against a specimen of it.
    pub fn for_listing(
        q: &HashMap<String, String>,
        shape: Shape,
    ) -> Result<Option<Filter>, ApiError> {
        let filter = Filter::from_query(q)?;
        if let Some(f) = &filter {
            eval::check(
                &f.expr,
                &shapes::specimen(shape),
                &mut f.compiled.borrow_mut(),
            )?;
        }
        Ok(filter)
    }

    /// The request's `?filter`, if it has a non-empty one.
    pub fn from_query(q: &HashMap<String, String>) -> Result<Option<Filter>, ApiError> {
        match q.get("filter").map(String::as_str) {
            None | Some("") => Ok(None),
            Some(f) => Ok(Some(Filter::new(f)?)),
        }
    }

    /// Whether `v` passes.
    pub fn matches(&self, v: &Value) -> Result<bool, FilterError> {
        eval::eval(&self.expr, v, &mut self.compiled.borrow_mut())
    }

    /// The elements of `items` that pass, in order.
    pub fn retain(&self, items: Vec<Value>) -> Result<Vec<Value>, FilterError> {
        let mut out = Vec::with_capacity(items.len());
        for v in items {
            if self.matches(&v)? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The entries of `map` whose values pass (keys kept, as Consul filters a map's values).
    pub fn retain_values(
        &self,
        map: Map<String, Value>,
    ) -> Result<Map<String, Value>, FilterError> {
        let mut out = Map::new();
        for (k, v) in map {
            if self.matches(&v)? {
                out.insert(k, v);
            }
        }
        Ok(out)
    }
}

/// `items` that pass `filter` (all of them without one). The filter is parsed from the request
/// before any blocking wait, as Consul refuses a bad one at once.
pub fn keep(filter: &Option<Filter>, items: Vec<Value>) -> Result<Vec<Value>, ApiError> {
    match filter {
        Some(f) => Ok(f.retain(items)?),
        None => Ok(items),
    }
}

/// The entries of `map` whose values pass `filter` (all of them without one).
pub fn keep_values(
    filter: &Option<Filter>,
    map: Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    match filter {
        Some(f) => Ok(f.retain_values(map)?),
        None => Ok(map),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service_node(node: &str, tags: &[&str], port: u16, version: &str, status: &str) -> Value {
        json!({
            "Node": {"Node": node, "Address": "10.0.0.1", "Meta": {"rack": "r1"}},
            "Service": {"ID": "web", "Service": "web", "Tags": tags, "Port": port,
                        "Meta": {"version": version}, "EnableTagOverride": false},
            "Checks": [
                {"CheckID": "serfHealth", "Status": "passing"},
                {"CheckID": "service:web", "Status": status},
            ],
        })
    }

    fn nodes_passing(expr: &str) -> Result<Vec<String>, FilterError> {
        let items = vec![
            service_node("a", &["primary", "v1"], 80, "1", "passing"),
            service_node("b", &["v2"], 8080, "2", "critical"),
            service_node("c", &[], 443, "2", "warning"),
        ];
        Ok(Filter::new(expr)?
            .retain(items)?
            .iter()
            .map(|v| v["Node"]["Node"].as_str().unwrap().to_owned())
            .collect())
    }

    #[test]
    fn operators_on_strings_numbers_lists_and_maps() {
        let ok = |e: &str| nodes_passing(e).unwrap();
        assert_eq!(ok(r#"Node.Node == "a""#), ["a"]);
        assert_eq!(ok("Node.Node != a"), ["b", "c"]);
        assert_eq!(ok("Service.Port == 8080"), ["b"]);
        assert_eq!(
            ok(r#"Service.Port == "0x50""#),
            ["a"],
            "ParseInt with base 0"
        );
        // Go's digit separators, in quoted values (bexpr's number literals have none).
        assert_eq!(ok(r#"Service.Port == "8_080""#), ["b"]);
        assert_eq!(ok(r#"Service.Port == "0x_5_0""#), ["a"]);
        assert_eq!(ok(r#"Service.Port == "0_120""#), ["a"], "octal 120 is 80");
        assert_eq!(ok("Service.EnableTagOverride == false"), ["a", "b", "c"]);
        assert_eq!(ok("primary in Service.Tags"), ["a"]);
        assert_eq!(ok(r#"Service.Tags contains "v2""#), ["b"]);
        assert_eq!(ok("v2 not in Service.Tags"), ["a", "c"]);
        assert_eq!(ok("Service.Tags is empty"), ["c"]);
        assert_eq!(ok("Service.Tags is not empty"), ["a", "b"]);
        assert_eq!(ok(r#"Service.Meta.version == "2""#), ["b", "c"]);
        assert_eq!(ok(r#"Service.Meta["version"] == 1"#), ["a"]);
        assert_eq!(ok("version in Service.Meta"), ["a", "b", "c"]);
        assert_eq!(ok(r#"Node.Node matches "^[ab]$""#), ["a", "b"]);
        assert_eq!(ok(r#"Node.Node matches "b""#), ["b"], "unanchored");
        assert_eq!(ok(r#"Node.Address contains "0.0""#), ["a", "b", "c"]);
    }

    #[test]
    fn a_list_of_objects_matches_when_any_element_does() {
        let ok = |e: &str| nodes_passing(e).unwrap();
        assert_eq!(ok("Checks.Status == critical"), ["b"]);
        assert_eq!(ok("Checks.Status != passing"), ["b", "c"]);
        assert_eq!(ok("not Checks.Status == critical"), ["a", "c"]);
        assert_eq!(ok("Checks is not empty"), ["a", "b", "c"]);
    }

    #[test]
    fn logic_precedence_and_parentheses() {
        let ok = |e: &str| nodes_passing(e).unwrap();
        // and binds tighter than or.
        assert_eq!(
            ok("Node.Node == a or Node.Node == b and Service.Port == 1"),
            ["a"]
        );
        assert_eq!(
            ok("(Node.Node == a or Node.Node == b) and Service.Port == 8080"),
            ["b"]
        );
        assert_eq!(ok("not (Node.Node == a or Node.Node == b)"), ["c"]);
        assert_eq!(ok("not not Node.Node == a"), ["a"]);
        assert_eq!(ok("  ( Node.Node==c )  "), ["c"]);
    }

    #[test]
    fn a_missing_map_key_is_false_for_positive_tests_and_true_for_the_rest() {
        let ok = |e: &str| nodes_passing(e).unwrap();
        assert!(ok("Service.Meta.nope == x").is_empty());
        assert!(ok("x in Service.Meta.nope").is_empty());
        assert!(ok("Service.Meta.nope is not empty").is_empty());
        assert_eq!(ok("Service.Meta.nope != x").len(), 3);
        assert_eq!(ok("Service.Meta.nope is empty").len(), 3);
        assert_eq!(ok(r#"Service.Meta.nope matches "x""#).len(), 3);
    }

    #[test]
    fn a_map_left_out_of_the_json_is_an_empty_map() {
        let ok = |e: &str| nodes_passing(e).unwrap();
        assert_eq!(ok("Service.TaggedAddresses is empty").len(), 3);
        assert!(ok("Service.TaggedAddresses is not empty").is_empty());
        assert!(ok("lan in Service.TaggedAddresses").is_empty());
        assert!(ok("Service.TaggedAddresses.lan.Address == x").is_empty());
        assert_eq!(ok("Service.TaggedAddresses.lan.Address != x").len(), 3);
        assert!(
            nodes_passing("Service.Nope == x").is_err(),
            "other fields stay invalid"
        );
    }

    #[test]
    fn errors_say_what_consul_says() {
        let err = |e: &str| nodes_passing(e).unwrap_err().to_string();
        assert_eq!(
            err("Service.Bogus == x"),
            r#"Selector "Service.Bogus" is not valid"#
        );
        assert_eq!(
            err("Service.Tags == x"),
            r#"Invalid match operator "Equal" for selector "Service.Tags""#
        );
        assert_eq!(
            err("Service.Port == abc"),
            r#"Failed to coerce value "abc" for selector "Service.Port": strconv.ParseInt: parsing "abc": invalid syntax"#
        );
        assert_eq!(
            err(r#"Service.Port == "9223372036854775808""#),
            r#"Failed to coerce value "9223372036854775808" for selector "Service.Port": strconv.ParseInt: parsing "9223372036854775808": value out of range"#
        );
        let huge = "9".repeat(60);
        assert!(err(&format!(r#"Service.Port == "{huge}""#)).ends_with("value out of range"));
        assert_eq!(
            nodes_passing(r#"Service.Port == "-9223372036854775808""#).unwrap(),
            Vec::<String>::new()
        );
        for misplaced in ["_80", "80_", "8__0", "0x_", "8_x"] {
            assert_eq!(
                err(&format!(r#"Service.Port == "{misplaced}""#)),
                format!(
                    r#"Failed to coerce value "{misplaced}" for selector "Service.Port": strconv.ParseInt: parsing "{misplaced}": invalid syntax"#
                )
            );
        }
        assert_eq!(
            err("Node.Node is empty"),
            r#"Invalid match operator "Is Empty" for selector "Node.Node""#
        );
        assert!(
            err(r#"Node.Node matches "(""#).starts_with("Failed to compile regular expression")
        );
        for bad in [
            "Node.Node",
            "Node.Node ==",
            "Node.Node == a AND Node.Node == b",
            "not(Node.Node == a)",
            "Node.Node == 08",
            "Node.Node == 1abc",
            "Service.Meta[version] == 1",
            r#""a" == Node.Node"#,
            "(Node.Node == a",
            "Node.Node == a)",
            r#"Node.Node == "unterminated"#,
        ] {
            assert!(
                matches!(Filter::new(bad), Err(FilterError::Parse(_))),
                "{bad:?} parsed"
            );
        }
        assert_eq!(
            Filter::new("Node.Node ==").err().unwrap().to_string(),
            "1:13 (12): no match found, expected: \"(\", \"not\", a selector or a value"
        );
        let api: ApiError = FilterError::Selector("X".into()).into();
        assert_eq!(api.0, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            api.1,
            "Failed to create boolean expression evaluator: Selector \"X\" is not valid"
        );
    }

    #[test]
    fn bytes_outside_utf8_are_kept_as_go_keeps_them() {
        let node = |name: &str| json!({"Node": {"Node": name, "Meta": {"é": "1"}}});
        let yes = |f: &str, v: &Value| Filter::new(f).unwrap().matches(v).unwrap();
        // `\xff` is one byte, not U+FFFD: it equals no text, and its opposite holds.
        assert!(!yes(r#"Node.Node == "\xff""#, &node("\u{fffd}")));
        assert!(yes(r#"Node.Node != "\xff""#, &node("\u{fffd}")));
        // A substring test is byte-wise: the first byte of "é" (c3 a9) is in it, as in Go.
        assert!(yes(r#""\xc3" in Node.Node"#, &node("café")));
        assert!(yes(r#"Node.Node contains "\251""#, &node("café")));
        assert!(!yes(r#""\xc3" in Node.Node"#, &node("cafe")));
        assert!(
            !yes(r#""\xc3" in Node.Meta"#, &node("x")),
            "no key is half a character"
        );
        assert!(yes(r#""\xc3\xa9" in Node.Meta"#, &node("x")));
        // Go's regexp refuses such a pattern; a number or bool cannot be parsed from it.
        let err = |f: &str, v: &Value| Filter::new(f).unwrap().matches(v).unwrap_err().to_string();
        assert_eq!(
            err(r#"Node.Node matches "a\xffb""#, &node("a")),
            "Failed to compile regular expression \"a\\xffb\": error parsing regexp: invalid UTF-8: \
             `\u{fffd}b`"
        );
        assert_eq!(
            err(r#"Port == "1\xff""#, &json!({"Port": 1})),
            r#"Failed to coerce value "1\xff" for selector "Port": strconv.ParseInt: parsing "1\xff": invalid syntax"#
        );
    }

    #[test]
    fn values_in_errors_are_quoted_as_go_quotes_them() {
        assert_eq!(
            go_quote("a\"\\\t\u{0}\u{7f}\u{80}é\u{a0}\u{200b}\u{feff}\u{e000}\u{1f600}".as_bytes()),
            r#""a\"\\\t\x00\x7f\u0080é\u00a0\u200b\ufeff\ue000😀""#
        );
        assert_eq!(go_quote(b"\xe2\x82 \xff"), r#""\xe2\x82 \xff""#);
    }

    #[test]
    fn strings_decode_go_escapes_and_raw_strings_do_not() {
        let f = Filter::new(r#"Node.Node == "a\tb\u00e9""#).unwrap();
        assert!(f.matches(&json!({"Node": {"Node": "a\tbé"}})).unwrap());
        let f = Filter::new(r"Node.Node == `a\tb`").unwrap();
        assert!(f.matches(&json!({"Node": {"Node": "a\\tb"}})).unwrap());
        // `\x` and octal escapes are bytes, as in Go: these two are the UTF-8 of "é".
        for bytes in [r#""\xc3\xa9""#, r#""\303\251""#] {
            let f = Filter::new(&format!("Node.Node == {bytes}")).unwrap();
            assert!(
                f.matches(&json!({"Node": {"Node": "é"}})).unwrap(),
                "{bytes}"
            );
            assert!(
                !f.matches(&json!({"Node": {"Node": "Ã©"}})).unwrap(),
                "{bytes}"
            );
        }
        // Go drops carriage returns from raw strings.
        let f = Filter::new("Node.Node == `a\rb`").unwrap();
        assert!(f.matches(&json!({"Node": {"Node": "ab"}})).unwrap());
        // What strconv.Unquote refuses: an octal escape above 255, \' in a double-quoted string, a
        // surrogate, a line break.
        for bad in [r#""\400""#, r#""a\'b""#, r#""\ud800""#, "\"a\nb\""] {
            let e = Filter::new(&format!("Node.Node == {bad}"))
                .err()
                .unwrap()
                .to_string();
            assert_eq!(e, "1:14 (13): rule \"string\": invalid syntax", "{bad}");
        }
        assert_eq!(
            Filter::new(r#"Node.Node == "abc"#)
                .err()
                .unwrap()
                .to_string(),
            "1:18 (17): rule \"string\": Unterminated string literal"
        );
        // Columns count characters, the offset bytes.
        assert_eq!(
            Filter::new("Node.Node == \"é\" ==")
                .err()
                .unwrap()
                .to_string(),
            "1:18 (18): no match found, expected: \"and\", \"or\" or end of input"
        );
    }

    #[test]
    fn a_filter_is_checked_against_the_listings_type_before_any_element() {
        let q = |f: &str| HashMap::from([("filter".to_string(), f.to_string())]);
        let fits = [
            (
                Shape::CheckServiceNode,
                "Service.Tags contains x and Checks.Status == passing",
            ),
            (
                Shape::CheckServiceNode,
                "Node.Meta.rack == r1 or Service.Meta.v is empty",
            ),
            (
                Shape::ServiceNode,
                "ServicePort == 80 and ServiceMeta.version != 2",
            ),
            (
                Shape::Node,
                r#"Meta["env"] == prod and Node matches "^web""#,
            ),
            (
                Shape::HealthCheck,
                "Status == critical and ServiceTags is empty",
            ),
            (
                Shape::NodeService,
                "Service == web and Weights.Passing == 1",
            ),
        ];
        for (shape, f) in fits {
            assert!(Filter::for_listing(&q(f), shape).is_ok(), "{shape:?}: {f}");
        }
        let refused = [
            (
                Shape::CheckServiceNode,
                "Node.Node == a or Service.Bogus == 1",
                "Selector \"Service.Bogus\" is not valid",
            ),
            (
                Shape::ServiceNode,
                "ServicePort == abc",
                "Failed to coerce value \"abc\"",
            ),
            (
                Shape::HealthCheck,
                "ServiceTags == x",
                "Invalid match operator \"Equal\"",
            ),
            (
                Shape::Node,
                r#"Node matches "(""#,
                "Failed to compile regular expression",
            ),
        ];
        for (shape, f, why) in refused {
            let e = Filter::for_listing(&q(f), shape).err().unwrap();
            assert!(e.1.contains(why), "{shape:?}: {f}: {}", e.1);
        }
    }

    #[test]
    fn long_generated_chains_cost_no_depth() {
        let terms: Vec<String> = (0..2000).map(|i| format!("Node.Node == n{i}")).collect();
        let f = Filter::new(&format!("{} or Node.Node == b", terms.join(" or "))).unwrap();
        assert!(f.matches(&json!({"Node": {"Node": "b"}})).unwrap());
        assert!(!f.matches(&json!({"Node": {"Node": "z"}})).unwrap());
        assert!(matches!(Filter::new("   "), Err(FilterError::Parse(_))));
    }

    #[test]
    fn a_filter_compiles_a_bounded_number_of_patterns() {
        let many: Vec<String> = (0..40)
            .map(|i| format!("Node.Node matches \"^x{i}$\""))
            .collect();
        let f = Filter::new(&many.join(" or ")).unwrap();
        let err = f.matches(&json!({"Node": {"Node": "y"}})).unwrap_err();
        assert!(
            err.to_string().contains("more than 32 distinct patterns"),
            "{err}"
        );
        let f = Filter::new(&many[..32].join(" or ")).unwrap();
        assert!(!f.matches(&json!({"Node": {"Node": "y"}})).unwrap());
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!("{}Node.Node == a{}", "(".repeat(5000), ")".repeat(5000));
        assert!(matches!(Filter::new(&deep), Err(FilterError::Parse(_))));
        let nots = format!("{}Node.Node == a", "not ".repeat(5000));
        assert!(matches!(Filter::new(&nots), Err(FilterError::Parse(_))));
    }

    #[test]
    fn map_values_keep_their_keys() {
        let services = json!({
            "web-1": {"ID": "web-1", "Service": "web", "Port": 80},
            "db-1": {"ID": "db-1", "Service": "db", "Port": 5432},
        });
        let Value::Object(m) = services else {
            unreachable!()
        };
        let kept = Filter::new("Service == db")
            .unwrap()
            .retain_values(m)
            .unwrap();
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["db-1"]);
    }
}
