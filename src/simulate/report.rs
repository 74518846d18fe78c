//! Report shapes: what one simulated proxy sends in one `Report`.
//!
//! A report is scopes (source → target, method, path) holding responses (by
//! HTTP status) holding latency histograms and end-of-stream scopes. The
//! shapes fix how many of each there are, so benchmarks can sweep cost by
//! shape; the values are drawn from a caller-seeded generator, so runs repeat.
//!
//! `ReportRequest`'s identity fields (process, proxy) are numbered before its
//! repeated bodies, so `header(..)` encoded followed by a body built with
//! [`build_body`] encoded is byte for byte the encoding of the whole report.
//! The runner relies on that to pre-encode bodies once and prefix each pod's
//! header at send time.

use std::str::FromStr;

use crate::proto::common::{HttpMethod, TcpAddress, http_method};
use crate::proto::net::ip_to_proto;
use crate::proto::proxy::telemetry::{
    ClientTransport, EosCtx, EosScope, Latency, Process, ReportRequest, RequestCtx, RequestScope,
    ResponseCtx, ResponseScope, ServerTransport, StreamSummary, TransportSummary, eos_ctx,
    report_request,
};

use super::fleet::{Fleet, POD_PORT};

/// Paths per target deployment (`/api/v1/<resource>/<k>`, k below this):
/// keeps the number of series a long run creates bounded.
pub const PATHS_PER_RESOURCE: usize = 50;
const RESOURCES: &[&str] = &["items", "users", "orders", "carts"];

/// Latency values in tenths of a millisecond: 0.5 ms .. 5 s, the range the
/// ingester's buckets cover.
const LATENCY_MIN: f64 = 5.0;
const LATENCY_MAX: f64 = 50_000.0;

/// Unregistered methods a proxy may see; a fixed set keeps series bounded.
const UNREGISTERED_METHODS: &[&str] = &["PROPFIND", "PURGE"];

/// How much one report carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Shape {
    /// 1 scope, 1 response (200), 10 latencies, 1 end-of-stream scope of 3
    /// streams.
    Small,
    /// 10 scopes over distinct paths, each with responses 200 and 500 of 20
    /// latencies and 2 end-of-stream scopes of 5 streams.
    Medium,
    /// 100 scopes shaped like medium's.
    Large,
}

/// The counts that make up a shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShapeCounts {
    pub scopes: usize,
    pub statuses: &'static [u32],
    pub latencies: usize,
    pub max_latency_count: u32,
    pub ends: usize,
    pub streams_per_end: usize,
    /// Server transports and client transports, each.
    pub transports: usize,
}

impl Shape {
    pub const fn counts(self) -> ShapeCounts {
        match self {
            Shape::Small => ShapeCounts {
                scopes: 1,
                statuses: &[200],
                latencies: 10,
                max_latency_count: 10,
                ends: 1,
                streams_per_end: 3,
                transports: 1,
            },
            Shape::Medium | Shape::Large => ShapeCounts {
                scopes: if matches!(self, Shape::Medium) {
                    10
                } else {
                    100
                },
                statuses: &[200, 500],
                latencies: 20,
                max_latency_count: 100,
                ends: 2,
                streams_per_end: 5,
                transports: if matches!(self, Shape::Medium) { 2 } else { 5 },
            },
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Shape::Small => "small",
            Shape::Medium => "medium",
            Shape::Large => "large",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown report shape {0:?}: expected small, medium or large")]
pub struct UnknownShape(String);

impl FromStr for Shape {
    type Err = UnknownShape;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "small" => Ok(Shape::Small),
            "medium" => Ok(Shape::Medium),
            "large" => Ok(Shape::Large),
            _ => Err(UnknownShape(s.to_string())),
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One full report from pod `reporter` of `fleet`, in a direction drawn
/// from `rng`.
///
/// Panics if `reporter` is not a pod index of a non-empty fleet.
pub fn build_report(
    fleet: &Fleet,
    shape: Shape,
    reporter: usize,
    rng: &mut fastrand::Rng,
) -> ReportRequest {
    let direction = if rng.bool() {
        report_request::Proxy::Inbound
    } else {
        report_request::Proxy::Outbound
    };
    let mut report = build_body(fleet, shape, rng);
    let header = header(fleet, reporter, direction);
    report.process = header.process;
    report.proxy = header.proxy;
    report
}

/// Only the identity of pod `reporter`: process and direction.
pub fn header(fleet: &Fleet, reporter: usize, direction: report_request::Proxy) -> ReportRequest {
    let pod = &fleet.pods[reporter];
    ReportRequest {
        process: Some(Process {
            node: pod.node.clone(),
            scheduled_instance: pod.name.clone(),
            scheduled_namespace: pod.namespace.clone(),
        }),
        proxy: direction as i32,
        ..Default::default()
    }
}

/// A report without identity: transports and request scopes between random
/// pods of `fleet`.
///
/// Panics if the fleet has no pods.
pub fn build_body(fleet: &Fleet, shape: Shape, rng: &mut fastrand::Rng) -> ReportRequest {
    assert!(!fleet.pods.is_empty(), "a report needs at least one pod");
    let counts = shape.counts();
    let paths = distinct_paths(rng, counts.scopes);
    let requests = paths
        .into_iter()
        .map(|path| request_scope(fleet, &counts, path, rng))
        .collect();
    ReportRequest {
        process: None,
        proxy: 0,
        server_transports: (0..counts.transports)
            .map(|_| ServerTransport {
                source_ip: Some(ip_to_proto(random_pod_ip(fleet, rng))),
                connects: rng.u32(1..=5),
                disconnects: transport_summaries(rng),
            })
            .collect(),
        client_transports: (0..counts.transports)
            .map(|_| ClientTransport {
                target_addr: Some(pod_addr(random_pod_ip(fleet, rng))),
                connects: rng.u32(1..=5),
                disconnects: transport_summaries(rng),
            })
            .collect(),
        requests,
    }
}

/// `n` distinct `(resource, k)` paths out of the bounded set.
fn distinct_paths(rng: &mut fastrand::Rng, n: usize) -> Vec<String> {
    let all = RESOURCES.len() * PATHS_PER_RESOURCE;
    debug_assert!(n <= all, "a shape asks for more paths than exist");
    rng.choose_multiple(0..all, n)
        .into_iter()
        .map(|i| {
            format!(
                "/api/v1/{}/{}",
                RESOURCES[i / PATHS_PER_RESOURCE],
                i % PATHS_PER_RESOURCE
            )
        })
        .collect()
}

fn request_scope(
    fleet: &Fleet,
    counts: &ShapeCounts,
    path: String,
    rng: &mut fastrand::Rng,
) -> RequestScope {
    let source = &fleet.pods[rng.usize(..fleet.pods.len())];
    let target = &fleet.pods[rng.usize(..fleet.pods.len())];
    let responses: Vec<ResponseScope> = counts
        .statuses
        .iter()
        .map(|&status| response_scope(counts, status, rng))
        .collect();
    // Every observed latency is one request.
    let count = responses
        .iter()
        .flat_map(|r| &r.response_latencies)
        .map(|l| l.count)
        .sum();
    RequestScope {
        ctx: Some(RequestCtx {
            source_ip: Some(ip_to_proto(source.ip.into())),
            target_addr: Some(pod_addr(target.ip.into())),
            authority: format!(
                "{}.{}.svc.cluster.local:{POD_PORT}",
                target.deployment, target.namespace
            ),
            method: Some(random_method(rng)),
            path,
        }),
        count,
        responses,
    }
}

fn response_scope(counts: &ShapeCounts, status: u32, rng: &mut fastrand::Rng) -> ResponseScope {
    let ends = (0..counts.ends)
        .map(|i| EosScope {
            ctx: Some(EosCtx {
                end: Some(end_of_stream(status, i)),
            }),
            streams: (0..counts.streams_per_end)
                .map(|_| StreamSummary {
                    duration_ms: rng.u64(1..=5_000),
                    bytes_sent: rng.u64(100..=100_000),
                    frames_sent: rng.u32(1..=20),
                })
                .collect(),
        })
        .collect();
    ResponseScope {
        ctx: Some(ResponseCtx {
            http_status_code: status,
        }),
        response_latencies: latencies(rng, counts.latencies, counts.max_latency_count),
        ends,
    }
}

/// The first end of a response is a gRPC status (OK for a success, INTERNAL
/// otherwise), the second a stream that ended some other way.
fn end_of_stream(status: u32, i: usize) -> eos_ctx::End {
    match (i, status < 500) {
        (0, true) => eos_ctx::End::GrpcStatusCode(0),
        (0, false) => eos_ctx::End::GrpcStatusCode(13),
        _ => eos_ctx::End::Other(true),
    }
}

/// `n` strictly ascending latencies, log-distributed with most of them low
/// and a long tail, as a real histogram looks.
fn latencies(rng: &mut fastrand::Rng, n: usize, max_count: u32) -> Vec<Latency> {
    let (lo, hi) = (LATENCY_MIN.ln(), LATENCY_MAX.ln());
    let mut values: Vec<u32> = (0..n)
        .map(|_| {
            let u = rng.f64();
            (lo + u * u * (hi - lo))
                .exp()
                .round()
                .clamp(LATENCY_MIN, LATENCY_MAX) as u32
        })
        .collect();
    values.sort_unstable();
    // Distinct values, staying in range: bump duplicates up, and if the top
    // overflows, walk back down.
    for i in 1..n {
        values[i] = values[i].max(values[i - 1] + 1);
    }
    let top = LATENCY_MAX as u32;
    for i in (0..n).rev() {
        let cap = if i + 1 < n { values[i + 1] - 1 } else { top };
        values[i] = values[i].min(cap);
    }
    values
        .into_iter()
        .map(|latency| Latency {
            latency,
            count: rng.u32(1..=max_count),
        })
        .collect()
}

fn random_method(rng: &mut fastrand::Rng) -> HttpMethod {
    use http_method::{Registered, Type};
    let kind = match rng.u32(..100) {
        0..60 => Type::Registered(Registered::Get as i32),
        60..95 => Type::Registered(Registered::Post as i32),
        _ => Type::Unregistered(
            UNREGISTERED_METHODS[rng.usize(..UNREGISTERED_METHODS.len())].to_string(),
        ),
    };
    HttpMethod { r#type: Some(kind) }
}

fn transport_summaries(rng: &mut fastrand::Rng) -> Vec<TransportSummary> {
    (0..rng.usize(1..=3))
        .map(|_| TransportSummary {
            duration_ms: rng.u64(10..=600_000),
            bytes_sent: rng.u64(100..=10_000_000),
        })
        .collect()
}

fn random_pod_ip(fleet: &Fleet, rng: &mut fastrand::Rng) -> std::net::IpAddr {
    fleet.pods[rng.usize(..fleet.pods.len())].ip.into()
}

fn pod_addr(ip: std::net::IpAddr) -> TcpAddress {
    TcpAddress {
        ip: Some(ip_to_proto(ip)),
        port: POD_PORT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::net::ip_from_proto;
    use crate::simulate::fleet::fleet;
    use prost::Message;
    use std::collections::HashSet;

    fn report(shape: Shape, seed: u64) -> (Fleet, ReportRequest) {
        let f = fleet(30, 10, "sim", 1);
        let r = build_report(&f, shape, 4, &mut fastrand::Rng::with_seed(seed));
        (f, r)
    }

    /// Asserts the structure every shape shares, with the shape's counts.
    fn assert_shape(r: &ReportRequest, c: &ShapeCounts) {
        assert_eq!(r.requests.len(), c.scopes);
        assert_eq!(r.server_transports.len(), c.transports);
        assert_eq!(r.client_transports.len(), c.transports);
        for t in &r.server_transports {
            assert!(t.connects > 0 && !t.disconnects.is_empty());
        }
        for t in &r.client_transports {
            assert!(t.connects > 0 && !t.disconnects.is_empty());
        }
        for scope in &r.requests {
            let statuses: Vec<_> = scope
                .responses
                .iter()
                .map(|r| r.ctx.as_ref().unwrap().http_status_code)
                .collect();
            assert_eq!(statuses, c.statuses);
            let mut total = 0;
            for resp in &scope.responses {
                let lat = &resp.response_latencies;
                assert_eq!(lat.len(), c.latencies);
                assert!(lat.windows(2).all(|w| w[0].latency < w[1].latency));
                assert!(lat.iter().all(|l| (5..=50_000).contains(&l.latency)));
                assert!(
                    lat.iter()
                        .all(|l| (1..=c.max_latency_count).contains(&l.count))
                );
                total += lat.iter().map(|l| l.count).sum::<u32>();
                assert_eq!(resp.ends.len(), c.ends);
                for end in &resp.ends {
                    assert!(end.ctx.as_ref().unwrap().end.is_some());
                    assert_eq!(end.streams.len(), c.streams_per_end);
                }
            }
            assert_eq!(scope.count, total);
        }
    }

    #[test]
    fn small_is_one_scope_one_response_ten_latencies_three_streams() {
        let (_, r) = report(Shape::Small, 1);
        assert_shape(&r, &Shape::Small.counts());
        let resp = &r.requests[0].responses[0];
        assert_eq!(
            resp.ends[0].ctx.as_ref().unwrap().end,
            Some(eos_ctx::End::GrpcStatusCode(0))
        );
        assert_eq!(Shape::Small.counts().scopes, 1);
        assert_eq!(Shape::Small.counts().latencies, 10);
    }

    #[test]
    fn medium_is_ten_scopes_over_distinct_paths() {
        let (_, r) = report(Shape::Medium, 2);
        let c = Shape::Medium.counts();
        assert_eq!(
            (c.scopes, c.latencies, c.ends, c.streams_per_end),
            (10, 20, 2, 5)
        );
        assert_shape(&r, &c);
        let paths: HashSet<_> = r
            .requests
            .iter()
            .map(|s| &s.ctx.as_ref().unwrap().path)
            .collect();
        assert_eq!(paths.len(), 10);
        // One end with a gRPC status, one that ended otherwise.
        let ends: Vec<_> = r.requests[0].responses[1]
            .ends
            .iter()
            .map(|e| e.ctx.as_ref().unwrap().end.unwrap())
            .collect();
        assert_eq!(
            ends,
            [eos_ctx::End::GrpcStatusCode(13), eos_ctx::End::Other(true)]
        );
    }

    #[test]
    fn large_is_a_hundred_medium_scopes() {
        let (_, r) = report(Shape::Large, 3);
        assert_eq!(Shape::Large.counts().scopes, 100);
        assert_shape(&r, &Shape::Large.counts());
        let paths: HashSet<_> = r
            .requests
            .iter()
            .map(|s| &s.ctx.as_ref().unwrap().path)
            .collect();
        assert_eq!(paths.len(), 100);
    }

    #[test]
    fn scopes_name_pods_of_the_fleet_and_their_services() {
        let (f, r) = report(Shape::Medium, 4);
        let process = r.process.as_ref().unwrap();
        assert_eq!(process.scheduled_instance, f.pods[4].name);
        assert_eq!(process.scheduled_namespace, "sim");
        assert_eq!(process.node, f.pods[4].node);
        for scope in &r.requests {
            let ctx = scope.ctx.as_ref().unwrap();
            let source = ip_from_proto(ctx.source_ip.as_ref().unwrap()).unwrap();
            let target_addr = ctx.target_addr.as_ref().unwrap();
            let target = ip_from_proto(target_addr.ip.as_ref().unwrap()).unwrap();
            assert!(
                f.pods
                    .iter()
                    .any(|p| std::net::IpAddr::from(p.ip) == source)
            );
            let target = f
                .pods
                .iter()
                .find(|p| std::net::IpAddr::from(p.ip) == target)
                .unwrap();
            assert_eq!(target_addr.port, POD_PORT);
            assert_eq!(
                ctx.authority,
                format!("{}.sim.svc.cluster.local:8080", target.deployment)
            );
            assert!(ctx.path.starts_with("/api/v1/"));
            assert!(ctx.method.as_ref().unwrap().r#type.is_some());
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_report() {
        assert_eq!(report(Shape::Medium, 9).1, report(Shape::Medium, 9).1);
        assert_ne!(report(Shape::Medium, 9).1, report(Shape::Medium, 10).1);
    }

    #[test]
    fn header_then_body_encodes_as_the_whole_report() {
        let f = fleet(5, 2, "sim", 1);
        let body = build_body(&f, Shape::Medium, &mut fastrand::Rng::with_seed(1));
        let head = header(&f, 2, report_request::Proxy::Outbound);
        let mut joined = head.encode_to_vec();
        joined.extend(body.encode_to_vec());
        let whole = ReportRequest {
            process: head.process.clone(),
            proxy: head.proxy,
            ..body.clone()
        };
        assert_eq!(joined, whole.encode_to_vec());
        assert_eq!(ReportRequest::decode(&*joined).unwrap(), whole);
    }

    #[test]
    fn shapes_parse_by_name() {
        for shape in [Shape::Small, Shape::Medium, Shape::Large] {
            assert_eq!(shape.as_str().parse::<Shape>().unwrap(), shape);
        }
        assert!("huge".parse::<Shape>().is_err());
    }
}
