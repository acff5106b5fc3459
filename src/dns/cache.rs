//! Pre-encoded answers for the UDP fast path. A query is recognised from its raw bytes (one question,
//! optional plain OPT), its encoded answer is reused with the ID, RD bit and question case patched in.
//! The whole cache is dropped when the member table changes; a change to the services drops only the
//! answers about the service names that changed (the catalog lists them), so check flips elsewhere in
//! a large cluster, several a second, leave the other names' answers cached. A change to the external
//! nodes drops the answers not about a service (node lookups read them). A shuffled service answer
//! is kept in [`SHUFFLES`] independently shuffled encodings served in turn: building one costs about
//! ten times serving one (perf/dns-bench.sh, service mix), and clients still see the instances in
//! changing orders.

use std::collections::HashMap;

use super::answer::{Reuse, Scope};
use crate::state::changed_services::Changes;

/// Entries kept at most; beyond it the cache starts over (bounds memory under random-name floods).
pub const MAX_ENTRIES: usize = 65_536;

/// Bytes of keys and answers kept at most; beyond it the cache starts over. Entries alone do not bound
/// memory: one large service asked with every EDNS payload size fills 65 536 keys with eight answers of
/// up to 4 KB each. 5000 nodes with three services each (perf/dns-bench.sh) come to about 50 MB
/// (counted from the answers' sizes, not measured).
pub const MAX_BYTES: usize = 128 << 20;

/// Where the question ends and whether recursion was desired, read off a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// End of the question section (it starts at byte 12).
    pub question_end: usize,
}

/// Parses just enough of `raw` to key the cache: `Some` only for the plain shape the fast path serves
/// (standard query, one question, no answer/authority records, at most one version-0 OPT record).
/// The key (lower-cased question, EDNS presence and payload size) is written into `key`.
pub fn shape(raw: &[u8], key: &mut Vec<u8>) -> Option<Shape> {
    key.clear();
    if raw.len() < 17 {
        return None;
    }
    let flags = raw[2];
    // QR must be 0 and opcode QUERY.
    if flags & 0x80 != 0 || flags & 0x78 != 0 {
        return None;
    }
    let count = |i: usize| u16::from_be_bytes([raw[i], raw[i + 1]]);
    if count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
        return None;
    }
    let mut i = 12;
    loop {
        let len = *raw.get(i)? as usize;
        if len == 0 {
            key.push(0);
            i += 1;
            break;
        }
        if len > 63 || i + 1 + len > raw.len() || i - 12 + len > 250 {
            return None;
        }
        key.push(len as u8);
        key.extend(raw[i + 1..i + 1 + len].iter().map(u8::to_ascii_lowercase));
        i += 1 + len;
    }
    let qtc = raw.get(i..i + 4)?;
    key.extend_from_slice(qtc);
    i += 4;
    let question_end = i;
    if count(10) == 1 {
        // OPT: root name, type 41, class = payload size, ttl = ext-rcode/version/flags, rdata.
        let opt = raw.get(i..i + 11)?;
        if opt[0] != 0 || opt[1..3] != [0, 41] || opt[6] != 0 {
            return None;
        }
        let rdlen = u16::from_be_bytes([opt[9], opt[10]]) as usize;
        if i + 11 + rdlen != raw.len() {
            return None;
        }
        key.push(1);
        key.extend_from_slice(&opt[3..5]);
    } else if i != raw.len() {
        return None;
    } else {
        key.push(0);
    }
    Some(Shape { question_end })
}

/// Shuffled encodings kept per service question.
pub const SHUFFLES: usize = 8;

/// The encodings kept for one question.
struct Entry {
    variants: Vec<Vec<u8>>,
    /// Shuffled: served only once all [`SHUFFLES`] encodings are built, in turn.
    shuffled: bool,
    /// About a service (listed in `by_service`), not built from the member table and external nodes.
    service: bool,
    next: usize,
}

impl Entry {
    /// Bytes of its answers.
    fn size(&self) -> usize {
        self.variants.iter().map(Vec::len).sum()
    }
}

/// The answer cache.
#[derive(Default)]
pub struct AnswerCache {
    map: HashMap<Vec<u8>, Entry>,
    /// The keys of service answers by service name (lower case), dropped when that service changes.
    by_service: HashMap<String, Vec<Vec<u8>>>,
    /// The member table's index the answers were built at.
    members: u64,
    /// The services' version the answers were built at.
    services: u64,
    /// Bytes held in keys (and their copies in `by_service`) and answers.
    bytes: usize,
}

impl AnswerCache {
    /// Drops the answers whose data changed: all of them when the member table's index is no longer
    /// `members`; when the services' version is no longer `services`, those `changed` lists (asked
    /// with the version synced last: service names in lower case, and whether the external nodes
    /// changed), or all when it cannot list them.
    pub fn sync(
        &mut self,
        members: u64,
        services: u64,
        changed: impl FnOnce(u64) -> Option<Changes>,
    ) {
        if members != self.members {
            self.clear();
        } else if services != self.services {
            match changed(self.services) {
                Some(c) => {
                    for name in c.services {
                        let keys = self.by_service.remove(&name);
                        for key in keys.into_iter().flatten() {
                            if let Some(e) = self.map.remove(&key) {
                                // The map's key and this list's copy of it.
                                self.bytes -= 2 * key.len() + e.size();
                            }
                        }
                    }
                    if c.nodes {
                        let bytes = &mut self.bytes;
                        self.map.retain(|key, e| {
                            if !e.service {
                                *bytes -= key.len() + e.size();
                            }
                            e.service
                        });
                    }
                }
                None => self.clear(),
            }
        }
        self.members = members;
        self.services = services;
    }

    /// Drops every answer (the settings they were built with changed).
    pub fn clear(&mut self) {
        self.map.clear();
        self.by_service.clear();
        self.bytes = 0;
    }

    /// Bytes held in keys and answers.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Writes the cached answer for `key` into `out`, patched for the query `raw`; false on a miss.
    pub fn serve(&mut self, key: &[u8], raw: &[u8], shape: Shape, out: &mut Vec<u8>) -> bool {
        let Some(e) = self.map.get_mut(key) else {
            return false;
        };
        if e.shuffled && e.variants.len() < SHUFFLES {
            return false;
        }
        let resp = &e.variants[e.next % e.variants.len()];
        e.next = e.next.wrapping_add(1);
        out.clear();
        out.extend_from_slice(resp);
        out[0] = raw[0];
        out[1] = raw[1];
        out[2] = (out[2] & !0x01) | (raw[2] & 0x01);
        // Echo the question exactly as asked (0x20 case randomisation).
        out[12..shape.question_end].copy_from_slice(&raw[12..shape.question_end]);
        true
    }

    /// Remembers `resp` as the answer for `key` as `reuse` allows (a shuffled one as one of its
    /// encodings).
    pub fn insert(&mut self, key: &[u8], resp: &[u8], reuse: &Reuse) {
        let (shuffled, scope) = match reuse {
            Reuse::Always(scope) => (false, scope),
            Reuse::Shuffled(scope) => (true, scope),
            Reuse::Never => return,
        };
        // One question; and a SERVFAIL (an answer that would not encode) is not kept: it would stand
        // until the data changes.
        if resp.len() < 12 || u16::from_be_bytes([resp[4], resp[5]]) != 1 || resp[3] & 0x0f == 2 {
            return;
        }
        let held = self.map.get(key);
        if shuffled && held.is_some_and(|e| e.variants.len() >= SHUFFLES) {
            // All its orders are built: this one would add nothing, so it must not start the cache over.
            return;
        }
        let service = matches!(scope, Scope::Service(_));
        let new_key = if held.is_some() {
            0
        } else {
            key.len() * (1 + usize::from(service))
        };
        if (held.is_none() && self.map.len() >= MAX_ENTRIES)
            || self.bytes + new_key + resp.len() > MAX_BYTES
        {
            self.clear();
        }
        let bytes = &mut self.bytes;
        let e = self.map.entry(key.to_vec()).or_insert_with(|| {
            *bytes += key.len();
            if let Scope::Service(name) = scope {
                *bytes += key.len();
                self.by_service
                    .entry(name.clone())
                    .or_default()
                    .push(key.to_vec());
            }
            Entry {
                variants: Vec::new(),
                shuffled,
                service,
                next: 0,
            }
        });
        if !shuffled {
            *bytes -= e.size();
            e.variants = vec![resp.to_vec()];
            e.shuffled = false;
        } else {
            e.variants.push(resp.to_vec());
        }
        *bytes += resp.len();
    }

    /// Cached answers.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::{Name, RecordType};

    fn services(names: &[&str]) -> Changes {
        Changes {
            services: names.iter().map(|n| n.to_string()).collect(),
            nodes: false,
        }
    }

    fn query(name: &str, id: u16, edns: bool) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = id;
        m.metadata.recursion_desired = id.is_multiple_of(2);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn keys_ignore_case_and_id_but_not_edns() {
        let (mut k1, mut k2, mut k3) = (Vec::new(), Vec::new(), Vec::new());
        let a = query("Agent-Two.node.consul.", 1, false);
        let s = shape(&a, &mut k1).unwrap();
        shape(&query("agent-two.NODE.consul.", 2, false), &mut k2).unwrap();
        shape(&query("agent-two.node.consul.", 3, true), &mut k3).unwrap();
        assert_eq!(k1, k2);
        assert_ne!(k1, k3);
        assert_eq!(s.question_end, a.len());
        assert!(shape(&a[..a.len() - 1], &mut k1).is_none());
        let mut resp = a.clone();
        resp[2] |= 0x80;
        assert!(shape(&resp, &mut k1).is_none(), "responses are not queries");
    }

    #[test]
    fn serve_patches_id_rd_and_case() {
        let mut key = Vec::new();
        let q1 = query("agent-two.node.consul.", 1, false);
        shape(&q1, &mut key).unwrap();
        let mut resp = Message::from_vec(&q1).unwrap();
        resp.metadata.message_type = hickory_proto::op::MessageType::Response;
        let resp = resp.to_vec().unwrap();
        let mut c = AnswerCache::default();
        c.sync(1, 1, |_| None);
        c.insert(&key, &resp, &Reuse::Always(Scope::Members));
        let q2 = query("AGENT-two.node.consul.", 0xbeef, false);
        let s2 = shape(&q2, &mut key).unwrap();
        let mut out = Vec::new();
        assert!(c.serve(&key, &q2, s2, &mut out));
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.id, 0xbeef);
        assert!(!m.metadata.recursion_desired);
        assert_eq!(m.queries[0].name().to_ascii(), "AGENT-two.node.consul.");
        c.sync(2, 1, |_| None);
        assert!(
            !c.serve(&key, &q2, s2, &mut out),
            "a table change empties the cache"
        );
    }

    #[test]
    fn shuffled_answers_are_served_in_turn_once_all_are_built() {
        let mut key = Vec::new();
        let q = query("web.service.consul.", 7, false);
        let sh = shape(&q, &mut key).unwrap();
        let mut c = AnswerCache::default();
        let variant = |k: u8| {
            let mut r = Message::from_vec(&q).unwrap();
            r.metadata.message_type = hickory_proto::op::MessageType::Response;
            let mut v = r.to_vec().unwrap();
            v.push(k);
            v
        };
        let mut out = Vec::new();
        for k in 0..SHUFFLES as u8 {
            assert!(
                !c.serve(&key, &q, sh, &mut out),
                "served before all orders were built"
            );
            c.insert(
                &key,
                &variant(k),
                &Reuse::Shuffled(Scope::Service("web".into())),
            );
        }
        let mut seen = Vec::new();
        for _ in 0..SHUFFLES * 2 {
            assert!(c.serve(&key, &q, sh, &mut out));
            seen.push(*out.last().unwrap());
        }
        let expected: Vec<u8> = (0..SHUFFLES as u8).chain(0..SHUFFLES as u8).collect();
        assert_eq!(seen, expected, "every order in turn");
    }

    #[test]
    fn a_servfail_is_not_kept() {
        let mut c = AnswerCache::default();
        c.sync(1, 10, |_| panic!("nothing to list at the start"));
        let q = query("web.service.consul.", 1, false);
        let mut key = Vec::new();
        shape(&q, &mut key).unwrap();
        let mut r = Message::from_vec(&q).unwrap();
        r.metadata.message_type = hickory_proto::op::MessageType::Response;
        r.metadata.response_code = hickory_proto::op::ResponseCode::ServFail;
        let scope = Reuse::Always(Scope::Service("web".into()));
        c.insert(&key, &r.to_vec().unwrap(), &scope);
        assert!(c.is_empty());
        r.metadata.response_code = hickory_proto::op::ResponseCode::NoError;
        c.insert(&key, &r.to_vec().unwrap(), &scope);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_service_change_drops_that_services_answers_only() {
        let mut c = AnswerCache::default();
        let mut out = Vec::new();
        let cached = |c: &mut AnswerCache, name: &str, scope: Scope| {
            let mut key = Vec::new();
            let q = query(name, 1, false);
            let sh = shape(&q, &mut key).unwrap();
            let mut r = Message::from_vec(&q).unwrap();
            r.metadata.message_type = hickory_proto::op::MessageType::Response;
            c.insert(&key, &r.to_vec().unwrap(), &Reuse::Always(scope));
            (key, q, sh)
        };
        c.sync(1, 10, |_| panic!("nothing to list at the start"));
        let web = cached(&mut c, "web.service.consul.", Scope::Service("web".into()));
        let web_tag = cached(
            &mut c,
            "v1.web.service.consul.",
            Scope::Service("web".into()),
        );
        let db = cached(&mut c, "db.service.consul.", Scope::Service("db".into()));
        let node = cached(&mut c, "agent-two.node.consul.", Scope::Members);
        let node_answer_len = query("agent-two.node.consul.", 1, false).len();
        let hit = |c: &mut AnswerCache,
                   (key, q, sh): &(Vec<u8>, Vec<u8>, Shape),
                   out: &mut Vec<u8>| { c.serve(key, q, *sh, out) };

        // Web changed at 11: both of its answers go, the rest stay.
        let mut asked = None;
        c.sync(1, 11, |since| {
            asked = Some(since);
            Some(services(&["web"]))
        });
        assert_eq!(asked, Some(10), "asked from the version synced last");
        assert!(!hit(&mut c, &web, &mut out));
        assert!(!hit(&mut c, &web_tag, &mut out));
        assert!(hit(&mut c, &db, &mut out));
        assert!(hit(&mut c, &node, &mut out));

        // The same versions again: nothing asked, nothing dropped.
        c.sync(1, 11, |_| panic!("no change to list"));
        assert!(hit(&mut c, &db, &mut out));

        // The external nodes changed: the answers not about a service go, the services' stay.
        let web = cached(&mut c, "web.service.consul.", Scope::Service("web".into()));
        let bytes = c.bytes();
        c.sync(1, 12, |_| {
            let mut c = services(&[]);
            c.nodes = true;
            Some(c)
        });
        assert!(!hit(&mut c, &node, &mut out));
        assert!(hit(&mut c, &db, &mut out));
        assert!(hit(&mut c, &web, &mut out));
        assert_eq!(c.bytes(), bytes - node.0.len() - node_answer_len);

        // A change the catalog can no longer list drops everything.
        let node = cached(&mut c, "agent-two.node.consul.", Scope::Members);
        c.sync(1, 13, |_| None);
        assert!(!hit(&mut c, &db, &mut out));
        assert!(!hit(&mut c, &node, &mut out));
        assert_eq!(c.bytes(), 0);

        // A member change drops everything, service answers too.
        let db = cached(&mut c, "db.service.consul.", Scope::Service("db".into()));
        c.sync(2, 13, |_| panic!("members moved: no need to list"));
        assert!(!hit(&mut c, &db, &mut out));
        assert!(c.is_empty());
    }

    #[test]
    fn memory_is_bounded_in_bytes_and_counted_as_answers_go() {
        let mut c = AnswerCache::default();
        c.sync(1, 1, |_| None);
        // An answer of 4000 bytes with one question, under keys no real query would make.
        let mut big = vec![0u8; 4000];
        big[5] = 1;
        let service = Reuse::Shuffled(Scope::Service("big".into()));
        // The key counts twice: in the map, and in the service's list of keys.
        for i in 0..SHUFFLES {
            c.insert(b"k0", &big, &service);
            assert_eq!(c.bytes(), 4 + 4000 * (i + 1));
        }
        c.insert(b"k0", &big, &service);
        assert_eq!(c.bytes(), 4 + 4000 * SHUFFLES, "no ninth order kept");
        c.insert(b"n0", &big[..100], &Reuse::Always(Scope::Members));
        c.insert(b"n0", &big[..200], &Reuse::Always(Scope::Members));
        assert_eq!(
            c.bytes(),
            4 + 4000 * SHUFFLES + 2 + 200,
            "a replaced answer no longer counts"
        );
        c.sync(1, 2, |_| Some(services(&["big"])));
        assert_eq!(
            c.bytes(),
            2 + 200,
            "a dropped service's answers no longer count"
        );

        // One name asked with ever new keys (as every EDNS payload size would make) stays within the
        // byte bound, far below the entry bound.
        let flood = MAX_BYTES / (4000 * SHUFFLES) + 10;
        for i in 0..flood {
            let key = format!("k{i}");
            for _ in 0..SHUFFLES {
                c.insert(key.as_bytes(), &big, &service);
            }
            assert!(c.bytes() <= MAX_BYTES);
        }
        assert!(c.len() < flood, "the cache started over");
        assert!(c.len() < MAX_ENTRIES);

        // At the bound, an order of a key that holds all its orders adds nothing and keeps the cache.
        let mut i = 0;
        while c.bytes() + 2 * 8 + 4000 <= MAX_BYTES {
            c.insert(format!("f{i:07}").as_bytes(), &big, &service);
            i += 1;
        }
        let (len, bytes) = (c.len(), c.bytes());
        let full = c.map.keys().find(|k| c.map[*k].variants.len() == SHUFFLES);
        let full = full.expect("a key with all its orders").clone();
        c.insert(&full, &big, &service);
        assert_eq!((c.len(), c.bytes()), (len, bytes));
        c.insert(b"f-new", &big, &service);
        assert_eq!(c.len(), 1, "a new key past the bound starts the cache over");
    }
}
