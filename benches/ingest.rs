//! Decode alone with prost (the floor the bar names) against what the
//! telemetry server does with a report's bytes — decode them itself
//! ([`conduit::ingest::flat`]), validate, enrich, aggregate — per report
//! shape, with the embedded Stat store (the default) and without it
//! (telemetry with -prometheus-url). The bar: ingest of a medium report
//! costs at most 2× its decode alone.
//!
//! The benchmark replays 64 reports as fast as it can, so each workload
//! pair receives thousands of reports per 10-second slot; the embedded
//! store's per-slot histograms grow far larger than with real proxies (one
//! report per pod every few seconds), and its share of the cost here is an
//! upper bound.

mod common;

use std::hint::black_box;

use conduit::ingest::{Config, Health, Ingester};
use conduit::proto::proxy::telemetry::ReportRequest;
use conduit::simulate::Shape;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;

fn ingest(c: &mut Criterion) {
    let setup = common::setup();
    let mut group = c.benchmark_group("report");
    for shape in [Shape::Small, Shape::Medium, Shape::Large] {
        let reports = common::encoded_reports(&setup.fleet, shape, common::REPORTS, 7);
        group.throughput(Throughput::Elements(1));

        group.bench_with_input(BenchmarkId::new("decode", shape), &reports, |b, reports| {
            let mut i = 0;
            b.iter(|| {
                let report = ReportRequest::decode(&reports[i % reports.len()][..]).unwrap();
                i += 1;
                black_box(report)
            })
        });

        // The ingester's own decoder: into reused flat tables, no tree.
        let mut flat = conduit::ingest::flat::FlatReport::default();
        group.bench_with_input(
            BenchmarkId::new("decode_flat", shape),
            &reports,
            |b, reports| {
                let mut i = 0;
                b.iter(|| {
                    flat.decode(&reports[i % reports.len()]).unwrap();
                    i += 1;
                    black_box(flat.scopes.len())
                })
            },
        );

        for (name, embedded_stat) in [
            ("ingest_bytes", true),
            ("ingest_bytes(no-stat-store)", false),
        ] {
            let health = Health::register(&prometheus::Registry::new()).unwrap();
            let ingester = Ingester::new(
                Config {
                    embedded_stat,
                    ..Config::default()
                },
                health,
            );
            let snapshot = setup.index.snapshot();
            // Steady state: every label set of the cycle exists already.
            for r in &reports {
                ingester.ingest_bytes(r, &*snapshot).unwrap();
            }
            group.bench_with_input(BenchmarkId::new(name, shape), &reports, |b, reports| {
                let mut i = 0;
                b.iter(|| {
                    let bytes = &reports[i % reports.len()];
                    i += 1;
                    let snapshot = setup.index.load();
                    ingester.ingest_bytes(bytes, &**snapshot).unwrap();
                })
            });
        }
    }
    group.finish();
}

/// `-native-histograms` off and on, alternated (A B A B) in one run on
/// medium reports: the bar is on within 10% of off.
fn native_histograms(c: &mut Criterion) {
    let setup = common::setup();
    let reports = common::encoded_reports(&setup.fleet, Shape::Medium, common::REPORTS, 7);
    let mut group = c.benchmark_group("native_histograms");
    group.throughput(Throughput::Elements(1));
    for round in 1..=2 {
        for (name, native_histograms) in [("off", false), ("on", true)] {
            let ingester = common::ingester(native_histograms);
            let snapshot = setup.index.snapshot();
            for r in &reports {
                ingester.ingest_bytes(r, &*snapshot).unwrap();
            }
            let id = BenchmarkId::new(format!("ingest_bytes({name})"), format!("round{round}"));
            group.bench_with_input(id, &reports, |b, reports| {
                let mut i = 0;
                b.iter(|| {
                    let bytes = &reports[i % reports.len()];
                    i += 1;
                    let snapshot = setup.index.load();
                    ingester.ingest_bytes(bytes, &**snapshot).unwrap();
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, ingest, native_histograms);
criterion_main!(benches);
