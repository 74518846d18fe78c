//! `conduit routes deploy NAME`: one deployment's inbound traffic per
//! route, from one Routes call. With route templates (telemetry's
//! `-routes FILE`) the rows are the templates and `[DEFAULT]` for what none
//! matched; without them, the paths as observed.

use serde::Serialize;

use super::stat::{Window, time_window};
use super::{ApiArgs, ApiClient, table};
use crate::proto::http_api::ROUTES_PATH;
use crate::proto::public::{RouteRow, RoutesRequest, RoutesResponse};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Resource {
    #[value(name = "deployment", alias = "deployments", alias = "deploy")]
    Deployment,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// ROUTE, REQUEST_RATE, SUCCESS_RATE, P50_LATENCY, P95_LATENCY,
    /// P99_LATENCY.
    Table,
    /// The same table (every column is already shown).
    Wide,
    /// A JSON array of rows.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The kind of resource (a deployment).
    pub resource: Resource,
    /// The deployment's name, or `namespace/name`.
    pub name: String,
    /// The deployment's namespace.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// The time window the figures cover.
    #[arg(short = 't', long, default_value = "1m")]
    pub time_window: Window,
    /// Output format.
    #[arg(short = 'o', long, default_value = "table")]
    pub output: Output,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// One route as `-o json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub route: String,
    pub request_rate: f64,
    pub success_rate: Option<f64>,
    pub p50_latency_ms: Option<u32>,
    pub p95_latency_ms: Option<u32>,
    pub p99_latency_ms: Option<u32>,
}

impl From<&RouteRow> for Row {
    fn from(r: &RouteRow) -> Self {
        Self {
            route: r.route.clone(),
            request_rate: r.request_rate,
            success_rate: r.success_rate,
            p50_latency_ms: r.p50_latency_ms,
            p95_latency_ms: r.p95_latency_ms,
            p99_latency_ms: r.p99_latency_ms,
        }
    }
}

impl Args {
    pub fn request(&self) -> RoutesRequest {
        let deployment = if self.name.contains('/') {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        };
        RoutesRequest {
            deployment,
            window: time_window(self.time_window) as i32,
        }
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let client = ApiClient::new(&self.api.api_addr)?;
        let request = self.request();
        let rsp: RoutesResponse = client.call(ROUTES_PATH, &request).await?;
        let rows: Vec<Row> = rsp.routes.iter().map(Row::from).collect();
        match self.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
            _ if rows.is_empty() => {
                eprintln!("No traffic to {} in the window.", request.deployment)
            }
            Output::Table | Output::Wide => print!("{}", render_table(&rows)),
        }
        Ok(())
    }
}

pub fn render_table(rows: &[Row]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            [r.route.clone()]
                .into_iter()
                .chain(table::traffic_cells(
                    r.request_rate,
                    r.success_rate,
                    [r.p50_latency_ms, r.p95_latency_ms, r.p99_latency_ms],
                ))
                .collect()
        })
        .collect();
    let header: Vec<&str> = ["ROUTE"]
        .into_iter()
        .chain(table::TRAFFIC_HEADERS)
        .collect();
    table::render(&header, &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_row_per_route_in_stable_columns() {
        let rows = [
            Row {
                route: "GET /books/{id}".into(),
                request_rate: 12.5,
                success_rate: Some(1.0),
                p50_latency_ms: Some(8),
                p95_latency_ms: Some(20),
                p99_latency_ms: Some(31),
            },
            Row {
                route: "[DEFAULT]".into(),
                request_rate: 0.25,
                success_rate: None,
                p50_latency_ms: None,
                p95_latency_ms: None,
                p99_latency_ms: None,
            },
        ];
        assert_eq!(
            render_table(&rows),
            "ROUTE             REQUEST_RATE   SUCCESS_RATE   P50_LATENCY   P95_LATENCY   P99_LATENCY\n\
             GET /books/{id}   12.5rps        100.00%        8ms           20ms          31ms\n\
             [DEFAULT]         0.2rps         -              -             -             -\n"
        );
    }

    #[test]
    fn a_bare_name_is_in_the_namespace_given() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let args = Cli::parse_from(["routes", "deploy", "books", "-n", "shop"]).args;
        assert_eq!(args.request().deployment, "shop/books");
        let args = Cli::parse_from(["routes", "deploy", "a/books"]).args;
        assert_eq!(args.request().deployment, "a/books");
    }
}
