//! Pods: what the index keeps of each ([`PodInfo`]), which pod owns an IP
//! (the claims of live pods, newest last), and the workload labels an IP
//! resolves to ([`WorkloadRef`]), the telemetry ingester's hot path.

use std::collections::HashSet;
use std::net::IpAddr;
use std::ops::Bound;
use std::sync::Arc;

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;

use super::{
    Batch, CONTROLLER_LABEL, HashedKey, Index, InvalidObject, Names, PLANE_LABEL, Snapshot,
    key_or_warn, names, pick_owner, skip_malformed, with_object_key,
};

/// The pods claiming one IP, oldest claim first; the last one owns the IP.
/// A slice of `Arc`s so that cloning a map node stays cheap.
pub(super) type Claimants = Arc<[Arc<PodInfo>]>;

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
    /// spec.nodeName, `""` while the pod is not scheduled.
    pub node: String,
    /// `"namespace/replicaset"` when the owner is a ReplicaSet: the key of
    /// the pod → deployment lookup, built once here.
    pub(super) replica_set_key: Option<HashedKey>,
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
            node: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
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

    /// All pods, ordered by `"namespace/name"`.
    pub fn pods(&self) -> impl Iterator<Item = &Arc<PodInfo>> {
        self.pods.values()
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Arc<PodInfo>> {
        with_object_key(namespace, name, |key| self.pods.get(key))
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
}

impl Index {
    pub fn apply_pod(&self, pod: Pod) {
        self.batch(|b| b.apply_pod(pod))
    }
    pub fn delete_pod(&self, pod: &Pod) {
        self.batch(|b| b.delete_pod(pod))
    }
    pub fn reset_pods(&self, pods: impl IntoIterator<Item = Pod>) {
        self.batch(|b| b.reset_pods(pods))
    }
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

    pub(super) fn remove_pod(&mut self, key: &str) {
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
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::tests::{ip, owner, workload};
    use super::*;
    use crate::k8s::index::Kind;
    use k8s_openapi::api::core::v1::PodIP;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

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
        // A name longer than any object's is looked up (and found absent)
        // without the per-thread key buffer keeping it; the next lookup
        // still finds the pod.
        assert!(snap.pod("ns", &"v".repeat(1 << 20)).is_none());
        assert!(snap.pod("ns", "v6").is_some());
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
}
