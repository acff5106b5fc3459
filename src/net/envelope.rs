//! The seal/open policy of everything gossip sends, written once: datagrams and push/pull states are
//! sealed with the primary gossip key when encrypting (`encrypt_verify_outgoing`), and what arrives is
//! opened with any installed key, or refused, or let in as untrusted plaintext while a cluster moves to
//! encryption (`encrypt_verify_incoming` off).

use std::path::PathBuf;

use super::crypto::{self, Keyring};

/// Gossip encryption settings of a driver.
#[derive(Default)]
pub struct Security {
    /// Keys; `None` = no encryption.
    pub keyring: Option<Keyring>,
    /// Refuse plaintext.
    pub verify_incoming: bool,
    /// Seal what goes out.
    pub verify_outgoing: bool,
    /// Where the keyring is persisted (none in `-dev`).
    pub keyring_file: Option<PathBuf>,
    /// Member tags without the keyring fingerprint tag, which the driver maintains.
    pub base_tags: Vec<(String, String)>,
}

/// Bytes the policy let in.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened<'a> {
    /// Sealed with an installed key, or plaintext from a cluster without encryption.
    Trusted(&'a [u8]),
    /// Plaintext while encryption is on but `encrypt_verify_incoming` is off: membership news is
    /// accepted, user events (such as keyring changes) are not.
    Untrusted(&'a [u8]),
}

/// Why the policy refused bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Sealed, but no installed key opens it.
    NoKeyOpens,
    /// Sealed, and this agent has no key at all.
    NoKey,
    /// Plaintext while `encrypt_verify_incoming` is on.
    Plaintext,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::NoKeyOpens => "no installed key opens it (is -encrypt the cluster's key?)",
            Refused::NoKey => "it is encrypted but this agent has no key (-encrypt)",
            Refused::Plaintext => "it is not encrypted and encrypt_verify_incoming is on",
        })
    }
}

impl std::error::Error for Refused {}

impl Refused {
    /// The reason for a push/pull state from `from`, as the refusing agent logs it.
    pub fn for_state(self, from: std::net::SocketAddr) -> String {
        match self {
            Refused::NoKeyOpens => format!("state from {from}: no installed key opens it"),
            Refused::NoKey => format!("state from {from} is encrypted but this agent has no key"),
            Refused::Plaintext => {
                format!("state from {from} is not encrypted (encrypt_verify_incoming)")
            }
        }
    }
}

impl Security {
    /// Tags to gossip: the base tags plus `kr` (key fingerprints, primary first) when encrypting.
    pub fn tags(&self) -> Vec<(String, String)> {
        let mut t = self.base_tags.clone();
        if let Some(k) = &self.keyring {
            t.push(("kr".to_string(), k.fingerprints()));
        }
        t
    }

    /// Opens `data` (in place) under the policy.
    pub fn open<'a>(&mut self, data: &'a mut [u8]) -> Result<Opened<'a>, Refused> {
        let sealed = data.first() == Some(&crypto::SEALED_VERSION);
        match (&mut self.keyring, sealed) {
            (Some(ring), true) => ring
                .open(data)
                .map(Opened::Trusted)
                .map_err(|_| Refused::NoKeyOpens),
            (None, true) => Err(Refused::NoKey),
            (Some(_), false) if self.verify_incoming => Err(Refused::Plaintext),
            (Some(_), false) => Ok(Opened::Untrusted(data)),
            (None, false) => Ok(Opened::Trusted(data)),
        }
    }

    /// The bytes to send for `plain`: sealed into `out` when the policy says so, else `plain` itself.
    pub fn seal<'a>(&self, plain: &'a [u8], out: &'a mut Vec<u8>) -> Result<&'a [u8], String> {
        match &self.keyring {
            Some(ring) if self.verify_outgoing => {
                ring.seal(plain, out)?;
                Ok(out)
            }
            _ => Ok(plain),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_in_every_combination() {
        let key = [7u8; 32];
        let on = |incoming, outgoing| Security {
            keyring: Some(Keyring::new(&key).unwrap()),
            verify_incoming: incoming,
            verify_outgoing: outgoing,
            ..Security::default()
        };
        let mut sealed = Vec::new();
        let sent = on(true, true).seal(b"hello", &mut sealed).unwrap().to_vec();
        assert_eq!(sent[0], crypto::SEALED_VERSION);
        assert_eq!(
            on(true, true).open(&mut sent.clone()),
            Ok(Opened::Trusted(&b"hello"[..]))
        );
        let mut plain = b"\x03hello".to_vec();
        assert_eq!(
            on(true, true).open(&mut plain.clone()),
            Err(Refused::Plaintext)
        );
        assert_eq!(
            on(false, true).open(&mut plain),
            Ok(Opened::Untrusted(&b"\x03hello"[..]))
        );
        let mut off = Security::default();
        assert_eq!(off.open(&mut sent.clone()), Err(Refused::NoKey));
        assert_eq!(
            off.seal(b"x", &mut Vec::new()).unwrap(),
            b"x",
            "no key: sent as is"
        );
        assert_eq!(on(true, false).seal(b"x", &mut Vec::new()).unwrap(), b"x");
        let other = Security {
            keyring: Some(Keyring::new(&[9u8; 32]).unwrap()),
            ..on(true, true)
        };
        let mut other = other;
        assert_eq!(other.open(&mut sent.clone()), Err(Refused::NoKeyOpens));
    }
}
