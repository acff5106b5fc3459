//! DNS query path: the fast-path shape parser, the answer builder and the FORMERR fallback.
#![no_main]

use std::sync::Arc;

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use murmur::dns::DnsConfig;
use murmur::dns::answer::{Answerer, Transport, formerr};
use murmur::dns::cache::shape;
use murmur::dns::services::ServersCatalog;
use murmur::gossip::rng::Rng;
use murmur::table::MemberTable;

fuzz_target!(|data: &[u8]| {
    let _ = shape(data, &mut Vec::new());
    let table = Arc::new(MemberTable::new());
    let cfg = DnsConfig::default();
    let services = ServersCatalog::new(table.clone());
    let a = Answerer { cfg: &cfg, table: &table, services: &services };
    match Message::from_vec(data) {
        Ok(req) => {
            let _ = a.respond(&req, Transport::Udp, &mut Rng::new(1));
            let _ = a.respond(&req, Transport::Tcp, &mut Rng::new(1));
        }
        Err(_) => {
            let _ = formerr(data);
        }
    }
});
