//! `conduit get pods|deployments`: the pods of the mesh as telemetry knows
//! them, with when each last reported (`-o wide`: the node from
//! `ListPodNodes` and every field of the API's `Pod`), and the deployments
//! they make up.

use std::collections::HashMap;
use std::time::Duration;

use super::{ApiArgs, ApiClient, in_namespace, table};
use crate::proto::http_api::{self, LIST_POD_NODES_PATH, LIST_PODS_PATH};
use crate::proto::public::{Empty, ListPodNodesResponse, ListPodsResponse, Pod};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Pods with their status, IP, deployment and last report.
    #[command(alias = "pod", alias = "po")]
    Pods(PodsArgs),
    /// Deployments with their pods, how many report, and the last report.
    #[command(alias = "deployment", alias = "deploy")]
    Deployments(PodsArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// NAME, STATUS, IP, DEPLOYMENT, LAST REPORT.
    Table,
    /// Pods: the table, NODE (where the pod is scheduled) and the rest of
    /// the API's `Pod` — CONTROLLER NAMESPACE (the control plane its proxy
    /// belongs to) and CONTROL PLANE (whether it is one of that plane's
    /// pods). Deployments: the table (every column is already shown).
    Wide,
    /// A JSON array of the API's `Pod` messages (proto3 JSON).
    Json,
}

#[derive(Debug, clap::Args)]
pub struct PodsArgs {
    /// Only this namespace (default: every namespace).
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Every namespace (the default).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, default_value = "table")]
    pub output: Output,
    #[command(flatten)]
    pub api: ApiArgs,
}

impl Args {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.what {
            What::Pods(args) => args.run().await,
            What::Deployments(args) => args.run_deployments().await,
        }
    }
}

impl PodsArgs {
    async fn run(self) -> anyhow::Result<()> {
        let client = ApiClient::new(&self.api.api_addr)?;
        // The nodes come from a call of their own, as the wire's `Pod` has
        // no field for them; asked at the same time as the pods.
        let (rsp, nodes) = if self.output == Output::Wide {
            tokio::try_join!(
                client.call::<_, ListPodsResponse>(LIST_PODS_PATH, &Empty {}),
                client.call::<_, ListPodNodesResponse>(LIST_POD_NODES_PATH, &Empty {}),
            )?
        } else {
            let pods = client.call(LIST_PODS_PATH, &Empty {}).await?;
            (pods, ListPodNodesResponse::default())
        };
        let nodes: HashMap<String, String> =
            nodes.pods.into_iter().map(|p| (p.name, p.node)).collect();
        let mut pods: Vec<Pod> = rsp
            .pods
            .into_iter()
            .filter(|p| in_namespace(&p.name, self.namespace.as_deref()))
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        match self.output {
            Output::Json => {
                let values = pods
                    .iter()
                    .map(http_api::to_json_value)
                    .collect::<Result<Vec<_>, _>>()?;
                println!("{}", serde_json::to_string_pretty(&values)?);
            }
            Output::Table | Output::Wide if pods.is_empty() => eprintln!("No pods found."),
            Output::Table => print!("{}", render_table(&pods)),
            Output::Wide => print!("{}", render_wide_table(&pods, &nodes)),
        }
        Ok(())
    }
}

/// One deployment of `get deployments`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub name: String,
    /// Pods in phase Running.
    pub running_pods: u32,
    pub total_pods: u32,
    /// Pods that have reported.
    pub meshed_pods: u32,
    /// Seconds since the most recent report of any of its pods.
    pub last_report_secs: Option<u64>,
}

/// The deployments the pods belong to, sorted by name (pods of none are
/// left out).
pub fn deployments(pods: &[Pod]) -> Vec<Deployment> {
    let mut by: std::collections::BTreeMap<&str, Deployment> = Default::default();
    for p in pods.iter().filter(|p| !p.deployment.is_empty()) {
        let d = by.entry(&p.deployment).or_insert_with(|| Deployment {
            name: p.deployment.clone(),
            ..Deployment::default()
        });
        d.total_pods += 1;
        d.running_pods += u32::from(p.status == "Running");
        d.meshed_pods += u32::from(p.added);
        let since = p
            .since_last_report
            .filter(|_| p.added)
            .and_then(|d| Duration::try_from(d).ok())
            .map(|d| d.as_secs());
        d.last_report_secs = match (d.last_report_secs, since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    by.into_values().collect()
}

pub fn render_deployments(deployments: &[Deployment]) -> String {
    let rows: Vec<Vec<String>> = deployments
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                format!("{}/{}", d.running_pods, d.total_pods),
                format!("{}/{}", d.meshed_pods, d.total_pods),
                d.last_report_secs.map_or_else(
                    || "-".to_string(),
                    |s| format!("{} ago", age(Duration::from_secs(s))),
                ),
            ]
        })
        .collect();
    table::render(&["NAME", "RUNNING", "MESHED", "LAST REPORT"], &rows)
}

impl PodsArgs {
    async fn run_deployments(self) -> anyhow::Result<()> {
        let client = ApiClient::new(&self.api.api_addr)?;
        let rsp: ListPodsResponse = client.call(LIST_PODS_PATH, &Empty {}).await?;
        let pods: Vec<Pod> = rsp
            .pods
            .into_iter()
            .filter(|p| in_namespace(&p.name, self.namespace.as_deref()))
            .collect();
        let deployments = deployments(&pods);
        match self.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&deployments)?),
            Output::Table | Output::Wide if deployments.is_empty() => {
                eprintln!("No deployments found.")
            }
            Output::Table | Output::Wide => print!("{}", render_deployments(&deployments)),
        }
        Ok(())
    }
}

const POD_COLUMNS: [&str; 5] = ["NAME", "STATUS", "IP", "DEPLOYMENT", "LAST REPORT"];

pub fn render_table(pods: &[Pod]) -> String {
    let rows: Vec<Vec<String>> = pods.iter().map(pod_cells).collect();
    table::render(&POD_COLUMNS, &rows)
}

/// `-o wide`: the table's columns, the pod's node (`-` when it has none or
/// `nodes` does not know it), then the rest of the `Pod` message.
pub fn render_wide_table(pods: &[Pod], nodes: &HashMap<String, String>) -> String {
    let rows: Vec<Vec<String>> = pods
        .iter()
        .map(|p| {
            let mut cells = pod_cells(p);
            cells.push(cell(nodes.get(&p.name).map_or("", String::as_str)));
            cells.push(cell(&p.controller_namespace));
            cells.push(if p.control_plane { "yes" } else { "no" }.to_string());
            cells
        })
        .collect();
    let mut header = POD_COLUMNS.to_vec();
    header.extend(["NODE", "CONTROLLER NAMESPACE", "CONTROL PLANE"]);
    table::render(&header, &rows)
}

fn pod_cells(p: &Pod) -> Vec<String> {
    let last = p
        .since_last_report
        .filter(|_| p.added)
        .and_then(|d| Duration::try_from(d).ok())
        .map_or_else(|| "-".to_string(), |d| format!("{} ago", age(d)));
    vec![
        p.name.clone(),
        cell(&p.status),
        cell(&p.pod_ip),
        cell(&p.deployment),
        last,
    ]
}

/// A cell of text the API may leave empty.
fn cell(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

/// A duration as kubectl prints ages: `45s`, `3m12s`, `2h5m`.
fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_table() {
        let pods = vec![
            Pod {
                name: "shop/books-1".into(),
                pod_ip: "192.0.2.20".into(),
                deployment: "shop/books".into(),
                status: "Running".into(),
                added: true,
                since_last_report: Some(prost_types::Duration {
                    seconds: 75,
                    nanos: 0,
                }),
                ..Default::default()
            },
            Pod {
                name: "shop/lonely".into(),
                status: "Pending".into(),
                ..Default::default()
            },
        ];
        assert_eq!(
            render_table(&pods),
            "\
NAME           STATUS    IP           DEPLOYMENT   LAST REPORT
shop/books-1   Running   192.0.2.20   shop/books   1m15s ago
shop/lonely    Pending   -            -            -
"
        );
        let mut wide = pods.clone();
        wide[0].controller_namespace = "conduit".into();
        let nodes = HashMap::from([("shop/books-1".to_string(), "node-a".to_string())]);
        assert_eq!(
            render_wide_table(&wide, &nodes),
            "\
NAME           STATUS    IP           DEPLOYMENT   LAST REPORT   NODE     CONTROLLER NAMESPACE   CONTROL PLANE
shop/books-1   Running   192.0.2.20   shop/books   1m15s ago     node-a   conduit                no
shop/lonely    Pending   -            -            -             -        -                      no
"
        );
        assert_eq!(age(Duration::from_secs(7300)), "2h1m");
        let mut more = pods.clone();
        more.push(Pod {
            name: "shop/books-2".into(),
            deployment: "shop/books".into(),
            status: "Pending".into(),
            ..Default::default()
        });
        assert_eq!(
            render_deployments(&deployments(&more)),
            "\
NAME         RUNNING   MESHED   LAST REPORT
shop/books   1/2       1/2      1m15s ago
"
        );
    }
}
