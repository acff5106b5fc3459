//! Gossip datagram decoder and the core's handling of whatever decodes (including full-state chunks and
//! forged claims about the local node at any incarnation).
//!
//! Invariants: the decoder's count matches its iterator; whatever a datagram says (trusted or not),
//! the local node stays alive in its own view under its own address and tags, before and after its
//! timers run, from incarnation 0 and from just below the serial wrap; everything the core sends
//! decodes; and each claim about the local node, applied alone, moves its incarnation exactly as the
//! refutation rules say (`common::expected_after`).
#![no_main]

mod common;

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use murmur_gossip::wire;

use common::Via;

fuzz_target!(|data: &[u8]| {
    let decoded = wire::decode(data);
    if let Ok(p) = decoded {
        assert_eq!(p.deltas().count(), p.delta_count());
    }
    let now = Instant::now();
    let mut buf = Vec::new();
    for start in common::START_INCS {
        let mut core = common::core(start, now);
        core.handle_packet(now, common::peer(), data);
        common::check(&core);
        core.handle_untrusted_packet(now, common::peer(), data);
        common::check(&core);
        common::drive(&mut core, now, &mut buf);
        if let Ok(p) = decoded {
            common::check_claims(now, p.deltas(), start, Via::Gossip);
        }
    }
});
