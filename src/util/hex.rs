//! Lower-case hex of bytes: digests, fingerprints, IDs in file names, IPs in DNS names.

use std::fmt::Write;

/// `bytes` as lower-case hex, two digits each.
pub fn lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_lower_case_digits_per_byte() {
        assert_eq!(super::lower(&[0x00, 0x0a, 0xff, 0x7f]), "000aff7f");
        assert_eq!(super::lower(&[]), "");
    }
}
