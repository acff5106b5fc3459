//! Decoding a `/v1/txn` body: a refusal with a status code, 409 errors that point at operations of
//! the request, or operations that apply to a replica without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur::http::txn::parse;
use murmur::state::replicated::{Change, Replica};
use murmur::state::txn::MAX_OPS;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Err(e) => assert!(e.0.is_client_error(), "status {}", e.0),
        Ok(Err(errors)) => {
            assert!(!errors.is_empty());
            assert!(errors.iter().all(|e| e.op_index < MAX_OPS));
        }
        Ok(Ok(ops)) => {
            assert!(ops.len() <= MAX_OPS);
            let _ = Replica::default().apply(1, &Change::Txn(ops));
        }
    }
});
