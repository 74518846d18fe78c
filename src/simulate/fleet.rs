//! The simulated fleet: pods owned by ReplicaSets owned by Deployments, and
//! the Kubernetes objects that describe them ([`cluster_objects`], which
//! `conduit run --demo` applies to its index as they are), or the same as a
//! cluster file of YAML ([`cluster_yaml`]).
//!
//! Names and uids come from a seeded generator, IPs from the pod's index
//! alone, so a fleet and its cluster file are the same on every run with the
//! same flags. The IPs (10.0.0.0/8) only ever appear inside report bodies and
//! the cluster file; nothing connects to them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodIP, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

use crate::k8s::cluster_file::{self, Object};

/// Every simulated pod listens here; it is the port in `target_addr` and in
/// the authority of the requests the fleet reports.
pub const POD_PORT: u32 = 8080;

/// Pods per simulated node: enough to give `Process.node` a few values.
const PODS_PER_NODE: usize = 10;

/// Base names for deployments; an index suffix keeps them unique past the
/// end of the list.
const DEPLOYMENT_NAMES: &[&str] = &[
    "web", "api", "auth", "cart", "catalog", "checkout", "search", "users", "orders", "payments",
    "shipping", "reviews", "emoji", "voting", "books", "authors",
];

/// The alphabet Kubernetes uses for generated name suffixes (no vowels, no
/// look-alikes), so the names look like what a cluster would show.
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Length of a ReplicaSet's pod-template-hash and of a pod's random suffix.
const TEMPLATE_HASH_LEN: usize = 10;
const POD_SUFFIX_LEN: usize = 5;

/// The demo mesh: a shop over three namespaces, each deployment with its
/// namespace and pod count, callers listed before the services they call.
pub const DEMO_LAYOUT: &[(&str, &str, usize)] = &[
    ("storefront", "web", 3),
    ("storefront", "api", 4),
    ("catalog", "catalog", 2),
    ("checkout", "cart", 2),
    ("catalog", "search", 2),
    ("catalog", "reviews", 1),
    ("checkout", "orders", 3),
    ("checkout", "payments", 2),
];

/// Who calls whom in the demo mesh, as indices into [`DEMO_LAYOUT`].
pub const DEMO_CALLS: &[(usize, usize)] = &[(0, 1), (1, 2), (1, 3), (2, 4), (2, 5), (3, 6), (6, 7)];

/// The simulated cluster.
#[derive(Clone, Debug)]
pub struct Fleet {
    pub deployments: Vec<SimDeployment>,
    pub pods: Vec<SimPod>,
}

/// One Deployment and the single ReplicaSet (`<name>-<template_hash>`) it
/// owns.
#[derive(Clone, Debug)]
pub struct SimDeployment {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub template_hash: String,
    pub replica_set_uid: String,
    /// Indices into [`Fleet::pods`].
    pub pods: Vec<usize>,
}

/// One pod, named `<deployment>-<template_hash>-<suffix>`.
#[derive(Clone, Debug)]
pub struct SimPod {
    pub name: String,
    pub namespace: String,
    /// The owning deployment's name.
    pub deployment: String,
    /// Index into [`Fleet::deployments`].
    pub deployment_index: usize,
    pub ip: Ipv4Addr,
    pub node: String,
    pub uid: String,
}

impl SimDeployment {
    pub fn replica_set_name(&self) -> String {
        format!("{}-{}", self.name, self.template_hash)
    }
}

impl Fleet {
    /// The same fleet as pods `first..` of a larger one: each pod takes the
    /// address and node of its index plus `first`.
    pub fn starting_at(mut self, first: usize) -> Self {
        for (i, pod) in self.pods.iter_mut().enumerate() {
            pod.ip = pod_ip(first + i);
            pod.node = node_name(first + i);
        }
        self
    }

    /// The deployment owning `pod`.
    pub fn deployment_of(&self, pod: &SimPod) -> &SimDeployment {
        &self.deployments[pod.deployment_index]
    }
}

/// A fleet of `pods` pods spread round-robin over `deployments` deployments
/// (at least one) in `namespace`.
pub fn fleet(pods: usize, deployments: usize, namespace: &str, seed: u64) -> Fleet {
    let deployments = deployments.max(1);
    let layout: Vec<(String, String)> = (0..deployments)
        .map(|i| (namespace.to_string(), deployment_name(i)))
        .collect();
    build(&layout, (0..pods).map(|i| i % deployments), seed)
}

/// The demo mesh of [`DEMO_LAYOUT`].
pub fn demo_fleet(seed: u64) -> Fleet {
    let layout: Vec<(String, String)> = DEMO_LAYOUT
        .iter()
        .map(|(ns, name, _)| (ns.to_string(), name.to_string()))
        .collect();
    let owners = DEMO_LAYOUT
        .iter()
        .enumerate()
        .flat_map(|(j, &(_, _, pods))| std::iter::repeat_n(j, pods));
    build(&layout, owners, seed)
}

/// Deployments `(namespace, name)`, and one pod per item of `owners` (the
/// index of its deployment).
fn build(layout: &[(String, String)], owners: impl Iterator<Item = usize>, seed: u64) -> Fleet {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut deploys: Vec<SimDeployment> = layout
        .iter()
        .map(|(namespace, name)| SimDeployment {
            namespace: namespace.clone(),
            name: name.clone(),
            uid: uid(&mut rng),
            template_hash: random_name(&mut rng, TEMPLATE_HASH_LEN),
            replica_set_uid: uid(&mut rng),
            pods: Vec::new(),
        })
        .collect();
    let pods = owners
        .enumerate()
        .map(|(i, deployment_index)| {
            let deploy = &mut deploys[deployment_index];
            deploy.pods.push(i);
            SimPod {
                name: format!(
                    "{}-{}-{}",
                    deploy.name,
                    deploy.template_hash,
                    random_name(&mut rng, POD_SUFFIX_LEN)
                ),
                namespace: deploy.namespace.clone(),
                deployment: deploy.name.clone(),
                deployment_index,
                ip: pod_ip(i),
                node: node_name(i),
                uid: uid(&mut rng),
            }
        })
        .collect();
    Fleet {
        deployments: deploys,
        pods,
    }
}

/// `web`, `api`, ..., then `web-1`, `api-1`, ... once the list runs out.
fn deployment_name(i: usize) -> String {
    let base = DEPLOYMENT_NAMES[i % DEPLOYMENT_NAMES.len()];
    match i / DEPLOYMENT_NAMES.len() {
        0 => base.to_string(),
        round => format!("{base}-{round}"),
    }
}

/// The node pod `i` runs on.
fn node_name(i: usize) -> String {
    format!("sim-node-{}", i / PODS_PER_NODE)
}

/// Pod `i`'s address: 10.a.b.c with c in 1..=254, so no pod gets a network
/// or broadcast-looking address. Unique for the first 254·2¹⁶ pods.
pub fn pod_ip(i: usize) -> Ipv4Addr {
    let host = (i % 254) as u8 + 1;
    let rest = i / 254;
    Ipv4Addr::new(10, (rest >> 8) as u8, rest as u8, host)
}

fn random_name(rng: &mut fastrand::Rng, len: usize) -> String {
    (0..len)
        .map(|_| char::from(NAME_ALPHABET[rng.usize(..NAME_ALPHABET.len())]))
        .collect()
}

/// A version-4-shaped UUID string.
fn uid(rng: &mut fastrand::Rng) -> String {
    let bits = rng.u128(..);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        (bits >> 96) as u32,
        (bits >> 80) as u16,
        (bits >> 68) as u16 & 0x0fff,
        ((bits >> 52) as u16 & 0x3fff) | 0x8000,
        bits as u64 & 0xffff_ffff_ffff,
    )
}

/// The objects of `fleet`'s cluster: per deployment, an `apps/v1`
/// Deployment and its ReplicaSet, then one `v1` Pod per pod, each owned
/// (controller: true) by the object above it. What `conduit run --demo`
/// feeds its index, and what [`cluster_yaml`] writes out.
pub fn cluster_objects(fleet: &Fleet) -> Vec<Object> {
    let mut out = Vec::with_capacity(2 * fleet.deployments.len() + fleet.pods.len());
    for d in &fleet.deployments {
        out.push(deployment(d).into());
        out.push(replica_set(d).into());
    }
    out.extend(fleet.pods.iter().map(|pod| self::pod(fleet, pod).into()));
    out
}

/// The cluster file for `fleet`: [`cluster_objects`] as multi-document
/// YAML (`simulate-proxy --cluster-out`).
pub fn cluster_yaml(fleet: &Fleet) -> String {
    cluster_file::render(&cluster_objects(fleet))
}

fn labels<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn meta(
    namespace: &str,
    name: &str,
    uid: &str,
    labels: BTreeMap<String, String>,
    owner: Option<OwnerReference>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        uid: Some(uid.to_string()),
        labels: Some(labels),
        owner_references: owner.map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

/// The `controller: true` reference to an `apps/v1` owner.
fn owned_by(kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
        controller: Some(true),
        ..OwnerReference::default()
    }
}

/// Every simulated pod's one container.
fn containers() -> Vec<Container> {
    vec![Container {
        name: "app".to_string(),
        image: Some("sim".to_string()),
        ..Container::default()
    }]
}

fn replicas(d: &SimDeployment) -> Option<i32> {
    Some(i32::try_from(d.pods.len()).unwrap_or(i32::MAX))
}

fn deployment(d: &SimDeployment) -> Deployment {
    let app = labels([("app", &d.name)]);
    Deployment {
        metadata: meta(&d.namespace, &d.name, &d.uid, app.clone(), None),
        spec: DeploymentSpec {
            replicas: replicas(d),
            selector: LabelSelector {
                match_labels: Some(app.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(app),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: containers(),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

fn replica_set(d: &SimDeployment) -> ReplicaSet {
    let labels = labels([("app", &d.name), ("pod-template-hash", &d.template_hash)]);
    ReplicaSet {
        metadata: meta(
            &d.namespace,
            &d.replica_set_name(),
            &d.replica_set_uid,
            labels.clone(),
            Some(owned_by("Deployment", &d.name, &d.uid)),
        ),
        spec: ReplicaSetSpec {
            replicas: replicas(d),
            selector: LabelSelector {
                match_labels: Some(labels),
                ..LabelSelector::default()
            },
            ..ReplicaSetSpec::default()
        },
        ..ReplicaSet::default()
    }
}

fn pod(fleet: &Fleet, pod: &SimPod) -> Pod {
    let d = fleet.deployment_of(pod);
    let labels = labels([("app", &d.name), ("pod-template-hash", &d.template_hash)]);
    let ip = pod.ip.to_string();
    Pod {
        metadata: meta(
            &pod.namespace,
            &pod.name,
            &pod.uid,
            labels,
            Some(owned_by(
                "ReplicaSet",
                &d.replica_set_name(),
                &d.replica_set_uid,
            )),
        ),
        spec: Some(PodSpec {
            node_name: Some(pod.node.clone()),
            containers: containers(),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".to_string()),
            pod_ip: Some(ip.clone()),
            pod_ips: Some(vec![PodIP { ip }]),
            ..PodStatus::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn the_cluster_file_holds_the_clusters_objects() {
        for f in [
            fleet(40, 6, "sim", 3),
            crate::simulate::tap::on_loopback(demo_fleet(42)),
        ] {
            let objects = cluster_objects(&f);
            assert_eq!(objects.len(), 2 * f.deployments.len() + f.pods.len());
            assert_eq!(cluster_file::parse(&cluster_yaml(&f)).unwrap(), objects);
        }
    }

    #[test]
    fn pods_are_spread_over_deployments_with_unique_names_and_ips() {
        let f = fleet(100, 7, "sim", 1);
        assert_eq!(f.pods.len(), 100);
        assert_eq!(f.deployments.len(), 7);
        let names: HashSet<_> = f.pods.iter().map(|p| &p.name).collect();
        let ips: HashSet<_> = f.pods.iter().map(|p| p.ip).collect();
        assert_eq!(names.len(), 100);
        assert_eq!(ips.len(), 100);
        for pod in &f.pods {
            let d = f.deployment_of(pod);
            assert_eq!(pod.deployment, d.name);
            assert!(pod.name.starts_with(&format!("{}-", d.replica_set_name())));
            assert_eq!(pod.ip.octets()[0], 10);
        }
        let sizes: Vec<_> = f.deployments.iter().map(|d| d.pods.len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!(sizes.iter().all(|&n| n == 14 || n == 15), "{sizes:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_fleet() {
        let (a, b) = (fleet(10, 3, "sim", 7), fleet(10, 3, "sim", 7));
        assert_eq!(cluster_yaml(&a), cluster_yaml(&b));
        assert_ne!(cluster_yaml(&a), cluster_yaml(&fleet(10, 3, "sim", 8)));
    }

    #[test]
    fn pod_ips_skip_network_and_broadcast_hosts() {
        assert_eq!(pod_ip(0), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(pod_ip(253), Ipv4Addr::new(10, 0, 0, 254));
        assert_eq!(pod_ip(254), Ipv4Addr::new(10, 0, 1, 1));
        assert_eq!(pod_ip(254 * 256), Ipv4Addr::new(10, 1, 0, 1));
    }

    #[test]
    fn a_fleet_started_later_takes_the_later_addresses() {
        let whole = fleet(6, 2, "sim", 1);
        let tail = fleet(3, 1, "other", 2).starting_at(3);
        for (i, pod) in tail.pods.iter().enumerate() {
            assert_eq!(pod.ip, whole.pods[3 + i].ip);
            assert_eq!(pod.node, whole.pods[3 + i].node);
        }
        assert_ne!(tail.pods[0].ip, fleet(3, 1, "other", 2).pods[0].ip);
    }

    #[test]
    fn deployment_names_stay_unique_past_the_list() {
        let names: HashSet<_> = (0..100).map(deployment_name).collect();
        assert_eq!(names.len(), 100);
    }

    #[test]
    fn cluster_file_parses_as_kubernetes_objects_matching_the_fleet() {
        let f = fleet(40, 6, "sim", 3);
        let yaml = cluster_yaml(&f);
        let mut pods = HashMap::new();
        let mut replica_sets = HashMap::new();
        let mut deployments = HashMap::new();
        for doc in serde_yaml::Deserializer::from_str(&yaml) {
            let value = serde_yaml::Value::deserialize(doc).unwrap();
            match value["kind"].as_str().unwrap() {
                "Pod" => {
                    let pod: Pod = serde_yaml::from_value(value).unwrap();
                    pods.insert(pod.metadata.name.clone().unwrap(), pod);
                }
                "ReplicaSet" => {
                    let rs: ReplicaSet = serde_yaml::from_value(value).unwrap();
                    replica_sets.insert(rs.metadata.name.clone().unwrap(), rs);
                }
                "Deployment" => {
                    let d: Deployment = serde_yaml::from_value(value).unwrap();
                    deployments.insert(d.metadata.name.clone().unwrap(), d);
                }
                other => panic!("unexpected kind {other}"),
            }
        }
        assert_eq!(pods.len(), 40);
        assert_eq!(replica_sets.len(), 6);
        assert_eq!(deployments.len(), 6);

        for sim in &f.pods {
            let pod = &pods[&sim.name];
            assert_eq!(pod.metadata.namespace.as_deref(), Some("sim"));
            let status = pod.status.as_ref().unwrap();
            assert_eq!(status.phase.as_deref(), Some("Running"));
            assert_eq!(status.pod_ip.as_deref(), Some(sim.ip.to_string().as_str()));
            assert_eq!(status.pod_ips.as_ref().unwrap()[0].ip, sim.ip.to_string());
            assert_eq!(pod.spec.as_ref().unwrap().containers[0].name, "app");
            let labels = pod.metadata.labels.as_ref().unwrap();
            assert_eq!(labels["app"], sim.deployment);

            // Pod -> ReplicaSet -> Deployment, by name and uid.
            let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.controller),
                ("ReplicaSet", Some(true))
            );
            let rs = &replica_sets[&owner.name];
            assert_eq!(rs.metadata.uid.as_ref(), Some(&owner.uid));
            let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.controller),
                ("Deployment", Some(true))
            );
            assert_eq!(owner.name, sim.deployment);
            let d = &deployments[&owner.name];
            assert_eq!(d.metadata.uid.as_ref(), Some(&owner.uid));
        }
    }
}
