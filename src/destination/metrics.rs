//! The destination component's own metrics: open streams, streams per
//! service, updates sent, and how long a cluster change takes to reach a
//! stream.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Fan-out latency buckets (seconds): a change normally reaches a stream in
/// microseconds; the tail shows a saturated runtime or slow clients.
const FANOUT_BUCKETS: &[f64] = &[
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

#[derive(Clone)]
pub struct Metrics {
    streams: IntGauge,
    subscriptions: IntGaugeVec,
    updates: IntCounterVec,
    fanout: Histogram,
    /// Serialises a service's last unsubscribe (which removes its label
    /// set) with a concurrent subscribe.
    labels: Arc<Mutex<()>>,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let streams = IntGauge::new(
            "conduit_destination_streams",
            "Open Destination.Get streams.",
        )?;
        let subscriptions = IntGaugeVec::new(
            Opts::new(
                "conduit_destination_subscriptions",
                "Open Destination.Get streams by service (namespace/name).",
            ),
            &["service"],
        )?;
        let updates = IntCounterVec::new(
            Opts::new(
                "conduit_destination_updates_total",
                "Updates sent on Destination.Get streams, by kind (add, remove, heartbeat).",
            ),
            &["kind"],
        )?;
        let fanout = Histogram::with_opts(
            HistogramOpts::new(
                "conduit_destination_update_fanout_seconds",
                "From a cluster change being indexed to its update leaving a stream.",
            )
            .buckets(FANOUT_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(streams.clone()))?;
        registry.register(Box::new(subscriptions.clone()))?;
        registry.register(Box::new(updates.clone()))?;
        registry.register(Box::new(fanout.clone()))?;
        Ok(Self {
            streams,
            subscriptions,
            updates,
            fanout,
            labels: Arc::default(),
        })
    }

    /// Counts a stream open until the guard is dropped.
    pub fn open(&self, service: String) -> StreamGuard {
        {
            let _l = self.labels.lock();
            self.subscriptions.with_label_values(&[&service]).inc();
        }
        self.streams.inc();
        StreamGuard {
            metrics: self.clone(),
            service,
        }
    }

    pub fn sent(&self, kind: &str, since_change: Option<Duration>) {
        self.updates.with_label_values(&[kind]).inc();
        if let Some(latency) = since_change {
            self.fanout.observe(latency.as_secs_f64());
        }
    }
}

pub struct StreamGuard {
    metrics: Metrics,
    service: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.metrics.streams.dec();
        let _l = self.metrics.labels.lock();
        let gauge = self
            .metrics
            .subscriptions
            .with_label_values(&[&self.service]);
        gauge.dec();
        if gauge.get() <= 0 {
            let _ = self
                .metrics
                .subscriptions
                .remove_label_values(&[&self.service]);
        }
    }
}
