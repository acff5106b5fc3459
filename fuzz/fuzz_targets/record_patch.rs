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
                body: RecordBody::Patch { len, crc, hunks, .. },
                ..
            } = d
            {
                if let Ok(body) = patch::apply(old, hunks, len, crc) {
                    assert_eq!(body.len(), len as usize);
                    assert_eq!(patch::checksum(&body), crc);
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
