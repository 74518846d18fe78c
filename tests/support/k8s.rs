//! Kubernetes objects for tests, benches and examples: the one set of
//! `mk_pod(..)`-style builders every scenario uses, as typed `k8s_openapi`
//! objects with documentation addresses (192.0.2.0/24, 2001:db8::/32).
//!
//! A builder takes the few fields scenarios vary; the `*Fixture` traits
//! add the rarer ones in a chain
//! (`mk_pod(ns, "web-1", "192.0.2.10", None).in_phase("Failed")`).
//!
//! This file depends only on `k8s_openapi` and std, so that one copy serves
//! every target without putting test code in the library's API:
//! - integration tests: `pub mod k8s;` in `tests/support/mod.rs`,
//!   re-exported there, where `yaml_docs` renders them as a cluster file
//!   (serialized, not a second text template);
//! - the index's unit tests: `#[cfg(test)] #[path =
//!   "../../../tests/support/k8s.rs"] mod fixtures;` in `src/k8s/index/mod.rs`;
//! - benches and examples: `#[path = "../tests/support/k8s.rs"] mod fixtures;`.
#![allow(dead_code)]

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, PodSpec, PodStatus, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{
    self as discovery, Endpoint, EndpointConditions, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The label the endpoint-slice controller puts on a Service's slices.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// Metadata naming `namespace/name`.
pub fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        ..Default::default()
    }
}

/// The controller reference to the `kind` named `name`, as a ReplicaSet's
/// controller or a Deployment's writes it.
pub fn owner_ref(kind: &str, name: &str) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        uid: format!("uid-{name}"),
        controller: Some(true),
        ..Default::default()
    }
}

/// A Running pod with `status.podIP` `ip` (none when `ip` is empty), owned
/// by ReplicaSet `replica_set` if given.
pub fn mk_pod(namespace: &str, name: &str, ip: &str, replica_set: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            owner_references: replica_set.map(|rs| vec![owner_ref("ReplicaSet", rs)]),
            ..meta(namespace, name)
        },
        spec: Some(PodSpec::default()),
        status: Some(PodStatus {
            phase: Some("Running".to_owned()),
            pod_ip: (!ip.is_empty()).then(|| ip.to_owned()),
            ..Default::default()
        }),
    }
}

/// A ReplicaSet, owned by Deployment `deployment` if given.
pub fn mk_replica_set(namespace: &str, name: &str, deployment: Option<&str>) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            owner_references: deployment.map(|d| vec![owner_ref("Deployment", d)]),
            ..meta(namespace, name)
        },
        ..Default::default()
    }
}

pub fn mk_deployment(namespace: &str, name: &str) -> Deployment {
    Deployment {
        metadata: meta(namespace, name),
        ..Default::default()
    }
}

/// A Service without ports; add them with [`ServiceFixture::with_port`].
pub fn mk_service(namespace: &str, name: &str) -> Service {
    Service {
        metadata: meta(namespace, name),
        ..Default::default()
    }
}

/// An EndpointSlice of Service `service` (the `kubernetes.io/service-name`
/// label), IPv4, one endpoint per address in `ips` with its readiness left
/// unset (which counts as ready), and no ports; see [`SliceFixture`].
pub fn mk_slice(namespace: &str, name: &str, service: &str, ips: &[&str]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            labels: Some(BTreeMap::from([(
                SERVICE_NAME.to_owned(),
                service.to_owned(),
            )])),
            ..meta(namespace, name)
        },
        address_type: "IPv4".to_owned(),
        endpoints: Some(ips.iter().map(|ip| endpoint(ip, None)).collect()),
        ports: None,
    }
}

/// Core Endpoints of Service `service`; no subsets when `subsets` is empty.
pub fn mk_endpoints(namespace: &str, service: &str, subsets: Vec<EndpointSubset>) -> Endpoints {
    Endpoints {
        metadata: meta(namespace, service),
        subsets: (!subsets.is_empty()).then_some(subsets),
    }
}

/// One subset of core Endpoints: ready and not-ready addresses and the
/// `(name, number)` ports they serve (each list left out when empty).
pub fn subset(ready: &[&str], not_ready: &[&str], ports: &[(&str, i32)]) -> EndpointSubset {
    let addresses = |ips: &[&str]| {
        (!ips.is_empty()).then(|| {
            ips.iter()
                .map(|ip| EndpointAddress {
                    ip: (*ip).to_owned(),
                    ..Default::default()
                })
                .collect()
        })
    };
    EndpointSubset {
        addresses: addresses(ready),
        not_ready_addresses: addresses(not_ready),
        ports: (!ports.is_empty()).then(|| {
            ports
                .iter()
                .map(|(name, port)| EndpointPort {
                    name: Some((*name).to_owned()),
                    port: *port,
                    ..Default::default()
                })
                .collect()
        }),
    }
}

fn endpoint(ip: &str, ready: Option<bool>) -> Endpoint {
    Endpoint {
        addresses: vec![ip.to_owned()],
        conditions: ready.map(|ready| EndpointConditions {
            ready: Some(ready),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The rarer pod fields.
pub trait PodFixture {
    /// `status.phase` set to `phase`.
    fn in_phase(self, phase: &str) -> Self;
    /// Label `key` set to `value`.
    fn with_label(self, key: &str, value: &str) -> Self;
}

impl PodFixture for Pod {
    fn in_phase(mut self, phase: &str) -> Self {
        self.status.get_or_insert_default().phase = Some(phase.to_owned());
        self
    }

    fn with_label(mut self, key: &str, value: &str) -> Self {
        self.metadata
            .labels
            .get_or_insert_default()
            .insert(key.to_owned(), value.to_owned());
        self
    }
}

/// The ports of a Service.
pub trait ServiceFixture {
    /// Adds port `port` named `name` (unnamed when empty) with `target` as
    /// its targetPort (`None`: left to default to the port itself).
    fn with_port(self, name: &str, port: i32, target: impl Into<Option<IntOrString>>) -> Self;
}

impl ServiceFixture for Service {
    fn with_port(mut self, name: &str, port: i32, target: impl Into<Option<IntOrString>>) -> Self {
        let spec = self.spec.get_or_insert_with(ServiceSpec::default);
        spec.ports.get_or_insert_default().push(ServicePort {
            name: (!name.is_empty()).then(|| name.to_owned()),
            port,
            target_port: target.into(),
            ..Default::default()
        });
        self
    }
}

/// The readiness and ports of an EndpointSlice's endpoints.
pub trait SliceFixture {
    /// `conditions.ready` set to `ready` on every endpoint so far.
    fn with_ready(self, ready: bool) -> Self;
    /// One more endpoint, `ip`, with `conditions.ready` set to `ready`.
    fn with_endpoint(self, ip: &str, ready: bool) -> Self;
    /// The `(name, number)` ports of the slice, as the endpoint-slice
    /// controller names them after the Service's ports (`""`: unnamed).
    fn with_ports(self, ports: &[(&str, i32)]) -> Self;
}

impl SliceFixture for EndpointSlice {
    fn with_ready(mut self, ready: bool) -> Self {
        for endpoint in self.endpoints.iter_mut().flatten() {
            endpoint.conditions.get_or_insert_default().ready = Some(ready);
        }
        self
    }

    fn with_endpoint(mut self, ip: &str, ready: bool) -> Self {
        self.endpoints
            .get_or_insert_default()
            .push(endpoint(ip, Some(ready)));
        self
    }

    fn with_ports(mut self, ports: &[(&str, i32)]) -> Self {
        self.ports = Some(
            ports
                .iter()
                .map(|(name, port)| discovery::EndpointPort {
                    name: (!name.is_empty()).then(|| (*name).to_owned()),
                    port: Some(*port),
                    ..Default::default()
                })
                .collect(),
        );
        self
    }
}
