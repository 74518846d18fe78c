//! The destination component: `conduit.proxy.destination.Destination/Get`
//! for `k8s` destinations. Service port → the port of the same name in its
//! EndpointSlices or Endpoints → ready addresses, streamed as a first `add`, then
//! `add`/`remove` diffs on every index publication, and an empty `add` as a
//! heartbeat. Reads the cluster [`Index`]; serves its own metrics on the
//! admin port.

mod metrics;
pub mod path;
mod resolve;
mod service;

use std::sync::Arc;
use std::time::Duration;

use tonic::service::Routes;

use crate::admin::{Admin, Ports};
use crate::component::{self, Beside, Bound, Component, Grpc, Server};
use crate::core::units::parse_duration;
use crate::core::{ListenAddr, Shutdown};
use crate::grpc::GrpcMetrics;
use crate::k8s::source::MetadataArgs;
use crate::k8s::{Index, Kind};
use crate::proto::proxy::destination::destination_server::DestinationServer;

pub use metrics::Metrics;
pub use resolve::resolve;
pub use service::DestinationService;

/// The gRPC path of Get.
pub const GET_PATH: &str = "/conduit.proxy.destination.Destination/Get";

/// Streams one connection may hold open: a proxy follows one `Get` per
/// service it talks to over a single connection, more than hyper's default
/// of 200 in a large mesh (the original's Go server had no limit).
const MAX_CONCURRENT_STREAMS: u32 = 10_000;

/// The kinds of cluster metadata this component reads (the watcher picks
/// EndpointSlices or Endpoints, whichever the server offers).
const KINDS: &[Kind] = &[Kind::Service, Kind::Endpoints, Kind::EndpointSlice];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// gRPC address for the proxies' Get.
    #[arg(long, default_value = ":8089")]
    pub addr: ListenAddr,
    /// Admin HTTP address: /metrics, /ping, /ready.
    #[arg(long, default_value = ":9999")]
    pub metrics_addr: ListenAddr,
    #[command(flatten)]
    pub metadata: MetadataArgs,
    /// The cluster's DNS domain, accepted as `svc.ns.svc.<domain>`.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// How often every stream gets an empty `add`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub heartbeat: Duration,
}

/// Every flag at its default (`conduit run` sets the rest as values).
impl Default for Args {
    fn default() -> Self {
        crate::core::flag_defaults()
    }
}

/// The component's state once its sockets are bound: what it needs to
/// build its service when it serves.
pub struct Destination {
    index: Arc<Index>,
    grpc: GrpcMetrics,
    metrics: Metrics,
    cluster_domain: String,
    heartbeat: Duration,
}

impl Args {
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.bind().await?.serve(shutdown).await
    }

    /// Opens the cluster metadata and binds both ports.
    pub async fn bind(self) -> anyhow::Result<Bound<Destination>> {
        let (index, watchers) = component::open_index(&self.metadata, KINDS).await?;
        Ok(self.bind_with_index(index).await?.watching(watchers))
    }

    /// Binds both ports around an index fed by the caller.
    pub async fn bind_with_index(self, index: Arc<Index>) -> anyhow::Result<Bound<Destination>> {
        anyhow::ensure!(!self.heartbeat.is_zero(), "-heartbeat must be above zero");
        let registry = Admin::registry();
        let grpc = GrpcMetrics::register(&registry, &[GET_PATH], Vec::new())?;
        let metrics = Metrics::register(&registry)?;
        let ports = Ports::bind(&self.addr, &self.metrics_addr).await?;
        let ready_index = index.clone();
        let admin = Admin {
            registry,
            ingester: None,
            ready: Arc::new(move || {
                ready_index.is_synced(&[Kind::Service])
                    && (ready_index.is_synced(&[Kind::Endpoints])
                        || ready_index.is_synced(&[Kind::EndpointSlice]))
            }),
        };
        let destination = Destination {
            index,
            grpc,
            metrics,
            cluster_domain: self.cluster_domain,
            heartbeat: self.heartbeat,
        };
        Ok(Bound::new(ports, admin, destination))
    }
}

impl Bound<Destination> {
    pub fn grpc_addr(&self) -> std::net::SocketAddr {
        self.serve_addr()
    }

    pub fn index(&self) -> &Arc<Index> {
        &self.component().index
    }
}

impl Component for Destination {
    fn span(&self, ports: &Ports) -> tracing::Span {
        tracing::info_span!("destination", grpc = %ports.serve_addr(), admin = %ports.admin_addr())
    }

    /// Every stream ends when the signal fires.
    fn start(self, shutdown: &Shutdown) -> (Server, Beside) {
        let service = DestinationService::new(
            self.index,
            &self.cluster_domain,
            self.heartbeat,
            self.metrics,
            shutdown.clone(),
        );
        let routes = Routes::new(DestinationServer::new(service));
        let grpc = Grpc::new(Some(MAX_CONCURRENT_STREAMS), self.grpc, routes);
        (grpc.into(), Beside::nothing())
    }
}
