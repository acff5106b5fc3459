//! Builds DNS responses for one query from the member table and the service catalog, and trims them to
//! the transport's size limits the way Consul does.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::DnsConfig;
use super::names::{Lookup, classify};
use super::services::{Health, Instance, ServiceCatalog};
use crate::state::catalog_node::NodeView;
use crate::state::{MemberRecord, MemberStatus, MemberTable};
use murmur_gossip::Rng;

/// Largest UDP answer sent, whatever the client advertises.
pub const MAX_UDP_PAYLOAD: usize = 4096;

/// Transport the query came over (decides the size limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: 512 bytes without EDNS, else the client's advertised size.
    Udp,
    /// TCP: up to 64 KiB.
    Tcp,
}

/// What to do with a query.
#[derive(Debug)]
pub enum Reply {
    /// Send these bytes; [`Reuse`] says whether the same query may be answered with them again until
    /// the data behind them changes.
    Bytes(Vec<u8>, Reuse),
    /// Outside our domain: forward to the recursors.
    Forward,
    /// A name in another datacenter: a server of it answers.
    Remote(String),
}

/// Whether an answer may be served again for the same question, until the data in its [`Scope`]
/// changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reuse {
    /// Always the same answer.
    Always(Scope),
    /// One of several orders of the same instances (a shuffled service answer): a few of them may be
    /// kept and served in turn.
    Shuffled(Scope),
    /// Never (error answers).
    Never,
}

/// The data a reusable answer was built from: a cached copy is good until that changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The member table and the external nodes (node, reverse and apex lookups, and answers that
    /// read no data at all).
    Members,
    /// One service name (lower case): its instances in the catalog, and the member table for their
    /// nodes' addresses and health.
    Service(String),
}

/// Answers queries from a consistent view of the cluster.
pub struct Answerer<'a> {
    /// DNS settings.
    pub cfg: &'a DnsConfig,
    /// Member table.
    pub table: &'a MemberTable,
    /// Services.
    pub services: &'a dyn ServiceCatalog,
}

impl Answerer<'_> {
    /// Answers `req`; `rng` shuffles service instances. `None`: send nothing (`req` is itself a response).
    pub fn respond(&self, req: &Message, transport: Transport, rng: &mut Rng) -> Option<Reply> {
        // Answering a response lets one datagram with a spoofed source (our own address, or another
        // server's) make servers answer each other forever.
        if req.metadata.message_type != MessageType::Query {
            return None;
        }
        Some(self.respond_query(req, transport, rng))
    }

    fn respond_query(&self, req: &Message, transport: Transport, rng: &mut Rng) -> Reply {
        let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
        resp.metadata.recursion_desired = req.metadata.recursion_desired;
        resp.metadata.recursion_available = !self.cfg.recursors.is_empty();
        resp.metadata.authoritative = true;
        if req.edns.is_some() {
            let mut e = Edns::new();
            e.set_max_payload(4096);
            resp.set_edns(e);
        }
        // RFC 6891 6.1.3: a version we do not speak gets BADVERS and our own version (0) in the OPT.
        if req.edns.as_ref().is_some_and(|e| e.version() > 0) {
            resp.metadata.response_code = ResponseCode::BADVERS;
            return Reply::Bytes(
                self.finish(resp, req, transport),
                Reuse::Always(Scope::Members),
            );
        }
        if req.metadata.op_code != OpCode::Query {
            resp.metadata.response_code = ResponseCode::NotImp;
            return Reply::Bytes(
                self.finish(resp, req, transport),
                Reuse::Always(Scope::Members),
            );
        }
        let [q] = req.queries.as_slice() else {
            resp.metadata.response_code = ResponseCode::FormErr;
            return Reply::Bytes(
                self.finish(resp, req, transport),
                Reuse::Always(Scope::Members),
            );
        };
        resp.add_query(q.clone());
        let lookup = classify(&q.name().to_ascii(), &self.cfg.domain);
        if lookup == Lookup::Outside {
            if !self.cfg.recursors.is_empty() {
                return Reply::Forward;
            }
            resp.metadata.authoritative = false;
            resp.metadata.response_code = ResponseCode::Refused;
            return Reply::Bytes(
                self.finish(resp, req, transport),
                Reuse::Always(Scope::Members),
            );
        }
        if q.query_type() == RecordType::AXFR || q.query_type() == RecordType::IXFR {
            resp.metadata.response_code = ResponseCode::NotImp;
            return Reply::Bytes(
                self.finish(resp, req, transport),
                Reuse::Always(Scope::Members),
            );
        }
        if let Lookup::Reverse(ip) = lookup {
            return match self.reverse(q, ip, &mut resp) {
                Some(()) => {
                    if resp.answers.is_empty() {
                        resp.add_authority(self.soa());
                    }
                    Reply::Bytes(
                        self.finish(resp, req, transport),
                        Reuse::Always(Scope::Members),
                    )
                }
                None if !self.cfg.recursors.is_empty() => Reply::Forward,
                None => {
                    resp.metadata.response_code = ResponseCode::NXDomain;
                    resp.add_authority(self.soa());
                    Reply::Bytes(
                        self.finish(resp, req, transport),
                        Reuse::Always(Scope::Members),
                    )
                }
            };
        }
        let other_dc = match &lookup {
            Lookup::Node { dc: Some(dc), .. } | Lookup::Service { dc: Some(dc), .. } => {
                Some(dc).filter(|dc| !self.local_dc(Some(dc)))
            }
            _ => None,
        };
        if let Some(dc) = other_dc
            && matches!(q.query_class(), DNSClass::IN | DNSClass::ANY)
        {
            return Reply::Remote(dc.clone());
        }
        let found = match (&lookup, q.query_class()) {
            (_, c) if c != DNSClass::IN && c != DNSClass::ANY => Some(()),
            (Lookup::Apex, _) => self.apex(q, &mut resp),
            (Lookup::Node { name, dc }, _) => self.node(q, name, dc.as_deref(), &mut resp),
            (Lookup::Service { name, tag, dc }, _) => {
                self.service(q, name, tag.as_deref(), dc.as_deref(), &mut resp, rng)
            }
            _ => None,
        };
        if found.is_none() {
            resp.metadata.response_code = ResponseCode::NXDomain;
        }
        if resp.answers.is_empty() {
            resp.add_authority(self.soa());
        }
        let reuse = match lookup {
            Lookup::Service { name, .. } if resp.answers.len() > 1 => {
                Reuse::Shuffled(Scope::Service(name))
            }
            Lookup::Service { name, .. } => Reuse::Always(Scope::Service(name)),
            _ => Reuse::Always(Scope::Members),
        };
        Reply::Bytes(self.finish(resp, req, transport), reuse)
    }

    /// NXDOMAIN with our SOA: the answer for a datacenter no server knows a path to (Consul answers
    /// `ErrNoDCPath` so).
    pub fn no_such_datacenter(&self, req: &Message, transport: Transport) -> Vec<u8> {
        let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
        resp.metadata.recursion_desired = req.metadata.recursion_desired;
        resp.metadata.recursion_available = !self.cfg.recursors.is_empty();
        resp.metadata.authoritative = true;
        resp.metadata.response_code = ResponseCode::NXDomain;
        if req.edns.is_some() {
            let mut e = Edns::new();
            e.set_max_payload(4096);
            resp.set_edns(e);
        }
        if let [q] = req.queries.as_slice() {
            resp.add_query(q.clone());
        }
        resp.add_authority(self.soa());
        self.finish(resp, req, transport)
    }

    fn domain_name(&self) -> Name {
        Name::from_ascii(&self.cfg.domain).unwrap_or_else(|_| Name::root())
    }

    fn soa(&self) -> Record {
        let d = self.domain_name();
        let mname = Name::from_ascii("ns").and_then(|n| n.append_name(&d));
        let rname = Name::from_ascii("hostmaster").and_then(|n| n.append_name(&d));
        let serial = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        let soa = SOA::new(
            mname.unwrap_or_else(|_| d.clone()),
            rname.unwrap_or_else(|_| d.clone()),
            serial,
            3600,
            600,
            86400,
            0,
        );
        Record::from_rdata(d, 0, RData::SOA(soa))
    }

    fn local_dc(&self, dc: Option<&str>) -> bool {
        dc.is_none_or(|dc| dc.eq_ignore_ascii_case(&self.cfg.datacenter))
    }

    fn node_fqdn(&self, node: &str) -> Option<Name> {
        Name::from_ascii(format!(
            "{node}.node.{}.{}",
            self.cfg.datacenter, self.cfg.domain
        ))
        .ok()
    }

    fn apex(&self, q: &Query, resp: &mut Message) -> Option<()> {
        let t = q.query_type();
        if matches!(t, RecordType::SOA | RecordType::ANY) {
            resp.add_answer(self.soa());
        }
        if matches!(t, RecordType::NS | RecordType::ANY) {
            let snap = self.table.snapshot();
            let servers = snap
                .members
                .iter()
                .filter(|m| {
                    m.is_server()
                        && m.status == MemberStatus::Alive
                        && m.tag("dc").eq_ignore_ascii_case(&self.cfg.datacenter)
                })
                .take(3);
            for m in servers {
                if let Some(target) = self.node_fqdn(&m.name) {
                    resp.add_answer(Record::from_rdata(
                        self.domain_name(),
                        0,
                        RData::NS(NS(target.clone())),
                    ));
                    resp.add_additional(addr_record(target, m.addr.ip(), 0));
                }
            }
        }
        Some(())
    }

    fn find_node(&self, name: &str) -> Option<std::sync::Arc<MemberRecord>> {
        if let Some(m) = self.table.get(name) {
            return Some(m);
        }
        // DNS names are case-insensitive; node names keep their case in the table.
        self.table
            .snapshot()
            .members
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
            .cloned()
    }

    /// PTR for an alive member of this datacenter at `ip` (Consul answers these from its catalog).
    fn reverse(&self, q: &Query, ip: IpAddr, resp: &mut Message) -> Option<()> {
        let snap = self.table.snapshot();
        let m = snap.members.iter().find(|m| {
            m.addr.ip() == ip
                && m.status == MemberStatus::Alive
                && m.tag("dc").eq_ignore_ascii_case(&self.cfg.datacenter)
        })?;
        if matches!(q.query_type(), RecordType::PTR | RecordType::ANY) {
            let target = self.node_fqdn(&m.name)?;
            let ttl = self.cfg.node_ttl.as_secs() as u32;
            resp.add_answer(Record::from_rdata(
                q.name().clone(),
                ttl,
                RData::PTR(PTR(target)),
            ));
        }
        Some(())
    }

    fn node(&self, q: &Query, name: &str, dc: Option<&str>, resp: &mut Message) -> Option<()> {
        if !self.local_dc(dc) {
            return None;
        }
        let here = |dc: &str| dc.eq_ignore_ascii_case(&self.cfg.datacenter);
        let n = match self.find_node(name) {
            Some(m) if m.status == MemberStatus::Alive && here(m.tag("dc")) => NodeView::Member(m),
            Some(_) => return None,
            None => NodeView::External(
                self.services
                    .external_node(name)
                    .filter(|e| here(&e.info.datacenter))?,
            ),
        };
        let ttl = self.cfg.node_ttl.as_secs() as u32;
        let owner = q.name().clone();
        let t = q.query_type();
        let wants_addr = |ip: IpAddr| {
            matches!(
                (t, ip),
                (RecordType::A, IpAddr::V4(_))
                    | (RecordType::AAAA, IpAddr::V6(_))
                    | (RecordType::ANY, _)
            )
        };
        match n.ip() {
            Some(ip) if wants_addr(ip) => {
                resp.add_answer(addr_record(owner.clone(), ip, ttl));
            }
            // An external node registered by host name.
            None if matches!(t, RecordType::A | RecordType::AAAA | RecordType::ANY) => {
                let target = fqdn(&n.address())?;
                resp.add_answer(Record::from_rdata(owner, ttl, RData::CNAME(CNAME(target))));
                return Some(());
            }
            _ => {}
        }
        match t {
            RecordType::TXT | RecordType::ANY => {
                for r in meta_txt(&owner, &n.meta(), ttl) {
                    resp.add_answer(r);
                }
            }
            RecordType::A | RecordType::AAAA if self.cfg.additional_node_meta_txt => {
                for r in meta_txt(&owner, &n.meta(), ttl) {
                    resp.add_additional(r);
                }
            }
            _ => {}
        }
        Some(())
    }

    fn service(
        &self,
        q: &Query,
        name: &str,
        tag: Option<&str>,
        dc: Option<&str>,
        resp: &mut Message,
        rng: &mut Rng,
    ) -> Option<()> {
        if !self.local_dc(dc) {
            return None;
        }
        let mut inst: Vec<Instance> = self
            .services
            .instances(name)
            .into_iter()
            .filter(|i| {
                i.node
                    .datacenter()
                    .eq_ignore_ascii_case(&self.cfg.datacenter)
            })
            .filter(|i| tag.is_none_or(|t| i.tags.iter().any(|x| x.eq_ignore_ascii_case(t))))
            .filter(|i| match i.health {
                Health::Passing => true,
                Health::Warning => !self.cfg.only_passing,
                Health::Critical => false,
            })
            .collect();
        if inst.is_empty() {
            return None;
        }
        rng.shuffle(&mut inst);
        let ttl = self.cfg.service_ttl.of(name).as_secs() as u32;
        let owner = q.name().clone();
        let t = q.query_type();
        match t {
            RecordType::A | RecordType::AAAA | RecordType::ANY => {
                let mut seen: Vec<IpAddr> = Vec::new();
                for ip in inst.iter().filter_map(Instance::ip) {
                    let fits = matches!(
                        (t, ip),
                        (RecordType::A, IpAddr::V4(_))
                            | (RecordType::AAAA, IpAddr::V6(_))
                            | (RecordType::ANY, _)
                    );
                    if fits && !seen.contains(&ip) {
                        seen.push(ip);
                        resp.add_answer(addr_record(owner.clone(), ip, ttl));
                    }
                }
                // Only host names (a service's own, or an external node's): one CNAME, as Consul
                // answers them; a name that owns a CNAME owns nothing else, so addresses, when there
                // are any, win.
                if seen.is_empty()
                    && let Some(target) = inst.iter().find_map(|i| fqdn(i.host.as_deref()?))
                {
                    resp.add_answer(Record::from_rdata(owner, ttl, RData::CNAME(CNAME(target))));
                }
            }
            RecordType::SRV => {
                // Each target's address goes in once, and each node's meta once (a node's
                // instances may have targets of their own, and nodes may share one); addresses
                // first, so that trimming drops the meta before them.
                let mut targets: HashSet<Name> = HashSet::new();
                let mut meta_owners: HashSet<(&str, Name)> = HashSet::new();
                let mut metas: Vec<Record> = Vec::new();
                for i in &inst {
                    let ip = i.ip();
                    let target = match (i.address, ip, &i.host) {
                        (Some(ip), _, _) => Name::from_ascii(format!(
                            "{}.addr.{}.{}",
                            hex_ip(ip),
                            self.cfg.datacenter,
                            self.cfg.domain
                        ))
                        .ok(),
                        (None, _, Some(host)) => fqdn(host),
                        (None, Some(_), None) => self.node_fqdn(i.node.name()),
                        (None, None, None) => None,
                    };
                    let Some(target) = target else { continue };
                    let weight = match i.health {
                        Health::Warning => i.weight_warning,
                        _ => i.weight_passing,
                    };
                    let srv = SRV::new(1, weight, i.port, target.clone());
                    resp.add_answer(Record::from_rdata(owner.clone(), ttl, RData::SRV(srv)));
                    if let Some(ip) = ip
                        && targets.insert(target.clone())
                    {
                        resp.add_additional(addr_record(target, ip, ttl));
                    }
                    if self.cfg.additional_node_meta_txt {
                        // Consul names the node's meta by the node, even when the target is the
                        // service's own IP; for a service that is a host name, by the question.
                        let meta_owner = match i.own_host {
                            true => Some(owner.clone()),
                            false => self.node_fqdn(i.node.name()),
                        };
                        if let Some(o) = meta_owner
                            && meta_owners.insert((i.node.name(), o.clone()))
                        {
                            metas.extend(meta_txt(&o, &i.node.meta(), ttl));
                        }
                    }
                }
                for r in metas {
                    resp.add_additional(r);
                }
            }
            _ => {}
        }
        Some(())
    }

    /// Applies record limits and size trimming, then encodes.
    fn finish(&self, mut resp: Message, req: &Message, transport: Transport) -> Vec<u8> {
        let max = match (transport, &req.edns) {
            (Transport::Tcp, _) => 65_535,
            // Large EDNS buffers invite fragmentation; like most servers, stay within 4 KiB.
            (Transport::Udp, Some(e)) => (e.max_payload() as usize).clamp(512, MAX_UDP_PAYLOAD),
            (Transport::Udp, None) => 512,
        };
        let is_addr = |r: &Record| matches!(r.record_type(), RecordType::A | RecordType::AAAA);
        let mut trimmed = false;
        if self.cfg.a_record_limit > 0 {
            let limit = self.cfg.a_record_limit as usize;
            let mut kept = 0;
            let before = resp.answers.len();
            resp.answers.retain(|r| {
                if is_addr(r) {
                    kept += 1;
                    kept <= limit
                } else {
                    true
                }
            });
            trimmed |= resp.answers.len() != before;
        }
        if transport == Transport::Udp && req.edns.is_none() {
            let limit = self.cfg.udp_answer_limit.clamp(1, 8) as usize;
            if resp.answers.len() > limit {
                resp.answers.truncate(limit);
                trimmed = true;
            }
        }
        if trimmed {
            sync_extra(&mut resp);
        }
        let mut bytes = encode(&resp);
        if bytes.len() > max {
            // The answers that fit on their own, then the additionals that fit with them: a binary
            // search each, so that a large answer costs a few encodings, not one per record.
            let extra = std::mem::take(&mut resp.additionals);
            let answers = std::mem::take(&mut resp.answers);
            let kept = longest_fit(&mut resp, max, &answers, |m| &mut m.answers);
            if kept < answers.len() {
                trimmed = true;
            }
            resp.additionals = extra;
            if trimmed {
                sync_extra(&mut resp);
            }
            let extra = std::mem::take(&mut resp.additionals);
            longest_fit(&mut resp, max, &extra, |m| &mut m.additionals);
            bytes = encode(&resp);
        }
        if trimmed && transport == Transport::Udp && self.cfg.enable_truncate {
            resp.metadata.truncation = true;
            bytes = encode(&resp);
        }
        bytes
    }
}

/// Sets `section(m)` to the longest prefix of `records` with which `m` encodes within `max` bytes;
/// returns its length.
fn longest_fit(
    m: &mut Message,
    max: usize,
    records: &[Record],
    section: fn(&mut Message) -> &mut Vec<Record>,
) -> usize {
    // Invariant: a prefix of `lo` fits (none at all is assumed to), one of `hi` does not.
    let (mut lo, mut hi) = (0, records.len() + 1);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        *section(m) = records[..mid].to_vec();
        // A prefix that does not encode at all does not fit either.
        if m.to_vec().is_ok_and(|b| b.len() <= max) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    *section(m) = records[..lo].to_vec();
    lo
}

/// After answers were cut, keeps only the additional addresses of the SRV targets still answered, as
/// Consul's `syncExtra` does (node meta TXT records go too).
fn sync_extra(m: &mut Message) {
    let targets: HashSet<&Name> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some(&srv.target),
            _ => None,
        })
        .collect();
    let kept: Vec<Record> = m
        .additionals
        .iter()
        .filter(|r| {
            matches!(
                r.record_type(),
                RecordType::A | RecordType::AAAA | RecordType::CNAME
            ) && targets.contains(&r.name)
        })
        .cloned()
        .collect();
    m.additionals = kept;
}

fn encode(m: &Message) -> Vec<u8> {
    m.to_vec().unwrap_or_else(|_| {
        let mut e = Message::error_msg(m.metadata.id, m.metadata.op_code, ResponseCode::ServFail);
        e.queries = m.queries.clone();
        e.to_vec().unwrap_or_default()
    })
}

/// A host name as an absolute DNS name.
fn fqdn(host: &str) -> Option<Name> {
    let mut n = Name::from_ascii(host).ok()?;
    n.set_fqdn(true);
    Some(n)
}

fn addr_record(owner: Name, ip: IpAddr, ttl: u32) -> Record {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner, ttl, rdata)
}

/// Node metadata as TXT records under `owner`: `key=value` quoted as RFC 1464 says, or the bare value
/// for a key that starts with `rfc1035-` (Consul's way to publish any TXT string).
fn meta_txt<'a>(
    owner: &'a Name,
    meta: &'a std::collections::BTreeMap<String, String>,
    ttl: u32,
) -> impl Iterator<Item = Record> + 'a {
    meta.iter().map(move |(k, v)| {
        let text = if k.to_ascii_lowercase().starts_with("rfc1035-") {
            v.clone()
        } else {
            rfc1464(k, v)
        };
        Record::from_rdata(
            owner.clone(),
            ttl,
            RData::TXT(TXT::new(character_strings(&text))),
        )
    })
}

/// `text` as DNS character-strings of at most 255 bytes each (cut at character boundaries): one TXT
/// record holds several, and clients join them. A longer single string would not encode at all.
fn character_strings(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > 255 {
        let mut cut = 255;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(rest[..cut].to_string());
        rest = &rest[cut..];
    }
    out.push(rest.to_string());
    out
}

/// `key=value` with the key's backquotes, equals signs and leading and trailing spaces quoted by a
/// backquote, and the value's backquotes doubled (RFC 1464 section 2, as Consul encodes them).
fn rfc1464(key: &str, value: &str) -> String {
    let inner = key.trim_matches(' ');
    let lead = key.len() - key.trim_start_matches(' ').len();
    let trail = if inner.is_empty() {
        0
    } else {
        key.len() - key.trim_end_matches(' ').len()
    };
    let mut out = "` ".repeat(lead);
    for c in inner.chars() {
        match c {
            '`' => out.push_str("``"),
            '=' => out.push_str("`="),
            c => out.push(c),
        }
    }
    out.push_str(&"` ".repeat(trail));
    out.push('=');
    out.push_str(&value.replace('`', "``"));
    out
}

fn hex_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => crate::util::hex::lower(&v4.octets()),
        IpAddr::V6(v6) => crate::util::hex::lower(&v6.octets()),
    }
}

/// A FORMERR reply for a datagram that has a DNS header but does not parse; `None` if too short to answer.
pub fn formerr(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() < 12 || raw[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([raw[0], raw[1]]);
    Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
        .to_vec()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::services::CatalogServices;
    use crate::state::node_record::{NodeRecord, ServiceRecord};
    use murmur_gossip::{Event, Member, State, tags};
    use std::sync::Arc;

    fn table() -> Arc<MemberTable> {
        let t = Arc::new(MemberTable::new());
        let add = |name: &str, ip: &str, role: &str, state: State| {
            let tg = tags::encode(&[
                ("role", role),
                ("dc", "dc1"),
                ("port", "8300"),
                ("m:rack", "r1"),
            ])
            .unwrap();
            t.apply(&Event::Member(Member {
                name: Arc::from(name),
                addr: format!("{ip}:8301").parse().unwrap(),
                incarnation: 1,
                state,
                tags: Arc::from(tg),
            }));
        };
        add("agent-one", "127.0.0.10", "consul", State::Alive);
        add("agent-two", "127.0.0.11", "node", State::Alive);
        add("gone", "127.0.0.12", "node", State::Dead);
        t.publish();
        t
    }

    fn ask(
        t: &Arc<MemberTable>,
        cfg: &DnsConfig,
        name: &str,
        qt: RecordType,
        edns: bool,
        tr: Transport,
    ) -> Message {
        let services = CatalogServices::with_servers(t.clone());
        let a = Answerer {
            cfg,
            table: t,
            services: &services,
        };
        let mut req = Message::query();
        req.metadata.id = 4242;
        req.add_query(Query::query(Name::from_ascii(name).unwrap(), qt));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            req.set_edns(e);
        }
        let Some(Reply::Bytes(b, _)) = a.respond(&req, tr, &mut Rng::new(1)) else {
            panic!("forwarded or dropped")
        };
        Message::from_vec(&b).unwrap()
    }

    #[test]
    fn node_lookups() {
        let t = table();
        let cfg = DnsConfig::default();
        let m = ask(
            &t,
            &cfg,
            "agent-two.node.consul.",
            RecordType::A,
            false,
            Transport::Udp,
        );
        assert_eq!(m.metadata.id, 4242);
        assert!(m.metadata.authoritative);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(
            m.answers[0].data.ip_addr(),
            Some("127.0.0.11".parse().unwrap())
        );
        assert_eq!(m.answers[0].ttl, 0);
        assert_eq!(
            texts(&m.additionals, "agent-two.node.consul."),
            ["consul-network-segment=", "rack=r1"],
            "node meta TXT in additional, with the agent's segment"
        );

        let m = ask(
            &t,
            &cfg,
            "AGENT-TWO.node.DC1.consul.",
            RecordType::A,
            false,
            Transport::Udp,
        );
        assert_eq!(m.answers.len(), 1);

        // Another datacenter's names are for its servers to answer.
        let services = CatalogServices::with_servers(t.clone());
        let a = Answerer {
            cfg: &cfg,
            table: &t,
            services: &services,
        };
        for name in [
            "agent-two.node.dc9.consul.",
            "_web._tcp.service.dc9.consul.",
        ] {
            let mut req = Message::query();
            req.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
            let r = a.respond(&req, Transport::Udp, &mut Rng::new(1));
            assert!(
                matches!(r, Some(Reply::Remote(dc)) if dc == "dc9"),
                "{name}"
            );
            let m = Message::from_vec(&a.no_such_datacenter(&req, Transport::Udp)).unwrap();
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
            assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
            assert_eq!(m.queries, req.queries);
        }
        for (name, qt) in [
            ("nobody.node.consul.", RecordType::A),
            ("gone.node.consul.", RecordType::A),
            ("nonsense.consul.", RecordType::A),
        ] {
            let m = ask(&t, &cfg, name, qt, false, Transport::Udp);
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
            assert_eq!(m.authorities[0].record_type(), RecordType::SOA, "{name}");
        }
        let m = ask(
            &t,
            &cfg,
            "agent-two.node.consul.",
            RecordType::AAAA,
            false,
            Transport::Udp,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1);
        let m = ask(
            &t,
            &cfg,
            "agent-two.node.consul.",
            RecordType::TXT,
            false,
            Transport::Udp,
        );
        assert_eq!(
            texts(&m.answers, "agent-two.node.consul."),
            ["consul-network-segment=", "rack=r1"]
        );
        let m = ask(
            &t,
            &cfg,
            "example.com.",
            RecordType::A,
            false,
            Transport::Udp,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }

    /// The TXT strings under `owner`, in order.
    fn texts(records: &[Record], owner: &str) -> Vec<String> {
        records
            .iter()
            .filter(|r| r.name.to_ascii() == owner)
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(t.to_string()),
                _ => None,
            })
            .collect()
    }

    fn web(id: &str, port: u16, address: &str) -> ServiceRecord {
        ServiceRecord {
            address: address.to_owned(),
            ..ServiceRecord::plain(id, "web", &[], port)
        }
    }

    /// The answer to `web.service.consul SRV` from nodes of `t` running `services`.
    fn srv_answer(
        t: &Arc<MemberTable>,
        cfg: &DnsConfig,
        services: Vec<(&str, Vec<ServiceRecord>)>,
        edns: bool,
        tr: Transport,
    ) -> Message {
        let catalog = Arc::new(crate::state::catalog::Catalog::new());
        for (node, services) in services {
            let record = NodeRecord {
                services,
                checks: Vec::new(),
            };
            catalog.apply_record(&Arc::from(node), 1, &record.encode());
        }
        let services = CatalogServices::new(t.clone(), catalog);
        let a = Answerer {
            cfg,
            table: t,
            services: &services,
        };
        let mut req = Message::query();
        req.add_query(Query::query(
            Name::from_ascii("web.service.consul.").unwrap(),
            RecordType::SRV,
        ));
        if edns {
            req.set_edns(Edns::new());
        }
        let Some(Reply::Bytes(b, _)) = a.respond(&req, tr, &mut Rng::new(1)) else {
            panic!("forwarded or dropped")
        };
        Message::from_vec(&b).unwrap()
    }

    /// Five instances: agent-one at two IPs of its own, agent-two at its node address twice and at
    /// one of agent-one's IPs.
    fn web_answer(cfg: &DnsConfig, edns: bool, tr: Transport) -> Message {
        let services = vec![
            (
                "agent-one",
                vec![web("web", 80, "127.0.0.99"), web("web-c", 82, "127.0.0.98")],
            ),
            (
                "agent-two",
                vec![
                    web("web-a", 80, ""),
                    web("web-b", 81, ""),
                    web("web-d", 83, "127.0.0.99"),
                ],
            ),
        ];
        srv_answer(&table(), cfg, services, edns, tr)
    }

    fn owners(records: &[Record], t: RecordType) -> Vec<String> {
        let mut v: Vec<String> = records
            .iter()
            .filter(|r| r.record_type() == t)
            .map(|r| r.name.to_ascii())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn srv_additionals_carry_each_target_once_and_each_nodes_meta_once() {
        let m = web_answer(&DnsConfig::default(), true, Transport::Tcp);
        assert_eq!(m.answers.len(), 5);
        assert_eq!(
            owners(&m.additionals, RecordType::A),
            [
                "7f000062.addr.dc1.consul.",
                "7f000063.addr.dc1.consul.",
                "agent-two.node.dc1.consul."
            ],
            "one A per target, whichever nodes share it"
        );
        let meta = ["consul-network-segment=", "rack=r1"];
        // Consul names the meta by the node even when the target is the service's own address; each
        // node's once, though agent-one has two targets and agent-two shares one with it.
        assert_eq!(texts(&m.additionals, "agent-one.node.dc1.consul."), meta);
        assert_eq!(texts(&m.additionals, "agent-two.node.dc1.consul."), meta);
        assert_eq!(m.additionals.len(), 7);
        let first_txt = m
            .additionals
            .iter()
            .position(|r| r.record_type() == RecordType::TXT)
            .unwrap();
        assert!(
            m.additionals[first_txt..]
                .iter()
                .all(|r| r.record_type() == RecordType::TXT),
            "addresses first: trimming drops the meta before them"
        );

        let off = DnsConfig {
            additional_node_meta_txt: false,
            ..DnsConfig::default()
        };
        let m = web_answer(&off, true, Transport::Tcp);
        assert_eq!(m.answers.len(), 5);
        assert_eq!(
            m.additionals.len(),
            3,
            "addresses only: {:?}",
            m.additionals
        );
    }

    #[test]
    fn cut_answers_keep_only_their_targets_addresses() {
        // No EDNS over UDP: three answers (udp_answer_limit), and as in Consul's syncExtra only the
        // addresses of the targets kept, no meta.
        let m = web_answer(&DnsConfig::default(), false, Transport::Udp);
        assert_eq!(m.answers.len(), 3);
        let mut targets: Vec<String> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => Some(srv.target.to_ascii()),
                _ => None,
            })
            .collect();
        targets.sort();
        targets.dedup();
        assert_eq!(owners(&m.additionals, RecordType::A), targets);
        assert_eq!(m.additionals.len(), targets.len(), "{:?}", m.additionals);
    }

    #[test]
    fn long_meta_values_go_out_as_several_character_strings() {
        // A 100-byte key and a 250-byte value (both within node_meta's limits) make a 351-byte
        // pair, with a two-byte character across byte 255.
        let t = Arc::new(MemberTable::new());
        let key = "k".repeat(100);
        let long = format!("{}é{}", "v".repeat(153), "v".repeat(95));
        let meta_key = format!("m:{key}");
        t.apply(&Event::Member(Member {
            name: Arc::from("long"),
            addr: "127.0.0.9:8301".parse().unwrap(),
            incarnation: 1,
            state: State::Alive,
            tags: Arc::from(
                tags::encode(&[
                    ("role", "node"),
                    ("dc", "dc1"),
                    (meta_key.as_str(), long.as_str()),
                ])
                .unwrap(),
            ),
        }));
        t.publish();
        let cfg = DnsConfig::default();
        let m = ask(
            &t,
            &cfg,
            "long.node.consul.",
            RecordType::TXT,
            true,
            Transport::Udp,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        let strings: Vec<Vec<u8>> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(t.txt_data.iter().map(|s| s.to_vec()).collect::<Vec<_>>()),
                _ => None,
            })
            .find(|s| s.len() > 1)
            .expect("the long pair, in pieces");
        assert_eq!(strings.len(), 2);
        assert_eq!(strings[0].len(), 254, "cut before the two-byte character");
        assert_eq!(strings.concat(), format!("{key}={long}").into_bytes());
        let m = srv_answer(
            &t,
            &cfg,
            vec![("long", vec![web("web", 80, "")])],
            true,
            Transport::Udp,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
    }

    #[test]
    fn trimming_keeps_the_longest_prefix_that_fits() {
        let mut m = Message::query();
        let owner = Name::from_ascii("web.service.consul.").unwrap();
        let records: Vec<Record> = (0..200u8)
            .map(|i| addr_record(owner.clone(), IpAddr::from([10, 0, 0, i]), 0))
            .collect();
        let kept = longest_fit(&mut m, 512, &records, |m| &mut m.answers);
        assert!(kept > 10 && kept < 200, "{kept}");
        assert_eq!(m.answers.len(), kept);
        assert!(encode(&m).len() <= 512);
        m.answers = records[..kept + 1].to_vec();
        assert!(encode(&m).len() > 512, "one more would not fit");
        assert_eq!(
            longest_fit(&mut m, 65_535, &records, |m| &mut m.answers),
            200
        );
    }

    #[test]
    fn meta_keys_are_quoted_as_rfc_1464_says() {
        assert_eq!(rfc1464("rack", "r1"), "rack=r1");
        assert_eq!(rfc1464("a=b", "c=d"), "a`=b=c=d");
        assert_eq!(rfc1464("q`k", "v`w"), "q``k=v``w");
        assert_eq!(rfc1464("  k ", "v"), "` ` k` =v");
        assert_eq!(rfc1464("", "v"), "=v");
        let owner = Name::from_ascii("n.node.dc1.consul.").unwrap();
        let meta = [("rfc1035-x".to_string(), "v=1 spf".to_string())].into();
        let r: Vec<Record> = meta_txt(&owner, &meta, 0).collect();
        assert_eq!(texts(&r, "n.node.dc1.consul."), ["v=1 spf"]);
    }

    #[test]
    fn consul_service_and_apex() {
        let t = table();
        let cfg = DnsConfig::default();
        let m = ask(
            &t,
            &cfg,
            "consul.service.consul.",
            RecordType::SRV,
            true,
            Transport::Udp,
        );
        assert_eq!(m.answers.len(), 1);
        let RData::SRV(srv) = &m.answers[0].data else {
            panic!()
        };
        assert_eq!(srv.port, 8300);
        assert_eq!(srv.target.to_ascii(), "agent-one.node.dc1.consul.");
        assert!(
            m.additionals
                .iter()
                .any(|r| r.record_type() == RecordType::A)
        );
        let m = ask(
            &t,
            &cfg,
            "web.service.consul.",
            RecordType::A,
            false,
            Transport::Udp,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        let m = ask(&t, &cfg, "consul.", RecordType::SOA, false, Transport::Udp);
        assert_eq!(m.answers[0].record_type(), RecordType::SOA);
        let m = ask(&t, &cfg, "consul.", RecordType::NS, false, Transport::Udp);
        assert_eq!(m.answers.len(), 1);
    }

    #[test]
    fn apex_ns_names_only_servers_of_this_datacenter() {
        let t = table();
        let tg = tags::encode(&[("role", "consul"), ("dc", "dc2"), ("port", "8300")]).unwrap();
        t.apply(&Event::Member(Member {
            name: Arc::from("far-server"),
            addr: "127.0.0.20:8301".parse().unwrap(),
            incarnation: 1,
            state: State::Alive,
            tags: Arc::from(tg),
        }));
        t.publish();
        let m = ask(
            &t,
            &DnsConfig::default(),
            "consul.",
            RecordType::NS,
            false,
            Transport::Udp,
        );
        let targets: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(targets, ["agent-one.node.dc1.consul."]);
    }

    #[test]
    fn udp_trimming_and_truncation() {
        let t = Arc::new(MemberTable::new());
        let mut pairs = Vec::new();
        for i in 0..40 {
            pairs.push((format!("m:key{i:02}"), "v".repeat(40)));
        }
        let mut tg: Vec<(String, String)> =
            vec![("role".into(), "node".into()), ("dc".into(), "dc1".into())];
        tg.extend(pairs.into_iter().take(8));
        t.apply(&Event::Member(Member {
            name: Arc::from("big"),
            addr: "127.0.0.9:8301".parse().unwrap(),
            incarnation: 1,
            state: State::Alive,
            tags: Arc::from(tags::encode(&tg).unwrap()),
        }));
        t.publish();
        let mut cfg = DnsConfig::default();
        let m = ask(
            &t,
            &cfg,
            "big.node.consul.",
            RecordType::TXT,
            false,
            Transport::Udp,
        );
        assert_eq!(m.answers.len(), 3, "udp_answer_limit without EDNS");
        assert!(!m.metadata.truncation, "Consul trims silently by default");
        cfg.enable_truncate = true;
        let m = ask(
            &t,
            &cfg,
            "big.node.consul.",
            RecordType::TXT,
            false,
            Transport::Udp,
        );
        assert!(m.metadata.truncation);
        let m = ask(
            &t,
            &cfg,
            "big.node.consul.",
            RecordType::TXT,
            false,
            Transport::Tcp,
        );
        assert_eq!(m.answers.len(), 9, "eight keys and the segment");
        assert!(!m.metadata.truncation);
        let m = ask(
            &t,
            &cfg,
            "big.node.consul.",
            RecordType::TXT,
            true,
            Transport::Udp,
        );
        assert_eq!(m.answers.len(), 9, "EDNS raises the limit");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_queries_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let t = table();
            let cfg = DnsConfig::default();
            let services = CatalogServices::with_servers(t.clone());
            let a = Answerer { cfg: &cfg, table: &t, services: &services };
            if let Ok(req) = Message::from_vec(&bytes) {
                let _ = a.respond(&req, Transport::Udp, &mut Rng::new(3));
            } else {
                let _ = formerr(&bytes);
            }
            let _ = crate::dns::cache::shape(&bytes, &mut Vec::new());
        }
    }

    #[test]
    fn formerr_needs_a_header() {
        assert!(formerr(&[0; 5]).is_none());
        let r =
            Message::from_vec(&formerr(&[0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff]).unwrap())
                .unwrap();
        assert_eq!(r.metadata.id, 0x1234);
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    }
}
