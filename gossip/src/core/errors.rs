//! Why the core refused a request.

use super::{tags, wire};

/// `force_leave` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForceLeaveError {
    /// No member by that name.
    NotFound,
    /// The local node cannot force-leave itself.
    IsLocal,
}

impl std::fmt::Display for ForceLeaveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForceLeaveError::NotFound => f.write_str("no member by that name"),
            ForceLeaveError::IsLocal => f.write_str("cannot force-leave the local node"),
        }
    }
}
impl std::error::Error for ForceLeaveError {}

/// A core could not be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewCoreError {
    /// The gossip settings are unusable.
    Config(crate::config::ConfigError),
    /// The node name is empty or longer than the wire allows.
    Name,
    /// The node's tags do not encode.
    Tags(tags::TagsError),
}

impl std::fmt::Display for NewCoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NewCoreError::Config(e) => e.fmt(f),
            NewCoreError::Name => write!(f, "node name must be 1-{} bytes", wire::MAX_NAME),
            NewCoreError::Tags(e) => e.fmt(f),
        }
    }
}
impl std::error::Error for NewCoreError {}

/// A user event was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserEventError {
    /// The payload (this many bytes) is above [`wire::MAX_USER_PAYLOAD`].
    TooLarge(usize),
}

impl std::fmt::Display for UserEventError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserEventError::TooLarge(n) => write!(
                f,
                "user event payload of {n} bytes is above {} bytes",
                wire::MAX_USER_PAYLOAD
            ),
        }
    }
}
impl std::error::Error for UserEventError {}
