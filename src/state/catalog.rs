//! The service catalog every agent holds: each node's published record (its services and checks, from
//! gossip), indexed by service name for catalog, health and DNS reads that never leave the agent.
//!
//! Nodes registered at the servers' external catalog (`/v1/catalog/register`) sit beside them, mirrored
//! from the servers; a gossip member of the same name takes precedence.
//!
//! Two writers (the gossip driver, through [`super::publish::Publisher`], and the external mirror) that
//! take turns, and lock-free readers: records and per-service instance lists sit in papaya maps of
//! `Arc`s, replaced whole. Each service name has
//! its own modify index, and a blocking query on a service waits on that name's own watch, so a change
//! to `db` wakes nobody who watches `web` (Consul wakes every watcher of a table, hashicorp/consul #3890).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::time::Instant;

use super::changed_services::{ChangedServices, Changes};
use super::external::ExternalNode;
use super::node_indexes::NodeIndexes;
use super::node_record::{CheckRecord, NodeRecord, ServiceRecord};

/// One node's record as the catalog holds it.
#[derive(Debug)]
pub struct NodeEntry {
    /// Node name.
    pub node: Arc<str>,
    /// Record version (the owner's counter).
    pub version: u32,
    /// What it publishes.
    pub record: NodeRecord,
    /// Catalog index when the node first published.
    pub create_index: u64,
    /// Catalog index of its last change.
    pub modify_index: u64,
    /// The node's own fields when it is an external node (no agent, registered at the servers).
    pub external: Option<Arc<ExternalNode>>,
}

/// One service instance: the service on its node, with the node's checks and the service's own.
#[derive(Debug)]
pub struct Instance {
    /// Node name.
    pub node: Arc<str>,
    /// The service.
    pub service: ServiceRecord,
    /// Node-level checks, then the service's checks.
    pub checks: Vec<CheckRecord>,
    /// Catalog index when the node first published.
    pub create_index: u64,
    /// Catalog index of the instance's last change (its service or one of its checks).
    pub modify_index: u64,
}

/// The instances of one service name, by node then service ID.
#[derive(Debug, Default)]
pub struct ServiceEntries {
    /// Catalog index of the last change to this list (or to the health of a node in it).
    pub index: u64,
    /// The instances.
    pub instances: Vec<Arc<Instance>>,
}

/// Service names and their tags (`/v1/catalog/services`).
#[derive(Debug, Default)]
pub struct Listing {
    /// Catalog index of the last change to the names or tags.
    pub index: u64,
    /// Name -> sorted distinct tags.
    pub services: BTreeMap<String, BTreeSet<String>>,
}

/// The catalog.
pub struct Catalog {
    nodes: papaya::HashMap<Arc<str>, Arc<NodeEntry>>,
    services: papaya::HashMap<String, Arc<ServiceEntries>>,
    /// Index of the last change to the service names or tags.
    listing_index: AtomicU64,
    /// The listing as last built; rebuilt by the first reader after a change, so the writer (the
    /// gossip driver) never walks every service for each record it applies.
    listing: Mutex<Arc<Listing>>,
    /// Last index handed out to a change.
    index: AtomicU64,
    /// Index of the last change whose data readers can see: what [`Catalog::index`] reports, so a
    /// reader never gets an index ahead of the data it read.
    published: AtomicU64,
    /// Per-service watches, created by the readers that wait. Writers notify under this lock after
    /// updating the maps, readers subscribe under it before reading them: no wake-up is lost.
    watches: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Any change at all (queries over every node wait on it).
    any: watch::Sender<u64>,
    /// Each node's own last change (reads of one node wait on it).
    node_indexes: NodeIndexes,
    /// The service names changed lately (the DNS cache drops just those).
    changed_services: ChangedServices,
    /// The member table's index as of the last member change applied here. A node's index is this
    /// catalog's plus this, so it is never below the `ModifyIndex` of the member or of anything it
    /// publishes, as Consul's `X-Consul-Index` never is.
    members_index: AtomicU64,
    /// Records that did not decode (a newer format, or garbage), dropped.
    pub undecodable: AtomicU64,
    /// Held by each writer for a whole change: an instance list is read, edited and replaced.
    writer: Mutex<()>,
    /// External nodes as the servers last listed them, by name.
    externals: arc_swap::ArcSwap<Vec<Arc<ExternalNode>>>,
    /// Index of the last change to the external nodes (0: none yet).
    external_index: AtomicU64,
    /// The servers' index of the external catalog last mirrored (raft's, not this catalog's).
    mirrored: watch::Sender<u64>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            nodes: papaya::HashMap::new(),
            services: papaya::HashMap::new(),
            listing_index: AtomicU64::new(1),
            listing: Mutex::new(Arc::new(Listing {
                index: 1,
                services: BTreeMap::new(),
            })),
            index: AtomicU64::new(1),
            published: AtomicU64::new(1),
            watches: Mutex::new(HashMap::new()),
            any: watch::Sender::new(1),
            node_indexes: NodeIndexes::default(),
            changed_services: ChangedServices::default(),
            members_index: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
            writer: Mutex::new(()),
            externals: Default::default(),
            external_index: AtomicU64::new(0),
            mirrored: watch::Sender::new(0),
        }
    }
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// The index of the newest change readers can see (never 0).
    pub fn index(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    fn next_index(&self) -> u64 {
        self.index.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies node `node`'s record at `version` (raw bytes from gossip). Only the driver calls this.
    pub fn apply_record(&self, node: &Arc<str>, version: u32, bytes: &[u8]) {
        let _turn = self.lock_writer();
        let record = match NodeRecord::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                // Not the old record either: the node has moved on (a newer format, or garbage), and
                // advertising what it used to run would route traffic to services it may have dropped.
                self.undecodable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "catalog record of {node} (version {version}) unreadable, its services are left out: {e}"
                );
                self.remove_entry(node, false);
                return;
            }
        };
        let old = self.nodes.pin().get(&**node).cloned();
        if old.as_ref().is_some_and(|o| o.record == record) {
            return;
        }
        let index = self.next_index();
        let entry = Arc::new(NodeEntry {
            node: node.clone(),
            version,
            record,
            create_index: old.as_ref().map_or(index, |o| o.create_index),
            modify_index: index,
            external: None,
        });
        self.nodes.pin().insert(node.clone(), entry.clone());
        let touched = names_of(old.as_deref()).chain(names_of(Some(&entry)));
        self.rebuild(node, Some(&entry), touched.collect(), index, false);
    }

    /// Removes a member's record (it left, was force-left or reaped); an external node of the name,
    /// which the member's record hid, shows again.
    pub fn remove_node(&self, node: &str) {
        let _turn = self.lock_writer();
        let externals = self.externals.load();
        let external = externals.iter().find(|n| n.info.node == node);
        if !self.remove_entry(node, false) {
            self.node_alone_changed(node, external.is_none());
        }
        if let Some(n) = external {
            self.put_external(n);
        }
    }

    /// The member table has reached `index` (called before the catalog hears of that member change).
    pub fn note_members_index(&self, index: u64) {
        self.members_index.fetch_max(index, Ordering::AcqRel);
    }

    /// Node `node` changed at catalog index `index`: its node index moves (see `members_index`).
    fn stamp_node(&self, node: &Arc<str>, index: u64, removed: bool) {
        let at = index + self.members_index.load(Ordering::Acquire);
        self.node_indexes.stamp(node, at, removed);
    }

    /// A member without a record changed (`removed`: it left the catalog): nothing but the reads of
    /// that node see it, so only its index and the global one move.
    fn node_alone_changed(&self, node: &str, removed: bool) {
        let index = self.next_index();
        self.published.store(index, Ordering::Release);
        self.stamp_node(&Arc::from(node), index, removed);
        self.any.send_replace(index);
    }

    /// Removes `node`'s entry if it is a member's (`external` false) or an external node's (true);
    /// true when it did.
    fn remove_entry(&self, node: &str, external: bool) -> bool {
        let nodes = self.nodes.pin();
        let Some(old) = nodes.get(node).cloned() else {
            return false;
        };
        if old.external.is_some() != external {
            return false;
        }
        nodes.remove(node);
        let index = self.next_index();
        self.rebuild(
            &old.node,
            None,
            names_of(Some(&old)).collect(),
            index,
            false,
        );
        true
    }

    /// The node's health changed (failed, or back alive): its services' results change with it.
    pub fn node_health_changed(&self, node: &str) {
        let _turn = self.lock_writer();
        let Some(entry) = self.nodes.pin().get(node).cloned() else {
            // No services: only node-level queries see it.
            self.node_alone_changed(node, false);
            return;
        };
        let index = self.next_index();
        let touched = names_of(Some(&entry)).collect();
        self.rebuild(&entry.node, Some(&entry), touched, index, true);
    }

    /// Replaces the external nodes with the servers' list (sorted by name) as of the servers' index
    /// `servers_index`: nodes that changed are rebuilt, nodes no longer listed removed. A name a
    /// gossip member publishes under is left to it.
    pub fn set_external(&self, servers_index: u64, nodes: Vec<ExternalNode>) {
        let _turn = self.lock_writer();
        self.set_external_nodes(nodes.into_iter().map(Arc::new).collect());
        self.mirrored.send_replace(servers_index);
    }

    /// Applies the servers' changes as of `servers_index`: `changed` nodes replace theirs, `removed`
    /// ones go.
    pub fn patch_external(
        &self,
        servers_index: u64,
        changed: Vec<ExternalNode>,
        removed: &[String],
    ) {
        let _turn = self.lock_writer();
        // Only the nodes named are touched: a check flip on one of thousands costs one node's work.
        let mut by_name: BTreeMap<String, Arc<ExternalNode>> = self
            .externals
            .load()
            .iter()
            .map(|n| (n.info.node.clone(), n.clone()))
            .collect();
        let mut any = false;
        for name in removed {
            if by_name.remove(name).is_some() {
                any |= self.remove_entry(name, true);
            }
        }
        for n in changed {
            let n = Arc::new(n);
            any |= self.put_external(&n);
            by_name.insert(n.info.node.clone(), n);
        }
        self.externals
            .store(Arc::new(by_name.into_values().collect()));
        if any {
            self.external_changed();
        }
        self.mirrored.send_replace(servers_index);
    }

    /// Waits until the mirror has reached the servers' index `index` (a write of this agent's is then
    /// visible in its reads), or `deadline`; true when it has.
    pub async fn wait_mirrored(&self, index: u64, deadline: Instant) -> bool {
        let mut rx = self.mirrored.subscribe();
        tokio::time::timeout_at(deadline, rx.wait_for(|seen| *seen >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn set_external_nodes(&self, listed: Vec<Arc<ExternalNode>>) {
        // Only the servers' previous list can hold nodes that are gone (not every member's entry).
        let names: BTreeSet<&str> = listed.iter().map(|n| n.info.node.as_str()).collect();
        let mut changed = false;
        for old in self.externals.load().iter() {
            if !names.contains(old.info.node.as_str()) {
                changed |= self.remove_entry(&old.info.node, true);
            }
        }
        for n in &listed {
            changed |= self.put_external(n);
        }
        self.externals.store(Arc::new(listed));
        if changed {
            self.external_changed();
        }
    }

    /// Moves the external nodes' index and wakes node-level readers (they wait on `any`: a node's own
    /// fields may have changed without any service).
    fn external_changed(&self) {
        let index = self.next_index();
        self.external_index.store(index, Ordering::Release);
        // Node answers read external nodes too.
        self.changed_services.record_nodes(index);
        self.published.store(index, Ordering::Release);
        self.any.send_replace(index);
    }

    /// Puts external node `n` in the catalog unless a member's record holds its name or it is there
    /// as it is; true when it changed something.
    fn put_external(&self, n: &Arc<ExternalNode>) -> bool {
        let name: Arc<str> = Arc::from(n.info.node.as_str());
        let old = self.nodes.pin().get(&*name).cloned();
        match &old {
            Some(o) if o.external.is_none() => return false,
            Some(o)
                if o.external
                    .as_ref()
                    .is_some_and(|e| Arc::ptr_eq(e, n) || **e == **n) =>
            {
                return false;
            }
            _ => {}
        }
        let index = self.next_index();
        let entry = Arc::new(NodeEntry {
            node: name.clone(),
            version: 0,
            record: NodeRecord {
                services: n.services.clone(),
                checks: n.checks.clone(),
            },
            create_index: old.as_ref().map_or(index, |o| o.create_index),
            modify_index: index,
            external: Some(n.clone()),
        });
        self.nodes.pin().insert(name.clone(), entry.clone());
        let touched = names_of(old.as_deref()).chain(names_of(Some(&entry)));
        self.rebuild(&name, Some(&entry), touched.collect(), index, true);
        true
    }

    /// Index of the last change to the external nodes (0: none yet).
    pub fn external_index(&self) -> u64 {
        self.external_index.load(Ordering::Acquire)
    }

    /// The external nodes, sorted by name (a name a member also has is listed here too).
    pub fn external_nodes(&self) -> Arc<Vec<Arc<ExternalNode>>> {
        self.externals.load_full()
    }

    /// Replaces `node`'s instances in every service of `touched` with those of `entry`, stamps the
    /// lists that changed with `index` and wakes their watchers. An instance whose service and checks
    /// are unchanged is kept as it was, so a change to one service of a node leaves the node's other
    /// services (and their watchers) alone; `force` restamps them all (the node's health changed).
    fn rebuild(
        &self,
        node: &Arc<str>,
        entry: Option<&Arc<NodeEntry>>,
        touched: BTreeSet<String>,
        index: u64,
        force: bool,
    ) {
        let services = self.services.pin();
        let mut listing_changed = false;
        let mut changed = Vec::new();
        for name in touched {
            let old = services.get(name.as_str()).cloned().unwrap_or_default();
            let (mine, others): (Vec<_>, Vec<_>) =
                old.instances.iter().cloned().partition(|i| i.node == *node);
            let fresh: Vec<Arc<Instance>> = entry
                .map(|e| instances_of(e, &name, index))
                .unwrap_or_default()
                .into_iter()
                .map(|new| {
                    let same = mine
                        .iter()
                        .find(|o| o.service == new.service && o.checks == new.checks);
                    match same {
                        Some(o) if !force => o.clone(),
                        _ => new,
                    }
                })
                .collect();
            let unchanged = fresh.len() == mine.len()
                && fresh.iter().zip(&mine).all(|(a, b)| Arc::ptr_eq(a, b));
            if unchanged {
                continue;
            }
            let mut instances = others;
            instances.extend(fresh);
            instances.sort_by(|a, b| (&*a.node, &a.service.id).cmp(&(&*b.node, &b.service.id)));
            let before: BTreeSet<&String> =
                old.instances.iter().flat_map(|i| &i.service.tags).collect();
            let after: BTreeSet<&String> = instances.iter().flat_map(|i| &i.service.tags).collect();
            listing_changed |= before != after || old.instances.is_empty() != instances.is_empty();
            services.insert(name.clone(), Arc::new(ServiceEntries { index, instances }));
            changed.push(name);
        }
        if listing_changed {
            self.listing_index.store(index, Ordering::Release);
        }
        self.changed_services.record(index, &changed);
        self.published.store(index, Ordering::Release);
        self.stamp_node(node, index, entry.is_none());
        let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        for name in &changed {
            if let Some(tx) = watches.get(name) {
                tx.send_replace(index);
            }
        }
        watches.retain(|_, tx| tx.receiver_count() > 0);
        drop(watches);
        self.any.send_replace(index);
    }

    /// The instances of `name` (an empty list with index 1 if it never existed).
    pub fn service(&self, name: &str) -> Arc<ServiceEntries> {
        self.services.pin().get(name).cloned().unwrap_or_else(|| {
            Arc::new(ServiceEntries {
                index: 1,
                instances: Vec::new(),
            })
        })
    }

    /// The service names (and whether the external nodes) changed after catalog index `since` (the
    /// index of each change, as [`Catalog::index`] reports them), or `None` when those are no longer
    /// all known.
    pub fn changed_since(&self, since: u64) -> Option<Changes> {
        self.changed_services.since(since)
    }

    /// Waits until the index of service `name` passes `min` or `deadline` comes; returns its entries
    /// then. An index from the future (the agent restarted since the client saw it) answers at once.
    pub async fn wait_service(
        &self,
        name: &str,
        min: u64,
        deadline: Instant,
    ) -> Arc<ServiceEntries> {
        let mut rx = {
            let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
            watches
                .entry(name.to_owned())
                .or_insert_with(|| watch::Sender::new(0))
                .subscribe()
        };
        loop {
            let current = self.service(name);
            if current.index != min || min > self.index() {
                return current;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return self.service(name);
            }
        }
    }

    /// Service names and tags.
    pub fn listing(&self) -> Arc<Listing> {
        let mut cached = self.listing.lock().unwrap_or_else(|p| p.into_inner());
        let index = self.listing_index.load(Ordering::Acquire);
        if cached.index != index {
            let mut all = BTreeMap::new();
            for (name, e) in self.services.pin().iter() {
                if !e.instances.is_empty() {
                    let tags = e
                        .instances
                        .iter()
                        .flat_map(|i| i.service.tags.iter().cloned());
                    all.insert(name.clone(), tags.collect());
                }
            }
            *cached = Arc::new(Listing {
                index,
                services: all,
            });
        }
        cached.clone()
    }

    /// Waits until the listing's index passes `min` or `deadline` comes.
    pub async fn wait_listing(&self, min: u64, deadline: Instant) -> Arc<Listing> {
        self.wait_any(min, deadline, |c| c.listing_index.load(Ordering::Acquire))
            .await;
        self.listing()
    }

    /// Waits until `index_of(self)` differs from `min` (or `min` is from the future), or `deadline`.
    pub async fn wait_any(&self, min: u64, deadline: Instant, index_of: impl Fn(&Self) -> u64) {
        let mut rx = self.any.subscribe();
        loop {
            let now = index_of(self);
            if now != min || min > self.index() {
                return;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// The index of node `node`'s last change as node-level reads show it (its record, member state or
    /// external registration; 1 if never seen): this catalog's index then plus the member table's.
    pub fn node_index(&self, node: &str) -> u64 {
        self.node_indexes.get(node)
    }

    /// Waits until node `node`'s index differs from `min` (or `min` is from the future), or `deadline`;
    /// returns its index then.
    pub async fn wait_node(&self, node: &str, min: u64, deadline: Instant) -> u64 {
        let (mut rx, mut current) = self.node_indexes.subscribe(node);
        let newest = self.index() + self.members_index.load(Ordering::Acquire);
        while current == min && min <= newest {
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => current = self.node_indexes.get(node),
                _ => break,
            }
        }
        current
    }

    /// A receiver that sees every catalog change (for waits that combine it with the member table).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.any.subscribe()
    }

    /// One node's record.
    pub fn node(&self, node: &str) -> Option<Arc<NodeEntry>> {
        self.nodes.pin().get(node).cloned()
    }

    /// Nodes that published a record.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of blocking-query watches held open (for the agent's counters).
    pub fn watched_services(&self) -> usize {
        self.watches.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn names_of(entry: Option<&NodeEntry>) -> impl Iterator<Item = String> + '_ {
    entry
        .into_iter()
        .flat_map(|e| e.record.services.iter().map(|s| s.name.clone()))
}

/// The node's instances of service `name`, stamped `index` (by service ID, as the record lists them).
fn instances_of(e: &NodeEntry, name: &str, index: u64) -> Vec<Arc<Instance>> {
    e.record
        .services
        .iter()
        .filter(|s| s.name == name)
        .map(|s| {
            let checks = e
                .record
                .checks
                .iter()
                .filter(|c| c.service_id.is_empty() || c.service_id == s.id)
                .cloned()
                .collect();
            Arc::new(Instance {
                node: e.node.clone(),
                service: s.clone(),
                checks,
                create_index: e.create_index,
                modify_index: index,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::node_record::{CheckRecord, ServiceRecord};
    use std::time::Duration;

    fn svc(id: &str, name: &str, tags: &[&str]) -> ServiceRecord {
        ServiceRecord::plain(id, name, tags, 80)
    }

    fn check(id: &str, service: &str, status: u8) -> CheckRecord {
        CheckRecord {
            id: id.into(),
            name: id.into(),
            status,
            notes: String::new(),
            output: String::new(),
            service_id: service.into(),
            kind: "ttl".into(),
        }
    }

    fn publish(
        c: &Catalog,
        node: &str,
        version: u32,
        services: Vec<ServiceRecord>,
        checks: Vec<CheckRecord>,
    ) {
        let r = NodeRecord { services, checks };
        c.apply_record(&Arc::from(node), version, &r.encode());
    }

    #[test]
    fn instances_follow_records_and_each_service_keeps_its_own_index() {
        let c = Catalog::new();
        publish(
            &c,
            "a",
            1,
            vec![svc("web", "web", &["v1"]), svc("db", "db", &[])],
            vec![check("c1", "web", 0), check("n", "", 0)],
        );
        publish(&c, "b", 1, vec![svc("web", "web", &["v2"])], vec![]);
        let web = c.service("web");
        let nodes: Vec<&str> = web.instances.iter().map(|i| &*i.node).collect();
        assert_eq!(nodes, ["a", "b"]);
        // Node checks and the service's own, not another service's.
        let ids: Vec<&str> = web.instances[0]
            .checks
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(ids, ["c1", "n"]);
        let db_index = c.service("db").index;
        // b changes web only: db's index stands still.
        publish(&c, "b", 2, vec![svc("web", "web", &["v3"])], vec![]);
        assert_eq!(c.service("db").index, db_index);
        // a adds a service: its existing ones (and their watchers) are left alone.
        let web_index = c.service("web").index;
        publish(
            &c,
            "a",
            2,
            vec![
                svc("web", "web", &["v1"]),
                svc("db", "db", &[]),
                svc("mq", "mq", &[]),
            ],
            vec![check("c1", "web", 0), check("n", "", 0)],
        );
        assert_eq!(c.service("web").index, web_index);
        assert_eq!(c.service("mq").instances.len(), 1);
        assert!(c.service("web").index > db_index);
        let l = c.listing();
        assert_eq!(
            l.services["web"],
            BTreeSet::from(["v1".to_string(), "v3".to_string()])
        );
        c.remove_node("a");
        assert!(c.service("db").instances.is_empty());
        assert!(!c.listing().services.contains_key("db"));
        // The same record again changes nothing.
        let index = c.index();
        publish(&c, "b", 3, vec![svc("web", "web", &["v3"])], vec![]);
        assert_eq!(c.index(), index);
        // Garbage is counted, not applied.
        c.apply_record(&Arc::from("b"), 4, b"\x07junk");
        assert_eq!(c.undecodable.load(Ordering::Relaxed), 1);
        assert!(
            c.service("web").instances.is_empty(),
            "an unreadable record takes the node's old services out"
        );
    }

    #[tokio::test]
    async fn external_nodes_sit_beside_members_and_follow_the_servers_list() {
        let c = Catalog::new();
        publish(&c, "member", 1, vec![svc("web", "web", &[])], vec![]);
        let ext = |name: &str, port: u16| ExternalNode {
            info: crate::state::external::NodeInfo {
                node: name.into(),
                address: "10.0.0.9".into(),
                datacenter: "dc1".into(),
                ..Default::default()
            },
            services: vec![ServiceRecord::plain("web", "web", &[], port)],
            ..Default::default()
        };
        let ports = |c: &Catalog| -> Vec<(String, u16)> {
            c.service("web")
                .instances
                .iter()
                .map(|i| (i.node.to_string(), i.service.port))
                .collect()
        };
        let pair = |n: &str, p: u16| (n.to_string(), p);
        // A name a member publishes under stays the member's.
        c.set_external(5, vec![ext("db", 80), ext("member", 81)]);
        assert_eq!(ports(&c), [pair("db", 80), pair("member", 80)]);
        assert!(c.node("db").unwrap().external.is_some());
        assert!(c.node("member").unwrap().external.is_none());
        let index = c.external_index();
        assert!(index > 0);
        // The same list again changes nothing; the mirror's position still moves.
        c.set_external(6, vec![ext("db", 80), ext("member", 81)]);
        assert_eq!(c.external_index(), index);
        let soon = Instant::now() + Duration::from_millis(10);
        assert!(c.wait_mirrored(6, soon).await);
        assert!(!c.wait_mirrored(7, soon).await);
        // Gossip removing its member leaves external nodes alone; the servers' list removes them.
        c.remove_node("db");
        assert_eq!(c.service("web").instances.len(), 2);
        // Once the member goes, the external node of its name shows.
        c.remove_node("member");
        assert_eq!(ports(&c), [pair("db", 80), pair("member", 81)]);
        c.set_external(7, vec![]);
        assert!(c.service("web").instances.is_empty());
        // Deltas patch the list: a changed node in, a removed one out.
        c.patch_external(8, vec![ext("db", 82)], &[]);
        assert_eq!(c.service("web").instances[0].service.port, 82);
        c.patch_external(9, vec![ext("mq", 83)], &["db".to_string()]);
        let names: Vec<String> = c
            .external_nodes()
            .iter()
            .map(|n| n.info.node.clone())
            .collect();
        assert_eq!(names, ["mq"]);
        assert!(c.wait_mirrored(9, Instant::now()).await);
        assert!(c.node("db").is_none());
        assert!(c.external_index() > index);
    }

    #[tokio::test]
    async fn a_watcher_of_one_service_sleeps_through_changes_to_another() {
        let c = Arc::new(Catalog::new());
        publish(
            &c,
            "a",
            1,
            vec![svc("web", "web", &[]), svc("db", "db", &[])],
            vec![],
        );
        let seen = c.service("web").index;
        let far = Instant::now() + Duration::from_secs(30);
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.wait_service("web", seen, far).await.index })
        };
        tokio::task::yield_now().await;
        publish(&c, "b", 1, vec![svc("db", "db", &[])], vec![]);
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "a change to db woke a watcher of web"
        );
        c.node_health_changed("a");
        let woke_at = waiter.await.unwrap();
        assert!(woke_at > seen);
        // An index the catalog never reached (from before a restart) answers at once.
        let soon = Instant::now() + Duration::from_secs(30);
        let r = c.wait_service("web", u64::MAX, soon).await;
        assert_eq!(r.index, woke_at);
        assert_eq!(
            c.watched_services(),
            1,
            "the finished waiters' watch is cleared on the next change"
        );
    }

    #[tokio::test]
    async fn a_watcher_of_one_node_sleeps_through_changes_to_others() {
        let c = Arc::new(Catalog::new());
        publish(&c, "a", 1, vec![svc("web", "web", &[])], vec![]);
        publish(&c, "b", 1, vec![svc("web", "web", &[])], vec![]);
        let seen = c.node_index("a");
        assert!(seen > 1);
        assert!(c.node_index("b") > seen, "each node has its own index");
        let far = Instant::now() + Duration::from_secs(30);
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.wait_node("a", seen, far).await })
        };
        tokio::task::yield_now().await;
        // Another node's record, its health, its leaving: none of them is node a's change.
        publish(&c, "b", 2, vec![svc("db", "db", &[])], vec![]);
        c.node_health_changed("b");
        c.node_health_changed("no-record");
        c.remove_node("b");
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "a change to another node woke a watcher of a"
        );
        assert_eq!(c.node_index("a"), seen);
        // A member with no record still has an index that moves with it.
        assert!(c.node_index("no-record") > seen);
        c.node_health_changed("a");
        let woke_at = waiter.await.unwrap();
        assert_eq!(woke_at, c.node_index("a"));
        assert!(woke_at > seen);
        // Leaving moves it once more; a node never seen reads 1, and waiting on that ends when it comes.
        c.remove_node("a");
        assert!(c.node_index("a") > woke_at);
        assert_eq!(c.node_index("c"), 1);
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.wait_node("c", 1, far).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        publish(&c, "c", 1, vec![], vec![]);
        assert_eq!(waiter.await.unwrap(), c.node_index("c"));
        // A node's index counts the member table's too: never below the member's own ModifyIndex.
        c.note_members_index(1000);
        c.node_health_changed("c");
        assert!(c.node_index("c") > 1000 + 1);
    }
}
