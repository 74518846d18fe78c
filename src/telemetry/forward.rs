//! `conduit.controller.ingest.Ingest/Reports`: the reports proxy-api
//! forwards, many on one long-lived stream (see the `.proto`). Each is
//! applied exactly as a proxy's own `Report` call would be
//! ([`ReportService::report_bytes`]) and answered with a verdict of its
//! sequence number.
//!
//! Verdicts are computed as the response stream is polled: a report is read
//! and applied only when its verdict can be sent, so a peer that stops
//! reading verdicts stops its reports at h2's flow-control window instead
//! of queueing them here.

use std::sync::Arc;

use futures::StreamExt as _;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::service::ReportService;
use crate::core::Shutdown;
use crate::ingest::Health;
use crate::proto::codec::MAX_REPORT_BYTES_HEADER;
use crate::proto::controller::ingest::{ForwardedReport, ReportVerdict, ingest_server};

/// Forwarding streams open at once, across every connection. Each holds at
/// most one report being read (at most `-max-report-bytes`, 4 MiB by
/// default), so 16 of them bound what a peer can make this process buffer
/// to what [`crate::grpc::MAX_INFLIGHT_REPORT_BYTES`] allows the proxies'
/// own calls. A proxy-api opens one per core it has, at most four: room
/// for four of them at once, as during a rollout.
pub const MAX_FORWARD_STREAMS: usize = 16;

pub struct ForwardService {
    service: Arc<ReportService>,
    health: Health,
    streams: Arc<tokio::sync::Semaphore>,
    shutdown: Shutdown,
}

impl ForwardService {
    pub fn new(service: Arc<ReportService>, health: Health, shutdown: Shutdown) -> Self {
        Self {
            service,
            health,
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_FORWARD_STREAMS)),
            shutdown,
        }
    }
}

fn verdict(seq: u64, answer: Result<(), Status>) -> ReportVerdict {
    match answer {
        Ok(()) => ReportVerdict {
            seq,
            code: 0,
            message: String::new(),
        },
        Err(status) => ReportVerdict {
            seq,
            code: status.code() as i32,
            message: status.message().to_string(),
        },
    }
}

#[tonic::async_trait]
impl ingest_server::Ingest for ForwardService {
    type ReportsStream = futures::stream::BoxStream<'static, Result<ReportVerdict, Status>>;

    async fn reports(
        &self,
        request: Request<Streaming<ForwardedReport>>,
    ) -> Result<Response<Self::ReportsStream>, Status> {
        let Ok(permit) = self.streams.clone().try_acquire_owned() else {
            self.health.rejected_busy.inc();
            return Err(Status::resource_exhausted(format!(
                "{MAX_FORWARD_STREAMS} forwarding streams are open already"
            )));
        };
        let service = self.service.clone();
        let size = self.health.report_bytes.clone();
        let verdicts = request.into_inner().map(move |frame| {
            let _held = &permit;
            let frame = frame?;
            size.observe(frame.report.len() as f64);
            Ok(verdict(frame.seq, service.report_bytes(&frame.report)))
        });
        // Ends between two verdicts at shutdown: every report read was
        // answered, and proxy-api tells the rest UNAVAILABLE.
        let verdicts = verdicts.take_until(Box::pin(self.shutdown.clone().signaled()));
        let mut response = Response::new(verdicts.boxed());
        response.metadata_mut().insert(
            MAX_REPORT_BYTES_HEADER,
            MetadataValue::from(self.service.max_report_bytes() as u64),
        );
        Ok(response)
    }
}
