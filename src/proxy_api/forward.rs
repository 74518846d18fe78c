//! proxy-api's `Report` path: the proxies' report bodies, never decoded
//! here, carried to telemetry over a few long-lived streams of the internal
//! `Ingest/Reports` call, each report acknowledged by its sequence number
//! with the verdict telemetry reached (see its `.proto`).
//!
//! One unary call per report between two of our own processes paid for a
//! new HTTP/2 stream, its headers and trailers, and a response each way; a
//! stream carries many reports in the frames of one, and telemetry answers
//! them in batches. A proxy's answer still means what a direct one does:
//! OK only after telemetry applied the report, and its error otherwise,
//! unchanged.
//!
//! Every queue is bounded: a lane holds at most [`MAX_IN_FLIGHT_PER_LANE`]
//! reports between the proxies and telemetry's verdicts (a report waits
//! [`IN_FLIGHT_WAIT`] for room, then RESOURCE_EXHAUSTED), and the bytes are
//! bounded before they reach here by [`crate::grpc::ReportBudget`], which
//! holds each report's room until it is answered.
//!
//! A proxy's deadline and cancellation end its wait (the gRPC server layer
//! answers DEADLINE_EXCEEDED at the call's `grpc-timeout`); a report whose caller went away before
//! its turn on the stream is not sent at all. When a stream ends (telemetry
//! restarted, the connection lost), every report waiting on it is answered
//! UNAVAILABLE and the next report opens a new one.
//!
//! A telemetry that does not serve `Ingest/Reports` (UNIMPLEMENTED: one
//! older than this proxy-api, in a rolling upgrade) gets each report as the
//! proxy's own unary `Report` instead, with the proxy's deadline, and the
//! lane asks again after [`UNARY_RECHECK`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tonic::codegen::BoxFuture;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use crate::grpc::ReportHandler;
use crate::proto::codec::{MAX_REPORT_BYTES_HEADER, REPORT_PATH, RawClientCodec};
use crate::proto::controller::ingest::ingest_client::IngestClient;
use crate::proto::controller::ingest::{ForwardedReport, ReportVerdict};

/// Streams to telemetry: one per core, so telemetry applies reports on as
/// many cores as it has (it applies one stream's reports one after
/// another), at most four (telemetry takes 16 from all proxy-apis together,
/// its `MAX_FORWARD_STREAMS`).
pub const FORWARD_LANES_MAX: usize = 4;

/// Reports one lane carries at once, from their arrival to their verdict:
/// ~20× what 64 busy proxies keep in flight, and at ~30 µs a report, 30 ms
/// of telemetry's work.
pub const MAX_IN_FLIGHT_PER_LANE: usize = 1024;

/// How long a report waits for room on its lane before it is refused with
/// RESOURCE_EXHAUSTED (the proxy retries at its next interval), as long as
/// one waits for room among the bytes received at once.
pub const IN_FLIGHT_WAIT: Duration = crate::grpc::BUDGET_WAIT;

/// How long a lane forwards unary `Report`s after telemetry answered
/// UNIMPLEMENTED to `Ingest/Reports`, before it tries the stream again (a
/// rolling upgrade of telemetry is over within minutes).
pub const UNARY_RECHECK: Duration = Duration::from_secs(60);

/// Counters of reports refused here, by reason.
#[derive(Clone)]
pub struct Refusals {
    pub busy: prometheus::IntCounter,
    pub too_large: prometheus::IntCounter,
}

/// The proxies' reports, forwarded to telemetry.
#[derive(Clone)]
pub struct Forwarder(Arc<Lanes>);

struct Lanes {
    lanes: Box<[Lane]>,
    next: AtomicUsize,
    refusals: Refusals,
    opened: prometheus::IntCounter,
}

struct Lane {
    channel: Channel,
    client: IngestClient<Channel>,
    /// Until when reports go unary (telemetry has no `Ingest/Reports`).
    unary_until: parking_lot::Mutex<Option<Instant>>,
    in_flight: Semaphore,
    /// The open stream, if any: read on every report, without a lock.
    current: ArcSwapOption<Upstream>,
    /// Held while a stream is opened, so one report opens it for all.
    opening: tokio::sync::Mutex<()>,
}

/// One open `Reports` stream.
struct Upstream {
    queue: mpsc::Sender<Queued>,
    /// telemetry's `-max-report-bytes`, from the response header.
    max_report_bytes: usize,
    /// Its sender is dropped when the stream ends.
    ended: watch::Receiver<()>,
}

struct Queued {
    body: Bytes,
    reply: oneshot::Sender<Result<(), Status>>,
}

type Pending = Arc<parking_lot::Mutex<HashMap<u64, oneshot::Sender<Result<(), Status>>>>>;

fn lost() -> Status {
    Status::unavailable("telemetry unavailable: its stream ended before the report's verdict")
}

impl Forwarder {
    /// Forwards over `channel` (lazy: connected at the first report).
    pub fn new(channel: Channel, refusals: Refusals, opened: prometheus::IntCounter) -> Self {
        let lanes = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, FORWARD_LANES_MAX);
        let lanes = (0..lanes)
            .map(|_| Lane {
                channel: channel.clone(),
                client: IngestClient::new(channel.clone()),
                unary_until: parking_lot::Mutex::new(None),
                in_flight: Semaphore::new(MAX_IN_FLIGHT_PER_LANE),
                current: ArcSwapOption::empty(),
                opening: tokio::sync::Mutex::new(()),
            })
            .collect();
        Self(Arc::new(Lanes {
            lanes,
            next: AtomicUsize::new(0),
            refusals,
            opened,
        }))
    }
}

impl ReportHandler for Forwarder {
    fn report(&self, body: Bytes, timeout: Option<Duration>) -> BoxFuture<(), Status> {
        let lanes = self.0.clone();
        Box::pin(async move { lanes.forward(body, timeout).await })
    }
}

impl Lanes {
    async fn forward(&self, body: Bytes, timeout: Option<Duration>) -> Result<(), Status> {
        let lane = &self.lanes[self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len()];
        let Ok(Ok(_room)) = tokio::time::timeout(IN_FLIGHT_WAIT, lane.in_flight.acquire()).await
        else {
            self.refusals.busy.inc();
            return Err(Status::resource_exhausted(
                "too many reports are waiting on telemetry; retry later",
            ));
        };
        if lane.unary() {
            return lane.unary_report(body, timeout).await;
        }
        let upstream = match lane.upstream(&self.opened).await {
            Ok(upstream) => upstream,
            Err(status) if status.code() == Code::Unimplemented => {
                tracing::info!("telemetry has no Ingest/Reports; forwarding unary Reports");
                *lane.unary_until.lock() = Some(Instant::now() + UNARY_RECHECK);
                return lane.unary_report(body, timeout).await;
            }
            Err(status) => return Err(status),
        };
        if body.len() > upstream.max_report_bytes {
            self.refusals.too_large.inc();
            return Err(Status::resource_exhausted(format!(
                "report of {} bytes is over telemetry's limit of {} bytes (-max-report-bytes)",
                body.len(),
                upstream.max_report_bytes
            )));
        }
        let (reply, verdict) = oneshot::channel();
        upstream
            .queue
            .send(Queued { body, reply })
            .await
            .map_err(|_| lost())?;
        let mut ended = upstream.ended.clone();
        tokio::select! {
            biased;
            verdict = verdict => verdict.unwrap_or_else(|_| Err(lost())),
            _ = ended.changed() => Err(lost()),
        }
    }
}

impl Lane {
    fn unary(&self) -> bool {
        let mut until = self.unary_until.lock();
        match *until {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    /// The report as the proxy's own unary call, its deadline passed on;
    /// telemetry's status comes back unchanged (its limit on size too).
    async fn unary_report(&self, body: Bytes, timeout: Option<Duration>) -> Result<(), Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("telemetry unavailable: {e}")))?;
        let mut request = tonic::Request::new(body);
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        let path = http::uri::PathAndQuery::from_static(REPORT_PATH);
        grpc.unary(request, path, RawClientCodec)
            .await
            .map(drop)
            .map_err(super::upstream_status("telemetry"))
    }

    /// The lane's open stream, opening one when there is none or it ended.
    async fn upstream(&self, opened: &prometheus::IntCounter) -> Result<Arc<Upstream>, Status> {
        if let Some(up) = self.current.load_full()
            && up.is_open()
        {
            return Ok(up);
        }
        let _opening = self.opening.lock().await;
        if let Some(up) = self.current.load_full()
            && up.is_open()
        {
            return Ok(up);
        }
        let up = Arc::new(Upstream::open(self.client.clone()).await?);
        opened.inc();
        self.current.store(Some(up.clone()));
        Ok(up)
    }
}

impl Upstream {
    fn is_open(&self) -> bool {
        self.ended.has_changed().is_ok() && !self.queue.is_closed()
    }

    async fn open(mut client: IngestClient<Channel>) -> Result<Self, Status> {
        let (queue, queued) = mpsc::channel::<Queued>(MAX_IN_FLIGHT_PER_LANE);
        let pending: Pending = Arc::default();
        let frames = {
            let pending = pending.clone();
            let mut seq = 0u64;
            tokio_stream::wrappers::ReceiverStream::new(queued).filter_map(move |q| {
                // A caller that went away before its report's turn: not sent.
                let frame = (!q.reply.is_closed()).then(|| {
                    seq += 1;
                    pending.lock().insert(seq, q.reply);
                    ForwardedReport {
                        seq,
                        report: q.body,
                    }
                });
                std::future::ready(frame)
            })
        };
        let response = client
            .reports(frames)
            .await
            .map_err(super::upstream_status("telemetry"))?;
        let max_report_bytes = response
            .metadata()
            .get(MAX_REPORT_BYTES_HEADER)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(usize::MAX);
        let (end, ended) = watch::channel(());
        tokio::spawn(read_verdicts(response.into_inner(), pending, end));
        Ok(Self {
            queue,
            max_report_bytes,
            ended,
        })
    }
}

/// Hands each verdict to the report waiting on it, until the stream ends;
/// then every report still waiting is answered UNAVAILABLE (and `end`,
/// dropped, wakes those not yet sent).
async fn read_verdicts(
    mut verdicts: Streaming<ReportVerdict>,
    pending: Pending,
    end: watch::Sender<()>,
) {
    let why = loop {
        match verdicts.message().await {
            Ok(Some(v)) => {
                let Some(reply) = pending.lock().remove(&v.seq) else {
                    continue;
                };
                let answer = match Code::from_i32(v.code) {
                    Code::Ok => Ok(()),
                    code => Err(Status::new(code, v.message)),
                };
                let _ = reply.send(answer);
            }
            Ok(None) => break "telemetry ended the stream".to_string(),
            Err(status) => break status.to_string(),
        }
    };
    tracing::debug!(why, "forwarding stream ended");
    drop(end);
    let waiting: Vec<_> = pending.lock().drain().map(|(_, reply)| reply).collect();
    for reply in waiting {
        let _ = reply.send(Err(lost()));
    }
}
