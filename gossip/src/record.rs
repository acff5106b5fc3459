//! A member's application record: opaque bytes (the agent keeps its services and checks in it) under a
//! version its owner raises on every change. The core spreads records like membership deltas and hands
//! each new one to the application; what the bytes mean is the application's business.

/// One version of a member's record, shared by every core (and reader) holding it.
#[derive(Debug, PartialEq, Eq)]
pub struct Record {
    /// Raised by the owner on every change, compared in serial order like incarnations.
    pub version: u32,
    /// The content, at most [`crate::wire::MAX_RECORD`] bytes.
    pub body: Box<[u8]>,
    /// How this version differs from an earlier one, sent instead of the body to members that hold
    /// that one.
    pub patch: Option<RecordPatch>,
}

impl Record {
    /// A record with no patch.
    pub fn whole(version: u32, body: &[u8]) -> Self {
        Record {
            version,
            body: body.into(),
            patch: None,
        }
    }
}

/// The change from version `base` of a record to the version holding this.
#[derive(Debug, PartialEq, Eq)]
pub struct RecordPatch {
    /// The version the hunks apply to.
    pub base: u32,
    /// CRC-32 of the patched record.
    pub crc: u32,
    /// The hunks, encoded as [`crate::patch`] describes.
    pub hunks: Box<[u8]>,
}

/// Why a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// Larger than [`crate::wire::MAX_RECORD`] (the size is given).
    TooLarge(usize),
    /// The local node has left; it no longer publishes anything.
    Left,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::TooLarge(n) => write!(
                f,
                "record of {n} bytes exceeds the {}-byte limit",
                crate::wire::MAX_RECORD
            ),
            RecordError::Left => write!(f, "the local node has left the cluster"),
        }
    }
}

impl std::error::Error for RecordError {}
