//! `conduit run`: the whole control plane in one process — telemetry,
//! tap, destination, proxy-api, public-api and the web dashboard on their
//! usual ports, all reading one cluster index. With `--demo` it also generates a cluster and
//! drives it with simulated proxies (their reports, and their taps on each
//! pod's loopback address), so `conduit stat deployments`, `conduit tap`
//! and `/metrics` show live traffic within seconds with nothing else
//! installed.
//!
//! They share the index, and public-api calls telemetry and tap in memory
//! (their gRPC services called directly, no socket). The proxies' calls
//! arrive on the sockets a real mesh uses (the demo's simulated proxies
//! report to proxy-api's port, as installed proxies do); proxy-api hands
//! each report to the ingester of this process, with no loopback hop, and
//! forwards `Get` to destination over loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinHandle;

use crate::core::{ListenAddr, Shutdown};
use crate::k8s::source::MetadataArgs;
use crate::k8s::{Index, Kind, cluster_file};
use crate::simulate::{self, Shape};

/// The demo mesh's seed: the same names, IPs and traffic on every run.
pub const DEMO_SEED: u64 = 42;

/// Every kind some component reads: the index they share holds them all.
const KINDS: &[Kind] = &[
    Kind::Pod,
    Kind::ReplicaSet,
    Kind::Service,
    Kind::Endpoints,
    Kind::EndpointSlice,
];

/// Every listener of `conduit run` binds loopback unless its flag says
/// otherwise (`--api-addr=0.0.0.0:8085`, or `:8085` for every interface):
/// the public API and tap are unauthenticated, so the all-in-one does not
/// offer them to the network by default.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Generate a cluster and drive it with simulated proxies.
    #[arg(long, conflicts_with_all = ["cluster", "kubeconfig"])]
    pub demo: bool,
    #[command(flatten)]
    pub metadata: MetadataArgs,
    /// Telemetry gRPC address (the proxies' Report).
    #[arg(long, default_value = "127.0.0.1:8087")]
    pub telemetry_addr: ListenAddr,
    /// Telemetry admin address (/metrics, /ping, /ready).
    #[arg(long, default_value = "127.0.0.1:9997")]
    pub metrics_addr: ListenAddr,
    /// public-api HTTP address (the CLI's and the dashboard's API).
    #[arg(long, default_value = "127.0.0.1:8085")]
    pub api_addr: ListenAddr,
    /// public-api admin address.
    #[arg(long, default_value = "127.0.0.1:9995")]
    pub api_metrics_addr: ListenAddr,
    /// Tap gRPC address (public-api's Tap).
    #[arg(long, default_value = "127.0.0.1:8088")]
    pub tap_addr: ListenAddr,
    /// Tap admin address.
    #[arg(long, default_value = "127.0.0.1:9998")]
    pub tap_metrics_addr: ListenAddr,
    /// Destination gRPC address (the proxies' Get, through proxy-api).
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub destination_addr: ListenAddr,
    /// Destination admin address.
    #[arg(long, default_value = "127.0.0.1:9999")]
    pub destination_metrics_addr: ListenAddr,
    /// proxy-api gRPC address (the proxies' one address).
    #[arg(long, default_value = "127.0.0.1:8086")]
    pub proxy_api_addr: ListenAddr,
    /// proxy-api admin address.
    #[arg(long, default_value = "127.0.0.1:9996")]
    pub proxy_api_metrics_addr: ListenAddr,
    /// Web dashboard HTTP address.
    #[arg(long, default_value = "127.0.0.1:8084")]
    pub web_addr: ListenAddr,
    /// Web dashboard admin address.
    #[arg(long, default_value = "127.0.0.1:9994")]
    pub web_metrics_addr: ListenAddr,
    /// The port the proxies serve Observe on (the demo's simulated ones
    /// too; 0 picks a free one for them).
    #[arg(long, default_value_t = crate::tap::DEFAULT_TAP_PORT)]
    pub tap_port: u16,
    /// Prometheus for Stat (the embedded store otherwise).
    #[arg(long)]
    pub prometheus_url: Option<String>,
    /// Route templates per deployment for telemetry (its `-routes FILE`).
    #[arg(long, value_name = "FILE")]
    pub routes: Option<std::path::PathBuf>,
    /// What telemetry exports: `pods`, `deployments` or `both` (its
    /// `-export`).
    #[arg(long, default_value = "pods")]
    pub export: crate::ingest::Export,
    /// Reports per second from the demo's simulated proxies (all of them;
    /// each report carries the traffic since that pod's last one).
    #[arg(long, default_value_t = 20.0)]
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

/// `127.0.0.1:<port of addr>`: how one component dials another here.
fn local(addr: SocketAddr) -> String {
    format!("127.0.0.1:{}", addr.port())
}

/// A free port on the demo's first pod address, for the simulated taps.
async fn free_tap_port() -> anyhow::Result<u16> {
    let ip = simulate::tap::loopback_pod_ip(0);
    let probe = tokio::net::TcpListener::bind((ip, 0))
        .await
        .with_context(|| format!("finding a free port on {ip}"))?;
    Ok(probe.local_addr()?.port())
}

impl Args {
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let tap_port = match (self.demo, self.tap_port) {
            (true, 0) => free_tap_port().await?,
            (_, port) => port,
        };
        let index = Arc::new(Index::new());
        let mut tasks: Vec<(&str, JoinHandle<anyhow::Result<()>>)> = Vec::new();
        let source = if self.demo {
            let fleet = simulate::tap::on_loopback(demo_fleet());
            cluster_file::apply(simulate::cluster_objects(&fleet), &index);
            None
        } else {
            Some(
                self.metadata
                    .open(&index, KINDS)
                    .await
                    .context("cluster metadata")?,
            )
        };

        // Each component's flags as values: these set, the rest at the
        // defaults its own command line has.
        let telemetry = crate::telemetry::Args {
            addr: self.telemetry_addr,
            metrics_addr: self.metrics_addr,
            prometheus_url: self.prometheus_url.clone(),
            routes: self.routes.clone(),
            export: self.export,
            ..Default::default()
        };
        let telemetry = telemetry.bind_with_index(index.clone()).await?;
        let tap = crate::tap::Args {
            addr: self.tap_addr,
            metrics_addr: self.tap_metrics_addr,
            tap_port,
            ..Default::default()
        };
        let tap = tap.bind_with_index(index.clone()).await?;
        let destination = crate::destination::Args {
            addr: self.destination_addr,
            metrics_addr: self.destination_metrics_addr,
            ..Default::default()
        };
        let destination = destination.bind_with_index(index.clone()).await?;
        let proxy_api = crate::proxy_api::Args {
            addr: self.proxy_api_addr,
            metrics_addr: self.proxy_api_metrics_addr,
            destination_addr: local(destination.grpc_addr()),
            telemetry_addr: local(telemetry.grpc_addr()),
        };
        // One process: the proxies' reports go straight to the ingester.
        let proxy_api = proxy_api
            .bind()
            .await?
            .with_local_reports(telemetry.report_handler());
        let api = crate::public_api::Args {
            addr: self.api_addr,
            metrics_addr: self.api_metrics_addr,
            telemetry_addr: local(telemetry.grpc_addr()),
            tap_addr: local(tap.grpc_addr()),
        };
        // One process: public-api calls telemetry and tap in memory.
        let api = api.bind().await?.with_upstreams(
            crate::public_api::local_upstream(telemetry.local_routes()),
            crate::public_api::local_upstream(tap.local_routes(shutdown.clone())),
        );
        let web = crate::web::Args {
            addr: self.web_addr,
            metrics_addr: self.web_metrics_addr,
            api_addr: local(api.http_addr()),
            ..Default::default()
        };
        let web = web.bind().await?;

        let reports_to = proxy_api.grpc_addr();
        say(format_args!(
            "telemetry: gRPC on {}, metrics on http://{}/metrics",
            telemetry.grpc_addr(),
            telemetry.admin_addr()
        ));
        say(format_args!(
            "tap: gRPC on {}, proxies' tap port {tap_port}",
            tap.grpc_addr()
        ));
        say(format_args!(
            "destination: gRPC on {}; proxy-api: gRPC on {}",
            destination.grpc_addr(),
            proxy_api.grpc_addr()
        ));
        say(format_args!(
            "public-api: http://{}/api/v1/",
            api.http_addr()
        ));
        say(format_args!("web: http://{}/", local(web.http_addr())));
        if let Some(source) = source {
            // Every component reads the one index; the watchers feed it.
            let watchers = source.start(index.clone(), KINDS, shutdown.clone());
            tasks.push((
                "metadata watchers",
                tokio::spawn(async move {
                    futures::future::join_all(watchers).await;
                    Ok(())
                }),
            ));
        }
        tasks.push(("telemetry", tokio::spawn(telemetry.serve(shutdown.clone()))));
        tasks.push(("tap", tokio::spawn(tap.serve(shutdown.clone()))));
        tasks.push((
            "destination",
            tokio::spawn(destination.serve(shutdown.clone())),
        ));
        tasks.push(("proxy-api", tokio::spawn(proxy_api.serve(shutdown.clone()))));
        tasks.push(("public-api", tokio::spawn(api.serve(shutdown.clone()))));
        tasks.push(("web", tokio::spawn(web.serve(shutdown.clone()))));
        if self.demo {
            self.start_demo(reports_to, tap_port, &shutdown);
        }
        for (name, task) in tasks {
            task.await
                .with_context(|| format!("{name} task"))?
                .with_context(|| name.to_string())?;
        }
        Ok(())
    }

    /// The demo's simulated proxies: reports to proxy-api, taps on each
    /// pod's loopback address.
    fn start_demo(&self, proxy_api: SocketAddr, tap_port: u16, shutdown: &Shutdown) {
        let fleet = demo_fleet();
        let sim = simulate::Args {
            addr: local(proxy_api),
            pods: fleet.pods.len(),
            deployments: Some(fleet.deployments.len()),
            namespace: String::new(),
            first_pod: 0,
            rate: Some(self.demo_rate),
            duration: Duration::from_secs(365 * 24 * 3600),
            reports: None,
            shape: Shape::Medium,
            cluster_out: None,
            seed: DEMO_SEED,
            concurrency: None,
            connections: Some(1),
            json: false,
            tap_port: Some(tap_port),
            demo_mesh: true,
            call_graph: false,
            metrics_addr: None,
        };
        let mut namespaces: Vec<&str> = Vec::new();
        for d in &fleet.deployments {
            if !namespaces.contains(&d.namespace.as_str()) {
                namespaces.push(&d.namespace);
            }
        }
        say(format_args!(
            "demo: {} simulated proxies of {} deployments in namespaces {} report {} times a second; try: conduit stat deployments, conduit tap deploy {}/{}",
            fleet.pods.len(),
            fleet.deployments.len(),
            namespaces.join(", "),
            self.demo_rate,
            fleet.deployments[0].namespace,
            fleet.deployments[0].name,
        ));
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(error) = sim.run(shutdown).await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "the demo's simulated proxies stopped"
                );
            }
        });
    }
}

/// The demo's cluster, as the simulated proxies see it.
fn demo_fleet() -> simulate::Fleet {
    simulate::fleet::demo_fleet(DEMO_SEED)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    /// `conduit run`'s flags alone, parsed from argv.
    #[derive(clap::Parser)]
    struct Component<T: clap::Args> {
        #[command(flatten)]
        args: T,
    }

    #[test]
    fn every_listener_binds_loopback_unless_told_otherwise() {
        let parsed = Component::<Args>::try_parse_from(["conduit"]).unwrap().args;
        let listeners = [
            parsed.telemetry_addr,
            parsed.metrics_addr,
            parsed.api_addr,
            parsed.api_metrics_addr,
            parsed.tap_addr,
            parsed.tap_metrics_addr,
            parsed.destination_addr,
            parsed.destination_metrics_addr,
            parsed.proxy_api_addr,
            parsed.proxy_api_metrics_addr,
            parsed.web_addr,
            parsed.web_metrics_addr,
        ];
        for addr in listeners {
            assert!(addr.0.ip().is_loopback(), "{addr}");
        }
        assert_eq!(parsed.api_addr.0.port(), 8085);
        // A flag opens one to the network.
        let open = Component::<Args>::try_parse_from(["conduit", "--api-addr=:8085"])
            .unwrap()
            .args;
        assert!(open.api_addr.0.ip().is_unspecified());
    }
}
