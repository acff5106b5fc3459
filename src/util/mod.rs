//! Helpers with no knowledge of the cluster, usable from every layer: command-line flags, entropy,
//! durations, join addresses, batched datagram I/O, atomic and private files, per-client connection caps,
//! the log's tap and its rotated file, hex.

pub mod addr;
pub mod batch;
pub mod connlimit;
pub mod duration;
pub mod entropy;
pub mod files;
pub mod flags;
pub mod hex;
pub mod log_file;
pub mod log_tap;
pub mod percent;
