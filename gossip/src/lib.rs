//! murmur's gossip core: SWIM failure detection with Lifeguard's refinements, piggybacked membership
//! deltas and full-state exchanges, written sans-IO. No sockets, no clock, no runtime: a driver hands
//! the [`Core`] datagrams and the time (`handle_packet`, `handle_timeout`), and polls what it wants sent
//! (`poll_transmit`), when it next wants the time (`poll_timeout`) and what changed (`poll_event`).
//!
//! A datagram's way through: [`wire`] decodes it (borrowing from the buffer); the core answers probes
//! (`core/probing.rs`), applies each membership delta under the incarnation rules of [`incarnation`]
//! (`core/membership.rs`), queues what is news for further gossip (the broadcast queue), and reports the
//! changes as [`Event`]s, which the agent's driver writes into its member table. Full-state exchanges
//! (joins, anti-entropy) are in `core/exchange.rs`.
//!
//! With the `sim` feature, [`sim`] runs many cores on a simulated network in virtual time.

mod awareness;
mod broadcast;
mod config;
pub mod coordinate;
mod core;
pub mod incarnation;
mod member;
pub mod patch;
mod probe_order;
mod record;
pub mod ring;
mod rng;
mod roster;
#[cfg(feature = "sim")]
pub mod sim;
mod suspicion;
pub mod tags;
mod timers;
mod view;
pub mod wire;

pub use self::broadcast::{BroadcastQueue, Item};
pub use self::config::{ConfigError, GossipConfig};
pub use self::core::{
    Core, Event, EventKind, ForceLeaveError, Identity, JOIN_ATTEMPTS, Merged, NewCoreError,
    RECORD_FETCH_TIMEOUT, RECORD_SENDS, RTT_BUCKETS_US, RttCounts, Stats, Transmit, UserEventError,
};
pub use self::member::{Member, State};
pub use self::record::{Record, RecordError, RecordPatch};
pub use self::rng::Rng;
pub use self::roster::Roster;
pub use self::view::{Slot, View};
