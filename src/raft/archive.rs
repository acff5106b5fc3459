//! The snapshot file of `murmur snapshot save` and `/v1/snapshot`: as Consul's, a gzipped tar holding
//! `meta.json` (index, term, servers), `state.bin` (the state machine's image) and `SHA256SUMS`, so an
//! operator can list and check it with `tar` and `sha256sum`. The state is murmur's own encoding: a
//! Consul snapshot is recognised and refused by name, not misread.

use std::io::{Read, Write};

use ring::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};

/// The `Format` field murmur writes into `meta.json`; a file without it was not written by murmur.
const FORMAT: &str = "murmur-1";

/// Unpacked bytes allowed besides the state: headers, `meta.json`, `SHA256SUMS`.
const HEADROOM: u64 = 1 << 20;

/// One server of the configuration at the snapshot's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveServer {
    /// `Voter` or `Nonvoter`, as Consul's raft names suffrage.
    #[serde(rename = "Suffrage")]
    pub suffrage: String,
    /// Node ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// RPC address.
    #[serde(rename = "Address")]
    pub address: String,
}

/// The servers at the snapshot's index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveConfiguration {
    /// Voters and non-voters.
    #[serde(rename = "Servers")]
    pub servers: Vec<ArchiveServer>,
}

/// `meta.json`, with the field names of Consul's snapshot metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveMeta {
    /// Metadata version (1).
    #[serde(rename = "Version")]
    pub version: u32,
    /// Snapshot ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Log index the state is at.
    #[serde(rename = "Index")]
    pub index: u64,
    /// Term of that entry.
    #[serde(rename = "Term")]
    pub term: u64,
    /// The servers.
    #[serde(rename = "Configuration")]
    pub configuration: ArchiveConfiguration,
    /// Index of the configuration's entry.
    #[serde(rename = "ConfigurationIndex")]
    pub configuration_index: u64,
    /// Bytes of `state.bin`.
    #[serde(rename = "Size")]
    pub size: u64,
    /// Which program's state `state.bin` holds (absent in Consul's files).
    #[serde(rename = "Format", default)]
    pub format: String,
}

/// Why a snapshot file cannot be written or read.
#[derive(Debug)]
pub enum ArchiveError {
    /// The gzip or tar layer failed.
    Io(std::io::Error),
    /// `meta.json` does not decode.
    Meta(serde_json::Error),
    /// A file the archive must hold is not in it.
    Missing(&'static str),
    /// A file the archive may not hold.
    Unexpected(String),
    /// The state (or the unpacked file) is over the limit given, in bytes.
    TooLarge(u64),
    /// A file's SHA-256 is not the one `SHA256SUMS` lists.
    Checksum(&'static str),
    /// `state.bin` is not as long as `meta.json` says.
    Size { meta: u64, actual: u64 },
    /// The file was not written by murmur (a Consul snapshot, say).
    Foreign(String),
}

impl std::fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArchiveError::Io(e) => write!(f, "failed to read snapshot file: {e}"),
            ArchiveError::Meta(e) => write!(f, "failed to decode snapshot metadata: {e}"),
            ArchiveError::Missing(name) => write!(f, "snapshot file is missing {name}"),
            ArchiveError::Unexpected(name) => write!(f, "unexpected file {name:?} in snapshot"),
            ArchiveError::TooLarge(limit) => {
                write!(f, "snapshot state is larger than the {limit}-byte limit")
            }
            ArchiveError::Checksum(name) => {
                write!(f, "snapshot file {name} does not match its SHA-256 sum")
            }
            ArchiveError::Size { meta, actual } => write!(
                f,
                "snapshot state is {actual} bytes, its metadata says {meta}"
            ),
            ArchiveError::Foreign(format) if format.is_empty() => f.write_str(
                "snapshot was not written by murmur (a Consul snapshot's state cannot be restored)",
            ),
            ArchiveError::Foreign(format) => {
                write!(f, "snapshot format {format:?} is unknown to this version")
            }
        }
    }
}

impl std::error::Error for ArchiveError {}

impl From<std::io::Error> for ArchiveError {
    fn from(e: std::io::Error) -> Self {
        ArchiveError::Io(e)
    }
}

fn sha256_hex(b: &[u8]) -> String {
    crate::util::hex::lower(digest(&SHA256, b).as_ref())
}

fn append(t: &mut tar::Builder<impl Write>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o600);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    h.set_entry_type(tar::EntryType::Regular);
    t.append_data(&mut h, name, data)
}

/// The snapshot file for `state` with `meta` (its `size` and `format` are set here).
pub fn write(meta: &ArchiveMeta, state: &[u8]) -> Result<Vec<u8>, ArchiveError> {
    let meta = ArchiveMeta {
        size: state.len() as u64,
        format: FORMAT.into(),
        ..meta.clone()
    };
    let meta_json = serde_json::to_vec(&meta).map_err(ArchiveError::Meta)?;
    let sums = format!(
        "{}  meta.json\n{}  state.bin\n",
        sha256_hex(&meta_json),
        sha256_hex(state)
    );
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut t = tar::Builder::new(gz);
    append(&mut t, "meta.json", &meta_json)?;
    append(&mut t, "state.bin", state)?;
    append(&mut t, "SHA256SUMS", sums.as_bytes())?;
    Ok(t.into_inner()?.finish()?)
}

/// Reads up to `max` bytes of `r`; more is [`ArchiveError::TooLarge`] (a gzip bomb stops here).
fn read_capped(r: impl Read, max: usize) -> Result<Vec<u8>, ArchiveError> {
    let mut out = Vec::new();
    r.take(max as u64 + 1).read_to_end(&mut out)?;
    if out.len() > max {
        return Err(ArchiveError::TooLarge(max as u64));
    }
    Ok(out)
}

/// The metadata and state of a snapshot file, after checking both against `SHA256SUMS`; a state
/// over `max_state` bytes is refused.
pub fn read(archive: &[u8], max_state: usize) -> Result<(ArchiveMeta, Vec<u8>), ArchiveError> {
    // The whole unpacked stream is capped, not only the files read here: tar keeps GNU long-name and
    // PAX headers in memory whole, and gzip would let a small file claim gigabytes of them.
    let unpacked = flate2::read::GzDecoder::new(archive).take(max_state as u64 + HEADROOM);
    let mut t = tar::Archive::new(unpacked);
    let (mut meta_json, mut state, mut sums) = (None, None, None);
    for entry in t.entries()? {
        let entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(ArchiveError::Unexpected(name));
        }
        let slot = match name.as_str() {
            "meta.json" => &mut meta_json,
            "state.bin" => &mut state,
            "SHA256SUMS" => &mut sums,
            _ => return Err(ArchiveError::Unexpected(name)),
        };
        if slot.is_some() {
            return Err(ArchiveError::Unexpected(name));
        }
        *slot = Some(read_capped(entry, max_state)?);
    }
    let meta_json = meta_json.ok_or(ArchiveError::Missing("meta.json"))?;
    let state = state.ok_or(ArchiveError::Missing("state.bin"))?;
    let sums = sums.ok_or(ArchiveError::Missing("SHA256SUMS"))?;
    let sums = String::from_utf8_lossy(&sums);
    for (name, data) in [("meta.json", &meta_json), ("state.bin", &state)] {
        let listed = sums.lines().find_map(|l| {
            let (sum, file) = l.split_once("  ")?;
            (file == name).then_some(sum)
        });
        if listed != Some(sha256_hex(data).as_str()) {
            return Err(ArchiveError::Checksum(name));
        }
    }
    let meta: ArchiveMeta = serde_json::from_slice(&meta_json).map_err(ArchiveError::Meta)?;
    if meta.format != FORMAT {
        return Err(ArchiveError::Foreign(meta.format));
    }
    if meta.size != state.len() as u64 {
        return Err(ArchiveError::Size {
            meta: meta.size,
            actual: state.len() as u64,
        });
    }
    Ok((meta, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit the tests read with.
    const LIMIT: usize = 1 << 20;

    fn meta() -> ArchiveMeta {
        ArchiveMeta {
            version: 1,
            id: "2-40-1".into(),
            index: 40,
            term: 2,
            configuration: ArchiveConfiguration {
                servers: vec![ArchiveServer {
                    suffrage: "Voter".into(),
                    id: "a1".into(),
                    address: "127.0.0.1:8300".into(),
                }],
            },
            configuration_index: 1,
            size: 0,
            format: String::new(),
        }
    }

    /// A tar.gz of `files` as given, for the checks that a forged or foreign file is refused.
    fn pack(files: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut t = tar::Builder::new(gz);
        for (name, data) in files {
            append(&mut t, name, data).unwrap();
        }
        t.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn a_written_snapshot_reads_back_with_its_metadata() {
        let state = b"the state machine's bytes".repeat(100);
        let file = write(&meta(), &state).unwrap();
        assert!(file.len() < state.len(), "gzipped");
        let (m, s) = read(&file, LIMIT).unwrap();
        assert_eq!(s, state);
        assert_eq!(m.index, 40);
        assert_eq!(m.term, 2);
        assert_eq!(m.size, state.len() as u64);
        assert_eq!(m.configuration.servers[0].address, "127.0.0.1:8300");
    }

    #[test]
    fn tampered_foreign_and_broken_files_are_refused() {
        let state = b"abc".to_vec();
        let good = write(&meta(), &state).unwrap();
        // Unpack the good one to forge variants of it.
        let mut files = Vec::new();
        let mut t = tar::Archive::new(flate2::read::GzDecoder::new(&good[..]));
        for e in t.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            files.push((name, data));
        }
        let (meta_json, sums) = (files[0].1.clone(), files[2].1.clone());

        let changed = pack(&[
            ("meta.json", &meta_json),
            ("state.bin", b"abd"),
            ("SHA256SUMS", &sums),
        ]);
        assert!(matches!(
            read(&changed, LIMIT),
            Err(ArchiveError::Checksum("state.bin"))
        ));

        let no_sums = pack(&[("meta.json", &meta_json), ("state.bin", &state)]);
        assert!(matches!(
            read(&no_sums, LIMIT),
            Err(ArchiveError::Missing("SHA256SUMS"))
        ));

        let extra = pack(&[
            ("meta.json", &meta_json),
            ("extra/passwd", b"x"),
            ("state.bin", &state),
        ]);
        assert!(matches!(
            read(&extra, LIMIT),
            Err(ArchiveError::Unexpected(_))
        ));

        // Consul's own file: same layout, no Format field.
        let consul_meta = br#"{"Version":1,"ID":"2-9-1","Index":9,"Term":2,"Configuration":{"Servers":[]},"ConfigurationIndex":1,"Size":3}"#;
        let consul_sums = format!(
            "{}  meta.json\n{}  state.bin\n",
            sha256_hex(consul_meta),
            sha256_hex(&state)
        );
        let consul = pack(&[
            ("meta.json", consul_meta),
            ("state.bin", &state),
            ("SHA256SUMS", consul_sums.as_bytes()),
        ]);
        let err = read(&consul, LIMIT).unwrap_err();
        assert!(matches!(err, ArchiveError::Foreign(_)));
        assert!(err.to_string().contains("not written by murmur"), "{err}");

        assert!(matches!(
            read(b"not gzip at all", LIMIT),
            Err(ArchiveError::Io(_))
        ));
        assert!(matches!(
            read(&good[..good.len() / 2], LIMIT),
            Err(ArchiveError::Io(_))
        ));
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let mut t = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        let big = LIMIT as u64 + 10;
        h.set_size(big);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        t.append_data(&mut h, "state.bin", std::io::repeat(0).take(big))
            .unwrap();
        let file = t.into_inner().unwrap().finish().unwrap();
        assert!(file.len() < LIMIT / 100);
        assert!(matches!(read(&file, LIMIT), Err(ArchiveError::TooLarge(_))));
    }

    #[test]
    fn a_huge_tar_header_stops_at_the_limit_too() {
        // A GNU long-name entry of 64 MiB: tar would hold it in memory whole.
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let mut t = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        let big = 64u64 << 20;
        h.set_size(big);
        h.set_entry_type(tar::EntryType::GNULongName);
        t.append_data(&mut h, "x", std::io::repeat(b'a').take(big))
            .unwrap();
        let file = t.into_inner().unwrap().finish().unwrap();
        assert!(file.len() < 1 << 20);
        assert!(read(&file, LIMIT).is_err());
        // And an entry that is not a plain file is refused by name.
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut t = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Symlink);
        t.append_link(&mut h, "state.bin", "/etc/shadow").unwrap();
        let file = t.into_inner().unwrap().finish().unwrap();
        assert!(matches!(
            read(&file, LIMIT),
            Err(ArchiveError::Unexpected(_))
        ));
    }
}
