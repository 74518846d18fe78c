//! Routes end to end: telemetry started with `-routes FILE` counts requests
//! under the template they match (in `/metrics` and in the embedded
//! store), the public API's Routes call answers per route with Stat's
//! numbers, and `conduit routes deploy NAME` prints them; a bad routes file
//! stops the real binary at start with its line and reason.

#[path = "support/api.rs"]
mod api;
mod support;

use api::*;
use conduit::proto::http_api::ROUTES_PATH;
use conduit::proto::proxy::telemetry::{RequestScope, eos_ctx::End};
use conduit::proto::public::{RoutesRequest, RoutesResponse, TimeWindow};
use prost::Message;
use support::*;

const PROTOBUF: Option<&str> = Some("application/octet-stream");

const ROUTES: &str = "\
# books' API
shop/books GET  /books/{id}
shop/books POST /checkout
";

/// web → books: GET /books/1 … /books/500 twice each (all OK in 12 ms),
/// POST /checkout 10 times (one 500), and 6 GET /authors no template
/// matches; books → db: GET /rows/1, /rows/2 (db has no templates).
fn traffic() -> Vec<conduit::proto::proxy::telemetry::ReportRequest> {
    let ok = |n: u32, tenths: u32| {
        response(200, &[(tenths, n)], vec![eos(End::Other(true), n as usize)])
    };
    let mut web: Vec<RequestScope> = (1..=500)
        .map(|i| RequestScope {
            ctx: ctx("192.0.2.10", "192.0.2.20", get(), &format!("/books/{i}")),
            count: 2,
            responses: vec![ok(2, 120)],
        })
        .collect();
    web.push(RequestScope {
        ctx: ctx(
            "192.0.2.10",
            "192.0.2.20",
            unregistered("POST"),
            "/checkout",
        ),
        count: 10,
        responses: vec![
            ok(9, 300),
            response(500, &[(2500, 1)], vec![eos(End::Other(true), 1)]),
        ],
    });
    web.push(RequestScope {
        ctx: ctx("192.0.2.10", "192.0.2.20", get(), "/authors?page=2"),
        count: 6,
        responses: vec![ok(6, 50)],
    });
    let db: Vec<RequestScope> = ["/rows/1", "/rows/2"]
        .iter()
        .map(|path| RequestScope {
            ctx: ctx("192.0.2.20", "192.0.2.30", get(), path),
            count: 3,
            responses: vec![ok(3, 30)],
        })
        .collect();
    vec![
        report("shop", "web-5d8f-abcde", web),
        report("shop", "books-77aa-xyz12", db),
    ]
}

struct Mesh {
    telemetry: Running,
    api: RunningApi,
    _dir: TempDir,
}

async fn mesh() -> Mesh {
    let dir = TempDir::new();
    let routes = dir.0.join("routes");
    std::fs::write(&routes, ROUTES).unwrap();
    let telemetry = start_telemetry(
        &three_tier_cluster(),
        &[&format!("-routes={}", routes.display())],
    )
    .await;
    let mut client = telemetry.client().await;
    for r in traffic() {
        client.report(r).await.unwrap();
    }
    let api = start_public_api(
        &telemetry.grpc.to_string(),
        &unused_addr().await.to_string(),
    )
    .await;
    Mesh {
        telemetry,
        api,
        _dir: dir,
    }
}

async fn routes_of(api: &RunningApi, deployment: &str) -> (u16, RoutesResponse, String) {
    let req = RoutesRequest {
        deployment: deployment.into(),
        window: TimeWindow::OneMin as i32,
    };
    let rsp = post(api.http, ROUTES_PATH, PROTOBUF, &req.encode_to_vec()).await;
    let body = if rsp.status == 200 {
        unframed(&rsp.body)
    } else {
        RoutesResponse::default()
    };
    (rsp.status, body, rsp.text())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.05 * a.max(b)
}

#[tokio::test]
async fn templates_collapse_paths_into_routes_with_stat_s_numbers() {
    let m = mesh().await;
    let (status, books, text) = routes_of(&m.api, "shop/books").await;
    assert_eq!(status, 200, "{text}");
    assert!(books.templated);
    let names: Vec<&str> = books.routes.iter().map(|r| r.route.as_str()).collect();
    assert_eq!(names, ["GET /books/{id}", "POST /checkout", "[DEFAULT]"]);
    let [get_books, checkout, default] = &books.routes[..] else {
        unreachable!()
    };
    // 1,000 requests, 10 and 6: the routes' rates are in that proportion,
    // and together they are Stat's rate of the deployment.
    assert!(
        close(get_books.request_rate / checkout.request_rate, 100.0),
        "{books:?}"
    );
    assert!(
        close(checkout.request_rate / default.request_rate, 10.0 / 6.0),
        "{books:?}"
    );
    let total: f64 = books.routes.iter().map(|r| r.request_rate).sum();
    let stat = stat_rate(&m.api, "shop/books").await;
    assert!(close(total, stat), "routes {total} vs stat {stat}");
    assert_eq!(get_books.success_rate, Some(1.0));
    assert_eq!(get_books.p50_latency_ms, Some(12));
    assert_eq!(checkout.success_rate, Some(0.9));
    assert_eq!(checkout.p99_latency_ms, Some(250));
    assert_eq!(default.p50_latency_ms, Some(5));

    // The exported series carry the templates, not the 500 paths.
    let text = m.telemetry.scrape_text().await;
    assert!(text.contains(r#"path="/books/{id}""#), "{text}");
    assert!(text.contains(r#"path="[DEFAULT]""#), "{text}");
    assert!(!text.contains(r#"path="/books/7""#), "{text}");
    let books_series = text
        .lines()
        .filter(|l| {
            l.starts_with("requests_total{") && l.contains(r#"target_deployment="shop/books""#)
        })
        .count();
    assert_eq!(books_series, 3, "{text}");

    // Without templates, the routes are the observed paths.
    let (status, db, text) = routes_of(&m.api, "data/db").await;
    assert_eq!(status, 200, "{text}");
    assert!(!db.templated);
    let names: Vec<&str> = db.routes.iter().map(|r| r.route.as_str()).collect();
    assert_eq!(names, ["GET /rows/1", "GET /rows/2"]);
    assert!(db.routes.iter().all(|r| r.p50_latency_ms == Some(3)));

    // A deployment nothing knows is a 404 naming it; a malformed one a 400.
    let (status, _, text) = routes_of(&m.api, "shop/nope").await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("shop/nope"), "{text}");
    let (status, _, text) = routes_of(&m.api, "books").await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("namespace/name"), "{text}");
}

#[tokio::test]
async fn conduit_routes_prints_the_table_and_json() {
    let m = mesh().await;
    let addr = m.api.http.to_string();
    let out = conduit(&[
        "routes",
        "deploy",
        "books",
        "-n",
        "shop",
        "--api-addr",
        &addr,
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ROUTE",
            "REQUEST_RATE",
            "SUCCESS_RATE",
            "P50_LATENCY",
            "P95_LATENCY",
            "P99_LATENCY"
        ]
    );
    assert!(lines[1].starts_with("GET /books/{id} "), "{text}");
    assert!(
        lines[1].contains("100.00%") && lines[1].contains("12ms"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("POST /checkout ") && lines[2].contains("90.00%"),
        "{text}"
    );
    assert!(lines[3].starts_with("[DEFAULT] "), "{text}");

    let out = conduit(&[
        "routes",
        "deploy",
        "shop/books",
        "-o",
        "json",
        "--api-addr",
        &addr,
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["route"], "GET /books/{id}");
    assert_eq!(rows[0]["successRate"], 1.0);
    assert_eq!(rows[0]["p50LatencyMs"], 12);
    assert!(rows[0]["requestRate"].as_f64().unwrap() > 0.0);

    let out = conduit(&[
        "routes",
        "deploy",
        "nope",
        "-n",
        "shop",
        "--api-addr",
        &addr,
    ])
    .await;
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(error.trim().lines().count(), 1, "{error}");
    assert!(error.contains("shop/nope"), "{error}");
}

#[test]
fn a_bad_routes_file_stops_telemetry_at_start_with_its_line() {
    let dir = TempDir::new();
    let routes = dir.0.join("routes");
    std::fs::write(
        &routes,
        "shop/books GET /books/{id}\nshop/books GET books\n",
    )
    .unwrap();
    let cluster = dir.0.join("cluster.yaml");
    std::fs::write(&cluster, three_tier_cluster()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args([
            "controller",
            "telemetry",
            "-addr=127.0.0.1:0",
            "-metrics-addr=127.0.0.1:0",
            &format!("-cluster={}", cluster.display()),
            &format!("-routes={}", routes.display()),
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("the conduit binary runs");
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains(&format!(
            "{}:2: template \"books\": it must start with /",
            routes.display()
        )),
        "{error}"
    );
}
