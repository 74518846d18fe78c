//! Shared set-up for the ingest benches: a simulated fleet, its index, and
//! pre-encoded reports of each shape.
#![allow(dead_code)]

use std::sync::Arc;

use conduit::ingest::{Config, Health, Ingester};
use conduit::k8s::{Index, cluster_file};
use conduit::proto::common::{HttpMethod, TcpAddress, http_method};
use conduit::proto::net::ip_to_proto;
use conduit::proto::proxy::telemetry::*;
use conduit::simulate::{Fleet, Shape, build_report, cluster_objects, fleet};
use prost::Message;

pub const PODS: usize = 100;
pub const DEPLOYMENTS: usize = 30;
/// Distinct reports cycled through, so steady state is measured without
/// replaying one report from cache.
pub const REPORTS: usize = 64;

pub struct Setup {
    pub fleet: Fleet,
    pub index: Arc<Index>,
}

pub fn setup() -> Setup {
    let fleet = fleet(PODS, DEPLOYMENTS, "sim", 1);
    let index = Arc::new(Index::new());
    cluster_file::apply(cluster_objects(&fleet), &index);
    Setup { fleet, index }
}

pub fn encoded_reports(fleet: &Fleet, shape: Shape, n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|i| build_report(fleet, shape, i % fleet.pods.len(), &mut rng).encode_to_vec())
        .collect()
}

/// An empty ingester with the default configuration, `-native-histograms`
/// on or off.
pub fn ingester(native_histograms: bool) -> Ingester {
    let health = Health::register(&prometheus::Registry::new()).unwrap();
    Ingester::new(
        Config {
            native_histograms,
            ..Config::default()
        },
        health,
    )
}

/// An ingester holding `n` request label sets between the fleet's pods,
/// each with two response classes and a full latency histogram.
pub fn populated(setup: &Setup, n: usize) -> Ingester {
    populated_with(setup, n, false)
}

/// [`populated`], with or without `-native-histograms`.
pub fn populated_with(setup: &Setup, n: usize, native_histograms: bool) -> Ingester {
    let health = Health::register(&prometheus::Registry::new()).unwrap();
    let ingester = Ingester::new(
        Config {
            max_series: usize::MAX,
            native_histograms,
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
        ingester
            .ingest_bytes(&report.encode_to_vec(), &*snapshot)
            .unwrap();
    }
    ingester
}
