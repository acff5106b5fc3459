//! Network drivers: batched UDP I/O and the tokio driver that runs a gossip core on a real socket.

pub mod batch;
pub mod crypto;
pub mod mux;
pub mod quic;
pub mod tls;
pub mod udp;
