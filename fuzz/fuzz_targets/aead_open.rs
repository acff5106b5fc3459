//! Opening sealed gossip with a two-key ring (the rotation path), then decoding what opens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur::net::crypto::Keyring;
use murmur_gossip::wire;

fuzz_target!(|data: &[u8]| {
    let mut ring = Keyring::new(&[7u8; 32]).unwrap();
    ring.install(&[9u8; 16]).unwrap();
    let mut buf = data.to_vec();
    if let Ok(plain) = ring.open(&mut buf) {
        let _ = wire::decode(plain);
    }
});
