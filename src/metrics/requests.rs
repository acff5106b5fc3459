//! HTTP requests as they finish: a timing per route, method and status code. The routes are the
//! router's own patterns (`/v1/kv/{*key}`), so the label sets stay few however many keys are read.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Agg, Snapshot, Value};

/// The requests served so far: by route, then a short list of (method, status) pairs, so counting a
/// request allocates nothing once its label set exists.
#[derive(Debug, Default)]
pub struct Requests {
    by: Mutex<HashMap<String, Vec<LabelSet>>>,
}

/// One route's requests with one method and status code.
type LabelSet = (String, u16, Agg);

impl Requests {
    /// Counts one request to `route` with `method` that ended with `status` after `secs` seconds.
    pub fn record(&self, method: &str, route: &str, status: u16, secs: f64) {
        let mut by = self.by.lock().unwrap_or_else(|p| p.into_inner());
        let sets = match by.get_mut(route) {
            Some(sets) => sets,
            None => by.entry(route.to_string()).or_default(),
        };
        match sets
            .iter_mut()
            .find(|(m, s, _)| m == method && *s == status)
        {
            Some((_, _, a)) => a.add(secs),
            None => {
                let mut a = Agg::default();
                a.add(secs);
                sets.push((method.to_string(), status, a));
            }
        }
    }

    /// Adds them to `snap` as Consul's `api.http` sample, labelled by method, path and code.
    pub fn read_into(&self, snap: &mut Snapshot) {
        let by = self.by.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(&str, &str, u16, &Agg)> = by
            .iter()
            .flat_map(|(route, sets)| {
                sets.iter()
                    .map(move |(m, s, a)| (m.as_str(), route.as_str(), *s, a))
            })
            .collect();
        all.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        for (method, route, status, agg) in all {
            let code = status.to_string();
            snap.push(
                "api.http",
                "HTTP API requests served, by method, route and status code, with their latency.",
                &[("method", method), ("path", route), ("code", &code)],
                Value::Sample(agg.clone()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_per_route_method_and_status() {
        let r = Requests::default();
        r.record("GET", "/v1/kv/{*key}", 200, 0.001);
        r.record("GET", "/v1/kv/{*key}", 200, 0.003);
        r.record("GET", "/v1/kv/{*key}", 404, 0.001);
        let mut snap = Snapshot::default();
        r.read_into(&mut snap);
        assert_eq!(snap.metrics.len(), 2);
        let Value::Sample(a) = &snap.metrics[0].value else {
            panic!("a sample")
        };
        assert_eq!(a.count, 2);
        assert_eq!(
            snap.metrics[0].labels,
            [
                ("method".to_string(), "GET".to_string()),
                ("path".into(), "/v1/kv/{*key}".into()),
                ("code".into(), "200".into())
            ]
        );
    }
}
