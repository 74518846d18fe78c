//! End to end over real sockets: reports in through gRPC, `/metrics` out
//! through HTTP, against `conduit controller telemetry` on loopback.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use conduit::proto::controller::telemetry::ListPodsRequest;
use conduit::proto::controller::telemetry::telemetry_client::TelemetryClient as ControllerClient;
use conduit::proto::proxy::telemetry::{
    ClientTransport, RequestScope, ServerTransport, TransportSummary, eos_ctx::End,
};
use support::*;

/// Two deployments in `shop`, a pod without a deployment, an IPv6 pod, and a
/// pod in the ignored namespace `kube-system`.
fn cluster() -> String {
    yaml_docs(&[
        &mk_deployment("shop", "web"),
        &mk_replica_set("shop", "web-5d8f", Some("web")),
        &mk_pod("shop", "web-5d8f-abcde", "192.0.2.10", Some("web-5d8f")),
        &mk_deployment("shop", "books"),
        &mk_replica_set("shop", "books-77aa", Some("books")),
        &mk_pod("shop", "books-77aa-xyz12", "192.0.2.20", Some("books-77aa")),
        &mk_pod("shop", "lonely", "192.0.2.30", None),
        &mk_pod(
            "shop",
            "books-77aa-v6v6v",
            "2001:db8::20",
            Some("books-77aa"),
        ),
        &mk_pod("kube-system", "dns", "192.0.2.53", None),
    ])
}

fn labels<'a>(base: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(more).copied().collect()
}

#[tokio::test]
async fn counts_buckets_and_classes_are_exact() {
    let t = start_telemetry(&cluster(), &[]).await;
    let mut client = t.client().await;
    let scope = web_to_books(
        "/books",
        3,
        vec![
            // 4.5 ms twice (le=5), 15 ms once (le=20); two gRPC-OK streams.
            response(
                200,
                &[(45, 2), (150, 1)],
                vec![eos(End::GrpcStatusCode(0), 2)],
            ),
            // A plain HTTP 500: a failure.
            response(500, &[(1000, 4)], vec![eos(End::Other(true), 1)]),
        ],
    );
    let r = report("shop", "web-5d8f-abcde", vec![scope]);
    client.report(r.clone()).await.unwrap();

    let m = t.scrape().await;
    let base = labels(&WEB_TO_BOOKS, &[("method", "GET"), ("path", "/books")]);
    assert_eq!(m.get("requests_total", &base), Some(3.0));
    let with = |more: &[(&'static str, &'static str)]| labels(&base, more);
    assert_eq!(
        m.get(
            "responses_total",
            &with(&[("http_status_code", "200"), ("classification", "success")])
        ),
        Some(2.0)
    );
    assert_eq!(
        m.get(
            "responses_total",
            &with(&[("http_status_code", "500"), ("classification", "failure")])
        ),
        Some(1.0)
    );
    let bucket = |le: &'static str| m.get("response_latency_ms_bucket", &with(&[("le", le)]));
    assert_eq!(bucket("4"), Some(0.0));
    assert_eq!(bucket("5"), Some(2.0), "4.5 ms lands in the 5 ms bucket");
    assert_eq!(bucket("10"), Some(2.0));
    assert_eq!(bucket("20"), Some(3.0));
    assert_eq!(
        bucket("100"),
        Some(7.0),
        "100.0 ms is in le=100, counted 4 times by one entry"
    );
    assert_eq!(bucket("+Inf"), Some(7.0));
    assert_eq!(m.get("response_latency_ms_count", &base), Some(7.0));
    assert_eq!(
        m.get("response_latency_ms_sum", &base),
        Some(4.5 * 2.0 + 15.0 + 400.0)
    );

    // The same report again: everything adds.
    client.report(r).await.unwrap();
    let m = t.scrape().await;
    assert_eq!(m.get("requests_total", &base), Some(6.0));
    assert_eq!(m.get("response_latency_ms_count", &base), Some(14.0));
    assert_eq!(m.get("conduit_telemetry_reports_total", &[]), Some(2.0));
}

#[tokio::test]
async fn grpc_and_http_classification() {
    let t = start_telemetry(&cluster(), &[]).await;
    let mut client = t.client().await;
    let scope = web_to_books(
        "/classes",
        4,
        vec![
            // HTTP 200 carrying gRPC status 2 (UNKNOWN): failure.
            response(200, &[], vec![eos(End::GrpcStatusCode(2), 1)]),
            // HTTP 200 reset by the peer: failure.
            response(200, &[], vec![eos(End::ResetErrorCode(8), 1)]),
            // HTTP 404 without gRPC: below 500, success.
            response(404, &[], vec![eos(End::Other(true), 3)]),
            // HTTP 503 with gRPC OK: the gRPC status wins.
            response(503, &[], vec![eos(End::GrpcStatusCode(0), 5)]),
        ],
    );
    client
        .report(report("shop", "web-5d8f-abcde", vec![scope]))
        .await
        .unwrap();
    let m = t.scrape().await;
    let base = labels(&WEB_TO_BOOKS, &[("method", "GET"), ("path", "/classes")]);
    let rsp = |code: &'static str, class: &'static str| {
        m.get(
            "responses_total",
            &labels(
                &base,
                &[("http_status_code", code), ("classification", class)],
            ),
        )
    };
    assert_eq!(rsp("200", "failure"), Some(2.0));
    assert_eq!(rsp("200", "success"), None);
    assert_eq!(rsp("404", "success"), Some(3.0));
    assert_eq!(rsp("503", "success"), Some(5.0));
    assert_eq!(rsp("503", "failure"), None);
    // No latencies were reported: no histogram for this label set.
    assert_eq!(m.get("response_latency_ms_count", &base), None);
}

#[tokio::test]
async fn methods_ipv6_unknown_ips_and_pods_without_deployment() {
    let t = start_telemetry(&cluster(), &[]).await;
    let mut client = t.client().await;
    let scopes = vec![
        RequestScope {
            ctx: ctx(
                "192.0.2.30",
                "2001:db8::20",
                unregistered("PROPFIND"),
                "/dav",
            ),
            count: 1,
            responses: vec![],
        },
        RequestScope {
            ctx: ctx("198.51.100.7", "192.0.2.99", get(), "/unknown"),
            count: 2,
            responses: vec![],
        },
    ];
    client
        .report(report("shop", "lonely", scopes))
        .await
        .unwrap();
    let m = t.scrape().await;
    assert_eq!(
        m.get(
            "requests_total",
            &[
                ("source", "shop/lonely"),
                ("target", "shop/books-77aa-v6v6v"),
                ("source_deployment", ""),
                ("target_deployment", "shop/books"),
                ("method", "PROPFIND"),
                ("path", "/dav"),
            ]
        ),
        Some(1.0),
        "an IPv6 target resolves, an unregistered method is kept as sent"
    );
    assert_eq!(
        m.get(
            "requests_total",
            &[
                ("source", ""),
                ("target", ""),
                ("source_deployment", ""),
                ("target_deployment", ""),
                ("method", "GET"),
                ("path", "/unknown"),
            ]
        ),
        Some(2.0),
        "unknown IPs give empty labels"
    );
    assert_eq!(
        m.get(
            "conduit_telemetry_enrichment_misses_total",
            &[("side", "source")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.get(
            "conduit_telemetry_enrichment_misses_total",
            &[("side", "target")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn transports_become_tcp_series() {
    let t = start_telemetry(&cluster(), &[]).await;
    let mut client = t.client().await;
    let mut r = report("shop", "books-77aa-xyz12", vec![]);
    r.proxy = conduit::proto::proxy::telemetry::report_request::Proxy::Inbound as i32;
    r.server_transports = vec![ServerTransport {
        source_ip: Some(conduit::proto::net::ip_to_proto(
            "192.0.2.10".parse().unwrap(),
        )),
        connects: 3,
        disconnects: vec![
            TransportSummary {
                duration_ms: 250,
                bytes_sent: 1000,
            },
            TransportSummary {
                duration_ms: 70_000,
                bytes_sent: 24,
            },
        ],
    }];
    r.client_transports = vec![ClientTransport {
        target_addr: None,
        connects: 1,
        disconnects: vec![],
    }];
    client.report(r).await.unwrap();
    let m = t.scrape().await;
    let src = [
        ("direction", "inbound"),
        ("peer", "src"),
        ("source", "shop/web-5d8f-abcde"),
        ("target", "shop/books-77aa-xyz12"),
        ("source_deployment", "shop/web"),
        ("target_deployment", "shop/books"),
    ];
    assert_eq!(m.get("tcp_open_total", &src), Some(3.0));
    assert_eq!(m.get("tcp_close_total", &src), Some(2.0));
    assert_eq!(m.get("tcp_write_bytes_total", &src), Some(1024.0));
    assert_eq!(
        m.get(
            "tcp_connection_duration_ms_bucket",
            &labels(&src, &[("le", "500")])
        ),
        Some(1.0)
    );
    assert_eq!(
        m.get(
            "tcp_connection_duration_ms_bucket",
            &labels(&src, &[("le", "300000")])
        ),
        Some(2.0)
    );
    assert_eq!(
        m.get("tcp_connection_duration_ms_sum", &src),
        Some(70_250.0)
    );
    let dst = [
        ("direction", "inbound"),
        ("peer", "dst"),
        ("source", "shop/books-77aa-xyz12"),
        ("target", ""),
        ("source_deployment", "shop/books"),
        ("target_deployment", ""),
    ];
    assert_eq!(m.get("tcp_open_total", &dst), Some(1.0));
    assert_eq!(m.get("tcp_close_total", &dst), Some(0.0));
}

#[tokio::test]
async fn list_pods_skips_ignored_namespaces_and_knows_who_reported() {
    let t = start_telemetry(&cluster(), &["-ignore-namespaces=kube-system"]).await;
    let mut client = t.client().await;
    client
        .report(report("shop", "web-5d8f-abcde", vec![]))
        .await
        .unwrap();
    let mut ctl = ControllerClient::connect(format!("http://{}", t.grpc))
        .await
        .unwrap();
    let pods = ctl
        .list_pods(ListPodsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pods;
    let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "shop/books-77aa-v6v6v",
            "shop/books-77aa-xyz12",
            "shop/lonely",
            "shop/web-5d8f-abcde"
        ]
    );
    let web = pods
        .iter()
        .find(|p| p.name == "shop/web-5d8f-abcde")
        .unwrap();
    assert!(web.added);
    assert!(web.since_last_report.is_some());
    assert_eq!(web.deployment, "shop/web");
    assert_eq!(web.pod_ip, "192.0.2.10");
    assert_eq!(web.status, "Running");
    let lonely = pods.iter().find(|p| p.name == "shop/lonely").unwrap();
    assert!(!lonely.added);
    assert_eq!(lonely.deployment, "");
}

/// Reports whose Process names a pod longer than Kubernetes allows (here
/// 1 MiB names, each distinct) are still applied, but their "pod" is not
/// kept in the instance cache, and the refusal is counted.
#[tokio::test]
async fn instance_names_longer_than_kubernetes_allows_are_not_kept() {
    let t = start_telemetry(&cluster(), &[]).await;
    let mut client = t.client().await;
    let scope = || web_to_books("/big", 1, vec![]);
    for i in 0..20 {
        let huge = format!("{i}-{}", "x".repeat(1 << 20));
        client
            .report(report("shop", &huge, vec![scope()]))
            .await
            .unwrap();
        let long_namespace = format!("{i}{}", "n".repeat(63));
        client
            .report(report(&long_namespace, "web-5d8f-abcde", vec![scope()]))
            .await
            .unwrap();
    }
    // A real pod's name at the limit is kept.
    let at_limit = "p".repeat(253);
    client
        .report(report("shop", &at_limit, vec![]))
        .await
        .unwrap();
    assert_eq!(t.ingester.instances().len(), 1);
    let m = t.scrape().await;
    assert_eq!(
        m.get(
            "conduit_telemetry_instances_refused_total",
            &[("reason", "too_long")]
        ),
        Some(40.0)
    );
    assert_eq!(m.get("conduit_telemetry_reports_total", &[]), Some(41.0));
    // The traffic itself counted.
    let big = labels(&WEB_TO_BOOKS, &[("method", "GET"), ("path", "/big")]);
    assert_eq!(m.get("requests_total", &big), Some(40.0));
}

#[tokio::test]
async fn invalid_report_is_rejected_whole() {
    let t = start_telemetry(&cluster(), &[]).await;
    let mut client = t.client().await;
    client
        .report(report(
            "shop",
            "web-5d8f-abcde",
            vec![web_to_books(
                "/ok",
                1,
                vec![response(200, &[(10, 1)], vec![eos(End::Other(true), 1)])],
            )],
        ))
        .await
        .unwrap();
    let before = Exposition::mesh_lines(&t.scrape_text().await);

    // A valid first scope and a second scope without ctx.
    let bad = report(
        "shop",
        "web-5d8f-abcde",
        vec![
            web_to_books(
                "/ok",
                5,
                vec![response(200, &[(10, 1)], vec![eos(End::Other(true), 1)])],
            ),
            RequestScope {
                ctx: None,
                count: 1,
                responses: vec![],
            },
        ],
    );
    let status = client.report(bad).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("requests[1] has no ctx"),
        "{}",
        status.message()
    );

    // A response without ctx, and an EOS without ctx.
    for broken in [
        vec![conduit::proto::proxy::telemetry::ResponseScope::default()],
        vec![response(
            200,
            &[],
            vec![conduit::proto::proxy::telemetry::EosScope::default()],
        )],
    ] {
        let status = client
            .report(report(
                "shop",
                "web-5d8f-abcde",
                vec![web_to_books("/ok", 1, broken)],
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }

    let text = t.scrape_text().await;
    assert_eq!(
        Exposition::mesh_lines(&text),
        before,
        "no mesh series moved"
    );
    let m = Exposition::parse(&text);
    assert_eq!(
        m.get(
            "conduit_telemetry_reports_rejected_total",
            &[("reason", "invalid")]
        ),
        Some(3.0)
    );
    assert_eq!(m.get("conduit_telemetry_reports_total", &[]), Some(1.0));
}

#[tokio::test]
async fn garbage_body_is_an_error_and_the_server_keeps_serving() {
    let t = start_telemetry(&cluster(), &[]).await;
    let status = send_raw(t.grpc, vec![0xff; 64]).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    let mut client = t.client().await;
    client
        .report(report(
            "shop",
            "web-5d8f-abcde",
            vec![web_to_books("/after", 1, vec![])],
        ))
        .await
        .expect("still serving after garbage");
    let m = t.scrape().await;
    assert_eq!(
        m.get(
            "conduit_telemetry_reports_rejected_total",
            &[("reason", "undecodable")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn oversized_report_is_resource_exhausted() {
    let t = start_telemetry(&cluster(), &["-max-report-bytes=64KiB"]).await;
    let mut client = t.client().await;
    let big = report(
        "shop",
        "web-5d8f-abcde",
        vec![web_to_books(&"/x".repeat(40_000), 1, vec![])],
    );
    let status = client.report(big).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    client
        .report(report("shop", "web-5d8f-abcde", vec![]))
        .await
        .expect("still serving");
    let m = t.scrape().await;
    assert_eq!(
        m.get(
            "conduit_telemetry_reports_rejected_total",
            &[("reason", "too_large")]
        ),
        Some(1.0)
    );
    assert!(m.series("requests_total").is_empty());
}

#[tokio::test]
async fn default_limit_is_four_mebibytes() {
    let t = start_telemetry(&cluster(), &[]).await;
    let mut client = t.client().await;
    let big = report(
        "shop",
        "web-5d8f-abcde",
        vec![web_to_books(&"y".repeat(4 << 20), 1, vec![])],
    );
    let status = client.report(big).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
}

#[tokio::test]
async fn a_flood_of_unique_paths_folds_path_first_at_the_series_cap() {
    let t = start_telemetry(&cluster(), &["-max-series=50"]).await;
    let mut client = t.client().await;
    for batch in 0..4 {
        let scopes = (0..50)
            .map(|i| web_to_books(&format!("/flood/{batch}/{i}"), 1, vec![]))
            .collect();
        client
            .report(report("shop", "web-5d8f-abcde", scopes))
            .await
            .unwrap();
    }
    let m = t.scrape().await;
    let series = m.series("requests_total");
    // A tenth of the cap is kept for folded series: 45 ordinary label sets,
    // then the pod pair's path-folded series takes every new path.
    assert_eq!(series.len(), 46, "45 label sets and one path-folded series");
    let path_folded = labels(
        &WEB_TO_BOOKS,
        &[("method", "GET"), ("path", "__overflow__")],
    );
    assert_eq!(
        m.get("requests_total", &path_folded),
        Some(155.0),
        "nothing is lost, and pods and deployments are kept"
    );
    let folded = |step| m.get("conduit_telemetry_series_folded_total", &[("folded", step)]);
    assert_eq!(folded("path"), Some(155.0));
    assert_eq!(folded("pods"), Some(0.0));
    assert_eq!(folded("all"), Some(0.0));
    assert_eq!(
        m.get(
            "conduit_telemetry_series_live",
            &[("metric", "requests_total")]
        ),
        Some(46.0)
    );
    assert_eq!(m.get("conduit_telemetry_series_limit", &[]), Some(50.0));
}

/// Deployment pairs' totals (requests, responses by class, latency counts)
/// summed over every series of a scrape, whatever its pods and path.
fn deployment_totals(m: &Exposition) -> BTreeMap<(String, String, String), f64> {
    let mut out = BTreeMap::new();
    for (name, l, v) in &m.samples {
        let key = match name.as_str() {
            "requests_total" | "response_latency_ms_count" => name.clone(),
            "responses_total" => format!("{name}/{}", l["classification"]),
            _ => continue,
        };
        let pair = (
            l["source_deployment"].clone(),
            l["target_deployment"].clone(),
            key,
        );
        *out.entry(pair).or_insert(0.0) += v;
    }
    out
}

#[tokio::test]
async fn a_50000_path_flood_past_the_cap_keeps_every_deployment_pairs_totals_exact() {
    // Two web pods and two books pods in their deployments, and a pod of no
    // deployment: five pod pairs across three deployment pairs.
    let cluster = yaml_docs(&[
        &mk_deployment("shop", "web"),
        &mk_replica_set("shop", "web-5d8f", Some("web")),
        &mk_pod("shop", "web-5d8f-abcde", "192.0.2.10", Some("web-5d8f")),
        &mk_pod("shop", "web-5d8f-fghij", "192.0.2.11", Some("web-5d8f")),
        &mk_deployment("shop", "books"),
        &mk_replica_set("shop", "books-77aa", Some("books")),
        &mk_pod("shop", "books-77aa-xyz12", "192.0.2.20", Some("books-77aa")),
        &mk_pod("shop", "books-77aa-klmno", "192.0.2.21", Some("books-77aa")),
        &mk_pod("shop", "lonely", "192.0.2.30", None),
    ]);
    const PATHS: usize = 50_000;
    const PER_REPORT: usize = 500;
    let t = start_telemetry(&cluster, &["-max-series=1000"]).await;
    let mut client = t.client().await;
    let pairs = [
        ("192.0.2.10", "192.0.2.20", "shop/web", "shop/books"),
        ("192.0.2.10", "192.0.2.21", "shop/web", "shop/books"),
        ("192.0.2.11", "192.0.2.20", "shop/web", "shop/books"),
        ("192.0.2.11", "192.0.2.30", "shop/web", ""),
        ("192.0.2.30", "192.0.2.21", "", "shop/books"),
    ];
    let mut want: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    let mut add = |sd: &str, td: &str, key: &str, n: u32| {
        *want
            .entry((sd.to_string(), td.to_string(), key.to_string()))
            .or_insert(0.0) += f64::from(n);
    };
    let mut rng = fastrand::Rng::with_seed(50_000);
    for batch in 0..PATHS / PER_REPORT {
        let scopes = (0..PER_REPORT)
            .map(|i| {
                let (src, dst, sd, td) = pairs[rng.usize(..pairs.len())];
                let (count, ok, failed) = (rng.u32(1..5), rng.u32(0..3), rng.u32(0..2));
                add(sd, td, "requests_total", count);
                add(sd, td, "responses_total/success", ok);
                add(sd, td, "responses_total/failure", failed);
                add(sd, td, "response_latency_ms_count", 2 * count);
                let mut responses = vec![response(
                    200,
                    &[(rng.u32(1..20_000), count)],
                    vec![eos(End::Other(true), ok as usize)],
                )];
                // A 5xx class now and then: a new response label set too.
                responses.push(response(
                    [500, 502, 503][rng.usize(..3)],
                    &[(rng.u32(1..20_000), count)],
                    vec![eos(End::Other(true), failed as usize)],
                ));
                RequestScope {
                    ctx: ctx(src, dst, get(), &format!("/item/{batch}/{i}")),
                    count,
                    responses,
                }
            })
            .collect();
        client
            .report(report("shop", "web-5d8f-abcde", scopes))
            .await
            .unwrap();
    }
    let m = t.scrape().await;
    let folded = |step| {
        m.get("conduit_telemetry_series_folded_total", &[("folded", step)])
            .unwrap()
    };
    assert!(folded("path") > 40_000.0, "the flood was folded by path");
    assert_eq!(folded("all"), 0.0, "no deployment was lost");
    assert!(m.series("requests_total").len() < 1000);
    assert!(
        m.series("requests_total")
            .iter()
            .any(|l| l["path"] == "__overflow__" && l["source"] != "__overflow__"),
        "path-folded series keep their pods"
    );
    want.retain(|_, v| *v > 0.0);
    let mut got = deployment_totals(&m);
    got.retain(|_, v| *v > 0.0);
    assert_eq!(got, want);
}

#[tokio::test]
async fn idle_series_expire() {
    let t = start_telemetry(&cluster(), &["-series-idle-timeout=1s"]).await;
    let mut client = t.client().await;
    client
        .report(report(
            "shop",
            "web-5d8f-abcde",
            vec![web_to_books("/soon-gone", 1, vec![])],
        ))
        .await
        .unwrap();
    assert_eq!(t.scrape().await.series("requests_total").len(), 1);
    eventually(
        "the idle series is evicted",
        Duration::from_secs(15),
        || async { t.scrape().await.series("requests_total").is_empty() },
    )
    .await;
    let m = t.scrape().await;
    assert_eq!(
        m.get("conduit_telemetry_series_evicted_total", &[]),
        Some(1.0)
    );
}

#[tokio::test]
async fn admin_endpoints() {
    let t = start_telemetry(&cluster(), &[]).await;
    assert_eq!(http_get(t.admin, "/ping").await, (200, "pong".to_string()));
    assert_eq!(http_get(t.admin, "/ready").await.0, 200);
    assert_eq!(http_get(t.admin, "/nope").await.0, 404);
    let text = t.scrape_text().await;
    assert!(text.contains("# TYPE requests_total counter"));
    assert!(text.contains("process_resident_memory_bytes"));
}

/// The exposition passes `promtool check metrics`; the only finding allowed
/// is the unit lint on names kept for compatibility (DESIGN §11).
#[tokio::test]
async fn exposition_passes_promtool() {
    let t = start_telemetry(&cluster(), &[]).await;
    let mut client = t.client().await;
    let mut r = report(
        "shop",
        "web-5d8f-abcde",
        vec![
            web_to_books(
                "/a\"quoted\\path",
                2,
                vec![response(200, &[(45, 2)], vec![eos(End::Other(true), 2)])],
            ),
            web_to_books(
                "/b",
                1,
                vec![response(
                    503,
                    &[(9_000_000, 1)],
                    vec![eos(End::GrpcStatusCode(14), 1)],
                )],
            ),
        ],
    );
    r.server_transports = vec![ServerTransport {
        source_ip: None,
        connects: 1,
        disconnects: vec![TransportSummary {
            duration_ms: 10,
            bytes_sent: 5,
        }],
    }];
    client.report(r).await.unwrap();
    let text = t.scrape_text().await;
    let findings = promtool_check(&text);
    for line in &findings {
        assert!(
            (line.starts_with("response_latency_ms")
                || line.starts_with("tcp_connection_duration_ms"))
                && line.contains("abbreviated units"),
            "unexpected promtool finding: {line}\n{findings:?}"
        );
    }
}

fn promtool_check(text: &str) -> Vec<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "promtool is needed for this test (Debian package `prometheus`; .ci/run installs it): {e}"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let findings: Vec<String> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if !out.status.success() {
        assert!(
            !findings
                .iter()
                .any(|l| l.contains("error") || l.contains("parse")),
            "promtool could not parse the exposition: {findings:?}"
        );
    }
    findings
}

/// Sends raw bytes as the body of a Report call.
async fn send_raw(addr: std::net::SocketAddr, body: Vec<u8>) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/conduit.proxy.telemetry.Telemetry/Report");
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map(|_| ())
}

/// A codec that sends bytes as they are, to put non-protobuf on the wire.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<()>, tonic::Status> {
        use bytes::Buf;
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

#[tokio::test]
async fn embedded_stat_answers_rates_and_percentiles() {
    use conduit::proto::controller::stat::stat_client::StatClient;
    use conduit::proto::public::{
        AggregationType, HistogramLabel, MetricMetadata, MetricName, MetricRequest, TimeWindow,
        metric_value::Value,
    };
    let t = start_telemetry(&cluster(), &[]).await;
    let mut client = t.client().await;
    let scope = web_to_books(
        "/stat",
        10,
        vec![
            response(200, &[(45, 9)], vec![eos(End::Other(true), 9)]),
            response(500, &[(1500, 1)], vec![eos(End::Other(true), 1)]),
        ],
    );
    client
        .report(report("shop", "web-5d8f-abcde", vec![scope]))
        .await
        .unwrap();
    let mut stat = StatClient::connect(format!("http://{}", t.grpc))
        .await
        .unwrap();
    let request =
        |group_by: AggregationType, summarize: bool, filter: MetricMetadata| MetricRequest {
            metrics: vec![
                MetricName::RequestRate as i32,
                MetricName::SuccessRate as i32,
                MetricName::Latency as i32,
            ],
            window: TimeWindow::OneMin as i32,
            group_by: group_by as i32,
            filter_by: Some(filter),
            summarize,
        };
    let rsp = stat
        .stat(request(
            AggregationType::TargetDeploy,
            true,
            MetricMetadata::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rsp.metrics.len(), 3, "one group, three metrics: {rsp:?}");
    for series in &rsp.metrics {
        assert_eq!(
            series.metadata.as_ref().unwrap().target_deploy,
            "shop/books"
        );
        assert_eq!(series.datapoints.len(), 1);
        let value = series.datapoints[0].value.clone().unwrap().value.unwrap();
        match (MetricName::try_from(series.name).unwrap(), value) {
            (MetricName::RequestRate, Value::Gauge(rate)) => {
                // Ten requests over the (clamped) one second seen so far.
                assert!(rate > 0.0 && rate <= 10.0, "{rate}");
            }
            (MetricName::SuccessRate, Value::Gauge(ratio)) => assert_eq!(ratio, 0.9),
            (MetricName::Latency, Value::Histogram(h)) => {
                let get = |l: HistogramLabel| {
                    h.values.iter().find(|v| v.label == l as i32).unwrap().value
                };
                assert_eq!(get(HistogramLabel::P50), 5, "4.5 ms rounds to 5");
                assert_eq!(get(HistogramLabel::P95), 150);
                assert_eq!(get(HistogramLabel::P99), 150);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // A time series: one point per 10 s step over the minute, from when the
    // data began.
    let rsp = stat
        .stat(request(
            AggregationType::SourcePod,
            false,
            MetricMetadata::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    let rate = rsp
        .metrics
        .iter()
        .find(|s| s.name == MetricName::RequestRate as i32)
        .unwrap();
    assert_eq!(
        rate.metadata.as_ref().unwrap().source_pod,
        "shop/web-5d8f-abcde"
    );
    assert!((1..=6).contains(&rate.datapoints.len()), "{rate:?}");
    assert!(
        rate.datapoints
            .windows(2)
            .all(|w| w[0].timestamp_ms < w[1].timestamp_ms)
    );
    // A filter that matches nothing gives nothing.
    let rsp = stat
        .stat(request(
            AggregationType::Mesh,
            true,
            MetricMetadata {
                target_deploy: "shop/none".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(rsp.metrics.is_empty());
    // Without Prometheus, Query says what is missing.
    let mut ctl = ControllerClient::connect(format!("http://{}", t.grpc))
        .await
        .unwrap();
    let status = ctl
        .query(conduit::proto::controller::telemetry::QueryRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
}

/// Reports from several pods of two deployments, a pod of none and an
/// unknown address, over many paths, classes, latencies and connections.
fn rollup_reports() -> Vec<conduit::proto::proxy::telemetry::ReportRequest> {
    let ips = [
        "192.0.2.10",
        "192.0.2.20",
        "192.0.2.30",
        "2001:db8::20",
        "198.51.100.7",
    ];
    let mut rng = fastrand::Rng::with_seed(2);
    (0..40)
        .map(|n| {
            let scopes = (0..25)
                .map(|_| {
                    let (src, dst) = (ips[rng.usize(..ips.len())], ips[rng.usize(..ips.len())]);
                    let count = rng.u32(1..9);
                    RequestScope {
                        ctx: ctx(src, dst, get(), &format!("/p/{}", rng.u32(..6))),
                        count,
                        responses: vec![
                            response(
                                200,
                                &[(rng.u32(1..600_000), count), (rng.u32(1..90), 1)],
                                vec![eos(End::Other(true), count as usize)],
                            ),
                            response(
                                [500, 503][rng.usize(..2)],
                                &[(rng.u32(1..600_000), 1)],
                                vec![eos(End::GrpcStatusCode(rng.u32(..3)), 1)],
                            ),
                        ],
                    }
                })
                .collect();
            let (ns, pod) = [
                ("shop", "web-5d8f-abcde"),
                ("shop", "books-77aa-xyz12"),
                ("shop", "lonely"),
            ][n % 3];
            let mut r = report(ns, pod, scopes);
            r.server_transports = vec![ServerTransport {
                source_ip: Some(conduit::proto::net::ip_to_proto(
                    ips[rng.usize(..ips.len())].parse().unwrap(),
                )),
                connects: rng.u32(..4),
                disconnects: vec![TransportSummary {
                    duration_ms: rng.u64(..100_000),
                    bytes_sent: rng.u64(..10_000),
                }],
            }];
            r
        })
        .collect()
}

type Key = (String, BTreeMap<String, String>);

/// A scrape's mesh samples, keyed by name and labels (checked unique), in
/// tenths (latency sums are exact in tenths of a millisecond), so that
/// sums are exact.
fn mesh_samples(m: &Exposition) -> BTreeMap<Key, u64> {
    let mut out = BTreeMap::new();
    for (name, l, v) in &m.samples {
        let mesh = [
            "requests_total",
            "responses_total",
            "response_latency_ms",
            "tcp_",
        ];
        if mesh.iter().any(|p| name.starts_with(p)) {
            let dup = out.insert((name.clone(), l.clone()), (v * 10.0).round() as u64);
            assert!(dup.is_none(), "duplicate series {name}{l:?}");
        }
    }
    out
}

fn pod_less(l: &BTreeMap<String, String>) -> bool {
    l["source"].is_empty() && l["target"].is_empty()
}

#[tokio::test]
async fn the_deployment_roll_up_sums_the_pod_series_exactly() {
    let pods = start_telemetry(&cluster(), &[]).await;
    let deployments = start_telemetry(&cluster(), &["-export=deployments"]).await;
    let both = start_telemetry(&cluster(), &["-export", "both"]).await;
    for t in [&pods, &deployments, &both] {
        let mut client = t.client().await;
        for r in rollup_reports() {
            client.report(r).await.unwrap();
        }
    }
    let by_pod = mesh_samples(&pods.scrape().await);
    let rolled = mesh_samples(&deployments.scrape().await);
    let both = mesh_samples(&both.scrape().await);

    // Every pod-level sample, its pod labels emptied, summed.
    let mut want: BTreeMap<Key, u64> = BTreeMap::new();
    for ((name, l), v) in &by_pod {
        let mut l = l.clone();
        l.insert("source".into(), String::new());
        l.insert("target".into(), String::new());
        *want.entry((name.clone(), l)).or_insert(0) += v;
    }
    assert!(by_pod.len() > 2 * rolled.len(), "the roll-up is smaller");
    assert!(rolled.keys().all(|(_, l)| pod_less(l)), "no pod labels");
    for family in [
        "requests_total",
        "responses_total",
        "response_latency_ms_bucket",
        "tcp_open_total",
    ] {
        assert!(
            rolled.keys().any(|(n, _)| n == family),
            "{family} rolled up"
        );
    }
    let differ: Vec<_> = want
        .keys()
        .chain(rolled.keys())
        .filter(|k| rolled.get(*k) != want.get(*k))
        .map(|k| (k, rolled.get(k), want.get(k)))
        .take(5)
        .collect();
    assert!(
        differ.is_empty(),
        "per-deployment sums equal the per-pod sums: {differ:?}"
    );

    // Both: the pod series (those with a pod label) and the roll-up.
    let mut union: BTreeMap<Key, u64> = by_pod
        .into_iter()
        .filter(|((_, l), _)| !pod_less(l))
        .collect();
    union.extend(rolled);
    assert_eq!(both, union);
}
