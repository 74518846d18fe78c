//! The proxy-api component: the proxies' single control-plane address. It
//! forwards `Telemetry.Report` to the telemetry component, as undecoded
//! bytes over a few long-lived streams ([`forward`]), and `Destination.Get`
//! (server stream) to the destination component, spread over a bounded
//! number of connections ([`gets`]), passing statuses back unchanged, the
//! caller's deadline on, and dropping the upstream stream when the proxy
//! goes away. Upstreams are lazy channels: while one is down
//! its calls get UNAVAILABLE, and the next call after it returns
//! reconnects. In `conduit run` reports go to the ingester of the same
//! process instead ([`ProxyApi::with_local_reports`]).

mod forward;
mod gets;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::admin::{Admin, Ports};
use crate::component::{Beside, Bound, Component, Grpc, Server};
use crate::core::addr::client_uri;
use crate::core::{ListenAddr, Shutdown};
use crate::grpc::{GrpcMetrics, ReportHandler, ReportServer};
use crate::proto::codec::REPORT_PATH;
use crate::proto::common::Destination;
use crate::proto::proxy::destination::Update;
use crate::proto::proxy::destination::destination_server::{self, DestinationServer};
pub use forward::{
    FORWARD_LANES_MAX, Forwarder, IN_FLIGHT_WAIT, MAX_IN_FLIGHT_PER_LANE, UNARY_RECHECK,
};
pub use gets::{GET_CONNECTIONS_MAX, GET_STREAMS_PER_CONNECTION};
use gets::{GetLanes, GetMetrics};

const GET_PATH: &str = "/conduit.proxy.destination.Destination/Get";

/// Largest report received: above telemetry's default limit (4 MiB), so
/// the telemetry component's own `-max-report-bytes` decides (announced on
/// the forwarding stream) and its RESOURCE_EXHAUSTED reaches the proxy.
const MAX_FORWARD_BYTES: usize = 64 << 20;

/// Streams one connection may hold open: a proxy follows one `Get` per
/// service it talks to over a single connection, more than hyper's default
/// of 200 in a large mesh (the original's Go server had no limit).
const MAX_CONCURRENT_STREAMS: u32 = 10_000;

/// Connecting to an upstream that does not answer fails after this long
/// (UNAVAILABLE) rather than waiting on the caller's deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// gRPC address for the proxies' Report and Get.
    #[arg(long, default_value = ":8086")]
    pub addr: ListenAddr,
    /// Admin HTTP address: /metrics, /ping, /ready.
    #[arg(long, default_value = ":9996")]
    pub metrics_addr: ListenAddr,
    /// The destination component (Get is forwarded there).
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub destination_addr: String,
    /// The telemetry component (Report is forwarded there).
    #[arg(long, default_value = "127.0.0.1:8087")]
    pub telemetry_addr: String,
}

/// The component's state once its sockets are bound.
pub struct ProxyApi {
    grpc: GrpcMetrics,
    budget: crate::grpc::ReportBudget,
    /// Where reports go: telemetry, forwarded; or this process's ingester.
    reports: Arc<dyn ReportHandler>,
    gets: Arc<GetLanes>,
}

fn endpoint(flag: &str, addr: &str) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(client_uri(addr))
        .with_context(|| format!("{flag} {addr:?}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true))
}

fn lazy_channel(flag: &str, addr: &str) -> anyhow::Result<Channel> {
    Ok(endpoint(flag, addr)?.connect_lazy())
}

impl Args {
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.bind().await?.serve(shutdown).await
    }

    pub async fn bind(self) -> anyhow::Result<Bound<ProxyApi>> {
        let telemetry = lazy_channel("-telemetry-addr", &self.telemetry_addr)?;
        let destination = endpoint("-destination-addr", &self.destination_addr)?;
        let registry = Admin::registry();
        let gets = Arc::new(GetLanes::new(
            destination,
            GET_STREAMS_PER_CONNECTION,
            GET_CONNECTIONS_MAX,
            GetMetrics::register(&registry)?,
        ));
        let grpc = GrpcMetrics::register(&registry, &[REPORT_PATH, GET_PATH], Vec::new())?;
        let refused = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "conduit_proxy_api_reports_refused_total",
                "Reports refused before they were forwarded, by reason: busy (no room within 1 s among the 64 MiB of reports received at once, or among the reports waiting on telemetry), stalled (a body that took over 10 s), too_large (over telemetry's -max-report-bytes).",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(refused.clone()))?;
        let opened = prometheus::IntCounter::new(
            "conduit_proxy_api_forwarding_streams_opened_total",
            "Streams opened to telemetry to carry reports (each after the last one ended, once telemetry answers again).",
        )?;
        registry.register(Box::new(opened.clone()))?;
        let reports = Forwarder::new(
            telemetry,
            forward::Refusals {
                busy: refused.with_label_values(&["busy"]),
                too_large: refused.with_label_values(&["too_large"]),
            },
            opened,
        );
        let budget = crate::grpc::ReportBudget::new(
            MAX_FORWARD_BYTES,
            refused.with_label_values(&["busy"]),
            refused.with_label_values(&["stalled"]),
        );
        let ports = Ports::bind(&self.addr, &self.metrics_addr).await?;
        // Only forwards: ready once it listens (DESIGN §11 "Readiness").
        let admin = Admin {
            registry,
            ingester: None,
            ready: Arc::new(|| true),
        };
        let proxy_api = ProxyApi {
            grpc,
            budget,
            reports: Arc::new(reports),
            gets,
        };
        Ok(Bound::new(ports, admin, proxy_api))
    }
}

impl Bound<ProxyApi> {
    pub fn grpc_addr(&self) -> std::net::SocketAddr {
        self.serve_addr()
    }

    /// Hands the proxies' reports to `handler` in this process instead of
    /// forwarding them (`conduit run`: the ingester is here).
    #[must_use]
    pub fn with_local_reports(mut self, handler: Arc<dyn ReportHandler>) -> Self {
        self.component_mut().reports = handler;
        self
    }
}

impl Component for ProxyApi {
    fn span(&self, ports: &Ports) -> tracing::Span {
        tracing::info_span!("proxy_api", grpc = %ports.serve_addr(), admin = %ports.admin_addr())
    }

    /// Forwarded `Get` streams end when the signal fires.
    fn start(self, shutdown: &Shutdown) -> (Server, Beside) {
        let forward = Forward {
            gets: self.gets,
            shutdown: shutdown.clone(),
        };
        let report = ReportServer::new(self.reports, MAX_FORWARD_BYTES);
        let routes = Routes::new(report).add_service(DestinationServer::new(forward));
        let grpc =
            Grpc::new(Some(MAX_CONCURRENT_STREAMS), self.grpc, routes).with_budget(self.budget);
        (grpc.into(), Beside::nothing())
    }
}

#[derive(Clone)]
struct Forward {
    gets: Arc<GetLanes>,
    shutdown: Shutdown,
}

fn upstream<T>(incoming: Request<T>) -> Request<T> {
    let timeout = crate::grpc::grpc_timeout(incoming.metadata());
    let mut request = Request::new(incoming.into_inner());
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    request
}

/// An upstream's status as the proxy should see it: the upstream's own
/// statuses unchanged; failing to reach it at all is UNAVAILABLE.
fn upstream_status(which: &'static str) -> impl Fn(Status) -> Status {
    move |status| {
        let unreachable = status.code() == tonic::Code::Unknown
            && std::error::Error::source(&status)
                .is_some_and(|e| e.is::<tonic::transport::Error>());
        if unreachable || status.code() == tonic::Code::Unavailable {
            tracing::debug!(upstream = which, %status, "upstream unavailable");
        }
        if unreachable {
            Status::unavailable(format!("{which} unavailable: {}", status.message()))
        } else {
            status
        }
    }
}

#[tonic::async_trait]
impl destination_server::Destination for Forward {
    type GetStream = futures::stream::BoxStream<'static, Result<Update, Status>>;

    async fn get(
        &self,
        request: Request<Destination>,
    ) -> Result<Response<Self::GetStream>, Status> {
        let (mut client, slot) = self.gets.acquire()?;
        let response = client
            .get(upstream(request))
            .await
            .map_err(upstream_status("destination"))?;
        let stream: Streaming<Update> = response.into_inner();
        // Ends with the drain signal too, so shutdown does not wait on
        // long-lived streams; dropping it cancels the upstream call and
        // gives the stream's place on its connection back.
        let shutdown = self.shutdown.clone().signaled();
        use futures::StreamExt as _;
        let stream = stream.take_until(Box::pin(shutdown)).map(move |update| {
            let _held = &slot;
            update
        });
        Ok(Response::new(stream.boxed()))
    }
}
