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

/// A whole `/metrics` scrape as the admin server sends it, chunk by chunk,
/// at 10,000 label sets with native histograms on: text and protobuf, plain
/// and gzip, alternated (A B A B). The time per scrape is CPU on one core;
/// the bytes sent are printed.
fn scrape(c: &mut Criterion) {
    use conduit::admin::{Admin, Format};
    let setup = common::setup();
    let ingester = common::populated_with(&setup, 10_000, true);
    let admin = Admin {
        registry: Admin::registry(),
        ingester: Some(std::sync::Arc::new(ingester)),
        ready: std::sync::Arc::new(|| true),
    };
    let mut group = c.benchmark_group("scrape");
    group.sample_size(10);
    for round in 1..=2 {
        for (format, name) in [(Format::Text, "text"), (Format::Protobuf, "protobuf")] {
            for gzip in [false, true] {
                let mut bytes = 0;
                admin.scrape_chunks(format, gzip, |c| bytes += c.len());
                let id = format!("{name}{}", if gzip { "+gzip" } else { "" });
                if round == 1 {
                    println!("scrape/{id}: {bytes} bytes sent");
                }
                group.bench_function(BenchmarkId::new(id, format!("round{round}")), |b| {
                    b.iter(|| {
                        let mut bytes = 0;
                        admin.scrape_chunks(format, gzip, |c| bytes += c.len());
                        black_box(bytes)
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, render, scrape);
criterion_main!(benches);
