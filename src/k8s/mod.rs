//! Cluster metadata: one index of Pods, ReplicaSets, Deployments, Services,
//! Endpoints and EndpointSlices, and the sources that feed it.
//!
//! How the pieces link:
//! - Pod → ReplicaSet → Deployment: a pod's owner is its ReplicaSet, whose
//!   own owner is the Deployment. The link is followed at lookup time, so a
//!   ReplicaSet that arrives after its pods (or is deleted) takes effect at
//!   once. This gives telemetry its `source`/`target` and
//!   `*_deployment` labels from an IP, and tap the IPs of a deployment.
//! - Service → Endpoints / EndpointSlices: stored by service name (slices
//!   grouped by their `kubernetes.io/service-name` label) for destination.
//!
//! [`Index`] publishes immutable [`Snapshot`]s: readers never wait on a
//! writer. Writers are the kube watchers ([`watch`], one task per kind) or
//! [`cluster_file`], a static file of ordinary Kubernetes YAML.
//!
//! This module never imports tonic.

pub mod cluster_file;
mod index;
pub mod source;
pub mod watch;

pub use index::{
    Batch, CONTROLLER_LABEL, DEFAULT_NAMESPACE, Index, InvalidObject, Kind, OwnerRef, PLANE_LABEL,
    PodInfo, Published, SERVICE_NAME_LABEL, Snapshot, Workload, WorkloadRef,
};
