//! `Destination.Get`: one stream per call, following the index's
//! publications. Each stream owns its state (no task per stream): dropping
//! it — the client went away, or the server drained — ends it.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::metrics::{Metrics, StreamGuard};
use super::path::{self, Target};
use super::resolve::resolve;
use crate::core::Shutdown;
use crate::k8s::{Index, Published};
use crate::proto::common::{Destination, TcpAddress};
use crate::proto::net::ip_to_proto;
use crate::proto::proxy::destination::{
    AddrSet, Update, WeightedAddr, WeightedAddrSet, destination_server, update,
};

/// The weight of every address sent (the original sends 1).
const WEIGHT: u32 = 1;

pub struct DestinationService {
    index: Arc<Index>,
    cluster_domain: Arc<str>,
    heartbeat: Duration,
    metrics: Metrics,
    shutdown: Shutdown,
}

impl DestinationService {
    pub fn new(
        index: Arc<Index>,
        cluster_domain: &str,
        heartbeat: Duration,
        metrics: Metrics,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            index,
            cluster_domain: cluster_domain.into(),
            heartbeat,
            metrics,
            shutdown,
        }
    }
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<Update, Status>> + Send>>;

#[tonic::async_trait]
impl destination_server::Destination for DestinationService {
    type GetStream = UpdateStream;

    async fn get(&self, request: Request<Destination>) -> Result<Response<UpdateStream>, Status> {
        let dest = request.into_inner();
        let target = path::parse(&dest.scheme, &dest.path, &self.cluster_domain)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::debug!(%target, "stream opened");
        let follow = Follow::new(
            &self.index,
            target,
            self.heartbeat,
            &self.metrics,
            self.shutdown.clone(),
        );
        let stream = futures::stream::unfold(follow, |f| f.next());
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The state of one stream.
struct Follow {
    index: Arc<Index>,
    target: Target,
    changes: watch::Receiver<Published>,
    /// The addresses the client has been sent.
    sent: BTreeSet<SocketAddr>,
    /// Updates to send, with when the change behind them was indexed.
    pending: VecDeque<(Update, &'static str, Option<Instant>)>,
    heartbeat: tokio::time::Interval,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
    metrics: Metrics,
    _open: StreamGuard,
}

impl Follow {
    fn new(
        index: &Arc<Index>,
        target: Target,
        heartbeat: Duration,
        metrics: &Metrics,
        shutdown: Shutdown,
    ) -> Self {
        // Subscribe before reading, so no publication falls in between.
        let changes = index.subscribe();
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let open = metrics.open(format!("{}/{}", target.namespace, target.service));
        let mut follow = Follow {
            index: index.clone(),
            target,
            changes,
            sent: BTreeSet::new(),
            pending: VecDeque::new(),
            heartbeat,
            shutdown: Box::pin(shutdown.signaled()),
            metrics: metrics.clone(),
            _open: open,
        };
        follow.refresh(None);
        follow
    }

    async fn next(mut self) -> Option<(Result<Update, Status>, Self)> {
        loop {
            if let Some((update, kind, at)) = self.pending.pop_front() {
                self.metrics.sent(kind, at.map(|at| at.elapsed()));
                return Some((Ok(update), self));
            }
            tokio::select! {
                () = &mut self.shutdown => return None,
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    let at = self.changes.borrow_and_update().at;
                    self.refresh(Some(at));
                }
                _ = self.heartbeat.tick() => {
                    self.pending.push_back((add(Vec::new()), "heartbeat", None));
                }
            }
        }
    }

    /// Queues the difference between what was sent and what is ready now.
    fn refresh(&mut self, at: Option<Instant>) {
        let now = resolve(&self.index.load(), &self.target);
        let gone: Vec<SocketAddr> = self.sent.difference(&now).copied().collect();
        let new: Vec<SocketAddr> = now.difference(&self.sent).copied().collect();
        if !gone.is_empty() {
            let remove = Update {
                update: Some(update::Update::Remove(AddrSet {
                    addrs: gone.into_iter().map(tcp).collect(),
                })),
            };
            self.pending.push_back((remove, "remove", at));
        }
        if !new.is_empty() {
            self.pending.push_back((add(new), "add", at));
        }
        self.sent = now;
    }
}

fn add(addrs: Vec<SocketAddr>) -> Update {
    Update {
        update: Some(update::Update::Add(WeightedAddrSet {
            addrs: addrs
                .into_iter()
                .map(|a| WeightedAddr {
                    addr: Some(tcp(a)),
                    weight: WEIGHT,
                })
                .collect(),
        })),
    }
}

fn tcp(addr: SocketAddr) -> TcpAddress {
    TcpAddress {
        ip: Some(ip_to_proto(addr.ip())),
        port: u32::from(addr.port()),
    }
}
