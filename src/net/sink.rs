//! Where a driver writes what its core reports about members. The agent's state layer implements it
//! (the member table readers see); the driver knows nothing above this trait.

use murmur_gossip::Event;

/// Receives member changes from a gossip driver.
pub trait MemberSink: Send + Sync {
    /// Applies one `Event::Member`, `Event::Reaped` or `Event::Record`; true when the member list
    /// readers see changed.
    fn apply(&self, ev: &Event) -> bool;
    /// Makes the changes applied so far visible to readers, and wakes those waiting for them.
    fn publish(&self);
}
