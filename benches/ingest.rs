//! Decode alone (the floor) against decode + validate + enrich + aggregate,
//! per report shape. The bar: ingest of a medium report costs at most 2× its
//! decode alone.

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

        let health = Health::register(&prometheus::Registry::new()).unwrap();
        let ingester = Ingester::new(Config::default(), health);
        let snapshot = setup.index.snapshot();
        // Steady state: every label set of the cycle exists already.
        for r in &reports {
            ingester
                .ingest(&ReportRequest::decode(&r[..]).unwrap(), &*snapshot)
                .unwrap();
        }
        group.bench_with_input(
            BenchmarkId::new("decode+ingest", shape),
            &reports,
            |b, reports| {
                let mut i = 0;
                b.iter(|| {
                    let report = ReportRequest::decode(&reports[i % reports.len()][..]).unwrap();
                    i += 1;
                    let snapshot = setup.index.load();
                    ingester.ingest(&report, &**snapshot).unwrap();
                    black_box(report)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
