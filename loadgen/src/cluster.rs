//! The two networks a run can use behind one interface: the simulated one (virtual time, deterministic)
//! and real loopback UDP sockets with real timers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use murmur_gossip::Slot;
use murmur_gossip::sim::{NetModel, Sim};
use murmur_gossip::{Core, Event, GossipConfig, Identity, Roster, State, View};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::measure::{LagHistogram, Recorder, node_index, node_name};

/// A cluster of virtual nodes a scenario can drive.
pub trait Cluster {
    /// Time since the run started.
    fn now(&self) -> Duration;
    /// Adds a node (not yet joined); returns its index.
    fn add_node(&mut self) -> usize;
    /// Node `i` joins through `seed`.
    fn join(&mut self, i: usize, seed: usize);
    /// Node `i` joins through an outside address.
    fn join_addr(&mut self, i: usize, addr: SocketAddr);
    /// Node `i` crashes (goes silent).
    fn crash(&mut self, i: usize);
    /// Node `i` leaves gracefully.
    fn leave(&mut self, i: usize);
    /// Node `i` freezes for `d`.
    fn stall(&mut self, i: usize, d: Duration);
    /// Node `i` receives nothing (while `on`) but still sends.
    fn deafen(&mut self, i: usize, on: bool);
    /// Node `i` handles every datagram `lag` late (zero: on time again).
    fn slow_down(&mut self, i: usize, lag: Duration);
    /// Partition groups (datagrams pass only within a group); `None` heals.
    fn set_groups(&mut self, groups: Option<Vec<u32>>);
    /// Datagram loss probability.
    fn set_loss(&mut self, loss: f64);
    /// Runs until `until` (since start), feeding observations to `rec`.
    fn advance(&mut self, until: Duration, rec: &mut Recorder);
    /// Members node `i` currently counts as alive or suspect.
    fn live_view(&self, i: usize) -> usize;
    /// Whether node `i` is running.
    fn is_up(&self, i: usize) -> bool;
    /// Number of nodes ever added.
    fn len(&self) -> usize;
    /// Datagrams and bytes sent so far by all nodes.
    fn traffic(&self) -> (u64, u64);
    /// Timer lag histogram (real time only).
    fn lag(&self) -> Option<&LagHistogram>;
    /// Subjects whose every state change must be reported (others: only `Dead`/`Suspect`).
    fn set_watched(&mut self, watched: &[usize]);
    /// Gives every node the full membership at once (all alive), sharing one view copy-on-write.
    fn preform(&mut self);
    /// Publishes node `i`'s application record (its services and checks).
    fn set_record(&mut self, i: usize, body: Vec<u8>);
}

/// One view holding every given local slot, alive.
fn full_view<'a>(slots: impl Iterator<Item = &'a Slot>) -> View {
    let mut v = View::default();
    for s in slots {
        v.insert(s.clone());
    }
    v
}

/// The (subject, version) of a record event.
fn record_event(ev: &Event) -> Option<(usize, u32)> {
    match ev {
        Event::Record { name, record } => Some((node_index(name)?, record.version)),
        _ => None,
    }
}

fn observe_event(ev: &Event, watched: &[usize], mut f: impl FnMut(usize, State)) {
    if let Event::Member(m) = ev {
        // Cheap filter first: full membership makes every join an event on every node.
        let interesting = matches!(m.state, State::Dead | State::Suspect);
        if let Some(s) = node_index(&m.name)
            && (interesting || watched.contains(&s))
        {
            f(s, m.state);
        }
    }
}

/// Virtual-time cluster on the simulated network.
pub struct SimCluster {
    sim: Sim,
    cfg: GossipConfig,
    watched: Vec<usize>,
}

impl SimCluster {
    /// A simulated cluster with the given network model.
    pub fn new(seed: u64, net: NetModel, cfg: GossipConfig) -> Self {
        SimCluster {
            sim: Sim::new(seed, net),
            cfg,
            watched: Vec::new(),
        }
    }
}

impl Cluster for SimCluster {
    fn now(&self) -> Duration {
        self.sim.elapsed()
    }
    fn add_node(&mut self) -> usize {
        let i = self.sim.len();
        self.sim
            .add_node(&node_name(i), self.cfg.clone(), Vec::new())
    }
    fn join(&mut self, i: usize, seed: usize) {
        self.sim.join(i, seed);
    }
    fn join_addr(&mut self, _i: usize, _addr: SocketAddr) {}
    fn crash(&mut self, i: usize) {
        self.sim.crash(i);
    }
    fn leave(&mut self, i: usize) {
        self.sim.leave(i);
    }
    fn stall(&mut self, i: usize, d: Duration) {
        let until = self.sim.now + d;
        self.sim.node_mut(i).stalled_until = Some(until);
    }
    fn deafen(&mut self, i: usize, on: bool) {
        self.sim.node_mut(i).deaf = on;
    }
    fn slow_down(&mut self, i: usize, lag: Duration) {
        self.sim.node_mut(i).lag = lag;
    }
    fn set_groups(&mut self, groups: Option<Vec<u32>>) {
        for i in 0..self.sim.len() {
            self.sim.node_mut(i).group = groups.as_ref().map_or(0, |g| g[i]);
        }
    }
    fn set_loss(&mut self, loss: f64) {
        self.sim.net.loss = loss;
    }
    fn advance(&mut self, until: Duration, rec: &mut Recorder) {
        let start = self.sim.now - self.sim.elapsed();
        let watched = &self.watched;
        self.sim.run_until(start + until, |now, i, ev| {
            if let Some((s, v)) = record_event(&ev) {
                rec.observe_record(now - start, i, s, v);
            }
            observe_event(&ev, watched, |s, st| rec.observe(now - start, i, s, st));
        });
    }
    fn live_view(&self, i: usize) -> usize {
        self.sim.node(i).core.num_live()
    }
    fn is_up(&self, i: usize) -> bool {
        self.sim.node(i).up
    }
    fn len(&self) -> usize {
        self.sim.len()
    }
    fn traffic(&self) -> (u64, u64) {
        (0..self.sim.len()).fold((0, 0), |(p, b), i| {
            let s = self.sim.node(i).core.stats();
            (p + s.packets_out, b + s.bytes_out)
        })
    }
    fn lag(&self) -> Option<&LagHistogram> {
        None
    }
    fn set_watched(&mut self, watched: &[usize]) {
        self.watched = watched.to_vec();
    }
    fn set_record(&mut self, i: usize, body: Vec<u8>) {
        let _ = self.sim.node_mut(i).core.set_record(body);
        self.sim.touch(i);
    }
    fn preform(&mut self) {
        let view = full_view((0..self.sim.len()).map(|i| self.sim.node(i).core.local_slot()));
        for i in 0..self.sim.len() {
            let now = self.sim.now;
            self.sim.node_mut(i).core.adopt_view(now, &view);
        }
    }
}

enum Cmd {
    Join(SocketAddr),
    Adopt(Arc<View>),
    Leave,
    Crash,
    Stall(Duration),
    SetRecord(Vec<u8>),
}

struct Shared {
    start: Instant,
    observations: Mutex<Vec<(Duration, u32, u32, State)>>,
    /// (when, observer, subject, version) of records installed.
    records: Mutex<Vec<(Duration, u32, u32, u32)>>,
    watched: ArcSwap<Vec<usize>>,
    lag: LagHistogram,
    packets: AtomicU64,
    bytes: AtomicU64,
    loss_ppm: AtomicU64,
    groups: ArcSwap<Option<Vec<u32>>>,
    stop: AtomicBool,
}

struct UdpNode {
    cmd: mpsc::UnboundedSender<Cmd>,
    live: Arc<AtomicUsize>,
    up: bool,
    /// The node's own slot as it started (for [`Cluster::preform`]).
    local: Slot,
}

/// Address of virtual node `i` on loopback (127.1.x.y, one IP per node, fixed port).
pub fn udp_addr(i: usize, port: u16) -> SocketAddr {
    let i = i as u32;
    let ip = Ipv4Addr::new(
        127,
        1 + (i / 62_500) as u8,
        ((i / 250) % 250) as u8,
        (i % 250 + 1) as u8,
    );
    SocketAddr::new(IpAddr::V4(ip), port)
}

/// Real-time cluster of cores on loopback UDP sockets, one tokio task per node.
pub struct UdpCluster {
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    nodes: Vec<UdpNode>,
    cfg: GossipConfig,
    roster: Arc<Roster>,
    port: u16,
    seed: u64,
}

impl UdpCluster {
    /// A UDP cluster whose node `i` binds `udp_addr(i, port)`.
    pub fn new(seed: u64, cfg: GossipConfig, port: u16) -> std::io::Result<Self> {
        raise_fd_limit();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        Ok(UdpCluster {
            rt,
            shared: Arc::new(Shared {
                start: Instant::now(),
                observations: Mutex::new(Vec::new()),
                records: Mutex::new(Vec::new()),
                watched: ArcSwap::from_pointee(Vec::new()),
                lag: LagHistogram::default(),
                packets: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                loss_ppm: AtomicU64::new(0),
                groups: ArcSwap::from_pointee(None),
                stop: AtomicBool::new(false),
            }),
            nodes: Vec::new(),
            cfg,
            roster: Roster::new(),
            port,
            seed,
        })
    }
}

impl Drop for UdpCluster {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn raise_fd_limit() {
    // SAFETY: plain get/setrlimit on our own process.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

async fn node_task(
    i: usize,
    mut core: Core,
    (socket, sender): (UdpSocket, std::net::UdpSocket),
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    live: Arc<AtomicUsize>,
    shared: Arc<Shared>,
    seed: u64,
) {
    let mut buf = Vec::with_capacity(2048);
    let mut rng = murmur_gossip::Rng::new(seed);
    let mut pending = Vec::new();
    let mut pending_records = Vec::new();
    // One timer entry per node, moved when the deadline changes: a fresh `sleep_until` per loop turn
    // registered and removed a wheel entry for every datagram.
    let mut armed = None;
    let sleep = tokio::time::sleep_until(Instant::now().into());
    tokio::pin!(sleep);
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let groups = shared.groups.load();
        let loss = shared.loss_ppm.load(Ordering::Relaxed);
        while let Some(t) = core.poll_transmit(&mut buf) {
            shared.packets.fetch_add(1, Ordering::Relaxed);
            shared.bytes.fetch_add(t.len as u64, Ordering::Relaxed);
            if let Some(g) = groups.as_ref() {
                let dst = dst_index(t.dst);
                if dst.is_some_and(|d| g.get(d) != g.get(i)) {
                    continue;
                }
            }
            if loss > 0 && (rng.below(1_000_000) as u64) < loss {
                continue;
            }
            // Straight to the kernel: tokio's try_send_to refuses (WouldBlock) until its reactor has seen
            // the new socket writable, which lost a fresh node's first join request to a 1 s retry.
            let _ = sender.send_to(&buf[..t.len], t.dst);
        }
        let watched = shared.watched.load();
        while let Some(ev) = core.poll_event() {
            if let Some((s, v)) = record_event(&ev).filter(|&(s, v)| v >= 2 && s != i) {
                pending_records.push((s as u32, v));
            }
            observe_event(&ev, &watched, |s, st| pending.push((s as u32, st)));
        }
        live.store(core.num_live(), Ordering::Relaxed);
        if !pending_records.is_empty() {
            let at = shared.start.elapsed();
            let mut r = shared.records.lock().expect("records lock");
            r.extend(pending_records.drain(..).map(|(s, v)| (at, i as u32, s, v)));
        }
        if !pending.is_empty() {
            let at = shared.start.elapsed();
            let mut obs = shared.observations.lock().expect("observations lock");
            obs.extend(pending.drain(..).map(|(s, st)| (at, i as u32, s, st)));
        }
        let deadline = core
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        if armed != Some(deadline) {
            armed = Some(deadline);
            sleep.as_mut().reset(deadline.into());
        }
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Cmd::Join(addr)) => { core.join(Instant::now(), addr); }
                Some(Cmd::Adopt(view)) => core.adopt_view(Instant::now(), &view),
                Some(Cmd::Leave) => core.leave(Instant::now()),
                Some(Cmd::Crash) | None => return,
                Some(Cmd::Stall(d)) => tokio::time::sleep(d).await,
                Some(Cmd::SetRecord(body)) => { let _ = core.set_record(body); }
            },
            r = socket.readable() => {
                if r.is_ok() {
                    receive(&socket, &mut core);
                }
            }
            _ = &mut sleep => {
                let now = Instant::now();
                shared.lag.record(now.saturating_duration_since(deadline));
                core.handle_timeout(now);
                // A fired sleep stays ready: re-arm it next turn whatever the deadline.
                armed = None;
            }
        }
    }
}

thread_local! {
    /// One receive buffer per worker thread: a buffer per node (9 KiB each) was a tenth of a 5000-node
    /// run's memory.
    static RECV_BUF: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(vec![0u8; murmur_gossip::wire::MAX_DATAGRAM + 1]);
}

/// Datagrams handled per wake-up at most, so one busy socket does not hold its worker thread.
const RECV_BATCH: usize = 16;

/// Hands the datagrams waiting on `socket` (up to [`RECV_BATCH`]) to `core`.
fn receive(socket: &UdpSocket, core: &mut Core) {
    RECV_BUF.with_borrow_mut(|rbuf| {
        for _ in 0..RECV_BATCH {
            match socket.try_recv_from(rbuf) {
                Ok((n, from)) => core.handle_packet(Instant::now(), from, &rbuf[..n]),
                // WouldBlock clears tokio's readiness; other errors (ICMP unreachable) wait for the next.
                Err(_) => break,
            }
        }
    });
}

fn dst_index(a: SocketAddr) -> Option<usize> {
    let IpAddr::V4(ip) = a.ip() else { return None };
    let o = ip.octets();
    if o[0] != 127 || o[1] == 0 {
        return None;
    }
    Some((o[1] as usize - 1) * 62_500 + o[2] as usize * 250 + o[3] as usize - 1)
}

impl Cluster for UdpCluster {
    fn now(&self) -> Duration {
        self.shared.start.elapsed()
    }
    fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        let addr = udp_addr(i, self.port);
        let id = Identity {
            name: node_name(i),
            addr,
            tags: Vec::new(),
            incarnation: 0,
        };
        let seed = self.seed.wrapping_mul(31).wrapping_add(i as u64);
        let core = Core::with_roster(
            self.cfg.clone(),
            id,
            Instant::now(),
            seed,
            self.roster.clone(),
        )
        .expect("valid core");
        let local = core.local_slot().clone();
        let std_sock =
            std::net::UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        std_sock.set_nonblocking(true).expect("nonblocking");
        let sender = std_sock.try_clone().expect("clone socket");
        let (tx, rx) = mpsc::unbounded_channel();
        let live = Arc::new(AtomicUsize::new(1));
        let shared = self.shared.clone();
        let l2 = live.clone();
        let _guard = self.rt.enter();
        let socket = UdpSocket::from_std(std_sock).expect("register socket");
        self.rt
            .spawn(node_task(i, core, (socket, sender), rx, l2, shared, seed));
        self.nodes.push(UdpNode {
            cmd: tx,
            live,
            up: true,
            local,
        });
        i
    }
    fn join(&mut self, i: usize, seed: usize) {
        let addr = udp_addr(seed, self.port);
        self.join_addr(i, addr);
    }
    fn join_addr(&mut self, i: usize, addr: SocketAddr) {
        let _ = self.nodes[i].cmd.send(Cmd::Join(addr));
    }
    fn crash(&mut self, i: usize) {
        let _ = self.nodes[i].cmd.send(Cmd::Crash);
        self.nodes[i].up = false;
    }
    fn leave(&mut self, i: usize) {
        let _ = self.nodes[i].cmd.send(Cmd::Leave);
    }
    fn stall(&mut self, i: usize, d: Duration) {
        let _ = self.nodes[i].cmd.send(Cmd::Stall(d));
    }
    // main refuses --deaf and --slow on UDP: these are simulated faults.
    fn deafen(&mut self, _i: usize, _on: bool) {}
    fn slow_down(&mut self, _i: usize, _lag: Duration) {}
    fn set_groups(&mut self, groups: Option<Vec<u32>>) {
        self.shared.groups.store(Arc::new(groups));
    }
    fn set_loss(&mut self, loss: f64) {
        self.shared
            .loss_ppm
            .store((loss * 1e6) as u64, Ordering::Relaxed);
    }
    fn advance(&mut self, until: Duration, rec: &mut Recorder) {
        let now = self.now();
        if until > now {
            std::thread::sleep(until - now);
        }
        let obs = std::mem::take(&mut *self.shared.observations.lock().expect("observations lock"));
        for (at, o, s, st) in obs {
            rec.observe(at, o as usize, s as usize, st);
        }
        let records = std::mem::take(&mut *self.shared.records.lock().expect("records lock"));
        for (at, o, s, v) in records {
            rec.observe_record(at, o as usize, s as usize, v);
        }
    }
    fn live_view(&self, i: usize) -> usize {
        self.nodes[i].live.load(Ordering::Relaxed)
    }
    fn is_up(&self, i: usize) -> bool {
        self.nodes[i].up
    }
    fn len(&self) -> usize {
        self.nodes.len()
    }
    fn traffic(&self) -> (u64, u64) {
        (
            self.shared.packets.load(Ordering::Relaxed),
            self.shared.bytes.load(Ordering::Relaxed),
        )
    }
    fn lag(&self) -> Option<&LagHistogram> {
        Some(&self.shared.lag)
    }
    fn set_watched(&mut self, watched: &[usize]) {
        self.shared.watched.store(Arc::new(watched.to_vec()));
    }
    fn set_record(&mut self, i: usize, body: Vec<u8>) {
        // The start-up slot follows (a converged start hands it to every node); the version counts as
        // the core's does.
        let local = &mut self.nodes[i].local;
        let version = local.record.as_ref().map_or(1, |r| r.version + 1);
        local.record = Some(Arc::new(murmur_gossip::Record::whole(version, &body)));
        let _ = self.nodes[i].cmd.send(Cmd::SetRecord(body));
    }
    fn preform(&mut self) {
        let view = Arc::new(full_view(self.nodes.iter().map(|n| &n.local)));
        for n in &self.nodes {
            let _ = n.cmd.send(Cmd::Adopt(view.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_addresses_roundtrip_and_stay_on_loopback() {
        for i in [0, 1, 249, 250, 4999, 62_499, 62_500, 99_999] {
            let a = udp_addr(i, 7946);
            assert!(a.ip().is_loopback(), "{a}");
            assert_eq!(dst_index(a), Some(i), "{a}");
        }
    }
}
