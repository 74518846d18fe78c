//! Stat: request rate, success rate and latency percentiles per workload
//! group over a time window (DESIGN §6, §11), answered by one of two
//! backends that give the same answers within the error of the histogram
//! buckets:
//!
//! - [`embedded`]: the telemetry component's own windowed store
//!   ([`crate::ingest::window`]); latency percentiles come from HDR-style
//!   histograms and are exact to under 1%.
//!   The store is read into [`windows::Windows`], raw counts and histograms
//!   per group and point, which several telemetry replicas' answers merge
//!   exactly before one computation gives the numbers.
//! - [`promql`]: PromQL against Prometheus through telemetry's `Query`;
//!   latency percentiles are `histogram_quantile` over `response_latency_ms`
//!   buckets, so they are interpolated inside the bucket a percentile falls
//!   in (e.g. anywhere in 100–200 ms).
//!
//! Shared rules: REQUEST_RATE is requests per second over the span actually
//! covered by data (like Prometheus' `rate()`), SUCCESS_RATE a ratio in
//! [0, 1] of successful to all responses, LATENCY P50/P95/P99 in whole
//! milliseconds. `summarize` gives one datapoint over the whole window;
//! otherwise one datapoint per step, each over the step ending at it.

pub mod embedded;
pub mod numbers;
pub mod promql;
pub mod routes;
pub mod tcp;
pub mod windows;

use std::time::Duration;

use crate::proto::public::{
    AggregationType, MetricMetadata, MetricName, MetricRequest, TimeWindow,
};

/// Why a Stat request cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum StatError {
    #[error("unknown {what} {value}")]
    UnknownEnum { what: &'static str, value: i32 },
    /// Prometheus answered with an error (its message is kept).
    #[error("Prometheus rejected the query: {0}")]
    PrometheusRejected(String),
    /// Prometheus could not be reached or gave no usable answer.
    #[error("Prometheus unavailable: {0}")]
    PrometheusUnavailable(String),
    /// A request of the public API that is not well formed (its message
    /// says which field, and what it takes).
    #[error("{0}")]
    Invalid(String),
    /// An answer the serving backend cannot give.
    #[error("{0}")]
    Unsupported(String),
}

/// A parsed, validated request.
#[derive(Clone, Debug)]
pub struct Query {
    pub metrics: Vec<MetricName>,
    pub window: TimeWindow,
    pub group_by: AggregationType,
    pub filter: MetricMetadata,
    pub summarize: bool,
}

impl TryFrom<&MetricRequest> for Query {
    type Error = StatError;

    fn try_from(req: &MetricRequest) -> Result<Self, StatError> {
        let metrics = req
            .metrics
            .iter()
            .map(|&m| {
                MetricName::try_from(m).map_err(|_| StatError::UnknownEnum {
                    what: "metric",
                    value: m,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            metrics,
            window: TimeWindow::try_from(req.window).map_err(|_| StatError::UnknownEnum {
                what: "window",
                value: req.window,
            })?,
            group_by: AggregationType::try_from(req.group_by).map_err(|_| {
                StatError::UnknownEnum {
                    what: "groupBy",
                    value: req.group_by,
                }
            })?,
            filter: req.filter_by.clone().unwrap_or_default(),
            summarize: req.summarize,
        })
    }
}

/// Length of a window.
pub fn window_length(w: TimeWindow) -> Duration {
    Duration::from_secs(match w {
        TimeWindow::TenSec => 10,
        TimeWindow::OneMin => 60,
        TimeWindow::TenMin => 600,
        TimeWindow::OneHour => 3600,
    })
}

/// Step between datapoints of a time series (not summarized): a window is
/// drawn as 1 (10 s), 6 (1 min), 10 (10 min) or 12 (1 h) points, none finer
/// than the proxies' 10 s report interval.
pub fn window_step(w: TimeWindow) -> Duration {
    Duration::from_secs(match w {
        TimeWindow::TenSec | TimeWindow::OneMin => 10,
        TimeWindow::TenMin => 60,
        TimeWindow::OneHour => 300,
    })
}

/// PromQL duration literal.
pub fn promql_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// The mesh label a grouping reads, and `None` for the whole mesh.
pub fn group_label(by: AggregationType) -> Option<&'static str> {
    match by {
        AggregationType::TargetPod => Some("target"),
        AggregationType::TargetDeploy => Some("target_deployment"),
        AggregationType::SourcePod => Some("source"),
        AggregationType::SourceDeploy => Some("source_deployment"),
        AggregationType::Mesh => None,
    }
}

/// The filters of a request as (label, value) pairs; empty fields do not
/// filter. `component` has no label in the mesh metrics and is ignored.
pub fn filters(m: &MetricMetadata) -> Vec<(&'static str, &str)> {
    [
        ("target", m.target_pod.as_str()),
        ("target_deployment", m.target_deploy.as_str()),
        ("source", m.source_pod.as_str()),
        ("source_deployment", m.source_deploy.as_str()),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .collect()
}

/// The metadata naming a group.
pub fn group_metadata(by: AggregationType, value: &str) -> MetricMetadata {
    let mut m = MetricMetadata::default();
    let value = value.to_string();
    match by {
        AggregationType::TargetPod => m.target_pod = value,
        AggregationType::TargetDeploy => m.target_deploy = value,
        AggregationType::SourcePod => m.source_pod = value,
        AggregationType::SourceDeploy => m.source_deploy = value,
        AggregationType::Mesh => {}
    }
    m
}

/// Milliseconds rounded to the nearest integer, from tenths of a ms.
pub fn round_ms(tenths: f64) -> i64 {
    (tenths / 10.0).round() as i64
}
