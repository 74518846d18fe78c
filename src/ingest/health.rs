//! The ingester's own health metrics (`conduit_telemetry_*`), registered on
//! the component's registry at start; no globals.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Report size buckets (bytes): a small report is ~100 B, a large one with
/// 100 scopes ~100 kB, the default limit 4 MiB.
const REPORT_BYTES_BUCKETS: &[f64] = &[
    128.0, 512.0, 2048.0, 8192.0, 32768.0, 131072.0, 524288.0, 2097152.0, 4194304.0,
];

/// Handling time buckets (seconds): microseconds for small reports up to
/// milliseconds for the largest.
const HANDLING_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.1,
];

#[derive(Clone)]
pub struct Health {
    pub reports: IntCounter,
    pub rejected_invalid: IntCounter,
    pub rejected_too_large: IntCounter,
    pub rejected_undecodable: IntCounter,
    pub rejected_busy: IntCounter,
    pub rejected_stalled: IntCounter,
    pub report_bytes: Histogram,
    pub handling: Histogram,
    pub series_live: IntGaugeVec,
    pub series_limit: IntGauge,
    /// Updates folded past `-max-series`, by step: `path`, `pods`, `all`.
    pub folded_path: IntCounter,
    pub folded_pods: IntCounter,
    pub folded_all: IntCounter,
    pub evicted: IntCounter,
    pub pairs_dropped: IntCounter,
    /// Request scopes of new routes counted in their deployment's
    /// `__overflow__` route, and left out of the routes entirely.
    pub routes_folded: IntCounter,
    pub routes_dropped: IntCounter,
    pub source_misses: IntCounter,
    pub target_misses: IntCounter,
    pub truncated: IntCounter,
    pub instances: IntGauge,
    pub instances_too_long: IntCounter,
    pub instances_full: IntCounter,
    pub rollups_cut: IntCounter,
    pub stale_dropped: IntCounter,
}

impl Health {
    /// The folding counter of one step.
    pub fn folded(&self, step: super::fold::Fold) -> &IntCounter {
        match step {
            super::fold::Fold::Path => &self.folded_path,
            super::fold::Fold::Pods => &self.folded_pods,
            super::fold::Fold::All => &self.folded_all,
        }
    }

    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let rejected = IntCounterVec::new(
            Opts::new(
                "conduit_telemetry_reports_rejected_total",
                "Reports rejected whole, by reason.",
            ),
            &["reason"],
        )?;
        let misses = IntCounterVec::new(
            Opts::new(
                "conduit_telemetry_enrichment_misses_total",
                "Addresses in reports that no pod of the index owns, by side.",
            ),
            &["side"],
        )?;
        let series_live = IntGaugeVec::new(
            Opts::new(
                "conduit_telemetry_series_live",
                "Live label sets, by metric family.",
            ),
            &["metric"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "conduit_telemetry_instances_refused_total",
                "Reports whose pod was not recorded as reporting, by reason: too_long (a namespace over 63 or a pod name over 253 bytes), full (the instance cache holds its maximum).",
            ),
            &["reason"],
        )?;
        let folded = IntCounterVec::new(
            Opts::new(
                "conduit_telemetry_series_folded_total",
                "Updates to new label sets folded because -max-series was reached, by what they lost: path (path became __overflow__), pods (source, target and path), all (every label: the __overflow__ series).",
            ),
            &["folded"],
        )?;
        let routes_full = IntCounterVec::new(
            Opts::new(
                "conduit_telemetry_stat_routes_full_total",
                "Request scopes of new routes the embedded Stat store had no room for (MAX_ROUTE_WINDOWS), by outcome: folded (counted in the deployment's __overflow__ route), dropped (left out of Routes).",
            ),
            &["outcome"],
        )?;
        let health = Self {
            reports: IntCounter::new(
                "conduit_telemetry_reports_total",
                "Reports accepted and applied.",
            )?,
            rejected_invalid: rejected.with_label_values(&["invalid"]),
            rejected_too_large: rejected.with_label_values(&["too_large"]),
            rejected_undecodable: rejected.with_label_values(&["undecodable"]),
            rejected_busy: rejected.with_label_values(&["busy"]),
            rejected_stalled: rejected.with_label_values(&["stalled"]),
            report_bytes: Histogram::with_opts(
                HistogramOpts::new(
                    "conduit_telemetry_report_bytes",
                    "Size of received reports on the wire, in bytes.",
                )
                .buckets(REPORT_BYTES_BUCKETS.to_vec()),
            )?,
            handling: Histogram::with_opts(
                HistogramOpts::new(
                    "conduit_telemetry_report_handling_seconds",
                    "Time to validate, enrich and aggregate one decoded report.",
                )
                .buckets(HANDLING_BUCKETS.to_vec()),
            )?,
            series_limit: IntGauge::new(
                "conduit_telemetry_series_limit",
                "The -max-series cap on live label sets.",
            )?,
            folded_path: folded.with_label_values(&["path"]),
            folded_pods: folded.with_label_values(&["pods"]),
            folded_all: folded.with_label_values(&["all"]),
            evicted: IntCounter::new(
                "conduit_telemetry_series_evicted_total",
                "Series dropped after -series-idle-timeout without reports.",
            )?,
            pairs_dropped: IntCounter::new(
                "conduit_telemetry_stat_pairs_dropped_total",
                "Request scopes left out of the embedded Stat store because it holds -max-series workload pairs.",
            )?,
            routes_folded: routes_full.with_label_values(&["folded"]),
            routes_dropped: routes_full.with_label_values(&["dropped"]),
            source_misses: misses.with_label_values(&["source"]),
            target_misses: misses.with_label_values(&["target"]),
            truncated: IntCounter::new(
                "conduit_telemetry_label_values_truncated_total",
                "Label values cut to the maximum label length.",
            )?,
            instances: IntGauge::new(
                "conduit_telemetry_instances",
                "Pods that reported within the last ten minutes.",
            )?,
            instances_too_long: refused.with_label_values(&["too_long"]),
            instances_full: refused.with_label_values(&["full"]),
            series_live: series_live.clone(),
            stale_dropped: IntCounter::new(
                "conduit_telemetry_stale_markers_dropped_total",
                "Evicted series whose remote-write stale marker was dropped because more than MAX_STALE_SERIES evictions waited for the next push.",
            )?,
            rollups_cut: IntCounter::new(
                "conduit_telemetry_rollup_scrapes_cut_total",
                "Streamed scrapes whose per-deployment roll-up of a family was pushed out by newer concurrent scrapes before it was sent; the rest of it was left out of that scrape.",
            )?,
        };
        registry.register(Box::new(health.reports.clone()))?;
        registry.register(Box::new(rejected))?;
        registry.register(Box::new(misses))?;
        registry.register(Box::new(series_live))?;
        registry.register(Box::new(health.report_bytes.clone()))?;
        registry.register(Box::new(health.handling.clone()))?;
        registry.register(Box::new(health.series_limit.clone()))?;
        registry.register(Box::new(folded))?;
        registry.register(Box::new(routes_full))?;
        registry.register(Box::new(health.evicted.clone()))?;
        registry.register(Box::new(health.pairs_dropped.clone()))?;
        registry.register(Box::new(health.truncated.clone()))?;
        registry.register(Box::new(health.instances.clone()))?;
        registry.register(Box::new(refused))?;
        registry.register(Box::new(health.rollups_cut.clone()))?;
        registry.register(Box::new(health.stale_dropped.clone()))?;
        Ok(health)
    }
}
