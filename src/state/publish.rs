//! The gossip driver's member sink: applies the core's member events to the table and its record events
//! to the catalog, logs each member change in Serf's words, and on publish makes them visible and
//! advances the change index.

use std::sync::Arc;

use std::sync::atomic::Ordering;

use murmur_gossip::{Event, EventKind};

use super::catalog::Catalog;
use super::changes::ChangeIndex;
use super::members::{Change, MemberTable};
use super::user_events::{UserEvent, UserEvents};
use crate::net::MemberSink;

/// Writes member changes where HTTP and DNS read them.
pub struct Publisher {
    /// The table written.
    pub members: Arc<MemberTable>,
    /// Advanced after each publish.
    pub changes: Arc<ChangeIndex>,
    /// Where member records (services and checks) go.
    pub catalog: Arc<Catalog>,
    /// Where user events this node's filters select go.
    pub events: Arc<UserEvents>,
    /// This node's name, for the events' filters.
    pub node: String,
}

impl Publisher {
    /// Keeps a gossiped user event if its filters select this node (by name, and by the services and
    /// tags this node publishes); an event that does not decode is counted and dropped.
    fn user_event(&self, payload: &[u8]) {
        let ev = match UserEvent::decode(payload) {
            Ok(ev) => ev,
            Err(e) => {
                self.events.undecodable.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("dropped a user event that does not decode: {e}");
                return;
            }
        };
        self.events.received.fetch_add(1, Ordering::Relaxed);
        let keep = ev
            .filters()
            .is_ok_and(|f| f.select_node(&self.node, &self.catalog));
        if keep {
            tracing::debug!("new event {:?} ({})", ev.name, ev.id);
            self.events.keep(ev);
        } else {
            self.events.witness(ev.ltime);
        }
    }
}

impl MemberSink for Publisher {
    fn apply(&self, ev: &Event) -> bool {
        match ev {
            Event::Record { name, record } => {
                self.catalog
                    .apply_record(name, record.version, &record.body);
                return false;
            }
            Event::User { kind, payload, .. } => {
                if *kind == EventKind::USER {
                    self.user_event(payload);
                }
                return false;
            }
            _ => {}
        }
        let change = self.members.apply(ev);
        self.catalog.note_members_index(self.members.index());
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
