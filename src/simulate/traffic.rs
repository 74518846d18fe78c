//! A traffic model of the simulated fleet, for the demo and the simulated
//! taps: which deployment calls which (a tree fed by an ingress outside the
//! mesh), the routes each serves with their typical latency and failure
//! ratio, and the requests per second on each call.
//!
//! Seeded like the fleet, so a demo shows the same mesh on every run: one
//! route somewhere fails often and one is slow, as in a mesh worth
//! watching; the rest succeed almost always and answer in milliseconds.

use std::net::{IpAddr, Ipv4Addr};

use crate::proto::common::http_method::Registered as Method;

use super::fleet::Fleet;

/// Requests per second the ingress sends to the first deployment.
const INGRESS_RPS: f64 = 40.0;

/// The address requests from outside the mesh come from (TEST-NET-3): no
/// pod owns it, so its labels are empty, as for a real ingress's clients.
pub const INGRESS_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

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

/// The model of `fleet`: deployment 0 takes the ingress's traffic, and
/// deployment `j > 0` is called by deployment `(j - 1) / 2` with 60–100%
/// of its caller's rate.
pub fn model(fleet: &Fleet, seed: u64) -> Model {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x7a11_c0de);
    let n = fleet.deployments.len();
    let mut inbound = vec![0.0; n];
    let mut calls = vec![Vec::new(); n];
    for j in 0..n {
        let (caller, rps) = if j == 0 {
            (None, INGRESS_RPS)
        } else {
            let caller = (j - 1) / 2;
            (Some(caller), inbound[caller] * (0.6 + 0.4 * rng.f64()))
        };
        inbound[j] = rps;
        calls[j].push(Call { caller, rps });
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
