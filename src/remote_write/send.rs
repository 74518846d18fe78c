//! One request to the receiver and what its answer means, and the loop of
//! one shard: take a batch, send it until it is delivered, rejected or given
//! up on, hand it back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::metrics::Metrics;
use super::queue::{Queue, Taken};
use crate::core::error_chain;

pub const SNAPPY: &str = "snappy";
pub const PROTOBUF: &str = "application/x-protobuf";
pub const VERSION_HEADER: &str = "x-prometheus-remote-write-version";
pub const VERSION: &str = "0.1.0";
pub const AGENT: &str = concat!("conduit/", env!("CARGO_PKG_VERSION"));

/// Headers the protocol sets; `-remote-write-header` may not replace them.
pub const RESERVED_HEADERS: &[&str] = &[
    "content-encoding",
    "content-type",
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    VERSION_HEADER,
];

/// Most bytes of a response body read: enough for an error message, and a
/// misbehaving receiver cannot make us buffer more.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// A connection attempt to a receiver that does not answer fails after
/// this long (and is retried like any network error).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest `Retry-After` honoured: a receiver asking for more is
/// retried after this long (waiting past it buys nothing; the queue drops
/// the oldest collections meanwhile, as it does during any outage).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Idle connections are kept this long: several intervals at the default
/// 10 s, so every shard's connection is reused between collections.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// What an answer (or its absence) means for the batch (remote write 1.0:
/// retry 5xx and 429, never retry other 4xx).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Retry,
    Rejected,
}

pub fn classify(status: StatusCode) -> Outcome {
    if status.is_success() {
        Outcome::Sent
    } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Outcome::Retry
    } else {
        Outcome::Rejected
    }
}

/// One request's result.
#[derive(Debug)]
pub struct Attempt {
    /// The `code` label: the status, or `error` / `timeout`.
    pub code: String,
    pub outcome: Outcome,
    /// The first line of the response body, or the error.
    pub detail: String,
    /// How long a 429 or 503 answer asked us to wait (`Retry-After`),
    /// capped at [`MAX_RETRY_AFTER`].
    pub retry_after: Option<Duration>,
}

/// A `Retry-After` value: delay-seconds or an HTTP date (RFC 9110 §10.2.3),
/// as a wait from `now`, capped at [`MAX_RETRY_AFTER`]; `None` when it is
/// neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The wait before a retry: the backoff with equal jitter (between half of
/// it and all of it, so shards and replicas that failed together do not
/// retry in step), and never less than the receiver asked for.
pub fn retry_wait(
    backoff: Duration,
    retry_after: Option<Duration>,
    rng: &mut fastrand::Rng,
) -> Duration {
    let half = backoff / 2;
    let jittered = half + half.mul_f64(rng.f64());
    retry_after.map_or(jittered, |asked| asked.max(jittered))
}

enum Client {
    Http(LegacyClient<HttpConnector, Full<Bytes>>),
    Https(LegacyClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>),
}

/// The receiver: where to send, with which headers, over which client.
pub struct Target {
    url: Uri,
    headers: HeaderMap,
    client: Client,
    request_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("-remote-write-url {0:?}: expected http://HOST[:PORT]/PATH or https://…")]
    Url(String),
    #[error("-remote-write-url {url}: no CA certificates found for https: {error}")]
    Roots { url: String, error: std::io::Error },
}

impl Target {
    pub fn new(
        url: Uri,
        extra: &[(HeaderName, HeaderValue)],
        request_timeout: Duration,
    ) -> Result<Self, TargetError> {
        if url.authority().is_none() {
            return Err(TargetError::Url(url.to_string()));
        }
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let mut builder = LegacyClient::builder(TokioExecutor::new());
        builder.pool_idle_timeout(POOL_IDLE_TIMEOUT);
        let client = match url.scheme_str() {
            Some("http") => Client::Http(builder.build(http)),
            Some("https") => {
                http.enforce_http(false);
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_native_roots()
                    .map_err(|error| TargetError::Roots {
                        url: url.to_string(),
                        error,
                    })?
                    .https_only()
                    .enable_http1()
                    .wrap_connector(http);
                Client::Https(builder.build(https))
            }
            _ => return Err(TargetError::Url(url.to_string())),
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(SNAPPY));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
        headers.insert(VERSION_HEADER, HeaderValue::from_static(VERSION));
        headers.insert(USER_AGENT, HeaderValue::from_static(AGENT));
        for (name, value) in extra {
            headers.insert(name.clone(), value.clone());
        }
        Ok(Self {
            url,
            headers,
            client,
            request_timeout,
        })
    }

    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// Sends one body and reads the answer.
    pub async fn send(&self, body: Bytes) -> Attempt {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.url.clone();
        *request.headers_mut() = self.headers.clone();
        let exchange = async {
            let response = match &self.client {
                Client::Http(c) => c.request(request).await,
                Client::Https(c) => c.request(request).await,
            }
            .map_err(|e| error_chain(&e))?;
            let status = response.status();
            let retry_after = match status {
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now())),
                _ => None,
            };
            // Read the body so the connection can be reused; keep its start.
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, String>((status, retry_after, body))
        };
        match tokio::time::timeout(self.request_timeout, exchange).await {
            Err(_) => Attempt {
                code: "timeout".into(),
                outcome: Outcome::Retry,
                detail: format!("no answer within {:?}", self.request_timeout),
                retry_after: None,
            },
            Ok(Err(detail)) => Attempt {
                code: "error".into(),
                outcome: Outcome::Retry,
                detail,
                retry_after: None,
            },
            Ok(Ok((status, retry_after, body))) => Attempt {
                code: status.as_str().to_string(),
                outcome: classify(status),
                detail: first_line(&body),
                retry_after,
            },
        }
    }
}

fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.lines()
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .take(512)
        .collect()
}

/// Retry delays: doubling from `min`, capped at `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn next(&self, current: Duration) -> Duration {
        (current * 2).clamp(self.min, self.max)
    }
}

/// What the shards share.
pub struct Shared {
    pub queue: Queue,
    pub target: Target,
    pub metrics: Metrics,
    pub backoff: Backoff,
    /// Nanoseconds shards spent on answered requests since the last
    /// collection (what the shard count is sized by).
    pub busy_nanos: AtomicU64,
    /// Whether the last attempt failed, so an outage is logged once at WARN
    /// and its end once at INFO rather than every retry.
    pub failing: AtomicBool,
}

/// One shard: sends batches until the queue is closed and empty.
pub async fn shard(shared: Arc<Shared>, index: usize) {
    while let Some(taken) = shared.queue.take(index).await {
        deliver(&shared, &taken).await;
        shared.queue.done(&taken);
    }
}

async fn deliver(shared: &Shared, taken: &Taken) {
    let m = &shared.metrics;
    let samples = taken.batch.samples as u64;
    let mut backoff = shared.backoff.min;
    let mut rng = fastrand::Rng::new();
    loop {
        let deadline = shared.queue.deadline();
        let started = Instant::now();
        let send = shared.target.send(taken.batch.body.clone());
        let attempt = match deadline {
            None => send.await,
            Some(d) => match tokio::time::timeout_at(d.into(), send).await {
                Ok(a) => a,
                Err(_) => {
                    m.dropped.inc_by(samples);
                    return;
                }
            },
        };
        m.requests.with_label_values(&[attempt.code.as_str()]).inc();
        if attempt.outcome != Outcome::Retry {
            shared
                .busy_nanos
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            if shared.failing.swap(false, Ordering::Relaxed) {
                tracing::info!(url = %shared.target.url(), "remote write is delivering again");
            }
        }
        match attempt.outcome {
            Outcome::Sent => {
                m.sent.inc_by(samples);
                m.sent_bytes.inc_by(taken.batch.body.len() as u64);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                m.last_success.set(now);
                return;
            }
            Outcome::Rejected => {
                m.failed.inc_by(samples);
                tracing::warn!(
                    url = %shared.target.url(),
                    code = %attempt.code,
                    samples,
                    response = %attempt.detail,
                    "remote write receiver rejected a batch; it is not retried",
                );
                return;
            }
            Outcome::Retry => {}
        }
        if attempt.retry_after.is_some() {
            m.retry_after.inc();
        }
        let wait = retry_wait(backoff, attempt.retry_after, &mut rng);
        let wake = Instant::now() + wait;
        if shared.queue.is_abandoned(taken.generation) || deadline.is_some_and(|d| wake >= d) {
            m.dropped.inc_by(samples);
            return;
        }
        m.retried.inc_by(samples);
        if shared.failing.swap(true, Ordering::Relaxed) {
            tracing::debug!(code = %attempt.code, error = %attempt.detail, ?backoff, "remote write retry");
        } else {
            tracing::warn!(
                url = %shared.target.url(),
                code = %attempt.code,
                error = %attempt.detail,
                "remote write failing; retrying with backoff",
            );
        }
        tokio::time::sleep(wait).await;
        if shared.queue.is_abandoned(taken.generation) {
            m.dropped.inc_by(samples);
            return;
        }
        backoff = shared.backoff.next(backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_on_5xx_and_429_only() {
        assert_eq!(classify(StatusCode::NO_CONTENT), Outcome::Sent);
        assert_eq!(classify(StatusCode::OK), Outcome::Sent);
        assert_eq!(classify(StatusCode::INTERNAL_SERVER_ERROR), Outcome::Retry);
        assert_eq!(classify(StatusCode::SERVICE_UNAVAILABLE), Outcome::Retry);
        assert_eq!(classify(StatusCode::TOO_MANY_REQUESTS), Outcome::Retry);
        assert_eq!(classify(StatusCode::BAD_REQUEST), Outcome::Rejected);
        assert_eq!(classify(StatusCode::UNAUTHORIZED), Outcome::Rejected);
        assert_eq!(classify(StatusCode::NOT_FOUND), Outcome::Rejected);
        assert_eq!(classify(StatusCode::MOVED_PERMANENTLY), Outcome::Rejected);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff {
            min: Duration::from_millis(30),
            max: Duration::from_millis(200),
        };
        let mut d = b.min;
        let mut seen = vec![d];
        for _ in 0..5 {
            d = b.next(d);
            seen.push(d);
        }
        let ms: Vec<u128> = seen.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [30, 60, 120, 200, 200, 200]);
    }

    #[test]
    fn retry_after_is_seconds_or_a_date_and_capped() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn retries_are_jittered_and_wait_at_least_what_was_asked() {
        let mut rng = fastrand::Rng::with_seed(7);
        let backoff = Duration::from_millis(400);
        let waits: Vec<Duration> = (0..200)
            .map(|_| retry_wait(backoff, None, &mut rng))
            .collect();
        assert!(waits.iter().all(|w| *w >= backoff / 2 && *w <= backoff));
        let (min, max) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
        assert!(*max - *min > backoff / 4, "spread: {min:?}..{max:?}");
        let asked = Some(Duration::from_secs(3));
        assert_eq!(retry_wait(backoff, asked, &mut rng), Duration::from_secs(3));
        let small = Some(Duration::from_millis(1));
        assert!(retry_wait(backoff, small, &mut rng) >= backoff / 2);
    }

    #[test]
    fn first_line_of_an_error_body() {
        assert_eq!(
            first_line(b"out of order sample\nmore\n"),
            "out of order sample"
        );
        assert_eq!(first_line(b""), "");
    }

    #[test]
    fn urls_must_be_http_or_https_with_a_host() {
        let t = |u: &str| Target::new(u.parse().unwrap(), &[], Duration::from_secs(1));
        assert!(t("http://127.0.0.1:9090/api/v1/write").is_ok());
        assert!(t("ftp://example.com/").is_err());
        assert!(t("/api/v1/write").is_err());
        // https builds its TLS config here (ring is the only provider), or
        // says the system has no CA roots.
        match t("https://prometheus.example.com/api/v1/write") {
            Ok(_) | Err(TargetError::Roots { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
}
