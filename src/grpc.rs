//! A tower layer every gRPC server of the control plane runs behind: request
//! counts and latency by method and status, each call's `grpc-timeout`
//! answered DEADLINE_EXCEEDED, and, for methods with a message size limit,
//! status codes as DESIGN §11 asks for them.
//!
//! tonic reports a message over the decode limit as `OUT_OF_RANGE`, before
//! any handler runs and without a way to configure it; callers of `Report`
//! are owed `RESOURCE_EXHAUSTED`, so the layer rewrites the status of that
//! trailers-only response (our handlers never return `OUT_OF_RANGE`
//! themselves). What a report body holds is judged, and counted, by the
//! component's [`ReportHandler`], whichever way the report arrived.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tower::{Layer, Service};

mod report;

pub use report::{REPORT_SERVICE_NAME, ReportHandler, ReportServer};

/// A tonic server with the settings every component's gRPC port shares:
/// at most `max_concurrent_streams` open streams per connection (`None`:
/// h2's default, unbounded).
pub fn server(max_concurrent_streams: Option<u32>) -> tonic::transport::Server {
    tonic::transport::Server::builder().max_concurrent_streams(max_concurrent_streams)
}

/// A bound listener as the connections a [`server`] serves, with
/// `TCP_NODELAY` (replies are small and latency-bound).
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// A call's `grpc-timeout` header as a duration (`None`: absent or not
/// what the gRPC spec allows), e.g. to pass on as an upstream's deadline.
pub fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    parse_grpc_timeout(metadata.get("grpc-timeout")?.to_str().ok()?)
}

fn parse_grpc_timeout(value: &str) -> Option<Duration> {
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

/// Server-handling time buckets (seconds) for every gRPC method.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Hooks for one gRPC method whose request size and decode failures are
/// accounted for.
#[derive(Clone)]
pub struct Guarded {
    /// Full path, e.g. `/conduit.proxy.telemetry.Telemetry/Report`.
    pub path: &'static str,
    /// Observes the size of every request body, in bytes.
    pub size: prometheus::Histogram,
    pub too_large: prometheus::IntCounter,
}

/// Per-method call counts and handling times of one gRPC server, as a
/// layer. Cheap to clone: a call takes one reference (one atomic count on
/// a line both cores share) rather than one per metric.
#[derive(Clone)]
pub struct GrpcMetrics(Arc<MetricsInner>);

struct MetricsInner {
    requests: IntCounterVec,
    latency: HistogramVec,
    guarded: Box<[Guarded]>,
    /// Paths served; any other path is counted as `unknown`, so clients
    /// cannot grow the label set.
    known: Box<[&'static str]>,
    /// Per method (`known`'s order, then `unknown`), its series once first
    /// used: every call counts without hashing its labels again.
    resolved: Box<[Resolved]>,
}

/// The gRPC status codes, 0 ..= 16.
const CODES: usize = 17;

/// One method's series, each created on its first use (so a scrape shows
/// only the codes a method has answered).
#[derive(Default)]
struct Resolved {
    latency: std::sync::OnceLock<prometheus::Histogram>,
    handled: [std::sync::OnceLock<prometheus::IntCounter>; CODES],
}

impl GrpcMetrics {
    pub fn register(
        registry: &Registry,
        known: &[&'static str],
        guarded: Vec<Guarded>,
    ) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "conduit_grpc_server_handled_total",
                "gRPC calls handled, by method and the status sent with the response headers.",
            ),
            &["method", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "conduit_grpc_server_handling_seconds",
                "Time to the response headers of gRPC calls, by method.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(Self(Arc::new(MetricsInner {
            requests,
            latency,
            guarded: guarded.into(),
            known: known.into(),
            resolved: (0..=known.len()).map(|_| Resolved::default()).collect(),
        })))
    }
}

impl<S> Layer<S> for GrpcMetrics {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: GrpcMetrics,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ResBody> Service<Request<tonic::body::Body>> for GrpcMetricsService<S>
where
    S: Service<Request<tonic::body::Body>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        let started = Instant::now();
        let path = req.uri().path();
        let known = &self.metrics.0.known;
        let method = known.iter().position(|k| *k == path).unwrap_or(known.len());
        let guarded = self.metrics.0.guarded.iter().position(|g| g.path == path);
        let req = match guarded {
            Some(g) => req.map(|body| {
                tonic::body::Body::new(CountingBody {
                    inner: body,
                    bytes: 0,
                    size: Some(self.metrics.0.guarded[g].size.clone()),
                })
            }),
            None => req,
        };
        let deadline = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|d| tokio::time::Instant::from_std(started) + d.saturating_sub(DEADLINE_LEAD));
        let metrics = self.metrics.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            // Counted as CANCELLED if dropped unanswered: the caller reset
            // the stream or its connection went away.
            let mut unanswered = Unanswered(Some((&metrics, method, started)));
            let answer = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, fut).await,
                None => Ok(fut.await),
            };
            unanswered.0 = None;
            let mut rsp = match answer {
                Ok(rsp) => rsp?,
                Err(_) => {
                    metrics.count(method, tonic::Code::DeadlineExceeded, started);
                    let status = tonic::Status::deadline_exceeded(
                        "the call's deadline (grpc-timeout) passed before it was answered",
                    );
                    return Ok(status.into_http::<ResBody>());
                }
            };
            let headers = rsp.headers_mut();
            let mut code = headers
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(0);
            if let Some(g) = guarded
                && tonic::Code::from(code) == tonic::Code::OutOfRange
            {
                metrics.0.guarded[g].too_large.inc();
                code = tonic::Code::ResourceExhausted as i32;
                headers.insert("grpc-status", HeaderValue::from(code));
            }
            metrics.count(method, tonic::Code::from(code), started);
            Ok(rsp)
        })
    }
}

/// How much sooner than its `grpc-timeout` a call is answered
/// DEADLINE_EXCEEDED. tonic's server runs its own timer on the same header,
/// outside every layer, and ends the call as CANCELLED, uncounted; its timer
/// starts first, so ours must fire a timer tick (1 ms) earlier to answer
/// with the status the gRPC spec names and to be counted.
const DEADLINE_LEAD: Duration = Duration::from_millis(1);

impl GrpcMetrics {
    /// A call of method `method` (an index into `resolved`) answered `code`.
    fn count(&self, method: usize, code: tonic::Code, started: Instant) {
        let this = &self.0;
        let name = this.known.get(method).copied().unwrap_or("unknown");
        let resolved = &this.resolved[method];
        // `tonic::Code::from` maps every number past 16 to UNKNOWN (2).
        let handled = resolved.handled[code as usize].get_or_init(|| {
            let code_name = format!("{code:?}");
            this.requests.with_label_values(&[name, code_name.as_str()])
        });
        handled.inc();
        resolved
            .latency
            .get_or_init(|| this.latency.with_label_values(&[name]))
            .observe(started.elapsed().as_secs_f64());
    }
}

/// A call not yet answered: counted as CANCELLED when dropped so.
struct Unanswered<'a>(Option<(&'a GrpcMetrics, usize, Instant)>);

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if let Some((metrics, method, started)) = self.0.take() {
            metrics.count(method, tonic::Code::Cancelled, started);
        }
    }
}

/// A request body that counts its data bytes and records the total when the
/// stream ends (or is dropped early).
struct CountingBody {
    inner: tonic::body::Body,
    bytes: u64,
    size: Option<prometheus::Histogram>,
}

impl CountingBody {
    fn finish(&mut self) {
        if let Some(size) = self.size.take() {
            size.observe(self.bytes as f64);
        }
    }
}

impl Drop for CountingBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Body for CountingBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => self.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Bytes of `Report` bodies being received at once by one server, across
/// every connection: each report holds the size its gRPC frame announces
/// (at most the method's limit) until answered. Without it, a client opening
/// a thousand streams and stalling each mid-message made the server buffer
/// 1 GB.
pub const MAX_INFLIGHT_REPORT_BYTES: usize = 64 << 20;

/// The budget's unit: a report holds its announced size rounded up to it.
const BUDGET_UNIT: usize = 1024;

/// How long a report waits for room in that budget before it is refused
/// with `RESOURCE_EXHAUSTED`: the proxy retries at its next interval. A
/// waiting report's body is not read past its first frame, so h2 flow
/// control holds the rest back.
pub const BUDGET_WAIT: Duration = Duration::from_secs(1);

/// How long a report's body may take to arrive: a client that stalls
/// mid-message gives its room back then (`DEADLINE_EXCEEDED`). A 4 MiB
/// report crosses a cluster network in milliseconds.
pub const REPORT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The shared bound on `Report` bodies in flight ([`MAX_INFLIGHT_REPORT_BYTES`],
/// [`BUDGET_WAIT`], [`REPORT_READ_TIMEOUT`]), as a layer of the gRPC server
/// of every component that takes reports (telemetry, proxy-api). The size a
/// report holds is read from its frame header, so small reports (a few
/// kilobytes each) share the budget by the thousand. Other methods pass
/// untouched.
#[derive(Clone)]
pub struct ReportBudget(Arc<BudgetInner>);

struct BudgetInner {
    room: Arc<tokio::sync::Semaphore>,
    /// The method's message size limit: what one report can hold at most.
    max_report_bytes: usize,
    /// Refused for want of room within [`BUDGET_WAIT`].
    busy: prometheus::IntCounter,
    /// Cut at [`REPORT_READ_TIMEOUT`].
    stalled: prometheus::IntCounter,
}

impl ReportBudget {
    /// Room for [`MAX_INFLIGHT_REPORT_BYTES`] of reports of at most
    /// `max_report_bytes` each.
    pub fn new(
        max_report_bytes: usize,
        busy: prometheus::IntCounter,
        stalled: prometheus::IntCounter,
    ) -> Self {
        Self(Arc::new(BudgetInner {
            room: Arc::new(tokio::sync::Semaphore::new(
                MAX_INFLIGHT_REPORT_BYTES / BUDGET_UNIT,
            )),
            max_report_bytes: max_report_bytes.min(MAX_INFLIGHT_REPORT_BYTES),
            busy,
            stalled,
        }))
    }
}

impl BudgetInner {
    /// Units of room a report announcing `announced` bytes holds.
    fn units(&self, announced: usize) -> u32 {
        let bytes = announced.clamp(1, self.max_report_bytes);
        bytes.div_ceil(BUDGET_UNIT) as u32
    }

    /// Room for `units`: at once when there is some (nearly always, and
    /// without arming a timer), else waiting up to [`BUDGET_WAIT`].
    async fn room(&self, units: u32) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match self.room.clone().try_acquire_many_owned(units) {
            Ok(room) => Some(room),
            Err(_) => {
                let wait = self.room.clone().acquire_many_owned(units);
                tokio::time::timeout(BUDGET_WAIT, wait).await.ok()?.ok()
            }
        }
    }
}

impl<S> Layer<S> for ReportBudget {
    type Service = ReportBudgetService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReportBudgetService {
            inner,
            budget: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ReportBudgetService<S> {
    inner: S,
    budget: ReportBudget,
}

/// The frames read from a body before its 5-byte gRPC frame header was
/// whole: nearly always one.
type Peeked = smallvec::SmallVec<[http_body::Frame<bytes::Bytes>; 2]>;

/// The first frames of a body, up to the 5-byte gRPC frame header, and the
/// size the header announces (`None`: the body ended first).
async fn announced_size(
    body: &mut tonic::body::Body,
) -> Result<(Peeked, Option<usize>), tonic::Status> {
    use http_body_util::BodyExt as _;
    let mut frames = Peeked::new();
    let mut head = [0u8; 5];
    let mut have = 0;
    while have < head.len() {
        let Some(frame) = body.frame().await else {
            return Ok((frames, None));
        };
        let frame = frame?;
        if let Some(data) = frame.data_ref() {
            let take = (head.len() - have).min(data.len());
            head[have..have + take].copy_from_slice(&data[..take]);
            have += take;
        }
        frames.push(frame);
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    Ok((frames, Some(len as usize)))
}

/// A body whose first frames were already read ([`announced_size`]):
/// gives them again, then the rest.
struct Replay {
    peeked: smallvec::IntoIter<[http_body::Frame<bytes::Bytes>; 2]>,
    rest: tonic::body::Body,
}

impl Replay {
    fn new(peeked: Peeked, rest: tonic::body::Body) -> Self {
        Self {
            peeked: peeked.into_iter(),
            rest,
        }
    }
}

impl Body for Replay {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.peeked.next() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None => Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.peeked.len() == 0 && self.rest.is_end_stream()
    }
}

impl<S> Service<Request<tonic::body::Body>> for ReportBudgetService<S>
where
    S: Service<Request<tonic::body::Body>, Response = Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() != crate::proto::codec::REPORT_PATH {
            return Box::pin(self.inner.call(req));
        }
        // The service that was made ready serves this call; a clone waits
        // for the next (tower's rule for services used after an await).
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let budget = self.budget.clone();
        Box::pin(async move {
            let budget = &budget.0;
            // One timer for the whole call, from its first frame to its
            // answer: a report that has not arrived and been applied
            // within REPORT_READ_TIMEOUT gives its room back.
            let call = async {
                let (parts, mut body) = req.into_parts();
                let (peeked, announced) = match announced_size(&mut body).await {
                    Ok(peeked) => peeked,
                    Err(status) => return Ok(status.into_http()),
                };
                // Room for what the report says it is, before reading it.
                let Some(_room) = budget.room(budget.units(announced.unwrap_or(0))).await else {
                    budget.busy.inc();
                    return Ok(tonic::Status::resource_exhausted(
                        "too many reports are being received at once; retry later",
                    )
                    .into_http());
                };
                let body = tonic::body::Body::new(Replay::new(peeked, body));
                inner.call(Request::from_parts(parts, body)).await
            };
            match tokio::time::timeout(REPORT_READ_TIMEOUT, call).await {
                Ok(answer) => answer,
                Err(_) => {
                    budget.stalled.inc();
                    Ok(tonic::Status::deadline_exceeded(format!(
                        "the report did not arrive within {REPORT_READ_TIMEOUT:?}"
                    ))
                    .into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout(value: &str) -> Option<Duration> {
        let mut metadata = tonic::metadata::MetadataMap::new();
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
        assert_eq!(grpc_timeout(&tonic::metadata::MetadataMap::new()), None);
    }
}
