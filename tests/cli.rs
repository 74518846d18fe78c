//! The `conduit` binary's client commands against a public-api and a
//! telemetry component on loopback: `stat` (table and JSON), `get pods`
//! (table, wide and JSON), `version`, and the one-line failures when the
//! API is unreachable or answers with an error.

#[path = "support/api.rs"]
mod api;
mod support;

use std::process::Output;

use api::*;
use conduit::proto::proxy::telemetry::{RequestScope, eos_ctx::End};
use support::*;

/// The pod, scheduled on `node`.
fn on_node(
    mut pod: k8s_openapi::api::core::v1::Pod,
    node: &str,
) -> k8s_openapi::api::core::v1::Pod {
    pod.spec.get_or_insert_default().node_name = Some(node.to_owned());
    pod
}

fn cluster() -> String {
    yaml_docs(&[
        &mk_deployment("shop", "web"),
        &mk_replica_set("shop", "web-5d8f", Some("web")),
        &on_node(
            mk_pod("shop", "web-5d8f-abcde", "192.0.2.10", Some("web-5d8f")),
            "node-a",
        ),
        &mk_deployment("shop", "books"),
        &mk_replica_set("shop", "books-77aa", Some("books")),
        &mk_pod("shop", "books-77aa-xyz12", "192.0.2.20", Some("books-77aa")),
    ])
}

/// 10 requests web → books: 9 gRPC-OK in 12 ms, one HTTP 500 in 250 ms;
/// and 4 requests from web to an address no pod owns.
fn traffic() -> conduit::proto::proxy::telemetry::ReportRequest {
    report(
        "shop",
        "web-5d8f-abcde",
        vec![
            RequestScope {
                ctx: ctx("192.0.2.10", "192.0.2.20", get(), "/books"),
                count: 10,
                responses: vec![
                    response(200, &[(120, 9)], vec![eos(End::GrpcStatusCode(0), 9)]),
                    response(500, &[(2500, 1)], vec![eos(End::Other(true), 1)]),
                ],
            },
            RequestScope {
                ctx: ctx("192.0.2.10", "198.51.100.7", get(), "/elsewhere"),
                count: 4,
                responses: vec![response(200, &[(50, 4)], vec![eos(End::Other(true), 4)])],
            },
        ],
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct Mesh {
    _telemetry: Running,
    api: RunningApi,
    addr: String,
}

async fn mesh_with_traffic() -> Mesh {
    mesh_with_traffic_in(&cluster()).await
}

async fn mesh_with_traffic_in(cluster: &str) -> Mesh {
    let telemetry = start_telemetry(cluster, &[]).await;
    telemetry.client().await.report(traffic()).await.unwrap();
    let api = start_public_api(
        &telemetry.grpc.to_string(),
        &unused_addr().await.to_string(),
    )
    .await;
    let addr = api.http.to_string();
    Mesh {
        _telemetry: telemetry,
        api,
        addr,
    }
}

#[tokio::test]
async fn stat_deployments_as_json() {
    let m = mesh_with_traffic().await;
    let out = conduit(&["stat", "deployments", "-o", "json", "--api-addr", &m.addr]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(
        rows.len(),
        1,
        "only books is a target; unknown targets are left out: {rows:?}"
    );
    let books = rows[0].as_object().unwrap();
    let keys: Vec<&str> = books.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "name",
            "p50LatencyMs",
            "p95LatencyMs",
            "p99LatencyMs",
            "requestRate",
            "successRate"
        ],
        "exactly the contract's keys"
    );
    assert_eq!(books["name"], "shop/books");
    let rate = books["requestRate"].as_f64().unwrap();
    assert!(rate > 0.0 && rate <= 10.0, "{rate}");
    assert_eq!(books["successRate"], 0.9);
    assert_eq!(books["p50LatencyMs"], 12);
    let p99 = books["p99LatencyMs"].as_i64().unwrap();
    assert!((248..=252).contains(&p99), "{p99}");
}

#[tokio::test]
async fn stat_tables_like_kubectl() {
    let m = mesh_with_traffic().await;
    // The original's single-dash spelling works for client flags too.
    let api_flag = format!("-api-addr={}", m.addr);
    let out = conduit(&["stat", "deploy", &api_flag]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "NAME         MESHED   REQUEST_RATE   SUCCESS_RATE   P50_LATENCY   P99_LATENCY"
    );
    assert_eq!(lines.len(), 2, "{text}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cells[0], "shop/books");
    assert_eq!(cells[1], "0/1", "books' one pod has not reported");
    assert!(cells[2].ends_with("rps"), "{}", cells[2]);
    assert_eq!(&cells[3..5], ["90.00%", "12ms"]);
    assert_eq!(
        lines[1].find(cells[3]),
        lines[0].find("SUCCESS_RATE"),
        "columns align under their headers"
    );

    // Pods, in a namespace and by name.
    let out = conduit(&["stat", "pods", "-n", "shop", "--api-addr", &m.addr]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("shop/books-77aa-xyz12   "),
        "{}",
        stdout(&out)
    );
    let out = conduit(&[
        "stat",
        "pods",
        "books-77aa-xyz12",
        "-n",
        "shop",
        "-o",
        "wide",
        "--api-addr",
        &m.addr,
    ])
    .await;
    assert!(stdout(&out).starts_with("NAME  "), "{}", stdout(&out));
    assert!(
        stdout(&out)
            .lines()
            .next()
            .unwrap()
            .ends_with("P99_LATENCY   TCP_CONN   READ_BYTES/SEC   WRITE_BYTES/SEC")
    );
    // The report carried no TCP transports: the TCP columns show "-".
    let row = stdout(&out).lines().nth(1).unwrap().to_string();
    assert_eq!(
        row.split_whitespace().rev().take(3).collect::<Vec<_>>(),
        ["-", "-", "-"],
        "{row}"
    );
    assert_eq!(stdout(&out).lines().count(), 2);

    // Nothing in another namespace: an empty table is a message on stderr.
    let out = conduit(&["stat", "deployments", "-n", "other", "--api-addr", &m.addr]).await;
    assert!(out.status.success());
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "No traffic found.\n");
}

/// A NAME the mesh does not have is an error naming it (and where that
/// name does live); one that exists without traffic is "No traffic found."
#[tokio::test]
async fn stat_of_a_missing_name_fails_and_says_where_the_name_lives() {
    // web is in shop and storefront; shelf only in storefront.
    let cluster = yaml_docs(&[
        &cluster(),
        &mk_deployment("storefront", "web"),
        &mk_replica_set("storefront", "web-11aa", Some("web")),
        &mk_pod(
            "storefront",
            "web-11aa-k2j4h",
            "192.0.2.40",
            Some("web-11aa"),
        ),
        &mk_deployment("storefront", "shelf"),
        &mk_replica_set("storefront", "shelf-22bb", Some("shelf")),
        &mk_pod(
            "storefront",
            "shelf-22bb-m9n8b",
            "192.0.2.50",
            Some("shelf-22bb"),
        ),
    ]);
    let m = mesh_with_traffic_in(&cluster).await;
    let stat = |args: &[&str]| {
        let mut all = vec!["stat"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--api-addr", &m.addr]);
        let all: Vec<String> = all.into_iter().map(str::to_owned).collect();
        async move { conduit(&all.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    let fails = |out: &Output, line: &str| {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
        assert_eq!(stdout(out), "");
        assert_eq!(stderr(out), format!("conduit: {line}\n"));
    };

    fails(
        &stat(&["deployments", "shop/nope"]).await,
        "deployment shop/nope not found",
    );
    fails(
        &stat(&["deployments", "shelf", "-o", "json"]).await,
        "deployment default/shelf not found; did you mean storefront/shelf?",
    );
    fails(
        &stat(&["deployments", "web"]).await,
        "deployment default/web not found; web is in shop, storefront: give NAMESPACE/NAME",
    );
    fails(
        &stat(&["deployments", "shelf", "-n", "shop"]).await,
        "deployment shop/shelf not found; did you mean storefront/shelf?",
    );
    fails(
        &stat(&["pods", "books-77aa-xyz12"]).await,
        "pod default/books-77aa-xyz12 not found; did you mean shop/books-77aa-xyz12?",
    );
    fails(
        &stat(&["pods", "shop/books"]).await,
        "pod shop/books not found",
    );

    // They exist but nothing was sent to them in the window.
    for args in [
        &["deployments", "storefront/shelf"][..],
        &["deployments", "web", "-n", "shop"],
        &["pods", "shop/web-5d8f-abcde"],
    ] {
        let out = stat(args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{args:?}");
        assert_eq!(stderr(&out), "No traffic found.\n", "{args:?}");
    }
    let out = stat(&["pods", "storefront/shelf-22bb-m9n8b", "-o", "json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "[]");

    // A name with traffic answers as before.
    let out = stat(&["deployments", "books", "-n", "shop", "-o", "json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rows[0]["name"], "shop/books");
}

#[tokio::test]
async fn get_pods_and_version() {
    let m = mesh_with_traffic().await;
    let out = conduit(&["get", "pods", "--api-addr", &m.addr]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0]
            .starts_with("NAME                    STATUS    IP           DEPLOYMENT   LAST REPORT"),
        "{text}"
    );
    let books: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        books,
        [
            "shop/books-77aa-xyz12",
            "Running",
            "192.0.2.20",
            "shop/books",
            "-"
        ]
    );
    let web: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        &web[..4],
        ["shop/web-5d8f-abcde", "Running", "192.0.2.10", "shop/web"]
    );
    assert!(web[4].ends_with('s') && web[5] == "ago", "{}", lines[2]);

    let out = conduit(&["get", "pods", "-o", "json", "--api-addr", &m.addr]).await;
    let pods: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(pods[1]["name"], "shop/web-5d8f-abcde");
    assert_eq!(pods[1]["podIP"], "192.0.2.10");
    assert_eq!(pods[0]["added"], false);

    let out = conduit(&["version", "--api-addr", &m.addr]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v = format!("v{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        stdout(&out),
        format!("Client version: {v}\nServer version: {v}\n")
    );
    drop(m.api);
}

/// A kubectl-style table as one map per row: a column starts where the
/// header has a name after three spaces (a name or a cell may hold one).
fn table_rows(text: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let starts: Vec<usize> = (0..header.len())
        .filter(|&i| !header[i..].starts_with(' ') && (i == 0 || header[..i].ends_with("   ")))
        .collect();
    let cut = |line: &str, column: usize| {
        let end = starts
            .get(column + 1)
            .map_or(line.len(), |&e| e.min(line.len()));
        line.get(starts[column].min(end)..end)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let names: Vec<String> = (0..starts.len()).map(|i| cut(header, i)).collect();
    lines
        .map(|line| {
            names
                .iter()
                .enumerate()
                .map(|(i, name)| (name.clone(), cut(line, i)))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn get_pods_wide_has_listpods_ips_and_reports() {
    let m = mesh_with_traffic().await;
    let out = conduit(&["get", "pods", "-o", "wide", "--api-addr", &m.addr]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split("   ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STATUS",
            "IP",
            "DEPLOYMENT",
            "LAST REPORT",
            "NODE",
            "CONTROLLER NAMESPACE",
            "CONTROL PLANE"
        ],
        "{text}"
    );
    // ListPodNodes' spec.nodeName; `-` for the pod not scheduled yet.
    assert_eq!(
        table_rows(&text)
            .iter()
            .map(|r| (r["NAME"].as_str(), r["NODE"].as_str()))
            .collect::<Vec<_>>(),
        [
            ("shop/books-77aa-xyz12", "-"),
            ("shop/web-5d8f-abcde", "node-a")
        ],
        "{text}"
    );
    let rows = table_rows(&text);
    let json = conduit(&["get", "pods", "-o", "json", "--api-addr", &m.addr]).await;
    let pods: Vec<serde_json::Value> = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(rows.len(), pods.len(), "{text}");
    for (row, pod) in rows.iter().zip(&pods) {
        assert_eq!(row["NAME"], pod["name"].as_str().unwrap(), "{text}");
        assert_eq!(row["IP"], pod["podIP"].as_str().unwrap(), "{text}");
        // Filled for the pod that reported, `-` for the one that did not.
        let reported = pod["added"].as_bool().unwrap_or(false);
        let last = &row["LAST REPORT"];
        assert_eq!(reported, last.ends_with("s ago"), "{text}");
        assert_eq!(reported, last != "-", "{text}");
        assert_eq!(
            (
                row["CONTROLLER NAMESPACE"].as_str(),
                row["CONTROL PLANE"].as_str()
            ),
            ("-", "no")
        );
    }
    assert_eq!(
        rows.iter()
            .map(|r| (r["NAME"].as_str(), r["LAST REPORT"] != "-"))
            .collect::<Vec<_>>(),
        [
            ("shop/books-77aa-xyz12", false),
            ("shop/web-5d8f-abcde", true)
        ],
        "{text}"
    );
    drop(m.api);
}

#[tokio::test]
async fn an_unreachable_api_is_one_line_and_a_failure() {
    let addr = unused_addr().await.to_string();
    for args in [
        &["stat", "deployments"][..],
        &["stat", "pods", "-o", "json"],
        &["get", "pods"],
        &["version"],
    ] {
        let mut argv = args.to_vec();
        argv.extend(["--api-addr", &addr]);
        let out = conduit(&argv).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with(&format!("conduit: cannot reach the public API at {addr}: ")),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"));
    }
    let out = conduit(&["version", "--api-addr", &addr]).await;
    let text = stdout(&out);
    assert!(text.starts_with("Client version: "), "{text}");
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .starts_with("Server version: unavailable (cannot reach"),
        "{text}"
    );
}

#[tokio::test]
async fn a_server_error_is_its_message_on_one_line() {
    let telemetry = unused_addr().await;
    let api = start_public_api(&telemetry.to_string(), &unused_addr().await.to_string()).await;
    let out = conduit(&["stat", "deployments", "--api-addr", &api.http.to_string()]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "conduit: the public API at {} answered 503 Service Unavailable: telemetry at {telemetry}: Unavailable: ",
            api.http
        )),
        "{err}"
    );
}

/// Starts `conduit controller public-api` on free ports with `flags` and
/// stderr piped (not a terminal, as under `kubectl logs`), waits for its
/// "serving" line, stops it, and returns everything it logged.
fn logs_of_public_api(flags: &[&str]) -> String {
    use std::io::{BufRead as _, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args([
            "controller",
            "public-api",
            "-addr=127.0.0.1:0",
            "-metrics-addr=127.0.0.1:0",
        ])
        .args(flags)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the conduit binary starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut logged = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        logged.push_str(&line);
        logged.push('\n');
        if line.contains("serving") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(logged.contains("serving"), "no serving line in {logged:?}");
    logged
}

#[test]
fn logs_are_plain_off_a_terminal_and_json_when_asked() {
    let text = logs_of_public_api(&[]);
    assert!(!text.contains('\u{1b}'), "ANSI codes in {text:?}");
    assert!(text.contains(" INFO "), "{text}");

    let json = logs_of_public_api(&["--log-format", "json"]);
    for line in json.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        assert_eq!(event["level"], "INFO", "{line}");
        assert!(event["timestamp"].is_string(), "{line}");
    }
    let serving: serde_json::Value = serde_json::from_str(json.lines().last().unwrap()).unwrap();
    assert_eq!(serving["fields"]["message"], "serving");
    assert!(!json.contains('\u{1b}'));
}

/// The three-tier mesh (shop/web → shop/books → data/db) behind a
/// public-api, and the `--api-addr` flag the commands take.
async fn three_tier() -> (Running, RunningApi, String) {
    let t = start_telemetry(&three_tier_cluster(), &[]).await;
    three_tier_traffic(&t).await;
    let api = start_public_api(&t.grpc.to_string(), &unused_addr().await.to_string()).await;
    let addr = api.http.to_string();
    (t, api, addr)
}

fn json_rows(out: &Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

#[tokio::test]
async fn stat_namespaces_from_to_and_meshed() {
    let (_t, _api, addr) = three_tier().await;

    let ns = json_rows(&conduit(&["stat", "ns", "-o", "json", "--api-addr", &addr]).await);
    let names: Vec<&str> = ns.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["data", "shop"]);
    assert_eq!(ns[0]["successRate"], 1.0);
    assert_eq!(ns[0]["p50LatencyMs"], 30);
    assert_eq!(ns[1]["successRate"], 0.9);

    let from = json_rows(
        &conduit(&[
            "stat",
            "deploy",
            "--from",
            "shop/web",
            "-o",
            "json",
            "--api-addr",
            &addr,
        ])
        .await,
    );
    assert_eq!(from.len(), 1, "{from:?}");
    assert_eq!(from[0]["name"], "shop/books");
    assert_eq!(from[0]["successRate"], 0.9);

    let out = conduit(&["stat", "pods", "--to", "data/db", "--api-addr", &addr]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(&lines[1][..2], ["shop/books-77aa-xyz12", "1/1"], "{text}");
    assert_eq!(lines[1][3], "100.00%", "{text}");

    let out = conduit(&["stat", "deploy", "--api-addr", &addr]).await;
    let text = stdout(&out);
    let meshed: Vec<(&str, &str)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells[0], cells[1])
        })
        .collect();
    assert_eq!(
        meshed,
        [("data/db", "0/1"), ("shop/books", "1/2")],
        "{text}"
    );

    // Mistakes are one line each.
    let out = conduit(&["stat", "deploy", "--from", "shop/nope", "--api-addr", &addr]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no deployment or pod"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn edges_of_a_three_tier_mesh() {
    let (_t, _api, addr) = three_tier().await;
    let rows = json_rows(&conduit(&["edges", "deploy", "-o", "json", "--api-addr", &addr]).await);
    let keys: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "dst",
            "p50LatencyMs",
            "p95LatencyMs",
            "p99LatencyMs",
            "requestRate",
            "src",
            "successRate"
        ]
    );
    let pairs: Vec<(&str, &str, f64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["src"].as_str().unwrap(),
                r["dst"].as_str().unwrap(),
                r["successRate"].as_f64().unwrap(),
                r["p50LatencyMs"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("shop/books", "data/db", 1.0, 30),
            ("shop/web", "shop/books", 0.9, 12)
        ]
    );
    assert!(
        rows.iter()
            .all(|r| r["requestRate"].as_f64().unwrap() > 0.0)
    );

    let out = conduit(&["edges", "po", "-n", "data", "--api-addr", &addr]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "SRC                     DST                  REQUEST_RATE   SUCCESS_RATE   P50_LATENCY   P95_LATENCY   P99_LATENCY"
    );
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        (cells[0], cells[1], cells[3], cells[4]),
        (
            "shop/books-77aa-xyz12",
            "data/db-11bb-qqqqq",
            "100.00%",
            "30ms"
        )
    );
    assert_eq!(lines.len(), 2, "{text}");

    let out = conduit(&["edges", "deploy", "-n", "elsewhere", "--api-addr", &addr]).await;
    assert!(out.status.success());
    assert_eq!(stderr(&out), "No edges found.\n");
}

#[tokio::test]
async fn check_is_green_then_names_telemetry_once_it_stops() {
    let t = start_telemetry(&three_tier_cluster(), &[]).await;
    three_tier_traffic(&t).await;
    // A stand-in for the tap component, which needs proxies' tap ports to
    // be of use: Health only needs its refusal of an empty request.
    let (tap, _tap) = start_fake_tap(FakeTap {
        then_error: Some(tonic::Status::invalid_argument("no target")),
        ..FakeTap::default()
    })
    .await;
    let telemetry_addr = t.grpc.to_string();
    let api = start_public_api(&telemetry_addr, &tap.to_string()).await;
    let addr = api.http.to_string();

    let out = conduit(&["check", "--api-addr", &addr]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let v = format!("v{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        stdout(&out),
        format!(
            "√ public API reachable at {addr}\n\
             √ telemetry healthy: 4 pods listed, 2 reporting\n\
             √ tap healthy: answering at {tap}\n\
             √ client and server versions match ({v})\n\
             √ pods reporting: 2 of 4\n\
             Status check results are √\n"
        )
    );

    drop(t);
    let out = eventually("check failing on telemetry", REQUEST_DEADLINE, || async {
        let out = conduit(&["check", "--api-addr", &addr]).await;
        if out.status.code() == Some(1) {
            Ok(out)
        } else {
            Err(stdout(&out))
        }
    })
    .await;
    let text = stdout(&out);
    let telemetry = text
        .lines()
        .find(|l| l.starts_with("× telemetry healthy: "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        telemetry.contains(&telemetry_addr) && telemetry.contains("-telemetry-addr"),
        "{telemetry}"
    );
    assert!(text.contains("√ tap healthy"), "{text}");
    assert!(text.contains("× pods reporting: "), "{text}");
    assert_eq!(stderr(&out), "conduit: 2 of the checks failed\n");

    // No API at all: one failure, saying what to do.
    let nowhere = unused_addr().await.to_string();
    let out = conduit(&["check", "--api-addr", &nowhere]).await;
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with(&format!(
            "× public API reachable: cannot reach the public API at {nowhere}"
        )) && text.contains("--api-addr"),
        "{text}"
    );
    drop(api);
}
