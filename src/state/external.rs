//! The servers' external catalog: nodes, services and checks registered with `/v1/catalog/register`
//! that no agent owns (Consul's external services: a managed database, a SaaS endpoint, a node that
//! consul-esm watches). Gossip carries what agents own; these live in the replicated log instead, and
//! every agent mirrors them into its own catalog (see `agent/external_mirror.rs`), so reads and DNS
//! still never leave the agent.
//!
//! Registration follows Consul's state store: a node is created or updated unless `SkipNodeUpdate`,
//! a service is replaced by ID, a check by ID, and a check of a service the node does not have is
//! refused; the whole registration applies or none of it does.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::kv::Refusal;
use super::node_record::{CheckRecord, ServiceRecord};
use super::watched::Watched;

/// An external node's own fields (structs.Node).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node name.
    pub node: String,
    /// Node ID (a UUID, or empty).
    pub id: String,
    /// Address: an IP or a host name.
    pub address: String,
    /// Datacenter it was registered in.
    pub datacenter: String,
    /// Tagged addresses (`lan`, `wan`, ...).
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    pub meta: BTreeMap<String, String>,
}

/// One external node with everything registered on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalNode {
    /// The node's own fields.
    pub info: NodeInfo,
    /// Services, sorted by ID.
    pub services: Vec<ServiceRecord>,
    /// Checks, sorted by ID.
    pub checks: Vec<CheckRecord>,
    /// Raft index of the node's registration.
    pub create_index: u64,
    /// Raft index of its last change.
    pub modify_index: u64,
}

impl ExternalNode {
    fn same_content(&self, other: &ExternalNode) -> bool {
        let bare = |n: &ExternalNode| ExternalNode {
            create_index: 0,
            modify_index: 0,
            ..n.clone()
        };
        bare(self) == bare(other)
    }
}

/// `PUT /v1/catalog/register` (structs.RegisterRequest), validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The node's fields.
    pub info: NodeInfo,
    /// Leave the node's own fields as they are (the node must exist).
    pub skip_node_update: bool,
    /// A service to create or replace.
    pub service: Option<ServiceRecord>,
    /// Checks to create or replace.
    pub checks: Vec<CheckRecord>,
}

/// A write to the external catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogOp {
    /// `/v1/catalog/register`.
    Register(Box<Registration>),
    /// `/v1/catalog/deregister`: a service (with its checks), else a check, else the whole node.
    Deregister {
        /// Node name.
        node: String,
        /// The service to remove.
        service_id: Option<String>,
        /// The check to remove.
        check_id: Option<String>,
    },
}

impl CatalogOp {
    /// The node the operation is about.
    pub fn node(&self) -> &str {
        match self {
            CatalogOp::Register(r) => &r.info.node,
            CatalogOp::Deregister { node, .. } => node,
        }
    }
}

/// The external catalog as snapshots carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalImage {
    /// Index of the table's last change.
    pub index: u64,
    /// Every node, sorted by name.
    pub nodes: Vec<ExternalNode>,
}

/// What changed in the table since a reader's index: every agent mirrors the table, and sending it
/// whole on each change would cost the servers the table's size times the number of agents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalDelta {
    /// The whole table follows (the reader is new, or too far behind for this server's record of
    /// removals): replace, do not patch.
    pub whole: bool,
    /// Nodes changed since the reader's index (all of them when `whole`), sorted by name.
    pub nodes: Vec<ExternalNode>,
    /// Nodes removed since the reader's index.
    pub removed: Vec<String>,
}

/// Removed node names a server remembers for deltas; a reader further behind gets the whole table.
const MAX_REMOVED: usize = 4096;

#[derive(Default)]
struct Data {
    nodes: BTreeMap<String, Arc<ExternalNode>>,
    index: u64,
    /// Nodes removed, with the index of their removal. This server's own record for deltas, not part
    /// of the replicated state (each server answers deltas from its own).
    removed: BTreeMap<String, u64>,
    /// A delta from an index below this may miss a removal: such a reader gets the whole table.
    floor: u64,
}

impl Data {
    fn note_removed(&mut self, node: &str, index: u64) {
        self.removed.insert(node.to_owned(), index);
        if self.removed.len() > MAX_REMOVED
            && let Some((oldest, at)) = self
                .removed
                .iter()
                .min_by_key(|(_, i)| **i)
                .map(|(n, i)| (n.clone(), *i))
        {
            self.removed.remove(&oldest);
            self.floor = self.floor.max(at);
        }
    }
}

/// The replicated table of external nodes.
#[derive(Default)]
pub struct ExternalCatalog {
    table: Watched<Data>,
}

impl ExternalCatalog {
    /// Applies `op` at raft index `index`: true when the table changed (and its index moved to
    /// `index`); a refused operation changes nothing.
    pub fn apply(&self, index: u64, op: &CatalogOp) -> Result<bool, Refusal> {
        let changed = {
            let mut d = self.table.write();
            let changed = match op {
                CatalogOp::Register(r) => {
                    let changed = register(&mut d.nodes, index, r)?;
                    d.removed.remove(&r.info.node);
                    changed
                }
                CatalogOp::Deregister {
                    node,
                    service_id,
                    check_id,
                } => {
                    let changed = deregister(
                        &mut d.nodes,
                        index,
                        node,
                        service_id.as_deref(),
                        check_id.as_deref(),
                    );
                    if changed && !d.nodes.contains_key(node) {
                        d.note_removed(node, index);
                    }
                    changed
                }
            };
            if changed {
                d.index = index;
            }
            changed
        };
        if changed {
            self.table.notify(index);
        }
        Ok(changed)
    }

    /// Whether `node` is in the table.
    pub fn contains(&self, node: &str) -> bool {
        self.table.read().nodes.contains_key(node)
    }

    /// Every node, with the table's index.
    pub fn query(&self) -> (u64, Vec<ExternalNode>) {
        let d = self.table.read();
        let nodes = d.nodes.values().map(|n| (**n).clone()).collect();
        (d.index.max(1), nodes)
    }

    /// What changed since index `since` (0: everything), and the table's index.
    pub fn delta(&self, since: u64) -> (u64, ExternalDelta) {
        let d = self.table.read();
        let index = d.index.max(1);
        // A reader ahead of this server saw another history (a lagging server, or a restored one).
        if since == 0 || since < d.floor || since > d.index {
            let nodes = d.nodes.values().map(|n| (**n).clone()).collect();
            return (
                index,
                ExternalDelta {
                    whole: true,
                    nodes,
                    removed: Vec::new(),
                },
            );
        }
        let nodes = d
            .nodes
            .values()
            .filter(|n| n.modify_index > since)
            .map(|n| (**n).clone())
            .collect();
        let removed = d
            .removed
            .iter()
            .filter(|(_, i)| **i > since)
            .map(|(n, _)| n.clone())
            .collect();
        (
            index,
            ExternalDelta {
                whole: false,
                nodes,
                removed,
            },
        )
    }

    /// Waits until the table's index passes `min` (or `deadline`), then answers what changed since
    /// `since`.
    pub async fn wait(&self, min: u64, since: u64, deadline: Instant) -> (u64, ExternalDelta) {
        self.table.wait(min, deadline, || self.delta(since)).await
    }

    /// The whole table, for a snapshot.
    pub fn image(&self) -> ExternalImage {
        let d = self.table.read();
        ExternalImage {
            index: d.index,
            nodes: d.nodes.values().map(|n| (**n).clone()).collect(),
        }
    }

    /// Replaces the table with a snapshot's.
    pub fn restore(&self, image: ExternalImage) {
        {
            let mut d = self.table.write();
            // Removals before the snapshot are unknown here: readers from before it get it whole.
            d.removed.clear();
            d.floor = image.index;
            d.index = image.index;
            d.nodes = image
                .nodes
                .into_iter()
                .map(|n| (n.info.node.clone(), Arc::new(n)))
                .collect();
        }
        self.table.notify(image.index);
    }
}

/// Upserts `item` into `list` (sorted by `key`); true when it changed.
fn upsert<T: Clone + PartialEq>(list: &mut Vec<T>, item: &T, key: impl Fn(&T) -> &str) -> bool {
    match list.binary_search_by(|x| key(x).cmp(key(item))) {
        Ok(i) if list[i] == *item => false,
        Ok(i) => {
            list[i] = item.clone();
            true
        }
        Err(i) => {
            list.insert(i, item.clone());
            true
        }
    }
}

fn register(
    nodes: &mut BTreeMap<String, Arc<ExternalNode>>,
    index: u64,
    r: &Registration,
) -> Result<bool, Refusal> {
    let old = nodes.get(&r.info.node);
    let mut n = match old {
        Some(n) => (**n).clone(),
        None if r.skip_node_update => return Err(Refusal::MissingNode(r.info.node.clone())),
        None => ExternalNode {
            create_index: index,
            ..ExternalNode::default()
        },
    };
    if !r.skip_node_update {
        n.info.clone_from(&r.info);
    }
    if let Some(s) = &r.service {
        upsert(&mut n.services, s, |s| &s.id);
    }
    for c in &r.checks {
        if !c.service_id.is_empty() && !n.services.iter().any(|s| s.id == c.service_id) {
            return Err(Refusal::MissingService(c.service_id.clone()));
        }
        upsert(&mut n.checks, c, |c| &c.id);
    }
    if old.is_some_and(|o| o.same_content(&n)) {
        return Ok(false);
    }
    n.modify_index = index;
    nodes.insert(n.info.node.clone(), Arc::new(n));
    Ok(true)
}

fn deregister(
    nodes: &mut BTreeMap<String, Arc<ExternalNode>>,
    index: u64,
    node: &str,
    service_id: Option<&str>,
    check_id: Option<&str>,
) -> bool {
    let Some(old) = nodes.get(node) else {
        // Consul answers true for what is already gone.
        return false;
    };
    let mut n = (**old).clone();
    match (service_id, check_id) {
        (Some(s), _) => {
            n.services.retain(|x| x.id != s);
            n.checks.retain(|c| c.service_id != s);
        }
        (None, Some(c)) => n.checks.retain(|x| x.id != c),
        (None, None) => {
            nodes.remove(node);
            return true;
        }
    }
    if old.same_content(&n) {
        return false;
    }
    n.modify_index = index;
    nodes.insert(n.info.node.clone(), Arc::new(n));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(node: &str, service: Option<&str>, checks: &[(&str, &str)]) -> CatalogOp {
        CatalogOp::Register(Box::new(Registration {
            info: NodeInfo {
                node: node.into(),
                id: String::new(),
                address: "10.1.0.1".into(),
                datacenter: "dc1".into(),
                tagged_addresses: BTreeMap::new(),
                meta: BTreeMap::from([("external-node".into(), "true".into())]),
            },
            skip_node_update: false,
            service: service.map(|s| ServiceRecord::plain(s, s, &[], 80)),
            checks: checks
                .iter()
                .map(|(id, svc)| CheckRecord {
                    id: (*id).into(),
                    name: (*id).into(),
                    status: 0,
                    notes: String::new(),
                    output: String::new(),
                    service_id: (*svc).into(),
                    kind: String::new(),
                })
                .collect(),
        }))
    }

    fn dereg(node: &str, service: Option<&str>, check: Option<&str>) -> CatalogOp {
        CatalogOp::Deregister {
            node: node.into(),
            service_id: service.map(Into::into),
            check_id: check.map(Into::into),
        }
    }

    #[test]
    fn registrations_build_nodes_and_refusals_change_nothing() {
        let t = ExternalCatalog::default();
        t.apply(5, &reg("db", Some("pg"), &[("pg-up", "pg"), ("disk", "")]))
            .unwrap();
        let (index, nodes) = t.query();
        assert_eq!(index, 5);
        assert_eq!(nodes[0].services[0].id, "pg");
        let ids: Vec<&str> = nodes[0].checks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["disk", "pg-up"], "sorted by ID");
        // A second service is added beside the first; the node keeps its creation index.
        t.apply(6, &reg("db", Some("redis"), &[])).unwrap();
        let (_, nodes) = t.query();
        assert_eq!(nodes[0].services.len(), 2);
        assert_eq!((nodes[0].create_index, nodes[0].modify_index), (5, 6));
        // The same registration again changes nothing, not even the index.
        assert!(!t.apply(7, &reg("db", Some("redis"), &[])).unwrap());
        assert_eq!(t.query().0, 6);
        // A check of a service the node lacks is refused as a whole.
        let bad = reg("db", Some("mq"), &[("x", "nope")]);
        assert_eq!(
            t.apply(8, &bad),
            Err(Refusal::MissingService("nope".into()))
        );
        assert!(t.query().1[0].services.iter().all(|s| s.id != "mq"));
        // Skipping the node update needs the node.
        let CatalogOp::Register(mut r) = reg("ghost", Some("s"), &[]) else {
            unreachable!()
        };
        r.skip_node_update = true;
        assert_eq!(
            t.apply(9, &CatalogOp::Register(r)),
            Err(Refusal::MissingNode("ghost".into()))
        );
        assert_eq!(t.query().1.len(), 1);
    }

    #[test]
    fn deregistration_removes_a_service_with_its_checks_a_check_or_the_node() {
        let t = ExternalCatalog::default();
        t.apply(1, &reg("db", Some("pg"), &[("pg-up", "pg"), ("disk", "")]))
            .unwrap();
        t.apply(2, &dereg("db", Some("pg"), None)).unwrap();
        let n = &t.query().1[0];
        assert!(n.services.is_empty());
        assert_eq!(n.checks.len(), 1, "the node check stays");
        t.apply(3, &dereg("db", None, Some("disk"))).unwrap();
        assert!(t.query().1[0].checks.is_empty());
        // Already gone: no change, no index move.
        t.apply(4, &dereg("db", None, Some("disk"))).unwrap();
        t.apply(4, &dereg("nobody", None, None)).unwrap();
        assert_eq!(t.query().0, 3);
        t.apply(5, &dereg("db", None, None)).unwrap();
        assert_eq!(t.query(), (5, vec![]));
    }

    fn names(nodes: &[ExternalNode]) -> Vec<&str> {
        nodes.iter().map(|n| n.info.node.as_str()).collect()
    }

    #[test]
    fn deltas_carry_changes_and_removals_and_fall_back_to_the_whole_table() {
        let t = ExternalCatalog::default();
        t.apply(1, &reg("a", None, &[])).unwrap();
        t.apply(2, &reg("b", None, &[])).unwrap();
        let (index, d) = t.delta(0);
        assert_eq!(index, 2);
        assert!(d.whole);
        assert_eq!(names(&d.nodes), ["a", "b"]);
        t.apply(3, &reg("b", Some("s"), &[])).unwrap();
        t.apply(4, &dereg("a", None, None)).unwrap();
        let (index, d) = t.delta(2);
        assert_eq!(index, 4);
        assert!(!d.whole);
        assert_eq!(names(&d.nodes), ["b"]);
        assert_eq!(d.removed, ["a"]);
        // Registered again: a change, no longer a removal.
        t.apply(5, &reg("a", None, &[])).unwrap();
        let (_, d) = t.delta(4);
        assert_eq!((names(&d.nodes), d.removed.len()), (vec!["a"], 0));
        // A reader ahead of this server gets it whole, and so do readers from before a restore.
        assert!(t.delta(99).1.whole);
        let restored = ExternalCatalog::default();
        restored.restore(t.image());
        assert!(restored.delta(3).1.whole);
        assert!(!restored.delta(5).1.whole);
    }

    #[test]
    fn readers_behind_the_removals_kept_get_the_whole_table() {
        let t = ExternalCatalog::default();
        let n = MAX_REMOVED as u64 + 1;
        for i in 1..=n {
            t.apply(i, &reg(&format!("n{i}"), None, &[])).unwrap();
        }
        for i in 1..=n {
            t.apply(n + i, &dereg(&format!("n{i}"), None, None))
                .unwrap();
        }
        // The first removal (index n + 1) was forgotten: a reader from before it cannot be patched.
        assert!(t.delta(n).1.whole);
        let (_, d) = t.delta(n + 1);
        assert!(!d.whole);
        assert_eq!(d.removed.len(), MAX_REMOVED);
    }

    #[tokio::test]
    async fn a_blocked_reader_wakes_on_a_change_and_restores_replace_the_table() {
        let t = Arc::new(ExternalCatalog::default());
        t.apply(3, &reg("db", None, &[])).unwrap();
        let far = Instant::now() + std::time::Duration::from_secs(30);
        let waiter = {
            let t = t.clone();
            tokio::spawn(async move { t.wait(3, 3, far).await.0 })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        t.apply(4, &reg("web", None, &[])).unwrap();
        assert_eq!(waiter.await.unwrap(), 4);
        let image = t.image();
        let other = ExternalCatalog::default();
        other.restore(image.clone());
        assert_eq!(other.image(), image);
        assert_eq!(other.query().1.len(), 2);
    }
}
