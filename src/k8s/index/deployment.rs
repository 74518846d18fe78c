//! ReplicaSets and Deployments: the owners a pod's deployment is found
//! through (Pod → ReplicaSet → Deployment). A ReplicaSet is kept only as
//! the `"namespace/deployment"` of its Deployment owner, followed at lookup
//! time, so a ReplicaSet arriving after its pods (or deleted before them)
//! takes effect at once.

use std::sync::Arc;

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::{
    Batch, HashedKey, Index, PodInfo, Snapshot, apply_object, delete_object, key_or_warn,
    namespace_of, object_key, object_map, pick_owner, with_object_key,
};

impl Snapshot {
    /// `"namespace/deployment"` of the pod, through its ReplicaSet's owner.
    pub fn deployment_of(&self, pod: &PodInfo) -> Option<Arc<str>> {
        self.deployment_label(pod).cloned()
    }

    #[inline]
    pub(super) fn deployment_label(&self, pod: &PodInfo) -> Option<&Arc<str>> {
        let rs = pod.replica_set_key.as_ref()?;
        self.replica_sets.get(rs)?.as_ref()
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
        with_object_key(namespace, name, |key| self.deployments.get(key))
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
}

impl Index {
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
}

impl Batch<'_> {
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
}

fn replica_set_entry(rs: &ReplicaSet) -> Option<(HashedKey, Option<Arc<str>>)> {
    let key = key_or_warn(rs)?;
    let deployment = pick_owner(rs.metadata.owner_references.as_deref(), |o| {
        o.kind == Deployment::KIND
    })
    .map(|o| Arc::from(object_key(namespace_of(&rs.metadata), &o.name)));
    Some((HashedKey::new(key), deployment))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::tests::{ip, workload};
    use super::*;
    use crate::k8s::index::OwnerRef;

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
}
