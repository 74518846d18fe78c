//! `conduit get pods`: the pods of the mesh as telemetry knows them, with
//! when each last reported.

use std::time::Duration;

use super::{ApiArgs, ApiClient, in_namespace, table};
use crate::proto::http_api::{self, LIST_PODS_PATH};
use crate::proto::public::{Empty, ListPodsResponse, Pod};

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// NAME, STATUS, IP, DEPLOYMENT, LAST REPORT.
    Table,
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
        }
    }
}

impl PodsArgs {
    async fn run(self) -> anyhow::Result<()> {
        let client = ApiClient::new(&self.api.api_addr)?;
        let rsp: ListPodsResponse = client.call(LIST_PODS_PATH, &Empty {}).await?;
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
            Output::Table if pods.is_empty() => eprintln!("No pods found."),
            Output::Table => print!("{}", render_table(&pods)),
        }
        Ok(())
    }
}

pub fn render_table(pods: &[Pod]) -> String {
    let cell = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let rows: Vec<Vec<String>> = pods
        .iter()
        .map(|p| {
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
        })
        .collect();
    table::render(
        &["NAME", "STATUS", "IP", "DEPLOYMENT", "LAST REPORT"],
        &rows,
    )
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
        assert_eq!(age(Duration::from_secs(7300)), "2h1m");
    }
}
