//! `conduit stat namespaces|deployments|pods [NAME] [--from|--to NS/NAME]`:
//! one StatSummary call (request rate, success rate and latency of each
//! row, the same numbers as Stat's, and the MESHED pods), printed as a
//! kubectl-style table or as JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{ApiArgs, ApiClient, in_namespace, table};
use crate::proto::http_api::{LIST_PODS_PATH, STAT_SUMMARY_PATH};
use crate::proto::public::{
    AggregationType, Empty, HistogramLabel, ListPodsResponse, MetricMetadata, MetricName,
    MetricRequest, MetricResponse, Pod, StatSummaryRequest, StatSummaryResponse, TimeWindow,
    metric_value,
};

/// Namespace of a NAME given without one (kubectl's default namespace).
const DEFAULT_NAMESPACE: &str = "default";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Resource {
    #[value(name = "namespaces", alias = "namespace", alias = "ns")]
    Namespaces,
    #[value(name = "deployments", alias = "deployment", alias = "deploy")]
    Deployments,
    #[value(name = "pods", alias = "pod", alias = "po")]
    Pods,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Window {
    #[value(name = "10s")]
    TenSec,
    #[value(name = "1m")]
    OneMin,
    #[value(name = "10m")]
    TenMin,
    #[value(name = "1h")]
    OneHour,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// NAME, MESHED, REQUEST_RATE, SUCCESS_RATE, P50_LATENCY, P99_LATENCY.
    Table,
    /// A JSON array of rows.
    Json,
    /// The table with P95_LATENCY between P50 and P99, and the TCP
    /// columns: connections open now (TCP_CONN), READ_BYTES/SEC and
    /// WRITE_BYTES/SEC of the row's pods.
    Wide,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to group by: namespaces, deployments or pods.
    pub resource: Resource,
    /// Only this one: NAME (in -n's namespace, else "default") or NAMESPACE/NAME.
    pub name: Option<String>,
    /// Only this namespace (default: every namespace).
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Every namespace (the default).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// The time window the figures cover.
    #[arg(short = 't', long, default_value = "1m")]
    pub time_window: Window,
    /// Output format.
    #[arg(short = 'o', long, default_value = "table")]
    pub output: Output,
    /// Only traffic sent by this deployment or pod (NAMESPACE/NAME): the
    /// rows are its destinations.
    #[arg(long, conflicts_with = "to")]
    pub from: Option<String>,
    /// Only traffic sent to this deployment or pod (NAMESPACE/NAME): the
    /// rows are its sources.
    #[arg(long)]
    pub to: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// One workload's figures; `None` where the window has no data.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub name: String,
    pub request_rate: Option<f64>,
    pub success_rate: Option<f64>,
    pub p50_latency_ms: Option<i64>,
    pub p95_latency_ms: Option<i64>,
    pub p99_latency_ms: Option<i64>,
    /// Pods that report, and all pods (the table's MESHED column).
    #[serde(skip)]
    pub meshed: Option<(u32, u32)>,
    /// The wide table's TCP columns; absent from the JSON without them.
    #[serde(flatten)]
    pub tcp: Option<Tcp>,
}

/// Connections into a row's pods open now, and the bytes they read and
/// wrote per second over the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tcp {
    pub tcp_open_connections: f64,
    pub tcp_read_bytes_per_sec: f64,
    pub tcp_write_bytes_per_sec: f64,
}

impl Args {
    pub async fn run(self) -> anyhow::Result<()> {
        let client = ApiClient::new(&self.api.api_addr)?;
        let rsp: StatSummaryResponse = client
            .call(STAT_SUMMARY_PATH, &self.summary_request())
            .await?;
        let rows = summary_rows(&rsp, self.resource);
        if rows.is_empty()
            && self.resource != Resource::Namespaces
            && let Some(name) = self.full_name()
        {
            // No traffic for a name: say so only if it exists, since a typo
            // or the wrong namespace would read as an idle workload.
            let pods: ListPodsResponse = client.call(LIST_PODS_PATH, &Empty {}).await?;
            check_exists(self.resource, &name, &pods.pods)?;
        }
        if rows.is_empty() && self.output != Output::Json {
            eprintln!("No traffic found.");
            return Ok(());
        }
        match self.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
            Output::Table => print!("{}", render_table(&rows, false)),
            Output::Wide => print!("{}", render_table(&rows, true)),
        }
        Ok(())
    }

    fn group_by(&self) -> AggregationType {
        match self.resource {
            Resource::Deployments | Resource::Namespaces => AggregationType::TargetDeploy,
            Resource::Pods => AggregationType::TargetPod,
        }
    }

    /// The StatSummary call behind the command.
    pub fn summary_request(&self) -> StatSummaryRequest {
        let resource = match self.resource {
            Resource::Namespaces => "namespaces",
            Resource::Deployments => "deployments",
            Resource::Pods => "pods",
        };
        let name = match self.resource {
            Resource::Namespaces => self.name.clone().unwrap_or_default(),
            _ => self.full_name().unwrap_or_default(),
        };
        StatSummaryRequest {
            resource: resource.to_string(),
            namespace: self.namespace.clone().unwrap_or_default(),
            name,
            window: time_window(self.time_window) as i32,
            from: self.from.clone().unwrap_or_default(),
            to: self.to.clone().unwrap_or_default(),
        }
    }

    /// NAME as `namespace/name`.
    fn full_name(&self) -> Option<String> {
        let name = self.name.as_ref()?;
        Some(if name.contains('/') {
            name.clone()
        } else {
            let ns = self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
            format!("{ns}/{name}")
        })
    }

    /// The one Stat request behind the command.
    pub fn request(&self) -> MetricRequest {
        let mut filter = MetricMetadata::default();
        if let Some(full) = self.full_name() {
            match self.resource {
                Resource::Deployments | Resource::Namespaces => filter.target_deploy = full,
                Resource::Pods => filter.target_pod = full,
            }
        }
        let window = time_window(self.time_window);
        MetricRequest {
            metrics: vec![
                MetricName::RequestRate as i32,
                MetricName::SuccessRate as i32,
                MetricName::Latency as i32,
            ],
            window: window as i32,
            group_by: self.group_by() as i32,
            filter_by: Some(filter),
            summarize: true,
        }
    }
}

/// The window flag as the wire's.
pub fn time_window(w: Window) -> TimeWindow {
    match w {
        Window::TenSec => TimeWindow::TenSec,
        Window::OneMin => TimeWindow::OneMin,
        Window::TenMin => TimeWindow::TenMin,
        Window::OneHour => TimeWindow::OneHour,
    }
}

/// The rows of a StatSummary answer that saw traffic in the window, in its
/// order (namespace, then name), named `namespace/name` (a namespace by
/// itself).
pub fn summary_rows(rsp: &StatSummaryResponse, resource: Resource) -> Vec<Row> {
    rsp.rows
        .iter()
        .filter(|r| r.request_rate > 0.0 || r.success_rate.is_some() || r.p50_latency_ms.is_some())
        .map(|r| Row {
            name: match resource {
                Resource::Namespaces => r.namespace.clone(),
                _ => format!("{}/{}", r.namespace, r.name),
            },
            request_rate: Some(r.request_rate),
            success_rate: r.success_rate,
            p50_latency_ms: r.p50_latency_ms.map(i64::from),
            p95_latency_ms: r.p95_latency_ms.map(i64::from),
            p99_latency_ms: r.p99_latency_ms.map(i64::from),
            meshed: Some((r.meshed_pods, r.total_pods)),
            tcp: r.tcp_open_connections.map(|open| Tcp {
                tcp_open_connections: open,
                tcp_read_bytes_per_sec: r.tcp_read_bytes_per_sec.unwrap_or_default(),
                tcp_write_bytes_per_sec: r.tcp_write_bytes_per_sec.unwrap_or_default(),
            }),
        })
        .collect()
}

/// A `namespace/name` the mesh does not have, as the one line the CLI
/// prints for it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name} not found{hint}")]
pub struct NotFound {
    kind: &'static str,
    name: String,
    /// `; did you mean ns/name?`, or the namespaces that have the name.
    hint: String,
}

/// Whether the deployment or pod `full` (`namespace/name`) is among the
/// mesh's pods (deployments as the pods' owners, so a deployment scaled to
/// zero reads as absent). When it is not, the error names it and, if the
/// same name lives in other namespaces, where.
pub fn check_exists(resource: Resource, full: &str, pods: &[Pod]) -> Result<(), NotFound> {
    let (kind, names): (_, Vec<&str>) = match resource {
        Resource::Namespaces => (
            "namespace",
            pods.iter()
                .filter_map(|p| p.name.split_once('/').map(|(ns, _)| ns))
                .collect(),
        ),
        Resource::Deployments => (
            "deployment",
            pods.iter().map(|p| p.deployment.as_str()).collect(),
        ),
        Resource::Pods => ("pod", pods.iter().map(|p| p.name.as_str()).collect()),
    };
    if names.contains(&full) {
        return Ok(());
    }
    let bare = full.rsplit_once('/').map_or(full, |(_, n)| n);
    let elsewhere: std::collections::BTreeSet<&str> = names
        .into_iter()
        .filter(|n| n.rsplit_once('/').is_some_and(|(_, n)| n == bare))
        .collect();
    let hint = match elsewhere.len() {
        0 => String::new(),
        1 => format!("; did you mean {}?", elsewhere.first().unwrap()),
        _ => format!(
            "; {bare} is in {}: give NAMESPACE/NAME",
            elsewhere
                .iter()
                .map(|n| n.rsplit_once('/').map_or(*n, |(ns, _)| ns))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Err(NotFound {
        kind,
        name: full.to_string(),
        hint,
    })
}

/// The answer as rows, sorted by name. Rows without a name (traffic to
/// addresses no pod owns) and outside `namespace` are left out. Each series
/// contributes its latest datapoint.
pub fn rows(rsp: &MetricResponse, by: AggregationType, namespace: Option<&str>) -> Vec<Row> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for series in &rsp.metrics {
        let meta = series.metadata.clone().unwrap_or_default();
        let name = match by {
            AggregationType::TargetDeploy => meta.target_deploy,
            AggregationType::TargetPod => meta.target_pod,
            AggregationType::SourceDeploy => meta.source_deploy,
            AggregationType::SourcePod => meta.source_pod,
            AggregationType::Mesh => continue,
        };
        if name.is_empty() || !in_namespace(&name, namespace) {
            continue;
        }
        let Some(value) = series
            .datapoints
            .iter()
            .max_by_key(|d| d.timestamp_ms)
            .and_then(|d| d.value.as_ref())
            .and_then(|v| v.value.as_ref())
        else {
            continue;
        };
        let row = rows.entry(name.clone()).or_insert_with(|| Row {
            name,
            ..Row::default()
        });
        match (MetricName::try_from(series.name), value) {
            (Ok(MetricName::RequestRate), metric_value::Value::Gauge(g)) => {
                row.request_rate = Some(*g)
            }
            (Ok(MetricName::SuccessRate), metric_value::Value::Gauge(g)) => {
                row.success_rate = Some(*g)
            }
            (Ok(MetricName::Latency), metric_value::Value::Histogram(h)) => {
                for v in &h.values {
                    match HistogramLabel::try_from(v.label) {
                        Ok(HistogramLabel::P50) => row.p50_latency_ms = Some(v.value),
                        Ok(HistogramLabel::P95) => row.p95_latency_ms = Some(v.value),
                        Ok(HistogramLabel::P99) => row.p99_latency_ms = Some(v.value),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    rows.into_values().collect()
}

pub fn render_table(rows: &[Row], wide: bool) -> String {
    let meshed = rows.iter().any(|r| r.meshed.is_some());
    let mut header = vec![
        "NAME",
        "REQUEST_RATE",
        "SUCCESS_RATE",
        "P50_LATENCY",
        "P99_LATENCY",
    ];
    if wide {
        header.insert(4, "P95_LATENCY");
        header.extend(["TCP_CONN", "READ_BYTES/SEC", "WRITE_BYTES/SEC"]);
    }
    if meshed {
        header.insert(1, "MESHED");
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![
                r.name.clone(),
                r.request_rate
                    .map_or_else(|| "-".into(), |v| format!("{v:.1}rps")),
                r.success_rate
                    .map_or_else(|| "-".into(), |v| format!("{:.2}%", v * 100.0)),
                latency(r.p50_latency_ms),
                latency(r.p99_latency_ms),
            ];
            if wide {
                cells.insert(4, latency(r.p95_latency_ms));
                cells.extend(match r.tcp {
                    Some(t) => [
                        format!("{:.0}", t.tcp_open_connections),
                        format!("{:.1}B/s", t.tcp_read_bytes_per_sec),
                        format!("{:.1}B/s", t.tcp_write_bytes_per_sec),
                    ],
                    None => ["-".into(), "-".into(), "-".into()],
                });
            }
            if meshed {
                let (up, all) = r.meshed.unwrap_or_default();
                cells.insert(1, format!("{up}/{all}"));
            }
            cells
        })
        .collect();
    table::render(&header, &cells)
}

fn latency(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".into(), |v| format!("{v}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::public::{
        Histogram, HistogramValue, MetricDatapoint, MetricSeries, MetricValue,
    };

    fn gauge(name: MetricName, deploy: &str, v: f64) -> MetricSeries {
        MetricSeries {
            name: name as i32,
            metadata: Some(MetricMetadata {
                target_deploy: deploy.into(),
                ..Default::default()
            }),
            datapoints: vec![MetricDatapoint {
                value: Some(MetricValue {
                    value: Some(metric_value::Value::Gauge(v)),
                }),
                timestamp_ms: 1,
            }],
        }
    }

    fn latencies(deploy: &str, p50: i64, p95: i64, p99: i64) -> MetricSeries {
        let hv = |label: HistogramLabel, value| HistogramValue {
            label: label as i32,
            value,
        };
        MetricSeries {
            name: MetricName::Latency as i32,
            metadata: Some(MetricMetadata {
                target_deploy: deploy.into(),
                ..Default::default()
            }),
            datapoints: vec![MetricDatapoint {
                value: Some(MetricValue {
                    value: Some(metric_value::Value::Histogram(Histogram {
                        values: vec![
                            hv(HistogramLabel::P50, p50),
                            hv(HistogramLabel::P99, p99),
                            hv(HistogramLabel::P95, p95),
                        ],
                    })),
                }),
                timestamp_ms: 1,
            }],
        }
    }

    fn answer() -> MetricResponse {
        MetricResponse {
            metrics: vec![
                gauge(MetricName::RequestRate, "shop/web", 3.0),
                gauge(MetricName::RequestRate, "shop/books", 20.04),
                gauge(MetricName::RequestRate, "", 7.0),
                gauge(MetricName::SuccessRate, "shop/books", 0.985),
                latencies("shop/books", 12, 30, 48),
                gauge(MetricName::RequestRate, "other/db", 1.0),
            ],
        }
    }

    #[test]
    fn rows_are_sorted_named_and_filtered() {
        let all = rows(&answer(), AggregationType::TargetDeploy, None);
        let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["other/db", "shop/books", "shop/web"]);
        let shop = rows(&answer(), AggregationType::TargetDeploy, Some("shop"));
        assert_eq!(shop.len(), 2);
        assert_eq!(
            shop[0],
            Row {
                name: "shop/books".into(),
                request_rate: Some(20.04),
                success_rate: Some(0.985),
                p50_latency_ms: Some(12),
                p95_latency_ms: Some(30),
                p99_latency_ms: Some(48),
                meshed: None,
                tcp: None,
            }
        );
    }

    #[test]
    fn table_and_json_formats() {
        let shop = rows(&answer(), AggregationType::TargetDeploy, Some("shop"));
        assert_eq!(
            render_table(&shop, false),
            "\
NAME         REQUEST_RATE   SUCCESS_RATE   P50_LATENCY   P99_LATENCY
shop/books   20.0rps        98.50%         12ms          48ms
shop/web     3.0rps         -              -             -
"
        );
        // Wide puts P95 between P50 and P99, and adds the TCP columns.
        let mut wide = shop.clone();
        wide[0].tcp = Some(Tcp {
            tcp_open_connections: 3.0,
            tcp_read_bytes_per_sec: 1_234.56,
            tcp_write_bytes_per_sec: 20.0,
        });
        assert_eq!(
            render_table(&wide, true),
            "\
NAME         REQUEST_RATE   SUCCESS_RATE   P50_LATENCY   P95_LATENCY   P99_LATENCY   TCP_CONN   READ_BYTES/SEC   WRITE_BYTES/SEC
shop/books   20.0rps        98.50%         12ms          30ms          48ms          3          1234.6B/s        20.0B/s
shop/web     3.0rps         -              -             -             -             -          -                -
"
        );
        assert_eq!(
            serde_json::to_string(&wide[0]).unwrap(),
            r#"{"name":"shop/books","requestRate":20.04,"successRate":0.985,"p50LatencyMs":12,"p95LatencyMs":30,"p99LatencyMs":48,"tcpOpenConnections":3.0,"tcpReadBytesPerSec":1234.56,"tcpWriteBytesPerSec":20.0}"#
        );
        assert_eq!(
            serde_json::to_string(&shop[0]).unwrap(),
            r#"{"name":"shop/books","requestRate":20.04,"successRate":0.985,"p50LatencyMs":12,"p95LatencyMs":30,"p99LatencyMs":48}"#
        );
        assert_eq!(
            serde_json::to_string(&shop[1]).unwrap(),
            r#"{"name":"shop/web","requestRate":3.0,"successRate":null,"p50LatencyMs":null,"p95LatencyMs":null,"p99LatencyMs":null}"#
        );
    }

    #[test]
    fn name_filters_in_the_namespace() {
        let args = |name: Option<&str>, ns: Option<&str>| Args {
            resource: Resource::Pods,
            name: name.map(str::to_string),
            namespace: ns.map(str::to_string),
            all_namespaces: false,
            time_window: Window::TenSec,
            output: Output::Table,
            from: None,
            to: None,
            api: ApiArgs {
                api_addr: String::new(),
            },
        };
        let filter = |a: Args| a.request().filter_by.unwrap().target_pod;
        assert_eq!(
            args(Some("web-1"), Some("shop")).summary_request().name,
            "shop/web-1"
        );
        assert_eq!(filter(args(Some("web-1"), Some("shop"))), "shop/web-1");
        assert_eq!(filter(args(Some("web-1"), None)), "default/web-1");
        assert_eq!(filter(args(Some("x/web-1"), Some("shop"))), "x/web-1");
        assert_eq!(filter(args(None, Some("shop"))), "");
        let req = args(None, None).request();
        assert_eq!(req.group_by, AggregationType::TargetPod as i32);
        assert_eq!(req.window, TimeWindow::TenSec as i32);
        assert!(req.summarize);
    }

    fn pod(name: &str, deployment: &str) -> Pod {
        Pod {
            name: name.into(),
            deployment: deployment.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_name_the_mesh_lacks_is_named_with_where_it_lives() {
        let pods = [
            pod("storefront/web-1", "storefront/web"),
            pod("shop/books-1", "shop/books"),
            pod("other/books-2", "other/books"),
            pod("shop/lone", ""),
        ];
        let deploy =
            |full| check_exists(Resource::Deployments, full, &pods).map_err(|e| e.to_string());
        assert_eq!(deploy("storefront/web"), Ok(()));
        assert_eq!(deploy("shop/books"), Ok(()));
        assert_eq!(
            deploy("default/web"),
            Err("deployment default/web not found; did you mean storefront/web?".into())
        );
        assert_eq!(
            deploy("shop/nope"),
            Err("deployment shop/nope not found".into())
        );
        assert_eq!(
            deploy("default/books"),
            Err(
                "deployment default/books not found; books is in other, shop: give NAMESPACE/NAME"
                    .into()
            )
        );
        // A pod's name is not a deployment's.
        assert_eq!(
            deploy("storefront/web-1"),
            Err("deployment storefront/web-1 not found".into())
        );
        let pod = |full| check_exists(Resource::Pods, full, &pods).map_err(|e| e.to_string());
        assert_eq!(pod("shop/lone"), Ok(()));
        assert_eq!(
            pod("default/web-1"),
            Err("pod default/web-1 not found; did you mean storefront/web-1?".into())
        );
        assert_eq!(pod("shop/web"), Err("pod shop/web not found".into()));
    }
}
