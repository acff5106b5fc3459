//! Percent-encoding of the path segments and query values the CLI and tests send.

/// `s` percent-encoded for a path segment or a query value: unreserved bytes and `:` as they are.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
