//! The kube watchers against a fake API server on loopback: the index
//! follows the server through lists, watches, expiries, dropped
//! connections and outages, and the kubeconfig is read as kubectl reads it.

#[path = "support/fake_api.rs"]
mod fake_api;
mod support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use conduit::core::ShutdownHandle;
use conduit::k8s::watch::{self, Retry, WatchConfig};
use conduit::k8s::{Index, Kind, PodInfo};
use fake_api::{FakeApi, Hold};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use support::{
    PodFixture, equals, eventually, mk_deployment, mk_endpoints, mk_pod, mk_replica_set,
    mk_service, mk_slice, subset,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long a scenario may take to converge; they take milliseconds.
const DEADLINE: Duration = Duration::from_secs(10);
/// Retries fast enough that a test never waits on kube's backoff.
const FAST_RETRY: Retry = Retry::Exponential {
    min: Duration::from_millis(10),
    max: Duration::from_millis(200),
};
/// The kinds a metadata-reading component watches.
const KINDS: [Kind; 5] = [
    Kind::Pod,
    Kind::ReplicaSet,
    Kind::Deployment,
    Kind::Service,
    Kind::EndpointSlice,
];
const NS: &str = "emojivoto";

// ---- fixtures -------------------------------------------------------------

/// The web deployment of the scenarios: Deployment, ReplicaSet, one pod.
fn seed_web(api: &FakeApi) {
    api.apply(&mk_deployment(NS, "web"));
    api.apply(&mk_replica_set(NS, "web-5f9d", Some("web")));
    api.apply(&mk_pod(NS, "web-5f9d-a", "192.0.2.10", Some("web-5f9d")));
}

// ---- harness ----------------------------------------------------------------

/// Watchers feeding an index, stopped when dropped.
struct Watched {
    index: Arc<Index>,
    tasks: Vec<JoinHandle<()>>,
    shutdown: ShutdownHandle,
}

impl Watched {
    fn start(client: kube::Client, kinds: &[Kind]) -> Self {
        Self::start_retrying(client, kinds, FAST_RETRY)
    }

    fn start_retrying(client: kube::Client, kinds: &[Kind], retry: Retry) -> Self {
        init_tracing();
        let index = Arc::new(Index::new());
        let (shutdown, signal) = ShutdownHandle::new();
        let config = WatchConfig {
            kubeconfig: None,
            retry,
        };
        let tasks = config.spawn(client, index.clone(), kinds, signal);
        Watched {
            index,
            tasks,
            shutdown,
        }
    }

    async fn synced(&self, kinds: &[Kind]) {
        eventually(format!("{kinds:?} synced"), DEADLINE, || async {
            self.index.is_synced(kinds)
        })
        .await;
    }

    /// `("ns/pod", "ns/deployment")` owning `ip`, `None` if no pod owns it.
    fn resolve(&self, ip: &str) -> Option<(String, String)> {
        let ip: IpAddr = ip.parse().expect("test IPs are valid");
        self.index.snapshot().workload_by_ip(&ip).map(|w| {
            let deployment = w.deployment.as_deref().unwrap_or_default().to_owned();
            (w.pod.to_string(), deployment)
        })
    }

    /// The pods of the index as `"ns/name"` → IPs.
    fn pods(&self) -> BTreeMap<String, Vec<IpAddr>> {
        let snapshot = self.index.snapshot();
        snapshot
            .pods()
            .map(|p| (p.label.to_string(), p.ips.clone()))
            .collect()
    }

    /// Every task still running: none died on what it was fed.
    fn all_running(&self) -> bool {
        self.tasks.iter().all(|t| !t.is_finished())
    }
}

/// The pods the server holds, in the form of [`Watched::pods`].
fn server_pods(api: &FakeApi) -> BTreeMap<String, Vec<IpAddr>> {
    api.objects::<Pod>()
        .values()
        .map(|pod| {
            let info = PodInfo::from_pod(pod).expect("fixtures are valid pods");
            (info.label.to_string(), info.ips)
        })
        .collect()
}

fn resolved(pod: &str, deployment: &str) -> Option<(String, String)> {
    Some((format!("{NS}/{pod}"), deployment.to_owned()))
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A fresh directory for one test's files.
fn scratch_dir(test: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("k8s_watch")
        .join(format!("{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

// ---- scenarios ----------------------------------------------------------

#[tokio::test]
async fn initial_lists_populate_the_index_and_then_mark_it_synced() {
    let api = FakeApi::start().await;
    seed_web(&api);
    api.apply(&mk_service(NS, "web-svc"));
    api.apply(&mk_slice(NS, "web-svc-abc", "web-svc", &["192.0.2.10"]));
    api.hold_lists(Hold::Lists);

    let watched = Watched::start(api.client(), &KINDS);
    eventually("every list pending", DEADLINE, || async {
        equals(api.pending_lists(), KINDS.len())
    })
    .await;
    // Lists not answered yet: not ready, nothing served.
    assert!(!watched.index.is_synced(&[Kind::Pod]));
    assert_eq!(watched.resolve("192.0.2.10"), None);

    api.hold_lists(Hold::Nothing);
    watched.synced(&KINDS).await;
    // Both endpoints kinds count as synced whichever source was chosen.
    assert!(watched.index.is_synced(&Kind::ALL));
    assert_eq!(
        watched.resolve("192.0.2.10"),
        resolved("web-5f9d-a", "emojivoto/web")
    );
    let snapshot = watched.index.snapshot();
    assert!(snapshot.deployment(NS, "web").is_some());
    assert!(snapshot.service(NS, "web-svc").is_some());
    assert_eq!(
        snapshot.endpoint_slices_of_service(NS, "web-svc").count(),
        1
    );
    assert_eq!(api.list_count::<Pod>(), 1);
    assert!(watched.all_running());
}

#[tokio::test]
async fn pod_created_after_start_resolves_once_watched() {
    let api = FakeApi::start().await;
    seed_web(&api);
    let watched = Watched::start(api.client(), &KINDS);
    watched.synced(&KINDS).await;
    assert_eq!(watched.resolve("192.0.2.11"), None);

    api.apply(&mk_pod(NS, "web-5f9d-b", "192.0.2.11", Some("web-5f9d")));
    let owner = eventually("the new pod", DEADLINE, || async {
        watched.resolve("192.0.2.11")
    })
    .await;
    assert_eq!(Some(owner), resolved("web-5f9d-b", "emojivoto/web"));
    // Delivered by the watch, not by a re-list.
    assert_eq!(api.list_count::<Pod>(), 1);
}

#[tokio::test]
async fn deleted_pod_stops_resolving() {
    let api = FakeApi::start().await;
    seed_web(&api);
    api.apply(&mk_pod(NS, "web-5f9d-b", "192.0.2.11", Some("web-5f9d")));
    let watched = Watched::start(api.client(), &KINDS);
    watched.synced(&KINDS).await;
    assert!(watched.resolve("192.0.2.11").is_some());

    assert!(api.delete::<Pod>(NS, "web-5f9d-b"));
    eventually(
        "the deleted pod's IP to stop resolving",
        DEADLINE,
        || async { watched.resolve("192.0.2.11").is_none() },
    )
    .await;
    assert_eq!(
        watched.resolve("192.0.2.10"),
        resolved("web-5f9d-a", "emojivoto/web")
    );
}

#[tokio::test]
async fn reused_pod_ip_resolves_to_the_new_pod() {
    let api = FakeApi::start().await;
    seed_web(&api);
    api.apply(&mk_deployment(NS, "api"));
    api.apply(&mk_replica_set(NS, "api-77c4", Some("api")));
    let watched = Watched::start(api.client(), &KINDS);
    watched.synced(&KINDS).await;

    // The old pod fails; the kubelet hands its IP to a pod of another deployment.
    let old = mk_pod(NS, "web-5f9d-a", "192.0.2.10", Some("web-5f9d"));
    api.apply(&old.in_phase("Failed"));
    api.apply(&mk_pod(NS, "api-77c4-x", "192.0.2.10", Some("api-77c4")));
    let expected = resolved("api-77c4-x", "emojivoto/api");
    eventually("the IP to move to the new pod", DEADLINE, || async {
        equals(watched.resolve("192.0.2.10"), expected.clone())
    })
    .await;

    // The failed pod's deletion does not take the IP from the new one.
    api.delete::<Pod>(NS, "web-5f9d-a");
    eventually("the failed pod to go", DEADLINE, || async {
        !watched.pods().contains_key("emojivoto/web-5f9d-a")
    })
    .await;
    assert_eq!(watched.resolve("192.0.2.10"), expected);
}

#[tokio::test]
async fn replica_set_arriving_after_its_pods_resolves_them() {
    let api = FakeApi::start().await;
    api.apply(&mk_deployment(NS, "web"));
    api.apply(&mk_pod(NS, "web-5f9d-a", "192.0.2.10", Some("web-5f9d")));
    let watched = Watched::start(api.client(), &KINDS);
    watched.synced(&KINDS).await;
    assert_eq!(watched.resolve("192.0.2.10"), resolved("web-5f9d-a", ""));

    api.apply(&mk_replica_set(NS, "web-5f9d", Some("web")));
    let expected = resolved("web-5f9d-a", "emojivoto/web");
    eventually("the pod to resolve to its deployment", DEADLINE, || async {
        equals(watched.resolve("192.0.2.10"), expected.clone())
    })
    .await;
}

#[tokio::test]
async fn expired_watch_relists_to_exactly_the_servers_state() {
    let api = FakeApi::start().await;
    // Lists come in pages of two, so a re-list of three pods takes two requests.
    api.set_page_limit(Some(2));
    seed_web(&api);
    api.apply(&mk_pod(NS, "web-5f9d-b", "192.0.2.11", Some("web-5f9d")));
    api.apply(&mk_pod(NS, "web-5f9d-c", "192.0.2.12", Some("web-5f9d")));
    let watched = Watched::start(api.client(), &KINDS);
    watched.synced(&KINDS).await;
    eventually("the pod watch", DEADLINE, || async {
        equals(api.open_watches::<Pod>(), 1)
    })
    .await;
    let before = watched.pods();
    assert_eq!(before, server_pods(&api));
    assert_eq!(api.list_count::<Pod>(), 2, "the first list took two pages");

    // 410 Gone on every watch, and the cluster changes before the re-list.
    api.hold_lists(Hold::LaterPages);
    api.expire_watches();
    api.delete::<Pod>(NS, "web-5f9d-b");
    api.apply(&mk_pod(NS, "web-5f9d-c", "192.0.2.13", Some("web-5f9d")));
    api.apply(&mk_pod(NS, "web-5f9d-d", "192.0.2.14", Some("web-5f9d")));
    api.delete::<ReplicaSet>(NS, "web-5f9d");
    // The re-list's first page (with the moved pod c) is in, the second held:
    // readers keep the last consistent state, not half a list.
    eventually("the second page of the pod re-list", DEADLINE, || async {
        api.pending_lists() == 1 && api.list_count::<Pod>() == 3
    })
    .await;
    assert_eq!(watched.pods(), before);
    assert!(watched.resolve("192.0.2.11").is_some());
    assert_eq!(watched.resolve("192.0.2.13"), None);

    api.hold_lists(Hold::Nothing);
    eventually("the index to equal the server", DEADLINE, || async {
        equals(watched.pods(), server_pods(&api))
    })
    .await;
    assert_eq!(watched.resolve("192.0.2.11"), None);
    assert_eq!(watched.resolve("192.0.2.12"), None);
    eventually("the deleted ReplicaSet to be gone", DEADLINE, || async {
        !watched.index.snapshot().has_replica_set(NS, "web-5f9d")
    })
    .await;
    assert_eq!(watched.resolve("192.0.2.13"), resolved("web-5f9d-c", ""));
    assert_eq!(watched.resolve("192.0.2.14"), resolved("web-5f9d-d", ""));
    assert_eq!(api.list_count::<Pod>(), 4, "re-listed once, in two pages");
    assert!(watched.all_running());
}

#[tokio::test]
async fn dropped_watch_is_resumed_without_a_relist() {
    let api = FakeApi::start().await;
    seed_web(&api);
    let watched = Watched::start(api.client(), &KINDS);
    watched.synced(&KINDS).await;
    eventually("the pod watch", DEADLINE, || async {
        equals(api.open_watches::<Pod>(), 1)
    })
    .await;

    api.drop_watches();
    api.apply(&mk_pod(NS, "web-5f9d-b", "192.0.2.11", Some("web-5f9d")));
    api.delete::<Pod>(NS, "web-5f9d-a");
    eventually("the changes made while reconnecting", DEADLINE, || async {
        equals(watched.pods(), server_pods(&api))
    })
    .await;
    assert_eq!(
        watched.resolve("192.0.2.11"),
        resolved("web-5f9d-b", "emojivoto/web")
    );
    // Resumed from the last resourceVersion seen: watched again, not listed.
    assert_eq!(api.list_count::<Pod>(), 1);
    assert!(api.watch_count::<Pod>() >= 2);
}

#[tokio::test]
async fn bookmarks_let_a_quiet_watch_resume_past_a_compaction() {
    let api = FakeApi::start().await;
    seed_web(&api);
    let watched = Watched::start(api.client(), &KINDS);
    watched.synced(&KINDS).await;
    eventually("the pod watch", DEADLINE, || async {
        equals(api.open_watches::<Pod>(), 1)
    })
    .await;

    // Other kinds move the resourceVersion on; the pod watch hears of it
    // only through a BOOKMARK, and the history before it is compacted.
    for n in 0..5 {
        api.apply(&mk_service(NS, &format!("svc-{n}")));
    }
    api.bookmark();
    api.compact();
    api.drop_watches();
    api.apply(&mk_pod(NS, "web-5f9d-b", "192.0.2.11", Some("web-5f9d")));

    let owner = eventually("the pod added after the compaction", DEADLINE, || async {
        watched.resolve("192.0.2.11")
    })
    .await;
    assert_eq!(Some(owner), resolved("web-5f9d-b", "emojivoto/web"));
    assert_eq!(api.list_count::<Pod>(), 1, "resumed from the bookmark");
}

#[tokio::test]
async fn server_going_away_and_back_loses_no_update() {
    let mut api = FakeApi::start().await;
    seed_web(&api);
    api.apply(&mk_pod(NS, "web-5f9d-b", "192.0.2.11", Some("web-5f9d")));
    let watched = Watched::start(api.client(), &KINDS);
    watched.synced(&KINDS).await;

    api.stop().await;
    api.apply(&mk_pod(NS, "web-5f9d-c", "192.0.2.12", Some("web-5f9d")));
    api.delete::<Pod>(NS, "web-5f9d-b");
    api.apply(&mk_deployment(NS, "api"));
    api.apply(&mk_replica_set(NS, "api-77c4", Some("api")));
    api.apply(&mk_pod(NS, "api-77c4-x", "192.0.2.20", Some("api-77c4")));
    // Kept retrying against the closed port, without dying.
    tokio::task::yield_now().await;
    assert!(watched.all_running());
    api.restart().await;

    eventually(
        "every update made while the server was away",
        DEADLINE,
        || async {
            watched.pods() == server_pods(&api)
                && watched.resolve("192.0.2.20") == resolved("api-77c4-x", "emojivoto/api")
        },
    )
    .await;
    assert_eq!(watched.resolve("192.0.2.11"), None);
    assert_eq!(
        watched.resolve("192.0.2.12"),
        resolved("web-5f9d-c", "emojivoto/web")
    );
    assert_eq!(api.list_count::<Pod>(), 1, "resumed from its history");
}

/// With the production backoff: a 15 s outage (long enough for kube's
/// default backoff to grow past 10 s) during which the history is
/// compacted. Once the server answers again, the watch's 410 re-lists at
/// once, and the index has the new pod within 5 s of the recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_the_relist_follows_the_recovery_within_seconds() {
    const OUTAGE: Duration = Duration::from_secs(15);
    const RELISTED_WITHIN: Duration = Duration::from_secs(5);
    let mut api = FakeApi::start().await;
    seed_web(&api);
    let watched = Watched::start_retrying(api.client(), &[Kind::Pod], Retry::Default);
    watched.synced(&[Kind::Pod]).await;

    api.stop().await;
    api.apply(&mk_pod(NS, "web-5f9d-b", "192.0.2.11", Some("web-5f9d")));
    api.compact();
    tokio::time::sleep(OUTAGE).await;
    api.restart().await;
    let back = Instant::now();
    eventually("the pod added during the outage", DEADLINE, || async {
        watched.resolve("192.0.2.11").map(|_| ())
    })
    .await;
    let took = back.elapsed();
    assert!(
        took < RELISTED_WITHIN,
        "re-listed {took:?} after the API server came back"
    );
    assert!(api.list_count::<Pod>() >= 2, "re-listed after 410 Expired");
}

#[tokio::test]
async fn server_coming_back_compacted_is_relisted_losing_no_update() {
    let mut api = FakeApi::start().await;
    seed_web(&api);
    api.apply(&mk_pod(NS, "web-5f9d-b", "192.0.2.11", Some("web-5f9d")));
    let watched = Watched::start(api.client(), &KINDS);
    watched.synced(&KINDS).await;

    api.stop().await;
    api.apply(&mk_pod(NS, "web-5f9d-c", "192.0.2.12", Some("web-5f9d")));
    api.delete::<Pod>(NS, "web-5f9d-b");
    api.compact();
    api.restart().await;

    eventually("the re-listed state", DEADLINE, || async {
        equals(watched.pods(), server_pods(&api))
    })
    .await;
    assert_eq!(watched.resolve("192.0.2.11"), None);
    assert_eq!(
        watched.resolve("192.0.2.12"),
        resolved("web-5f9d-c", "emojivoto/web")
    );
    assert!(api.list_count::<Pod>() >= 2, "re-listed after 410 Expired");
}

#[tokio::test]
async fn endpoint_slices_are_used_when_offered() {
    let api = FakeApi::start().await;
    api.apply(&mk_service(NS, "web-svc"));
    api.apply(&mk_endpoints(
        NS,
        "web-svc",
        vec![subset(&["192.0.2.10"], &[], &[])],
    ));
    api.apply(&mk_slice(NS, "web-svc-abc", "web-svc", &["192.0.2.10"]));
    let client = api.client();
    assert_eq!(
        watch::endpoints_source(&client)
            .await
            .expect("the fake answers"),
        Kind::EndpointSlice
    );

    let watched = Watched::start(client, &[Kind::Endpoints]);
    watched
        .synced(&[Kind::Endpoints, Kind::EndpointSlice])
        .await;
    let snapshot = watched.index.snapshot();
    assert_eq!(
        snapshot.endpoint_slices_of_service(NS, "web-svc").count(),
        1
    );
    assert!(snapshot.endpoints(NS, "web-svc").is_none());

    api.apply(&mk_slice(NS, "web-svc-def", "web-svc", &["192.0.2.11"]));
    eventually("the second slice", DEADLINE, || async {
        let snapshot = watched.index.snapshot();
        equals(
            snapshot.endpoint_slices_of_service(NS, "web-svc").count(),
            2,
        )
    })
    .await;
    assert_eq!(api.list_count::<Endpoints>(), 0);
}

#[tokio::test]
async fn core_endpoints_are_used_when_slices_are_not_offered() {
    let api = FakeApi::start().await;
    api.offer_endpoint_slices(false);
    api.apply(&mk_endpoints(
        NS,
        "web-svc",
        vec![subset(&["192.0.2.10"], &[], &[])],
    ));
    api.apply(&mk_slice(NS, "web-svc-abc", "web-svc", &["192.0.2.10"]));
    let client = api.client();
    assert_eq!(
        watch::endpoints_source(&client)
            .await
            .expect("the fake answers"),
        Kind::Endpoints
    );

    let watched = Watched::start(client, &[Kind::EndpointSlice]);
    watched
        .synced(&[Kind::Endpoints, Kind::EndpointSlice])
        .await;
    assert!(watched.index.snapshot().endpoints(NS, "web-svc").is_some());
    assert_eq!(
        watched
            .index
            .snapshot()
            .endpoint_slices_of_service(NS, "web-svc")
            .count(),
        0
    );

    api.delete::<Endpoints>(NS, "web-svc");
    eventually("the deleted Endpoints to go", DEADLINE, || async {
        watched.index.snapshot().endpoints(NS, "web-svc").is_none()
    })
    .await;
    assert_eq!(api.list_count::<EndpointSlice>(), 0);
}

#[tokio::test]
async fn kubeconfig_context_namespace_and_token_work_over_https() {
    let api = FakeApi::start_tls("s3cret-token").await;
    seed_web(&api);
    let kubeconfig = api.write_kubeconfig(&scratch_dir("kubeconfig-ok"), "s3cret-token");

    let client = watch::client(Some(&kubeconfig))
        .await
        .expect("the kubeconfig loads");
    assert_eq!(
        client.default_namespace(),
        NS,
        "the current context's namespace"
    );
    assert_eq!(
        watch::endpoints_source(&client)
            .await
            .expect("authorized over TLS"),
        Kind::EndpointSlice
    );

    let watched = Watched::start(client, &KINDS);
    watched.synced(&KINDS).await;
    assert_eq!(
        watched.resolve("192.0.2.10"),
        resolved("web-5f9d-a", "emojivoto/web")
    );
    assert_eq!(api.unauthorized_count(), 0);
}

#[tokio::test]
async fn wrong_token_is_refused_with_a_clear_error() {
    let api = FakeApi::start_tls("s3cret-token").await;
    seed_web(&api);
    let kubeconfig = api.write_kubeconfig(&scratch_dir("kubeconfig-bad-token"), "wrong");

    let client = watch::client(Some(&kubeconfig))
        .await
        .expect("the kubeconfig loads");
    let error = watch::endpoints_source(&client)
        .await
        .expect_err("the server refuses the token");
    let message = error.to_string();
    assert!(
        matches!(error, watch::Error::Refused { code: 401, .. }),
        "{message}"
    );
    assert!(message.contains("401 Unauthorized"), "{message}");
    assert!(message.contains("credentials"), "{message}");

    // The watchers keep retrying, never sync and never die.
    let watched = Watched::start(client, &KINDS);
    eventually("several refused attempts per kind", DEADLINE, || async {
        api.unauthorized_count() >= 3 * KINDS.len()
    })
    .await;
    assert!(!watched.index.is_synced(&[Kind::Pod]));
    assert!(watched.all_running());
}

#[tokio::test]
async fn server_certificate_from_another_ca_is_rejected() {
    let api = FakeApi::start_tls("s3cret-token").await;
    let other = FakeApi::start_tls("s3cret-token").await;
    let dir = scratch_dir("kubeconfig-wrong-ca");
    let kubeconfig = api.write_kubeconfig(&dir, "s3cret-token");
    std::fs::write(dir.join("ca.pem"), other.ca_pem()).expect("replace the CA");

    let client = watch::client(Some(&kubeconfig))
        .await
        .expect("the kubeconfig loads");
    let error = watch::endpoints_source(&client)
        .await
        .expect_err("the server's certificate is not trusted");
    assert!(matches!(error, watch::Error::Unreachable { .. }), "{error}");
}

#[tokio::test]
async fn missing_kubeconfig_is_a_clear_error() {
    let path = scratch_dir("no-kubeconfig").join("kubeconfig");
    let Err(error) = watch::client(Some(&path)).await else {
        panic!("loaded a kubeconfig that does not exist");
    };
    let message = error.to_string();
    assert!(message.starts_with("cannot load kubeconfig"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[tokio::test]
async fn watchers_end_when_shutdown_fires() {
    let api = FakeApi::start().await;
    seed_web(&api);
    let watched = Watched::start(api.client(), &KINDS);
    watched.synced(&KINDS).await;
    assert_eq!(watched.tasks.len(), KINDS.len());

    watched.shutdown.signal();
    for task in watched.tasks {
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("the watcher ends on shutdown")
            .expect("the watcher did not panic");
    }
}
