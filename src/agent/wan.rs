//! A server's WAN pool: a second gossip core (the `wan` profile) on the Serf WAN port, among the
//! servers of every datacenter, with the same gossip key and TLS as the LAN pool. Its members are
//! `NODE.DC`; what it learns goes to a [`WanPool`], where forwarding finds other datacenters' servers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::info;

use super::config::{Config, WanSettings};
use super::pool::PoolSetup;
use crate::net::{GossipHandle, Security};
use crate::state::wan::{WanPool, member_name};

/// The running WAN pool.
pub struct Wan {
    /// The driver's handle (join, leave, keyring).
    pub gossip: GossipHandle,
    /// What it knows.
    pub pool: Arc<WanPool>,
}

/// Binds the WAN port and starts the pool's core and driver. `security` carries the keys and the
/// member tags (the LAN pool's: role, dc, port, ...).
pub async fn start(
    cfg: &Config,
    wan: &WanSettings,
    lan_advertise: IpAddr,
    security: Security,
) -> Result<Wan, String> {
    let bind = SocketAddr::new(cfg.bind_addr, wan.port);
    let socket = Arc::new(
        UdpSocket::bind(bind)
            .await
            .map_err(|e| format!("Failed to bind the WAN gossip socket on {bind}: {e}"))?,
    );
    let advertise = SocketAddr::new(wan.advertise.unwrap_or(lan_advertise), wan.port);
    let pool = Arc::new(WanPool::new(
        member_name(&cfg.node_name, &cfg.datacenter),
        cfg.ports.server,
    ));
    // The pool spans datacenters, and a joiner cannot know which one an address it was given belongs
    // to: peers are checked against the CA, not for one datacenter's server name. Forwarded requests
    // do check `server.DC.murmur` (the server transport).
    let mut tls = cfg.tls.clone();
    tls.verify_server_hostname = false;
    let (gossip, _driver) = super::pool::start(
        socket,
        PoolSetup {
            name: member_name(&cfg.node_name, &cfg.datacenter),
            advertise,
            gossip: &wan.gossip,
            security,
            sink: pool.clone(),
            tls: &tls,
            server_name: crate::raft::network::server_name(&cfg.datacenter),
        },
    )?;
    info!("WAN gossip: {bind} (advertised as {advertise})");
    Ok(Wan { gossip, pool })
}

/// Joins the WAN addresses given at start (`start_join_wan`, fatal when none answers) and starts the
/// retries of `retry_join_wan`.
pub async fn join_at_start(
    wan: &Wan,
    settings: &WanSettings,
    fatal: mpsc::Sender<String>,
) -> Result<(), String> {
    if !settings.start_join.is_empty() {
        let n = super::run::join_all(&wan.gossip, &settings.start_join, settings.port).await;
        if n == 0 {
            return Err(format!(
                "Error joining the WAN pool: no address of {:?} answered",
                settings.start_join
            ));
        }
        info!("Join completed (WAN). Synced with {n} initial servers");
    }
    if !settings.retry_join.is_empty() {
        tokio::spawn(super::run::retry_join(
            wan.gossip.clone(),
            super::run::Retry {
                pool: " (WAN)",
                addrs: settings.retry_join.clone(),
                port: settings.port,
                ceiling: settings.retry_interval,
                max: settings.retry_max,
            },
            fatal,
        ));
    }
    Ok(())
}
