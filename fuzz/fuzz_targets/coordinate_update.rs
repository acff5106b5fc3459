//! `PUT /v1/coordinate/update` bodies (one per line) applied in turn to one coordinate table: a
//! refusal with a clear text, or a checked coordinate; the table only ever holds finite coordinates
//! of the right size, and `?near=` sorting over it keeps every node, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur::state::coordinates::{CoordinateOp, Coordinates, parse_update, sort_near};

fuzz_target!(|data: &[u8]| {
    let table = Coordinates::default();
    for (i, line) in data.split(|b| *b == b'\n').enumerate().take(32) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        let Ok(entry) = parse_update(&v) else {
            continue;
        };
        let valid = entry.coord.check().is_ok();
        let changed = table.apply(i as u64 + 1, &CoordinateOp::Update(vec![entry]));
        assert_eq!(changed, valid, "only valid coordinates enter the table");
    }
    let all = table.image().entries;
    assert!(all.iter().all(|e| e.coord.check().is_ok()));
    let map = all
        .iter()
        .map(|e| (e.node.clone(), e.coord.clone()))
        .collect();
    let mut names: Vec<&str> = all.iter().map(|e| e.node.as_str()).collect();
    names.push("no-coordinate");
    let before = names.len();
    if let Some(first) = all.first() {
        sort_near(&mut names, &map, &first.node, |n| n);
        assert_eq!(
            names.last(),
            Some(&"no-coordinate"),
            "unknown nodes sort last"
        );
    }
    assert_eq!(names.len(), before);
});
