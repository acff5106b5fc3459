//! Record patches: hunks as a datagram brings them, applied to a base, and the differ's patches
//! between any two bodies.
//!
//! Invariants: hunks the wire reader accepts, applied to any base, give a clear error or a body of the
//! announced length and checksum, never a panic; a patch the differ makes is smaller than the new body,
//! passes the wire reader, and rebuilds exactly the new body from the old.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur_gossip::patch;
use murmur_gossip::wire::{self, Delta, Message, RecordBody};

fuzz_target!(|data: &[u8]| {
    // The first byte splits the rest: old body, then the new body (or the hunks to read).
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = (usize::from(split) * rest.len()) / 255;
    let (old, new) = rest.split_at(at);

    // `new` as hunks off the wire, through the datagram decoder.
    let mut packet = Vec::new();
    let count_at = wire::encode_header(&mut packet, &Message::Gossip);
    packet.extend_from_slice(&[6, 1, b'n', 2, 2]);
    let len = (old.len() + new.len()) as u32;
    let mut varint = len;
    while varint >= 0x80 {
        packet.push((varint as u8) | 0x80);
        varint >>= 7;
    }
    packet.push(varint as u8);
    packet.extend_from_slice(&[1, 0, 0, 0, 0]);
    packet.extend_from_slice(new);
    wire::set_count(&mut packet, count_at, 1);
    if let Ok(p) = wire::decode(&packet) {
        for d in p.deltas() {
            if let Delta::Record {
                body: RecordBody::Patch {
                    len, crc, hunks, ..
                },
                ..
            } = d
            {
                // Whatever the announced length and checksum, a wrong one is an error, never a panic.
                let _ = patch::apply(old, hunks, len, crc);
                // Against a plain reading of the same hunks, with the true length and checksum.
                match reference(old, hunks) {
                    Some(body) => {
                        let (n, sum) = (body.len() as u32, patch::checksum(&body));
                        assert_eq!(patch::apply(old, hunks, n, sum).as_deref(), Ok(&body[..]));
                        assert!(patch::apply(old, hunks, n, sum ^ 1).is_err());
                    }
                    None => assert!(patch::apply(old, hunks, len, crc).is_err()),
                }
            }
        }
    }

    // The differ on the two halves.
    if let Some(hunks) = patch::diff(old, new) {
        assert!(hunks.len() < new.len(), "a patch no smaller than the body");
        let body = patch::apply(old, &hunks, new.len() as u32, patch::checksum(new))
            .expect("the differ's own patch applies");
        assert_eq!(body, new);
    }
});

/// The hunks applied the obvious way, in one pass: keep, drop, insert, then the rest; `None` past the
/// end of `old` or of the hunks, or for more hunks than a patch may hold.
fn reference(old: &[u8], hunks: &[u8]) -> Option<Vec<u8>> {
    fn varint(r: &mut &[u8]) -> Option<usize> {
        let mut v: u64 = 0;
        for i in 0..5 {
            let (&b, tail) = r.split_first()?;
            *r = tail;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return u32::try_from(v).ok().map(|v| v as usize);
            }
        }
        None
    }
    let mut r = hunks;
    let count = varint(&mut r)?;
    if count > patch::MAX_HUNKS as usize {
        return None;
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    for _ in 0..count {
        let (keep, drop, n) = (varint(&mut r)?, varint(&mut r)?, varint(&mut r)?);
        if r.len() < n || at + keep + drop > old.len() {
            return None;
        }
        out.extend_from_slice(&old[at..at + keep]);
        at += keep + drop;
        out.extend_from_slice(&r[..n]);
        r = &r[n..];
    }
    out.extend_from_slice(&old[at..]);
    Some(out)
}
