//! HTTP: the Consul-compatible API the agent serves, and the small client the CLI uses to call it.

pub mod api;
pub mod client;
pub mod json;
pub mod serve;
