//! The proxies' `conduit.proxy.telemetry.Telemetry/Report`, served with
//! the request body left undecoded: the ingester decodes it itself, in one
//! pass and without allocating ([`crate::ingest::flat`]), which is the
//! point of serving it by hand instead of through the generated server
//! (whose handler receives a prost-decoded `ReportRequest`).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tonic::codegen::{Body, BoxFuture, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::service::ReportService;
use crate::proto::codec::{REPORT_PATH, RawCodec};
use crate::proto::proxy::telemetry::ReportResponse;

/// The service's gRPC name, as the proxies call it.
pub const SERVICE_NAME: &str = "conduit.proxy.telemetry.Telemetry";

/// Bytes of Report bodies received at once, across every connection: each
/// report being read holds `-max-report-bytes` of it until answered (16
/// reports of the default 4 MiB). Without it, a client opening a thousand
/// streams and stalling each mid-message made the server buffer 1 GB.
pub const MAX_INFLIGHT_REPORT_BYTES: usize = 64 << 20;

/// How long a report waits for room in that budget before it is refused
/// with `RESOURCE_EXHAUSTED`: the proxy retries at its next interval. A
/// waiting report's body is not read, so h2 flow control holds it back.
pub const BUDGET_WAIT: Duration = Duration::from_secs(1);

/// How long a report's body may take to arrive once it is being read: a
/// client that stalls mid-message gives its share of the budget back then
/// (`DEADLINE_EXCEEDED`). A 4 MiB report crosses a cluster network in
/// milliseconds.
pub const REPORT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Streams one client may hold open on the telemetry port: far above one
/// report at a time per proxy, or proxy-api's multiplexed forwarding.
pub const MAX_REPORT_STREAMS_PER_CONNECTION: u32 = 1_000;

/// Serves `Report` (and answers UNIMPLEMENTED for any other method of the
/// service, as a generated server does).
#[derive(Clone)]
pub struct ReportServer {
    service: Arc<ReportService>,
    max_decoding_message_size: usize,
    /// [`MAX_INFLIGHT_REPORT_BYTES`] in reports of the largest size.
    budget: Arc<tokio::sync::Semaphore>,
    refused: Refusals,
}

/// Counters of the reports refused before they were read.
#[derive(Clone)]
pub struct Refusals {
    /// No room in the budget within [`BUDGET_WAIT`].
    pub busy: prometheus::IntCounter,
    /// The body did not arrive within [`REPORT_READ_TIMEOUT`].
    pub stalled: prometheus::IntCounter,
}

impl ReportServer {
    /// Serves `service`, refusing bodies over `max_report_bytes` before
    /// they are read whole, and receiving at most
    /// [`MAX_INFLIGHT_REPORT_BYTES`] of reports at once.
    pub fn new(service: ReportService, max_report_bytes: usize, refused: Refusals) -> Self {
        let slots = (MAX_INFLIGHT_REPORT_BYTES / max_report_bytes.max(1)).max(1);
        Self {
            service: Arc::new(service),
            max_decoding_message_size: max_report_bytes,
            budget: Arc::new(tokio::sync::Semaphore::new(slots)),
            refused,
        }
    }
}

impl NamedService for ReportServer {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> tower::Service<http::Request<B>> for ReportServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != REPORT_PATH {
            return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
        }
        let method = Unary(self.service.clone());
        let mut grpc = Grpc::new(RawCodec)
            .apply_max_message_size_config(Some(self.max_decoding_message_size), None);
        let budget = self.budget.clone();
        let refused = self.refused.clone();
        Box::pin(async move {
            // The body is read only with room in the budget.
            let Ok(Ok(_room)) = tokio::time::timeout(BUDGET_WAIT, budget.acquire_owned()).await
            else {
                refused.busy.inc();
                return Ok(Status::resource_exhausted(
                    "telemetry is receiving too many reports at once; retry later",
                )
                .into_http());
            };
            match tokio::time::timeout(REPORT_READ_TIMEOUT, grpc.unary(method, req)).await {
                Ok(answer) => Ok(answer),
                Err(_) => {
                    refused.stalled.inc();
                    Ok(Status::deadline_exceeded(format!(
                        "the report did not arrive within {REPORT_READ_TIMEOUT:?}"
                    ))
                    .into_http())
                }
            }
        })
    }
}

struct Unary(Arc<ReportService>);

impl UnaryService<Bytes> for Unary {
    type Response = ReportResponse;
    type Future = BoxFuture<Response<ReportResponse>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.report_bytes(request.get_ref()) })
    }
}
