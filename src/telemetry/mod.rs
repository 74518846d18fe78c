//! The telemetry component: serves the proxies' `Report` and the
//! controller's `ListPods`/`Query` on one gRPC port, and the mesh metrics on
//! its admin port. Owns one [`Ingester`] and reads the cluster [`Index`].

mod forward;
mod service;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tonic::service::Routes;

use crate::admin::{Admin, Ports};
use crate::component::{self, Beside, Bound, Component, Grpc, Server};
use crate::core::units::{parse_bytes, parse_duration};
use crate::core::{ListenAddr, Shutdown};
use crate::grpc::{GrpcMetrics, Guarded};
use crate::grpc::{ReportHandler, ReportServer};
use crate::ingest::{self, DroppedLabels, Health, Ingester};
use crate::k8s::source::MetadataArgs;
use crate::k8s::{Index, Kind};
use crate::proto::codec::{FORWARD_PATH, REPORT_PATH};
use crate::proto::controller::ingest::ingest_server::IngestServer;
use crate::proto::controller::stat::stat_server::StatServer;
use crate::proto::controller::telemetry::telemetry_server::TelemetryServer as ControllerServer;
use crate::remote_write::{self, ExternalLabels, RemoteWrite};
use crate::stat::promql::Prometheus;
use forward::ForwardService;

pub use forward::MAX_FORWARD_STREAMS;
pub use service::{ControllerService, ReportService, StatService};

/// Streams one client may hold open on the telemetry port: far above one
/// report at a time per proxy.
pub const MAX_REPORT_STREAMS_PER_CONNECTION: u32 = 1_000;

/// A forwarded report's frame around the report itself: its sequence
/// number and two field headers (at most 17 bytes), rounded up.
const FORWARD_FRAME_OVERHEAD: usize = 32;

/// Default `-max-report-bytes`: far above the largest report a proxy sends
/// (~100 kB for 100 request scopes), small enough to bound memory per call.
pub const DEFAULT_MAX_REPORT_BYTES: usize = 4 << 20;

const KNOWN_PATHS: &[&str] = &[
    REPORT_PATH,
    FORWARD_PATH,
    "/conduit.controller.telemetry.Telemetry/Query",
    "/conduit.controller.telemetry.Telemetry/ListPods",
    "/conduit.controller.telemetry.Telemetry/ListPodNodes",
    "/conduit.controller.stat.Stat/Stat",
    "/conduit.controller.stat.Stat/Windows",
    "/conduit.controller.stat.Stat/Routes",
    "/conduit.controller.stat.Stat/RouteWindows",
    "/conduit.controller.stat.Stat/Tcp",
];

/// The kinds of cluster metadata this component reads.
const KINDS: &[Kind] = &[Kind::Pod, Kind::ReplicaSet];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// gRPC address for the proxies' Report and the controller's ListPods.
    #[arg(long, default_value = ":8087")]
    pub addr: ListenAddr,
    /// Admin HTTP address: /metrics, /ping, /ready.
    #[arg(long, default_value = ":9997")]
    pub metrics_addr: ListenAddr,
    /// Namespaces left out of ListPods (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub ignore_namespaces: Vec<String>,
    /// Prometheus to run Stat queries against (the embedded store otherwise).
    #[arg(long)]
    pub prometheus_url: Option<String>,
    #[command(flatten)]
    pub metadata: MetadataArgs,
    /// Most live label sets across the mesh metrics; past it, new label sets
    /// fold into the `__overflow__` series.
    #[arg(long, default_value_t = ingest::DEFAULT_MAX_SERIES)]
    pub max_series: usize,
    /// Series that no report touched for this long are dropped.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub series_idle_timeout: Duration,
    /// Largest accepted report; larger ones get RESOURCE_EXHAUSTED.
    #[arg(long, default_value = "4MiB", value_parser = parse_bytes)]
    pub max_report_bytes: usize,
    /// Request labels to leave empty to cut cardinality: `path`, `method`.
    #[arg(long, default_value = "")]
    pub drop_labels: DroppedLabels,
    /// What is exported on /metrics and by remote write: `pods` (every pod
    /// pair), `deployments` (the same metrics with `source` and `target`
    /// empty, summed per deployment pair) or `both`.
    #[arg(long, default_value = "pods")]
    pub export: ingest::Export,
    /// Push the series to this Prometheus remote-write endpoint.
    #[arg(long, value_parser = remote_write::parse_url)]
    pub remote_write_url: Option<http::Uri>,
    /// How often the series are pushed (with -remote-write-url).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub remote_write_interval: Duration,
    /// An HTTP header for every remote-write request, `NAME=VALUE` (repeatable).
    #[arg(long, value_parser = remote_write::parse_header)]
    pub remote_write_header: Vec<(http::HeaderName, http::HeaderValue)>,
    /// A label on every pushed series, `NAME=VALUE` (repeatable): e.g.
    /// `replica=$(POD_NAME)`, so replicas pushing to one receiver never
    /// write the same series.
    #[arg(long, value_name = "NAME=VALUE", value_parser = remote_write::parse_external_label)]
    pub remote_write_external_label: Vec<(String, String)>,
    /// Also expose `response_latency_ms` and `tcp_connection_duration_ms`
    /// as Prometheus native histograms (schema 3): on `/metrics` to a
    /// scraper that asks for the protobuf format, and in remote write. A
    /// text scrape keeps the classic buckets.
    #[arg(long)]
    pub native_histograms: bool,
    /// Route templates per deployment, one `namespace/deployment METHOD
    /// /template` per line (`/books/{id}`, `/static/{file*}`): a request to
    /// a deployment that has templates is counted under the template it
    /// matched (`[DEFAULT]` when none did), in the `path` label and in
    /// `conduit routes`. A bad file is refused at start with its line.
    #[arg(long, value_name = "FILE")]
    pub routes: Option<std::path::PathBuf>,
}

/// Every flag at its default (`conduit run` sets the rest as values).
impl Default for Args {
    fn default() -> Self {
        crate::core::flag_defaults()
    }
}

/// The component's state once its sockets are bound.
pub struct Telemetry {
    ingester: Arc<Ingester>,
    /// Applies each report, whichever way it arrives.
    report: Arc<ReportService>,
    index: Arc<Index>,
    grpc: GrpcMetrics,
    max_report_bytes: usize,
    ignore_namespaces: Arc<[String]>,
    remote_write: Option<RemoteWrite>,
    prometheus: Option<Prometheus>,
}

impl Args {
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.bind().await?.serve(shutdown).await
    }

    /// Loads cluster metadata and binds both ports.
    pub async fn bind(self) -> anyhow::Result<Bound<Telemetry>> {
        let (index, watchers) = component::open_index(&self.metadata, KINDS).await?;
        Ok(self.bind_with_index(index).await?.watching(watchers))
    }

    /// Binds both ports around an index fed by the caller.
    pub async fn bind_with_index(self, index: Arc<Index>) -> anyhow::Result<Bound<Telemetry>> {
        let external_labels = ExternalLabels::new(self.remote_write_external_label)
            .context("-remote-write-external-label")?;
        if self.remote_write_url.is_none() && !external_labels.is_empty() {
            tracing::debug!("-remote-write-external-label has no effect without -remote-write-url");
        }
        let routes = match &self.routes {
            Some(path) => {
                let routes = ingest::routes::Routes::load(path).context("-routes")?;
                tracing::info!(?routes, "route templates loaded");
                Some(Arc::new(routes))
            }
            None => None,
        };
        let registry = Admin::registry();
        let health = Health::register(&registry)?;
        let grpc = GrpcMetrics::register(
            &registry,
            KNOWN_PATHS,
            vec![Guarded {
                path: REPORT_PATH,
                size: health.report_bytes.clone(),
                too_large: health.rejected_too_large.clone(),
            }],
        )?;
        let ingester = Arc::new(Ingester::new(
            ingest::Config {
                max_series: self.max_series,
                idle_timeout: self.series_idle_timeout,
                dropped: self.drop_labels,
                embedded_stat: self.prometheus_url.is_none(),
                export: self.export,
                stale_markers: self.remote_write_url.is_some(),
                native_histograms: self.native_histograms,
                routes,
            },
            health,
        ));
        let ports = Ports::bind(&self.addr, &self.metrics_addr).await?;
        let remote_write = self
            .remote_write_url
            .map(|url| {
                let mut config = remote_write::Config::new(
                    url,
                    self.remote_write_interval,
                    self.remote_write_header,
                );
                config.external_labels = external_labels;
                RemoteWrite::new(config, &registry)
            })
            .transpose()
            .context("-remote-write-url")?;
        let ready_index = index.clone();
        let admin = Admin {
            registry,
            ingester: Some(ingester.clone()),
            ready: Arc::new(move || ready_index.is_synced(KINDS)),
        };
        let prometheus = match &self.prometheus_url {
            Some(url) => {
                tracing::info!(%url, "Stat and Query are answered by Prometheus");
                Some(Prometheus::new(url)?)
            }
            None => {
                tracing::info!("Stat is answered by the embedded store (no -prometheus-url)");
                None
            }
        };
        let report = Arc::new(ReportService::new(
            ingester.clone(),
            index.clone(),
            self.max_report_bytes,
        ));
        let telemetry = Telemetry {
            report,
            ingester,
            index,
            grpc,
            max_report_bytes: self.max_report_bytes,
            ignore_namespaces: self.ignore_namespaces.into(),
            prometheus,
            remote_write,
        };
        Ok(Bound::new(ports, admin, telemetry))
    }
}

impl Bound<Telemetry> {
    pub fn grpc_addr(&self) -> std::net::SocketAddr {
        self.serve_addr()
    }

    pub fn ingester(&self) -> &Arc<Ingester> {
        &self.component().ingester
    }

    pub fn index(&self) -> &Arc<Index> {
        &self.component().index
    }

    /// Applies reports in this process as the proxies' `Report` does
    /// (`conduit run`'s proxy-api hands them over here, no socket between).
    pub fn report_handler(&self) -> Arc<dyn ReportHandler> {
        self.component().report.clone()
    }

    /// The services public-api calls, routed as the gRPC server routes
    /// them, to be called in this process (`conduit run`).
    pub fn local_routes(&self) -> Routes {
        let (controller, stat) = self.component().controller_services();
        Routes::new(controller).add_service(stat)
    }
}

impl Telemetry {
    /// The services public-api calls: ListPods and Query, and Stat.
    fn controller_services(
        &self,
    ) -> (ControllerServer<ControllerService>, StatServer<StatService>) {
        let controller = ControllerServer::new(ControllerService::new(
            self.ingester.clone(),
            self.index.clone(),
            self.ignore_namespaces.clone(),
            self.prometheus.clone(),
        ));
        let stat = StatServer::new(StatService::new(
            self.ingester.clone(),
            self.prometheus.clone(),
        ));
        (controller, stat)
    }
}

impl Component for Telemetry {
    fn span(&self, ports: &Ports) -> tracing::Span {
        tracing::info_span!("telemetry", grpc = %ports.serve_addr(), admin = %ports.admin_addr())
    }

    /// Expires idle series beside the servers; after they drained (or the
    /// grace cut them), the last push includes every report that was
    /// answered OK, bounded by remote_write::FLUSH_TIMEOUT, which
    /// core::DRAIN_GRACE leaves room for.
    fn start(self, shutdown: &Shutdown) -> (Server, Beside) {
        let (controller, stat) = self.controller_services();
        let sweeper = tokio::spawn(sweep(self.ingester.clone(), shutdown.clone()));
        let pusher = self.remote_write.map(|rw| rw.start(self.ingester.clone()));

        let health = self.ingester.health();
        let budget = crate::grpc::ReportBudget::new(
            self.max_report_bytes,
            health.rejected_busy.clone(),
            health.rejected_stalled.clone(),
        );
        let report = ReportServer::new(self.report.clone(), self.max_report_bytes);
        let forwarded = IngestServer::new(ForwardService::new(
            self.report.clone(),
            health.clone(),
            shutdown.clone(),
        ))
        .max_decoding_message_size(self.max_report_bytes + FORWARD_FRAME_OVERHEAD);
        let routes = Routes::new(report)
            .add_service(forwarded)
            .add_service(controller)
            .add_service(stat);
        let grpc = Grpc::new(Some(MAX_REPORT_STREAMS_PER_CONNECTION), self.grpc, routes)
            .with_budget(budget);
        let mut beside = Beside::nothing().task(sweeper);
        if let Some(pusher) = pusher {
            beside = beside.then(pusher.shutdown());
        }
        (grpc.into(), beside)
    }
}

async fn sweep(ingester: Arc<Ingester>, shutdown: Shutdown) {
    let mut every = tokio::time::interval(ingester.sweep_interval());
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.clone().signaled() => return,
        }
        let evicted = ingester.evict_idle();
        if evicted > 0 {
            tracing::debug!(evicted, "idle series dropped");
        }
    }
}
