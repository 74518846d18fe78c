//! A traffic model of the simulated fleet, for the demo and the simulated
//! taps: which deployment calls which (a tree fed by an ingress outside the
//! mesh), the routes each serves with their typical latency and failure
//! ratio, and the requests per second on each call.
//!
//! Seeded like the fleet, so a demo shows the same mesh on every run: one
//! route somewhere fails often and one is slow, as in a mesh worth
//! watching; the rest succeed almost always and answer in milliseconds.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::proto::common::http_method::{self, Registered as Method};
use crate::proto::common::{HttpMethod, TcpAddress};
use crate::proto::net::ip_to_proto;
use crate::proto::proxy::telemetry::{
    ClientTransport, EosCtx, EosScope, Latency, ReportRequest, RequestCtx, RequestScope,
    ResponseCtx, ResponseScope, ServerTransport, StreamSummary, TransportSummary, eos_ctx,
};

use super::fleet::{Fleet, POD_PORT};

/// Requests per second the ingress sends to the first deployment.
const INGRESS_RPS: f64 = 40.0;

/// The address requests from outside the mesh come from (TEST-NET-3): no
/// pod owns it, so its labels are empty, as for a real ingress's clients.
pub const INGRESS_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// Connections each caller keeps open to a pod it calls, as a client's
/// pool does.
pub const CONNECTIONS_PER_CALLER: u32 = 4;

/// Typical bytes of a request and of a response on the wire.
const REQUEST_BYTES: u64 = 600;
const RESPONSE_BYTES: u64 = 2_400;

/// Spread of a route's latencies around its median (the σ of a log-normal):
/// p99 ≈ 3.2 × p50, the shape of a healthy service's tail.
const LATENCY_SIGMA: f64 = 0.5;

/// One route a deployment serves.
#[derive(Clone, Debug)]
pub struct Route {
    pub method: Method,
    pub path: String,
    /// Median latency in milliseconds.
    pub p50_ms: f64,
    /// Fraction of requests answered 5xx.
    pub failure: f64,
    /// Share of the deployment's requests that take this route.
    pub weight: f64,
}

/// Calls into one deployment from one caller (`None`: the ingress).
#[derive(Clone, Debug)]
pub struct Call {
    pub caller: Option<usize>,
    pub rps: f64,
}

/// The model: per deployment (indexed as [`Fleet::deployments`]) its
/// routes and its callers.
#[derive(Clone, Debug)]
pub struct Model {
    pub routes: Vec<Vec<Route>>,
    pub calls: Vec<Vec<Call>>,
}

/// One request as a proxy sees it.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub source: IpAddr,
    pub route: &'a Route,
    /// Latency in tenths of a millisecond (the wire's unit).
    pub latency_tenths: u32,
    pub status: u32,
}

/// The model of `fleet` as a binary tree: deployment `j > 0` is called
/// by deployment `(j - 1) / 2`.
pub fn model(fleet: &Fleet, seed: u64) -> Model {
    let calls: Vec<(usize, usize)> = (1..fleet.deployments.len())
        .map(|j| ((j - 1) / 2, j))
        .collect();
    model_with_calls(fleet, &calls, seed)
}

/// The model of `fleet` with these `(caller, callee)` edges, callers
/// listed before their callees: deployment 0 takes the ingress's traffic,
/// and each call carries 60–100% of its caller's inbound rate. A
/// deployment nobody calls is called by the ingress.
pub fn model_with_calls(fleet: &Fleet, edges: &[(usize, usize)], seed: u64) -> Model {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x7a11_c0de);
    let n = fleet.deployments.len();
    let mut calls = vec![Vec::new(); n];
    calls[0].push(Call {
        caller: None,
        rps: INGRESS_RPS,
    });
    for j in 1..n {
        let mut inbound = Vec::new();
        for &(caller, _) in edges.iter().filter(|&&(c, callee)| callee == j && c < j) {
            let caller_rps: f64 = calls[caller].iter().map(|c: &Call| c.rps).sum();
            inbound.push(Call {
                caller: Some(caller),
                rps: caller_rps * (0.6 + 0.4 * rng.f64()),
            });
        }
        if inbound.is_empty() {
            inbound.push(Call {
                caller: None,
                rps: INGRESS_RPS * (0.2 + 0.3 * rng.f64()),
            });
        }
        calls[j] = inbound;
    }
    // The troubled routes: one failing, one slow, away from the front door
    // when the mesh is big enough to have a back.
    let failing = n.saturating_sub(1);
    let slow = n / 2;
    let routes = fleet
        .deployments
        .iter()
        .enumerate()
        .map(|(j, d)| {
            let resource = d.name.split('-').next().unwrap_or(&d.name);
            let mut routes = vec![
                route(Method::Get, format!("/api/{resource}"), 0.45, &mut rng),
                route(Method::Get, format!("/api/{resource}/item"), 0.35, &mut rng),
                route(Method::Post, format!("/api/{resource}"), 0.20, &mut rng),
            ];
            if j == failing {
                routes[2].failure = 0.25;
            }
            if j == slow {
                routes[1].p50_ms = 180.0 + 60.0 * rng.f64();
            }
            routes
        })
        .collect();
    Model { routes, calls }
}

fn route(method: Method, path: String, weight: f64, rng: &mut fastrand::Rng) -> Route {
    Route {
        method,
        path,
        p50_ms: 2.0 + 18.0 * rng.f64(),
        failure: 0.001 + 0.009 * rng.f64(),
        weight,
    }
}

impl Model {
    /// Requests per second into deployment `j`, from all its callers.
    pub fn inbound_rps(&self, j: usize) -> f64 {
        self.calls[j].iter().map(|c| c.rps).sum()
    }

    /// A request into pod `pod` of `fleet`: a caller's pod (or the
    /// ingress) picked by rate, a route by weight, a latency and a status.
    pub fn sample<'a>(&'a self, fleet: &Fleet, pod: usize, rng: &mut fastrand::Rng) -> Request<'a> {
        let j = fleet.pods[pod].deployment_index;
        let call = pick(&self.calls[j], |c| c.rps, rng);
        let source = match call.caller {
            None => IpAddr::V4(INGRESS_IP),
            Some(caller) => {
                let pods = &fleet.deployments[caller].pods;
                IpAddr::V4(fleet.pods[pods[rng.usize(..pods.len())]].ip)
            }
        };
        let route = pick(&self.routes[j], |r| r.weight, rng);
        Request {
            source,
            route,
            latency_tenths: sample_latency_tenths(route.p50_ms, rng),
            status: if rng.f64() < route.failure { 500 } else { 200 },
        }
    }
}

/// The body of an INBOUND report of pod `pod`: `interval_secs` of the
/// requests the model sends it, by caller, route and status, with their
/// latencies. (Requests appear only in inbound reports, so each is counted
/// once, at the pod that served it.)
pub fn inbound_body(
    model: &Model,
    fleet: &Fleet,
    pod: usize,
    interval_secs: f64,
    rng: &mut fastrand::Rng,
) -> ReportRequest {
    let target = &fleet.pods[pod];
    let j = target.deployment_index;
    let replicas = fleet.deployments[j].pods.len() as f64;
    let authority = format!(
        "{}.{}.svc.cluster.local:{POD_PORT}",
        target.deployment, target.namespace
    );
    let target_addr = TcpAddress {
        ip: Some(ip_to_proto(IpAddr::V4(target.ip))),
        port: POD_PORT,
    };
    let mut requests = Vec::new();
    let mut server_transports = Vec::new();
    for call in &model.calls[j] {
        let source = match call.caller {
            None => IpAddr::V4(INGRESS_IP),
            Some(caller) => {
                let pods = &fleet.deployments[caller].pods;
                IpAddr::V4(fleet.pods[pods[rng.usize(..pods.len())]].ip)
            }
        };
        // One pooled connection from the caller replaced per report: the
        // pool's size stays what the opening report opened.
        server_transports.push(ServerTransport {
            source_ip: Some(ip_to_proto(source)),
            connects: 1,
            disconnects: vec![TransportSummary {
                duration_ms: rng.u64(1_000..=60_000),
                bytes_sent: call_bytes(call.rps / replicas, interval_secs, RESPONSE_BYTES, rng),
            }],
        });
        for route in &model.routes[j] {
            let expected = call.rps / replicas * route.weight * interval_secs;
            // Randomised rounding: the expected count on average.
            let count = (expected + rng.f64()).floor() as u32;
            if count == 0 {
                continue;
            }
            let mut by_status: BTreeMap<u32, BTreeMap<u32, u32>> = BTreeMap::new();
            for _ in 0..count {
                let status = if rng.f64() < route.failure { 500 } else { 200 };
                let latency = sample_latency_tenths(route.p50_ms, rng);
                *by_status
                    .entry(status)
                    .or_default()
                    .entry(latency)
                    .or_default() += 1;
            }
            let responses = by_status
                .into_iter()
                .map(|(status, latencies)| {
                    let n: u32 = latencies.values().sum();
                    ResponseScope {
                        ctx: Some(ResponseCtx {
                            http_status_code: status,
                        }),
                        response_latencies: latencies
                            .into_iter()
                            .map(|(latency, count)| Latency { latency, count })
                            .collect(),
                        ends: vec![EosScope {
                            ctx: Some(EosCtx {
                                end: Some(eos_ctx::End::Other(true)),
                            }),
                            streams: (0..n)
                                .map(|_| StreamSummary {
                                    duration_ms: rng.u64(1..=50),
                                    bytes_sent: rng.u64(120..=4_000),
                                    frames_sent: rng.u32(1..=4),
                                })
                                .collect(),
                        }],
                    }
                })
                .collect();
            requests.push(RequestScope {
                ctx: Some(RequestCtx {
                    source_ip: Some(ip_to_proto(source)),
                    target_addr: Some(target_addr),
                    authority: authority.clone(),
                    method: Some(HttpMethod {
                        r#type: Some(http_method::Type::Registered(route.method as i32)),
                    }),
                    path: route.path.clone(),
                }),
                count,
                responses,
            });
        }
    }
    ReportRequest {
        server_transports,
        requests,
        ..ReportRequest::default()
    }
}

/// The first INBOUND report of pod `pod`: each caller opens its pool of
/// [`CONNECTIONS_PER_CALLER`] connections to it.
pub fn opening_body(model: &Model, fleet: &Fleet, pod: usize) -> ReportRequest {
    let target = &fleet.pods[pod];
    let server_transports = model.calls[target.deployment_index]
        .iter()
        .map(|call| ServerTransport {
            source_ip: Some(ip_to_proto(match call.caller {
                None => IpAddr::V4(INGRESS_IP),
                Some(caller) => IpAddr::V4(fleet.pods[fleet.deployments[caller].pods[0]].ip),
            })),
            connects: CONNECTIONS_PER_CALLER,
            disconnects: vec![],
        })
        .collect();
    ReportRequest {
        server_transports,
        ..ReportRequest::default()
    }
}

/// The body of an OUTBOUND report of pod `pod`: the connections it closed
/// over `interval_secs` to the pods it calls, with the bytes it sent them
/// (its requests; the requests themselves are counted at the pods that
/// served them).
pub fn outbound_body(
    model: &Model,
    fleet: &Fleet,
    pod: usize,
    interval_secs: f64,
    rng: &mut fastrand::Rng,
) -> ReportRequest {
    let own = fleet.pods[pod].deployment_index;
    let callers = fleet.deployments[own].pods.len() as f64;
    let mut client_transports = Vec::new();
    for (j, calls) in model.calls.iter().enumerate() {
        for call in calls.iter().filter(|c| c.caller == Some(own)) {
            let pods = &fleet.deployments[j].pods;
            let target = &fleet.pods[pods[rng.usize(..pods.len())]];
            client_transports.push(ClientTransport {
                target_addr: Some(TcpAddress {
                    ip: Some(ip_to_proto(IpAddr::V4(target.ip))),
                    port: POD_PORT,
                }),
                connects: 1,
                disconnects: vec![TransportSummary {
                    duration_ms: rng.u64(1_000..=60_000),
                    bytes_sent: call_bytes(call.rps / callers, interval_secs, REQUEST_BYTES, rng),
                }],
            });
        }
    }
    ReportRequest {
        client_transports,
        ..ReportRequest::default()
    }
}

/// Bytes a call of `rps` requests per second carries over `interval_secs`,
/// about `per_request` bytes each.
fn call_bytes(rps: f64, interval_secs: f64, per_request: u64, rng: &mut fastrand::Rng) -> u64 {
    let size = rng.u64(per_request / 2..=per_request * 3 / 2) as f64;
    (rps * interval_secs * size).round() as u64
}

/// A log-normal latency around `p50_ms`, in tenths of a millisecond.
pub fn sample_latency_tenths(p50_ms: f64, rng: &mut fastrand::Rng) -> u32 {
    // Box–Muller: one standard normal from two uniforms.
    let (u1, u2) = (rng.f64().max(f64::MIN_POSITIVE), rng.f64());
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    let ms = p50_ms * (LATENCY_SIGMA * z).exp();
    (ms * 10.0).round().clamp(1.0, f64::from(u32::MAX)) as u32
}

/// One of `items` chosen with probability proportional to `weight`.
fn pick<'a, T>(items: &'a [T], weight: impl Fn(&T) -> f64, rng: &mut fastrand::Rng) -> &'a T {
    let total: f64 = items.iter().map(&weight).sum();
    let mut at = rng.f64() * total;
    for item in items {
        at -= weight(item);
        if at < 0.0 {
            return item;
        }
    }
    items.last().expect("a deployment has callers and routes")
}

#[cfg(test)]
mod tests {
    use super::super::fleet::fleet;
    use super::*;

    #[test]
    fn the_call_graph_is_a_tree_fed_by_the_ingress() {
        let f = fleet(24, 6, "demo", 42);
        let m = model(&f, 42);
        assert_eq!(m.calls[0][0].caller, None);
        for j in 1..6 {
            let caller = m.calls[j][0].caller.unwrap();
            assert!(caller < j);
            assert!(m.inbound_rps(j) <= m.inbound_rps(caller));
            assert!(m.inbound_rps(j) >= 0.6 * m.inbound_rps(caller) - 1e-9);
        }
        let failing = m
            .routes
            .iter()
            .flatten()
            .filter(|r| r.failure > 0.1)
            .count();
        let slow = m
            .routes
            .iter()
            .flatten()
            .filter(|r| r.p50_ms > 100.0)
            .count();
        assert_eq!((failing, slow), (1, 1));
    }

    #[test]
    fn the_demo_mesh_follows_its_calls() {
        use super::super::fleet::{DEMO_CALLS, demo_fleet};
        let f = demo_fleet(42);
        let m = model_with_calls(&f, DEMO_CALLS, 42);
        for &(caller, callee) in DEMO_CALLS {
            assert!(m.calls[callee].iter().any(|c| c.caller == Some(caller)));
        }
        // Only the front door is called from outside the mesh.
        let from_ingress: Vec<usize> = (0..m.calls.len())
            .filter(|&j| m.calls[j].iter().any(|c| c.caller.is_none()))
            .collect();
        assert_eq!(from_ingress, [0]);
        assert!((0..m.calls.len()).all(|j| m.inbound_rps(j) > 1.0));
    }

    #[test]
    fn inbound_reports_carry_the_modelled_rates() {
        use super::super::fleet::{DEMO_CALLS, demo_fleet};
        let f = demo_fleet(42);
        let m = model_with_calls(&f, DEMO_CALLS, 42);
        let mut rng = fastrand::Rng::with_seed(3);
        // Payments (the failing POST) over many reports of its pods.
        let j = f
            .deployments
            .iter()
            .position(|d| d.name == "payments")
            .unwrap();
        let (mut requests, mut failures, mut responses) = (0u64, 0u64, 0u64);
        for _ in 0..200 {
            for &pod in &f.deployments[j].pods {
                let body = inbound_body(&m, &f, pod, 1.0, &mut rng);
                for scope in &body.requests {
                    let ctx = scope.ctx.as_ref().unwrap();
                    assert!(ctx.authority.starts_with("payments.checkout.svc"));
                    requests += u64::from(scope.count);
                    for r in &scope.responses {
                        let n = r.ends[0].streams.len() as u64;
                        let observed: u32 = r.response_latencies.iter().map(|l| l.count).sum();
                        assert_eq!(u64::from(observed), n, "one latency per response");
                        responses += n;
                        if r.ctx.as_ref().unwrap().http_status_code >= 500 {
                            failures += n;
                        }
                    }
                }
            }
        }
        assert_eq!(requests, responses);
        let rate = requests as f64 / 200.0;
        let modelled = m.inbound_rps(j);
        assert!((rate / modelled - 1.0).abs() < 0.1, "{rate} vs {modelled}");
        // The failing route is a fifth of the traffic at 25%: ~5% overall.
        let failure = failures as f64 / requests as f64;
        assert!((0.03..0.08).contains(&failure), "{failure}");
    }

    #[test]
    fn samples_follow_the_model() {
        let f = fleet(24, 6, "demo", 42);
        let m = model(&f, 42);
        let mut rng = fastrand::Rng::with_seed(1);
        let pod = f.deployments[1].pods[0];
        let callers: Vec<IpAddr> = f.deployments[0]
            .pods
            .iter()
            .map(|&p| IpAddr::V4(f.pods[p].ip))
            .collect();
        let mut latencies: Vec<u32> = (0..2000)
            .map(|_| {
                let r = m.sample(&f, pod, &mut rng);
                assert!(callers.contains(&r.source));
                assert!(m.routes[1].iter().any(|route| route.path == r.route.path));
                r.latency_tenths
            })
            .collect();
        latencies.sort_unstable();
        let p50_ms = f64::from(latencies[1000]) / 10.0;
        let route_p50s: Vec<f64> = m.routes[1].iter().map(|r| r.p50_ms).collect();
        let (lo, hi) = route_p50s
            .iter()
            .fold((f64::MAX, 0.0_f64), |(lo, hi), &p| (lo.min(p), hi.max(p)));
        assert!(
            p50_ms >= lo * 0.7 && p50_ms <= hi * 1.3,
            "{p50_ms} vs {route_p50s:?}"
        );
    }
}
