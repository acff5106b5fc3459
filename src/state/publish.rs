//! The gossip driver's member sink: applies the core's member events to the table, logs each change in
//! Serf's words, and on publish makes them visible and advances the change index.

use std::sync::Arc;

use murmur_gossip::Event;

use super::changes::ChangeIndex;
use super::members::MemberTable;
use crate::net::MemberSink;

/// Writes member changes where HTTP and DNS read them.
pub struct Publisher {
    /// The table written.
    pub members: Arc<MemberTable>,
    /// Advanced after each publish.
    pub changes: Arc<ChangeIndex>,
}

impl MemberSink for Publisher {
    fn apply(&self, ev: &Event) -> bool {
        let Some(what) = self.members.apply(ev).serf_name() else {
            return false;
        };
        // One INFO line per change, worded as Consul's (`EventMemberJoin: agent-two 127.0.0.11`).
        match ev {
            Event::Member(m) => tracing::info!("{what}: {} {}", m.name, m.addr.ip()),
            Event::Reaped(name) => tracing::info!("{what}: {name}"),
            _ => {}
        }
        true
    }

    fn publish(&self) {
        if self.members.publish() {
            self.changes.advance(self.members.snapshot().index);
        }
    }
}
