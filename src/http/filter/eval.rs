//! Evaluates a filter over one element of a listing, as its JSON shows it.
//!
//! go-bexpr works on Go types; here the JSON stands in for them: a number or a bool field takes `==`
//! and `!=` only, a string adds `in` (substring) and `matches` (an unanchored regex), a list takes
//! `in` and the emptiness tests, and a map (fields named `...Meta` or `...TaggedAddresses`) takes the
//! emptiness tests, `in` on its keys, and any key as a further selector. A selector through a list of
//! objects is true when any element matches. A field the element does not have is an invalid selector,
//! unless it is a service's tagged addresses: an empty map is left out of the JSON, as Consul leaves it
//! out.

use regex::Regex;
use serde_json::Value;

use super::parse::{Expr, Op};
use super::{FilterError, go_quote};
use crate::util::flags::parse_go_bool;

/// Regexes compiled once per request, in the order their `matches` appear.
pub type Compiled = Vec<(Vec<u8>, Regex)>;

/// Distinct patterns one filter may compile, and what each may cost: a query string of a few KB must
/// not buy hundreds of MB of automata (go-bexpr has no such bound; Consul's servers pay it).
const MAX_PATTERNS: usize = 32;
const PATTERN_BYTES: usize = 256 * 1024;

/// Whether `v` passes `e`.
pub fn eval(e: &Expr, v: &Value, re: &mut Compiled) -> Result<bool, FilterError> {
    Ok(match e {
        Expr::And(terms) => {
            for t in terms {
                if !eval(t, v, re)? {
                    return Ok(false);
                }
            }
            true
        }
        Expr::Or(terms) => {
            for t in terms {
                if eval(t, v, re)? {
                    return Ok(true);
                }
            }
            false
        }
        Expr::Not(a) => !eval(a, v, re)?,
        Expr::Match {
            selector,
            op,
            value,
        } => term(selector, *op, value, v, re)?,
    })
}

/// The answer of one match term at `v`.
fn term(
    selector: &[String],
    op: Op,
    value: &Option<Vec<u8>>,
    v: &Value,
    re: &mut Compiled,
) -> Result<bool, FilterError> {
    let m = Match {
        path: selector,
        op,
        value: value.as_deref(),
    };
    m.at(v, 0, false, re)
}

/// Checks every term of `e` against `specimen` (one element of the listing's type), whatever the
/// answers: a selector, operator, value or pattern that does not fit is an error.
pub fn check(e: &Expr, specimen: &Value, re: &mut Compiled) -> Result<(), FilterError> {
    match e {
        Expr::And(terms) | Expr::Or(terms) => terms.iter().try_for_each(|t| check(t, specimen, re)),
        Expr::Not(a) => check(a, specimen, re),
        Expr::Match {
            selector,
            op,
            value,
        } => term(selector, *op, value, specimen, re).map(|_| ()),
    }
}

struct Match<'a> {
    path: &'a [String],
    op: Op,
    /// The value's bytes: UTF-8, or not (from Go's byte escapes), as a Go string may be.
    value: Option<&'a [u8]>,
}

/// Map-typed fields: any key may follow them in a selector.
fn is_map_field(name: &str) -> bool {
    name.ends_with("Meta") || name.ends_with("TaggedAddresses")
}

impl Match<'_> {
    fn selector(&self) -> String {
        self.path.join(".")
    }

    fn invalid(&self) -> FilterError {
        FilterError::Selector(self.selector())
    }

    fn bad_op(&self) -> FilterError {
        FilterError::Operator(self.op.name(), self.selector())
    }

    /// Evaluates at `v`, the value reached after `path[..i]`; `in_map`: `v` is a map's value, so a
    /// missing key is absent, not invalid.
    fn at(
        &self,
        v: &Value,
        i: usize,
        in_map: bool,
        re: &mut Compiled,
    ) -> Result<bool, FilterError> {
        if i == self.path.len() {
            return self.leaf(v, re);
        }
        let name = &self.path[i];
        match v {
            Value::Array(items) if items.iter().all(Value::is_object) => {
                // Any element; none when the list is empty.
                for item in items {
                    if self.at(item, i, false, re)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Value::Object(fields) if in_map => match fields.get(name) {
                Some(x) => self.at(x, i + 1, false, re),
                None => Ok(self.absent()),
            },
            Value::Object(fields) => match fields.get(name) {
                Some(x) => {
                    let map = is_map_field(name);
                    if map && x.is_null() && i + 1 < self.path.len() {
                        return Ok(self.absent());
                    }
                    self.at(x, i + 1, map, re)
                }
                // An empty map Consul leaves out of its JSON (omitempty) is still a map to go-bexpr.
                None if matches!(name.as_str(), "TaggedAddresses" | "ServiceTaggedAddresses") => {
                    self.at(&Value::Null, i + 1, true, re)
                }
                None => Err(self.invalid()),
            },
            Value::Null if in_map => Ok(self.absent()),
            _ => Err(self.invalid()),
        }
    }

    /// A map key that is not there: go-bexpr 0.1 answers false for `==`, `in` and `is not empty`
    /// and true for every other operator (`matches` included).
    fn absent(&self) -> bool {
        !matches!(self.op, Op::Equal | Op::In | Op::IsNotEmpty)
    }

    fn leaf(&self, v: &Value, re: &mut Compiled) -> Result<bool, FilterError> {
        let raw = self.value.unwrap_or_default();
        match (self.op, v) {
            (
                Op::IsEmpty | Op::IsNotEmpty,
                Value::String(_) | Value::Number(_) | Value::Bool(_),
            ) => Err(self.bad_op()),
            (Op::IsEmpty | Op::IsNotEmpty, _) => {
                let empty = match v {
                    Value::Null => true,
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.is_empty(),
                    _ => false,
                };
                Ok(empty == (self.op == Op::IsEmpty))
            }
            (Op::Equal | Op::NotEqual, Value::Array(_) | Value::Object(_)) => Err(self.bad_op()),
            (Op::Equal | Op::NotEqual, _) => Ok(self.equals(v, raw)? == (self.op == Op::Equal)),
            (Op::In | Op::NotIn, Value::String(s)) => {
                Ok(contains(s.as_bytes(), raw) == (self.op == Op::In))
            }
            (Op::In | Op::NotIn, Value::Array(items)) => {
                let mut found = false;
                for item in items {
                    if item.is_object() || item.is_array() {
                        return Err(self.bad_op());
                    }
                    if self.equals(item, raw)? {
                        found = true;
                        break;
                    }
                }
                Ok(found == (self.op == Op::In))
            }
            (Op::In | Op::NotIn, Value::Object(o)) => {
                let found = std::str::from_utf8(raw).is_ok_and(|k| o.contains_key(k));
                Ok(found == (self.op == Op::In))
            }
            // A null list or map holds nothing.
            (Op::In | Op::NotIn, Value::Null) => Ok(self.op == Op::NotIn),
            (Op::Matches | Op::NotMatches, Value::String(s)) => {
                let hit = compiled(re, raw)?.is_match(s);
                Ok(hit == (self.op == Op::Matches))
            }
            _ => Err(self.bad_op()),
        }
    }

    /// `v` equals the written value coerced to `v`'s type (a null string field reads as "").
    fn equals(&self, v: &Value, raw: &[u8]) -> Result<bool, FilterError> {
        let coerce = |why: String| FilterError::Coerce(raw.to_vec(), self.selector(), why);
        // Bytes outside UTF-8 are no bool or number.
        let text = std::str::from_utf8(raw).ok();
        Ok(match v {
            Value::String(s) => s.as_bytes() == raw,
            Value::Null => raw.is_empty(),
            Value::Bool(b) => {
                *b == text.and_then(parse_go_bool).ok_or_else(|| {
                    coerce(format!(
                        "strconv.ParseBool: parsing {}: invalid syntax",
                        go_quote(raw)
                    ))
                })?
            }
            Value::Number(n) => match n.as_i64() {
                Some(i) => {
                    i == text
                        .map_or(Err(IntError::Syntax), parse_int)
                        .map_err(|why| {
                            coerce(format!(
                                "strconv.ParseInt: parsing {}: {}",
                                go_quote(raw),
                                why.go_text()
                            ))
                        })?
                }
                None => {
                    let f: f64 = text.and_then(|t| t.parse().ok()).ok_or_else(|| {
                        coerce(format!(
                            "strconv.ParseFloat: parsing {}: invalid syntax",
                            go_quote(raw)
                        ))
                    })?;
                    n.as_f64() == Some(f)
                }
            },
            _ => false,
        })
    }
}

/// Whether `needle` occurs in `hay`, byte for byte (Go's `strings.Contains`; on UTF-8 text the same as
/// a substring test, and a needle outside UTF-8 may still match part of a character).
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn compiled<'a>(re: &'a mut Compiled, pattern: &[u8]) -> Result<&'a Regex, FilterError> {
    let at = match re.iter().position(|(p, _)| p == pattern) {
        Some(i) => i,
        None => {
            if re.len() == MAX_PATTERNS {
                return Err(FilterError::Regex(
                    pattern.to_vec(),
                    format!("more than {MAX_PATTERNS} distinct patterns in one filter"),
                ));
            }
            // Go's regexp refuses a pattern outside UTF-8, naming the rest of it from the first bad byte.
            let text = std::str::from_utf8(pattern).map_err(|e| {
                let rest = String::from_utf8_lossy(&pattern[e.valid_up_to()..]);
                FilterError::Regex(
                    pattern.to_vec(),
                    format!("error parsing regexp: invalid UTF-8: `{rest}`"),
                )
            })?;
            let r = regex::RegexBuilder::new(text)
                .size_limit(PATTERN_BYTES)
                .dfa_size_limit(PATTERN_BYTES)
                .build()
                .map_err(|e| FilterError::Regex(pattern.to_vec(), e.to_string()))?;
            re.push((pattern.to_vec(), r));
            re.len() - 1
        }
    };
    Ok(&re[at].1)
}

/// Why Go's `strconv.ParseInt` refuses a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntError {
    /// Not a number in any base it reads.
    Syntax,
    /// A number, outside 64 bits.
    Range,
}

impl IntError {
    /// The end of Go's error text.
    fn go_text(self) -> &'static str {
        match self {
            IntError::Syntax => "invalid syntax",
            IntError::Range => "value out of range",
        }
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`: a sign, then decimal, `0x`, `0o`/`0`, or `0b` digits, with `_`
/// between digits.
fn parse_int(s: &str) -> Result<i64, IntError> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.contains('_') && !separators_ok(digits) {
        return Err(IntError::Syntax);
    }
    let lower = digits.replace('_', "").to_ascii_lowercase();
    let (radix, body) = if let Some(b) = lower.strip_prefix("0x") {
        (16, b)
    } else if let Some(b) = lower.strip_prefix("0b") {
        (2, b)
    } else if let Some(b) = lower.strip_prefix("0o") {
        (8, b)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if body.is_empty() || body.starts_with(['+', '-']) {
        return Err(IntError::Syntax);
    }
    let magnitude = i128::from_str_radix(body, radix).map_err(|e| match e.kind() {
        std::num::IntErrorKind::PosOverflow => IntError::Range,
        _ => IntError::Syntax,
    })?;
    i64::try_from(if neg { -magnitude } else { magnitude }).map_err(|_| IntError::Range)
}

/// Whether the `_` in `digits` (a number without its sign) are where Go's base-0 parsing allows them:
/// each between two digits, or between a `0b`/`0o`/`0x` prefix and a digit.
fn separators_ok(digits: &str) -> bool {
    let b = digits.as_bytes();
    let prefixed = b.len() >= 2 && b[0] == b'0' && matches!(b[1] | 0x20, b'b' | b'o' | b'x');
    let hex = prefixed && b[1] | 0x20 == b'x';
    // A prefix counts as a digit: `0x_1f` is allowed.
    let (mut after_digit, mut after_separator) = (prefixed, false);
    for &c in &b[if prefixed { 2 } else { 0 }..] {
        let digit = c.is_ascii_digit() || (hex && c.is_ascii_hexdigit());
        if c == b'_' {
            if !after_digit {
                return false;
            }
            (after_digit, after_separator) = (false, true);
        } else {
            if after_separator && !digit {
                return false;
            }
            (after_digit, after_separator) = (digit, false);
        }
    }
    !after_separator
}
