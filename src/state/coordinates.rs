//! The datacenter's network coordinates as agents report them (Consul's coordinate table): each agent
//! sends its own Vivaldi coordinate to the servers every so often, the leader commits the updates
//! (grouped with whatever else is being written), and `/v1/coordinate/nodes`, `murmur rtt` and
//! `?near=` read them back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::definitions::{DefinitionError, fields, only_known, string};
use super::watched::Watched;

/// Dimensions of a coordinate's vector (Serf's and the gossip core's).
pub const DIMENSIONS: usize = murmur_gossip::coordinate::DIMENSIONS;

/// A coordinate in Consul's JSON shape (`Vec`, `Error`, `Adjustment`, `Height`; seconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Coord {
    /// The Euclidean part.
    pub vec: Vec<f64>,
    /// The node's own error estimate.
    pub error: f64,
    /// Added to distances from the node.
    pub adjustment: f64,
    /// The node's access link.
    pub height: f64,
}

/// Equal when every number has the same bits: an equivalence even for the NaN a hostile log entry
/// or snapshot may hold (the table itself only takes checked coordinates).
impl PartialEq for Coord {
    fn eq(&self, other: &Self) -> bool {
        let bits = |c: &Coord| {
            c.vec
                .iter()
                .chain([&c.error, &c.adjustment, &c.height])
                .map(|x| x.to_bits())
                .collect::<Vec<u64>>()
        };
        bits(self) == bits(other)
    }
}

impl Eq for Coord {}

/// Why a coordinate was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordError {
    /// Not [`DIMENSIONS`] components.
    Dimensions(usize),
    /// A component is not a finite number.
    NotFinite,
}

impl std::fmt::Display for CoordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Consul's texts.
            CoordError::Dimensions(_) => {
                f.write_str("rejected bad coordinate: dimensionality mismatch")
            }
            CoordError::NotFinite => f.write_str("invalid coordinate"),
        }
    }
}

impl std::error::Error for CoordError {}

impl Coord {
    /// Refuses what the gossip core would never produce (in Consul's order: values, then size).
    pub fn check(&self) -> Result<(), CoordError> {
        let finite = self
            .vec
            .iter()
            .chain([&self.error, &self.adjustment, &self.height])
            .all(|x| x.is_finite());
        if !finite {
            return Err(CoordError::NotFinite);
        }
        if self.vec.len() != DIMENSIONS {
            return Err(CoordError::Dimensions(self.vec.len()));
        }
        Ok(())
    }

    /// The gossip core's form, for distances.
    pub fn to_core(&self) -> murmur_gossip::coordinate::Coordinate {
        murmur_gossip::coordinate::Coordinate {
            vec: std::array::from_fn(|i| self.vec.get(i).copied().unwrap_or(0.0)),
            error: self.error,
            adjustment: self.adjustment,
            height: self.height,
        }
    }

    /// From the gossip core's form.
    pub fn from_core(c: &murmur_gossip::coordinate::Coordinate) -> Self {
        Coord {
            vec: c.vec.to_vec(),
            error: c.error,
            adjustment: c.adjustment,
            height: c.height,
        }
    }

    /// Estimated round trip to `other`.
    pub fn rtt(&self, other: &Coord) -> std::time::Duration {
        self.to_core().distance(&other.to_core())
    }
}

/// One node's coordinate in Consul's shape (`/v1/coordinate/nodes`, the update body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CoordinateEntry {
    /// The node.
    pub node: String,
    /// Network segment (Consul Enterprise); always empty here.
    #[serde(default)]
    pub segment: String,
    /// Its coordinate.
    pub coord: Coord,
}

/// A change to the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoordinateOp {
    /// Nodes' new coordinates.
    Update(Vec<CoordinateEntry>),
    /// Nodes gone from the catalog.
    Remove(Vec<String>),
}

/// The table as a snapshot carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinateImage {
    /// The table's index.
    pub index: u64,
    /// Every node's coordinate, by node name.
    pub entries: Vec<CoordinateEntry>,
}

#[derive(Default)]
struct Data {
    index: u64,
    nodes: BTreeMap<String, CoordinateEntry>,
}

/// The replicated coordinate table.
#[derive(Default)]
pub struct Coordinates {
    table: Watched<Data>,
}

impl Coordinates {
    /// Applies `op` at raft index `index`; true when something changed. Invalid coordinates (which a
    /// server checks before it proposes them) are skipped alike on every server.
    pub fn apply(&self, index: u64, op: &CoordinateOp) -> bool {
        let changed = {
            let mut d = self.table.write();
            let mut changed = false;
            match op {
                CoordinateOp::Update(entries) => {
                    for e in entries.iter().filter(|e| e.coord.check().is_ok()) {
                        d.nodes.insert(e.node.clone(), e.clone());
                        changed = true;
                    }
                }
                CoordinateOp::Remove(nodes) => {
                    for n in nodes {
                        changed |= d.nodes.remove(n).is_some();
                    }
                }
            }
            if changed {
                d.index = index;
            }
            changed
        };
        if changed {
            self.table.notify(index);
        }
        changed
    }

    /// Every coordinate, sorted by node, with the table's index.
    pub fn all(&self) -> (u64, Vec<CoordinateEntry>) {
        let d = self.table.read();
        (d.index, d.nodes.values().cloned().collect())
    }

    /// [`Coordinates::all`] once the index passes `min`, or at `deadline`.
    pub async fn wait(&self, min: u64, deadline: Instant) -> (u64, Vec<CoordinateEntry>) {
        self.table.wait(min, deadline, || self.all()).await
    }

    /// Nodes in the table for which `keep` says no.
    pub fn unwanted(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let d = self.table.read();
        d.nodes.keys().filter(|n| !keep(n)).cloned().collect()
    }

    /// The table as a snapshot carries it.
    pub fn image(&self) -> CoordinateImage {
        let (index, entries) = self.all();
        CoordinateImage { index, entries }
    }

    /// Replaces the table with a snapshot's.
    pub fn restore(&self, image: CoordinateImage) {
        {
            let mut d = self.table.write();
            d.index = image.index;
            // A snapshot from elsewhere may hold what `apply` would have refused.
            d.nodes = image
                .entries
                .into_iter()
                .filter(|e| e.coord.check().is_ok())
                .map(|e| (e.node.clone(), e))
                .collect();
        }
        self.table.notify(image.index);
    }
}

/// Every node's coordinate by name, as `?near=` sorts by them.
pub type CoordinateMap = std::collections::HashMap<String, Coord>;

/// How long an agent sorts by the coordinates it last read (they move slowly: each agent reports
/// every 15 s or more).
const NEAR_CACHE_AGE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a failed read is remembered: `?near=` requests meanwhile keep their name order at once
/// instead of each waiting on servers that do not answer.
const NEAR_FAILURE_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// What the cache last got: the coordinates, or that the read failed.
type NearRead = Result<std::sync::Arc<CoordinateMap>, super::replicated::StoreError>;

/// The coordinates an agent last read from the servers, for `?near=` sorting of its local catalog
/// reads: one stale read per [`NEAR_CACHE_AGE`] at most, not one per request (concurrent requests
/// share one read; a failure is kept for [`NEAR_FAILURE_AGE`]).
#[derive(Default)]
pub struct NearCache {
    last: tokio::sync::Mutex<Option<(Instant, NearRead)>>,
}

impl NearCache {
    /// The coordinates, read again from `store` when the cached answer is stale.
    pub async fn get(&self, store: &dyn super::replicated::Replicated) -> NearRead {
        use super::replicated::{Consistency, Query, ReadAnswer, ReadRequest, StoreError};
        // Held across the read: the requests that arrive meanwhile wait for its answer.
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = &*last {
            let age = if answer.is_ok() {
                NEAR_CACHE_AGE
            } else {
                NEAR_FAILURE_AGE
            };
            if at.elapsed() < age {
                return answer.clone();
            }
        }
        let request = ReadRequest {
            query: Query::Coordinates,
            consistency: Consistency::Stale,
            min_index: None,
            wait: std::time::Duration::ZERO,
        };
        let answer = match store.read(request).await {
            Ok(r) => match r.answer {
                ReadAnswer::Coordinates(entries) => Ok(std::sync::Arc::new(
                    entries.into_iter().map(|e| (e.node, e.coord)).collect(),
                )),
                _ => Err(StoreError::Unavailable(UNEXPECTED.into())),
            },
            Err(e) => Err(e),
        };
        *last = Some((Instant::now(), answer.clone()));
        answer
    }
}

/// A server answered a coordinate read with something else (a bug, or a mismatched version).
pub const UNEXPECTED: &str = "a server answered a coordinate read with something else";

/// Whether the leader keeps the coordinate of `node`: a member in the catalog, or an external node.
/// A node gossip does not know at all is dropped only once this leader's view has `settled` (a leader
/// just elected after a restart may not have heard of every member yet).
pub fn keep_coordinate(
    member: Option<&super::MemberRecord>,
    external: bool,
    dc: &str,
    settled: bool,
) -> bool {
    match member {
        Some(m) => super::catalog_node::in_catalog(m, dc) || external,
        None => external || !settled,
    }
}

/// Reorders `items` by the estimated round trip from `source`'s coordinate to each item's node
/// (`node_of`), nearest first; items of nodes without a coordinate keep their order after the rest,
/// as Consul sorts them. Nothing moves when `source` has no coordinate.
pub fn sort_near<T>(
    items: &mut [T],
    coords: &CoordinateMap,
    source: &str,
    node_of: impl Fn(&T) -> &str,
) {
    let Some(from) = coords.get(source).map(Coord::to_core) else {
        return;
    };
    // Stable: equal distances, and all the unknown ones, keep the name order they came in.
    items.sort_by_cached_key(|item| {
        coords
            .get(node_of(item))
            .map_or(std::time::Duration::MAX, |c| from.distance(&c.to_core()))
    });
}

/// Reads Consul's `CoordinateUpdateRequest` body (`Node`, `Segment`, `Coord`; keys in any case, as
/// Consul's decoder takes them).
pub fn parse_update(v: &serde_json::Value) -> Result<CoordinateEntry, DefinitionError> {
    let f = fields(v, "coordinate update")?;
    only_known(
        &f,
        &[
            "node",
            "segment",
            "coord",
            "datacenter",
            "writerequest",
            "token",
        ],
        "coordinate update",
    )?;
    let Some(node) = string(&f, "node")?.filter(|n| !n.is_empty()) else {
        return Err(DefinitionError("Must provide node".into()));
    };
    let c = fields(f.get("coord").unwrap_or(&serde_json::Value::Null), "Coord")?;
    only_known(&c, &["vec", "error", "adjustment", "height"], "Coord")?;
    let number = |k: &str| match c.get(k) {
        None | Some(serde_json::Value::Null) => Ok(0.0),
        Some(v) => v
            .as_f64()
            .ok_or_else(|| DefinitionError(format!("Coord.{k}: expected a number, got {v}"))),
    };
    let vec = match c.get("vec") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(serde_json::Value::as_f64)
            .collect::<Option<Vec<f64>>>()
            .ok_or_else(|| DefinitionError("Coord.Vec: expected numbers".into()))?,
        Some(other) => {
            return Err(DefinitionError(format!(
                "Coord.Vec: expected an array, got {other}"
            )));
        }
    };
    Ok(CoordinateEntry {
        node,
        segment: string(&f, "segment")?.unwrap_or_default(),
        coord: Coord {
            vec,
            error: number("error")?,
            adjustment: number("adjustment")?,
            height: number("height")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(node: &str, x: f64) -> CoordinateEntry {
        let mut vec = vec![0.0; DIMENSIONS];
        vec[0] = x;
        CoordinateEntry {
            node: node.into(),
            segment: String::new(),
            coord: Coord {
                vec,
                error: 0.2,
                adjustment: 0.0,
                height: 0.001,
            },
        }
    }

    #[test]
    fn updates_replace_removals_drop_and_bad_coordinates_are_skipped() {
        let t = Coordinates::default();
        assert!(t.apply(
            5,
            &CoordinateOp::Update(vec![entry("a", 0.01), entry("b", 0.02)])
        ));
        assert!(t.apply(6, &CoordinateOp::Update(vec![entry("a", 0.03)])));
        let (index, all) = t.all();
        assert_eq!(index, 6);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].coord.vec[0], 0.03);
        let est = all[0].coord.rtt(&all[1].coord).as_secs_f64();
        assert!(
            (est - 0.012).abs() < 1e-9,
            "0.01 apart plus two 1 ms heights: {est}"
        );
        let mut bad = entry("c", 0.0);
        bad.coord.height = f64::INFINITY;
        assert_eq!(bad.coord.check(), Err(CoordError::NotFinite));
        let mut short = entry("d", 0.0);
        short.coord.vec.pop();
        assert_eq!(short.coord.check(), Err(CoordError::Dimensions(7)));
        assert!(!t.apply(7, &CoordinateOp::Update(vec![bad, short])));
        assert!(!t.apply(8, &CoordinateOp::Remove(vec!["zz".into()])));
        assert!(t.apply(9, &CoordinateOp::Remove(vec!["b".into()])));
        assert_eq!(t.unwanted(|_| false), vec!["a".to_string()]);
        assert!(t.unwanted(|n| n == "a").is_empty());
        let image = t.image();
        assert_eq!(image.index, 9);
        let u = Coordinates::default();
        u.restore(image.clone());
        assert_eq!(u.image(), image);
    }

    #[test]
    fn update_bodies_read_in_any_case_and_refuse_what_they_cannot_hold() {
        let body = serde_json::json!({"node": "n1", "coord": {"vec": [0.1, 0, 0, 0, 0, 0, 0, 0], "error": 0.5, "height": 0.002}, "Token": ""});
        let e = parse_update(&body).unwrap();
        assert_eq!(e.node, "n1");
        assert_eq!(e.coord.vec.len(), DIMENSIONS);
        assert_eq!(
            (e.coord.error, e.coord.adjustment, e.coord.height),
            (0.5, 0.0, 0.002)
        );
        assert_eq!(e.coord.check(), Ok(()));
        let err = |v| parse_update(&v).unwrap_err().0;
        assert_eq!(err(serde_json::json!({"Coord": {}})), "Must provide node");
        assert!(err(serde_json::json!({"Node": "n", "Coord": {"Vec": ["x"]}})).contains("Vec"));
        assert!(err(serde_json::json!({"Node": "n", "Area": 1})).contains("\"area\""));
        assert!(err(serde_json::json!([1])).contains("expected an object"));
    }

    #[test]
    fn near_sorts_by_estimated_round_trip_and_puts_the_unknown_last() {
        let coords: CoordinateMap = [("a", 0.0), ("far", 0.3), ("mid", 0.1), ("near", 0.02)]
            .into_iter()
            .map(|(n, x)| (n.to_string(), entry(n, x).coord))
            .collect();
        let mut names = vec!["a", "far", "ghost", "mid", "near", "other-ghost"];
        sort_near(&mut names, &coords, "a", |n| n);
        assert_eq!(names, ["a", "near", "mid", "far", "ghost", "other-ghost"]);
        sort_near(&mut names, &coords, "far", |n| n);
        assert_eq!(names, ["far", "mid", "near", "a", "ghost", "other-ghost"]);
        let before = names.clone();
        sort_near(&mut names, &coords, "ghost", |n| n);
        assert_eq!(names, before, "no coordinate for the source: nothing moves");
    }

    #[test]
    fn the_leader_drops_unknown_nodes_only_once_settled() {
        assert!(
            keep_coordinate(None, false, "dc1", false),
            "a new leader waits"
        );
        assert!(!keep_coordinate(None, false, "dc1", true));
        assert!(
            keep_coordinate(None, true, "dc1", true),
            "external nodes stay"
        );
    }

    #[test]
    fn the_json_shape_is_consuls() {
        let e = entry("agent-one", 0.5);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["Node"], "agent-one");
        assert_eq!(v["Segment"], "");
        assert_eq!(v["Coord"]["Vec"].as_array().unwrap().len(), DIMENSIONS);
        assert_eq!(v["Coord"]["Height"], 0.001);
        assert!(v["Coord"].get("Error").is_some() && v["Coord"].get("Adjustment").is_some());
        let back: CoordinateEntry = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
