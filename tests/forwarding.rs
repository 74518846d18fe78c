//! proxy-api in front of the real telemetry component, over loopback: the
//! proxies' `Report` rides proxy-api's forwarding streams
//! (`Ingest/Reports`) and every call is answered with the verdict telemetry
//! reached. OK means the report is in the very next scrape, exactly once;
//! an error means nothing of it counts; a telemetry that is down, restarted
//! or silent ends calls with UNAVAILABLE or at their deadline, and a call
//! cancelled at any point leaves its report wholly applied or not at all.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use conduit::cli::{Cli, Command, Controller};
use conduit::core::ShutdownHandle;
use conduit::ingest::Ingester;
use conduit::proto::codec::{FORWARD_PATH, REPORT_PATH, RawClientCodec};
use conduit::proto::proxy::telemetry::eos_ctx::End;
use conduit::proto::proxy::telemetry::telemetry_client::TelemetryClient;
use conduit::proto::proxy::telemetry::{ReportRequest, RequestScope};
use conduit::simulate::Shape;
use prost::Message as _;
use support::{Exposition, TempDir, eos, response, web_to_books};
use tonic::Code;
use tonic::transport::Channel;

/// How long a test waits for what must happen soon (a drain, a restart).
const PATIENCE: Duration = Duration::from_secs(10);

const NS: &str = "shop";
const WEB_POD: &str = "web-5d8f-abcde";

type Client = TelemetryClient<Channel>;

// ---- The cluster and its reports ----

/// `web` calls `books`, both deployments in `shop`.
fn cluster() -> String {
    support::yaml_docs(&[
        &support::mk_deployment(NS, "web"),
        &support::mk_replica_set(NS, "web-5d8f", Some("web")),
        &support::mk_pod(NS, WEB_POD, "192.0.2.10", Some("web-5d8f")),
        &support::mk_deployment(NS, "books"),
        &support::mk_replica_set(NS, "books-77aa", Some("books")),
        &support::mk_pod(NS, "books-77aa-xyz12", "192.0.2.20", Some("books-77aa")),
    ])
}

/// web's proxy reporting `scopes`.
fn web_report(scopes: Vec<RequestScope>) -> ReportRequest {
    support::report(NS, WEB_POD, scopes)
}

/// The labels of web → books GET `path`, then `more`.
fn web_to_books_labels<'a>(path: &'a str, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    support::WEB_TO_BOOKS
        .into_iter()
        .chain([("method", "GET"), ("path", path)])
        .chain(more.iter().copied())
        .collect()
}

/// A report from web of exactly `size` encoded bytes, on a path starting
/// with `prefix` (padded out).
fn report_of_size(prefix: &str, size: usize) -> ReportRequest {
    let padded = |n: usize| {
        let path = format!("{prefix}{}", "x".repeat(n));
        web_report(vec![web_to_books(&path, 1, vec![])])
    };
    // The nested length prefixes grow with the path: walk down to the size.
    let mut n = size - padded(0).encoded_len();
    while padded(n).encoded_len() > size {
        n -= 1;
    }
    let report = padded(n);
    assert_eq!(
        report.encoded_len(),
        size,
        "no padding gives exactly {size}"
    );
    report
}

// ---- The components, in this process on loopback ----

fn command(component: &str, flags: &[String]) -> Command {
    let argv = ["conduit", "controller", component]
        .into_iter()
        .map(str::to_owned)
        .chain(flags.iter().cloned());
    Cli::parse_from(conduit::cli::normalize_args(argv)).command
}

/// Any free loopback port, chosen at bind.
fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A loopback port nothing listens on (bound, then released).
async fn free_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(any_port()).await.unwrap();
    listener.local_addr().unwrap()
}

/// `conduit controller telemetry` on a given gRPC address, which a test can
/// stop (waiting for its drain, so the address is free again) and read
/// back afterwards.
struct Telemetry {
    grpc: SocketAddr,
    admin: SocketAddr,
    ingester: Arc<Ingester>,
    shutdown: ShutdownHandle,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: TempDir,
}

impl Telemetry {
    async fn start(addr: SocketAddr, cluster_yaml: &str, flags: &[&str]) -> Self {
        let dir = TempDir::new();
        let cluster = dir.0.join("cluster.yaml");
        std::fs::write(&cluster, cluster_yaml).unwrap();
        let mut all = vec![
            format!("-addr={addr}"),
            "-metrics-addr=127.0.0.1:0".to_owned(),
            format!("--cluster={}", cluster.display()),
        ];
        all.extend(flags.iter().map(|f| f.to_string()));
        let Command::Controller(Controller::Telemetry(args)) = command("telemetry", &all) else {
            unreachable!("a telemetry command line")
        };
        let bound = args.bind().await.expect("telemetry binds");
        let (shutdown, signal) = ShutdownHandle::new();
        Self {
            grpc: bound.grpc_addr(),
            admin: bound.admin_addr(),
            ingester: bound.ingester().clone(),
            shutdown,
            served: tokio::spawn(bound.serve(signal)),
            _dir: dir,
        }
    }

    async fn scrape_text(&self) -> String {
        let (status, body) = support::http_get(self.admin, "/metrics").await;
        assert_eq!(status, 200, "scrape failed: {body}");
        body
    }

    async fn scrape(&self) -> Exposition {
        Exposition::parse(&self.scrape_text().await)
    }

    /// Sends the drain signal and waits for its servers to end (its ports
    /// closed); its store stays readable through the ingester returned.
    async fn stop(self) -> Arc<Ingester> {
        let Self {
            ingester,
            shutdown,
            served,
            ..
        } = self;
        shutdown.signal();
        tokio::time::timeout(PATIENCE, served)
            .await
            .expect("telemetry drains")
            .expect("telemetry's task")
            .expect("telemetry serves until its drain");
        ingester
    }
}

/// What a store holds, as `/metrics` would show it (its mesh series).
fn rendered(ingester: &Ingester) -> Exposition {
    let mut text = Vec::new();
    ingester.render(&mut text);
    Exposition::parse(std::str::from_utf8(&text).unwrap())
}

/// `conduit controller proxy-api` forwarding reports to `telemetry` (no
/// destination: nothing here calls Get).
struct ProxyApi {
    grpc: SocketAddr,
    admin: SocketAddr,
    _shutdown: ShutdownHandle,
}

impl ProxyApi {
    async fn start(telemetry: SocketAddr) -> Self {
        let flags = [
            "-addr=127.0.0.1:0".to_owned(),
            "-metrics-addr=127.0.0.1:0".to_owned(),
            format!("-destination-addr={}", free_port().await),
            format!("-telemetry-addr={telemetry}"),
        ];
        let Command::Controller(Controller::ProxyApi(args)) = command("proxy-api", &flags) else {
            unreachable!("a proxy-api command line")
        };
        let bound = args.bind().await.expect("proxy-api binds");
        let (shutdown, signal) = ShutdownHandle::new();
        let proxy_api = Self {
            grpc: bound.grpc_addr(),
            admin: bound.admin_addr(),
            _shutdown: shutdown,
        };
        tokio::spawn(bound.serve(signal));
        proxy_api
    }

    /// A proxy: its own HTTP/2 connection.
    async fn proxy(&self) -> Client {
        support::connect(self.grpc).await
    }

    async fn scrape(&self) -> Exposition {
        let (status, body) = support::http_get(self.admin, "/metrics").await;
        assert_eq!(status, 200, "scrape failed: {body}");
        Exposition::parse(&body)
    }
}

/// One Report with a deadline (the proxy's `grpc-timeout`): its answer and
/// how long it took.
async fn report_within(
    proxy: &mut Client,
    report: ReportRequest,
    deadline: Duration,
) -> (Result<(), tonic::Status>, Duration) {
    let mut request = tonic::Request::new(report);
    request.set_timeout(deadline);
    let started = Instant::now();
    let answer = proxy.report(request).await.map(drop);
    (answer, started.elapsed())
}

/// Bytes sent as a Report body as they are (no protobuf encoding).
async fn report_raw(addr: SocketAddr, body: Bytes) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(REPORT_PATH);
    grpc.unary(tonic::Request::new(body), path, RawClientCodec)
        .await
        .map(drop)
}

// ---- Reading the scrapes ----

/// Calls of `method` a server answered with `code` (`None`: never).
fn handled(m: &Exposition, method: &str, code: &str) -> Option<f64> {
    m.get(
        "conduit_grpc_server_handled_total",
        &[("method", method), ("code", code)],
    )
}

fn rejected(m: &Exposition, reason: &str) -> Option<f64> {
    m.get(
        "conduit_telemetry_reports_rejected_total",
        &[("reason", reason)],
    )
}

fn refused(m: &Exposition, reason: &str) -> Option<f64> {
    m.get(
        "conduit_proxy_api_reports_refused_total",
        &[("reason", reason)],
    )
}

fn reports_total(m: &Exposition) -> Option<f64> {
    m.get("conduit_telemetry_reports_total", &[])
}

/// The sum of every sample of `name`.
fn total(m: &Exposition, name: &str) -> f64 {
    m.samples
        .iter()
        .filter(|(n, _, _)| n == name)
        .map(|(_, _, v)| v)
        .sum()
}

/// `requests_total` by path, for the paths starting with `prefix`.
fn requests_by_path(m: &Exposition, prefix: &str) -> HashMap<String, f64> {
    m.samples
        .iter()
        .filter(|(n, _, _)| n == "requests_total")
        .filter_map(|(_, labels, v)| {
            let path = labels.get("path")?;
            path.starts_with(prefix).then(|| (path.clone(), *v))
        })
        .collect()
}

/// The reports went over forwarding streams, not as unary calls: telemetry
/// served no `Report` itself, and as many `Ingest/Reports` streams as
/// proxy-api says it opened.
fn assert_forwarded_on_streams(telemetry: &Exposition, proxy_api: &Exposition) {
    for code in ["Ok", "InvalidArgument", "ResourceExhausted", "Unavailable"] {
        assert_eq!(handled(telemetry, REPORT_PATH, code), None, "unary {code}");
    }
    let opened = proxy_api.get("conduit_proxy_api_forwarding_streams_opened_total", &[]);
    assert!(
        opened.is_some_and(|n| n >= 1.0),
        "streams opened: {opened:?}"
    );
    assert_eq!(handled(telemetry, FORWARD_PATH, "Ok"), opened);
}

// ---- The scenarios ----

#[tokio::test]
async fn a_valid_report_through_proxy_api_is_counted_exactly_once_when_answered() {
    let telemetry = Telemetry::start(any_port(), &cluster(), &[]).await;
    let proxy_api = ProxyApi::start(telemetry.grpc).await;
    let mut proxy = proxy_api.proxy().await;
    let books = web_report(vec![web_to_books(
        "/books",
        3,
        vec![
            // 4.5 ms twice and 15 ms once; two streams ended gRPC OK.
            response(
                200,
                &[(45, 2), (150, 1)],
                vec![eos(End::GrpcStatusCode(0), 2)],
            ),
            // 100 ms once; a plain HTTP 500: a failure.
            response(500, &[(1000, 1)], vec![eos(End::Other(true), 1)]),
        ],
    )]);

    for n in 1..=3 {
        proxy.report(books.clone()).await.expect("answered OK");
        // No wait between the answer and the scrape: OK means applied.
        let m = telemetry.scrape().await;
        let n = f64::from(n);
        let at = |more| web_to_books_labels("/books", more);
        assert_eq!(m.get("requests_total", &at(&[])), Some(3.0 * n));
        assert_eq!(
            m.get(
                "responses_total",
                &at(&[("http_status_code", "200"), ("classification", "success")])
            ),
            Some(2.0 * n)
        );
        assert_eq!(
            m.get(
                "responses_total",
                &at(&[("http_status_code", "500"), ("classification", "failure")])
            ),
            Some(n)
        );
        assert_eq!(m.get("response_latency_ms_count", &at(&[])), Some(4.0 * n));
        assert_eq!(
            m.get("response_latency_ms_sum", &at(&[])),
            Some((4.5 * 2.0 + 15.0 + 100.0) * n)
        );
        assert_eq!(reports_total(&m), Some(n));
    }

    let p = proxy_api.scrape().await;
    assert_eq!(handled(&p, REPORT_PATH, "Ok"), Some(3.0));
    assert_forwarded_on_streams(&telemetry.scrape().await, &p);
}

#[tokio::test]
async fn an_invalid_report_is_invalid_argument_and_counts_nothing() {
    let telemetry = Telemetry::start(any_port(), &cluster(), &[]).await;
    let proxy_api = ProxyApi::start(telemetry.grpc).await;
    let mut proxy = proxy_api.proxy().await;
    let ok = |count| {
        web_to_books(
            "/ok",
            count,
            vec![response(200, &[(10, 1)], vec![eos(End::Other(true), 1)])],
        )
    };
    proxy
        .report(web_report(vec![ok(1)]))
        .await
        .expect("a valid report is OK");
    let before = Exposition::mesh_lines(&telemetry.scrape_text().await);

    // A valid first scope, then one without ctx: refused whole.
    let no_ctx = RequestScope {
        ctx: None,
        count: 7,
        responses: vec![],
    };
    let status = proxy
        .report(web_report(vec![ok(5), no_ctx]))
        .await
        .expect_err("a scope without ctx is invalid");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("requests[1] has no ctx"),
        "telemetry's own message reaches the proxy: {status:?}"
    );

    // Bytes that are no report: proxy-api passes them on undecoded, and
    // telemetry's verdict comes back.
    let status = report_raw(proxy_api.grpc, Bytes::from_static(&[0xff; 64]))
        .await
        .expect_err("garbage is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("undecodable"), "{status:?}");

    let text = telemetry.scrape_text().await;
    assert_eq!(
        Exposition::mesh_lines(&text),
        before,
        "no mesh series moved"
    );
    let m = Exposition::parse(&text);
    assert_eq!(rejected(&m, "invalid"), Some(1.0));
    assert_eq!(rejected(&m, "undecodable"), Some(1.0));
    assert_eq!(reports_total(&m), Some(1.0));
    let p = proxy_api.scrape().await;
    assert_eq!(handled(&p, REPORT_PATH, "Ok"), Some(1.0));
    assert_eq!(handled(&p, REPORT_PATH, "InvalidArgument"), Some(2.0));
    assert_forwarded_on_streams(&m, &p);
}

#[tokio::test]
async fn an_oversized_report_is_resource_exhausted() {
    /// `-max-report-bytes=64KiB`.
    const LIMIT: usize = 64 << 10;
    let telemetry = Telemetry::start(any_port(), &cluster(), &["-max-report-bytes=64KiB"]).await;
    let proxy_api = ProxyApi::start(telemetry.grpc).await;
    let mut proxy = proxy_api.proxy().await;

    let status = proxy
        .report(report_of_size("/over/", LIMIT + 1))
        .await
        .expect_err("one byte over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("65536"), "{status:?}");

    proxy
        .report(report_of_size("/limit/", LIMIT))
        .await
        .expect("a report of exactly the limit is applied");
    proxy
        .report(web_report(vec![web_to_books("/after", 2, vec![])]))
        .await
        .expect("a normal report after the oversized one");

    let m = telemetry.scrape().await;
    assert_eq!(requests_by_path(&m, "/over/"), HashMap::new());
    assert_eq!(
        requests_by_path(&m, "/limit/")
            .into_values()
            .collect::<Vec<_>>(),
        [1.0]
    );
    assert_eq!(
        m.get("requests_total", &web_to_books_labels("/after", &[])),
        Some(2.0)
    );
    assert_eq!(reports_total(&m), Some(2.0));
    let p = proxy_api.scrape().await;
    // proxy-api refused it itself, from the limit telemetry announced: the
    // body never crossed to telemetry.
    assert_eq!(refused(&p, "too_large"), Some(1.0));
    assert_eq!(rejected(&m, "too_large"), Some(0.0));
    assert_eq!(handled(&p, REPORT_PATH, "ResourceExhausted"), Some(1.0));
    assert_eq!(handled(&p, REPORT_PATH, "Ok"), Some(2.0));
    assert_forwarded_on_streams(&m, &p);
}

/// Complements proxy_api.rs's `telemetry_down_is_unavailable_and_recovers_
/// when_it_returns` (no deadline): with the proxy's deadline set, the
/// answer is UNAVAILABLE, not the deadline running out, and the report
/// that gets through once telemetry listens goes over a forwarding stream,
/// counted once however many attempts failed before it.
#[tokio::test]
async fn telemetry_down_is_unavailable_within_the_deadline_and_recovers() {
    const CALL_DEADLINE: Duration = Duration::from_secs(2);
    let addr = free_port().await;
    let proxy_api = ProxyApi::start(addr).await;
    let mut proxy = proxy_api.proxy().await;
    let books = || web_report(vec![web_to_books("/books", 3, vec![])]);

    for _ in 0..3 {
        let (answer, took) = report_within(&mut proxy, books(), CALL_DEADLINE).await;
        let status = answer.expect_err("nothing listens on the telemetry address");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(took < CALL_DEADLINE, "answered after {took:?}");
    }

    let telemetry = Telemetry::start(addr, &cluster(), &[]).await;
    let deadline = Instant::now() + PATIENCE;
    let mut failed = 0;
    loop {
        let (answer, took) = report_within(&mut proxy, books(), CALL_DEADLINE).await;
        assert!(took < CALL_DEADLINE, "answered after {took:?}");
        match answer {
            Ok(()) => break,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                failed += 1;
                assert!(Instant::now() < deadline, "still failing: {status:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    let m = telemetry.scrape().await;
    assert_eq!(
        m.get("requests_total", &web_to_books_labels("/books", &[])),
        Some(3.0),
        "only the report answered OK counts ({failed} failed after the restart)"
    );
    assert_eq!(reports_total(&m), Some(1.0));
    let p = proxy_api.scrape().await;
    assert_eq!(
        handled(&p, REPORT_PATH, "Unavailable"),
        Some(3.0 + failed as f64)
    );
    assert_eq!(
        p.get("conduit_proxy_api_forwarding_streams_opened_total", &[]),
        Some(1.0),
        "one stream, opened by the report that got through"
    );
    assert_forwarded_on_streams(&m, &p);
}

/// How a call of the cancellation scenario ends early, if it does.
#[derive(Clone, Copy, Debug)]
enum Cancel {
    /// Runs to its answer.
    Never,
    /// The proxy's deadline (`grpc-timeout`: proxy-api's server enforces it).
    Deadline(Duration),
    /// The proxy drops the call (a reset stream, no deadline sent).
    Drop(Duration),
    /// The proxy's task is aborted after yielding this many times.
    Abort(u32),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_never_leaves_a_report_half_applied() {
    const CALLS: usize = 400;
    const PROXIES: usize = 4;
    let telemetry = Telemetry::start(any_port(), &cluster(), &[]).await;
    let proxy_api = ProxyApi::start(telemetry.grpc).await;
    let mut proxies = Vec::new();
    for _ in 0..PROXIES {
        proxies.push(proxy_api.proxy().await);
    }
    // Three scopes of 1, 2 and 3 requests, each answered and timed: a
    // report applied in part leaves the three out of proportion.
    let scope = |path, n: u32, status| {
        web_to_books(
            path,
            n,
            vec![response(
                status,
                &[(10 * n, n)],
                vec![eos(End::Other(true), n as usize)],
            )],
        )
    };
    let report = web_report(vec![
        scope("/cancel/a", 1, 200),
        scope("/cancel/b", 2, 500),
        scope("/cancel/c", 3, 200),
    ]);

    let mut rng = fastrand::Rng::with_seed(5);
    let mut calls = Vec::new();
    for i in 0..CALLS {
        let cancel = match i % 4 {
            0 => Cancel::Never,
            1 => Cancel::Deadline(Duration::from_micros(rng.u64(100..3_000))),
            2 => Cancel::Drop(Duration::from_micros(rng.u64(0..3_000))),
            _ => Cancel::Abort(rng.u32(0..200)),
        };
        let mut proxy = proxies[i % PROXIES].clone();
        let report = report.clone();
        let call = tokio::spawn(async move {
            match cancel {
                Cancel::Never => Some(proxy.report(report).await.map(drop)),
                Cancel::Deadline(d) => Some(report_within(&mut proxy, report, d).await.0),
                Cancel::Drop(d) => tokio::time::timeout(d, proxy.report(report))
                    .await
                    .ok()
                    .map(|answer| answer.map(drop)),
                Cancel::Abort(_) => Some(proxy.report(report).await.map(drop)),
            }
        });
        if let Cancel::Abort(yields) = cancel {
            let abort = call.abort_handle();
            tokio::spawn(async move {
                for _ in 0..yields {
                    tokio::task::yield_now().await;
                }
                abort.abort();
            });
        }
        calls.push((cancel, call));
    }
    let mut ok = 0;
    let mut ended_early = 0;
    for (cancel, call) in calls {
        match (cancel, call.await) {
            (Cancel::Never, Ok(Some(answer))) => {
                answer.expect("a call nobody cancels is OK");
                ok += 1;
            }
            (_, Ok(Some(Ok(())))) => ok += 1,
            _ => ended_early += 1,
        }
    }
    assert!(ended_early > 0, "no call was cancelled");

    let m = settle(&telemetry, &proxy_api, "/cancel/").await;
    let applied = m
        .get("requests_total", &web_to_books_labels("/cancel/a", &[]))
        .unwrap_or(0.0);
    assert!(
        applied >= f64::from(ok) && applied <= CALLS as f64,
        "{applied} reports applied, {ok} answered OK, {CALLS} sent"
    );
    for (path, n, class, code) in [
        ("/cancel/a", 1.0, "success", "200"),
        ("/cancel/b", 2.0, "failure", "500"),
        ("/cancel/c", 3.0, "success", "200"),
    ] {
        let want = (applied > 0.0).then_some(n * applied);
        let at = |more: &[(&'static str, &'static str)]| web_to_books_labels(path, more);
        assert_eq!(m.get("requests_total", &at(&[])), want, "{path}");
        assert_eq!(
            m.get(
                "responses_total",
                &at(&[("http_status_code", code), ("classification", class)])
            ),
            want,
            "{path}"
        );
        assert_eq!(m.get("response_latency_ms_count", &at(&[])), want, "{path}");
        assert_eq!(
            m.get("response_latency_ms_sum", &at(&[])),
            want.map(|w| w * n),
            "{path}: {n} ms each"
        );
    }
    for reason in ["invalid", "too_large", "undecodable", "busy", "stalled"] {
        assert_eq!(rejected(&m, reason), Some(0.0), "{reason}");
    }
}

/// The scrape once no cancelled call can still reach telemetry: rounds of
/// a marker report, enough of them in a row for every forwarding lane (a
/// lane's reports are applied in the order sent), until two rounds see the
/// same `requests_total` under `prefix`.
async fn settle(telemetry: &Telemetry, proxy_api: &ProxyApi, prefix: &str) -> Exposition {
    let mut proxy = proxy_api.proxy().await;
    let mut last = None;
    let deadline = Instant::now() + PATIENCE;
    loop {
        for _ in 0..conduit::proxy_api::FORWARD_LANES_MAX {
            proxy
                .report(web_report(vec![web_to_books("/marker", 1, vec![])]))
                .await
                .expect("a marker report is OK");
        }
        let m = telemetry.scrape().await;
        let now = requests_by_path(&m, prefix);
        if last.as_ref() == Some(&now) {
            return m;
        }
        assert!(Instant::now() < deadline, "counts still moving: {now:?}");
        last = Some(now);
    }
}

/// What a set of reports adds up to in the mesh metrics.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    reports: u64,
    requests: u64,
    responses: u64,
    latencies: u64,
}

impl Tally {
    fn add(&mut self, report: &ReportRequest) {
        self.reports += 1;
        for scope in &report.requests {
            self.requests += u64::from(scope.count);
            for rsp in &scope.responses {
                self.responses += rsp.ends.iter().map(|e| e.streams.len() as u64).sum::<u64>();
                self.latencies += rsp
                    .response_latencies
                    .iter()
                    .map(|l| u64::from(l.count))
                    .sum::<u64>();
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.reports += other.reports;
        self.requests += other.requests;
        self.responses += other.responses;
        self.latencies += other.latencies;
    }

    /// What a scrape shows of the mesh metrics, summed over every series.
    fn scraped(m: &Exposition) -> Self {
        Self {
            reports: reports_total(m).unwrap_or(0.0) as u64,
            requests: total(m, "requests_total") as u64,
            responses: total(m, "responses_total") as u64,
            latencies: total(m, "response_latency_ms_count") as u64,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_reports_from_64_concurrent_proxies_are_counted_exactly_once() {
    const PROXIES: usize = 64;
    const REPORTS: usize = 10_000;
    // A proxy per pod, over a few deployments: simulated reports of the
    // small shape (one scope, ten latencies, three streams).
    let fleet = Arc::new(conduit::simulate::fleet(PROXIES, 4, NS, 1));
    let telemetry =
        Telemetry::start(any_port(), &conduit::simulate::cluster_yaml(&fleet), &[]).await;
    let proxy_api = ProxyApi::start(telemetry.grpc).await;

    let mut runs = Vec::new();
    for pod in 0..PROXIES {
        let mut proxy = proxy_api.proxy().await;
        let fleet = fleet.clone();
        // The first proxies send one more each, to make up the total.
        let reports = REPORTS / PROXIES + usize::from(pod < REPORTS % PROXIES);
        runs.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(pod as u64);
            let mut sent = Tally::default();
            let mut retried = 0u64;
            for _ in 0..reports {
                let report = conduit::simulate::build_report(&fleet, Shape::Small, pod, &mut rng);
                loop {
                    match proxy.report(report.clone()).await {
                        Ok(_) => break,
                        // Back-pressure: nothing applied, so the same
                        // report again, as a proxy does at its next turn.
                        Err(s) if s.code() == Code::ResourceExhausted => retried += 1,
                        Err(s) => panic!("proxy {pod}: {s:?}"),
                    }
                }
                sent.add(&report);
            }
            (sent, retried)
        }));
    }
    let mut sent = Tally::default();
    let mut retried = 0;
    for run in runs {
        let (tally, retries) = run.await.expect("a proxy's run");
        sent.merge(tally);
        retried += retries;
    }
    assert_eq!(sent.reports, REPORTS as u64);

    let m = telemetry.scrape().await;
    assert_eq!(Tally::scraped(&m), sent, "{retried} retried");
    for step in ["path", "pods", "all"] {
        assert_eq!(
            m.get("conduit_telemetry_series_folded_total", &[("folded", step)]),
            Some(0.0)
        );
    }
    let p = proxy_api.scrape().await;
    assert_eq!(handled(&p, REPORT_PATH, "Ok"), Some(REPORTS as f64));
    assert_forwarded_on_streams(&m, &p);
}

/// One call of the restart scenario.
#[derive(Debug)]
struct Attempt {
    path: String,
    count: u32,
    code: Code,
    took: Duration,
}

/// Each call carries a path of its own, so the scrapes say which calls
/// were counted: every call answered OK is counted once, by one of the two
/// instances; no call answered UNAVAILABLE is counted at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_restarted_mid_run_loses_nothing_answered_ok() {
    const PROXIES: usize = 64;
    const CALL_DEADLINE: Duration = Duration::from_secs(5);
    /// Room beyond the deadline for the test's own scheduling.
    const SLACK: Duration = Duration::from_secs(2);
    /// Reports each instance counts before the run moves on.
    const PER_INSTANCE: u64 = 500;
    /// A proxy whose call found telemetry down waits this long, so the
    /// down time is not a busy loop.
    const BACKOFF: Duration = Duration::from_millis(10);

    let first = Telemetry::start(any_port(), &cluster(), &[]).await;
    let addr = first.grpc;
    let proxy_api = ProxyApi::start(addr).await;
    let done = Arc::new(AtomicBool::new(false));
    let unavailable = Arc::new(AtomicU64::new(0));
    let mut runs = Vec::new();
    for p in 0..PROXIES {
        let mut proxy = proxy_api.proxy().await;
        let (done, unavailable) = (done.clone(), unavailable.clone());
        runs.push(tokio::spawn(async move {
            let mut attempts = Vec::new();
            for i in 0u32.. {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let path = format!("/restart/{p}/{i}");
                let count = 1 + i % 3;
                let report = web_report(vec![web_to_books(&path, count, vec![])]);
                let (answer, took) = report_within(&mut proxy, report, CALL_DEADLINE).await;
                let code = answer.map_or_else(|s| s.code(), |()| Code::Ok);
                if code == Code::Unavailable {
                    unavailable.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(BACKOFF).await;
                }
                attempts.push(Attempt {
                    path,
                    count,
                    code,
                    took,
                });
            }
            attempts
        }));
    }

    let counted = |ingester: Arc<Ingester>, what| {
        support::eventually(what, PATIENCE, move || {
            let reports = ingester.health().reports.get();
            async move { reports >= PER_INSTANCE }
        })
    };
    counted(first.ingester.clone(), "the first instance counts reports").await;
    let first = first.stop().await;
    let down = unavailable.load(Ordering::Relaxed);
    support::eventually("calls answered UNAVAILABLE", PATIENCE, || async {
        unavailable.load(Ordering::Relaxed) > down + PROXIES as u64
    })
    .await;
    let second = Telemetry::start(addr, &cluster(), &[]).await;
    counted(
        second.ingester.clone(),
        "the restarted instance counts reports",
    )
    .await;
    done.store(true, Ordering::Relaxed);
    let mut attempts = Vec::new();
    for run in runs {
        attempts.extend(run.await.expect("a proxy's run"));
    }

    let slow: Vec<_> = attempts
        .iter()
        .filter(|a| a.took >= CALL_DEADLINE + SLACK)
        .collect();
    assert!(slow.is_empty(), "calls past their deadline: {slow:?}");
    let other: Vec<_> = attempts
        .iter()
        .filter(|a| !matches!(a.code, Code::Ok | Code::Unavailable))
        .collect();
    assert!(other.is_empty(), "neither OK nor UNAVAILABLE: {other:?}");

    let before = requests_by_path(&rendered(&first), "/restart/");
    let after = requests_by_path(&second.scrape().await, "/restart/");
    let twice: Vec<_> = before.keys().filter(|p| after.contains_key(*p)).collect();
    assert!(twice.is_empty(), "counted by both instances: {twice:?}");
    let wrong: Vec<_> = attempts
        .iter()
        .filter(|a| {
            let want = (a.code == Code::Ok).then_some(f64::from(a.count));
            before.get(&a.path).or(after.get(&a.path)).copied() != want
        })
        .collect();
    assert!(wrong.is_empty(), "counted unlike their answers: {wrong:?}");
    let ok = attempts.iter().filter(|a| a.code == Code::Ok).count();
    assert_eq!(
        before.len() + after.len(),
        ok,
        "only the calls made counted"
    );
    assert!(
        before.len() as u64 >= PER_INSTANCE && after.len() as u64 >= PER_INSTANCE,
        "OK from both instances: {} and {}",
        before.len(),
        after.len()
    );
}

/// One Report carrying `grpc-timeout` but sent by a client with no timer
/// of its own (plain HTTP/2), so the call ends only when proxy-api ends it:
/// the `grpc-status` it answered with (`None`: no answer) and how long it
/// took.
async fn report_with_server_deadline(
    addr: SocketAddr,
    report: &ReportRequest,
    deadline: Duration,
) -> (Option<String>, Duration) {
    use http_body_util::BodyExt as _;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let body = report.encode_to_vec();
    let mut frame = vec![0];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    let request = http::Request::post(format!("http://{addr}{REPORT_PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", format!("{}m", deadline.as_millis()))
        .body(http_body_util::Full::new(Bytes::from(frame)))
        .unwrap();
    let started = Instant::now();
    let status = async {
        let rsp = send.send_request(request).await.ok()?;
        // Trailers-only answers carry the status in the headers.
        if let Some(status) = rsp.headers().get("grpc-status") {
            return status.to_str().ok().map(str::to_owned);
        }
        let body = rsp.into_body().collect().await.ok()?;
        let status = body.trailers()?.get("grpc-status")?;
        status.to_str().ok().map(str::to_owned)
    };
    let status = tokio::time::timeout(PATIENCE, status).await.ok().flatten();
    (status, started.elapsed())
}

/// A telemetry that takes connections and never answers (hung, or a
/// blackholed address): proxy-api ends the call at the deadline the proxy
/// sent, with DEADLINE_EXCEEDED, however long telemetry stays silent, and
/// the next call gets the same.
#[tokio::test]
async fn a_telemetry_that_never_answers_ends_the_call_at_its_deadline() {
    const CALL_DEADLINE: Duration = Duration::from_millis(500);
    /// Room beyond the deadline for the test's own scheduling.
    const SLACK: Duration = Duration::from_secs(2);
    const EARLY: Duration = Duration::from_millis(2);
    // Listening, so connections complete, but never accepted or answered.
    let silent = tokio::net::TcpListener::bind(any_port()).await.unwrap();
    let proxy_api = ProxyApi::start(silent.local_addr().unwrap()).await;
    let report = web_report(vec![web_to_books("/books", 1, vec![])]);
    for _ in 0..2 {
        let (status, took) =
            report_with_server_deadline(proxy_api.grpc, &report, CALL_DEADLINE).await;
        let deadline_exceeded = (Code::DeadlineExceeded as i32).to_string();
        assert_eq!(status, Some(deadline_exceeded), "after {took:?}");
        assert!(
            // A timer tick early at most: proxy-api answers just before
            // tonic's own timer on the header would end the call uncounted.
            took >= CALL_DEADLINE - EARLY && took < CALL_DEADLINE + SLACK,
            "ended after {took:?}"
        );
    }
    let p = proxy_api.scrape().await;
    assert_eq!(handled(&p, REPORT_PATH, "DeadlineExceeded"), Some(2.0));
    drop(silent);
}
