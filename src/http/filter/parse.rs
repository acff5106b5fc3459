//! The grammar of Consul's filter expressions (go-bexpr 0.1, the version Consul builds with):
//! `or` below `and` below `not` below parentheses; keywords are lower-case and need whitespace after
//! them. A chain of `and`s (or `or`s) is one node with many terms, so a long generated filter costs no
//! depth; only parentheses and `not` nest.

use super::{FilterError, MAX_DEPTH};

/// One step of a selector: `.Name` or `["key"]`.
pub type Selector = Vec<String>;

/// A match operator, named as go-bexpr names it in its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `is empty`
    IsEmpty,
    /// `is not empty`
    IsNotEmpty,
    /// `in` / `contains`
    In,
    /// `not in` / `not contains`
    NotIn,
    /// `matches`
    Matches,
    /// `not matches`
    NotMatches,
}

impl Op {
    /// go-bexpr's name for the operator.
    pub fn name(self) -> &'static str {
        match self {
            Op::Equal => "Equal",
            Op::NotEqual => "Not Equal",
            Op::IsEmpty => "Is Empty",
            Op::IsNotEmpty => "Is Not Empty",
            Op::In => "In",
            Op::NotIn => "Not In",
            Op::Matches => "Matches",
            Op::NotMatches => "Not Matches",
        }
    }
}

/// A parsed expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// Every term.
    And(Vec<Expr>),
    /// Any term.
    Or(Vec<Expr>),
    /// The opposite.
    Not(Box<Expr>),
    /// A selector, an operator and (but for the emptiness tests) a value as written.
    Match {
        /// The field path.
        selector: Selector,
        /// The operator.
        op: Op,
        /// The value's bytes (quotes removed, escapes decoded; Go's `\x` and octal escapes may leave
        /// them outside UTF-8, as a Go string may be); coerced to the field's type later.
        value: Option<Vec<u8>>,
    },
}

/// Parses a whole expression.
pub fn parse(input: &str) -> Result<Expr, FilterError> {
    let mut p = Parser {
        s: input.as_bytes(),
        text: input,
        at: 0,
        depth: 0,
    };
    p.ws();
    let e = p.or()?;
    p.ws();
    if p.at < p.s.len() {
        return Err(p.fail("no match found, expected: \"and\", \"or\" or end of input"));
    }
    Ok(e)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    at: usize,
    depth: usize,
}

/// An operand before the operator: a selector-shaped word may be either side of a match.
enum Operand {
    Selector(Selector, String),
    Literal(Vec<u8>),
}

impl Parser<'_> {
    fn fail(&self, what: &str) -> FilterError {
        let line = 1 + self.s[..self.at].iter().filter(|&&b| b == b'\n').count();
        // Columns count characters, as pigeon's do; the offset counts bytes.
        let col = 1 + self.s[..self.at]
            .iter()
            .rev()
            .take_while(|&&b| b != b'\n')
            .filter(|&&b| b & 0xc0 != 0x80)
            .count();
        FilterError::Parse(format!("{line}:{col} ({}): {what}", self.at))
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    /// Skips whitespace; true if there was any.
    fn ws(&mut self) -> bool {
        let start = self.at;
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.at += 1;
        }
        self.at > start
    }

    /// Consumes keyword `kw` if it stands here followed by whitespace.
    fn keyword(&mut self, kw: &str) -> bool {
        let end = self.at + kw.len();
        if self.s.get(self.at..end) == Some(kw.as_bytes())
            && matches!(self.s.get(end), Some(b' ' | b'\t' | b'\r' | b'\n'))
        {
            self.at = end;
            self.ws();
            true
        } else {
            false
        }
    }

    /// Consumes keyword `kw` if it stands here and ends the word (whitespace, `)` or the end follow).
    fn last_keyword(&mut self, kw: &str) -> bool {
        let end = self.at + kw.len();
        if self.s.get(self.at..end) == Some(kw.as_bytes())
            && matches!(
                self.s.get(end),
                None | Some(b' ' | b'\t' | b'\r' | b'\n' | b')')
            )
        {
            self.at = end;
            true
        } else {
            false
        }
    }

    fn nest(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.fail("expression nested too deeply"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let terms = self.chain("or", Self::and)?;
        Ok(join(terms, Expr::Or))
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let terms = self.chain("and", Self::not)?;
        Ok(join(terms, Expr::And))
    }

    /// Terms read by `term`, separated by keyword `kw`.
    fn chain(
        &mut self,
        kw: &str,
        term: fn(&mut Self) -> Result<Expr, FilterError>,
    ) -> Result<Vec<Expr>, FilterError> {
        let mut terms = vec![term(self)?];
        loop {
            let save = self.at;
            if self.ws() && self.keyword(kw) {
                terms.push(term(self)?);
            } else {
                self.at = save;
                return Ok(terms);
            }
        }
    }

    fn not(&mut self) -> Result<Expr, FilterError> {
        self.nest()?;
        let e = if self.keyword("not") {
            Expr::Not(Box::new(self.not()?))
        } else if self.peek() == Some(b'(') {
            self.at += 1;
            self.ws();
            let inner = self.or()?;
            self.ws();
            if self.peek() != Some(b')') {
                return Err(self.fail("no match found, expected: \")\""));
            }
            self.at += 1;
            inner
        } else {
            self.matching()?
        };
        self.depth -= 1;
        Ok(e)
    }

    fn matching(&mut self) -> Result<Expr, FilterError> {
        let first = self.operand()?;
        let save = self.at;
        let spaced = self.ws();
        // `==` and `!=` need no spaces around them; the word operators do.
        for (sym, op) in [("==", Op::Equal), ("!=", Op::NotEqual)] {
            if self.s[self.at..].starts_with(sym.as_bytes()) {
                self.at += 2;
                self.ws();
                let selector = self.selector_of(first)?;
                let value = self.value()?;
                return Ok(Expr::Match {
                    selector,
                    op,
                    value: Some(value),
                });
            }
        }
        if !spaced {
            self.at = save;
            return Err(
                self.fail("no match found, expected: \"!=\", \".\", \"==\", \"[\" or whitespace")
            );
        }
        if self.keyword("is") {
            let op = if self.keyword("not") {
                Op::IsNotEmpty
            } else {
                Op::IsEmpty
            };
            if !self.last_keyword("empty") {
                return Err(self.fail("no match found, expected: \"empty\""));
            }
            let selector = self.selector_of(first)?;
            return Ok(Expr::Match {
                selector,
                op,
                value: None,
            });
        }
        let negated = self.keyword("not");
        if self.keyword("in") {
            let value = match first {
                Operand::Selector(_, raw) => raw.into_bytes(),
                Operand::Literal(v) => v,
            };
            let selector = self.selector()?;
            let op = if negated { Op::NotIn } else { Op::In };
            return Ok(Expr::Match {
                selector,
                op,
                value: Some(value),
            });
        }
        let op = if self.keyword("contains") {
            if negated { Op::NotIn } else { Op::In }
        } else if self.keyword("matches") {
            if negated { Op::NotMatches } else { Op::Matches }
        } else {
            return Err(self.fail(
                "no match found, expected: \"!=\", \"==\", \"contains\", \"in\", \"is\", \"matches\" or \"not\"",
            ));
        };
        let selector = self.selector_of(first)?;
        let value = self.value()?;
        Ok(Expr::Match {
            selector,
            op,
            value: Some(value),
        })
    }

    fn selector_of(&self, o: Operand) -> Result<Selector, FilterError> {
        match o {
            Operand::Selector(s, _) => Ok(s),
            Operand::Literal(_) => Err(self.fail("no match found, expected: a selector")),
        }
    }

    fn operand(&mut self) -> Result<Operand, FilterError> {
        match self.peek() {
            Some(b'"' | b'`') => Ok(Operand::Literal(self.string()?)),
            Some(b'-' | b'0'..=b'9') => Ok(Operand::Literal(self.number()?.into_bytes())),
            Some(b) if b.is_ascii_alphabetic() => {
                let start = self.at;
                let sel = self.selector()?;
                Ok(Operand::Selector(sel, self.text[start..self.at].to_owned()))
            }
            _ => Err(self.fail("no match found, expected: \"(\", \"not\", a selector or a value")),
        }
    }

    /// A value: a quoted string, a number, or a bare selector-shaped word taken as text.
    fn value(&mut self) -> Result<Vec<u8>, FilterError> {
        match self.operand()? {
            Operand::Literal(v) => Ok(v),
            Operand::Selector(_, raw) => Ok(raw.into_bytes()),
        }
    }

    fn ident(&mut self) -> Result<String, FilterError> {
        let start = self.at;
        if !self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
            return Err(self.fail("no match found, expected: an identifier"));
        }
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.at += 1;
        }
        Ok(self.text[start..self.at].to_owned())
    }

    fn selector(&mut self) -> Result<Selector, FilterError> {
        let mut parts = vec![self.ident()?];
        loop {
            match self.peek() {
                Some(b'.') => {
                    self.at += 1;
                    parts.push(self.ident()?);
                }
                Some(b'[') => {
                    self.at += 1;
                    self.ws();
                    if !matches!(self.peek(), Some(b'"' | b'`')) {
                        return Err(self.fail("rule \"index\": Invalid index"));
                    }
                    // Map keys come from JSON, always UTF-8: an index outside it reads with U+FFFD
                    // in place of its bad bytes (in Go it names no key at all).
                    parts.push(String::from_utf8_lossy(&self.string()?).into_owned());
                    self.ws();
                    if self.peek() != Some(b']') {
                        return Err(self.fail("rule \"index\": Invalid index"));
                    }
                    self.at += 1;
                }
                _ => return Ok(parts),
            }
        }
    }

    fn number(&mut self) -> Result<String, FilterError> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let digits = |p: &mut Self| {
            let s = p.at;
            while p.peek().is_some_and(|b| b.is_ascii_digit()) {
                p.at += 1;
            }
            p.at - s
        };
        let int_start = self.at;
        let n = digits(self);
        let leading_zero = n > 1 && self.s[int_start] == b'0';
        let mut ok = n > 0 && !leading_zero;
        if ok && self.peek() == Some(b'.') {
            self.at += 1;
            ok = digits(self) > 0;
        }
        let ends = matches!(
            self.peek(),
            None | Some(b' ' | b'\t' | b'\r' | b'\n' | b')')
        );
        if !ok || !ends {
            self.at = start;
            return Err(self.fail("rule \"number\": Invalid number literal"));
        }
        Ok(self.text[start..self.at].to_owned())
    }

    /// A double-quoted string with Go's escapes (a quote inside ends it, as in go-bexpr), or a raw
    /// backtick string.
    fn string(&mut self) -> Result<Vec<u8>, FilterError> {
        let quote = self.s[self.at];
        let start = self.at + 1;
        let Some(len) = self.s[start..].iter().position(|&b| b == quote) else {
            // go-bexpr's predicate fails there once the rest of the input is read.
            self.at = self.s.len();
            return Err(self.fail("rule \"string\": Unterminated string literal"));
        };
        let body = &self.text[start..start + len];
        if quote == b'`' {
            self.at = start + len + 1;
            // Go drops carriage returns from raw strings.
            return Ok(body.replace('\r', "").into_bytes());
        }
        // strconv.Unquote's error is reported where the literal starts.
        let value = unescape(body).ok_or_else(|| self.fail("rule \"string\": invalid syntax"))?;
        self.at = start + len + 1;
        Ok(value)
    }
}

/// One term as it is, several as `make` joins them.
fn join(mut terms: Vec<Expr>, make: fn(Vec<Expr>) -> Expr) -> Expr {
    if terms.len() == 1 {
        terms.pop().expect("one term")
    } else {
        make(terms)
    }
}

/// A double-quoted string's body as Go's `strconv.Unquote` reads it (go-bexpr calls it): escapes
/// `\n \t \r \\ \a \b \f \v \uHHHH \UHHHHHHHH` give characters, `\xHH` and `\OOO` (at most 255)
/// give bytes, and a `\'` or a line break is a syntax error (`\"` cannot occur: a quote ends the
/// literal). The bytes are kept as they are, UTF-8 or not, as in a Go string.
fn unescape(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\n' {
            return None;
        }
        if c != '\\' {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            continue;
        }
        let e = chars.next()?;
        let simple = match e {
            'n' => Some(b'\n'),
            't' => Some(b'\t'),
            'r' => Some(b'\r'),
            '\\' => Some(b'\\'),
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'v' => Some(0x0b),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        let (digits, radix) = match e {
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            '0'..='7' => (3, 8),
            _ => return None,
        };
        let mut code = if radix == 8 { e.to_digit(8)? } else { 0 };
        let rest = if radix == 8 { digits - 1 } else { digits };
        for _ in 0..rest {
            code = code.checked_mul(radix)? + chars.next()?.to_digit(radix)?;
        }
        if matches!(e, 'u' | 'U') {
            out.extend_from_slice(char::from_u32(code)?.encode_utf8(&mut [0; 4]).as_bytes());
        } else {
            out.push(u8::try_from(code).ok()?);
        }
    }
    Some(out)
}
