//! Stat from the telemetry component's own windowed store: the store's
//! pairs read into [`Windows`] (per group, per point), answered by
//! [`Windows::response`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::windows::{Group, Windows};
use super::{Query, filters, group_label, window_length, window_step};
use crate::ingest::Ingester;
use crate::ingest::labels::{LabelRef, PAIR};
use crate::ingest::window::WindowData;
use crate::proto::public::MetricResponse;

/// Answers a Stat query from the embedded store at the store's current time.
pub fn stat(ingester: &Ingester, q: &Query) -> MetricResponse {
    stat_at(ingester, q, ingester.now_ms())
}

/// [`stat`] at a given store time (for tests and benchmarks).
pub fn stat_at(ingester: &Ingester, q: &Query, now_ms: u64) -> MetricResponse {
    windows_at(ingester, q, now_ms).response(q)
}

/// The raw data behind [`stat`], for a caller that merges several stores.
pub fn windows(ingester: &Ingester, q: &Query) -> Windows {
    windows_at(ingester, q, ingester.now_ms())
}

/// Reads the slots of every pair `q` selects into its group's points, at
/// store time `now_ms`; the result's times are wall-clock.
pub fn windows_at(ingester: &Ingester, q: &Query, now_ms: u64) -> Windows {
    let select = PairSelect::new(q);
    read_at(ingester, q, now_ms, |add| {
        ingester.for_each_pair(|labels, data| {
            if let Some(key) = select.key(labels) {
                add(&key, data);
            }
        });
    })
}

/// Which workload pairs a query selects ([`PAIR`] labels), and the key of
/// the group each adds to.
pub struct PairSelect<'q> {
    /// Each label the query's filter names, as its place in the pair's
    /// labels (a label pairs do not carry reads as empty, as an absent
    /// label does).
    wanted: Vec<(usize, &'q str)>,
    group_by: Option<usize>,
}

impl<'q> PairSelect<'q> {
    pub fn new(q: &'q Query) -> Self {
        let place = |name: &str| PAIR.position(name).unwrap_or(usize::MAX);
        Self {
            wanted: filters(&q.filter)
                .into_iter()
                .map(|(name, want)| (place(name), want))
                .collect(),
            group_by: group_label(q.group_by).map(place),
        }
    }

    /// The group key of a selected pair; `None` for a pair left out.
    pub fn key<'l>(&self, labels: LabelRef<'l>) -> Option<Cow<'l, str>> {
        if !self.wanted.iter().all(|&(i, want)| labels.get(i) == want) {
            return None;
        }
        Some(self.group_by.map_or(Cow::Borrowed(""), |i| labels.get(i)))
    }
}

/// The points of `q`'s window at store time `now_ms`, filled from what
/// `visit` hands its callback: each store entry with the key of the group
/// it adds to. The result's times are wall-clock.
pub fn read_at(
    ingester: &Ingester,
    q: &Query,
    now_ms: u64,
    visit: impl FnOnce(&mut dyn FnMut(&str, &WindowData)),
) -> Windows {
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
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    visit(&mut |key, data| {
        let group = match groups.get_mut(key) {
            Some(g) => g,
            None => groups
                .entry(key.to_string())
                .or_insert_with(|| Group::empty(points.len())),
        };
        group.first_seen_ms = group.first_seen_ms.min(data.covered_from_ms());
        for (totals, &(from, to)) in group.points.iter_mut().zip(&points) {
            data.totals(from, to, totals);
        }
    });
    // From the store's clock to the wall's: one offset, so every span and
    // comparison stays what it was.
    let wall = |ms: u64| ingester.wall_ms(ms);
    for group in groups.values_mut() {
        group.first_seen_ms = wall(group.first_seen_ms);
        for t in &mut group.points {
            t.aligned_from_ms = t.aligned_from_ms.map(wall);
            t.covered_to_ms = t.covered_to_ms.map(wall);
        }
    }
    Windows {
        now_ms: wall(now_ms),
        point_ends_ms: points.iter().map(|&(_, to)| wall(to)).collect(),
        groups,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{Config, Health, NoMetadata};
    use crate::proto::proxy::telemetry::*;
    use crate::proto::public::{
        AggregationType, MetricMetadata, MetricName, TimeWindow, metric_value,
    };
    use prost::Message as _;

    fn empty_store() -> Ingester {
        Ingester::new(
            Config::default(),
            Health::register(&prometheus::Registry::new()).unwrap(),
        )
    }

    #[test]
    fn a_points_rate_divides_by_the_time_its_slots_cover() {
        let ingester = empty_store();
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

    #[test]
    fn one_store_s_windows_through_the_wire_answer_as_the_store_does() {
        let ingester = empty_store();
        let report = ReportRequest {
            requests: vec![RequestScope {
                ctx: Some(RequestCtx::default()),
                count: 30,
                responses: vec![ResponseScope {
                    ctx: Some(ResponseCtx {
                        http_status_code: 200,
                    }),
                    response_latencies: vec![
                        Latency {
                            latency: 120,
                            count: 20,
                        },
                        Latency {
                            latency: 2_500,
                            count: 10,
                        },
                    ],
                    ends: vec![EosScope {
                        ctx: Some(EosCtx {
                            end: Some(eos_ctx::End::GrpcStatusCode(0)),
                        }),
                        streams: vec![StreamSummary::default(); 30],
                    }],
                }],
            }],
            ..ReportRequest::default()
        };
        ingester
            .ingest_bytes(&report.encode_to_vec(), &NoMetadata)
            .unwrap();
        for summarize in [true, false] {
            let q = Query {
                metrics: vec![
                    MetricName::RequestRate,
                    MetricName::SuccessRate,
                    MetricName::Latency,
                ],
                window: TimeWindow::OneMin,
                group_by: AggregationType::Mesh,
                filter: MetricMetadata::default(),
                summarize,
            };
            let direct = stat_at(&ingester, &q, 25_000);
            assert!(!direct.metrics.is_empty());
            let mut merged = Windows::default();
            let wire = windows_at(&ingester, &q, 25_000).to_wire();
            merged.merge(Windows::from_wire(wire, &q).unwrap());
            assert_eq!(merged.response(&q), direct, "summarize: {summarize}");
        }
    }
}
