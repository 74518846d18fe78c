//! From a [`Target`] and an index snapshot to the set of ready endpoint
//! addresses: Service → its port → EndpointSlices (when the index holds any
//! for the service) or core Endpoints → ready addresses.
//!
//! The ports of an EndpointSlice and of an Endpoints subset carry the
//! *service port's name*, not its `targetPort`: the endpoints controller has
//! already resolved the targetPort (a number, or a container port name that
//! may be a different number on every pod) and written the result under the
//! service port's name. So the port sent for an address is the one in its
//! slice or subset named like the service port; `targetPort` itself is only
//! read as a fallback for a slice port that carries no number.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Endpoints, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::path::Target;
use crate::k8s::Snapshot;

/// The ready addresses behind `target` now; empty when the service or its
/// port does not exist (yet).
pub fn resolve(snapshot: &Snapshot, target: &Target) -> BTreeSet<SocketAddr> {
    let mut out = BTreeSet::new();
    let Some(service) = snapshot.service(&target.namespace, &target.service) else {
        return out;
    };
    let Some(port) = PortRef::of(service, target.port) else {
        return out;
    };
    let mut slices = snapshot
        .endpoint_slices_of_service(&target.namespace, &target.service)
        .peekable();
    if slices.peek().is_some() {
        for slice in slices {
            from_slice(slice, &port, &mut out);
        }
    } else if let Some(endpoints) = snapshot.endpoints(&target.namespace, &target.service) {
        from_endpoints(endpoints, &port, &mut out);
    }
    out
}

/// What identifies a service port's entry in a slice or subset.
#[derive(Debug, PartialEq, Eq)]
struct PortRef<'a> {
    /// The service port's name; `""` when unnamed (allowed only for a
    /// service with a single port), matching an endpoint port with no name.
    name: &'a str,
    /// The targetPort when it is a number (or absent, meaning the service
    /// port itself): the number a slice port without one stands for.
    number: Option<u16>,
}

impl<'a> PortRef<'a> {
    fn of(service: &'a Service, port: u16) -> Option<Self> {
        let ports = service.spec.as_ref()?.ports.as_ref()?;
        let sp: &ServicePort = ports.iter().find(|p| p.port == i32::from(port))?;
        let number = match &sp.target_port {
            None => Some(port),
            Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
            Some(IntOrString::String(s)) => s.parse::<u16>().ok(),
        };
        Some(Self {
            name: sp.name.as_deref().unwrap_or(""),
            number,
        })
    }

    /// The port among a slice's or subset's `(name, port)` pairs this
    /// service port resolved to; `None` when it is not there.
    fn pick<'p>(&self, ports: impl Iterator<Item = (Option<&'p str>, Option<i32>)>) -> Option<u16> {
        let mut only = None;
        let mut count = 0usize;
        for (name, number) in ports {
            let name = name.unwrap_or("");
            if name == self.name {
                return number.map_or(self.number, |n| u16::try_from(n).ok());
            }
            count += 1;
            only = Some(number);
        }
        // An unnamed service port is its service's only port, so a subset
        // listing exactly one port lists it, whatever that port is called.
        match (self.name.is_empty(), count, only) {
            (true, 1, Some(number)) => number.map_or(self.number, |n| u16::try_from(n).ok()),
            _ => None,
        }
    }
}

fn from_slice(slice: &EndpointSlice, port: &PortRef<'_>, out: &mut BTreeSet<SocketAddr>) {
    let ports = slice
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.port));
    let Some(port) = port.pick(ports) else {
        return;
    };
    for endpoint in slice.endpoints.iter().flatten() {
        let ready = endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false);
        if !ready {
            continue;
        }
        for addr in &endpoint.addresses {
            push(addr, port, out);
        }
    }
}

fn from_endpoints(endpoints: &Endpoints, port: &PortRef<'_>, out: &mut BTreeSet<SocketAddr>) {
    for subset in endpoints.subsets.iter().flatten() {
        let ports = subset
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.as_deref(), Some(p.port)));
        let Some(port) = port.pick(ports) else {
            continue;
        };
        for addr in subset.addresses.iter().flatten() {
            push(&addr.ip, port, out);
        }
    }
}

fn push(ip: &str, port: u16, out: &mut BTreeSet<SocketAddr>) {
    match ip.parse::<IpAddr>() {
        Ok(ip) => {
            out.insert(SocketAddr::new(ip, port));
        }
        Err(_) => tracing::debug!(ip, "endpoint address is not an IP; skipped"),
    }
}

#[cfg(test)]
mod tests {
    //! Objects as a real cluster writes them: the endpoints controller names
    //! every endpoint port after the *service* port and resolves a named
    //! targetPort per pod, so two pods may carry different numbers.

    use serde_json::json;

    use super::*;
    use crate::k8s::Index;

    fn service(ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"namespace": "shop", "name": "web"},
            "spec": {"ports": ports},
        }))
        .unwrap()
    }

    fn endpoints(subsets: serde_json::Value) -> Endpoints {
        serde_json::from_value(json!({
            "metadata": {"namespace": "shop", "name": "web"},
            "subsets": subsets,
        }))
        .unwrap()
    }

    fn slice(name: &str, ports: serde_json::Value, ips: &[&str]) -> EndpointSlice {
        let endpoints: Vec<_> = ips
            .iter()
            .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {
                "namespace": "shop",
                "name": name,
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn resolved(index: &Index, port: u16) -> Vec<String> {
        let target = Target {
            namespace: "shop".into(),
            service: "web".into(),
            port,
        };
        resolve(&index.snapshot(), &target)
            .into_iter()
            .map(|a| a.to_string())
            .collect()
    }

    /// Service port `admin` (9990) → targetPort `admin-http`, which the two
    /// pods declare as 9991 and 9992; a second service port must not leak in.
    fn admin_service() -> Service {
        service(json!([
            {"name": "admin", "port": 9990, "targetPort": "admin-http"},
            {"name": "http", "port": 80, "targetPort": 8080},
        ]))
    }

    #[test]
    fn a_named_target_port_resolves_per_pod_through_endpoints_subsets() {
        let index = Index::new();
        index.apply_service(admin_service());
        index.apply_endpoints(endpoints(json!([
            {"addresses": [{"ip": "10.1.0.1"}],
             "ports": [{"name": "admin", "port": 9991}, {"name": "http", "port": 8080}]},
            {"addresses": [{"ip": "10.1.0.2"}],
             "ports": [{"name": "admin", "port": 9992}, {"name": "http", "port": 8080}]},
        ])));
        assert_eq!(resolved(&index, 9990), ["10.1.0.1:9991", "10.1.0.2:9992"]);
        assert_eq!(resolved(&index, 80), ["10.1.0.1:8080", "10.1.0.2:8080"]);
        // A port the service does not have resolves to nothing.
        assert!(resolved(&index, 9991).is_empty());
    }

    #[test]
    fn a_named_target_port_resolves_per_pod_through_endpoint_slices() {
        let index = Index::new();
        index.apply_service(admin_service());
        // The slice controller groups endpoints by their resolved ports.
        index.apply_endpoint_slice(slice(
            "web-a",
            json!([{"name": "admin", "port": 9991}, {"name": "http", "port": 8080}]),
            &["10.1.0.1"],
        ));
        index.apply_endpoint_slice(slice(
            "web-b",
            json!([{"name": "admin", "port": 9992}, {"name": "http", "port": 8080}]),
            &["10.1.0.2", "10.1.0.3"],
        ));
        assert_eq!(
            resolved(&index, 9990),
            ["10.1.0.1:9991", "10.1.0.2:9992", "10.1.0.3:9992"]
        );
        assert_eq!(
            resolved(&index, 80),
            ["10.1.0.1:8080", "10.1.0.2:8080", "10.1.0.3:8080"]
        );
    }

    #[test]
    fn a_single_unnamed_port_matches_the_only_endpoint_port() {
        let index = Index::new();
        index.apply_service(service(json!([{"port": 80, "targetPort": 8080}])));
        index.apply_endpoints(endpoints(json!([
            {"addresses": [{"ip": "10.1.0.1"}], "ports": [{"port": 8080}]},
        ])));
        assert_eq!(resolved(&index, 80), ["10.1.0.1:8080"]);

        let index = Index::new();
        index.apply_service(service(json!([{"port": 80, "targetPort": "web"}])));
        index.apply_endpoint_slice(slice("web-a", json!([{"port": 8081}]), &["10.1.0.4"]));
        assert_eq!(resolved(&index, 80), ["10.1.0.4:8081"]);
    }

    #[test]
    fn a_numeric_target_port_is_read_from_the_endpoints_too() {
        let index = Index::new();
        index.apply_service(service(json!([
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "grpc", "port": 90},
        ])));
        index.apply_endpoints(endpoints(json!([
            {"addresses": [{"ip": "10.1.0.1"}],
             "ports": [{"name": "http", "port": 8080}, {"name": "grpc", "port": 90}]},
        ])));
        assert_eq!(resolved(&index, 80), ["10.1.0.1:8080"]);
        assert_eq!(resolved(&index, 90), ["10.1.0.1:90"]);
    }

    #[test]
    fn an_endpoint_port_named_like_the_target_port_is_not_the_service_port() {
        // Endpoints that list only the targetPort's name (as no controller
        // writes them) resolve to nothing rather than to a guess.
        let index = Index::new();
        index.apply_service(admin_service());
        index.apply_endpoints(endpoints(json!([
            {"addresses": [{"ip": "10.1.0.1"}], "ports": [{"name": "admin-http", "port": 9991}]},
        ])));
        assert!(resolved(&index, 9990).is_empty());
    }

    #[test]
    fn a_slice_port_without_a_number_stands_for_the_target_port() {
        let index = Index::new();
        index.apply_service(service(
            json!([{"name": "http", "port": 80, "targetPort": 8080}]),
        ));
        index.apply_endpoint_slice(slice("web-a", json!([{"name": "http"}]), &["10.1.0.1"]));
        assert_eq!(resolved(&index, 80), ["10.1.0.1:8080"]);
    }
}
