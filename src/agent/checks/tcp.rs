//! TCP and UDP checks, with Consul's outputs: a TCP connect that succeeds is passing; a UDP datagram
//! is passing unless the port is refused (an ICMP unreachable), since silence is what most UDP
//! services answer an empty datagram with.

use tokio::net::{TcpStream, UdpSocket, lookup_host};
use tokio::time::{Instant, timeout_at};

use super::Outcome;
use crate::state::definitions::Status;

async fn resolve(addr: &str, deadline: Instant) -> Result<std::net::SocketAddr, String> {
    match timeout_at(deadline, lookup_host(addr)).await {
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
        Ok(Err(e)) => Err(format!("dial {addr}: {e}")),
        Ok(Ok(mut it)) => it.next().ok_or_else(|| format!("dial {addr}: no address")),
    }
}

/// Connects to `addr` (`host:port`).
pub async fn check_tcp(addr: &str, deadline: Instant) -> Outcome {
    let to = match resolve(addr, deadline).await {
        Ok(a) => a,
        Err(e) => return (Status::Critical, e),
    };
    match timeout_at(deadline, TcpStream::connect(to)).await {
        Ok(Ok(_)) => (Status::Passing, format!("TCP connect {addr}: Success")),
        Ok(Err(e)) => (
            Status::Critical,
            format!("dial tcp {to}: connect: {}", super::go_errno(&e)),
        ),
        Err(_) => (Status::Critical, format!("dial tcp {to}: i/o timeout")),
    }
}

/// Sends an empty datagram to `addr` and waits for a reply, a refusal or the deadline.
pub async fn check_udp(addr: &str, deadline: Instant) -> Outcome {
    let to = match resolve(addr, deadline).await {
        Ok(a) => a,
        Err(e) => return (Status::Critical, e),
    };
    let local: std::net::SocketAddr = if to.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => {
            return (
                Status::Critical,
                format!("dial udp {to}: {}", super::go_errno(&e)),
            );
        }
    };
    if let Err(e) = sock.connect(to).await {
        return (
            Status::Critical,
            format!("dial udp {to}: {}", super::go_errno(&e)),
        );
    }
    let ok = (Status::Passing, format!("UDP connect {addr}: Success"));
    if let Err(e) = sock.send(&[]).await {
        return (
            Status::Critical,
            format!("write udp {to}: {}", super::go_errno(&e)),
        );
    }
    let mut b = [0u8; 1];
    // The check's deadline ends the wait: no answer within it counts as alive.
    let wait = deadline - (deadline - Instant::now()) / 2;
    match timeout_at(wait, sock.recv(&mut b)).await {
        Err(_) | Ok(Ok(_)) => ok,
        Ok(Err(e)) => (
            Status::Critical,
            format!("read udp {to}: {}", super::go_errno(&e)),
        ),
    }
}
