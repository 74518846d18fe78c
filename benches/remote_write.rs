//! Remote-write encoding: walk the store, write the protobuf `WriteRequest`
//! bodies and snappy-compress them, at 10k and 100k label sets (1M with
//! `CONDUIT_BENCH_1M=1`). Each label set is the same as in the exposition
//! bench: a request counter, two response counters and a 26-bucket latency
//! histogram with sum and count, 31 samples. Throughput is in samples; the
//! bytes per sample before and after snappy are printed once per size.
//! Each size runs bare and with one external label (`replica=` a pod name,
//! what several replicas push with), which is encoded once and copied into
//! every series.
//!
//! The bar: at least 2 million samples per second on one core (a full
//! collection at the default 500k series cap, ~15M samples, within the 10 s
//! interval), and under 25 bytes a sample after snappy (what sizes
//! `MAX_QUEUE_SAMPLES` in memory).

mod common;

use std::hint::black_box;

use conduit::ingest::Ingester;
use conduit::remote_write::{ExternalLabels, MAX_SAMPLES_PER_REQUEST, encode_all};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// A collection timestamp (ms) as a real one looks on the wire.
const TIMESTAMP_MS: i64 = 1_767_225_600_000;

/// Samples, protobuf bytes and compressed bytes of one collection.
fn encode(ingester: &Ingester, external: &ExternalLabels) -> (usize, usize, usize) {
    let mut totals = (0, 0, 0);
    encode_all(
        ingester,
        &[],
        external,
        TIMESTAMP_MS,
        MAX_SAMPLES_PER_REQUEST,
        |batch| {
            totals.0 += batch.samples;
            totals.1 += batch.raw_bytes;
            totals.2 += batch.body.len();
        },
    );
    totals
}

fn remote_write_encode(c: &mut Criterion) {
    let setup = common::setup();
    let mut sizes = vec![10_000, 100_000];
    if std::env::var_os("CONDUIT_BENCH_1M").is_some() {
        sizes.push(1_000_000);
    }
    let replica = ExternalLabels::new(vec![(
        "replica".to_string(),
        "controller-7d9f8b6c5-x2k4q".to_string(),
    )])
    .expect("a valid external label");
    let mut group = c.benchmark_group("remote_write_encode");
    group.sample_size(10);
    for n in sizes {
        let ingester = common::populated(&setup, n);
        for (variant, external) in [
            ("", ExternalLabels::default()),
            ("replica/", replica.clone()),
        ] {
            let (samples, raw, compressed) = encode(&ingester, &external);
            assert_eq!(samples, n * 31, "31 samples per label set");
            println!(
                "remote_write_encode/{variant}{n}: {samples} samples, {:.1} bytes/sample protobuf, \
                 {:.2} bytes/sample after snappy ({:.1}x), {} requests",
                raw as f64 / samples as f64,
                compressed as f64 / samples as f64,
                raw as f64 / compressed as f64,
                samples.div_ceil(MAX_SAMPLES_PER_REQUEST),
            );
            group.throughput(Throughput::Elements(samples as u64));
            let id = match variant {
                "" => BenchmarkId::from_parameter(n),
                _ => BenchmarkId::new("replica", n),
            };
            group.bench_with_input(id, &ingester, |b, ingester| {
                b.iter(|| black_box(encode(ingester, &external)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, remote_write_encode);
criterion_main!(benches);
