//! Random bytes from the operating system, for node IDs and gossip seeds.

use std::io::Read;

/// Fills `buf` from `/dev/urandom`.
pub fn fill(buf: &mut [u8]) -> Result<(), String> {
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| format!("reading /dev/urandom: {e}"))
}

/// A random u64.
pub fn u64() -> Result<u64, String> {
    let mut b = [0u8; 8];
    fill(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// A random (version 4) UUID in canonical text form.
pub fn uuid() -> Result<String, String> {
    let mut b = [0u8; 16];
    fill(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = super::hex::lower(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// True for a canonical lower- or upper-case UUID string.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuids_are_well_formed_and_differ() {
        let a = super::uuid().unwrap();
        let b = super::uuid().unwrap();
        assert!(super::is_uuid(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(&a[14..15], "4");
        assert!(!super::is_uuid("not-a-uuid"));
    }
}
