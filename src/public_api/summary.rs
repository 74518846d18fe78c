//! The calls added after v0.1.0 that the CLI's `stat`, `edges` and `check`
//! and the dashboard share: `StatSummary`, `Edges` and `Health`, each
//! answered from the calls public-api already makes (telemetry's Stat,
//! Windows and ListPods; tap's Tap), so their numbers are Stat's for the
//! same window.
//!
//! - StatSummary is one summarized Stat (grouped by the rows' side of the
//!   traffic, filtered by `from`/`to`) joined with ListPods for the MESHED
//!   column; namespaces are the embedded windows of every deployment pair
//!   summed per namespace before the rates and percentiles are computed,
//!   so they are exact, never averaged.
//! - Edges is a Stat of the sources, then one Stat per source grouped by
//!   destination ([`MAX_EDGE_SOURCES`] at most, [`EDGE_CONCURRENCY`] at a
//!   time).
//! - Health asks each upstream something cheap and reports what it saw.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt as _;

use super::Upstream;
use super::replicas::{Answer, CallError, Failure, Telemetry};
use crate::proto::controller::stat::{TcpGroup, TcpResponse};
use crate::proto::controller::tap::tap_client::TapClient;
use crate::proto::public::{
    AggregationType, ComponentHealth, Edge, EdgesRequest, EdgesResponse, HealthResponse,
    ListPodsResponse, MetricMetadata, MetricName, MetricRequest, MetricResponse, RoutesRequest,
    RoutesResponse, StatSummaryRequest, StatSummaryResponse, StatSummaryRow, TapRequest,
    TimeWindow,
};
use crate::stat::StatError;
pub use crate::stat::numbers::{Numbers, numbers_by_key};
use crate::stat::windows::{Group, Windows};

/// Most sources one Edges answer asks about: each costs one Stat call, so
/// this bounds an answer's fan-out; a mesh with more calling workloads is
/// answered for the busiest ones and the rest counted in
/// `conduit_public_api_edges_sources_dropped_total`.
pub const MAX_EDGE_SOURCES: usize = 1_000;

/// Stat calls one Edges answer has in flight at once: enough to hide a
/// round trip, few enough not to crowd other callers out of telemetry.
pub const EDGE_CONCURRENCY: usize = 8;

/// How long a Health probe waits for one upstream: a healthy one answers
/// in milliseconds; a `conduit check` should not hang on a dead one.
pub const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which rows a StatSummary lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Namespaces,
    Deployments,
    Pods,
}

impl Resource {
    fn parse(text: &str, allowed: &[Resource]) -> Result<Self, StatError> {
        let r = match text {
            "namespaces" => Self::Namespaces,
            "deployments" => Self::Deployments,
            "pods" => Self::Pods,
            other => {
                return Err(StatError::Invalid(format!(
                    "resource {other:?}: use {}",
                    allowed
                        .iter()
                        .map(|r| format!("{:?}", r.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        if !allowed.contains(&r) {
            return Err(StatError::Invalid(format!(
                "resource {text:?} is not offered here: use {}",
                allowed
                    .iter()
                    .map(|r| format!("{:?}", r.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(r)
    }

    fn name(self) -> &'static str {
        match self {
            Self::Namespaces => "namespaces",
            Self::Deployments => "deployments",
            Self::Pods => "pods",
        }
    }
}

fn window(value: i32) -> Result<TimeWindow, StatError> {
    TimeWindow::try_from(value).map_err(|_| StatError::UnknownEnum {
        what: "window",
        value,
    })
}

/// `ns/name` split in two; an error naming `field` otherwise.
fn ns_name<'a>(field: &str, value: &'a str) -> Result<(&'a str, &'a str), StatError> {
    match value.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns, name))
        }
        _ => Err(StatError::Invalid(format!(
            "{field} {value:?}: give a deployment or pod as namespace/name"
        ))),
    }
}

fn namespace_of(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

fn summary_request(
    window: TimeWindow,
    by: AggregationType,
    filter: MetricMetadata,
) -> MetricRequest {
    MetricRequest {
        metrics: vec![
            MetricName::RequestRate as i32,
            MetricName::SuccessRate as i32,
            MetricName::Latency as i32,
        ],
        window: window as i32,
        group_by: by as i32,
        filter_by: Some(filter),
        summarize: true,
    }
}

/// Pods that reported and all pods, per row key, from ListPods. Pods that
/// have finished (Succeeded, Failed) are not counted.
fn pod_counts(resource: Resource, pods: &ListPodsResponse) -> BTreeMap<String, (u32, u32)> {
    let mut out: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for pod in &pods.pods {
        if pod.status == "Succeeded" || pod.status == "Failed" {
            continue;
        }
        let key = match resource {
            Resource::Pods => pod.name.clone(),
            Resource::Deployments if pod.deployment.is_empty() => continue,
            Resource::Deployments => pod.deployment.clone(),
            Resource::Namespaces => namespace_of(&pod.name).to_string(),
        };
        let counts = out.entry(key).or_default();
        counts.0 += u32::from(pod.added);
        counts.1 += 1;
    }
    out
}

/// Which side `from`/`to` name: a pod if ListPods has one by that name,
/// else a deployment if a pod belongs to one, else NOT_FOUND.
fn side(field: &str, value: &str, pods: &ListPodsResponse) -> Result<Side, CallError> {
    ns_name(field, value).map_err(CallError::Request)?;
    if pods.pods.iter().any(|p| p.name == value) {
        return Ok(Side::Pod);
    }
    if pods.pods.iter().any(|p| p.deployment == value) {
        return Ok(Side::Deployment);
    }
    Err(CallError::Upstream(Failure {
        addr: "the cluster index".to_string(),
        status: tonic::Status::not_found(format!(
            "{field} {value:?}: no deployment or pod of that name"
        )),
    }))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Pod,
    Deployment,
}

/// One row per namespace, deployment or pod (see the module's doc).
pub async fn stat_summary(
    telemetry: &Telemetry,
    req: StatSummaryRequest,
) -> Result<Answer<StatSummaryResponse>, CallError> {
    let resource = Resource::parse(
        &req.resource,
        &[Resource::Namespaces, Resource::Deployments, Resource::Pods],
    )
    .map_err(CallError::Request)?;
    let window = window(req.window).map_err(CallError::Request)?;
    if !req.from.is_empty() && !req.to.is_empty() {
        return Err(CallError::Request(StatError::Invalid(
            "give from or to, not both".to_string(),
        )));
    }
    if resource == Resource::Namespaces && !(req.from.is_empty() && req.to.is_empty()) {
        return Err(CallError::Request(StatError::Invalid(
            "from and to restrict deployments or pods, not namespaces".to_string(),
        )));
    }
    // The one row asked for, as "ns/name" (or the namespace).
    let only: Option<String> = match (resource, req.name.as_str()) {
        (_, "") => None,
        (Resource::Namespaces, name) => Some(name.to_string()),
        (_, name) if name.contains('/') => Some(name.to_string()),
        (_, name) if !req.namespace.is_empty() => Some(format!("{}/{name}", req.namespace)),
        (_, name) => Some(format!("default/{name}")),
    };
    let pods = telemetry.list_pods().await?;
    let mut partial = pods.partial;
    let counts = pod_counts(resource, &pods.message);
    let (numbers, traffic_only, tcp_request) = match resource {
        Resource::Namespaces => {
            let request = summary_request(
                window,
                AggregationType::TargetDeploy,
                MetricMetadata::default(),
            );
            let q = crate::stat::Query::try_from(&request).map_err(CallError::Request)?;
            let answer = telemetry.windows(request).await?;
            partial = partial.or(answer.partial);
            let by_ns = regroup(answer.message, |key| namespace_of(key).to_string());
            (
                numbers_by_key(AggregationType::TargetDeploy, &by_ns.response(&q)),
                false,
                // By pod, so pods no deployment owns count in their namespace.
                summary_request(
                    window,
                    AggregationType::TargetPod,
                    MetricMetadata::default(),
                ),
            )
        }
        Resource::Deployments | Resource::Pods => {
            let pod_rows = resource == Resource::Pods;
            let mut filter = MetricMetadata::default();
            let by = if !req.to.is_empty() {
                match side("to", &req.to, &pods.message)? {
                    Side::Pod => filter.target_pod = req.to.clone(),
                    Side::Deployment => filter.target_deploy = req.to.clone(),
                }
                if pod_rows {
                    AggregationType::SourcePod
                } else {
                    AggregationType::SourceDeploy
                }
            } else {
                if !req.from.is_empty() {
                    match side("from", &req.from, &pods.message)? {
                        Side::Pod => filter.source_pod = req.from.clone(),
                        Side::Deployment => filter.source_deploy = req.from.clone(),
                    }
                }
                if pod_rows {
                    AggregationType::TargetPod
                } else {
                    AggregationType::TargetDeploy
                }
            };
            let restricted = !req.from.is_empty() || !req.to.is_empty();
            let request = summary_request(window, by, filter);
            let answer = telemetry.stat(request.clone()).await?;
            partial = partial.or(answer.partial);
            (numbers_by_key(by, &answer.message), restricted, request)
        }
    };
    // The TCP columns are extra: without an answer (a telemetry that
    // predates the call, say) the rows go without them.
    let tcp = match telemetry.tcp(tcp_request).await {
        Ok(answer) => {
            partial = partial.or(answer.partial);
            Some(tcp_by_row(resource, answer.message))
        }
        Err(error) => {
            tracing::debug!(?error, "no TCP figures for StatSummary");
            None
        }
    };
    // Every workload the index knows, with or without traffic, unless the
    // rows are one side of some traffic.
    let mut keys: BTreeSet<String> = numbers.keys().filter(|k| !k.is_empty()).cloned().collect();
    if !traffic_only {
        keys.extend(counts.keys().filter(|k| !k.is_empty()).cloned());
    }
    let rows = keys
        .into_iter()
        .filter(|key| only.as_ref().is_none_or(|o| o == key))
        .filter_map(|key| {
            let (namespace, name) = match resource {
                Resource::Namespaces => (key.clone(), key.clone()),
                _ => {
                    let (ns, name) = key.split_once('/')?;
                    (ns.to_string(), name.to_string())
                }
            };
            if !req.namespace.is_empty() && req.namespace != namespace {
                return None;
            }
            let n = numbers.get(&key).cloned().unwrap_or_default();
            let (meshed, total) = counts.get(&key).copied().unwrap_or_default();
            let t = tcp.as_ref().and_then(|tcp| tcp.get(&key));
            Some(StatSummaryRow {
                namespace,
                name,
                meshed_pods: meshed,
                total_pods: total,
                request_rate: n.request_rate,
                success_rate: n.success_rate,
                p50_latency_ms: n.p50,
                p95_latency_ms: n.p95,
                p99_latency_ms: n.p99,
                tcp_open_connections: t.map(|t| t.open_connections),
                tcp_read_bytes_per_sec: t.map(|t| t.read_bytes_per_sec),
                tcp_write_bytes_per_sec: t.map(|t| t.write_bytes_per_sec),
            })
        })
        .collect();
    Ok(Answer {
        message: StatSummaryResponse { rows },
        partial,
    })
}

/// TCP figures by row key; for namespaces, the pods' summed into their
/// namespace.
fn tcp_by_row(resource: Resource, answer: TcpResponse) -> BTreeMap<String, TcpGroup> {
    crate::stat::tcp::add_up(answer.groups, |key| match resource {
        Resource::Namespaces => namespace_of(key).to_string(),
        _ => key.to_string(),
    })
}

/// `windows` with its groups re-keyed by `key` and summed (counts added,
/// histograms bucket by bucket), groups with an empty key left out.
fn regroup(windows: Windows, key: impl Fn(&str) -> String) -> Windows {
    let n = windows.point_ends_ms.len();
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for (old, group) in windows.groups {
        let new = key(&old);
        if new.is_empty() {
            continue;
        }
        let into = groups.entry(new).or_insert_with(|| Group::empty(n));
        into.first_seen_ms = into.first_seen_ms.min(group.first_seen_ms);
        for (t, theirs) in into.points.iter_mut().zip(&group.points) {
            t.merge(theirs);
        }
    }
    Windows {
        now_ms: windows.now_ms,
        point_ends_ms: windows.point_ends_ms,
        groups,
    }
}

/// Every source → destination pair with traffic in the window.
pub async fn edges(
    telemetry: &Telemetry,
    req: EdgesRequest,
    dropped: &prometheus::IntCounter,
) -> Result<Answer<EdgesResponse>, CallError> {
    let resource = Resource::parse(&req.resource, &[Resource::Deployments, Resource::Pods])
        .map_err(CallError::Request)?;
    let window = window(req.window).map_err(CallError::Request)?;
    let (by_source, by_target) = match resource {
        Resource::Pods => (AggregationType::SourcePod, AggregationType::TargetPod),
        _ => (AggregationType::SourceDeploy, AggregationType::TargetDeploy),
    };
    let sources = telemetry
        .stat(summary_request(
            window,
            by_source,
            MetricMetadata::default(),
        ))
        .await?;
    let mut partial = sources.partial;
    // Traffic from an address no pod owns has no source to filter by.
    let mut sources: Vec<(String, f64)> = numbers_by_key(by_source, &sources.message)
        .into_iter()
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, n)| (k, n.request_rate))
        .collect();
    if sources.len() > MAX_EDGE_SOURCES {
        sources.sort_by(|a, b| b.1.total_cmp(&a.1));
        dropped.inc_by((sources.len() - MAX_EDGE_SOURCES) as u64);
        sources.truncate(MAX_EDGE_SOURCES);
    }
    let answers: Vec<(String, Result<Answer<MetricResponse>, CallError>)> =
        futures::stream::iter(sources.into_iter().map(|(src, _)| {
            let mut filter = MetricMetadata::default();
            match by_source {
                AggregationType::SourcePod => filter.source_pod = src.clone(),
                _ => filter.source_deploy = src.clone(),
            }
            let request = summary_request(window, by_target, filter);
            async move { (src, telemetry.stat(request).await) }
        }))
        .buffer_unordered(EDGE_CONCURRENCY)
        .collect()
        .await;
    let mut edges = Vec::new();
    for (src, answer) in answers {
        let answer = answer?;
        partial = partial.or(answer.partial);
        for (dst, n) in numbers_by_key(by_target, &answer.message) {
            if dst.is_empty() {
                continue;
            }
            if !req.namespace.is_empty()
                && namespace_of(&src) != req.namespace
                && namespace_of(&dst) != req.namespace
            {
                continue;
            }
            edges.push(Edge {
                src: src.clone(),
                dst,
                request_rate: n.request_rate,
                success_rate: n.success_rate,
                p50_latency_ms: n.p50,
                p95_latency_ms: n.p95,
                p99_latency_ms: n.p99,
            });
        }
    }
    edges.sort_by(|a, b| (&a.src, &a.dst).cmp(&(&b.src, &b.dst)));
    Ok(Answer {
        message: EdgesResponse { edges },
        partial,
    })
}

/// Per-route traffic of one deployment ([`crate::stat::routes`]), over
/// every replica. A deployment neither the index nor any traffic knows is
/// NOT_FOUND, so a mistyped name is not an empty table.
pub async fn routes(
    telemetry: &Telemetry,
    req: RoutesRequest,
) -> Result<Answer<RoutesResponse>, CallError> {
    let rq = crate::stat::routes::RouteQuery::try_from(&req).map_err(CallError::Request)?;
    let answer = telemetry.routes(req).await?;
    if answer.message.routes.is_empty() && !answer.message.templated {
        let pods = telemetry.list_pods().await?;
        if !pods
            .message
            .pods
            .iter()
            .any(|p| p.deployment == rq.deployment)
        {
            return Err(CallError::Upstream(Failure {
                addr: "the cluster index".to_string(),
                status: tonic::Status::not_found(format!(
                    "deployment {:?}: no deployment of that name",
                    rq.deployment
                )),
            }));
        }
    }
    Ok(answer)
}

fn component(name: &str, healthy: bool, message: String) -> ComponentHealth {
    ComponentHealth {
        name: name.to_string(),
        healthy,
        message,
    }
}

/// Telemetry, tap and (when Stat uses it) Prometheus, as public-api sees
/// them; each probe bounded by [`HEALTH_PROBE_TIMEOUT`].
pub async fn health(telemetry: &Telemetry, tap: Upstream, tap_addr: &str) -> HealthResponse {
    let telemetry_probe = async {
        match tokio::time::timeout(HEALTH_PROBE_TIMEOUT, telemetry.list_pods()).await {
            Err(_) => component(
                "telemetry",
                false,
                format!(
                    "no answer within {} s: check that the telemetry component is running and \
                     -telemetry-addr points at it",
                    HEALTH_PROBE_TIMEOUT.as_secs()
                ),
            ),
            Ok(Ok(answer)) => match answer.partial {
                Some(partial) => component(
                    "telemetry",
                    false,
                    format!(
                        "{}: start the missing replicas or drop them from -telemetry-addr",
                        partial.header_value()
                    ),
                ),
                None => {
                    let pods = &answer.message.pods;
                    let added = pods.iter().filter(|p| p.added).count();
                    component(
                        "telemetry",
                        true,
                        format!("{} pods listed, {added} reporting", pods.len()),
                    )
                }
            },
            Ok(Err(error)) => component(
                "telemetry",
                false,
                format!(
                    "{}: check that the telemetry component is running and -telemetry-addr \
                     points at it",
                    call_error_text(&error)
                ),
            ),
        }
    };
    let tap_probe = async {
        // A request with no target: a tap component that is up refuses it
        // at once (INVALID_ARGUMENT) without opening any pod's stream.
        let mut client = TapClient::new(tap);
        let call = client.tap(TapRequest::default());
        match tokio::time::timeout(HEALTH_PROBE_TIMEOUT, call).await {
            Err(_) => component(
                "tap",
                false,
                format!(
                    "{tap_addr}: no answer within {} s: check that the tap component is running \
                     and -tap-addr points at it",
                    HEALTH_PROBE_TIMEOUT.as_secs()
                ),
            ),
            Ok(Err(status)) if status.code() == tonic::Code::InvalidArgument => {
                component("tap", true, format!("answering at {tap_addr}"))
            }
            Ok(Ok(_)) => component("tap", true, format!("answering at {tap_addr}")),
            Ok(Err(status)) => component(
                "tap",
                false,
                format!(
                    "{tap_addr}: {:?}: {}: check that the tap component is running and \
                     -tap-addr points at it",
                    status.code(),
                    super::handler::one_line(status.message())
                ),
            ),
        }
    };
    let prometheus_probe = async {
        match tokio::time::timeout(HEALTH_PROBE_TIMEOUT, telemetry.prometheus_health()).await {
            Err(_) => Some(component(
                "prometheus",
                false,
                format!(
                    "Stat through telemetry gave no answer within {} s: check telemetry's \
                     -prometheus-url and that Prometheus is up",
                    HEALTH_PROBE_TIMEOUT.as_secs()
                ),
            )),
            Ok(None) => None,
            Ok(Some(Ok(()))) => Some(component(
                "prometheus",
                true,
                "Stat answered from Prometheus".to_string(),
            )),
            Ok(Some(Err(failure))) => Some(component(
                "prometheus",
                false,
                format!(
                    "Stat through telemetry at {}: {}: check telemetry's -prometheus-url and \
                     that Prometheus is up",
                    failure.addr,
                    super::handler::one_line(failure.status.message())
                ),
            )),
        }
    };
    let (t, tap, prom) = tokio::join!(telemetry_probe, tap_probe, prometheus_probe);
    let mut components = vec![t, tap];
    components.extend(prom);
    HealthResponse {
        components,
        server_version: crate::core::RELEASE_VERSION.to_string(),
    }
}

fn call_error_text(error: &CallError) -> String {
    match error {
        CallError::Upstream(Failure { addr, status }) => format!(
            "{addr}: {:?}: {}",
            status.code(),
            super::handler::one_line(status.message())
        ),
        CallError::Request(error) => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::window::Totals;

    #[test]
    fn names_are_namespace_slash_name() {
        assert_eq!(ns_name("from", "books/web").unwrap(), ("books", "web"));
        for bad in ["web", "/web", "books/", "a/b/c"] {
            assert!(ns_name("from", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resources_are_checked() {
        let all = [Resource::Namespaces, Resource::Deployments, Resource::Pods];
        assert_eq!(Resource::parse("pods", &all).unwrap(), Resource::Pods);
        let e = Resource::parse("services", &all).unwrap_err().to_string();
        assert!(
            e.contains("\"services\"") && e.contains("\"namespaces\""),
            "{e}"
        );
        let e = Resource::parse("namespaces", &[Resource::Pods])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not offered"), "{e}");
    }

    #[test]
    fn regrouping_sums_counts_and_keeps_the_earliest_start() {
        let group = |first, requests| Group {
            first_seen_ms: first,
            points: vec![Totals {
                requests,
                success: requests,
                ..Totals::default()
            }],
        };
        let windows = Windows {
            now_ms: 10_000,
            point_ends_ms: vec![10_000],
            groups: [
                ("a/x".to_string(), group(5_000, 3)),
                ("a/y".to_string(), group(2_000, 4)),
                ("b/z".to_string(), group(1_000, 5)),
                (String::new(), group(0, 100)),
            ]
            .into(),
        };
        let out = regroup(windows, |k| namespace_of(k).to_string());
        assert_eq!(out.groups.len(), 2);
        assert_eq!(out.groups["a"].points[0].requests, 7);
        assert_eq!(out.groups["a"].first_seen_ms, 2_000);
        assert_eq!(out.groups["b"].points[0].requests, 5);
    }
}
