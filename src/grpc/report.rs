//! The proxies' `conduit.proxy.telemetry.Telemetry/Report`, served with
//! the request body left undecoded, for every component that takes reports:
//! telemetry hands the body to the ingester, which decodes it itself in one
//! pass without allocating ([`crate::ingest::flat`]); proxy-api forwards it
//! as the bytes it arrived as. That is the point of serving it by hand
//! instead of through the generated server, whose handler receives a
//! prost-decoded `ReportRequest`.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tonic::codegen::{Body, BoxFuture, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use crate::proto::codec::{REPORT_PATH, RawCodec};
use crate::proto::proxy::telemetry::ReportResponse;

/// The service's gRPC name, as the proxies call it.
pub const REPORT_SERVICE_NAME: &str = "conduit.proxy.telemetry.Telemetry";

/// What a component does with one report body: `Ok` means it was validated
/// and applied (by this process or, forwarded, by telemetry), so the next
/// scrape shows it; an error is the status the proxy gets, and nothing of
/// the report was applied. `timeout` is what is left of the proxy's
/// deadline (its `grpc-timeout`), for a handler that passes it on.
pub trait ReportHandler: Send + Sync + 'static {
    fn report(&self, body: Bytes, timeout: Option<Duration>) -> BoxFuture<(), Status>;
}

/// Serves `Report` through a [`ReportHandler`] (and answers UNIMPLEMENTED
/// for any other method of the service, as a generated server does).
#[derive(Clone)]
pub struct ReportServer {
    handler: Arc<dyn ReportHandler>,
    max_decoding_message_size: usize,
}

impl ReportServer {
    /// Serves `handler`, refusing bodies over `max_report_bytes` before
    /// they are read whole (how many are read at once is
    /// [`super::ReportBudget`]'s).
    pub fn new(handler: Arc<dyn ReportHandler>, max_report_bytes: usize) -> Self {
        Self {
            handler,
            max_decoding_message_size: max_report_bytes,
        }
    }
}

impl NamedService for ReportServer {
    const NAME: &'static str = REPORT_SERVICE_NAME;
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
        let method = Unary(self.handler.clone());
        let mut grpc = Grpc::new(RawCodec)
            .apply_max_message_size_config(Some(self.max_decoding_message_size), None);
        Box::pin(async move { Ok(grpc.unary(method, req).await) })
    }
}

struct Unary(Arc<dyn ReportHandler>);

impl UnaryService<Bytes> for Unary {
    type Response = ReportResponse;
    type Future = BoxFuture<Response<ReportResponse>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let timeout = super::grpc_timeout(request.metadata());
        let answer = self.0.report(request.into_inner(), timeout);
        Box::pin(async move {
            answer.await?;
            Ok(Response::new(ReportResponse {}))
        })
    }
}
