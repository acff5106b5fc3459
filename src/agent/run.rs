//! Runtime wiring of one agent: data dir, gossip socket and driver, HTTP API, joins, signals, leave.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UdpSocket};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::checks;
use super::config::{self, Config};
use super::datadir::DataDir;
use super::local_answer::AgentAnswerer;
use super::pool::PoolSetup;
use super::publish_record;
use crate::dns::remote::RemoteDns;
use crate::dns::server::{DnsServer, DnsStats};
use crate::dns::services::CatalogServices;
use crate::http::{self, ApiState};
use crate::net::crypto::{self, Keyring};
use crate::net::{GossipHandle, Security};
use crate::raft::forward::Forwarder;
use crate::raft::network::Transport;
use crate::raft::server::{RaftServer, ServerSetup};
use crate::state::catalog::Catalog;
use crate::state::local_services::{self, LocalServices};
use crate::state::node_record::consul_service_record;
use crate::state::publish::Publisher;
use crate::state::replicated::Replica;
use crate::state::replicated::Replicated;
use crate::state::user_events::UserEvents;
use crate::state::wan::WanPool;
use crate::state::{AgentState, ChangeIndex, LocalAgent, MemberTable};
use crate::util::connlimit::ConnLimiter;
use crate::util::log_tap::LogTap;
use crate::util::{entropy, flags};
use crate::version;

/// `murmur agent ARGS`: returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    let parsed = match flags::parse(args, &config::agent_flags()) {
        Ok(p) => p,
        Err(e) => {
            let consul_only = e
                .strip_prefix("flag provided but not defined: -")
                .and_then(super::consul_only::flag);
            eprintln!("{}", consul_only.unwrap_or(e));
            return 1;
        }
    };
    let cfg = match config::load(&parsed) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("==> {e}");
            return 1;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("==> cannot start the runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(run(cfg, parsed)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("==> {e}");
            1
        }
    }
}

enum Stop {
    Interrupt,
    Terminate,
    LeftViaApi,
    Fatal(String),
}

/// Runs the agent until it leaves, is signalled, or fails; `flags` are re-read on a reload.
pub async fn run(cfg: Config, flags: flags::Parsed) -> Result<(), String> {
    let logs = init_logging(&cfg)?;
    let data_dir = cfg.data_dir.as_deref().map(DataDir::open).transpose()?;
    let node_id = match &data_dir {
        Some(d) => {
            let (id, created) = d.node_id()?;
            if created {
                info!(
                    "no node ID in {}: created {id} (a node that ran before with this name will be \
                     seen as a new one)",
                    d.path().display()
                );
            }
            d.claim_name(&cfg.node_name, &id)?;
            id
        }
        None => entropy::uuid()?,
    };
    let bind = SocketAddr::new(cfg.bind_addr, cfg.ports.serf_lan);
    let socket = Arc::new(
        UdpSocket::bind(bind)
            .await
            .map_err(|e| format!("Failed to bind the gossip socket on {bind}: {e}"))?,
    );
    let advertise_ip = match cfg.advertise_addr {
        Some(ip) => ip,
        None if !cfg.bind_addr.is_unspecified() => cfg.bind_addr,
        None => private_ipv4()?,
    };
    let advertise = SocketAddr::new(advertise_ip, cfg.ports.serf_lan);
    let security = security(&cfg, &node_id, Pool::Lan)?;
    let table = Arc::new(MemberTable::new());
    let catalog = Arc::new(Catalog::new());
    let publisher = Arc::new(Publisher {
        members: table.clone(),
        changes: Arc::new(ChangeIndex::new(table.snapshot().index)),
        catalog: catalog.clone(),
        events: Arc::new(UserEvents::default()),
        node: cfg.node_name.clone(),
    });
    let encrypted = security.keyring.is_some();
    let (gossip, mut driver_task) = super::pool::start(
        socket,
        PoolSetup {
            name: cfg.node_name.clone(),
            advertise,
            gossip: &cfg.gossip,
            security,
            sink: publisher.clone(),
            tls: &cfg.tls,
            server_name: crate::raft::network::server_name(&cfg.datacenter),
        },
    )?;
    let wan = match &cfg.wan {
        Some(w) => {
            let keys = self::security(&cfg, &node_id, Pool::Wan)?;
            Some(super::wan::start(&cfg, w, advertise_ip, keys).await?)
        }
        None => None,
    };
    if cfg.tls.mutual() {
        info!(
            "push/pull over QUIC with mutual TLS (CA {:?})",
            cfg.tls.ca_file
        );
    } else {
        warn!("push/pull over QUIC without mutual TLS: peers are not authenticated by certificate");
    }

    let http_addr = SocketAddr::new(cfg.client_addr, cfg.ports.http);
    let listener = TcpListener::bind(http_addr)
        .await
        .map_err(|e| format!("Failed to bind the HTTP API on {http_addr}: {e}"))?;
    let (shutdown_tx, mut shutdown_rx) = mpsc::channel(1);
    let dns_stats = Arc::new(DnsStats::default());
    let local = LocalAgent {
        node_name: cfg.node_name.clone(),
        node_id: node_id.clone(),
        datacenter: cfg.datacenter.clone(),
        server: cfg.server,
        bootstrap_expect: cfg.bootstrap_expect,
        advertise,
        server_port: cfg.ports.server,
        serf_lan_port: cfg.ports.serf_lan,
        serf_wan_port: cfg
            .wan
            .as_ref()
            .map_or(super::config::DEFAULT_SERF_WAN_PORT, |w| w.port),
        coordinates: cfg.gossip.coordinates,
    };
    let services = Arc::new(LocalServices::new(data_dir.as_ref().map(DataDir::path)));
    let _ = services.set_script_policy(cfg.scripts);
    let (reload_tx, mut reload_rx) = mpsc::channel(4);
    for problem in services.load_persisted(Instant::now()) {
        warn!("skipping a persisted registration that no longer reads: {problem}");
    }
    // The same path a reload takes, so start-up and reload cannot disagree.
    services.replace_config(
        cfg.services.clone(),
        cfg.checks.clone(),
        cfg.scripts,
        Instant::now(),
    )?;
    for problem in services.load_maintenance(Instant::now()) {
        warn!("maintenance mode not restored: {problem}");
    }
    tokio::spawn(run_ttl_checks(services.clone()));
    // A server carries the `consul` service, as Consul's leader registers it for every server.
    let own = cfg
        .server
        .then(|| consul_service_record(cfg.ports.server))
        .into_iter()
        .collect();
    tokio::spawn(publish_record::run(
        services.clone(),
        gossip.clone(),
        own,
        cfg.check_update_interval,
    ));
    let view = checks::ClusterView {
        node: cfg.node_name.clone(),
        catalog: catalog.clone(),
        members: table.clone(),
    };
    tokio::spawn(checks::supervise(services.clone(), view));
    tokio::spawn(reap_critical_services(services.clone()));
    let wan_pool = wan.as_ref().map(|w| w.pool.clone());
    let (store, raft_server) =
        replicated_store(&cfg, &node_id, advertise_ip, &table, &catalog, wan_pool).await?;
    tokio::spawn(super::external_mirror::run(store.clone(), catalog.clone()));
    if cfg.gossip.coordinates {
        tokio::spawn(super::coordinate_sync::run(
            cfg.node_name.clone(),
            gossip.clone(),
            table.clone(),
            store.clone(),
        ));
    }
    let mut state = AgentState::new(
        &publisher,
        local,
        services.clone(),
        store.clone(),
        gossip.clone(),
    );
    if let Some(w) = &wan {
        state = state.with_wan(w.gossip.clone(), w.pool.clone());
    }
    let api = ApiState {
        state,
        reload: reload_tx,
        shutdown: shutdown_tx,
        dns: dns_stats.clone(),
        telemetry: crate::http::metrics::Telemetry::new(cfg.metrics_prefix.clone()),
        logs,
    };
    let dns_addr = SocketAddr::new(cfg.client_addr, cfg.ports.dns);
    let dns = DnsServer::new(
        cfg.dns.clone(),
        table.clone(),
        Arc::new(CatalogServices::new(table.clone(), catalog.clone())),
        dns_stats,
        Some(Arc::new(RemoteDns::new(store.clone(), &cfg.dns))),
    );
    let dns_udp = UdpSocket::bind(dns_addr)
        .await
        .map_err(|e| format!("Failed to bind DNS (UDP) on {dns_addr}: {e}"))?;
    let dns_tcp = TcpListener::bind(dns_addr)
        .await
        .map_err(|e| format!("Failed to bind DNS (TCP) on {dns_addr}: {e}"))?;
    tokio::spawn(dns.clone().serve_udp(Arc::new(dns_udp)));
    tokio::spawn(dns.clone().serve_tcp(dns_tcp));
    // The transports share its settings: a reload changes them for all.
    let dns_settings = dns.clone();
    let router = http::router(api);
    if let Some(r) = &raft_server {
        r.federation().set_local(Arc::new(AgentAnswerer {
            router: router.clone(),
            dns,
        }));
    }

    let (stop_http, stop_http_rx) = oneshot::channel::<()>();
    let http_task = tokio::spawn(crate::http::serve::serve(
        listener,
        crate::http::ui::with_ui(router, &cfg.ui),
        ConnLimiter::new(cfg.http_max_conns_per_client as usize),
        async {
            let _ = stop_http_rx.await;
        },
    ));

    info!("murmur agent running!");
    info!(
        "node name: '{}', datacenter: '{}', server: {}, node id: '{}'",
        cfg.node_name, cfg.datacenter, cfg.server, node_id
    );
    info!("gossip: {bind} (advertised as {advertise}), HTTP: {http_addr}, DNS: {dns_addr}");
    if cfg.bootstrap_expect > 0 {
        info!("bootstrap_expect = {}", cfg.bootstrap_expect);
    }
    if encrypted {
        info!(
            "gossip encryption on (verify incoming: {}, outgoing: {})",
            cfg.encrypt_verify_incoming, cfg.encrypt_verify_outgoing
        );
    } else {
        warn!(
            "no gossip encryption key configured: gossip traffic is NOT encrypted (see murmur keygen)"
        );
    }

    if !cfg.start_join.is_empty() {
        let n = join_all(&gossip, &cfg.start_join, cfg.ports.serf_lan).await;
        if n == 0 {
            return Err(format!(
                "Error joining the cluster: no address of {:?} answered",
                cfg.start_join
            ));
        }
        info!("Join completed. Synced with {n} initial agents");
    }
    let (fatal_tx, mut fatal_rx) = mpsc::channel::<String>(1);
    if let (Some(w), Some(settings)) = (&wan, &cfg.wan) {
        super::wan::join_at_start(w, settings, fatal_tx.clone()).await?;
    }
    if !cfg.retry_join.is_empty() {
        tokio::spawn(retry_join(
            gossip.clone(),
            Retry {
                pool: "",
                addrs: cfg.retry_join.clone(),
                port: cfg.ports.serf_lan,
                ceiling: cfg.retry_interval,
                max: cfg.retry_max,
            },
            fatal_tx.clone(),
        ));
    }

    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let stop = loop {
        tokio::select! {
            _ = sigint.recv() => break Stop::Interrupt,
            _ = sigterm.recv() => break Stop::Terminate,
            _ = shutdown_rx.recv() => break Stop::LeftViaApi,
            Some(e) = fatal_rx.recv() => break Stop::Fatal(e),
            r = &mut driver_task => break match r {
                // The driver ends by itself only after a leave requested over HTTP.
                Ok(true) => Stop::LeftViaApi,
                _ => Stop::Fatal("gossip driver stopped unexpectedly".into()),
            },
            _ = sighup.recv() => {
                info!("Caught signal: hangup, reloading the configuration");
                let _ = reload(&flags, &services, &dns_settings);
            }
            Some(reply) = reload_rx.recv() => {
                let _ = reply.send(reload(&flags, &services, &dns_settings));
            }
        }
    };
    let leave = match &stop {
        Stop::Interrupt => {
            info!("Caught signal: interrupt");
            !cfg.skip_leave_on_interrupt
        }
        Stop::Terminate => {
            info!("Caught signal: terminated");
            cfg.leave_on_terminate
        }
        Stop::LeftViaApi => {
            info!("Graceful leave complete (requested over HTTP)");
            false
        }
        Stop::Fatal(_) => false,
    };
    if let Some(r) = &raft_server
        && (leave || matches!(stop, Stop::LeftViaApi))
    {
        r.leave().await;
    }
    if let Some(w) = &wan
        && (leave || matches!(stop, Stop::LeftViaApi))
    {
        // Leave the WAN pool before the LAN pool: other datacenters stop routing here at once.
        w.gossip.leave().await;
    }
    if leave {
        info!("Gracefully shutting down agent...");
        tokio::select! {
            _ = gossip.leave() => info!("Graceful leave complete"),
            _ = sigint.recv() => warn!("Second interrupt: leaving without waiting"),
        }
    } else if !matches!(stop, Stop::LeftViaApi) {
        info!("Shutting down without leaving; others will mark this node failed");
    }
    let _ = stop_http.send(());
    let _ = tokio::time::timeout(Duration::from_secs(3), http_task).await;
    if let Some(r) = &raft_server {
        r.shutdown().await;
    }
    match stop {
        Stop::Fatal(e) => {
            error!("{e}");
            Err(e)
        }
        _ => Ok(()),
    }
}

/// The agent's log: to standard output at `log_level` (JSON lines with `-log-json`), and to the watchers
/// of `/v1/agent/monitor` at the levels they ask for, and into `log_file` if set. Returns the tap those
/// watchers follow.
fn init_logging(cfg: &Config) -> Result<Arc<LogTap>, String> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // openraft narrates every vote and replication step at INFO; at info an operator wants its
    // warnings only, and murmur says what matters (bootstrap, membership changes) itself. At debug
    // and trace, everything. (tracing orders levels by verbosity: TRACE is the greatest.)
    let raft_level = if cfg.log_level >= tracing::Level::DEBUG {
        cfg.log_level
    } else {
        cfg.log_level.min(tracing::Level::WARN)
    };
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(cfg.log_level)
        .with_target("openraft", raft_level);
    let out = log_layer(
        cfg.log_json,
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
        std::io::stdout,
        filter.clone(),
    );
    let file = match &cfg.log_file {
        None => None,
        Some(s) => {
            let f = crate::util::log_file::RotatingFile::open(s.clone())
                .map_err(|e| format!("Failed to open log file {}: {e}", s.path.display()))?;
            Some(log_layer(
                cfg.log_json,
                false,
                std::sync::Mutex::new(f),
                filter,
            ))
        }
    };
    let tap = Arc::new(LogTap::default());
    let wanted = tap.clone();
    let _ = tracing_subscriber::registry()
        .with(out)
        .with(file)
        .with(
            tap.layer()
                .with_filter(tracing_subscriber::filter::dynamic_filter_fn(
                    move |m, _| wanted.wanted(*m.level()),
                )),
        )
        .try_init();
    Ok(tap)
}

/// One destination of the log, at `filter`'s levels: JSON lines with hclog's keys, or tracing's text
/// (coloured when `ansi`).
fn log_layer<S, W>(
    json: bool,
    ansi: bool,
    writer: W,
    filter: tracing_subscriber::filter::Targets,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer;
    if json {
        crate::util::log_tap::JsonLines(writer)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(ansi)
            .with_writer(writer)
            .with_filter(filter)
            .boxed()
    }
}

/// The servers' replicated store as this agent reaches it: its own raft on a server (binding the server
/// port), forwarding to the servers on a client.
async fn replicated_store(
    cfg: &Config,
    node_id: &str,
    advertise_ip: IpAddr,
    table: &Arc<MemberTable>,
    catalog: &Arc<Catalog>,
    wan: Option<Arc<WanPool>>,
) -> Result<(Arc<dyn Replicated>, Option<Arc<RaftServer>>), String> {
    if !cfg.server {
        let transport = Transport::open(None, cfg.bind_addr, &cfg.tls, &cfg.datacenter)?;
        let f = Forwarder::new(
            transport,
            table.clone(),
            cfg.datacenter.clone(),
            cfg.ports.server,
        );
        return Ok((Arc::new(f), None));
    }
    let setup = ServerSetup {
        node_name: cfg.node_name.clone(),
        node_id: node_id.to_string(),
        datacenter: cfg.datacenter.clone(),
        bind: SocketAddr::new(cfg.bind_addr, cfg.ports.server),
        advertise: SocketAddr::new(advertise_ip, cfg.ports.server),
        data_dir: cfg.data_dir.clone(),
        bootstrap_expect: cfg.bootstrap_expect,
        bootstrap: cfg.bootstrap,
        tls: cfg.tls.clone(),
        default_port: cfg.ports.server,
        snapshot_threshold: cfg.raft.snapshot_threshold,
        trailing_logs: cfg.raft.trailing_logs,
        autopilot: cfg.raft.autopilot.clone(),
        wan,
    };
    let server = RaftServer::start(
        setup,
        table.clone(),
        catalog.clone(),
        Arc::new(Replica::default()),
    )
    .await?;
    Ok((server.clone(), Some(server)))
}

/// The gossip key file of each pool in the data dir (Consul's `serf/local.keyring` and
/// `serf/remote.keyring`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pool {
    Lan,
    Wan,
}

/// Keyring from the data dir (it wins, as in Consul) or from `-encrypt`, persisted for restarts. The
/// WAN pool starts from the LAN pool's keys when it has none of its own yet.
fn security(cfg: &Config, node_id: &str, pool: Pool) -> Result<Security, String> {
    let lan_file = cfg.data_dir.as_deref().map(crypto::keyring_path);
    let keyring_file = match pool {
        Pool::Lan => lan_file.clone(),
        Pool::Wan => lan_file
            .as_ref()
            .map(|f| f.with_file_name("remote.keyring")),
    };
    let mut stored = match &keyring_file {
        Some(p) => crypto::load(p)?,
        None => None,
    };
    if stored.is_none()
        && pool == Pool::Wan
        && let Some(p) = &lan_file
    {
        stored = crypto::load(p)?;
        if let (Some(ring), Some(f)) = (&stored, &keyring_file) {
            crypto::save(f, ring)?;
        }
    }
    let keyring = match (stored, &cfg.encrypt) {
        (Some(ring), Some(k)) => {
            if !ring.keys().contains(k) {
                warn!(
                    "a keyring exists in the data dir; -encrypt is ignored (change keys with murmur keyring)"
                );
            }
            Some(ring)
        }
        (Some(ring), None) => Some(ring),
        (None, Some(k)) => {
            let ring = Keyring::new(k)?;
            if let Some(p) = &keyring_file {
                crypto::save(p, &ring)?;
            }
            Some(ring)
        }
        (None, None) => None,
    };
    Ok(Security {
        keyring,
        verify_incoming: cfg.encrypt_verify_incoming,
        verify_outgoing: cfg.encrypt_verify_outgoing,
        keyring_file,
        base_tags: member_tags(cfg, node_id),
    })
}

/// Serf tags as Consul sets them (role, dc, id, vsn, build, and for servers port/expect).
fn member_tags(cfg: &Config, node_id: &str) -> Vec<(String, String)> {
    let mut t = vec![
        (
            "role",
            if cfg.server { "consul" } else { "node" }.to_string(),
        ),
        ("dc", cfg.datacenter.clone()),
        ("segment", String::new()),
        ("id", node_id.to_string()),
        ("vsn", version::PROTOCOL.to_string()),
        ("vsn_min", version::PROTOCOL_MIN.to_string()),
        ("vsn_max", version::PROTOCOL_MAX.to_string()),
        ("build", version::build_tag()),
    ];
    if cfg.server {
        t.push(("port", cfg.ports.server.to_string()));
        t.push(("raft_vsn", "3".to_string()));
        if cfg.bootstrap_expect > 0 {
            t.push(("expect", cfg.bootstrap_expect.to_string()));
        }
        if cfg.bootstrap {
            t.push(("bootstrap", "1".to_string()));
        }
    }
    let mut t: Vec<(String, String)> = t.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    for (k, v) in &cfg.node_meta {
        t.push((
            format!("{}{k}", crate::state::members::META_PREFIX),
            v.clone(),
        ));
    }
    t
}

/// Re-reads the config files and flags and applies their service and check definitions (and which script
/// checks are allowed), and `dns_config` and `recursors`, as Consul reloads them. Other settings
/// need a restart, as most of Consul's do. A bad file keeps the running definitions and says why.
fn reload(flags: &flags::Parsed, services: &LocalServices, dns: &DnsServer) -> Result<(), String> {
    let applied = config::load(flags).and_then(|cfg| {
        let removed =
            services.replace_config(cfg.services, cfg.checks, cfg.scripts, Instant::now())?;
        for id in removed {
            warn!("script check {id:?} removed: script checks are no longer enabled");
        }
        if dns.reconfigure(&cfg.dns) {
            info!("DNS settings reloaded");
        }
        Ok(())
    });
    match &applied {
        Ok(()) => info!("Reload complete: service and check definitions applied"),
        Err(e) => error!("Reload failed, the running definitions stay: {e}"),
    }
    applied
}

/// Turns TTL checks critical when their deadline passes: sleeps until the next deadline, or until a
/// registration or report moves it. Runs as long as the agent.
async fn run_ttl_checks(services: Arc<LocalServices>) {
    loop {
        let next = services
            .expire(Instant::now())
            .unwrap_or_else(|| Instant::now() + local_services::IDLE);
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = services.changed.notified() => {}
        }
    }
}

/// Consul's `check_reap_interval`: how often services critical for too long are looked for.
const REAP_INTERVAL: Duration = Duration::from_secs(30);

/// Deregisters services whose check has been critical for longer than its
/// `deregister_critical_service_after`, as Consul's reaper does.
async fn reap_critical_services(services: Arc<LocalServices>) {
    loop {
        tokio::time::sleep(REAP_INTERVAL).await;
        for id in services.critical_too_long(Instant::now()) {
            match services.remove_service(&id) {
                Ok(_) => info!(
                    "deregistered service {id:?}: critical for longer than its deregister_critical_service_after"
                ),
                Err(e) => warn!("could not deregister service {id:?}: {e}"),
            }
        }
    }
}

/// Joins every address concurrently (`port` where an address names none); returns how many answered.
pub(super) async fn join_all(gossip: &GossipHandle, addrs: &[String], port: u16) -> usize {
    let mut set = JoinSet::new();
    for a in addrs {
        let (g, a) = (gossip.clone(), a.clone());
        set.spawn(async move {
            let r = match crate::util::addr::resolve(&a, port).await {
                Ok(sa) => g.join(sa).await,
                Err(e) => Err(e),
            };
            (a, r)
        });
    }
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        match r {
            Ok((_, Ok(()))) => ok += 1,
            Ok((a, Err(e))) => warn!("Error joining address '{a}': {e}"),
            Err(e) => warn!("join task failed: {e}"),
        }
    }
    ok
}

/// What [`retry_join`] retries.
pub(super) struct Retry {
    /// Which pool, as the log names it: "" for the LAN pool (Consul's words unchanged), " (WAN)".
    pub pool: &'static str,
    /// Addresses to join.
    pub addrs: Vec<String>,
    /// Port where an address names none.
    pub port: u16,
    /// Longest wait between attempts.
    pub ceiling: Duration,
    /// Attempts (0 = forever).
    pub max: u32,
}

/// Retries joins with exponential backoff (1 s doubling up to the ceiling), `max` attempts (0 = forever).
pub(super) async fn retry_join(gossip: GossipHandle, r: Retry, fatal: mpsc::Sender<String>) {
    let mut backoff = Duration::from_secs(1).min(r.ceiling.max(Duration::from_millis(100)));
    let mut attempt = 0u32;
    let pool = r.pool;
    loop {
        attempt += 1;
        let n = join_all(&gossip, &r.addrs, r.port).await;
        if n > 0 {
            info!("Join completed{pool}. Synced with {n} initial agents");
            return;
        }
        if r.max > 0 && attempt >= r.max {
            let _ = fatal
                .send(format!("max join retry exhausted{pool}, exiting"))
                .await;
            return;
        }
        warn!("Join failed{pool}, retrying in {backoff:?} (attempt {attempt})");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(r.ceiling.max(Duration::from_secs(1)));
    }
}

/// First private IPv4 address of this host (Consul's default advertise address when bound to 0.0.0.0).
fn private_ipv4() -> Result<IpAddr, String> {
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return Err("cannot list network interfaces; set -bind or -advertise".into());
    }
    let mut found = None;
    let mut cur = ifap;
    while !cur.is_null() {
        // SAFETY: cur walks the list returned by getifaddrs, valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() && unsafe { (*ifa.ifa_addr).sa_family } as i32 == libc::AF_INET {
            // SAFETY: family AF_INET means the address is a sockaddr_in.
            let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            let shared = ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64;
            if ip.is_private() || shared {
                found = Some(IpAddr::V4(ip));
                break;
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: ifap came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(ifap) };
    found.ok_or_else(|| "No private IPv4 address found; set -bind or -advertise".into())
}
