//! `/metrics` rendering at 10k and 100k label sets (1M with
//! `CONDUIT_BENCH_1M=1`), each with its request counter, two response
//! counters and a 26-bucket histogram (31 sample lines). The bar: at least
//! 5 million sample lines per second on one core.

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Sample lines per label set: 1 request, 2 responses, 26 buckets, sum, count.
const LINES_PER_SET: u64 = 31;

fn render(c: &mut Criterion) {
    let setup = common::setup();
    let mut sizes = vec![10_000, 100_000];
    if std::env::var_os("CONDUIT_BENCH_1M").is_some() {
        sizes.push(1_000_000);
    }
    let mut group = c.benchmark_group("metrics_render");
    group.sample_size(10);
    for n in sizes {
        let ingester = common::populated(&setup, n);
        assert_eq!(
            ingester.live_label_sets(),
            n * 3,
            "n request sets, 2 response sets each"
        );
        let mut buf = Vec::new();
        ingester.render(&mut buf);
        let lines = buf.iter().filter(|&&b| b == b'\n').count() as u64;
        assert!(lines >= n as u64 * LINES_PER_SET);
        group.throughput(Throughput::Elements(lines));
        group.bench_with_input(BenchmarkId::from_parameter(n), &ingester, |b, ingester| {
            b.iter(|| {
                buf.clear();
                ingester.render(&mut buf);
                black_box(buf.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
