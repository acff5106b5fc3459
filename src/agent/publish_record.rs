//! Keeps this node's published record (its services and checks, spread by gossip to every agent's
//! catalog) in step with the local registry. A new status, service or check goes out at once; a change
//! of check output alone waits for `check_update_interval` (Consul's agent throttles its catalog syncs
//! the same way, default 5 minutes), so chatty checks do not keep the cluster busy.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::net::GossipHandle;
use crate::state::local_services::LocalServices;
use crate::state::node_record::{NodeRecord, ServiceRecord};

/// Publishes the record whenever the registry changes, until the gossip driver stops. `extra` are
/// services the agent itself carries (`consul` on a server).
pub async fn run(
    services: Arc<LocalServices>,
    gossip: GossipHandle,
    extra: Vec<ServiceRecord>,
    output_interval: Duration,
) {
    let mut changes = services.generation.subscribe();
    let mut published: Option<NodeRecord> = None;
    let mut published_at = Instant::now();
    loop {
        let mut record = NodeRecord::from_local(&services.services(), &services.checks());
        record.services.extend(extra.iter().cloned());
        let now = Instant::now();
        let mut deferred = None;
        let due = match &published {
            None => true,
            Some(p) if *p == record => false,
            Some(p) if p.same_but_outputs(&record) => {
                let at = published_at + output_interval;
                if now < at {
                    deferred = Some(at);
                }
                now >= at
            }
            Some(_) => true,
        };
        if due {
            match publish(&gossip, &record).await {
                Ok(()) => {
                    published = Some(record);
                    published_at = now;
                }
                Err(Stop) => return,
            }
        }
        let wake = deferred.unwrap_or(now + Duration::from_secs(3600));
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// The driver is gone: nothing more to publish.
struct Stop;

async fn publish(gossip: &GossipHandle, record: &NodeRecord) -> Result<(), Stop> {
    let mut bytes = record.encode();
    if bytes.len() > murmur_gossip::wire::MAX_RECORD {
        // Thousands of checks with long outputs: publish the statuses without the outputs.
        bytes = record.clone().without_outputs().encode();
        tracing::warn!(
            "check outputs left out of the published record: with them it exceeds {} bytes",
            murmur_gossip::wire::MAX_RECORD
        );
    }
    match gossip.set_record(bytes).await {
        Ok(version) => {
            tracing::debug!(version, "published services and checks");
            Ok(())
        }
        Err(_) if gossip.is_closed() => Err(Stop),
        Err(e) => {
            tracing::warn!("could not publish services and checks: {e}");
            Ok(())
        }
    }
}
