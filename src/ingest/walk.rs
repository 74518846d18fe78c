//! One walk over the store, for every output: the text exposition, remote
//! write (and, over the pair table, the embedded Stat store) are visitors of
//! it, so what is pushed is exactly what is scraped.
//!
//! The families, their help texts, sample names and `le` tables are defined
//! here once. A walk hands its visitor each series' typed labels
//! ([`Labels`]) once, then that series' samples with their own labels
//! (`http_status_code`, `classification`, `le`) apart, so the text exposition
//! renders a series' labels once for all its lines and remote write encodes
//! without copying them.
//!
//! Walks come in two orders over the same code: family by family and shard
//! by shard, resumable at a slot ([`Ingester::walk_part_from`], what a streamed
//! scrape needs, since the text format keeps a family's lines together), and
//! series by series with all their families ([`Ingester::walk`], what remote
//! write needs, touching each series once).
//!
//! Locking is the scrape's: a shard's read lock for the shard, each series'
//! own lock while its samples are visited.

use std::borrow::Cow;
use std::sync::LazyLock;

use smallvec::{SmallVec, smallvec};

use super::Ingester;
use super::labels::{self, LabelRef, LabelSet, Schema};
use super::native::Native;
use super::rollup::{self, AnyProjected, Projected};
use super::series::{LATENCY_BOUNDS_MS, MeshData, TCP_DURATION_BOUNDS_MS, TcpData};
use super::table::SHARDS;

/// A series' labels as a walk hands them out.
#[derive(Clone, Copy, Debug)]
pub enum Labels<'a> {
    /// A store series.
    Set(LabelRef<'a>),
    /// Labels from elsewhere (a client library's registry).
    Pairs(&'a [(&'a str, &'a str)]),
}

impl<'a> Labels<'a> {
    /// The `(name, value)` pairs, empty values included.
    pub fn iter(self) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> {
        let (set, pairs) = match self {
            Labels::Set(values) => (
                Some(values.pairs().map(|(n, v)| -> (&'a str, _) { (n, v) })),
                None,
            ),
            Labels::Pairs(pairs) => (
                None,
                Some(pairs.iter().map(|&(n, v)| (n, Cow::Borrowed(v)))),
            ),
        };
        set.into_iter().flatten().chain(pairs.into_iter().flatten())
    }
}

/// A sample's value, as exact as the store keeps it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Count(u64),
    /// Tenths of the unit (latency sums are kept in tenths of a millisecond).
    Tenths(u64),
    Float(f64),
}

impl Value {
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Count(v) => v as f64,
            Value::Tenths(v) => v as f64 / 10.0,
            Value::Float(v) => v,
        }
    }
}

/// A histogram bucket's upper bound in both spellings a visitor needs.
#[derive(Debug)]
pub struct Bound {
    /// The `le` label's value.
    pub le: String,
    /// `,le="…"} `, as a text exposition line writes it after the series'
    /// labels.
    pub text: String,
}

/// The labels a sample adds to its series' labels.
#[derive(Clone, Copy, Debug)]
pub enum Extra<'a> {
    None,
    /// A histogram bucket's `le`.
    Le(&'a Bound),
    /// A `responses_total` class: `http_status_code` and `classification`.
    Response {
        status: u16,
        success: bool,
    },
    /// Labels from elsewhere (a client library's registry).
    Pairs(&'a [(&'a str, &'a str)]),
}

impl<'a> Extra<'a> {
    /// The labels as pairs; `digits` holds a status code's spelling.
    pub fn pairs<'b>(&'b self, digits: &'b mut itoa::Buffer) -> SmallVec<[(&'b str, &'b str); 2]>
    where
        'a: 'b,
    {
        match *self {
            Extra::None => SmallVec::new(),
            Extra::Le(bound) => smallvec![("le", bound.le.as_str())],
            Extra::Response { status, success } => smallvec![
                ("http_status_code", digits.format(status)),
                ("classification", classification(success)),
            ],
            Extra::Pairs(pairs) => pairs.iter().copied().collect(),
        }
    }
}

/// `responses_total`'s `classification` value.
pub fn classification(success: bool) -> &'static str {
    if success { "success" } else { "failure" }
}

/// Receives the series and samples of a walk.
pub trait Visit {
    /// A series begins: the samples up to the next call carry `labels`.
    fn series(&mut self, _labels: Labels<'_>) {}

    /// One sample: `labels` are its series' labels (in the store's order,
    /// empty values included, as `/metrics` prints them); `extra` are the
    /// labels this sample adds to them.
    fn sample(&mut self, name: &str, labels: Labels<'_>, extra: Extra<'_>, value: Value);

    /// A histogram of the current series: by default its samples,
    /// cumulative `_bucket{le}` ones, then `_sum` and `_count`. A visitor
    /// that prints them (the text exposition) takes the whole histogram in
    /// one call.
    fn histogram(&mut self, labels: Labels<'_>, h: Histogram<'_>) {
        classic_samples(self, labels, h);
    }

    /// Whether a resumable walk should stop after the current series.
    fn full(&self) -> bool {
        false
    }
}

/// Prometheus' staleness marker (its `value.StaleNaN`): a NaN with this bit
/// pattern, written as a sample, ends a series at that sample's timestamp.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Passes a walk on with every value replaced by the stale marker.
struct Stale<'a, V>(&'a mut V);

impl<V: Visit> Visit for Stale<'_, V> {
    fn series(&mut self, labels: Labels<'_>) {
        self.0.series(labels);
    }

    fn sample(&mut self, name: &str, labels: Labels<'_>, extra: Extra<'_>, _: Value) {
        let stale = Value::Float(f64::from_bits(STALE_NAN_BITS));
        self.0.sample(name, labels, extra, stale);
    }
}

/// A histogram's classic samples: cumulative `_bucket{le}` ones, then
/// `_sum` and `_count`; returns the count.
pub fn classic_samples<V: Visit + ?Sized>(
    visit: &mut V,
    labels: Labels<'_>,
    h: Histogram<'_>,
) -> u64 {
    let mut cumulative = 0;
    for (count, bound) in h.buckets.iter().zip(h.bounds) {
        cumulative += count;
        visit.sample(
            h.names.bucket,
            labels,
            Extra::Le(bound),
            Value::Count(cumulative),
        );
    }
    visit.sample(h.names.sum, labels, Extra::None, h.sum);
    visit.sample(h.names.count, labels, Extra::None, Value::Count(cumulative));
    cumulative
}

/// The store's metric families, in exposition order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Requests,
    Responses,
    Latency,
    TcpOpen,
    TcpClose,
    TcpWriteBytes,
    TcpDuration,
}

/// The two tables families are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TableOf {
    Mesh,
    Tcp,
}

/// Names of one histogram family's three sample kinds.
#[derive(Debug)]
pub struct HistogramNames {
    /// The family's name: a native histogram's series name.
    pub family: &'static str,
    pub bucket: &'static str,
    pub sum: &'static str,
    pub count: &'static str,
}

/// One series' histogram: per-bucket counts (not cumulative), each with its
/// bound, and the sum; with `-native-histograms`, also its native buckets
/// (over the same observations, so of the same count and sum), which only
/// the protobuf outputs carry.
#[derive(Clone, Copy, Debug)]
pub struct Histogram<'a> {
    pub names: &'static HistogramNames,
    pub bounds: &'static [Bound],
    pub buckets: &'a [u64],
    pub sum: Value,
    pub native: Option<&'a Native>,
}

impl Family {
    pub const ALL: [Family; 7] = [
        Family::Requests,
        Family::Responses,
        Family::Latency,
        Family::TcpOpen,
        Family::TcpClose,
        Family::TcpWriteBytes,
        Family::TcpDuration,
    ];

    pub(super) const MESH: [Family; 3] = [Family::Requests, Family::Responses, Family::Latency];
    pub(super) const TCP: [Family; 4] = [
        Family::TcpOpen,
        Family::TcpClose,
        Family::TcpWriteBytes,
        Family::TcpDuration,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Requests => "requests_total",
            Family::Responses => "responses_total",
            Family::Latency => "response_latency_ms",
            Family::TcpOpen => "tcp_open_total",
            Family::TcpClose => "tcp_close_total",
            Family::TcpWriteBytes => "tcp_write_bytes_total",
            Family::TcpDuration => "tcp_connection_duration_ms",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Family::Requests => "Total number of requests the proxies saw.",
            Family::Responses => "Total number of responses, by HTTP status and classification.",
            Family::Latency => "Response latency in milliseconds.",
            Family::TcpOpen => "Total number of TCP connections opened.",
            Family::TcpClose => "Total number of TCP connections closed.",
            Family::TcpWriteBytes => "Total bytes written on closed TCP connections.",
            Family::TcpDuration => "Lifetime of closed TCP connections in milliseconds.",
        }
    }

    /// The exposition's `# TYPE`.
    pub fn kind(self) -> &'static str {
        match self {
            Family::Latency | Family::TcpDuration => "histogram",
            _ => "counter",
        }
    }

    /// The label names of this family's series.
    pub fn schema(self) -> &'static Schema {
        match self.table() {
            TableOf::Mesh => &labels::MESH,
            TableOf::Tcp => &labels::TCP,
        }
    }

    fn table(self) -> TableOf {
        match self {
            Family::Requests | Family::Responses | Family::Latency => TableOf::Mesh,
            _ => TableOf::Tcp,
        }
    }
}

/// The bounds of a histogram layout, `+Inf` last, spelled once.
fn bounds(finite: impl Iterator<Item = u64>) -> Vec<Bound> {
    finite
        .map(|b| b.to_string())
        .chain(std::iter::once("+Inf".to_string()))
        .map(|le| Bound {
            text: format!(",le=\"{le}\"}} "),
            le,
        })
        .collect()
}

static LATENCY_LE: LazyLock<Vec<Bound>> =
    LazyLock::new(|| bounds(LATENCY_BOUNDS_MS.iter().map(|&b| u64::from(b))));
static TCP_LE: LazyLock<Vec<Bound>> =
    LazyLock::new(|| bounds(TCP_DURATION_BOUNDS_MS.iter().copied()));

const LATENCY: HistogramNames = HistogramNames {
    family: "response_latency_ms",
    bucket: "response_latency_ms_bucket",
    sum: "response_latency_ms_sum",
    count: "response_latency_ms_count",
};

const TCP_DURATION: HistogramNames = HistogramNames {
    family: "tcp_connection_duration_ms",
    bucket: "tcp_connection_duration_ms_bucket",
    sum: "tcp_connection_duration_ms_sum",
    count: "tcp_connection_duration_ms_count",
};

static MESH_OVERFLOW: LazyLock<LabelSet> = LazyLock::new(|| LabelSet::overflow(&labels::MESH));
static TCP_OVERFLOW: LazyLock<LabelSet> = LazyLock::new(|| LabelSet::overflow(&labels::TCP));

/// Where a resumable walk goes: one shard of a family, or its overflow
/// series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Shard(Family, usize),
    Overflow(Family),
}

impl Part {
    /// Every part of a family, in walk order.
    pub fn of(family: Family) -> impl Iterator<Item = Part> {
        (0..SHARDS)
            .map(move |s| Part::Shard(family, s))
            .chain(std::iter::once(Part::Overflow(family)))
    }
}

impl Ingester {
    /// Visits every sample of the mesh and tcp series, series by series:
    /// what `/metrics` prints for them, in no particular order.
    pub fn walk(&self, visit: &mut impl Visit) {
        let export = self.config.export;
        if export.pods() {
            // With the roll-up too, pod-less series are exported inside it.
            let keep = |labels: LabelRef<'_>| !export.deployments() || !rollup::is_pod_less(labels);
            for shard in 0..SHARDS {
                self.mesh.for_each_in_shard(shard, |labels, d| {
                    if keep(labels) {
                        mesh_series(&Family::MESH, labels, d, visit);
                    }
                });
            }
            for shard in 0..SHARDS {
                self.tcp.for_each_in_shard(shard, |labels, d| {
                    if keep(labels) {
                        tcp_series(&Family::TCP, labels, d, visit);
                    }
                });
            }
            if let Some(d) = &*self.mesh_overflow.lock() {
                mesh_series(&Family::MESH, MESH_OVERFLOW.view(&labels::MESH), d, visit);
            }
            if let Some(d) = &*self.tcp_overflow.lock() {
                tcp_series(&Family::TCP, TCP_OVERFLOW.view(&labels::TCP), d, visit);
            }
        }
        if export.deployments() {
            let mesh = self.project_mesh();
            for (labels, d) in (0..mesh.len()).filter_map(|i| mesh.view(i)) {
                mesh_series(&Family::MESH, labels, d, visit);
            }
            let tcp = self.project_tcp();
            for (labels, d) in (0..tcp.len()).filter_map(|i| tcp.view(i)) {
                tcp_series(&Family::TCP, labels, d, visit);
            }
        }
    }

    /// Visits, once, the samples of the series evicted since the last call
    /// that are not live again, every value Prometheus' stale marker
    /// ([`STALE_NAN_BITS`]): what remote write pushes so that queries stop
    /// returning an evicted series at once rather than for Prometheus'
    /// five-minute lookback. With the roll-up, a roll-up series is marked
    /// once none of the series it sums is left.
    pub fn walk_evicted(&self, visit: &mut impl Visit) {
        let gone = std::mem::take(&mut *self.evicted.lock());
        if gone.mesh.is_empty() && gone.tcp.is_empty() {
            return;
        }
        let mut stale = Stale(visit);
        let export = self.config.export;
        let mesh_overflow = MESH_OVERFLOW.view(&labels::MESH);
        let tcp_overflow = TCP_OVERFLOW.view(&labels::TCP);
        let mesh_live = |l: LabelRef<'_>| {
            if l == mesh_overflow {
                self.mesh_overflow.lock().is_some()
            } else {
                self.mesh.contains(l)
            }
        };
        let tcp_live = |l: LabelRef<'_>| {
            if l == tcp_overflow {
                self.tcp_overflow.lock().is_some()
            } else {
                self.tcp.contains(l)
            }
        };
        if export.pods() {
            let exported = |l| !export.deployments() || !rollup::is_pod_less(l);
            for (labels, d) in &gone.mesh {
                let l = labels.view(&labels::MESH);
                if exported(l) && !mesh_live(l) {
                    mesh_series(&Family::MESH, l, d, &mut stale);
                }
            }
            for (labels, d) in &gone.tcp {
                let l = labels.view(&labels::TCP);
                if exported(l) && !tcp_live(l) {
                    tcp_series(&Family::TCP, l, d, &mut stale);
                }
            }
        }
        if export.deployments() {
            let live = self.project_mesh();
            let live: std::collections::HashSet<&str> =
                live.series.iter().map(|(l, _)| l.text()).collect();
            let gone_mesh = rollup::project_list(&gone.mesh, &labels::MESH);
            for (l, d) in (0..gone_mesh.len()).filter_map(|i| gone_mesh.view(i)) {
                if !live.contains(l.rendered()) {
                    mesh_series(&Family::MESH, l, d, &mut stale);
                }
            }
            let live = self.project_tcp();
            let live: std::collections::HashSet<&str> =
                live.series.iter().map(|(l, _)| l.text()).collect();
            let gone_tcp = rollup::project_list(&gone.tcp, &labels::TCP);
            for (l, d) in (0..gone_tcp.len()).filter_map(|i| gone_tcp.view(i)) {
                if !live.contains(l.rendered()) {
                    tcp_series(&Family::TCP, l, d, &mut stale);
                }
            }
        }
    }

    /// The mesh table's per-deployment roll-up ([`rollup`]).
    pub fn project_mesh(&self) -> Projected<MeshData> {
        let overflow = self.mesh_overflow.lock().clone();
        let overflow_labels = MESH_OVERFLOW.view(&labels::MESH);
        rollup::project_table(
            &self.mesh,
            &labels::MESH,
            overflow.as_ref().map(|d| (overflow_labels, d)),
        )
    }

    /// The tcp table's per-deployment roll-up.
    pub fn project_tcp(&self) -> Projected<TcpData> {
        let overflow = self.tcp_overflow.lock().clone();
        let overflow_labels = TCP_OVERFLOW.view(&labels::TCP);
        rollup::project_table(
            &self.tcp,
            &labels::TCP,
            overflow.as_ref().map(|d| (overflow_labels, d)),
        )
    }

    /// Visits family `f`'s roll-up from resume token `token` (0: a fresh
    /// roll-up) until `visit` is full: then the token to resume with.
    fn walk_rollup_from(&self, f: Family, token: usize, visit: &mut impl Visit) -> Option<usize> {
        let (projected, start, kept) = if token == 0 {
            let projected = match f.table() {
                TableOf::Mesh => AnyProjected::Mesh(self.project_mesh()),
                TableOf::Tcp => AnyProjected::Tcp(self.project_tcp()),
            };
            (std::sync::Arc::new(projected), 0, None)
        } else {
            let Some(entry) = self.rollups.take(token) else {
                self.health.rollups_cut.inc();
                return None;
            };
            (entry.projected.clone(), entry.next, Some(entry))
        };
        let len = match &*projected {
            AnyProjected::Mesh(p) => p.len(),
            AnyProjected::Tcp(p) => p.len(),
        };
        for i in start..len {
            match &*projected {
                AnyProjected::Mesh(p) => {
                    if let Some((labels, d)) = p.view(i) {
                        mesh_series(&[f], labels, d, visit);
                    }
                }
                AnyProjected::Tcp(p) => {
                    if let Some((labels, d)) = p.view(i) {
                        tcp_series(&[f], labels, d, visit);
                    }
                }
            }
            if visit.full() && i + 1 < len {
                return Some(match kept {
                    Some(entry) => self.rollups.put_back(entry, i + 1),
                    None => self.rollups.keep(projected.clone(), i + 1),
                });
            }
        }
        None
    }

    /// Visits one family's samples in `part` from series slot `from` on,
    /// stopping after the first series that leaves `visit` [`Visit::full`]:
    /// then the slot to resume from; `None` once the part is done.
    pub fn walk_part_from(&self, part: Part, from: usize, visit: &mut impl Visit) -> Option<usize> {
        match part {
            Part::Shard(_, _) if !self.config.export.pods() => None,
            Part::Shard(f, shard) => {
                let export = self.config.export;
                let keep =
                    |labels: LabelRef<'_>| !export.deployments() || !rollup::is_pod_less(labels);
                match f.table() {
                    TableOf::Mesh => self.mesh.for_each_in_shard_from(shard, from, |labels, d| {
                        if keep(labels) {
                            mesh_series(&[f], labels, d, visit);
                        }
                        !visit.full()
                    }),
                    TableOf::Tcp => self.tcp.for_each_in_shard_from(shard, from, |labels, d| {
                        if keep(labels) {
                            tcp_series(&[f], labels, d, visit);
                        }
                        !visit.full()
                    }),
                }
            }
            // The roll-up of a family comes after its overflow series, in
            // its part: resumed by token.
            Part::Overflow(f) if from != 0 => self.walk_rollup_from(f, from, visit),
            Part::Overflow(f) => {
                if !self.config.export.pods() {
                    return self.walk_rollup_from(f, 0, visit);
                }
                match f.table() {
                    TableOf::Mesh => {
                        if let Some(d) = &*self.mesh_overflow.lock() {
                            mesh_series(&[f], MESH_OVERFLOW.view(&labels::MESH), d, visit);
                        }
                    }
                    TableOf::Tcp => {
                        if let Some(d) = &*self.tcp_overflow.lock() {
                            tcp_series(&[f], TCP_OVERFLOW.view(&labels::TCP), d, visit);
                        }
                    }
                }
                if self.config.export.deployments() {
                    return self.walk_rollup_from(f, 0, visit);
                }
                None
            }
        }
    }
}

/// Whether `family` has samples for this series (a visitor hears of a
/// series only when it has).
fn mesh_has(family: Family, d: &MeshData) -> bool {
    match family {
        Family::Requests => true,
        Family::Responses => !d.responses.is_empty(),
        // A label set whose responses carried no latency has no histogram.
        Family::Latency => d.latency.iter().any(|&c| c > 0),
        _ => false,
    }
}

fn tcp_has(family: Family, d: &TcpData) -> bool {
    match family {
        Family::TcpOpen | Family::TcpClose | Family::TcpWriteBytes => true,
        Family::TcpDuration => d.duration.iter().any(|&c| c > 0),
        _ => false,
    }
}

fn mesh_series(families: &[Family], values: LabelRef<'_>, d: &MeshData, visit: &mut impl Visit) {
    let labels = Labels::Set(values);
    let mut begun = false;
    for &f in families {
        if !mesh_has(f, d) {
            continue;
        }
        if !std::mem::replace(&mut begun, true) {
            visit.series(labels);
        }
        match f {
            Family::Requests => {
                visit.sample(f.name(), labels, Extra::None, Value::Count(d.requests))
            }
            Family::Responses => {
                for r in &d.responses {
                    let extra = Extra::Response {
                        status: r.status,
                        success: r.success,
                    };
                    visit.sample(f.name(), labels, extra, Value::Count(r.count));
                }
            }
            Family::Latency => histogram(
                &LATENCY,
                &LATENCY_LE,
                labels,
                &d.latency,
                Value::Tenths(d.latency_sum_tenths),
                d.native.as_deref(),
                visit,
            ),
            _ => {}
        }
    }
}

fn tcp_series(families: &[Family], values: LabelRef<'_>, d: &TcpData, visit: &mut impl Visit) {
    let labels = Labels::Set(values);
    let mut begun = false;
    for &f in families {
        if !tcp_has(f, d) {
            continue;
        }
        if !std::mem::replace(&mut begun, true) {
            visit.series(labels);
        }
        match f {
            Family::TcpOpen => visit.sample(f.name(), labels, Extra::None, Value::Count(d.opens)),
            Family::TcpClose => {
                visit.sample(f.name(), labels, Extra::None, Value::Count(d.closes()));
            }
            Family::TcpWriteBytes => {
                visit.sample(f.name(), labels, Extra::None, Value::Count(d.write_bytes));
            }
            Family::TcpDuration => histogram(
                &TCP_DURATION,
                &TCP_LE,
                labels,
                &d.duration,
                Value::Count(d.duration_sum_ms),
                d.native.as_deref(),
                visit,
            ),
            _ => {}
        }
    }
}

fn histogram<const N: usize>(
    names: &'static HistogramNames,
    bounds: &'static [Bound],
    labels: Labels<'_>,
    buckets: &[u64; N],
    sum: Value,
    native: Option<&Native>,
    visit: &mut impl Visit,
) {
    visit.histogram(
        labels,
        Histogram {
            names,
            bounds,
            buckets,
            sum,
            native,
        },
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::ingest::{Config, Enrich, Health, OVERFLOW, WorkloadRef};
    use crate::proto::common::{HttpMethod, TcpAddress, http_method};
    use crate::proto::net::ip_to_proto;
    use crate::proto::proxy::telemetry::*;
    use prost::Message as _;

    /// Two pods of documentation addresses, one with a deployment (shared
    /// with the exposition's tests).
    pub(crate) struct Meta;

    impl Enrich for Meta {
        fn by_ip(&self, ip: &IpAddr) -> Option<WorkloadRef<'_>> {
            match ip.to_string().as_str() {
                "192.0.2.10" => Some(WorkloadRef {
                    pod: "shop/web-1",
                    deployment: "shop/web",
                }),
                "192.0.2.20" => Some(WorkloadRef {
                    pod: "shop/books-1",
                    deployment: "",
                }),
                _ => None,
            }
        }
        fn by_pod(&self, ns: &str, name: &str) -> Option<WorkloadRef<'_>> {
            (ns == "shop" && name == "web-1").then_some(WorkloadRef {
                pod: "shop/web-1",
                deployment: "shop/web",
            })
        }
    }

    fn scope(src: &str, dst: &str, path: &str, latencies: &[(u32, u32)]) -> RequestScope {
        RequestScope {
            ctx: Some(RequestCtx {
                source_ip: Some(ip_to_proto(src.parse().unwrap())),
                target_addr: Some(TcpAddress {
                    ip: Some(ip_to_proto(dst.parse().unwrap())),
                    port: 80,
                }),
                authority: "example.com".into(),
                method: Some(HttpMethod {
                    r#type: Some(http_method::Type::Registered(
                        http_method::Registered::Post as i32,
                    )),
                }),
                path: path.into(),
            }),
            count: 3,
            responses: [200, 503]
                .into_iter()
                .map(|status| ResponseScope {
                    ctx: Some(ResponseCtx {
                        http_status_code: status,
                    }),
                    response_latencies: latencies
                        .iter()
                        .map(|&(latency, count)| Latency { latency, count })
                        .collect(),
                    ends: vec![EosScope {
                        ctx: Some(EosCtx {
                            end: Some(eos_ctx::End::Other(true)),
                        }),
                        streams: vec![StreamSummary::default(); 2],
                    }],
                })
                .collect(),
        }
    }

    fn summary(duration_ms: u64) -> TransportSummary {
        TransportSummary {
            duration_ms,
            bytes_sent: 1000 + duration_ms,
        }
    }

    /// A store with enriched and unknown addresses, label values that need
    /// escaping, latency-less series, tcp series with and without closes,
    /// and both overflow series (the cap is small).
    fn store() -> Ingester {
        store_configured(crate::ingest::Export::Pods, false)
    }

    fn store_exporting(export: crate::ingest::Export) -> Ingester {
        store_configured(export, false)
    }

    /// [`store`], with or without native histogram buckets.
    pub(crate) fn store_with(native_histograms: bool) -> Ingester {
        store_configured(crate::ingest::Export::Pods, native_histograms)
    }

    fn store_configured(export: crate::ingest::Export, native_histograms: bool) -> Ingester {
        let health = Health::register(&prometheus::Registry::new()).unwrap();
        let ingester = Ingester::new(
            Config {
                max_series: 8,
                export,
                native_histograms,
                ..Config::default()
            },
            health,
        );
        let mut report = ReportRequest {
            process: Some(Process {
                node: "node-1".into(),
                scheduled_instance: "web-1".into(),
                scheduled_namespace: "shop".into(),
            }),
            proxy: report_request::Proxy::Outbound as i32,
            server_transports: vec![ServerTransport {
                source_ip: Some(ip_to_proto("198.51.100.1".parse().unwrap())),
                connects: 4,
                disconnects: vec![summary(3), summary(70_000)],
            }],
            client_transports: vec![ClientTransport {
                target_addr: Some(TcpAddress {
                    ip: Some(ip_to_proto("192.0.2.20".parse().unwrap())),
                    port: 80,
                }),
                connects: 1,
                disconnects: vec![],
            }],
            requests: vec![
                scope("192.0.2.10", "192.0.2.20", "/books", &[(45, 2), (9_999, 1)]),
                scope("192.0.2.10", "198.51.100.9", "/a\"b\\c\nd,e=\"f", &[(1, 1)]),
                scope("198.51.100.8", "192.0.2.20", "/no-latency", &[]),
            ],
        };
        ingester
            .ingest_bytes(&report.encode_to_vec(), &Meta)
            .unwrap();
        // Past the cap: these fold into the overflow series.
        report.requests = (0..4)
            .map(|i| scope("192.0.2.10", "192.0.2.20", &format!("/more/{i}"), &[(7, 1)]))
            .collect();
        report.server_transports[0].source_ip = Some(ip_to_proto("198.51.100.2".parse().unwrap()));
        ingester
            .ingest_bytes(&report.encode_to_vec(), &Meta)
            .unwrap();
        ingester
    }

    use super::testing::{Collect, Sample, parse_text};

    fn sorted(mut samples: Vec<Sample>) -> Vec<Sample> {
        samples.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        samples
    }

    #[test]
    fn walk_and_exposition_agree() {
        let ingester = store();
        let mut text = Vec::new();
        ingester.render(&mut text);
        let text = String::from_utf8(text).unwrap();
        let mut walked = Collect::default();
        ingester.walk(&mut walked);

        let scraped = sorted(parse_text(&text));
        let walked = sorted(walked.0);
        assert!(scraped.len() > 100, "the store is not trivial: {text}");
        assert_eq!(walked, scraped);

        // The store covers what the comparison is meant to cover.
        let has = |name: &str, label: (&str, &str)| {
            walked
                .iter()
                .any(|(n, l, _)| n == name && l.get(label.0).map(String::as_str) == Some(label.1))
        };
        assert!(has("requests_total", ("path", "/a\"b\\c\nd,e=\"f")));
        assert!(has("requests_total", ("path", OVERFLOW)));
        assert!(has("tcp_open_total", ("peer", OVERFLOW)));
        assert!(has("tcp_connection_duration_ms_bucket", ("le", "+Inf")));
        assert!(has("response_latency_ms_sum", ("path", "/books")));
        assert!(!has("response_latency_ms_count", ("path", "/no-latency")));
    }

    #[test]
    fn walk_and_exposition_agree_on_the_roll_up() {
        use crate::ingest::Export;
        for export in [Export::Deployments, Export::Both] {
            let ingester = store_exporting(export);
            let mut text = Vec::new();
            ingester.render(&mut text);
            let text = String::from_utf8(text).unwrap();
            let mut walked = Collect::default();
            ingester.walk(&mut walked);
            let walked = sorted(walked.0);
            assert_eq!(walked, sorted(parse_text(&text)), "{export}");
            let pod_less = |l: &std::collections::BTreeMap<String, String>| {
                l["source"].is_empty() && l["target"].is_empty()
            };
            assert!(walked.iter().any(|(_, l, _)| pod_less(l)));
            assert_eq!(
                walked.iter().all(|(_, l, _)| pod_less(l)),
                export == Export::Deployments,
                "{export}"
            );
        }
    }
}

#[cfg(test)]
#[allow(dead_code)]
#[path = "../../tests/support/exposition.rs"]
mod exposition_text;

/// Helpers shared by the tests that compare the walk with a text exposition.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;

    use super::{Extra, Labels, Value, Visit};

    pub(crate) type Sample = (String, BTreeMap<String, String>, f64);

    /// Every sample of a walk, its labels merged.
    #[derive(Default)]
    pub(crate) struct Collect(pub(crate) Vec<Sample>);

    impl Visit for Collect {
        fn sample(&mut self, name: &str, labels: Labels<'_>, extra: Extra<'_>, value: Value) {
            let mut digits = itoa::Buffer::new();
            let labels = labels
                .iter()
                .chain(
                    extra
                        .pairs(&mut digits)
                        .into_iter()
                        .map(|(n, v)| (n, v.into())),
                )
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            self.0.push((name.to_string(), labels, value.as_f64()));
        }
    }

    /// The samples of a text exposition (parsed as the integration tests
    /// parse it), sorted by name and labels.
    pub(crate) fn parse_text(text: &str) -> Vec<Sample> {
        let mut out = super::exposition_text::Exposition::parse(text).samples;
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }
}
