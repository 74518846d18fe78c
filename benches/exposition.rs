//! `/metrics` rendering at 10k and 100k label sets (1M with
//! `CONDUIT_BENCH_1M=1`), each with its request counter, two response
//! counters and a 26-bucket histogram (31 sample lines). The bar: at least
//! 5 million sample lines per second on one core.

mod common;

use std::hint::black_box;

use conduit::core::ip_to_proto;
use conduit::ingest::{Config, Health, Ingester};
use conduit::proto::common::{HttpMethod, TcpAddress, http_method};
use conduit::proto::proxy::telemetry::*;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Sample lines per label set: 1 request, 2 responses, 26 buckets, sum, count.
const LINES_PER_SET: u64 = 31;

/// An ingester holding `n` label sets between the fleet's pods.
pub fn populated(setup: &common::Setup, n: usize) -> Ingester {
    let health = Health::register(&prometheus::Registry::new()).unwrap();
    let ingester = Ingester::new(
        Config {
            max_series: usize::MAX,
            ..Config::default()
        },
        health,
    );
    let pods = &setup.fleet.pods;
    let snapshot = setup.index.snapshot();
    let latencies: Vec<Latency> = (0..20)
        .map(|i| Latency {
            latency: 5 + i * 2_500,
            count: 1 + i,
        })
        .collect();
    let response = |status| ResponseScope {
        ctx: Some(ResponseCtx {
            http_status_code: status,
        }),
        response_latencies: latencies.clone(),
        ends: vec![EosScope {
            ctx: Some(EosCtx {
                end: Some(eos_ctx::End::Other(true)),
            }),
            streams: vec![StreamSummary::default(); 2],
        }],
    };
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let requests = chunk
            .iter()
            .map(|&i| RequestScope {
                ctx: Some(RequestCtx {
                    source_ip: Some(ip_to_proto(pods[i % pods.len()].ip.into())),
                    target_addr: Some(TcpAddress {
                        ip: Some(ip_to_proto(pods[(i / 7) % pods.len()].ip.into())),
                        port: 8080,
                    }),
                    authority: String::new(),
                    method: Some(HttpMethod {
                        r#type: Some(http_method::Type::Registered(0)),
                    }),
                    path: format!("/api/v1/items/{i}"),
                }),
                count: 3,
                responses: vec![response(200), response(500)],
            })
            .collect();
        let report = ReportRequest {
            requests,
            ..Default::default()
        };
        ingester.ingest(&report, &*snapshot).unwrap();
    }
    assert_eq!(
        ingester.live_label_sets(),
        n * 3,
        "n request sets, 2 response sets each"
    );
    ingester
}

fn render(c: &mut Criterion) {
    let setup = common::setup();
    let mut sizes = vec![10_000, 100_000];
    if std::env::var_os("CONDUIT_BENCH_1M").is_some() {
        sizes.push(1_000_000);
    }
    let mut group = c.benchmark_group("metrics_render");
    group.sample_size(10);
    for n in sizes {
        let ingester = populated(&setup, n);
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
