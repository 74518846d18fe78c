//! One walk over the mesh and tcp series, sample by sample, for consumers
//! other than the text exposition (remote write).
//!
//! It yields exactly the samples [`super::exposition`] prints for the same
//! store — the same names, label sets and values — and a test below pins the
//! two against each other. The store keeps each series' labels as rendered,
//! escaped text; the walk parses that text back into unescaped pairs once per
//! series and hands every sample of the series the same pairs, with the
//! sample's own labels (`http_status_code`, `classification`, `le`) passed
//! apart so a consumer can sort or encode without copying the series' labels.
//!
//! Locking is the scrape's: a shard's read lock for the shard, each series'
//! own lock while its samples are visited.

use std::ops::Range;
use std::sync::LazyLock;

use smallvec::SmallVec;

use super::series::{
    LATENCY_BOUNDS_MS, LATENCY_BUCKETS, MeshData, TCP_DURATION_BOUNDS_MS, TCP_DURATION_BUCKETS,
    TcpData,
};
use super::table::SHARDS;
use super::{Ingester, OVERFLOW};

/// Receives the samples of a walk.
pub trait Visit {
    /// One sample. `labels` are the series' labels in the store's order
    /// (values unescaped, empty values included, as `/metrics` prints them);
    /// `extra` are the labels this sample adds to them.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], extra: &[(&str, &str)], value: f64);
}

/// A series' label pairs as the walk hands them out.
pub type Pairs<'a> = SmallVec<[(&'a str, &'a str); 8]>;

/// The labels of every mesh series, in the store's order (the overflow
/// series carries them all with the value `__overflow__`).
const MESH_LABELS: [&str; 6] = [
    "source",
    "target",
    "source_deployment",
    "target_deployment",
    "method",
    "path",
];

/// The labels of every tcp series, in the store's order.
const TCP_LABELS: [&str; 6] = [
    "direction",
    "peer",
    "source",
    "target",
    "source_deployment",
    "target_deployment",
];

/// `le` values of each histogram layout, rendered once (as `/metrics` does).
fn le_values(bounds: impl Iterator<Item = u64>) -> Vec<String> {
    bounds
        .map(|b| b.to_string())
        .chain(std::iter::once("+Inf".to_string()))
        .collect()
}

static LATENCY_LE: LazyLock<Vec<String>> =
    LazyLock::new(|| le_values(LATENCY_BOUNDS_MS.iter().map(|&b| u64::from(b))));
static TCP_LE: LazyLock<Vec<String>> =
    LazyLock::new(|| le_values(TCP_DURATION_BOUNDS_MS.iter().copied()));

/// Names of one histogram family's three sample kinds.
struct HistogramNames {
    bucket: &'static str,
    sum: &'static str,
    count: &'static str,
}

const LATENCY: HistogramNames = HistogramNames {
    bucket: "response_latency_ms_bucket",
    sum: "response_latency_ms_sum",
    count: "response_latency_ms_count",
};

const TCP_DURATION: HistogramNames = HistogramNames {
    bucket: "tcp_connection_duration_ms_bucket",
    sum: "tcp_connection_duration_ms_sum",
    count: "tcp_connection_duration_ms_count",
};

/// Unescaped copies of one series' label text, reused across series.
#[derive(Debug, Default)]
pub struct LabelScratch {
    text: String,
    spans: Vec<(Range<usize>, Range<usize>)>,
}

impl LabelScratch {
    /// Parses rendered label text (`name="value",…`, values escaped with
    /// `\\`, `\"` and `\n`) into pairs.
    pub fn parse(&mut self, rendered: &str) -> Pairs<'_> {
        self.text.clear();
        self.spans.clear();
        let mut rest = rendered;
        while let Some(eq) = rest.find("=\"") {
            let name_start = self.text.len();
            self.text.push_str(rest[..eq].trim_start_matches(','));
            let name = name_start..self.text.len();
            rest = &rest[eq + 2..];
            let value_start = self.text.len();
            let mut from = 0;
            let mut chars = rest.char_indices();
            let mut end = rest.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = i;
                        break;
                    }
                    '\\' => {
                        self.text.push_str(&rest[from..i]);
                        match chars.next() {
                            Some((_, 'n')) => self.text.push('\n'),
                            Some((_, c)) => self.text.push(c),
                            None => {}
                        }
                        from = chars.offset();
                    }
                    _ => {}
                }
            }
            self.text.push_str(&rest[from.min(end)..end]);
            self.spans.push((name, value_start..self.text.len()));
            rest = rest.get(end + 1..).unwrap_or("");
        }
        self.spans
            .iter()
            .map(|(n, v)| (&self.text[n.clone()], &self.text[v.clone()]))
            .collect()
    }
}

fn overflow_pairs(names: &[&'static str]) -> Pairs<'static> {
    names.iter().map(|&n| (n, OVERFLOW)).collect()
}

impl Ingester {
    /// Visits every sample of the mesh and tcp series: what `/metrics`
    /// prints for them, in no particular order.
    pub fn walk(&self, visit: &mut impl Visit) {
        let mut scratch = LabelScratch::default();
        for shard in 0..SHARDS {
            self.mesh.for_each_in_shard(shard, |labels, d| {
                mesh_samples(&scratch.parse(labels), d, visit);
            });
        }
        for shard in 0..SHARDS {
            self.tcp.for_each_in_shard(shard, |labels, d| {
                tcp_samples(&scratch.parse(labels), d, visit);
            });
        }
        if let Some(d) = &*self.mesh_overflow.lock() {
            mesh_samples(&overflow_pairs(&MESH_LABELS), d, visit);
        }
        if let Some(d) = &*self.tcp_overflow.lock() {
            tcp_samples(&overflow_pairs(&TCP_LABELS), d, visit);
        }
    }
}

fn mesh_samples(labels: &[(&str, &str)], d: &MeshData, visit: &mut impl Visit) {
    visit.sample("requests_total", labels, &[], d.requests as f64);
    let mut status = itoa::Buffer::new();
    for r in &d.responses {
        let class = if r.success { "success" } else { "failure" };
        visit.sample(
            "responses_total",
            labels,
            &[
                ("http_status_code", status.format(r.status)),
                ("classification", class),
            ],
            r.count as f64,
        );
    }
    // A label set whose responses carried no latency has no histogram.
    if d.latency.iter().any(|&c| c > 0) {
        let sum = d.latency_sum_tenths as f64 / 10.0;
        histogram::<LATENCY_BUCKETS>(&LATENCY, &LATENCY_LE, labels, &d.latency, sum, visit);
    }
}

fn tcp_samples(labels: &[(&str, &str)], d: &TcpData, visit: &mut impl Visit) {
    visit.sample("tcp_open_total", labels, &[], d.opens as f64);
    visit.sample("tcp_close_total", labels, &[], d.closes as f64);
    visit.sample("tcp_write_bytes_total", labels, &[], d.write_bytes as f64);
    if d.closes > 0 {
        let sum = d.duration_sum_ms as f64;
        histogram::<TCP_DURATION_BUCKETS>(&TCP_DURATION, &TCP_LE, labels, &d.duration, sum, visit);
    }
}

/// Cumulative `_bucket{le}` samples, then `_sum` and `_count`.
fn histogram<const N: usize>(
    names: &HistogramNames,
    le: &[String],
    labels: &[(&str, &str)],
    buckets: &[u64; N],
    sum: f64,
    visit: &mut impl Visit,
) {
    let mut cumulative = 0;
    for (count, le) in buckets.iter().zip(le) {
        cumulative += count;
        visit.sample(names.bucket, labels, &[("le", le)], cumulative as f64);
    }
    visit.sample(names.sum, labels, &[], sum);
    visit.sample(names.count, labels, &[], cumulative as f64);
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::ingest::{Config, Enrich, Health, WorkloadRef};
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
        let health = Health::register(&prometheus::Registry::new()).unwrap();
        let ingester = Ingester::new(
            Config {
                max_series: 8,
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
    fn label_text_parses_back_to_the_pairs_it_was_rendered_from() {
        let mut w = crate::ingest::report::LabelWriter::default();
        let pairs = [
            ("source", ""),
            ("path", "/a\"b\\c\nd,e=\"f"),
            ("method", "GÉT"),
            ("target", "\\"),
        ];
        for (n, v) in pairs {
            w.push(n, v);
        }
        let mut scratch = LabelScratch::default();
        assert_eq!(scratch.parse(w.as_str()).as_slice(), &pairs);
        assert!(scratch.parse("").is_empty());
    }
}

/// Helpers shared by the tests that compare the walk with a text exposition.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;

    use super::{LabelScratch, Visit};

    pub(crate) type Sample = (String, BTreeMap<String, String>, f64);

    #[derive(Default)]
    pub(crate) struct Collect(pub(crate) Vec<Sample>);

    impl Visit for Collect {
        fn sample(
            &mut self,
            name: &str,
            labels: &[(&str, &str)],
            extra: &[(&str, &str)],
            value: f64,
        ) {
            let labels = labels
                .iter()
                .chain(extra)
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            self.0.push((name.to_string(), labels, value));
        }
    }

    /// The samples of a text exposition, sorted by name and labels.
    pub(crate) fn parse_text(text: &str) -> Vec<Sample> {
        let mut scratch = LabelScratch::default();
        let mut out: Vec<Sample> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, labels.strip_suffix('}').unwrap()),
                    None => (series, ""),
                };
                let labels = scratch
                    .parse(labels)
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect();
                let value = match value {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().unwrap(),
                };
                (name.to_string(), labels, value)
            })
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }
}
