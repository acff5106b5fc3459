//! Decoding what arrives on the server port (raft RPCs and forwarded requests, and their answers) and
//! what a log entry carries: a clean error, or a command that re-encodes to itself and applies to a
//! replica without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur::raft::command::{Command, Request};
use murmur::raft::rpc::{self, Answer, Rpc};
use murmur::state::kv::KvQuery;
use murmur::state::replicated::{Query, Replica};

fuzz_target!(|data: &[u8]| {
    let _ = rpc::decode::<Rpc>(data);
    let _ = rpc::decode::<Answer>(data);
    if let [a, b, body @ ..] = data {
        let req = Request {
            id: 0,
            tag: u16::from_le_bytes([*a, *b]),
            body: body.to_vec(),
        };
        // A batch entry carries requests of its own; each goes the way of a lone one.
        let requests = match Command::unbatch(&req) {
            Some(Ok(batch)) => batch,
            Some(Err(_)) => Vec::new(),
            None => vec![req],
        };
        let replica = Replica::default();
        for req in &requests {
            if let Ok(change) = Command::decode(req) {
                assert_eq!(Command::decode(&Command::encode(&change)), Ok(change.clone()));
                let _ = replica.apply(1, &change);
                let _ = replica.query(&Query::Kv(KvQuery::Recurse(String::new())));
            }
        }
    }
});
