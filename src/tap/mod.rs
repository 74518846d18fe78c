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

use anyhow::Context as _;
use tracing::Instrument as _;

use crate::admin::{Admin, Ports};
use crate::core::{ListenAddr, Shutdown};
use crate::grpc::GrpcMetrics;
use crate::k8s::source::{MetadataArgs, Source};
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

/// The component with its sockets bound, ready to serve.
pub struct Tap {
    index: Arc<Index>,
    admin: Admin,
    grpc: GrpcMetrics,
    metrics: Metrics,
    ports: Ports,
    tap_port: u16,
    source: Source,
}

impl Args {
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.bind().await?.serve(shutdown).await
    }

    /// Opens the cluster metadata and binds both ports.
    pub async fn bind(self) -> anyhow::Result<Tap> {
        let (index, source) = self
            .metadata
            .open_index(KINDS)
            .await
            .context("cluster metadata")?;
        let mut bound = self.bind_with_index(index).await?;
        bound.source = source;
        Ok(bound)
    }

    /// Binds both ports around an index fed by the caller.
    pub async fn bind_with_index(self, index: Arc<Index>) -> anyhow::Result<Tap> {
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
        Ok(Tap {
            index,
            admin,
            grpc,
            metrics,
            ports,
            tap_port: self.tap_port,
            source: Source::Static,
        })
    }
}

impl Tap {
    pub fn grpc_addr(&self) -> std::net::SocketAddr {
        self.ports.serve_addr()
    }

    pub fn admin_addr(&self) -> std::net::SocketAddr {
        self.ports.admin_addr()
    }

    /// The Tap service, routed as the gRPC server routes it, to be called
    /// in this process (`conduit run`); its streams end at `shutdown`.
    pub fn local_routes(&self, shutdown: Shutdown) -> tonic::service::Routes {
        tonic::service::Routes::new(TapServer::new(self.service(shutdown)))
    }

    fn service(&self, shutdown: Shutdown) -> TapService {
        TapService::new(
            self.index.clone(),
            self.tap_port,
            self.metrics.clone(),
            shutdown,
        )
    }

    /// Serves gRPC and admin HTTP until shutdown; every stream ends then.
    pub async fn serve(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let span = tracing::info_span!("tap", grpc = %self.grpc_addr(), admin = %self.admin_addr());
        self.serve_inner(shutdown).instrument(span).await
    }

    async fn serve_inner(self, shutdown: Shutdown) -> anyhow::Result<()> {
        tracing::info!(tap_port = self.tap_port, "serving");
        let service = self.service(shutdown.clone());
        let _watchers = self
            .source
            .start(self.index.clone(), KINDS, shutdown.clone());
        let grpc = crate::grpc::server(None)
            .layer(self.grpc)
            .add_service(TapServer::new(service))
            .serve_with_incoming_shutdown(
                crate::grpc::incoming(self.ports.serve),
                shutdown.clone().signaled(),
            );
        self.admin
            .serve_beside(self.ports.admin, "gRPC server", grpc, shutdown)
            .await
    }
}
