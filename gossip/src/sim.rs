//! Simulated network with virtual time: drives many gossip cores deterministically, with latency, jitter,
//! loss, partitions, crashes and stalls. The second driver of the core (the first is the UDP one).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::rng::Rng;
use crate::timers::TimerHeap;
use crate::{Core, Event, GossipConfig, Identity, Record, Roster};
use std::sync::Arc;

/// Network behaviour of the simulation.
#[derive(Debug, Clone)]
pub struct NetModel {
    /// One-way base latency.
    pub latency: Duration,
    /// Uniform extra latency in `0..jitter`.
    pub jitter: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
}

impl Default for NetModel {
    fn default() -> Self {
        NetModel {
            latency: Duration::from_micros(200),
            jitter: Duration::from_micros(100),
            loss: 0.0,
        }
    }
}

/// One-way latency of the path from node `src` to node `dst`, replacing [`NetModel::latency`].
pub type LinkLatency = Box<dyn Fn(usize, usize) -> Duration>;

/// Sees every datagram the network carries: `(src, dst, bytes)`.
pub type Tap = Box<dyn FnMut(usize, usize, &[u8])>;

/// Decides which datagrams the network carries (`(src, dst, bytes)`; false drops it): a path that loses
/// only some kinds of traffic.
pub type Filter = Box<dyn FnMut(usize, usize, &[u8]) -> bool>;

/// One simulated node.
pub struct SimNode {
    /// Its gossip core.
    pub core: Core,
    /// False once crashed: it neither sends, receives nor runs timers.
    pub up: bool,
    /// While set and in the future, the node is frozen (a stalled process); work waits until then.
    pub stalled_until: Option<Instant>,
    /// Partition group; datagrams only pass between equal groups.
    pub group: u32,
    /// Receives nothing while it still sends: the semi-detached node of a one-way partition
    /// (hashicorp/consul #5928).
    pub deaf: bool,
    /// Every datagram to it is handled this much later than it arrives: a CPU-starved process working
    /// through a backlog (its timers still run on time, so its own probes time out).
    pub lag: Duration,
}

enum Work {
    Deliver {
        dst: usize,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    Timer(usize),
    /// The answer to a record fetch, as a stream would bring it.
    Fetched {
        dst: usize,
        from: SocketAddr,
        record: Arc<Record>,
        name: Arc<str>,
    },
}

/// The simulation: nodes, in-flight datagrams and a virtual clock.
pub struct Sim {
    /// Current virtual time.
    pub now: Instant,
    start: Instant,
    /// Network behaviour, changeable between steps.
    pub net: NetModel,
    nodes: Vec<SimNode>,
    /// Names interned once for every node (each core keeps its own view).
    roster: Arc<Roster>,
    by_addr: HashMap<SocketAddr, usize>,
    work: TimerHeap<Work>,
    rng: Rng,
    buf: Vec<u8>,
    pool: Vec<Vec<u8>>,
    /// Datagrams sent / dropped by the network model (loss, partition, crashed receiver).
    pub sent: u64,
    /// Datagrams lost to the network model.
    pub dropped: u64,
    links: Option<LinkLatency>,
    tap: Option<Tap>,
    filter: Option<Filter>,
}

/// Deterministic loopback-range address of simulated node `i` (nothing is ever sent to it).
pub fn sim_addr(i: usize) -> SocketAddr {
    let i = i as u32 + 1;
    let ip = Ipv4Addr::new(127, (i >> 16) as u8, (i >> 8) as u8, i as u8);
    SocketAddr::new(IpAddr::V4(ip), 7946)
}

impl Sim {
    /// Empty simulation seeded with `seed`.
    pub fn new(seed: u64, net: NetModel) -> Self {
        let now = Instant::now();
        Sim {
            now,
            start: now,
            net,
            nodes: Vec::new(),
            roster: Roster::new(),
            by_addr: HashMap::new(),
            work: TimerHeap::default(),
            rng: Rng::new(seed),
            buf: Vec::with_capacity(9216),
            pool: Vec::new(),
            sent: 0,
            dropped: 0,
            links: None,
            tap: None,
            filter: None,
        }
    }

    /// Gives every path its own one-way latency (jitter still adds to it), e.g. from planted positions.
    pub fn set_link_latency(&mut self, links: LinkLatency) {
        self.links = Some(links);
    }

    /// Shows every datagram sent (before loss) to `tap`, for tests of what goes on the wire.
    pub fn set_tap(&mut self, tap: Tap) {
        self.tap = Some(tap);
    }

    /// Drops the datagrams `filter` refuses, until [`Sim::clear_filter`]. The tap still sees them, as
    /// it sees every datagram sent.
    pub fn set_filter(&mut self, filter: Filter) {
        self.filter = Some(filter);
    }

    /// Carries every datagram again.
    pub fn clear_filter(&mut self) {
        self.filter = None;
    }

    /// Virtual time elapsed since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Adds a node named `name` with the given config and encoded tags; returns its index.
    pub fn add_node(&mut self, name: &str, cfg: GossipConfig, tags: Vec<u8>) -> usize {
        let i = self.nodes.len();
        let addr = sim_addr(i);
        let id = Identity {
            name: name.to_owned(),
            addr,
            tags,
            incarnation: 0,
        };
        let seed = self.rng.next_u64();
        let core = Core::with_roster(cfg, id, self.now, seed, self.roster.clone())
            .expect("valid simulated node");
        self.nodes.push(SimNode {
            core,
            up: true,
            stalled_until: None,
            group: 0,
            deaf: false,
            lag: Duration::ZERO,
        });
        self.by_addr.insert(addr, i);
        self.schedule(i);
        i
    }

    /// Replaces node `i` with a fresh process (same name and address, new core) as after a restart.
    pub fn restart_node(&mut self, i: usize, cfg: GossipConfig, tags: Vec<u8>) {
        let name = self.nodes[i].core.local().name.to_string();
        let id = Identity {
            name,
            addr: sim_addr(i),
            tags,
            incarnation: 0,
        };
        let seed = self.rng.next_u64();
        self.nodes[i].core = Core::with_roster(cfg, id, self.now, seed, self.roster.clone())
            .expect("valid simulated node");
        self.nodes[i].up = true;
        self.schedule(i);
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &SimNode {
        &self.nodes[i]
    }

    /// Node `i`, mutably (to issue commands such as `join` or `leave`).
    pub fn node_mut(&mut self, i: usize) -> &mut SimNode {
        &mut self.nodes[i]
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Crashes node `i`: from now on it is silent.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
    }

    /// Makes node `i` join through node `seed`.
    pub fn join(&mut self, i: usize, seed: usize) -> u32 {
        let now = self.now;
        let seq = self.nodes[i].core.join(now, sim_addr(seed));
        self.flush(i);
        seq
    }

    /// Starts a graceful leave of node `i`.
    pub fn leave(&mut self, i: usize) {
        let now = self.now;
        self.nodes[i].core.leave(now);
        self.flush(i);
    }

    /// Hands node `i` a datagram that claims to come from `from` (a forgery, in tests of hostile input).
    pub fn deliver_raw(&mut self, i: usize, from: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        self.nodes[i].core.handle_packet(now, from, bytes);
        self.flush(i);
    }

    /// Call after changing a node's core from outside (commands), so its output and timers are picked up.
    pub fn touch(&mut self, i: usize) {
        self.flush(i);
    }

    fn schedule(&mut self, i: usize) {
        if let Some(at) = self.nodes[i].core.poll_timeout() {
            self.work.push(at.max(self.now), Work::Timer(i));
        }
    }

    fn flush(&mut self, i: usize) {
        let from = sim_addr(i);
        while let Some(t) = self.nodes[i].core.poll_transmit(&mut self.buf) {
            self.sent += 1;
            let Some(&dst) = self.by_addr.get(&t.dst) else {
                self.dropped += 1;
                continue;
            };
            if let Some(tap) = self.tap.as_mut() {
                tap(i, dst, &self.buf[..t.len]);
            }
            let refused = self
                .filter
                .as_mut()
                .is_some_and(|f| !f(i, dst, &self.buf[..t.len]));
            if refused
                || self.nodes[dst].group != self.nodes[i].group
                || self.nodes[dst].deaf
                || (self.net.loss > 0.0 && (self.rng.below(1_000_000) as f64) < self.net.loss * 1e6)
            {
                self.dropped += 1;
                continue;
            }
            let mut bytes = self.pool.pop().unwrap_or_default();
            bytes.clear();
            bytes.extend_from_slice(&self.buf[..t.len]);
            let jitter_us = self.net.jitter.as_micros() as usize;
            let extra = if jitter_us > 0 {
                Duration::from_micros(self.rng.below(jitter_us) as u64)
            } else {
                Duration::ZERO
            };
            let latency = match &self.links {
                Some(f) => f(i, dst),
                None => self.net.latency,
            } + self.nodes[dst].lag;
            self.work.push(
                self.now + latency + extra,
                Work::Deliver { dst, from, bytes },
            );
        }
        self.schedule(i);
    }

    /// Runs until virtual time `until`, calling `on_event(now, node, event)` for every core event.
    pub fn run_until(&mut self, until: Instant, mut on_event: impl FnMut(Instant, usize, Event)) {
        while let Some(at) = self.work.next_deadline() {
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            let Some(w) = self.work.pop_expired(self.now) else {
                break;
            };
            let i = match &w {
                Work::Deliver { dst, .. } | Work::Fetched { dst, .. } => *dst,
                Work::Timer(i) => *i,
            };
            let node = &self.nodes[i];
            if !node.up {
                if let Work::Deliver { bytes, .. } = w {
                    self.dropped += 1;
                    self.pool.push(bytes);
                }
                continue;
            }
            if let Some(t) = node.stalled_until.filter(|t| *t > self.now) {
                self.work.push(t, w);
                continue;
            }
            let now = self.now;
            match w {
                Work::Deliver { from, bytes, .. } => {
                    self.nodes[i].core.handle_packet(now, from, &bytes);
                    self.pool.push(bytes);
                }
                Work::Fetched {
                    from, record, name, ..
                } => {
                    let core = &mut self.nodes[i].core;
                    core.handle_record(now, from, &name, record.version, &record.body);
                }
                Work::Timer(_) => {
                    if self.nodes[i].core.poll_timeout().is_some_and(|t| t <= now) {
                        self.nodes[i].core.handle_timeout(now);
                    } else {
                        // A stale wake-up; the live one is still queued.
                        continue;
                    }
                }
            }
            while let Some(ev) = self.nodes[i].core.poll_event() {
                if let Event::FetchRecord { name, from, .. } = &ev {
                    self.fetch(i, name.clone(), *from);
                }
                on_event(now, i, ev);
            }
            self.flush(i);
        }
        self.now = self.now.max(until);
    }

    /// A stream fetch of `name`'s record by node `i` from the node at `from`: answered one round trip
    /// later with whatever record that node holds, unless it is down or cut off (then the fetch lapses
    /// and a later announcement asks again).
    fn fetch(&mut self, i: usize, name: Arc<str>, from: SocketAddr) {
        let Some(&src) = self.by_addr.get(&from) else {
            return;
        };
        let peer = &self.nodes[src];
        if !peer.up || peer.group != self.nodes[i].group || self.nodes[i].deaf {
            return;
        }
        let Some(record) = peer.core.record(&name) else {
            return;
        };
        self.work.push(
            self.now + self.net.latency * 2 + self.nodes[i].lag,
            Work::Fetched {
                dst: i,
                from,
                record,
                name,
            },
        );
    }

    /// Runs for `d` of virtual time, discarding events.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until, |_, _, _| {});
    }

    /// Runs in steps of `step` until `cond` holds or `limit` of virtual time passed; returns whether it held.
    pub fn run_until_cond(
        &mut self,
        step: Duration,
        limit: Duration,
        mut cond: impl FnMut(&Sim) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if cond(self) {
                return true;
            }
            let next = (self.now + step).min(end);
            self.run_until(next, |_, _, _| {});
        }
        cond(self)
    }
}
