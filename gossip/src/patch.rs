//! Byte patches between two versions of a record. A check flip changes a status byte and an output
//! string in a record of a couple of hundred bytes; sending the change instead of the record cuts what
//! every node must receive per flip several-fold (see `perf/RESULTS.md`, "A flip as a patch").
//!
//! A patch is a list of hunks applied left to right over the old body: keep `keep` bytes, drop `drop`
//! bytes, insert the hunk's bytes; whatever follows the last hunk is kept. The new body's length and
//! CRC-32 travel with it, so a patch applied to the wrong base (a restarted owner that reused a version)
//! is refused rather than installed.
//!
//! Encoding: `count:varint (keep:varint drop:varint n:varint bytes[n])*`.

use crate::wire::{DecodeError, Reader, put_varint};

/// Most hunks a patch may hold (the differ makes at most `2^MAX_DEPTH + 1`).
pub const MAX_HUNKS: u32 = 32;
/// Recursion depth of the differ: each level splits a changed span around its longest common run.
const MAX_DEPTH: u32 = 4;
/// The shortest common run worth a hunk of its own (a hunk's header costs about three bytes).
const MIN_ANCHOR: usize = 6;
/// Largest `old x new` span the differ searches for a common run; past it the span is one hunk. Bounds
/// the differ's work per record to `MAX_DEPTH` times this.
const MAX_SEARCH: usize = 1 << 16;

/// Why a patch could not produce the new body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchError {
    /// A hunk reaches past the end of the old body.
    OutOfRange,
    /// The result's length or checksum differs from the one announced: the base was not the one the
    /// patch was made against.
    Mismatch,
}

impl std::fmt::Display for PatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatchError::OutOfRange => write!(f, "patch reaches past its base"),
            PatchError::Mismatch => write!(f, "patched record does not match its checksum"),
        }
    }
}

impl std::error::Error for PatchError {}

/// The checksum a patch carries of the body it produces.
pub fn checksum(body: &[u8]) -> u32 {
    crc32fast::hash(body)
}

/// One step of an edit between spans.
enum Step<'a> {
    /// Bytes common to both.
    Same(usize),
    /// `old` bytes replaced by these.
    Replace(usize, &'a [u8]),
}

/// The encoded hunks that turn `old` into `new`, or `None` when they would not be smaller than `new`
/// itself (then the record goes whole). Work is bounded: see [`MAX_SEARCH`].
pub fn diff(old: &[u8], new: &[u8]) -> Option<Vec<u8>> {
    let prefix = common_prefix(old, new);
    let suffix = common_suffix(&old[prefix..], &new[prefix..]);
    let mut steps = vec![Step::Same(prefix)];
    split(
        &old[prefix..old.len() - suffix],
        &new[prefix..new.len() - suffix],
        MAX_DEPTH,
        &mut steps,
    );
    let mut hunks: Vec<(usize, usize, &[u8])> = Vec::new();
    let mut keep = 0;
    for step in steps {
        match step {
            Step::Same(n) => keep += n,
            Step::Replace(drop, insert) => {
                hunks.push((keep, drop, insert));
                keep = 0;
            }
        }
    }
    let mut out = Vec::new();
    put_varint(&mut out, hunks.len() as u32);
    for (keep, drop, insert) in hunks {
        put_varint(&mut out, keep as u32);
        put_varint(&mut out, drop as u32);
        put_varint(&mut out, insert.len() as u32);
        out.extend_from_slice(insert);
    }
    (out.len() < new.len()).then_some(out)
}

/// Appends the steps turning `old` into `new` (spans with no common prefix or suffix).
fn split<'a>(old: &[u8], new: &'a [u8], depth: u32, steps: &mut Vec<Step<'a>>) {
    if old.is_empty() && new.is_empty() {
        return;
    }
    let anchor = if depth == 0 || old.len().saturating_mul(new.len()) > MAX_SEARCH {
        None
    } else {
        longest_common_run(old, new).filter(|&(_, _, n)| n >= MIN_ANCHOR)
    };
    match anchor {
        Some((i, j, n)) => {
            split(&old[..i], &new[..j], depth - 1, steps);
            steps.push(Step::Same(n));
            split(&old[i + n..], &new[j + n..], depth - 1, steps);
        }
        None => steps.push(Step::Replace(old.len(), new)),
    }
}

/// The longest run of bytes common to `a` and `b`: (start in `a`, start in `b`, length).
fn longest_common_run(a: &[u8], b: &[u8]) -> Option<(usize, usize, usize)> {
    // Run lengths ending at (i, j), one row of `b` at a time.
    let mut prev = vec![0usize; b.len() + 1];
    let mut row = vec![0usize; b.len() + 1];
    let mut best: Option<(usize, usize, usize)> = None;
    for (i, &x) in a.iter().enumerate() {
        for (j, &y) in b.iter().enumerate() {
            row[j + 1] = if x == y { prev[j] + 1 } else { 0 };
            let n = row[j + 1];
            if n > best.map_or(0, |b| b.2) {
                best = Some((i + 1 - n, j + 1 - n, n));
            }
        }
        std::mem::swap(&mut prev, &mut row);
    }
    best
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

/// Reads a patch's hunk count, refusing more than [`MAX_HUNKS`].
fn hunk_count(r: &mut Reader<'_>) -> Result<u32, DecodeError> {
    let count = r.varint()?;
    if count > MAX_HUNKS {
        return Err(DecodeError::BadRecord);
    }
    Ok(count)
}

/// Reads one hunk: bytes kept, bytes dropped, bytes inserted.
fn hunk<'a>(r: &mut Reader<'a>) -> Result<(usize, usize, &'a [u8]), DecodeError> {
    let keep = r.varint()? as usize;
    let drop = r.varint()? as usize;
    let n = r.varint()? as usize;
    Ok((keep, drop, r.take(n)?))
}

/// Reads encoded hunks from a datagram, checking their shape (count, lengths) against `len`, the
/// length of the body they produce; returns the hunks' bytes.
pub(crate) fn take_hunks<'a>(r: &mut Reader<'a>, len: u32) -> Result<&'a [u8], DecodeError> {
    let start = r.rest();
    let mut produced: u64 = 0;
    for _ in 0..hunk_count(r)? {
        let (keep, _, insert) = hunk(r)?;
        produced += keep as u64 + insert.len() as u64;
    }
    if produced > u64::from(len) {
        return Err(DecodeError::BadRecord);
    }
    Ok(&start[..start.len() - r.rest().len()])
}

/// Applies encoded `hunks` (as [`take_hunks`] accepted them) to `old`; the result must be `len` bytes
/// with CRC-32 `crc`. The work is bounded by `len`, whatever the size of `old`.
pub fn apply(old: &[u8], hunks: &[u8], len: u32, crc: u32) -> Result<Vec<u8>, PatchError> {
    let len = len as usize;
    let mut r = Reader::new(hunks);
    let mut out = Vec::with_capacity(len);
    let mut at = 0usize;
    let bad = |_| PatchError::OutOfRange;
    let count = hunk_count(&mut r).map_err(bad)?;
    // Appends `from`, refusing anything that would outgrow the announced length.
    let copy = |out: &mut Vec<u8>, from: &[u8]| {
        if out.len() + from.len() > len {
            return Err(PatchError::Mismatch);
        }
        out.extend_from_slice(from);
        Ok(())
    };
    for _ in 0..count {
        let (keep, drop, insert) = hunk(&mut r).map_err(bad)?;
        let end = at.checked_add(keep).ok_or(PatchError::OutOfRange)?;
        copy(&mut out, old.get(at..end).ok_or(PatchError::OutOfRange)?)?;
        at = end.checked_add(drop).ok_or(PatchError::OutOfRange)?;
        if at > old.len() {
            return Err(PatchError::OutOfRange);
        }
        copy(&mut out, insert)?;
    }
    copy(&mut out, &old[at..])?;
    if out.len() != len || checksum(&out) != crc {
        return Err(PatchError::Mismatch);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(old: &[u8], new: &[u8]) -> Option<usize> {
        let hunks = diff(old, new)?;
        let mut r = Reader::new(&hunks);
        assert_eq!(take_hunks(&mut r, new.len() as u32).unwrap(), &hunks[..]);
        let got = apply(old, &hunks, new.len() as u32, checksum(new)).unwrap();
        assert_eq!(got, new);
        Some(hunks.len())
    }

    #[test]
    fn a_check_flip_costs_its_changed_bytes_not_the_record() {
        let old =
            b"\x01web-17\x00\x00\x29HTTP GET http://127.0.0.1/health: 200 OK\x05web-17\x04http";
        let new =
            b"\x01web-17\x02\x00\x3aHTTP GET http://127.0.0.1/health: 503 Service Unavailable\x05web-17\x04http";
        let n = roundtrip(old, new).unwrap();
        // Three hunks (status, output length, the output's tail): about the 23 new bytes and headers.
        assert!(n <= 36, "{n}-byte patch");
        // Unchanged bodies cost one byte; a body replaced by unrelated bytes goes whole.
        assert_eq!(roundtrip(old, old), Some(1));
        assert_eq!(diff(b"abcdefgh", b"12345678"), None);
    }

    #[test]
    fn a_patch_on_the_wrong_base_is_refused() {
        let (old, new) = (b"services: web db cache", b"services: web db queue");
        let hunks = diff(old, new).unwrap();
        let (len, crc) = (new.len() as u32, checksum(new));
        assert_eq!(
            apply(b"services: api db cache", &hunks, len, crc),
            Err(PatchError::Mismatch)
        );
        assert_eq!(
            apply(b"short", &hunks, len, crc),
            Err(PatchError::OutOfRange)
        );
    }

    #[test]
    fn the_differ_is_bounded_on_large_unrelated_bodies() {
        let old: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let new: Vec<u8> = (0..100_000u32).map(|i| (i * 13 % 241) as u8).collect();
        // One span too large to search: a single hunk, which is no smaller than the body.
        assert_eq!(diff(&old, &new), None);
        let mut edited = old.clone();
        edited[50_000] ^= 1;
        assert!(roundtrip(&old, &edited).unwrap() < 10);
    }

    proptest! {
        #[test]
        fn any_edit_roundtrips(
            old in proptest::collection::vec(0u8..4, 0..300),
            edits in proptest::collection::vec((0usize..300, 0usize..8, proptest::collection::vec(0u8..4, 0..8)), 0..6),
        ) {
            let mut new = old.clone();
            for (at, drop, insert) in edits {
                let at = at.min(new.len());
                let end = (at + drop).min(new.len());
                new.splice(at..end, insert);
            }
            if let Some(hunks) = diff(&old, &new) {
                prop_assert!(hunks.len() < new.len());
                let got = apply(&old, &hunks, new.len() as u32, checksum(&new)).unwrap();
                prop_assert_eq!(got, new);
            }
        }

        #[test]
        fn arbitrary_hunks_never_panic(old in proptest::collection::vec(any::<u8>(), 0..64), hunks in proptest::collection::vec(any::<u8>(), 0..64), len in 0u32..200) {
            let _ = apply(&old, &hunks, len, 0);
            let mut r = Reader::new(&hunks);
            let _ = take_hunks(&mut r, len);
        }
    }
}
