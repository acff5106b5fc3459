//! Queries by type and answers by response code, for the metrics. The UDP loop counts into a plain
//! [`Tally`] as it goes and adds it to the shared [`ByKind`] atomics once per batch, so the fast path pays
//! two array increments per query, not two atomic read-modify-writes.

use std::sync::atomic::{AtomicU64, Ordering};

/// Query types counted on their own; every other type is counted as `other`.
pub const QTYPES: [(&str, u16); 10] = [
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("PTR", 12),
    ("MX", 15),
    ("TXT", 16),
    ("AAAA", 28),
    ("SRV", 33),
    ("ANY", 255),
];

/// Response codes counted on their own (RFC 1035 numbering); the rest are `other`.
pub const RCODES: [&str; 6] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
];

const TYPES: usize = QTYPES.len() + 1;
const CODES: usize = RCODES.len() + 1;

fn type_slot(qtype: u16) -> usize {
    QTYPES
        .iter()
        .position(|(_, t)| *t == qtype)
        .unwrap_or(QTYPES.len())
}

/// The question's type, read past the name in a query or a response (`None` if it does not parse).
pub fn question_type(msg: &[u8]) -> Option<u16> {
    let mut i = 12;
    loop {
        let len = *msg.get(i)? as usize;
        if len == 0 {
            break;
        }
        // A question's name is never compressed; a pointer means something malformed.
        if len > 63 {
            return None;
        }
        i += 1 + len;
    }
    let t = msg.get(i + 1..i + 3)?;
    Some(u16::from_be_bytes([t[0], t[1]]))
}

/// The shared counts.
#[derive(Debug, Default)]
pub struct ByKind {
    types: [AtomicU64; TYPES],
    codes: [AtomicU64; CODES],
}

impl ByKind {
    /// Counts a query alone (TCP, one at a time).
    pub fn queried(&self, query: &[u8]) {
        let mut t = Tally::default();
        t.query(query);
        t.flush(self);
    }

    /// Counts an answer alone (TCP, and answers finished outside their batch).
    pub fn answered(&self, answer: &[u8]) {
        let mut t = Tally::default();
        t.answer(answer);
        t.flush(self);
    }

    /// Queries per type name (`other` last).
    pub fn types(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        QTYPES
            .iter()
            .map(|(n, _)| *n)
            .chain(["other"])
            .zip(self.types.iter().map(|c| c.load(Ordering::Relaxed)))
    }

    /// Answers per response code name (`other` last).
    pub fn codes(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        RCODES
            .iter()
            .copied()
            .chain(["other"])
            .zip(self.codes.iter().map(|c| c.load(Ordering::Relaxed)))
    }
}

/// One batch's counts, local to the loop that serves it.
#[derive(Debug, Default)]
pub struct Tally {
    types: [u64; TYPES],
    codes: [u64; CODES],
}

impl Tally {
    /// Counts a query by its type (an unparsable one as `other`).
    pub fn query(&mut self, raw: &[u8]) {
        let slot = question_type(raw).map_or(QTYPES.len(), type_slot);
        self.types[slot] += 1;
    }

    /// Counts an answer by its response code (the header's four bits).
    pub fn answer(&mut self, msg: &[u8]) {
        let code = msg.get(3).map_or(CODES - 1, |b| usize::from(b & 0x0f));
        self.codes[code.min(CODES - 1)] += 1;
    }

    /// Adds the counts to `to` and starts over.
    pub fn flush(&mut self, to: &ByKind) {
        for (c, n) in to.types.iter().zip(&mut self.types) {
            if *n > 0 {
                c.fetch_add(std::mem::take(n), Ordering::Relaxed);
            }
        }
        for (c, n) in to.codes.iter().zip(&mut self.codes) {
            if *n > 0 {
                c.fetch_add(std::mem::take(n), Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    #[test]
    fn queries_count_by_type_and_answers_by_code() {
        let by = ByKind::default();
        let mut t = Tally::default();
        t.query(&query("web.service.consul.", RecordType::SRV));
        t.query(&query("a.node.consul.", RecordType::A));
        t.query(&query("a.node.consul.", RecordType::A));
        t.query(&query("x.consul.", RecordType::CAA));
        t.query(&[0u8; 5]);
        // Answers are counted from the header's code bits alone.
        let header = |rcode: u8| [0u8, 1, 0x81, 0x80 | rcode, 0, 0, 0, 0, 0, 0, 0, 0];
        t.answer(&header(3));
        t.answer(&header(0));
        t.flush(&by);
        by.queried(&query("b.node.consul.", RecordType::AAAA));
        by.answered(&header(0));
        let types: Vec<_> = by.types().filter(|(_, n)| *n > 0).collect();
        assert_eq!(types, [("A", 2), ("AAAA", 1), ("SRV", 1), ("other", 2)]);
        let codes: Vec<_> = by.codes().filter(|(_, n)| *n > 0).collect();
        assert_eq!(codes, [("NOERROR", 2), ("NXDOMAIN", 1)]);
        // Flushed counts start over.
        t.flush(&by);
        assert_eq!(by.types().map(|(_, n)| n).sum::<u64>(), 6);
        assert_eq!(question_type(&[0u8; 12]), None);
    }
}
