//! From a [`Target`] and an index snapshot to the set of ready endpoint
//! addresses: Service → its port's `targetPort` → EndpointSlices (when the
//! index holds any for the service) or core Endpoints → ready addresses.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Endpoints, Service};
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
    let Some(port) = target_port(service, target.port) else {
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

/// The endpoint port a service port sends traffic to.
#[derive(Debug, PartialEq, Eq)]
enum Port {
    Number(u16),
    /// Resolved per subset / slice through its port names.
    Named(String),
}

fn target_port(service: &Service, port: u16) -> Option<Port> {
    let ports = service.spec.as_ref()?.ports.as_ref()?;
    let sp = ports.iter().find(|p| p.port == i32::from(port))?;
    match &sp.target_port {
        None => Some(Port::Number(port)),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok().map(Port::Number),
        Some(IntOrString::String(s)) => match s.parse::<u16>() {
            Ok(n) => Some(Port::Number(n)),
            Err(_) => Some(Port::Named(s.clone())),
        },
    }
}

fn named<'a>(
    port: &Port,
    mut names: impl Iterator<Item = (Option<&'a str>, Option<i32>)>,
) -> Option<u16> {
    match port {
        Port::Number(n) => Some(*n),
        Port::Named(name) => names
            .find(|(n, _)| *n == Some(name.as_str()))
            .and_then(|(_, p)| u16::try_from(p?).ok()),
    }
}

fn from_slice(slice: &EndpointSlice, port: &Port, out: &mut BTreeSet<SocketAddr>) {
    let names = slice
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.port));
    let Some(port) = named(port, names) else {
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

fn from_endpoints(endpoints: &Endpoints, port: &Port, out: &mut BTreeSet<SocketAddr>) {
    for subset in endpoints.subsets.iter().flatten() {
        let names = subset
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.as_deref(), Some(p.port)));
        let Some(port) = named(port, names) else {
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
