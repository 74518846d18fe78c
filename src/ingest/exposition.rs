//! Prometheus text exposition (format 0.0.4) of the mesh and tcp series:
//! a visitor of the one walk over the store ([`super::walk`]).
//!
//! Written by hand rather than through a metrics library: the visitor
//! renders a series' labels (escaped) once, then every sample line of the
//! series is a few `memcpy`s and an integer format, which is what lets one
//! core print millions of lines a second. The output is pinned by the
//! exact-output tests below and checked with `promtool`.
//!
//! The exposition is produced in [`Piece`]s (a family's header, one shard of
//! a family, an overflow series) so a large scrape can be streamed without
//! holding the whole text in memory; every family's lines stay contiguous.

use super::Ingester;
use super::labels;
use super::walk::{Extra, Histogram, Labels, Part, Value, Visit, classification};

pub use super::walk::Family;

/// One independently renderable part of the exposition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    Header(Family),
    Part(Part),
}

/// Every piece, in exposition order.
pub fn pieces() -> impl Iterator<Item = Piece> {
    Family::ALL
        .into_iter()
        .flat_map(|f| std::iter::once(Piece::Header(f)).chain(Part::of(f).map(Piece::Part)))
}

/// `# HELP` and `# TYPE` of a family.
fn header(family: Family, buf: &mut Vec<u8>) {
    for line in [
        ["# HELP ", family.name(), " ", family.help(), "\n"],
        ["# TYPE ", family.name(), " ", family.kind(), "\n"],
    ] {
        for s in line {
            buf.extend_from_slice(s.as_bytes());
        }
    }
}

/// The text visitor: lines into `buf` until it holds `limit` bytes.
struct Text<'a> {
    buf: &'a mut Vec<u8>,
    limit: usize,
    /// The current series' labels, rendered and escaped, when they do not
    /// come from the store (whose series keep theirs rendered).
    labels: Vec<u8>,
    itoa: itoa::Buffer,
}

impl Visit for Text<'_> {
    fn series(&mut self, labels: Labels<'_>) {
        self.labels.clear();
        match labels {
            Labels::Set(_) => {}
            Labels::Pairs(pairs) => {
                for (i, (name, value)) in pairs.iter().enumerate() {
                    if i > 0 {
                        self.labels.push(b',');
                    }
                    self.labels.extend_from_slice(name.as_bytes());
                    self.labels.extend_from_slice(b"=\"");
                    labels::escape(value, &mut self.labels);
                    self.labels.push(b'"');
                }
            }
        }
    }

    /// `name{labels,extra} value\n`; the store's own extra labels (status
    /// codes, classes, `le`) never need escaping.
    fn sample(&mut self, name: &str, labels: Labels<'_>, extra: Extra<'_>, value: Value) {
        let buf = &mut *self.buf;
        buf.extend_from_slice(name.as_bytes());
        buf.push(b'{');
        let rendered = match labels {
            Labels::Set(set) => set.rendered().as_bytes(),
            Labels::Pairs(_) => &self.labels,
        };
        buf.extend_from_slice(rendered);
        let comma = !rendered.is_empty();
        match extra {
            Extra::None => buf.extend_from_slice(b"} "),
            Extra::Le(bound) => {
                let text = bound.text.as_bytes();
                buf.extend_from_slice(if comma { text } else { &text[1..] });
            }
            Extra::Response { status, success } => {
                buf.extend_from_slice(&b",http_status_code=\""[usize::from(!comma)..]);
                buf.extend_from_slice(self.itoa.format(status).as_bytes());
                buf.extend_from_slice(b"\",classification=\"");
                buf.extend_from_slice(classification(success).as_bytes());
                buf.extend_from_slice(b"\"} ");
            }
            Extra::Pairs(pairs) => {
                for (i, (n, v)) in pairs.iter().enumerate() {
                    if i > 0 || comma {
                        buf.push(b',');
                    }
                    buf.extend_from_slice(n.as_bytes());
                    buf.extend_from_slice(b"=\"");
                    labels::escape(v, buf);
                    buf.push(b'"');
                }
                buf.extend_from_slice(b"} ");
            }
        }
        value_line_end(buf, &mut self.itoa, value);
    }

    /// The bucket lines in one tight loop: the bulk of every scrape.
    fn histogram(&mut self, labels: Labels<'_>, h: Histogram<'_>) {
        let buf = &mut *self.buf;
        let rendered = match labels {
            Labels::Set(set) => set.rendered().as_bytes(),
            Labels::Pairs(_) => &self.labels,
        };
        let skip = usize::from(rendered.is_empty());
        let start = |buf: &mut Vec<u8>, name: &str| {
            buf.extend_from_slice(name.as_bytes());
            buf.push(b'{');
            buf.extend_from_slice(rendered);
        };
        let mut cumulative = 0;
        for (count, bound) in h.buckets.iter().zip(h.bounds) {
            cumulative += count;
            start(buf, h.names.bucket);
            buf.extend_from_slice(&bound.text.as_bytes()[skip..]);
            value_line_end(buf, &mut self.itoa, Value::Count(cumulative));
        }
        start(buf, h.names.sum);
        buf.extend_from_slice(b"} ");
        value_line_end(buf, &mut self.itoa, h.sum);
        start(buf, h.names.count);
        buf.extend_from_slice(b"} ");
        value_line_end(buf, &mut self.itoa, Value::Count(cumulative));
    }

    fn full(&self) -> bool {
        self.buf.len() >= self.limit
    }
}

/// A sample's value and the line's end.
fn value_line_end(buf: &mut Vec<u8>, itoa: &mut itoa::Buffer, value: Value) {
    match value {
        Value::Count(v) => buf.extend_from_slice(itoa.format(v).as_bytes()),
        Value::Tenths(v) => {
            buf.extend_from_slice(itoa.format(v / 10).as_bytes());
            buf.push(b'.');
            buf.push(b'0' + (v % 10) as u8);
        }
        Value::Float(v) => buf.extend_from_slice(v.to_string().as_bytes()),
    }
    buf.push(b'\n');
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
        match piece {
            Piece::Header(f) => {
                header(f, buf);
                None
            }
            Piece::Part(part) => {
                let mut text = Text {
                    buf,
                    limit,
                    labels: Vec::new(),
                    itoa: itoa::Buffer::new(),
                };
                self.walk_part_from(part, from, &mut text)
            }
        }
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
