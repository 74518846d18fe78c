//! The component's own registry (the ingester's health, gRPC and process
//! metrics, remote write's own) walked into samples: the same samples the
//! text encoder prints on `/metrics`, with the same `le` and `quantile`
//! spellings, so a series is one series whether Prometheus scrapes or is
//! pushed to.

use prometheus::proto::{MetricFamily, MetricType};
use smallvec::SmallVec;

use crate::ingest::walk::{Extra, Labels, Value, Visit};

/// Visits every sample of `families`.
pub fn walk(families: &[MetricFamily], visit: &mut impl Visit) {
    for family in families {
        let name = family.name();
        let suffixed = |suffix: &str| format!("{name}{suffix}");
        let (bucket, sum, count) = match family.get_field_type() {
            MetricType::HISTOGRAM => (suffixed("_bucket"), suffixed("_sum"), suffixed("_count")),
            MetricType::SUMMARY => (String::new(), suffixed("_sum"), suffixed("_count")),
            _ => Default::default(),
        };
        for metric in family.get_metric() {
            let pairs: SmallVec<[(&str, &str); 8]> = metric
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            let labels = Labels::Pairs(&pairs);
            visit.series(labels);
            match family.get_field_type() {
                MetricType::COUNTER => {
                    visit.sample(
                        name,
                        labels,
                        Extra::None,
                        Value::Float(metric.get_counter().get_value()),
                    );
                }
                MetricType::GAUGE => {
                    visit.sample(
                        name,
                        labels,
                        Extra::None,
                        Value::Float(metric.get_gauge().get_value()),
                    );
                }
                // Nothing registers one, and the text encoder cannot print
                // it either: left out of both.
                MetricType::UNTYPED => {}
                MetricType::HISTOGRAM => {
                    let h = metric.get_histogram();
                    let mut inf_seen = false;
                    for b in h.get_bucket() {
                        let le = b.upper_bound();
                        inf_seen |= le.is_infinite() && le.is_sign_positive();
                        visit.sample(
                            &bucket,
                            labels,
                            Extra::Pairs(&[("le", &le.to_string())]),
                            Value::Count(b.cumulative_count()),
                        );
                    }
                    if !inf_seen {
                        visit.sample(
                            &bucket,
                            labels,
                            Extra::Pairs(&[("le", "+Inf")]),
                            Value::Count(h.get_sample_count()),
                        );
                    }
                    visit.sample(&sum, labels, Extra::None, Value::Float(h.get_sample_sum()));
                    visit.sample(
                        &count,
                        labels,
                        Extra::None,
                        Value::Count(h.get_sample_count()),
                    );
                }
                MetricType::SUMMARY => {
                    let s = metric.get_summary();
                    for q in s.get_quantile() {
                        visit.sample(
                            name,
                            labels,
                            Extra::Pairs(&[("quantile", &q.quantile().to_string())]),
                            Value::Float(q.value()),
                        );
                    }
                    visit.sample(&sum, labels, Extra::None, Value::Float(s.sample_sum()));
                    visit.sample(&count, labels, Extra::None, Value::Count(s.sample_count()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder as _, HistogramOpts, Opts, Registry, TextEncoder};

    use super::*;

    use crate::ingest::walk::testing::{Collect, parse_text};

    #[test]
    fn registry_walk_and_text_encoder_agree() {
        let registry = Registry::new();
        let counter = prometheus::IntCounterVec::new(
            Opts::new("conduit_test_total", "A counter."),
            &["reason"],
        )
        .unwrap();
        counter.with_label_values(&["a\"b"]).inc_by(3);
        counter.with_label_values(&["plain"]).inc();
        let gauge = prometheus::Gauge::new("conduit_test_gauge", "A gauge.").unwrap();
        gauge.set(-2.5);
        let histogram = prometheus::Histogram::with_opts(
            HistogramOpts::new("conduit_test_seconds", "A histogram.")
                .buckets(vec![0.005, 0.25, 1.0, 128.0]),
        )
        .unwrap();
        for v in [0.001, 0.2, 0.3, 500.0] {
            histogram.observe(v);
        }
        registry.register(Box::new(counter)).unwrap();
        registry.register(Box::new(gauge)).unwrap();
        registry.register(Box::new(histogram)).unwrap();

        let families = registry.gather();
        let mut text = Vec::new();
        TextEncoder::new().encode(&families, &mut text).unwrap();
        let mut walked = Collect::default();
        walk(&families, &mut walked);
        walked.0.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));

        assert_eq!(walked.0, parse_text(&String::from_utf8(text).unwrap()));
        let le: Vec<&str> = walked
            .0
            .iter()
            .filter_map(|(_, l, _)| l.get("le").map(String::as_str))
            .collect();
        assert_eq!(le, ["+Inf", "0.005", "0.25", "1", "128"]);
    }
}
