//! Endpoints and EndpointSlices, the addresses behind a Service. Slices
//! are grouped by the Service their `kubernetes.io/service-name` label
//! names; a slice relabelled to another Service moves to its group.

use std::sync::Arc;

use imbl::OrdMap;
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::{
    Batch, FastMap, Index, SERVICE_NAME_LABEL, Snapshot, apply_object, delete_object, key_or_warn,
    namespace_of, object_key, object_map, with_object_key,
};

impl Snapshot {
    pub fn endpoints(&self, namespace: &str, name: &str) -> Option<&Arc<Endpoints>> {
        with_object_key(namespace, name, |key| self.endpoints.get(key))
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

impl Index {
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
}

impl Batch<'_> {
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

    pub(super) fn remove_endpoint_slice(&mut self, key: &str) {
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::k8s::index::Kind;

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
}
