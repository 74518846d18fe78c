//! Stat latency on the embedded store at mesh scale: 10,000 pods in 1,000
//! deployments, every pod calling two others (20,000 workload pairs, every
//! pod a target with traffic in the window). Measures
//! `conduit::stat::embedded` for a one-minute window grouped by target
//! deployment and by target pod, summarized (one point) and as a time series
//! (six points). The bar proposed for BENCHMARKS.md: every variant under
//! 100 ms on one core, so `conduit stat` feels instant at this scale.

use std::hint::black_box;
use std::sync::Arc;

use conduit::ingest::{Config, Health, Ingester};
use conduit::k8s::{Index, cluster_file};
use conduit::proto::common::{HttpMethod, TcpAddress, http_method};
use conduit::proto::net::ip_to_proto;
use conduit::proto::proxy::telemetry::*;
use conduit::proto::public::{AggregationType, MetricMetadata, MetricName, TimeWindow};
use conduit::simulate::{cluster_objects, fleet};
use conduit::stat::{Query, embedded};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use prost::Message as _;

const PODS: usize = 10_000;
const DEPLOYMENTS: usize = 1_000;
/// Targets each pod calls: every pod is also a target this many times.
const TARGETS_PER_POD: usize = 2;
/// Request scopes per report, about what a busy proxy sends.
const SCOPES_PER_REPORT: usize = 100;

fn populated() -> Ingester {
    let fleet = fleet(PODS, DEPLOYMENTS, "bench", 5);
    let index = Arc::new(Index::new());
    cluster_file::apply(cluster_objects(&fleet), &index);
    let snapshot = index.snapshot();
    let ingester = Ingester::new(
        Config {
            max_series: usize::MAX,
            ..Config::default()
        },
        Health::register(&prometheus::Registry::new()).unwrap(),
    );
    let response = |status, latencies: &[(u32, u32)], end| ResponseScope {
        ctx: Some(ResponseCtx {
            http_status_code: status,
        }),
        response_latencies: latencies
            .iter()
            .map(|&(latency, count)| Latency { latency, count })
            .collect(),
        ends: vec![EosScope {
            ctx: Some(EosCtx { end: Some(end) }),
            streams: vec![StreamSummary::default(); 3],
        }],
    };
    let pods = &fleet.pods;
    let scopes: Vec<RequestScope> = (0..PODS)
        .flat_map(|i| {
            let targets = [(i + 1) % PODS, (i * 7 + 3) % PODS];
            targets
                .into_iter()
                .take(TARGETS_PER_POD)
                .map(move |t| (i, t))
        })
        .map(|(src, dst)| RequestScope {
            ctx: Some(RequestCtx {
                source_ip: Some(ip_to_proto(pods[src].ip.into())),
                target_addr: Some(TcpAddress {
                    ip: Some(ip_to_proto(pods[dst].ip.into())),
                    port: 8080,
                }),
                authority: String::new(),
                method: Some(HttpMethod {
                    r#type: Some(http_method::Type::Registered(0)),
                }),
                path: "/api".into(),
            }),
            count: 10,
            responses: vec![
                response(
                    200,
                    &[(50, 3), (120, 4), (900, 2)],
                    eos_ctx::End::GrpcStatusCode(0),
                ),
                response(500, &[(25_000, 1)], eos_ctx::End::Other(true)),
            ],
        })
        .collect();
    for chunk in scopes.chunks(SCOPES_PER_REPORT) {
        let report = ReportRequest {
            requests: chunk.to_vec(),
            ..Default::default()
        };
        ingester
            .ingest_bytes(&report.encode_to_vec(), &*snapshot)
            .unwrap();
    }
    ingester
}

fn query(group_by: AggregationType, summarize: bool) -> Query {
    Query {
        metrics: vec![
            MetricName::RequestRate,
            MetricName::SuccessRate,
            MetricName::Latency,
        ],
        window: TimeWindow::OneMin,
        group_by,
        filter: MetricMetadata::default(),
        summarize,
    }
}

fn stat(c: &mut Criterion) {
    let ingester = populated();
    // Pinned to the moment after the traffic, so a long run measures the
    // same answer rather than a window the data has slid out of.
    let now = ingester.now_ms();
    let mut group = c.benchmark_group("stat_embedded");
    group.sample_size(10);
    for (by, name, groups) in [
        (AggregationType::TargetDeploy, "deployments", DEPLOYMENTS),
        (AggregationType::TargetPod, "pods", PODS),
    ] {
        for summarize in [true, false] {
            let q = query(by, summarize);
            let answer = embedded::stat_at(&ingester, &q, now);
            assert_eq!(
                answer.metrics.len(),
                groups * 3,
                "every {name} group has traffic in the window"
            );
            let id = format!("{name}/{}", if summarize { "summarize" } else { "series" });
            group.bench_with_input(BenchmarkId::from_parameter(id), &q, |b, q| {
                b.iter(|| black_box(embedded::stat_at(&ingester, q, now).metrics.len()))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, stat);
criterion_main!(benches);
