//! `conduit.controller.tap.Tap/Tap`: resolve the target to its running
//! pods through the index, open `Observe` on each pod's proxy, merge their
//! events into the caller's stream.
//!
//! Rate: the caller's `maxRps` is split evenly across the pods; each pod
//! gets an `Observe` whose `limit` is its share of one [`WINDOW`]'s
//! requests. When the proxy has sent that many it ends the call; the next
//! one opens when the window is over, so no window sees more than
//! `maxRps × WINDOW` requests from the whole target.
//!
//! Cancellation: one task per pod, each ending as soon as the caller's
//! stream is dropped (or at shutdown), which drops its upstream call and so
//! resets the proxy's stream.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::Metrics;
use crate::core::Shutdown;
use crate::k8s::Index;
use crate::proto::common::TapEvent;
use crate::proto::controller::tap::tap_server;
use crate::proto::proxy::tap::ObserveRequest;
use crate::proto::proxy::tap::observe_request::Match;
use crate::proto::proxy::tap::tap_client::TapClient;
use crate::proto::public::TapRequest;
use crate::proto::tap_match::{self as filter, FilterError, Target};

/// The rate window: a pod's share of `maxRps` is granted per window, as in
/// the original controller.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Events buffered between the pods' calls and the caller: enough to ride
/// out a slow client for a moment; beyond it the pods' calls wait (and
/// their proxies with them), never memory.
const EVENT_BUFFER: usize = 1024;

/// How long opening a connection to one proxy's tap port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub struct TapService {
    index: Arc<Index>,
    tap_port: u16,
    metrics: Metrics,
    shutdown: Shutdown,
}

impl TapService {
    pub fn new(index: Arc<Index>, tap_port: u16, metrics: Metrics, shutdown: Shutdown) -> Self {
        Self {
            index,
            tap_port,
            metrics,
            shutdown,
        }
    }

    /// The IPs of the target's pods that can be tapped: those Running and
    /// not terminating; NOT_FOUND when the target is unknown.
    fn resolve(&self, target: &Target) -> Result<Vec<(Arc<str>, IpAddr)>, Status> {
        let snapshot = self.index.load();
        let pods = match target {
            Target::Pod { namespace, name } => snapshot
                .pod(namespace, name)
                .cloned()
                .into_iter()
                .collect::<Vec<_>>(),
            Target::Deployment { namespace, name } => {
                let pods = snapshot.pods_of_deployment(namespace, name);
                if pods.is_empty() && snapshot.deployment(namespace, name).is_none() {
                    return Err(Status::not_found(format!("{target} not found")));
                }
                pods
            }
        };
        if pods.is_empty() {
            let why = match target {
                Target::Pod { .. } => "not found",
                Target::Deployment { .. } => "has no pods",
            };
            return Err(Status::not_found(format!("{target} {why}")));
        }
        let running: Vec<_> = pods
            .iter()
            .filter(|pod| pod.phase == "Running" && !pod.terminating)
            .filter_map(|pod| Some((pod.label.clone(), *pod.ips.first()?)))
            .collect();
        if running.is_empty() {
            return Err(Status::unavailable(format!(
                "{target} has no running pods to tap"
            )));
        }
        Ok(running)
    }
}

fn invalid(error: FilterError) -> Status {
    Status::invalid_argument(error.to_string())
}

/// Requests one pod's proxy may send per window: its share of the rate,
/// at least one so a tap over many pods still sees each of them.
pub fn per_pod_limit(max_rps: f32, pods: usize) -> u32 {
    let share = f64::from(max_rps) / pods.max(1) as f64 * WINDOW.as_secs_f64();
    share.floor().clamp(1.0, f64::from(u32::MAX)) as u32
}

type EventStream = Pin<Box<dyn futures::Stream<Item = Result<TapEvent, Status>> + Send>>;

#[tonic::async_trait]
impl tap_server::Tap for TapService {
    type TapStream = EventStream;

    async fn tap(&self, request: Request<TapRequest>) -> Result<Response<EventStream>, Status> {
        let request = request.into_inner();
        let target = Target::from_request(&request).map_err(invalid)?;
        let max_rps = filter::max_rps(&request).map_err(invalid)?;
        let observe = filter::build_match(&request).map_err(invalid)?;
        let pods = self.resolve(&target)?;
        let limit = per_pod_limit(max_rps, pods.len());
        tracing::info!(%target, pods = pods.len(), max_rps, limit, "tap started");
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let stream_guard = self.metrics.open_stream();
        let contact = Arc::new(Contact {
            target: target.to_string(),
            pods: pods.len(),
            failed: AtomicUsize::new(0),
            opened: AtomicBool::new(false),
        });
        for (pod, ip) in pods {
            let upstream = Upstream {
                pod: pod.clone(),
                addr: SocketAddr::new(ip, self.tap_port),
                limit,
                observe: observe.clone(),
                tx: tx.clone(),
                metrics: self.metrics.clone(),
                contact: contact.clone(),
            };
            let shutdown = self.shutdown.clone();
            let span = tracing::info_span!("tap", %pod, addr = %upstream.addr);
            tokio::spawn(
                async move {
                    let tx = upstream.tx.clone();
                    tokio::select! {
                        () = upstream.run() => {}
                        () = tx.closed() => tracing::debug!("caller gone: upstream cancelled"),
                        () = shutdown.signaled() => {}
                    }
                }
                .instrument(span),
            );
        }
        drop(tx);
        // The guard lives as long as the caller's stream does.
        let events = futures::StreamExt::map(ReceiverStream::new(rx), move |event| {
            let _ = &stream_guard;
            event
        });
        Ok(Response::new(Box::pin(events)))
    }
}

/// One pod's side of a tap.
struct Upstream {
    pod: Arc<str>,
    addr: SocketAddr,
    limit: u32,
    observe: Match,
    tx: mpsc::Sender<Result<TapEvent, Status>>,
    metrics: Metrics,
    contact: Arc<Contact>,
}

/// Whether any of a tap's proxies answered: when every one fails its
/// first call, the caller is told so (UNAVAILABLE) instead of waiting on a
/// stream that can never carry an event.
struct Contact {
    target: String,
    pods: usize,
    failed: AtomicUsize,
    opened: AtomicBool,
}

impl Upstream {
    /// Observes window after window until the caller goes away (the
    /// caller's select drops this future then). A pod that cannot be
    /// reached is skipped for the window, said once in the log, and tried
    /// again the next.
    async fn run(self) {
        let mut warned = false;
        let mut first = true;
        loop {
            let window_end = Instant::now() + WINDOW;
            match self.observe_once().await {
                Ok(sent) => {
                    warned = false;
                    tracing::debug!(sent, "window's limit reached or proxy ended the call");
                }
                Err(CallEnd::CallerGone) => return,
                Err(CallEnd::Failed(status)) => {
                    self.metrics.upstream_error();
                    let c = &self.contact;
                    if first
                        && c.failed.fetch_add(1, Ordering::AcqRel) + 1 == c.pods
                        && !c.opened.load(Ordering::Acquire)
                    {
                        let message = format!(
                            "no proxy of {} could be tapped (the last: {} at {}: {})",
                            c.target,
                            self.pod,
                            self.addr,
                            status.message()
                        );
                        tracing::warn!(target = %c.target, "tap failed: no proxy answered");
                        let _ = self.tx.send(Err(Status::unavailable(message))).await;
                        return;
                    }
                    if !warned {
                        tracing::warn!(
                            pod = %self.pod,
                            code = ?status.code(),
                            error = %status.message(),
                            "skipping pod: its tap failed; retrying next window"
                        );
                        warned = true;
                    }
                }
            }
            first = false;
            tokio::time::sleep_until(window_end).await;
        }
    }

    /// One Observe call: its events forwarded until the proxy ends it.
    async fn observe_once(&self) -> Result<u64, CallEnd> {
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr))
            .map_err(|e| CallEnd::Failed(Status::internal(e.to_string())))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| CallEnd::Failed(Status::unavailable(crate::core::error_chain(&e))))?;
        let request = ObserveRequest {
            limit: self.limit,
            r#match: Some(self.observe.clone()),
        };
        let mut events = TapClient::new(channel)
            .observe(request)
            .await
            .map_err(CallEnd::Failed)?
            .into_inner();
        self.contact.opened.store(true, Ordering::Release);
        let _open = self.metrics.open_upstream();
        let mut sent = 0;
        while let Some(event) = events.message().await.map_err(CallEnd::Failed)? {
            self.tx
                .send(Ok(event))
                .await
                .map_err(|_| CallEnd::CallerGone)?;
            self.metrics.event();
            sent += 1;
        }
        Ok(sent)
    }
}

enum CallEnd {
    CallerGone,
    Failed(Status),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_split_across_pods_per_window() {
        assert_eq!(per_pod_limit(1.0, 1), 10);
        assert_eq!(per_pod_limit(3.0, 3), 10);
        assert_eq!(per_pod_limit(1.5, 3), 5);
        assert_eq!(per_pod_limit(100.0, 4), 250);
        // Every pod sees at least one request per window.
        assert_eq!(per_pod_limit(0.01, 50), 1);
        assert_eq!(per_pod_limit(f32::MAX, 1), u32::MAX);
    }
}
