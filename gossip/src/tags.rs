//! Encoding of a member's tags (`role`, `dc`, `build`, ...) as compact key/value bytes.

use std::collections::BTreeMap;

/// Most bytes the encoded tags of one member may take (they ride in every alive delta).
pub const MAX_TAGS_LEN: usize = 512;

/// Tags could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagsError(pub &'static str);

impl std::fmt::Display for TagsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for TagsError {}

/// Encodes pairs as `count:u8 (klen:u8 key vlen:u8 value)*`.
pub fn encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Result<Vec<u8>, TagsError> {
    if pairs.len() > 255 {
        return Err(TagsError("too many tags"));
    }
    let mut out = vec![pairs.len() as u8];
    for (k, v) in pairs {
        let (k, v) = (k.as_ref(), v.as_ref());
        if k.is_empty() || k.len() > 255 || v.len() > 255 {
            return Err(TagsError(
                "tag key must be 1-255 bytes and value at most 255 bytes",
            ));
        }
        out.push(k.len() as u8);
        out.extend_from_slice(k.as_bytes());
        out.push(v.len() as u8);
        out.extend_from_slice(v.as_bytes());
    }
    if out.len() > MAX_TAGS_LEN {
        return Err(TagsError("tags exceed 512 bytes encoded"));
    }
    Ok(out)
}

/// Walks encoded tags, calling `f` for each pair; fails on any malformed length or UTF-8.
fn walk<'a>(mut b: &'a [u8], mut f: impl FnMut(&'a str, &'a str)) -> Result<(), TagsError> {
    const BAD: TagsError = TagsError("malformed tags");
    if b.len() > MAX_TAGS_LEN {
        return Err(BAD);
    }
    let Some((&count, rest)) = b.split_first() else {
        // Zero bytes means no tags at all.
        return Ok(());
    };
    b = rest;
    let field = |b: &mut &'a [u8]| -> Result<&'a str, TagsError> {
        let (&n, rest) = b.split_first().ok_or(BAD)?;
        if rest.len() < n as usize {
            return Err(BAD);
        }
        let (s, rest) = rest.split_at(n as usize);
        *b = rest;
        std::str::from_utf8(s).map_err(|_| BAD)
    };
    for _ in 0..count {
        let k = field(&mut b)?;
        let v = field(&mut b)?;
        if k.is_empty() {
            return Err(BAD);
        }
        f(k, v);
    }
    if b.is_empty() { Ok(()) } else { Err(BAD) }
}

/// Checks encoded tags without allocating.
pub fn validate(b: &[u8]) -> Result<(), TagsError> {
    walk(b, |_, _| {})
}

/// The value of `key`, if the (valid) tags hold it; malformed tags hold nothing.
pub fn get<'a>(b: &'a [u8], key: &str) -> Option<&'a str> {
    let mut found = None;
    walk(b, |k, v| {
        if k == key {
            found = Some(v);
        }
    })
    .ok()?;
    found
}

/// The tags with `key` set to `value` (added, or replaced where present); sorted by key.
pub fn with(b: &[u8], key: &str, value: &str) -> Result<Vec<u8>, TagsError> {
    let mut m = decode(b)?;
    m.insert(key.to_owned(), value.to_owned());
    encode(&m.into_iter().collect::<Vec<_>>())
}

/// Decodes tags into a sorted map.
pub fn decode(b: &[u8]) -> Result<BTreeMap<String, String>, TagsError> {
    let mut m = BTreeMap::new();
    walk(b, |k, v| {
        m.insert(k.to_owned(), v.to_owned());
    })?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejects() {
        let e = encode(&[("role", "consul"), ("expect", "3")]).unwrap();
        let m = decode(&e).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m["expect"], "3");
        assert!(decode(&[]).unwrap().is_empty());
        assert!(validate(&e[..e.len() - 1]).is_err());
        assert!(validate(&[1, 0, 0]).is_err(), "empty key accepted");
        assert!(encode(&[("k", "v".repeat(300))]).is_err());
        assert_eq!(get(&e, "expect"), Some("3"));
        assert_eq!(get(&e, "dc"), None);
        assert_eq!(
            get(&e[..e.len() - 1], "role"),
            None,
            "malformed tags hold nothing"
        );
        let w = with(&e, "expect", "5").unwrap();
        assert_eq!(get(&w, "expect"), Some("5"));
        assert_eq!(get(&with(&w, "dc", "x").unwrap(), "role"), Some("consul"));
    }
}
