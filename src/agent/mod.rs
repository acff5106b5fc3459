//! The agent: configuration, data directory, and the runtime wiring of gossip, HTTP, DNS and signals.

mod checks;
pub mod config;
mod consul_only;
mod coordinate_sync;
pub mod datadir;
mod external_mirror;
mod local_answer;
mod pool;
mod publish_record;
pub mod run;
mod wan;
