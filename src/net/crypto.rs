//! Gossip encryption: AES-GCM sealing of every datagram with a keyring that supports rotation
//! (install → use → remove) without downtime, persisted as `serf/local.keyring` in the data dir.
//!
//! Sealed datagram: `0x02 | nonce (12 random bytes) | ciphertext | tag (16)`, the version byte as AAD.
//! The first byte never has bit 0x40 set, so sealed gossip, plaintext gossip (`wire::PROTOCOL_VERSION`) and QUIC (0x40 set)
//! can share one port.

use std::path::{Path, PathBuf};

use base64::Engine;
use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// First byte of a sealed datagram.
pub const SEALED_VERSION: u8 = 0x02;
/// Bytes a seal adds: version, nonce, tag.
pub const OVERHEAD: usize = 1 + NONCE_LEN + 16;

/// Why a datagram could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Not a sealed datagram, or too short to be one.
    NotSealed,
    /// No installed key authenticates it (wrong key, or tampered).
    NoKey,
}

struct Key {
    raw: Vec<u8>,
    aead: LessSafeKey,
}

/// Installed keys; the first is primary (used to seal), all are tried to open.
pub struct Keyring {
    keys: Vec<Key>,
    rng: SystemRandom,
    /// Copy of the sealed bytes while several keys are tried (a failed open clobbers its buffer).
    scratch: Vec<u8>,
}

/// Decodes and checks a base64 key (16 bytes for AES-128-GCM, 32 for AES-256-GCM).
pub fn parse_key(b64: &str) -> Result<Vec<u8>, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("key is not valid base64: {e}"))?;
    match raw.len() {
        16 | 32 => Ok(raw),
        n => Err(format!(
            "key must be 16 or 32 bytes (AES-128/256-GCM), got {n}"
        )),
    }
}

/// Base64 text of a raw key.
pub fn key_text(raw: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Short public fingerprint of a key (first 4 bytes of its SHA-256, hex), safe to gossip in tags.
pub fn fingerprint(raw: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, raw);
    crate::util::hex::lower(&d.as_ref()[..4])
}

/// A fresh random 32-byte key in base64 (`murmur keygen`).
pub fn generate_key() -> Result<String, String> {
    let mut k = [0u8; 32];
    SystemRandom::new()
        .fill(&mut k)
        .map_err(|_| "the system random generator failed".to_string())?;
    Ok(key_text(&k))
}

fn make_key(raw: &[u8]) -> Result<Key, String> {
    let alg = match raw.len() {
        16 => &AES_128_GCM,
        32 => &AES_256_GCM,
        n => return Err(format!("key must be 16 or 32 bytes, got {n}")),
    };
    let unbound = UnboundKey::new(alg, raw).map_err(|_| "invalid key".to_string())?;
    Ok(Key {
        raw: raw.to_vec(),
        aead: LessSafeKey::new(unbound),
    })
}

impl Keyring {
    /// A ring with one (primary) key.
    pub fn new(primary: &[u8]) -> Result<Self, String> {
        Ok(Keyring {
            keys: vec![make_key(primary)?],
            rng: SystemRandom::new(),
            scratch: Vec::new(),
        })
    }

    /// Raw keys, primary first.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        self.keys.iter().map(|k| k.raw.clone()).collect()
    }

    /// The primary key.
    pub fn primary(&self) -> &[u8] {
        &self.keys[0].raw
    }

    /// Adds a key (no-op if present); it opens datagrams at once but seals nothing until `use`d.
    pub fn install(&mut self, raw: &[u8]) -> Result<(), String> {
        if !self.keys.iter().any(|k| k.raw == raw) {
            self.keys.push(make_key(raw)?);
        }
        Ok(())
    }

    /// Makes an installed key primary.
    pub fn use_key(&mut self, raw: &[u8]) -> Result<(), String> {
        let i = self
            .keys
            .iter()
            .position(|k| k.raw == raw)
            .ok_or("key is not installed; install it first")?;
        self.keys.swap(0, i);
        Ok(())
    }

    /// Removes a non-primary key (no-op if absent).
    pub fn remove(&mut self, raw: &[u8]) -> Result<(), String> {
        if self.keys[0].raw == raw {
            return Err("cannot remove the primary key; use another key first".into());
        }
        self.keys.retain(|k| k.raw != raw);
        Ok(())
    }

    /// Comma-separated fingerprints, primary first (the `kr` tag).
    pub fn fingerprints(&self) -> String {
        let f: Vec<String> = self.keys.iter().map(|k| fingerprint(&k.raw)).collect();
        f.join(",")
    }

    /// Seals `plain` into `out` (cleared) with the primary key.
    pub fn seal(&self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| "the system random generator failed".to_string())?;
        out.clear();
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let (head, body) = out.split_at_mut(1 + NONCE_LEN);
        let tag = self.keys[0]
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from([head[0]]),
                body,
            )
            .map_err(|_| "seal failed".to_string())?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens a sealed datagram in place; returns the plaintext range of `buf`.
    pub fn open<'a>(&mut self, buf: &'a mut [u8]) -> Result<&'a [u8], OpenError> {
        if buf.len() < OVERHEAD || buf[0] != SEALED_VERSION {
            return Err(OpenError::NotSealed);
        }
        let nonce: [u8; NONCE_LEN] = buf[1..1 + NONCE_LEN].try_into().expect("length checked");
        let several = self.keys.len() > 1;
        if several {
            // ring decrypts before it compares tags, so a wrong key leaves garbage behind: keep the
            // original to retry with the next key (only while a rotation has several keys installed).
            self.scratch.clear();
            self.scratch.extend_from_slice(&buf[1 + NONCE_LEN..]);
        }
        for (i, k) in self.keys.iter().enumerate() {
            let body = &mut buf[1 + NONCE_LEN..];
            if i > 0 {
                body.copy_from_slice(&self.scratch);
            }
            let opened = k.aead.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from([SEALED_VERSION]),
                body,
            );
            if opened.is_ok() {
                let end = buf.len() - 16;
                return Ok(&buf[1 + NONCE_LEN..end]);
            }
        }
        Err(OpenError::NoKey)
    }
}

/// Where the keyring lives in a data dir.
pub fn keyring_path(data_dir: &Path) -> PathBuf {
    data_dir.join("serf").join("local.keyring")
}

/// Loads a persisted keyring (JSON array of base64 keys, primary first).
pub fn load(path: &Path) -> Result<Option<Keyring>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let keys: Vec<String> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut raws = keys.iter().map(|k| parse_key(k));
    let first = raws
        .next()
        .ok_or_else(|| format!("{}: empty keyring", path.display()))??;
    let mut ring = Keyring::new(&first)?;
    for k in raws {
        ring.install(&k?)?;
    }
    Ok(Some(ring))
}

/// Persists the keyring atomically.
pub fn save(path: &Path, ring: &Keyring) -> Result<(), String> {
    let keys: Vec<String> = ring.keys().iter().map(|k| key_text(k)).collect();
    let text = serde_json::to_string(&keys).expect("strings serialize");
    crate::util::files::write_atomic(path, text.as_bytes(), crate::util::files::Access::Owner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seal_open_rotate() {
        let k1 = parse_key(&generate_key().unwrap()).unwrap();
        let k2 = parse_key(&generate_key().unwrap()).unwrap();
        let mut a = Keyring::new(&k1).unwrap();
        let mut b = Keyring::new(&k1).unwrap();
        let mut out = Vec::new();
        a.seal(b"hello node-a", &mut out).unwrap();
        assert_eq!(out.len(), 12 + OVERHEAD);
        assert!(!out.windows(6).any(|w| w == b"node-a"), "plaintext visible");
        let mut copy = out.clone();
        assert_eq!(b.open(&mut copy).unwrap(), b"hello node-a");

        // Rotation: b installs k2 and seals with it; a still opens once it has k2 installed.
        b.install(&k2).unwrap();
        b.use_key(&k2).unwrap();
        b.seal(b"x", &mut out).unwrap();
        let mut copy = out.clone();
        assert_eq!(a.open(&mut copy), Err(OpenError::NoKey));
        a.install(&k2).unwrap();
        let mut copy = out.clone();
        assert_eq!(
            a.open(&mut copy).unwrap(),
            b"x",
            "second key opens after the first failed"
        );
        assert!(b.remove(&k2).is_err(), "primary cannot be removed");
        b.remove(&k1).unwrap();
        assert_eq!(b.keys().len(), 1);
        assert!(b.use_key(&k1).is_err());

        let mut tampered = out.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(a.open(&mut tampered), Err(OpenError::NoKey));
        assert_eq!(a.open(&mut [1, 2, 3]), Err(OpenError::NotSealed));
        assert!(parse_key("AAAA").is_err());
        assert_eq!(fingerprint(&k1).len(), 8);
    }

    #[test]
    fn keyring_file_roundtrip() {
        let dir = std::env::temp_dir().join(format!("murmur-kr-{}", std::process::id()));
        let path = keyring_path(&dir);
        let k1 = parse_key(&generate_key().unwrap()).unwrap();
        let k2 = parse_key(&generate_key().unwrap()).unwrap();
        let mut r = Keyring::new(&k1).unwrap();
        r.install(&k2).unwrap();
        r.use_key(&k2).unwrap();
        save(&path, &r).unwrap();
        let back = load(&path).unwrap().unwrap();
        assert_eq!(back.keys(), vec![k2, k1]);
        std::fs::write(&path, "[\"bad\"]").unwrap();
        assert!(load(&path).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    proptest! {
        #[test]
        fn open_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut ring = Keyring::new(&[7u8; 32]).unwrap();
            ring.install(&[8u8; 16]).unwrap();
            let mut b = bytes.clone();
            let _ = ring.open(&mut b);
        }
    }
}
