//! murmur: a cluster agent in the spirit of Consul.
//!
//! Layers, each depending only on those below it:
//! `cli` → `agent` → `http`, `dns` → `state` → `net` → `murmur_gossip` (the sans-IO core, its own
//! crate), with `util` (flags, files, addresses, batched I/O) usable from every layer.
//!
//! Where things go: a gossip datagram enters in `net/udp.rs`, is opened under `net/envelope.rs`, handled
//! by the core, and its member events are written by `state/publish.rs` into `state/members.rs`, where
//! HTTP (`http/`) and DNS (`dns/`) read them. A new HTTP endpoint goes into its route family's file in
//! `http/`; the service catalog goes into `state/` (written by gossip and the HTTP API, read by both).

pub mod agent;
pub mod cli;
pub mod dns;
pub mod http;
pub mod metrics;
pub mod net;
pub mod raft;
pub mod state;
pub mod util;
pub mod version;
