//! Gossip tuning: memberlist-like profiles (`lan`, `wan`, `local`) whose fields can each be overridden.

use std::time::Duration;

/// Tuning knobs of the SWIM/Lifeguard core.
#[derive(Debug, Clone, PartialEq)]
pub struct GossipConfig {
    /// Time between failure-detection probes (scaled by local health).
    pub probe_interval: Duration,
    /// Wait for a direct ack before asking others to probe indirectly.
    pub probe_timeout: Duration,
    /// Number of peers asked to probe indirectly.
    pub indirect_checks: usize,
    /// Time between gossip rounds.
    pub gossip_interval: Duration,
    /// Peers each gossip round sends to (fanout).
    pub gossip_nodes: usize,
    /// Retransmit limit is `retransmit_mult * ceil(log10(N + 1))`.
    pub retransmit_mult: u32,
    /// Minimum suspicion timeout is `suspicion_mult * log10(N) * probe_interval`.
    pub suspicion_mult: u32,
    /// Suspicion starts at this multiple of its minimum and shrinks with confirmations.
    pub suspicion_max_timeout_mult: u32,
    /// Highest local health (awareness) multiplier.
    pub awareness_max_multiplier: u32,
    /// Base interval of full-state exchanges (scaled with cluster size).
    pub push_pull_interval: Duration,
    /// How long failed members keep receiving gossip, so they can refute.
    pub gossip_to_the_dead_time: Duration,
    /// How often a failed member is contacted to re-merge healed partitions.
    pub reconnect_interval: Duration,
    /// Failed members are forgotten after this long.
    pub reconnect_timeout: Duration,
    /// Left members are forgotten after this long.
    pub tombstone_timeout: Duration,
    /// Byte budget of one datagram.
    pub mtu: usize,
    /// Concurrent indirect probes relayed for others; beyond it requests are dropped and counted.
    pub max_relays: usize,
    /// Concurrent full-state replies being sent; beyond it requests are dropped and counted.
    pub max_sync_replies: usize,
    /// Lifeguard extensions (local health, dynamic suspicion, buddy system, nacks); off = plain SWIM,
    /// kept for comparison runs.
    pub lifeguard: bool,
    /// Ring monitoring (with Lifeguard): every other probe goes to the next live member on the ring of
    /// hashed names, the `suspicion_mult` members before a suspect on that ring probe it at once, and
    /// one confirmation more than Lifeguard asks for brings the suspicion timeout down to
    /// [`GossipConfig::fast_suspicion_timeout`]. Off = memberlist's detection, kept for comparison.
    pub ring_monitors: bool,
    /// Periodic and reconnect full-state exchanges are left to the driver ([`crate::Event::PushPull`],
    /// e.g. over QUIC streams) instead of being chunked into datagrams by the core.
    pub external_push_pull: bool,
    /// Network coordinates (Vivaldi) from the RTTs of direct probes; Consul's `disable_coordinates`
    /// turns them off.
    pub coordinates: bool,
    /// Peers whose latest coordinate is remembered, for distance estimates to them (a WAN pool's
    /// servers, to order datacenters by distance). None on the LAN: a coordinate per member on every
    /// node would cost more memory than the rest of the member table.
    pub peer_coordinates: usize,
    /// A changed record goes as a patch against the version before to members that announce they read
    /// patches. Off, this node neither announces nor sends them, as builds before them did; kept for
    /// comparison and for tests of mixed clusters.
    pub record_patches: bool,
    /// Pings list the record versions installed lately, and acks carry those the prober lacks: the
    /// repair that lets each holder announce a change only [`crate::RECORD_SENDS`] times instead of
    /// the membership retransmit limit. Off, as builds before it did; kept for comparison and for
    /// tests of mixed clusters.
    pub record_news: bool,
    /// Full states sent to members that announce they read it carry each record without its member's
    /// name, which the state delta before it already gave. Off, as builds before it did; kept for
    /// comparison and for tests of mixed clusters.
    pub short_records: bool,
    /// A changed record travels down a broadcast tree over the ring, each member receiving it once
    /// (with the news lists repairing what a failed or disagreeing hop drops), instead of being
    /// gossiped [`crate::RECORD_SENDS`] times by each holder. Used only while every live member
    /// announces it and news lists are in use. Off, as builds before it did; kept for comparison and
    /// for tests of mixed clusters.
    pub record_tree: bool,
}

impl GossipConfig {
    /// Local-network defaults (memberlist `DefaultLANConfig`).
    pub fn lan() -> Self {
        GossipConfig {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 3,
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            retransmit_mult: 4,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            awareness_max_multiplier: 8,
            push_pull_interval: Duration::from_secs(30),
            gossip_to_the_dead_time: Duration::from_secs(30),
            reconnect_interval: Duration::from_secs(30),
            reconnect_timeout: Duration::from_secs(72 * 3600),
            tombstone_timeout: Duration::from_secs(24 * 3600),
            mtu: 1400,
            max_relays: 1024,
            max_sync_replies: 16,
            lifeguard: true,
            ring_monitors: true,
            external_push_pull: false,
            coordinates: true,
            peer_coordinates: 0,
            record_patches: true,
            record_news: true,
            short_records: true,
            record_tree: true,
        }
    }

    /// Wide-area defaults (memberlist `DefaultWANConfig`).
    pub fn wan() -> Self {
        GossipConfig {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            gossip_interval: Duration::from_millis(500),
            gossip_nodes: 4,
            suspicion_mult: 6,
            push_pull_interval: Duration::from_secs(60),
            gossip_to_the_dead_time: Duration::from_secs(60),
            peer_coordinates: 1024,
            ..Self::lan()
        }
    }

    /// Loopback / single-host defaults (memberlist `DefaultLocalConfig`).
    pub fn local() -> Self {
        GossipConfig {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(200),
            gossip_interval: Duration::from_millis(100),
            retransmit_mult: 2,
            suspicion_mult: 3,
            push_pull_interval: Duration::from_secs(15),
            gossip_to_the_dead_time: Duration::from_secs(15),
            reconnect_interval: Duration::from_secs(10),
            ..Self::lan()
        }
    }

    /// Profile by name.
    pub fn profile(name: &str) -> Option<Self> {
        match name {
            "lan" => Some(Self::lan()),
            "wan" => Some(Self::wan()),
            "local" => Some(Self::local()),
            _ => None,
        }
    }

    /// Rejects settings the core cannot work with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.probe_interval.is_zero() || self.gossip_interval.is_zero() {
            return Err(ConfigError::ZeroInterval);
        }
        if self.probe_timeout >= self.probe_interval {
            return Err(ConfigError::ProbeTimeout);
        }
        if !(MIN_MTU..=crate::wire::MAX_DATAGRAM).contains(&self.mtu) {
            return Err(ConfigError::Mtu(self.mtu));
        }
        if self.suspicion_mult == 0 || self.retransmit_mult == 0 || self.gossip_nodes == 0 {
            return Err(ConfigError::ZeroMultiplier);
        }
        Ok(())
    }

    /// Retransmit limit for a cluster of `n` members.
    pub fn retransmit_limit(&self, n: usize) -> u32 {
        self.retransmit_mult * ceil_log10(n + 1)
    }

    /// Lifeguard's floor of a suspicion's timeout in a cluster of `n` live members:
    /// `suspicion_mult * log10(n) * probe_interval`, as memberlist computes it.
    pub fn suspicion_timeout(&self, n: usize) -> Duration {
        let scale = (n.max(1) as f64).log10().max(1.0);
        self.probe_interval
            .mul_f64(f64::from(self.suspicion_mult) * scale)
    }

    /// The timeout of a suspicion that `suspicion_mult` distinct members raised or confirmed (with ring
    /// monitoring): `(suspicion_mult + 1) * probe_interval`, and never above
    /// [`GossipConfig::suspicion_timeout`]. Five seconds by default, against 14.8 s at 5000 members.
    ///
    /// Why no `log10(n)`: the floor exists so a suspect hears of the suspicion and its refutation
    /// spreads before anyone gives up on it. The monitors' probes carry the suspicion to the suspect
    /// directly (the buddy system), and a refutation reaches every node of 5000 within about 1.2 s, so
    /// what is left of the floor is how long a live node may go silent; that does not grow with the
    /// cluster.
    pub fn fast_suspicion_timeout(&self, n: usize) -> Duration {
        (self.probe_interval * (self.suspicion_mult + 1)).min(self.suspicion_timeout(n))
    }

    /// Push/pull interval scaled to cluster size (memberlist `pushPullScale`: doubles past 32 members).
    pub fn push_pull_interval_for(&self, n: usize) -> Duration {
        if n <= 32 {
            return self.push_pull_interval;
        }
        let mult = ((n as f64).log2() - 5.0).ceil() as u32 + 1;
        self.push_pull_interval * mult
    }
}

/// Smallest datagram size the core agrees to work with (the IPv4 minimum reassembly size).
pub const MIN_MTU: usize = 576;

/// Why a [`GossipConfig`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// `probe_interval` or `gossip_interval` is zero.
    ZeroInterval,
    /// `probe_timeout` is not shorter than `probe_interval`.
    ProbeTimeout,
    /// `mtu` outside [`MIN_MTU`]..=[`crate::wire::MAX_DATAGRAM`].
    Mtu(usize),
    /// `suspicion_mult`, `retransmit_mult` or `gossip_nodes` is zero.
    ZeroMultiplier,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::ZeroInterval => {
                f.write_str("probe_interval and gossip_interval must be positive")
            }
            ConfigError::ProbeTimeout => {
                f.write_str("probe_timeout must be shorter than probe_interval")
            }
            ConfigError::Mtu(_) => write!(
                f,
                "mtu must be between {MIN_MTU} and {}",
                crate::wire::MAX_DATAGRAM
            ),
            ConfigError::ZeroMultiplier => {
                f.write_str("suspicion_mult, retransmit_mult and gossip_nodes must be at least 1")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

fn ceil_log10(n: usize) -> u32 {
    (n as f64).log10().ceil().max(1.0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_memberlist_formulas() {
        let c = GossipConfig::lan();
        assert_eq!(c.retransmit_limit(5000), 16);
        assert_eq!(c.retransmit_limit(3), 4);
        assert_eq!(c.push_pull_interval_for(10), Duration::from_secs(30));
        assert_eq!(c.push_pull_interval_for(5000), Duration::from_secs(270));
        assert_eq!(c.suspicion_timeout(10), Duration::from_secs(4));
        let floor = c.suspicion_timeout(5000).as_secs_f64();
        assert!((14.79..14.81).contains(&floor), "{floor}");
        assert_eq!(c.fast_suspicion_timeout(5000), Duration::from_secs(5));
        assert_eq!(
            c.fast_suspicion_timeout(10),
            Duration::from_secs(4),
            "never above Lifeguard's floor"
        );
        assert!(c.validate().is_ok());
        assert!(GossipConfig::profile("wan").unwrap().validate().is_ok());
        assert!(GossipConfig::profile("local").unwrap().validate().is_ok());
        assert!(GossipConfig::profile("moon").is_none());
        let bad = GossipConfig {
            probe_timeout: Duration::from_secs(2),
            ..GossipConfig::lan()
        };
        assert_eq!(bad.validate(), Err(ConfigError::ProbeTimeout));
    }
}
