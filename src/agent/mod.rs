//! The agent: configuration, data directory, and the runtime wiring of gossip, HTTP and signals.

pub mod config;
pub mod datadir;
pub mod entropy;
pub mod flags;
pub mod run;
