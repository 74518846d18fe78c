//! The proxy-api component: the proxies' single control-plane address. It
//! forwards `Telemetry.Report` (unary) to the telemetry component and
//! `Destination.Get` (server stream) to the destination component,
//! passing statuses back unchanged, the caller's deadline on, and dropping
//! the upstream stream when the proxy goes away. Upstreams are lazy
//! channels: while one is down its calls get UNAVAILABLE, and the next call
//! after it returns reconnects.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use crate::admin::{Admin, Ports};
use crate::core::addr::client_uri;
use crate::core::{ListenAddr, Shutdown};
use crate::grpc::GrpcMetrics;
use crate::proto::codec::REPORT_PATH;
use crate::proto::common::Destination;
use crate::proto::proxy::destination::Update;
use crate::proto::proxy::destination::destination_client::DestinationClient;
use crate::proto::proxy::destination::destination_server::{self, DestinationServer};
use crate::proto::proxy::telemetry::telemetry_client::TelemetryClient;
use crate::proto::proxy::telemetry::telemetry_server::{self, TelemetryServer};
use crate::proto::proxy::telemetry::{ReportRequest, ReportResponse};

const GET_PATH: &str = "/conduit.proxy.destination.Destination/Get";

/// Largest report forwarded: above telemetry's default limit (4 MiB), so
/// the telemetry component's own `-max-report-bytes` decides and its
/// RESOURCE_EXHAUSTED reaches the proxy.
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

/// The component with its sockets bound, ready to serve.
pub struct ProxyApi {
    admin: Admin,
    grpc: GrpcMetrics,
    budget: crate::grpc::ReportBudget,
    ports: Ports,
    telemetry: Channel,
    destination: Channel,
}

fn lazy_channel(flag: &str, addr: &str) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(client_uri(addr))
        .with_context(|| format!("{flag} {addr:?}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    Ok(endpoint.connect_lazy())
}

impl Args {
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.bind().await?.serve(shutdown).await
    }

    pub async fn bind(self) -> anyhow::Result<ProxyApi> {
        let telemetry = lazy_channel("-telemetry-addr", &self.telemetry_addr)?;
        let destination = lazy_channel("-destination-addr", &self.destination_addr)?;
        let registry = Admin::registry();
        let grpc = GrpcMetrics::register(&registry, &[REPORT_PATH, GET_PATH], Vec::new())?;
        let refused = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "conduit_proxy_api_reports_refused_total",
                "Reports refused before they were forwarded, by reason: busy (no room within 1 s among the 64 MiB of reports received at once), stalled (a body that took over 10 s).",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(refused.clone()))?;
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
        Ok(ProxyApi {
            admin,
            grpc,
            budget,
            ports,
            telemetry,
            destination,
        })
    }
}

impl ProxyApi {
    pub fn grpc_addr(&self) -> std::net::SocketAddr {
        self.ports.serve_addr()
    }

    pub fn admin_addr(&self) -> std::net::SocketAddr {
        self.ports.admin_addr()
    }

    pub async fn serve(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let span =
            tracing::info_span!("proxy_api", grpc = %self.grpc_addr(), admin = %self.admin_addr());
        self.serve_inner(shutdown).instrument(span).await
    }

    async fn serve_inner(self, shutdown: Shutdown) -> anyhow::Result<()> {
        tracing::info!("serving");
        let forward = Forward {
            telemetry: TelemetryClient::new(self.telemetry)
                .max_encoding_message_size(MAX_FORWARD_BYTES),
            destination: DestinationClient::new(self.destination),
            shutdown: shutdown.clone(),
        };
        let report =
            TelemetryServer::new(forward.clone()).max_decoding_message_size(MAX_FORWARD_BYTES);
        let get = DestinationServer::new(forward);
        let grpc = crate::grpc::server(Some(MAX_CONCURRENT_STREAMS))
            .layer(self.grpc)
            .layer(self.budget)
            .add_service(report)
            .add_service(get)
            .serve_with_incoming_shutdown(
                crate::grpc::incoming(self.ports.serve),
                shutdown.clone().signaled(),
            );
        self.admin
            .serve_beside(self.ports.admin, "gRPC server", grpc, shutdown)
            .await
    }
}

#[derive(Clone)]
struct Forward {
    telemetry: TelemetryClient<Channel>,
    destination: DestinationClient<Channel>,
    shutdown: Shutdown,
}

/// The caller's `grpc-timeout`, to pass on as the upstream call's deadline.
fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn upstream<T>(incoming: Request<T>) -> Request<T> {
    let timeout = grpc_timeout(incoming.metadata());
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
impl telemetry_server::Telemetry for Forward {
    async fn report(
        &self,
        request: Request<ReportRequest>,
    ) -> Result<Response<ReportResponse>, Status> {
        let response = self
            .telemetry
            .clone()
            .report(upstream(request))
            .await
            .map_err(upstream_status("telemetry"))?;
        Ok(Response::new(response.into_inner()))
    }
}

#[tonic::async_trait]
impl destination_server::Destination for Forward {
    type GetStream = futures::stream::BoxStream<'static, Result<Update, Status>>;

    async fn get(
        &self,
        request: Request<Destination>,
    ) -> Result<Response<Self::GetStream>, Status> {
        let response = self
            .destination
            .clone()
            .get(upstream(request))
            .await
            .map_err(upstream_status("destination"))?;
        let stream: Streaming<Update> = response.into_inner();
        // Ends with the drain signal too, so shutdown does not wait on
        // long-lived streams; dropping it cancels the upstream call.
        let shutdown = self.shutdown.clone().signaled();
        use futures::StreamExt as _;
        Ok(Response::new(stream.take_until(Box::pin(shutdown)).boxed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout(value: &str) -> Option<Duration> {
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", value.parse().unwrap());
        grpc_timeout(&metadata)
    }

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(timeout("9n"), Some(Duration::from_nanos(9)));
        assert_eq!(timeout("5"), None);
        assert_eq!(timeout("5x"), None);
        assert_eq!(timeout("123456789S"), None, "at most 8 digits");
        assert_eq!(grpc_timeout(&MetadataMap::new()), None);
    }
}
