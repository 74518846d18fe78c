//! The raw data behind an embedded Stat answer, and the one computation
//! that turns it into the answer.
//!
//! [`super::embedded`] reads a [`Windows`] from one store; the telemetry
//! component answers Stat with [`Windows::response`] of it, and hands it
//! whole to a caller that merges several replicas (`Windows` of
//! `proto/controller/stat`). That caller adds the replicas' windows with
//! [`Windows::merge`] — counts summed, latency histograms added bucket by
//! bucket — and computes rates and percentiles from the sums with the same
//! [`Windows::response`], so one replica's answer is what it always was and
//! N replicas' is what one store holding all their traffic would give.
//! Percentiles are never averaged.
//!
//! Times are wall-clock milliseconds, so windows read by processes started
//! at different moments line up.

use std::collections::BTreeMap;

use super::{Query, group_metadata, round_ms, window_length, window_step};
use crate::ingest::hist::SparseHist;
use crate::ingest::window::{Span, Totals};
use crate::proto::controller::stat::{WindowGroup, WindowTotals, WindowsResponse};
use crate::proto::public::{
    Histogram, HistogramLabel, HistogramValue, MetricDatapoint, MetricName, MetricResponse,
    MetricSeries, MetricValue, metric_value,
};

/// The shortest span a rate is divided by, so a pair seen a moment ago does
/// not produce an absurd rate.
const MIN_SPAN_MS: u64 = 1_000;

/// A Stat query's raw data: per group, per point, what the point's slots
/// add up to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Windows {
    /// When the windows were read.
    pub now_ms: u64,
    /// Where each point ends, oldest first.
    pub point_ends_ms: Vec<u64>,
    /// By the value of the query's group label ("" for the mesh).
    pub groups: BTreeMap<String, Group>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// Where the group's data begins (see
    /// [`crate::ingest::window::WindowData::covered_from_ms`]).
    pub first_seen_ms: u64,
    /// One per [`Windows::point_ends_ms`].
    pub points: Vec<Totals>,
}

impl Group {
    /// A group with no data yet over `points` points.
    pub fn empty(points: usize) -> Self {
        Self {
            first_seen_ms: u64::MAX,
            points: vec![Totals::default(); points],
        }
    }
}

/// How many points a query's answer has at most: one when summarized,
/// otherwise one per step of the window.
pub fn point_count(q: &Query) -> usize {
    if q.summarize {
        return 1;
    }
    let len = window_length(q.window).as_millis() as u64;
    let step = window_step(q.window).as_millis() as u64;
    (len / step).max(1) as usize
}

/// Why another process's windows cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowsError {
    #[error("a negative time ({0} ms)")]
    NegativeTime(i64),
    #[error("group {key:?} has {got} points for {want} point ends")]
    Points {
        key: String,
        got: usize,
        want: usize,
    },
    #[error("{got} points for a query of at most {want}")]
    TooManyPoints { got: usize, want: usize },
    #[error("group {0:?} is listed twice")]
    DuplicateGroup(String),
    #[error("a latency histogram with {buckets} buckets and {counts} counts")]
    HistogramShape { buckets: usize, counts: usize },
    #[error("a latency bucket past the store's layout")]
    HistogramBucket,
}

impl Windows {
    /// Adds another replica's windows for the same query. Points line up
    /// from the newest: a replica started inside the window has fewer of
    /// them, and its points are the latest ones. Each point ends where the
    /// later of the two says (they differ by the moments the replicas were
    /// asked).
    pub fn merge(&mut self, other: Windows) {
        self.now_ms = self.now_ms.max(other.now_ms);
        let short = self.point_ends_ms.len();
        let n = short.max(other.point_ends_ms.len());
        if short < n {
            let lead = n - short;
            let mut ends = other.point_ends_ms[..lead].to_vec();
            ends.append(&mut self.point_ends_ms);
            self.point_ends_ms = ends;
            for group in self.groups.values_mut() {
                let mut points = vec![Totals::default(); lead];
                points.append(&mut group.points);
                group.points = points;
            }
        }
        let offset = n - other.point_ends_ms.len();
        for (end, &theirs) in self
            .point_ends_ms
            .iter_mut()
            .skip(offset)
            .zip(&other.point_ends_ms)
        {
            *end = (*end).max(theirs);
        }
        for (key, theirs) in other.groups {
            let mine = self.groups.entry(key).or_insert_with(|| Group::empty(n));
            mine.first_seen_ms = mine.first_seen_ms.min(theirs.first_seen_ms);
            for (t, their) in mine.points.iter_mut().skip(offset).zip(&theirs.points) {
                t.merge(their);
            }
        }
    }

    /// The Stat answer: request rate, success rate and latency percentiles
    /// per group and point, from the counts and histograms as they are.
    pub fn response(&self, q: &Query) -> MetricResponse {
        let mut metrics = Vec::new();
        for (key, group) in &self.groups {
            if group.points.iter().all(Totals::is_empty) {
                continue;
            }
            for &name in &q.metrics {
                let datapoints = group
                    .points
                    .iter()
                    .zip(&self.point_ends_ms)
                    .filter_map(|(t, &to)| {
                        // Like a PromQL range query: no value before the data began.
                        if to < group.first_seen_ms {
                            return None;
                        }
                        let value = value_of(name, t, to, self.now_ms, group.first_seen_ms)?;
                        Some(MetricDatapoint {
                            value: Some(MetricValue { value: Some(value) }),
                            timestamp_ms: to as i64,
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

    /// The windows as the `Windows` call sends them.
    pub fn to_wire(&self) -> WindowsResponse {
        WindowsResponse {
            now_ms: wire_ms(self.now_ms),
            point_end_ms: self.point_ends_ms.iter().map(|&ms| wire_ms(ms)).collect(),
            groups: self
                .groups
                .iter()
                .map(|(key, group)| WindowGroup {
                    key: key.clone(),
                    covered_from_ms: wire_ms(group.first_seen_ms),
                    points: group.points.iter().map(totals_to_wire).collect(),
                })
                .collect(),
        }
    }

    /// Another process's windows, checked whole: every group with one
    /// totals per point, histograms in the store's layout, no more points
    /// than `q` asks for.
    pub fn from_wire(wire: WindowsResponse, q: &Query) -> Result<Self, WindowsError> {
        let want = point_count(q);
        if wire.point_end_ms.len() > want {
            return Err(WindowsError::TooManyPoints {
                got: wire.point_end_ms.len(),
                want,
            });
        }
        let point_ends_ms = wire
            .point_end_ms
            .iter()
            .map(|&ms| local_ms(ms))
            .collect::<Result<Vec<_>, _>>()?;
        let mut groups = BTreeMap::new();
        for group in wire.groups {
            if group.points.len() != point_ends_ms.len() {
                return Err(WindowsError::Points {
                    key: group.key,
                    got: group.points.len(),
                    want: point_ends_ms.len(),
                });
            }
            let points = group
                .points
                .into_iter()
                .map(totals_from_wire)
                .collect::<Result<Vec<_>, _>>()?;
            let value = Group {
                first_seen_ms: local_ms(group.covered_from_ms)?,
                points,
            };
            if groups.insert(group.key.clone(), value).is_some() {
                return Err(WindowsError::DuplicateGroup(group.key));
            }
        }
        Ok(Self {
            now_ms: local_ms(wire.now_ms)?,
            point_ends_ms,
            groups,
        })
    }
}

/// A time for the wire (ms fit in i64 for the next 292 million years).
fn wire_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn local_ms(ms: i64) -> Result<u64, WindowsError> {
    u64::try_from(ms).map_err(|_| WindowsError::NegativeTime(ms))
}

fn totals_to_wire(t: &Totals) -> WindowTotals {
    let (latency_buckets, latency_counts) = t
        .latency
        .buckets()
        .map(|(idx, n)| (u32::from(idx), n))
        .unzip();
    WindowTotals {
        requests: t.requests,
        success: t.success,
        failure: t.failure,
        latency_buckets,
        latency_counts,
        aligned_from_ms: t.aligned_from_ms.map(wire_ms),
        covered_to_ms: t.covered_to_ms.map(wire_ms),
    }
}

fn totals_from_wire(t: WindowTotals) -> Result<Totals, WindowsError> {
    if t.latency_buckets.len() != t.latency_counts.len() {
        return Err(WindowsError::HistogramShape {
            buckets: t.latency_buckets.len(),
            counts: t.latency_counts.len(),
        });
    }
    let latency = SparseHist::from_buckets(t.latency_buckets.into_iter().zip(t.latency_counts))
        .ok_or(WindowsError::HistogramBucket)?;
    Ok(Totals {
        requests: t.requests,
        success: t.success,
        failure: t.failure,
        latency,
        aligned_from_ms: t.aligned_from_ms.map(local_ms).transpose()?,
        covered_to_ms: t.covered_to_ms.map(local_ms).transpose()?,
    })
}

/// `count` per second over the time a read of a point ending at `to_ms`
/// covered (`span`), from where the group's data begins: the rate of
/// DESIGN §11, over the span actually covered. `None` when nothing was
/// read.
pub fn per_second(
    count: u64,
    span: Span,
    to_ms: u64,
    now_ms: u64,
    first_seen_ms: u64,
) -> Option<f64> {
    let from = span.aligned_from_ms?.max(first_seen_ms);
    // The counts run to the end of the last slot read (a point of a series
    // ends inside a slot), but never past now.
    let to = span
        .covered_to_ms
        .map_or(to_ms, |c| c.min(now_ms))
        .max(to_ms);
    let span = to.saturating_sub(from).max(MIN_SPAN_MS);
    Some(count as f64 * 1000.0 / span as f64)
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
        MetricName::RequestRate => per_second(t.requests, t.span(), to_ms, now_ms, first_seen_ms)
            .map(metric_value::Value::Gauge),
        MetricName::SuccessRate => {
            let all = t.success.saturating_add(t.failure);
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
    use crate::proto::public::{AggregationType, MetricMetadata, TimeWindow};

    fn query(summarize: bool) -> Query {
        Query {
            metrics: vec![
                MetricName::RequestRate,
                MetricName::SuccessRate,
                MetricName::Latency,
            ],
            window: TimeWindow::OneMin,
            group_by: AggregationType::TargetDeploy,
            filter: MetricMetadata::default(),
            summarize,
        }
    }

    /// `requests` in one point read from `from` to `to`, all successful,
    /// all of `latency` tenths of a ms.
    fn totals(requests: u64, latency: u32, from: u64, to: u64) -> Totals {
        let mut t = Totals {
            requests,
            success: requests,
            aligned_from_ms: Some(from),
            covered_to_ms: Some(to),
            ..Totals::default()
        };
        t.latency.record(latency, requests);
        t
    }

    /// One replica's summarized windows: `requests` to shop/books over
    /// the minute before `now`.
    fn replica(now: u64, requests: u64, latency: u32) -> Windows {
        let group = Group {
            first_seen_ms: now - 60_000,
            points: vec![totals(requests, latency, now - 60_000, now)],
        };
        Windows {
            now_ms: now,
            point_ends_ms: vec![now],
            groups: BTreeMap::from([("shop/books".to_string(), group)]),
        }
    }

    fn latency(rsp: &MetricResponse, label: HistogramLabel) -> i64 {
        let series = rsp
            .metrics
            .iter()
            .find(|s| s.name == MetricName::Latency as i32)
            .expect("a latency series");
        let Some(metric_value::Value::Histogram(h)) =
            &series.datapoints[0].value.as_ref().expect("a value").value
        else {
            panic!("a histogram: {series:?}")
        };
        h.values
            .iter()
            .find(|v| v.label == label as i32)
            .expect("the percentile")
            .value
    }

    fn rate(rsp: &MetricResponse) -> f64 {
        let series = rsp
            .metrics
            .iter()
            .find(|s| s.name == MetricName::RequestRate as i32)
            .expect("a rate series");
        match series.datapoints[0].value.as_ref().unwrap().value {
            Some(metric_value::Value::Gauge(g)) => g,
            ref other => panic!("a gauge: {other:?}"),
        }
    }

    #[test]
    fn the_wire_keeps_the_windows_whole() {
        let w = replica(1_800_000_000_000, 600, 120);
        let q = query(true);
        let back = Windows::from_wire(w.to_wire(), &q).unwrap();
        assert_eq!(back, w);
        assert_eq!(back.response(&q), w.response(&q));
    }

    #[test]
    fn merged_replicas_add_counts_and_buckets_never_percentiles() {
        let now = 1_800_000_000_000;
        let q = query(true);
        // Two replicas: 600 requests in 12 ms and 300 in 40 ms, the
        // latter's clock read a moment later.
        let fast = replica(now, 600, 120);
        let slow = replica(now + 3, 300, 400);
        assert_eq!(latency(&fast.response(&q), HistogramLabel::P50), 12);
        let mut merged = fast.clone();
        merged.merge(slow);
        let rsp = merged.response(&q);
        // 900 requests over the minute.
        assert!((rate(&rsp) - 15.0).abs() < 0.01, "{}", rate(&rsp));
        // The 450th of 900 is fast, the 855th (p95) slow: what one store
        // with both would say; the mean of the replicas' p50 (26) is not.
        assert_eq!(latency(&rsp, HistogramLabel::P50), 12);
        assert_eq!(latency(&rsp, HistogramLabel::P95), 40);
        assert_eq!(merged.now_ms, now + 3);
    }

    #[test]
    fn a_young_replica_s_points_are_the_newest() {
        let now = 1_800_000_000_000;
        let q = query(false);
        let ends = |n: u64| -> Vec<u64> { (0..n).rev().map(|back| now - back * 10_000).collect() };
        let group = |n: usize, requests: u64| Group {
            first_seen_ms: now - 100_000,
            points: (0..n)
                .map(|_| totals(requests, 100, now - 100_000, now))
                .collect(),
        };
        let old = Windows {
            now_ms: now,
            point_ends_ms: ends(6),
            groups: BTreeMap::from([("a".to_string(), group(6, 10))]),
        };
        let young = Windows {
            now_ms: now,
            point_ends_ms: ends(2),
            groups: BTreeMap::from([("a".to_string(), group(2, 1)), ("b".into(), group(2, 5))]),
        };
        // Either way round, the young replica's two points are the last two.
        for (first, second) in [(old.clone(), young.clone()), (young, old)] {
            let mut merged = first;
            merged.merge(second);
            assert_eq!(merged.point_ends_ms, ends(6));
            let requests = |key: &str| -> Vec<u64> {
                merged.groups[key]
                    .points
                    .iter()
                    .map(|t| t.requests)
                    .collect()
            };
            assert_eq!(requests("a"), [10, 10, 10, 10, 11, 11]);
            assert_eq!(requests("b"), [0, 0, 0, 0, 5, 5]);
            assert_eq!(
                merged.response(&q).metrics.len(),
                6,
                "two groups, three metrics"
            );
        }
    }

    #[test]
    fn malformed_windows_are_refused_whole() {
        let q = query(true);
        let good = replica(1_800_000_000_000, 10, 10).to_wire();
        let mut two_ends = good.clone();
        two_ends.point_end_ms.push(1);
        assert_eq!(
            Windows::from_wire(two_ends, &q),
            Err(WindowsError::TooManyPoints { got: 2, want: 1 })
        );
        let mut negative = good.clone();
        negative.now_ms = -1;
        assert_eq!(
            Windows::from_wire(negative, &q),
            Err(WindowsError::NegativeTime(-1))
        );
        let mut no_points = good.clone();
        no_points.groups[0].points.clear();
        assert!(matches!(
            Windows::from_wire(no_points, &q),
            Err(WindowsError::Points { .. })
        ));
        let mut twice = good.clone();
        twice.groups.push(twice.groups[0].clone());
        assert!(matches!(
            Windows::from_wire(twice, &q),
            Err(WindowsError::DuplicateGroup(_))
        ));
        let mut shape = good.clone();
        shape.groups[0].points[0].latency_counts.push(1);
        assert!(matches!(
            Windows::from_wire(shape, &q),
            Err(WindowsError::HistogramShape { .. })
        ));
        let mut bucket = good;
        bucket.groups[0].points[0].latency_buckets[0] = u32::MAX;
        assert_eq!(
            Windows::from_wire(bucket, &q),
            Err(WindowsError::HistogramBucket)
        );
    }

    #[test]
    fn counts_from_a_peer_saturate() {
        let q = query(true);
        let mut a = replica(1_800_000_000_000, u64::MAX, 10);
        a.merge(replica(1_800_000_000_000, u64::MAX, 10));
        let rsp = a.response(&q);
        assert!(rate(&rsp).is_finite());
    }
}
