//! The public API's HTTP contract over real loopback sockets: protobuf
//! framing and proto3 JSON byte for byte, the refusals in the contract's
//! order (405, 404, 415, 413, 400), Stat and ListPods through a telemetry
//! component started in the test, upstream failures as clear statuses, and
//! Tap streamed one frame per event.

#[path = "support/api.rs"]
mod api;
mod support;

use std::time::Duration;

use api::*;
use conduit::proto::common::{TapEvent, TcpAddress, tap_event};
use conduit::proto::http_api::{self, LIST_PODS_PATH, STAT_PATH, TAP_PATH, VERSION_PATH};
use conduit::proto::net::ip_to_proto;
use conduit::proto::proxy::telemetry::{RequestScope, eos_ctx::End};
use conduit::proto::public::{
    AggregationType, HistogramLabel, LatencyDistributionRequest, LatencyDistributionResponse,
    ListPodsResponse, MetricMetadata, MetricName, MetricRequest, MetricResponse, TimeWindow,
    metric_value,
};
use prost::Message;
use support::*;

const PROTOBUF: Option<&str> = Some("application/octet-stream");
const JSON: Option<&str> = Some("application/json; charset=utf-8");

/// shop/web (one pod) calls shop/books (one pod).
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

/// The 4-byte little-endian length, then the message: built by hand here
/// so the test does not trust the code under test.
fn framed<M: Message>(msg: &M) -> Vec<u8> {
    let encoded = msg.encode_to_vec();
    let mut out = (encoded.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&encoded);
    out
}

/// 10 requests web → books: 9 answered 200 with gRPC OK in 12 ms, one 500
/// in 250 ms.
fn web_to_books() -> conduit::proto::proxy::telemetry::ReportRequest {
    report(
        "shop",
        "web-5d8f-abcde",
        vec![RequestScope {
            ctx: ctx("192.0.2.10", "192.0.2.20", get(), "/books"),
            count: 10,
            responses: vec![
                response(200, &[(120, 9)], vec![eos(End::GrpcStatusCode(0), 9)]),
                response(500, &[(2500, 1)], vec![eos(End::Other(true), 1)]),
            ],
        }],
    )
}

fn stat_request(group_by: AggregationType, filter: MetricMetadata) -> MetricRequest {
    MetricRequest {
        metrics: vec![
            MetricName::RequestRate as i32,
            MetricName::SuccessRate as i32,
            MetricName::Latency as i32,
        ],
        window: TimeWindow::OneMin as i32,
        group_by: group_by as i32,
        filter_by: Some(filter),
        summarize: true,
    }
}

#[tokio::test]
async fn version_is_framed_little_endian_byte_for_byte() {
    let down = unused_addr().await.to_string();
    let api = start_public_api(&down, &down).await;
    let expected = conduit::public_api::version_info();
    for content_type in [
        None,
        Some(""),
        PROTOBUF,
        Some("Application/Octet-Stream; x=y"),
    ] {
        let rsp = post(api.http, VERSION_PATH, content_type, b"").await;
        assert_eq!(rsp.status, 200, "{content_type:?}: {}", rsp.text());
        assert_eq!(rsp.header("content-type"), Some("application/octet-stream"));
        assert_eq!(rsp.body, framed(&expected), "{content_type:?}");
    }
    // The fields themselves (DESIGN §11 "Version").
    assert_eq!(
        expected.release_version,
        format!("v{}", env!("CARGO_PKG_VERSION"))
    );
    assert!(
        expected.go_version.starts_with("rustc 1."),
        "{}",
        expected.go_version
    );
    let date = expected.build_date.as_bytes();
    assert!(
        date.len() == 20
            && date[4] == b'-'
            && date[7] == b'-'
            && date[10] == b'T'
            && date[19] == b'Z',
        "RFC 3339: {}",
        expected.build_date
    );
    // An explicitly encoded empty message is the same request.
    let rsp = post(api.http, VERSION_PATH, PROTOBUF, &[]).await;
    assert_eq!(rsp.body, framed(&expected));
}

#[tokio::test]
async fn json_emits_defaults_and_ends_with_a_newline() {
    let down = unused_addr().await.to_string();
    let api = start_public_api(&down, &down).await;
    let v = conduit::public_api::version_info();
    // The release as the original spelled it, the string the CLI prints.
    assert_eq!(v.release_version, format!("v{}", env!("CARGO_PKG_VERSION")));
    let expected = format!(
        "{{\"goVersion\":{},\"buildDate\":{},\"releaseVersion\":{}}}\n",
        serde_json::to_string(&v.go_version).unwrap(),
        serde_json::to_string(&v.build_date).unwrap(),
        serde_json::to_string(&v.release_version).unwrap(),
    );
    for body in [&b""[..], b"{}", b" {} \n"] {
        let rsp = post(api.http, VERSION_PATH, JSON, body).await;
        assert_eq!(rsp.status, 200, "{}", rsp.text());
        assert_eq!(rsp.header("content-type"), Some("application/json"));
        assert_eq!(rsp.text(), expected);
    }
}

#[tokio::test]
async fn refusals_come_in_the_contracts_order() {
    let down = unused_addr().await.to_string();
    let api = start_public_api(&down, &down).await;
    let plain = |rsp: &HttpResponse| {
        assert_eq!(
            rsp.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        let text = rsp.text();
        assert!(
            text.ends_with('\n') && text.lines().count() == 1,
            "{text:?}"
        );
    };

    // The method first, whatever the path.
    for (method, path) in [
        ("GET", VERSION_PATH),
        ("GET", "/no/such/path"),
        ("PUT", STAT_PATH),
        ("DELETE", "/"),
    ] {
        let rsp = request(api.http, method, path, None, b"").await;
        assert_eq!(rsp.status, 405, "{method} {path}");
        assert_eq!(rsp.header("allow"), Some("POST"));
        plain(&rsp);
    }
    // Then the path.
    for path in ["/", "/api/v1/stat", "/api/v1/Stat/", "/api/v2/Stat"] {
        let rsp = post(api.http, path, PROTOBUF, b"").await;
        assert_eq!(rsp.status, 404, "{path}");
        plain(&rsp);
    }
    // Then the media type.
    for ct in ["text/plain", "application/x-protobuf", "application/jsonl"] {
        let rsp = post(api.http, VERSION_PATH, Some(ct), b"").await;
        assert_eq!(rsp.status, 415, "{ct}");
        plain(&rsp);
    }
    // Then the body: too big, undecodable protobuf, bad JSON.
    let rsp = post(api.http, STAT_PATH, PROTOBUF, &vec![0u8; (1 << 20) + 1]).await;
    assert_eq!(rsp.status, 413);
    for (ct, body) in [
        (PROTOBUF, &b"\xff\xff\xff\xff"[..]),
        (None, b"\x0a\x05ab"),
        (JSON, b"{"),
        (JSON, b"[]"),
        (JSON, br#"{"window":"FOREVER"}"#),
        (JSON, br#"{"summarize":"yes"}"#),
        (JSON, br#"{"noSuchField":1}"#),
    ] {
        let rsp = post(api.http, STAT_PATH, ct, body).await;
        assert_eq!(rsp.status, 400, "{ct:?} {body:?}: {}", rsp.text());
        assert!(
            rsp.text().starts_with("undecodable request body"),
            "{}",
            rsp.text()
        );
        plain(&rsp);
    }
}

#[tokio::test]
async fn stat_and_list_pods_come_from_telemetry() {
    let t = start_telemetry(&cluster(), &[]).await;
    let mut client = t.client().await;
    client.report(web_to_books()).await.unwrap();
    let api = start_public_api(&t.grpc.to_string(), &unused_addr().await.to_string()).await;

    // Stat by target deployment on the embedded store.
    let req = stat_request(AggregationType::TargetDeploy, MetricMetadata::default());
    let rsp = post(api.http, STAT_PATH, PROTOBUF, &req.encode_to_vec()).await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    let answer: MetricResponse = unframed(&rsp.body);
    let series = |name: MetricName| {
        answer
            .metrics
            .iter()
            .find(|s| {
                s.name == name as i32 && s.metadata.as_ref().unwrap().target_deploy == "shop/books"
            })
            .unwrap_or_else(|| panic!("no {name:?} series for shop/books in {answer:?}"))
            .datapoints[0]
            .value
            .clone()
            .unwrap()
            .value
            .unwrap()
    };
    let metric_value::Value::Gauge(rate) = series(MetricName::RequestRate) else {
        panic!("REQUEST_RATE is a gauge")
    };
    assert!(
        rate > 0.0 && rate <= 10.0,
        "10 requests over at least 1 s: {rate}"
    );
    assert_eq!(
        series(MetricName::SuccessRate),
        metric_value::Value::Gauge(0.9),
        "9 of 10 responses succeeded"
    );
    let metric_value::Value::Histogram(h) = series(MetricName::Latency) else {
        panic!("LATENCY is a histogram")
    };
    let p = |label: HistogramLabel| {
        h.values
            .iter()
            .find(|v| v.label == label as i32)
            .map(|v| v.value)
    };
    assert_eq!(p(HistogramLabel::P50), Some(12));
    let p99 = p(HistogramLabel::P99).unwrap();
    assert!((248..=252).contains(&p99), "the one 250 ms response: {p99}");

    // The same through JSON: names from the .proto, every default emitted.
    let rsp = post(
        api.http,
        STAT_PATH,
        JSON,
        br#"{"metrics":["SUCCESS_RATE"],"window":"ONE_MIN","groupBy":"TARGET_DEPLOY","summarize":true}"#,
    )
    .await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    assert!(rsp.text().ends_with("}\n"));
    let json: serde_json::Value = serde_json::from_str(&rsp.text()).unwrap();
    let books = json["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metadata"]["targetDeploy"] == "shop/books")
        .unwrap();
    assert_eq!(books["name"], "SUCCESS_RATE");
    assert_eq!(
        books["metadata"],
        serde_json::json!({"targetPod": "", "targetDeploy": "shop/books", "sourcePod": "",
                           "sourceDeploy": "", "component": ""})
    );
    assert_eq!(books["datapoints"][0]["value"]["gauge"], 0.9);
    assert!(
        books["datapoints"][0]["timestampMs"].is_string(),
        "int64 as a string"
    );

    // A filter that matches nothing: no series, not an error.
    let req = stat_request(
        AggregationType::TargetPod,
        MetricMetadata {
            target_deploy: "shop/web".into(),
            ..Default::default()
        },
    );
    let rsp = post(api.http, STAT_PATH, PROTOBUF, &req.encode_to_vec()).await;
    assert_eq!(rsp.status, 200);
    assert_eq!(
        rsp.body,
        framed(&MetricResponse::default()),
        "an empty answer is 4 zero bytes"
    );

    // ListPods: both pods, the reporting one marked added.
    let rsp = post(api.http, LIST_PODS_PATH, None, b"").await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    let pods: ListPodsResponse = unframed(&rsp.body);
    let mut names: Vec<(&str, &str, bool)> = pods
        .pods
        .iter()
        .map(|p| (p.name.as_str(), p.pod_ip.as_str(), p.added))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("shop/books-77aa-xyz12", "192.0.2.20", false),
            ("shop/web-5d8f-abcde", "192.0.2.10", true),
        ]
    );
    let rsp = post(api.http, LIST_PODS_PATH, JSON, b"").await;
    let json: serde_json::Value = serde_json::from_str(&rsp.text()).unwrap();
    let web = json["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "shop/web-5d8f-abcde")
        .unwrap();
    assert_eq!(web["podIP"], "192.0.2.10");
    assert_eq!(web["deployment"], "shop/web");
    assert_eq!(web["added"], true);
    assert_eq!(web["controlPlane"], false, "defaults are emitted");
    assert_eq!(web["controllerNamespace"], "");
    let since = web["sinceLastReport"].as_str().unwrap();
    assert!(
        since.ends_with('s') && since.trim_end_matches('s').parse::<f64>().is_ok(),
        "a proto3 JSON Duration: {since}"
    );
}

#[tokio::test]
async fn hostile_filter_values_only_filter() {
    let t = start_telemetry(&cluster(), &[]).await;
    t.client().await.report(web_to_books()).await.unwrap();
    let api = start_public_api(&t.grpc.to_string(), &unused_addr().await.to_string()).await;
    let hostile = "shop/books\"} or vector(1) or up{a=\"\\\n";
    for filter in [
        MetricMetadata {
            target_deploy: hostile.into(),
            ..Default::default()
        },
        MetricMetadata {
            source_pod: hostile.into(),
            ..Default::default()
        },
    ] {
        let req = stat_request(AggregationType::Mesh, filter);
        let rsp = post(api.http, STAT_PATH, PROTOBUF, &req.encode_to_vec()).await;
        assert_eq!(rsp.status, 200, "{}", rsp.text());
        let answer: MetricResponse = unframed(&rsp.body);
        assert_eq!(answer.metrics, [], "the hostile value matches nothing");
    }
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_clear_503_and_not_ready() {
    let telemetry = unused_addr().await;
    let api = start_public_api(&telemetry.to_string(), &unused_addr().await.to_string()).await;
    let req = stat_request(AggregationType::TargetDeploy, MetricMetadata::default());
    for (path, body) in [(STAT_PATH, req.encode_to_vec()), (LIST_PODS_PATH, vec![])] {
        let rsp = post(api.http, path, PROTOBUF, &body).await;
        assert_eq!(rsp.status, 503, "{path}: {}", rsp.text());
        assert!(
            rsp.text()
                .starts_with(&format!("telemetry at {telemetry}: Unavailable: ")),
            "{}",
            rsp.text()
        );
    }
    // Version needs no upstream.
    assert_eq!(post(api.http, VERSION_PATH, None, b"").await.status, 200);
    let (status, _) = http_get(api.admin, "/ready").await;
    assert_eq!(status, 503, "not ready while telemetry is unreachable");
    let (_, metrics) = http_get(api.admin, "/metrics").await;
    assert!(
        metrics.contains(
            "conduit_http_server_requests_total{route=\"/api/v1/Stat\",status=\"503\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "conduit_http_server_requests_total{route=\"/api/v1/Version\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn ready_once_telemetry_answers() {
    let t = start_telemetry(&cluster(), &[]).await;
    let api = start_public_api(&t.grpc.to_string(), &unused_addr().await.to_string()).await;
    eventually("public-api ready", Duration::from_secs(10), || async {
        http_get(api.admin, "/ready").await.0 == 200
    })
    .await;
}

fn tap_event(stream: u64, path: &str) -> TapEvent {
    let addr = |ip: &str, port| {
        Some(TcpAddress {
            ip: Some(ip_to_proto(ip.parse().unwrap())),
            port,
        })
    };
    TapEvent {
        source: addr("192.0.2.10", 40_000),
        target: addr("192.0.2.20", 8080),
        event: Some(tap_event::Event::Http(tap_event::Http {
            event: Some(tap_event::http::Event::RequestInit(
                tap_event::http::RequestInit {
                    id: Some(tap_event::http::StreamId { base: 7, stream }),
                    method: get(),
                    scheme: None,
                    authority: "books.example.com".into(),
                    path: path.into(),
                },
            )),
        })),
    }
}

#[tokio::test]
async fn tap_without_a_tap_service_is_a_clear_error() {
    let tap = unused_addr().await;
    let api = start_public_api(&unused_addr().await.to_string(), &tap.to_string()).await;
    let rsp = post(
        api.http,
        TAP_PATH,
        JSON,
        br#"{"deployment":"shop/books","maxRps":1}"#,
    )
    .await;
    assert_eq!(rsp.status, 503, "{}", rsp.text());
    assert!(
        rsp.text()
            .starts_with(&format!("tap at {tap}: Unavailable: ")),
        "{}",
        rsp.text()
    );
}

#[tokio::test]
async fn tap_streams_one_frame_per_event() {
    let events = vec![tap_event(1, "/a"), tap_event(2, "/b"), tap_event(3, "/c")];
    let (tap, _tap) = start_fake_tap(FakeTap {
        events: events.clone(),
        ..FakeTap::default()
    })
    .await;
    let api = start_public_api(&unused_addr().await.to_string(), &tap.to_string()).await;

    let rsp = post(api.http, TAP_PATH, None, b"").await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    assert_eq!(rsp.header("content-type"), Some("application/octet-stream"));
    assert_eq!(rsp.header("transfer-encoding"), Some("chunked"));
    assert!(rsp.complete, "a finished stream ends with the final chunk");
    let expected: Vec<u8> = events.iter().flat_map(framed).collect();
    assert_eq!(rsp.body, expected, "the same framing, repeated per event");

    // JSON lines for a JSON request.
    let rsp = post(
        api.http,
        TAP_PATH,
        JSON,
        br#"{"pod":"shop/books-77aa-xyz12"}"#,
    )
    .await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    let lines: Vec<String> = rsp.text().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 3, "{}", rsp.text());
    for (line, event) in lines.iter().zip(&events) {
        let parsed: TapEvent = http_api::decode(http_api::Encoding::Json, line.as_bytes()).unwrap();
        assert_eq!(&parsed, event);
    }
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(
        first["http"]["requestInit"]["id"],
        serde_json::json!({"base": 7, "stream": "1"}),
        "uint64 as a string"
    );
    assert_eq!(first["http"]["requestInit"]["method"]["registered"], "GET");
}

#[tokio::test]
async fn tap_errors_before_and_after_the_first_event() {
    // Before: the upstream status, mapped.
    let (tap, _before) = start_fake_tap(FakeTap {
        events: vec![],
        then_error: Some(tonic::Status::invalid_argument("no such port 99999")),
        ..FakeTap::default()
    })
    .await;
    let api = start_public_api(&unused_addr().await.to_string(), &tap.to_string()).await;
    let rsp = post(api.http, TAP_PATH, None, b"").await;
    assert_eq!(rsp.status, 400, "{}", rsp.text());
    assert_eq!(
        rsp.text(),
        format!("tap at {tap}: InvalidArgument: no such port 99999\n")
    );

    // After: the events so far, then the response is cut short.
    let event = tap_event(1, "/a");
    let (tap, _after) = start_fake_tap(FakeTap {
        events: vec![event.clone()],
        then_error: Some(tonic::Status::internal("proxy went away")),
        ..FakeTap::default()
    })
    .await;
    let api = start_public_api(&unused_addr().await.to_string(), &tap.to_string()).await;
    let rsp = post(api.http, TAP_PATH, None, b"").await;
    assert_eq!(rsp.status, 200);
    assert_eq!(rsp.body, framed(&event));
    assert!(!rsp.complete, "a broken stream has no final chunk");
}

#[tokio::test]
async fn shutdown_ends_open_tap_streams() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let event = tap_event(1, "/a");
    let (tap, _tap) = start_fake_tap(FakeTap {
        events: vec![event.clone()],
        hold_open: true,
        ..FakeTap::default()
    })
    .await;
    let api = start_public_api(&unused_addr().await.to_string(), &tap.to_string()).await;
    let mut conn = tokio::net::TcpStream::connect(api.http).await.unwrap();
    conn.write_all(b"POST /api/v1/Tap HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    // Read until the first event's frame has arrived: the stream is open.
    let frame = framed(&event);
    let mut raw = Vec::new();
    tokio::time::timeout(REQUEST_DEADLINE, async {
        let mut buf = [0u8; 4096];
        while !raw.windows(frame.len()).any(|w| w == frame.as_slice()) {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the first event");
            raw.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the first event arrives");
    drop(api); // fires public-api's shutdown signal
    tokio::time::timeout(REQUEST_DEADLINE, conn.read_to_end(&mut raw))
        .await
        .expect("shutdown ends the open stream")
        .unwrap();
    assert!(
        raw.ends_with(b"\r\n0\r\n\r\n"),
        "ended cleanly with the final chunk: {:?}",
        String::from_utf8_lossy(&raw)
    );
}

#[tokio::test]
async fn latency_distribution_is_the_stores_exact_buckets() {
    let t = start_telemetry(&cluster(), &[]).await;
    let mut client = t.client().await;
    client.report(web_to_books()).await.unwrap();
    let api = start_public_api(&t.grpc.to_string(), &unused_addr().await.to_string()).await;
    let path = http_api::LATENCY_DISTRIBUTION_PATH;

    // Protobuf: the 9 responses in 12 ms and the one in 250 ms, each in
    // the bucket holding it, the percentiles as Stat gives them.
    let req = LatencyDistributionRequest {
        deployment: "shop/books".into(),
        window: TimeWindow::OneMin as i32,
    };
    let rsp = post(api.http, path, PROTOBUF, &req.encode_to_vec()).await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    let answer: LatencyDistributionResponse = unframed(&rsp.body);
    assert!(answer.exact);
    assert_eq!(answer.count, 10);
    let holding = |ms: f64| {
        answer
            .buckets
            .iter()
            .find(|b| b.lower_ms <= ms && ms < b.upper_ms)
            .map(|b| b.count)
    };
    assert_eq!(holding(12.0), Some(9), "{:?}", answer.buckets);
    assert_eq!(holding(250.0), Some(1), "{:?}", answer.buckets);
    assert_eq!(answer.buckets.len(), 2);
    for b in &answer.buckets {
        assert!(
            b.upper_ms > b.lower_ms && b.upper_ms <= b.lower_ms * 1.01 + 0.1,
            "{b:?}"
        );
    }
    assert_eq!(answer.p50_ms, 12);
    assert!((248..=252).contains(&answer.p99_ms), "{}", answer.p99_ms);
    // Per step: every response is in some step, none twice.
    assert!(!answer.slots.is_empty() && answer.slots.len() <= 6);
    assert_eq!(answer.slots.iter().map(|s| s.count).sum::<u64>(), 10);
    assert!(answer.slots.windows(2).all(|w| w[0].end_ms < w[1].end_ms));

    // JSON, and a deployment with no traffic: exact, and empty.
    let rsp = post(
        api.http,
        path,
        JSON,
        br#"{"deployment":"shop/web","window":"TEN_MIN"}"#,
    )
    .await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    let json: serde_json::Value = serde_json::from_str(&rsp.text()).unwrap();
    assert_eq!(json["exact"], true);
    assert_eq!(json["count"], "0");
    assert_eq!(json["buckets"], serde_json::json!([]));

    // Not namespace/name: the caller's mistake, said so.
    for bad in [
        r#"{"deployment":"books"}"#,
        r#"{"deployment":"shop/"}"#,
        r#"{"deployment":"a/b/c"}"#,
    ] {
        let rsp = post(api.http, path, JSON, bad.as_bytes()).await;
        assert_eq!(rsp.status, 400, "{bad}");
        assert!(
            rsp.text().contains("is not namespace/name"),
            "{}",
            rsp.text()
        );
    }
}

/// Telemetry answering Stat from Prometheus keeps no exact histograms: the
/// answer says so (`exact` false, nothing else) rather than failing. The
/// answer comes from telemetry's configuration alone, so no Prometheus
/// needs to run behind `-prometheus-url`.
#[tokio::test]
async fn latency_distribution_says_when_stat_comes_from_prometheus() {
    let prometheus = format!("-prometheus-url=http://{}", unused_addr().await);
    let t = start_telemetry(&cluster(), &[&prometheus]).await;
    let api = start_public_api(&t.grpc.to_string(), &unused_addr().await.to_string()).await;
    let rsp = post(
        api.http,
        http_api::LATENCY_DISTRIBUTION_PATH,
        JSON,
        br#"{"deployment":"shop/books","window":"ONE_MIN"}"#,
    )
    .await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    let json: serde_json::Value = serde_json::from_str(&rsp.text()).unwrap();
    assert_eq!(json["exact"], false, "{json}");
    assert_eq!(json["buckets"], serde_json::json!([]));
    assert_eq!(json["slots"], serde_json::json!([]));
}
