//! Stat over Prometheus: the PromQL each metric is built from, the HTTP
//! client telemetry's `Query` runs it with, and the assembly of the answer.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{
    Query, StatError, filters, group_label, group_metadata, promql_duration, window_length,
    window_step,
};
use crate::proto::controller::telemetry::{Sample, SampleValue};
use crate::proto::public::{
    Histogram, HistogramLabel, HistogramValue, MetricDatapoint, MetricName, MetricResponse,
    MetricSeries, MetricValue, metric_value,
};

/// How long one Prometheus query may take before the call fails.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest Prometheus answer read, so a runaway query cannot exhaust memory.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// Escapes a value for a PromQL double-quoted string, so no filter value can
/// end the string and change the query.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

fn selector(metric: &str, q: &Query, extra: &[(&str, &str)]) -> String {
    let matchers: Vec<String> = filters(&q.filter)
        .into_iter()
        .chain(extra.iter().copied())
        .map(|(label, value)| format!("{label}=\"{}\"", escape(value)))
        .collect();
    format!("{metric}{{{}}}", matchers.join(","))
}

fn by(group: &[&str], extra: Option<&str>) -> String {
    let labels: Vec<&str> = extra.into_iter().chain(group.iter().copied()).collect();
    if labels.is_empty() {
        String::new()
    } else {
        format!(" by ({})", labels.join(", "))
    }
}

/// Instant evaluations the age subquery of [`request_rate`] makes per
/// series and datapoint: its resolution is the range divided by this (at
/// least 1 s). Bounds the subquery's cost to this many lookups per series,
/// while keeping the age it finds within 1/600 of the range of the truth.
const AGE_SUBQUERY_STEPS: u64 = 600;

/// REQUEST_RATE over the span the data covers (DESIGN §11), as the embedded
/// store computes it: `rate()` over `[r]` divides by the whole range, which
/// reads low while a group's traffic is younger than the window. So the
/// increase is divided by the group's covered span instead:
///
/// - its age: now minus the first sample of its oldest series in the range
///   (a subquery over `timestamp()`, at [`AGE_SUBQUERY_STEPS`]);
/// - plus half a scrape interval (age / samples / 2), the span `increase()`
///   extrapolates before a series' first sample;
/// - at most the range (traffic older than the window, or stopped inside
///   it while its series is still scraped: the whole window), at least 1 s.
fn request_rate(q: &Query, group: &[&str], range: Duration) -> String {
    let r = promql_duration(range);
    let resolution = promql_duration(Duration::from_secs(
        (range.as_secs() / AGE_SUBQUERY_STEPS).max(1),
    ));
    let requests = selector("requests_total", q, &[]);
    let g = by(group, None);
    format!(
        "sum(increase({requests}[{r}])){g} / clamp_min(clamp_max(\
         (time() - min(min_over_time(timestamp({requests})[{r}:{resolution}])){g}) \
         * (1 + 0.5 / max(count_over_time({requests}[{r}])){g}), {secs}), 1)",
        secs = range.as_secs(),
    )
}

/// The labels a query's answer is grouped by.
fn group_of(q: &Query) -> Vec<&'static str> {
    group_label(q.group_by).into_iter().collect()
}

/// The PromQL of one metric (one per quantile for LATENCY), over `range`.
pub fn queries(
    name: MetricName,
    q: &Query,
    range: Duration,
) -> Vec<(Option<HistogramLabel>, String)> {
    queries_by(name, q, &group_of(q), range)
}

/// [`queries`], grouped by `group` instead of the query's grouping.
fn queries_by(
    name: MetricName,
    q: &Query,
    group: &[&str],
    range: Duration,
) -> Vec<(Option<HistogramLabel>, String)> {
    let r = promql_duration(range);
    match name {
        MetricName::RequestRate => vec![(None, request_rate(q, group, range))],
        MetricName::SuccessRate => vec![(
            None,
            format!(
                "sum(rate({}[{r}])){g} / sum(rate({}[{r}])){g}",
                selector("responses_total", q, &[("classification", "success")]),
                selector("responses_total", q, &[]),
                g = by(group, None),
            ),
        )],
        MetricName::Latency => [
            (HistogramLabel::P50, "0.5"),
            (HistogramLabel::P95, "0.95"),
            (HistogramLabel::P99, "0.99"),
        ]
        .into_iter()
        .map(|(label, quantile)| {
            (
                Some(label),
                format!(
                    "histogram_quantile({quantile}, sum(rate({}[{r}])){})",
                    selector("response_latency_ms_bucket", q, &[]),
                    by(group, Some("le")),
                ),
            )
        })
        .collect(),
    }
}

/// A Prometheus HTTP API client.
#[derive(Clone, Debug)]
pub struct Prometheus {
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Prometheus {
    pub fn new(url: &str) -> Result<Self, StatError> {
        let base = url.trim_end_matches('/').to_string();
        base.parse::<http::Uri>()
            .ok()
            .filter(|u| u.scheme_str() == Some("http") && u.host().is_some())
            .ok_or_else(|| {
                StatError::PrometheusUnavailable(format!(
                    "-prometheus-url {url:?} is not an http:// URL"
                ))
            })?;
        Ok(Self {
            base,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// `GET /api/v1/query_range`. Prometheus' own error message comes back
    /// in the error.
    pub async fn query_range(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step: &str,
    ) -> Result<Vec<Sample>, StatError> {
        let secs = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
        let url = format!(
            "{}/api/v1/query_range?query={}&start={}&end={}&step={}",
            self.base,
            urlencode(query),
            secs(start_ms),
            secs(end_ms),
            urlencode(step),
        );
        let uri: http::Uri = url
            .parse()
            .map_err(|e| StatError::PrometheusUnavailable(format!("bad query URL: {e}")))?;
        let call = async {
            let rsp = self
                .client
                .get(uri)
                .await
                .map_err(|e| StatError::PrometheusUnavailable(format!("{}: {e}", self.base)))?;
            let status = rsp.status();
            let body = http_body_util::Limited::new(rsp.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| StatError::PrometheusUnavailable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, StatError>((status, body))
        };
        let (status, body) = tokio::time::timeout(QUERY_TIMEOUT, call)
            .await
            .map_err(|_| {
                StatError::PrometheusUnavailable(format!("no answer within {QUERY_TIMEOUT:?}"))
            })??;
        parse_matrix(status, &body)
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_matrix(status: http::StatusCode, body: &[u8]) -> Result<Vec<Sample>, StatError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        StatError::PrometheusUnavailable(format!(
            "HTTP {status}, not a Prometheus API answer ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    })?;
    if v["status"] != "success" {
        let msg = v["error"].as_str().unwrap_or("unknown error");
        let kind = v["errorType"].as_str().unwrap_or("error");
        return Err(StatError::PrometheusRejected(format!("{kind}: {msg}")));
    }
    let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
    let mut out = Vec::with_capacity(result.len());
    for series in result {
        let labels = series["metric"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let values = series["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|pair| {
                let ts = pair.get(0)?.as_f64()?;
                let value: f64 = pair.get(1)?.as_str()?.parse().ok()?;
                Some(SampleValue {
                    value,
                    timestamp_ms: (ts * 1000.0).round() as i64,
                })
            })
            .collect();
        out.push(Sample { values, labels });
    }
    Ok(out)
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A group's values by timestamp (several per timestamp for LATENCY's
/// quantiles).
pub type Points = BTreeMap<i64, Vec<(Option<HistogramLabel>, f64)>>;

/// One metric's answer: per group (the values of the grouping labels, in
/// their order), its points.
pub type Grouped = Vec<(MetricName, BTreeMap<Vec<String>, Points>)>;

/// Runs `q`'s metrics grouped by `group`, over the window `q` names.
pub async fn collect(
    prometheus: &Prometheus,
    q: &Query,
    group: &[&str],
) -> Result<Grouped, StatError> {
    let len = window_length(q.window);
    let (range, start, end, step) = {
        let end = now_ms();
        if q.summarize {
            (len, end, end, promql_duration(len))
        } else {
            let step = window_step(q.window);
            let start = end - len.as_millis() as i64 + step.as_millis() as i64;
            (step, start, end, promql_duration(step))
        }
    };
    let mut out = Vec::new();
    for &name in &q.metrics {
        let mut by_group: BTreeMap<Vec<String>, Points> = BTreeMap::new();
        for (label, query) in queries_by(name, q, group, range) {
            for sample in prometheus.query_range(&query, start, end, &step).await? {
                let key = group
                    .iter()
                    .map(|g| sample.labels.get(*g).cloned().unwrap_or_default())
                    .collect();
                let points = by_group.entry(key).or_default();
                for v in sample.values.iter().filter(|v| v.value.is_finite()) {
                    points
                        .entry(v.timestamp_ms)
                        .or_default()
                        .push((label, v.value));
                }
            }
        }
        out.push((name, by_group));
    }
    Ok(out)
}

/// Answers a Stat query through Prometheus.
pub async fn stat(prometheus: &Prometheus, q: &Query) -> Result<MetricResponse, StatError> {
    let grouped = collect(prometheus, q, &group_of(q)).await?;
    Ok(response(q, grouped, |key| {
        key.first().cloned().unwrap_or_default()
    }))
}

/// A Stat answer from [`collect`]'s groups, each named in the metadata of
/// `q`'s grouping by `key` of its label values.
pub fn response(q: &Query, grouped: Grouped, key: impl Fn(&[String]) -> String) -> MetricResponse {
    let mut metrics = Vec::new();
    for (name, by_group) in grouped {
        for (group, points) in by_group {
            let datapoints = points
                .into_iter()
                .map(|(ts, values)| {
                    let value = match name {
                        MetricName::Latency => metric_value::Value::Histogram(Histogram {
                            values: values
                                .into_iter()
                                .filter_map(|(label, v)| {
                                    Some(HistogramValue {
                                        label: label? as i32,
                                        value: v.round() as i64,
                                    })
                                })
                                .collect(),
                        }),
                        _ => metric_value::Value::Gauge(values[0].1),
                    };
                    MetricDatapoint {
                        value: Some(MetricValue { value: Some(value) }),
                        timestamp_ms: ts,
                    }
                })
                .collect();
            metrics.push(MetricSeries {
                name: name as i32,
                metadata: Some(group_metadata(q.group_by, &key(&group))),
                datapoints,
            });
        }
    }
    MetricResponse { metrics }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::public::{AggregationType, MetricMetadata, TimeWindow};

    fn query(filter: MetricMetadata, group_by: AggregationType) -> Query {
        Query {
            metrics: vec![],
            window: TimeWindow::OneMin,
            group_by,
            filter,
            summarize: true,
        }
    }

    #[test]
    fn promql_per_metric() {
        let q = query(
            MetricMetadata {
                target_deploy: "shop/books".into(),
                ..Default::default()
            },
            AggregationType::SourceDeploy,
        );
        let range = Duration::from_secs(60);
        assert_eq!(
            queries(MetricName::RequestRate, &q, range)[0].1,
            concat!(
                r#"sum(increase(requests_total{target_deployment="shop/books"}[1m])) by (source_deployment)"#,
                r#" / clamp_min(clamp_max((time() - min(min_over_time(timestamp(requests_total{target_deployment="shop/books"})[1m:1s])) by (source_deployment))"#,
                r#" * (1 + 0.5 / max(count_over_time(requests_total{target_deployment="shop/books"}[1m])) by (source_deployment)), 60), 1)"#,
            )
        );
        // An hour's age is found at 6 s: 600 lookups per series.
        assert!(
            queries(MetricName::RequestRate, &q, Duration::from_secs(3600))[0]
                .1
                .contains("[1h:6s]")
        );
        assert_eq!(
            queries(MetricName::SuccessRate, &q, range)[0].1,
            r#"sum(rate(responses_total{target_deployment="shop/books",classification="success"}[1m])) by (source_deployment) / sum(rate(responses_total{target_deployment="shop/books"}[1m])) by (source_deployment)"#
        );
        let latency = queries(
            MetricName::Latency,
            &query(MetricMetadata::default(), AggregationType::Mesh),
            range,
        );
        assert_eq!(
            latency[2].1,
            "histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{}[1m])) by (le))"
        );
    }

    #[test]
    fn filter_values_cannot_change_the_query() {
        let hostile = "x\"} or vector(1) or up{a=\"\\\n";
        let q = query(
            MetricMetadata {
                target_pod: hostile.into(),
                ..Default::default()
            },
            AggregationType::Mesh,
        );
        let promql = &queries(MetricName::RequestRate, &q, Duration::from_secs(10))[0].1;
        let escaped = r#"requests_total{target="x\"} or vector(1) or up{a=\"\\\n"}"#;
        // Every one of the three selectors carries the value escaped, and
        // nothing else of it.
        assert_eq!(promql.matches(escaped).count(), 3, "{promql}");
        assert_eq!(promql.matches("vector(1)").count(), 3, "{promql}");
        let success = &queries(MetricName::SuccessRate, &q, Duration::from_secs(10))[0].1;
        assert_eq!(success.matches(r#"target="x\"} or vector(1)"#).count(), 2);
    }

    #[test]
    fn prometheus_errors_keep_their_message() {
        let err = parse_matrix(
            http::StatusCode::BAD_REQUEST,
            br#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Prometheus rejected the query: bad_data: parse error at char 5"
        );
        let ok = parse_matrix(
            http::StatusCode::OK,
            br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"target":"a/b"},"values":[[1700000000.5,"2.5"],[1700000010,"NaN"]]}]}}"#,
        )
        .unwrap();
        assert_eq!(ok[0].labels["target"], "a/b");
        assert_eq!(ok[0].values[0].timestamp_ms, 1_700_000_000_500);
        assert_eq!(ok[0].values[0].value, 2.5);
        assert!(ok[0].values[1].value.is_nan());
    }
}
