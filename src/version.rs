//! Version and protocol numbers reported in tags, `/v1/agent/self` and `murmur version`.

/// Release version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Source revision, set at build time through `MURMUR_REVISION` (e.g. by CI), else "dev".
pub const REVISION: &str = match option_env!("MURMUR_REVISION") {
    Some(r) => r,
    None => "dev",
};
/// Serf-compatible protocol version spoken (`vsn` tag, `Protocol` column).
pub const PROTOCOL: u8 = 2;
/// Lowest protocol understood.
pub const PROTOCOL_MIN: u8 = 2;
/// Highest protocol understood.
pub const PROTOCOL_MAX: u8 = 3;

/// `<version>:<revision>`, the `build` tag.
pub fn build_tag() -> String {
    format!("{VERSION}:{REVISION}")
}
