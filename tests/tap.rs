//! Tap end to end over real sockets: simulated proxies serving Observe on
//! their pods' loopback addresses, `conduit controller tap` on the cluster
//! index, public-api streaming it over HTTP, and the `conduit tap` CLI as
//! the real binary. Filters select, the rate holds, a pod that cannot be
//! reached is skipped, and a caller leaving (dropped client, Ctrl-C) closes
//! every upstream call — as the simulated proxies' own counters show.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use conduit::admin::Admin;
use conduit::client::ApiClient;
use conduit::core::ShutdownHandle;
use conduit::k8s::{Index, cluster_file};
use conduit::proto::common::tap_event::http::Event;
use conduit::proto::common::{TapEvent, tap_event};
use conduit::proto::controller::tap::tap_client::TapClient;
use conduit::proto::http_api::TAP_PATH;
use conduit::proto::net::ip_from_proto;
use conduit::proto::public::TapRequest;
use conduit::proto::public::tap_request::Target;
use conduit::simulate::tap::{Counters, loopback_pod_ip, on_loopback};
use conduit::simulate::{Fleet, cluster_yaml, fleet, traffic};
use support::{
    Exposition, PodFixture, eventually, http_get, mk_deployment, mk_pod, mk_replica_set, yaml_docs,
};

const NS: &str = "shop";
/// How long a scenario may take to converge.
const DEADLINE: Duration = Duration::from_secs(10);
/// The bound on cancellation: every upstream call closed within a
/// second of the caller leaving.
const CANCEL_WITHIN: Duration = Duration::from_secs(1);

/// Parses a component's flags as its subcommand would.
#[derive(Parser)]
struct Flags<T: clap::Args> {
    #[command(flatten)]
    args: T,
}

fn flags<T: clap::Args>(argv: &[String]) -> T {
    Flags::<T>::parse_from(std::iter::once("conduit".to_string()).chain(argv.iter().cloned())).args
}

/// Nine simulated pods (web, api and auth, three each) with their taps,
/// plus two pods of `api` that can't be tapped: one whose proxy does not
/// answer, one still Pending.
struct Mesh {
    fleet: Fleet,
    counters: Counters,
    api: SocketAddr,
    tap_grpc: SocketAddr,
    tap_admin: SocketAddr,
    _stop: ShutdownHandle,
}

/// The address of the `api` pod whose proxy never answers: a loopback
/// address no simulated pod has.
fn silent_pod_ip() -> IpAddr {
    IpAddr::V4(loopback_pod_ip(60_000))
}

async fn start_mesh(seed: u64) -> Mesh {
    let fleet = on_loopback(fleet(9, 3, NS, seed));
    let api_rs = fleet.deployments[1].replica_set_name();
    let yaml = yaml_docs(&[
        &cluster_yaml(&fleet),
        &mk_pod(
            NS,
            "api-silent",
            &silent_pod_ip().to_string(),
            Some(&api_rs),
        ),
        &mk_pod(NS, "api-pending", "192.0.2.99", Some(&api_rs)).in_phase("Pending"),
        // A deployment whose only proxy never answers.
        &mk_deployment(NS, "ghost"),
        &mk_replica_set(NS, "ghost-5d8f", Some("ghost")),
        &mk_pod(
            NS,
            "ghost-5d8f-1",
            &IpAddr::V4(loopback_pod_ip(60_001)).to_string(),
            Some("ghost-5d8f"),
        ),
    ]);
    let index = Arc::new(Index::new());
    cluster_file::apply(cluster_file::parse(&yaml).unwrap(), &index);

    let (stop, shutdown) = ShutdownHandle::new();
    let port = {
        let probe = std::net::TcpListener::bind((fleet.pods[0].ip, 0)).unwrap();
        probe.local_addr().unwrap().port()
    };
    let counters = Counters::register(&Admin::registry()).unwrap();
    conduit::simulate::tap::serve(
        Arc::new(fleet.clone()),
        Arc::new(traffic::model(&fleet, seed)),
        port,
        1.0,
        counters.clone(),
        shutdown.clone(),
    )
    .await
    .unwrap();

    let tap: conduit::tap::Args = flags(&[
        "--addr=127.0.0.1:0".into(),
        "--metrics-addr=127.0.0.1:0".into(),
        format!("--tap-port={port}"),
    ]);
    let tap = tap.bind_with_index(index).await.unwrap();
    let (tap_grpc, tap_admin) = (tap.grpc_addr(), tap.admin_addr());
    tokio::spawn(tap.serve(shutdown.clone()));
    let api: conduit::public_api::Args = flags(&[
        "--addr=127.0.0.1:0".into(),
        "--metrics-addr=127.0.0.1:0".into(),
        // Nothing here needs telemetry.
        "--telemetry-addr=127.0.0.1:1".into(),
        format!("--tap-addr={tap_grpc}"),
    ]);
    let api = api.bind().await.unwrap();
    let api_addr = api.http_addr();
    tokio::spawn(api.serve(shutdown));
    Mesh {
        fleet,
        counters,
        api: api_addr,
        tap_grpc,
        tap_admin,
        _stop: stop,
    }
}

impl Mesh {
    /// The pod IPs of deployment `j` that serve a tap.
    fn pod_ips(&self, j: usize) -> BTreeSet<IpAddr> {
        self.fleet.deployments[j]
            .pods
            .iter()
            .map(|&p| IpAddr::V4(self.fleet.pods[p].ip))
            .collect()
    }

    fn deployment(&self, j: usize) -> String {
        format!("{NS}/{}", self.fleet.deployments[j].name)
    }

    async fn tap_metric(&self, name: &str) -> f64 {
        let (_, text) = http_get(self.tap_admin, "/metrics").await;
        Exposition::parse(&text).get(name, &[]).unwrap_or(0.0)
    }
}

fn tap_request(deployment: String, max_rps: f32) -> TapRequest {
    TapRequest {
        target: Some(Target::Deployment(deployment)),
        max_rps,
        ..TapRequest::default()
    }
}

fn http_event(event: &TapEvent) -> &Event {
    let Some(tap_event::Event::Http(http)) = &event.event else {
        panic!("an HTTP event: {event:?}");
    };
    http.event.as_ref().expect("the event has a kind")
}

fn dst_ip(event: &TapEvent) -> IpAddr {
    ip_from_proto(event.target.as_ref().unwrap().ip.as_ref().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_matching_events_arrive_and_the_rate_holds() {
    let mesh = start_mesh(7).await;
    let api_route = format!("/api/{}/item", mesh.fleet.deployments[1].name);
    let request = TapRequest {
        path: api_route.clone(),
        ..tap_request(mesh.deployment(1), 1.5)
    };
    let client = ApiClient::new(&mesh.api.to_string()).unwrap();
    let mut events = client
        .stream::<_, TapEvent>(TAP_PATH, &request)
        .await
        .unwrap();
    // 1.5 requests/s over four running pods (the Pending one is skipped;
    // the silent one counts, its share unused) is 3 requests per pod per
    // 10 s window: 9 from the three that answer.
    let expected = 9;
    let started = Instant::now();
    let mut requests: HashMap<(u32, u64), String> = HashMap::new();
    let mut answered = 0;
    let mut pods_seen = BTreeSet::new();
    // Read until the window's allowance has arrived, then watch a while
    // longer (still inside the 10 s window) for anything beyond it.
    let quiet_until = loop {
        let event = tokio::time::timeout(DEADLINE, events.next())
            .await
            .expect("events keep coming until the allowance is used")
            .unwrap()
            .expect("the stream stays open");
        assert!(
            mesh.pod_ips(1).contains(&dst_ip(&event)),
            "an event from a pod of {}: {event:?}",
            mesh.deployment(1)
        );
        pods_seen.insert(dst_ip(&event));
        match http_event(&event) {
            Event::RequestInit(init) => {
                assert!(init.path.starts_with(&api_route), "{}", init.path);
                let id = init.id.unwrap();
                requests.insert((id.base, id.stream), init.path.clone());
            }
            Event::ResponseInit(rsp) => {
                let id = rsp.id.unwrap();
                assert!(requests.contains_key(&(id.base, id.stream)));
            }
            Event::ResponseEnd(end) => {
                let id = end.id.unwrap();
                assert!(requests.contains_key(&(id.base, id.stream)));
                answered += 1;
            }
        }
        if answered == expected {
            break Instant::now() + Duration::from_secs(2);
        }
    };
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "inside one window"
    );
    assert_eq!(requests.len(), expected);
    assert_eq!(pods_seen, mesh.pod_ips(1), "every running pod is tapped");
    let extra = tokio::time::timeout_at(quiet_until.into(), events.next()).await;
    assert!(
        extra.is_err(),
        "nothing beyond maxRps × window within the window: {extra:?}"
    );
    // The silent pod was tried, failed, and said so in the metrics.
    assert!(mesh.tap_metric("conduit_tap_upstream_errors_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_client_closes_every_upstream_observe() {
    let mesh = start_mesh(8).await;
    let client = ApiClient::new(&mesh.api.to_string()).unwrap();
    let mut events = client
        .stream::<_, TapEvent>(TAP_PATH, &tap_request(mesh.deployment(0), 1000.0))
        .await
        .unwrap();
    events.next().await.unwrap().expect("a first event");
    let open = || mesh.counters.open.get();
    eventually("an Observe open on each web pod", DEADLINE, || async {
        open() == 3
    })
    .await;
    assert_eq!(mesh.tap_metric("conduit_tap_streams").await, 1.0);
    drop(events);
    eventually("every Observe closed", CANCEL_WITHIN, || async {
        open() == 0
    })
    .await;
    eventually("the tap stream closed", DEADLINE, || async {
        mesh.tap_metric("conduit_tap_streams").await == 0.0
            && mesh.tap_metric("conduit_tap_upstream_streams").await == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_the_cli_closes_every_upstream_observe() {
    let mesh = start_mesh(9).await;
    let mut cli = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["tap", "deploy", &mesh.deployment(0)])
        .args(["--max-rps", "1000", "--api-addr", &mesh.api.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = cli.stdout.take().unwrap();
    let (tx, first) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next().and_then(Result::ok));
        // Keep reading so the CLI never blocks on a full pipe.
        for _ in lines {}
    });
    let first = tokio::time::timeout(DEADLINE, first)
        .await
        .expect("the CLI prints an event")
        .unwrap()
        .expect("a line");
    assert!(first.starts_with("req id="), "{first}");
    assert!(first.contains(":method=") && first.contains(":path=/api/"));
    eventually("an Observe open on each web pod", DEADLINE, || async {
        mesh.counters.open.get() == 3
    })
    .await;
    let interrupted = Command::new("kill")
        .args(["-INT", &cli.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    eventually("every Observe closed", CANCEL_WITHIN, || async {
        mesh.counters.open.get() == 0
    })
    .await;
    let status = tokio::task::spawn_blocking(move || cli.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "Ctrl-C ends a tap cleanly: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_filters_and_unknown_targets_are_refused() {
    let mesh = start_mesh(10).await;
    let mut tap = TapClient::connect(format!("http://{}", mesh.tap_grpc))
        .await
        .unwrap();
    let web = mesh.deployment(0);
    let cases = [
        (
            TapRequest {
                to_port: 70_000,
                ..tap_request(web.clone(), 1.0)
            },
            tonic::Code::InvalidArgument,
            "invalid toPort 70000",
        ),
        (
            TapRequest {
                from_ip: "1.2.3".into(),
                ..tap_request(web.clone(), 1.0)
            },
            tonic::Code::InvalidArgument,
            "invalid fromIP \"1.2.3\"",
        ),
        (
            tap_request(format!("{NS}/nope"), 1.0),
            tonic::Code::NotFound,
            "deployment shop/nope not found",
        ),
        (
            TapRequest {
                target: Some(Target::Pod(format!("{NS}/nope"))),
                ..TapRequest::default()
            },
            tonic::Code::NotFound,
            "pod shop/nope not found",
        ),
        (
            TapRequest::default(),
            tonic::Code::InvalidArgument,
            "needs a target",
        ),
    ];
    for (request, code, message) in cases {
        let status = tap.tap(request).await.expect_err("refused");
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(message), "{status:?}");
    }
    // Nothing was opened upstream for any of them.
    assert_eq!(mesh.counters.calls.get(), 0);

    // A target none of whose proxies answers: told so, not left waiting.
    let mut events = tap
        .tap(tap_request(format!("{NS}/ghost"), 1.0))
        .await
        .unwrap()
        .into_inner();
    let status = tokio::time::timeout(DEADLINE, events.message())
        .await
        .expect("an answer well before the window ends")
        .expect_err("no event can come");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .contains("no proxy of deployment shop/ghost could be tapped"),
        "{status:?}"
    );

    // The CLI prints each refusal as one plain line and fails.
    let cli_cases: [(&[&str], &str); 4] = [
        (
            &["web", "-n", NS, "--to-port", "70000"],
            "invalid toPort 70000: a port is 1-65535",
        ),
        (
            &["web", "-n", NS, "--from-ip", "1.2.3"],
            "not an IPv4 or IPv6 address",
        ),
        (&["elsewhere/web"], "deployment elsewhere/web not found"),
        (
            &["shop/ghost"],
            "no proxy of deployment shop/ghost could be tapped",
        ),
    ];
    for (extra, message) in cli_cases {
        let api = mesh.api.to_string();
        let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
            .args(["tap", "deploy", "--api-addr", &api])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?}");
        assert!(out.stdout.is_empty(), "{extra:?}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(message), "{extra:?}: {stderr}");
    }
}
