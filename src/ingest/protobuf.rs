//! The Prometheus protobuf exposition of the mesh and tcp series: a stream
//! of varint-length-delimited `io.prometheus.client.MetricFamily` messages
//! (`proto/io/prometheus/client/metrics.proto`), what Prometheus asks for
//! when its `native-histograms` feature is on. A visitor of the one walk
//! ([`super::walk`]), like the text exposition.
//!
//! Histograms carry their classic buckets and, with `-native-histograms`,
//! their native buckets (schema 3, [`super::native`]) in the same message,
//! as Prometheus' client libraries write a histogram that has both.
//!
//! Written straight into the output buffer, not built as a `prost` message
//! tree (two `String`s per label per series); the bytes decode to what the
//! walk saw, pinned by a test against the generated
//! [`crate::proto::client_model`] messages. A family's series are split
//! across several `MetricFamily` messages, one per rendered part (a shard,
//! or the part of a shard that filled a chunk), so a scrape is streamed in
//! bounded chunks: a message must be whole before its length is written.
//! Prometheus reads every message of a stream and does not require one per
//! family. Labels with an empty value are left out, as Prometheus drops
//! them from a text scrape.

use prost::encoding::{encode_varint, encoded_len_varint};

use super::Ingester;
use super::exposition::Piece;
use super::native;
use super::walk::{Extra, Family, Histogram, Labels, Value, Visit};

/// The content type of the delimited protobuf exposition.
pub const FORMAT: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

const fn key(field: u8, wire_type: u8) -> u8 {
    (field << 3) | wire_type
}

/// `MetricType` values.
const COUNTER: u64 = 0;
const HISTOGRAM: u64 = 4;

fn put_len(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(key(field, LEN));
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn put_double(out: &mut Vec<u8>, field: u8, v: f64) {
    out.push(key(field, FIXED64));
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_varint(out: &mut Vec<u8>, field: u8, v: u64) {
    out.push(key(field, VARINT));
    encode_varint(v, out);
}

fn zigzag32(v: i32) -> u64 {
    u64::from(((v << 1) ^ (v >> 31)) as u32)
}

fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// A `LabelPair` as a `Metric.label` field.
fn put_label(out: &mut Vec<u8>, name: &str, value: &str) {
    let len = 2
        + encoded_len_varint(name.len() as u64)
        + name.len()
        + encoded_len_varint(value.len() as u64)
        + value.len();
    out.push(key(1, LEN));
    encode_varint(len as u64, out);
    put_len(out, 1, name.as_bytes());
    put_len(out, 2, value.as_bytes());
}

/// A series' native buckets into `Histogram`'s schema, zero and positive
/// fields (`h`: the histogram message being written).
pub(crate) fn put_native(h: &mut Vec<u8>, n: &native::Native, fields: NativeFields) {
    put_varint(h, fields.schema, zigzag32(native::SCHEMA));
    put_double(h, fields.zero_threshold, native::ZERO_THRESHOLD);
    put_varint(h, fields.zero_count, n.zero_count());
    let (spans, deltas) = n.spans();
    let mut span = Vec::with_capacity(8);
    for (offset, length) in spans {
        span.clear();
        put_varint(&mut span, 1, zigzag32(offset));
        put_varint(&mut span, 2, u64::from(length));
        put_len(h, fields.positive_span, &span);
    }
    if !deltas.is_empty() {
        let mut packed = Vec::with_capacity(deltas.len() * 2);
        for d in deltas {
            encode_varint(zigzag64(d), &mut packed);
        }
        put_len(h, fields.positive_delta, &packed);
    }
}

/// The field numbers of the native part of a histogram message: the
/// exposition's `io.prometheus.client.Histogram` and remote write's
/// `prometheus.Histogram` have the same fields under other numbers.
#[derive(Clone, Copy)]
pub(crate) struct NativeFields {
    pub schema: u8,
    pub zero_threshold: u8,
    pub zero_count: u8,
    pub positive_span: u8,
    pub positive_delta: u8,
}

const EXPOSITION_NATIVE: NativeFields = NativeFields {
    schema: 5,
    zero_threshold: 6,
    zero_count: 7,
    positive_span: 12,
    positive_delta: 13,
};

/// The protobuf visitor: one family's `Metric`s, then their `MetricFamily`.
struct Proto<'a> {
    out: &'a mut Vec<u8>,
    limit: usize,
    family: Family,
    /// The family's `metric` fields so far.
    metrics: Vec<u8>,
    /// The current series' `label` fields.
    labels: Vec<u8>,
    /// One `Metric` being written, and a histogram inside it.
    metric: Vec<u8>,
    histogram: Vec<u8>,
    /// The classic bounds as numbers, for the `bounds` table they were
    /// parsed from.
    upper_bounds: Option<(&'static [super::walk::Bound], Vec<f64>)>,
}

impl Proto<'_> {
    fn push_metric(&mut self) {
        put_len(&mut self.metrics, 4, &self.metric);
        self.metric.clear();
    }

    /// The family's `MetricFamily`, length-delimited, if it has series.
    fn finish(&mut self) {
        if self.metrics.is_empty() {
            return;
        }
        let name = self.family.name();
        let help = self.family.help();
        let kind = match self.family.kind() {
            "histogram" => HISTOGRAM,
            _ => COUNTER,
        };
        let mut head = Vec::with_capacity(name.len() + help.len() + 8);
        put_len(&mut head, 1, name.as_bytes());
        put_len(&mut head, 2, help.as_bytes());
        put_varint(&mut head, 3, kind);
        let len = head.len() + self.metrics.len();
        encode_varint(len as u64, self.out);
        self.out.extend_from_slice(&head);
        self.out.extend_from_slice(&self.metrics);
        self.metrics.clear();
    }
}

impl Visit for Proto<'_> {
    fn series(&mut self, labels: Labels<'_>) {
        self.labels.clear();
        for (name, value) in labels.iter() {
            if !value.is_empty() {
                put_label(&mut self.labels, name, &value);
            }
        }
    }

    fn sample(&mut self, _name: &str, _labels: Labels<'_>, extra: Extra<'_>, value: Value) {
        self.metric.extend_from_slice(&self.labels);
        let mut digits = itoa::Buffer::new();
        for (n, v) in extra.pairs(&mut digits) {
            if !v.is_empty() {
                put_label(&mut self.metric, n, v);
            }
        }
        // Counter { value }: 9 bytes.
        self.metric
            .extend_from_slice(&[key(3, LEN), 9, key(1, FIXED64)]);
        self.metric.extend_from_slice(&value.as_f64().to_le_bytes());
        self.push_metric();
    }

    fn histogram(&mut self, _labels: Labels<'_>, h: Histogram<'_>) {
        let bounds = match &self.upper_bounds {
            Some((table, parsed)) if std::ptr::eq(*table, h.bounds) => parsed,
            _ => {
                let parsed = h
                    .bounds
                    .iter()
                    .map(|b| b.le.parse().unwrap_or(f64::INFINITY))
                    .collect();
                &self.upper_bounds.insert((h.bounds, parsed)).1
            }
        };
        let hist = &mut self.histogram;
        hist.clear();
        let count: u64 = h.buckets.iter().sum();
        put_varint(hist, 1, count);
        put_double(hist, 2, h.sum.as_f64());
        let mut cumulative = 0;
        let mut bucket = Vec::with_capacity(16);
        for (n, &upper) in h.buckets.iter().zip(bounds) {
            cumulative += n;
            // `+Inf` is the count; Prometheus' clients leave it out.
            if upper.is_infinite() {
                continue;
            }
            bucket.clear();
            put_varint(&mut bucket, 1, cumulative);
            put_double(&mut bucket, 2, upper);
            put_len(hist, 3, &bucket);
        }
        if let Some(n) = h.native {
            put_native(hist, n, EXPOSITION_NATIVE);
        }
        self.metric.extend_from_slice(&self.labels);
        put_len(&mut self.metric, 7, &self.histogram);
        self.push_metric();
    }

    fn full(&self) -> bool {
        self.out.len() + self.metrics.len() >= self.limit
    }
}

impl Ingester {
    /// [`Ingester::render_piece_from`] in the protobuf exposition: appends
    /// `MetricFamily` messages of `piece` to `buf` from series slot `from`
    /// on, stopping after the series that brings `buf` to `limit` bytes
    /// (then the slot to resume from; `None` once the piece is done). A
    /// family's header is part of each of its messages, so
    /// [`Piece::Header`] adds nothing.
    pub fn render_protobuf_piece_from(
        &self,
        piece: Piece,
        from: usize,
        buf: &mut Vec<u8>,
        limit: usize,
    ) -> Option<usize> {
        let Piece::Part(part) = piece else {
            return None;
        };
        let family = match part {
            super::walk::Part::Shard(f, _) | super::walk::Part::Overflow(f) => f,
        };
        let mut proto = Proto {
            out: buf,
            limit,
            family,
            metrics: Vec::new(),
            labels: Vec::new(),
            metric: Vec::new(),
            histogram: Vec::new(),
            upper_bounds: None,
        };
        let next = self.walk_part_from(part, from, &mut proto);
        proto.finish();
        next
    }

    /// The whole mesh exposition in protobuf at once (tests and tools).
    pub fn render_protobuf(&self, buf: &mut Vec<u8>) {
        for piece in super::exposition::pieces() {
            self.render_protobuf_piece_from(piece, 0, buf, usize::MAX);
        }
    }
}

/// A client library registry's families (the component's own metrics) as
/// delimited `MetricFamily` messages, through the generated messages: a
/// few hundred series, where clarity beats speed.
pub fn encode_registry(families: &[prometheus::proto::MetricFamily], out: &mut Vec<u8>) {
    use crate::proto::client_model as pb;
    use prometheus::proto::MetricType as T;
    use prost::Message as _;
    for family in families {
        let kind = match family.get_field_type() {
            T::COUNTER => pb::MetricType::Counter,
            T::GAUGE => pb::MetricType::Gauge,
            T::SUMMARY => pb::MetricType::Summary,
            // Nothing registers one, and the text encoder cannot print it
            // either: left out of both.
            T::UNTYPED => continue,
            T::HISTOGRAM => pb::MetricType::Histogram,
        };
        let metric = family
            .get_metric()
            .iter()
            .map(|m| {
                let mut out = pb::Metric {
                    label: m
                        .get_label()
                        .iter()
                        .filter(|l| !l.value().is_empty())
                        .map(|l| pb::LabelPair {
                            name: Some(l.name().to_string()),
                            value: Some(l.value().to_string()),
                        })
                        .collect(),
                    ..pb::Metric::default()
                };
                match kind {
                    pb::MetricType::Counter => {
                        out.counter = Some(pb::Counter {
                            value: Some(m.get_counter().get_value()),
                        });
                    }
                    pb::MetricType::Gauge => {
                        out.gauge = Some(pb::Gauge {
                            value: Some(m.get_gauge().get_value()),
                        });
                    }
                    pb::MetricType::Summary => {
                        let s = m.get_summary();
                        out.summary = Some(pb::Summary {
                            sample_count: Some(s.sample_count()),
                            sample_sum: Some(s.sample_sum()),
                            quantile: s
                                .get_quantile()
                                .iter()
                                .map(|q| pb::Quantile {
                                    quantile: Some(q.quantile()),
                                    value: Some(q.value()),
                                })
                                .collect(),
                        });
                    }
                    _ => {
                        let h = m.get_histogram();
                        out.histogram = Some(pb::Histogram {
                            sample_count: Some(h.get_sample_count()),
                            sample_sum: Some(h.get_sample_sum()),
                            bucket: h
                                .get_bucket()
                                .iter()
                                .filter(|b| b.upper_bound().is_finite())
                                .map(|b| pb::Bucket {
                                    cumulative_count: Some(b.cumulative_count()),
                                    upper_bound: Some(b.upper_bound()),
                                    ..pb::Bucket::default()
                                })
                                .collect(),
                            ..pb::Histogram::default()
                        });
                    }
                }
                out
            })
            .collect();
        let family = pb::MetricFamily {
            name: Some(family.name().to_string()),
            help: Some(family.help().to_string()),
            r#type: Some(kind as i32),
            metric,
        };
        family
            .encode_length_delimited(out)
            .expect("a Vec grows as needed");
    }
}

/// The messages of a delimited stream (tests and tools); `None` when the
/// bytes are not one.
pub fn decode_stream(mut bytes: &[u8]) -> Option<Vec<crate::proto::client_model::MetricFamily>> {
    use prost::Message as _;
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let family =
            crate::proto::client_model::MetricFamily::decode_length_delimited(&mut bytes).ok()?;
        out.push(family);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ingest::walk::testing::{Collect, Sample};
    use crate::ingest::walk::tests::store_with;
    use crate::proto::client_model::{MetricFamily, MetricType};

    /// The samples of decoded families, as a text scrape names them
    /// (`_bucket{le}` with `+Inf`, `_sum`, `_count`).
    fn samples(families: &[MetricFamily]) -> Vec<Sample> {
        let mut out = Vec::new();
        for f in families {
            for m in &f.metric {
                let labels: BTreeMap<String, String> = m
                    .label
                    .iter()
                    .map(|l| (l.name().to_string(), l.value().to_string()))
                    .collect();
                match f.r#type() {
                    MetricType::Counter => {
                        let value = m.counter.as_ref().unwrap().value();
                        out.push((f.name().to_string(), labels, value));
                    }
                    MetricType::Histogram => {
                        let h = m.histogram.as_ref().unwrap();
                        for b in &h.bucket {
                            let mut l = labels.clone();
                            l.insert("le".into(), b.upper_bound().to_string());
                            out.push((
                                format!("{}_bucket", f.name()),
                                l,
                                b.cumulative_count() as f64,
                            ));
                        }
                        let mut l = labels.clone();
                        l.insert("le".into(), "+Inf".into());
                        let count = h.sample_count() as f64;
                        out.push((format!("{}_bucket", f.name()), l, count));
                        out.push((format!("{}_sum", f.name()), labels.clone(), h.sample_sum()));
                        out.push((format!("{}_count", f.name()), labels, count));
                    }
                    other => panic!("no {other:?} family in the store"),
                }
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    /// The walk's samples without empty labels, sorted.
    fn walked(ingester: &Ingester) -> Vec<Sample> {
        let mut c = Collect::default();
        ingester.walk(&mut c);
        let mut out: Vec<Sample> =
            c.0.into_iter()
                .map(|(n, mut l, v)| {
                    l.retain(|_, v| !v.is_empty());
                    (n, l, v)
                })
                .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    #[test]
    fn the_protobuf_exposition_decodes_to_the_walk() {
        for native in [false, true] {
            let ingester = store_with(native);
            let mut buf = Vec::new();
            ingester.render_protobuf(&mut buf);
            let families = decode_stream(&buf).expect("delimited MetricFamily messages");
            assert_eq!(samples(&families), walked(&ingester));
            for f in &families {
                assert_eq!(
                    f.help(),
                    Family::ALL
                        .iter()
                        .find(|x| x.name() == f.name())
                        .unwrap()
                        .help()
                );
                for m in f.metric.iter().filter_map(|m| m.histogram.as_ref()) {
                    assert_eq!(m.positive_span.is_empty(), !native);
                    if !native {
                        continue;
                    }
                    assert_eq!(m.schema(), native::SCHEMA);
                    assert_eq!(m.zero_threshold(), native::ZERO_THRESHOLD);
                    // The native buckets count every observation.
                    let mut count = 0i64;
                    let mut total = m.zero_count() as i64;
                    for d in &m.positive_delta {
                        count += d;
                        assert!(count > 0, "only buckets seen are kept");
                        total += count;
                    }
                    let in_spans: u32 = m.positive_span.iter().map(|s| s.length()).sum();
                    assert_eq!(in_spans as usize, m.positive_delta.len());
                    assert_eq!(total as u64, m.sample_count());
                }
            }
        }
    }

    #[test]
    fn a_chunked_rendering_is_the_same_series() {
        let ingester = store_with(true);
        let mut whole = Vec::new();
        ingester.render_protobuf(&mut whole);
        let mut chunked = Vec::new();
        let mut messages = 0;
        for piece in crate::ingest::exposition::pieces() {
            let mut from = 0;
            loop {
                let mut buf = Vec::new();
                let next = ingester.render_protobuf_piece_from(piece, from, &mut buf, 1);
                messages += usize::from(!buf.is_empty());
                chunked.extend_from_slice(&buf);
                match next {
                    Some(n) => from = n,
                    None => break,
                }
            }
        }
        let whole = decode_stream(&whole).unwrap();
        let chunked = decode_stream(&chunked).unwrap();
        assert_eq!(messages, chunked.len());
        // At a limit of one byte, a message is one series (its response
        // classes aside).
        for f in &chunked {
            let series: std::collections::BTreeSet<Vec<(String, String)>> = f
                .metric
                .iter()
                .map(|m| {
                    m.label
                        .iter()
                        .filter(|l| l.name() != "http_status_code" && l.name() != "classification")
                        .map(|l| (l.name().to_string(), l.value().to_string()))
                        .collect()
                })
                .collect();
            assert_eq!(series.len(), 1, "{f:?}");
        }
        assert_eq!(samples(&chunked), samples(&whole));
    }

    #[test]
    fn registry_families_keep_their_types() {
        let registry = prometheus::Registry::new();
        let c =
            prometheus::IntCounterVec::new(prometheus::Opts::new("c_total", "c"), &["a"]).unwrap();
        c.with_label_values(&["x"]).inc_by(3);
        let h = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("h_seconds", "h").buckets(vec![0.1, 1.0]),
        )
        .unwrap();
        h.observe(0.5);
        registry.register(Box::new(c)).unwrap();
        registry.register(Box::new(h)).unwrap();
        let mut buf = Vec::new();
        encode_registry(&registry.gather(), &mut buf);
        let families = decode_stream(&buf).unwrap();
        let got = samples(&families);
        let want = |n: &str, l: &[(&str, &str)], v: f64| -> Sample {
            (
                n.into(),
                l.iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
                v,
            )
        };
        assert_eq!(
            got,
            vec![
                want("c_total", &[("a", "x")], 3.0),
                want("h_seconds_bucket", &[("le", "+Inf")], 1.0),
                want("h_seconds_bucket", &[("le", "0.1")], 0.0),
                want("h_seconds_bucket", &[("le", "1")], 1.0),
                want("h_seconds_count", &[], 1.0),
                want("h_seconds_sum", &[], 0.5),
            ]
        );
    }
}
