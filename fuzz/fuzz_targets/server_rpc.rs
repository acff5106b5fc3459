//! Decoding what arrives on the server port (raft RPCs and forwarded requests, and their answers, the
//! DNS settings a query from another datacenter carries included) and
//! what a log entry carries: a clean error, or a command that re-encodes to itself and applies to a
//! replica without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur::raft::command::{Command, Request};
use murmur::raft::rpc::{self, Answer, Rpc};
use murmur::state::kv::KvQuery;
use murmur::state::remote::RemoteRequest;
use murmur::state::replicated::{Query, Replica};

fuzz_target!(|data: &[u8]| {
    // A DNS query another datacenter forwards carries the asking agent's settings.
    if let Ok(Rpc::Remote {
        request: RemoteRequest::Dns { settings, .. },
        ..
    }) = rpc::decode::<Rpc>(data)
        && let Some(cfg) = murmur::dns::remote::decode_settings(&settings, "dc1")
    {
        assert_eq!(cfg.datacenter, "dc1");
        assert!(cfg.recursors.is_empty(), "recursors never travel");
        assert!(cfg.domain.ends_with('.'));
    }
    // The settings alone, as any bytes.
    let _ = murmur::dns::remote::decode_settings(data, "dc1");
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
                assert_eq!(
                    Command::decode(&Command::encode(&change)),
                    Ok(change.clone())
                );
                let _ = replica.apply(1, &change);
                let _ = replica.query(&Query::Kv(KvQuery::Recurse(String::new())));
            }
        }
    }
});
