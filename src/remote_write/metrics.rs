//! Remote write's own metrics (`conduit_remote_write_*`), registered on the
//! component's registry at start (so they are scraped and pushed too).

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Collection time buckets (seconds): a small mesh is walked and encoded in
/// a millisecond, the default series cap in a few seconds.
const COLLECT_BUCKETS: &[f64] = &[0.001, 0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0, 30.0];

#[derive(Clone, Debug)]
pub struct Metrics {
    /// Delivered: the receiver answered 2xx.
    pub sent: IntCounter,
    /// In a request that failed with 5xx, 429 or no answer, and was scheduled
    /// again (counted once per failed attempt).
    pub retried: IntCounter,
    /// Never delivered: the queue was full (oldest first), a retry was
    /// abandoned for newer data, or the final flush ran out of time.
    pub dropped: IntCounter,
    /// Rejected by the receiver with a status that must not be retried.
    pub failed: IntCounter,
    pub collected: IntCounter,
    /// Requests by HTTP status, or `error` / `timeout` without one.
    pub requests: IntCounterVec,
    pub sent_bytes: IntCounter,
    pub queue_samples: IntGauge,
    pub queue_limit: IntGauge,
    pub shards: IntGauge,
    pub last_success: Gauge,
    pub collect_seconds: Histogram,
    /// Retryable answers that carried `Retry-After`.
    pub retry_after: IntCounter,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let samples = IntCounterVec::new(
            Opts::new(
                "conduit_remote_write_samples_total",
                "Samples by what became of them: sent (2xx), retried (a retryable failure, per attempt), dropped (queue full, abandoned retry or flush timeout), failed (rejected by the receiver).",
            ),
            &["result"],
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "conduit_remote_write_requests_total",
                "Remote-write requests by HTTP status code, or error/timeout when there was no answer.",
            ),
            &["code"],
        )?;
        let metrics = Self {
            sent: samples.with_label_values(&["sent"]),
            retried: samples.with_label_values(&["retried"]),
            dropped: samples.with_label_values(&["dropped"]),
            failed: samples.with_label_values(&["failed"]),
            collected: IntCounter::new(
                "conduit_remote_write_samples_collected_total",
                "Samples collected from the store and the registry for sending.",
            )?,
            requests: requests.clone(),
            sent_bytes: IntCounter::new(
                "conduit_remote_write_sent_bytes_total",
                "Compressed request bytes delivered (2xx).",
            )?,
            queue_samples: IntGauge::new(
                "conduit_remote_write_queue_samples",
                "Samples waiting to be sent or being sent.",
            )?,
            queue_limit: IntGauge::new(
                "conduit_remote_write_queue_limit_samples",
                "Most samples waiting to be sent; past it the oldest are dropped.",
            )?,
            shards: IntGauge::new("conduit_remote_write_shards", "Concurrent senders in use.")?,
            last_success: Gauge::new(
                "conduit_remote_write_last_success_timestamp_seconds",
                "Unix time of the last request the receiver accepted.",
            )?,
            collect_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "conduit_remote_write_collect_seconds",
                    "Time to walk, encode and compress one collection.",
                )
                .buckets(COLLECT_BUCKETS.to_vec()),
            )?,
            retry_after: IntCounter::new(
                "conduit_remote_write_retry_after_total",
                "429 and 503 answers whose Retry-After was honoured (capped at 60 s).",
            )?,
        };
        registry.register(Box::new(samples))?;
        registry.register(Box::new(requests))?;
        registry.register(Box::new(metrics.collected.clone()))?;
        registry.register(Box::new(metrics.sent_bytes.clone()))?;
        registry.register(Box::new(metrics.queue_samples.clone()))?;
        registry.register(Box::new(metrics.queue_limit.clone()))?;
        registry.register(Box::new(metrics.shards.clone()))?;
        registry.register(Box::new(metrics.last_success.clone()))?;
        registry.register(Box::new(metrics.collect_seconds.clone()))?;
        registry.register(Box::new(metrics.retry_after.clone()))?;
        Ok(metrics)
    }
}
