//! The key-ring protocol: a keyring change (install, use, remove) is applied here, persisted, announced
//! in our `kr` tag, and spread to every member as a user event of kind [`EventKind::KEYRING`]; each member
//! applies it the same way. Only trusted (sealed) events are acted on: the core drops user events from
//! plaintext packets.

use murmur_gossip::{Core, EventKind, tags};

use super::crypto;
use super::envelope::Security;

/// A keyring change, applied locally and spread to every member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOp {
    /// Add a key.
    Install = 1,
    /// Make a key primary.
    Use = 2,
    /// Drop a key.
    Remove = 3,
}

impl KeyOp {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(KeyOp::Install),
            2 => Some(KeyOp::Use),
            3 => Some(KeyOp::Remove),
            _ => None,
        }
    }
}

/// The event payload of `op` on `key`: op, key length, key.
fn encode(op: KeyOp, key: &[u8]) -> Vec<u8> {
    let mut payload = vec![op as u8, key.len() as u8];
    payload.extend_from_slice(key);
    payload
}

fn decode(payload: &[u8]) -> Option<(KeyOp, &[u8])> {
    let [op, len, key @ ..] = payload else {
        return None;
    };
    let op = KeyOp::from_u8(*op)?;
    (key.len() == *len as usize).then_some((op, key))
}

/// Applies `op` here: the keyring, its file, and our `kr` tag.
pub fn apply(core: &mut Core, sec: &mut Security, op: KeyOp, key: &[u8]) -> Result<(), String> {
    let ring = sec
        .keyring
        .as_mut()
        .ok_or("gossip encryption is not enabled on this agent")?;
    match op {
        KeyOp::Install => ring.install(key)?,
        KeyOp::Use => ring.use_key(key)?,
        KeyOp::Remove => ring.remove(key)?,
    }
    if let Some(path) = &sec.keyring_file {
        crypto::save(path, ring)?;
    }
    let tags = tags::encode(&sec.tags()).map_err(|e| e.to_string())?;
    core.set_tags(tags).map_err(|e| e.to_string())
}

/// Applies `op` here, then tells every member.
pub fn change(core: &mut Core, sec: &mut Security, op: KeyOp, key: &[u8]) -> Result<(), String> {
    apply(core, sec, op, key)?;
    core.user_event(EventKind::KEYRING, &encode(op, key))
        .map_err(|e| e.to_string())
}

/// Applies a change another member announced (malformed payloads are ignored).
pub fn on_event(core: &mut Core, sec: &mut Security, payload: &[u8]) {
    let Some((op, key)) = decode(payload) else {
        return;
    };
    match apply(core, sec, op, key) {
        Ok(()) => tracing::info!(
            "keyring: applied {op:?} of key {}",
            crypto::fingerprint(key)
        ),
        Err(e) => tracing::warn!(
            "keyring: could not apply {op:?} of key {}: {e}",
            crypto::fingerprint(key)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_garbage_is_ignored() {
        let key = [5u8; 32];
        for op in [KeyOp::Install, KeyOp::Use, KeyOp::Remove] {
            assert_eq!(decode(&encode(op, &key)), Some((op, &key[..])));
        }
        assert_eq!(decode(&[1, 3, 0, 0]), None, "length disagrees");
        assert_eq!(decode(&[9, 0]), None, "unknown op");
        assert_eq!(decode(&[1]), None);
    }
}
