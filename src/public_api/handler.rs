//! One handler for every request, so the checks run in the contract's order
//! whatever the path: method (405), path (404), content type (415), body
//! (413/400), then the call (its upstream status mapped, see
//! [`http_status`]).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

use super::replicas::{Answer, CallError, Failure, Telemetry};
use crate::core::Shutdown;
use crate::ingest::hist::{SparseHist, bucket_range};
use crate::proto::common::TapEvent;
use crate::proto::controller::tap::tap_client::TapClient;
use crate::proto::http_api::{self, CodecError, Encoding, JsonForm, UnsupportedType};
use crate::proto::public::{
    AggregationType, EdgesRequest, Empty, HealthRequest, LatencyBucket, LatencyDistributionRequest,
    LatencyDistributionResponse, LatencySlot, MetricMetadata, MetricName, MetricRequest,
    RoutesRequest, StatSummaryRequest, TapRequest,
};
use crate::stat::windows::Group;
use crate::stat::{StatError, round_ms};

/// Largest request body read: every request message is a few hundred bytes.
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Request-duration buckets (seconds): from a local Version to a slow
/// Prometheus behind Stat.
const DURATION_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The calls of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Stat,
    Version,
    ListPods,
    Tap,
    StatSummary,
    Edges,
    Routes,
    Health,
    LatencyDistribution,
    ListPodNodes,
}

impl Route {
    fn of(path: &str) -> Option<Self> {
        match path {
            http_api::STAT_PATH => Some(Self::Stat),
            http_api::VERSION_PATH => Some(Self::Version),
            http_api::LIST_PODS_PATH => Some(Self::ListPods),
            http_api::TAP_PATH => Some(Self::Tap),
            http_api::STAT_SUMMARY_PATH => Some(Self::StatSummary),
            http_api::EDGES_PATH => Some(Self::Edges),
            http_api::ROUTES_PATH => Some(Self::Routes),
            http_api::HEALTH_PATH => Some(Self::Health),
            http_api::LATENCY_DISTRIBUTION_PATH => Some(Self::LatencyDistribution),
            http_api::LIST_POD_NODES_PATH => Some(Self::ListPodNodes),
            _ => None,
        }
    }

    /// The call's name, as in the API's service.
    fn name(self) -> &'static str {
        match self {
            Self::Stat => "Stat",
            Self::Version => "Version",
            Self::ListPods => "ListPods",
            Self::Tap => "Tap",
            Self::StatSummary => "StatSummary",
            Self::Edges => "Edges",
            Self::Routes => "Routes",
            Self::Health => "Health",
            Self::LatencyDistribution => "LatencyDistribution",
            Self::ListPodNodes => "ListPodNodes",
        }
    }

    /// The `route` label: the path of a known call, so clients cannot grow
    /// the label set.
    fn label(route: Option<Self>) -> &'static str {
        match route {
            Some(Self::Stat) => http_api::STAT_PATH,
            Some(Self::Version) => http_api::VERSION_PATH,
            Some(Self::ListPods) => http_api::LIST_PODS_PATH,
            Some(Self::Tap) => http_api::TAP_PATH,
            Some(Self::StatSummary) => http_api::STAT_SUMMARY_PATH,
            Some(Self::Edges) => http_api::EDGES_PATH,
            Some(Self::Routes) => http_api::ROUTES_PATH,
            Some(Self::Health) => http_api::HEALTH_PATH,
            Some(Self::LatencyDistribution) => http_api::LATENCY_DISTRIBUTION_PATH,
            Some(Self::ListPodNodes) => http_api::LIST_POD_NODES_PATH,
            None => "unknown",
        }
    }
}

/// Request counts by route and status, time to the response headers, and
/// answers some telemetry replicas were missing from.
#[derive(Clone)]
pub struct Metrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    partial: IntCounterVec,
    edge_sources_dropped: IntCounter,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "conduit_http_server_requests_total",
                "HTTP requests to the public API, by route and response status.",
            ),
            &["route", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "conduit_http_server_request_duration_seconds",
                "Time to the response headers of public API requests, by route.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route"],
        )?;
        let partial = IntCounterVec::new(
            Opts::new(
                "conduit_public_api_partial_answers_total",
                "Stat and ListPods answers given without some telemetry replicas, which \
                 failed or did not answer in time, by call.",
            ),
            &["call"],
        )?;
        for call in [
            Route::Stat,
            Route::ListPods,
            Route::ListPodNodes,
            Route::StatSummary,
            Route::Edges,
        ] {
            partial.with_label_values(&[call.name()]);
        }
        let edge_sources_dropped = IntCounter::new(
            "conduit_public_api_edges_sources_dropped_total",
            "Sources left out of Edges answers past the per-answer cap (the busiest are kept).",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(partial.clone()))?;
        registry.register(Box::new(edge_sources_dropped.clone()))?;
        Ok(Self {
            requests,
            duration,
            partial,
            edge_sources_dropped,
        })
    }

    fn observe(&self, route: Option<Route>, status: StatusCode, started: Instant) {
        let route = Route::label(route);
        self.requests
            .with_label_values(&[route, status.as_str()])
            .inc();
        self.duration
            .with_label_values(&[route])
            .observe(started.elapsed().as_secs_f64());
    }
}

/// What every request needs: the upstream channels and where they point.
pub struct Api {
    pub telemetry: Telemetry,
    pub tap: super::Upstream,
    pub tap_addr: String,
    pub metrics: Metrics,
    pub shutdown: Shutdown,
}

#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("method {0} not allowed: the public API takes POST")]
    MethodNotAllowed(Method),
    #[error("no API call at {0}")]
    NotFound(String),
    #[error(transparent)]
    UnsupportedType(#[from] UnsupportedType),
    #[error("request body over {MAX_REQUEST_BYTES} bytes")]
    TooLarge,
    #[error("cannot read the request body: {0}")]
    Body(String),
    #[error("undecodable request body: {0}")]
    Undecodable(CodecError),
    #[error("{0}")]
    BadRequest(StatError),
    #[error("{0}")]
    Invalid(String),
    #[error("{upstream} at {addr}: {}: {}", code_name(.status.code()), one_line(.status.message()))]
    Upstream {
        upstream: &'static str,
        addr: String,
        status: tonic::Status,
    },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("cannot encode the response: {0}")]
    Encode(CodecError),
}

fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
}

/// A message on one line, for a plain-text body a CLI prints as is.
pub(super) fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        "(no message)".to_string()
    } else {
        line
    }
}

/// The HTTP status of an upstream gRPC failure: the caller's mistake stays
/// the caller's (400, or 404 for a target that does not exist), an upstream that cannot be reached or answer in time
/// is 503/504, anything else is the contract's 500.
pub fn http_status(code: tonic::Code) -> StatusCode {
    match code {
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange => StatusCode::BAD_REQUEST,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        tonic::Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(_) | Self::Undecodable(_) | Self::BadRequest(_) | Self::Invalid(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Upstream { status, .. } => http_status(status.code()),
            Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, %status, "API call failed");
        } else {
            tracing::debug!(error = %self, %status, "API request refused");
        }
        let mut rsp = (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{self}\n"),
        )
            .into_response();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            rsp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        rsp
    }
}

pub fn router(api: Arc<Api>) -> Router {
    Router::new().fallback(handle).with_state(api)
}

async fn handle(State(api): State<Arc<Api>>, req: Request) -> Response {
    let started = Instant::now();
    let route = Route::of(req.uri().path());
    let rsp = match dispatch(&api, route, req).await {
        Ok(rsp) => rsp,
        Err(error) => error.into_response(),
    };
    api.metrics.observe(route, rsp.status(), started);
    rsp
}

async fn dispatch(api: &Api, route: Option<Route>, req: Request) -> Result<Response, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed(req.method().clone()));
    }
    let route = route.ok_or_else(|| ApiError::NotFound(req.uri().path().to_string()))?;
    let encoding = Encoding::from_content_type(
        req.headers()
            .get(header::CONTENT_TYPE)
            .map(HeaderValue::as_bytes),
    )?;
    let body = read_body(req.into_body()).await?;
    match route {
        Route::Version => {
            let _: Empty = decode(encoding, &body)?;
            unary(encoding, &super::version_info())
        }
        Route::Stat => {
            let request: MetricRequest = decode(encoding, &body)?;
            let answer = api.telemetry.stat(request).await;
            api.merged(route, encoding, answer)
        }
        Route::ListPods => {
            let _: Empty = decode(encoding, &body)?;
            let answer = api.telemetry.list_pods().await;
            api.merged(route, encoding, answer)
        }
        Route::ListPodNodes => {
            let _: Empty = decode(encoding, &body)?;
            let answer = api.telemetry.list_pod_nodes().await;
            api.merged(route, encoding, answer)
        }
        Route::Tap => {
            let request: TapRequest = decode(encoding, &body)?;
            tap(api, encoding, request).await
        }
        Route::StatSummary => {
            let request: StatSummaryRequest = decode(encoding, &body)?;
            let answer = super::summary::stat_summary(&api.telemetry, request).await;
            api.merged(route, encoding, answer)
        }
        Route::Edges => {
            let request: EdgesRequest = decode(encoding, &body)?;
            let dropped = &api.metrics.edge_sources_dropped;
            let answer = super::summary::edges(&api.telemetry, request, dropped).await;
            api.merged(route, encoding, answer)
        }
        Route::Routes => {
            let request: RoutesRequest = decode(encoding, &body)?;
            let answer = super::summary::routes(&api.telemetry, request).await;
            api.merged(route, encoding, answer)
        }
        Route::Health => {
            let _: HealthRequest = decode(encoding, &body)?;
            let health = super::summary::health(&api.telemetry, api.tap.clone(), &api.tap_addr);
            unary(encoding, &health.await)
        }
        Route::LatencyDistribution => {
            let request: LatencyDistributionRequest = decode(encoding, &body)?;
            let answer = latency_distribution(api, request).await?;
            api.merged(route, encoding, Ok(answer))
        }
    }
}

impl Api {
    /// The answer of the telemetry replicas. The body is the message alone,
    /// as from one replica; replicas missing from it are named in the
    /// `Conduit-Partial` header (the wire's messages have no field for it)
    /// and counted.
    fn merged<M: JsonForm>(
        &self,
        route: Route,
        encoding: Encoding,
        answer: Result<Answer<M>, CallError>,
    ) -> Result<Response, ApiError> {
        let answer = answer.map_err(|error| match error {
            CallError::Upstream(Failure { addr, status }) => ApiError::Upstream {
                upstream: "telemetry",
                addr,
                status,
            },
            CallError::Request(error) => ApiError::BadRequest(error),
        })?;
        let mut rsp = unary(encoding, &answer.message)?;
        if let Some(partial) = answer.partial {
            let value = partial.header_value();
            tracing::debug!(call = route.name(), missing = %value, "partial answer");
            self.metrics
                .partial
                .with_label_values(&[route.name()])
                .inc();
            if let Ok(value) = HeaderValue::from_str(&value) {
                rsp.headers_mut().insert(http_api::PARTIAL_HEADER, value);
            }
        }
        Ok(rsp)
    }

    fn tap_error(&self, status: tonic::Status) -> ApiError {
        ApiError::Upstream {
            upstream: "tap",
            addr: self.tap_addr.clone(),
            status,
        }
    }
}

/// Longest `namespace/name` a LatencyDistribution names: Kubernetes'
/// 63-byte namespace and 253-byte name, and the slash.
const MAX_DEPLOYMENT_BYTES: usize = 63 + 1 + 253;

/// The exact latency histogram of one deployment's inbound responses, over
/// the window (read as Stat reads it, so the percentiles agree with Stat's)
/// and per Stat step of it, from every replica's embedded store merged.
async fn latency_distribution(
    api: &Api,
    request: LatencyDistributionRequest,
) -> Result<Answer<LatencyDistributionResponse>, ApiError> {
    let deployment = request.deployment.trim();
    let well_formed = deployment.len() <= MAX_DEPLOYMENT_BYTES
        && matches!(deployment.split_once('/'), Some((ns, name))
            if !ns.is_empty() && !name.is_empty() && !name.contains('/'));
    if !well_formed {
        return Err(ApiError::Invalid(format!(
            "deployment {:?} is not namespace/name",
            one_line(&request.deployment)
        )));
    }
    let ask = |summarize| MetricRequest {
        metrics: vec![MetricName::Latency as i32],
        window: request.window,
        group_by: AggregationType::TargetDeploy as i32,
        filter_by: Some(MetricMetadata {
            target_deploy: deployment.to_string(),
            ..MetricMetadata::default()
        }),
        summarize,
    };
    let (whole, steps) = tokio::join!(
        api.telemetry.windows(ask(true)),
        api.telemetry.windows(ask(false))
    );
    let upstream = |error| match error {
        CallError::Upstream(Failure { addr, status }) => ApiError::Upstream {
            upstream: "telemetry",
            addr,
            status,
        },
        CallError::Request(error) => ApiError::BadRequest(error),
    };
    let (whole, steps) = match (whole, steps) {
        (Ok(whole), Ok(steps)) => (whole, steps),
        // Telemetry answers Stat from Prometheus, which keeps no exact
        // histograms: said so (`exact` false), not an error.
        (Err(CallError::Request(StatError::Unsupported(_))), _)
        | (_, Err(CallError::Request(StatError::Unsupported(_)))) => {
            return Ok(Answer {
                message: LatencyDistributionResponse::default(),
                partial: None,
            });
        }
        (whole, steps) => (whole.map_err(upstream)?, steps.map_err(upstream)?),
    };
    let partial = whole.partial.or(steps.partial);
    let (whole, steps) = (whole.message, steps.message);
    let hist = whole
        .groups
        .get(deployment)
        .and_then(|g| g.points.first())
        .map(|t| t.latency.clone())
        .unwrap_or_default();
    let percentile = |q| hist.quantile(q).map_or(0, round_ms);
    let empty = Group::empty(steps.point_ends_ms.len());
    let group = steps.groups.get(deployment).unwrap_or(&empty);
    let slots = steps
        .point_ends_ms
        .iter()
        .zip(&group.points)
        .map(|(&end, t)| LatencySlot {
            end_ms: i64::try_from(end).unwrap_or(i64::MAX),
            count: t.latency.count(),
            buckets: latency_buckets(&t.latency),
        })
        .collect();
    Ok(Answer {
        message: LatencyDistributionResponse {
            exact: true,
            count: hist.count(),
            buckets: latency_buckets(&hist),
            p50_ms: percentile(0.50),
            p95_ms: percentile(0.95),
            p99_ms: percentile(0.99),
            slots,
        },
        partial,
    })
}

/// A histogram's non-empty buckets in milliseconds (the store counts tenths).
fn latency_buckets(hist: &SparseHist) -> Vec<LatencyBucket> {
    hist.buckets()
        .map(|(idx, count)| {
            let (low, width) = bucket_range(idx);
            LatencyBucket {
                lower_ms: low as f64 / 10.0,
                upper_ms: (low + width) as f64 / 10.0,
                count,
            }
        })
        .collect()
}

async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(ApiError::TooLarge),
        Err(error) => Err(ApiError::Body(error.to_string())),
    }
}

fn decode<M: JsonForm>(encoding: Encoding, body: &[u8]) -> Result<M, ApiError> {
    http_api::decode(encoding, body).map_err(ApiError::Undecodable)
}

fn ok_response(encoding: Encoding, body: Body) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response()
}

fn unary<M: JsonForm>(encoding: Encoding, msg: &M) -> Result<Response, ApiError> {
    let bytes = http_api::encode(encoding, msg).map_err(ApiError::Encode)?;
    Ok(ok_response(encoding, Body::from(bytes)))
}

/// Streams the tap component's events, one frame per event, each sent as it
/// arrives. An error before the first event is the response's status; after
/// it the response is cut short (no final chunk, so a client can tell a
/// broken stream from a finished one) and the error is logged. The stream
/// ends when the client goes away (dropping the upstream call) or at
/// shutdown.
async fn tap(api: &Api, encoding: Encoding, request: TapRequest) -> Result<Response, ApiError> {
    let call = async {
        let mut events = TapClient::new(api.tap.clone())
            .tap(request)
            .await
            .map_err(|status| api.tap_error(status))?
            .into_inner();
        let first = events
            .message()
            .await
            .map_err(|status| api.tap_error(status))?;
        Ok::<_, ApiError>((first, events))
    };
    let (first, events) = tokio::select! {
        result = call => result?,
        _ = api.shutdown.clone().signaled() => return Err(ApiError::ShuttingDown),
    };
    let Some(first) = first else {
        return Ok(ok_response(encoding, Body::empty()));
    };
    let first = http_api::encode(encoding, &first).map_err(ApiError::Encode)?;
    let tap_addr = api.tap_addr.clone();
    let rest = futures::stream::unfold(Some(events), move |events| {
        let tap_addr = tap_addr.clone();
        async move {
            let mut events = events?;
            let failed = match events.message().await {
                Ok(None) => return None,
                Ok(Some(event)) => match http_api::encode::<TapEvent>(encoding, &event) {
                    Ok(frame) => return Some((Ok(frame), Some(events))),
                    Err(error) => error.to_string(),
                },
                Err(status) => format!("{}: {}", code_name(status.code()), status.message()),
            };
            tracing::warn!(tap = %tap_addr, error = %failed, "tap stream broken: response cut");
            // hyper drops what it has buffered when a body fails; one
            // pending poll first lets it flush the frames already sent.
            tokio::task::yield_now().await;
            Some((Err(std::io::Error::other(failed)), None))
        }
    });
    let frames = futures::stream::once(async move { Ok(first) })
        .chain(rest)
        .take_until(api.shutdown.clone().signaled());
    Ok(ok_response(encoding, Body::from_stream(frames)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_codes_map_to_http() {
        assert_eq!(http_status(tonic::Code::InvalidArgument), 400);
        assert_eq!(http_status(tonic::Code::NotFound), 404);
        assert_eq!(http_status(tonic::Code::Unavailable), 503);
        assert_eq!(http_status(tonic::Code::DeadlineExceeded), 504);
        assert_eq!(http_status(tonic::Code::FailedPrecondition), 500);
        assert_eq!(http_status(tonic::Code::Internal), 500);
    }

    #[test]
    fn messages_are_one_line() {
        let e = ApiError::Upstream {
            upstream: "telemetry",
            addr: "127.0.0.1:1".into(),
            status: tonic::Status::unavailable("tcp connect error\n  refused"),
        };
        assert_eq!(
            e.to_string(),
            "telemetry at 127.0.0.1:1: Unavailable: tcp connect error refused"
        );
    }
}
