//! The proxies' `conduit.proxy.telemetry.Telemetry/Report`, served with
//! the request body left undecoded: the ingester decodes it itself, in one
//! pass and without allocating ([`crate::ingest::flat`]), which is the
//! point of serving it by hand instead of through the generated server
//! (whose handler receives a prost-decoded `ReportRequest`).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tonic::codegen::{Body, BoxFuture, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::service::ReportService;
use crate::proto::codec::{REPORT_PATH, RawCodec};
use crate::proto::proxy::telemetry::ReportResponse;

/// The service's gRPC name, as the proxies call it.
pub const SERVICE_NAME: &str = "conduit.proxy.telemetry.Telemetry";

/// Streams one client may hold open on the telemetry port: far above one
/// report at a time per proxy, or proxy-api's multiplexed forwarding.
pub const MAX_REPORT_STREAMS_PER_CONNECTION: u32 = 1_000;

/// Serves `Report` (and answers UNIMPLEMENTED for any other method of the
/// service, as a generated server does).
#[derive(Clone)]
pub struct ReportServer {
    service: Arc<ReportService>,
    max_decoding_message_size: usize,
}

impl ReportServer {
    /// Serves `service`, refusing bodies over `max_report_bytes` before
    /// they are read whole (how many are read at once is
    /// [`crate::grpc::ReportBudget`]'s).
    pub fn new(service: ReportService, max_report_bytes: usize) -> Self {
        Self {
            service: Arc::new(service),
            max_decoding_message_size: max_report_bytes,
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
        Box::pin(async move { Ok(grpc.unary(method, req).await) })
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
