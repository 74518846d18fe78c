//! The "Must show" for native histograms, against the real
//! Prometheus 2.42: a telemetry component with `-native-histograms` gets a
//! steady 20 requests a second, every one taking 610 ms, and a connection a
//! second that lived 3 s. Two Prometheus servers scrape its `/metrics` every
//! second (both ask for gzip, as Prometheus always does):
//!
//! - one with `--enable-feature=native-histograms`, which asks for the
//!   protobuf exposition: `histogram_quantile(0.5,
//!   sum(rate(response_latency_ms[30s])))` is within 5% of 610 (and the tcp
//!   duration's within 5% of 3000);
//! - one without, which scrapes the text format: the classic buckets are
//!   there, and their interpolated median is ~750 ms, as before.
//!
//! The plain text scrape, the protobuf scrape and a gzip scrape of the
//! same endpoint are also checked directly.

#[path = "support/prom_launcher.rs"]
mod prom_launcher;
mod support;

use std::io::Read as _;
use std::time::Duration;

use conduit::proto::proxy::telemetry::{ClientTransport, TransportSummary, eos_ctx::End};
use prom_launcher::Prometheus;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every request's latency, in tenths of a millisecond (610 ms).
const LATENCY_TENTHS: u32 = 6_100;
const LATENCY_MS: f64 = 610.0;
/// Every connection's lifetime.
const DURATION_MS: u64 = 3_000;
const REQUESTS_PER_REPORT: u32 = 20;
/// Prometheus' estimate from native buckets: within 5% of the truth.
const NATIVE_TOLERANCE: f64 = 0.05;
/// How long Prometheus may take to hold enough scrapes for a 30 s rate.
const WAIT_FOR_DATA: Duration = Duration::from_secs(60);

const NATIVE_MEDIAN: &str = "histogram_quantile(0.5, sum(rate(response_latency_ms[30s])))";
const NATIVE_TCP_MEDIAN: &str =
    "histogram_quantile(0.5, sum(rate(tcp_connection_duration_ms[30s])))";
const CLASSIC_MEDIAN: &str =
    "histogram_quantile(0.5, sum by (le) (rate(response_latency_ms_bucket[30s])))";

fn cluster() -> String {
    yaml_docs(&[
        &mk_deployment("shop", "web"),
        &mk_replica_set("shop", "web-5d8f", Some("web")),
        &mk_pod("shop", "web-5d8f-abcde", "192.0.2.10", Some("web-5d8f")),
        &mk_deployment("shop", "books"),
        &mk_replica_set("shop", "books-77aa", Some("books")),
        &mk_pod("shop", "books-77aa-xyz12", "192.0.2.20", Some("books-77aa")),
    ])
}

/// One second of web's traffic to books.
fn one_second() -> conduit::proto::proxy::telemetry::ReportRequest {
    let mut r = report(
        "shop",
        "web-5d8f-abcde",
        vec![web_to_books(
            "/books",
            REQUESTS_PER_REPORT,
            vec![response(
                200,
                &[(LATENCY_TENTHS, REQUESTS_PER_REPORT)],
                vec![eos(End::GrpcStatusCode(0), REQUESTS_PER_REPORT as usize)],
            )],
        )],
    );
    r.client_transports = vec![ClientTransport {
        target_addr: ctx("192.0.2.10", "192.0.2.20", get(), "/").and_then(|c| c.target_addr),
        connects: 1,
        disconnects: vec![TransportSummary {
            duration_ms: DURATION_MS,
            bytes_sent: 100,
        }],
    }];
    r
}

/// A GET of `/metrics` with these request headers: the response's headers
/// (lowercased names) and its raw body.
async fn scrape(admin: std::net::SocketAddr, headers: &[(&str, &str)]) -> (String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    let mut request = "GET /metrics HTTP/1.0\r\nHost: test\r\n".to_string();
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..end].to_vec())
        .unwrap()
        .to_lowercase();
    assert!(
        head.starts_with("http/1.0 200") || head.starts_with("http/1.1 200"),
        "{head}"
    );
    (head, raw[end + 4..].to_vec())
}

fn within(got: f64, want: f64, tolerance: f64) -> bool {
    got.is_finite() && (got - want).abs() <= want * tolerance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_reads_exact_latency_from_native_histograms() {
    let telemetry = start_telemetry(&cluster(), &["-native-histograms"]).await;
    let mut client = telemetry.client().await;
    client.report(one_second()).await.unwrap();

    // The text format keeps the classic buckets, nothing else.
    let (head, body) = scrape(telemetry.admin, &[]).await;
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let text = String::from_utf8(body).unwrap();
    let exposition = Exposition::parse(&text);
    let mut books: Vec<(&str, &str)> = WEB_TO_BOOKS.to_vec();
    books.extend([("method", "GET"), ("path", "/books"), ("le", "1000")]);
    assert_eq!(
        exposition.get("response_latency_ms_bucket", &books),
        Some(f64::from(REQUESTS_PER_REPORT)),
        "{text}"
    );

    // Asked as Prometheus asks with native histograms on, and gzip.
    let (head, body) = scrape(
        telemetry.admin,
        &[
            (
                "Accept",
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
            ),
            ("Accept-Encoding", "gzip"),
        ],
    )
    .await;
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(
        head.contains("content-type: application/vnd.google.protobuf; proto=io.prometheus.client.metricfamily; encoding=delimited"),
        "{head}"
    );
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut raw)
        .expect("a gzip body");
    let families = conduit::ingest::protobuf::decode_stream(&raw).expect("delimited MetricFamily");
    let latency = families
        .iter()
        .find(|f| f.name() == "response_latency_ms")
        .expect("the latency family");
    let h = latency.metric[0].histogram.as_ref().unwrap();
    assert_eq!(h.schema(), 3);
    assert_eq!(h.sample_count(), u64::from(REQUESTS_PER_REPORT));
    assert_eq!(h.positive_delta, [i64::from(REQUESTS_PER_REPORT)]);
    assert_eq!(h.bucket.len(), 25, "the classic buckets too");

    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let native = Prometheus::start_with(
        port,
        &[telemetry.admin],
        &["--enable-feature=native-histograms"],
    )
    .await;
    let classic = Prometheus::start(&[telemetry.admin]).await;

    // A report a second until both have 30 s rates.
    let sender = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            client.report(one_second()).await.unwrap();
        }
    });
    let median = eventually("a native median", WAIT_FOR_DATA, || async {
        let v = native.scalar(NATIVE_MEDIAN).await;
        (v > 0.0 && v.is_finite()).then_some(v)
    })
    .await;
    assert!(
        within(median, LATENCY_MS, NATIVE_TOLERANCE),
        "native median {median} ms, want {LATENCY_MS} ±5%"
    );
    let tcp = eventually("a native tcp median", WAIT_FOR_DATA, || async {
        let v = native.scalar(NATIVE_TCP_MEDIAN).await;
        (v > 0.0 && v.is_finite()).then_some(v)
    })
    .await;
    assert!(
        within(tcp, DURATION_MS as f64, NATIVE_TOLERANCE),
        "native tcp median {tcp} ms, want {DURATION_MS} ±5%"
    );

    let classic_median = eventually("a classic median", WAIT_FOR_DATA, || async {
        let v = classic.scalar(CLASSIC_MEDIAN).await;
        (v > 0.0 && v.is_finite()).then_some(v)
    })
    .await;
    // The classic buckets put 610 ms in (500, 1000] and interpolate.
    assert!(
        within(classic_median, 750.0, 0.01),
        "classic median {classic_median} ms, want ~750"
    );
    eprintln!("native median {median} ms, tcp {tcp} ms, classic {classic_median} ms");
    // Every scrape of both succeeded (Prometheus asks for gzip).
    for p in [&native, &classic] {
        assert_eq!(p.scalar("min_over_time(up[1m])").await, 1.0, "{}", p.log());
    }
    sender.abort();
}
