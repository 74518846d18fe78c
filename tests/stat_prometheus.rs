//! The "Must show": known, steady traffic from simulated proxies
//! reaches two telemetry components — one answering Stat through a real
//! Prometheus that scrapes it every second, one from its embedded store —
//! and `conduit stat deployments -o json`, through a public-api in front of
//! each, shows the expected request rate, success rate and latency
//! percentiles on both, within these tolerances:
//!
//! - request rate: ±25% of the rate sent (Prometheus' `rate()` extrapolates
//!   across scrape jitter; the embedded store counts whole reports);
//! - success rate: ±0.05;
//! - latency: each percentile lies in the `response_latency_ms` bucket that
//!   holds the true percentile (Prometheus interpolates inside the bucket;
//!   the embedded store is exact to 1%, also checked).
//!
//! - TCP (`-o json`'s tcp fields): the connections open exactly; bytes per
//!   second read and written as the rate.
//!
//! The window is `-t 10s`, which the traffic covers completely. The edge of
//! DESIGN §11's "rate over the span actually covered" — traffic younger than
//! the window, and traffic that stopped inside it — is
//! `a_young_or_stopped_groups_rate_is_over_the_span_it_covers`.

#[path = "support/api.rs"]
mod api;
#[path = "support/prom_launcher.rs"]
mod prom_launcher;
mod support;

use std::time::Duration;

use api::*;
use conduit::proto::common::TcpAddress;
use conduit::proto::http_api::STAT_PATH;
use conduit::proto::net::ip_to_proto;
use conduit::proto::proxy::telemetry::{
    ClientTransport, ReportRequest, RequestScope, ServerTransport, TransportSummary, eos_ctx::End,
    report_request,
};
use conduit::proto::public::{
    AggregationType, MetricMetadata, MetricName, MetricRequest, MetricResponse, TimeWindow,
};
use prom_launcher::Prometheus;
use prost::Message;
use support::*;

/// Reports per second from the simulated proxy: one, like a proxy's
/// report interval shortened for the test.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// books: 20 requests per report — 12 in 12 ms, 7 in 35 ms, 1 in 180 ms;
/// 18 end gRPC OK, 2 with HTTP 500.
const BOOKS_RPS: f64 = 20.0;
const BOOKS_SUCCESS: f64 = 0.9;
/// True percentiles of books' latencies, and the buckets holding them.
const BOOKS_P50: (i64, (i64, i64)) = (12, (10, 20));
const BOOKS_P99: (i64, (i64, i64)) = (180, (100, 200));

/// authors: 5 requests per report, all 150 ms, all successful.
const AUTHORS_RPS: f64 = 5.0;
const AUTHORS_LATENCY: (i64, (i64, i64)) = (150, (100, 200));

const RATE_TOLERANCE: f64 = 0.25;
const SUCCESS_TOLERANCE: f64 = 0.05;

/// Scrapes of books' series Prometheus must hold before the check: the
/// 10 s window is then covered by data.
const SCRAPES_BEFORE_CHECK: f64 = 12.0;

fn cluster() -> String {
    yaml_docs(&[
        &mk_deployment("shop", "web"),
        &mk_replica_set("shop", "web-5d8f", Some("web")),
        &mk_pod("shop", "web-5d8f-abcde", "192.0.2.10", Some("web-5d8f")),
        &mk_deployment("shop", "books"),
        &mk_replica_set("shop", "books-77aa", Some("books")),
        &mk_pod("shop", "books-77aa-xyz12", "192.0.2.20", Some("books-77aa")),
        &mk_deployment("shop", "authors"),
        &mk_replica_set("shop", "authors-9c1e", Some("authors")),
        &mk_pod(
            "shop",
            "authors-9c1e-q8r7t",
            "192.0.2.30",
            Some("authors-9c1e"),
        ),
    ])
}

/// One second of web's outbound traffic.
fn one_second_of_traffic() -> ReportRequest {
    report(
        "shop",
        "web-5d8f-abcde",
        vec![
            RequestScope {
                ctx: ctx("192.0.2.10", "192.0.2.20", get(), "/books"),
                count: BOOKS_RPS as u32,
                responses: vec![
                    response(
                        200,
                        &[(120, 12), (350, 6)],
                        vec![eos(End::GrpcStatusCode(0), 18)],
                    ),
                    response(500, &[(350, 1), (1800, 1)], vec![eos(End::Other(true), 2)]),
                ],
            },
            RequestScope {
                ctx: ctx("192.0.2.10", "192.0.2.30", get(), "/authors"),
                count: AUTHORS_RPS as u32,
                responses: vec![response(
                    200,
                    &[(1500, AUTHORS_RPS as u32)],
                    vec![eos(End::Other(true), AUTHORS_RPS as usize)],
                )],
            },
        ],
    )
}

/// books' connections: web keeps [`BOOKS_CONNECTIONS`] open to it and
/// replaces one a second; each closed one carried [`BOOKS_READ`] bytes to
/// books (web's outbound proxy says) and [`BOOKS_WRITE`] back (books'
/// inbound proxy says).
const BOOKS_CONNECTIONS: u32 = 3;
const BOOKS_READ: u64 = 500;
const BOOKS_WRITE: u64 = 2_000;

/// books' inbound proxy: `connects` connections from web opened, `closes`
/// closed.
fn books_inbound(connects: u32, closes: usize) -> ReportRequest {
    let mut r = report("shop", "books-77aa-xyz12", vec![]);
    r.proxy = report_request::Proxy::Inbound as i32;
    r.server_transports = vec![ServerTransport {
        source_ip: Some(ip_to_proto("192.0.2.10".parse().unwrap())),
        connects,
        disconnects: vec![
            TransportSummary {
                duration_ms: 4_000,
                bytes_sent: BOOKS_WRITE,
            };
            closes
        ],
    }];
    r
}

/// web's outbound proxy: one connection to books replaced.
fn web_outbound_tcp() -> ReportRequest {
    let mut r = report("shop", "web-5d8f-abcde", vec![]);
    r.client_transports = vec![ClientTransport {
        target_addr: Some(TcpAddress {
            ip: Some(ip_to_proto("192.0.2.20".parse().unwrap())),
            port: 8080,
        }),
        connects: 1,
        disconnects: vec![TransportSummary {
            duration_ms: 4_000,
            bytes_sent: BOOKS_READ,
        }],
    }];
    r
}

async fn conduit_stat_json(api: &RunningApi) -> Vec<serde_json::Value> {
    conduit_stat_json_over(api, "10s").await
}

async fn conduit_stat_json_over(api: &RunningApi, window: &str) -> Vec<serde_json::Value> {
    conduit_json(api, &["stat", "deployments", "-t", window]).await
}

/// A client command of the real binary with `-o json`, against `api`.
async fn conduit_json(api: &RunningApi, args: &[&str]) -> Vec<serde_json::Value> {
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.extend([
        "-o".into(),
        "json".into(),
        "--api-addr".into(),
        api.http.to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = conduit(&args).await;
    assert!(
        out.status.success(),
        "conduit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array().unwrap().clone()
}

fn row<'a>(rows: &'a [serde_json::Value], name: &str, backend: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{backend}: no row for {name} in {rows:?}"))
}

fn check_rate(backend: &str, name: &str, row: &serde_json::Value, want: f64) {
    let got = row["requestRate"].as_f64().unwrap();
    assert!(
        (got - want).abs() <= want * RATE_TOLERANCE,
        "{backend}: {name} request rate {got}, want {want} ±{}%",
        RATE_TOLERANCE * 100.0
    );
}

fn check_success(backend: &str, name: &str, row: &serde_json::Value, want: f64) {
    let got = row["successRate"].as_f64().unwrap();
    assert!(
        (got - want).abs() <= SUCCESS_TOLERANCE,
        "{backend}: {name} success rate {got}, want {want} ±{SUCCESS_TOLERANCE}"
    );
}

/// In the bucket `(low, high]` of the true value; on the embedded store,
/// also within 1% (+ rounding) of the true value itself.
fn check_latency(
    backend: &str,
    name: &str,
    row: &serde_json::Value,
    key: &str,
    (truth, (low, high)): (i64, (i64, i64)),
) {
    let got = row[key]
        .as_i64()
        .unwrap_or_else(|| panic!("{backend}: {name} {key} missing"));
    assert!(
        got > low && got <= high,
        "{backend}: {name} {key} {got} ms outside the bucket ({low}, {high}] of the true {truth} ms"
    );
    if backend == "embedded" {
        let slack = (truth as f64 * 0.01).ceil() as i64 + 1;
        assert!(
            (got - truth).abs() <= slack,
            "embedded: {name} {key} {got} ms, want {truth} ±{slack} ms"
        );
    }
}

/// Telemetry A answers Stat through a real Prometheus that scrapes it;
/// telemetry B from its embedded store; a public-api in front of each.
struct Backends {
    with_prom: Running,
    embedded: Running,
    prometheus: Prometheus,
    api_prom: RunningApi,
    api_embedded: RunningApi,
    _routes: TempDir,
}

/// Route templates for authors only: its `/authors` matches none of them
/// (the `[DEFAULT]` route); books, without templates, lists its paths.
const ROUTES: &str = "shop/authors GET /authors/{id}\n";

impl Backends {
    async fn start() -> Self {
        let prom_port = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let prom_url = format!("-prometheus-url=http://127.0.0.1:{prom_port}");
        let dir = TempDir::new();
        let file = dir.0.join("routes");
        std::fs::write(&file, ROUTES).unwrap();
        let routes = format!("-routes={}", file.display());
        let with_prom = start_telemetry(&cluster(), &[&prom_url, &routes]).await;
        let embedded = start_telemetry(&cluster(), &[&routes]).await;
        let prometheus = Prometheus::start_on(prom_port, &[with_prom.admin]).await;
        let no_tap = unused_addr().await.to_string();
        let api_prom = start_public_api(&with_prom.grpc.to_string(), &no_tap).await;
        let api_embedded = start_public_api(&embedded.grpc.to_string(), &no_tap).await;
        Self {
            with_prom,
            embedded,
            prometheus,
            api_prom,
            api_embedded,
            _routes: dir,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_agrees_on_prometheus_and_the_embedded_store() {
    // Telemetry A answers Stat through Prometheus, which scrapes A; B from
    // its embedded store. Both get the same reports.
    let Backends {
        with_prom,
        embedded,
        prometheus,
        api_prom,
        api_embedded,
        ..
    } = Backends::start().await;

    // The simulated proxy: one report a second to each, until the end.
    let mut clients = [with_prom.client().await, embedded.client().await];
    let proxy = tokio::spawn(async move {
        for client in &mut clients {
            client
                .report(books_inbound(BOOKS_CONNECTIONS, 0))
                .await
                .unwrap();
        }
        let mut every = tokio::time::interval(REPORT_EVERY);
        loop {
            every.tick().await;
            for client in &mut clients {
                client.report(one_second_of_traffic()).await.unwrap();
                client.report(books_inbound(1, 1)).await.unwrap();
                client.report(web_outbound_tcp()).await.unwrap();
            }
        }
    });

    // Steady state: Prometheus holds enough scrapes to cover the window.
    prometheus
        .wait_for(
            "count_over_time(requests_total{target_deployment=\"shop/books\"}[30s])",
            SCRAPES_BEFORE_CHECK,
            Duration::from_secs(40),
        )
        .await;

    for (backend, api) in [("prometheus", &api_prom), ("embedded", &api_embedded)] {
        let rows = conduit_stat_json(api).await;
        eprintln!("{backend}: {}", serde_json::to_string(&rows).unwrap());
        assert_eq!(rows.len(), 2, "{backend}: books and authors: {rows:?}");
        let books = row(&rows, "shop/books", backend);
        check_rate(backend, "books", books, BOOKS_RPS);
        check_success(backend, "books", books, BOOKS_SUCCESS);
        check_latency(backend, "books", books, "p50LatencyMs", BOOKS_P50);
        check_latency(backend, "books", books, "p99LatencyMs", BOOKS_P99);
        // TCP: connections open now, bytes per second read and written.
        let tcp = |field: &str| {
            books[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{backend}: books has no {field}: {books}"))
        };
        assert_eq!(
            tcp("tcpOpenConnections"),
            f64::from(BOOKS_CONNECTIONS),
            "{backend}"
        );
        for (field, want) in [
            ("tcpReadBytesPerSec", BOOKS_READ),
            ("tcpWriteBytesPerSec", BOOKS_WRITE),
        ] {
            let (got, want) = (tcp(field), want as f64);
            assert!(
                (got - want).abs() <= want * RATE_TOLERANCE,
                "{backend}: books' {field} {got}, want {want}"
            );
        }
        let authors = row(&rows, "shop/authors", backend);
        assert!(
            authors.get("tcpOpenConnections").is_none(),
            "{backend}: authors had no connection reported: {authors}"
        );
        check_rate(backend, "authors", authors, AUTHORS_RPS);
        check_success(backend, "authors", authors, 1.0);
        check_latency(backend, "authors", authors, "p50LatencyMs", AUTHORS_LATENCY);
        check_latency(backend, "authors", authors, "p99LatencyMs", AUTHORS_LATENCY);

        // Routes: the same numbers per route, from the same backend.
        let books = conduit_json(
            api,
            &["routes", "deploy", "books", "-n", "shop", "-t", "10s"],
        )
        .await;
        assert_eq!(books.len(), 1, "{backend}: {books:?}");
        assert_eq!(books[0]["route"], "GET /books", "{backend}");
        check_rate(backend, "books' route", &books[0], BOOKS_RPS);
        check_success(backend, "books' route", &books[0], BOOKS_SUCCESS);
        check_latency(
            backend,
            "books' route",
            &books[0],
            "p50LatencyMs",
            BOOKS_P50,
        );
        let authors = conduit_json(api, &["routes", "deploy", "shop/authors", "-t", "10s"]).await;
        assert_eq!(authors.len(), 1, "{backend}: {authors:?}");
        assert_eq!(authors[0]["route"], "[DEFAULT]", "{backend}");
        check_rate(backend, "authors' default route", &authors[0], AUTHORS_RPS);
    }

    // A PromQL-injection attempt through filterBy only filters: the
    // request succeeds and selects nothing (unescaped, `or vector(1)` would
    // have answered a series).
    let hostile = "shop/books\"} or vector(1) or up{a=\"\\\n";
    let mesh_stat = |target_deploy: &str| MetricRequest {
        metrics: vec![
            MetricName::RequestRate as i32,
            MetricName::SuccessRate as i32,
            MetricName::Latency as i32,
        ],
        window: TimeWindow::TenSec as i32,
        group_by: AggregationType::Mesh as i32,
        filter_by: Some(MetricMetadata {
            target_deploy: target_deploy.into(),
            ..Default::default()
        }),
        summarize: true,
    };
    let ask = |request: MetricRequest| async move {
        let rsp = post(
            api_prom.http,
            STAT_PATH,
            Some("application/octet-stream"),
            &request.encode_to_vec(),
        )
        .await;
        assert_eq!(rsp.status, 200, "{}", rsp.text());
        MetricResponse::decode(&rsp.body[4..]).unwrap()
    };
    let control = ask(mesh_stat("shop/books")).await;
    assert_eq!(
        control.metrics.len(),
        3,
        "the honest filter selects books: {control:?}"
    );
    let answer = ask(mesh_stat(hostile)).await;
    assert_eq!(answer.metrics, [], "the hostile filter selects nothing");
    proxy.abort();
}

/// Both backends' books rate over `-t 1m`, checked against `want` (±10%).
async fn check_both_over_a_minute(apis: [&RunningApi; 2], want: f64, when: &str) {
    for (backend, api) in ["prometheus", "embedded"].into_iter().zip(apis) {
        let rows = conduit_stat_json_over(api, "1m").await;
        eprintln!(
            "{when}, {backend}: {}",
            serde_json::to_string(&rows).unwrap()
        );
    }
    for (backend, api) in ["prometheus", "embedded"].into_iter().zip(apis) {
        let rows = conduit_stat_json_over(api, "1m").await;
        let got = row(&rows, "shop/books", backend)["requestRate"]
            .as_f64()
            .unwrap();
        assert!(
            (got - want).abs() <= want * YOUNG_RATE_TOLERANCE,
            "{when}, {backend}: books {got} rps over 1m, want {want:.2} ±{}% \
             (the rate over the span the traffic covers, not over the whole minute)",
            YOUNG_RATE_TOLERANCE * 100.0
        );
    }
}

/// Scrape jitter and the embedded store's one-report lead are all that
/// separate the two from the truth here: a rate divided by the whole
/// minute would be 2–4× off.
const YOUNG_RATE_TOLERANCE: f64 = 0.10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_young_or_stopped_groups_rate_is_over_the_span_it_covers() {
    let Backends {
        with_prom,
        embedded,
        prometheus,
        api_prom,
        api_embedded,
        ..
    } = Backends::start().await;

    // Prometheus scrapes telemetry before the traffic begins, as in a
    // cluster (its first scrape of new targets can lag start-up by
    // seconds, and a counter's value at its first scrape is not an increase).
    prometheus
        .wait_for("sum(up)", 1.0, Duration::from_secs(30))
        .await;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut clients = [with_prom.client().await, embedded.client().await];
    let first_report = std::time::Instant::now();
    let proxy = tokio::spawn({
        let sent = sent.clone();
        async move {
            let mut every = tokio::time::interval(REPORT_EVERY);
            loop {
                every.tick().await;
                for client in &mut clients {
                    client.report(one_second_of_traffic()).await.unwrap();
                }
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });

    // Young: ~15 s of traffic in a 1 min window reads the rate sent.
    prometheus
        .wait_for(
            "count_over_time(requests_total{target_deployment=\"shop/books\"}[1m])",
            15.0,
            Duration::from_secs(40),
        )
        .await;
    check_both_over_a_minute([&api_prom, &api_embedded], BOOKS_RPS, "young").await;

    // Stopped inside the window: what was sent over the time since it began
    // (plus the one report interval the first report covers).
    proxy.abort();
    let _ = proxy.await;
    let reports = sent.load(std::sync::atomic::Ordering::SeqCst) as f64;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let covered = first_report.elapsed().as_secs_f64() + REPORT_EVERY.as_secs_f64();
    assert!(covered < 55.0, "the check must run inside the minute");
    let want = reports * BOOKS_RPS / covered;
    assert!(
        want < BOOKS_RPS * 0.8,
        "the traffic has visibly stopped: {want}"
    );
    check_both_over_a_minute([&api_prom, &api_embedded], want, "stopped").await;
}
