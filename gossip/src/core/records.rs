//! Application records (each member's services and checks, opaque to the core): the owner raises the
//! version on every change; the version and, when it fits, the content ride the same piggybacked
//! dissemination as membership deltas, and full-state exchanges carry every record whole. A record too
//! large for a datagram spreads as its version alone: a core that learns of a newer version asks its
//! driver to fetch the content from the member that told it ([`Event::FetchRecord`]) and passes the news
//! on only once it holds the content, so every fetch goes to a member that has it.

use super::*;
use crate::record::{Record, RecordError};
use crate::wire::{MAX_RECORD, RecordBody};

/// How long a fetch may stay unanswered before news of the same version asks again.
pub const RECORD_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Record bookkeeping beyond the slots.
#[derive(Default)]
pub(super) struct Records {
    /// Fetches asked of the driver: member -> (version wanted, when the ask lapses).
    pending: HashMap<Id, (u32, Instant)>,
    /// Highest version of our own record heard before we published one (from before a restart).
    own_floor: Option<u32>,
}

impl Core {
    /// Publishes a new local record (replacing the previous one); returns its version.
    pub fn set_record(&mut self, body: Vec<u8>) -> Result<u32, RecordError> {
        if body.len() > MAX_RECORD {
            return Err(RecordError::TooLarge(body.len()));
        }
        if self.leaving {
            return Err(RecordError::Left);
        }
        let version = self
            .local_slot()
            .record
            .as_ref()
            .map(|r| r.version)
            .or(self.records.own_floor)
            .map_or(1, incarnation::next);
        self.install_record(
            self.me_id,
            Record {
                version,
                body: body.into(),
            },
        );
        Ok(version)
    }

    /// The newest record held for member `name`.
    pub fn record(&self, name: &str) -> Option<Arc<Record>> {
        let id = self.lookup(name)?;
        self.view.get(id)?.record.clone()
    }

    /// Hands in a record the driver fetched after [`Event::FetchRecord`] (over an authenticated stream).
    pub fn handle_record(
        &mut self,
        now: Instant,
        from: SocketAddr,
        name: &str,
        version: u32,
        body: &[u8],
    ) {
        if let Some(id) = self.lookup(name)
            && self
                .records
                .pending
                .get(&id)
                .is_some_and(|&(v, _)| incarnation::at_least(version, v))
        {
            self.records.pending.remove(&id);
        }
        self.apply_record(now, from, name, version, RecordBody::Inline(body));
    }

    fn install_record(&mut self, id: Id, record: Record) {
        let record = Arc::new(record);
        let Some(name) = self.view.update(id, |s| {
            s.record = Some(record.clone());
            s.ident.name().clone()
        }) else {
            return;
        };
        self.stats.records_applied += 1;
        self.broadcasts.push(Item::Record { id });
        self.events.push_back(Event::Record { name, record });
    }

    /// Applies news of member `name`'s record at `version`, heard from `from`.
    pub(super) fn apply_record(
        &mut self,
        now: Instant,
        from: SocketAddr,
        name: &str,
        version: u32,
        body: RecordBody<'_>,
    ) {
        // A record names services to route traffic to: only authenticated packets may change one.
        if !self.trusted {
            self.stats.dropped_untrusted_records += 1;
            return;
        }
        let Some(id) = self.lookup(name) else {
            self.stats.records_unknown_member += 1;
            return;
        };
        let Some(s) = self.view.get(id) else { return };
        if s.state == State::Left {
            return;
        }
        let held = s.record.clone();
        if id == self.me_id {
            self.refute_record(held, version, body);
            return;
        }
        if held.is_some_and(|h| incarnation::at_least(h.version, version)) {
            return;
        }
        match body {
            RecordBody::Inline(b) => {
                if self
                    .records
                    .pending
                    .get(&id)
                    .is_some_and(|&(v, _)| incarnation::at_least(version, v))
                {
                    self.records.pending.remove(&id);
                }
                self.install_record(
                    id,
                    Record {
                        version,
                        body: b.into(),
                    },
                )
            }
            RecordBody::Digest(_) => {
                if self
                    .records
                    .pending
                    .get(&id)
                    .is_some_and(|&(v, until)| incarnation::at_least(v, version) && now < until)
                {
                    return;
                }
                self.records
                    .pending
                    .insert(id, (version, now + RECORD_FETCH_TIMEOUT));
                self.stats.record_fetches += 1;
                let name = s.ident.name().clone();
                self.events.push_back(Event::FetchRecord {
                    name,
                    version,
                    from,
                });
            }
        }
    }

    /// The cluster holds a version of our record we do not: one from before a restart (or a forgery).
    /// Republish ours above it, as an incarnation refutes a claim.
    fn refute_record(&mut self, mine: Option<Arc<Record>>, version: u32, body: RecordBody<'_>) {
        let Some(mine) = mine else {
            // Nothing published yet: the application's first record will be raised past this one.
            self.stats.records_refuted += 1;
            self.records.own_floor = Some(match self.records.own_floor {
                Some(f) => incarnation::later(f, version),
                None => version,
            });
            return;
        };
        let differs = match body {
            RecordBody::Inline(b) => *b != *mine.body,
            RecordBody::Digest(n) => n as usize != mine.body.len(),
        };
        if incarnation::newer(version, mine.version) || (version == mine.version && differs) {
            self.stats.records_refuted += 1;
            let version = incarnation::next(incarnation::later(version, mine.version));
            self.install_record(
                self.me_id,
                Record {
                    version,
                    body: mine.body.clone(),
                },
            );
        }
    }

    /// Forgets pending fetches for a member that is gone.
    pub(super) fn forget_fetch(&mut self, id: Id) {
        self.records.pending.remove(&id);
    }
}

/// The record delta of a slot: whole when it fits in `inline_limit` bytes, else its version and size.
pub(super) fn record_delta(s: &Slot, inline_limit: usize) -> Option<Delta<'_>> {
    let r = s.record.as_ref()?;
    if s.state == State::Left {
        return None;
    }
    let body = if r.body.len() <= inline_limit {
        RecordBody::Inline(&r.body)
    } else {
        RecordBody::Digest(r.body.len() as u32)
    };
    Some(Delta::Record {
        name: s.ident.name(),
        version: r.version,
        body,
    })
}

/// Largest record sent whole inside a datagram of `mtu` bytes (room left for the header and a name).
pub(super) fn inline_limit(mtu: usize) -> usize {
    mtu.saturating_sub(wire::MAX_NAME + 64)
}
