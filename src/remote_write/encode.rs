//! Samples in, snappy-compressed remote-write request bodies out.
//!
//! The `WriteRequest` protobuf is written straight into a reused buffer
//! rather than built as a `prost` message tree: a message tree costs two
//! `String`s per label per sample, and a collection is millions of samples.
//! The bytes are exactly what `prost` would produce for the same
//! `WriteRequest` (pinned by a test against [`crate::proto::prometheus`]).
//!
//! Each sample is its own `TimeSeries` with one `Sample`; labels are sorted by
//! name with `__name__` among them, and labels with an empty value are left
//! out (Prometheus treats an empty label as an absent one, and a scrape of
//! `/metrics` drops them the same way, so push and scrape give the same
//! series). External labels ([`ExternalLabels`]) are constant: each is
//! encoded once and its bytes merged into every series in name order.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use prost::encoding::{encode_varint, encoded_len_varint};
use smallvec::SmallVec;

use super::external::{External, ExternalLabels};
use crate::ingest::native::Native;
use crate::ingest::protobuf::{NativeFields, put_native};
use crate::ingest::walk::{Extra, Histogram, Labels, Value, Visit, classic_samples};

/// The label that carries the metric name.
pub const NAME_LABEL: &str = "__name__";

/// A request body ready to send, and what it carries.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The snappy-compressed `WriteRequest`, allocated at its exact size.
    pub body: Bytes,
    pub samples: usize,
    /// The protobuf size before compression.
    pub raw_bytes: usize,
}

/// Protobuf wire types and keys of the remote-write messages.
const LEN: u8 = 2;
const FIXED64: u8 = 1;
const VARINT: u8 = 0;

const fn key(field: u8, wire_type: u8) -> u8 {
    (field << 3) | wire_type
}

/// `WriteRequest.timeseries`, `TimeSeries.labels`, `Label.name`.
const KEY_1_LEN: u8 = key(1, LEN);
/// `TimeSeries.samples`, `Label.value`.
const KEY_2_LEN: u8 = key(2, LEN);
/// `Sample.value` (double).
const KEY_SAMPLE_VALUE: u8 = key(1, FIXED64);
/// `Sample.timestamp` (int64).
const KEY_SAMPLE_TIMESTAMP: u8 = key(2, VARINT);
/// `TimeSeries.histograms`.
const KEY_HISTOGRAMS: u8 = key(4, LEN);
/// `Histogram.count_int`, `.sum` and `.timestamp`.
const KEY_HISTOGRAM_COUNT: u8 = key(1, VARINT);
const KEY_HISTOGRAM_SUM: u8 = key(3, FIXED64);
const KEY_HISTOGRAM_TIMESTAMP: u8 = key(15, VARINT);

/// The native fields of remote write's `Histogram`.
const REMOTE_WRITE_NATIVE: NativeFields = NativeFields {
    schema: 4,
    zero_threshold: 5,
    zero_count: 6,
    positive_span: 11,
    positive_delta: 12,
};

/// A length-delimited field of `len` bytes: key, length, content.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Turns samples into batches of at most `max_samples` samples each, handing
/// every finished batch to `sink`.
pub struct Encoder<F> {
    timestamp_ms: i64,
    max_samples: usize,
    raw: Vec<u8>,
    samples: usize,
    compressed: Vec<u8>,
    snappy: snap::raw::Encoder,
    sink: F,
    external: ExternalLabels,
    series: SeriesLabels,
    /// A native histogram's message, reused.
    histogram: Vec<u8>,
}

/// The current series' labels (empty values left out), sorted by name and
/// each already encoded as a `TimeSeries.labels` field: a series' samples
/// (a histogram has 28) share them, so each is sorted and encoded once and
/// then copied.
#[derive(Debug, Default)]
struct SeriesLabels {
    bytes: Vec<u8>,
    /// Per label: where its field and, inside it, its name are in `bytes`.
    fields: SmallVec<[(Range<usize>, Range<usize>); 8]>,
}

impl SeriesLabels {
    /// The series' own labels and the external ones, merged by name. On a
    /// name both have, the series' own value wins, as Prometheus treats its
    /// external labels; the flag refuses the names the series carry, so
    /// this is a guard only.
    fn set<'a>(
        &mut self,
        labels: impl Iterator<Item = (&'a str, Cow<'a, str>)>,
        external: &[External],
    ) {
        let mut sorted: SmallVec<[(&str, Cow<'_, str>); 8]> =
            labels.filter(|(_, v)| !v.is_empty()).collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        self.bytes.clear();
        self.fields.clear();
        let mut external = external.iter().peekable();
        for (n, v) in &sorted {
            while let Some(e) = external.next_if(|e| e.name.as_str() <= *n) {
                if e.name != *n {
                    self.push_external(e);
                }
            }
            let start = self.bytes.len();
            let name = encode_label(n, v, &mut self.bytes);
            self.fields.push((start..self.bytes.len(), name));
        }
        for e in external {
            self.push_external(e);
        }
    }

    /// An external label's field, encoded once at start, copied.
    fn push_external(&mut self, e: &External) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&e.field);
        // The field's key and length, then the name's key and length.
        let length_bytes = e.field[1..].iter().take_while(|&&b| b & 0x80 != 0).count() + 1;
        let name = start + 1 + length_bytes + 1 + encoded_len_varint(e.name.len() as u64);
        self.fields
            .push((start..self.bytes.len(), name..name + e.name.len()));
    }

    fn len(&self) -> usize {
        self.bytes.len()
    }
}

/// One `TimeSeries.labels` field as bytes, encoded once for every series
/// (an external label).
pub(super) fn label_field(name: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(label_field_len(name, value));
    encode_label(name, value, &mut out);
    out
}

/// Appends one `TimeSeries.labels` field; returns where the name is.
fn encode_label(n: &str, v: &str, out: &mut Vec<u8>) -> Range<usize> {
    out.push(KEY_1_LEN);
    encode_varint((field_len(n.len()) + field_len(v.len())) as u64, out);
    out.push(KEY_1_LEN);
    encode_varint(n.len() as u64, out);
    let name = out.len()..out.len() + n.len();
    out.extend_from_slice(n.as_bytes());
    out.push(KEY_2_LEN);
    encode_varint(v.len() as u64, out);
    out.extend_from_slice(v.as_bytes());
    name
}

fn label_field_len(n: &str, v: &str) -> usize {
    field_len(field_len(n.len()) + field_len(v.len()))
}

impl<F: FnMut(Batch)> Encoder<F> {
    /// Every sample gets `timestamp_ms`, the collection time.
    pub fn new(timestamp_ms: i64, max_samples: usize, sink: F) -> Self {
        Self {
            timestamp_ms,
            max_samples: max_samples.max(1),
            raw: Vec::new(),
            samples: 0,
            compressed: Vec::new(),
            snappy: snap::raw::Encoder::new(),
            sink,
            external: ExternalLabels::default(),
            series: SeriesLabels::default(),
            histogram: Vec::new(),
        }
    }

    /// Every series also carries `labels`.
    pub fn with_external_labels(mut self, labels: ExternalLabels) -> Self {
        self.external = labels;
        self
    }

    /// Appends one sample as one `TimeSeries`.
    pub fn push(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        extra: &[(&str, &str)],
        value: f64,
    ) {
        self.series
            .set(Labels::Pairs(labels).iter(), self.external.sorted());
        self.push_sample(name, extra, value);
    }

    /// A sample of the current series: its labels are merged, in name
    /// order, with `__name__` and the sample's own.
    fn push_sample(&mut self, name: &str, extra: &[(&str, &str)], value: f64) {
        // prost leaves out fields holding their default value.
        let sample_len = if value != 0.0 { 9 } else { 0 }
            + if self.timestamp_ms != 0 {
                1 + encoded_len_varint(self.timestamp_ms as u64)
            } else {
                0
            };
        let timestamp_ms = self.timestamp_ms;
        self.push_series(name, extra, KEY_2_LEN, sample_len, |out| {
            if value != 0.0 {
                out.push(KEY_SAMPLE_VALUE);
                out.extend_from_slice(&value.to_le_bytes());
            }
            if timestamp_ms != 0 {
                out.push(KEY_SAMPLE_TIMESTAMP);
                encode_varint(timestamp_ms as u64, out);
            }
        });
    }

    /// A native histogram of the current series, as one `TimeSeries` with
    /// one `histograms` entry (counted as one sample).
    fn push_native(&mut self, name: &str, count: u64, sum: f64, native: &Native) {
        let h = &mut self.histogram;
        h.clear();
        h.push(KEY_HISTOGRAM_COUNT);
        encode_varint(count, h);
        h.push(KEY_HISTOGRAM_SUM);
        h.extend_from_slice(&sum.to_le_bytes());
        put_native(h, native, REMOTE_WRITE_NATIVE);
        if self.timestamp_ms != 0 {
            h.push(KEY_HISTOGRAM_TIMESTAMP);
            encode_varint(self.timestamp_ms as u64, h);
        }
        let body = std::mem::take(&mut self.histogram);
        self.push_series(name, &[], KEY_HISTOGRAMS, body.len(), |out| {
            out.extend_from_slice(&body)
        });
        self.histogram = body;
    }

    /// One `TimeSeries`: the current series' labels merged with `__name__`
    /// and `extra`, then one field `key` of `payload_len` bytes that
    /// `payload` writes (a `Sample` or a `Histogram`).
    fn push_series(
        &mut self,
        name: &str,
        extra: &[(&str, &str)],
        key: u8,
        payload_len: usize,
        payload: impl FnOnce(&mut Vec<u8>),
    ) {
        let mut own: SmallVec<[(&str, &str); 4]> = SmallVec::new();
        own.push((NAME_LABEL, name));
        own.extend(extra.iter().copied().filter(|(_, v)| !v.is_empty()));
        own.sort_unstable_by(|a, b| a.0.cmp(b.0));

        let series_len = own
            .iter()
            .map(|&(n, v)| label_field_len(n, v))
            .sum::<usize>()
            + self.series.len()
            + field_len(payload_len);

        let out = &mut self.raw;
        out.reserve(field_len(series_len));
        out.push(KEY_1_LEN);
        encode_varint(series_len as u64, out);
        let series = &self.series;
        let mut stored = series.fields.iter().peekable();
        for &(n, v) in &own {
            while let Some((field, _)) =
                stored.next_if(|(_, name)| &series.bytes[name.clone()] < n.as_bytes())
            {
                out.extend_from_slice(&series.bytes[field.clone()]);
            }
            encode_label(n, v, out);
        }
        for (field, _) in stored {
            out.extend_from_slice(&series.bytes[field.clone()]);
        }
        out.push(key);
        encode_varint(payload_len as u64, out);
        payload(out);
        self.samples += 1;
        if self.samples >= self.max_samples {
            self.flush();
        }
    }

    /// Sends what is buffered as a (possibly short) batch.
    pub fn flush(&mut self) {
        if self.samples == 0 {
            return;
        }
        self.compressed
            .resize(snap::raw::max_compress_len(self.raw.len()), 0);
        let n = self
            .snappy
            .compress(&self.raw, &mut self.compressed)
            .expect("the output buffer is max_compress_len of the input");
        let batch = Batch {
            body: Bytes::copy_from_slice(&self.compressed[..n]),
            samples: self.samples,
            raw_bytes: self.raw.len(),
        };
        self.raw.clear();
        self.samples = 0;
        (self.sink)(batch);
    }

    /// Flushes the last batch.
    pub fn finish(mut self) {
        self.flush();
    }
}

impl<F: FnMut(Batch)> Visit for Encoder<F> {
    fn series(&mut self, labels: Labels<'_>) {
        self.series.set(labels.iter(), self.external.sorted());
    }

    /// A sample of the series [`Visit::series`] announced.
    fn sample(&mut self, name: &str, _: Labels<'_>, extra: Extra<'_>, value: Value) {
        let mut digits = itoa::Buffer::new();
        self.push_sample(name, &extra.pairs(&mut digits), value.as_f64());
    }

    /// The classic samples, as a scrape has them; with native buckets
    /// (`-native-histograms`) also the native histogram, under the family's
    /// own name, as Prometheus stores a scraped one.
    fn histogram(&mut self, labels: Labels<'_>, h: Histogram<'_>) {
        let count = classic_samples(self, labels, h);
        if let Some(native) = h.native {
            self.push_native(h.names.family, count, h.sum.as_f64(), native);
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};

    fn decode(batch: &Batch) -> WriteRequest {
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&batch.body)
            .expect("the body is snappy block format");
        assert_eq!(raw.len(), batch.raw_bytes);
        WriteRequest::decode(raw.as_slice()).expect("the body is a WriteRequest")
    }

    fn series(labels: &[(&str, &str)], value: f64, timestamp: i64) -> TimeSeries {
        TimeSeries {
            histograms: vec![],
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: vec![Sample { value, timestamp }],
        }
    }

    #[test]
    fn bodies_are_what_prost_writes_with_sorted_labels() {
        let mut batches = Vec::new();
        let mut enc = Encoder::new(1_700_000_000_123, 10, |b| batches.push(b));
        enc.push(
            "responses_total",
            &[("source", "shop/web-1"), ("target", ""), ("path", "/é\"\n")],
            &[("http_status_code", "200"), ("classification", "success")],
            7.0,
        );
        enc.push("conduit_telemetry_reports_total", &[], &[], 0.0);
        enc.push(
            "response_latency_ms_bucket",
            &[("source", "a")],
            &[("le", "+Inf")],
            1e300,
        );
        enc.finish();
        assert_eq!(batches.len(), 1);

        let want = WriteRequest {
            timeseries: vec![
                series(
                    &[
                        ("__name__", "responses_total"),
                        ("classification", "success"),
                        ("http_status_code", "200"),
                        ("path", "/é\"\n"),
                        ("source", "shop/web-1"),
                    ],
                    7.0,
                    1_700_000_000_123,
                ),
                series(
                    &[("__name__", "conduit_telemetry_reports_total")],
                    0.0,
                    1_700_000_000_123,
                ),
                series(
                    &[
                        ("__name__", "response_latency_ms_bucket"),
                        ("le", "+Inf"),
                        ("source", "a"),
                    ],
                    1e300,
                    1_700_000_000_123,
                ),
            ],
        };
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&batches[0].body)
            .unwrap();
        assert_eq!(raw, want.encode_to_vec(), "byte for byte what prost writes");
        assert_eq!(decode(&batches[0]), want);
        assert_eq!(batches[0].samples, 3);
    }

    #[test]
    fn external_labels_are_merged_in_name_order_as_prost_writes() {
        let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
        // Before `__name__` ('Z' < '_'), between the series' own, after
        // them all; and one the first series carries itself.
        let external = ExternalLabels::new(vec![
            pair("zone", "b"),
            pair("replica", "controller-1"),
            pair("Zone", "eu"),
            pair("source", "external"),
        ])
        .unwrap();
        let mut batches = Vec::new();
        let mut enc =
            Encoder::new(1_700_000_000_123, 10, |b| batches.push(b)).with_external_labels(external);
        enc.push(
            "responses_total",
            &[("source", "shop/web-1"), ("target", ""), ("path", "/x")],
            &[("http_status_code", "200")],
            7.0,
        );
        enc.push("conduit_telemetry_reports_total", &[], &[], 0.0);
        enc.finish();

        let want = WriteRequest {
            timeseries: vec![
                series(
                    &[
                        ("Zone", "eu"),
                        ("__name__", "responses_total"),
                        ("http_status_code", "200"),
                        ("path", "/x"),
                        ("replica", "controller-1"),
                        ("source", "shop/web-1"),
                        ("zone", "b"),
                    ],
                    7.0,
                    1_700_000_000_123,
                ),
                series(
                    &[
                        ("Zone", "eu"),
                        ("__name__", "conduit_telemetry_reports_total"),
                        ("replica", "controller-1"),
                        ("source", "external"),
                        ("zone", "b"),
                    ],
                    0.0,
                    1_700_000_000_123,
                ),
            ],
        };
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&batches[0].body)
            .unwrap();
        assert_eq!(raw, want.encode_to_vec(), "byte for byte what prost writes");
        assert_eq!(batches[0].samples, 2);
    }

    #[test]
    fn batches_are_cut_by_sample_count() {
        let mut batches = Vec::new();
        let mut enc = Encoder::new(1, 4, |b| batches.push(b));
        for i in 0..10 {
            enc.push(
                "requests_total",
                &[("path", &format!("/{i}"))],
                &[],
                f64::from(i),
            );
        }
        enc.finish();
        let sizes: Vec<usize> = batches.iter().map(|b| b.samples).collect();
        assert_eq!(sizes, [4, 4, 2]);
        let paths: Vec<String> = batches
            .iter()
            .flat_map(|b| decode(b).timeseries)
            .map(|ts| ts.labels[1].value.clone())
            .collect();
        let want: Vec<String> = (0..10).map(|i| format!("/{i}")).collect();
        assert_eq!(paths, want, "every sample once, in order");
    }

    #[test]
    fn nothing_buffered_sends_nothing() {
        let mut batches = Vec::new();
        Encoder::new(1, 4, |b| batches.push(b)).finish();
        assert!(batches.is_empty());
    }

    /// With native buckets, each histogram series also pushes one native
    /// histogram under the family's name, with the classic count and sum,
    /// and its buckets as the store keeps them; without, nothing changes.
    #[test]
    fn native_histograms_are_pushed_beside_the_classic_samples() {
        let encode = |native: bool| {
            let ingester = crate::ingest::walk::tests::store_with(native);
            let mut batches = Vec::new();
            let mut enc = Encoder::new(1_700_000_000_123, usize::MAX, |b| batches.push(b));
            ingester.walk(&mut enc);
            enc.finish();
            let mut all: Vec<TimeSeries> =
                batches.iter().flat_map(|b| decode(b).timeseries).collect();
            // Two stores hash their series to shards differently.
            all.sort_by_cached_key(|t| format!("{:?}", t.labels));
            all
        };
        let (off, on) = (encode(false), encode(true));
        assert!(off.iter().all(|t| t.histograms.is_empty()));
        let (natives, classic): (Vec<_>, Vec<_>) =
            on.into_iter().partition(|t| !t.histograms.is_empty());
        assert!(classic == off, "the classic samples are the same");
        let name = |t: &TimeSeries| {
            t.labels
                .iter()
                .find(|l| l.name == NAME_LABEL)
                .unwrap()
                .value
                .clone()
        };
        let counts: Vec<&TimeSeries> = off
            .iter()
            .filter(|t| name(t).ends_with("_count") && name(t) != "tcp_open_total")
            .collect();
        assert_eq!(natives.len(), counts.len());
        assert!(natives.iter().any(|t| name(t) == "response_latency_ms"));
        assert!(
            natives
                .iter()
                .any(|t| name(t) == "tcp_connection_duration_ms")
        );
        for t in &natives {
            assert!(t.samples.is_empty());
            let [h] = &t.histograms[..] else {
                panic!("one histogram per series: {t:?}")
            };
            // The classic count of the same series.
            let classic = counts
                .iter()
                .find(|c| {
                    name(c) == format!("{}_count", name(t))
                        && c.labels
                            .iter()
                            .filter(|l| l.name != NAME_LABEL)
                            .eq(t.labels.iter().filter(|l| l.name != NAME_LABEL))
                })
                .expect("a classic series of the same labels");
            use crate::proto::prometheus::histogram::{Count, ZeroCount};
            let Some(Count::CountInt(count)) = h.count else {
                panic!("an integer count")
            };
            assert_eq!(count as f64, classic.samples[0].value);
            assert_eq!(h.schema, crate::ingest::native::SCHEMA);
            assert_eq!(h.timestamp, 1_700_000_000_123);
            let Some(ZeroCount::ZeroCountInt(zero)) = h.zero_count else {
                panic!("an integer zero count")
            };
            let mut bucket = 0i64;
            let mut total = zero as i64;
            for d in &h.positive_deltas {
                bucket += d;
                total += bucket;
            }
            assert_eq!(total as u64, count);
            let spanned: u32 = h.positive_spans.iter().map(|s| s.length).sum();
            assert_eq!(spanned as usize, h.positive_deltas.len());
        }
    }
}
