//! Keeps this agent's catalog in step with the servers' external catalog: a blocking `?stale` read
//! (any server answers, also without a leader) of what changed since the index last seen, applied
//! each time the index moves. Reads of external services then stay on the agent, as reads of
//! gossip-owned ones do.
//!
//! Only the changed nodes travel (the whole table on the first read, or when the answering server no
//! longer remembers a removal the agent may have missed): a Consul blocking query returns its whole
//! result each time, which, sent to every agent, would cost the servers the table's size times the
//! number of agents for each check an external monitor updates.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use crate::state::catalog::Catalog;
use crate::state::replicated::{Consistency, Query, ReadAnswer, ReadRequest, Replicated};

/// How long one read blocks at the servers (Consul's default blocking wait).
const WAIT: Duration = Duration::from_secs(300);
/// First retry after a failed read; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A first read may fail until the servers are found and elected; past this, failing is news.
const QUIET_START: Duration = Duration::from_secs(30);

/// Mirrors the servers' external catalog into `catalog` for as long as the agent runs.
pub async fn run(store: Arc<dyn Replicated>, catalog: Arc<Catalog>) {
    let mut seen: Option<u64> = None;
    let mut backoff = MIN_BACKOFF;
    let mut failing_since: Option<std::time::Instant> = None;
    let mut warned = false;
    loop {
        let request = ReadRequest {
            query: Query::External {
                since: seen.unwrap_or(0),
            },
            consistency: Consistency::Stale,
            min_index: seen,
            wait: WAIT,
        };
        let failure = match store.read(request).await {
            Ok(r) => match r.answer {
                ReadAnswer::External(delta) => {
                    if delta.whole {
                        catalog.set_external(r.index, delta.nodes);
                    } else {
                        catalog.patch_external(r.index, delta.nodes, &delta.removed);
                    }
                    seen = Some(r.index);
                    backoff = MIN_BACKOFF;
                    (failing_since, warned) = (None, false);
                    continue;
                }
                other => format!("unexpected answer {other:?}"),
            },
            Err(e) => e.to_string(),
        };
        let since = *failing_since.get_or_insert_with(std::time::Instant::now);
        if !warned && (seen.is_some() || since.elapsed() > QUIET_START) {
            warn!("external catalog: reading it from the servers fails, retrying: {failure}");
            warned = true;
        } else {
            debug!("external catalog: read failed: {failure}");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
