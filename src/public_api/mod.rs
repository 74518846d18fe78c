//! The public-api component: the HTTP API the CLI and the dashboard speak
//! (`spec/wire.md`, "public-api over HTTP"; the contract itself is in
//! [`crate::proto::http_api`]).
//!
//! `Stat` and `ListPods` are forwarded over gRPC to the telemetry component
//! (`conduit.controller.stat.Stat/Stat`, this project's internal call that
//! telemetry answers from Prometheus or from its embedded store, and
//! `conduit.controller.telemetry.Telemetry/ListPods`), or, when
//! `-telemetry-addr` lists several replicas, asked of each and merged
//! ([`replicas`]); `Tap` to the tap
//! component (`conduit.controller.tap.Tap/Tap`), streamed back one frame per
//! event; `Version` is answered here. Upstream channels are lazy: a
//! component that is down fails the calls that need it (503), not the start
//! of public-api.

mod handler;
pub mod replicas;
pub mod summary;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tonic::transport::{Channel, Endpoint};
use tracing::Instrument as _;

use crate::admin::{Admin, Ports};
use crate::component::{Beside, Bound, Component, Http, Server};
use crate::core::addr::client_uri;
use crate::core::{ListenAddr, Shutdown};
use crate::proto::public::VersionInfo;
use replicas::Replica;

/// How long a connection to telemetry or tap may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a unary upstream call (and a Tap until its response headers) may
/// take: above telemetry's 30 s Prometheus query timeout, so Prometheus' own
/// error comes back rather than ours.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(35);

/// How often `/ready` re-checks that the telemetry address accepts
/// connections.
const READY_PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// How long one readiness probe waits for a TCP connection.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// HTTP address of the API (`/api/v1/...`).
    #[arg(long, default_value = ":8085")]
    pub addr: ListenAddr,
    /// Admin HTTP address: /metrics, /ping, /ready.
    #[arg(long, default_value = ":9995")]
    pub metrics_addr: ListenAddr,
    /// The telemetry component's gRPC address (Stat, ListPods), or every
    /// replica's, comma-separated: their answers are merged.
    #[arg(long, default_value = "127.0.0.1:8087")]
    pub telemetry_addr: String,
    /// The tap component's gRPC address (Tap).
    #[arg(long, default_value = "127.0.0.1:8088")]
    pub tap_addr: String,
}

/// The component's state once its sockets are bound.
pub struct PublicApi {
    metrics: handler::Metrics,
    telemetry: Vec<Replica>,
    tap: Upstream,
    tap_addr: String,
    telemetry_reachable: Arc<AtomicBool>,
    /// `-telemetry-addr` as given, for the span.
    telemetry_addr: String,
}

/// A component public-api calls: a gRPC channel to another process, or,
/// when `conduit run` holds both in one process, the component's own
/// service called in memory (same messages, no socket).
pub type Upstream = tower::util::BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    UpstreamError,
>;

/// A failure to reach an upstream (a concrete type: tonic's clients need
/// one to convert into their error in the handlers' `Send` futures).
#[derive(Debug)]
pub struct UpstreamError(tonic::transport::Error);

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

fn channel_upstream(channel: Channel) -> Upstream {
    Upstream::new(tower::ServiceExt::map_err(channel, UpstreamError))
}

/// `service` (a component's gRPC routes) as an in-process [`Upstream`].
pub fn local_upstream<S>(service: S) -> Upstream
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    Upstream::new(tower::ServiceExt::map_err(
        service,
        |never: std::convert::Infallible| match never {},
    ))
}

/// This build's `VersionInfo`: the release (`v` + the crate version), the build time and, in
/// `goVersion` (the wire's name), the rustc that built it.
pub fn version_info() -> VersionInfo {
    VersionInfo {
        go_version: env!("CONDUIT_RUSTC_VERSION").to_string(),
        build_date: env!("CONDUIT_BUILD_DATE").to_string(),
        release_version: crate::core::RELEASE_VERSION.to_string(),
    }
}

fn lazy_channel(addr: &str, flag: &str) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(client_uri(addr))
        .with_context(|| format!("{flag} {addr:?} is not a HOST:PORT address"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(UPSTREAM_TIMEOUT)
        .tcp_nodelay(true);
    Ok(endpoint.connect_lazy())
}

impl Args {
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.bind().await?.serve(shutdown).await
    }

    /// Binds both ports and prepares the (lazy) upstream channels.
    pub async fn bind(self) -> anyhow::Result<Bound<PublicApi>> {
        let registry = Admin::registry();
        let metrics = handler::Metrics::register(&registry)?;
        let telemetry = replicas::parse_addrs(&self.telemetry_addr)?
            .into_iter()
            .map(|addr| {
                let upstream = channel_upstream(lazy_channel(&addr, "-telemetry-addr")?);
                Ok::<_, anyhow::Error>(Replica { addr, upstream })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let tap = channel_upstream(lazy_channel(&self.tap_addr, "-tap-addr")?);
        let ports = Ports::bind(&self.addr, &self.metrics_addr).await?;
        let telemetry_reachable = Arc::new(AtomicBool::new(false));
        let ready = telemetry_reachable.clone();
        let admin = Admin {
            registry,
            ingester: None,
            // Listening is given (both ports are bound before anything is
            // served); the rest is the telemetry address answering.
            ready: Arc::new(move || ready.load(Ordering::Relaxed)),
        };
        let api = PublicApi {
            metrics,
            telemetry,
            tap,
            tap_addr: self.tap_addr,
            telemetry_reachable,
            telemetry_addr: self.telemetry_addr,
        };
        Ok(Bound::new(ports, admin, api))
    }
}

impl Bound<PublicApi> {
    /// Calls telemetry and tap in this process instead of over their
    /// addresses (which still name them in logs and errors, and which the
    /// readiness probe still checks). The one telemetry in this process is
    /// the only replica: its address is the first listed.
    #[must_use]
    pub fn with_upstreams(mut self, telemetry: Upstream, tap: Upstream) -> Self {
        let api = self.component_mut();
        api.telemetry.truncate(1);
        if let Some(replica) = api.telemetry.first_mut() {
            replica.upstream = telemetry;
        }
        api.tap = tap;
        self
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.serve_addr()
    }
}

impl Component for PublicApi {
    fn span(&self, ports: &Ports) -> tracing::Span {
        tracing::info_span!(
            "public_api",
            http = %ports.serve_addr(),
            admin = %ports.admin_addr(),
            telemetry = %self.telemetry_addr,
        )
    }

    /// Probes the telemetry addresses beside the server; open Tap streams
    /// end when the signal fires.
    fn start(self, shutdown: &Shutdown) -> (Server, Beside) {
        let probe = tokio::spawn(
            probe_telemetry(
                self.telemetry.iter().map(|r| r.addr.clone()).collect(),
                self.telemetry_reachable.clone(),
                shutdown.clone(),
            )
            .in_current_span(),
        );
        let api = handler::Api {
            telemetry: replicas::Telemetry::new(self.telemetry),
            tap: self.tap,
            tap_addr: self.tap_addr,
            metrics: self.metrics,
            shutdown: shutdown.clone(),
        };
        // Small framed responses and Tap events go out at once.
        let http = Http::new("API server", handler::router(Arc::new(api))).nodelay();
        (http.into(), Beside::nothing().task(probe))
    }
}

/// Keeps `reachable` up to date with whether a telemetry address accepts
/// TCP connections (DESIGN §11: public-api is ready once it listens and
/// its telemetry address is reachable; with several replicas, once any is,
/// as the calls then answer, partially if need be).
async fn probe_telemetry(addrs: Vec<String>, reachable: Arc<AtomicBool>, shutdown: Shutdown) {
    let targets: Vec<(String, String)> = addrs
        .into_iter()
        .map(|addr| {
            let uri = client_uri(&addr);
            let host_port = uri
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/')
                .to_string();
            (addr, host_port)
        })
        .collect();
    let mut up = vec![false; targets.len()];
    let mut every = tokio::time::interval(READY_PROBE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.clone().signaled() => return,
        }
        let probes = targets.iter().map(|(_, host_port)| async move {
            matches!(
                tokio::time::timeout(
                    READY_PROBE_TIMEOUT,
                    tokio::net::TcpStream::connect(host_port)
                )
                .await,
                Ok(Ok(_))
            )
        });
        let now = futures::future::join_all(probes).await;
        if targets.len() > 1 {
            for (((addr, _), was), &is) in targets.iter().zip(&mut up).zip(&now) {
                if *was != is {
                    if is {
                        tracing::info!(replica = %addr, "telemetry replica reachable");
                    } else {
                        tracing::warn!(replica = %addr, "telemetry replica unreachable");
                    }
                }
                *was = is;
            }
        }
        let ok = now.contains(&true);
        if reachable.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                tracing::info!("telemetry reachable");
            } else {
                tracing::warn!("telemetry unreachable: not ready");
            }
        }
    }
}
