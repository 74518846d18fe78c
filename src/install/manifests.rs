//! The documents of `conduit install`, in the order `kubectl apply` should
//! create them: the namespace, then what each workload needs (its service
//! account and RBAC, its Services, its ConfigMap) before the workload.
//!
//! Names: namespaced objects keep the original's names (`api`,
//! `proxy-api`, `controller`, `web`, `prometheus`, `prometheus-config`).
//! The controller's ClusterRole and ClusterRoleBinding are cluster-wide, so
//! their name carries the namespace ([`controller_cluster_role_name`]) and
//! two installs in different namespaces never share or overwrite them.
//! Prometheus reads pods of its own namespace only, so its RBAC is a Role
//! and RoleBinding there, not a cluster-wide grant.
//!
//! Several controller replicas (`--controller-replicas` above 1): the
//! controller becomes a StatefulSet governed by the headless Service
//! `telemetry-headless`, so each replica has a DNS name of its own
//! (`controller-0.telemetry-headless.NS.svc.cluster.local`), and public-api
//! is given the list of them all ([`replica_telemetry_addrs`]); a
//! PodDisruptionBudget and a preferred anti-affinity keep the replicas
//! apart and most of them up. One replica is the original's Deployment,
//! byte for byte.

use super::Config;
use super::yaml::{self, Node, int, map, s, seq, strs};

/// The official image at a current 2.x release; the scrape config uses
/// only options every 2.x release reads.
pub const PROMETHEUS_IMAGE: &str = "prom/prometheus:v2.53.2";

/// The port name Prometheus keeps targets by: every component's
/// `-metrics-addr` (`/metrics`, `/ping`, `/ready`) is declared under it.
const ADMIN_PORT_NAME: &str = "admin-http";

/// Prometheus serves its API, UI and its own metrics on one port.
const PROMETHEUS_PORT: u16 = 9090;

/// How long Prometheus keeps samples: enough for the dashboard's and
/// `conduit stat`'s windows (at most 1 h) with room to look back, small
/// enough for an emptyDir.
const PROMETHEUS_RETENTION: &str = "6h";

/// The original's scrape interval; a 10 s Stat window needs at least one
/// scrape inside it.
const SCRAPE_INTERVAL: &str = "10s";

/// Where the ConfigMap is mounted, and the file Prometheus is told to read.
const PROMETHEUS_CONFIG_DIR: &str = "/etc/prometheus";
const PROMETHEUS_CONFIG_FILE: &str = "prometheus.yml";
const PROMETHEUS_DATA_DIR: &str = "/prometheus";

/// Every object carries this label too, so `kubectl get all -l
/// conduit.io/plane=control` lists the control plane.
const PLANE_LABEL: (&str, &str) = ("conduit.io/plane", "control");

/// Which client made an object, as the original recorded it.
const CREATED_BY_ANNOTATION: &str = "conduit.io/created-by";

/// The version of this binary (not `--version`, which tags the images).
const CLI_VERSION: &str = concat!("conduit/cli v", env!("CARGO_PKG_VERSION"));

/// The controller pod's service account (namespaced).
const CONTROLLER_SERVICE_ACCOUNT: &str = "conduit-controller";
/// Prometheus' service account and its Role and RoleBinding (namespaced).
const PROMETHEUS_SERVICE_ACCOUNT: &str = "conduit-prometheus";

/// Namespaces whose pods telemetry leaves out of ListPods: the cluster's
/// own, as the original's install did.
const IGNORED_NAMESPACES: &str = "kube-system";

/// The user and group every pod runs as: the images' non-root `USER`
/// (`deploy/Dockerfile`), also used for Prometheus, whose data directory
/// is an `emptyDir` made writable through `fsGroup`.
const RUN_AS: i64 = 65532;

/// The headless Service (`clusterIP: None`) that governs the controller
/// StatefulSet when there are several replicas: it gives each replica its
/// DNS name and exposes only the telemetry port, which public-api calls on
/// every replica.
const TELEMETRY_HEADLESS_SERVICE: &str = "telemetry-headless";

/// The controller container's environment variable that the downward API
/// fills with the pod's name (`metadata.name`).
const POD_NAME_ENV: &str = "POD_NAME";

/// The remote-write external label telling replicas' series apart.
const REPLICA_LABEL: &str = "replica";

/// A preferred anti-affinity term's weight: the most Kubernetes accepts,
/// so spreading replicas over nodes outweighs every other preference.
const ANTI_AFFINITY_WEIGHT: i64 = 100;

/// The node label replicas are spread over: one replica per node, as
/// `linkerd install --ha` spreads its control plane.
const SPREAD_TOPOLOGY_KEY: &str = "kubernetes.io/hostname";

/// Replicas a voluntary disruption (a node drain, an eviction) may take at
/// once: one, whatever the count, so a drain never blocks and the others
/// keep serving. (`minAvailable: N-1` would say the same for N but go stale
/// after a `kubectl scale`.)
const MAX_UNAVAILABLE_REPLICAS: i64 = 1;

/// Where the web image keeps the dashboard's files.
const WEB_STATIC_DIR: &str = "/dist";
const WEB_TEMPLATE_DIR: &str = "/templates";

/// Resource requests, so the scheduler reserves what a component needs at
/// rest. No limits: a memory limit turns a burst of new series into an OOM
/// kill of the ingester, while `-max-series` bounds it without losing data.
#[derive(Clone, Copy, Debug)]
struct Requests {
    cpu: &'static str,
    memory: &'static str,
}

/// Components that forward calls and hold no cluster state.
const FORWARDER: Requests = Requests {
    cpu: "10m",
    memory: "32Mi",
};
/// Components that keep a copy of the cluster index (destination, tap).
const INDEXED: Requests = Requests {
    cpu: "20m",
    memory: "64Mi",
};
/// The ingester: decodes every proxy's reports and holds the live series.
const TELEMETRY: Requests = Requests {
    cpu: "100m",
    memory: "256Mi",
};
/// Prometheus with `PROMETHEUS_RETENTION` of the mesh series.
const PROMETHEUS: Requests = Requests {
    cpu: "100m",
    memory: "256Mi",
};

/// One server component of the control plane: a container of the
/// controller pod (or the web pod).
#[derive(Clone, Copy, Debug)]
pub struct Component {
    pub name: &'static str,
    /// The serving port's name: `http` or `grpc`.
    pub port_name: &'static str,
    /// `-addr`.
    pub port: u16,
    /// `-metrics-addr`: the `admin-http` port.
    pub admin_port: u16,
    requests: Requests,
}

const PUBLIC_API: Component = Component {
    name: "public-api",
    port_name: "http",
    port: 8085,
    admin_port: 9995,
    requests: FORWARDER,
};
const DESTINATION: Component = Component {
    name: "destination",
    port_name: "grpc",
    port: 8089,
    admin_port: 9999,
    requests: INDEXED,
};
const PROXY_API: Component = Component {
    name: "proxy-api",
    port_name: "grpc",
    port: 8086,
    admin_port: 9996,
    requests: FORWARDER,
};
const TAP: Component = Component {
    name: "tap",
    port_name: "grpc",
    port: 8088,
    admin_port: 9998,
    requests: INDEXED,
};
const TELEMETRY_COMPONENT: Component = Component {
    name: "telemetry",
    port_name: "grpc",
    port: 8087,
    admin_port: 9997,
    requests: TELEMETRY,
};
const WEB: Component = Component {
    name: "web",
    port_name: "http",
    port: 8084,
    admin_port: 9994,
    requests: FORWARDER,
};

/// The controller pod's containers, in the original's order.
pub const CONTROLLER_COMPONENTS: [Component; 5] =
    [PUBLIC_API, DESTINATION, PROXY_API, TAP, TELEMETRY_COMPONENT];

/// The controller's ClusterRole and ClusterRoleBinding.
pub fn controller_cluster_role_name(namespace: &str) -> String {
    format!("conduit-controller-{namespace}")
}

/// The whole install output: a comment line, then each section's title
/// comment and its documents.
pub fn render(cfg: &Config) -> String {
    let sections = [
        ("Namespace", vec![namespace(cfg)]),
        (
            "Controller RBAC",
            vec![
                service_account(cfg, CONTROLLER_SERVICE_ACCOUNT, "controller"),
                controller_cluster_role(cfg),
                controller_cluster_role_binding(cfg),
            ],
        ),
        (
            "Controller",
            vec![
                service(
                    cfg,
                    "api",
                    "controller",
                    &[(PUBLIC_API.port_name, PUBLIC_API.port)],
                ),
                service(
                    cfg,
                    "proxy-api",
                    "controller",
                    &[(PROXY_API.port_name, PROXY_API.port)],
                ),
            ]
            .into_iter()
            .chain(replicated(cfg).then(|| telemetry_headless_service(cfg)))
            .chain([controller_workload(cfg)])
            .chain(replicated(cfg).then(|| controller_disruption_budget(cfg)))
            .chain(cfg.network_policy.then(|| controller_network_policy(cfg)))
            .collect(),
        ),
        (
            "Web",
            vec![
                service(
                    cfg,
                    "web",
                    "web",
                    &[(WEB.port_name, WEB.port), (ADMIN_PORT_NAME, WEB.admin_port)],
                ),
                web_deployment(cfg),
            ],
        ),
        (
            "Prometheus",
            vec![
                service_account(cfg, PROMETHEUS_SERVICE_ACCOUNT, "prometheus"),
                prometheus_role(cfg),
                prometheus_role_binding(cfg),
                service(
                    cfg,
                    "prometheus",
                    "prometheus",
                    &[(ADMIN_PORT_NAME, PROMETHEUS_PORT)],
                ),
                prometheus_config_map(cfg),
                prometheus_deployment(cfg),
            ],
        ),
    ];
    let mut out = format!(
        "# The Conduit control plane in namespace {ns}, printed by `conduit install` ({CLI_VERSION}).\n",
        ns = cfg.namespace
    );
    for (title, docs) in sections {
        out.push_str(&format!("\n### {title} ###\n"));
        for doc in docs {
            out.push_str("---\n");
            out.push_str(&yaml::to_string(&doc));
        }
    }
    out
}

/// The Prometheus configuration (`prometheus.yml` of the ConfigMap): one
/// job keeping every container port named `admin-http` of the control
/// plane's namespace — the controller's five components, web, and
/// Prometheus itself — labelled with the container (`component`) and the
/// pod (`pod`).
pub fn prometheus_config(namespace: &str) -> String {
    let relabel = |source: &str, action: &str, last: (&'static str, &str)| {
        map([
            ("source_labels", strs([source])),
            ("action", s(action)),
            (last.0, s(last.1)),
        ])
    };
    let config = map([
        (
            "global",
            map([
                ("scrape_interval", s(SCRAPE_INTERVAL)),
                ("evaluation_interval", s(SCRAPE_INTERVAL)),
            ]),
        ),
        (
            "scrape_configs",
            seq([map([
                ("job_name", s("conduit-controller")),
                (
                    "kubernetes_sd_configs",
                    seq([map([
                        ("role", s("pod")),
                        ("namespaces", map([("names", strs([namespace]))])),
                    ])]),
                ),
                (
                    "relabel_configs",
                    seq([
                        relabel(
                            "__meta_kubernetes_pod_container_port_name",
                            "keep",
                            ("regex", ADMIN_PORT_NAME),
                        ),
                        relabel(
                            "__meta_kubernetes_pod_container_name",
                            "replace",
                            ("target_label", "component"),
                        ),
                        relabel(
                            "__meta_kubernetes_pod_name",
                            "replace",
                            ("target_label", "pod"),
                        ),
                    ]),
                ),
            ])]),
        ),
    ]);
    format!(
        "# Scrapes every container port named {ADMIN_PORT_NAME} in namespace {namespace}: the Conduit\n\
         # controller's components, the web dashboard and this Prometheus.\n{}",
        yaml::to_string(&config)
    )
}

fn labels(app: &str) -> Node {
    map([("app", s(app)), (PLANE_LABEL.0, s(PLANE_LABEL.1))])
}

/// `metadata` of an object of the namespace (or, with `namespace: None`,
/// of a cluster-scoped one).
fn metadata(name: &str, namespace: Option<&str>, app: &str) -> Node {
    let mut entries = vec![("name", s(name))];
    if let Some(namespace) = namespace {
        entries.push(("namespace", s(namespace)));
    }
    entries.push(("labels", labels(app)));
    entries.push((
        "annotations",
        map([(CREATED_BY_ANNOTATION, s(CLI_VERSION))]),
    ));
    Node::Map(entries)
}

fn object(api_version: &str, kind: &str, metadata: Node, rest: Vec<(&'static str, Node)>) -> Node {
    let mut entries = vec![
        ("apiVersion", s(api_version)),
        ("kind", s(kind)),
        ("metadata", metadata),
    ];
    entries.extend(rest);
    Node::Map(entries)
}

fn namespace(cfg: &Config) -> Node {
    let metadata = map([
        ("name", s(&cfg.namespace)),
        ("labels", map([(PLANE_LABEL.0, s(PLANE_LABEL.1))])),
        (
            "annotations",
            map([(CREATED_BY_ANNOTATION, s(CLI_VERSION))]),
        ),
    ]);
    object("v1", "Namespace", metadata, vec![])
}

fn service_account(cfg: &Config, name: &str, app: &str) -> Node {
    object(
        "v1",
        "ServiceAccount",
        metadata(name, Some(&cfg.namespace), app),
        vec![],
    )
}

/// A read-only rule: what a `kube` watcher (list, then watch) and a
/// Prometheus service discovery need.
fn read_rule(api_group: &str, resources: &[&str]) -> Node {
    map([
        ("apiGroups", strs([api_group])),
        ("resources", strs(resources.iter().copied())),
        ("verbs", strs(["get", "list", "watch"])),
    ])
}

/// Exactly the kinds `k8s::watch` lists and watches cluster-wide:
/// Pods, ReplicaSets and Deployments (Pod → ReplicaSet → Deployment),
/// Services, and EndpointSlices or, on clusters without them, Endpoints.
/// (The discovery request choosing between those two is open to every
/// authenticated client.)
fn controller_cluster_role(cfg: &Config) -> Node {
    object(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        metadata(
            &controller_cluster_role_name(&cfg.namespace),
            None,
            "controller",
        ),
        vec![(
            "rules",
            seq([
                read_rule("", &["pods", "services", "endpoints"]),
                read_rule("apps", &["replicasets", "deployments"]),
                read_rule("discovery.k8s.io", &["endpointslices"]),
            ]),
        )],
    )
}

fn subjects(cfg: &Config, service_account: &str) -> Node {
    seq([map([
        ("kind", s("ServiceAccount")),
        ("name", s(service_account)),
        ("namespace", s(&cfg.namespace)),
    ])])
}

fn role_ref(kind: &str, name: &str) -> Node {
    map([
        ("apiGroup", s("rbac.authorization.k8s.io")),
        ("kind", s(kind)),
        ("name", s(name)),
    ])
}

fn controller_cluster_role_binding(cfg: &Config) -> Node {
    let name = controller_cluster_role_name(&cfg.namespace);
    object(
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        metadata(&name, None, "controller"),
        vec![
            ("roleRef", role_ref("ClusterRole", &name)),
            ("subjects", subjects(cfg, CONTROLLER_SERVICE_ACCOUNT)),
        ],
    )
}

/// Prometheus' pod discovery, limited to its own namespace.
fn prometheus_role(cfg: &Config) -> Node {
    object(
        "rbac.authorization.k8s.io/v1",
        "Role",
        metadata(
            PROMETHEUS_SERVICE_ACCOUNT,
            Some(&cfg.namespace),
            "prometheus",
        ),
        vec![("rules", seq([read_rule("", &["pods"])]))],
    )
}

fn prometheus_role_binding(cfg: &Config) -> Node {
    object(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        metadata(
            PROMETHEUS_SERVICE_ACCOUNT,
            Some(&cfg.namespace),
            "prometheus",
        ),
        vec![
            ("roleRef", role_ref("Role", PROMETHEUS_SERVICE_ACCOUNT)),
            ("subjects", subjects(cfg, PROMETHEUS_SERVICE_ACCOUNT)),
        ],
    )
}

fn service(cfg: &Config, name: &str, app: &str, ports: &[(&str, u16)]) -> Node {
    let ports = ports.iter().map(|(name, port)| {
        map([
            ("name", s(*name)),
            ("port", int(*port)),
            ("targetPort", int(*port)),
        ])
    });
    object(
        "v1",
        "Service",
        metadata(name, Some(&cfg.namespace), app),
        vec![(
            "spec",
            map([
                ("type", s("ClusterIP")),
                ("selector", labels(app)),
                ("ports", seq(ports)),
            ]),
        )],
    )
}

/// Whether the controller runs as several replicas.
fn replicated(cfg: &Config) -> bool {
    cfg.controller_replicas > 1
}

/// `telemetry-headless`: no cluster IP, one DNS record per controller
/// replica. Not-ready replicas are published too: public-api's readiness
/// waits on its telemetry addresses, so a replica's name must resolve
/// before every replica is ready, or no replica ever would be.
fn telemetry_headless_service(cfg: &Config) -> Node {
    let port = TELEMETRY_COMPONENT;
    object(
        "v1",
        "Service",
        metadata(
            TELEMETRY_HEADLESS_SERVICE,
            Some(&cfg.namespace),
            "controller",
        ),
        vec![(
            "spec",
            map([
                ("clusterIP", s("None")),
                ("publishNotReadyAddresses", Node::Bool(true)),
                ("selector", labels("controller")),
                (
                    "ports",
                    seq([map([
                        ("name", s(port.port_name)),
                        ("port", int(port.port)),
                        ("targetPort", int(port.port)),
                    ])]),
                ),
            ]),
        )],
    )
}

/// Every telemetry replica, as public-api's `-telemetry-addr` lists them:
/// the StatefulSet's pods by their stable names. The list is fixed here,
/// so the replica count changes by running `conduit install` again, not
/// by `kubectl scale`.
fn replica_telemetry_addrs(cfg: &Config) -> String {
    (0..cfg.controller_replicas)
        .map(|i| {
            format!(
                "controller-{i}.{TELEMETRY_HEADLESS_SERVICE}.{}.svc.cluster.local:{}",
                cfg.namespace, TELEMETRY_COMPONENT.port
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// At most one controller replica voluntarily down at a time.
fn controller_disruption_budget(cfg: &Config) -> Node {
    object(
        "policy/v1",
        "PodDisruptionBudget",
        metadata("controller", Some(&cfg.namespace), "controller"),
        vec![(
            "spec",
            map([
                ("maxUnavailable", int(MAX_UNAVAILABLE_REPLICAS)),
                ("selector", map([("matchLabels", labels("controller"))])),
            ]),
        )],
    )
}

/// Replicas on different nodes where the cluster has them (preferred, not
/// required, so a cluster with fewer nodes than replicas still runs all).
fn controller_anti_affinity() -> Node {
    map([(
        "podAntiAffinity",
        map([(
            "preferredDuringSchedulingIgnoredDuringExecution",
            seq([map([
                ("weight", int(ANTI_AFFINITY_WEIGHT)),
                (
                    "podAffinityTerm",
                    map([
                        (
                            "labelSelector",
                            map([("matchLabels", labels("controller"))]),
                        ),
                        ("topologyKey", s(SPREAD_TOPOLOGY_KEY)),
                    ]),
                ),
            ])]),
        )]),
    )])
}

/// Pod Security "restricted" for a whole pod: non-root, with the runtime's
/// default seccomp profile.
fn pod_security_context() -> Node {
    map([
        ("runAsNonRoot", Node::Bool(true)),
        ("runAsUser", int(RUN_AS)),
        ("runAsGroup", int(RUN_AS)),
        ("fsGroup", int(RUN_AS)),
        ("seccompProfile", map([("type", s("RuntimeDefault"))])),
    ])
}

/// Pod Security "restricted" for one container, and a read-only root
/// filesystem: nothing in the control plane writes outside its volumes.
fn container_security_context() -> Node {
    map([
        ("allowPrivilegeEscalation", Node::Bool(false)),
        ("readOnlyRootFilesystem", Node::Bool(true)),
        ("runAsNonRoot", Node::Bool(true)),
        (
            "capabilities",
            map([("drop", strs(vec!["ALL".to_string()]))]),
        ),
        ("seccompProfile", map([("type", s("RuntimeDefault"))])),
    ])
}

/// Who may reach the controller pod: every proxy the proxy-api port, the
/// dashboard (and `--api-server-cidr`) the public API, Prometheus the
/// admin ports. Its components talk to each other on loopback, which no
/// policy governs (nor does `kubectl port-forward`, which enters the pod
/// through the kubelet); with several replicas, each replica's public-api
/// also calls every replica's telemetry port, opened to the controller's
/// pods only.
fn controller_network_policy(cfg: &Config) -> Node {
    let ports = |ports: &[u16]| seq(ports.iter().map(|p| map([("port", int(*p))])));
    let from_app = |app: &str| map([("podSelector", map([("matchLabels", labels(app))]))]);
    let api_sources = std::iter::once(from_app("web")).chain(
        cfg.api_server_cidrs
            .iter()
            .map(|c| map([("ipBlock", map([("cidr", s(c.as_str()))]))])),
    );
    let admin_ports: Vec<u16> = CONTROLLER_COMPONENTS.iter().map(|c| c.admin_port).collect();
    object(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        metadata("controller", Some(&cfg.namespace), "controller"),
        vec![(
            "spec",
            map([
                ("podSelector", map([("matchLabels", labels("controller"))])),
                ("policyTypes", strs(vec!["Ingress".to_string()])),
                (
                    "ingress",
                    seq([
                        map([("ports", ports(&[PROXY_API.port]))]),
                        map([
                            ("from", seq(api_sources)),
                            ("ports", ports(&[PUBLIC_API.port])),
                        ]),
                        map([
                            ("from", seq([from_app("prometheus")])),
                            ("ports", ports(&admin_ports)),
                        ]),
                    ]
                    .into_iter()
                    // Every replica's public-api calls every replica's
                    // telemetry.
                    .chain(replicated(cfg).then(|| {
                        map([
                            ("from", seq([from_app("controller")])),
                            ("ports", ports(&[TELEMETRY_COMPONENT.port])),
                        ])
                    }))),
                ),
            ]),
        )],
    )
}

/// A Deployment whose selector is exactly its pods' labels, its pods
/// restricted ([`pod_security_context`]).
fn deployment(cfg: &Config, app: &str, replicas: i32, pod_spec: Node) -> Node {
    workload(cfg, "Deployment", app, replicas, vec![], pod_spec)
}

/// A Deployment or StatefulSet (`kind`) with `more` spec fields after its
/// replicas, its selector exactly its pods' labels, its pods restricted.
fn workload(
    cfg: &Config,
    kind: &str,
    app: &str,
    replicas: i32,
    more: Vec<(&'static str, Node)>,
    mut pod_spec: Node,
) -> Node {
    if let Node::Map(entries) = &mut pod_spec {
        entries.push(("securityContext", pod_security_context()));
    }
    let mut spec = vec![("replicas", int(replicas))];
    spec.extend(more);
    spec.extend([
        ("selector", map([("matchLabels", labels(app))])),
        (
            "template",
            map([
                ("metadata", map([("labels", labels(app))])),
                ("spec", pod_spec),
            ]),
        ),
    ]);
    object(
        "apps/v1",
        kind,
        metadata(app, Some(&cfg.namespace), app),
        vec![("spec", Node::Map(spec))],
    )
}

/// What a container looks like apart from its image and arguments.
struct ContainerSpec<'a> {
    name: &'a str,
    image: String,
    args: Vec<String>,
    ports: Vec<(&'a str, u16)>,
    ready_path: &'a str,
    live_path: &'a str,
    requests: Requests,
    volume_mounts: Option<Node>,
}

fn http_probe(path: &str) -> Node {
    map([(
        "httpGet",
        map([("path", s(path)), ("port", s(ADMIN_PORT_NAME))]),
    )])
}

fn container(cfg: &Config, spec: ContainerSpec<'_>) -> Node {
    let ports = spec
        .ports
        .iter()
        .map(|(name, port)| map([("name", s(*name)), ("containerPort", int(*port))]));
    let mut entries = vec![
        ("name", s(spec.name)),
        ("image", s(spec.image)),
        ("imagePullPolicy", s(cfg.image_pull_policy.as_str())),
        ("args", strs(spec.args)),
        ("ports", seq(ports)),
    ];
    if let Some(mounts) = spec.volume_mounts {
        entries.push(("volumeMounts", mounts));
    }
    entries.extend([
        ("securityContext", container_security_context()),
        ("readinessProbe", http_probe(spec.ready_path)),
        ("livenessProbe", http_probe(spec.live_path)),
        (
            "resources",
            map([(
                "requests",
                map([
                    ("cpu", s(spec.requests.cpu)),
                    ("memory", s(spec.requests.memory)),
                ]),
            )]),
        ),
    ]);
    Node::Map(entries)
}

/// A conduit component's container: `/ready` and `/ping` on its admin port.
fn component_container(cfg: &Config, component: Component, image: &str, args: Vec<String>) -> Node {
    container(
        cfg,
        ContainerSpec {
            name: component.name,
            image: format!("{}/{image}:{}", cfg.registry, cfg.version),
            args,
            ports: vec![
                (component.port_name, component.port),
                (ADMIN_PORT_NAME, component.admin_port),
            ],
            ready_path: "/ready",
            live_path: "/ping",
            requests: component.requests,
            volume_mounts: None,
        },
    )
}

/// The component's own flags as the original spelled them: the
/// subcommand, then `-addr` and `-metrics-addr` on all interfaces.
fn component_args(component: Component, more: &[String]) -> Vec<String> {
    let mut args = vec![
        component.name.to_string(),
        format!("-addr=:{}", component.port),
        format!("-metrics-addr=:{}", component.admin_port),
    ];
    args.extend_from_slice(more);
    args
}

fn prometheus_url(cfg: &Config) -> String {
    format!(
        "http://prometheus.{}.svc.cluster.local:{PROMETHEUS_PORT}",
        cfg.namespace
    )
}

/// The controller's five containers: one Deployment replica as the
/// original ran it, or a StatefulSet of several ([`replicated`]).
///
/// Several replicas each ingest the reports of the proxies connected to
/// them, so public-api asks every one ([`replica_telemetry_addrs`]), and
/// each pushes its series with a `replica` external label from the pod's
/// name. Install configures no remote write (Prometheus scrapes every
/// replica, telling them apart by `pod`), but the label is set whenever
/// there are several replicas: an operator who adds `-remote-write-url`
/// gets series that do not collide, and without it the label costs nothing.
/// A StatefulSet rather than a Deployment because its pods have stable DNS
/// names: public-api is given a plain list of `HOST:PORT`s and knows when
/// one of them is missing, where a DNS name resolving to whichever pods are
/// ready would hide a missing replica.
fn controller_workload(cfg: &Config) -> Node {
    // The components of one pod reach each other on loopback (but
    // public-api, with several replicas, calls them all by name).
    let more =
        |component: Component| -> Vec<String> {
            match component.name {
                "public-api" => vec![
                    if replicated(cfg) {
                        format!("-telemetry-addr={}", replica_telemetry_addrs(cfg))
                    } else {
                        format!("-telemetry-addr=127.0.0.1:{}", TELEMETRY_COMPONENT.port)
                    },
                    format!("-tap-addr=127.0.0.1:{}", TAP.port),
                ],
                "proxy-api" => vec![
                    format!("-destination-addr=:{}", DESTINATION.port),
                    format!("-telemetry-addr=:{}", TELEMETRY_COMPONENT.port),
                ],
                "telemetry" => [
                    format!("-ignore-namespaces={IGNORED_NAMESPACES}"),
                    format!("-prometheus-url={}", prometheus_url(cfg)),
                ]
                .into_iter()
                .chain(replicated(cfg).then(|| {
                    format!("-remote-write-external-label={REPLICA_LABEL}=$({POD_NAME_ENV})")
                }))
                .collect(),
                _ => vec![],
            }
        };
    let containers = CONTROLLER_COMPONENTS.map(|component| {
        let container = component_container(
            cfg,
            component,
            "controller",
            component_args(component, &more(component)),
        );
        if replicated(cfg) && component.name == TELEMETRY_COMPONENT.name {
            with_pod_name_env(container)
        } else {
            container
        }
    });
    let mut pod = vec![("serviceAccountName", s(CONTROLLER_SERVICE_ACCOUNT))];
    if !replicated(cfg) {
        pod.push(("containers", seq(containers)));
        return deployment(cfg, "controller", cfg.controller_replicas, Node::Map(pod));
    }
    pod.push(("affinity", controller_anti_affinity()));
    pod.push(("containers", seq(containers)));
    workload(
        cfg,
        "StatefulSet",
        "controller",
        cfg.controller_replicas,
        vec![
            ("serviceName", s(TELEMETRY_HEADLESS_SERVICE)),
            // The replicas do not depend on one another: created and
            // removed together, none waiting for the one before to be
            // ready (a rolling update still replaces one at a time).
            ("podManagementPolicy", s("Parallel")),
        ],
        Node::Map(pod),
    )
}

/// `container` with `POD_NAME` from the downward API, which its arguments
/// name as `$(POD_NAME)`.
fn with_pod_name_env(mut container: Node) -> Node {
    let env = seq([map([
        ("name", s(POD_NAME_ENV)),
        (
            "valueFrom",
            map([("fieldRef", map([("fieldPath", s("metadata.name"))]))]),
        ),
    ])]);
    if let Node::Map(entries) = &mut container {
        let at = entries
            .iter()
            .position(|(k, _)| *k == "args")
            .map_or(entries.len(), |i| i + 1);
        entries.insert(at, ("env", env));
    }
    container
}

fn web_deployment(cfg: &Config) -> Node {
    // The image's entrypoint is `conduit web`: the arguments start with flags.
    let args = vec![
        format!("-addr=:{}", WEB.port),
        format!("-metrics-addr=:{}", WEB.admin_port),
        format!(
            "-api-addr=api.{}.svc.cluster.local:{}",
            cfg.namespace, PUBLIC_API.port
        ),
        format!("-static-dir={WEB_STATIC_DIR}"),
        format!("-template-dir={WEB_TEMPLATE_DIR}"),
        format!("-uuid={}", cfg.uuid),
        format!("-namespace={}", cfg.namespace),
    ];
    deployment(
        cfg,
        "web",
        cfg.web_replicas,
        map([
            // The dashboard only calls public-api: no Kubernetes credentials.
            ("automountServiceAccountToken", Node::Bool(false)),
            (
                "containers",
                seq([component_container(cfg, WEB, "web", args)]),
            ),
        ]),
    )
}

fn prometheus_config_map(cfg: &Config) -> Node {
    object(
        "v1",
        "ConfigMap",
        metadata("prometheus-config", Some(&cfg.namespace), "prometheus"),
        vec![(
            "data",
            map([(
                PROMETHEUS_CONFIG_FILE,
                Node::Block(prometheus_config(&cfg.namespace)),
            )]),
        )],
    )
}

fn prometheus_deployment(cfg: &Config) -> Node {
    let container = container(
        cfg,
        ContainerSpec {
            name: "prometheus",
            image: PROMETHEUS_IMAGE.to_string(),
            args: vec![
                format!("--config.file={PROMETHEUS_CONFIG_DIR}/{PROMETHEUS_CONFIG_FILE}"),
                format!("--storage.tsdb.path={PROMETHEUS_DATA_DIR}"),
                format!("--storage.tsdb.retention.time={PROMETHEUS_RETENTION}"),
            ],
            ports: vec![(ADMIN_PORT_NAME, PROMETHEUS_PORT)],
            ready_path: "/-/ready",
            live_path: "/-/healthy",
            requests: PROMETHEUS,
            volume_mounts: Some(seq([
                map([
                    ("name", s("config")),
                    ("mountPath", s(PROMETHEUS_CONFIG_DIR)),
                    ("readOnly", Node::Bool(true)),
                ]),
                map([("name", s("data")), ("mountPath", s(PROMETHEUS_DATA_DIR))]),
            ])),
        },
    );
    deployment(
        cfg,
        "prometheus",
        cfg.prometheus_replicas,
        map([
            ("serviceAccountName", s(PROMETHEUS_SERVICE_ACCOUNT)),
            ("containers", seq([container])),
            (
                "volumes",
                seq([
                    map([
                        ("name", s("config")),
                        ("configMap", map([("name", s("prometheus-config"))])),
                    ]),
                    // Samples live only as long as the pod: `PROMETHEUS_RETENTION`
                    // is short, and the mesh metrics restart from the proxies.
                    map([("name", s("data")), ("emptyDir", map([]))]),
                ]),
            ),
        ]),
    )
}
