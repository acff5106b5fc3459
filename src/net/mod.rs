//! Network drivers: the tokio driver that runs a gossip core on a real UDP socket (`udp.rs`), its
//! command handle (`handle.rs`) and member sink (`sink.rs`), the seal/open policy (`envelope.rs`,
//! keys in `crypto.rs`), the key-ring protocol (`keyring_sync.rs`), batched socket I/O (`batch.rs`),
//! and QUIC push/pull on the gossip port (`quic.rs`, `mux.rs`, `tls.rs`).
//!
//! A gossip datagram's way in: `udp.rs` receives a batch (`batch.rs`), hands QUIC packets to `quic.rs`
//! (`mux.rs` tells them apart), opens the rest under the envelope policy, and feeds the core; the core's
//! member events go to the [`sink::MemberSink`], which the agent's state layer implements.

pub mod crypto;
pub mod envelope;
pub mod handle;
pub mod keyring_sync;
pub mod mux;
pub mod quic;
pub mod sink;
pub mod tls;
pub mod udp;

pub use self::envelope::Security;
pub use self::handle::{DriverStats, GossipHandle};
pub use self::keyring_sync::KeyOp;
pub use self::sink::MemberSink;
pub use self::udp::UdpDriver;
