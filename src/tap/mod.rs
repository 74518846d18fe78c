//! The tap component: `conduit.controller.tap.Tap/Tap`, live requests from
//! the proxies of a pod or a deployment. The target resolves through the
//! cluster [`Index`] (Pod → ReplicaSet → Deployment) to the IPs of its
//! running pods; each pod's proxy serves `conduit.proxy.tap.Tap/Observe`
//! on `-tap-port`; [`crate::proto::tap_match`] turns the caller's filters into the proxies'
//! `Match`, [`service`] splits the rate and merges the streams. Serves its
//! own metrics on the admin port.

mod metrics;
pub mod service;

use std::sync::Arc;

use tonic::service::Routes;

use crate::admin::{Admin, Ports};
use crate::component::{self, Beside, Bound, Component, Grpc, Server};
use crate::core::{ListenAddr, Shutdown};
use crate::grpc::GrpcMetrics;
use crate::k8s::source::MetadataArgs;
use crate::k8s::{Index, Kind};
use crate::proto::controller::tap::tap_server::TapServer;

pub use metrics::Metrics;
pub use service::TapService;

/// The gRPC path of the controller's Tap.
pub const TAP_PATH: &str = "/conduit.controller.tap.Tap/Tap";

/// The proxies' tap port, as the original proxy listens.
pub const DEFAULT_TAP_PORT: u16 = 4190;

/// The kinds of cluster metadata this component reads: pods and the owners
/// that name their deployment.
const KINDS: &[Kind] = &[Kind::Pod, Kind::ReplicaSet];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// gRPC address for Tap (public-api's `-tap-addr`).
    #[arg(long, default_value = ":8088")]
    pub addr: ListenAddr,
    /// Admin HTTP address: /metrics, /ping, /ready.
    #[arg(long, default_value = ":9998")]
    pub metrics_addr: ListenAddr,
    #[command(flatten)]
    pub metadata: MetadataArgs,
    /// The port every proxy serves Observe on.
    #[arg(long, default_value_t = DEFAULT_TAP_PORT)]
    pub tap_port: u16,
}

/// Every flag at its default (`conduit run` sets the rest as values).
impl Default for Args {
    fn default() -> Self {
        crate::core::flag_defaults()
    }
}

/// The component's state once its sockets are bound.
pub struct Tap {
    index: Arc<Index>,
    grpc: GrpcMetrics,
    metrics: Metrics,
    tap_port: u16,
}

impl Args {
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.bind().await?.serve(shutdown).await
    }

    /// Opens the cluster metadata and binds both ports.
    pub async fn bind(self) -> anyhow::Result<Bound<Tap>> {
        let (index, watchers) = component::open_index(&self.metadata, KINDS).await?;
        Ok(self.bind_with_index(index).await?.watching(watchers))
    }

    /// Binds both ports around an index fed by the caller.
    pub async fn bind_with_index(self, index: Arc<Index>) -> anyhow::Result<Bound<Tap>> {
        anyhow::ensure!(self.tap_port != 0, "-tap-port must be a port, 1-65535");
        let registry = Admin::registry();
        let grpc = GrpcMetrics::register(&registry, &[TAP_PATH], Vec::new())?;
        let metrics = Metrics::register(&registry)?;
        let ports = Ports::bind(&self.addr, &self.metrics_addr).await?;
        let ready_index = index.clone();
        let admin = Admin {
            registry,
            ingester: None,
            ready: Arc::new(move || ready_index.is_synced(KINDS)),
        };
        let tap = Tap {
            index,
            grpc,
            metrics,
            tap_port: self.tap_port,
        };
        Ok(Bound::new(ports, admin, tap))
    }
}

impl Bound<Tap> {
    pub fn grpc_addr(&self) -> std::net::SocketAddr {
        self.serve_addr()
    }

    /// The Tap service, routed as the gRPC server routes it, to be called
    /// in this process (`conduit run`); its streams end at `shutdown`.
    pub fn local_routes(&self, shutdown: Shutdown) -> Routes {
        Routes::new(TapServer::new(self.component().service(shutdown)))
    }
}

impl Tap {
    fn service(&self, shutdown: Shutdown) -> TapService {
        TapService::new(
            self.index.clone(),
            self.tap_port,
            self.metrics.clone(),
            shutdown,
        )
    }
}

impl Component for Tap {
    fn span(&self, ports: &Ports) -> tracing::Span {
        tracing::info_span!("tap", grpc = %ports.serve_addr(), admin = %ports.admin_addr())
    }

    fn announce(&self) {
        tracing::info!(tap_port = self.tap_port, "serving");
    }

    /// Every stream ends when the signal fires.
    fn start(self, shutdown: &Shutdown) -> (Server, Beside) {
        let routes = Routes::new(TapServer::new(self.service(shutdown.clone())));
        (Grpc::new(None, self.grpc, routes).into(), Beside::nothing())
    }
}
