//! `conduit controller proxy-api` over real gRPC on loopback, in front of
//! the real telemetry and destination components (and a fake telemetry
//! that records what reaches it): Report and Get are forwarded, statuses
//! and deadlines pass through, a proxy going away cancels the upstream
//! stream, and an upstream that is down is UNAVAILABLE until it returns.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use conduit::cli::{Cli, Command, Controller};
use conduit::core::ShutdownHandle;
use conduit::k8s::Index;
use conduit::proto::common::Destination;
use conduit::proto::proxy::destination::destination_client::DestinationClient;
use conduit::proto::proxy::destination::update;
use conduit::proto::proxy::telemetry::telemetry_server::{Telemetry, TelemetryServer};
use conduit::proto::proxy::telemetry::{ReportRequest, ReportResponse};
use parking_lot::Mutex;
use support::{
    Exposition, ServiceFixture, SliceFixture, equals, eventually, http_get, mk_service, mk_slice,
};
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(10);
const NS: &str = "emojivoto";

fn parse(argv: &[String]) -> Command {
    Cli::parse_from(conduit::cli::normalize_args(argv.iter().cloned())).command
}

fn argv(component: &str, flags: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = ["conduit", "controller", component]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.extend(flags.iter().cloned());
    argv
}

/// A loopback port nothing listens on (bound, then released).
async fn free_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

struct Proc {
    grpc: SocketAddr,
    admin: SocketAddr,
    _shutdown: ShutdownHandle,
}

impl Proc {
    async fn scrape(&self) -> Exposition {
        let (status, body) = http_get(self.admin, "/metrics").await;
        assert_eq!(status, 200, "scrape failed: {body}");
        Exposition::parse(&body)
    }

    /// The value of unlabelled metric `name`.
    async fn metric(&self, name: &str) -> Option<f64> {
        self.scrape().await.get(name, &[])
    }
}

async fn start_proxy_api(destination: SocketAddr, telemetry: SocketAddr) -> Proc {
    let Command::Controller(Controller::ProxyApi(args)) = parse(&argv(
        "proxy-api",
        &[
            "-addr=127.0.0.1:0".into(),
            "-metrics-addr=127.0.0.1:0".into(),
            format!("-destination-addr={destination}"),
            format!("-telemetry-addr={telemetry}"),
        ],
    )) else {
        unreachable!()
    };
    let bound = args.bind().await.expect("proxy-api binds");
    let (handle, shutdown) = ShutdownHandle::new();
    let proc = Proc {
        grpc: bound.grpc_addr(),
        admin: bound.admin_addr(),
        _shutdown: handle,
    };
    tokio::spawn(bound.serve(shutdown));
    proc
}

/// The telemetry component on `addr`, without cluster metadata.
async fn start_telemetry_on(addr: SocketAddr) -> Proc {
    let Command::Controller(Controller::Telemetry(args)) = parse(&argv(
        "telemetry",
        &[format!("-addr={addr}"), "-metrics-addr=127.0.0.1:0".into()],
    )) else {
        unreachable!()
    };
    let bound = args.bind().await.expect("telemetry binds");
    let (handle, shutdown) = ShutdownHandle::new();
    let proc = Proc {
        grpc: bound.grpc_addr(),
        admin: bound.admin_addr(),
        _shutdown: handle,
    };
    tokio::spawn(bound.serve(shutdown));
    proc
}

/// The destination component over an index the test writes.
async fn start_destination(index: Arc<Index>) -> Proc {
    let Command::Controller(Controller::Destination(args)) = parse(&argv(
        "destination",
        &[
            "-addr=127.0.0.1:0".into(),
            "-metrics-addr=127.0.0.1:0".into(),
            "-heartbeat=1h".into(),
        ],
    )) else {
        unreachable!()
    };
    let bound = args
        .bind_with_index(index)
        .await
        .expect("destination binds");
    let (handle, shutdown) = ShutdownHandle::new();
    let proc = Proc {
        grpc: bound.grpc_addr(),
        admin: bound.admin_addr(),
        _shutdown: handle,
    };
    tokio::spawn(bound.serve(shutdown));
    proc
}

async fn destination_client(addr: SocketAddr) -> DestinationClient<Channel> {
    DestinationClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

fn k8s(path: &str) -> Destination {
    Destination {
        scheme: "k8s".into(),
        path: path.into(),
    }
}

#[tokio::test]
async fn report_is_forwarded_to_telemetry() {
    let telemetry = start_telemetry_on(free_port().await).await;
    let proxy_api = start_proxy_api(free_port().await, telemetry.grpc).await;
    let mut client = support::connect(proxy_api.grpc).await;
    let requests = vec![conduit::proto::proxy::telemetry::RequestScope {
        ctx: support::ctx("192.0.2.1", "192.0.2.2", support::get(), "/books"),
        count: 2,
        responses: vec![support::response(200, &[(10, 2)], vec![])],
    }];
    client
        .report(support::report(NS, "web-1", requests))
        .await
        .expect("report forwarded");
    let m = telemetry.scrape().await;
    assert_eq!(m.get("conduit_telemetry_reports_total", &[]), Some(1.0));
    let p = proxy_api.scrape().await;
    assert_eq!(
        p.get(
            "conduit_grpc_server_handled_total",
            &[
                ("method", "/conduit.proxy.telemetry.Telemetry/Report"),
                ("code", "Ok")
            ]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn telemetry_down_is_unavailable_and_recovers_when_it_returns() {
    let telemetry_addr = free_port().await;
    let proxy_api = start_proxy_api(free_port().await, telemetry_addr).await;
    let mut client = support::connect(proxy_api.grpc).await;
    let status = client
        .report(support::report(NS, "web-1", vec![]))
        .await
        .expect_err("nothing listens on the telemetry address");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    let telemetry = start_telemetry_on(telemetry_addr).await;
    eventually("a report through once telemetry is back", DEADLINE, || {
        let mut client = client.clone();
        async move {
            let answer = client.report(support::report(NS, "web-1", vec![])).await;
            if let Err(status) = &answer {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            }
            answer
        }
    })
    .await;
    eventually("telemetry to count the report", DEADLINE, || async {
        equals(
            telemetry.metric("conduit_telemetry_reports_total").await,
            Some(1.0),
        )
    })
    .await;
}

/// A telemetry upstream that answers every Report with a fixed status and
/// records the deadline it was given.
#[derive(Clone, Default)]
struct Recording {
    timeouts: Arc<Mutex<Vec<Option<String>>>>,
}

#[tonic::async_trait]
impl Telemetry for Recording {
    async fn report(
        &self,
        request: tonic::Request<ReportRequest>,
    ) -> Result<tonic::Response<ReportResponse>, tonic::Status> {
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .map(|v| v.to_str().unwrap().to_owned());
        self.timeouts.lock().push(timeout);
        Err(tonic::Status::resource_exhausted("report too large: 9 MiB"))
    }
}

/// Stalled Report streams cannot make proxy-api buffer them: the same
/// budget as telemetry's (64 MiB of announced reports at once, 10 s to
/// arrive) refuses the rest unread, and proxies' reports go through after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_report_streams_are_refused_not_buffered() {
    const STREAMS: usize = 100;
    let telemetry = start_telemetry_on(free_port().await).await;
    let proxy_api = start_proxy_api(free_port().await, telemetry.grpc).await;
    let (connection, answers) = support::stalled_reports(proxy_api.grpc, STREAMS).await;
    let refused = |reason: &'static str, at_least: usize| {
        let proxy_api = &proxy_api;
        async move {
            let what = format!("{at_least} reports refused as {reason}");
            eventually(&what, Duration::from_secs(30), || async {
                proxy_api
                    .scrape()
                    .await
                    .get(
                        "conduit_proxy_api_reports_refused_total",
                        &[("reason", reason)],
                    )
                    .is_some_and(|n| n >= at_least as f64)
            })
            .await;
        }
    };
    // 16 fit the budget (4 MiB announced each); the rest wait 1 s, unread.
    refused("busy", STREAMS - 16).await;
    refused("stalled", 16).await;
    let mut client = support::connect(proxy_api.grpc).await;
    client
        .report(support::report(NS, "web-1", vec![]))
        .await
        .expect("forwarded once the stalled streams are gone");
    eventually("telemetry to count the report", DEADLINE, || async {
        equals(
            telemetry.metric("conduit_telemetry_reports_total").await,
            Some(1.0),
        )
    })
    .await;
    for answer in answers {
        let status = answer.await.unwrap();
        assert!(matches!(status.as_deref(), Some("8" | "4")), "{status:?}");
    }
    connection.abort();
}

#[tokio::test]
async fn upstream_statuses_and_deadlines_pass_through() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = listener.local_addr().unwrap();
    let recording = Recording::default();
    let server = tonic::transport::Server::builder()
        .add_service(TelemetryServer::new(recording.clone()))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    let proxy_api = start_proxy_api(free_port().await, upstream_addr).await;
    let mut client = support::connect(proxy_api.grpc).await;

    let mut request = tonic::Request::new(support::report(NS, "web-1", vec![]));
    request.set_timeout(Duration::from_secs(3));
    let status = client.report(request).await.expect_err("upstream refuses");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(status.message(), "report too large: 9 MiB");

    let status = client
        .report(support::report(NS, "web-1", vec![]))
        .await
        .expect_err("upstream refuses");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);

    let seen = recording.timeouts.lock().clone();
    assert_eq!(seen.len(), 2);
    let first = seen[0]
        .as_deref()
        .expect("the caller's deadline is passed on");
    let (digits, unit) = first.split_at(first.len() - 1);
    let nanos: u128 = digits.parse::<u128>().unwrap()
        * match unit {
            "S" => 1_000_000_000,
            "m" => 1_000_000,
            "u" => 1_000,
            "n" => 1,
            other => panic!("unexpected unit {other}"),
        };
    assert!(
        nanos <= 3_000_000_000 && nanos > 1_000_000_000,
        "deadline {first}"
    );
    assert_eq!(seen[1], None, "no deadline is invented");
}

#[tokio::test]
async fn get_is_forwarded_and_cancelled_with_its_caller() {
    let index = Arc::new(Index::new());
    index.apply_service(mk_service(NS, "web").with_port("", 80, None));
    index.apply_endpoint_slice(
        mk_slice(NS, "web-abc", "web", &["192.0.2.10"]).with_ports(&[("", 80)]),
    );
    let destination = start_destination(index.clone()).await;
    let proxy_api = start_proxy_api(destination.grpc, free_port().await).await;
    let mut client = destination_client(proxy_api.grpc).await;

    let mut stream = client
        .get(k8s("web.emojivoto.svc.cluster.local:80"))
        .await
        .expect("Get forwarded")
        .into_inner();
    let first = tokio::time::timeout(DEADLINE, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(update::Update::Add(set)) = first.update else {
        panic!("expected an add, got {first:?}");
    };
    assert_eq!(set.addrs.len(), 1);
    assert_eq!(set.addrs[0].addr.as_ref().unwrap().port, 80);

    index.apply_endpoint_slice(mk_slice(NS, "web-abc", "web", &[]).with_ports(&[("", 80)]));
    let second = tokio::time::timeout(DEADLINE, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(second.update, Some(update::Update::Remove(ref s)) if s.addrs.len() == 1),
        "{second:?}"
    );

    eventually("the forwarded stream open", DEADLINE, || async {
        equals(
            destination.metric("conduit_destination_streams").await,
            Some(1.0),
        )
    })
    .await;
    drop(stream);
    eventually(
        "the forwarded stream closed with its caller",
        DEADLINE,
        || async {
            equals(
                destination.metric("conduit_destination_streams").await,
                Some(0.0),
            )
        },
    )
    .await;

    let status = client
        .get(k8s("web.emojivoto:http"))
        .await
        .expect_err("a malformed destination is refused upstream");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("port"), "{status:?}");
}

#[tokio::test]
async fn destination_down_is_unavailable() {
    let proxy_api = start_proxy_api(free_port().await, free_port().await).await;
    let mut client = destination_client(proxy_api.grpc).await;
    let status = client
        .get(k8s("web.emojivoto"))
        .await
        .expect_err("nothing listens on the destination address");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
}

/// More streams than one connection to destination carries: they are
/// spread over as many connections as needed, every one gets its first
/// update, and the places are given back as the proxies go away.
#[tokio::test]
async fn many_gets_are_spread_over_connections_to_destination() {
    const STREAMS: usize = 2 * conduit::proxy_api::GET_STREAMS_PER_CONNECTION + 500;
    let index = Arc::new(Index::new());
    index.apply_service(mk_service(NS, "web").with_port("", 80, None));
    index.apply_endpoint_slice(
        mk_slice(NS, "web-abc", "web", &["192.0.2.10"]).with_ports(&[("", 80)]),
    );
    let destination = start_destination(index.clone()).await;
    let proxy_api = start_proxy_api(destination.grpc, free_port().await).await;
    // Proxies on four connections to proxy-api.
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(destination_client(proxy_api.grpc).await);
    }
    let opened = futures::future::join_all((0..STREAMS).map(|i| {
        let mut client = clients[i % clients.len()].clone();
        async move {
            let mut stream = client
                .get(k8s("web.emojivoto.svc.cluster.local:80"))
                .await
                .expect("Get forwarded")
                .into_inner();
            let first = stream.message().await.expect("an update").expect("open");
            assert!(
                matches!(first.update, Some(update::Update::Add(_))),
                "{first:?}"
            );
            stream
        }
    }));
    let mut streams = tokio::time::timeout(Duration::from_secs(60), opened)
        .await
        .expect("every stream has its first update");
    assert_eq!(
        proxy_api
            .metric("conduit_proxy_api_destination_connections")
            .await,
        Some(3.0)
    );
    assert_eq!(
        proxy_api.metric("conduit_proxy_api_get_streams").await,
        Some(STREAMS as f64)
    );
    streams.truncate(10);
    eventually("the ended streams' places given back", DEADLINE, || async {
        equals(
            proxy_api.metric("conduit_proxy_api_get_streams").await,
            Some(10.0),
        )
    })
    .await;
    drop(streams);
}
