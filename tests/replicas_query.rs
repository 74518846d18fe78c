//! Several telemetry replicas, one answer: a public-api given three
//! telemetry addresses, in front of three real telemetry components on
//! loopback, each ingesting the reports of one web pod. ListPods marks
//! every reporting pod added; embedded Stat's request rate is the total
//! sent, and its latency percentiles are those of all the traffic at once
//! (the replicas' latencies are disjoint, so the merged P50 is none of
//! theirs). With one replica stopped the answer is partial and says so in
//! `Conduit-Partial`, counted on `/metrics`, with the others' data still in
//! it; with every replica stopped the call fails as with one. Replicas
//! that answer Stat from a Prometheus scraping them all are asked once, not
//! summed.

#[path = "support/api.rs"]
mod api;
#[path = "support/prom_launcher.rs"]
mod prom_launcher;
mod support;

use std::time::Duration;

use api::*;
use conduit::proto::controller::stat::stat_client::StatClient;
use conduit::proto::http_api::{LIST_PODS_PATH, PARTIAL_HEADER, STAT_PATH};
use conduit::proto::proxy::telemetry::{ReportRequest, eos_ctx::End};
use conduit::proto::public::{
    AggregationType, HistogramLabel, ListPodsResponse, MetricMetadata, MetricName, MetricRequest,
    MetricResponse, TimeWindow, metric_value,
};
use prost::Message;
use support::*;

/// Reports each replica receives, one a second.
const ROUNDS: usize = 8;
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// As the other Stat tests: the embedded store counts whole reports.
const RATE_TOLERANCE: f64 = 0.25;

/// How long a stopped replica may take to refuse connections.
const STOP_WITHIN: Duration = Duration::from_secs(20);

/// A web pod, and what its proxy reports each second: `(latency in tenths
/// of a ms, requests)`.
struct WebPod {
    name: &'static str,
    ip: &'static str,
    latencies: &'static [(u32, u32)],
}

/// web-1 → books through replica A: 6 requests in 10 ms, 4 in 20 ms.
/// web-2 → books through replica B: 4 in 30 ms, 6 in 40 ms.
/// web-3 → books through replica C: 2 in 50 ms.
const TRAFFIC: [WebPod; 3] = [
    WebPod {
        name: "web-5d8f-aaaaa",
        ip: "192.0.2.11",
        latencies: &[(100, 6), (200, 4)],
    },
    WebPod {
        name: "web-5d8f-bbbbb",
        ip: "192.0.2.12",
        latencies: &[(300, 4), (400, 6)],
    },
    WebPod {
        name: "web-5d8f-ccccc",
        ip: "192.0.2.13",
        latencies: &[(500, 2)],
    },
];
/// What all three send a second.
const TOTAL_RPS: f64 = 22.0;
/// Each replica's own P50 (of 10, 10 and 2 requests a report), and that of
/// all 22: the 11th is the first in 30 ms.
const REPLICA_P50: [i64; 3] = [10, 40, 50];
const MERGED_P50: i64 = 30;
/// A and B without C: the 10th of 20 is in 20 ms.
const WITHOUT_C_P50: i64 = 20;

fn cluster() -> String {
    let mut docs: Vec<Box<dyn ClusterDoc>> = vec![
        Box::new(mk_deployment("shop", "web")),
        Box::new(mk_replica_set("shop", "web-5d8f", Some("web"))),
        Box::new(mk_deployment("shop", "books")),
        Box::new(mk_replica_set("shop", "books-77aa", Some("books"))),
        Box::new(mk_pod(
            "shop",
            "books-77aa-xyz12",
            "192.0.2.20",
            Some("books-77aa"),
        )),
    ];
    for pod in TRAFFIC {
        docs.push(Box::new(mk_pod("shop", pod.name, pod.ip, Some("web-5d8f"))));
    }
    let docs: Vec<&dyn ClusterDoc> = docs.iter().map(|d| &**d).collect();
    yaml_docs(&docs)
}

/// One second of a web pod's calls to books, all answered 200.
fn one_second(pod: &WebPod) -> ReportRequest {
    let count: u32 = pod.latencies.iter().map(|&(_, n)| n).sum();
    report(
        "shop",
        pod.name,
        vec![conduit::proto::proxy::telemetry::RequestScope {
            ctx: ctx(pod.ip, "192.0.2.20", get(), "/books"),
            count,
            responses: vec![response(
                200,
                pod.latencies,
                vec![eos(End::Other(true), count as usize)],
            )],
        }],
    )
}

fn books_stat() -> MetricRequest {
    MetricRequest {
        metrics: vec![
            MetricName::RequestRate as i32,
            MetricName::SuccessRate as i32,
            MetricName::Latency as i32,
        ],
        window: TimeWindow::OneMin as i32,
        group_by: AggregationType::TargetDeploy as i32,
        filter_by: Some(MetricMetadata {
            target_deploy: "shop/books".into(),
            ..Default::default()
        }),
        summarize: true,
    }
}

/// Books' request rate, success rate and P50, P95 of a Stat answer.
#[derive(Debug, PartialEq)]
struct Books {
    rate: f64,
    success: f64,
    p50: i64,
    p95: i64,
}

fn books(answer: &MetricResponse) -> Books {
    let value = |name: MetricName| {
        let series = answer
            .metrics
            .iter()
            .find(|s| s.name == name as i32)
            .unwrap_or_else(|| panic!("no {name:?} series in {answer:?}"));
        assert_eq!(
            series.metadata.as_ref().unwrap().target_deploy,
            "shop/books"
        );
        assert_eq!(series.datapoints.len(), 1, "summarized: {series:?}");
        series.datapoints[0].value.clone().unwrap().value.unwrap()
    };
    let gauge = |name| match value(name) {
        metric_value::Value::Gauge(g) => g,
        other => panic!("{name:?} is a gauge: {other:?}"),
    };
    let metric_value::Value::Histogram(h) = value(MetricName::Latency) else {
        panic!("LATENCY is a histogram")
    };
    let p = |label: HistogramLabel| {
        h.values
            .iter()
            .find(|v| v.label == label as i32)
            .map(|v| v.value)
            .unwrap_or_else(|| panic!("no {label:?} in {h:?}"))
    };
    Books {
        rate: gauge(MetricName::RequestRate),
        success: gauge(MetricName::SuccessRate),
        p50: p(HistogramLabel::P50),
        p95: p(HistogramLabel::P95),
    }
}

async fn stat(api: &RunningApi) -> HttpResponse {
    let rsp = post(
        api.http,
        STAT_PATH,
        Some("application/octet-stream"),
        &books_stat().encode_to_vec(),
    )
    .await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    rsp
}

fn decoded<M: Message + Default>(rsp: &HttpResponse) -> M {
    M::decode(&rsp.body[4..]).unwrap()
}

/// Web pods ListPods marks added, sorted.
async fn added(api: &RunningApi) -> (Vec<String>, Option<String>) {
    let rsp = post(api.http, LIST_PODS_PATH, None, b"").await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    let pods: ListPodsResponse = decoded(&rsp);
    assert_eq!(
        pods.pods.len(),
        4,
        "every pod of the cluster once: {pods:?}"
    );
    let mut added: Vec<String> = pods
        .pods
        .iter()
        .filter(|p| p.added)
        .map(|p| {
            assert!(p.since_last_report.is_some(), "{p:?}");
            p.name.clone()
        })
        .collect();
    added.sort();
    (added, rsp.header(PARTIAL_HEADER).map(str::to_owned))
}

async fn partial_answers(api: &RunningApi, call: &str) -> f64 {
    let (status, text) = http_get(api.admin, "/metrics").await;
    assert_eq!(status, 200);
    Exposition::parse(&text)
        .get(
            "conduit_public_api_partial_answers_total",
            &[("call", call)],
        )
        .unwrap_or_else(|| panic!("no partial-answer counter for {call}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_answer_as_one() {
    let mut replicas = Vec::new();
    for _ in TRAFFIC {
        replicas.push(Some(start_telemetry(&cluster(), &[]).await));
    }
    let addrs: Vec<String> = replicas
        .iter()
        .map(|r| r.as_ref().unwrap().grpc.to_string())
        .collect();
    let api = start_public_api(&addrs.join(","), &unused_addr().await.to_string()).await;

    // Each web pod's proxy reports to its own replica, once a second.
    let mut clients = Vec::new();
    for r in &replicas {
        clients.push(r.as_ref().unwrap().client().await);
    }
    let mut every = tokio::time::interval(REPORT_EVERY);
    for _ in 0..ROUNDS {
        every.tick().await;
        for (client, pod) in clients.iter_mut().zip(&TRAFFIC) {
            client.report(one_second(pod)).await.unwrap();
        }
    }

    // ListPods: every web pod added, though each told one replica.
    let (pods, partial) = added(&api).await;
    assert_eq!(
        pods,
        [
            "shop/web-5d8f-aaaaa",
            "shop/web-5d8f-bbbbb",
            "shop/web-5d8f-ccccc"
        ]
    );
    assert_eq!(partial, None, "every replica answered");

    // Each replica alone knows a third of the traffic and its own latency.
    for (i, addr) in addrs.iter().enumerate() {
        let mut own = StatClient::connect(format!("http://{addr}")).await.unwrap();
        let alone = books(&own.stat(books_stat()).await.unwrap().into_inner());
        eprintln!("replica {i} alone: {alone:?}");
        assert_eq!(alone.p50, REPLICA_P50[i], "replica {i}");
    }

    // Stat through public-api: the sum of the counts, the percentiles of
    // the added histograms.
    let rsp = stat(&api).await;
    assert_eq!(rsp.header(PARTIAL_HEADER), None);
    let merged = books(&decoded(&rsp));
    eprintln!("merged: {merged:?}");
    // 176 requests over the 7–8 s the reports cover.
    assert!(
        (merged.rate - TOTAL_RPS).abs() <= TOTAL_RPS * RATE_TOLERANCE,
        "request rate {}, want {TOTAL_RPS} ±{}%",
        merged.rate,
        RATE_TOLERANCE * 100.0
    );
    assert_eq!(merged.success, 1.0);
    assert_eq!(merged.p50, MERGED_P50, "exact, never a mean of percentiles");
    assert!(!REPLICA_P50.contains(&merged.p50));
    assert_eq!(merged.p95, 50, "the 168th of 176 is among C's");
    assert_eq!(partial_answers(&api, "Stat").await, 0.0);

    // Replica C stops: the answer is A's and B's, and says C is missing.
    drop(replicas[2].take());
    let c = addrs[2].clone();
    let rsp = eventually("a Stat answer without replica C", STOP_WITHIN, || async {
        let rsp = stat(&api).await;
        if rsp.header(PARTIAL_HEADER).is_some() {
            Ok(rsp)
        } else {
            Err("a whole answer")
        }
    })
    .await;
    let header = rsp.header(PARTIAL_HEADER).unwrap();
    eprintln!("{PARTIAL_HEADER}: {header}");
    assert!(
        header.starts_with(&format!("1 of 3 telemetry replicas unreachable ({c}: ")),
        "{header}"
    );
    let without_c = books(&decoded(&rsp));
    eprintln!("without C: {without_c:?}");
    assert_eq!(without_c.p50, WITHOUT_C_P50, "A's and B's traffic, merged");
    assert_eq!(without_c.p95, 40);
    let counted = partial_answers(&api, "Stat").await;
    assert!(counted >= 1.0, "{counted}");
    let rsp = stat(&api).await;
    assert!(rsp.header(PARTIAL_HEADER).is_some());
    assert_eq!(partial_answers(&api, "Stat").await, counted + 1.0);

    let (pods, partial) = added(&api).await;
    assert_eq!(pods, ["shop/web-5d8f-aaaaa", "shop/web-5d8f-bbbbb"]);
    let partial = partial.expect("ListPods says it is partial");
    assert!(partial.contains(&c), "{partial}");
    assert_eq!(partial_answers(&api, "ListPods").await, 1.0);

    // The CLI shows the answer, and says what it lacks.
    let addr = api.http.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_conduit"))
            .args(["stat", "deployments", "-o", "json", "--api-addr", &addr])
            .env_remove("RUST_LOG")
            .output()
            .expect("the conduit binary runs")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("conduit: partial answer: 1 of 3 telemetry replicas unreachable"),
        "{stderr}"
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["name"], "shop/books", "{rows}");

    // Every replica stopped: the call fails as it does with one.
    replicas.clear();
    let first = addrs[0].clone();
    let body = books_stat().encode_to_vec();
    let failed = eventually("Stat failing with no replica", STOP_WITHIN, || async {
        let rsp = post(api.http, STAT_PATH, None, &body).await;
        if rsp.status == 503 {
            Ok(rsp)
        } else {
            Err(format!("{}: {}", rsp.status, rsp.text()))
        }
    })
    .await;
    assert!(
        failed
            .text()
            .starts_with(&format!("telemetry at {first}: ")),
        "{}",
        failed.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_prometheus_are_asked_once() {
    let prom_port = unused_addr().await.port();
    let prom_url = format!("-prometheus-url=http://127.0.0.1:{prom_port}");
    let mut replicas = Vec::new();
    for _ in TRAFFIC {
        replicas.push(start_telemetry(&cluster(), &[&prom_url]).await);
    }
    let admins: Vec<_> = replicas.iter().map(|r| r.admin).collect();
    let prometheus = prom_launcher::Prometheus::start_on(prom_port, &admins).await;
    let addrs: Vec<String> = replicas.iter().map(|r| r.grpc.to_string()).collect();
    let api = start_public_api(&addrs.join(","), &unused_addr().await.to_string()).await;

    let mut clients = Vec::new();
    for r in &replicas {
        clients.push(r.client().await);
    }
    let proxy = tokio::spawn(async move {
        let mut every = tokio::time::interval(REPORT_EVERY);
        loop {
            every.tick().await;
            for (client, pod) in clients.iter_mut().zip(&TRAFFIC) {
                client.report(one_second(pod)).await.unwrap();
            }
        }
    });
    // Every replica's series scraped long enough to cover the window.
    prometheus
        .wait_for(
            "min(count_over_time(requests_total{target_deployment=\"shop/books\"}[30s]))",
            12.0,
            Duration::from_secs(40),
        )
        .await;
    let ten_seconds = MetricRequest {
        window: TimeWindow::TenSec as i32,
        ..books_stat()
    };
    let rsp = post(api.http, STAT_PATH, None, &ten_seconds.encode_to_vec()).await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    assert_eq!(rsp.header(PARTIAL_HEADER), None);
    let answer = books(&decoded(&rsp));
    eprintln!("prometheus: {answer:?}");
    // Summing three copies of Prometheus' answer would read 66.
    assert!(
        (answer.rate - TOTAL_RPS).abs() <= TOTAL_RPS * RATE_TOLERANCE,
        "request rate {}, want {TOTAL_RPS} ±{}%",
        answer.rate,
        RATE_TOLERANCE * 100.0
    );
    proxy.abort();

    // A replica down leaves its past in Prometheus: one replica's Stat is
    // still the whole answer.
    let c = replicas.pop().unwrap().grpc;
    eventually("replica C refusing connections", STOP_WITHIN, || async {
        tokio::net::TcpStream::connect(c).await.is_err()
    })
    .await;
    let rsp = post(api.http, STAT_PATH, None, &ten_seconds.encode_to_vec()).await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    assert_eq!(rsp.header(PARTIAL_HEADER), None);
}

#[tokio::test]
async fn a_bad_telemetry_list_is_refused() {
    for (list, says) in [
        ("127.0.0.1:8087,,127.0.0.1:8088", "address 2 is empty"),
        ("127.0.0.1:8087,", "address 2 is empty"),
        ("127.0.0.1:8087,127.0.0.1:8087", "twice"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_conduit"))
            .args([
                "controller",
                "public-api",
                "-addr=127.0.0.1:0",
                "-metrics-addr=127.0.0.1:0",
                &format!("-telemetry-addr={list}"),
            ])
            .env_remove("RUST_LOG")
            .output()
            .expect("the conduit binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{list}: started");
        assert!(stderr.contains(says), "{list}: {stderr}");
    }
}
