//! The dashboard's only way to the mesh: the public-api calls it makes, passed
//! through to `-api-addr` as they are (method, media type and body in;
//! status, media type and body out), so public-api's own checks and errors
//! reach the browser unchanged. Tap's answer is streamed through frame by
//! frame as it arrives. Our own answers are few: a body over
//! [`MAX_BODY_BYTES`] (413), public-api unreachable (502) or silent (504).

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, BodyStream, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::core::Shutdown;
use crate::core::addr::client_uri;
use crate::proto::http_api;

/// Largest request body passed on: the dashboard's requests are a few
/// hundred bytes, so anything near this is not from it.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long opening a connection to public-api may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long public-api may take to send its response headers: above its own
/// 35 s upstream timeout, so its answer (504 and why) arrives rather than
/// ours. A Tap's headers come with its first event.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(40);

/// The public-api calls the dashboard may make, by the name after
/// `/api/v1/`: the original four, the summaries the CLI shares with it, and
/// the latency distribution. Anything else is not forwarded (404).
const CALLS: &[&str] = &[
    "Stat",
    "ListPods",
    "Version",
    "Tap",
    "StatSummary",
    "Edges",
    "Routes",
    "Health",
    "LatencyDistribution",
];

/// One of [`CALLS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call(&'static str);

impl Call {
    /// The call named by the path after `/api/v1/`.
    pub fn of(name: &str) -> Option<Self> {
        CALLS.iter().find(|&&c| c == name).map(|&c| Self(c))
    }

    fn path(self) -> String {
        format!("/api/v1/{}", self.0)
    }

    fn is_tap(self) -> bool {
        self.0 == "Tap"
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{0:?} is not a HOST:PORT address")]
    BadAddr(String),
}

/// Why a call got our answer rather than public-api's.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("request body over {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("cannot read the request body: {0}")]
    Body(String),
    #[error("cannot reach the public API at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("the public API at {addr} did not answer within {}s", RESPONSE_TIMEOUT.as_secs())]
    Timeout { addr: String },
    #[error("the dashboard is shutting down")]
    ShuttingDown,
}

impl ForwardError {
    fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(_) => StatusCode::BAD_REQUEST,
            Self::Unreachable { .. } => StatusCode::BAD_GATEWAY,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ForwardError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, %status, "API call failed");
        }
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{self}\n"),
        )
            .into_response()
    }
}

/// public-api as the dashboard reaches it.
pub struct Upstream {
    addr: String,
    authority: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Upstream {
    pub fn new(addr: &str) -> Result<Self, UpstreamError> {
        let bad = || UpstreamError::BadAddr(addr.to_string());
        let uri: http::Uri = client_uri(addr).parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") {
            return Err(bad());
        }
        let authority = uri.authority().ok_or_else(bad)?.to_string();
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        // Tap events are small and must not wait for Nagle.
        connector.set_nodelay(true);
        Ok(Self {
            addr: addr.to_string(),
            authority,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Passes one call through; the response body is streamed and ends at
    /// shutdown.
    pub async fn forward(&self, call: Call, req: Request, shutdown: &Shutdown) -> Response {
        match self.try_forward(call, req, shutdown).await {
            Ok(rsp) => rsp,
            Err(error) => error.into_response(),
        }
    }

    async fn try_forward(
        &self,
        call: Call,
        req: Request,
        shutdown: &Shutdown,
    ) -> Result<Response, ForwardError> {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<LengthLimitError>() => return Err(ForwardError::TooLarge),
            Err(error) => return Err(ForwardError::Body(error.to_string())),
        };
        let mut upstream = http::Request::builder().method(parts.method).uri(format!(
            "http://{}{}",
            self.authority,
            call.path()
        ));
        if let Some(content_type) = parts.headers.get(header::CONTENT_TYPE) {
            upstream = upstream.header(header::CONTENT_TYPE, content_type);
        }
        let upstream = upstream
            .body(Full::new(body))
            .expect("the method came from a parsed request and the URI from a checked authority");
        let request = self.client.request(upstream);
        let answered = if call.is_tap() {
            // A tap's headers come with its first event, which a quiet
            // target may not send for a long time: only the browser leaving
            // (dropping this) or shutdown ends the wait.
            tokio::select! {
                answered = request => answered,
                () = shutdown.clone().signaled() => return Err(ForwardError::ShuttingDown),
            }
        } else {
            tokio::time::timeout(RESPONSE_TIMEOUT, request)
                .await
                .map_err(|_| ForwardError::Timeout {
                    addr: self.addr.clone(),
                })?
        };
        let rsp = answered.map_err(|error| ForwardError::Unreachable {
            addr: self.addr.clone(),
            reason: root_cause(&error),
        })?;
        let (parts, body) = rsp.into_parts();
        // Only data frames are passed on; a body that fails midway (a Tap
        // cut short upstream) fails ours the same way, so the browser sees
        // the stream end without its final chunk.
        let frames = BodyStream::new(body)
            .filter_map(|frame| async move {
                match frame {
                    Ok(frame) => frame.into_data().ok().map(Ok),
                    Err(error) => Some(Err(error)),
                }
            })
            .take_until(shutdown.clone().signaled());
        let mut out = Response::new(Body::from_stream(frames));
        *out.status_mut() = parts.status;
        // `conduit-partial` says some telemetry replicas are missing from
        // the answer; the page says so.
        let partial = header::HeaderName::from_static(http_api::PARTIAL_HEADER);
        for name in [header::CONTENT_TYPE, header::ALLOW, partial] {
            if let Some(value) = parts.headers.get(&name) {
                out.headers_mut().insert(name, value.clone());
            }
        }
        out.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(out)
    }
}

/// The innermost cause: "Connection refused (os error 111)" says more than
/// "client error (Connect)".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_dashboards_calls_are_forwarded() {
        for (name, path) in [
            ("Stat", http_api::STAT_PATH),
            ("ListPods", http_api::LIST_PODS_PATH),
            ("Version", http_api::VERSION_PATH),
            ("Tap", http_api::TAP_PATH),
            ("LatencyDistribution", http_api::LATENCY_DISTRIBUTION_PATH),
            ("Edges", "/api/v1/Edges"),
        ] {
            assert_eq!(Call::of(name).map(Call::path).as_deref(), Some(path));
        }
        assert!(Call::of("Tap").unwrap().is_tap());
        assert_eq!(Call::of("stat"), None);
        assert_eq!(Call::of("Stat/x"), None);
    }

    #[test]
    fn api_addresses_in_the_originals_spelling() {
        assert_eq!(
            Upstream::new("api.conduit.svc.cluster.local:8085")
                .unwrap()
                .authority,
            "api.conduit.svc.cluster.local:8085"
        );
        assert_eq!(Upstream::new(":8085").unwrap().authority, "127.0.0.1:8085");
        assert!(Upstream::new("not an address").is_err());
    }
}
