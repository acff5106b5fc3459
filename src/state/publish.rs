//! The gossip driver's member sink: applies the core's member events to the table and its record events
//! to the catalog, logs each member change in Serf's words, and on publish makes them visible and
//! advances the change index.

use std::sync::Arc;

use murmur_gossip::Event;

use super::catalog::Catalog;
use super::changes::ChangeIndex;
use super::members::{Change, MemberTable};
use crate::net::MemberSink;

/// Writes member changes where HTTP and DNS read them.
pub struct Publisher {
    /// The table written.
    pub members: Arc<MemberTable>,
    /// Advanced after each publish.
    pub changes: Arc<ChangeIndex>,
    /// Where member records (services and checks) go.
    pub catalog: Arc<Catalog>,
}

impl MemberSink for Publisher {
    fn apply(&self, ev: &Event) -> bool {
        if let Event::Record { name, record } = ev {
            self.catalog
                .apply_record(name, record.version, &record.body);
            return false;
        }
        let change = self.members.apply(ev);
        match (change, ev) {
            (Change::Leave | Change::Reap, Event::Member(m)) => self.catalog.remove_node(&m.name),
            (Change::Reap, Event::Reaped(name)) => self.catalog.remove_node(name),
            // serfHealth, the address and node meta follow the member: every result holding its
            // services changes.
            (Change::Failed | Change::Join | Change::Update, Event::Member(m)) => {
                self.catalog.node_health_changed(&m.name)
            }
            _ => {}
        }
        let Some(what) = change.serf_name() else {
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
