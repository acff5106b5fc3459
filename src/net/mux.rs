//! One UDP port for gossip and QUIC: the gossip driver reads every datagram and hands QUIC ones
//! (first byte has bit 0x40 set, which gossip never uses) to quinn through this socket adapter.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Datagrams waiting for quinn; beyond this the driver drops (and counts) QUIC packets.
pub const QUIC_QUEUE: usize = 1024;

/// True when a datagram belongs to QUIC rather than gossip.
pub fn is_quic(first_byte: u8) -> bool {
    first_byte & 0x40 != 0
}

/// quinn's view of the shared socket: sends go straight out, receives come from the gossip driver.
pub struct MuxSocket {
    io: Arc<UdpSocket>,
    incoming: Mutex<mpsc::Receiver<(SocketAddr, Vec<u8>)>>,
}

impl MuxSocket {
    /// Wraps the shared socket; `incoming` carries the QUIC datagrams the driver diverts.
    pub fn new(io: Arc<UdpSocket>, incoming: mpsc::Receiver<(SocketAddr, Vec<u8>)>) -> Self {
        MuxSocket {
            io,
            incoming: Mutex::new(incoming),
        }
    }
}

impl fmt::Debug for MuxSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxSocket")
            .field("local", &self.io.local_addr().ok())
            .finish()
    }
}

struct Poller {
    io: Arc<UdpSocket>,
}

impl fmt::Debug for Poller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MuxPoller")
    }
}

impl UdpPoller for Poller {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        self.io.poll_send_ready(cx)
    }
}

impl AsyncUdpSocket for MuxSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Poller {
            io: self.io.clone(),
        })
    }

    fn try_send(&self, t: &Transmit) -> io::Result<()> {
        self.io.try_send_to(t.contents, t.destination).map(|_| ())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut rx = self.incoming.lock().expect("mux receiver lock");
        match rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            // The gossip driver stopped (the agent is leaving or shutting down): no datagram will
            // come any more. An error here would make quinn log "I/O error: broken pipe" at ERROR on
            // every graceful leave; waiting forever is the truth, and the endpoint goes with the agent.
            Poll::Ready(None) => Poll::Pending,
            Poll::Ready(Some((from, data))) => {
                let (Some(buf), Some(m)) = (bufs.first_mut(), meta.first_mut()) else {
                    return Poll::Ready(Ok(0));
                };
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                *m = RecvMeta {
                    addr: from,
                    len: n,
                    stride: n,
                    ecn: None,
                    dst_ip: None,
                };
                Poll::Ready(Ok(1))
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gossip_and_quic_first_bytes_never_collide() {
        use super::is_quic;
        assert!(!is_quic(murmur_gossip::wire::PROTOCOL_VERSION));
        assert_ne!(
            murmur_gossip::wire::PROTOCOL_VERSION,
            crate::net::crypto::SEALED_VERSION
        );
        assert!(!is_quic(crate::net::crypto::SEALED_VERSION));
        assert!(is_quic(0xc0), "QUIC long header");
        assert!(is_quic(0x40), "QUIC short header");
    }
}
