//! `conduit run`: the control plane in one process. Today it runs the
//! telemetry component on its usual ports; with `--demo` it also generates a
//! cluster and drives it with simulated proxies, so `/metrics` shows live
//! mesh series within seconds with nothing else installed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;

use crate::core::{ListenAddr, Shutdown};
use crate::k8s::{Index, cluster_file};
use crate::simulate::{self, Shape};

/// The demo fleet: enough pods for a readable mesh, light enough for a laptop.
const DEMO_PODS: usize = 24;
const DEMO_DEPLOYMENTS: usize = 6;
const DEMO_NAMESPACE: &str = "demo";
const DEMO_SEED: u64 = 42;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Generate a cluster and drive it with simulated proxies.
    #[arg(long)]
    pub demo: bool,
    /// Cluster metadata from a file of Kubernetes YAML.
    #[arg(long, conflicts_with = "demo")]
    pub cluster: Option<PathBuf>,
    /// Telemetry gRPC address (the proxies' Report).
    #[arg(long, default_value = ":8087")]
    pub telemetry_addr: ListenAddr,
    /// Telemetry admin address (/metrics, /ping, /ready).
    #[arg(long, default_value = ":9997")]
    pub metrics_addr: ListenAddr,
    /// Reports per second from the demo's simulated proxies.
    #[arg(long, default_value_t = 24.0)]
    pub demo_rate: f64,
}

impl Args {
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let mut argv = vec![
            "telemetry".to_string(),
            format!("--addr={}", self.telemetry_addr),
            format!("--metrics-addr={}", self.metrics_addr),
        ];
        if let Some(path) = &self.cluster {
            argv.push(format!("--cluster={}", path.display()));
        }
        let telemetry = TelemetryOnly::try_parse_from(argv)
            .context("telemetry flags")?
            .args;
        let bound = if self.demo {
            let index = Arc::new(Index::new());
            let fleet = simulate::fleet(DEMO_PODS, DEMO_DEPLOYMENTS, DEMO_NAMESPACE, DEMO_SEED);
            let objects =
                cluster_file::parse(&simulate::cluster_yaml(&fleet)).context("the demo cluster")?;
            cluster_file::apply(objects, &index);
            telemetry.bind_with_index(index).await?
        } else {
            telemetry.bind().await?
        };
        let grpc = bound.grpc_addr();
        let admin = bound.admin_addr();
        println!("telemetry: gRPC on {grpc}, metrics on http://{admin}/metrics");
        let server = tokio::spawn(bound.serve(shutdown.clone()));
        if self.demo {
            let sim = simulate::Args {
                addr: format!("127.0.0.1:{}", grpc.port()),
                pods: DEMO_PODS,
                deployments: Some(DEMO_DEPLOYMENTS),
                namespace: DEMO_NAMESPACE.to_string(),
                rate: Some(self.demo_rate),
                duration: Duration::from_secs(365 * 24 * 3600),
                reports: None,
                shape: Shape::Medium,
                cluster_out: None,
                seed: DEMO_SEED,
                concurrency: None,
                connections: Some(1),
                json: false,
            };
            println!(
                "demo: {DEMO_PODS} simulated proxies report {} times a second",
                self.demo_rate
            );
            let demo_shutdown = shutdown.clone();
            tokio::spawn(async move {
                if let Err(error) = sim.run(demo_shutdown).await {
                    tracing::warn!(%error, "the demo's simulated proxies stopped");
                }
            });
        }
        server.await.context("telemetry task")?
    }
}

/// Parses the telemetry component's flags from the `run` options, so both
/// share one definition of defaults.
#[derive(clap::Parser)]
struct TelemetryOnly {
    #[command(flatten)]
    args: crate::telemetry::Args,
}
