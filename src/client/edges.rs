//! `conduit edges deployments|pods`: who calls whom, from one Edges call,
//! with the traffic of each source → destination pair over the window (the
//! numbers Stat gives for that pair).

use serde::Serialize;

use super::stat::{Window, time_window};
use super::{ApiArgs, ApiClient, table};
use crate::proto::http_api::EDGES_PATH;
use crate::proto::public::{Edge, EdgesRequest, EdgesResponse};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Resource {
    #[value(name = "deployments", alias = "deployment", alias = "deploy")]
    Deployments,
    #[value(name = "pods", alias = "pod", alias = "po")]
    Pods,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// SRC, DST, REQUEST_RATE, SUCCESS_RATE, P50_LATENCY, P95_LATENCY,
    /// P99_LATENCY.
    Table,
    /// The same table (every column is already shown).
    Wide,
    /// A JSON array of rows.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The edges between deployments or between pods.
    pub resource: Resource,
    /// Only edges with a side in this namespace (default: every namespace).
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
    #[command(flatten)]
    pub api: ApiArgs,
}

/// One edge as `-o json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub src: String,
    pub dst: String,
    pub request_rate: f64,
    pub success_rate: Option<f64>,
    pub p50_latency_ms: Option<u32>,
    pub p95_latency_ms: Option<u32>,
    pub p99_latency_ms: Option<u32>,
}

impl From<&Edge> for Row {
    fn from(e: &Edge) -> Self {
        Self {
            src: e.src.clone(),
            dst: e.dst.clone(),
            request_rate: e.request_rate,
            success_rate: e.success_rate,
            p50_latency_ms: e.p50_latency_ms,
            p95_latency_ms: e.p95_latency_ms,
            p99_latency_ms: e.p99_latency_ms,
        }
    }
}

impl Args {
    pub fn request(&self) -> EdgesRequest {
        EdgesRequest {
            resource: match self.resource {
                Resource::Deployments => "deployments",
                Resource::Pods => "pods",
            }
            .to_string(),
            namespace: self.namespace.clone().unwrap_or_default(),
            window: time_window(self.time_window) as i32,
        }
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let client = ApiClient::new(&self.api.api_addr)?;
        let rsp: EdgesResponse = client.call(EDGES_PATH, &self.request()).await?;
        let rows: Vec<Row> = rsp.edges.iter().map(Row::from).collect();
        match self.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
            _ if rows.is_empty() => eprintln!("No edges found."),
            Output::Table | Output::Wide => print!("{}", render_table(&rows)),
        }
        Ok(())
    }
}

pub fn render_table(rows: &[Row]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            [r.src.clone(), r.dst.clone()]
                .into_iter()
                .chain(table::traffic_cells(
                    r.request_rate,
                    r.success_rate,
                    [r.p50_latency_ms, r.p95_latency_ms, r.p99_latency_ms],
                ))
                .collect()
        })
        .collect();
    let header: Vec<&str> = ["SRC", "DST"]
        .into_iter()
        .chain(table::TRAFFIC_HEADERS)
        .collect();
    table::render(&header, &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_row_per_edge_in_stable_columns() {
        let rows = [Row {
            src: "shop/web".into(),
            dst: "shop/books".into(),
            request_rate: 2.5,
            success_rate: Some(0.9),
            p50_latency_ms: Some(12),
            p95_latency_ms: None,
            p99_latency_ms: Some(250),
        }];
        assert_eq!(
            render_table(&rows),
            "SRC        DST          REQUEST_RATE   SUCCESS_RATE   P50_LATENCY   P95_LATENCY   P99_LATENCY\n\
             shop/web   shop/books   2.5rps         90.00%         12ms          -             250ms\n"
        );
    }
}
