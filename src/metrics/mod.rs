//! The agent's metrics, served at `/v1/agent/metrics` in Consul's JSON shape and, with
//! `?format=prometheus`, in Prometheus's text format.
//!
//! Most counters already exist where the work is done (the gossip drivers, the DNS server), as atomics
//! read without a lock. A scrape reads them into one [`Snapshot`], and both formats are written from that
//! snapshot, so the two can never disagree and recording costs nothing beyond what those layers already
//! do. HTTP requests are the exception: [`requests::Requests`] records them as they finish. This module
//! depends on no other part of the agent; `http/metrics.rs` gathers the snapshot.

pub mod json;
pub mod prometheus;
pub mod requests;

/// One metric's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A count since the agent started.
    Counter(u64),
    /// A level now.
    Gauge(f64),
    /// Timings, in seconds.
    Sample(Agg),
}

/// One metric with its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Dotted name without the prefix, in Consul's style (`memberlist.udp.received`).
    pub name: &'static str,
    /// One line on what it counts.
    pub help: &'static str,
    /// Labels (`pool="lan"`, `reason="decrypt"`).
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: Value,
}

/// Everything one scrape read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The metrics, in the order they were read; one name may appear with several label sets.
    pub metrics: Vec<Metric>,
    /// Seconds since the agent started (the interval Consul's JSON rates are over).
    pub uptime_secs: f64,
}

impl Snapshot {
    /// Adds a counter.
    pub fn counter(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        v: u64,
    ) {
        self.push(name, help, labels, Value::Counter(v));
    }

    /// Adds a gauge.
    pub fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        v: f64,
    ) {
        self.push(name, help, labels, Value::Gauge(v));
    }

    /// Adds a metric.
    pub fn push(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: Value,
    ) {
        self.metrics.push(Metric {
            name,
            help,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        });
    }
}

/// Upper bounds, in seconds, of the latency buckets timings are counted in.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Timings summed up: count, sum, extremes, the sum of squares (for the deviation) and the count in
/// each bucket of [`BUCKETS`] (not cumulative; one more for what is above the last bound).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Agg {
    /// How many.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// The sum of their squares.
    pub sum_sq: f64,
    /// Per bucket.
    pub buckets: [u64; BUCKETS.len() + 1],
}

impl Agg {
    /// Counts one timing of `secs` seconds.
    pub fn add(&mut self, secs: f64) {
        if self.count == 0 || secs < self.min {
            self.min = secs;
        }
        if self.count == 0 || secs > self.max {
            self.max = secs;
        }
        self.count += 1;
        self.sum += secs;
        self.sum_sq += secs * secs;
        let at = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[at] += 1;
    }

    /// The mean, or 0 with no timing.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// The sample standard deviation, or 0 with fewer than two timings.
    pub fn stddev(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        let n = self.count as f64;
        let var = (self.sum_sq - self.sum * self.sum / n) / (n - 1.0);
        var.max(0.0).sqrt()
    }

    /// Cumulative counts per upper bound, as Prometheus histograms give them (`+Inf` last).
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets.iter())
            .map(|(le, n)| {
                total += n;
                (le, total)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_sum_up() {
        let mut a = Agg::default();
        assert_eq!((a.mean(), a.stddev()), (0.0, 0.0));
        for s in [0.002, 0.004, 0.3, 20.0] {
            a.add(s);
        }
        assert_eq!(a.count, 4);
        assert_eq!((a.min, a.max), (0.002, 20.0));
        assert!((a.mean() - 5.0765).abs() < 1e-9);
        assert!((a.stddev() - 9.9490).abs() < 1e-3, "{}", a.stddev());
        let c = a.cumulative();
        assert_eq!(c.len(), BUCKETS.len() + 1);
        assert_eq!(c[2], (0.0025, 1));
        assert_eq!(c[3], (0.005, 2));
        assert_eq!(c[8], (0.25, 2));
        assert_eq!(c[9], (0.5, 3));
        assert_eq!(c[13], (10.0, 3));
        assert_eq!(c[14], (f64::INFINITY, 4), "above every bound: only in +Inf");
    }
}
