//! Services, kept whole by `"namespace/name"` for destination, which
//! resolves a service port to the ports of its endpoints.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;

use super::{Batch, Index, Snapshot, apply_object, delete_object, object_map, with_object_key};

impl Snapshot {
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Arc<Service>> {
        with_object_key(namespace, name, |key| self.services.get(key))
    }

    /// All Services, ordered by `"namespace/name"`.
    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.values()
    }
}

impl Index {
    pub fn apply_service(&self, service: Service) {
        self.batch(|b| b.apply_service(service))
    }
    pub fn delete_service(&self, service: &Service) {
        self.batch(|b| b.delete_service(service))
    }
    pub fn reset_services(&self, services: impl IntoIterator<Item = Service>) {
        self.batch(|b| b.reset_services(services))
    }
}

impl Batch<'_> {
    pub fn apply_service(&mut self, service: Service) {
        apply_object(&mut self.snapshot.services, service);
    }

    pub fn delete_service(&mut self, service: &Service) {
        delete_object(&mut self.snapshot.services, service);
    }

    pub fn reset_services(&mut self, services: impl IntoIterator<Item = Service>) {
        self.snapshot.services = object_map(services);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::k8s::index::Kind;

    #[test]
    fn services_by_name() {
        let index = Index::new();
        let web = mk_service("ns", "web").with_port("http", 80, None);
        index.apply_service(web.clone());
        index.apply_service(mk_service("ns", "api"));
        index.apply_service(mk_service("other", "web"));
        let snap = index.snapshot();
        assert_eq!(snap.service("ns", "web").map(|s| &**s), Some(&web));
        let names: Vec<String> = snap
            .services()
            .map(|s| s.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["api", "web", "web"], "ordered by namespace/name");

        index.delete_service(&web);
        index.delete(Kind::Service, "ns", "api");
        let snap = index.snapshot();
        assert!(snap.service("ns", "web").is_none());
        assert!(snap.service("ns", "api").is_none());
        assert!(snap.service("other", "web").is_some());
    }
}
