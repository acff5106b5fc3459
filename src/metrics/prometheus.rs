//! Prometheus's text format (0.0.4), written by `prometheus-client` from one snapshot: counters get
//! `_total`, samples become histograms in seconds, names are the dotted ones with `_` under the prefix.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::{Snapshot, Value};

/// The `Content-Type` of the text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The snapshot as Prometheus text, names under `prefix`.
pub fn render(snap: Snapshot, prefix: &str) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix(prefix);
    registry.register_collector(Box::new(Scraped(snap)));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// One scrape's values, handed to the encoder.
#[derive(Debug)]
struct Scraped(Snapshot);

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // One descriptor per name, then each of its label sets (they arrive together: gathered so).
        let mut i = 0;
        let metrics = &self.0.metrics;
        while i < metrics.len() {
            let first = &metrics[i];
            let same = metrics[i..]
                .iter()
                .take_while(|m| m.name == first.name)
                .count();
            let kind = match first.value {
                Value::Counter(_) => MetricType::Counter,
                Value::Gauge(_) => MetricType::Gauge,
                Value::Sample(_) => MetricType::Histogram,
            };
            let name = first.name.replace('.', "_");
            let help = match first.value {
                Value::Sample(_) => format!("{} (seconds)", first.help),
                _ => first.help.to_string(),
            };
            let mut family = encoder.encode_descriptor(&name, &help, None, kind)?;
            for m in &metrics[i..i + same] {
                let labels = m.labels.clone();
                let enc = family.encode_family(&labels)?;
                match &m.value {
                    Value::Counter(n) => ConstCounter::new(*n).encode(enc)?,
                    Value::Gauge(v) => ConstGauge::new(*v).encode(enc)?,
                    Value::Sample(a) => {
                        let mut enc = enc;
                        enc.encode_histogram::<NoLabelSet>(a.sum, a.count, &a.cumulative(), None)?
                    }
                }
            }
            i += same;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Agg;

    #[test]
    fn counters_gauges_and_histograms_in_the_text_format() {
        let mut snap = Snapshot::default();
        snap.counter("memberlist.dropped", "Drops.", &[("reason", "decrypt")], 3);
        snap.counter("memberlist.dropped", "Drops.", &[("reason", "size")], 0);
        snap.gauge("serf.members", "Members.", &[], 2.0);
        let mut a = Agg::default();
        a.add(0.003);
        snap.push(
            "api.http",
            "Requests.",
            &[("code", "200")],
            Value::Sample(a),
        );
        let text = render(snap, "murmur").unwrap();
        for line in [
            "# TYPE murmur_memberlist_dropped_total counter",
            "murmur_memberlist_dropped_total{reason=\"decrypt\"} 3",
            "murmur_memberlist_dropped_total{reason=\"size\"} 0",
            "# TYPE murmur_serf_members gauge",
            "murmur_serf_members 2.0",
            "# TYPE murmur_api_http histogram",
            "murmur_api_http_bucket{code=\"200\",le=\"0.005\"} 1",
            "murmur_api_http_bucket{code=\"200\",le=\"0.0025\"} 0",
            "murmur_api_http_count{code=\"200\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
        }
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("# TYPE murmur_memberlist_dropped"))
                .count(),
            1,
            "one descriptor per name"
        );
    }
}
