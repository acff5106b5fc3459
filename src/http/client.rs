//! Minimal blocking HTTP/1.1 client the CLI uses to talk to a local agent (`-http-addr`, env vars).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The agent the CLI talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`.
    pub authority: String,
}

/// A response: status code and body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// First value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_string()
    }
}

impl Target {
    /// `-http-addr` if given, else `MURMUR_HTTP_ADDR`, else `CONSUL_HTTP_ADDR`, else 127.0.0.1:8500.
    pub fn resolve(flag: Option<&str>) -> Result<Self, String> {
        let raw = flag
            .map(str::to_owned)
            .or_else(|| std::env::var("MURMUR_HTTP_ADDR").ok())
            .or_else(|| std::env::var("CONSUL_HTTP_ADDR").ok())
            .unwrap_or_else(|| "127.0.0.1:8500".into());
        Self::parse(&raw)
    }

    /// Parses `host:port` or `http://host:port[/]`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.starts_with("https://") || raw.starts_with("unix://") {
            return Err(format!(
                "unsupported address {raw:?}: only http:// is supported"
            ));
        }
        let s = raw
            .strip_prefix("http://")
            .unwrap_or(raw)
            .trim_end_matches('/');
        if s.is_empty() || s.contains('/') {
            return Err(format!("invalid HTTP address {raw:?}"));
        }
        let authority = if s
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.ends_with(':') && p.parse::<u16>().is_ok())
        {
            s.to_string()
        } else {
            format!("{s}:8500")
        };
        Ok(Target { authority })
    }

    /// Sends one request without a body and reads the whole reply.
    pub fn call(&self, method: &str, path: &str) -> Result<Reply, String> {
        self.call_with_body(method, path, &[])
    }

    /// Sends one request with `body` and reads the whole reply.
    pub fn call_with_body(&self, method: &str, path: &str, body: &[u8]) -> Result<Reply, String> {
        let fail = |e: std::io::Error| format!("{method} http://{}{path}: {e}", self.authority);
        let mut s = TcpStream::connect(&self.authority).map_err(fail)?;
        // Long enough for a graceful leave, short enough that a hung agent does not hang the CLI forever.
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(fail)?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: murmur/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.authority,
            crate::version::VERSION,
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(fail)?;
        s.write_all(body).map_err(fail)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(fail)?;
        parse_reply(&raw).ok_or_else(|| format!("malformed HTTP reply from {}", self.authority))
    }
}

fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut chunked = false;
    let mut length = None;
    let mut headers = Vec::new();
    for l in lines {
        let (k, v) = l.split_once(':')?;
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k == "content-length" {
            length = v.parse::<usize>().ok();
        }
        headers.push((k, v.to_string()));
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        let n = length.unwrap_or(rest.len()).min(rest.len());
        rest[..n].to_vec()
    };
    Some(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size_txt = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_txt.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_replies() {
        assert_eq!(
            Target::parse("http://127.0.0.2:9500/").unwrap().authority,
            "127.0.0.2:9500"
        );
        assert_eq!(
            Target::parse("localhost").unwrap().authority,
            "localhost:8500"
        );
        assert!(Target::parse("https://x:1").is_err());
        let r = parse_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"[]"[..]));
        assert_eq!(r.header("content-length"), Some("2"));
        let r = parse_reply(
            b"HTTP/1.1 500 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.text()), (500, "abcde".to_string()));
        assert!(parse_reply(b"garbage").is_none());
    }
}
