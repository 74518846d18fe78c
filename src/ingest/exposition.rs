//! Prometheus text exposition (format 0.0.4) of the mesh and tcp series.
//!
//! Written by hand rather than through a metrics library because the store
//! already holds each series' label text, rendered and escaped once when the
//! series was created: a sample line is then three `memcpy`s and an integer
//! format, which is what lets one core print millions of lines a second.
//! The output is pinned by exact-output tests and checked with `promtool`.
//!
//! The exposition is produced in [`Piece`]s (a family's header, one shard of
//! a family, an overflow series) so a large scrape can be streamed without
//! holding the whole text in memory; every family's lines stay contiguous.

use std::sync::LazyLock;

use super::series::{
    LATENCY_BOUNDS_MS, LATENCY_BUCKETS, MeshData, TCP_DURATION_BOUNDS_MS, TCP_DURATION_BUCKETS,
    TcpData,
};
use super::table::SHARDS;
use super::{Ingester, OVERFLOW, report::LabelWriter};

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

    fn header(self) -> &'static str {
        match self {
            Family::Requests => {
                "# HELP requests_total Total number of requests the proxies saw.\n\
                 # TYPE requests_total counter\n"
            }
            Family::Responses => {
                "# HELP responses_total Total number of responses, by HTTP status and classification.\n\
                 # TYPE responses_total counter\n"
            }
            Family::Latency => {
                "# HELP response_latency_ms Response latency in milliseconds.\n\
                 # TYPE response_latency_ms histogram\n"
            }
            Family::TcpOpen => {
                "# HELP tcp_open_total Total number of TCP connections opened.\n\
                 # TYPE tcp_open_total counter\n"
            }
            Family::TcpClose => {
                "# HELP tcp_close_total Total number of TCP connections closed.\n\
                 # TYPE tcp_close_total counter\n"
            }
            Family::TcpWriteBytes => {
                "# HELP tcp_write_bytes_total Total bytes written on closed TCP connections.\n\
                 # TYPE tcp_write_bytes_total counter\n"
            }
            Family::TcpDuration => {
                "# HELP tcp_connection_duration_ms Lifetime of closed TCP connections in milliseconds.\n\
                 # TYPE tcp_connection_duration_ms histogram\n"
            }
        }
    }

    fn is_tcp(self) -> bool {
        !matches!(self, Family::Requests | Family::Responses | Family::Latency)
    }
}

/// One independently renderable part of the exposition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    Header(Family),
    Shard(Family, usize),
    Overflow(Family),
}

/// Every piece, in exposition order.
pub fn pieces() -> impl Iterator<Item = Piece> {
    Family::ALL.into_iter().flat_map(|f| {
        std::iter::once(Piece::Header(f))
            .chain((0..SHARDS).map(move |s| Piece::Shard(f, s)))
            .chain(std::iter::once(Piece::Overflow(f)))
    })
}

/// `_bucket` suffixes: the `le` label and the closing brace, rendered once.
fn le_suffixes<const N: usize>(bounds: impl Iterator<Item = u64>) -> [String; N] {
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (i, b) in bounds.enumerate() {
        out[i] = format!(",le=\"{b}\"}} ");
    }
    out[N - 1] = ",le=\"+Inf\"} ".to_string();
    out
}

static LATENCY_LE: LazyLock<[String; LATENCY_BUCKETS]> =
    LazyLock::new(|| le_suffixes(LATENCY_BOUNDS_MS.iter().map(|&b| u64::from(b))));
static TCP_LE: LazyLock<[String; TCP_DURATION_BUCKETS]> =
    LazyLock::new(|| le_suffixes(TCP_DURATION_BOUNDS_MS.iter().copied()));

static MESH_OVERFLOW_LABELS: LazyLock<String> = LazyLock::new(|| {
    overflow_labels(&[
        "source",
        "target",
        "source_deployment",
        "target_deployment",
        "method",
        "path",
    ])
});
static TCP_OVERFLOW_LABELS: LazyLock<String> = LazyLock::new(|| {
    overflow_labels(&[
        "direction",
        "peer",
        "source",
        "target",
        "source_deployment",
        "target_deployment",
    ])
});

fn overflow_labels(names: &[&str]) -> String {
    let mut w = LabelWriter::default();
    for name in names {
        w.push(name, OVERFLOW);
    }
    w.as_str().to_string()
}

struct Out<'a> {
    buf: &'a mut Vec<u8>,
    itoa: itoa::Buffer,
}

impl Out<'_> {
    /// `name{labels} value\n`
    fn sample(&mut self, name: &str, labels: &str, value: u64) {
        self.start(name, "", labels);
        self.buf.extend_from_slice(b"} ");
        self.value(value);
    }

    fn start(&mut self, name: &str, suffix: &str, labels: &str) {
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(suffix.as_bytes());
        self.buf.push(b'{');
        self.buf.extend_from_slice(labels.as_bytes());
    }

    fn value(&mut self, value: u64) {
        self.buf
            .extend_from_slice(self.itoa.format(value).as_bytes());
        self.buf.push(b'\n');
    }

    fn histogram(&mut self, name: &str, labels: &str, buckets: &[u64], le: &[String], sum: Sum) {
        let mut cumulative = 0;
        for (count, le) in buckets.iter().zip(le) {
            cumulative += count;
            self.start(name, "_bucket", labels);
            self.buf.extend_from_slice(le.as_bytes());
            self.value(cumulative);
        }
        self.start(name, "_sum", labels);
        self.buf.extend_from_slice(b"} ");
        match sum {
            Sum::Whole(v) => self.value(v),
            Sum::Tenths(v) => {
                self.buf
                    .extend_from_slice(self.itoa.format(v / 10).as_bytes());
                self.buf.push(b'.');
                self.buf.push(b'0' + (v % 10) as u8);
                self.buf.push(b'\n');
            }
        }
        self.start(name, "_count", labels);
        self.buf.extend_from_slice(b"} ");
        self.value(cumulative);
    }

    fn mesh(&mut self, family: Family, labels: &str, d: &MeshData) {
        match family {
            Family::Requests => self.sample("requests_total", labels, d.requests),
            Family::Responses => {
                for r in &d.responses {
                    self.start("responses_total", "", labels);
                    self.buf.extend_from_slice(b",http_status_code=\"");
                    self.buf
                        .extend_from_slice(self.itoa.format(r.status).as_bytes());
                    self.buf.extend_from_slice(if r.success {
                        b"\",classification=\"success\"} "
                    } else {
                        b"\",classification=\"failure\"} "
                    });
                    self.value(r.count);
                }
            }
            // A label set whose responses carried no latency has no
            // histogram samples.
            Family::Latency if d.latency.iter().any(|&c| c > 0) => {
                self.histogram(
                    "response_latency_ms",
                    labels,
                    &d.latency,
                    &LATENCY_LE[..],
                    Sum::Tenths(d.latency_sum_tenths),
                );
            }
            _ => {}
        }
    }

    fn tcp(&mut self, family: Family, labels: &str, d: &TcpData) {
        match family {
            Family::TcpOpen => self.sample("tcp_open_total", labels, d.opens),
            Family::TcpClose => self.sample("tcp_close_total", labels, d.closes),
            Family::TcpWriteBytes => self.sample("tcp_write_bytes_total", labels, d.write_bytes),
            Family::TcpDuration if d.closes > 0 => {
                self.histogram(
                    "tcp_connection_duration_ms",
                    labels,
                    &d.duration,
                    &TCP_LE[..],
                    Sum::Whole(d.duration_sum_ms),
                );
            }
            _ => {}
        }
    }
}

enum Sum {
    Whole(u64),
    Tenths(u64),
}

impl Ingester {
    /// Appends one piece of the exposition to `buf`.
    pub fn render_piece(&self, piece: Piece, buf: &mut Vec<u8>) {
        self.render_piece_from(piece, 0, buf, usize::MAX);
    }

    /// Renders `piece` from series slot `from` on, stopping after the first
    /// series that brings `buf` to `limit` bytes: then the slot to resume
    /// from; `None` once the piece is done. A shard of a large store is
    /// megabytes, so a streamed scrape renders it in parts.
    pub fn render_piece_from(
        &self,
        piece: Piece,
        from: usize,
        buf: &mut Vec<u8>,
        limit: usize,
    ) -> Option<usize> {
        let mut out = Out {
            buf,
            itoa: itoa::Buffer::new(),
        };
        match piece {
            Piece::Header(f) => out.buf.extend_from_slice(f.header().as_bytes()),
            Piece::Shard(f, shard) if f.is_tcp() => {
                return self.tcp.for_each_in_shard_from(shard, from, |labels, d| {
                    out.tcp(f, labels, d);
                    out.buf.len() < limit
                });
            }
            Piece::Shard(f, shard) => {
                return self.mesh.for_each_in_shard_from(shard, from, |labels, d| {
                    out.mesh(f, labels, d);
                    out.buf.len() < limit
                });
            }
            Piece::Overflow(f) if f.is_tcp() => {
                if let Some(d) = &*self.tcp_overflow.lock() {
                    out.tcp(f, &TCP_OVERFLOW_LABELS, d);
                }
            }
            Piece::Overflow(f) => {
                if let Some(d) = &*self.mesh_overflow.lock() {
                    out.mesh(f, &MESH_OVERFLOW_LABELS, d);
                }
            }
        }
        None
    }

    /// The whole mesh exposition at once.
    pub fn render(&self, buf: &mut Vec<u8>) {
        for piece in pieces() {
            self.render_piece(piece, buf);
        }
    }

    /// Refreshes the gauges that are read from the store at scrape time.
    pub fn refresh_gauges(&self) {
        let h = &self.health;
        // The budget counts mesh series, their response classes and tcp series.
        let responses = self
            .budget
            .live()
            .saturating_sub(self.mesh.len() + self.tcp.len());
        h.series_live
            .with_label_values(&["requests_total"])
            .set(self.mesh.len() as i64);
        h.series_live
            .with_label_values(&["response_latency_ms"])
            .set(self.mesh.len() as i64);
        h.series_live
            .with_label_values(&["responses_total"])
            .set(responses as i64);
        h.series_live
            .with_label_values(&["tcp"])
            .set(self.tcp.len() as i64);
        h.instances.set(self.instances.len() as i64);
    }
}

#[cfg(test)]
mod tests {
    //! The exposition byte for byte: a small store, every family.

    use prost::Message as _;

    use crate::ingest::walk::tests::Meta;
    use crate::ingest::{Config, Health, Ingester};
    use crate::proto::common::{HttpMethod, TcpAddress, http_method};
    use crate::proto::net::ip_to_proto;
    use crate::proto::proxy::telemetry::*;

    fn report() -> ReportRequest {
        let addr = |ip: &str| TcpAddress {
            ip: Some(ip_to_proto(ip.parse().unwrap())),
            port: 80,
        };
        ReportRequest {
            process: Some(Process {
                node: "node-1".into(),
                scheduled_instance: "web-1".into(),
                scheduled_namespace: "shop".into(),
            }),
            proxy: report_request::Proxy::Outbound as i32,
            requests: vec![RequestScope {
                ctx: Some(RequestCtx {
                    source_ip: Some(ip_to_proto("192.0.2.10".parse().unwrap())),
                    target_addr: Some(addr("192.0.2.20")),
                    authority: "books.shop:80".into(),
                    method: Some(HttpMethod {
                        r#type: Some(http_method::Type::Registered(
                            http_method::Registered::Get as i32,
                        )),
                    }),
                    path: "/books/\"1\"".into(),
                }),
                count: 3,
                responses: vec![ResponseScope {
                    ctx: Some(ResponseCtx {
                        http_status_code: 200,
                    }),
                    // 1.2 ms and 35 ms, in tenths of a millisecond.
                    response_latencies: vec![
                        Latency {
                            latency: 12,
                            count: 2,
                        },
                        Latency {
                            latency: 350,
                            count: 1,
                        },
                    ],
                    ends: vec![EosScope {
                        ctx: Some(EosCtx {
                            end: Some(eos_ctx::End::GrpcStatusCode(0)),
                        }),
                        streams: vec![StreamSummary::default(); 3],
                    }],
                }],
            }],
            client_transports: vec![ClientTransport {
                target_addr: Some(addr("192.0.2.20")),
                connects: 1,
                disconnects: vec![TransportSummary {
                    duration_ms: 40,
                    bytes_sent: 512,
                }],
            }],
            ..ReportRequest::default()
        }
    }

    fn rendered() -> String {
        let ingester = Ingester::new(
            Config::default(),
            Health::register(&prometheus::Registry::new()).unwrap(),
        );
        ingester
            .ingest_bytes(&report().encode_to_vec(), &Meta)
            .unwrap();
        let mut buf = Vec::new();
        ingester.render(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    /// The mesh labels of the one request pair, and the tcp labels of the
    /// one connection pair, as they must appear (the path's quotes escaped).
    const MESH: &str = r#"source="shop/web-1",target="shop/books-1",source_deployment="shop/web",target_deployment="",method="GET",path="/books/\"1\"""#;
    const TCP: &str = r#"direction="outbound",peer="dst",source="shop/web-1",target="shop/books-1",source_deployment="shop/web",target_deployment="""#;

    /// The whole exposition of [`report`]: families in order, each with its
    /// HELP and TYPE, cumulative buckets with every `le`, `+Inf`, sum
    /// (latency in ms from tenths) and count. `<M>` and `<T>` stand for
    /// [`MESH`] and [`TCP`].
    const EXPECTED: &str = r#"# HELP requests_total Total number of requests the proxies saw.
# TYPE requests_total counter
requests_total{<M>} 3
# HELP responses_total Total number of responses, by HTTP status and classification.
# TYPE responses_total counter
responses_total{<M>,http_status_code="200",classification="success"} 3
# HELP response_latency_ms Response latency in milliseconds.
# TYPE response_latency_ms histogram
response_latency_ms_bucket{<M>,le="1"} 0
response_latency_ms_bucket{<M>,le="2"} 2
response_latency_ms_bucket{<M>,le="3"} 2
response_latency_ms_bucket{<M>,le="4"} 2
response_latency_ms_bucket{<M>,le="5"} 2
response_latency_ms_bucket{<M>,le="10"} 2
response_latency_ms_bucket{<M>,le="20"} 2
response_latency_ms_bucket{<M>,le="30"} 2
response_latency_ms_bucket{<M>,le="40"} 3
response_latency_ms_bucket{<M>,le="50"} 3
response_latency_ms_bucket{<M>,le="100"} 3
response_latency_ms_bucket{<M>,le="200"} 3
response_latency_ms_bucket{<M>,le="300"} 3
response_latency_ms_bucket{<M>,le="400"} 3
response_latency_ms_bucket{<M>,le="500"} 3
response_latency_ms_bucket{<M>,le="1000"} 3
response_latency_ms_bucket{<M>,le="2000"} 3
response_latency_ms_bucket{<M>,le="3000"} 3
response_latency_ms_bucket{<M>,le="4000"} 3
response_latency_ms_bucket{<M>,le="5000"} 3
response_latency_ms_bucket{<M>,le="10000"} 3
response_latency_ms_bucket{<M>,le="20000"} 3
response_latency_ms_bucket{<M>,le="30000"} 3
response_latency_ms_bucket{<M>,le="40000"} 3
response_latency_ms_bucket{<M>,le="50000"} 3
response_latency_ms_bucket{<M>,le="+Inf"} 3
response_latency_ms_sum{<M>} 37.4
response_latency_ms_count{<M>} 3
# HELP tcp_open_total Total number of TCP connections opened.
# TYPE tcp_open_total counter
tcp_open_total{<T>} 1
# HELP tcp_close_total Total number of TCP connections closed.
# TYPE tcp_close_total counter
tcp_close_total{<T>} 1
# HELP tcp_write_bytes_total Total bytes written on closed TCP connections.
# TYPE tcp_write_bytes_total counter
tcp_write_bytes_total{<T>} 512
# HELP tcp_connection_duration_ms Lifetime of closed TCP connections in milliseconds.
# TYPE tcp_connection_duration_ms histogram
tcp_connection_duration_ms_bucket{<T>,le="1"} 0
tcp_connection_duration_ms_bucket{<T>,le="5"} 0
tcp_connection_duration_ms_bucket{<T>,le="10"} 0
tcp_connection_duration_ms_bucket{<T>,le="50"} 1
tcp_connection_duration_ms_bucket{<T>,le="100"} 1
tcp_connection_duration_ms_bucket{<T>,le="500"} 1
tcp_connection_duration_ms_bucket{<T>,le="1000"} 1
tcp_connection_duration_ms_bucket{<T>,le="5000"} 1
tcp_connection_duration_ms_bucket{<T>,le="10000"} 1
tcp_connection_duration_ms_bucket{<T>,le="60000"} 1
tcp_connection_duration_ms_bucket{<T>,le="300000"} 1
tcp_connection_duration_ms_bucket{<T>,le="900000"} 1
tcp_connection_duration_ms_bucket{<T>,le="3600000"} 1
tcp_connection_duration_ms_bucket{<T>,le="86400000"} 1
tcp_connection_duration_ms_bucket{<T>,le="+Inf"} 1
tcp_connection_duration_ms_sum{<T>} 40
tcp_connection_duration_ms_count{<T>} 1
"#;

    #[test]
    fn a_small_store_renders_byte_for_byte() {
        let want = EXPECTED.replace("<M>", MESH).replace("<T>", TCP);
        let got = rendered();
        for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
            assert_eq!(g, w, "line {}", i + 1);
        }
        assert_eq!(got, want);
    }

    /// Every family keeps its HELP and TYPE, as a client library's
    /// registered but unobserved metric does.
    #[test]
    fn an_empty_store_renders_the_headers_alone() {
        let ingester = Ingester::new(
            Config::default(),
            Health::register(&prometheus::Registry::new()).unwrap(),
        );
        let mut buf = Vec::new();
        ingester.render(&mut buf);
        let headers: String = EXPECTED
            .lines()
            .filter(|l| l.starts_with("# "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(headers.lines().count(), 14);
        assert_eq!(String::from_utf8(buf).unwrap(), headers);
    }
}
