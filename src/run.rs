//! `conduit run`: the control plane in one process — telemetry,
//! public-api and the web dashboard on their usual ports, sharing nothing
//! but loopback calls for now. With `--demo` it also generates a cluster and drives it with
//! simulated proxies, so `conduit stat deployments` and `/metrics` show live
//! numbers within seconds with nothing else installed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;

use crate::core::{ListenAddr, Shutdown};
use crate::k8s::source::MetadataArgs;
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
    #[arg(long, conflicts_with_all = ["cluster", "kubeconfig"])]
    pub demo: bool,
    #[command(flatten)]
    pub metadata: MetadataArgs,
    /// Telemetry gRPC address (the proxies' Report).
    #[arg(long, default_value = ":8087")]
    pub telemetry_addr: ListenAddr,
    /// Telemetry admin address (/metrics, /ping, /ready).
    #[arg(long, default_value = ":9997")]
    pub metrics_addr: ListenAddr,
    /// public-api HTTP address (the CLI's and the dashboard's API).
    #[arg(long, default_value = ":8085")]
    pub api_addr: ListenAddr,
    /// public-api admin address.
    #[arg(long, default_value = ":9995")]
    pub api_metrics_addr: ListenAddr,
    /// Prometheus for Stat (the embedded store otherwise).
    #[arg(long)]
    pub prometheus_url: Option<String>,
    /// Web dashboard HTTP address.
    #[arg(long, default_value = ":8084")]
    pub web_addr: ListenAddr,
    /// Web dashboard admin address.
    #[arg(long, default_value = ":9994")]
    pub web_metrics_addr: ListenAddr,
    /// Reports per second from the demo's simulated proxies.
    #[arg(long, default_value_t = 24.0)]
    pub demo_rate: f64,
}

/// Prints a banner line; a closed stdout (the reader went away) must not
/// take the control plane down with it, so errors are ignored.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Where this host reaches a bound address: loopback for the unspecified
/// address (`:8085` binds every interface).
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// Parses one component's flags from argv, so `run` shares each
/// component's definition of its defaults.
#[derive(clap::Parser)]
struct Component<T: clap::Args> {
    #[command(flatten)]
    args: T,
}

fn component<T: clap::Args>(argv: Vec<String>) -> anyhow::Result<T> {
    let argv = std::iter::once("conduit".to_string()).chain(argv);
    Ok(Component::<T>::try_parse_from(argv)?.args)
}

impl Args {
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let mut argv = vec![
            format!("--addr={}", self.telemetry_addr),
            format!("--metrics-addr={}", self.metrics_addr),
        ];
        if let Some(path) = &self.metadata.cluster {
            argv.push(format!("--cluster={}", path.display()));
        }
        if let Some(path) = &self.metadata.kubeconfig {
            argv.push(format!("--kubeconfig={}", path.display()));
        }
        if let Some(url) = &self.prometheus_url {
            argv.push(format!("--prometheus-url={url}"));
        }
        let telemetry: crate::telemetry::Args = component(argv).context("telemetry flags")?;
        let telemetry = if self.demo {
            let index = Arc::new(Index::new());
            let fleet = simulate::fleet(DEMO_PODS, DEMO_DEPLOYMENTS, DEMO_NAMESPACE, DEMO_SEED);
            let objects =
                cluster_file::parse(&simulate::cluster_yaml(&fleet)).context("the demo cluster")?;
            cluster_file::apply(objects, &index);
            telemetry.bind_with_index(index).await?
        } else {
            telemetry.bind().await?
        };
        let grpc = telemetry.grpc_addr();
        let api: crate::public_api::Args = component(vec![
            format!("--addr={}", self.api_addr),
            format!("--metrics-addr={}", self.api_metrics_addr),
            format!("--telemetry-addr=127.0.0.1:{}", grpc.port()),
        ])
        .context("public-api flags")?;
        let api = api.bind().await?;
        let web: crate::web::Args = component(vec![
            format!("--addr={}", self.web_addr),
            format!("--metrics-addr={}", self.web_metrics_addr),
            format!("--api-addr={}", reachable(api.http_addr())),
        ])
        .context("web flags")?;
        let web = web.bind().await?;
        say(format_args!(
            "telemetry: gRPC on {grpc}, metrics on http://{}/metrics",
            telemetry.admin_addr()
        ));
        say(format_args!(
            "public-api: http://{}/api/v1/",
            api.http_addr()
        ));
        say(format_args!("web: http://{}/", reachable(web.http_addr())));
        let telemetry = tokio::spawn(telemetry.serve(shutdown.clone()));
        let api = tokio::spawn(api.serve(shutdown.clone()));
        let web = tokio::spawn(web.serve(shutdown.clone()));
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
            say(format_args!(
                "demo: {DEMO_PODS} simulated proxies in namespace {DEMO_NAMESPACE} report {} times a second; try: conduit stat deployments",
                self.demo_rate
            ));
            let demo_shutdown = shutdown.clone();
            tokio::spawn(async move {
                if let Err(error) = sim.run(demo_shutdown).await {
                    tracing::warn!(%error, "the demo's simulated proxies stopped");
                }
            });
        }
        let (telemetry, api, web) = tokio::join!(telemetry, api, web);
        telemetry.context("telemetry task")??;
        api.context("public-api task")??;
        web.context("web task")??;
        Ok(())
    }
}
