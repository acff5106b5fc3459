//! Gossip datagram decoder and the core's handling of whatever decodes (including full-state chunks).
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use murmur::gossip::{Core, GossipConfig, Identity, wire};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = wire::decode(data) {
        assert_eq!(p.deltas().count(), p.delta_count());
    }
    let now = Instant::now();
    let id = Identity {
        name: "fuzz".into(),
        addr: "127.0.0.1:8301".parse().unwrap(),
        tags: Vec::new(),
        incarnation: 0,
    };
    let mut core = Core::new(GossipConfig::lan(), id, now, 1).unwrap();
    core.handle_packet(now, "127.0.0.2:8301".parse().unwrap(), data);
    core.handle_untrusted_packet(now, "127.0.0.2:8301".parse().unwrap(), data);
    let mut buf = Vec::new();
    while core.poll_transmit(&mut buf).is_some() {}
    while core.poll_event().is_some() {}
});
