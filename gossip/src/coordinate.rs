//! Network coordinates: Vivaldi (Dabek et al., SIGCOMM 2004) with the refinements Serf uses, from
//! Ledlie et al. ("Network Coordinates in the Wild", NSDI 2007): a height for each node's access link,
//! a per-peer median filter on RTT samples, an adjustment term from recent errors, and a weak pull
//! towards the origin so the whole system does not drift.
//!
//! Sans-IO like the rest of the core: the caller hands in a peer's coordinate and a measured RTT; the
//! client owns no clock and no socket. Distances are in seconds.

use std::time::Duration;

use crate::rng::Rng;

/// Dimensions of the Euclidean part (Serf's default; more buys little on Internet latencies).
pub const DIMENSIONS: usize = 8;

/// Tuning of the Vivaldi client.
#[derive(Debug, Clone, PartialEq)]
pub struct VivaldiConfig {
    /// Largest error estimate (and the one a new node starts with).
    pub error_max: f64,
    /// How fast the error estimate follows new samples (`c_e`).
    pub ce: f64,
    /// How far one sample moves the coordinate (`c_c`).
    pub cc: f64,
    /// Samples behind the adjustment term (0: no adjustment).
    pub adjustment_window: usize,
    /// Smallest height, in seconds.
    pub height_min: f64,
    /// RTT samples per peer whose median is used (filters out a delayed answer).
    pub latency_filter: usize,
    /// Distance from the origin, in seconds, at which the pull towards it equals a sample's push.
    pub gravity_rho: f64,
}

impl Default for VivaldiConfig {
    fn default() -> Self {
        VivaldiConfig {
            error_max: 1.5,
            ce: 0.25,
            cc: 0.25,
            adjustment_window: 20,
            height_min: 10e-6,
            latency_filter: 3,
            gravity_rho: 150.0,
        }
    }
}

/// A node's position: a Euclidean vector plus a height, with the node's own error estimate and
/// adjustment. What the wire carries about a peer.
#[derive(Debug, Clone, PartialEq)]
pub struct Coordinate {
    /// The Euclidean part, in seconds.
    pub vec: [f64; DIMENSIONS],
    /// Confidence: the expected relative error of distances from this coordinate.
    pub error: f64,
    /// Average of recent errors, added to distances from this node.
    pub adjustment: f64,
    /// The node's access link, in seconds, added to every distance from it.
    pub height: f64,
}

/// Below this, two magnitudes are equal.
const ZERO: f64 = 1.0e-6;

impl Coordinate {
    /// A new node's coordinate: at the origin, fully uncertain.
    pub fn origin(config: &VivaldiConfig) -> Self {
        Coordinate {
            vec: [0.0; DIMENSIONS],
            error: config.error_max,
            adjustment: 0.0,
            height: config.height_min,
        }
    }

    /// True when every component is a finite number (a peer's coordinate from the wire may not be).
    pub fn is_valid(&self) -> bool {
        self.vec.iter().all(|x| x.is_finite())
            && self.error.is_finite()
            && self.adjustment.is_finite()
            && self.height.is_finite()
    }

    fn raw_distance(&self, other: &Coordinate) -> f64 {
        let euclid = self
            .vec
            .iter()
            .zip(&other.vec)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt();
        euclid + self.height + other.height
    }

    /// The estimated RTT to `other`. The adjustments are left out when they would make it negative.
    pub fn distance(&self, other: &Coordinate) -> Duration {
        let raw = self.raw_distance(other);
        let adjusted = raw + self.adjustment + other.adjustment;
        let secs = if adjusted > 0.0 { adjusted } else { raw };
        // A peer's coordinate may be finite yet absurd; the estimate saturates instead of panicking.
        Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
    }

    /// Moves by `force` seconds along the line from `other` to this coordinate (away when positive).
    fn push(&mut self, config: &VivaldiConfig, force: f64, other: &Coordinate, rng: &mut Rng) {
        let mut diff = [0.0; DIMENSIONS];
        for (d, (a, b)) in diff.iter_mut().zip(self.vec.iter().zip(&other.vec)) {
            *d = a - b;
        }
        let mag = diff.iter().map(|x| x * x).sum::<f64>().sqrt();
        if mag > ZERO {
            for (v, d) in self.vec.iter_mut().zip(diff) {
                *v += d / mag * force;
            }
            // The height takes its share of the push, in proportion to its share of the distance.
            self.height =
                ((self.height + other.height) * force / mag + self.height).max(config.height_min);
        } else {
            // The same place: any direction separates them.
            let mut dir = [0.0; DIMENSIONS];
            for d in &mut dir {
                *d = (rng.next_u64() as f64 / u64::MAX as f64) - 0.5;
            }
            let norm = dir.iter().map(|x| x * x).sum::<f64>().sqrt().max(ZERO);
            for (v, d) in self.vec.iter_mut().zip(dir) {
                *v += d / norm * force;
            }
        }
    }
}

/// Why a sample was not used.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleError {
    /// The peer's coordinate holds a non-finite number.
    InvalidCoordinate,
    /// The RTT is zero or longer than the sanity bound.
    ImplausibleRtt(Duration),
}

/// Longest RTT taken as a sample: anything longer is a stalled process, not the network.
const MAX_RTT: Duration = Duration::from_secs(10);

/// One node's Vivaldi state.
#[derive(Debug, Clone)]
pub struct Vivaldi {
    config: VivaldiConfig,
    coord: Coordinate,
    origin: Coordinate,
    adjustments: Vec<f64>,
    next_adjustment: usize,
    /// Recent RTT samples per peer (by the core's member id), in seconds, oldest first. A short list:
    /// a linear scan of 32 ids costs less than hashing, and keeps the simulator deterministic.
    samples: Vec<(u32, Samples)>,
    /// The latest coordinate of up to `keep_peers` peers, by member id.
    peers: Vec<(u32, Coordinate)>,
    keep_peers: usize,
}

/// Peers whose recent samples are kept. A node probes each of N peers about once per N probe periods,
/// so at scale the filter mostly sees one sample per peer; bounding it keeps 5000 cores in one loadgen
/// process from holding 5000 x 5000 entries.
const MAX_FILTERED_PEERS: usize = 32;

/// Most samples the median filter keeps per peer.
const MAX_FILTER: usize = 4;

/// A peer's recent RTT samples, oldest first.
#[derive(Debug, Clone, Default)]
struct Samples {
    rtts: [f32; MAX_FILTER],
    len: u8,
}

impl Vivaldi {
    /// A client at the origin that remembers no peer's coordinate.
    pub fn new(config: VivaldiConfig) -> Self {
        Self::remembering(config, 0)
    }

    /// A client at the origin that remembers the latest coordinate of up to `keep_peers` peers.
    pub fn remembering(config: VivaldiConfig, keep_peers: usize) -> Self {
        let coord = Coordinate::origin(&config);
        Vivaldi {
            origin: Coordinate {
                vec: [0.0; DIMENSIONS],
                error: config.error_max,
                adjustment: 0.0,
                height: 0.0,
            },
            adjustments: vec![0.0; config.adjustment_window],
            next_adjustment: 0,
            samples: Vec::new(),
            peers: Vec::new(),
            keep_peers,
            coord,
            config,
        }
    }

    /// The remembered peers' latest coordinates, by member id.
    pub fn peers(&self) -> &[(u32, Coordinate)] {
        &self.peers
    }

    fn remember(&mut self, peer: u32, theirs: &Coordinate) {
        if let Some((_, c)) = self.peers.iter_mut().find(|(p, _)| *p == peer) {
            *c = theirs.clone();
        } else if self.peers.len() < self.keep_peers {
            self.peers.push((peer, theirs.clone()));
        }
    }

    /// This node's coordinate.
    pub fn coordinate(&self) -> &Coordinate {
        &self.coord
    }

    /// Forgets a peer's samples (it left or was reaped; its id may name another member next).
    pub fn forget(&mut self, peer: u32) {
        self.samples.retain(|(p, _)| *p != peer);
        self.peers.retain(|(p, _)| *p != peer);
    }

    /// The median of the peer's recent samples, with `rtt` added.
    fn filtered(&mut self, peer: u32, rtt: f64, rng: &mut Rng) -> f64 {
        let keep = self.config.latency_filter.clamp(1, MAX_FILTER);
        let at = match self.samples.iter().position(|(p, _)| *p == peer) {
            Some(k) => k,
            None => {
                if self.samples.len() >= MAX_FILTERED_PEERS {
                    // A random victim: a dropped peer costs one unfiltered sample later.
                    let victim = rng.below(self.samples.len());
                    self.samples.swap_remove(victim);
                }
                self.samples.push((peer, Samples::default()));
                self.samples.len() - 1
            }
        };
        let s = &mut self.samples[at].1;
        let n = s.len as usize;
        if n == keep {
            s.rtts.copy_within(1..n, 0);
            s.rtts[n - 1] = rtt as f32;
        } else {
            s.rtts[n] = rtt as f32;
            s.len += 1;
        }
        let mut sorted = s.rtts;
        let sorted = &mut sorted[..s.len as usize];
        sorted.sort_by(f32::total_cmp);
        f64::from(sorted[sorted.len() / 2])
    }

    /// Takes one measurement: `peer` (whose coordinate is `theirs`) answered in `rtt`.
    pub fn observe(
        &mut self,
        peer: u32,
        theirs: &Coordinate,
        rtt: Duration,
        rng: &mut Rng,
    ) -> Result<(), SampleError> {
        if !theirs.is_valid() {
            return Err(SampleError::InvalidCoordinate);
        }
        if rtt.is_zero() || rtt > MAX_RTT {
            return Err(SampleError::ImplausibleRtt(rtt));
        }
        self.remember(peer, theirs);
        let rtt = self.filtered(peer, rtt.as_secs_f64(), rng);
        let before = self.coord.clone();
        self.update(theirs, rtt, rng);
        if !self.coord.is_valid() {
            // Never let one bad step poison every later estimate.
            self.coord = before;
        }
        Ok(())
    }

    fn update(&mut self, theirs: &Coordinate, rtt: f64, rng: &mut Rng) {
        let c = &self.config;
        let dist = self.coord.raw_distance(theirs);
        // Weigh the sample by how sure we are relative to the peer.
        let total = (self.coord.error + theirs.error).max(ZERO);
        let weight = self.coord.error / total;
        let sample_error = (dist - rtt).abs() / rtt;
        self.coord.error = (c.ce * weight * sample_error
            + self.coord.error * (1.0 - c.ce * weight))
            .min(c.error_max);
        let force = c.cc * weight * (rtt - dist);
        self.coord.push(c, force, theirs, rng);
        // The adjustment: the mean of recent (RTT - estimate) errors, half on each side.
        if !self.adjustments.is_empty() {
            let err = rtt - self.coord.raw_distance(theirs);
            self.adjustments[self.next_adjustment] = err;
            self.next_adjustment = (self.next_adjustment + 1) % self.adjustments.len();
            self.coord.adjustment =
                self.adjustments.iter().sum::<f64>() / (2.0 * self.adjustments.len() as f64);
        }
        // Gravity: a pull towards the origin growing with the square of the distance from it.
        let from_origin = self.coord.raw_distance(&self.origin);
        let pull = -(from_origin / c.gravity_rho).powi(2);
        self.coord.push(c, pull, &self.origin, rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_nodes_settle_at_their_rtt_and_bad_samples_are_refused() {
        let mut rng = Rng::new(7);
        let mut a = Vivaldi::new(VivaldiConfig::default());
        let mut b = Vivaldi::new(VivaldiConfig::default());
        let rtt = Duration::from_millis(40);
        for _ in 0..200 {
            let theirs = b.coordinate().clone();
            a.observe(2, &theirs, rtt, &mut rng).unwrap();
            let theirs = a.coordinate().clone();
            b.observe(1, &theirs, rtt, &mut rng).unwrap();
        }
        let est = a.coordinate().distance(b.coordinate()).as_secs_f64();
        assert!((est - 0.040).abs() < 0.004, "estimate {est}");
        assert!(a.coordinate().error < 0.2, "error {}", a.coordinate().error);
        let mut bad = b.coordinate().clone();
        bad.vec[3] = f64::NAN;
        assert_eq!(
            a.observe(2, &bad, rtt, &mut rng),
            Err(SampleError::InvalidCoordinate)
        );
        assert!(matches!(
            a.observe(2, b.coordinate(), Duration::ZERO, &mut rng),
            Err(SampleError::ImplausibleRtt(_))
        ));
        assert!(a.coordinate().is_valid());
    }

    #[test]
    fn peers_coordinates_are_remembered_up_to_the_bound_and_forgotten() {
        let mut rng = Rng::new(3);
        let at = |x: f64| {
            let mut c = Coordinate::origin(&VivaldiConfig::default());
            c.vec[0] = x;
            c
        };
        let rtt = Duration::from_millis(5);
        let mut lan = Vivaldi::new(VivaldiConfig::default());
        lan.observe(2, &at(0.1), rtt, &mut rng).unwrap();
        assert!(lan.peers().is_empty(), "the LAN remembers none");
        let mut wan = Vivaldi::remembering(VivaldiConfig::default(), 2);
        wan.observe(2, &at(0.1), rtt, &mut rng).unwrap();
        wan.observe(3, &at(0.2), rtt, &mut rng).unwrap();
        wan.observe(2, &at(0.3), rtt, &mut rng).unwrap();
        wan.observe(4, &at(0.4), rtt, &mut rng).unwrap();
        let kept: Vec<(u32, f64)> = wan.peers().iter().map(|(p, c)| (*p, c.vec[0])).collect();
        assert_eq!(
            kept,
            [(2, 0.3), (3, 0.2)],
            "the latest, and no more than the bound"
        );
        let mut bad = at(0.5);
        bad.error = f64::NAN;
        assert!(wan.observe(3, &bad, rtt, &mut rng).is_err());
        assert_eq!(
            wan.peers()[1].1.vec[0],
            0.2,
            "a refused coordinate is not kept"
        );
        wan.forget(2);
        assert_eq!(wan.peers().len(), 1);
        wan.observe(4, &at(0.4), rtt, &mut rng).unwrap();
        assert_eq!(wan.peers().len(), 2, "room again for another");
    }

    #[test]
    fn the_median_filter_ignores_one_delayed_answer() {
        let mut rng = Rng::new(1);
        let mut a = Vivaldi::new(VivaldiConfig::default());
        let peer = Coordinate::origin(&VivaldiConfig::default());
        a.observe(2, &peer, Duration::from_millis(10), &mut rng)
            .unwrap();
        a.observe(2, &peer, Duration::from_millis(11), &mut rng)
            .unwrap();
        let median = a.filtered(2, 0.9, &mut rng);
        assert!(
            (median - 0.011).abs() < 1e-6,
            "the median of 10, 11 and 900 ms: {median}"
        );
        // The fourth sample pushes out the first: 11, 900 and 12 ms.
        assert!((a.filtered(2, 0.012, &mut rng) - 0.012).abs() < 1e-6);
        for peer in 0..1000 {
            a.filtered(100 + peer, 0.01, &mut rng);
        }
        assert!(a.samples.len() <= MAX_FILTERED_PEERS);
    }

    /// 200 nodes in a plane (a continent: up to ~100 ms apart) with access links of 0-5 ms; each round
    /// every node measures a random peer. The estimate must come within 20% of the true RTT for the
    /// median pair (the goal for the simulator).
    #[test]
    fn two_hundred_nodes_converge_within_twenty_percent() {
        let n = 200;
        let mut rng = Rng::new(42);
        let unit = |rng: &mut Rng| rng.next_u64() as f64 / u64::MAX as f64;
        let pos: Vec<(f64, f64, f64)> = (0..n)
            .map(|_| {
                (
                    unit(&mut rng) * 0.07,
                    unit(&mut rng) * 0.07,
                    unit(&mut rng) * 0.005,
                )
            })
            .collect();
        let truth = |i: usize, j: usize| {
            let (a, b) = (pos[i], pos[j]);
            ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt() + a.2 + b.2
        };
        let mut nodes: Vec<Vivaldi> = (0..n)
            .map(|_| Vivaldi::new(VivaldiConfig::default()))
            .collect();
        for _round in 0..100 {
            for i in 0..n {
                let j = (i + 1 + rng.below(n - 1)) % n;
                // +-5% measurement noise.
                let rtt = truth(i, j) * (0.95 + 0.1 * unit(&mut rng));
                let theirs = nodes[j].coordinate().clone();
                nodes[i]
                    .observe(j as u32, &theirs, Duration::from_secs_f64(rtt), &mut rng)
                    .unwrap();
            }
        }
        let mut errors: Vec<f64> = (0..2000)
            .map(|_| {
                let i = rng.below(n);
                let j = (i + 1 + rng.below(n - 1)) % n;
                let est = nodes[i].coordinate().distance(nodes[j].coordinate());
                (est.as_secs_f64() - truth(i, j)).abs() / truth(i, j)
            })
            .collect();
        errors.sort_by(f64::total_cmp);
        let median = errors[errors.len() / 2];
        assert!(median < 0.2, "median relative error {median:.3}");
    }
}
