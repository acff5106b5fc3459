//! murmur: a cluster membership agent in the spirit of Consul.
//!
//! Layers, dependencies pointing down only:
//! `cli` → `agent` → `http` → `table`, `net`, `sim` → `gossip` (sans-IO core).

pub mod agent;
pub mod cli;
pub mod connlimit;
pub mod dns;
pub mod duration;
pub mod files;
pub mod gossip;
pub mod http;
pub mod net;
pub mod sim;
pub mod table;
pub mod version;
