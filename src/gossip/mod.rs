//! Sans-IO SWIM + Lifeguard gossip core: no sockets, no clock, no runtime; drivers feed it time and packets.

pub mod awareness;
pub mod broadcast;
pub mod config;
pub mod core;
pub mod incarnation;
pub mod member;
pub mod probe_order;
pub mod rng;
pub mod roster;
pub mod suspicion;
pub mod tags;
pub mod timers;
pub mod view;
pub mod wire;

pub use self::config::GossipConfig;
pub use self::core::{Core, Event, ForceLeaveError, Identity, Stats, Transmit};
pub use self::member::{Member, State};
pub use self::roster::Roster;
pub use self::view::View;
