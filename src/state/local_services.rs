//! This agent's own services and checks: what config files and the HTTP API registered, each check's
//! status and output, TTL deadlines, and the registrations the API made, persisted in the data dir
//! (`services/`, `checks/`) so they survive a restart as in Consul. Config-file definitions are not
//! persisted: the files are their source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use super::definitions::{self, CheckDef, CheckKind, ServiceDef, Status, check_json, service_json};
use super::node_record::NodeRecord;
use crate::util::files::{Access, write_atomic};

/// Longest check output kept (Consul's default `check_output_max_size`).
pub const MAX_OUTPUT: usize = 4096;

/// Most bytes the services and checks registered here may take in the published record: gossip's
/// limit, less room for the services the agent adds itself (`consul` on a server).
pub const RECORD_ROOM: usize = murmur_gossip::wire::MAX_RECORD - 4096;

/// Where a registration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A config file: not persisted (the file is the source).
    Config,
    /// The HTTP API: persisted in the data dir.
    Api,
}

/// A check and how it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckState {
    /// Its definition.
    pub def: CheckDef,
    /// Status now.
    pub status: Status,
    /// Output of the last run or report.
    pub output: String,
    deadline: Option<Instant>,
    source: Source,
    /// Passing results in a row (for `success_before_passing`).
    successes: u32,
    /// Failing results in a row (for `failures_before_warning` / `_critical`).
    failures: u32,
    /// Since when the check has been critical.
    critical_since: Option<Instant>,
}

/// Why a registration or removal failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// A check names a service this agent does not have.
    NoService(String),
    /// A script check while script checks are off (`remote`: registered over the HTTP API).
    ScriptsOff {
        /// Registered over the HTTP API rather than in a config file.
        remote: bool,
    },
    /// The data dir could not be written.
    Persist(String),
    /// The record this agent publishes would take this many bytes, more than gossip carries: it would
    /// not go out, and neither would any later change until this one was undone.
    TooLarge(usize),
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryError::NoService(id) => write!(f, "ServiceID {id:?} does not exist"),
            RegistryError::ScriptsOff { remote: false } => f.write_str(SCRIPTS_OFF),
            RegistryError::ScriptsOff { remote: true } => f.write_str(SCRIPTS_OFF_REMOTE),
            RegistryError::Persist(e) => f.write_str(e),
            RegistryError::TooLarge(n) => write!(
                f,
                "this agent's services and checks would take {n} bytes to publish, more than the \
                 {RECORD_ROOM} bytes a node's record may hold"
            ),
        }
    }
}

impl std::error::Error for RegistryError {}

impl From<RegistryError> for String {
    fn from(e: RegistryError) -> String {
        e.to_string()
    }
}

/// Why a TTL report was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TtlError {
    /// No check by that ID.
    Unknown(String),
    /// The check is not a TTL check: its runner decides its status.
    NotTtl(String),
}

impl std::fmt::Display for TtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TtlError::Unknown(id) => write!(
                f,
                "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
            ),
            TtlError::NotTtl(id) => write!(f, "CheckID {id:?} does not have associated TTL"),
        }
    }
}

impl std::error::Error for TtlError {}

#[derive(Default)]
pub(super) struct Inner {
    pub(super) services: BTreeMap<String, (ServiceDef, Source)>,
    pub(super) checks: BTreeMap<String, CheckState>,
    scripts: ScriptPolicy,
}

/// Which script checks may be registered (Consul's `enable_script_checks` and
/// `enable_local_script_checks`); none by default, as in Consul.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScriptPolicy {
    /// From any source, the HTTP API included (`enable_script_checks`).
    pub any: bool,
    /// From config files (`enable_local_script_checks`).
    pub local: bool,
}

/// The agent's local services and checks.
pub struct LocalServices {
    inner: Mutex<Inner>,
    /// Serializes registrations and reloads ([`Self::admission`]).
    admission: Mutex<()>,
    pub(super) dir: Option<PathBuf>,
    /// Wakes the TTL runner when a deadline may have moved.
    pub changed: Notify,
    /// Counts every change a published record would show (the catalog publisher waits on it).
    pub generation: watch::Sender<u64>,
    /// Counts check registrations and removals (the check runners' supervisor waits on it).
    pub definitions: watch::Sender<u64>,
    /// Check runs by the status the runner saw, before thresholds (passing, warning, critical).
    pub runs: [std::sync::atomic::AtomicU64; 3],
}

/// A file name for an ID (IDs may hold any character; the hex of its bytes never clashes).
fn file_name(id: &str) -> String {
    format!("{}.json", crate::util::hex::lower(id.as_bytes()))
}

impl LocalServices {
    /// An empty registry that persists API registrations under `data_dir` (none in `-dev`).
    pub fn new(data_dir: Option<&Path>) -> Self {
        LocalServices {
            inner: Mutex::new(Inner::default()),
            admission: Mutex::new(()),
            dir: data_dir.map(Path::to_path_buf),
            changed: Notify::new(),
            generation: watch::Sender::new(0),
            definitions: watch::Sender::new(0),
            runs: Default::default(),
        }
    }

    pub(super) fn touched(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Held from a registration's check to its last write, so two registrations (or one and a
    /// reload) cannot each pass against the same registry and together exceed what it admits.
    fn admission(&self) -> std::sync::MutexGuard<'_, ()> {
        self.admission.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(
        &self,
        kind: &str,
        id: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(), RegistryError> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let path = dir.join(kind).join(file_name(id));
        match body {
            Some(v) => write_atomic(&path, v.to_string().as_bytes(), Access::Owner)
                .map_err(RegistryError::Persist),
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(RegistryError::Persist(format!("{}: {e}", path.display())))
                }
                _ => Ok(()),
            },
        }
    }

    /// Refuses check `def` from `source` unless script checks may come from there under policy `p`,
    /// and its service, if it names one, is among `services`.
    fn admit_check(
        def: &CheckDef,
        source: Source,
        services: &[ServiceDef],
        p: ScriptPolicy,
    ) -> Result<(), RegistryError> {
        if let Some(sid) = &def.service_id
            && !services.iter().any(|s| &s.id == sid)
        {
            return Err(RegistryError::NoService(sid.clone()));
        }
        if matches!(def.kind, CheckKind::Script(_)) {
            match source {
                _ if p.any => {}
                Source::Config if p.local => {}
                Source::Config => return Err(RegistryError::ScriptsOff { remote: false }),
                Source::Api => return Err(RegistryError::ScriptsOff { remote: true }),
            }
        }
        Ok(())
    }

    /// The registry as it would be with `services` put in (replacing those with their IDs) and
    /// `checks` too, less the config-file definitions when `config` replaces them all (a reload).
    fn after(
        &self,
        services: &[ServiceDef],
        checks: &[CheckDef],
        config: bool,
        now: Instant,
    ) -> (Vec<ServiceDef>, Vec<CheckState>) {
        let inner = self.lock();
        let kept = |src: Source| !(config && src == Source::Config);
        let all_services = inner
            .services
            .values()
            .filter(|(d, src)| kept(*src) && !services.iter().any(|n| n.id == d.id))
            .map(|(d, _)| d.clone())
            .chain(services.iter().cloned())
            .collect();
        let all_checks = inner
            .checks
            .values()
            .filter(|c| kept(c.source) && !checks.iter().any(|n| n.id == c.def.id))
            .cloned()
            .chain(
                checks
                    .iter()
                    .map(|c| CheckState::new(c.clone(), Source::Api, now)),
            )
            .collect();
        (all_services, all_checks)
    }

    /// Refuses a change before any of it is made: each of its `checks` must be admitted (with
    /// `services`, the services once it is made), and the registry must still [`Self::fit`].
    fn admit(
        &self,
        services: &[ServiceDef],
        states: &[CheckState],
        checks: &[CheckDef],
        source: Source,
    ) -> Result<(), RegistryError> {
        let p = self.lock().scripts;
        for c in checks {
            Self::admit_check(c, source, services, p)?;
        }
        Self::fit(services, states)
    }

    /// Refuses a registry of `services` and `states` whose record would not fit a gossip record,
    /// outputs left out as the publisher leaves them out when they do not.
    fn fit(services: &[ServiceDef], states: &[CheckState]) -> Result<(), RegistryError> {
        let len = NodeRecord::from_local(services, states)
            .without_outputs()
            .encode()
            .len();
        if len > RECORD_ROOM {
            return Err(RegistryError::TooLarge(len));
        }
        Ok(())
    }

    /// Registers (or replaces) a service and its checks: all of them, or nothing.
    pub fn add_service(
        &self,
        def: ServiceDef,
        checks: Vec<CheckDef>,
        source: Source,
        now: Instant,
    ) -> Result<(), RegistryError> {
        let _one_at_a_time = self.admission();
        let (services, states) = self.after(std::slice::from_ref(&def), &checks, false, now);
        self.admit(&services, &states, &checks, source)?;
        self.put_service(def, source)?;
        for c in checks {
            self.put_check(c, source, now)?;
        }
        Ok(())
    }

    /// Puts an admitted service in the registry (and the data dir).
    fn put_service(&self, def: ServiceDef, source: Source) -> Result<(), RegistryError> {
        if source == Source::Api {
            self.persist("services", &def.id, Some(service_json(&def)))?;
        }
        self.insert_service(def, source);
        Ok(())
    }

    /// Puts a service in the registry (the data dir aside).
    fn insert_service(&self, def: ServiceDef, source: Source) {
        let id = def.id.clone();
        self.lock().services.insert(id, (def, source));
        self.touched();
    }

    /// Removes a service and its checks; false if there was none.
    pub fn remove_service(&self, id: &str) -> Result<bool, RegistryError> {
        let (removed, checks) = {
            let mut inner = self.lock();
            let removed = inner.services.remove(id);
            let checks: Vec<String> = inner
                .checks
                .values()
                .filter(|c| c.def.service_id.as_deref() == Some(id))
                .map(|c| c.def.id.clone())
                .collect();
            (removed, checks)
        };
        if removed.is_none() {
            return Ok(false);
        }
        self.touched();
        self.persist("services", id, None)?;
        for c in checks {
            self.remove_check(&c)?;
        }
        Ok(true)
    }

    /// Registers (or replaces) a check; its service, if it names one, must exist.
    pub fn add_check(
        &self,
        def: CheckDef,
        source: Source,
        now: Instant,
    ) -> Result<(), RegistryError> {
        let _one_at_a_time = self.admission();
        let (services, states) = self.after(&[], std::slice::from_ref(&def), false, now);
        self.admit(&services, &states, std::slice::from_ref(&def), source)?;
        self.put_check(def, source, now)
    }

    /// Puts an admitted check in the registry (and the data dir).
    fn put_check(&self, def: CheckDef, source: Source, now: Instant) -> Result<(), RegistryError> {
        if source == Source::Api {
            self.persist("checks", &def.id, Some(check_json(&def)))?;
        }
        self.insert_check(CheckState::new(def, source, now));
        Ok(())
    }

    /// Puts a check in the registry and tells whoever waits on it.
    pub(super) fn insert_check(&self, state: CheckState) {
        self.lock().checks.insert(state.def.id.clone(), state);
        self.changed.notify_one();
        self.touched();
        self.definitions.send_modify(|g| *g += 1);
    }

    /// Removes a check; false if there was none.
    pub fn remove_check(&self, id: &str) -> Result<bool, RegistryError> {
        if self.lock().checks.remove(id).is_none() {
            return Ok(false);
        }
        self.touched();
        self.definitions.send_modify(|g| *g += 1);
        self.persist("checks", id, None)?;
        Ok(true)
    }

    /// Makes the config-file definitions exactly `services` and `checks` (a reload): those gone from the
    /// files are removed, new and changed ones registered; API registrations are left alone. A check
    /// whose definition did not change keeps its status and deadline. `scripts` is the script-check
    /// policy the files set; script checks it no longer allows are removed (their IDs returned).
    /// Checked whole before anything changes: a refusal leaves the running definitions, and the
    /// policy, as they were.
    pub fn replace_config(
        &self,
        services: Vec<ServiceDef>,
        checks: Vec<CheckDef>,
        scripts: ScriptPolicy,
        now: Instant,
    ) -> Result<Vec<String>, String> {
        let _one_at_a_time = self.admission();
        let (all_services, states) = self.after(&services, &checks, true, now);
        for c in &checks {
            Self::admit_check(c, Source::Config, &all_services, scripts)
                .map_err(|e| format!("check {:?}: {e}", c.id))?;
        }
        Self::fit(&all_services, &states)?;
        let removed = self.set_script_policy(scripts);
        let (old_services, old_checks): (Vec<String>, Vec<CheckDef>) = {
            let inner = self.lock();
            (
                inner
                    .services
                    .iter()
                    .filter(|(_, (_, src))| *src == Source::Config)
                    .map(|(id, _)| id.clone())
                    .collect(),
                inner
                    .checks
                    .values()
                    .filter(|c| c.source == Source::Config)
                    .map(|c| c.def.clone())
                    .collect(),
            )
        };
        for id in old_services {
            if !services.iter().any(|s| s.id == id) {
                self.remove_service(&id)?;
            }
        }
        for c in &old_checks {
            if !checks.iter().any(|n| n.id == c.id) {
                self.remove_check(&c.id)?;
            }
        }
        for s in services {
            self.put_service(s, Source::Config)?;
        }
        for c in checks {
            if old_checks.contains(&c) && self.lock().checks.contains_key(&c.id) {
                continue;
            }
            let id = c.id.clone();
            self.put_check(c, Source::Config, now)
                .map_err(|e| format!("check {id:?}: {e}"))?;
        }
        Ok(removed)
    }

    /// A TTL check's report: new status and output, and a fresh deadline.
    pub fn report(
        &self,
        id: &str,
        status: Status,
        output: &str,
        now: Instant,
    ) -> Result<(), TtlError> {
        let mut inner = self.lock();
        let c = inner
            .checks
            .get_mut(id)
            .ok_or_else(|| TtlError::Unknown(id.to_owned()))?;
        let CheckKind::Ttl(ttl) = c.def.kind else {
            return Err(TtlError::NotTtl(id.to_owned()));
        };
        c.set(status, output, now);
        c.deadline = Some(now + ttl);
        drop(inner);
        self.changed.notify_one();
        self.touched();
        Ok(())
    }

    /// Turns TTL checks whose deadline passed critical; returns the next deadline.
    pub fn expire(&self, now: Instant) -> Option<Instant> {
        let mut inner = self.lock();
        let mut next: Option<Instant> = None;
        let mut expired = false;
        for c in inner.checks.values_mut() {
            let Some(d) = c.deadline else { continue };
            if d <= now {
                let out = if c.output.is_empty() {
                    "TTL expired".to_owned()
                } else {
                    format!(
                        "TTL expired (last output before timeout follows): {}",
                        c.output
                    )
                };
                c.set(Status::Critical, &out, now);
                c.deadline = None;
                expired = true;
            } else {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        }
        drop(inner);
        if expired {
            self.touched();
        }
        next
    }

    /// A check runner's result for check `id` (ignored if the check is gone or is a TTL check).
    pub fn record_result(&self, id: &str, status: Status, output: &str, now: Instant) {
        self.runs[status as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut inner = self.lock();
        let Some(c) = inner.checks.get_mut(id) else {
            return;
        };
        let changed = match c.def.kind {
            CheckKind::Ttl(_) | CheckKind::Maintenance => return,
            // Consul's alias checks report directly, without thresholds.
            CheckKind::Alias { .. } => {
                let before = (c.status, c.output.clone());
                c.set(status, output, now);
                before != (c.status, c.output.clone())
            }
            _ => c.apply_result(status, output, now),
        };
        drop(inner);
        if changed {
            self.touched();
        }
    }

    /// Sets which script checks may be registered from now on, and removes the registered ones the new
    /// policy no longer allows (a reload that turns script checks off stops them, as in Consul).
    /// Returns the IDs removed.
    pub fn set_script_policy(&self, p: ScriptPolicy) -> Vec<String> {
        let disallowed: Vec<String> = {
            let mut inner = self.lock();
            inner.scripts = p;
            inner
                .checks
                .values()
                .filter(|c| matches!(c.def.kind, CheckKind::Script(_)))
                .filter(|c| !(p.any || (p.local && c.source == Source::Config)))
                .map(|c| c.def.id.clone())
                .collect()
        };
        for id in &disallowed {
            if let Err(e) = self.remove_check(id) {
                tracing::warn!("script check {id:?} stays registered: {e}");
            }
        }
        disallowed
    }

    /// Services with a check that has been critical for longer than its
    /// `deregister_critical_service_after`.
    pub fn critical_too_long(&self, now: Instant) -> Vec<String> {
        let inner = self.lock();
        let mut ids: Vec<String> = inner
            .checks
            .values()
            .filter(|c| {
                let (Some(after), Some(since)) = (c.def.deregister_after, c.critical_since) else {
                    return false;
                };
                c.status == Status::Critical && now.saturating_duration_since(since) >= after
            })
            .filter_map(|c| c.def.service_id.clone())
            .collect();
        ids.dedup();
        ids
    }

    /// The services, by ID.
    pub fn services(&self) -> Vec<ServiceDef> {
        self.lock()
            .services
            .values()
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// One service.
    pub fn service(&self, id: &str) -> Option<ServiceDef> {
        self.lock().services.get(id).map(|(s, _)| s.clone())
    }

    /// The checks, by ID.
    pub fn checks(&self) -> Vec<CheckState> {
        self.lock().checks.values().cloned().collect()
    }

    /// Reads back what the API registered before a restart; a file that no longer reads is reported
    /// and skipped, never fatal (the agent must come up).
    pub fn load_persisted(&self, now: Instant) -> Vec<String> {
        let Some(dir) = self.dir.clone() else {
            return Vec::new();
        };
        let mut problems = Vec::new();
        let read = |kind: &str| -> Vec<(PathBuf, serde_json::Value)> {
            let Ok(rd) = std::fs::read_dir(dir.join(kind)) else {
                return Vec::new();
            };
            let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            files
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .filter_map(|p| {
                    let v = std::fs::read_to_string(&p).ok()?;
                    Some((p, serde_json::from_str(&v).ok()?))
                })
                .collect()
        };
        let mut services = Vec::new();
        for (path, v) in read("services") {
            match definitions::api_service(&v) {
                Ok((s, _)) => services.push((path, s)),
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            }
        }
        let mut checks = Vec::new();
        for (path, v) in read("checks") {
            match definitions::check(&v) {
                Ok(c) => checks.push((path, c)),
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            }
        }
        // All at once when they are admitted together, as they were when registered: one size check
        // of the record instead of one per file. Else one at a time, so that only the files refused
        // now are skipped.
        let service_defs: Vec<ServiceDef> = services.iter().map(|(_, s)| s.clone()).collect();
        let check_defs: Vec<CheckDef> = checks.iter().map(|(_, c)| c.clone()).collect();
        if self.restore(&service_defs, &check_defs, now).is_ok() {
            return problems;
        }
        for (path, s) in services {
            if let Err(e) = self.add_service(s, Vec::new(), Source::Api, now) {
                problems.push(format!("{}: {e}", path.display()));
            }
        }
        for (path, c) in checks {
            if let Err(e) = self.add_check(c, Source::Api, now) {
                problems.push(format!("{}: {e}", path.display()));
            }
        }
        problems
    }

    /// Puts back registrations read from the data dir (so not written again), all or none.
    fn restore(
        &self,
        services: &[ServiceDef],
        checks: &[CheckDef],
        now: Instant,
    ) -> Result<(), RegistryError> {
        let _one_at_a_time = self.admission();
        let (all_services, states) = self.after(services, checks, false, now);
        self.admit(&all_services, &states, checks, Source::Api)?;
        for s in services {
            self.insert_service(s.clone(), Source::Api);
        }
        for c in checks {
            self.insert_check(CheckState::new(c.clone(), Source::Api, now));
        }
        Ok(())
    }
}

/// Consul's refusal of a script check from a config file while script checks are off.
pub const SCRIPTS_OFF: &str = "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true";
/// Consul's refusal of a script check registered over the HTTP API unless `enable_script_checks`.
pub const SCRIPTS_OFF_REMOTE: &str = "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' to true";

impl CheckState {
    /// A newly registered check: its registered status, a TTL deadline, counts at their thresholds.
    pub(super) fn new(def: CheckDef, source: Source, now: Instant) -> Self {
        let deadline = match def.kind {
            CheckKind::Ttl(ttl) => Some(now + ttl),
            _ => None,
        };
        CheckState {
            status: def.status,
            output: String::new(),
            deadline,
            source,
            successes: def.thresholds.success_before_passing,
            failures: def.thresholds.failures_before_critical,
            critical_since: (def.status == Status::Critical).then_some(now),
            def,
        }
    }

    fn set(&mut self, status: Status, output: &str, now: Instant) {
        if status != Status::Critical {
            self.critical_since = None;
        } else if self.status != Status::Critical || self.critical_since.is_none() {
            self.critical_since = Some(now);
        }
        self.status = status;
        self.output = truncate(output);
    }

    /// Applies one run's result through the thresholds (Consul's status handler): a passing or warning
    /// result counts towards `success_before_passing`, a critical one towards `failures_before_warning`
    /// (reported as warning) and `failures_before_critical`; until a count is reached the status
    /// stands. The counts start at their thresholds, so a check's first result is reported at once.
    /// True if anything a reader sees changed.
    fn apply_result(&mut self, status: Status, output: &str, now: Instant) -> bool {
        let t = self.def.thresholds;
        let before = (self.status, self.output.clone());
        if status != Status::Critical {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if self.successes >= t.success_before_passing {
                self.set(status, output, now);
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.failures >= t.failures_before_critical {
                self.set(Status::Critical, output, now);
            } else if self.failures >= t.failures_before_warning {
                self.set(Status::Warning, output, now);
            }
        }
        before != (self.status, self.output.clone())
    }
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_OUTPUT {
        return s.to_owned();
    }
    let mut end = MAX_OUTPUT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Interval at which nothing is due: the runner sleeps until a change wakes it.
pub const IDLE: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ttl_checks_expire_and_reports_renew_them() {
        let l = LocalServices::new(None);
        let t0 = Instant::now();
        let (s, c) =
            definitions::service(&json!({"name": "web", "check": {"ttl": "10s"}})).unwrap();
        l.add_service(s, c, Source::Api, t0).unwrap();
        assert_eq!(
            l.checks()[0].status,
            Status::Critical,
            "critical until it reports"
        );
        l.report("service:web", Status::Passing, "ok", t0).unwrap();
        assert_eq!(
            l.expire(t0 + Duration::from_secs(9)),
            Some(t0 + Duration::from_secs(10))
        );
        assert_eq!(l.checks()[0].status, Status::Passing);
        assert_eq!(l.expire(t0 + Duration::from_secs(10)), None);
        let c = &l.checks()[0];
        assert_eq!(
            (c.status, c.output.as_str()),
            (
                Status::Critical,
                "TTL expired (last output before timeout follows): ok"
            )
        );
        assert_eq!(
            l.report("nope", Status::Passing, "", t0),
            Err(TtlError::Unknown("nope".into()))
        );
        l.report("service:web", Status::Warning, &"x".repeat(10_000), t0)
            .unwrap();
        assert_eq!(l.checks()[0].output.len(), MAX_OUTPUT);
        assert!(l.remove_service("web").unwrap());
        assert!(l.checks().is_empty(), "a service's checks go with it");
        let orphan =
            definitions::check(&json!({"name": "c", "ttl": "5s", "service_id": "gone"})).unwrap();
        assert_eq!(
            l.add_check(orphan, Source::Api, t0)
                .unwrap_err()
                .to_string(),
            "ServiceID \"gone\" does not exist"
        );
        // Script checks: off by default; config files only with enable_local_script_checks.
        let script = |id: &str| {
            definitions::check(&json!({"name": id, "args": ["true"], "interval": "10s"})).unwrap()
        };
        assert_eq!(
            l.add_check(script("s1"), Source::Config, t0),
            Err(RegistryError::ScriptsOff { remote: false })
        );
        l.set_script_policy(ScriptPolicy {
            any: false,
            local: true,
        });
        assert!(l.add_check(script("s2"), Source::Config, t0).is_ok());
        assert_eq!(
            l.add_check(script("s3"), Source::Api, t0),
            Err(RegistryError::ScriptsOff { remote: true })
        );
        l.set_script_policy(ScriptPolicy {
            any: true,
            local: false,
        });
        assert!(l.add_check(script("s4"), Source::Api, t0).is_ok());
    }

    #[test]
    fn a_reload_replaces_config_definitions_and_leaves_api_ones() {
        let l = LocalServices::new(None);
        let t0 = Instant::now();
        let defs = |v: serde_json::Value| definitions::from_config("services", &v).unwrap();
        let (s, c) = defs(json!([{"name": "web", "check": {"ttl": "10s"}}, {"name": "old"}]));
        l.replace_config(s, c, ScriptPolicy::default(), t0).unwrap();
        let (api, _) = definitions::service(&json!({"name": "api"})).unwrap();
        l.add_service(api, Vec::new(), Source::Api, t0).unwrap();
        l.report("service:web", Status::Passing, "up", t0).unwrap();

        let (s, c) =
            defs(json!([{"name": "web", "port": 81, "check": {"ttl": "10s"}}, {"name": "new"}]));
        l.replace_config(s, c, ScriptPolicy::default(), t0 + Duration::from_secs(1))
            .unwrap();
        let ids: Vec<String> = l.services().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["api", "new", "web"]);
        assert_eq!(l.service("web").unwrap().port, 81, "changed in place");
        let c = &l.checks()[0];
        assert_eq!(
            (c.status, c.output.as_str()),
            (Status::Passing, "up"),
            "an unchanged check keeps its state"
        );
    }

    /// A registration, or a reload, that cannot be made whole changes nothing: no service left
    /// without the checks that were refused, no record too large to publish (which would have held
    /// back every later change too).
    #[test]
    fn a_refused_registration_or_reload_changes_nothing() {
        let l = LocalServices::new(None);
        let t0 = Instant::now();
        let script = |name: &str| json!({"name": name, "checks": [{"ttl": "5s"}, {"args": ["/bin/true"], "interval": "10s"}]});
        let (s, c) = definitions::service(&script("scr")).unwrap();
        assert_eq!(
            l.add_service(s, c, Source::Api, t0),
            Err(RegistryError::ScriptsOff { remote: true })
        );
        assert!(l.services().is_empty() && l.checks().is_empty());

        let (s, c) = definitions::from_config("services", &json!([{"name": "web"}])).unwrap();
        l.replace_config(s, c, ScriptPolicy::default(), t0).unwrap();
        let (s, c) = definitions::from_config(
            "services",
            &json!([script("scr"), {"name": "extra", "check": {"ttl": "5s"}}]),
        )
        .unwrap();
        let e = l
            .replace_config(s, c, ScriptPolicy::default(), t0)
            .unwrap_err();
        assert!(e.contains("Scripts are disabled"), "{e}");
        let ids: Vec<String> = l.services().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["web"], "the running definitions stay");
        assert!(l.checks().is_empty());

        // Nor does a refused reload change which script checks may run, or remove any.
        let local = ScriptPolicy {
            any: false,
            local: true,
        };
        let (s, c) = definitions::from_config("services", &json!([script("scr")])).unwrap();
        assert_eq!(l.replace_config(s, c, local, t0), Ok(vec![]));
        assert_eq!(l.checks().len(), 2);
        let (s, mut c) = definitions::from_config("services", &json!([{"name": "web"}])).unwrap();
        c.push(
            definitions::check(&json!({"name": "o", "ttl": "5s", "service_id": "gone"})).unwrap(),
        );
        let e = l
            .replace_config(s, c, ScriptPolicy::default(), t0)
            .unwrap_err();
        assert!(e.contains("\"gone\" does not exist"), "{e}");
        assert_eq!(l.lock().scripts, local);
        assert_eq!(l.checks().len(), 2, "the script check stays");
        let (s, _) = definitions::from_config("services", &json!([{"name": "web"}])).unwrap();
        assert_eq!(
            l.replace_config(s, Vec::new(), ScriptPolicy::default(), t0),
            Ok(vec!["service:scr:2".to_string()]),
            "an accepted reload applies the policy"
        );
        assert!(l.checks().is_empty());

        // Tags of 200 KB a service: the fifth would not fit a record.
        let big = |i: usize| {
            let tags: Vec<String> = (0..200)
                .map(|k| format!("{i}-{k}-{}", "t".repeat(1000)))
                .collect();
            definitions::service(
                &json!({"name": format!("big{i}"), "tags": tags, "check": {"ttl": "5s"}}),
            )
            .unwrap()
        };
        for i in 0..5 {
            let (s, c) = big(i);
            assert_eq!(l.add_service(s, c, Source::Api, t0), Ok(()));
        }
        let (s, c) = big(5);
        assert!(
            matches!(l.add_service(s, c, Source::Api, t0), Err(RegistryError::TooLarge(n)) if n > RECORD_ROOM)
        );
        assert_eq!(l.services().len(), 6, "web and big0..big4");
        assert_eq!(l.checks().len(), 5);
        let record = NodeRecord::from_local(&l.services(), &l.checks()).encode();
        assert!(record.len() <= RECORD_ROOM, "{}", record.len());
        // Small changes still go in.
        let (s, c) = definitions::service(&json!({"name": "small"})).unwrap();
        assert_eq!(l.add_service(s, c, Source::Api, t0), Ok(()));
    }

    #[test]
    fn results_move_the_status_only_past_the_thresholds() {
        let l = LocalServices::new(None);
        let t0 = Instant::now();
        let def = definitions::check(&json!({"name": "h", "tcp": "127.0.0.1:1", "interval": "1s",
            "success_before_passing": 2, "failures_before_warning": 1, "failures_before_critical": 3}))
        .unwrap();
        l.add_check(def, Source::Api, t0).unwrap();
        let status = || l.checks()[0].status;
        // The counts start at their thresholds: the first result is reported at once.
        l.record_result("h", Status::Passing, "up", t0);
        assert_eq!(status(), Status::Passing);
        l.record_result("h", Status::Critical, "down 1", t0);
        assert_eq!(
            status(),
            Status::Warning,
            "one failure reaches the warning threshold"
        );
        assert_eq!(l.checks()[0].output, "down 1");
        l.record_result("h", Status::Critical, "down 2", t0);
        assert_eq!(status(), Status::Warning);
        l.record_result("h", Status::Critical, "down 3", t0);
        assert_eq!(status(), Status::Critical);
        l.record_result("h", Status::Passing, "up", t0);
        assert_eq!(status(), Status::Critical, "one success is not yet two");
        l.record_result("h", Status::Passing, "up", t0);
        assert_eq!(status(), Status::Passing);
        // deregister_critical_service_after: only services, and only once critical long enough.
        let (svc, checks) =
            definitions::service(&json!({"name": "w", "check": {"tcp": "127.0.0.1:1",
            "interval": "1s", "deregister_critical_service_after": "1m"}}))
            .unwrap();
        l.add_service(svc, checks, Source::Api, t0).unwrap();
        assert!(l.critical_too_long(t0 + Duration::from_secs(59)).is_empty());
        assert_eq!(l.critical_too_long(t0 + Duration::from_secs(60)), ["w"]);
        l.record_result(
            "service:w",
            Status::Passing,
            "",
            t0 + Duration::from_secs(30),
        );
        assert!(
            l.critical_too_long(t0 + Duration::from_secs(120))
                .is_empty()
        );
    }

    #[test]
    fn api_registrations_survive_a_restart_config_ones_do_not_persist() {
        let d = std::env::temp_dir().join(format!("murmur-local-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let t0 = Instant::now();
        let l = LocalServices::new(Some(&d));
        let (api, api_checks) =
            definitions::service(&json!({"name": "api", "port": 8080, "check": {"ttl": "5s"}}))
                .unwrap();
        l.add_service(api.clone(), api_checks, Source::Api, t0)
            .unwrap();
        let (cfg, _) = definitions::service(&json!({"name": "from-file"})).unwrap();
        l.add_service(cfg, Vec::new(), Source::Config, t0).unwrap();
        let again = LocalServices::new(Some(&d));
        assert!(again.load_persisted(t0).is_empty());
        assert_eq!(again.services(), [api]);
        assert_eq!(again.checks()[0].def.id, "service:api");
        assert!(again.remove_service("api").unwrap());
        let third = LocalServices::new(Some(&d));
        assert!(third.load_persisted(t0).is_empty());
        assert!(third.services().is_empty() && third.checks().is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_persisted_registration_refused_now_is_skipped_alone() {
        let d = std::env::temp_dir().join(format!("murmur-restore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let t0 = Instant::now();
        let l = LocalServices::new(Some(&d));
        for name in ["a", "b", "gone"] {
            let (s, c) =
                definitions::service(&json!({"name": name, "check": {"ttl": "5s"}})).unwrap();
            l.add_service(s, c, Source::Api, t0).unwrap();
        }
        // The service file goes (a hand edit, a full disk): its check's file names a service that
        // is no longer there.
        std::fs::remove_file(d.join("services").join(file_name("gone"))).unwrap();

        let again = LocalServices::new(Some(&d));
        let problems = again.load_persisted(t0);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("gone"), "{problems:?}");
        let mut ids: Vec<String> = again.services().into_iter().map(|s| s.id).collect();
        ids.sort();
        assert_eq!(ids, ["a", "b"]);
        let mut checks: Vec<String> = again.checks().into_iter().map(|c| c.def.id).collect();
        checks.sort();
        assert_eq!(checks, ["service:a", "service:b"]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
