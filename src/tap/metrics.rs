//! The tap component's own metrics: callers' streams, the proxies' calls
//! open on their behalf, events relayed and proxies that failed.

use prometheus::{IntCounter, IntGauge, Registry};

#[derive(Clone)]
pub struct Metrics {
    streams: IntGauge,
    upstreams: IntGauge,
    events: IntCounter,
    upstream_errors: IntCounter,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let streams = IntGauge::new("conduit_tap_streams", "Open Tap streams of callers.")?;
        let upstreams = IntGauge::new(
            "conduit_tap_upstream_streams",
            "Open Observe calls to the proxies, on behalf of callers.",
        )?;
        let events = IntCounter::new(
            "conduit_tap_events_total",
            "Tap events relayed from the proxies to callers.",
        )?;
        let upstream_errors = IntCounter::new(
            "conduit_tap_upstream_errors_total",
            "Observe calls to a proxy that could not be opened or broke.",
        )?;
        registry.register(Box::new(streams.clone()))?;
        registry.register(Box::new(upstreams.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        Ok(Self {
            streams,
            upstreams,
            events,
            upstream_errors,
        })
    }

    /// Counts a caller's stream open until the guard is dropped.
    pub fn open_stream(&self) -> GaugeGuard {
        GaugeGuard::new(&self.streams)
    }

    /// Counts an Observe call open until the guard is dropped.
    pub fn open_upstream(&self) -> GaugeGuard {
        GaugeGuard::new(&self.upstreams)
    }

    pub fn event(&self) {
        self.events.inc();
    }

    pub fn upstream_error(&self) {
        self.upstream_errors.inc();
    }
}

/// Holds one unit of a gauge.
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
