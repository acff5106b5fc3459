//! Decoding a gossiped user event and judging it against this node's filters: a clear error or an
//! event that re-encodes to itself, whose filters either select or not, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur::state::user_events::{UserEvent, UserEvents};

fuzz_target!(|data: &[u8]| {
    let Ok(ev) = UserEvent::decode(data) else {
        return;
    };
    // Postcard also reads longer-than-needed varints, so the bytes may differ; the event may not.
    assert_eq!(
        UserEvent::decode(&ev.encode()),
        Ok(ev.clone()),
        "an event re-encodes to itself"
    );
    let tags = vec!["v1".to_string(), "blue".to_string()];
    let services = [("web", tags.as_slice()), ("db", &[][..])];
    let selected = ev.selects("node-1", services);
    if ev.validate().is_ok() && ev.node_filter.is_empty() && ev.service_filter.is_empty() {
        assert!(selected, "an event without filters goes everywhere");
    }
    let ring = UserEvents::default();
    ring.keep(ev.clone());
    let (index, kept) = ring.list(Some(&ev.name));
    assert_eq!(kept.len(), 1);
    assert_eq!(index, ev.index());
    assert!(ring.next_ltime() > ev.ltime || ev.ltime == u64::MAX);
});
