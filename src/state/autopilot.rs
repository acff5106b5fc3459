//! The operator's view of the servers: Consul's autopilot settings, each server's health as the
//! leader judges it (`/v1/operator/autopilot/health`), and the operator requests that go to the
//! leader (removing a raft peer, saving and restoring snapshots).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Consul's `autopilot` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutopilotConfig {
    /// Remove servers gossip declares failed from the raft configuration.
    pub cleanup_dead_servers: bool,
    /// A server whose last contact with the leader is older is unhealthy.
    pub last_contact_threshold: Duration,
    /// A server this many entries or more behind the leader is unhealthy.
    pub max_trailing_logs: u64,
    /// Dead servers are not removed below this many voters.
    pub min_quorum: u64,
    /// How long a new server must keep up before it votes.
    pub server_stabilization_time: Duration,
}

impl Default for AutopilotConfig {
    fn default() -> Self {
        AutopilotConfig {
            cleanup_dead_servers: true,
            last_contact_threshold: Duration::from_millis(200),
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization_time: Duration::from_secs(10),
        }
    }
}

/// Which raft peer an operator names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRef {
    /// By server (node) ID.
    Id(String),
    /// By RPC address `IP:port`.
    Address(String),
}

impl std::fmt::Display for PeerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerRef::Id(id) => write!(f, "id {id:?}"),
            PeerRef::Address(a) => write!(f, "address {a:?}"),
        }
    }
}

/// An operator request served by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorOp {
    /// Remove a server from the raft configuration.
    RemovePeer(PeerRef),
    /// Judge every server's health.
    Health,
    /// A snapshot file of the state (`stale`: any server's, not only the leader's).
    Save {
        /// Whether any server may answer.
        stale: bool,
    },
    /// Replace the state with a snapshot file's.
    Restore(Vec<u8>),
}

/// The leader's answer to an [`OperatorOp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorReply {
    /// The peer was removed.
    Removed,
    /// The servers' health.
    Health(AutopilotHealth),
    /// A snapshot file and the index of its state.
    Snapshot {
        /// Log index the state is at.
        index: u64,
        /// The file.
        file: Vec<u8>,
    },
    /// The snapshot was restored by the entry at this index.
    Restored {
        /// Log index.
        index: u64,
    },
}

/// What a server reports of its raft state, and what gossip says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStats {
    /// Node ID.
    pub id: String,
    /// Node name.
    pub name: String,
    /// RPC address.
    pub address: String,
    /// Gossip status (`alive`, `failed`, `left`, `none`).
    pub serf_status: String,
    /// Whether it leads.
    pub leader: bool,
    /// Whether it votes.
    pub voter: bool,
    /// Time since it last heard from the leader (`None`: it did not answer).
    pub last_contact: Option<Duration>,
    /// Term of its last log entry.
    pub last_term: u64,
    /// Index of its last log entry.
    pub last_index: u64,
}

/// One server's health (Consul's `ServerHealth`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHealth {
    /// Node ID.
    pub id: String,
    /// Node name.
    pub name: String,
    /// RPC address.
    pub address: String,
    /// Gossip status.
    pub serf_status: String,
    /// murmur's version.
    pub version: String,
    /// Whether it leads.
    pub leader: bool,
    /// Time since it last heard from the leader.
    pub last_contact: Duration,
    /// Term of its last log entry.
    pub last_term: u64,
    /// Index of its last log entry.
    pub last_index: u64,
    /// Whether it is healthy.
    pub healthy: bool,
    /// Whether it votes.
    pub voter: bool,
    /// Since when its health has been what it is.
    pub stable_since: SystemTime,
}

/// Every server's health (Consul's `OperatorHealthReply`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotHealth {
    /// Every server is healthy.
    pub healthy: bool,
    /// Voters that may fail with the cluster still able to elect a leader.
    pub failure_tolerance: u64,
    /// The servers.
    pub servers: Vec<ServerHealth>,
}

/// Judges a server as Consul's autopilot does: alive in gossip, heard from the leader recently, in
/// the leader's term, and not too far behind its log.
pub fn healthy(s: &ServerStats, leader_term: u64, leader_index: u64, c: &AutopilotConfig) -> bool {
    if leader_term == 0 || leader_index == 0 {
        return false;
    }
    let alive = s.serf_status == "alive" || s.serf_status == "leaving";
    let recent = s
        .last_contact
        .is_some_and(|t| t <= c.last_contact_threshold);
    alive
        && recent
        && s.last_term == leader_term
        && s.last_index + c.max_trailing_logs >= leader_index
}

/// The reply for `servers`, with `stable_since(index, healthy)` telling since when each has been so.
pub fn assess(
    servers: Vec<ServerStats>,
    c: &AutopilotConfig,
    version: &str,
    mut stable_since: impl FnMut(&ServerStats, bool) -> SystemTime,
) -> AutopilotHealth {
    let (leader_term, leader_index) = servers
        .iter()
        .find(|s| s.leader)
        .map_or((0, 0), |l| (l.last_term, l.last_index));
    let servers: Vec<ServerHealth> = servers
        .into_iter()
        .map(|s| {
            let ok = healthy(&s, leader_term, leader_index, c);
            ServerHealth {
                stable_since: stable_since(&s, ok),
                id: s.id,
                name: s.name,
                address: s.address,
                serf_status: s.serf_status,
                version: version.to_string(),
                leader: s.leader,
                last_contact: s.last_contact.unwrap_or_default(),
                last_term: s.last_term,
                last_index: s.last_index,
                healthy: ok,
                voter: s.voter,
            }
        })
        .collect();
    let voters = servers.iter().filter(|s| s.voter).count() as u64;
    let healthy_voters = servers.iter().filter(|s| s.voter && s.healthy).count() as u64;
    AutopilotHealth {
        healthy: !servers.is_empty() && servers.iter().all(|s| s.healthy),
        failure_tolerance: healthy_voters.saturating_sub(voters / 2 + 1),
        servers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str, leader: bool, contact_ms: Option<u64>, index: u64) -> ServerStats {
        ServerStats {
            id: format!("id-{name}"),
            name: name.into(),
            address: format!("{name}:8300"),
            serf_status: "alive".into(),
            leader,
            voter: true,
            last_contact: contact_ms.map(Duration::from_millis),
            last_term: 3,
            last_index: index,
        }
    }

    #[test]
    fn health_and_failure_tolerance_as_autopilot_judges_them() {
        let c = AutopilotConfig::default();
        let now = SystemTime::now();
        let all_well = vec![
            server("a", true, Some(0), 1000),
            server("b", false, Some(50), 990),
            server("c", false, Some(120), 800),
        ];
        let h = assess(all_well.clone(), &c, "0.1.0", |_, _| now);
        assert!(h.healthy);
        assert_eq!(h.failure_tolerance, 1);

        // Too far behind, silent too long, failed in gossip, or in another term: unhealthy.
        let mut sick = all_well;
        sick[1].last_index = 700;
        let h = assess(sick.clone(), &c, "0.1.0", |_, _| now);
        assert_eq!(
            h.servers.iter().map(|s| s.healthy).collect::<Vec<_>>(),
            [true, false, true]
        );
        assert!(!h.healthy);
        assert_eq!(h.failure_tolerance, 0);
        for change in [
            |s: &mut ServerStats| s.last_contact = Some(Duration::from_millis(201)),
            |s: &mut ServerStats| s.last_contact = None,
            |s: &mut ServerStats| s.serf_status = "failed".into(),
            |s: &mut ServerStats| s.last_term = 2,
        ] {
            let mut v = sick.clone();
            v[1].last_index = 990;
            change(&mut v[2]);
            let h = assess(v, &c, "0.1.0", |_, _| now);
            assert!(!h.servers[2].healthy && h.servers[1].healthy);
        }
        // No leader known: nobody is healthy.
        let mut leaderless = sick;
        leaderless[0].leader = false;
        assert!(
            !assess(leaderless, &c, "0.1.0", |_, _| now)
                .servers
                .iter()
                .any(|s| s.healthy)
        );
    }
}
