//! Alias checks: mirror the health of another service instance — on this agent, or on another node
//! through the replicated catalog (that node's `serfHealth` included). Re-evaluated whenever the local
//! registry or the catalog changes, and at least once a minute, as Consul does.

use std::sync::Arc;
use std::time::Duration;

use super::{ClusterView, Outcome};
use crate::state::definitions::{CheckDef, CheckKind, Status};
use crate::state::local_services::LocalServices;
use crate::state::members::MemberStatus;

/// Longest time between evaluations.
const REFRESH: Duration = Duration::from_secs(60);

/// Keeps the alias check `def` in step with what it aliases.
pub async fn run(services: Arc<LocalServices>, view: ClusterView, def: CheckDef) {
    let CheckKind::Alias { node, service } = &def.kind else {
        return;
    };
    let local = node.as_deref().is_none_or(|n| n == view.node);
    let mut registry = services.generation.subscribe();
    let mut catalog = view.catalog.subscribe();
    loop {
        let (status, output) = if local {
            evaluate_local(&services, &view.node, service, &def.id)
        } else {
            evaluate_remote(&view, node.as_deref().unwrap_or_default(), service)
        };
        services.record_result(&def.id, status, &output, std::time::Instant::now());
        tokio::select! {
            r = registry.changed() => if r.is_err() { return },
            r = catalog.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(REFRESH) => {}
        }
    }
}

/// The worst of `checks` (name, status, output), in Consul's words.
fn aggregate<'a>(checks: impl Iterator<Item = (&'a str, Status, &'a str)>) -> Outcome {
    let mut any = false;
    let mut warning = None;
    for (name, status, output) in checks {
        any = true;
        let failing = || format!("Aliased check \"{name}\" failing: {output}");
        match status {
            Status::Critical => return (Status::Critical, failing()),
            Status::Warning if warning.is_none() => warning = Some(failing()),
            _ => {}
        }
    }
    match (warning, any) {
        (Some(w), _) => (Status::Warning, w),
        (None, true) => (Status::Passing, "All checks passing.".into()),
        (None, false) => (Status::Passing, "No checks found.".into()),
    }
}

fn missing(service: &str, node: &str) -> Outcome {
    (
        Status::Critical,
        format!("Service {service} could not be found on node {node}"),
    )
}

fn evaluate_local(services: &LocalServices, node: &str, service: &str, own: &str) -> Outcome {
    if services.service(service).is_none() {
        return missing(service, node);
    }
    let checks = services.checks();
    aggregate(
        checks
            .iter()
            .filter(|c| c.def.id != own)
            .filter(|c| c.def.service_id.as_deref().is_none_or(|s| s == service))
            .map(|c| (c.def.name.as_str(), c.status, c.output.as_str())),
    )
}

fn evaluate_remote(view: &ClusterView, node: &str, service: &str) -> Outcome {
    let Some(entry) = view.catalog.node(node) else {
        return missing(service, node);
    };
    if !entry.record.services.iter().any(|s| s.id == service) {
        return missing(service, node);
    }
    let serf = match view.members.get(node).map(|m| m.status) {
        Some(MemberStatus::Alive | MemberStatus::Leaving) => {
            (Status::Passing, "Agent alive and reachable")
        }
        _ => (Status::Critical, "Agent not live or unreachable"),
    };
    aggregate(
        std::iter::once(("Serf Health Status", serf.0, serf.1)).chain(
            entry
                .record
                .checks
                .iter()
                .filter(|c| c.service_id.is_empty() || c.service_id == service)
                .map(|c| (c.name.as_str(), c.status(), c.output.as_str())),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_check_wins_in_consul_words() {
        let none: [(&str, Status, &str); 0] = [];
        assert_eq!(aggregate(none.into_iter()).1, "No checks found.");
        let ok = [("a", Status::Passing, "")];
        assert_eq!(
            aggregate(ok.into_iter()),
            (Status::Passing, "All checks passing.".into())
        );
        let mixed = [
            ("a", Status::Warning, "slow"),
            ("b", Status::Critical, "down"),
            ("c", Status::Passing, ""),
        ];
        assert_eq!(
            aggregate(mixed.into_iter()),
            (Status::Critical, "Aliased check \"b\" failing: down".into())
        );
        let warn = [("a", Status::Passing, ""), ("b", Status::Warning, "slow")];
        assert_eq!(aggregate(warn.into_iter()).0, Status::Warning);
    }
}
