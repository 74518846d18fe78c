//! `conduit install`, through the real binary: every document is a valid
//! Kubernetes object of its kind; each flag changes what it names and
//! nothing else; Deployments select their pods and probe every container;
//! the controller's container arguments parse with this binary's own CLI;
//! the Prometheus config passes `promtool check config`; bad flags are one
//! line on stderr. Several controller replicas are a StatefulSet that
//! public-api lists replica by replica, with a disruption budget, spread
//! over nodes, each pushing under its own `replica` label. The files kept
//! in the repository, `deploy/conduit.yaml`, `prometheus/prometheus.yml`
//! and `tests/fixtures/install-controller-replicas-3.yaml`, are pinned as
//! golden files: `UPDATE_GOLDEN=1 cargo test --test install` rewrites them.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use clap::Parser as _;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize as _;
use serde_yaml::Value;
use support::TempDir;

/// The install id of the golden file (the hidden `--uuid` flag); without
/// the flag every run draws a random one.
const GOLDEN_UUID: &str = "00000000-0000-4000-8000-000000000000";

const NS: &str = "conduit";
const PROMETHEUS_IMAGE: &str = "prom/prometheus:v2.53.2";

fn default_version() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

fn run_install(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conduit"))
        .arg("install")
        .args(args)
        .output()
        .expect("the conduit binary runs")
}

/// `conduit install ARGS --uuid GOLDEN_UUID`, which must succeed quietly.
fn install(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--uuid", GOLDEN_UUID]);
    let out = run_install(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "install {args:?} failed: {stderr}");
    assert_eq!(stderr, "", "install {args:?} wrote to stderr");
    String::from_utf8(out.stdout).expect("the manifests are UTF-8")
}

/// The documents, in order.
fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("every document is YAML"))
        .collect()
}

fn kind_name_namespace(doc: &Value) -> (String, String, Option<String>) {
    let field = |v: &Value| v.as_str().map(str::to_string);
    (
        field(&doc["kind"]).expect("a kind"),
        field(&doc["metadata"]["name"]).expect("a name"),
        field(&doc["metadata"]["namespace"]),
    )
}

/// Deserializes `doc` as `T` (which checks apiVersion and kind) and
/// serializes it back: the result must be the document itself, so a
/// misspelled or misplaced field, which `T` would silently drop, or a value
/// of the wrong type fails here.
fn typed<T>(doc: &Value) -> T
where
    T: k8s_openapi::Resource + serde::de::DeserializeOwned + serde::Serialize,
{
    let object: T = serde_yaml::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("not a {} {}: {e}", T::API_VERSION, T::KIND));
    assert_eq!(
        serde_json::to_value(&object).unwrap(),
        serde_json::to_value(doc).unwrap(),
        "{} {:?} has fields its type does not know",
        T::KIND,
        doc["metadata"]["name"]
    );
    object
}

fn check_typed(doc: &Value) {
    match doc["kind"].as_str().expect("a kind") {
        "Namespace" => {
            let _: Namespace = typed(doc);
        }
        "ServiceAccount" => {
            let _: ServiceAccount = typed(doc);
        }
        "ClusterRole" => {
            let _: ClusterRole = typed(doc);
        }
        "ClusterRoleBinding" => {
            let _: ClusterRoleBinding = typed(doc);
        }
        "Role" => {
            let _: Role = typed(doc);
        }
        "RoleBinding" => {
            let _: RoleBinding = typed(doc);
        }
        "Service" => {
            let _: Service = typed(doc);
        }
        "ConfigMap" => {
            let _: ConfigMap = typed(doc);
        }
        "Deployment" => {
            let _: Deployment = typed(doc);
        }
        "StatefulSet" => {
            let _: StatefulSet = typed(doc);
        }
        "PodDisruptionBudget" => {
            let _: PodDisruptionBudget = typed(doc);
        }
        "NetworkPolicy" => {
            let _: NetworkPolicy = typed(doc);
        }
        other => panic!("unexpected kind {other}"),
    }
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn deployments(docs: &[Value]) -> BTreeMap<String, Deployment> {
    docs.iter()
        .filter(|d| d["kind"] == "Deployment")
        .map(|d| {
            let deployment: Deployment = typed(d);
            (deployment.metadata.name.clone().unwrap(), deployment)
        })
        .collect()
}

fn containers(deployment: &Deployment) -> &[Container] {
    &deployment.spec.template.spec.as_ref().unwrap().containers
}

fn container<'a>(
    docs: &'a BTreeMap<String, Deployment>,
    deploy: &str,
    name: &str,
) -> &'a Container {
    containers(&docs[deploy])
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name} in {deploy}"))
}

fn args(c: &Container) -> Vec<&str> {
    c.args.iter().flatten().map(String::as_str).collect()
}

/// The ConfigMap's `prometheus.yml`.
fn embedded_prometheus_config(docs: &[Value]) -> String {
    let config_map: ConfigMap = typed(find(docs, "ConfigMap", "prometheus-config"));
    config_map.data.unwrap()["prometheus.yml"].clone()
}

#[test]
fn every_document_is_a_kubernetes_object_of_its_kind_in_apply_order() {
    let docs = documents(&install(&[]));
    let ns = Some(NS.to_string());
    let expected: Vec<(String, String, Option<String>)> = [
        ("Namespace", "conduit", None),
        ("ServiceAccount", "conduit-controller", ns.clone()),
        ("ClusterRole", "conduit-controller-conduit", None),
        ("ClusterRoleBinding", "conduit-controller-conduit", None),
        ("Service", "api", ns.clone()),
        ("Service", "proxy-api", ns.clone()),
        ("Deployment", "controller", ns.clone()),
        ("NetworkPolicy", "controller", ns.clone()),
        ("Service", "web", ns.clone()),
        ("Deployment", "web", ns.clone()),
        ("ServiceAccount", "conduit-prometheus", ns.clone()),
        ("Role", "conduit-prometheus", ns.clone()),
        ("RoleBinding", "conduit-prometheus", ns.clone()),
        ("Service", "prometheus", ns.clone()),
        ("ConfigMap", "prometheus-config", ns.clone()),
        ("Deployment", "prometheus", ns),
    ]
    .into_iter()
    .map(|(k, n, ns)| (k.to_string(), n.to_string(), ns))
    .collect();
    assert_eq!(
        docs.iter().map(kind_name_namespace).collect::<Vec<_>>(),
        expected
    );
    for doc in &docs {
        check_typed(doc);
    }
}

#[test]
fn the_controller_may_read_exactly_what_it_watches() {
    let docs = documents(&install(&[]));
    let role: ClusterRole = typed(find(&docs, "ClusterRole", "conduit-controller-conduit"));
    let mut granted: Vec<(String, String, Vec<String>)> = Vec::new();
    for rule in role.rules.unwrap() {
        for group in rule.api_groups.unwrap() {
            for resource in rule.resources.clone().unwrap() {
                granted.push((group.clone(), resource, rule.verbs.clone()));
            }
        }
    }
    granted.sort();
    let read = || vec!["get".to_string(), "list".into(), "watch".into()];
    let expected = [
        ("", "endpoints"),
        ("", "pods"),
        ("", "services"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("discovery.k8s.io", "endpointslices"),
    ]
    .map(|(g, r)| (g.to_string(), r.to_string(), read()));
    assert_eq!(granted, expected);

    let binding: ClusterRoleBinding = typed(find(
        &docs,
        "ClusterRoleBinding",
        "conduit-controller-conduit",
    ));
    assert_eq!(
        (
            binding.role_ref.kind.as_str(),
            binding.role_ref.name.as_str()
        ),
        ("ClusterRole", "conduit-controller-conduit")
    );
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (
            subject.kind.as_str(),
            subject.name.as_str(),
            subject.namespace.as_deref()
        ),
        ("ServiceAccount", "conduit-controller", Some(NS))
    );
    let pods = |d: &Deployment| d.spec.template.spec.clone().unwrap();
    let deployments = deployments(&docs);
    assert_eq!(
        pods(&deployments["controller"])
            .service_account_name
            .as_deref(),
        Some("conduit-controller")
    );
    assert_eq!(
        pods(&deployments["prometheus"])
            .service_account_name
            .as_deref(),
        Some("conduit-prometheus")
    );
    let prometheus_role: Role = typed(find(&docs, "Role", "conduit-prometheus"));
    let rules = prometheus_role.rules.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["pods".to_string()][..])
    );
    assert_eq!(rules[0].verbs, read());
}

#[test]
fn deployments_select_their_pods_and_probe_every_container() {
    let docs = documents(&install(&[]));
    let deployments = deployments(&docs);
    assert_eq!(
        deployments.keys().collect::<Vec<_>>(),
        ["controller", "prometheus", "web"]
    );
    for (name, deployment) in &deployments {
        let spec = &deployment.spec;
        assert_eq!(
            spec.selector.match_labels,
            spec.template.metadata.as_ref().unwrap().labels,
            "{name}: the selector is the pods' labels"
        );
        assert!(spec.selector.match_labels.is_some(), "{name}");
        for c in containers(deployment) {
            let (ready, live) = if name == "prometheus" {
                ("/-/ready", "/-/healthy")
            } else {
                ("/ready", "/ping")
            };
            let admin = IntOrString::String("admin-http".to_string());
            for (probe, path) in [(&c.readiness_probe, ready), (&c.liveness_probe, live)] {
                let get = probe.as_ref().and_then(|p| p.http_get.as_ref());
                let get = get.unwrap_or_else(|| panic!("{name}/{}: an HTTP probe", c.name));
                assert_eq!((get.path.as_deref(), &get.port), (Some(path), &admin));
            }
            let ports = c.ports.as_ref().unwrap();
            let admin_port = ports
                .iter()
                .find(|p| p.name.as_deref() == Some("admin-http"))
                .unwrap_or_else(|| panic!("{name}/{}: an admin-http port", c.name));
            if name != "prometheus" {
                // Prometheus scrapes the port declared; the component
                // serves on its -metrics-addr: they must be the same.
                let metrics_addr = format!("-metrics-addr=:{}", admin_port.container_port);
                assert!(
                    args(c).contains(&metrics_addr.as_str()),
                    "{name}/{}",
                    c.name
                );
                let addr = args(c)
                    .iter()
                    .find_map(|a| a.strip_prefix("-addr=:"))
                    .map(|p| p.parse::<i32>().unwrap());
                let serving = ports
                    .iter()
                    .find(|p| p.name.as_deref() != Some("admin-http"));
                assert_eq!(addr, serving.map(|p| p.container_port), "{name}/{}", c.name);
            }
            let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
            let requests = requests.unwrap_or_else(|| panic!("{name}/{}: requests", c.name));
            assert!(
                requests.contains_key("cpu") && requests.contains_key("memory"),
                "{name}/{}",
                c.name
            );
        }
    }
    // Every Service selects one Deployment's pods and targets their ports.
    for doc in docs.iter().filter(|d| d["kind"] == "Service") {
        let service: Service = typed(doc);
        let spec = service.spec.unwrap();
        let selected: Vec<&Deployment> = deployments
            .values()
            .filter(|d| {
                let labels = d.spec.template.metadata.as_ref().unwrap();
                let labels = labels.labels.as_ref().unwrap();
                spec.selector
                    .iter()
                    .flatten()
                    .all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect();
        assert_eq!(selected.len(), 1, "{:?}", service.metadata.name);
        let declared: Vec<i32> = containers(selected[0])
            .iter()
            .flat_map(|c| c.ports.iter().flatten().map(|p| p.container_port))
            .collect();
        for port in spec.ports.unwrap() {
            let Some(IntOrString::Int(target)) = port.target_port else {
                panic!("{:?}: a numeric targetPort", service.metadata.name);
            };
            assert!(
                declared.contains(&target),
                "{:?}: {target}",
                service.metadata.name
            );
        }
    }
}

#[test]
fn containers_run_the_originals_arguments() {
    let docs = documents(&install(&[]));
    let deployments = deployments(&docs);
    let controller_image = format!("gcr.io/runconduit/controller:{}", default_version());
    let expected: [(&str, &[&str]); 5] = [
        (
            "public-api",
            &[
                "public-api",
                "-addr=:8085",
                "-metrics-addr=:9995",
                "-telemetry-addr=127.0.0.1:8087",
                "-tap-addr=127.0.0.1:8088",
            ],
        ),
        (
            "destination",
            &["destination", "-addr=:8089", "-metrics-addr=:9999"],
        ),
        (
            "proxy-api",
            &[
                "proxy-api",
                "-addr=:8086",
                "-metrics-addr=:9996",
                "-destination-addr=:8089",
                "-telemetry-addr=:8087",
            ],
        ),
        ("tap", &["tap", "-addr=:8088", "-metrics-addr=:9998"]),
        (
            "telemetry",
            &[
                "telemetry",
                "-addr=:8087",
                "-metrics-addr=:9997",
                "-ignore-namespaces=kube-system",
                "-prometheus-url=http://prometheus.conduit.svc.cluster.local:9090",
            ],
        ),
    ];
    let controller = containers(&deployments["controller"]);
    assert_eq!(
        controller
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        expected.map(|(name, _)| name)
    );
    for (c, (name, expected_args)) in controller.iter().zip(expected) {
        assert_eq!(args(c), expected_args, "{name}");
        assert_eq!(c.image.as_deref(), Some(controller_image.as_str()));
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    }
    let web = container(&deployments, "web", "web");
    assert_eq!(
        args(web),
        [
            "-addr=:8084",
            "-metrics-addr=:9994",
            "-api-addr=api.conduit.svc.cluster.local:8085",
            "-static-dir=/dist",
            "-template-dir=/templates",
            &format!("-uuid={GOLDEN_UUID}"),
            "-namespace=conduit",
        ]
    );
    let prometheus = container(&deployments, "prometheus", "prometheus");
    assert_eq!(prometheus.image.as_deref(), Some(PROMETHEUS_IMAGE));
    assert_eq!(
        args(prometheus),
        [
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            "--storage.tsdb.retention.time=6h",
        ]
    );
}

/// What the controller image (`conduit controller`) and the web image
/// (`conduit web`) run, parsed by this binary's CLI.
#[test]
fn container_arguments_parse_with_this_binarys_cli() {
    let docs = documents(&install(&[]));
    let deployments = deployments(&docs);
    let mut commands: Vec<(String, Vec<String>)> = containers(&deployments["controller"])
        .iter()
        .map(|c| {
            let mut argv = vec!["conduit".to_string(), "controller".to_string()];
            argv.extend(c.args.clone().unwrap());
            (c.name.clone(), argv)
        })
        .collect();
    let web = container(&deployments, "web", "web");
    let mut web_argv = vec!["conduit".to_string(), "web".to_string()];
    web_argv.extend(web.args.clone().unwrap());
    commands.push(("web".to_string(), web_argv));

    assert_eq!(commands.len(), 6, "five controller containers and web");
    for (name, argv) in commands {
        let parsed = conduit::cli::Cli::try_parse_from(conduit::cli::normalize_args(argv.clone()));
        if let Err(error) = parsed {
            panic!("{name}: `{}` does not parse: {error}", argv.join(" "));
        }
    }
}

/// Checks each `(flag args, expectation)` against the default output:
/// `expect` asserts the change on the variant's documents and undoes it
/// (on the documents or the text); what is left must be the default.
fn assert_only_change(args: &[&str], expect: impl FnOnce(&mut Vec<Value>, &mut String)) {
    let baseline = install(&[]);
    let mut text = install(args);
    let mut docs = documents(&text);
    expect(&mut docs, &mut text);
    assert_eq!(
        docs,
        documents(&baseline),
        "{args:?} changed more than it names"
    );
}

fn replicas<'a>(docs: &'a mut [Value], deployment: &str) -> &'a mut Value {
    docs.iter_mut()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == deployment)
        .map(|d| &mut d["spec"]["replicas"])
        .unwrap()
}

/// (Several controller replicas change more: see
/// `several_controller_replicas_are_listed_spread_and_labelled`.)
#[test]
fn replica_flags_change_their_deployment_only() {
    for (flag, deployment) in [
        ("--web-replicas", "web"),
        ("--prometheus-replicas", "prometheus"),
    ] {
        assert_only_change(&[flag, "3"], |docs, _| {
            let replicas = replicas(docs, deployment);
            assert_eq!(replicas.as_i64(), Some(3), "{flag}");
            *replicas = Value::from(1);
        });
    }
    assert_only_change(&["--controller-replicas", "1"], |_, _| {});
    // The original's spelling.
    assert_eq!(
        install(&["-controller-replicas=2"]),
        install(&["--controller-replicas", "2"])
    );
}

#[test]
fn image_pull_policy_applies_to_every_container() {
    assert_only_change(&["--image-pull-policy", "Always"], |docs, text| {
        let deployments = deployments(docs);
        let all: Vec<&Container> = deployments.values().flat_map(containers).collect();
        assert_eq!(all.len(), 7);
        for c in all {
            assert_eq!(c.image_pull_policy.as_deref(), Some("Always"), "{}", c.name);
        }
        *text = text.replace("imagePullPolicy: Always", "imagePullPolicy: IfNotPresent");
        *docs = documents(text);
    });
}

#[test]
fn registry_and_version_change_conduits_images_only() {
    let version = default_version();
    for args in [
        &["-r", "registry.example.com/mesh", "-v", "v9.8.7"][..],
        &["--registry=registry.example.com/mesh/", "--version=v9.8.7"],
    ] {
        assert_only_change(args, |docs, text| {
            let deployments = deployments(docs);
            for (deploy, image) in [("controller", "controller"), ("web", "web")] {
                for c in containers(&deployments[deploy]) {
                    assert_eq!(
                        c.image.as_deref(),
                        Some(format!("registry.example.com/mesh/{image}:v9.8.7").as_str())
                    );
                }
            }
            let prometheus = container(&deployments, "prometheus", "prometheus");
            assert_eq!(prometheus.image.as_deref(), Some(PROMETHEUS_IMAGE));
            *text = text
                .replace("registry.example.com/mesh/", "gcr.io/runconduit/")
                .replace(":v9.8.7", &format!(":{version}"));
            *docs = documents(text);
        });
    }
}

#[test]
fn namespace_flag_rewrites_every_namespace() {
    let text = install(&["-n", "mesh"]);
    assert!(!install(&[]).contains("mesh"));
    let docs = documents(&text);
    for doc in &docs {
        let (kind, name, namespace) = kind_name_namespace(doc);
        match kind.as_str() {
            "Namespace" => assert_eq!(name, "mesh"),
            "ClusterRole" | "ClusterRoleBinding" => {
                assert_eq!(
                    (name.as_str(), namespace),
                    ("conduit-controller-mesh", None)
                )
            }
            _ => assert_eq!(namespace.as_deref(), Some("mesh"), "{kind} {name}"),
        }
        check_typed(doc);
    }
    for (kind, name) in [
        ("ClusterRoleBinding", "conduit-controller-mesh"),
        ("RoleBinding", "conduit-prometheus"),
    ] {
        let subjects = find(&docs, kind, name)["subjects"].as_sequence().unwrap();
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0]["namespace"], "mesh", "{kind}");
    }
    let deployments = deployments(&docs);
    let web = args(container(&deployments, "web", "web"));
    assert!(web.contains(&"-namespace=mesh"), "{web:?}");
    assert!(
        web.contains(&"-api-addr=api.mesh.svc.cluster.local:8085"),
        "{web:?}"
    );
    let telemetry = args(container(&deployments, "controller", "telemetry"));
    assert!(
        telemetry.contains(&"-prometheus-url=http://prometheus.mesh.svc.cluster.local:9090"),
        "{telemetry:?}"
    );
    let config: Value = serde_yaml::from_str(&embedded_prometheus_config(&docs)).unwrap();
    assert_eq!(
        config["scrape_configs"][0]["kubernetes_sd_configs"][0]["namespaces"]["names"],
        serde_yaml::from_str::<Value>("[mesh]").unwrap()
    );
    // No namespace is left behind: what still says "conduit" is a name
    // that is not a namespace.
    let not_namespaces = ["-controller", "-prometheus", ".io/", "/cli ", " install`"];
    let text = text.replace("gcr.io/runconduit/", "");
    for (at, _) in text.match_indices("conduit") {
        let after = &text[at + "conduit".len()..];
        assert!(
            not_namespaces.iter().any(|n| after.starts_with(n)),
            "a namespace left as conduit: {:?}",
            &text[at.saturating_sub(40)..(at + 40).min(text.len())]
        );
    }
    // And nothing else changed.
    assert_only_change(&["--conduit-namespace", "mesh"], |docs, text| {
        *text = text.replace("mesh", NS);
        *docs = documents(text);
    });
}

#[test]
fn each_run_draws_a_new_install_id() {
    let run = || {
        let out = run_install(&[]);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let (a, b) = (run(), run());
    let uuid = |text: &str| -> String {
        let line = text.lines().find(|l| l.contains("-uuid=")).unwrap();
        line.split("-uuid=")
            .nth(1)
            .unwrap()
            .trim_end_matches('"')
            .to_string()
    };
    assert_ne!(uuid(&a), uuid(&b));
    for text in [&a, &b] {
        let id = uuid(text);
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(&id[14..15], "4", "a version 4 UUID: {id}");
        assert_eq!(text.replace(&id, GOLDEN_UUID), install(&[]));
    }
}

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `deploy/conduit.yaml` is `conduit install`'s default output, and
/// `prometheus/prometheus.yml` the Prometheus config in it.
#[test]
fn golden_files_are_the_default_output() {
    let text = install(&[]);
    let config = embedded_prometheus_config(&documents(&text));
    check_golden(&[
        ("deploy/conduit.yaml", text),
        ("prometheus/prometheus.yml", config),
    ]);
}

/// Three controller replicas, pinned whole.
#[test]
fn golden_file_of_three_controller_replicas() {
    check_golden(&[(
        "tests/fixtures/install-controller-replicas-3.yaml",
        install(&["--controller-replicas", "3"]),
    )]);
}

/// Each file is what `conduit install` printed; `UPDATE_GOLDEN=1` writes
/// them first.
fn check_golden(golden: &[(&str, String)]) {
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        for (path, content) in golden {
            let path = repo_file(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
    }
    for (path, content) in golden {
        let kept = std::fs::read_to_string(repo_file(path)).unwrap_or_default();
        assert!(
            kept == *content,
            "{path} differs from what `conduit install` prints; if the change is \
             intended, run `UPDATE_GOLDEN=1 cargo test --test install` and review the diff"
        );
    }
}

/// `promtool check config` on `config`: its findings when it refuses it.
fn promtool_check_config(config: &str) -> Result<(), String> {
    let dir = TempDir::new();
    let path = dir.0.join("prometheus.yml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "promtool is needed for this test (Debian package `prometheus`; \
                 .ci/run installs it): {e}"
            )
        });
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Debian's promtool (what `.ci/run` installs) is built without Kubernetes
/// service discovery and refuses `kubernetes_sd_configs` as an unknown
/// field. With such a promtool the config is checked with each job's
/// Kubernetes discovery swapped for a static target: everything else —
/// global settings, jobs, relabel rules — is still promtool's to judge,
/// and `the_prometheus_config_keeps_only_admin_ports` pins the discovery
/// block itself.
fn promtool_checkable(config: &str) -> String {
    let probe = "scrape_configs:\n- job_name: probe\n  kubernetes_sd_configs:\n  - role: pod\n";
    match promtool_check_config(probe) {
        Ok(()) => config.to_string(),
        Err(findings) if findings.contains("field kubernetes_sd_configs not found") => {
            let mut value: Value = serde_yaml::from_str(config).unwrap();
            for job in value["scrape_configs"].as_sequence_mut().unwrap() {
                let job = job.as_mapping_mut().unwrap();
                assert!(job.remove("kubernetes_sd_configs").is_some());
                job.insert(
                    "static_configs".into(),
                    serde_yaml::from_str("[{targets: ['192.0.2.1:9995']}]").unwrap(),
                );
            }
            serde_yaml::to_string(&value).unwrap()
        }
        Err(findings) => panic!("promtool refused a minimal config: {findings}"),
    }
}

#[test]
fn the_prometheus_config_passes_promtool() {
    for args in [&[][..], &["-n", "mesh"]] {
        let config = embedded_prometheus_config(&documents(&install(args)));
        if let Err(findings) = promtool_check_config(&promtool_checkable(&config)) {
            panic!("promtool check config {args:?} failed:\n{findings}");
        }
    }
    // The check can fail: a config Prometheus refuses.
    let broken = "scrape_configs:\n- job_name: x\n  relabel_configs:\n  - action: nope\n";
    assert!(
        promtool_check_config(broken).is_err(),
        "promtool accepted an unknown relabel action"
    );
}

#[test]
fn the_prometheus_config_keeps_only_admin_ports() {
    let config: Value =
        serde_yaml::from_str(&embedded_prometheus_config(&documents(&install(&[])))).unwrap();
    assert_eq!(config["global"]["scrape_interval"], "10s");
    let job = &config["scrape_configs"][0];
    assert_eq!(config["scrape_configs"].as_sequence().unwrap().len(), 1);
    assert_eq!(job["job_name"], "conduit-controller");
    assert_eq!(job["kubernetes_sd_configs"][0]["role"], "pod");
    let relabel = |source: &str| {
        job["relabel_configs"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|r| r["source_labels"][0] == source)
            .unwrap_or_else(|| panic!("a rule on {source}"))
            .clone()
    };
    let keep = relabel("__meta_kubernetes_pod_container_port_name");
    assert_eq!(
        (&keep["action"], &keep["regex"]),
        (&"keep".into(), &"admin-http".into())
    );
    assert_eq!(
        relabel("__meta_kubernetes_pod_container_name")["target_label"],
        "component"
    );
    assert_eq!(relabel("__meta_kubernetes_pod_name")["target_label"], "pod");
}

#[test]
fn bad_flags_fail_with_one_line_and_print_nothing() {
    for (args, names) in [
        (
            &["--controller-replicas", "0"][..],
            &["--controller-replicas", "\"0\""][..],
        ),
        (&["--web-replicas", "-2"], &["--web-replicas", "\"-2\""]),
        (
            &["--image-pull-policy", "Sometimes"],
            &["--image-pull-policy", "Sometimes"],
        ),
        (&["-n", "Bad_NS"], &["--conduit-namespace", "Bad_NS"]),
        (&["-r", ""], &["--registry"]),
        (&["-v", "v1 2"], &["--version", "v1 2"]),
    ] {
        let out = run_install(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(out.stdout.is_empty(), "{args:?} printed manifests");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.starts_with("conduit: "), "{stderr}");
        for name in names {
            assert!(
                stderr.contains(name),
                "{args:?}: {stderr:?} should name {name}"
            );
        }
    }
}

/// Every pod passes Pod Security "restricted": non-root, no privilege
/// escalation, every capability dropped, the runtime's seccomp profile;
/// and every root filesystem is read-only.
#[test]
fn every_pod_is_restricted() {
    let docs = documents(&install(&[]));
    let deployments = deployments(&docs);
    assert_eq!(deployments.len(), 3);
    for (name, deployment) in &deployments {
        let pod = deployment.spec.template.spec.as_ref().unwrap();
        let ctx = pod
            .security_context
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no pod securityContext"));
        assert_eq!(ctx.run_as_non_root, Some(true), "{name}");
        assert!(ctx.run_as_user.is_some_and(|u| u != 0), "{name}");
        assert_eq!(
            ctx.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
            Some("RuntimeDefault"),
            "{name}"
        );
        for c in containers(deployment) {
            let what = format!("{name}/{}", c.name);
            let ctx = c
                .security_context
                .as_ref()
                .unwrap_or_else(|| panic!("{what}: no securityContext"));
            assert_eq!(ctx.allow_privilege_escalation, Some(false), "{what}");
            assert_eq!(ctx.read_only_root_filesystem, Some(true), "{what}");
            assert_eq!(ctx.run_as_non_root, Some(true), "{what}");
            let caps = ctx.capabilities.as_ref().unwrap();
            assert_eq!(
                caps.drop.as_deref(),
                Some(&["ALL".to_string()][..]),
                "{what}"
            );
            assert!(caps.add.is_none(), "{what}");
            assert_eq!(
                ctx.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
                Some("RuntimeDefault"),
                "{what}"
            );
        }
    }
}

/// The NetworkPolicy opens the controller pod only as far as each caller
/// needs: proxy-api to everyone, the public API to the dashboard (and the
/// API server's CIDRs given), the admin ports to Prometheus.
#[test]
fn the_public_api_is_reachable_only_from_the_dashboard() {
    let docs = documents(&install(&["--api-server-cidr", "10.96.0.1/32"]));
    let policy: NetworkPolicy = typed(find(&docs, "NetworkPolicy", "controller"));
    let spec = policy.spec.unwrap();
    let selected = spec.pod_selector.unwrap().match_labels.unwrap();
    assert_eq!(selected.get("app").map(String::as_str), Some("controller"));
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_string()][..])
    );
    let rules = spec.ingress.unwrap();
    let port_of = |rule: &k8s_openapi::api::networking::v1::NetworkPolicyIngressRule| -> Vec<i32> {
        rule.ports
            .iter()
            .flatten()
            .map(|p| match p.port {
                Some(IntOrString::Int(n)) => n,
                ref other => panic!("a numeric port: {other:?}"),
            })
            .collect()
    };
    let api = rules
        .iter()
        .find(|r| port_of(r) == [8085])
        .expect("a rule for the public API");
    let from = api
        .from
        .as_ref()
        .expect("the public API is not open to all");
    assert_eq!(from.len(), 2, "{from:?}");
    let web = from[0]
        .pod_selector
        .as_ref()
        .unwrap()
        .match_labels
        .as_ref()
        .unwrap();
    assert_eq!(web.get("app").map(String::as_str), Some("web"));
    assert!(
        from[0].namespace_selector.is_none(),
        "the dashboard of this namespace only"
    );
    assert_eq!(from[1].ip_block.as_ref().unwrap().cidr, "10.96.0.1/32");
    let proxies = rules.iter().find(|r| port_of(r) == [8086]).unwrap();
    assert!(proxies.from.is_none(), "every proxy reaches proxy-api");
    let admin = rules
        .iter()
        .find(|r| port_of(r).contains(&9997))
        .expect("Prometheus scrapes the admin ports");
    assert_eq!(port_of(admin).len(), 5);
    // Nothing else: tap, telemetry and destination are loopback-only.
    let open: Vec<i32> = rules.iter().flat_map(port_of).collect();
    for closed in [8087, 8088, 8089] {
        assert!(!open.contains(&closed), "{closed} is open: {open:?}");
    }

    // Turned off, and refused CIDRs.
    let docs = documents(&install(&["--network-policy=false"]));
    assert!(docs.iter().all(|d| d["kind"] != "NetworkPolicy"));
    let out = run_install(&["--api-server-cidr", "10.96.0.1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--api-server-cidr \"10.96.0.1\" is not a CIDR"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--controller-replicas 3`: the controller is a StatefulSet of three
/// governed by a headless Service, so each replica has its own DNS name;
/// public-api lists every replica's telemetry by it; each telemetry pushes
/// under `replica=<its pod name>` from the downward API; at most one
/// replica is voluntarily down; replicas prefer distinct nodes; and the
/// telemetry port is opened to the controller's own pods only. Every
/// container is otherwise the single replica's.
#[test]
fn several_controller_replicas_are_listed_spread_and_labelled() {
    let docs = documents(&install(&["--controller-replicas", "3"]));
    for doc in &docs {
        check_typed(doc);
        let (kind, name, namespace) = kind_name_namespace(doc);
        if !kind.starts_with("Cluster") && kind != "Namespace" {
            assert_eq!(namespace.as_deref(), Some(NS), "{kind} {name}");
        }
    }
    let controller_section: Vec<(String, String)> = docs[4..10]
        .iter()
        .map(|d| {
            let (kind, name, _) = kind_name_namespace(d);
            (kind, name)
        })
        .collect();
    assert_eq!(
        controller_section,
        [
            ("Service", "api"),
            ("Service", "proxy-api"),
            ("Service", "telemetry-headless"),
            ("StatefulSet", "controller"),
            ("PodDisruptionBudget", "controller"),
            ("NetworkPolicy", "controller"),
        ]
        .map(|(k, n)| (k.to_string(), n.to_string()))
    );
    assert_eq!(
        deployments(&docs).keys().collect::<Vec<_>>(),
        ["prometheus", "web"]
    );

    // The StatefulSet and the Service that names its pods.
    let set_doc = find(&docs, "StatefulSet", "controller");
    let spec = &set_doc["spec"];
    let pod_labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(spec["replicas"].as_i64(), Some(3));
    assert_eq!(spec["selector"]["matchLabels"], *pod_labels);
    assert_eq!(spec["podManagementPolicy"], "Parallel");
    let service_name = spec["serviceName"].as_str().unwrap();
    let headless = &find(&docs, "Service", service_name)["spec"];
    assert_eq!(headless["clusterIP"], "None");
    assert_eq!(
        headless["publishNotReadyAddresses"].as_bool(),
        Some(true),
        "a replica's name resolves before every replica is ready"
    );
    assert_eq!(headless["selector"], *pod_labels);
    let ports = headless["ports"].as_sequence().unwrap();
    assert_eq!(ports.len(), 1, "the telemetry port only: {ports:?}");
    let telemetry_port = ports[0]["port"].as_i64().unwrap();
    assert_eq!(ports[0]["targetPort"].as_i64(), Some(telemetry_port));

    // Spread over nodes, preferably; one replica down at a time.
    let anti = &spec["template"]["spec"]["affinity"]["podAntiAffinity"];
    let preferred = anti["preferredDuringSchedulingIgnoredDuringExecution"]
        .as_sequence()
        .expect("a preferred anti-affinity");
    assert_eq!(preferred.len(), 1);
    assert_eq!(preferred[0]["weight"].as_i64(), Some(100));
    let term = &preferred[0]["podAffinityTerm"];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(term["labelSelector"]["matchLabels"], *pod_labels);
    assert!(
        anti["requiredDuringSchedulingIgnoredDuringExecution"].is_null(),
        "preferred, so fewer nodes than replicas still run them all"
    );
    let budget = find(&docs, "PodDisruptionBudget", "controller");
    assert_eq!(budget["apiVersion"], "policy/v1");
    assert_eq!(budget["spec"]["maxUnavailable"].as_i64(), Some(1));
    assert!(budget["spec"]["minAvailable"].is_null());
    assert_eq!(budget["spec"]["selector"]["matchLabels"], *pod_labels);

    // The containers: the single replica's, but for public-api's list of
    // every replica and telemetry's replica label from its pod name.
    let set: StatefulSet = typed(set_doc);
    let pod = set.spec.template.spec.unwrap();
    assert_eq!(
        pod.security_context.as_ref().unwrap().run_as_non_root,
        Some(true)
    );
    let every_replica: Vec<String> = (0..3)
        .map(|i| format!("controller-{i}.{service_name}.{NS}.svc.cluster.local:{telemetry_port}"))
        .collect();
    let list = format!("-telemetry-addr={}", every_replica.join(","));
    let label = "-remote-write-external-label=replica=$(POD_NAME)";
    let single = deployments(&documents(&install(&[])));
    let single = containers(&single["controller"]);
    assert_eq!(pod.containers.len(), single.len());
    for (c, one) in pod.containers.iter().zip(single) {
        let mut undone = c.clone();
        match c.name.as_str() {
            "public-api" => {
                assert!(args(c).contains(&list.as_str()), "{:?}", args(c));
                for arg in undone.args.iter_mut().flatten() {
                    if *arg == list {
                        *arg = format!("-telemetry-addr=127.0.0.1:{telemetry_port}");
                    }
                }
            }
            "telemetry" => {
                assert!(args(c).contains(&label), "{:?}", args(c));
                let env = c.env.as_deref().unwrap_or_default();
                assert_eq!(env.len(), 1, "{env:?}");
                assert_eq!(env[0].name, "POD_NAME");
                let field = env[0]
                    .value_from
                    .as_ref()
                    .and_then(|v| v.field_ref.as_ref());
                assert_eq!(field.map(|f| f.field_path.as_str()), Some("metadata.name"));
                undone.env = None;
                undone.args.as_mut().unwrap().retain(|a| a != label);
            }
            _ => {}
        }
        assert_eq!(&undone, one, "{}", c.name);
    }
    // What the kubelet runs, a pod name in place of $(POD_NAME), parses.
    for c in &pod.containers {
        let mut argv = vec!["conduit".to_string(), "controller".to_string()];
        argv.extend(
            c.args
                .iter()
                .flatten()
                .map(|a| a.replace("$(POD_NAME)", "controller-2")),
        );
        let parsed = conduit::cli::Cli::try_parse_from(conduit::cli::normalize_args(argv));
        assert!(parsed.is_ok(), "{}: {:?}", c.name, parsed.err());
    }

    // Replicas reach one another's telemetry; nothing else does.
    let policy = find(&docs, "NetworkPolicy", "controller");
    let rules = policy["spec"]["ingress"].as_sequence().unwrap();
    let to_telemetry: Vec<&Value> = rules
        .iter()
        .filter(|r| {
            r["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|p| p["port"].as_i64() == Some(telemetry_port))
        })
        .collect();
    assert_eq!(to_telemetry.len(), 1, "{rules:?}");
    let from = to_telemetry[0]["from"].as_sequence().unwrap();
    assert_eq!(from.len(), 1);
    assert_eq!(from[0]["podSelector"]["matchLabels"], *pod_labels);
    assert_eq!(to_telemetry[0]["ports"].as_sequence().unwrap().len(), 1);
}
