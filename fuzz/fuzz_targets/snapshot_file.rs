//! Reading a snapshot file handed to `PUT /v1/snapshot`: a clear error, or a state that restores into
//! a replica, never a panic or an allocation past the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur::raft::backup::restore_change;
use murmur::state::replicated::Replica;

fuzz_target!(|data: &[u8]| {
    if let Ok(change) = restore_change(data) {
        let _ = Replica::default().apply(7, &change);
    }
});
