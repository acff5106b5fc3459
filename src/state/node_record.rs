//! A node's catalog record: its services and checks as it publishes them through gossip (the bytes of
//! the core's member record). Encoded compactly (postcard) behind a format byte, so a later format can be
//! told apart; decoding is bounded by the gossip layer's record limit and never panics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::definitions::{CheckDef, ServiceDef, Status};
use super::local_services::CheckState;

/// The format byte of records this version writes.
const FORMAT: u8 = 1;

/// One service instance on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// Unique on its node.
    pub id: String,
    /// Service name.
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Address ("" = the node's).
    pub address: String,
    /// Port.
    pub port: u16,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// Tagged addresses, as JSON text (kept as the owner was given them).
    pub tagged_addresses: String,
    /// Consul's `EnableTagOverride`.
    pub enable_tag_override: bool,
    /// SRV weights (passing, warning).
    pub weights: (u32, u32),
}

impl ServiceRecord {
    /// A plain service: the node's address, no meta or tagged addresses, weights 1/1.
    pub fn plain(id: &str, name: &str, tags: &[&str], port: u16) -> Self {
        ServiceRecord {
            id: id.to_owned(),
            name: name.to_owned(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            address: String::new(),
            port,
            meta: BTreeMap::new(),
            tagged_addresses: "{}".into(),
            enable_tag_override: false,
            weights: (1, 1),
        }
    }
}

/// One health check on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRecord {
    /// Unique on its node.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Status: 0 passing, 1 warning, 2 critical.
    pub status: u8,
    /// Notes.
    pub notes: String,
    /// Last output.
    pub output: String,
    /// Service the check belongs to ("" for a node check).
    pub service_id: String,
    /// Consul's `Type` (`ttl`, `http`, ...).
    pub kind: String,
}

impl CheckRecord {
    /// The status as a [`Status`] (an unknown code reads as critical: never show a bad check healthy).
    pub fn status(&self) -> Status {
        match self.status {
            0 => Status::Passing,
            1 => Status::Warning,
            _ => Status::Critical,
        }
    }
}

/// Everything a node publishes about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Services, by ID.
    pub services: Vec<ServiceRecord>,
    /// Checks, by ID.
    pub checks: Vec<CheckRecord>,
}

/// Why a received record was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordDecodeError {
    /// Empty.
    Empty,
    /// A format this version does not know (a newer murmur wrote it).
    Format(u8),
    /// The body does not decode.
    Body(String),
}

impl std::fmt::Display for RecordDecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordDecodeError::Empty => write!(f, "empty record"),
            RecordDecodeError::Format(v) => write!(f, "unknown record format {v}"),
            RecordDecodeError::Body(e) => write!(f, "undecodable record: {e}"),
        }
    }
}

impl std::error::Error for RecordDecodeError {}

/// A status as records carry it.
pub(super) fn status_code(s: Status) -> u8 {
    match s {
        Status::Passing => 0,
        Status::Warning => 1,
        Status::Critical => 2,
    }
}

impl NodeRecord {
    /// The record of a node's local services and checks.
    pub fn from_local(services: &[ServiceDef], checks: &[CheckState]) -> Self {
        let names: BTreeMap<&str, &str> = services
            .iter()
            .map(|s| (s.id.as_str(), s.name.as_str()))
            .collect();
        NodeRecord {
            services: services.iter().map(service_record).collect(),
            checks: checks
                .iter()
                // A check of a service that is gone (a reload race) is not published.
                .filter(|c| {
                    c.def
                        .service_id
                        .as_deref()
                        .is_none_or(|id| names.contains_key(id))
                })
                .map(|c| check_record(&c.def, c.status, &c.output))
                .collect(),
        }
    }

    /// The record with every check's output left out: what is published when the whole one would
    /// exceed a gossip record.
    pub fn without_outputs(mut self) -> Self {
        self.checks.iter_mut().for_each(|c| c.output.clear());
        self
    }

    /// The bytes published.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        // Serializing plain owned data into a Vec cannot fail.
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    /// Reads published bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordDecodeError> {
        match bytes.split_first() {
            None => Err(RecordDecodeError::Empty),
            Some((&FORMAT, body)) => {
                postcard::from_bytes(body).map_err(|e| RecordDecodeError::Body(e.to_string()))
            }
            Some((&v, _)) => Err(RecordDecodeError::Format(v)),
        }
    }

    /// True when `other` differs from this only in check outputs (which Consul publishes at most every
    /// `check_update_interval`).
    pub fn same_but_outputs(&self, other: &NodeRecord) -> bool {
        self.services == other.services
            && self.checks.len() == other.checks.len()
            && self.checks.iter().zip(&other.checks).all(|(a, b)| {
                CheckRecord {
                    output: String::new(),
                    ..a.clone()
                } == CheckRecord {
                    output: String::new(),
                    ..b.clone()
                }
            })
    }
}

/// The `consul` service a server carries (Consul's leader registers it for every server).
pub fn consul_service_record(server_port: u16) -> ServiceRecord {
    ServiceRecord::plain("consul", "consul", &[], server_port)
}

/// A service definition as records carry it.
pub(super) fn service_record(s: &ServiceDef) -> ServiceRecord {
    ServiceRecord {
        id: s.id.clone(),
        name: s.name.clone(),
        tags: s.tags.clone(),
        address: s.address.clone(),
        port: s.port,
        meta: s.meta.clone(),
        tagged_addresses: serde_json::Value::Object(s.tagged_addresses.clone()).to_string(),
        enable_tag_override: s.enable_tag_override,
        weights: s.weights,
    }
}

fn check_record(def: &CheckDef, status: Status, output: &str) -> CheckRecord {
    CheckRecord {
        id: def.id.clone(),
        name: def.name.clone(),
        status: status_code(status),
        notes: def.notes.clone(),
        output: output.to_owned(),
        service_id: def.service_id.clone().unwrap_or_default(),
        kind: def.kind.type_name().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeRecord {
        NodeRecord {
            services: vec![ServiceRecord {
                id: "web-1".into(),
                name: "web".into(),
                tags: vec!["v1".into()],
                address: String::new(),
                port: 80,
                meta: BTreeMap::from([("k".into(), "v".into())]),
                tagged_addresses: "{}".into(),
                enable_tag_override: false,
                weights: (1, 1),
            }],
            checks: vec![CheckRecord {
                id: "service:web-1".into(),
                name: "Service 'web' check".into(),
                status: 0,
                notes: String::new(),
                output: "ok".into(),
                service_id: "web-1".into(),
                kind: "ttl".into(),
            }],
        }
    }

    #[test]
    fn roundtrips_and_refuses_what_it_cannot_read() {
        let r = sample();
        let bytes = r.encode();
        assert_eq!(NodeRecord::decode(&bytes).unwrap(), r);
        assert_eq!(NodeRecord::decode(&[]), Err(RecordDecodeError::Empty));
        assert_eq!(
            NodeRecord::decode(&[9, 0, 0]),
            Err(RecordDecodeError::Format(9))
        );
        for n in 1..bytes.len() {
            // Every truncation is an error, never a panic.
            assert!(NodeRecord::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
        // Three services and a check stay well inside one datagram.
        assert!(bytes.len() < 200, "{} bytes", bytes.len());
    }

    #[test]
    fn the_fuzz_seed_decodes() {
        let seed = include_bytes!("../../fuzz/corpus/node_record/seed-two-services-one-check");
        let r = NodeRecord::decode(seed).unwrap();
        assert_eq!(r.services[1], consul_service_record(8300));
        assert_eq!(r.checks[0].output, "HTTP GET ok");
    }

    #[test]
    fn output_only_changes_are_told_apart() {
        let a = sample();
        let mut b = a.clone();
        b.checks[0].output = "still ok".into();
        assert!(a.same_but_outputs(&b));
        b.checks[0].status = 2;
        assert!(!a.same_but_outputs(&b));
    }
}
