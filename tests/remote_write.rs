//! Remote write end to end: reports in over gRPC, series pushed to a real
//! Prometheus (Debian's 2.x with its remote-write receiver) and read back
//! with PromQL, and the delivery guarantees against a Prometheus that is
//! down, killed, or replaced by a fake receiver answering 500 or 400.

#[path = "support/prometheus.rs"]
mod prometheus_support;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conduit::ingest::{Config as IngestConfig, Health, Ingester, NoMetadata};
use conduit::proto::common::TcpAddress;
use conduit::proto::net::ip_to_proto;
use conduit::proto::proxy::telemetry::{
    ClientTransport, ReportRequest, RequestScope, TransportSummary, eos_ctx::End,
};
use conduit::remote_write::{self, RemoteWrite};
use prometheus_support::*;
use prost::Message as _;
use support::*;

/// Every test pushes this often, so a test takes a few seconds.
const INTERVAL: &str = "-remote-write-interval=200ms";
const INTERVAL_MS: i64 = 200;
const WAIT: Duration = Duration::from_secs(20);

const WEB: &str = "192.0.2.10";
const BOOKS: &str = "192.0.2.20";
const WEB_POD: &str = "shop/web-5d8f-abcde";
const BOOKS_POD: &str = "shop/books-77aa-xyz12";

fn cluster() -> String {
    yaml_docs(&[
        &mk_deployment("shop", "web"),
        &mk_replica_set("shop", "web-5d8f", Some("web")),
        &mk_pod("shop", "web-5d8f-abcde", WEB, Some("web-5d8f")),
        &mk_deployment("shop", "books"),
        &mk_replica_set("shop", "books-77aa", Some("books")),
        &mk_pod("shop", "books-77aa-xyz12", BOOKS, Some("books-77aa")),
    ])
}

/// web → books on `path`: `count` requests; two gRPC-OK responses of which
/// two took 4.5 ms and one 15 ms, one HTTP 500 that took 100 ms; two
/// connections opened to books, one closed after 3 ms having sent 1500 bytes.
fn traffic(path: &str, count: u32) -> ReportRequest {
    let mut r = report(
        "shop",
        "web-5d8f-abcde",
        vec![RequestScope {
            ctx: ctx(WEB, BOOKS, get(), path),
            count,
            responses: vec![
                response(
                    200,
                    &[(45, 2), (150, 1)],
                    vec![eos(End::GrpcStatusCode(0), 2)],
                ),
                response(500, &[(1000, 1)], vec![eos(End::Other(true), 1)]),
            ],
        }],
    );
    r.client_transports = vec![ClientTransport {
        target_addr: Some(TcpAddress {
            ip: Some(ip_to_proto(BOOKS.parse().unwrap())),
            port: 8080,
        }),
        connects: 2,
        disconnects: vec![TransportSummary {
            duration_ms: 3,
            bytes_sent: 1500,
        }],
    }];
    r
}

fn requests_on(path: &str) -> String {
    format!(r#"requests_total{{source="{WEB_POD}",target="{BOOKS_POD}",path="{path}"}}"#)
}

fn url_flag(url: &str) -> String {
    format!("-remote-write-url={url}")
}

/// Waits until Prometheus answers `promql` with `want`.
async fn promql_eventually(prom: &Prometheus, promql: &str, want: f64) {
    eventually(
        &format!("Prometheus answers {promql} = {want}"),
        WAIT,
        || async { prom.value(promql).await == Some(want) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_series_answer_promql_as_the_scrape_does() {
    let prom = Prometheus::start().await;
    let t = start_telemetry(&cluster(), &[&url_flag(&prom.write_url()), INTERVAL]).await;
    let mut client = t.client().await;
    client.report(traffic("/books", 3)).await.unwrap();
    client.report(traffic("/books", 4)).await.unwrap();

    promql_eventually(&prom, &requests_on("/books"), 7.0).await;
    let books = format!(r#"source="{WEB_POD}",path="/books""#);
    let value = |q: String| {
        let prom = &prom;
        async move { prom.value(&q).await }
    };
    assert_eq!(
        value(format!(
            r#"responses_total{{{books},http_status_code="500",classification="failure"}}"#
        ))
        .await,
        Some(2.0)
    );
    assert_eq!(
        value(format!(r#"response_latency_ms_bucket{{{books},le="5"}}"#)).await,
        Some(4.0),
        "two 4.5 ms responses per report land in le=5"
    );
    assert_eq!(
        value(format!(r#"response_latency_ms_count{{{books}}}"#)).await,
        Some(8.0)
    );
    let tcp = format!(r#"direction="outbound",peer="dst",target="{BOOKS_POD}""#);
    assert_eq!(value(format!("tcp_open_total{{{tcp}}}")).await, Some(4.0));
    assert_eq!(
        value(format!(
            r#"tcp_connection_duration_ms_bucket{{{tcp},le="5"}}"#
        ))
        .await,
        Some(2.0)
    );
    assert_eq!(
        value(format!("tcp_write_bytes_total{{{tcp}}}")).await,
        Some(3000.0)
    );
    assert_eq!(
        value("conduit_telemetry_reports_total".into()).await,
        Some(2.0)
    );
    eventually(
        "remote write's own counters are pushed too",
        WAIT,
        || async {
            prom.value(r#"conduit_remote_write_samples_total{result="sent"}"#)
                .await
                .is_some_and(|v| v > 0.0)
        },
    )
    .await;

    // Every mesh sample of the scrape is a series in Prometheus with the same
    // value and labels (empty labels are absent in both).
    let scraped: BTreeMap<BTreeMap<String, String>, f64> = t
        .scrape()
        .await
        .samples
        .into_iter()
        .filter(|(name, _, _)| {
            [
                "requests_total",
                "responses_total",
                "response_latency_ms",
                "tcp_",
            ]
            .iter()
            .any(|p| name.starts_with(p))
        })
        .map(|(name, labels, v)| {
            let mut labels: BTreeMap<String, String> =
                labels.into_iter().filter(|(_, v)| !v.is_empty()).collect();
            labels.insert("__name__".into(), name);
            (labels, v)
        })
        .collect();
    let pushed: BTreeMap<BTreeMap<String, String>, f64> = prom
        .query(r#"{__name__=~"requests_total|responses_total|response_latency_ms_.*|tcp_.*"}"#)
        .await
        .iter()
        .map(|r| {
            let labels = serde_json::from_value(r["metric"].clone()).unwrap();
            (labels, r["value"][1].as_str().unwrap().parse().unwrap())
        })
        .collect();
    assert!(scraped.len() > 40, "{scraped:?}");
    assert_eq!(pushed, scraped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_at_start_gets_the_data_once_it_is_up() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let t = start_telemetry(&cluster(), &[&url_flag(&url), INTERVAL]).await;
    let mut client = t.client().await;
    client.report(traffic("/early", 5)).await.unwrap();
    counters_eventually("pushes fail while nothing listens", t.admin, |m| {
        requests_with_code(m, "error") >= 3.0 && Counters::from(m).retried > 0.0
    })
    .await;
    // Still serving Reports while the pushes fail.
    client.report(traffic("/early", 1)).await.unwrap();

    let prom = Prometheus::start_on(port).await;
    promql_eventually(&prom, &requests_on("/early"), 6.0).await;
    client.report(traffic("/early", 2)).await.unwrap();
    promql_eventually(&prom, &requests_on("/early"), 8.0).await;
    let c = Counters::from(&t.scrape().await);
    assert_eq!(c.failed, 0.0, "{c:?}");
    assert_eq!(c.dropped, 0.0, "a short outage fits in the queue: {c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_killed_and_restarted_gets_a_complete_series() {
    let mut prom = Prometheus::start().await;
    let t = start_telemetry(&cluster(), &[&url_flag(&prom.write_url()), INTERVAL]).await;
    let mut client = t.client().await;
    client.report(traffic("/crash", 1)).await.unwrap();
    promql_eventually(&prom, &requests_on("/crash"), 1.0).await;

    prom.kill();
    let errors_before = requests_with_code(&t.scrape().await, "error");
    for _ in 0..5 {
        client.report(traffic("/crash", 1)).await.unwrap();
    }
    // Down long enough that a lost stretch would show as a gap: sixteen
    // failed attempts at jittered backoff (half to all of a delay doubling
    // up to the interval) is over two seconds.
    counters_eventually("sixteen pushes failed", t.admin, |m| {
        requests_with_code(m, "error") >= errors_before + 16.0
    })
    .await;
    let queued = Counters::from(&t.scrape().await).queue;
    assert!(queued > 0.0, "the outage's collections wait in the queue");
    client.report(traffic("/crash", 1)).await.unwrap();

    prom.restart().await;
    promql_eventually(&prom, &requests_on("/crash"), 7.0).await;
    // One more collection after recovery, so the series runs past it.
    client.report(traffic("/crash", 1)).await.unwrap();
    promql_eventually(&prom, &requests_on("/crash"), 8.0).await;

    // The collections taken during the outage were queued and delivered in
    // order after recovery: the series has no gap, before, during or after.
    let samples = prom
        .samples(&format!("{}[5m]", requests_on("/crash")))
        .await;
    let gaps: Vec<i64> = samples.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let widest = gaps.iter().copied().max().unwrap_or(0);
    assert!(
        samples.len() > 10 && widest <= 5 * INTERVAL_MS,
        "widest gap {widest} ms over {} samples: {samples:?}",
        samples.len()
    );
    assert!(
        samples.windows(2).all(|w| w[0].1 <= w[1].1),
        "the counter never goes backwards: {samples:?}"
    );
    let c = Counters::from(&t.scrape().await);
    assert_eq!((c.dropped, c.failed), (0.0, 0.0), "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_answering_500_is_retried_and_counted() {
    // Three 500s, then 200 for good.
    let fake = FakeReceiver::start(&[500, 500, 500], 200).await;
    let t = start_telemetry(&cluster(), &[&url_flag(&fake.url()), INTERVAL]).await;
    let mut client = t.client().await;
    client.report(traffic("/flaky", 2)).await.unwrap();
    eventually("the receiver saw its 500s and then 200s", WAIT, || async {
        fake.totals().requests(200) >= 3
    })
    .await;
    client.report(traffic("/flaky", 2)).await.unwrap();

    let received = fake.received();
    assert!(
        received[..4].iter().all(|r| r.body == received[0].body),
        "the batch answered 500 is sent again, unchanged, until accepted"
    );
    eventually("the counters match what the receiver saw", WAIT, || async {
        let before = fake.totals();
        let m = t.scrape().await;
        let after = fake.totals();
        let c = Counters::from(&m);
        before == after
            && c.retried == before.samples(500) as f64
            && c.sent == before.samples(200) as f64
            && requests_with_code(&m, "500") == 3.0
            && requests_with_code(&m, "200") == before.requests(200) as f64
            && c.failed == 0.0
            && c.dropped == 0.0
    })
    .await;
    eventually("the second report is pushed", WAIT, || async {
        fake.received()
            .last()
            .and_then(|r| r.value("requests_total", &[("path", "/flaky")]))
            == Some(4.0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_429_and_503_is_honoured() {
    // A fake receiver: Prometheus itself never sends Retry-After.
    let fake = FakeReceiver::start(&[429, 503], 200).await;
    fake.set_retry_after("1");
    let t = start_telemetry(&cluster(), &[&url_flag(&fake.url()), INTERVAL]).await;
    let mut client = t.client().await;
    client.report(traffic("/later", 2)).await.unwrap();
    eventually(
        "the batch is accepted after two answers to wait",
        WAIT,
        || async { fake.totals().requests(200) >= 1 },
    )
    .await;
    let r = fake.received();
    assert_eq!((r[0].status, r[1].status, r[2].status), (429, 503, 200));
    for pair in r[..3].windows(2) {
        let waited = pair[1].at - pair[0].at;
        // The backoff alone would be 30–60 ms.
        assert!(waited >= Duration::from_millis(950), "waited {waited:?}");
        assert_eq!(pair[1].body, pair[0].body, "the same batch again");
    }
    let m = t.scrape().await;
    assert_eq!(
        m.get("conduit_remote_write_retry_after_total", &[]),
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_answering_400_is_not_retried_and_is_counted() {
    let fake = FakeReceiver::start(&[], 400).await;
    let t = start_telemetry(&cluster(), &[&url_flag(&fake.url()), INTERVAL]).await;
    let mut client = t.client().await;
    for i in 0..3 {
        client.report(traffic("/rejected", 1)).await.unwrap();
        eventually("another rejected request", WAIT, || async {
            fake.totals().requests(400) > i
        })
        .await;
    }
    eventually("the counters match what the receiver saw", WAIT, || async {
        let before = fake.totals();
        let m = t.scrape().await;
        let after = fake.totals();
        let c = Counters::from(&m);
        before == after
            && c.failed == before.samples(400) as f64
            && requests_with_code(&m, "400") == before.requests(400) as f64
            && c.retried == 0.0
            && c.sent == 0.0
            && c.dropped == 0.0
    })
    .await;
    let received = fake.received();
    let mut bodies: Vec<_> = received.iter().map(|r| r.body.clone()).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), received.len(), "no body was sent twice");
    let m = t.scrape().await;
    assert!(Counters::from(&m).queue < 1000.0, "nothing piles up");
    assert_eq!(
        m.get(
            "requests_total",
            &[
                ("source", WEB_POD),
                ("target", BOOKS_POD),
                ("source_deployment", "shop/web"),
                ("target_deployment", "shop/books"),
                ("method", "GET"),
                ("path", "/rejected"),
            ]
        ),
        Some(3.0),
        "the ingester kept counting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_the_protocol_headers_and_sorted_labels() {
    let fake = FakeReceiver::start(&[], 204).await;
    let t = start_telemetry(
        &cluster(),
        &[
            &url_flag(&fake.url()),
            INTERVAL,
            "-remote-write-header=X-Scope-OrgID=tenant-a",
            "-remote-write-header",
            "Authorization=Bearer example-token",
        ],
    )
    .await;
    let mut client = t.client().await;
    client.report(traffic("/format", 3)).await.unwrap();
    eventually("two pushes with the report", WAIT, || async {
        fake.received()
            .iter()
            .filter(|r| r.value("requests_total", &[("path", "/format")]).is_some())
            .count()
            >= 2
    })
    .await;
    let received = fake.received();
    for r in &received {
        let h = |name: &str| r.headers.get(name).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(h("content-encoding").as_deref(), Some("snappy"));
        assert_eq!(h("content-type").as_deref(), Some("application/x-protobuf"));
        assert_eq!(
            h("x-prometheus-remote-write-version").as_deref(),
            Some("0.1.0")
        );
        assert!(h("user-agent").is_some_and(|ua| ua.starts_with("conduit/")));
        assert_eq!(h("x-scope-orgid").as_deref(), Some("tenant-a"));
        assert_eq!(h("authorization").as_deref(), Some("Bearer example-token"));
        let ts = r.timestamp();
        for series in &r.request.timeseries {
            let names: Vec<&str> = series.labels.iter().map(|l| l.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(names, sorted, "labels sorted by name, each once");
            assert_eq!(names.first(), Some(&"__name__"));
            assert!(series.labels.iter().all(|l| !l.value.is_empty()));
            assert_eq!(series.samples.len(), 1);
            assert_eq!(series.samples[0].timestamp, ts, "stamped at collection");
        }
    }
    let stamps: Vec<i64> = received.iter().map(Received::timestamp).collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    let last = received.last().unwrap();
    let path = [("path", "/format")];
    assert_eq!(last.value("requests_total", &path), Some(3.0));
    assert_eq!(
        last.value(
            "response_latency_ms_bucket",
            &[("path", "/format"), ("le", "20")]
        ),
        Some(3.0)
    );
    assert_eq!(
        last.value("response_latency_ms_sum", &path),
        Some(4.5 * 2.0 + 15.0 + 100.0)
    );
    assert_eq!(last.value("response_latency_ms_count", &path), Some(4.0));
    assert_eq!(
        last.value("conduit_telemetry_reports_total", &[]),
        Some(1.0)
    );
    assert!(
        last.value(
            "conduit_telemetry_report_handling_seconds_bucket",
            &[("le", "+Inf")]
        )
        .is_some(),
        "registry histograms are pushed as _bucket/_sum/_count"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_the_last_reports() {
    let fake = FakeReceiver::start(&[], 200).await;
    // No periodic push happens in this test: only the final flush.
    let mut c = Component::start(
        &cluster(),
        &[&url_flag(&fake.url()), "-remote-write-interval=1h"],
    )
    .await;
    let mut client = connect(c.grpc).await;
    client.report(traffic("/last", 9)).await.unwrap();
    assert!(fake.received().is_empty());
    let took = c.shutdown().await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    let received = fake.received();
    let stamps: std::collections::BTreeSet<i64> =
        received.iter().map(Received::timestamp).collect();
    assert_eq!(stamps.len(), 1, "one final collection: {stamps:?}");
    assert_eq!(
        received
            .iter()
            .find_map(|r| r.value("requests_total", &[("path", "/last")])),
        Some(9.0)
    );
}

/// An ingester holding `n` request label sets (31 samples each).
fn busy_ingester(n: usize) -> Arc<Ingester> {
    let health = Health::register(&prometheus::Registry::new()).unwrap();
    let ingester = Arc::new(Ingester::new(IngestConfig::default(), health));
    let scopes = (0..n)
        .map(|i| RequestScope {
            ctx: ctx(WEB, BOOKS, get(), &format!("/item/{i}")),
            count: 1,
            responses: vec![response(
                200,
                &[(45, 1)],
                vec![eos(End::GrpcStatusCode(0), 1)],
            )],
        })
        .collect();
    ingester
        .ingest_bytes(&report("shop", "web", scopes).encode_to_vec(), &NoMetadata)
        .unwrap();
    ingester
}

fn small_config(url: &str, interval: Duration) -> remote_write::Config {
    let mut config = remote_write::Config::new(url.parse().unwrap(), interval, vec![]);
    config.max_samples_per_request = 100;
    config.queue_samples = 1_000;
    config.max_shards = 2;
    config.flush_timeout = Duration::from_millis(500);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_stays_bounded_and_drops_the_oldest_while_the_receiver_fails() {
    let fake = FakeReceiver::start(&[], 500).await;
    // 40 label sets × 30 samples: ~1,200 samples a collection, over the
    // 1,000-sample queue on its own.
    let ingester = busy_ingester(40);
    let registry = prometheus::Registry::new();
    let config = small_config(&fake.url(), Duration::from_millis(100));
    let bound = (config.queue_samples + config.max_shards * config.max_samples_per_request) as i64;
    let rw = RemoteWrite::new(config, &registry).unwrap();
    let m = rw.metrics().clone();
    let pusher = rw.start(ingester.clone());

    let mut reports = 0;
    eventually("several collections' worth dropped", WAIT, || {
        // The ingester keeps taking reports while pushes fail.
        ingester
            .ingest_bytes(&traffic("/meanwhile", 1).encode_to_vec(), &NoMetadata)
            .unwrap();
        reports += 1;
        let held = m.queue_samples.get();
        assert!(held <= bound, "queue holds {held} samples, bound {bound}");
        let dropped = m.dropped.get();
        async move { dropped > 5_000 }
    })
    .await;
    assert!(m.retried.get() > 0);
    assert_eq!(m.sent.get(), 0);
    assert!(reports > 1);

    // Recovery: the newest data is delivered, the oldest was dropped.
    let first_500 = fake.received()[0].timestamp();
    fake.set_default(200);
    eventually("delivering again", WAIT, || async { m.sent.get() > 0 }).await;
    let first_200 = fake
        .received()
        .iter()
        .find(|r| r.status == 200)
        .map(Received::timestamp)
        .unwrap();
    assert!(
        first_200 > first_500,
        "the batch first refused was given up for newer data"
    );
    eventually(
        "every collected sample is sent, dropped or held",
        WAIT,
        || async {
            m.collected.get() as i64
                == (m.sent.get() + m.failed.get() + m.dropped.get()) as i64 + m.queue_samples.get()
        },
    )
    .await;
    tokio::time::timeout(Duration::from_secs(5), pusher.shutdown())
        .await
        .expect("shutdown is bounded");
    assert_eq!(m.queue_samples.get(), 0);
    assert_eq!(
        m.collected.get(),
        m.sent.get() + m.failed.get() + m.dropped.get()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_gets_more_shards_and_series_stay_in_order() {
    let fake = FakeReceiver::start(&[], 200).await;
    fake.set_delay(Duration::from_millis(50));
    // 12 requests of 100 samples a collection at 50 ms each: 600 ms of
    // sending every 200 ms interval is more than one connection can carry.
    let ingester = busy_ingester(40);
    let registry = prometheus::Registry::new();
    let mut config = small_config(&fake.url(), Duration::from_millis(200));
    config.queue_samples = 100_000;
    config.max_shards = 4;
    // Room to send a backlog of a few collections at the end.
    config.flush_timeout = Duration::from_secs(10);
    let rw = RemoteWrite::new(config, &registry).unwrap();
    let m = rw.metrics().clone();
    let pusher = rw.start(ingester);
    eventually("shards added and used at once", WAIT, || async {
        m.shards.get() > 1 && fake.max_in_flight() > 1
    })
    .await;
    eventually(
        "several collections sent by several shards",
        WAIT,
        || async {
            fake.received()
                .iter()
                .map(Received::timestamp)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                >= 4
        },
    )
    .await;
    pusher.shutdown().await;
    assert_eq!((m.dropped.get(), m.failed.get()), (0, 0));

    // However many shards, each series' samples arrived in time order (a
    // receiver like Prometheus rejects a request holding an older one).
    let mut last: BTreeMap<Vec<(String, String)>, i64> = BTreeMap::new();
    for r in fake.received() {
        for series in &r.request.timeseries {
            let key = series
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            let ts = series.samples[0].timestamp;
            if let Some(before) = last.insert(key, ts) {
                assert!(before < ts, "a series went back in time: {series:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_when_the_receiver_is_down() {
    let fake = FakeReceiver::start(&[], 503).await;
    let ingester = busy_ingester(5);
    let registry = prometheus::Registry::new();
    let rw = RemoteWrite::new(
        small_config(&fake.url(), Duration::from_secs(3600)),
        &registry,
    )
    .unwrap();
    let m = rw.metrics().clone();
    let pusher = rw.start(ingester);
    let started = Instant::now();
    pusher.shutdown().await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "the flush retried until its 500 ms timeout, then gave up: {took:?}"
    );
    assert!(m.retried.get() > 0, "retried while the flush lasted");
    assert_eq!(m.sent.get(), 0);
    assert!(m.collected.get() > 0);
    assert_eq!(
        m.dropped.get(),
        m.collected.get(),
        "what could not be flushed is counted"
    );
    assert_eq!(m.queue_samples.get(), 0);
}

/// SIGTERM while a client holds an unfinished Report: the process drains
/// for the shutdown grace (2 s here), cuts the stuck client, runs the last
/// remote-write flush, which a real Prometheus receives, and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_stuck_client_exits_after_the_grace_and_flushes() {
    const GRACE: Duration = Duration::from_secs(2);
    let prom = Prometheus::start().await;
    let dir = TempDir::new();
    let cluster_file = dir.0.join("cluster.yaml");
    std::fs::write(&cluster_file, cluster()).unwrap();
    let (grpc, admin) = (free_port(), free_port());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args([
            "controller",
            "telemetry",
            &format!("-addr=127.0.0.1:{grpc}"),
            &format!("-metrics-addr=127.0.0.1:{admin}"),
            &format!("--cluster={}", cluster_file.display()),
            &url_flag(&prom.write_url()),
            // No periodic push: only the final flush.
            "-remote-write-interval=1h",
            "--shutdown-grace=2s",
        ])
        .env_remove("RUST_LOG")
        .spawn()
        .expect("the conduit binary starts");
    let grpc: std::net::SocketAddr = ([127, 0, 0, 1], grpc).into();
    let admin: std::net::SocketAddr = ([127, 0, 0, 1], admin).into();
    eventually("telemetry is ready", WAIT, || async {
        try_get(admin, "/ready")
            .await
            .is_some_and(|(s, _)| s == 200)
    })
    .await;
    let mut client = connect(grpc).await;
    client.report(traffic("/before-sigterm", 9)).await.unwrap();
    // A proxy stuck mid-Report: 1 MiB of a message announced as 4 MiB.
    let (stuck, _answer) = stalled_reports(grpc, 1).await;
    // Loopback delivers the request's headers and first bytes at once; no
    // counter shows a request before it ends, so give it a moment. Were it
    // late, the server would exit before the grace, which fails below.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!stuck.is_finished(), "the stuck request is still open");

    let started = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > WAIT {
            let _ = child.kill();
            panic!("telemetry still running {WAIT:?} after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = started.elapsed();
    stuck.abort();
    assert!(status.success(), "{status}");
    // It waited for the stuck client (so the drain saw it) until the grace,
    // then no longer than the flush takes.
    assert!(took >= GRACE, "exited after {took:?}, before the grace");
    assert!(
        took < GRACE + remote_write::FLUSH_TIMEOUT,
        "exited after {took:?}"
    );
    promql_eventually(&prom, &requests_on("/before-sigterm"), 9.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_series_is_ended_by_a_stale_marker_at_once() {
    let prom = Prometheus::start().await;
    let t = start_telemetry(
        &cluster(),
        &[
            &url_flag(&prom.write_url()),
            INTERVAL,
            "-series-idle-timeout=1s",
        ],
    )
    .await;
    let mut client = t.client().await;
    client.report(traffic("/gone", 3)).await.unwrap();
    promql_eventually(&prom, &requests_on("/gone"), 3.0).await;
    let latency =
        format!(r#"response_latency_ms_bucket{{source="{WEB_POD}",path="/gone",le="5"}}"#);
    assert_eq!(prom.value(&latency).await, Some(2.0));

    // No more reports: the series is evicted after a second or two, and
    // the next push ends it. Without the marker Prometheus would keep
    // answering it for its five-minute lookback.
    let evicted_at = Instant::now();
    eventually(
        "the evicted series is gone from an instant query",
        Duration::from_secs(10),
        || async {
            prom.value(&requests_on("/gone")).await.is_none()
                && prom.value(&latency).await.is_none()
        },
    )
    .await;
    let took = evicted_at.elapsed();
    let m = t.scrape().await;
    assert!(
        m.get("conduit_telemetry_series_evicted_total", &[])
            .unwrap()
            >= 1.0,
        "it was evicted"
    );
    // The samples before the marker are intact (a range selector leaves
    // the marker itself out).
    let samples = prom.samples(&format!("{}[5m]", requests_on("/gone"))).await;
    assert_eq!(samples.last().map(|s| s.1), Some(3.0), "{samples:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}
