//! Feeds the [`Index`] from a live Kubernetes API server.
//!
//! One task per resource kind runs a `kube` [`watcher`]: it lists the kind
//! cluster-wide, then watches from the list's resourceVersion. The watcher
//! resumes a dropped watch from the last resourceVersion it saw (advanced by
//! BOOKMARK events), and starts over with a fresh list when the server
//! answers 410 Gone (the version was compacted away) or the stream desyncs.
//! Errors are logged at WARN with the kind (an expiry, routine, at INFO) and
//! retried after a backoff ([`Retry`]); a task ends only when the shutdown
//! signal fires.
//!
//! How watch events reach the index:
//! - A (re-)list is collected whole and applied with one `reset_*` when it
//!   is complete, so readers keep the previous snapshot until then and never
//!   see a half-built list. Objects deleted while a re-list was pending are
//!   simply absent from it, and the reset drops them.
//! - After the first complete list the kind is marked synced
//!   ([`Index::mark_synced`]): that is what `/ready` waits for.
//! - Then each ADDED/MODIFIED applies the object and each DELETED removes it.
//!
//! Endpoints: `discovery.k8s.io/v1` EndpointSlices when the server offers
//! that group version, core `v1` Endpoints otherwise (clusters before 1.21).
//! The choice is made once, when the endpoints task starts, from the
//! server's discovery document ([`endpoints_source`]). Asking for either
//! [`Kind::Endpoints`] or [`Kind::EndpointSlice`] starts that one task, and
//! once it has listed it marks both kinds synced — the source not used holds
//! nothing from the server — so a readiness check may name either.
//!
//! Pod owners: the index resolves Pod → ReplicaSet → Deployment through
//! ownerReferences, at lookup time, so a ReplicaSet that arrives after its
//! pods takes effect as soon as it is applied. Pods owned by anything else
//! (StatefulSet, DaemonSet, Job, a bare ReplicaSet) or by nothing keep their
//! owner in [`PodInfo::owner`](super::PodInfo::owner), but their
//! `*_deployment` metric label stays empty: that label has always meant
//! "the Deployment", and naming a StatefulSet there would mix kinds under one
//! label and change the series an existing dashboard or PromQL query sees.
//! The `source`/`target` pod labels identify such pods fully.
//!
//! Configuration follows `kubectl`: a kubeconfig file's current context
//! (cluster, namespace, user credentials such as a bearer token, the
//! cluster's CA), or, without a file, `$KUBECONFIG` / `~/.kube/config` and
//! then the in-cluster service account ([`client`]).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{Batch, Index, Kind};
use crate::core::Shutdown;

/// The group version serving EndpointSlices.
pub const ENDPOINT_SLICES_API: &str = "discovery.k8s.io/v1";

/// What the watchers need besides the index: where the API server is and
/// how to retry after errors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchConfig {
    /// A kubeconfig file (`-kubeconfig`); `None` infers one (see [`client`]).
    pub kubeconfig: Option<PathBuf>,
    /// How long a watcher waits before retrying after an error.
    pub retry: Retry,
}

impl WatchConfig {
    /// The client for [`Self::kubeconfig`]; see [`client`].
    pub async fn client(&self) -> Result<Client, Error> {
        client(self.kubeconfig.as_deref()).await
    }

    /// Starts one watcher per kind in `kinds`; see [`spawn_watchers`].
    pub fn spawn(
        &self,
        client: Client,
        index: Arc<Index>,
        kinds: &[Kind],
        shutdown: Shutdown,
    ) -> Vec<JoinHandle<()>> {
        let mut sources = BTreeSet::new();
        for kind in kinds {
            sources.insert(Source::of(*kind));
        }
        sources
            .into_iter()
            .map(|source| {
                let ctx = Ctx {
                    client: client.clone(),
                    index: index.clone(),
                    retry: self.retry,
                };
                let span = tracing::info_span!("watch", kind = %source);
                let shutdown = shutdown.clone();
                tokio::spawn(
                    async move {
                        tokio::select! {
                            () = shutdown.signaled() => tracing::debug!("shutting down"),
                            () = source.run(ctx) => {}
                        }
                    }
                    .instrument(span),
                )
            })
            .collect()
    }
}

/// The delay before a watcher retries after an error (the API server is
/// unreachable, refused the request, or the watch failed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Retry {
    /// [`DEFAULT_MIN_DELAY`] doubling up to [`DEFAULT_MAX_DELAY`], with
    /// jitter, back to the minimum after any answer from the server (a
    /// success, or a 410 that asks for a re-list). What production uses.
    #[default]
    Default,
    /// `min`, doubling up to `max`, without jitter; back to `min` after any
    /// success. For tests and tools against a local API server.
    Exponential { min: Duration, max: Duration },
}

/// The first retry's delay: client-go's reflector starts at 0.8 s.
pub const DEFAULT_MIN_DELAY: Duration = Duration::from_millis(800);

/// The longest wait between two tries. client-go (and kube's default) grow
/// to 30 s, so after an outage of a minute the watchers would learn that
/// the API server is back up to 30 s late, and every report meanwhile is
/// enriched from a stale index. Six watches per replica retrying every 3 s
/// are no burden to an API server; a stale mesh view for 30 s is.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(3);

impl Retry {
    fn backoff(self) -> Box<dyn Backoff> {
        match self {
            Retry::Default => Box::new(Doubling {
                min: DEFAULT_MIN_DELAY,
                max: DEFAULT_MAX_DELAY,
                next: DEFAULT_MIN_DELAY,
                jitter: true,
            }),
            Retry::Exponential { min, max } => Box::new(Doubling {
                min,
                max,
                next: min,
                jitter: false,
            }),
        }
    }
}

/// `min` doubling up to `max`; with `jitter`, each delay is up to a quarter
/// longer (never above `max`), so the replicas' watchers do not retry in
/// step.
struct Doubling {
    min: Duration,
    max: Duration,
    next: Duration,
    jitter: bool,
}

impl Iterator for Doubling {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (delay * 2).min(self.max);
        if self.jitter {
            let extra = delay.mul_f64(fastrand::f64() / 4.0);
            return Some((delay + extra).min(self.max));
        }
        Some(delay)
    }
}

impl Backoff for Doubling {
    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Why no client could be built, or the API server refused a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot load kubeconfig {}: {error}", path.display())]
    Kubeconfig {
        path: PathBuf,
        error: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration: {error}")]
    Infer {
        error: kube::config::InferConfigError,
    },
    #[error("cannot build a Kubernetes client: {error}")]
    Client { error: kube::Error },
    /// The server answered, with an error status.
    #[error(
        "the Kubernetes API server refused {request}: {code} {reason}: {message}{hint}",
        hint = refusal_hint(*code)
    )]
    Refused {
        request: String,
        code: u16,
        reason: String,
        message: String,
    },
    /// No answer: the server is unreachable, or TLS failed.
    #[error("cannot reach the Kubernetes API server ({request}): {error}")]
    Unreachable { request: String, error: kube::Error },
}

impl Error {
    fn from_request(request: &str, error: kube::Error) -> Self {
        match error {
            kube::Error::Api(status) => Error::Refused {
                request: request.to_owned(),
                code: status.code,
                reason: status.reason,
                message: status.message,
            },
            error => Error::Unreachable {
                request: request.to_owned(),
                error,
            },
        }
    }
}

fn refusal_hint(code: u16) -> &'static str {
    match code {
        401 => " (check the credentials of the kubeconfig's user or the service account token)",
        403 => " (check the RBAC rules granted to this user or service account)",
        _ => "",
    }
}

/// A client for the API server.
///
/// With `kubeconfig`, that file's current context: its cluster's server
/// and CA, its namespace as the client's default namespace, its user's
/// credentials (bearer token, client certificate, ...), as `kubectl` reads
/// it. Without, `$KUBECONFIG` or `~/.kube/config` if present, else the pod's
/// service account (in-cluster config). Makes no request: a server that is
/// down or refuses the credentials shows in the watchers' logs, or in
/// [`endpoints_source`].
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, Error> {
    let config = match kubeconfig {
        Some(path) => {
            let load = async {
                let file = kube::config::Kubeconfig::read_from(path)?;
                let options = kube::config::KubeConfigOptions::default();
                kube::Config::from_custom_kubeconfig(file, &options).await
            };
            load.await.map_err(|error| Error::Kubeconfig {
                path: path.to_owned(),
                error,
            })?
        }
        None => kube::Config::infer()
            .await
            .map_err(|error| Error::Infer { error })?,
    };
    Client::try_from(config).map_err(|error| Error::Client { error })
}

/// Starts one watcher task per kind in `kinds` (duplicates ignored; both
/// endpoints kinds share one task), retrying with kube's default backoff.
/// Every task runs until `shutdown` fires.
pub fn spawn_watchers(
    client: Client,
    index: Arc<Index>,
    kinds: &[Kind],
    shutdown: Shutdown,
) -> Vec<JoinHandle<()>> {
    WatchConfig::default().spawn(client, index, kinds, shutdown)
}

/// Where the server publishes endpoints: [`Kind::EndpointSlice`] when it
/// serves `discovery.k8s.io/v1` EndpointSlices, [`Kind::Endpoints`]
/// otherwise. Errors when the server cannot be reached or refuses the
/// request (a wrong token: 401), so it doubles as a connectivity check.
pub async fn endpoints_source(client: &Client) -> Result<Kind, Error> {
    let request = format!("GET /apis/{ENDPOINT_SLICES_API}");
    match client.list_api_group_resources(ENDPOINT_SLICES_API).await {
        Ok(list) if list.resources.iter().any(|r| r.name == "endpointslices") => {
            Ok(Kind::EndpointSlice)
        }
        Ok(_) => Ok(Kind::Endpoints),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Kind::Endpoints),
        Err(error) => Err(Error::from_request(&request, error)),
    }
}

/// What one watcher task follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Pods,
    ReplicaSets,
    Deployments,
    Services,
    /// EndpointSlices or Endpoints, whichever the server offers.
    Endpoints,
}

impl Source {
    fn of(kind: Kind) -> Self {
        match kind {
            Kind::Pod => Source::Pods,
            Kind::ReplicaSet => Source::ReplicaSets,
            Kind::Deployment => Source::Deployments,
            Kind::Service => Source::Services,
            Kind::Endpoints | Kind::EndpointSlice => Source::Endpoints,
        }
    }

    async fn run(self, ctx: Ctx) {
        match self {
            Source::Pods => ctx.watch::<Pod>(&[]).await,
            Source::ReplicaSets => ctx.watch::<ReplicaSet>(&[]).await,
            Source::Deployments => ctx.watch::<Deployment>(&[]).await,
            Source::Services => ctx.watch::<Service>(&[]).await,
            Source::Endpoints => match ctx.endpoints_source().await {
                Kind::EndpointSlice => ctx.watch::<EndpointSlice>(&[Kind::Endpoints]).await,
                _ => ctx.watch::<Endpoints>(&[Kind::EndpointSlice]).await,
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Pods => "Pod",
            Source::ReplicaSets => "ReplicaSet",
            Source::Deployments => "Deployment",
            Source::Services => "Service",
            Source::Endpoints => "Endpoints",
        })
    }
}

/// What every watcher task shares.
struct Ctx {
    client: Client,
    index: Arc<Index>,
    retry: Retry,
}

impl Ctx {
    /// [`endpoints_source`], retried until the server answers.
    async fn endpoints_source(&self) -> Kind {
        let mut backoff = self.retry.backoff();
        loop {
            match endpoints_source(&self.client).await {
                Ok(kind) => {
                    tracing::info!(source = %kind, "chose the endpoints source");
                    return kind;
                }
                Err(error) => {
                    let delay = backoff.next().unwrap_or(Duration::from_secs(1));
                    tracing::warn!(
                        kind = %Kind::Endpoints,
                        %error,
                        retry_in = ?delay,
                        "cannot discover the endpoints API",
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Lists and watches `K` cluster-wide into the index, forever. Once the
    /// first list is applied, marks `K` synced, and `also_synced` with it.
    async fn watch<K: Indexed>(&self, also_synced: &[Kind]) {
        let api: Api<K> = Api::all(self.client.clone());
        // Retried here rather than by kube's `StreamBackoff`: that one
        // backs off on every error before the caller sees it, a 410 Gone
        // included, so the re-list a 410 asks for would wait out a backoff
        // grown during an outage. Here a 410, like any success, resets it.
        let mut backoff = self.retry.backoff();
        let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
        // The (re-)list being collected, from `Init` to `InitDone`.
        let mut listing: Vec<K> = Vec::new();
        let mut changes: Vec<Change<K>> = Vec::new();
        while let Some(first) = events.next().await {
            // Events that have already arrived are applied together, as one
            // published snapshot: a burst (a rollout) then costs readers one
            // snapshot switch instead of one per event. Order is kept.
            let mut ready = vec![first];
            // An error ends the batch: the next poll would be the retry.
            while ready.len() < MAX_COALESCED && ready.last().is_some_and(|e| e.is_ok()) {
                match events.next().now_or_never() {
                    Some(Some(event)) => ready.push(event),
                    _ => break,
                }
            }
            let mut failed = false;
            for event in ready {
                failed = matches!(&event, Err(e) if !is_gone(e));
                if !failed {
                    backoff.reset();
                }
                match event {
                    Ok(Event::Apply(obj)) => changes.push(Change::Apply(slim(obj))),
                    Ok(Event::Delete(obj)) => changes.push(Change::Delete(obj)),
                    other => {
                        self.apply_changes(&mut changes);
                        self.handle(other, &mut listing, also_synced);
                    }
                }
            }
            self.apply_changes(&mut changes);
            if failed {
                let delay = backoff.next().unwrap_or(DEFAULT_MAX_DELAY);
                tracing::debug!(kind = %K::INDEX_KIND, retry_in = ?delay, "backing off");
                tokio::time::sleep(delay).await;
            }
        }
        // The backoffs never give up, so the stream never ends.
        tracing::error!("watch stream ended; this kind is no longer updated");
    }

    /// Applies the pending changes as one batch (one published snapshot).
    fn apply_changes<K: Indexed>(&self, changes: &mut Vec<Change<K>>) {
        if changes.is_empty() {
            return;
        }
        self.index.batch(|b| {
            for change in changes.drain(..) {
                match change {
                    Change::Apply(obj) => K::apply(b, obj),
                    Change::Delete(obj) => K::delete(b, &obj),
                }
            }
        });
    }

    /// Every event but a change: the list protocol and errors.
    fn handle<K: Indexed>(
        &self,
        event: Result<Event<K>, watcher::Error>,
        listing: &mut Vec<K>,
        also_synced: &[Kind],
    ) {
        match event {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(obj)) => listing.push(slim(obj)),
            Ok(Event::InitDone) => {
                let objects = std::mem::take(listing);
                let count = objects.len();
                self.index.batch(|b| K::reset(b, objects));
                for kind in std::iter::once(K::INDEX_KIND).chain(also_synced.iter().copied()) {
                    self.index.mark_synced(kind);
                }
                tracing::info!(kind = %K::INDEX_KIND, objects = count, "listed");
            }
            Ok(Event::Apply(obj)) => self.index.batch(|b| K::apply(b, slim(obj))),
            Ok(Event::Delete(obj)) => self.index.batch(|b| K::delete(b, &obj)),
            // The watcher recovers on its next poll: it re-lists after a
            // 410 at once, and otherwise, after the backoff, watches again
            // from the last version seen.
            Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                tracing::info!(
                    kind = %K::INDEX_KIND,
                    detail = %status.message,
                    "watch expired; re-listing",
                );
            }
            Err(error) => {
                tracing::warn!(kind = %K::INDEX_KIND, %error, "watch failed; retrying");
            }
        }
    }
}

/// A 410 Gone: the server answered, and the watch must re-list.
fn is_gone(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::WatchError(status) if status.code == 410)
}

/// Most watch events applied as one batch: bounds how long a burst keeps
/// the writer from publishing what it has.
const MAX_COALESCED: usize = 256;

/// One watch event that changes an object, waiting to be applied.
enum Change<K> {
    Apply(K),
    Delete(K),
}

/// Drops `metadata.managedFields`: nothing reads them, and they are often
/// the larger half of an object held during a re-list.
fn slim<K: kube::Resource>(mut obj: K) -> K {
    obj.meta_mut().managed_fields = None;
    obj
}

/// A kind the watchers feed into the index.
trait Indexed:
    kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static
{
    const INDEX_KIND: Kind;
    fn apply(batch: &mut Batch<'_>, obj: Self);
    fn delete(batch: &mut Batch<'_>, obj: &Self);
    fn reset(batch: &mut Batch<'_>, objects: Vec<Self>);
}

macro_rules! indexed {
    ($ty:ty, $kind:expr, $apply:ident, $delete:ident, $reset:ident) => {
        impl Indexed for $ty {
            const INDEX_KIND: Kind = $kind;
            fn apply(batch: &mut Batch<'_>, obj: Self) {
                batch.$apply(obj)
            }
            fn delete(batch: &mut Batch<'_>, obj: &Self) {
                batch.$delete(obj)
            }
            fn reset(batch: &mut Batch<'_>, objects: Vec<Self>) {
                batch.$reset(objects)
            }
        }
    };
}

indexed!(Pod, Kind::Pod, apply_pod, delete_pod, reset_pods);
indexed!(
    ReplicaSet,
    Kind::ReplicaSet,
    apply_replica_set,
    delete_replica_set,
    reset_replica_sets
);
indexed!(
    Deployment,
    Kind::Deployment,
    apply_deployment,
    delete_deployment,
    reset_deployments
);
indexed!(
    Service,
    Kind::Service,
    apply_service,
    delete_service,
    reset_services
);
indexed!(
    Endpoints,
    Kind::Endpoints,
    apply_endpoints,
    delete_endpoints,
    reset_endpoints
);
indexed!(
    EndpointSlice,
    Kind::EndpointSlice,
    apply_endpoint_slice,
    delete_endpoint_slice,
    reset_endpoint_slices
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_one_task_per_source() {
        let sources: BTreeSet<Source> = Kind::ALL.into_iter().map(Source::of).collect();
        assert_eq!(
            sources.into_iter().collect::<Vec<_>>(),
            [
                Source::Pods,
                Source::ReplicaSets,
                Source::Deployments,
                Source::Services,
                Source::Endpoints
            ]
        );
    }

    #[test]
    fn doubling_backoff_is_capped_and_resets() {
        let min = Duration::from_millis(10);
        let mut backoff = Retry::Exponential {
            min,
            max: Duration::from_millis(35),
        }
        .backoff();
        let delays: Vec<u64> = (0..4)
            .map(|_| backoff.next().expect("never gives up").as_millis() as u64)
            .collect();
        assert_eq!(delays, [10, 20, 35, 35]);
        backoff.reset();
        assert_eq!(backoff.next(), Some(min));
    }

    #[test]
    fn the_default_backoff_never_waits_more_than_its_maximum() {
        let mut backoff = Retry::Default.backoff();
        let delays: Vec<Duration> = (0..50).map(|_| backoff.next().unwrap()).collect();
        assert!(delays[0] >= DEFAULT_MIN_DELAY && delays[0] <= DEFAULT_MIN_DELAY * 5 / 4);
        assert!(delays.iter().all(|d| *d <= DEFAULT_MAX_DELAY), "{delays:?}");
        assert_eq!(delays[49], DEFAULT_MAX_DELAY);
        backoff.reset();
        assert!(backoff.next().unwrap() <= DEFAULT_MIN_DELAY * 5 / 4);
    }

    #[test]
    fn refusals_say_what_to_check() {
        let error = Error::from_request(
            "GET /apis/discovery.k8s.io/v1",
            kube::Error::Api(
                kube::core::Status::failure("Unauthorized", "Unauthorized")
                    .with_code(401)
                    .boxed(),
            ),
        );
        assert_eq!(
            error.to_string(),
            "the Kubernetes API server refused GET /apis/discovery.k8s.io/v1: 401 Unauthorized: \
             Unauthorized (check the credentials of the kubeconfig's user or the service \
             account token)"
        );
    }
}
