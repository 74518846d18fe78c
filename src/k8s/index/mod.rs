//! The cluster-metadata index: Pods, ReplicaSets, Deployments, Services,
//! Endpoints and EndpointSlices, as one immutable [`Snapshot`] behind an
//! [`ArcSwap`].
//!
//! Readers call [`Index::snapshot`] once (per report, per request) and do any
//! number of lookups on it without ever waiting on a writer. Writers — one
//! task per resource kind once kube watchers feed the index, or the static
//! cluster file — are serialised by a mutex held only for a synchronous
//! update: clone the current snapshot (O(1): the maps are persistent `imbl`
//! maps), apply the change (O(log n)), store the new snapshot.
//!
//! Labels used on the hot path (`"namespace/pod"`, `"namespace/deployment"`)
//! are built when an object is applied, so [`Snapshot::workload_ref_by_ip`]
//! allocates nothing: one hash lookup by IP, one by ReplicaSet.
//!
//! This file holds the [`Index`], its [`Snapshot`] and [`Batch`], and what
//! every kind shares (keys, names, the malformed-object policy). Each kind
//! adds its lookups to `Snapshot` and its `apply`/`delete`/`reset` to
//! `Index` and `Batch` in its own file, beside its tests: `pod.rs` (with the
//! IP claims), `deployment.rs` (ReplicaSets and Deployments), `service.rs`,
//! `endpoints.rs` (Endpoints and EndpointSlices).

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use arc_swap::ArcSwap;
use imbl::shared_ptr::DefaultSharedPtr;
use imbl::{GenericHashMap, OrdMap};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::{Metadata, Resource};
use parking_lot::Mutex;

mod deployment;
mod endpoints;
mod pod;
mod service;

#[cfg(test)]
#[path = "../../../tests/support/k8s.rs"]
mod fixtures;

use pod::Claimants;
pub use pod::{OwnerRef, PodInfo, Workload, WorkloadRef};

/// Pod label naming the plane a pod belongs to (`control` for the controller's own pods).
pub const PLANE_LABEL: &str = "conduit.io/plane";
/// Pod label naming the namespace of the controller that injected the pod's proxy.
pub const CONTROLLER_LABEL: &str = "conduit.io/controller";
/// EndpointSlice label naming the Service the slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Namespace assumed for an object that names none (what `kubectl apply` does).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Hash maps on the hot path: foldhash is several times faster than SipHash
/// on IP and short-string keys; the keys come from the cluster, not from
/// the reports that look them up.
type FastMap<K, V> = GenericHashMap<K, V, foldhash::fast::RandomState, DefaultSharedPtr>;

/// A `"namespace/name"` key carrying its own hash, computed once when the
/// object is applied: the pod → ReplicaSet lookup on the hot path then
/// hashes a `u64` instead of the string.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HashedKey {
    hash: u64,
    key: Arc<str>,
}

impl HashedKey {
    fn new(key: impl Into<Arc<str>>) -> Self {
        let key = key.into();
        HashedKey {
            hash: foldhash::fast::FixedState::default().hash_one(&*key),
            key,
        }
    }
}

impl Hash for HashedKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The resource kinds the index holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Pod,
    ReplicaSet,
    Deployment,
    Service,
    Endpoints,
    EndpointSlice,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Pod,
        Kind::ReplicaSet,
        Kind::Deployment,
        Kind::Service,
        Kind::Endpoints,
        Kind::EndpointSlice,
    ];

    /// The Kubernetes `kind` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pod => Pod::KIND,
            Kind::ReplicaSet => ReplicaSet::KIND,
            Kind::Deployment => Deployment::KIND,
            Kind::Service => Service::KIND,
            Kind::Endpoints => Endpoints::KIND,
            Kind::EndpointSlice => EndpointSlice::KIND,
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an object was not indexed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidObject {
    #[error("metadata.name is missing or empty")]
    MissingName,
    #[error("{field} is not an IP address: {value:?}")]
    InvalidIp { field: &'static str, value: String },
}

/// One consistent view of the cluster. Cheap to clone; never changes once
/// published.
#[derive(Clone, Default)]
pub struct Snapshot {
    /// `"ns/name"` → pod.
    pods: OrdMap<Arc<str>, Arc<PodInfo>>,
    /// IP → the live pods claiming it.
    ip_claims: FastMap<IpAddr, Claimants>,
    /// `"ns/name"` → `"ns/deployment"` of its Deployment owner, if any.
    replica_sets: FastMap<HashedKey, Option<Arc<str>>>,
    deployments: OrdMap<Arc<str>, Arc<Deployment>>,
    services: OrdMap<Arc<str>, Arc<Service>>,
    endpoints: OrdMap<Arc<str>, Arc<Endpoints>>,
    /// `"ns/service"` → slice name → slice.
    slices_by_service: OrdMap<Arc<str>, OrdMap<Arc<str>, Arc<EndpointSlice>>>,
    /// `"ns/slice"` → `"ns/service"`, to find a slice's group when it is
    /// deleted or relabelled.
    slice_service: FastMap<Arc<str>, Arc<str>>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("pods", &self.pods.len())
            .field("ips", &self.ip_claims.len())
            .field("replica_sets", &self.replica_sets.len())
            .field("deployments", &self.deployments.len())
            .field("services", &self.services.len())
            .field("endpoints", &self.endpoints.len())
            .field("endpoint_slices", &self.slice_service.len())
            .finish()
    }
}

/// Replaced snapshots still held by a reader. Freeing a snapshot frees the
/// map nodes it alone had, and whoever drops the last reference pays for
/// it. Left to chance that is often a reader (the ingester, between two
/// reports), which a benchmark showed costing it more than the writes
/// themselves. So the writer keeps them and frees each once no reader
/// holds it, at a later write.
#[derive(Default)]
struct Retired(Vec<Arc<Snapshot>>);

impl Retired {
    fn retire(&mut self, old: Arc<Snapshot>) {
        // Only this list holds those at count 1: no reader can reach them
        // any more (they left the ArcSwap, whose swap paid every reader's
        // debt with a real reference before returning).
        self.0.retain(|s| Arc::strong_count(s) > 1);
        if Arc::strong_count(&old) > 1 {
            self.0.push(old);
        }
    }
}

/// The cluster metadata, shared by every component that reads it.
pub struct Index {
    current: ArcSwap<Snapshot>,
    /// Serialises writers; held only for a synchronous update. Holds the
    /// replaced snapshots some reader still had when they were replaced.
    writer: Mutex<Retired>,
    /// One bit per [`Kind`] whose initial list has been applied.
    synced: AtomicU8,
    /// Bumped after every published snapshot, for readers that follow
    /// changes (destination streams) instead of polling.
    published: tokio::sync::watch::Sender<Published>,
}

/// The last publication: a generation counter and when it was stored.
#[derive(Clone, Copy, Debug)]
pub struct Published {
    pub generation: u64,
    pub at: std::time::Instant,
}

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let synced: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| self.is_synced(&[*k]))
            .collect();
        f.debug_struct("Index")
            .field("current", &**self.current.load())
            .field("synced", &synced)
            .finish()
    }
}

impl Index {
    pub fn new() -> Self {
        Index {
            current: ArcSwap::from_pointee(Snapshot::default()),
            writer: Mutex::new(Retired::default()),
            synced: AtomicU8::new(0),
            published: tokio::sync::watch::Sender::new(Published {
                generation: 0,
                at: std::time::Instant::now(),
            }),
        }
    }

    /// A receiver that sees every snapshot published after this call
    /// (intermediate ones may be coalesced; the latest is always seen).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Published> {
        self.published.subscribe()
    }

    /// The current snapshot. Take it once per unit of work (a report, a
    /// request) and do every lookup on it.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The current snapshot without taking a reference count, for short
    /// reads on hot paths. Do not keep the guard for long.
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Applies several changes as one: readers see all of them or none.
    pub fn batch<R>(&self, f: impl FnOnce(&mut Batch<'_>) -> R) -> R {
        let mut retired = self.writer.lock();
        let mut next = Snapshot::clone(&self.current.load());
        let result = f(&mut Batch {
            snapshot: &mut next,
        });
        let old = self.current.swap(Arc::new(next));
        retired.retire(old);
        self.published.send_modify(|p| {
            p.generation += 1;
            p.at = std::time::Instant::now();
        });
        result
    }

    /// Records that the initial list of `kind` has been applied.
    pub fn mark_synced(&self, kind: Kind) {
        self.synced.fetch_or(kind.bit(), Ordering::Release);
    }

    /// Whether the initial lists of all `kinds` have been applied.
    pub fn is_synced(&self, kinds: &[Kind]) -> bool {
        let synced = self.synced.load(Ordering::Acquire);
        kinds.iter().all(|k| synced & k.bit() != 0)
    }

    /// Deletes by name, for callers that no longer have the object.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) {
        self.batch(|b| b.delete(kind, namespace, name))
    }
}

/// Changes being made to the next snapshot, inside [`Index::batch`].
pub struct Batch<'a> {
    snapshot: &'a mut Snapshot,
}

impl Batch<'_> {
    /// Deletes by name, for callers that no longer have the object.
    pub fn delete(&mut self, kind: Kind, namespace: &str, name: &str) {
        let key = object_key(namespace, name);
        let key = key.as_str();
        match kind {
            Kind::Pod => self.remove_pod(key),
            Kind::ReplicaSet => drop(self.snapshot.replica_sets.remove(&HashedKey::new(key))),
            Kind::Deployment => drop(self.snapshot.deployments.remove(key)),
            Kind::Service => drop(self.snapshot.services.remove(key)),
            Kind::Endpoints => drop(self.snapshot.endpoints.remove(key)),
            Kind::EndpointSlice => self.remove_endpoint_slice(key),
        }
    }
}

fn object_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Longest key a Kubernetes object can have: a 63-byte namespace, `/`, a
/// 253-byte name.
const MAX_OBJECT_KEY_BYTES: usize = 63 + 1 + 253;

/// Runs `f` on the key `"namespace/name"` written into a buffer kept per
/// thread: a lookup (one per report, for the reporting pod) allocates
/// nothing. Names a report makes up longer than any object's are looked up
/// in a key of their own, so the buffer never holds more than
/// [`MAX_OBJECT_KEY_BYTES`].
fn with_object_key<R>(namespace: &str, name: &str, f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    if namespace.len() + 1 + name.len() > MAX_OBJECT_KEY_BYTES {
        return f(&object_key(namespace, name));
    }
    KEY.with_borrow_mut(|key| {
        key.clear();
        key.push_str(namespace);
        key.push('/');
        key.push_str(name);
        f(key)
    })
}

fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
}

/// An object's namespace (defaulted) and name, and its `"namespace/name"` key.
pub(super) struct Names {
    namespace: Arc<str>,
    name: Arc<str>,
    key: Arc<str>,
}

pub(super) fn names(meta: &ObjectMeta) -> Result<Names, InvalidObject> {
    let name = meta
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or(InvalidObject::MissingName)?;
    let namespace = namespace_of(meta);
    Ok(Names {
        namespace: namespace.into(),
        name: name.into(),
        key: object_key(namespace, name).into(),
    })
}

fn key_or_warn<T>(obj: &T) -> Option<Arc<str>>
where
    T: Resource + Metadata<Ty = ObjectMeta>,
{
    match names(obj.metadata()) {
        Ok(names) => Some(names.key),
        Err(error) => {
            skip_malformed(obj, &error);
            None
        }
    }
}

fn skip_malformed<T>(obj: &T, error: &InvalidObject)
where
    T: Resource + Metadata<Ty = ObjectMeta>,
{
    let meta = obj.metadata();
    tracing::warn!(
        kind = T::KIND,
        namespace = meta.namespace.as_deref().unwrap_or_default(),
        name = meta.name.as_deref().unwrap_or_default(),
        %error,
        "skipping malformed object",
    );
}

/// The controller reference among those `accept`ed, else the first of them.
fn pick_owner(
    refs: Option<&[OwnerReference]>,
    accept: impl Fn(&OwnerReference) -> bool,
) -> Option<&OwnerReference> {
    let refs = refs.unwrap_or_default();
    refs.iter()
        .find(|o| o.controller == Some(true) && accept(o))
        .or_else(|| refs.iter().find(|o| accept(o)))
}

fn apply_object<T>(map: &mut OrdMap<Arc<str>, Arc<T>>, obj: T)
where
    T: Resource + Metadata<Ty = ObjectMeta>,
{
    if let Some(key) = key_or_warn(&obj) {
        map.insert(key, Arc::new(obj));
    }
}

fn delete_object<T>(map: &mut OrdMap<Arc<str>, Arc<T>>, obj: &T)
where
    T: Resource + Metadata<Ty = ObjectMeta>,
{
    if let Some(key) = key_or_warn(obj) {
        map.remove(&key);
    }
}

fn object_map<T>(objects: impl IntoIterator<Item = T>) -> OrdMap<Arc<str>, Arc<T>>
where
    T: Resource + Metadata<Ty = ObjectMeta>,
{
    objects
        .into_iter()
        .filter_map(|obj| Some((key_or_warn(&obj)?, Arc::new(obj))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    pub(super) fn ip(s: &str) -> IpAddr {
        s.parse().expect("test IPs are valid")
    }

    pub(super) fn workload(pod: &str, deployment: Option<&str>) -> Option<Workload> {
        Some(Workload {
            pod: pod.into(),
            deployment: deployment.map(Into::into),
        })
    }

    /// The pod name owning `addr` in the current snapshot.
    pub(super) fn owner(index: &Index, addr: &str) -> Option<String> {
        index
            .snapshot()
            .workload_by_ip(&ip(addr))
            .map(|w| w.pod.to_string())
    }

    #[test]
    fn every_write_is_published_to_subscribers() {
        let index = Index::new();
        let mut changes = index.subscribe();
        assert!(!changes.has_changed().unwrap());
        index.apply_pod(mk_pod("ns", "a", "192.0.2.1", None));
        assert!(changes.has_changed().unwrap());
        assert_eq!(changes.borrow_and_update().generation, 1);
        index.batch(|b| {
            b.apply_pod(mk_pod("ns", "b", "192.0.2.2", None));
            b.apply_pod(mk_pod("ns", "c", "192.0.2.3", None));
        });
        assert_eq!(
            changes.borrow_and_update().generation,
            2,
            "a batch is one publication"
        );
    }

    #[test]
    fn replaced_snapshots_are_freed_by_the_writer_not_a_reader() {
        let index = Index::new();
        let held = index.snapshot();
        index.apply_pod(mk_pod("shop", "web-1", "192.0.2.1", None));
        assert_eq!(Arc::strong_count(&held), 2, "kept by the writer too");
        // The reader lets go: not the last reference, so it frees nothing.
        drop(held);
        index.apply_pod(mk_pod("shop", "web-2", "192.0.2.2", None));
        assert!(index.writer.lock().0.is_empty(), "freed at the next write");
        // A snapshot nobody held is freed at once.
        index.apply_pod(mk_pod("shop", "web-3", "192.0.2.3", None));
        assert!(index.writer.lock().0.is_empty());
    }

    #[test]
    fn reset_replaces_everything_of_its_kind() {
        let index = Index::new();
        index.apply_pod(mk_pod("ns", "gone", "192.0.2.80", Some("rs-a")));
        index.apply_pod(mk_pod("ns", "stays", "192.0.2.81", Some("rs-a")));
        index.apply_replica_set(mk_replica_set("ns", "rs-a", Some("a")));
        index.apply_service(mk_service("ns", "old-svc"));

        index.reset_pods(vec![
            mk_pod("ns", "stays", "192.0.2.81", Some("rs-b")),
            mk_pod("ns", "fresh", "192.0.2.82", Some("rs-b")),
        ]);
        index.reset_replica_sets(vec![mk_replica_set("ns", "rs-b", Some("b"))]);
        index.reset_services(vec![mk_service("ns", "new-svc")]);

        let snap = index.snapshot();
        let names: Vec<&str> = snap.pods().map(|p| &*p.name).collect();
        assert_eq!(names, ["fresh", "stays"]);
        assert_eq!(snap.workload_by_ip(&ip("192.0.2.80")), None);
        assert_eq!(
            snap.workload_by_ip(&ip("192.0.2.81")),
            workload("ns/stays", Some("ns/b"))
        );
        assert!(!snap.has_replica_set("ns", "rs-a"));
        assert!(snap.service("ns", "old-svc").is_none());
        assert!(snap.service("ns", "new-svc").is_some());
    }

    #[test]
    fn snapshot_taken_before_an_update_is_unchanged_by_it() {
        let index = Index::new();
        index.apply_replica_set(mk_replica_set("ns", "rs", Some("web")));
        index.apply_pod(mk_pod("ns", "web-1", "192.0.2.90", Some("rs")));
        let before = index.snapshot();

        index.batch(|b| {
            b.delete_replica_set(&mk_replica_set("ns", "rs", None));
            b.apply_pod(mk_pod("ns", "web-2", "192.0.2.90", None));
            b.apply_pod(mk_pod("ns", "web-3", "192.0.2.91", None));
        });

        assert_eq!(
            before.workload_by_ip(&ip("192.0.2.90")),
            workload("ns/web-1", Some("ns/web"))
        );
        assert_eq!(before.workload_by_ip(&ip("192.0.2.91")), None);
        assert_eq!(before.pod_count(), 1);

        let after = index.snapshot();
        assert_eq!(
            after.workload_by_ip(&ip("192.0.2.90")),
            workload("ns/web-2", None)
        );
        assert_eq!(after.pod_count(), 3);
    }

    #[test]
    fn ready_once_the_kinds_used_are_synced() {
        let index = Index::new();
        assert!(index.is_synced(&[]));
        assert!(!index.is_synced(&[Kind::Pod]));
        index.mark_synced(Kind::Pod);
        assert!(index.is_synced(&[Kind::Pod]));
        assert!(!index.is_synced(&[Kind::Pod, Kind::ReplicaSet]));
        index.mark_synced(Kind::ReplicaSet);
        assert!(index.is_synced(&[Kind::Pod, Kind::ReplicaSet]));
        assert!(!index.is_synced(&Kind::ALL));
    }
}
