//! Decoding `/v1/catalog/register` and `/deregister` bodies (one per line) and applying them in turn to
//! one external catalog: a refusal with Consul's text, or an operation that keeps the catalog whole
//! (nodes sorted and unique, every service check pointing at a service of its node), never a panic.
//! A mirror kept by the deltas an agent reads stays equal to the table.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur::state::external::ExternalCatalog;
use murmur::state::registration::{deregister, register};

fuzz_target!(|data: &[u8]| {
    let table = ExternalCatalog::default();
    let mut mirror = std::collections::BTreeMap::new();
    let mut seen = 0;
    for (i, line) in data.split(|b| *b == b'\n').enumerate().take(32) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        let op = if i % 2 == 0 {
            register(&v, "dc1")
        } else {
            deregister(&v)
        };
        let Ok(op) = op else { continue };
        assert!(!op.node().is_empty(), "an operation without a node");
        let before = table.query();
        match table.apply(i as u64 + 1, &op) {
            Ok(true) => assert_eq!(table.query().0, i as u64 + 1),
            Ok(false) | Err(_) => assert_eq!(table.query(), before, "unchanged"),
        }
        let (index, delta) = table.delta(seen);
        if delta.whole {
            mirror.clear();
        }
        for name in &delta.removed {
            mirror.remove(name);
        }
        for n in delta.nodes {
            mirror.insert(n.info.node.clone(), n);
        }
        seen = index;
        let (_, nodes) = table.query();
        assert!(mirror.values().eq(nodes.iter()), "the mirror drifted");
        assert!(nodes.windows(2).all(|w| w[0].info.node < w[1].info.node));
        for n in &nodes {
            for c in n.checks.iter().filter(|c| !c.service_id.is_empty()) {
                assert!(
                    n.services.iter().any(|s| s.id == c.service_id),
                    "orphan check"
                );
            }
        }
    }
});
