//! A static cluster file: ordinary Kubernetes YAML (multi-document and/or
//! `kind: List`, in any order) standing in for an API server (`--cluster FILE`).
//!
//! Pods, ReplicaSets, Deployments, Services, Endpoints and EndpointSlices feed
//! the [`Index`]; Namespaces are counted; any other kind is ignored with one
//! log line. The file is parsed and checked whole before anything is applied,
//! and then applied as one change, so a bad file leaves the index untouched.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};
use serde::Deserialize;
use serde_yaml::Value;

use super::index::{Index, Kind, PodInfo, names};

/// One object of a cluster file that the index uses.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Pod(Pod),
    ReplicaSet(ReplicaSet),
    Deployment(Deployment),
    Service(Service),
    Endpoints(Endpoints),
    EndpointSlice(EndpointSlice),
    Namespace(Namespace),
}

macro_rules! from_impls {
    ($($kind:ident),*) => {$(
        impl From<$kind> for Object {
            fn from(obj: $kind) -> Self {
                Object::$kind(obj)
            }
        }
    )*};
}
from_impls!(
    Pod,
    ReplicaSet,
    Deployment,
    Service,
    Endpoints,
    EndpointSlice,
    Namespace
);

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Pod(_) => Pod::KIND,
            Object::ReplicaSet(_) => ReplicaSet::KIND,
            Object::Deployment(_) => Deployment::KIND,
            Object::Service(_) => Service::KIND,
            Object::Endpoints(_) => Endpoints::KIND,
            Object::EndpointSlice(_) => EndpointSlice::KIND,
            Object::Namespace(_) => Namespace::KIND,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Pod(o) => &o.metadata,
            Object::ReplicaSet(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::Endpoints(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Namespace(o) => &o.metadata,
        }
    }

    fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        match self {
            Object::Pod(o) => serde_yaml::to_string(o),
            Object::ReplicaSet(o) => serde_yaml::to_string(o),
            Object::Deployment(o) => serde_yaml::to_string(o),
            Object::Service(o) => serde_yaml::to_string(o),
            Object::Endpoints(o) => serde_yaml::to_string(o),
            Object::EndpointSlice(o) => serde_yaml::to_string(o),
            Object::Namespace(o) => serde_yaml::to_string(o),
        }
    }
}

/// Where in a cluster file a problem is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub path: Option<PathBuf>,
    /// 1-based, counting every `---`-separated document, empty ones included.
    pub document: usize,
    /// 1-based index in the document's `List`, if the problem is in one.
    pub item: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "cluster file {}, ", path.display())?;
        }
        write!(f, "document {}", self.document)?;
        if let Some(item) = self.item {
            write!(f, ", List item {item}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterFileError {
    #[error("cannot read cluster file {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    /// Not YAML, not a Kubernetes object, or not a valid object of its kind.
    #[error("{at}: {reason}")]
    Invalid { at: Location, reason: String },
}

/// How many objects of each kind a cluster file held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadSummary {
    pub pods: usize,
    pub replica_sets: usize,
    pub deployments: usize,
    pub services: usize,
    pub endpoints: usize,
    pub endpoint_slices: usize,
    pub namespaces: usize,
    /// Objects of other kinds.
    pub ignored: usize,
}

impl fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} pods, {} replicasets, {} deployments, {} services, {} endpoints, \
             {} endpointslices, {} namespaces, {} ignored",
            self.pods,
            self.replica_sets,
            self.deployments,
            self.services,
            self.endpoints,
            self.endpoint_slices,
            self.namespaces,
            self.ignored,
        )
    }
}

/// Reads, checks and applies a cluster file: every kind is replaced by the
/// file's objects in one change, then marked synced. On error the index is
/// left as it was.
pub fn load(path: &Path, index: &Index) -> Result<LoadSummary, ClusterFileError> {
    let text = std::fs::read_to_string(path).map_err(|error| ClusterFileError::Read {
        path: path.to_owned(),
        error,
    })?;
    let (objects, ignored) = parse_counting(&text).map_err(|mut error| {
        if let ClusterFileError::Invalid { at, .. } = &mut error {
            at.path = Some(path.to_owned());
        }
        error
    })?;
    let summary = LoadSummary {
        ignored,
        ..apply(objects, index)
    };
    tracing::info!(path = %path.display(), %summary, "loaded cluster file");
    Ok(summary)
}

/// Replaces every kind in `index` with `objects`, as one change, and marks
/// every kind synced. For generated clusters (`--demo`) as well as files.
pub fn apply(objects: Vec<Object>, index: &Index) -> LoadSummary {
    let mut summary = LoadSummary::default();
    let mut pods = Vec::new();
    let mut replica_sets = Vec::new();
    let mut deployments = Vec::new();
    let mut services = Vec::new();
    let mut endpoints = Vec::new();
    let mut endpoint_slices = Vec::new();
    for object in objects {
        match object {
            Object::Pod(o) => pods.push(o),
            Object::ReplicaSet(o) => replica_sets.push(o),
            Object::Deployment(o) => deployments.push(o),
            Object::Service(o) => services.push(o),
            Object::Endpoints(o) => endpoints.push(o),
            Object::EndpointSlice(o) => endpoint_slices.push(o),
            Object::Namespace(_) => summary.namespaces += 1,
        }
    }
    summary.pods = pods.len();
    summary.replica_sets = replica_sets.len();
    summary.deployments = deployments.len();
    summary.services = services.len();
    summary.endpoints = endpoints.len();
    summary.endpoint_slices = endpoint_slices.len();

    index.batch(|b| {
        b.reset_pods(pods);
        b.reset_replica_sets(replica_sets);
        b.reset_deployments(deployments);
        b.reset_services(services);
        b.reset_endpoints(endpoints);
        b.reset_endpoint_slices(endpoint_slices);
    });
    for kind in Kind::ALL {
        index.mark_synced(kind);
    }
    summary
}

/// Parses a cluster file into the objects the index uses, checking each.
/// Objects of other kinds are logged and left out.
pub fn parse(text: &str) -> Result<Vec<Object>, ClusterFileError> {
    parse_counting(text).map(|(objects, _ignored)| objects)
}

/// Renders objects as a multi-document YAML cluster file that [`parse`] reads back.
pub fn render(objects: &[Object]) -> String {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        let yaml = object
            .to_yaml()
            .expect("k8s-openapi objects always serialise to YAML");
        out.push_str(&yaml);
    }
    out
}

/// [`parse`], also returning how many objects of other kinds were left out.
fn parse_counting(text: &str) -> Result<(Vec<Object>, usize), ClusterFileError> {
    let mut objects = Vec::new();
    let mut ignored = 0;
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let mut at = Location {
            path: None,
            document: i + 1,
            item: None,
        };
        let mut value = Value::deserialize(document).map_err(|e| invalid(&at, e))?;
        if value.is_null() {
            continue;
        }
        value.apply_merge().map_err(|e| invalid(&at, e))?;
        let (api_version, kind) = type_of(&value).map_err(|e| invalid(&at, e))?;
        if kind == "List" {
            let items = match value.get_mut("items").map(std::mem::take) {
                Some(Value::Sequence(items)) => items,
                None | Some(Value::Null) => Vec::new(),
                Some(_) => return Err(invalid(&at, "List items is not a sequence")),
            };
            for (j, item) in items.into_iter().enumerate() {
                at.item = Some(j + 1);
                let (api_version, kind) = type_of(&item).map_err(|e| invalid(&at, e))?;
                if kind == "List" {
                    return Err(invalid(&at, "a List inside a List is not supported"));
                }
                match decode(&api_version, &kind, item).map_err(|e| invalid(&at, e))? {
                    Some(object) => objects.push(object),
                    None => ignored += 1,
                }
            }
        } else {
            match decode(&api_version, &kind, value).map_err(|e| invalid(&at, e))? {
                Some(object) => objects.push(object),
                None => ignored += 1,
            }
        }
    }
    Ok((objects, ignored))
}

fn invalid(at: &Location, reason: impl fmt::Display) -> ClusterFileError {
    ClusterFileError::Invalid {
        at: at.clone(),
        reason: reason.to_string(),
    }
}

/// `apiVersion` and `kind` of a document.
fn type_of(value: &Value) -> Result<(String, String), String> {
    if !value.is_mapping() {
        return Err("not a Kubernetes object (expected a mapping)".to_owned());
    }
    let field = |name: &str| match value.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(format!("{name} is not a non-empty string")),
        None => Err(format!("not a Kubernetes object (no {name})")),
    };
    Ok((field("apiVersion")?, field("kind")?))
}

/// The typed object, `None` for a kind the index does not use.
fn decode(api_version: &str, kind: &str, value: Value) -> Result<Option<Object>, String> {
    fn typed<T>(value: Value) -> Result<T, String>
    where
        T: Resource + Metadata<Ty = ObjectMeta> + serde::de::DeserializeOwned,
    {
        let object: T =
            serde_yaml::from_value(value).map_err(|e| format!("invalid {}: {e}", T::KIND))?;
        names(object.metadata()).map_err(|e| format!("invalid {}: {e}", T::KIND))?;
        Ok(object)
    }
    fn is<T: Resource>(api_version: &str, kind: &str) -> bool {
        api_version == T::API_VERSION && kind == T::KIND
    }

    let object = if is::<Pod>(api_version, kind) {
        let pod: Pod = typed(value)?;
        // Fail on what the index would otherwise skip (an unparsable IP).
        PodInfo::from_pod(&pod).map_err(|e| format!("invalid Pod: {e}"))?;
        Object::Pod(pod)
    } else if is::<ReplicaSet>(api_version, kind) {
        Object::ReplicaSet(typed(value)?)
    } else if is::<Deployment>(api_version, kind) {
        Object::Deployment(typed(value)?)
    } else if is::<Service>(api_version, kind) {
        Object::Service(typed(value)?)
    } else if is::<Endpoints>(api_version, kind) {
        Object::Endpoints(typed(value)?)
    } else if is::<EndpointSlice>(api_version, kind) {
        Object::EndpointSlice(typed(value)?)
    } else if is::<Namespace>(api_version, kind) {
        Object::Namespace(typed(value)?)
    } else {
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        tracing::info!(
            api_version,
            kind,
            name,
            "ignoring object of a kind the index does not use"
        );
        return Ok(None);
    };
    Ok(Some(object))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test IPs are valid")
    }

    const CLUSTER: &str = r#"
# Pods first, their ReplicaSet and Deployment later.
apiVersion: v1
kind: Pod
metadata:
  name: web-5f9d-x1
  namespace: emojivoto
  ownerReferences:
  - apiVersion: apps/v1
    kind: ReplicaSet
    name: web-5f9d
    uid: u1
    controller: true
status:
  phase: Running
  podIP: 192.0.2.10
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata:
    name: voting-7c4-a
    namespace: emojivoto
    ownerReferences:
    - {apiVersion: apps/v1, kind: ReplicaSet, name: voting-7c4, uid: u2, controller: true}
  status:
    phase: Running
    podIP: 2001:db8::20
- apiVersion: apps/v1
  kind: ReplicaSet
  metadata:
    name: voting-7c4
    namespace: emojivoto
    ownerReferences:
    - {apiVersion: apps/v1, kind: Deployment, name: voting, uid: u3, controller: true}
  spec:
    selector: {matchLabels: {app: voting}}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings, namespace: emojivoto}
---
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-5f9d
  namespace: emojivoto
  ownerReferences:
  - {apiVersion: apps/v1, kind: Deployment, name: web, uid: u4, controller: true}
spec:
  selector: {matchLabels: {app: web}}
---
apiVersion: v1
kind: Namespace
metadata: {name: emojivoto}
---
apiVersion: v1
kind: Service
metadata: {name: web-svc, namespace: emojivoto}
spec:
  ports: [{name: http, port: 80, targetPort: web-http}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: web-svc, namespace: emojivoto}
subsets:
- addresses: [{ip: 192.0.2.10}]
  ports: [{name: http, port: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-svc-abcde
  namespace: emojivoto
  labels: {kubernetes.io/service-name: web-svc}
addressType: IPv4
endpoints:
- addresses: [192.0.2.10]
  conditions: {ready: true}
ports: [{name: http, port: 8080}]
"#;

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("conduit-k8s-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("temp dir is writable");
        path
    }

    #[test]
    fn loads_a_multi_document_file_with_a_list_in_any_order() {
        let path = temp_file("cluster.yaml", CLUSTER);
        let index = Index::new();
        let summary = load(&path, &index).expect("the file is valid");
        std::fs::remove_file(&path).ok();

        assert_eq!(
            summary,
            LoadSummary {
                pods: 2,
                replica_sets: 2,
                deployments: 0,
                services: 1,
                endpoints: 1,
                endpoint_slices: 1,
                namespaces: 1,
                ignored: 1,
            }
        );
        let snap = index.snapshot();
        let web = snap
            .workload_by_ip(&ip("192.0.2.10"))
            .expect("web pod owns its IP");
        assert_eq!(&*web.pod, "emojivoto/web-5f9d-x1");
        assert_eq!(web.deployment.as_deref(), Some("emojivoto/web"));
        let voting = snap
            .workload_by_ip(&ip("2001:db8::20"))
            .expect("voting pod owns its IP");
        assert_eq!(voting.deployment.as_deref(), Some("emojivoto/voting"));
        assert!(snap.service("emojivoto", "web-svc").is_some());
        assert!(snap.endpoints("emojivoto", "web-svc").is_some());
        assert_eq!(
            snap.endpoint_slices_of_service("emojivoto", "web-svc")
                .count(),
            1
        );
        assert!(index.is_synced(&Kind::ALL));
    }

    #[test]
    fn a_broken_document_is_named_and_nothing_is_applied() {
        let index = Index::new();
        let broken_yaml = format!("{CLUSTER}---\nkind: Pod\nmetadata: {{name: [\n");
        let path = temp_file("broken.yaml", &broken_yaml);
        let error = load(&path, &index).expect_err("document 9 is not YAML");
        std::fs::remove_file(&path).ok();
        let message = error.to_string();
        assert!(message.contains("document 9:"), "{message}");
        assert!(message.contains("broken.yaml"), "{message}");
        assert_eq!(index.snapshot().pod_count(), 0);
        assert!(!index.is_synced(&[Kind::Pod]));

        let bad_pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n\
                       apiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec: {containers: 5}\n";
        let message = parse(bad_pod)
            .expect_err("document 2 is not a Pod")
            .to_string();
        assert!(message.starts_with("document 2: invalid Pod:"), "{message}");

        let bad_ip = "apiVersion: v1\nkind: List\nitems:\n\
                      - {apiVersion: v1, kind: Namespace, metadata: {name: ns}}\n\
                      - {apiVersion: v1, kind: Pod, metadata: {name: p}, status: {podIP: nope}}\n";
        let message = parse(bad_ip)
            .expect_err("the pod's IP is invalid")
            .to_string();
        assert!(
            message.starts_with("document 1, List item 2: invalid Pod:"),
            "{message}"
        );

        let nameless = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {namespace: ns}\nspec: {selector: {}}\n";
        let message = parse(nameless).expect_err("the RS has no name").to_string();
        assert!(message.contains("metadata.name"), "{message}");

        let message = parse("just: a mapping\n").expect_err("no kind").to_string();
        assert_eq!(
            message,
            "document 1: not a Kubernetes object (no apiVersion)"
        );
    }

    #[test]
    fn unknown_kinds_and_empty_documents_are_skipped() {
        let text = "---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n\
                    apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: d}\n---\n\
                    apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n";
        let (objects, ignored) = parse_counting(text).expect("the file is valid");
        assert_eq!(ignored, 2);
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].kind(), "Pod");
        assert_eq!(parse("").expect("empty is valid"), []);
    }

    #[test]
    fn render_round_trips_through_parse() {
        let objects = parse(CLUSTER).expect("the file is valid");
        let rendered = render(&objects);
        assert_eq!(parse(&rendered).expect("rendered YAML parses"), objects);
    }

    #[test]
    fn reloading_replaces_the_previous_contents() {
        let index = Index::new();
        apply(parse(CLUSTER).expect("the file is valid"), &index);
        let only_a_pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ns}\n\
                          status: {phase: Running, podIP: 192.0.2.99}\n";
        let summary = apply(parse(only_a_pod).expect("the file is valid"), &index);
        assert_eq!(summary.pods, 1);

        let snap = index.snapshot();
        assert_eq!(snap.pod_count(), 1);
        assert_eq!(snap.workload_by_ip(&ip("192.0.2.10")), None);
        assert!(snap.service("emojivoto", "web-svc").is_none());
        assert_eq!(
            snap.endpoint_slices_of_service("emojivoto", "web-svc")
                .count(),
            0
        );
    }
}
