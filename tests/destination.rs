//! `conduit controller destination` over real gRPC on loopback, fed by kube
//! watchers against the fake Kubernetes API server: the first `add`, the
//! diffs as a deployment scales, named target ports, readiness, services
//! appearing and going away, malformed destinations, and streams that end
//! when their client goes away.

#[path = "support/fake_api.rs"]
mod fake_api;
mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use conduit::core::ShutdownHandle;
use conduit::k8s::watch::{Retry, WatchConfig};
use conduit::k8s::{Index, Kind};
use conduit::proto::common::Destination;
use conduit::proto::net::ip_from_proto;
use conduit::proto::proxy::destination::destination_client::DestinationClient;
use conduit::proto::proxy::destination::{Update, update};
use fake_api::FakeApi;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use support::{
    Exposition, ServiceFixture, SliceFixture, equals, eventually, http_get, mk_endpoints,
    mk_service, mk_slice, subset,
};
use tonic::Streaming;
use tonic::transport::Channel;

const NS: &str = "emojivoto";
/// How long a scenario may take to converge; they take milliseconds.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long to watch for an update that must not come.
const QUIET: Duration = Duration::from_millis(300);
const FAST_RETRY: Retry = Retry::Exponential {
    min: Duration::from_millis(10),
    max: Duration::from_millis(200),
};

// ---- fixtures -------------------------------------------------------------

/// A slice of `service` as the endpoint-slice controller writes it: ready
/// endpoints `ips`, and the service port `http` resolved to 8080.
fn ready_slice(name: &str, service: &str, ips: &[&str]) -> EndpointSlice {
    mk_slice(NS, name, service, ips)
        .with_ready(true)
        .with_ports(&[("http", 8080)])
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn addrs(list: &[&str]) -> BTreeSet<SocketAddr> {
    list.iter().map(|s| addr(s)).collect()
}

// ---- harness ----------------------------------------------------------------

/// The destination component on loopback, its index fed by watchers of `api`.
struct Running {
    grpc: SocketAddr,
    admin: SocketAddr,
    index: Arc<Index>,
    shutdown: Option<ShutdownHandle>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(api: &FakeApi, flags: &[&str]) -> Running {
    let index = Arc::new(Index::new());
    let (handle, shutdown) = ShutdownHandle::new();
    let config = WatchConfig {
        kubeconfig: None,
        retry: FAST_RETRY,
    };
    config.spawn(
        api.client(),
        index.clone(),
        &[Kind::Service, Kind::EndpointSlice],
        shutdown.clone(),
    );
    let mut argv = vec![
        "conduit",
        "controller",
        "destination",
        "-addr=127.0.0.1:0",
        "-metrics-addr=127.0.0.1:0",
    ];
    argv.extend_from_slice(flags);
    let cli = conduit::cli::Cli::parse_from(conduit::cli::normalize_args(
        argv.into_iter().map(str::to_owned),
    ));
    let conduit::cli::Command::Controller(conduit::cli::Controller::Destination(args)) =
        cli.command
    else {
        unreachable!()
    };
    let bound = args.bind_with_index(index.clone()).await.expect("binds");
    let running = Running {
        grpc: bound.grpc_addr(),
        admin: bound.admin_addr(),
        index,
        shutdown: Some(handle),
        server: tokio::spawn(bound.serve(shutdown)),
    };
    eventually("the index synced", DEADLINE, || async {
        running.index.is_synced(&[Kind::Service])
            && (running.index.is_synced(&[Kind::EndpointSlice])
                || running.index.is_synced(&[Kind::Endpoints]))
    })
    .await;
    running
}

impl Running {
    async fn client(&self) -> DestinationClient<Channel> {
        DestinationClient::connect(format!("http://{}", self.grpc))
            .await
            .expect("connect to destination")
    }

    async fn get(&self, path: &str) -> Streaming<Update> {
        self.get_scheme("k8s", path).await.expect("Get is accepted")
    }

    async fn get_scheme(
        &self,
        scheme: &str,
        path: &str,
    ) -> Result<Streaming<Update>, tonic::Status> {
        let request = Destination {
            scheme: scheme.to_owned(),
            path: path.to_owned(),
        };
        Ok(self.client().await.get(request).await?.into_inner())
    }

    /// Waits until the index resolves `path`'s target to exactly `want`.
    async fn indexed(&self, namespace: &str, service: &str, port: u16, want: &[&str]) {
        let target = conduit::destination::path::Target {
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            port,
        };
        let want = addrs(want);
        eventually(
            format!("{target} indexed as {want:?}"),
            DEADLINE,
            || async {
                equals(
                    conduit::destination::resolve(&self.index.snapshot(), &target),
                    want.clone(),
                )
            },
        )
        .await;
    }

    async fn scrape(&self) -> Exposition {
        let (status, body) = http_get(self.admin, "/metrics").await;
        assert_eq!(status, 200, "scrape failed: {body}");
        Exposition::parse(&body)
    }

    async fn streams(&self) -> f64 {
        self.scrape()
            .await
            .get("conduit_destination_streams", &[])
            .expect("the streams gauge is exposed")
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Change {
    Add(BTreeSet<SocketAddr>),
    Remove(BTreeSet<SocketAddr>),
}

fn decode(update: Update) -> Change {
    let to_addr = |tcp: conduit::proto::common::TcpAddress| {
        let ip = ip_from_proto(&tcp.ip.expect("an address has an IP")).expect("IP set");
        SocketAddr::new(ip, u16::try_from(tcp.port).expect("port fits"))
    };
    match update.update.expect("an update is set") {
        update::Update::Add(set) => Change::Add(
            set.addrs
                .into_iter()
                .map(|w| {
                    assert_eq!(w.weight, 1, "every address has weight 1");
                    to_addr(w.addr.expect("a weighted address has an address"))
                })
                .collect(),
        ),
        update::Update::Remove(set) => Change::Remove(set.addrs.into_iter().map(to_addr).collect()),
    }
}

/// The next update that is not a heartbeat (an empty `add`).
async fn next_change(stream: &mut Streaming<Update>) -> Change {
    loop {
        let update = tokio::time::timeout(DEADLINE, stream.message())
            .await
            .expect("an update within the deadline")
            .expect("the stream stays healthy")
            .expect("the stream stays open");
        match decode(update) {
            Change::Add(set) if set.is_empty() => continue,
            change => return change,
        }
    }
}

/// Asserts no update other than heartbeats arrives for a while.
async fn quiet(stream: &mut Streaming<Update>) {
    if let Ok(change) = tokio::time::timeout(QUIET, next_change(stream)).await {
        panic!("unexpected update {change:?}");
    }
}

// ---- scenarios --------------------------------------------------------------

#[tokio::test]
async fn scaling_1_to_3_to_0_sends_exactly_the_adds_and_removes() {
    let api = FakeApi::start().await;
    api.apply(&mk_service(NS, "web").with_port("http", 80, IntOrString::Int(8080)));
    api.apply(&ready_slice("web-abc", "web", &["192.0.2.10"]));
    let running = start(&api, &["-heartbeat=1h"]).await;
    running.indexed(NS, "web", 80, &["192.0.2.10:8080"]).await;

    let mut stream = running.get("web.emojivoto.svc.cluster.local:80").await;
    assert_eq!(
        next_change(&mut stream).await,
        Change::Add(addrs(&["192.0.2.10:8080"]))
    );
    quiet(&mut stream).await;

    api.apply(&ready_slice(
        "web-abc",
        "web",
        &["192.0.2.10", "192.0.2.11", "192.0.2.12"],
    ));
    assert_eq!(
        next_change(&mut stream).await,
        Change::Add(addrs(&["192.0.2.11:8080", "192.0.2.12:8080"]))
    );
    quiet(&mut stream).await;

    api.apply(&ready_slice("web-abc", "web", &[]));
    assert_eq!(
        next_change(&mut stream).await,
        Change::Remove(addrs(&[
            "192.0.2.10:8080",
            "192.0.2.11:8080",
            "192.0.2.12:8080"
        ]))
    );
    quiet(&mut stream).await;

    let scrape = running.scrape().await;
    assert_eq!(
        scrape.get("conduit_destination_updates_total", &[("kind", "add")]),
        Some(2.0)
    );
    assert_eq!(
        scrape.get("conduit_destination_updates_total", &[("kind", "remove")]),
        Some(1.0)
    );
    assert_eq!(
        scrape.get(
            "conduit_destination_subscriptions",
            &[("service", "emojivoto/web")]
        ),
        Some(1.0)
    );
    assert!(
        scrape
            .get("conduit_destination_update_fanout_seconds_count", &[])
            .is_some_and(|n| n >= 2.0),
        "fan-out latency is observed for the diffs"
    );
}

#[tokio::test]
async fn not_ready_endpoints_are_left_out_until_ready() {
    let api = FakeApi::start().await;
    api.apply(&mk_service(NS, "web").with_port("http", 80, IntOrString::Int(8080)));
    api.apply(&ready_slice("web-abc", "web", &["192.0.2.10"]).with_endpoint("192.0.2.11", false));
    let running = start(&api, &["-heartbeat=1h"]).await;
    running.indexed(NS, "web", 80, &["192.0.2.10:8080"]).await;

    let mut stream = running.get("web.emojivoto").await;
    assert_eq!(
        next_change(&mut stream).await,
        Change::Add(addrs(&["192.0.2.10:8080"]))
    );
    api.apply(&ready_slice(
        "web-abc",
        "web",
        &["192.0.2.10", "192.0.2.11"],
    ));
    assert_eq!(
        next_change(&mut stream).await,
        Change::Add(addrs(&["192.0.2.11:8080"]))
    );
}

/// Service port `admin` 9990 → targetPort `admin-http`, a container port
/// the pods of two slices declare as 9991 and 9992: each slice names its
/// port `admin` (the service port's name) with the number it resolved to.
fn admin_service() -> Service {
    mk_service(NS, "web")
        .with_port("admin", 9990, IntOrString::String("admin-http".into()))
        .with_port("http", 80, IntOrString::Int(8080))
}

#[tokio::test]
async fn a_named_target_port_resolves_per_pod_through_the_slices() {
    let api = FakeApi::start().await;
    api.apply(&admin_service());
    let ports_a = [("admin", 9991), ("http", 8080)];
    let ports_b = [("admin", 9992), ("http", 8080)];
    api.apply(
        &mk_slice(NS, "web-a", "web", &["192.0.2.10"])
            .with_ready(true)
            .with_ports(&ports_a),
    );
    api.apply(
        &mk_slice(NS, "web-b", "web", &["192.0.2.11"])
            .with_ready(true)
            .with_ports(&ports_b),
    );
    let running = start(&api, &[]).await;
    let both = ["192.0.2.10:9991", "192.0.2.11:9992"];
    running.indexed(NS, "web", 9990, &both).await;

    let mut stream = running.get("web.emojivoto.svc:9990").await;
    assert_eq!(next_change(&mut stream).await, Change::Add(addrs(&both)));
    let mut http = running.get("web.emojivoto.svc:80").await;
    assert_eq!(
        next_change(&mut http).await,
        Change::Add(addrs(&["192.0.2.10:8080", "192.0.2.11:8080"]))
    );
}

#[tokio::test]
async fn core_endpoints_are_used_without_slices_named_port_and_ready_only() {
    let api = FakeApi::start().await;
    api.offer_endpoint_slices(false);
    api.apply(&admin_service());
    // The endpoints controller writes one subset per distinct port set.
    api.apply(&mk_endpoints(
        NS,
        "web",
        vec![
            subset(
                &["192.0.2.20"],
                &["192.0.2.21"],
                &[("admin", 9991), ("http", 8080)],
            ),
            subset(
                &["192.0.2.22"],
                &["192.0.2.23"],
                &[("admin", 9992), ("http", 8080)],
            ),
        ],
    ));
    let running = start(&api, &[]).await;
    let ready = ["192.0.2.20:9991", "192.0.2.22:9992"];
    running.indexed(NS, "web", 9990, &ready).await;

    let mut stream = running.get("web.emojivoto.svc.cluster.local.:9990").await;
    assert_eq!(next_change(&mut stream).await, Change::Add(addrs(&ready)));
}

#[tokio::test]
async fn a_service_that_appears_later_starts_the_stream_and_its_deletion_removes() {
    let api = FakeApi::start().await;
    let running = start(&api, &["-heartbeat=1h"]).await;
    let mut stream = running.get("web.emojivoto:80").await;
    quiet(&mut stream).await;

    api.apply(&ready_slice(
        "web-abc",
        "web",
        &["192.0.2.10", "2001:db8::1"],
    ));
    quiet(&mut stream).await;
    api.apply(&mk_service(NS, "web").with_port("http", 80, IntOrString::Int(8080)));
    assert_eq!(
        next_change(&mut stream).await,
        Change::Add(addrs(&["192.0.2.10:8080", "[2001:db8::1]:8080"]))
    );

    api.delete::<Service>(NS, "web");
    assert_eq!(
        next_change(&mut stream).await,
        Change::Remove(addrs(&["192.0.2.10:8080", "[2001:db8::1]:8080"]))
    );
}

#[tokio::test]
async fn an_unknown_service_port_stays_open_and_quiet() {
    let api = FakeApi::start().await;
    api.apply(&mk_service(NS, "web").with_port("http", 80, IntOrString::Int(8080)));
    api.apply(&ready_slice("web-abc", "web", &["192.0.2.10"]));
    let running = start(&api, &["-heartbeat=1h"]).await;
    running.indexed(NS, "web", 80, &["192.0.2.10:8080"]).await;
    let mut stream = running.get("web.emojivoto:9999").await;
    quiet(&mut stream).await;
    api.apply(&mk_service(NS, "web").with_port("http", 9999, IntOrString::Int(8080)));
    assert_eq!(
        next_change(&mut stream).await,
        Change::Add(addrs(&["192.0.2.10:8080"]))
    );
}

#[tokio::test]
async fn heartbeats_are_empty_adds() {
    let api = FakeApi::start().await;
    let running = start(&api, &["-heartbeat=50ms"]).await;
    let mut stream = running.get("nothing.here").await;
    for _ in 0..2 {
        let update = tokio::time::timeout(DEADLINE, stream.message())
            .await
            .expect("a heartbeat")
            .unwrap()
            .unwrap();
        assert_eq!(decode(update), Change::Add(BTreeSet::new()));
    }
    let scrape = running.scrape().await;
    assert!(
        scrape
            .get(
                "conduit_destination_updates_total",
                &[("kind", "heartbeat")]
            )
            .is_some_and(|n| n >= 2.0)
    );
}

#[tokio::test]
async fn malformed_destinations_are_invalid_argument() {
    let api = FakeApi::start().await;
    let running = start(&api, &[]).await;
    for (scheme, path, says) in [
        ("dns", "web.emojivoto:80", "scheme"),
        ("k8s", "web.emojivoto:80:80", "':'"),
        ("k8s", "web.emojivoto:http", "port"),
        ("k8s", "web.emojivoto.pod.cluster.local", "expected"),
    ] {
        let status = running
            .get_scheme(scheme, path)
            .await
            .expect_err("a malformed destination is refused");
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{scheme}:{path}"
        );
        assert!(
            status.message().contains(says),
            "{scheme}:{path}: {:?} should mention {says}",
            status.message()
        );
    }
    assert_eq!(running.streams().await, 0.0);
}

#[tokio::test]
async fn a_client_that_goes_away_leaves_no_stream_behind() {
    let api = FakeApi::start().await;
    let running = start(&api, &["-heartbeat=1h"]).await;
    let first = running.get("web.emojivoto").await;
    let second = running.get("web.emojivoto").await;
    let other = running.get("api.emojivoto").await;
    let scrape = running.scrape().await;
    assert_eq!(scrape.get("conduit_destination_streams", &[]), Some(3.0));
    assert_eq!(
        scrape.get(
            "conduit_destination_subscriptions",
            &[("service", "emojivoto/web")]
        ),
        Some(2.0)
    );

    drop(first);
    drop(other);
    eventually("two streams closed", DEADLINE, || async {
        equals(running.streams().await, 1.0)
    })
    .await;
    let scrape = running.scrape().await;
    assert_eq!(
        scrape.get(
            "conduit_destination_subscriptions",
            &[("service", "emojivoto/api")]
        ),
        None,
        "a service nobody follows is dropped from the gauge"
    );

    drop(second);
    eventually("every stream closed", DEADLINE, || async {
        equals(running.streams().await, 0.0)
    })
    .await;
    assert!(
        running
            .scrape()
            .await
            .series("conduit_destination_subscriptions")
            .is_empty()
    );
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_the_server() {
    let api = FakeApi::start().await;
    let mut running = start(&api, &["-heartbeat=1h"]).await;
    let mut stream = running.get("web.emojivoto").await;
    drop(running.shutdown.take());
    let end = tokio::time::timeout(DEADLINE, stream.message())
        .await
        .expect("the stream ends on shutdown");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    tokio::time::timeout(DEADLINE, &mut running.server)
        .await
        .expect("the server drains")
        .unwrap()
        .unwrap();
}
