//! A summarized Stat answer read back as numbers per group: what every
//! table of the public API (StatSummary, Edges, Routes) is made of.

use std::collections::BTreeMap;

use crate::proto::public::{
    AggregationType, HistogramLabel, MetricMetadata, MetricName, MetricResponse, metric_value,
};

/// The three numbers of one group of a summarized Stat.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Numbers {
    pub request_rate: f64,
    pub success_rate: Option<f64>,
    pub p50: Option<u32>,
    pub p95: Option<u32>,
    pub p99: Option<u32>,
}

/// The key naming a series' group (the one field its grouping sets).
fn key_of(by: AggregationType, m: &MetricMetadata) -> &str {
    match by {
        AggregationType::TargetPod => &m.target_pod,
        AggregationType::TargetDeploy => &m.target_deploy,
        AggregationType::SourcePod => &m.source_pod,
        AggregationType::SourceDeploy => &m.source_deploy,
        AggregationType::Mesh => "",
    }
}

/// A summarized Stat answer as numbers per group key.
pub fn numbers_by_key(by: AggregationType, rsp: &MetricResponse) -> BTreeMap<String, Numbers> {
    let mut out: BTreeMap<String, Numbers> = BTreeMap::new();
    for series in &rsp.metrics {
        let key = series
            .metadata
            .as_ref()
            .map_or("", |m| key_of(by, m))
            .to_string();
        let Some(value) = series
            .datapoints
            .last()
            .and_then(|d| d.value.as_ref())
            .and_then(|v| v.value.as_ref())
        else {
            continue;
        };
        let n = out.entry(key).or_default();
        match (MetricName::try_from(series.name), value) {
            (Ok(MetricName::RequestRate), metric_value::Value::Gauge(g)) => n.request_rate = *g,
            (Ok(MetricName::SuccessRate), metric_value::Value::Gauge(g)) => {
                n.success_rate = Some(*g);
            }
            (Ok(MetricName::Latency), metric_value::Value::Histogram(h)) => {
                for v in &h.values {
                    let ms = Some(u32::try_from(v.value.max(0)).unwrap_or(u32::MAX));
                    match HistogramLabel::try_from(v.label) {
                        Ok(HistogramLabel::P50) => n.p50 = ms,
                        Ok(HistogramLabel::P95) => n.p95 = ms,
                        Ok(HistogramLabel::P99) => n.p99 = ms,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    out
}
