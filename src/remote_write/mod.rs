//! Pushing the aggregated series to Prometheus with remote write 1.0.
//!
//! Every `-remote-write-interval` the collector walks the store
//! ([`crate::ingest::walk`]) and the component's registry ([`families`]) at
//! one timestamp, and the [`encode::Encoder`] turns the samples into
//! snappy-compressed `WriteRequest` bodies of at most
//! [`MAX_SAMPLES_PER_REQUEST`] samples. The bodies go into the [`queue`],
//! bounded by samples (oldest dropped first), one generation per collection;
//! up to [`MAX_SHARDS`] shards ([`send`]) send them concurrently, retrying
//! 5xx, 429 and network errors with capped exponential backoff and never
//! retrying other 4xx. The shard count follows how long the receiver takes
//! to answer. On shutdown the collector takes one last collection and the
//! shards flush the queue within [`FLUSH_TIMEOUT`].
//!
//! Every series carries the `-remote-write-external-label`s too
//! ([`external`]), so replicas pushing to one receiver stay apart.
//!
//! Scrape and push read the same store, so both expose the same values.
//! Imports neither tonic nor kube.

pub mod encode;
pub mod external;
pub mod families;
pub mod metrics;
pub mod queue;
pub mod send;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderName, HeaderValue, Uri};
use prometheus::Registry;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::ingest::Ingester;
pub use encode::{Batch, Encoder};
pub use external::{ExternalLabels, parse as parse_external_label};
pub use metrics::Metrics;
use queue::Queue;
use send::{Backoff, Shared, Target};

/// Default `-remote-write-interval`, Prometheus's usual scrape interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Samples per request: Prometheus's own `max_samples_per_send` (since
/// 2.44); about 40 kB after snappy for mesh series, far below any
/// receiver's body limit.
pub const MAX_SAMPLES_PER_REQUEST: usize = 2_000;

/// Samples waiting to be sent: several collections of a typical mesh, and
/// ~80 MB at the ~20 bytes a sample measured after snappy
/// (`benches/remote_write.rs`), whatever the outage. One collection at the
/// default `-max-series` can be ~15M samples (a 26-bucket histogram per
/// label set); past the limit its oldest batches are dropped.
pub const MAX_QUEUE_SAMPLES: usize = 4_000_000;

/// Most concurrent senders: at ~20 ms a request, 16 carry 1.6M samples/s,
/// a full collection at the default series cap (~15M samples) every 10 s;
/// few enough not to flood a receiver that is merely slow.
pub const MAX_SHARDS: usize = 16;

/// Shards are added until they are busy at most this fraction of the
/// interval, so one slow answer does not make a collection late.
const TARGET_BUSY_FRACTION: f64 = 0.5;

/// First retry delay (Prometheus's `min_backoff`).
pub const MIN_BACKOFF: Duration = Duration::from_millis(30);

/// Longest retry delay (Prometheus's `max_backoff`); a shorter interval caps
/// it further, since waiting past the next collection buys nothing.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One request's bound (Prometheus's `remote_timeout`); a request that takes
/// longer is retried like a network error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The final flush's bound on shutdown: well inside Kubernetes' default
/// 30 s termination grace, long enough for a few retries.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct Config {
    pub url: Uri,
    pub interval: Duration,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Labels every pushed series carries.
    pub external_labels: ExternalLabels,
    pub max_samples_per_request: usize,
    pub queue_samples: usize,
    pub max_shards: usize,
    pub request_timeout: Duration,
    pub flush_timeout: Duration,
}

impl Config {
    /// The flags' settings with every other knob at its default.
    pub fn new(url: Uri, interval: Duration, headers: Vec<(HeaderName, HeaderValue)>) -> Self {
        Self {
            url,
            interval,
            headers,
            external_labels: ExternalLabels::default(),
            max_samples_per_request: MAX_SAMPLES_PER_REQUEST,
            queue_samples: MAX_QUEUE_SAMPLES,
            max_shards: MAX_SHARDS,
            request_timeout: REQUEST_TIMEOUT,
            flush_timeout: FLUSH_TIMEOUT,
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            min: MIN_BACKOFF,
            max: MAX_BACKOFF.min(self.interval).max(MIN_BACKOFF),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Target(#[from] send::TargetError),
    #[error("-remote-write-interval must be above zero")]
    Interval,
    #[error("registering remote-write metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("-remote-write-external-label: {0}")]
    ExternalLabel(#[from] external::Error),
}

/// Parses `-remote-write-url`.
pub fn parse_url(s: &str) -> Result<Uri, String> {
    let uri: Uri = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err(format!(
            "{s:?}: expected http://HOST[:PORT]/PATH or https://…"
        )),
    }
}

/// Parses one `-remote-write-header K=V`.
pub fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))?;
    let name = HeaderName::try_from(name.trim()).map_err(|e| format!("{name:?}: {e}"))?;
    if send::RESERVED_HEADERS.contains(&name.as_str()) {
        return Err(format!(
            "{name}: set by the remote-write protocol, cannot be replaced"
        ));
    }
    let value = HeaderValue::try_from(value).map_err(|e| format!("{name}: {e}"))?;
    Ok((name, value))
}

/// Remote write, configured and registered, not yet running.
pub struct RemoteWrite {
    config: Config,
    shared: Arc<Shared>,
    registry: Registry,
}

impl RemoteWrite {
    /// Registers the metrics on `registry`, which is also what is pushed
    /// besides the store.
    pub fn new(config: Config, registry: &Registry) -> Result<Self, Error> {
        if config.interval.is_zero() {
            return Err(Error::Interval);
        }
        let target = Target::new(config.url.clone(), &config.headers, config.request_timeout)?;
        let metrics = Metrics::register(registry)?;
        config.external_labels.check_families(&registry.gather())?;
        metrics.queue_limit.set(config.queue_samples as i64);
        metrics.shards.set(1);
        let queue = Queue::new(config.queue_samples, 1, metrics.queue_samples.clone());
        Ok(Self {
            shared: Arc::new(Shared {
                queue,
                target,
                metrics,
                backoff: config.backoff(),
                busy_nanos: AtomicU64::new(0),
                failing: AtomicBool::new(false),
            }),
            config,
            registry: registry.clone(),
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Starts collecting and sending.
    pub fn start(self, ingester: Arc<Ingester>) -> Pusher {
        let (stop, stopped) = oneshot::channel();
        let span = tracing::info_span!("remote_write", url = %self.config.url);
        let task = tokio::spawn(self.run(ingester, stopped).instrument(span));
        Pusher { stop, task }
    }

    async fn run(self, ingester: Arc<Ingester>, mut stopped: oneshot::Receiver<()>) {
        tracing::info!(interval = ?self.config.interval, "pushing");
        let mut shards = JoinSet::new();
        for index in 0..self.config.max_shards.max(1) {
            shards.spawn(send::shard(self.shared.clone(), index).in_current_span());
        }
        let mut collector = Collector {
            config: &self.config,
            shared: &self.shared,
            registry: &self.registry,
            ingester: &ingester,
            last_timestamp_ms: 0,
            last_collection: Instant::now(),
        };
        let start = tokio::time::Instant::now() + self.config.interval;
        let mut every = tokio::time::interval_at(start, self.config.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => collector.collect().await,
                // Stopped, or the handle was dropped: flush either way.
                _ = &mut stopped => break,
            }
        }

        // The final flush: the last reports, then what is queued.
        collector.collect().await;
        let deadline = Instant::now() + self.config.flush_timeout;
        self.shared.queue.close(deadline);
        let all_done = async { while shards.join_next().await.is_some() {} };
        // Shards stop retrying at the deadline; the slack covers a request
        // that is being cut off.
        let slack = Duration::from_millis(100);
        if tokio::time::timeout_at((deadline + slack).into(), all_done)
            .await
            .is_err()
        {
            shards.abort_all();
        }
        let left = self.shared.queue.clear() as u64;
        self.shared.metrics.dropped.inc_by(left);
        let m = &self.shared.metrics;
        if left > 0 {
            tracing::warn!(
                dropped = left,
                "remote write flush ran out of time; samples dropped"
            );
        }
        tracing::info!(
            sent = m.sent.get(),
            dropped = m.dropped.get(),
            failed = m.failed.get(),
            "remote write stopped"
        );
    }
}

/// The running pusher.
pub struct Pusher {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Pusher {
    /// Takes a last collection, sends what is queued within the flush
    /// timeout, and stops. Dropping the handle does the same in the
    /// background.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "remote write task failed");
        }
    }
}

struct Collector<'a> {
    config: &'a Config,
    shared: &'a Arc<Shared>,
    registry: &'a Registry,
    ingester: &'a Arc<Ingester>,
    last_timestamp_ms: i64,
    last_collection: Instant,
}

impl Collector<'_> {
    async fn collect(&mut self) {
        self.resize_shards();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // Strictly increasing, so no two collections share a timestamp
        // (Prometheus rejects a second, different value at one timestamp).
        let timestamp_ms = now_ms.max(self.last_timestamp_ms + 1);
        self.last_timestamp_ms = timestamp_ms;
        let shared = self.shared.clone();
        let ingester = self.ingester.clone();
        let registry = self.registry.clone();
        let max = self.config.max_samples_per_request;
        let external = self.config.external_labels.clone();
        let collected = tokio::task::spawn_blocking(move || {
            collect(&shared, &ingester, &registry, &external, timestamp_ms, max)
        })
        .await;
        if let Err(error) = collected {
            tracing::error!(%error, "remote write collection failed");
        }
    }

    /// Sizes the shards by the time answered requests took since the last
    /// collection: up at once, down one at a time.
    fn resize_shards(&mut self) {
        let since = std::mem::replace(&mut self.last_collection, Instant::now()).elapsed();
        let busy = Duration::from_nanos(self.shared.busy_nanos.swap(0, Ordering::Relaxed));
        let desired = desired_shards(busy, since, self.config.max_shards);
        let current = self.shared.queue.shards();
        let next = if desired > current {
            desired
        } else {
            desired.max(current.saturating_sub(1)).max(1)
        };
        if next != current {
            tracing::info!(
                from = current,
                to = next,
                ?busy,
                "remote write shards resized"
            );
            self.shared.queue.set_shards(next);
        }
        self.shared.metrics.shards.set(next as i64);
    }
}

/// Shards needed for `busy` time of sending per `window` at the target
/// utilisation, within `1..=max`.
fn desired_shards(busy: Duration, window: Duration, max: usize) -> usize {
    let capacity = window.as_secs_f64() * TARGET_BUSY_FRACTION;
    if capacity <= 0.0 {
        return 1;
    }
    ((busy.as_secs_f64() / capacity).ceil() as usize).clamp(1, max.max(1))
}

/// One collection into the queue as one generation; returns its samples.
fn collect(
    shared: &Shared,
    ingester: &Ingester,
    registry: &Registry,
    external: &ExternalLabels,
    timestamp_ms: i64,
    max_samples: usize,
) -> usize {
    let started = Instant::now();
    let queue = &shared.queue;
    let m = &shared.metrics;
    let mut samples = 0;
    let sink = |batch: Batch| {
        samples += batch.samples;
        m.collected.inc_by(batch.samples as u64);
        m.dropped.inc_by(queue.push(batch) as u64);
    };
    queue.open_generation();
    let mut encoder =
        Encoder::new(timestamp_ms, max_samples, sink).with_external_labels(external.clone());
    // The gauges a scrape refreshes, so both read the same values.
    ingester.refresh_gauges();
    ingester.walk(&mut encoder);
    // Series evicted since the last collection end here, at once.
    ingester.walk_evicted(&mut encoder);
    families::walk(&registry.gather(), &mut encoder);
    encoder.finish();
    queue.close_generation();
    m.collect_seconds.observe(started.elapsed().as_secs_f64());
    tracing::debug!(samples, elapsed = ?started.elapsed(), "collected");
    samples
}

/// Walks the store and a registry into remote-write batches at one
/// timestamp, every series with `external` labels, without a queue
/// (benches and tools).
pub fn encode_all(
    ingester: &Ingester,
    families: &[prometheus::proto::MetricFamily],
    external: &ExternalLabels,
    timestamp_ms: i64,
    max_samples: usize,
    sink: impl FnMut(Batch),
) {
    let mut encoder =
        Encoder::new(timestamp_ms, max_samples, sink).with_external_labels(external.clone());
    ingester.walk(&mut encoder);
    families::walk(families, &mut encoder);
    encoder.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_follow_busy_time() {
        let s = Duration::from_secs;
        assert_eq!(desired_shards(s(0), s(10), 16), 1);
        assert_eq!(desired_shards(s(5), s(10), 16), 1, "busy half the time");
        assert_eq!(desired_shards(s(6), s(10), 16), 2);
        assert_eq!(
            desired_shards(s(40), s(10), 16),
            8,
            "four connections saturated"
        );
        assert_eq!(desired_shards(s(1000), s(10), 16), 16);
        assert_eq!(desired_shards(s(1), Duration::ZERO, 16), 1);
    }

    #[test]
    fn headers_parse_and_protocol_headers_are_reserved() {
        let (n, v) = parse_header("Authorization=Bearer abc=def").unwrap();
        assert_eq!(
            (n.as_str(), v.to_str().unwrap()),
            ("authorization", "Bearer abc=def")
        );
        assert!(parse_header("X-Scope-OrgID=tenant-1").is_ok());
        assert!(parse_header("no-equals").is_err());
        assert!(parse_header("Content-Encoding=gzip").is_err());
        assert!(parse_header("X-Prometheus-Remote-Write-Version=2").is_err());
        assert!(parse_header("bad header=x").is_err());
    }

    #[test]
    fn urls_parse() {
        assert!(parse_url("http://127.0.0.1:9090/api/v1/write").is_ok());
        assert!(parse_url("https://prometheus.example.com/api/v1/write").is_ok());
        assert!(parse_url("127.0.0.1:9090").is_err());
        assert!(parse_url("ftp://example.com/").is_err());
    }

    #[test]
    fn backoff_is_capped_by_the_interval() {
        let url: Uri = "http://127.0.0.1:1/".parse().unwrap();
        let c = Config::new(url.clone(), Duration::from_millis(200), vec![]);
        assert_eq!(c.backoff().max, Duration::from_millis(200));
        let c = Config::new(url, Duration::from_secs(60), vec![]);
        assert_eq!(c.backoff().max, MAX_BACKOFF);
    }
}
