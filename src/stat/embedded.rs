//! Stat from the telemetry component's own windowed store.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::{Query, filters, group_label, group_metadata, round_ms, window_length, window_step};
use crate::ingest::Ingester;
use crate::ingest::labels::PAIR;
use crate::ingest::window::Totals;
use crate::proto::public::{
    Histogram, HistogramLabel, HistogramValue, MetricDatapoint, MetricName, MetricResponse,
    MetricSeries, MetricValue, metric_value,
};

/// The shortest span a rate is divided by, so a pair seen a moment ago does
/// not produce an absurd rate.
const MIN_SPAN_MS: u64 = 1_000;

struct Group {
    /// Where the group's data begins (see [`crate::ingest::window::WindowData::covered_from_ms`]).
    first_seen_ms: u64,
    points: Vec<Totals>,
}

/// Answers a Stat query from the embedded store at the store's current time.
pub fn stat(ingester: &Ingester, q: &Query) -> MetricResponse {
    stat_at(ingester, q, ingester.now_ms())
}

/// [`stat`] at a given store time (for tests and benchmarks).
pub fn stat_at(ingester: &Ingester, q: &Query, now_ms: u64) -> MetricResponse {
    let len = window_length(q.window).as_millis() as u64;
    let points: Vec<(u64, u64)> = if q.summarize {
        vec![(now_ms.saturating_sub(len), now_ms)]
    } else {
        let step = window_step(q.window).as_millis() as u64;
        let n = (len / step).max(1);
        // Points before the store started have no data and are left out.
        (0..n)
            .rev()
            .filter_map(|back| {
                let to = now_ms.checked_sub(back * step)?;
                Some((to.saturating_sub(step), to))
            })
            .collect()
    };
    let wanted = filters(&q.filter);
    let label = group_label(q.group_by);
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    // Each label a query names, as its place in the pair's labels (a label
    // pairs do not carry reads as empty, as an absent label does).
    let place = |name: &str| PAIR.position(name).unwrap_or(usize::MAX);
    let wanted: Vec<(usize, &str)> = wanted
        .iter()
        .map(|&(name, want)| (place(name), want))
        .collect();
    let group_by = label.map(place);
    ingester.for_each_pair(|labels, data| {
        if !wanted.iter().all(|&(i, want)| labels.get(i) == want) {
            return;
        }
        let key = group_by.map_or(Cow::Borrowed(""), |i| labels.get(i));
        let key = &*key;
        let group = match groups.get_mut(key) {
            Some(g) => g,
            None => groups.entry(key.to_string()).or_insert_with(|| Group {
                first_seen_ms: u64::MAX,
                points: vec![Totals::default(); points.len()],
            }),
        };
        group.first_seen_ms = group.first_seen_ms.min(data.covered_from_ms());
        for (totals, &(from, to)) in group.points.iter_mut().zip(&points) {
            data.totals(from, to, totals);
        }
    });

    let mut metrics = Vec::new();
    for (key, group) in &groups {
        if group
            .points
            .iter()
            .all(|t| t.requests == 0 && t.latency.is_empty() && t.success + t.failure == 0)
        {
            continue;
        }
        for &name in &q.metrics {
            let datapoints = group
                .points
                .iter()
                .zip(&points)
                .filter_map(|(t, &(_, to))| {
                    // Like a PromQL range query: no value before the data began.
                    if to < group.first_seen_ms {
                        return None;
                    }
                    let value = value_of(name, t, to, now_ms, group.first_seen_ms)?;
                    Some(MetricDatapoint {
                        value: Some(MetricValue { value: Some(value) }),
                        timestamp_ms: ingester.wall_ms(to) as i64,
                    })
                })
                .collect();
            metrics.push(MetricSeries {
                name: name as i32,
                metadata: Some(group_metadata(q.group_by, key)),
                datapoints,
            });
        }
    }
    MetricResponse { metrics }
}

/// The value of one metric for the counts `t` of a point ending at `to_ms`,
/// read at `now_ms`.
fn value_of(
    name: MetricName,
    t: &Totals,
    to_ms: u64,
    now_ms: u64,
    first_seen_ms: u64,
) -> Option<metric_value::Value> {
    match name {
        MetricName::RequestRate => {
            let from = t.aligned_from_ms?.max(first_seen_ms);
            // The counts run to the end of the last slot read (a point of a
            // series ends inside a slot), but never past now.
            let to = t.covered_to_ms.map_or(to_ms, |c| c.min(now_ms)).max(to_ms);
            let span = to.saturating_sub(from).max(MIN_SPAN_MS);
            Some(metric_value::Value::Gauge(
                t.requests as f64 * 1000.0 / span as f64,
            ))
        }
        MetricName::SuccessRate => {
            let all = t.success + t.failure;
            (all > 0).then(|| metric_value::Value::Gauge(t.success as f64 / all as f64))
        }
        MetricName::Latency => {
            let values = [
                (HistogramLabel::P50, 0.50),
                (HistogramLabel::P95, 0.95),
                (HistogramLabel::P99, 0.99),
            ]
            .into_iter()
            .filter_map(|(label, q)| {
                Some(HistogramValue {
                    label: label as i32,
                    value: round_ms(t.latency.quantile(q)?),
                })
            })
            .collect::<Vec<_>>();
            (!values.is_empty()).then_some(metric_value::Value::Histogram(Histogram { values }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{Config, Health, NoMetadata};
    use crate::proto::proxy::telemetry::*;
    use crate::proto::public::{AggregationType, MetricMetadata, TimeWindow};
    use prost::Message as _;

    #[test]
    fn a_points_rate_divides_by_the_time_its_slots_cover() {
        let ingester = Ingester::new(
            Config::default(),
            Health::register(&prometheus::Registry::new()).unwrap(),
        );
        let report = ReportRequest {
            requests: vec![RequestScope {
                ctx: Some(RequestCtx::default()),
                count: 100,
                responses: vec![],
            }],
            ..ReportRequest::default()
        };
        ingester
            .ingest_bytes(&report.encode_to_vec(), &NoMetadata)
            .unwrap();
        let q = Query {
            metrics: vec![MetricName::RequestRate],
            window: TimeWindow::OneMin,
            group_by: AggregationType::Mesh,
            filter: MetricMetadata::default(),
            summarize: false,
        };
        // Read at 25 s: the point ending at 5 s reads the first 10 s slot
        // whole, so its 100 requests are spread over those 10 s, not over
        // the 5 s up to the point's end.
        let rsp = stat_at(&ingester, &q, 25_000);
        let rates: Vec<f64> = rsp.metrics[0]
            .datapoints
            .iter()
            .map(|d| match d.value.as_ref().unwrap().value {
                Some(metric_value::Value::Gauge(g)) => g,
                ref other => panic!("a gauge: {other:?}"),
            })
            .collect();
        assert_eq!(rates.len(), 3, "points ending at 5, 15 and 25 s: {rates:?}");
        assert!((rates[0] - 10.0).abs() < 0.1, "{rates:?}");
        assert!(rates[1] <= 10.0 && rates[2] <= 10.0, "{rates:?}");
    }
}
