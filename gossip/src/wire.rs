//! Versioned binary codec for gossip datagrams: one message header plus a list of membership deltas.
//!
//! Layout (all integers big-endian or LEB128 varints):
//! ```text
//! packet  := version:u8 kind:u8 body count:u16 delta*
//! body    := Ping: seq:u32 target:str8 known:varint | Ack: seq:u32 known:varint | ...
//!            | Pull: requester:str8 name:str8 version:varint (its one delta, if any, is the
//!              requester's own record digest: the version a patch in the answer may apply to)
//!            | PingCoord: as Ping | AckCoord: as Ack, then coord
//!            | PingFlags: flags:u8 (1 want coord, 2 takes patches, 4 news), then as Ping, then
//!              with 4: span:u8 (tenths of a second) n:u8 (<= 64) fingerprint:u16[n]
//!            | Tree: level:u8 (<= 64)
//! coord   := 11 x f32 (8 vector components, error, adjustment, height; seconds)
//! delta   := dkind:u8 name:str8 incarnation:varint (Alive: addr tags:bytes16 | Suspect/Dead: from:str8 | Left: -
//!            | User: payload:bytes16 | Record: 0 len:varint body[len] | 1 len:varint
//!            | 2 len:varint base:varint crc:u32 hunks (see `patch`))
//!          | 7 version:varint then a Record's body forms: the record of the member the state delta
//!            just before it names (full states only; see FEATURE_SHORT_RECORDS)
//! addr    := 4 ip[4] port:u16 | 6 ip[16] port:u16
//! str8    := len:u8 (1..=255) utf8[len]
//! ```
//! Decoding borrows from the datagram and never allocates; every length is checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Wire protocol version carried in the first byte of every packet (3: pings and acks carry a member
/// count; 2 is taken by the sealed envelope of `net::crypto`).
pub const PROTOCOL_VERSION: u8 = 3;
/// Largest datagram the decoder accepts; anything bigger is dropped as oversize.
pub const MAX_DATAGRAM: usize = 9216;
/// Longest node name the wire can carry.
pub const MAX_NAME: usize = 255;

/// Why a datagram was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than a field needs.
    Truncated,
    /// Unknown protocol version byte.
    Version(u8),
    /// Unknown message or delta kind.
    Kind(u8),
    /// A string field is not UTF-8 or is empty.
    BadString,
    /// Unknown address family.
    BadAddr,
    /// A varint is longer than 5 bytes or overflows u32.
    BadVarint,
    /// Bytes left over after the last delta.
    Trailing,
    /// Datagram above [`MAX_DATAGRAM`].
    Oversize,
    /// Encoded tags are malformed.
    BadTags,
    /// A record delta's body form is unknown, or a short record has no member state just before it
    /// or is outside a full-state message.
    BadRecord,
    /// A ping's news list is longer than [`MAX_NEWS`].
    BadNews,
    /// A tree message's level is above [`MAX_TREE_LEVEL`].
    BadTree,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "truncated packet"),
            DecodeError::Version(v) => write!(f, "unsupported protocol version {v}"),
            DecodeError::Kind(k) => write!(f, "unknown kind {k}"),
            DecodeError::BadString => write!(f, "invalid string field"),
            DecodeError::BadAddr => write!(f, "invalid address"),
            DecodeError::BadVarint => write!(f, "invalid varint"),
            DecodeError::Trailing => write!(f, "trailing bytes"),
            DecodeError::Oversize => write!(f, "oversize packet"),
            DecodeError::BadTags => write!(f, "invalid tags"),
            DecodeError::BadRecord => write!(f, "invalid record"),
            DecodeError::BadNews => write!(f, "news list too long"),
            DecodeError::BadTree => write!(f, "tree level out of range"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The header message of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Direct probe of `target`; `known` is how many members the sender knows (0: not said). With
    /// `want_coord` the answer carries the target's network coordinate; it is only sent to members
    /// that announce [`FEATURE_COORDINATES`], since older ones would drop the packet. With
    /// `takes_patches` the sender reads record patches, so the answer may carry them; it is only sent to
    /// members that announce [`FEATURE_RECORD_PATCHES`]. With `news` the sender lists the record
    /// versions it installed lately, so the answer can carry the ones it lacks; it is only sent to
    /// members that announce [`FEATURE_RECORD_NEWS`].
    Ping {
        seq: u32,
        target: &'a str,
        known: u32,
        want_coord: bool,
        takes_patches: bool,
        news: Option<News<'a>>,
    },
    /// Ask the receiver to probe `target` at `addr` on our behalf.
    PingReq {
        seq: u32,
        target: &'a str,
        addr: SocketAddr,
        nack: bool,
    },
    /// Probe answered; `known` as in `Ping`; `coord` is the answerer's coordinate when asked for.
    Ack {
        seq: u32,
        known: u32,
        coord: Option<WireCoord>,
    },
    /// Relay could not reach the target in time (Lifeguard).
    Nack { seq: u32 },
    /// Deltas only.
    Gossip,
    /// Full-state chunk; the deltas are member states, not news. Records go whole when
    /// `whole_records` (a join), else as versions the receiver pulls if newer (anti-entropy).
    Sync {
        seq: u32,
        want_reply: bool,
        is_reply: bool,
        whole_records: bool,
    },
    /// `requester` asks for member `name`'s record at `version` (or newer), which it heard of as a
    /// digest from the receiver; the answer is a `Gossip` packet carrying the record whole.
    Pull {
        requester: &'a str,
        name: &'a str,
        version: u32,
    },
    /// A record on its way down the broadcast tree: the receiver passes it on through the arc of the
    /// ring that `level` gives it (see `core::tree`); at most [`MAX_TREE_LEVEL`]. It is only sent to
    /// members that announce [`FEATURE_RECORD_TREE`].
    Tree { level: u8 },
}

const K_PING: u8 = 1;
const K_PING_REQ: u8 = 2;
const K_ACK: u8 = 3;
const K_NACK: u8 = 4;
const K_GOSSIP: u8 = 5;
const K_SYNC: u8 = 6;
const K_PULL: u8 = 7;
const K_PING_COORD: u8 = 8;
const K_ACK_COORD: u8 = 9;
/// A ping with a flags byte ([`PING_WANT_COORD`], [`PING_TAKES_PATCHES`], [`PING_NEWS`]).
const K_PING_FLAGS: u8 = 10;
const K_TREE: u8 = 11;
/// Deepest level of the broadcast tree: an arc of a single position.
pub const MAX_TREE_LEVEL: u8 = 64;
const PING_WANT_COORD: u8 = 1;
const PING_TAKES_PATCHES: u8 = 2;
/// The ping ends with a [`News`] list.
const PING_NEWS: u8 = 4;

/// Most fingerprints a ping's news list carries.
pub const MAX_NEWS: usize = 64;

/// A ping's list of the record versions its sender installed lately: how long back it reaches (in
/// tenths of a second) and a 16-bit [`news_fingerprint`] of each (name, version). Fingerprints, not
/// names: a ping goes out every second from every node, and 64 names would not fit in one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct News<'a> {
    /// How far back the list reaches, in tenths of a second.
    pub span_ds: u8,
    /// Big-endian fingerprints, two bytes each.
    fingerprints: &'a [u8],
}

impl<'a> News<'a> {
    /// A list reaching `span_ds` tenths of a second back, over `fingerprints` as [`News::put`] wrote
    /// them; `None` when they are not whole pairs or more than [`MAX_NEWS`].
    pub fn new(span_ds: u8, fingerprints: &'a [u8]) -> Option<Self> {
        (fingerprints.len().is_multiple_of(2) && fingerprints.len() / 2 <= MAX_NEWS).then_some(
            News {
                span_ds,
                fingerprints,
            },
        )
    }

    /// Appends one fingerprint to a list under construction.
    pub fn put(out: &mut Vec<u8>, fingerprint: u16) {
        out.extend_from_slice(&fingerprint.to_be_bytes());
    }

    /// Number of fingerprints.
    pub fn len(&self) -> usize {
        self.fingerprints.len() / 2
    }

    /// True when the list is empty (the sender installed nothing lately).
    pub fn is_empty(&self) -> bool {
        self.fingerprints.is_empty()
    }

    /// True when `fingerprint` is listed.
    pub fn contains(&self, fingerprint: u16) -> bool {
        self.fingerprints
            .chunks_exact(2)
            .any(|c| u16::from_be_bytes([c[0], c[1]]) == fingerprint)
    }
}

/// The fingerprint of member `name`'s record at `version` in the [`News`] list of the ping numbered
/// `seq`. Salted with the ping's number so that a false match (one in a thousand with 64 listed) holds
/// for one probe only, and the prober's next ping gets the repair: 16 bits then suffice.
pub fn news_fingerprint(name: &str, version: u32, seq: u32) -> u16 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_be_bytes());
    h.update(name.as_bytes());
    h.update(&version.to_be_bytes());
    h.finalize() as u16
}

/// The member tag in which the core announces which wire extensions it understands (a decimal bit set),
/// so that peers send them only to members that will not drop them: the negotiation that lets old and
/// new versions share a cluster.
pub const FEATURES_TAG: &str = "mwf";
/// Wire extension: probes may ask for, and acks carry, network coordinates.
pub const FEATURE_COORDINATES: u32 = 1;
/// Wire extension: records may arrive as patches against an earlier version ([`RecordBody::Patch`]).
pub const FEATURE_RECORD_PATCHES: u32 = 2;
/// Wire extension: pings may carry a [`News`] list, and acks the records it lacks.
pub const FEATURE_RECORD_NEWS: u32 = 4;
/// Wire extension: full states may carry records in the short form, without the member's name where
/// its state delta just named it.
pub const FEATURE_SHORT_RECORDS: u32 = 8;
/// Wire extension: changed records travel down a broadcast tree over the ring ([`Message::Tree`]).
pub const FEATURE_RECORD_TREE: u32 = 16;
/// Every extension this build understands.
pub const FEATURES: u32 = FEATURE_COORDINATES
    | FEATURE_RECORD_PATCHES
    | FEATURE_RECORD_NEWS
    | FEATURE_SHORT_RECORDS
    | FEATURE_RECORD_TREE;

/// A network coordinate as the wire carries it: the bits of 11 `f32`s (vector, error, adjustment,
/// height). Kept as bits so messages stay `Eq`; a non-finite value is refused where it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireCoord(pub [u32; COORD_FIELDS]);

/// Fields of an encoded coordinate.
pub const COORD_FIELDS: usize = crate::coordinate::DIMENSIONS + 3;

impl WireCoord {
    /// Encodes `c` (to `f32` precision: sub-microsecond for any plausible distance).
    pub fn from_coordinate(c: &crate::coordinate::Coordinate) -> Self {
        let mut bits = [0u32; COORD_FIELDS];
        let tail = [c.error, c.adjustment, c.height];
        for (b, v) in bits.iter_mut().zip(c.vec.iter().chain(&tail)) {
            *b = (*v as f32).to_bits();
        }
        WireCoord(bits)
    }

    /// Decodes to a coordinate (which may hold non-finite values from a hostile peer).
    pub fn to_coordinate(&self) -> crate::coordinate::Coordinate {
        let f = |i: usize| f64::from(f32::from_bits(self.0[i]));
        const D: usize = crate::coordinate::DIMENSIONS;
        crate::coordinate::Coordinate {
            vec: std::array::from_fn(f),
            error: f(D),
            adjustment: f(D + 1),
            height: f(D + 2),
        }
    }
}

/// A membership delta (or, inside a `Sync`, a member's full state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta<'a> {
    /// Member is alive at this incarnation, reachable at `addr`, with these encoded tags.
    Alive {
        name: &'a str,
        incarnation: u32,
        addr: SocketAddr,
        tags: &'a [u8],
    },
    /// `from` suspects the member.
    Suspect {
        name: &'a str,
        incarnation: u32,
        from: &'a str,
    },
    /// `from` declared the member failed.
    Dead {
        name: &'a str,
        incarnation: u32,
        from: &'a str,
    },
    /// Member left gracefully (or was force-left).
    Left { name: &'a str, incarnation: u32 },
    /// An application event from `origin` (its `id`-th), spread like any delta.
    User {
        origin: &'a str,
        id: u32,
        payload: &'a [u8],
    },
    /// The member's application record (its services and checks) at `version`.
    Record {
        name: &'a str,
        version: u32,
        body: RecordBody<'a>,
    },
}

/// A record's content, or only its size when it is too large for a datagram (fetched over a stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordBody<'a> {
    /// The whole record.
    Inline(&'a [u8]),
    /// Only the length of the record.
    Digest(u32),
    /// The change from version `base` of the record (see [`crate::patch`]): sent only to members that
    /// announce [`FEATURE_RECORD_PATCHES`].
    Patch {
        /// The version the hunks apply to.
        base: u32,
        /// Length of the patched record.
        len: u32,
        /// CRC-32 of the patched record.
        crc: u32,
        /// The encoded hunks.
        hunks: &'a [u8],
    },
}

impl RecordBody<'_> {
    /// Length of the record this body stands for.
    pub fn record_len(&self) -> u32 {
        match *self {
            RecordBody::Inline(b) => b.len() as u32,
            RecordBody::Digest(n) | RecordBody::Patch { len: n, .. } => n,
        }
    }
}

impl<'a> Delta<'a> {
    /// The member the delta is about.
    pub fn name(&self) -> &'a str {
        match self {
            Delta::Alive { name, .. }
            | Delta::Suspect { name, .. }
            | Delta::Dead { name, .. }
            | Delta::Left { name, .. }
            | Delta::Record { name, .. } => name,
            Delta::User { origin, .. } => origin,
        }
    }
}

const D_ALIVE: u8 = 1;
const D_SUSPECT: u8 = 2;
const D_DEAD: u8 = 3;
const D_LEFT: u8 = 4;
const D_USER: u8 = 5;
const D_RECORD: u8 = 6;
/// A record of the member the member-state delta just before it names, without the name (a full-state
/// exchange lists every member's state, then its record's version).
const D_RECORD_SHORT: u8 = 7;
/// Largest application record (a node's services and checks), in bytes.
pub const MAX_RECORD: usize = 1 << 20;
/// Largest user event payload.
pub const MAX_USER_PAYLOAD: usize = 1024;

/// A validated packet: the header message and its deltas, borrowed from the datagram.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Header message.
    pub msg: Message<'a>,
    count: u16,
    deltas: &'a [u8],
    short_records: bool,
}

impl<'a> Packet<'a> {
    /// Number of deltas.
    pub fn delta_count(&self) -> usize {
        self.count as usize
    }

    /// True when some record in it is in the short form (see [`FEATURE_SHORT_RECORDS`]): the sender
    /// reads that form too.
    pub fn has_short_records(&self) -> bool {
        self.short_records
    }

    /// Iterates the (already validated) deltas.
    pub fn deltas(&self) -> DeltaIter<'a> {
        DeltaIter {
            r: Reader { b: self.deltas },
            left: self.count,
            prev: None,
        }
    }
}

/// Iterator over the deltas of a validated packet.
pub struct DeltaIter<'a> {
    r: Reader<'a>,
    left: u16,
    prev: Option<&'a str>,
}

impl<'a> Iterator for DeltaIter<'a> {
    type Item = Delta<'a>;
    fn next(&mut self) -> Option<Delta<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Validated in `decode`, so this cannot fail; stop quietly if it somehow does.
        self.r.delta(&mut self.prev).ok()
    }
}

/// A cursor over a datagram's bytes; every read checks the length.
pub(crate) struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Reader { b }
    }
    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.b
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..5 {
            let byte = self.u8()?;
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return u32::try_from(v).map_err(|_| DecodeError::BadVarint);
            }
        }
        Err(DecodeError::BadVarint)
    }
    fn str8(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.u8()? as usize;
        if n == 0 {
            return Err(DecodeError::BadString);
        }
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError::BadString)
    }
    fn addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let ip = match self.u8()? {
            4 => {
                let b = self.take(4)?;
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            }
            6 => {
                let b: [u8; 16] = self.take(16)?.try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(b))
            }
            _ => return Err(DecodeError::BadAddr),
        };
        Ok(SocketAddr::new(ip, self.u16()?))
    }

    /// Checks that the rest is exactly `count` well-formed deltas; true when a record among them is
    /// in the short form.
    fn rest_of_deltas(&mut self, count: u32) -> Result<bool, DecodeError> {
        let (mut prev, mut short_records) = (None, false);
        for _ in 0..count {
            short_records |= self.b.first() == Some(&D_RECORD_SHORT);
            self.delta(&mut prev)?;
        }
        if !self.b.is_empty() {
            return Err(DecodeError::Trailing);
        }
        Ok(short_records)
    }

    /// The next delta; `prev` is the member named by the member-state delta just before (what a
    /// [`D_RECORD_SHORT`] delta is about), updated for the next one.
    fn delta(&mut self, prev: &mut Option<&'a str>) -> Result<Delta<'a>, DecodeError> {
        let kind = self.u8()?;
        if kind == D_RECORD_SHORT {
            let name = prev.take().ok_or(DecodeError::BadRecord)?;
            let version = self.varint()?;
            let body = self.record_body()?;
            return Ok(Delta::Record {
                name,
                version,
                body,
            });
        }
        let name = self.str8()?;
        let incarnation = self.varint()?;
        *prev = None;
        let d = match kind {
            D_ALIVE => {
                let addr = self.addr()?;
                let n = self.u16()? as usize;
                let tags = self.take(n)?;
                crate::tags::validate(tags).map_err(|_| DecodeError::BadTags)?;
                Delta::Alive {
                    name,
                    incarnation,
                    addr,
                    tags,
                }
            }
            D_SUSPECT => Delta::Suspect {
                name,
                incarnation,
                from: self.str8()?,
            },
            D_DEAD => Delta::Dead {
                name,
                incarnation,
                from: self.str8()?,
            },
            D_LEFT => Delta::Left { name, incarnation },
            D_USER => {
                let n = self.u16()? as usize;
                if n > MAX_USER_PAYLOAD {
                    return Err(DecodeError::Oversize);
                }
                return Ok(Delta::User {
                    origin: name,
                    id: incarnation,
                    payload: self.take(n)?,
                });
            }
            D_RECORD => {
                return Ok(Delta::Record {
                    name,
                    version: incarnation,
                    body: self.record_body()?,
                });
            }
            k => return Err(DecodeError::Kind(k)),
        };
        *prev = Some(name);
        Ok(d)
    }

    /// A record delta's body: its form byte, then the inline bytes, the length, or the patch.
    fn record_body(&mut self) -> Result<RecordBody<'a>, DecodeError> {
        let form = self.u8()?;
        let n = self.varint()?;
        if n as usize > MAX_RECORD {
            return Err(DecodeError::Oversize);
        }
        Ok(match form {
            0 => RecordBody::Inline(self.take(n as usize)?),
            1 => RecordBody::Digest(n),
            2 => RecordBody::Patch {
                base: self.varint()?,
                len: n,
                crc: self.u32()?,
                hunks: crate::patch::take_hunks(self, n)?,
            },
            _ => return Err(DecodeError::BadRecord),
        })
    }
}

/// Validates a whole datagram and returns a borrowed view of it.
pub fn decode(buf: &[u8]) -> Result<Packet<'_>, DecodeError> {
    if buf.len() > MAX_DATAGRAM {
        return Err(DecodeError::Oversize);
    }
    let mut r = Reader { b: buf };
    let version = r.u8()?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::Version(version));
    }
    let msg = match r.u8()? {
        k @ (K_PING | K_PING_COORD | K_PING_FLAGS) => {
            let flags = match k {
                K_PING_FLAGS => r.u8()?,
                K_PING_COORD => PING_WANT_COORD,
                _ => 0,
            };
            let (seq, target, known) = (r.u32()?, r.str8()?, r.varint()?);
            let news = if flags & PING_NEWS != 0 {
                let span_ds = r.u8()?;
                let n = r.u8()? as usize;
                Some(News::new(span_ds, r.take(n * 2)?).ok_or(DecodeError::BadNews)?)
            } else {
                None
            };
            Message::Ping {
                seq,
                target,
                known,
                want_coord: flags & PING_WANT_COORD != 0,
                takes_patches: flags & PING_TAKES_PATCHES != 0,
                news,
            }
        }
        K_PING_REQ => Message::PingReq {
            seq: r.u32()?,
            target: r.str8()?,
            addr: r.addr()?,
            nack: r.u8()? & 1 == 1,
        },
        k @ (K_ACK | K_ACK_COORD) => Message::Ack {
            seq: r.u32()?,
            known: r.varint()?,
            coord: if k == K_ACK_COORD {
                let mut bits = [0u32; COORD_FIELDS];
                for b in &mut bits {
                    *b = r.u32()?;
                }
                Some(WireCoord(bits))
            } else {
                None
            },
        },
        K_NACK => Message::Nack { seq: r.u32()? },
        K_GOSSIP => Message::Gossip,
        K_TREE => match r.u8()? {
            level @ ..=MAX_TREE_LEVEL => Message::Tree { level },
            _ => return Err(DecodeError::BadTree),
        },
        K_SYNC => {
            let seq = r.u32()?;
            let flags = r.u8()?;
            Message::Sync {
                seq,
                want_reply: flags & 1 != 0,
                is_reply: flags & 2 != 0,
                whole_records: flags & 4 != 0,
            }
        }
        K_PULL => Message::Pull {
            requester: r.str8()?,
            name: r.str8()?,
            version: r.varint()?,
        },
        k => return Err(DecodeError::Kind(k)),
    };
    let count = r.u16()?;
    let deltas = r.b;
    let short_records = r.rest_of_deltas(count.into())?;
    // Only full states list records after their members; nothing else may lean on the delta before.
    if short_records && !matches!(msg, Message::Sync { .. }) {
        return Err(DecodeError::BadRecord);
    }
    Ok(Packet {
        msg,
        count,
        deltas,
        short_records,
    })
}

/// Largest full state accepted from a peer (bytes); ~400k members at typical sizes.
pub const MAX_STATE: usize = 16 << 20;

/// Encodes a full state: `count:u32` then that many deltas (see [`encode_delta`]).
pub fn encode_state<'a>(buf: &mut Vec<u8>, deltas: impl Iterator<Item = Delta<'a>>) {
    encode_state_with(buf, deltas, false);
}

/// Like [`encode_state`], with records in the short form after their member's state when
/// `short_records` (only for a receiver that announces [`FEATURE_SHORT_RECORDS`]).
pub fn encode_state_with<'a>(
    buf: &mut Vec<u8>,
    deltas: impl Iterator<Item = Delta<'a>>,
    short_records: bool,
) {
    let at = buf.len();
    buf.extend_from_slice(&0u32.to_be_bytes());
    let mut n = 0u32;
    let mut prev = None;
    for d in deltas {
        prev = encode_delta_after(buf, &d, if short_records { prev } else { None });
        n += 1;
    }
    buf[at..at + 4].copy_from_slice(&n.to_be_bytes());
}

/// A validated full state.
pub struct State<'a> {
    count: u32,
    body: &'a [u8],
    short_records: bool,
}

impl<'a> State<'a> {
    /// Number of entries (member states and the records after them).
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when it lists nobody.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// True when some record in it is in the short form: the sender reads that form too.
    pub fn has_short_records(&self) -> bool {
        self.short_records
    }

    /// The entries.
    pub fn deltas(&self) -> impl Iterator<Item = Delta<'a>> + use<'a> {
        let mut r = Reader { b: self.body };
        let mut prev = None;
        (0..self.count).map_while(move |_| r.delta(&mut prev).ok())
    }
}

/// Validates a full state received over a stream.
pub fn decode_state(buf: &[u8]) -> Result<State<'_>, DecodeError> {
    if buf.len() > MAX_STATE {
        return Err(DecodeError::Oversize);
    }
    let mut r = Reader { b: buf };
    let count = r.u32()?;
    let body = r.b;
    let short_records = r.rest_of_deltas(count)?;
    Ok(State {
        count,
        body,
        short_records,
    })
}

/// Appends a packet header and a zero delta count; returns the offset of the count for [`set_count`].
pub fn encode_header(buf: &mut Vec<u8>, msg: &Message<'_>) -> usize {
    buf.push(PROTOCOL_VERSION);
    match *msg {
        Message::Ping {
            seq,
            target,
            known,
            want_coord,
            takes_patches,
            news,
        } => {
            if takes_patches || news.is_some() {
                buf.push(K_PING_FLAGS);
                buf.push(
                    u8::from(want_coord) * PING_WANT_COORD
                        + u8::from(takes_patches) * PING_TAKES_PATCHES
                        + u8::from(news.is_some()) * PING_NEWS,
                );
            } else {
                buf.push(if want_coord { K_PING_COORD } else { K_PING });
            }
            buf.extend_from_slice(&seq.to_be_bytes());
            put_str8(buf, target);
            put_varint(buf, known);
            if let Some(n) = news {
                buf.push(n.span_ds);
                buf.push(n.len() as u8);
                buf.extend_from_slice(n.fingerprints);
            }
        }
        Message::PingReq {
            seq,
            target,
            addr,
            nack,
        } => {
            buf.push(K_PING_REQ);
            buf.extend_from_slice(&seq.to_be_bytes());
            put_str8(buf, target);
            put_addr(buf, addr);
            buf.push(u8::from(nack));
        }
        Message::Ack { seq, known, coord } => {
            buf.push(if coord.is_some() { K_ACK_COORD } else { K_ACK });
            buf.extend_from_slice(&seq.to_be_bytes());
            put_varint(buf, known);
            for b in coord.iter().flat_map(|c| c.0) {
                buf.extend_from_slice(&b.to_be_bytes());
            }
        }
        Message::Nack { seq } => {
            buf.push(K_NACK);
            buf.extend_from_slice(&seq.to_be_bytes());
        }
        Message::Gossip => buf.push(K_GOSSIP),
        Message::Tree { level } => buf.extend_from_slice(&[K_TREE, level]),
        Message::Sync {
            seq,
            want_reply,
            is_reply,
            whole_records,
        } => {
            buf.push(K_SYNC);
            buf.extend_from_slice(&seq.to_be_bytes());
            buf.push(
                u8::from(want_reply) | (u8::from(is_reply) << 1) | (u8::from(whole_records) << 2),
            );
        }
        Message::Pull {
            requester,
            name,
            version,
        } => {
            buf.push(K_PULL);
            put_str8(buf, requester);
            put_str8(buf, name);
            put_varint(buf, version);
        }
    }
    let at = buf.len();
    buf.extend_from_slice(&0u16.to_be_bytes());
    at
}

/// Writes the final delta count at the offset returned by [`encode_header`].
pub fn set_count(buf: &mut [u8], at: usize, count: u16) {
    buf[at..at + 2].copy_from_slice(&count.to_be_bytes());
}

/// Appends one encoded delta.
pub fn encode_delta(buf: &mut Vec<u8>, d: &Delta<'_>) {
    match *d {
        Delta::Alive {
            name,
            incarnation,
            addr,
            tags,
        } => {
            buf.push(D_ALIVE);
            put_str8(buf, name);
            put_varint(buf, incarnation);
            put_addr(buf, addr);
            let n = u16::try_from(tags.len()).expect("tags checked at construction");
            buf.extend_from_slice(&n.to_be_bytes());
            buf.extend_from_slice(tags);
        }
        Delta::Suspect {
            name,
            incarnation,
            from,
        } => {
            buf.push(D_SUSPECT);
            put_str8(buf, name);
            put_varint(buf, incarnation);
            put_str8(buf, from);
        }
        Delta::Dead {
            name,
            incarnation,
            from,
        } => {
            buf.push(D_DEAD);
            put_str8(buf, name);
            put_varint(buf, incarnation);
            put_str8(buf, from);
        }
        Delta::Left { name, incarnation } => {
            buf.push(D_LEFT);
            put_str8(buf, name);
            put_varint(buf, incarnation);
        }
        Delta::User {
            origin,
            id,
            payload,
        } => {
            buf.push(D_USER);
            put_str8(buf, origin);
            put_varint(buf, id);
            let n = payload.len().min(MAX_USER_PAYLOAD);
            buf.extend_from_slice(&(n as u16).to_be_bytes());
            buf.extend_from_slice(&payload[..n]);
        }
        Delta::Record {
            name,
            version,
            body,
        } => {
            buf.push(D_RECORD);
            put_str8(buf, name);
            put_varint(buf, version);
            put_record_body(buf, &body);
        }
    }
}

/// Encodes `d` after a delta that named the member `prev`: a record of that member goes in the short
/// form, any other delta as [`encode_delta`] does. Returns what to pass as `prev` for the next delta;
/// `None` as `prev` never shortens, which is what a receiver without [`FEATURE_SHORT_RECORDS`] needs.
pub fn encode_delta_after<'a>(
    buf: &mut Vec<u8>,
    d: &Delta<'a>,
    prev: Option<&str>,
) -> Option<&'a str> {
    match *d {
        Delta::Record {
            name,
            version,
            body,
        } if prev == Some(name) => {
            buf.push(D_RECORD_SHORT);
            put_varint(buf, version);
            put_record_body(buf, &body);
            None
        }
        Delta::Record { .. } | Delta::User { .. } => {
            encode_delta(buf, d);
            None
        }
        _ => {
            encode_delta(buf, d);
            Some(d.name())
        }
    }
}

fn put_record_body(buf: &mut Vec<u8>, body: &RecordBody<'_>) {
    match *body {
        RecordBody::Inline(b) => {
            // Records are checked against MAX_RECORD where they enter the core.
            let b = &b[..b.len().min(MAX_RECORD)];
            buf.push(0);
            put_varint(buf, b.len() as u32);
            buf.extend_from_slice(b);
        }
        RecordBody::Digest(n) => {
            buf.push(1);
            put_varint(buf, n.min(MAX_RECORD as u32));
        }
        RecordBody::Patch {
            base,
            len,
            crc,
            hunks,
        } => {
            buf.push(2);
            put_varint(buf, len.min(MAX_RECORD as u32));
            put_varint(buf, base);
            buf.extend_from_slice(&crc.to_be_bytes());
            buf.extend_from_slice(hunks);
        }
    }
}

fn put_str8(buf: &mut Vec<u8>, s: &str) {
    // Names are validated to 1..=255 bytes where they enter the system.
    debug_assert!(!s.is_empty() && s.len() <= MAX_NAME);
    buf.push(s.len().min(MAX_NAME) as u8);
    buf.extend_from_slice(&s.as_bytes()[..s.len().min(MAX_NAME)]);
}

pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_addr(buf: &mut Vec<u8>, a: SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => {
            buf.push(4);
            buf.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            buf.push(6);
            buf.extend_from_slice(&ip.octets());
        }
    }
    buf.extend_from_slice(&a.port().to_be_bytes());
}

/// Checks that a node name can travel on the wire.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_packet() -> Vec<u8> {
        let mut buf = Vec::new();
        let at = encode_header(
            &mut buf,
            &Message::PingReq {
                seq: 77,
                target: "node-b",
                addr: "127.0.0.2:8301".parse().unwrap(),
                nack: true,
            },
        );
        let tags = crate::tags::encode(&[("role", "node"), ("dc", "dc1")]).unwrap();
        encode_delta(
            &mut buf,
            &Delta::Alive {
                name: "node-a",
                incarnation: 300,
                addr: "[::1]:9000".parse().unwrap(),
                tags: &tags,
            },
        );
        encode_delta(
            &mut buf,
            &Delta::Suspect {
                name: "node-c",
                incarnation: 2,
                from: "node-a",
            },
        );
        encode_delta(
            &mut buf,
            &Delta::Left {
                name: "node-d",
                incarnation: u32::MAX,
            },
        );
        encode_delta(
            &mut buf,
            &Delta::User {
                origin: "node-a",
                id: 9,
                payload: b"hello",
            },
        );
        set_count(&mut buf, at, 4);
        buf
    }

    #[test]
    fn roundtrip_header_and_deltas() {
        let buf = sample_packet();
        let p = decode(&buf).unwrap();
        assert_eq!(
            p.msg,
            Message::PingReq {
                seq: 77,
                target: "node-b",
                addr: "127.0.0.2:8301".parse().unwrap(),
                nack: true
            }
        );
        let ds: Vec<_> = p.deltas().collect();
        assert_eq!(ds.len(), 4);
        assert_eq!(
            ds[3],
            Delta::User {
                origin: "node-a",
                id: 9,
                payload: b"hello"
            }
        );
        match ds[0] {
            Delta::Alive {
                name,
                incarnation,
                addr,
                tags,
            } => {
                assert_eq!((name, incarnation), ("node-a", 300));
                assert_eq!(addr, "[::1]:9000".parse::<SocketAddr>().unwrap());
                let t = crate::tags::decode(tags).unwrap();
                assert_eq!(t.get("role").map(String::as_str), Some("node"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            ds[2],
            Delta::Left {
                name: "node-d",
                incarnation: u32::MAX
            }
        );
    }

    #[test]
    fn record_deltas_roundtrip_whole_and_as_digest_and_reject_bad_forms() {
        let mut buf = Vec::new();
        let at = encode_header(&mut buf, &Message::Gossip);
        let whole = Delta::Record {
            name: "node-a",
            version: 70_000,
            body: RecordBody::Inline(b"services"),
        };
        let digest = Delta::Record {
            name: "node-b",
            version: 3,
            body: RecordBody::Digest(40_000),
        };
        encode_delta(&mut buf, &whole);
        encode_delta(&mut buf, &digest);
        set_count(&mut buf, at, 2);
        let ds: Vec<_> = decode(&buf).unwrap().deltas().collect();
        assert_eq!(ds, vec![whole, digest]);
        let pull = Message::Pull {
            requester: "node-c",
            name: "node-a",
            version: 70_000,
        };
        let mut p = Vec::new();
        let at = encode_header(&mut p, &pull);
        set_count(&mut p, at, 0);
        assert_eq!(decode(&p).unwrap().msg, pull);
        // The form byte of the last delta (a digest): kind, name, version, then the form.
        let form = buf.len() - 1 - 3;
        assert_eq!(buf[form], 1);
        buf[form] = 7;
        assert_eq!(decode(&buf).unwrap_err(), DecodeError::BadRecord);
        // A digest may not announce more than a record can hold.
        let mut buf = Vec::new();
        let at = encode_header(&mut buf, &Message::Gossip);
        buf.extend_from_slice(&[D_RECORD, 1, b'x', 1, 1]);
        put_varint(&mut buf, MAX_RECORD as u32 + 1);
        set_count(&mut buf, at, 1);
        assert_eq!(decode(&buf).unwrap_err(), DecodeError::Oversize);
    }

    #[test]
    fn short_records_roundtrip_in_states_and_packets_and_need_a_member_before_them() {
        let alive = |name| Delta::Alive {
            name,
            incarnation: 4,
            addr: "127.0.0.1:7946".parse().unwrap(),
            tags: &[],
        };
        let record = |name, body| Delta::Record {
            name,
            version: 300,
            body,
        };
        let ds = [
            alive("node-a"),
            record("node-a", RecordBody::Digest(175)),
            Delta::Left {
                name: "node-b",
                incarnation: 2,
            },
            record("node-b", RecordBody::Inline(b"services")),
            alive("node-c"),
            // Not the member just named: stays long.
            record("node-a", RecordBody::Digest(9)),
            record("node-c", RecordBody::Digest(9)),
        ];
        let (mut long, mut short) = (Vec::new(), Vec::new());
        encode_state(&mut long, ds.iter().copied());
        encode_state_with(&mut short, ds.iter().copied(), true);
        let st = decode_state(&short).unwrap();
        assert!(st.has_short_records());
        assert_eq!(st.deltas().collect::<Vec<_>>(), ds);
        assert!(!decode_state(&long).unwrap().has_short_records());
        // Each shortened record leaves out its name (1 + 6 bytes).
        assert_eq!(long.len() - short.len(), 2 * 7);

        // In a datagram, as a full-state chunk carries it.
        let mut buf = Vec::new();
        let sync = Message::Sync {
            seq: 1,
            want_reply: true,
            is_reply: false,
            whole_records: false,
        };
        let at = encode_header(&mut buf, &sync);
        let mut prev = None;
        for d in &ds {
            prev = encode_delta_after(&mut buf, d, prev);
        }
        set_count(&mut buf, at, ds.len() as u16);
        let p = decode(&buf).unwrap();
        assert!(p.has_short_records());
        assert_eq!(p.deltas().collect::<Vec<_>>(), ds);
        // Outside a full state the short form is refused.
        let mut g = Vec::new();
        let at = encode_header(&mut g, &Message::Gossip);
        let mut prev = None;
        for d in &ds[..2] {
            prev = encode_delta_after(&mut g, d, prev);
        }
        set_count(&mut g, at, 2);
        assert_eq!(decode(&g).err(), Some(DecodeError::BadRecord));

        // A short record with no member state just before it names nobody.
        let lone = [D_RECORD_SHORT, 1, 1, 5];
        for before in [
            Vec::new(),
            // After a record (the member's record was already given)...
            {
                let mut b = Vec::new();
                encode_delta(&mut b, &record("node-a", RecordBody::Digest(1)));
                b
            },
            // ...or after a user event.
            {
                let mut b = Vec::new();
                encode_delta(
                    &mut b,
                    &Delta::User {
                        origin: "node-a",
                        id: 1,
                        payload: b"x",
                    },
                );
                b
            },
        ] {
            let mut st = 2u32.to_be_bytes().to_vec();
            st.extend_from_slice(&before);
            st.extend_from_slice(&lone);
            let n = if before.is_empty() { 1u32 } else { 2 };
            st[..4].copy_from_slice(&n.to_be_bytes());
            assert_eq!(decode_state(&st).err(), Some(DecodeError::BadRecord));
        }
    }

    #[test]
    fn rejects_bad_version_kind_and_trailing() {
        let mut buf = sample_packet();
        buf[0] = 9;
        assert_eq!(decode(&buf).unwrap_err(), DecodeError::Version(9));
        let mut buf = sample_packet();
        buf[1] = 99;
        assert_eq!(decode(&buf).unwrap_err(), DecodeError::Kind(99));
        let mut buf = sample_packet();
        buf.push(0);
        assert_eq!(decode(&buf).unwrap_err(), DecodeError::Trailing);
        assert_eq!(
            decode(&vec![1u8; MAX_DATAGRAM + 1]).unwrap_err(),
            DecodeError::Oversize
        );
    }

    #[test]
    fn a_news_list_longer_than_the_limit_is_refused() {
        let mut buf = Vec::new();
        let listed = vec![7u8; MAX_NEWS * 2];
        let news = News::new(40, &listed);
        let ping = Message::Ping {
            seq: 1,
            target: "b",
            known: 0,
            want_coord: false,
            takes_patches: false,
            news,
        };
        let at = encode_header(&mut buf, &ping);
        set_count(&mut buf, at, 0);
        assert_eq!(decode(&buf).unwrap().msg, ping);
        // One more fingerprint than a sender may list: the count byte says 65.
        let count = buf.len() - 2 - MAX_NEWS * 2 - 1;
        buf[count] += 1;
        buf.splice(count + 1..count + 1, [0, 0]);
        assert_eq!(decode(&buf).unwrap_err(), DecodeError::BadNews);
        assert!(News::new(1, &[0; MAX_NEWS * 2 + 2]).is_none());
        assert!(News::new(1, &[0; 3]).is_none());
    }

    #[test]
    fn tree_messages_carry_their_level_and_refuse_one_past_the_deepest() {
        let mut buf = Vec::new();
        for level in [0, 1, 13, MAX_TREE_LEVEL] {
            buf.clear();
            let at = encode_header(&mut buf, &Message::Tree { level });
            encode_delta(
                &mut buf,
                &Delta::Record {
                    name: "node-a",
                    version: 4,
                    body: RecordBody::Inline(b"web"),
                },
            );
            set_count(&mut buf, at, 1);
            let p = decode(&buf).unwrap();
            assert_eq!(p.msg, Message::Tree { level });
            assert_eq!(p.deltas().count(), 1);
        }
        buf[2] = MAX_TREE_LEVEL + 1;
        assert_eq!(decode(&buf).unwrap_err(), DecodeError::BadTree);
        assert_eq!(decode(&buf[..2]).unwrap_err(), DecodeError::Truncated);
    }

    #[test]
    fn every_truncation_is_rejected() {
        let buf = sample_packet();
        for n in 0..buf.len() {
            assert!(decode(&buf[..n]).is_err(), "prefix of {n} bytes accepted");
        }
        let mut ping = Vec::new();
        let listed = [1, 2, 3, 4];
        let msg = Message::Ping {
            seq: 5,
            target: "node-b",
            known: 300,
            want_coord: true,
            takes_patches: true,
            news: News::new(40, &listed),
        };
        let at = encode_header(&mut ping, &msg);
        set_count(&mut ping, at, 0);
        assert_eq!(decode(&ping).unwrap().msg, msg);
        for n in 0..ping.len() {
            assert!(decode(&ping[..n]).is_err(), "prefix of {n} bytes accepted");
        }
    }

    #[test]
    fn state_roundtrip_and_truncation() {
        let mut buf = Vec::new();
        let ds = [
            Delta::Left {
                name: "a",
                incarnation: 1,
            },
            Delta::Dead {
                name: "b",
                incarnation: 2,
                from: "a",
            },
        ];
        encode_state(&mut buf, ds.iter().copied());
        let st = decode_state(&buf).unwrap();
        assert_eq!(st.len(), 2);
        assert_eq!(st.deltas().collect::<Vec<_>>(), ds.to_vec());
        for n in 0..buf.len() {
            assert!(decode_state(&buf[..n]).is_err());
        }
    }

    proptest! {
        #[test]
        fn state_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(st) = decode_state(&bytes) {
                prop_assert_eq!(st.deltas().count(), st.len());
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(p) = decode(&bytes) {
                prop_assert_eq!(p.deltas().count(), p.delta_count());
            }
        }

        #[test]
        fn garbled_packets_never_panic(flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..8)) {
            let mut buf = sample_packet();
            for (i, b) in flips {
                let i = i % buf.len();
                buf[i] = b;
            }
            if let Ok(p) = decode(&buf) {
                prop_assert_eq!(p.deltas().count(), p.delta_count());
            }
        }

        #[test]
        fn acks_carry_coordinates_to_f32_precision(seq in any::<u32>(), known in any::<u32>(), v in proptest::collection::vec(-1.0f64..1.0, COORD_FIELDS)) {
            let c = crate::coordinate::Coordinate {
                vec: std::array::from_fn(|i| v[i]),
                error: v[8].abs(),
                adjustment: v[9],
                height: v[10].abs(),
            };
            let wire = WireCoord::from_coordinate(&c);
            let coord = Some(wire);
            let mut buf = Vec::new();
            encode_header(&mut buf, &Message::Ack { seq, known, coord });
            let p = decode(&buf).unwrap();
            prop_assert_eq!(p.msg, Message::Ack { seq, known, coord });
            let back = wire.to_coordinate();
            for (a, b) in back.vec.iter().zip(&c.vec) {
                prop_assert!((a - b).abs() < 1e-6);
            }
            prop_assert!((back.height - c.height).abs() < 1e-6);
            for n in 0..buf.len() {
                prop_assert!(decode(&buf[..n]).is_err());
            }
        }

        #[test]
        fn varints_roundtrip(v in any::<u32>()) {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            let mut r = Reader { b: &buf };
            prop_assert_eq!(r.varint().unwrap(), v);
            prop_assert!(r.b.is_empty());
        }

        #[test]
        fn suspect_roundtrip(name in "[a-z0-9-]{1,40}", from in "[a-z0-9-]{1,40}", inc in any::<u32>(), seq in any::<u32>(), fps in proptest::collection::vec(any::<u16>(), 0..=MAX_NEWS)) {
            let mut buf = Vec::new();
            let want_coord = inc % 2 == 0;
            let takes_patches = seq % 3 == 0;
            let mut listed = Vec::new();
            fps.iter().for_each(|&f| News::put(&mut listed, f));
            let news = (seq % 5 != 0).then(|| News::new((seq >> 8) as u8, &listed).unwrap());
            let at = encode_header(&mut buf, &Message::Ping { seq, target: &name, known: inc, want_coord, takes_patches, news });
            encode_delta(&mut buf, &Delta::Dead { name: &name, incarnation: inc, from: &from });
            set_count(&mut buf, at, 1);
            let p = decode(&buf).unwrap();
            prop_assert_eq!(p.msg, Message::Ping { seq, target: &name, known: inc, want_coord, takes_patches, news });
            if let Message::Ping { news: Some(n), .. } = p.msg {
                prop_assert_eq!(n.len(), fps.len());
                prop_assert!(fps.iter().all(|&f| n.contains(f)));
            }
            let d: Vec<_> = p.deltas().collect();
            prop_assert_eq!(d, vec![Delta::Dead { name: &name, incarnation: inc, from: &from }]);
        }
    }
}
