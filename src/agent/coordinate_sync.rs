//! Sends this agent's network coordinate to the servers, as Consul's agents do: at most every
//! [`MIN_INTERVAL`], and in a large cluster less often, so that all agents together stay near
//! [`RATE_TARGET`] updates a second; the leader groups the updates that arrive together into one
//! log entry.

use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use crate::net::GossipHandle;
use crate::state::MemberTable;
use crate::state::coordinates::{Coord, CoordinateEntry, CoordinateOp};
use crate::state::replicated::{Change, Replicated};

/// Shortest time between two updates (Consul's `sync_coordinate_interval_min`).
const MIN_INTERVAL: Duration = Duration::from_secs(15);
/// Updates a second the whole datacenter aims at (Consul's `sync_coordinate_rate_target`).
const RATE_TARGET: f64 = 64.0;
/// The first update goes early, once a few probes have placed the node roughly: `/v1/coordinate`
/// and `?near=` are useful soon after a start, not only a full interval later.
const FIRST: Duration = Duration::from_secs(3);

/// Time until the next update in a datacenter of `members` agents (Consul's rate-scaled interval),
/// spread by `jitter` in 0..1 so that agents started together do not send together.
fn interval(members: usize, jitter: f64) -> Duration {
    let scaled = Duration::from_secs_f64(members as f64 / RATE_TARGET).max(MIN_INTERVAL);
    scaled + scaled.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

/// Runs for as long as the agent does.
pub async fn run(
    node: String,
    gossip: GossipHandle,
    members: Arc<MemberTable>,
    store: Arc<dyn Replicated>,
) {
    let mut sent: Option<Coord> = None;
    let mut wait = FIRST.mul_f64(1.0 + random_unit());
    loop {
        tokio::time::sleep(wait).await;
        wait = interval(members.len(), random_unit());
        // None only once the driver stopped (this task runs only with coordinates on).
        let Some(c) = gossip.coordinate().await else {
            return;
        };
        let coord = Coord::from_core(&c);
        // A node alone, or one whose estimate has not moved, has nothing new to say.
        if sent.as_ref() == Some(&coord) {
            continue;
        }
        let update = CoordinateEntry {
            node: node.clone(),
            segment: String::new(),
            coord: coord.clone(),
        };
        match store
            .write(Change::Coordinates(CoordinateOp::Update(vec![update])))
            .await
        {
            Ok(_) => sent = Some(coord),
            // The next interval tries again; the servers may be electing or unreachable.
            Err(e) => debug!("coordinate update not sent: {e}"),
        }
    }
}

fn random_unit() -> f64 {
    crate::util::entropy::u64().map_or(0.5, |r| (r >> 11) as f64 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_scales_with_the_datacenter() {
        assert_eq!(interval(3, 0.0), MIN_INTERVAL);
        assert_eq!(interval(960, 0.0), MIN_INTERVAL);
        assert_eq!(interval(6400, 0.0), Duration::from_secs(100));
        assert_eq!(interval(6400, 1.0), Duration::from_secs(150));
    }
}
