//! The telemetry ingester: proxies' reports in, aggregated series out.
//!
//! A report is validated whole ([`report::validate`]), then each request scope
//! is enriched (source/target IP → pod → deployment through [`Enrich`]) and
//! added to the series of its six request labels in a sharded [`table::Table`]
//! of [`series::MeshData`]; transport summaries go to a second table of
//! [`series::TcpData`]. Both tables share one [`table::Budget`] of live label
//! sets (`-max-series`); past it, a new label set folds its
//! highest-cardinality dimension first ([`fold`]: its `path`, then its pods,
//! and only last every label, into the `__overflow__` series), so sums by
//! deployment stay exact. Series no report touched for
//! `-series-idle-timeout` are evicted by [`Ingester::evict_idle`].
//!
//! Every update is applied before `ingest` returns, so the next scrape
//! ([`exposition`]) sees it. Imports neither tonic nor kube.

pub mod exposition;
pub mod flat;
pub mod fold;
pub mod health;
pub mod hist;
pub mod instances;
pub mod labels;
pub mod native;
pub mod protobuf;
pub mod report;
pub mod rollup;
pub mod routes;
pub mod series;
pub mod table;
pub mod walk;
pub mod window;

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use smallvec::SmallVec;

pub use health::Health;
pub use instances::Instances;
pub use report::{DroppedLabels, Enrich, InvalidReport, NoMetadata, WorkloadRef};
pub use rollup::Export;

use crate::proto::proxy::telemetry::report_request::Proxy;
use flat::{FlatReport, Report, Scope, WireError};
use fold::{Fold, Tiers};
use labels::LabelBuf;
use report::{is_success, method_label, resolve};
use series::{MeshData, Response, TcpData};
use table::{Budget, Lookup, Table};
use window::{ScopeSample, TcpCounts, TcpWindowData, WindowData};

/// Default `-max-series`: enough for a few thousand pods with a realistic
/// route count, small enough (≈ 150 MB) to never threaten the node.
pub const DEFAULT_MAX_SERIES: usize = 500_000;

/// Default `-series-idle-timeout`: long enough that a dashboard's counters do
/// not vanish during a lull, short enough that dead pods' series go away.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Evicted series kept until remote write pushes their stale markers: a
/// sweep of a fleet's worth of dead pods (a rollout of 1,000 pods is
/// ~100,000 label sets), at ~300 bytes each ~30 MB at most. Past it the
/// oldest evictions' markers are dropped (counted): Prometheus then ends
/// those series after its five-minute lookback, as without markers.
pub const MAX_STALE_SERIES: usize = 100_000;

/// Routes the embedded store keeps windows for (one per deployment,
/// method and `path` label): a deployment's routes with templates are
/// dozens, and without templates its observed paths are what `conduit
/// routes` lists, which a path flood must not turn into unbounded memory.
/// At ~10 kB a busy route, ≈ 100 MB at most.
pub const MAX_ROUTE_WINDOWS: usize = 10_000;

/// Routes kept for deployments' `__overflow__` routes once
/// [`MAX_ROUTE_WINDOWS`] is reached, so a deployment's route totals stay
/// whole while new paths keep coming.
pub const ROUTE_OVERFLOW_HEADROOM: usize = 1_000;

pub use labels::OVERFLOW;

#[derive(Clone, Debug)]
pub struct Config {
    pub max_series: usize,
    pub idle_timeout: Duration,
    pub dropped: DroppedLabels,
    /// Keep the embedded Stat store ([`window`]); off when Stat is answered
    /// by Prometheus, which saves its memory and its share of ingest time.
    pub embedded_stat: bool,
    /// Pod-level series, the per-deployment roll-up, or both
    /// (`-export`; [`rollup`]).
    pub export: Export,
    /// Keep evicted series for [`Ingester::walk_evicted`] (remote write's
    /// stale markers); off when nothing would drain them.
    pub stale_markers: bool,
    /// Keep each series' latency and duration as native histogram buckets
    /// too (`-native-histograms`, [`native`]).
    pub native_histograms: bool,
    /// Route templates per deployment (`-routes FILE`): the `path` label of
    /// a request to a deployment with templates is the template it matched.
    pub routes: Option<Arc<routes::Routes>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_series: DEFAULT_MAX_SERIES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            dropped: DroppedLabels::default(),
            embedded_stat: true,
            export: Export::default(),
            stale_markers: false,
            native_histograms: false,
            routes: None,
        }
    }
}

/// The store's monotonic clock: series remember their last touch in four
/// bytes of seconds since start; window slots use milliseconds since start,
/// mapped to wall time only when a query reports timestamps.
#[derive(Debug)]
struct Clock {
    start: Instant,
    wall_start_ms: u64,
}

impl Clock {
    fn new() -> Self {
        let wall_start_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self {
            start: Instant::now(),
            wall_start_ms,
        }
    }

    fn now(&self) -> u32 {
        self.at(Instant::now()).secs
    }

    fn now_ms(&self) -> u64 {
        self.at(Instant::now()).ms
    }

    /// Both readings of [`Now`] at `at`, without reading the clock again.
    fn at(&self, at: Instant) -> Now {
        let since = at.saturating_duration_since(self.start);
        Now {
            secs: u32::try_from(since.as_secs()).unwrap_or(u32::MAX),
            ms: since.as_millis() as u64,
        }
    }
}

pub struct Ingester {
    config: Config,
    clock: Clock,
    budget: Budget,
    /// Where ordinary and folded label sets stop claiming `budget`.
    tiers: Tiers,
    mesh: Table<MeshData>,
    mesh_overflow: Mutex<Option<MeshData>>,
    tcp: Table<TcpData>,
    tcp_overflow: Mutex<Option<TcpData>>,
    /// The embedded Stat store, with its own bound on workload pairs.
    windows: Table<WindowData>,
    window_budget: Budget,
    /// The same per deployment, method and `path` label (Routes), with its
    /// own bound.
    route_windows: Table<WindowData>,
    route_budget: Budget,
    /// TCP per workload pair (StatSummary's TCP columns), with its own
    /// bound of `-max-series` pairs.
    tcp_windows: Table<TcpWindowData>,
    tcp_window_budget: Budget,
    instances: Instances,
    health: Health,
    /// Roll-ups of streamed scrapes in progress.
    rollups: rollup::RollUps,
    /// Series evicted since remote write last pushed their stale markers.
    evicted: Mutex<Evicted>,
}

/// Series dropped by [`Ingester::evict_idle`], with their data (which
/// samples they had), for their stale markers.
#[derive(Default)]
pub(crate) struct Evicted {
    pub(crate) mesh: Vec<(labels::LabelSet, MeshData)>,
    pub(crate) tcp: Vec<(labels::LabelSet, TcpData)>,
}

impl Evicted {
    fn len(&self) -> usize {
        self.mesh.len() + self.tcp.len()
    }
}

thread_local! {
    /// Label rendering scratch space, reused across reports on each thread.
    static SCRATCH: RefCell<LabelBuf> = RefCell::new(LabelBuf::default());
    /// A label set's folded form, built past the series cap only.
    static FOLDED: RefCell<LabelBuf> = RefCell::new(LabelBuf::default());
    /// A deployment's `__overflow__` route key in the embedded store.
    static ROUTE_KEY: RefCell<LabelBuf> = RefCell::new(LabelBuf::default());
    /// Decoding tables, reused across reports on each thread.
    static FLAT: RefCell<FlatReport> = RefCell::new(FlatReport::default());
    /// A scope's window sample, refilled for each scope.
    static SAMPLE: RefCell<ScopeSample> = RefCell::new(ScopeSample::default());
}

/// Why a report's bytes were refused; nothing of it was applied.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("not a ReportRequest: {0}")]
    Undecodable(#[from] WireError),
    #[error(transparent)]
    Invalid(#[from] InvalidReport),
}

/// Per-report tallies, added to the health counters once per report.
#[derive(Default)]
struct Tally {
    source_misses: u64,
    target_misses: u64,
    truncated: u64,
    /// Updates folded, by [`Fold`] step.
    folded: [u64; 3],
    pairs_dropped: u64,
    routes_folded: u64,
    routes_dropped: u64,
}

impl Tally {
    fn fold(&mut self, step: Fold, n: u64) {
        self.folded[step as usize] += n;
    }
}

#[derive(Clone, Copy)]
struct Now {
    secs: u32,
    ms: u64,
}

impl Ingester {
    pub fn new(config: Config, health: Health) -> Self {
        health.series_limit.set(config.max_series as i64);
        Self {
            clock: Clock::new(),
            budget: Budget::new(config.max_series),
            tiers: Tiers::new(config.max_series),
            windows: Table::new(&labels::PAIR),
            window_budget: Budget::new(config.max_series),
            route_windows: Table::new(&labels::ROUTE),
            route_budget: Budget::new(MAX_ROUTE_WINDOWS),
            tcp_windows: Table::new(&labels::PAIR),
            tcp_window_budget: Budget::new(config.max_series),
            config,
            mesh: Table::new(&labels::MESH),
            mesh_overflow: Mutex::new(None),
            tcp: Table::new(&labels::TCP),
            tcp_overflow: Mutex::new(None),
            instances: Instances::default(),
            health,
            rollups: rollup::RollUps::default(),
            evicted: Mutex::new(Evicted::default()),
        }
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    pub fn instances(&self) -> &Instances {
        &self.instances
    }

    /// Live label sets across every mesh metric (the figure `-max-series`
    /// bounds).
    pub fn live_label_sets(&self) -> usize {
        self.budget.live()
    }

    /// The store clock now, in ms (the time base of window queries).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Wall-clock ms since the epoch for a store-clock time.
    pub fn wall_ms(&self, store_ms: u64) -> u64 {
        self.clock.wall_start_ms + store_ms
    }

    /// Visits every workload pair of the embedded Stat store; the labels
    /// are [`labels::PAIR`]'s.
    pub fn for_each_pair(&self, mut visit: impl FnMut(labels::LabelRef<'_>, &WindowData)) {
        for shard in 0..table::SHARDS {
            self.windows.for_each_in_shard(shard, &mut visit);
        }
    }

    /// Visits every workload pair's TCP windows; the labels are
    /// [`labels::PAIR`]'s.
    pub fn for_each_tcp_pair(&self, mut visit: impl FnMut(labels::LabelRef<'_>, &TcpWindowData)) {
        for shard in 0..table::SHARDS {
            self.tcp_windows.for_each_in_shard(shard, &mut visit);
        }
    }

    /// Visits every route of the embedded Stat store; the labels are
    /// [`labels::ROUTE`]'s.
    pub fn for_each_route(&self, mut visit: impl FnMut(labels::LabelRef<'_>, &WindowData)) {
        for shard in 0..table::SHARDS {
            self.route_windows.for_each_in_shard(shard, &mut visit);
        }
    }

    /// Whether `deployment` has route templates (`-routes FILE`).
    pub fn has_routes(&self, deployment: &str) -> bool {
        self.config
            .routes
            .as_ref()
            .is_some_and(|r| r.has(deployment))
    }

    /// Live request label sets (one per `requests_total` series).
    pub fn request_series(&self) -> usize {
        self.mesh.len()
    }

    /// Bytes of label values held by all series (memory accounting).
    pub fn label_bytes(&self) -> usize {
        self.mesh.label_bytes() + self.tcp.label_bytes()
    }

    /// Applies one encoded `ReportRequest`, or rejects it whole: decoded
    /// straight from `bytes` ([`flat`]), validated, then applied.
    pub fn ingest_bytes<E: Enrich>(&self, bytes: &[u8], meta: &E) -> Result<(), IngestError> {
        FLAT.with_borrow_mut(|flat| {
            flat.decode(bytes)?;
            self.ingest_decoded(Report { flat, bytes }, meta)?;
            Ok(())
        })
    }

    fn ingest_decoded<E: Enrich>(&self, report: Report<'_>, meta: &E) -> Result<(), InvalidReport> {
        let started = Instant::now();
        if let Err(error) = report::validate(report) {
            self.health.rejected_invalid.inc();
            return Err(error);
        }
        let now = self.clock.at(started);
        let mut tally = Tally::default();
        let flat = report.flat;
        // The reporting pod, as its Process names it.
        let own = (report.str(flat.namespace), report.str(flat.instance));
        SCRATCH.with_borrow_mut(|w| {
            for scope in &flat.scopes {
                self.apply_scope(report, scope, meta, now, w, &mut tally);
            }
            self.apply_transports(report, own, meta, now, w, &mut tally);
        });
        let (namespace, instance) = own;
        if flat.has_process && !namespace.is_empty() && !instance.is_empty() {
            match self.instances.touch(namespace, instance, started) {
                Ok(()) => {}
                Err(instances::Refused::TooLong) => self.health.instances_too_long.inc(),
                Err(instances::Refused::Full) => self.health.instances_full.inc(),
            }
        }
        let h = &self.health;
        h.reports.inc();
        // Each counter is a line both cores write: a report that missed
        // nothing (nearly all) leaves them alone rather than adding 0.
        let add = |counter: &prometheus::IntCounter, n: u64| {
            if n > 0 {
                counter.inc_by(n);
            }
        };
        add(&h.source_misses, tally.source_misses);
        add(&h.target_misses, tally.target_misses);
        add(&h.truncated, tally.truncated);
        for (step, n) in [Fold::Path, Fold::Pods, Fold::All]
            .into_iter()
            .zip(tally.folded)
        {
            add(h.folded(step), n);
        }
        add(&h.pairs_dropped, tally.pairs_dropped);
        add(&h.routes_folded, tally.routes_folded);
        add(&h.routes_dropped, tally.routes_dropped);
        h.handling.observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn apply_scope<E: Enrich>(
        &self,
        report: Report<'_>,
        scope: &Scope,
        meta: &E,
        now: Now,
        w: &mut LabelBuf,
        tally: &mut Tally,
    ) {
        if !scope.has_ctx {
            return; // unreachable after validate
        }
        let source = resolve(meta, scope.source_ip, &mut tally.source_misses);
        let target = resolve(meta, scope.target_ip, &mut tally.target_misses);
        let dropped = self.config.dropped;
        w.start(&labels::MESH);
        w.push(source.pod);
        w.push(target.pod);
        w.push(source.deployment);
        w.push(target.deployment);
        let reported_method = method_label(report, scope.method);
        let method = if dropped.method { "" } else { reported_method };
        // A deployment with route templates is counted by the template a
        // request matched, whether or not `path` is dropped otherwise.
        let reported_path = report.str(scope.path);
        let route = self
            .config
            .routes
            .as_ref()
            .and_then(|r| r.route(target.deployment, reported_method, reported_path));
        let path = match route {
            Some(template) => template,
            None if dropped.path => "",
            None => reported_path,
        };
        tally.truncated += u64::from(w.push(method)) + u64::from(w.push(path));

        let mut spilled: SmallVec<[Response; 4]> = SmallVec::new();
        let native = self.config.native_histograms;
        let landed = self.update_folding(
            &self.mesh,
            &self.mesh_overflow,
            w.view(),
            tally,
            |data, ceiling| {
                data.touched = now.secs;
                let budget = ceiling.map(|c| (&self.budget, c));
                add_scope(data, report, scope, budget, native, &mut spilled);
            },
        );
        if !spilled.is_empty() {
            self.spill_responses(w.view(), landed, spilled, now.secs, tally);
        }
        if !self.config.embedded_stat {
            return;
        }
        SAMPLE.with_borrow_mut(|sample| {
            sample.fill(report, scope);
            // The workload pair is the first labels of the request series.
            let pair = w.prefix(&labels::PAIR);
            if self.windows.update(pair, &self.window_budget, |data| {
                data.add_sample(sample, now.ms, now.secs)
            }) == Lookup::Full
            {
                tally.pairs_dropped += 1;
            }
            if !target.deployment.is_empty() {
                // The route is the request series' last labels.
                let route = w.suffix(&labels::ROUTE);
                self.add_route(sample, route, target.deployment, now, tally);
            }
        });
    }

    /// Adds a scope to its route's windows; past [`MAX_ROUTE_WINDOWS`]
    /// less the headroom, a new route is counted in its deployment's
    /// `__overflow__` route, and past the bound itself left out (counted).
    fn add_route(
        &self,
        sample: &ScopeSample,
        route: labels::LabelRef<'_>,
        deployment: &str,
        now: Now,
        tally: &mut Tally,
    ) {
        let ordinary = MAX_ROUTE_WINDOWS - ROUTE_OVERFLOW_HEADROOM;
        let add = |data: &mut WindowData| data.add_sample(sample, now.ms, now.secs);
        let table = &self.route_windows;
        if table.update_within(route, &self.route_budget, ordinary, add) != Lookup::Full {
            return;
        }
        ROUTE_KEY.with_borrow_mut(|k| {
            k.start(&labels::ROUTE);
            for value in [deployment, "", OVERFLOW] {
                k.push(value);
            }
            if table.update(k.view(), &self.route_budget, add) == Lookup::Full {
                tally.routes_dropped += 1;
            } else {
                tally.routes_folded += 1;
            }
        });
    }

    /// Runs `add` on the series of `labels`, or, once the cap leaves no room
    /// for a new one, on its first folded form ([`fold`]) that exists or
    /// fits, the overflow series last. `add` gets the ceiling its own new
    /// label sets (response classes) may claim up to, `None` in the
    /// overflow series (which claims nothing). Returns where it landed.
    fn update_folding<D: table::SeriesData>(
        &self,
        table: &Table<D>,
        overflow: &Mutex<Option<D>>,
        labels: labels::LabelRef<'_>,
        tally: &mut Tally,
        mut add: impl FnMut(&mut D, Option<usize>),
    ) -> Option<Fold> {
        let ordinary = self.tiers.ordinary;
        if table.update_within(labels, &self.budget, ordinary, |d| add(d, Some(ordinary)))
            != Lookup::Full
        {
            return None;
        }
        let landed = FOLDED.with_borrow_mut(|folded| {
            Fold::steps(labels.schema()).find(|&step| {
                fold::fold(labels, step, folded);
                let ceiling = self.tiers.of(step);
                table.update_within(folded.view(), &self.budget, ceiling, |d| {
                    add(d, Some(ceiling));
                }) != Lookup::Full
            })
        });
        let step = landed.unwrap_or_else(|| {
            add(overflow.lock().get_or_insert_with(D::default), None);
            Fold::All
        });
        tally.fold(step, 1);
        Some(step)
    }

    /// Response classes a series had no room for go to the next folded
    /// forms of its labels (`full`), as far as needed.
    fn spill_responses(
        &self,
        full: labels::LabelRef<'_>,
        landed: Option<Fold>,
        mut spilled: SmallVec<[Response; 4]>,
        now: u32,
        tally: &mut Tally,
    ) {
        let budget = &self.budget;
        FOLDED.with_borrow_mut(|folded| {
            for step in Fold::steps(full.schema()).filter(|&s| Some(s) > landed) {
                fold::fold(full, step, folded);
                let ceiling = self.tiers.of(step);
                let before = spilled.len();
                let mut rest: SmallVec<[Response; 4]> = SmallVec::new();
                let lookup = self
                    .mesh
                    .update_within(folded.view(), budget, ceiling, |d| {
                        d.touched = now;
                        for r in spilled.drain(..) {
                            match d.response_mut(r.status, r.success) {
                                Some(have) => have.count += r.count,
                                None if budget.try_acquire_below(ceiling) => d.responses.push(r),
                                None => rest.push(r),
                            }
                        }
                    });
                if lookup == Lookup::Full {
                    continue;
                }
                tally.fold(step, (before - rest.len()) as u64);
                spilled = rest;
                if spilled.is_empty() {
                    return;
                }
            }
            tally.fold(Fold::All, spilled.len() as u64);
            let mut overflow = self.mesh_overflow.lock();
            let data = overflow.get_or_insert_with(MeshData::default);
            data.touched = now;
            for r in spilled {
                data.absorb_responses(r.status, r.success, r.count);
            }
        });
    }

    fn apply_transports<E: Enrich>(
        &self,
        report: Report<'_>,
        (ns, name): (&str, &str),
        meta: &E,
        now: Now,
        w: &mut LabelBuf,
        tally: &mut Tally,
    ) {
        let flat = report.flat;
        if flat.server_transports.is_empty() && flat.client_transports.is_empty() {
            return;
        }
        let direction = match Proxy::try_from(flat.proxy) {
            Ok(Proxy::Outbound) => "outbound",
            _ => "inbound",
        };
        // The reporting pod is one side of every connection; it is named by
        // its Process even when the index does not know it.
        let own_label;
        let this = match meta.by_pod(ns, name) {
            Some(w) => w,
            None => {
                own_label = if ns.is_empty() || name.is_empty() {
                    String::new()
                } else {
                    format!("{ns}/{name}")
                };
                WorkloadRef {
                    pod: &own_label,
                    deployment: "",
                }
            }
        };
        let inbound = direction == "inbound";
        for t in &flat.server_transports {
            let peer = resolve(meta, t.ip, &mut tally.source_misses);
            tcp_labels(w, direction, "src", peer, this);
            let disconnects = report.disconnects(t);
            self.add_tcp(w.view(), now.secs, t.connects, disconnects, tally);
            // A connection into this pod: its opens and closes, and what
            // the pod wrote back. (An outbound proxy's server side is the
            // pod's own app.)
            if inbound {
                let bytes = TcpCounts {
                    read_bytes: 0,
                    write_bytes: sent(disconnects),
                };
                let (opened, closed) = (u64::from(t.connects), disconnects.len() as u64);
                self.add_tcp_window(w, now, opened, closed, bytes, tally);
            }
        }
        for t in &flat.client_transports {
            let peer = resolve(meta, t.ip, &mut tally.target_misses);
            tcp_labels(w, direction, "dst", this, peer);
            let disconnects = report.disconnects(t);
            self.add_tcp(w.view(), now.secs, t.connects, disconnects, tally);
            // What this pod sent the peer, which the peer read. (Its
            // opens and closes count at the peer's inbound side, not twice;
            // an inbound proxy's client side is the pod's own app.)
            if !inbound {
                let bytes = TcpCounts {
                    read_bytes: sent(disconnects),
                    write_bytes: 0,
                };
                self.add_tcp_window(w, now, 0, 0, bytes, tally);
            }
        }
    }

    /// Adds to the TCP windows of the workload pair of the TCP series in
    /// `w` (its last four labels: source and target, pods and deployments;
    /// embedded Stat store only); past its bound, counted as a dropped pair.
    fn add_tcp_window(
        &self,
        w: &LabelBuf,
        now: Now,
        opened: u64,
        closed: u64,
        bytes: TcpCounts,
        tally: &mut Tally,
    ) {
        if !self.config.embedded_stat {
            return;
        }
        let add = |d: &mut TcpWindowData| d.add(now.ms, now.secs, opened, closed, bytes);
        let pair = w.suffix(&labels::PAIR);
        if self.tcp_windows.update(pair, &self.tcp_window_budget, add) == Lookup::Full {
            tally.pairs_dropped += 1;
        }
    }

    fn add_tcp(
        &self,
        labels: labels::LabelRef<'_>,
        now: u32,
        connects: u32,
        disconnects: &[(u64, u64)],
        tally: &mut Tally,
    ) {
        let native = self.config.native_histograms;
        let add = |data: &mut TcpData| {
            data.touched = now;
            data.opens += u64::from(connects);
            for &(duration_ms, bytes_sent) in disconnects {
                data.observe_close_native(duration_ms, bytes_sent, native);
            }
        };
        self.update_folding(&self.tcp, &self.tcp_overflow, labels, tally, |d, _| add(d));
    }

    /// Drops series and instances idle for longer than their timeouts.
    /// Returns how many series were evicted.
    pub fn evict_idle(&self) -> usize {
        let idle = u32::try_from(self.config.idle_timeout.as_secs()).unwrap_or(u32::MAX);
        let now = self.clock.now();
        let Some(cutoff) = now.checked_sub(idle) else {
            return 0;
        };
        let mut gone = Evicted::default();
        let keep = self.config.stale_markers;
        let evicted = self.mesh.evict_idle_with(cutoff, &self.budget, |l, d| {
            if keep {
                gone.mesh.push((l, d));
            }
        }) + self.tcp.evict_idle_with(cutoff, &self.budget, |l, d| {
            if keep {
                gone.tcp.push((l, d));
            }
        });
        if let Some(pair_cutoff) = now.checked_sub(window::PAIR_IDLE_SECS) {
            self.windows.evict_idle(pair_cutoff, &self.window_budget);
            self.route_windows
                .evict_idle(pair_cutoff, &self.route_budget);
            self.tcp_windows
                .evict_idle(pair_cutoff, &self.tcp_window_budget);
        }
        if let Some(d) = expire_overflow(&self.mesh_overflow, cutoff).filter(|_| keep) {
            gone.mesh
                .push((labels::LabelSet::overflow(&labels::MESH), d));
        }
        if let Some(d) = expire_overflow(&self.tcp_overflow, cutoff).filter(|_| keep) {
            gone.tcp.push((labels::LabelSet::overflow(&labels::TCP), d));
        }
        if gone.len() > 0 {
            let mut kept = self.evicted.lock();
            kept.mesh.append(&mut gone.mesh);
            kept.tcp.append(&mut gone.tcp);
            let over = kept.len().saturating_sub(MAX_STALE_SERIES);
            if over > 0 {
                let from_mesh = over.min(kept.mesh.len());
                kept.mesh.drain(..from_mesh);
                kept.tcp.drain(..over - from_mesh);
                self.health.stale_dropped.inc_by(over as u64);
            }
        }
        self.instances.expire();
        self.health.evicted.inc_by(evicted as u64);
        evicted
    }

    /// The shortest useful interval between two [`Self::evict_idle`] calls.
    pub fn sweep_interval(&self) -> Duration {
        (self.config.idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }
}

fn expire_overflow<D: table::SeriesData>(overflow: &Mutex<Option<D>>, cutoff: u32) -> Option<D> {
    let mut o = overflow.lock();
    if o.as_ref().is_some_and(|d| d.last_touch() < cutoff) {
        return o.take();
    }
    None
}

/// Adds one request scope to a series. Response classes the budget cannot
/// hold are pushed to `folded` for the overflow series.
fn add_scope(
    data: &mut MeshData,
    report: Report<'_>,
    scope: &Scope,
    budget: Option<(&Budget, usize)>,
    native: bool,
    folded: &mut SmallVec<[Response; 4]>,
) {
    data.requests += u64::from(scope.count);
    for rsp in report.responses(scope) {
        let status = rsp.status;
        data.observe_latencies_native(report.latencies(rsp), native);
        for eos in report.ends(rsp) {
            let n = u64::from(eos.streams);
            if n == 0 {
                continue;
            }
            let success = is_success(eos.end, status);
            // validate() bounds the status to three digits.
            let status = status as u16;
            match data.response_mut(status, success) {
                Some(r) => r.count += n,
                None if budget.is_none_or(|(b, ceiling)| b.try_acquire_below(ceiling)) => {
                    data.responses.push(Response {
                        status,
                        success,
                        count: n,
                    })
                }
                None => folded.push(Response {
                    status,
                    success,
                    count: n,
                }),
            }
        }
    }
}

/// Bytes sent over the closed connections of a transport summary.
fn sent(disconnects: &[(u64, u64)]) -> u64 {
    disconnects
        .iter()
        .fold(0u64, |sum, &(_, bytes)| sum.saturating_add(bytes))
}

fn tcp_labels(
    w: &mut LabelBuf,
    direction: &str,
    peer: &str,
    source: WorkloadRef<'_>,
    target: WorkloadRef<'_>,
) {
    w.start(&labels::TCP);
    w.push(direction);
    w.push(peer);
    w.push(source.pod);
    w.push(target.pod);
    w.push(source.deployment);
    w.push(target.deployment);
}
