//! Maintenance mode, as Consul's agent keeps it: a critical check (`_node_maintenance`, or
//! `_service_maintenance:<id>`) that takes the node or one service out of DNS and `?passing` until it is
//! removed. Kept in the data dir (`maintenance.json`), so a node in maintenance stays there across a
//! restart.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::definitions::{CheckDef, CheckKind, Schedule, Status, Thresholds};
use super::local_services::{CheckState, LocalServices, Source};
use crate::util::files::{Access, write_atomic};

/// Check ID of node maintenance.
pub const NODE_CHECK_ID: &str = "_node_maintenance";
/// Consul's notes when node maintenance is enabled without a reason.
pub const DEFAULT_NODE_REASON: &str = "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.";
/// Consul's notes when service maintenance is enabled without a reason.
pub const DEFAULT_SERVICE_REASON: &str = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.";

/// Check ID of maintenance of service `id`.
pub fn service_check_id(id: &str) -> String {
    format!("_service_maintenance:{id}")
}

/// Why maintenance mode could not change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaintenanceError {
    /// No service by that ID on this agent.
    NoService(String),
    /// The data dir could not be written.
    Persist(String),
}

impl std::fmt::Display for MaintenanceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaintenanceError::NoService(id) => write!(f, "No service registered with ID {id:?}"),
            MaintenanceError::Persist(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for MaintenanceError {}

/// What `maintenance.json` holds: the node's reason, if in maintenance, and each service's.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    node: Option<String>,
    services: BTreeMap<String, String>,
}

impl LocalServices {
    /// Puts the node (`service` None) or one service in maintenance; already in it, nothing changes.
    pub fn enable_maintenance(
        &self,
        service: Option<&str>,
        reason: &str,
        now: Instant,
    ) -> Result<(), MaintenanceError> {
        let (id, name, default) = match service {
            None => (
                NODE_CHECK_ID.to_owned(),
                "Node Maintenance Mode",
                DEFAULT_NODE_REASON,
            ),
            Some(s) => {
                if self.service(s).is_none() {
                    return Err(MaintenanceError::NoService(s.to_owned()));
                }
                (
                    service_check_id(s),
                    "Service Maintenance Mode",
                    DEFAULT_SERVICE_REASON,
                )
            }
        };
        if self.lock().checks.contains_key(&id) {
            return Ok(());
        }
        let def = CheckDef {
            id,
            name: name.into(),
            service_id: service.map(str::to_owned),
            kind: CheckKind::Maintenance,
            schedule: Schedule::default(),
            thresholds: Thresholds::default(),
            deregister_after: None,
            status: Status::Critical,
            notes: if reason.is_empty() { default } else { reason }.to_owned(),
        };
        self.insert_check(CheckState::new(def, Source::Api, now));
        self.save_maintenance()
    }

    /// Takes the node (`service` None) or one service out of maintenance.
    pub fn disable_maintenance(&self, service: Option<&str>) -> Result<(), MaintenanceError> {
        let id = match service {
            None => NODE_CHECK_ID.to_owned(),
            Some(s) => {
                if self.service(s).is_none() {
                    return Err(MaintenanceError::NoService(s.to_owned()));
                }
                service_check_id(s)
            }
        };
        self.remove_check(&id)
            .map_err(|e| MaintenanceError::Persist(e.to_string()))?;
        self.save_maintenance()
    }

    fn save_maintenance(&self) -> Result<(), MaintenanceError> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let mut saved = Saved::default();
        for c in self.checks() {
            if c.def.kind != CheckKind::Maintenance {
                continue;
            }
            match &c.def.service_id {
                None => saved.node = Some(c.def.notes.clone()),
                Some(s) => {
                    saved.services.insert(s.clone(), c.def.notes.clone());
                }
            }
        }
        let body = serde_json::to_vec(&saved).unwrap_or_default();
        write_atomic(&dir.join("maintenance.json"), &body, Access::Owner)
            .map_err(MaintenanceError::Persist)
    }

    /// Restores maintenance from the data dir; call it once the services it names are registered
    /// (config files and persisted API registrations). Returns what did not read.
    pub fn load_maintenance(&self, now: Instant) -> Vec<String> {
        let Some(path) = self.dir.as_ref().map(|d| d.join("maintenance.json")) else {
            return Vec::new();
        };
        let Ok(text) = std::fs::read(&path) else {
            return Vec::new();
        };
        let saved: Saved = match serde_json::from_slice(&text) {
            Ok(s) => s,
            Err(e) => return vec![format!("{}: {e}", path.display())],
        };
        let mut problems = Vec::new();
        if let Some(reason) = saved.node
            && let Err(e) = self.enable_maintenance(None, &reason, now)
        {
            problems.push(format!("{}: {e}", path.display()));
        }
        for (service, reason) in saved.services {
            if let Err(e) = self.enable_maintenance(Some(&service), &reason, now) {
                problems.push(format!("{}: {e}", path.display()));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::definitions;
    use serde_json::json;

    #[test]
    fn maintenance_is_a_critical_check_that_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("murmur-maint-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let t0 = Instant::now();
        let l = LocalServices::new(Some(&dir));
        let (web, _) = definitions::service(&json!({"name": "web"})).unwrap();
        l.add_service(web.clone(), Vec::new(), Source::Api, t0)
            .unwrap();
        assert_eq!(
            l.enable_maintenance(Some("nope"), "", t0),
            Err(MaintenanceError::NoService("nope".into()))
        );
        l.enable_maintenance(None, "", t0).unwrap();
        l.enable_maintenance(Some("web"), "upgrading", t0).unwrap();
        let checks = l.checks();
        let node = checks.iter().find(|c| c.def.id == NODE_CHECK_ID).unwrap();
        assert_eq!(
            (node.status, node.def.notes.as_str()),
            (Status::Critical, DEFAULT_NODE_REASON)
        );
        let svc = checks
            .iter()
            .find(|c| c.def.id == "_service_maintenance:web")
            .unwrap();
        assert_eq!(svc.def.notes, "upgrading");
        assert_eq!(svc.def.service_id.as_deref(), Some("web"));

        // A new process over the same data dir comes back in maintenance.
        let again = LocalServices::new(Some(&dir));
        assert!(again.load_persisted(t0).is_empty());
        assert!(again.load_maintenance(t0).is_empty());
        let ids: Vec<String> = again.checks().into_iter().map(|c| c.def.id).collect();
        assert_eq!(ids, ["_node_maintenance", "_service_maintenance:web"]);
        again.disable_maintenance(None).unwrap();
        again.disable_maintenance(Some("web")).unwrap();
        assert!(again.checks().is_empty());
        let third = LocalServices::new(Some(&dir));
        assert!(third.load_persisted(t0).is_empty());
        assert!(third.load_maintenance(t0).is_empty());
        assert!(third.checks().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
