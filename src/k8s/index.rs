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

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::ops::Bound;
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

#[cfg(test)]
#[path = "../../tests/support/k8s.rs"]
mod fixtures;

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

/// The pods claiming one IP, oldest claim first; the last one owns the IP.
/// A slice of `Arc`s so that cloning a map node stays cheap.
type Claimants = Arc<[Arc<PodInfo>]>;

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

/// An object's owner, as named by one of its ownerReferences.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
}

/// What the index keeps of a Pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    /// `"namespace/name"`: the `source`/`target` metric label, and the index key.
    pub label: Arc<str>,
    /// status.podIP and status.podIPs, deduplicated, in that order.
    pub ips: Vec<IpAddr>,
    /// status.phase: `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown` (when absent).
    pub phase: String,
    /// metadata.deletionTimestamp is set.
    pub terminating: bool,
    /// The controller ownerReference, else the first one.
    pub owner: Option<OwnerRef>,
    /// spec.hostNetwork: the pod's IP is its node's, shared with every other
    /// such pod on the node, so the pod never owns it.
    pub host_network: bool,
    /// Label `conduit.io/plane` is `control`.
    pub control_plane: bool,
    /// Value of label `conduit.io/controller`, `""` if absent.
    pub controller_namespace: String,
    /// `"namespace/replicaset"` when the owner is a ReplicaSet: the key of
    /// the pod → deployment lookup, built once here.
    replica_set_key: Option<HashedKey>,
}

impl PodInfo {
    pub fn from_pod(pod: &Pod) -> Result<Self, InvalidObject> {
        let Names {
            namespace,
            name,
            key: label,
        } = names(&pod.metadata)?;
        let status = pod.status.as_ref();

        let mut ips = Vec::new();
        let pod_ip = status.and_then(|s| s.pod_ip.as_deref());
        let pod_ips = status
            .and_then(|s| s.pod_ips.as_deref())
            .unwrap_or_default()
            .iter()
            .map(|p| p.ip.as_str());
        let candidates = pod_ip
            .map(|ip| ("status.podIP", ip))
            .into_iter()
            .chain(pod_ips.map(|ip| ("status.podIPs", ip)));
        for (field, value) in candidates {
            // An empty string is how some clients spell "not assigned yet".
            if value.is_empty() {
                continue;
            }
            let ip: IpAddr = value.parse().map_err(|_| InvalidObject::InvalidIp {
                field,
                value: value.to_owned(),
            })?;
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }

        let owner =
            pick_owner(pod.metadata.owner_references.as_deref(), |_| true).map(|o| OwnerRef {
                kind: o.kind.clone(),
                name: o.name.clone(),
            });
        let replica_set_key = owner
            .as_ref()
            .filter(|o| o.kind == ReplicaSet::KIND)
            .map(|o| HashedKey::new(format!("{namespace}/{}", o.name)));
        let labels = pod.metadata.labels.as_ref();
        let label_value = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);

        Ok(PodInfo {
            ips,
            phase: status
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Unknown".to_owned()),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            owner,
            host_network: pod
                .spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false),
            control_plane: label_value(PLANE_LABEL) == Some("control"),
            controller_namespace: label_value(CONTROLLER_LABEL).unwrap_or_default().to_owned(),
            replica_set_key,
            namespace,
            name,
            label,
        })
    }

    /// Whether the pod may own its IPs: pods that have finished (Succeeded,
    /// Failed) have had their IPs handed to other pods already.
    pub fn is_live(&self) -> bool {
        !matches!(self.phase.as_str(), "Succeeded" | "Failed")
    }

    /// The status ListPods shows: the phase, or `Terminating` once deletion started.
    pub fn status(&self) -> &str {
        if self.terminating {
            "Terminating"
        } else {
            &self.phase
        }
    }

    /// The IPs this pod claims ownership of.
    fn claimed_ips(&self) -> &[IpAddr] {
        if self.is_live() && !self.host_network {
            &self.ips
        } else {
            &[]
        }
    }
}

/// The workload owning an IP, as metric label values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Workload {
    /// `"namespace/pod"`.
    pub pod: Arc<str>,
    /// `"namespace/deployment"`, when the pod's ReplicaSet belongs to a Deployment.
    pub deployment: Option<Arc<str>>,
}

/// [`Workload`] borrowed from a snapshot: what the hot path uses, since it
/// does not even touch the reference counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WorkloadRef<'a> {
    pub pod: &'a Arc<str>,
    pub deployment: Option<&'a Arc<str>>,
}

impl WorkloadRef<'_> {
    pub fn to_owned(self) -> Workload {
        Workload {
            pod: self.pod.clone(),
            deployment: self.deployment.cloned(),
        }
    }
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

impl Snapshot {
    /// The pod owning `ip` and its deployment, without allocating or
    /// touching reference counts. The hot path of the telemetry ingester.
    #[inline]
    pub fn workload_ref_by_ip(&self, ip: &IpAddr) -> Option<WorkloadRef<'_>> {
        let pod = self.pod_by_ip(ip)?;
        Some(WorkloadRef {
            pod: &pod.label,
            deployment: self.deployment_label(pod),
        })
    }

    /// The labels of a known pod (for the reporting side of a report),
    /// without allocating.
    #[inline]
    pub fn workload_ref_of<'a>(&'a self, pod: &'a PodInfo) -> WorkloadRef<'a> {
        WorkloadRef {
            pod: &pod.label,
            deployment: self.deployment_label(pod),
        }
    }

    /// [`Self::workload_ref_by_ip`], owned.
    pub fn workload_by_ip(&self, ip: &IpAddr) -> Option<Workload> {
        self.workload_ref_by_ip(ip).map(WorkloadRef::to_owned)
    }

    /// The live pod owning `ip`: the most recent live claimant.
    #[inline]
    pub fn pod_by_ip(&self, ip: &IpAddr) -> Option<&Arc<PodInfo>> {
        self.ip_claims.get(ip)?.last()
    }

    /// `"namespace/deployment"` of the pod, through its ReplicaSet's owner.
    pub fn deployment_of(&self, pod: &PodInfo) -> Option<Arc<str>> {
        self.deployment_label(pod).cloned()
    }

    #[inline]
    fn deployment_label(&self, pod: &PodInfo) -> Option<&Arc<str>> {
        let rs = pod.replica_set_key.as_ref()?;
        self.replica_sets.get(rs)?.as_ref()
    }

    /// All pods, ordered by `"namespace/name"`.
    pub fn pods(&self) -> impl Iterator<Item = &Arc<PodInfo>> {
        self.pods.values()
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Arc<PodInfo>> {
        self.pods.get(object_key(namespace, name).as_str())
    }

    /// Pods of one namespace, ordered by name.
    pub fn pods_in_namespace<'a>(
        &'a self,
        namespace: &str,
    ) -> impl Iterator<Item = &'a Arc<PodInfo>> + 'a {
        let prefix = format!("{namespace}/");
        // Keys sharing a prefix are contiguous in key order.
        let start = (Bound::Included(prefix.as_str()), Bound::Unbounded);
        self.pods
            .range::<_, str>(start)
            .take_while(move |(k, _)| k.starts_with(prefix.as_str()))
            .map(|(_, pod)| pod)
    }

    /// Pods whose ReplicaSet belongs to Deployment `namespace/name`, ordered by name.
    pub fn pods_of_deployment(&self, namespace: &str, name: &str) -> Vec<Arc<PodInfo>> {
        let deployment = object_key(namespace, name);
        self.pods_in_namespace(namespace)
            .filter(|pod| {
                self.deployment_label(pod)
                    .is_some_and(|d| **d == *deployment)
            })
            .cloned()
            .collect()
    }

    pub fn deployment(&self, namespace: &str, name: &str) -> Option<&Arc<Deployment>> {
        self.deployments.get(object_key(namespace, name).as_str())
    }

    /// All Deployments, ordered by `"namespace/name"`.
    pub fn deployments(&self) -> impl Iterator<Item = &Arc<Deployment>> {
        self.deployments.values()
    }

    /// Whether ReplicaSet `namespace/name` is known.
    pub fn has_replica_set(&self, namespace: &str, name: &str) -> bool {
        self.replica_sets
            .contains_key(&HashedKey::new(object_key(namespace, name)))
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&Arc<Service>> {
        self.services.get(object_key(namespace, name).as_str())
    }

    /// All Services, ordered by `"namespace/name"`.
    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.values()
    }

    pub fn endpoints(&self, namespace: &str, name: &str) -> Option<&Arc<Endpoints>> {
        self.endpoints.get(object_key(namespace, name).as_str())
    }

    /// The EndpointSlices labelled with Service `namespace/name`, ordered by slice name.
    pub fn endpoint_slices_of_service(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Iterator<Item = &Arc<EndpointSlice>> {
        self.slices_by_service
            .get(object_key(namespace, name).as_str())
            .into_iter()
            .flat_map(|slices| slices.values())
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

    pub fn apply_pod(&self, pod: Pod) {
        self.batch(|b| b.apply_pod(pod))
    }
    pub fn delete_pod(&self, pod: &Pod) {
        self.batch(|b| b.delete_pod(pod))
    }
    pub fn reset_pods(&self, pods: impl IntoIterator<Item = Pod>) {
        self.batch(|b| b.reset_pods(pods))
    }

    pub fn apply_replica_set(&self, rs: ReplicaSet) {
        self.batch(|b| b.apply_replica_set(rs))
    }
    pub fn delete_replica_set(&self, rs: &ReplicaSet) {
        self.batch(|b| b.delete_replica_set(rs))
    }
    pub fn reset_replica_sets(&self, replica_sets: impl IntoIterator<Item = ReplicaSet>) {
        self.batch(|b| b.reset_replica_sets(replica_sets))
    }

    pub fn apply_deployment(&self, deployment: Deployment) {
        self.batch(|b| b.apply_deployment(deployment))
    }
    pub fn delete_deployment(&self, deployment: &Deployment) {
        self.batch(|b| b.delete_deployment(deployment))
    }
    pub fn reset_deployments(&self, deployments: impl IntoIterator<Item = Deployment>) {
        self.batch(|b| b.reset_deployments(deployments))
    }

    pub fn apply_service(&self, service: Service) {
        self.batch(|b| b.apply_service(service))
    }
    pub fn delete_service(&self, service: &Service) {
        self.batch(|b| b.delete_service(service))
    }
    pub fn reset_services(&self, services: impl IntoIterator<Item = Service>) {
        self.batch(|b| b.reset_services(services))
    }

    pub fn apply_endpoints(&self, endpoints: Endpoints) {
        self.batch(|b| b.apply_endpoints(endpoints))
    }
    pub fn delete_endpoints(&self, endpoints: &Endpoints) {
        self.batch(|b| b.delete_endpoints(endpoints))
    }
    pub fn reset_endpoints(&self, endpoints: impl IntoIterator<Item = Endpoints>) {
        self.batch(|b| b.reset_endpoints(endpoints))
    }

    pub fn apply_endpoint_slice(&self, slice: EndpointSlice) {
        self.batch(|b| b.apply_endpoint_slice(slice))
    }
    pub fn delete_endpoint_slice(&self, slice: &EndpointSlice) {
        self.batch(|b| b.delete_endpoint_slice(slice))
    }
    pub fn reset_endpoint_slices(&self, slices: impl IntoIterator<Item = EndpointSlice>) {
        self.batch(|b| b.reset_endpoint_slices(slices))
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
    pub fn apply_pod(&mut self, pod: Pod) {
        match PodInfo::from_pod(&pod) {
            Ok(info) => self.insert_pod(Arc::new(info)),
            Err(error) => skip_malformed(&pod, &error),
        }
    }

    pub fn delete_pod(&mut self, pod: &Pod) {
        if let Some(key) = key_or_warn(pod) {
            self.remove_pod(&key);
        }
    }

    pub fn reset_pods(&mut self, pods: impl IntoIterator<Item = Pod>) {
        // Applied over the current pods, not into an empty map, so that a
        // pod already claiming an IP keeps its place among the claimants.
        let mut listed = HashSet::new();
        for pod in pods {
            match PodInfo::from_pod(&pod) {
                Ok(info) => {
                    listed.insert(info.label.clone());
                    self.insert_pod(Arc::new(info));
                }
                Err(error) => skip_malformed(&pod, &error),
            }
        }
        let gone: Vec<Arc<str>> = self
            .snapshot
            .pods
            .keys()
            .filter(|k| !listed.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.remove_pod(&key);
        }
    }

    pub fn apply_replica_set(&mut self, rs: ReplicaSet) {
        if let Some((key, deployment)) = replica_set_entry(&rs) {
            self.snapshot.replica_sets.insert(key, deployment);
        }
    }

    pub fn delete_replica_set(&mut self, rs: &ReplicaSet) {
        if let Some(key) = key_or_warn(rs) {
            self.snapshot.replica_sets.remove(&HashedKey::new(key));
        }
    }

    pub fn reset_replica_sets(&mut self, replica_sets: impl IntoIterator<Item = ReplicaSet>) {
        self.snapshot.replica_sets = replica_sets
            .into_iter()
            .filter_map(|rs| replica_set_entry(&rs))
            .collect();
    }

    pub fn apply_deployment(&mut self, deployment: Deployment) {
        apply_object(&mut self.snapshot.deployments, deployment);
    }

    pub fn delete_deployment(&mut self, deployment: &Deployment) {
        delete_object(&mut self.snapshot.deployments, deployment);
    }

    pub fn reset_deployments(&mut self, deployments: impl IntoIterator<Item = Deployment>) {
        self.snapshot.deployments = object_map(deployments);
    }

    pub fn apply_service(&mut self, service: Service) {
        apply_object(&mut self.snapshot.services, service);
    }

    pub fn delete_service(&mut self, service: &Service) {
        delete_object(&mut self.snapshot.services, service);
    }

    pub fn reset_services(&mut self, services: impl IntoIterator<Item = Service>) {
        self.snapshot.services = object_map(services);
    }

    pub fn apply_endpoints(&mut self, endpoints: Endpoints) {
        apply_object(&mut self.snapshot.endpoints, endpoints);
    }

    pub fn delete_endpoints(&mut self, endpoints: &Endpoints) {
        delete_object(&mut self.snapshot.endpoints, endpoints);
    }

    pub fn reset_endpoints(&mut self, endpoints: impl IntoIterator<Item = Endpoints>) {
        self.snapshot.endpoints = object_map(endpoints);
    }

    pub fn apply_endpoint_slice(&mut self, slice: EndpointSlice) {
        let Some(key) = key_or_warn(&slice) else {
            return;
        };
        // Drop the previous version first: its service label may have changed.
        self.remove_endpoint_slice(&key);
        self.insert_endpoint_slice(key, slice);
    }

    pub fn delete_endpoint_slice(&mut self, slice: &EndpointSlice) {
        if let Some(key) = key_or_warn(slice) {
            self.remove_endpoint_slice(&key);
        }
    }

    pub fn reset_endpoint_slices(&mut self, slices: impl IntoIterator<Item = EndpointSlice>) {
        self.snapshot.slices_by_service = OrdMap::new();
        self.snapshot.slice_service = FastMap::default();
        for slice in slices {
            if let Some(key) = key_or_warn(&slice) {
                self.remove_endpoint_slice(&key);
                self.insert_endpoint_slice(key, slice);
            }
        }
    }

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

    fn insert_pod(&mut self, pod: Arc<PodInfo>) {
        let previous = self.snapshot.pods.insert(pod.label.clone(), pod.clone());
        if let Some(previous) = previous {
            for ip in previous.claimed_ips() {
                if !pod.claimed_ips().contains(ip) {
                    self.unclaim(ip, &pod.label);
                }
            }
        }
        for ip in pod.claimed_ips() {
            self.claim(*ip, &pod);
        }
    }

    fn remove_pod(&mut self, key: &str) {
        if let Some(pod) = self.snapshot.pods.remove(key) {
            for ip in pod.claimed_ips() {
                self.unclaim(ip, &pod.label);
            }
        }
    }

    /// Records `pod`'s claim on `ip`. A new claimant goes last and so owns
    /// the IP; a pod that already claims it keeps its place, so an update to
    /// an old pod does not take its IP back from a newer one.
    fn claim(&mut self, ip: IpAddr, pod: &Arc<PodInfo>) {
        let mut claimants = self
            .snapshot
            .ip_claims
            .get(&ip)
            .map(|c| c.to_vec())
            .unwrap_or_default();
        match claimants.iter_mut().find(|c| c.label == pod.label) {
            Some(existing) => *existing = pod.clone(),
            None => claimants.push(pod.clone()),
        }
        self.snapshot.ip_claims.insert(ip, claimants.into());
    }

    /// Withdraws pod `label`'s claim on `ip`; the previous claimant, if
    /// any, owns it again.
    fn unclaim(&mut self, ip: &IpAddr, label: &str) {
        let Some(claimants) = self.snapshot.ip_claims.get(ip) else {
            return;
        };
        let rest: Vec<Arc<PodInfo>> = claimants
            .iter()
            .filter(|c| &*c.label != label)
            .cloned()
            .collect();
        if rest.is_empty() {
            self.snapshot.ip_claims.remove(ip);
        } else {
            self.snapshot.ip_claims.insert(*ip, rest.into());
        }
    }

    fn insert_endpoint_slice(&mut self, key: Arc<str>, slice: EndpointSlice) {
        let meta = &slice.metadata;
        let service = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .filter(|s| !s.is_empty());
        let Some(service) = service else {
            // Slices managed by something other than a Service: nothing to route.
            tracing::debug!(slice = %key, "skipping EndpointSlice without a service-name label");
            return;
        };
        let service: Arc<str> = object_key(namespace_of(meta), service).into();
        let name: Arc<str> = meta.name.as_deref().unwrap_or_default().into();
        let s = &mut *self.snapshot;
        s.slice_service.insert(key, service.clone());
        s.slices_by_service
            .entry(service)
            .or_default()
            .insert(name, Arc::new(slice));
    }

    fn remove_endpoint_slice(&mut self, key: &str) {
        let s = &mut *self.snapshot;
        let Some(service) = s.slice_service.remove(key) else {
            return;
        };
        let name = key.split_once('/').map_or(key, |(_, name)| name);
        if let Some(group) = s.slices_by_service.get_mut(&service) {
            group.remove(name);
            if group.is_empty() {
                s.slices_by_service.remove(&service);
            }
        }
    }
}

fn object_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
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

fn replica_set_entry(rs: &ReplicaSet) -> Option<(HashedKey, Option<Arc<str>>)> {
    let key = key_or_warn(rs)?;
    let deployment = pick_owner(rs.metadata.owner_references.as_deref(), |o| {
        o.kind == Deployment::KIND
    })
    .map(|o| Arc::from(object_key(namespace_of(&rs.metadata), &o.name)));
    Some((HashedKey::new(key), deployment))
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
    use super::*;
    use crate::k8s::index::fixtures::*;
    use k8s_openapi::api::core::v1::PodIP;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test IPs are valid")
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

    fn workload(pod: &str, deployment: Option<&str>) -> Option<Workload> {
        Some(Workload {
            pod: pod.into(),
            deployment: deployment.map(Into::into),
        })
    }

    /// The pod name owning `addr` in the current snapshot.
    fn owner(index: &Index, addr: &str) -> Option<String> {
        index
            .snapshot()
            .workload_by_ip(&ip(addr))
            .map(|w| w.pod.to_string())
    }

    #[test]
    fn pod_resolves_through_replica_set_to_deployment() {
        let index = Index::new();
        index.apply_replica_set(mk_replica_set("emojivoto", "web-5f9d", Some("web")));
        index.apply_pod(mk_pod(
            "emojivoto",
            "web-5f9d-x1",
            "192.0.2.10",
            Some("web-5f9d"),
        ));

        let snap = index.snapshot();
        assert_eq!(
            snap.workload_by_ip(&ip("192.0.2.10")),
            workload("emojivoto/web-5f9d-x1", Some("emojivoto/web"))
        );
        let pod = snap
            .pod("emojivoto", "web-5f9d-x1")
            .expect("pod is indexed");
        assert_eq!(snap.deployment_of(pod).as_deref(), Some("emojivoto/web"));
        assert_eq!(snap.workload_by_ip(&ip("192.0.2.11")), None);
    }

    #[test]
    fn replica_set_arriving_after_its_pod_resolves_and_deleted_stops_resolving() {
        let index = Index::new();
        index.apply_pod(mk_pod("ns", "web-1", "192.0.2.10", Some("web-rs")));
        assert_eq!(
            index.snapshot().workload_by_ip(&ip("192.0.2.10")),
            workload("ns/web-1", None)
        );

        let rs = mk_replica_set("ns", "web-rs", Some("web"));
        index.apply_replica_set(rs.clone());
        assert_eq!(
            index.snapshot().workload_by_ip(&ip("192.0.2.10")),
            workload("ns/web-1", Some("ns/web"))
        );

        index.delete_replica_set(&rs);
        assert_eq!(
            index.snapshot().workload_by_ip(&ip("192.0.2.10")),
            workload("ns/web-1", None)
        );
    }

    #[test]
    fn pod_without_replica_set_deployment_owner_has_no_deployment() {
        let index = Index::new();
        index.apply_replica_set(mk_replica_set("ns", "orphan-rs", None));
        index.apply_pod(mk_pod("ns", "orphan-1", "192.0.2.20", Some("orphan-rs")));
        let mut bare = mk_pod("ns", "job-1", "192.0.2.21", None);
        bare.metadata.owner_references = Some(vec![owner_ref("Job", "job")]);
        index.apply_pod(bare);

        let snap = index.snapshot();
        assert_eq!(
            snap.workload_by_ip(&ip("192.0.2.20")),
            workload("ns/orphan-1", None)
        );
        assert_eq!(
            snap.workload_by_ip(&ip("192.0.2.21")),
            workload("ns/job-1", None)
        );
        let job = snap.pod("ns", "job-1").expect("pod is indexed");
        assert_eq!(
            job.owner,
            Some(OwnerRef {
                kind: "Job".into(),
                name: "job".into()
            })
        );
    }

    #[test]
    fn finished_pod_never_owns_its_reused_ip() {
        let index = Index::new();
        index.apply_pod(mk_pod("ns", "new", "192.0.2.30", None));
        // The old pod's final status arrives after the new pod took the IP.
        index.apply_pod(mk_pod("ns", "old", "192.0.2.30", None).in_phase("Failed"));
        assert_eq!(owner(&index, "192.0.2.30").as_deref(), Some("ns/new"));

        // Same, in the other order, and with Succeeded.
        let index = Index::new();
        index.apply_pod(mk_pod("ns", "old", "192.0.2.31", None).in_phase("Succeeded"));
        index.apply_pod(mk_pod("ns", "new", "192.0.2.31", None));
        assert_eq!(owner(&index, "192.0.2.31").as_deref(), Some("ns/new"));

        // A lone finished pod owns nothing.
        index.delete(Kind::Pod, "ns", "new");
        assert_eq!(owner(&index, "192.0.2.31"), None);
        assert!(index.snapshot().pod("ns", "old").is_some());
    }

    #[test]
    fn newest_live_claimant_owns_ip_and_older_takes_it_back() {
        let index = Index::new();
        index.apply_pod(mk_pod("ns", "older", "192.0.2.40", None));
        let newer = mk_pod("ns", "newer", "192.0.2.40", None);
        index.apply_pod(newer.clone());
        assert_eq!(owner(&index, "192.0.2.40").as_deref(), Some("ns/newer"));

        // An update to the older pod does not take the IP back.
        index.apply_pod(mk_pod("ns", "older", "192.0.2.40", None).with_label("app", "x"));
        assert_eq!(owner(&index, "192.0.2.40").as_deref(), Some("ns/newer"));

        index.delete_pod(&newer);
        assert_eq!(owner(&index, "192.0.2.40").as_deref(), Some("ns/older"));

        // And again when the newer one finishes instead of being deleted.
        index.apply_pod(newer);
        assert_eq!(owner(&index, "192.0.2.40").as_deref(), Some("ns/newer"));
        index.apply_pod(mk_pod("ns", "newer", "192.0.2.40", None).in_phase("Succeeded"));
        assert_eq!(owner(&index, "192.0.2.40").as_deref(), Some("ns/older"));
    }

    #[test]
    fn deleted_pod_stops_resolving_and_releases_only_its_own_claims() {
        let index = Index::new();
        let a = mk_pod("ns", "a", "192.0.2.50", None);
        index.apply_pod(a.clone());
        index.apply_pod(mk_pod("ns", "b", "192.0.2.51", None));

        index.delete_pod(&a);
        let snap = index.snapshot();
        assert_eq!(snap.workload_by_ip(&ip("192.0.2.50")), None);
        assert!(snap.pod("ns", "a").is_none());
        assert_eq!(
            snap.workload_by_ip(&ip("192.0.2.51")),
            workload("ns/b", None)
        );

        // A pod that moved to another IP releases the old one.
        index.apply_pod(mk_pod("ns", "b", "192.0.2.52", None));
        assert_eq!(owner(&index, "192.0.2.51"), None);
        assert_eq!(owner(&index, "192.0.2.52").as_deref(), Some("ns/b"));
    }

    #[test]
    fn dual_stack_pod_owns_both_addresses() {
        let index = Index::new();
        let mut pod = mk_pod("ns", "v6", "2001:db8::7", None);
        let status = pod.status.as_mut().expect("fixture has a status");
        status.pod_ips = Some(vec![
            PodIP {
                ip: "2001:db8::7".into(),
            },
            PodIP {
                ip: "192.0.2.60".into(),
            },
        ]);
        index.apply_pod(pod);

        let snap = index.snapshot();
        let info = snap.pod("ns", "v6").expect("pod is indexed");
        assert_eq!(info.ips, vec![ip("2001:db8::7"), ip("192.0.2.60")]);
        assert_eq!(
            snap.workload_by_ip(&ip("2001:db8::7")),
            workload("ns/v6", None)
        );
        assert_eq!(
            snap.workload_by_ip(&ip("192.0.2.60")),
            workload("ns/v6", None)
        );
    }

    #[test]
    fn host_network_pod_does_not_own_the_node_ip() {
        let index = Index::new();
        let mut pod = mk_pod("kube-system", "kube-proxy-a", "192.0.2.1", None);
        pod.spec.as_mut().expect("fixture has a spec").host_network = Some(true);
        index.apply_pod(pod);

        let snap = index.snapshot();
        assert_eq!(snap.workload_by_ip(&ip("192.0.2.1")), None);
        let info = snap
            .pod("kube-system", "kube-proxy-a")
            .expect("pod is indexed");
        assert_eq!(info.ips, vec![ip("192.0.2.1")]);
    }

    #[test]
    fn malformed_objects_are_skipped() {
        let index = Index::new();
        index.apply_pod(mk_pod("ns", "bad-ip", "192.0.2.999", None));
        let mut nameless = mk_pod("ns", "", "192.0.2.70", None);
        nameless.metadata.name = None;
        index.apply_pod(nameless.clone());
        index.delete_pod(&nameless);
        index.apply_replica_set(mk_replica_set("ns", "", Some("web")));

        let snap = index.snapshot();
        assert_eq!(snap.pod_count(), 0);
        assert_eq!(snap.workload_by_ip(&ip("192.0.2.70")), None);
        assert!(!snap.has_replica_set("ns", ""));
        assert_eq!(
            PodInfo::from_pod(&mk_pod("ns", "bad-ip", "192.0.2.999", None)),
            Err(InvalidObject::InvalidIp {
                field: "status.podIP",
                value: "192.0.2.999".into()
            })
        );
    }

    #[test]
    fn pod_info_fields() {
        let mut pod = mk_pod("", "p", "", None)
            .with_label(PLANE_LABEL, "control")
            .with_label(CONTROLLER_LABEL, "conduit");
        pod.metadata.namespace = None;
        pod.status = None;
        pod.metadata.deletion_timestamp = Some(Time(Default::default()));
        let info = PodInfo::from_pod(&pod).expect("pod is well formed");
        assert_eq!(&*info.label, "default/p");
        assert_eq!(info.phase, "Unknown");
        assert_eq!(info.status(), "Terminating");
        assert!(info.terminating && info.control_plane);
        assert_eq!(info.controller_namespace, "conduit");
        assert!(info.ips.is_empty());
        assert_eq!(info.owner, None);
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
    fn pods_of_a_deployment() {
        let index = Index::new();
        index.batch(|b| {
            b.apply_replica_set(mk_replica_set("ns", "web-1", Some("web")));
            b.apply_replica_set(mk_replica_set("ns", "web-2", Some("web")));
            b.apply_replica_set(mk_replica_set("ns", "api-1", Some("api")));
            b.apply_replica_set(mk_replica_set("other", "web-1", Some("web")));
            b.apply_pod(mk_pod("ns", "web-1-a", "192.0.2.100", Some("web-1")));
            b.apply_pod(mk_pod("ns", "web-2-a", "192.0.2.101", Some("web-2")));
            b.apply_pod(mk_pod("ns", "api-1-a", "192.0.2.102", Some("api-1")));
            b.apply_pod(mk_pod("other", "web-1-a", "192.0.2.103", Some("web-1")));
            // "ns-2" sorts between "ns" and "ns/": must not leak into "ns".
            b.apply_pod(mk_pod("ns-2", "web-1-a", "192.0.2.104", Some("web-1")));
        });

        let snap = index.snapshot();
        let names: Vec<String> = snap
            .pods_of_deployment("ns", "web")
            .iter()
            .map(|p| p.label.to_string())
            .collect();
        assert_eq!(names, ["ns/web-1-a", "ns/web-2-a"]);
        assert_eq!(snap.pods_in_namespace("ns").count(), 3);
        assert!(snap.pods_of_deployment("ns", "nope").is_empty());
    }

    #[test]
    fn endpoint_slices_are_grouped_by_service() {
        let index = Index::new();
        index.apply_endpoint_slice(mk_slice("ns", "web-abc", "web", &["192.0.2.110"]));
        index.apply_endpoint_slice(mk_slice("ns", "web-def", "web", &["192.0.2.111"]));
        index.apply_endpoint_slice(mk_slice("ns", "api-abc", "api", &["192.0.2.112"]));

        let names = |svc: &str| -> Vec<String> {
            index
                .snapshot()
                .endpoint_slices_of_service("ns", svc)
                .map(|s| s.metadata.name.clone().unwrap_or_default())
                .collect()
        };
        assert_eq!(names("web"), ["web-abc", "web-def"]);

        // Relabelled to another service: it moves.
        index.apply_endpoint_slice(mk_slice("ns", "web-def", "api", &["192.0.2.111"]));
        assert_eq!(names("web"), ["web-abc"]);
        assert_eq!(names("api"), ["api-abc", "web-def"]);

        index.delete(Kind::EndpointSlice, "ns", "web-abc");
        assert!(names("web").is_empty());

        index.reset_endpoint_slices(vec![mk_slice("ns", "web-xyz", "web", &["192.0.2.113"])]);
        assert_eq!(names("web"), ["web-xyz"]);
        assert!(names("api").is_empty());
    }

    #[test]
    fn services_and_endpoints_by_name() {
        let index = Index::new();
        let endpoints = mk_endpoints("ns", "web", vec![]);
        index.apply_endpoints(endpoints.clone());
        assert!(index.snapshot().endpoints("ns", "web").is_some());
        index.delete_endpoints(&endpoints);
        assert!(index.snapshot().endpoints("ns", "web").is_none());
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
