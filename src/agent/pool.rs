//! One gossip pool on its socket: the core (its identity and tuning), the driver that runs it, and
//! QUIC push/pull on the same port. The LAN pool and a server's WAN pool start the same way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use murmur_gossip::{Core, GossipConfig, Identity, tags};

use crate::net::mux::QUIC_QUEUE;
use crate::net::quic::Quic;
use crate::net::tls::TlsSettings;
use crate::net::{GossipHandle, MemberSink, Security, UdpDriver};
use crate::util::entropy;

/// What a pool is started with.
pub struct PoolSetup<'a> {
    /// Its member name.
    pub name: String,
    /// The address others reach it at.
    pub advertise: SocketAddr,
    /// Tuning.
    pub gossip: &'a GossipConfig,
    /// Keys and the member tags.
    pub security: Security,
    /// Where member events go.
    pub sink: Arc<dyn MemberSink>,
    /// TLS of push/pull.
    pub tls: &'a TlsSettings,
    /// The server name this pool's joins check with `verify_server_hostname`.
    pub server_name: String,
}

/// Starts a pool on `socket`; returns its handle and the driver's task (which ends after a leave).
pub fn start(
    socket: Arc<UdpSocket>,
    s: PoolSetup<'_>,
) -> Result<(GossipHandle, JoinHandle<bool>), String> {
    let identity = Identity {
        name: s.name,
        addr: s.advertise,
        tags: tags::encode(&s.security.tags()).map_err(|e| e.to_string())?,
        incarnation: 0,
    };
    // Periodic and reconnect exchanges go over QUIC streams like joins (TLS, and mutual TLS when set),
    // not over the core's datagram exchange.
    let gossip_cfg = GossipConfig {
        external_push_pull: true,
        ..s.gossip.clone()
    };
    let core = Core::new(gossip_cfg, identity, Instant::now(), entropy::u64()?)
        .map_err(|e| e.to_string())?;
    let (quic_tx, quic_rx) = mpsc::channel(QUIC_QUEUE);
    let (driver, gossip) = UdpDriver::new(core, socket.clone(), s.sink, s.security, Some(quic_tx));
    let task = tokio::spawn(driver.run());
    let quic = Quic::new(socket, quic_rx, s.tls, s.server_name)?;
    gossip.set_quic(quic.clone());
    let answerer = gossip.clone();
    quic.serve(move |from, kind, theirs| {
        let g = answerer.clone();
        async move { g.answer_stream(from, kind, theirs).await }
    });
    Ok((gossip, task))
}
