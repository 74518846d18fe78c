//! The simulated proxies' tap: `conduit.proxy.tap.Tap/Observe` on every
//! simulated pod's own address, as a real proxy serves it on its pod's IP.
//!
//! One process serves the whole fleet by giving each pod its own loopback
//! address (`127.x.y.z`, all of 127.0.0.0/8 reaches this host on Linux) and
//! listening on `<pod IP>:<tap port>` for each; the tap controller then
//! dials the pod IPs from the cluster file exactly as it would in a cluster.
//!
//! While a call is open, the pod sees requests from the [`traffic`] model
//! at its share of the model's rate; each one the `Match` selects becomes a
//! `request_init`, `response_init` and `response_end`, until `limit`
//! requests have been sent and the call ends.
//!
//! [`traffic`]: super::traffic

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use prometheus::{IntCounter, IntGauge, Registry};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::fleet::{Fleet, POD_PORT};
use super::traffic::Model;
use crate::core::Shutdown;
use crate::proto::common::tap_event::{self, http as ev};
use crate::proto::common::{HttpMethod, Scheme, TapEvent, TcpAddress, http_method, scheme};
use crate::proto::net::ip_to_proto;
use crate::proto::proxy::tap::ObserveRequest;
use crate::proto::proxy::tap::tap_server::{self, TapServer};
use crate::proto::tap_match::{self, Observed};

/// Events a call may buffer before its requests wait for the caller.
const CALL_BUFFER: usize = 256;

/// Pod `i`'s loopback address: 127.a.b.c with c in 1..=254, clear of
/// 127.0.0.0/16 where other local services live.
pub fn loopback_pod_ip(i: usize) -> Ipv4Addr {
    let host = (i % 254) as u8 + 1;
    let rest = i / 254 + 256;
    Ipv4Addr::new(127, (rest >> 8) as u8, rest as u8, host)
}

/// Moves every pod of `fleet` onto its loopback address.
pub fn on_loopback(mut fleet: Fleet) -> Fleet {
    for (i, pod) in fleet.pods.iter_mut().enumerate() {
        pod.ip = loopback_pod_ip(i);
    }
    fleet
}

/// The simulated taps' counters, served on simulate-proxy's admin port.
#[derive(Clone)]
pub struct Counters {
    /// Observe calls open now.
    pub open: IntGauge,
    /// Observe calls ever opened.
    pub calls: IntCounter,
    /// Requests sent to tap callers.
    pub requests: IntCounter,
}

impl Counters {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let open = IntGauge::new(
            "conduit_simulate_tap_observe_open",
            "Observe calls open on the simulated proxies.",
        )?;
        let calls = IntCounter::new(
            "conduit_simulate_tap_observe_total",
            "Observe calls opened on the simulated proxies.",
        )?;
        let requests = IntCounter::new(
            "conduit_simulate_tap_requests_total",
            "Requests the simulated proxies sent to Observe callers.",
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        Ok(Self {
            open,
            calls,
            requests,
        })
    }
}

/// Binds `<pod IP>:port` for every pod and serves Observe on each until
/// `shutdown`. `rps_scale` multiplies the model's rates (1.0: as modelled).
pub async fn serve(
    fleet: Arc<Fleet>,
    model: Arc<Model>,
    port: u16,
    rps_scale: f64,
    counters: Counters,
    shutdown: Shutdown,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut listeners = Vec::with_capacity(fleet.pods.len());
    for pod in &fleet.pods {
        let addr = SocketAddr::new(IpAddr::V4(pod.ip), port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the simulated tap of pod {} on {addr}", pod.name))?;
        listeners.push(listener);
    }
    let next_base = Arc::new(AtomicU64::new(0));
    let tasks = listeners
        .into_iter()
        .enumerate()
        .map(|(pod, listener)| {
            let service = PodTap {
                pod,
                fleet: fleet.clone(),
                model: model.clone(),
                rps_scale,
                counters: counters.clone(),
                next_base: next_base.clone(),
                shutdown: shutdown.clone(),
            };
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                let served = tonic::transport::Server::builder()
                    .add_service(TapServer::new(service))
                    .serve_with_incoming_shutdown(incoming, shutdown.signaled())
                    .await;
                if let Err(error) = served {
                    tracing::warn!(%error, "a simulated tap server stopped");
                }
            })
        })
        .collect();
    Ok(tasks)
}

struct PodTap {
    pod: usize,
    fleet: Arc<Fleet>,
    model: Arc<Model>,
    rps_scale: f64,
    counters: Counters,
    next_base: Arc<AtomicU64>,
    shutdown: Shutdown,
}

type EventStream = Pin<Box<dyn futures::Stream<Item = Result<TapEvent, Status>> + Send>>;

#[tonic::async_trait]
impl tap_server::Tap for PodTap {
    type ObserveStream = EventStream;

    async fn observe(
        &self,
        request: Request<ObserveRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let request = request.into_inner();
        let deployment = self.fleet.pods[self.pod].deployment_index;
        let rps = self.model.inbound_rps(deployment) * self.rps_scale
            / self.fleet.deployments[deployment].pods.len() as f64;
        if rps.is_nan() || rps <= 0.0 {
            return Err(Status::unavailable(
                "this simulated pod receives no traffic",
            ));
        }
        let (tx, rx) = mpsc::channel(CALL_BUFFER);
        let call = Call {
            pod: self.pod,
            fleet: self.fleet.clone(),
            model: self.model.clone(),
            base: self.next_base.fetch_add(1, Ordering::Relaxed) as u32,
            interval: Duration::from_secs_f64(1.0 / rps),
            request,
            counters: self.counters.clone(),
        };
        let shutdown = self.shutdown.clone();
        let counters = self.counters.clone();
        counters.calls.inc();
        counters.open.inc();
        tokio::spawn(async move {
            tokio::select! {
                () = call.run(&tx) => {}
                () = tx.closed() => {}
                () = shutdown.signaled() => {}
            }
            counters.open.dec();
        });
        Ok(Response::new(Box::pin(futures::StreamExt::map(
            ReceiverStream::new(rx),
            Ok,
        ))))
    }
}

/// One Observe call's generator.
struct Call {
    pod: usize,
    fleet: Arc<Fleet>,
    model: Arc<Model>,
    base: u32,
    interval: Duration,
    request: ObserveRequest,
    counters: Counters,
}

impl Call {
    /// Sends matching requests until `limit` have gone out or the caller
    /// leaves (a failed send).
    async fn run(self, tx: &mpsc::Sender<TapEvent>) {
        let mut rng = fastrand::Rng::new();
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let pod = &self.fleet.pods[self.pod];
        let target = SocketAddr::new(IpAddr::V4(pod.ip), POD_PORT as u16);
        let authority = format!(
            "{}.{}.svc.cluster.local:{POD_PORT}",
            pod.deployment, pod.namespace
        );
        let http = Scheme {
            r#type: Some(scheme::Type::Registered(scheme::Registered::Http as i32)),
        };
        let mut sent = 0u32;
        let mut stream = 0u64;
        while sent < self.request.limit {
            ticks.tick().await;
            let sample = self.model.sample(&self.fleet, self.pod, &mut rng);
            let source = SocketAddr::new(sample.source, rng.u16(32_768..61_000));
            let method = HttpMethod {
                r#type: Some(http_method::Type::Registered(sample.route.method as i32)),
            };
            let observed = Observed {
                source: (source.ip(), source.port()),
                destination: (target.ip(), target.port()),
                scheme: &http,
                method: &method,
                authority: &authority,
                path: &sample.route.path,
            };
            let selected = match &self.request.r#match {
                Some(m) => tap_match::matches(m, &observed),
                None => true,
            };
            if !selected {
                continue;
            }
            stream += 1;
            let id = ev::StreamId {
                base: self.base,
                stream,
            };
            let latency = Duration::from_micros(u64::from(sample.latency_tenths) * 100);
            // The body streams for a tenth of the time to first byte.
            let body_time = latency / 10;
            let events = [
                ev::Event::RequestInit(ev::RequestInit {
                    id: Some(id),
                    method: Some(method.clone()),
                    scheme: Some(http.clone()),
                    authority: authority.clone(),
                    path: sample.route.path.clone(),
                }),
                ev::Event::ResponseInit(ev::ResponseInit {
                    id: Some(id),
                    since_request_init: Some(duration(latency)),
                    http_status: sample.status,
                }),
                ev::Event::ResponseEnd(ev::ResponseEnd {
                    id: Some(id),
                    since_request_init: Some(duration(latency + body_time)),
                    since_response_init: Some(duration(body_time)),
                    response_bytes: rng.u64(120..4_000),
                    grpc_status: 0,
                }),
            ];
            for event in events {
                let event = TapEvent {
                    source: Some(tcp(source)),
                    target: Some(tcp(target)),
                    event: Some(tap_event::Event::Http(tap_event::Http {
                        event: Some(event),
                    })),
                };
                if tx.send(event).await.is_err() {
                    return;
                }
            }
            sent += 1;
            self.counters.requests.inc();
        }
    }
}

fn tcp(addr: SocketAddr) -> TcpAddress {
    TcpAddress {
        ip: Some(ip_to_proto(addr.ip())),
        port: u32::from(addr.port()),
    }
}

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_unique_and_clear_of_127_0() {
        let ips: std::collections::HashSet<_> = (0..100_000).map(loopback_pod_ip).collect();
        assert_eq!(ips.len(), 100_000);
        assert!(
            ips.iter()
                .all(|ip| ip.octets()[0] == 127 && ip.octets()[1] >= 1)
        );
        assert_eq!(loopback_pod_ip(0), Ipv4Addr::new(127, 1, 0, 1));
    }
}
