//! The public API's calls added after v0.1.0 (StatSummary, Edges, Health;
//! Routes in `tests/routes.rs`) over real loopback sockets, against a telemetry component
//! started in the test and fed real reports: their numbers are Stat's for
//! the same window, in both the protobuf and the JSON form.

#[path = "support/api.rs"]
mod api;
mod support;

use api::*;
use conduit::proto::http_api::{EDGES_PATH, HEALTH_PATH, STAT_SUMMARY_PATH};
use conduit::proto::public::{
    EdgesRequest, EdgesResponse, HealthResponse, StatSummaryRequest, StatSummaryResponse,
    TimeWindow,
};
use prost::Message;
use support::*;

const PROTOBUF: Option<&str> = Some("application/octet-stream");
const JSON: Option<&str> = Some("application/json");

async fn summary(api: &RunningApi, req: StatSummaryRequest) -> StatSummaryResponse {
    let rsp = post(api.http, STAT_SUMMARY_PATH, PROTOBUF, &req.encode_to_vec()).await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    unframed(&rsp.body)
}

fn rows(rsp: &StatSummaryResponse) -> Vec<(String, String, u32, u32)> {
    rsp.rows
        .iter()
        .map(|r| {
            (
                r.namespace.clone(),
                r.name.clone(),
                r.meshed_pods,
                r.total_pods,
            )
        })
        .collect()
}

fn own(rows: &[(&str, &str, u32, u32)]) -> Vec<(String, String, u32, u32)> {
    rows.iter()
        .map(|&(a, b, c, d)| (a.to_string(), b.to_string(), c, d))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.2 * a.max(b)
}

#[tokio::test]
async fn stat_summary_rows_agree_with_stat_and_count_meshed_pods() {
    let t = start_telemetry(&three_tier_cluster(), &[]).await;
    three_tier_traffic(&t).await;
    let api = start_public_api(&t.grpc.to_string(), &unused_addr().await.to_string()).await;
    let window = TimeWindow::OneMin as i32;

    // Every deployment, with traffic or not, ordered by namespace, name.
    let deployments = summary(
        &api,
        StatSummaryRequest {
            resource: "deployments".into(),
            window,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        rows(&deployments),
        own(&[
            ("data", "db", 0, 1),
            ("shop", "books", 1, 2),
            ("shop", "web", 1, 1)
        ])
    );
    let books = &deployments.rows[1];
    assert_eq!(books.success_rate, Some(0.9));
    assert_eq!(books.p50_latency_ms, Some(12));
    assert!(
        (248..=252).contains(&books.p99_latency_ms.unwrap()),
        "{books:?}"
    );
    let stat = stat_rate(&api, "shop/books").await;
    assert!(close(books.request_rate, stat), "{books:?} vs Stat {stat}");
    let web = &deployments.rows[2];
    assert_eq!(
        (web.request_rate, web.success_rate),
        (0.0, None),
        "no traffic to web"
    );
    assert_eq!(deployments.rows[0].p50_latency_ms, Some(30));

    // Namespaces: their deployments' traffic summed before the numbers.
    let namespaces = summary(
        &api,
        StatSummaryRequest {
            resource: "namespaces".into(),
            window,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        rows(&namespaces),
        own(&[("data", "data", 0, 1), ("shop", "shop", 2, 3)])
    );
    assert_eq!(namespaces.rows[0].success_rate, Some(1.0));
    assert_eq!(namespaces.rows[1].success_rate, Some(0.9));
    assert_eq!(namespaces.rows[1].p50_latency_ms, Some(12));

    // --from: the destinations of web only.
    let from = summary(
        &api,
        StatSummaryRequest {
            resource: "deployments".into(),
            window,
            from: "shop/web".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rows(&from), own(&[("shop", "books", 1, 2)]));
    assert_eq!(from.rows[0].success_rate, Some(0.9));

    // --to a deployment, by pod: the one books pod that called db.
    let to = summary(
        &api,
        StatSummaryRequest {
            resource: "pods".into(),
            window,
            to: "data/db".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rows(&to), own(&[("shop", "books-77aa-xyz12", 1, 1)]));
    assert_eq!(to.rows[0].success_rate, Some(1.0));

    // One row by name and namespace.
    let one = summary(
        &api,
        StatSummaryRequest {
            resource: "deployments".into(),
            namespace: "shop".into(),
            name: "books".into(),
            window,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rows(&one), own(&[("shop", "books", 1, 2)]));

    // JSON: the proto3 names, defaults emitted, absent numbers left out.
    let rsp = post(
        api.http,
        STAT_SUMMARY_PATH,
        JSON,
        br#"{"resource":"deployments","namespace":"shop","window":"ONE_MIN"}"#,
    )
    .await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    let json: serde_json::Value = serde_json::from_str(&rsp.text()).unwrap();
    let books = &json["rows"][0];
    assert_eq!(books["name"], "books");
    assert_eq!(books["meshedPods"], 1);
    assert_eq!(books["totalPods"], 2);
    assert_eq!(books["successRate"], 0.9);
    assert_eq!(books["p50LatencyMs"], 12);
    assert!(json["rows"][1].get("successRate").is_none(), "{json}");

    // Mistakes are 400s that say what to give, or 404 for an unknown side.
    for (body, want, status) in [
        (
            &br#"{"resource":"services"}"#[..],
            "resource \"services\"",
            400,
        ),
        (
            br#"{"resource":"pods","from":"web"}"#,
            "namespace/name",
            400,
        ),
        (
            br#"{"resource":"pods","from":"shop/nope"}"#,
            "no deployment or pod",
            404,
        ),
        (
            br#"{"resource":"pods","from":"shop/web","to":"data/db"}"#,
            "not both",
            400,
        ),
    ] {
        let rsp = post(api.http, STAT_SUMMARY_PATH, JSON, body).await;
        assert_eq!(rsp.status, status, "{}", rsp.text());
        assert!(rsp.text().contains(want), "{}", rsp.text());
        assert_eq!(rsp.text().lines().count(), 1, "one line: {}", rsp.text());
    }
}

#[tokio::test]
async fn edges_are_the_call_graph_with_stat_s_numbers() {
    let t = start_telemetry(&three_tier_cluster(), &[]).await;
    three_tier_traffic(&t).await;
    let api = start_public_api(&t.grpc.to_string(), &unused_addr().await.to_string()).await;
    let edges = |resource: &str, namespace: &str| EdgesRequest {
        resource: resource.into(),
        namespace: namespace.into(),
        window: TimeWindow::OneMin as i32,
    };
    let call = |req: EdgesRequest| async move {
        let rsp = post(api.http, EDGES_PATH, PROTOBUF, &req.encode_to_vec()).await;
        assert_eq!(rsp.status, 200, "{}", rsp.text());
        unframed::<EdgesResponse>(&rsp.body)
    };
    let pairs = |rsp: &EdgesResponse| -> Vec<(String, String, Option<f64>)> {
        rsp.edges
            .iter()
            .map(|e| (e.src.clone(), e.dst.clone(), e.success_rate))
            .collect()
    };

    let deployments = call(edges("deployments", "")).await;
    assert_eq!(
        pairs(&deployments),
        [
            ("shop/books".into(), "data/db".into(), Some(1.0)),
            ("shop/web".into(), "shop/books".into(), Some(0.9)),
        ]
    );
    let web_books = &deployments.edges[1];
    assert_eq!(web_books.p50_latency_ms, Some(12));
    let stat = stat_rate(&api, "shop/books").await;
    assert!(
        close(web_books.request_rate, stat),
        "{web_books:?} vs {stat}"
    );

    let pods = call(edges("pods", "")).await;
    assert_eq!(
        pairs(&pods),
        [
            (
                "shop/books-77aa-xyz12".into(),
                "data/db-11bb-qqqqq".into(),
                Some(1.0)
            ),
            (
                "shop/web-5d8f-abcde".into(),
                "shop/books-77aa-xyz12".into(),
                Some(0.9)
            ),
        ]
    );

    // A namespace keeps the edges with a side in it.
    let data = call(edges("deployments", "data")).await;
    assert_eq!(
        pairs(&data),
        [("shop/books".into(), "data/db".into(), Some(1.0))]
    );

    let rsp = post(
        api.http,
        EDGES_PATH,
        JSON,
        br#"{"resource":"deployments","window":"ONE_MIN"}"#,
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(&rsp.text()).unwrap();
    assert_eq!(json["edges"][1]["src"], "shop/web");
    assert_eq!(json["edges"][1]["dst"], "shop/books");
    assert_eq!(json["edges"][1]["successRate"], 0.9);
    assert!(json["edges"][1]["requestRate"].as_f64().unwrap() > 0.0);

    let rsp = post(api.http, EDGES_PATH, JSON, br#"{"resource":"namespaces"}"#).await;
    assert_eq!(rsp.status, 400, "{}", rsp.text());
    assert!(rsp.text().contains("not offered"), "{}", rsp.text());
}

fn health_of(rsp: &HealthResponse) -> Vec<(&str, bool)> {
    rsp.components
        .iter()
        .map(|c| (c.name.as_str(), c.healthy))
        .collect()
}

#[tokio::test]
async fn health_names_the_component_that_is_down() {
    let t = start_telemetry(&three_tier_cluster(), &[]).await;
    three_tier_traffic(&t).await;
    // A stand-in for the tap component: the real one needs proxies' tap
    // ports to be of use, and the probe only needs its refusal of an empty
    // request (INVALID_ARGUMENT), which the stand-in gives as tap does.
    let (tap, _tap) = start_fake_tap(FakeTap {
        then_error: Some(tonic::Status::invalid_argument("no target")),
        ..FakeTap::default()
    })
    .await;
    let telemetry_addr = t.grpc.to_string();
    let api = start_public_api(&telemetry_addr, &tap.to_string()).await;

    let rsp = post(api.http, HEALTH_PATH, PROTOBUF, b"").await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    let health: HealthResponse = unframed(&rsp.body);
    assert_eq!(health_of(&health), [("telemetry", true), ("tap", true)]);
    assert_eq!(health.components[0].message, "4 pods listed, 2 reporting");
    assert_eq!(health.server_version, conduit::core::RELEASE_VERSION);

    let rsp = post(api.http, HEALTH_PATH, JSON, b"{}").await;
    let json: serde_json::Value = serde_json::from_str(&rsp.text()).unwrap();
    assert_eq!(json["components"][0]["name"], "telemetry");
    assert_eq!(json["components"][0]["healthy"], true);
    assert_eq!(json["serverVersion"], conduit::core::RELEASE_VERSION);

    // Telemetry stopped: named, with what to do.
    drop(t);
    let health = eventually("telemetry reported down", REQUEST_DEADLINE, || async {
        let rsp = post(api.http, HEALTH_PATH, PROTOBUF, b"").await;
        let health: HealthResponse = unframed(&rsp.body);
        if health_of(&health) == [("telemetry", false), ("tap", true)] {
            Ok(health)
        } else {
            Err(health)
        }
    })
    .await;
    let message = &health.components[0].message;
    assert!(
        message.contains(&telemetry_addr) && message.contains("-telemetry-addr"),
        "{message}"
    );

    // Tap unreachable.
    let nowhere = unused_addr().await.to_string();
    let api = start_public_api(&nowhere, &nowhere).await;
    let rsp = post(api.http, HEALTH_PATH, PROTOBUF, b"").await;
    let health: HealthResponse = unframed(&rsp.body);
    assert_eq!(health_of(&health), [("telemetry", false), ("tap", false)]);
    assert!(
        health.components[1].message.starts_with(&nowhere),
        "{health:?}"
    );
}
