//! A server's raft: start-up from the data dir, bootstrapping, the RPCs it answers, writes (forwarded
//! to the leader), reads by consistency mode, and the leader's upkeep of the configuration from gossip
//! (servers that appear join as learners and are promoted once stable; servers that leave go).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tokio::time::Instant;

use super::backup;
use super::batcher::{BatchError, Batcher};
use super::bootstrap::{self, Candidate};
use super::command::{Command, Reply, Request};
use super::federation::Federation;
use super::fsm::StateMachine;
use super::log_store::LogStore;
use super::network::{CallError, Network, ResetKey, Transport};
use super::rpc::{Answer, MAX_HOPS, Rpc, Status};
use super::stats::{RaftNow, RaftStats};
use super::{Raft, ServerNode, raft_id};
use crate::net::tls::TlsSettings;
use crate::state::autopilot::{
    self, AutopilotConfig, AutopilotHealth, OperatorOp, OperatorReply, PeerRef, ServerStats,
};
use crate::state::catalog::Catalog;
use crate::state::coordinates::{CoordinateOp, keep_coordinate};
use crate::state::kv::KvOp;
use crate::state::remote::{RemoteAnswer, RemoteRequest};
use crate::state::replicated::{
    BoxFuture, Change, Consistency, RaftConfiguration, RaftPeer, ReadRequest, ReadResult, Replica,
    Replicated, StoreError, Written,
};
use crate::state::sessions::{MissingSince, Session, SessionHealth, SessionOp};
use crate::state::tombstones::TombstoneGc;
use crate::state::txn::{TxnError, TxnOp};
use crate::state::wan::WanPool;
use crate::state::{MemberStatus, MemberTable};

/// How long a write or read waits for a leader before failing (Consul's `rpc_hold_timeout`).
pub const HOLD: Duration = Duration::from_secs(7);
/// Longest blocking read (Consul's).
const MAX_WAIT: Duration = Duration::from_secs(600);
/// Longest wait for a configuration change to commit.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest snapshot accepted from a leader: a chunk offset beyond it is refused, not allocated.
const MAX_SNAPSHOT: u64 = 1 << 30;
/// How long a leader that failed to take a forward is left alone in its term.
const FAILED_LEADER_PAUSE: Duration = Duration::from_secs(3);
/// What a leader that cannot reach its quorum in the hold time answers.
const TIMED_OUT: &str = "timed out enqueuing operation";
/// Extra time a forwarded request gets over its own wait.
const FORWARD_SLACK: Duration = Duration::from_secs(10);
/// How long the leader waits for a server's report when judging health.
const HEALTH_ASK: Duration = Duration::from_secs(1);
/// How often the leader compares the configuration with gossip.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// How long a new leader waits before it drops the coordinates of nodes its gossip does not know: a
/// leader elected right after a restart may not have heard of every member yet.
const SETTLE_BEFORE_PRUNING: Duration = Duration::from_secs(120);

/// Settings of a server's raft.
#[derive(Debug, Clone)]
pub struct ServerSetup {
    /// Node name.
    pub node_name: String,
    /// Node ID (UUID).
    pub node_id: String,
    /// Datacenter.
    pub datacenter: String,
    /// Address the server port binds.
    pub bind: SocketAddr,
    /// Address other servers reach it at.
    pub advertise: SocketAddr,
    /// Data directory (`None`: memory only, `-dev`).
    pub data_dir: Option<PathBuf>,
    /// `bootstrap_expect` (0: unset).
    pub bootstrap_expect: u32,
    /// Bootstrap alone (`-bootstrap`, `-dev`).
    pub bootstrap: bool,
    /// TLS of the server transport.
    pub tls: TlsSettings,
    /// Default server port of servers whose tags do not say.
    pub default_port: u16,
    /// Entries between snapshots (`raft_snapshot_threshold`).
    pub snapshot_threshold: u64,
    /// Entries kept behind a snapshot (`raft_trailing_logs`).
    pub trailing_logs: u64,
    /// Consul's `autopilot` settings (promotion, health, dead-server cleanup).
    pub autopilot: AutopilotConfig,
    /// The WAN pool (`None` when it is off).
    pub wan: Option<Arc<WanPool>>,
}

/// The leader's session TTL timers (not replicated, as Consul's are not): rebuilt at full length
/// whenever this server starts a new term as leader.
#[derive(Default)]
struct Timers {
    term: u64,
    deadlines: HashMap<String, Instant>,
    missing: MissingSince,
}

/// A running server.
pub struct RaftServer {
    raft: Raft,
    /// The leader's group commit of writes.
    batcher: Batcher,
    /// Counts for the metrics.
    stats: Arc<RaftStats>,
    id: u64,
    me: ServerNode,
    state: Arc<Replica>,
    timers: Mutex<Timers>,
    transport: Arc<Transport>,
    members: Arc<MemberTable>,
    /// Every node's checks (sessions end when one of theirs turns critical).
    catalog: Arc<Catalog>,
    datacenter: String,
    default_port: u16,
    autopilot: AutopilotConfig,
    /// Each server's health as last judged, and since when (`StableSince`).
    stable: Mutex<HashMap<String, (bool, SystemTime)>>,
    /// When an append from the leader last arrived (`X-Consul-LastContact` on followers).
    last_contact: Mutex<Option<Instant>>,
    /// The leader (ID, term) a forward last failed to reach, and when.
    failed_leader: Mutex<Option<(u64, u64, Instant)>>,
    /// Learners and when they were first seen caught up.
    caught_up: Mutex<HashMap<u64, Instant>>,
    /// The term in which this server, as leader, caught up with its log (default reads may go).
    ready_term: AtomicU64,
    /// When the leader may reap KV tombstones.
    tombstones: Mutex<TombstoneGc>,
    /// The term this server leads in and since when (coordinate pruning waits for gossip to settle).
    leading_since: Mutex<Option<(u64, Instant)>>,
    /// The way to other datacenters.
    federation: Arc<Federation>,
    stop: watch::Sender<bool>,
}

fn raft_config(s: &ServerSetup) -> Result<Config, String> {
    Config {
        cluster_name: format!("murmur-{}", s.datacenter),
        // LAN timings. openraft lets a follower stand for election only once the leader's lease
        // (the largest election timeout) and then its own timeout have passed since the last
        // heartbeat: 1.5-2 s here (Consul with raft_multiplier 1: a 1 s timeout plus a 0.5 s
        // lease). perf/failover.py measures the whole failover; 400-800 ms was no faster there.
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        install_snapshot_timeout: 10_000,
        max_payload_entries: 64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(s.snapshot_threshold.max(1)),
        max_in_snapshot_log_to_keep: s.trailing_logs,
        ..Default::default()
    }
    .validate()
    .map_err(|e| format!("raft settings: {e}"))
}

impl RaftServer {
    /// Opens the log and state in the data dir, binds the server port and starts raft; bootstraps
    /// when told to and nothing is stored yet.
    pub async fn start(
        s: ServerSetup,
        members: Arc<MemberTable>,
        catalog: Arc<Catalog>,
        state: Arc<Replica>,
    ) -> Result<Arc<Self>, String> {
        let id =
            raft_id(&s.node_id).ok_or_else(|| format!("node ID {:?} is not a UUID", s.node_id))?;
        let (log, snapshots) = match &s.data_dir {
            Some(d) => {
                let dir = d.join("raft");
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                (
                    LogStore::open(&dir.join("raft.db"))?,
                    Some(dir.join("snapshots")),
                )
            }
            None => (LogStore::memory()?, None),
        };
        let had_state = log.has_state()?;
        let sm = StateMachine::open(snapshots, state.clone())?;
        let reset_key = ResetKey::load(
            s.data_dir
                .as_ref()
                .map(|d| d.join("raft").join("quic-reset-key"))
                .as_deref(),
        )?;
        let transport = Transport::open(
            Some((s.bind, &reset_key)),
            s.bind.ip(),
            &s.tls,
            &s.datacenter,
        )?;
        let config = Arc::new(raft_config(&s)?);
        let network = Network {
            transport: transport.clone(),
        };
        let raft = Raft::new(id, config, network, log, sm)
            .await
            .map_err(|e| format!("starting raft: {e}"))?;
        let me = ServerNode {
            name: s.node_name.clone(),
            id: s.node_id.clone(),
            addr: s.advertise.to_string(),
        };
        let (stop, _) = watch::channel(false);
        let stats = Arc::new(RaftStats::default());
        let server = Arc::new(RaftServer {
            batcher: Batcher::start(raft.clone(), stats.clone()),
            stats,
            raft,
            id,
            me,
            state,
            timers: Mutex::new(Timers::default()),
            transport: transport.clone(),
            members,
            catalog,
            datacenter: s.datacenter.clone(),
            default_port: s.default_port,
            autopilot: s.autopilot.clone(),
            stable: Mutex::new(HashMap::new()),
            last_contact: Mutex::new(None),
            failed_leader: Mutex::new(None),
            caught_up: Mutex::new(HashMap::new()),
            ready_term: AtomicU64::new(0),
            tombstones: Mutex::new(TombstoneGc::default()),
            leading_since: Mutex::new(None),
            federation: Arc::new(Federation::new(
                transport.clone(),
                s.wan.clone(),
                s.datacenter.clone(),
            )),
            stop,
        });
        let handler = server.clone();
        transport.serve(move |from, rpc| {
            let h = handler.clone();
            async move { h.handle(from, rpc).await }
        });
        if had_state {
            if s.bootstrap || s.bootstrap_expect > 0 {
                tracing::info!("Raft data found, disabling bootstrap mode");
            }
        } else if s.bootstrap {
            server
                .initialize(BTreeMap::from([(id, server.me.clone())]))
                .await;
        } else if s.bootstrap_expect > 0 {
            let me = server.clone();
            tokio::spawn(async move {
                let stop = me.stop.subscribe();
                let found = bootstrap::await_peers(
                    s.bootstrap_expect,
                    me.id,
                    &me.members,
                    &me.datacenter,
                    me.default_port,
                    &me.transport,
                    &stop,
                )
                .await;
                if let Some(all) = found {
                    me.initialize(all).await;
                }
            });
        }
        tokio::spawn(server.clone().upkeep());
        tokio::spawn(server.clone().log_leaders());
        Ok(server)
    }

    /// The way to other datacenters (the agent sets its local answerer there).
    pub fn federation(&self) -> &Arc<Federation> {
        &self.federation
    }

    async fn initialize(&self, all: BTreeMap<u64, ServerNode>) {
        let names: Vec<&str> = all.values().map(|n| n.name.as_str()).collect();
        match self.raft.initialize(all.clone()).await {
            Ok(()) => tracing::info!("bootstrapped the raft configuration with {names:?}"),
            Err(e) => tracing::warn!("raft bootstrap with {names:?} not done: {e}"),
        }
    }

    fn metrics(&self) -> openraft::RaftMetrics<u64, ServerNode> {
        self.raft.metrics().borrow().clone()
    }

    fn node_of(&self, id: u64) -> Option<ServerNode> {
        self.metrics()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
    }

    /// The leader's RPC address, when known.
    pub fn leader_addr(&self) -> Option<String> {
        let m = self.metrics();
        let leader = m.current_leader?;
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
    }

    /// The voters' RPC addresses.
    pub fn voter_addrs(&self) -> Vec<String> {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| n.addr.clone()))
            .collect()
    }

    /// Every server of the configuration, the leader marked.
    pub fn raft_configuration(&self) -> RaftConfiguration {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        RaftConfiguration {
            servers: membership
                .nodes()
                .map(|(id, n)| RaftPeer {
                    id: n.id.clone(),
                    node: n.name.clone(),
                    address: n.addr.clone(),
                    leader: m.current_leader == Some(*id),
                    voter: voters.contains(id),
                })
                .collect(),
            index: m.membership_config.log_id().map_or(0, |l| l.index),
        }
    }

    /// Milliseconds since this server last heard from the leader (0 when it leads; `None`: never).
    fn last_contact_ms(&self) -> Option<u64> {
        if self.metrics().state == ServerState::Leader {
            return Some(0);
        }
        self.last_contact
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed().as_millis() as u64)
    }

    /// Term and index of the last log entry.
    fn last_log(&self) -> (u64, u64) {
        self.raft
            .data_metrics()
            .borrow()
            .last_log
            .map_or((0, 0), |l| (l.leader_id.term, l.index))
    }

    fn status(&self) -> Status {
        let m = self.metrics();
        Status {
            last_contact_ms: self.last_contact_ms(),
            last_log: self.last_log(),
            initialized: m
                .membership_config
                .membership()
                .voter_ids()
                .next()
                .is_some(),
            leader: self.leader_addr(),
            peers: self.voter_addrs(),
            configuration: self.raft_configuration(),
        }
    }

    /// Answers one RPC.
    pub async fn handle(self: &Arc<Self>, _from: SocketAddr, rpc: Rpc) -> Answer {
        match rpc {
            Rpc::Append(req) => {
                *self.last_contact.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                Answer::Append(self.raft.append_entries(req).await)
            }
            Rpc::Vote(req) => Answer::Vote(self.raft.vote(req).await),
            Rpc::Snapshot(req) => {
                if req.offset.saturating_add(req.data.len() as u64) > MAX_SNAPSHOT {
                    return Answer::Refused(format!(
                        "snapshot chunk at offset {} is past the {MAX_SNAPSHOT}-byte limit",
                        req.offset
                    ));
                }
                Answer::Snapshot(self.raft.install_snapshot(req).await)
            }
            Rpc::Write { command, hops } => {
                // Only commands this server can read go into the log.
                if let Err(e) = Command::decode(&command) {
                    return Answer::Write(Err(StoreError::Unavailable(e.to_string())));
                }
                Answer::Write(self.propose(command, hops).await)
            }
            Rpc::Read { request, hops } => Answer::Read(self.read_at(request, hops).await),
            Rpc::Status => Answer::Status(self.status()),
            Rpc::Renew { id, hops } => Answer::Renew(self.renew_at(id, hops).await),
            Rpc::Operator { op, hops } => Answer::Operator(self.operator_at(op, hops).await),
            Rpc::Remote { dc, request, hops } => {
                Answer::Remote(self.federation.answer(dc, request, hops).await)
            }
        }
    }

    /// Where requests for the leader go now. A leader that just failed to take a forwarded request is
    /// not tried again in the same term: an election is under way, and the wait is for its outcome
    /// (or for a while, in case the failure was a passing one).
    async fn route(&self, deadline: Instant) -> Result<Route, StoreError> {
        let mut rx = self.raft.metrics();
        loop {
            let (leader, term) = {
                let m = rx.borrow_and_update();
                (m.current_leader, m.current_term)
            };
            match leader {
                Some(l) if l == self.id => return Ok(Route::Here),
                Some(l) => {
                    let node = self.node_of(l).ok_or(StoreError::NoLeader)?;
                    let failed = *self.failed_leader.lock().unwrap_or_else(|p| p.into_inner());
                    let gave_up = failed.is_some_and(|(id, t, at)| {
                        id == l && t == term && at.elapsed() < FAILED_LEADER_PAUSE
                    });
                    if !gave_up {
                        return Ok(Route::Forward(Target {
                            addr: node.addr,
                            id: l,
                            term,
                        }));
                    }
                }
                None => {}
            }
            if Instant::now() >= deadline {
                return Err(StoreError::NoLeader);
            }
            // A new term or leader shows in the metrics; look again now and then regardless, since
            // a follower's metrics may not move while it waits for an election.
            let until = deadline.min(Instant::now() + Duration::from_millis(100));
            let _ = tokio::time::timeout_at(until, rx.changed()).await;
        }
    }

    /// Forwards `rpc` to the leader at `addr`; `None` when it was not delivered (the leader is gone;
    /// the caller routes again).
    async fn forward_to_leader(
        &self,
        to: &Target,
        rpc: &Rpc,
        timeout: Duration,
        hops: u8,
    ) -> Option<Result<Answer, StoreError>> {
        if hops >= MAX_HOPS {
            return Some(Err(StoreError::Unavailable(
                "request forwarded too many times".into(),
            )));
        }
        match self.forward(&to.addr, rpc, timeout).await {
            Ok(a) => Some(Ok(a)),
            Err(CallError::Unreachable(_)) => {
                *self.failed_leader.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((to.id, to.term, Instant::now()));
                None
            }
            Err(e) => Some(Err(StoreError::Unavailable(e.to_string()))),
        }
    }

    /// Commits `command` through the leader: here when this server leads, forwarded otherwise.
    async fn propose(&self, command: Request, hops: u8) -> Result<Written, StoreError> {
        let deadline = Instant::now() + HOLD;
        loop {
            let to = match self.route(deadline).await? {
                Route::Here => {
                    // A lock in its delay is refused by the leader before it reaches the log (as
                    // Consul's KVS.Apply does), so every server applies the same log alike.
                    if let Some(refused) = self.in_lock_delay(&command) {
                        return Ok(refused);
                    }
                    // A leader cut off from its quorum cannot commit: fail at the hold time (as
                    // Consul's "timed out enqueuing operation") rather than hold the client forever.
                    let write = self.batcher.write(command.clone());
                    match tokio::time::timeout_at(deadline, write).await {
                        Err(_) => return Err(StoreError::Unavailable(TIMED_OUT.into())),
                        Ok(Ok((index, reply))) => return written(index, reply),
                        // Lost the lead meanwhile: route again once the metrics say so.
                        Ok(Err(BatchError::NotLeader)) => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                        Ok(Err(BatchError::Failed(e))) => return Err(StoreError::Unavailable(e)),
                    }
                }
                Route::Forward(to) => to,
            };
            let rpc = Rpc::Write {
                command: command.clone(),
                hops: hops + 1,
            };
            match self
                .forward_to_leader(&to, &rpc, HOLD + FORWARD_SLACK, hops)
                .await
            {
                Some(Ok(Answer::Write(r))) => return r,
                Some(Ok(other)) => return Err(unexpected(other)),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
    }

    /// The answer to a write that takes a lock in its delay, if `command` is one: `false` for a KV
    /// lock, Consul's error per operation for a transaction.
    fn in_lock_delay(&self, command: &Request) -> Option<Written> {
        let delayed = |key: &str| {
            let d = self.state.sessions.delayed(key);
            if d {
                tracing::debug!("refusing a lock of {key:?} in its lock delay");
            }
            d
        };
        match Command::decode(command) {
            Ok(Change::Kv(KvOp::Lock { key, .. })) if delayed(&key) => Some(Written {
                index: 0,
                ok: false,
                txn: None,
            }),
            Ok(Change::Txn(ops)) => {
                let errors: Vec<TxnError> = ops
                    .iter()
                    .enumerate()
                    .filter_map(|(op_index, op)| match op {
                        TxnOp::Write(KvOp::Lock { key, .. }) if delayed(key) => Some(TxnError {
                            op_index,
                            what: format!("failed to lock key {key:?} due to lock delay"),
                        }),
                        _ => None,
                    })
                    .collect();
                (!errors.is_empty()).then_some(Written {
                    index: 0,
                    ok: false,
                    txn: Some(Err(errors)),
                })
            }
            _ => None,
        }
    }

    async fn forward(&self, addr: &str, rpc: &Rpc, timeout: Duration) -> Result<Answer, CallError> {
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| CallError::Unreachable(format!("bad server address {addr:?}")))?;
        self.transport.call(addr, rpc, timeout).await
    }

    /// Answers a read here, after waiting for its index when it blocks.
    async fn answer_here(&self, r: &ReadRequest) -> ReadResult {
        let (index, answer) = match r.min_index {
            Some(min) => {
                self.state
                    .wait(&r.query, min, Instant::now() + r.wait)
                    .await
            }
            None => self.state.query(&r.query),
        };
        let m = self.metrics();
        let last_contact_ms = if m.current_leader == Some(self.id) {
            0
        } else {
            self.last_contact
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .map_or(0, |t| t.elapsed().as_millis() as u64)
        };
        ReadResult {
            index,
            answer,
            known_leader: m.current_leader.is_some(),
            last_contact_ms,
        }
    }

    /// Reads by the request's consistency mode: stale here; otherwise at the leader, which for
    /// `?consistent` first confirms its leadership with a quorum.
    async fn read_at(&self, r: ReadRequest, hops: u8) -> Result<ReadResult, StoreError> {
        // A request from the network may ask for any wait: at most Consul's ten minutes.
        let r = ReadRequest {
            wait: r.wait.min(MAX_WAIT),
            ..r
        };
        if r.consistency == Consistency::Stale {
            return Ok(self.answer_here(&r).await);
        }
        let deadline = Instant::now() + HOLD;
        loop {
            let to = match self.route(deadline).await? {
                Route::Here => {
                    // Lost the lead meanwhile: route again once the metrics say so.
                    if r.consistency == Consistency::Consistent
                        && !self.confirm_leadership(deadline).await?
                    {
                        continue;
                    }
                    if !self.caught_up_as_leader(deadline).await? {
                        continue;
                    }
                    return Ok(self.answer_here(&r).await);
                }
                Route::Forward(to) => to,
            };
            let rpc = Rpc::Read {
                request: r.clone(),
                hops: hops + 1,
            };
            match self
                .forward_to_leader(&to, &rpc, r.wait + FORWARD_SLACK, hops)
                .await
            {
                Some(Ok(Answer::Read(res))) => return res,
                Some(Ok(other)) => return Err(unexpected(other)),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
    }

    /// Confirms with a quorum that this server still leads, and waits until it has applied what
    /// openraft then counts as committed. False: it does not lead.
    async fn confirm_leadership(&self, deadline: Instant) -> Result<bool, StoreError> {
        match tokio::time::timeout_at(deadline, self.raft.ensure_linearizable()).await {
            Err(_) => Err(StoreError::Unavailable(TIMED_OUT.into())),
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) => {
                tracing::debug!("leadership not confirmed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(false)
            }
        }
    }

    /// Before the first read of its term: confirms with a quorum that this server leads, and
    /// waits until it has applied every entry its log held then: those include everything earlier
    /// leaders committed (and, after a restart, writes whose commit the data dir had not recorded
    /// yet), so no read shows a client state older than it saw before: openraft's own confirmation
    /// waits only for the committed index it read from disk, which trails the last write. Later
    /// default reads in the term go at once (Consul's default mode). False: it does not lead.
    async fn caught_up_as_leader(&self, deadline: Instant) -> Result<bool, StoreError> {
        let m = self.metrics();
        let term = m.current_term;
        if self.ready_term.load(Ordering::Acquire) == term {
            return Ok(true);
        }
        let (me, target) = (self.id, m.last_log_index.unwrap_or(0));
        // Confirm once per term with a quorum that this server leads: openraft restarts a server
        // that led before as leader of its old term, which it no longer is if another was elected.
        if !self.confirm_leadership(deadline).await? {
            return Ok(false);
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        let m = self
            .raft
            .wait(Some(wait))
            .metrics(
                |m| {
                    m.current_leader != Some(me)
                        || m.current_term != term
                        || m.last_applied.map_or(0, |l| l.index) >= target
                },
                "leader applied its log",
            )
            .await
            .map_err(|_| StoreError::Unavailable(TIMED_OUT.into()))?;
        let ready = m.current_leader == Some(me) && m.current_term == term;
        if ready {
            self.ready_term.store(term, Ordering::Release);
        }
        Ok(ready)
    }

    /// Renews session `id` at the leader: its TTL timer starts again (the session itself is unchanged).
    async fn renew_at(&self, id: String, hops: u8) -> Result<Option<Session>, StoreError> {
        let forward = |hops| Rpc::Renew {
            id: id.clone(),
            hops,
        };
        let unpack = |a| match a {
            Answer::Renew(r) => Some(r),
            _ => None,
        };
        self.at_leader(hops, forward, unpack, async {
            let s = self.state.sessions.get(&id);
            if let Some(s) = &s
                && let Some(ttl) = s.ttl()
            {
                let mut t = self.timers.lock().unwrap_or_else(|p| p.into_inner());
                t.deadlines.insert(id.clone(), Instant::now() + ttl * 2);
            }
            Ok(s)
        })
        .await
    }

    /// Serves an operator request at the leader.
    async fn operator_at(&self, op: OperatorOp, hops: u8) -> Result<OperatorReply, StoreError> {
        if op == (OperatorOp::Save { stale: true }) {
            return self.save(false).await;
        }
        let forward = |hops| Rpc::Operator {
            op: op.clone(),
            hops,
        };
        let unpack = |a| match a {
            Answer::Operator(r) => Some(r),
            _ => None,
        };
        self.at_leader(hops, forward, unpack, async {
            match &op {
                OperatorOp::RemovePeer(peer) => self
                    .remove_peer(peer)
                    .await
                    .map(|()| OperatorReply::Removed),
                OperatorOp::Health => Ok(OperatorReply::Health(self.health().await)),
                OperatorOp::Save { .. } => self.save(true).await,
                OperatorOp::Restore(file) => {
                    let change = backup::restore_change(file)?;
                    let w = self.propose(Command::encode_write(&change), hops).await?;
                    tracing::info!("restored a snapshot at index {}", w.index);
                    Ok(OperatorReply::Restored { index: w.index })
                }
            }
        })
        .await
    }

    /// Runs `here` when this server leads; otherwise forwards `forward(hops + 1)` to the leader and
    /// takes the leader's result out of its answer with `unpack` (`None`: not the answer asked for).
    /// `here` is only awaited when this server leads (a future does nothing until then).
    async fn at_leader<T>(
        &self,
        hops: u8,
        forward: impl Fn(u8) -> Rpc,
        unpack: impl Fn(Answer) -> Option<Result<T, StoreError>>,
        here: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let deadline = Instant::now() + HOLD;
        loop {
            let to = match self.route(deadline).await? {
                Route::Here => break,
                Route::Forward(to) => to,
            };
            let rpc = forward(hops + 1);
            match self
                .forward_to_leader(&to, &rpc, HOLD + FORWARD_SLACK, hops)
                .await
            {
                Some(Ok(Answer::Refused(why))) => return Err(StoreError::Unavailable(why)),
                Some(Ok(answer)) => {
                    return unpack(answer).unwrap_or_else(|| {
                        Err(StoreError::Unavailable(
                            "unexpected answer from a server".into(),
                        ))
                    });
                }
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        here.await
    }

    /// A snapshot file of this server's state; `consistent`: as Consul's leader does, first confirm
    /// the lead and catch up, so the file holds every write acknowledged before the request.
    async fn save(&self, consistent: bool) -> Result<OperatorReply, StoreError> {
        if consistent {
            let deadline = Instant::now() + HOLD;
            if !self.confirm_leadership(deadline).await?
                || !self.caught_up_as_leader(deadline).await?
            {
                return Err(StoreError::NoLeader);
            }
        }
        let (index, file) = backup::save(&self.raft).await?;
        Ok(OperatorReply::Snapshot { index, file })
    }

    /// Takes `peer` out of the raft configuration (a server gossip still shows alive comes back as a
    /// learner at the next reconcile, as in Consul).
    async fn remove_peer(&self, peer: &PeerRef) -> Result<(), StoreError> {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let found = membership.nodes().find(|(_, n)| match peer {
            PeerRef::Id(id) => n.id == *id,
            PeerRef::Address(a) => n.addr == *a,
        });
        let Some((id, _)) = found else {
            return Err(StoreError::Unavailable(format!(
                "{peer} was not found in the Raft configuration"
            )));
        };
        let ids = BTreeSet::from([*id]);
        let change = if membership.voter_ids().any(|v| v == *id) {
            ChangeMembers::RemoveVoters(ids)
        } else {
            ChangeMembers::RemoveNodes(ids)
        };
        if self.change(&format!("removing peer {peer}"), change).await {
            tracing::info!("removed raft peer with {peer}");
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "removing the peer with {peer} did not commit"
            )))
        }
    }

    /// Every server's health, as the leader judges it from each one's own report.
    async fn health(&self) -> AutopilotHealth {
        let config = self.raft_configuration();
        let asks = config.servers.iter().map(|p| async move {
            let (contact, (term, index)) = if p.leader && p.id == self.me.id {
                (Some(0), self.last_log())
            } else {
                let addr = p.address.parse::<SocketAddr>();
                match addr {
                    Ok(a) => match self.transport.call(a, &Rpc::Status, HEALTH_ASK).await {
                        Ok(Answer::Status(s)) => (s.last_contact_ms, s.last_log),
                        _ => (None, (0, 0)),
                    },
                    Err(_) => (None, (0, 0)),
                }
            };
            let serf_status = self
                .members
                .get(&p.node)
                .map_or("none", |m| m.status.as_str());
            ServerStats {
                id: p.id.clone(),
                name: p.node.clone(),
                address: p.address.clone(),
                serf_status: serf_status.into(),
                leader: p.leader,
                voter: p.voter,
                last_contact: contact.map(Duration::from_millis),
                last_term: term,
                last_index: index,
            }
        });
        let stats = futures_util::future::join_all(asks).await;
        let mut stable = self.stable.lock().unwrap_or_else(|p| p.into_inner());
        stable.retain(|id, _| stats.iter().any(|s| s.id == *id));
        let now = SystemTime::now();
        autopilot::assess(
            stats,
            &self.autopilot,
            env!("CARGO_PKG_VERSION"),
            |s, ok| {
                let e = stable.entry(s.id.clone()).or_insert((ok, now));
                if e.0 != ok {
                    *e = (ok, now);
                }
                e.1
            },
        )
    }

    /// Sessions the leader ends now: TTLs run out (twice the TTL since creation or the last renewal,
    /// as Consul allows), sessions one of whose checks is critical (`serfHealth`: the node failed or
    /// left), and sessions whose node or check has been missing for [`MISSING_GRACE`] (deregistered).
    ///
    /// [`MISSING_GRACE`]: crate::state::sessions::MISSING_GRACE
    fn sessions_to_end(&self, term: u64) -> Vec<String> {
        let all = self.state.sessions.all();
        let now = Instant::now();
        let mut end = Vec::new();
        let mut t = self.timers.lock().unwrap_or_else(|p| p.into_inner());
        if t.term != term {
            t.term = term;
            t.deadlines.clear();
            t.missing.clear();
        }
        let live: BTreeSet<&str> = all.iter().map(|s| s.id.as_str()).collect();
        t.deadlines.retain(|id, _| live.contains(id.as_str()));
        t.missing.retain(|id| live.contains(id));
        for s in &all {
            if let Some(ttl) = s.ttl() {
                let due = *t.deadlines.entry(s.id.clone()).or_insert(now + ttl * 2);
                if due <= now {
                    end.push(s.id.clone());
                    continue;
                }
            }
            let member = self.members.get(&s.node);
            let record = self.catalog.node(&s.node);
            let health = s.health(member.as_deref(), record.as_ref().map(|r| &r.record));
            if t.missing.ends(&s.id, &health, now) {
                if !matches!(health, SessionHealth::Critical(_)) {
                    tracing::info!(
                        "ending session {}: {health:?} for {:?}",
                        s.id,
                        crate::state::sessions::MISSING_GRACE
                    );
                }
                end.push(s.id.clone());
            }
        }
        end
    }

    /// Coordinates of nodes no longer in the catalog: members that left (or were reaped) and external
    /// nodes deregistered, as Consul drops a node's coordinate with the node.
    fn coordinates_to_drop(&self, term: u64) -> Vec<String> {
        let settled = {
            let mut since = self.leading_since.lock().unwrap_or_else(|p| p.into_inner());
            let (t, at) = *since.get_or_insert((term, Instant::now()));
            if t != term {
                *since = Some((term, Instant::now()));
            }
            t == term && at.elapsed() >= SETTLE_BEFORE_PRUNING
        };
        self.state.coordinates.unwanted(|node| {
            let member = self.members.get(node);
            let external = self.state.external.contains(node);
            keep_coordinate(member.as_deref(), external, &self.datacenter, settled)
        })
    }

    /// Logs each change of leader, as Consul's servers do ("New leader elected"), and counts elections
    /// for the metrics.
    async fn log_leaders(self: Arc<Self>) {
        let mut rx = self.raft.metrics();
        let mut stop = self.stop.subscribe();
        let mut known: Option<(u64, Option<u64>)> = None;
        loop {
            let now = {
                let m = rx.borrow_and_update();
                (m.current_term, m.current_leader)
            };
            // A leader in a new term is a new election even when the same server wins it again
            // (the watch may have coalesced the leaderless moment in between).
            if now.1.is_some() && known != Some(now) {
                self.stats.leader_changed(now.1 == Some(self.id));
            }
            if known.map(|k| k.1) != Some(now.1) {
                match now.1 {
                    Some(id) if id == self.id => {
                        tracing::info!("raft: entering leader state, term {}", now.0);
                    }
                    Some(id) => {
                        let name = self.node_of(id).map_or_else(|| id.to_string(), |n| n.name);
                        tracing::info!("raft: new leader elected: {name}, term {}", now.0);
                    }
                    None if known.is_some() => {
                        tracing::info!("raft: no known leader, term {}", now.0)
                    }
                    None => {}
                }
            }
            known = Some(now);
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
            }
        }
    }

    /// The leader's upkeep, once a second until the server stops.
    async fn upkeep(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RECONCILE_EVERY) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let m = self.metrics();
            if m.state == ServerState::Leader {
                self.reconcile().await;
                let due = {
                    let mut gc = self.tombstones.lock().unwrap_or_else(|p| p.into_inner());
                    let now = Instant::now();
                    gc.observe(now, m.current_term, m.last_applied.map_or(0, |l| l.index));
                    gc.due(now, || self.state.kv.oldest_tombstone())
                };
                if let Some(up_to) = due {
                    let change = Change::Reap(up_to);
                    if let Err(e) = self.propose(Command::encode_write(&change), MAX_HOPS).await {
                        tracing::warn!("reaping tombstones up to index {up_to}: {e}");
                    }
                }
                let gone = self.coordinates_to_drop(m.current_term);
                if !gone.is_empty() {
                    let n = gone.len();
                    let change = Change::Coordinates(CoordinateOp::Remove(gone));
                    if let Err(e) = self.propose(Command::encode_write(&change), MAX_HOPS).await {
                        tracing::warn!("dropping the coordinates of {n} departed nodes: {e}");
                    }
                }
                for id in self.sessions_to_end(m.current_term) {
                    tracing::info!(
                        "session {id} invalidated (TTL expired or one of its checks critical)"
                    );
                    let change = Change::Session(SessionOp::Destroy { id: id.clone() });
                    if let Err(e) = self.propose(Command::encode_write(&change), MAX_HOPS).await {
                        tracing::warn!("ending session {id}: {e}");
                    }
                }
            }
        }
    }

    /// Brings the configuration in line with gossip: new servers join as learners and vote once they
    /// have kept up for the stabilization time; servers that left, or whose name now belongs to a new
    /// node ID (a wiped data dir), are removed.
    async fn reconcile(&self) {
        let m = self.metrics();
        let membership = m.membership_config.membership().clone();
        // One change at a time: openraft refuses a new one while a joint configuration is pending.
        if membership.get_joint_config().len() > 1 {
            return;
        }
        let alive: Vec<Candidate> =
            bootstrap::gossip_servers(&self.members, &self.datacenter, self.default_port);
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let configured: BTreeMap<u64, ServerNode> =
            membership.nodes().map(|(id, n)| (*id, n.clone())).collect();

        // Gone: left in gossip, or replaced under the same name by a new node ID; and, with autopilot's
        // cleanup_dead_servers, failed in gossip.
        let mut gone: BTreeSet<u64> = configured
            .iter()
            .filter(|(id, n)| **id != self.id && self.left_or_replaced(**id, n, &alive))
            .map(|(id, _)| *id)
            .collect();
        if self.autopilot.cleanup_dead_servers {
            let failed: Vec<u64> = configured
                .iter()
                .filter(|(id, n)| {
                    **id != self.id
                        && !gone.contains(id)
                        && self
                            .members
                            .get(&n.name)
                            .is_some_and(|m| m.status == MemberStatus::Failed)
                })
                .map(|(id, _)| *id)
                .collect();
            let leaving = gone.iter().filter(|id| voters.contains(id)).count() as u64;
            gone.extend(dead_to_remove(
                &failed,
                &voters,
                leaving,
                self.autopilot.min_quorum,
            ));
        }
        if !gone.is_empty() {
            let (gone_voters, gone_learners): (BTreeSet<u64>, BTreeSet<u64>) =
                gone.iter().partition(|id| voters.contains(id));
            let change = if gone_voters.is_empty() {
                ChangeMembers::RemoveNodes(gone_learners)
            } else {
                ChangeMembers::RemoveVoters(gone_voters)
            };
            tracing::info!("removing servers {gone:?} from the raft configuration");
            self.change(&format!("removing servers {gone:?}"), change)
                .await;
            return;
        }

        for c in alive.iter().filter(|c| !configured.contains_key(&c.id)) {
            tracing::info!(
                "adding server {} ({}) as a learner",
                c.node.name,
                c.node.addr
            );
            let add = self.raft.add_learner(c.id, c.node.clone(), false);
            match tokio::time::timeout(CHANGE_TIMEOUT, add).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("adding server {}: {e}", c.node.name),
                Err(_) => tracing::warn!("adding server {}: timed out", c.node.name),
            }
        }

        let last = m.last_log_index.unwrap_or(0);
        let now = Instant::now();
        let mut ready = BTreeSet::new();
        {
            let mut caught = self.caught_up.lock().unwrap_or_else(|p| p.into_inner());
            let replication = m.replication.clone().unwrap_or_default();
            caught.retain(|id, _| configured.contains_key(id) && !voters.contains(id));
            for id in configured.keys().filter(|id| !voters.contains(id)) {
                // A learner never reached has no match at all: it is not caught up.
                let matched = replication.get(id).and_then(|l| l.map(|l| l.index));
                let is_alive = alive.iter().any(|c| c.id == *id);
                // Within a heartbeat's worth of entries of the leader.
                if is_alive && matched.is_some_and(|m| m + 64 >= last) {
                    let since = *caught.entry(*id).or_insert(now);
                    if now.duration_since(since) >= self.autopilot.server_stabilization_time {
                        ready.insert(*id);
                    }
                } else {
                    caught.remove(id);
                }
            }
        }
        if !ready.is_empty() {
            tracing::info!("promoting servers {ready:?} to voters");
            self.change(
                &format!("promoting servers {ready:?}"),
                ChangeMembers::AddVoterIds(ready),
            )
            .await;
        }
    }

    fn left_or_replaced(&self, id: u64, node: &ServerNode, alive: &[Candidate]) -> bool {
        if alive
            .iter()
            .any(|c| c.id != id && (c.node.name == node.name || c.node.addr == node.addr))
        {
            return true;
        }
        self.members
            .get(&node.name)
            .is_some_and(|m| m.status == crate::state::MemberStatus::Left)
    }

    /// Commits a configuration change, giving up after [`CHANGE_TIMEOUT`] (without a quorum it
    /// never commits, and the upkeep must go on); true once committed.
    async fn change(&self, what: &str, change: ChangeMembers<u64, ServerNode>) -> bool {
        let commit = self.raft.change_membership(change, false);
        match tokio::time::timeout(CHANGE_TIMEOUT, commit).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::warn!("{what}: {e}");
                false
            }
            Err(_) => {
                tracing::warn!("{what}: timed out");
                false
            }
        }
    }

    /// On a graceful leave: a leader takes itself out of the configuration first (the others then
    /// elect among themselves); a follower is removed by the leader when gossip says it left.
    pub async fn leave(&self) {
        if self.metrics().state == ServerState::Leader {
            let me = BTreeSet::from([self.id]);
            let what = "leaving the raft configuration";
            if self.change(what, ChangeMembers::RemoveVoters(me)).await {
                tracing::info!("left the raft configuration");
            }
        }
    }

    /// Stops raft and the server port.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let _ = self.raft.shutdown().await;
        self.transport.close();
    }
}

/// Which of the `failed` servers autopilot removes now: every non-voter; and the failed voters, only
/// if they are at most (voters - 1) / 2 together with the `leaving` voters already going (more failed
/// than that looks like this leader being cut off, not like them being dead), and `min_quorum` voters
/// stay.
fn dead_to_remove(
    failed: &[u64],
    voters: &BTreeSet<u64>,
    leaving: u64,
    min_quorum: u64,
) -> Vec<u64> {
    let p = voters.len() as u64;
    let (dead, mut out): (Vec<u64>, Vec<u64>) = failed.iter().partition(|id| voters.contains(id));
    let going = leaving + dead.len() as u64;
    if going <= p.saturating_sub(1) / 2 && p.saturating_sub(going) >= min_quorum {
        out.extend(dead);
    }
    out
}

/// Where a request for the leader is served.
enum Route {
    /// This server leads.
    Here,
    /// Another server leads.
    Forward(Target),
}

/// The leader a request is forwarded to.
struct Target {
    addr: String,
    id: u64,
    term: u64,
}

/// A committed entry's reply as the agent sees it.
fn written(index: u64, reply: Reply) -> Result<Written, StoreError> {
    match reply {
        Reply::Done(ok) => Ok(Written {
            index,
            ok,
            txn: None,
        }),
        Reply::Nothing => Ok(Written {
            index,
            ok: true,
            txn: None,
        }),
        Reply::Txn(outcome) => Ok(Written {
            index,
            ok: outcome.is_ok(),
            txn: Some(outcome),
        }),
        Reply::Refused(why) => Err(StoreError::Refused(why)),
        Reply::Unreadable(e) => Err(StoreError::Unavailable(e)),
        Reply::Batch(_) => Err(StoreError::Unavailable(
            "a batch's reply where one write's was due".into(),
        )),
    }
}

fn unexpected(a: Answer) -> StoreError {
    match a {
        Answer::Refused(why) => StoreError::Unavailable(why),
        _ => StoreError::Unavailable("unexpected answer from a server".into()),
    }
}

impl Replicated for RaftServer {
    fn write(&self, change: Change) -> BoxFuture<'_, Result<Written, StoreError>> {
        Box::pin(async move { self.propose(Command::encode_write(&change), 0).await })
    }

    fn renew(&self, id: String) -> BoxFuture<'_, Result<Option<Session>, StoreError>> {
        Box::pin(async move { self.renew_at(id, 0).await })
    }

    fn read(&self, req: ReadRequest) -> BoxFuture<'_, Result<ReadResult, StoreError>> {
        Box::pin(async move { self.read_at(req, 0).await })
    }

    fn leader(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move { self.leader_addr() })
    }

    fn peers(&self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async move { self.voter_addrs() })
    }

    fn known_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader.is_some()
    }

    fn record_metrics(&self, snap: &mut crate::metrics::Snapshot) {
        let now = {
            let m = self.raft.metrics();
            let m = m.borrow();
            RaftNow {
                term: m.current_term,
                last_index: m.last_log_index.unwrap_or(0),
                applied_index: m.last_applied.map_or(0, |l| l.index),
                leader: m.state == ServerState::Leader,
            }
        };
        self.stats.read_into(snap, &now);
    }

    fn configuration(&self) -> BoxFuture<'_, Result<RaftConfiguration, StoreError>> {
        Box::pin(async move { Ok(self.raft_configuration()) })
    }

    fn operator(&self, op: OperatorOp) -> BoxFuture<'_, Result<OperatorReply, StoreError>> {
        Box::pin(async move { self.operator_at(op, 0).await })
    }

    fn remote(
        &self,
        dc: String,
        req: RemoteRequest,
    ) -> BoxFuture<'_, Result<RemoteAnswer, StoreError>> {
        Box::pin(self.federation.answer(dc, req, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_servers_go_without_taking_the_quorum_with_them() {
        let voters = |n: u64| (1..=n).collect::<BTreeSet<u64>>();
        // 3 voters: one failed voter goes; two failed look like this leader cut off, and stay. A
        // failed learner always goes.
        assert_eq!(dead_to_remove(&[2, 9], &voters(3), 0, 0), vec![9, 2]);
        assert_eq!(dead_to_remove(&[2, 3, 9], &voters(3), 0, 0), vec![9]);
        // 2 voters: none.
        assert!(dead_to_remove(&[2], &voters(2), 0, 0).is_empty());
        // 5 voters: two may go, counting one that is leaving anyway; min_quorum keeps them.
        assert_eq!(dead_to_remove(&[3, 4], &voters(5), 0, 0), vec![3, 4]);
        assert!(dead_to_remove(&[3, 4], &voters(5), 1, 0).is_empty());
        assert_eq!(dead_to_remove(&[3], &voters(5), 1, 0), vec![3]);
        assert!(dead_to_remove(&[3, 4], &voters(5), 0, 4).is_empty());
        assert_eq!(dead_to_remove(&[3], &voters(5), 0, 4), vec![3]);
    }
}
