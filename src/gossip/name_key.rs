//! Member-index key that keeps short names inline, so a lookup by `&str` compares bytes in the hash
//! table itself instead of chasing a pointer to the name (the lookup was the core's hottest cache miss).

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

const INLINE: usize = 22;

/// A node name as an index key.
#[derive(Clone)]
pub enum NameKey {
    /// Names of up to 22 bytes.
    Inline {
        /// Length in bytes.
        len: u8,
        /// UTF-8 bytes, zero padded.
        buf: [u8; INLINE],
    },
    /// Longer names share the member's allocation.
    Heap(Arc<str>),
}

impl NameKey {
    /// Key for `name`.
    pub fn new(name: &Arc<str>) -> Self {
        if name.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..name.len()].copy_from_slice(name.as_bytes());
            NameKey::Inline {
                len: name.len() as u8,
                buf,
            }
        } else {
            NameKey::Heap(name.clone())
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        match self {
            // Built from a &str, so the prefix is valid UTF-8.
            NameKey::Inline { len, buf } => {
                std::str::from_utf8(&buf[..*len as usize]).unwrap_or("")
            }
            NameKey::Heap(s) => s,
        }
    }
}

impl PartialEq for NameKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for NameKey {}

impl Hash for NameKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // Must hash exactly like `str` for `Borrow<str>` lookups.
        self.as_str().hash(h);
    }
}

impl Borrow<str> for NameKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn lookups_by_str_work_for_short_and_long_names() {
        let short: Arc<str> = Arc::from("node-1");
        let long: Arc<str> = Arc::from("a-rather-long-node-name-beyond-inline");
        let mut m: HashMap<NameKey, usize> = HashMap::new();
        m.insert(NameKey::new(&short), 1);
        m.insert(NameKey::new(&long), 2);
        assert_eq!(m.get("node-1"), Some(&1));
        assert_eq!(m.get("a-rather-long-node-name-beyond-inline"), Some(&2));
        assert_eq!(m.get("node-2"), None);
        assert!(matches!(NameKey::new(&short), NameKey::Inline { .. }));
        assert_eq!(std::mem::size_of::<NameKey>(), 24);
    }
}
