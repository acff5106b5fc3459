//! Decoding a node's published catalog record (services and checks from another agent), and applying it
//! to a catalog: either a clean error or a record that re-encodes to something that decodes the same.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use murmur::state::catalog::Catalog;
use murmur::state::node_record::NodeRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = NodeRecord::decode(data) {
        assert_eq!(NodeRecord::decode(&r.encode()).as_ref(), Ok(&r));
    }
    let catalog = Catalog::new();
    catalog.apply_record(&Arc::from("fuzzed"), 1, data);
    let _ = catalog.listing();
});
