//! The agent: configuration, data directory, and the runtime wiring of gossip, HTTP, DNS and signals.

pub mod config;
pub mod datadir;
pub mod run;
