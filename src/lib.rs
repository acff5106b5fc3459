//! murmur: a cluster membership agent in the spirit of Consul.
//!
//! Layers, dependencies pointing down only: `cli` → `agent` (+ `http`) → `table`, `net`, `sim` → `gossip`.

pub mod gossip;
pub mod sim;
