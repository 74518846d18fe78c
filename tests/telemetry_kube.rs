//! The telemetry component fed by a Kubernetes API server (the fake one,
//! over HTTPS with a kubeconfig as kubectl reads it): reports are enriched
//! from what the watches deliver, as pods come and go.

#[path = "support/fake_api.rs"]
mod fake_api;
mod support;

use std::time::Duration;

use conduit::proto::proxy::telemetry::RequestScope;
use k8s_openapi::api::core::v1::Pod;
use support::*;

const TOKEN: &str = "s3cret-token";
const DEADLINE: Duration = Duration::from_secs(10);

fn call(path: &str) -> RequestScope {
    RequestScope {
        ctx: ctx("192.0.2.10", "192.0.2.20", get(), path),
        count: 1,
        responses: vec![],
    }
}

/// The `target` label of the one `requests_total` series of `path`.
async fn target_of(t: &Running, path: &str) -> Option<(String, String)> {
    let m = t.scrape().await;
    m.samples
        .iter()
        .find(|(n, l, _)| n == "requests_total" && l.get("path").map(String::as_str) == Some(path))
        .map(|(_, l, _)| (l["target"].clone(), l["target_deployment"].clone()))
}

/// Sends a report on a fresh path until its `target` labels are `want`:
/// each report is the first for its path, so the one that passes was
/// enriched with what the watch had delivered by then.
async fn reports_until(t: &Running, what: &str, prefix: &str, want: (String, String)) {
    let client = t.client().await;
    let mut n = 0;
    eventually(what, DEADLINE, || {
        n += 1;
        let path = format!("{prefix}/{n}");
        let mut client = client.clone();
        let want = want.clone();
        async move {
            client
                .report(report("shop", "web-1-a", vec![call(&path)]))
                .await
                .unwrap();
            target_of(t, &path).await == Some(want)
        }
    })
    .await;
}

#[tokio::test]
async fn reports_follow_pods_as_the_api_server_reports_them() {
    let fake = fake_api::FakeApi::start_tls(TOKEN).await;
    fake.apply(&mk_replica_set("shop", "web-1", Some("web")));
    fake.apply(&mk_replica_set("shop", "books-1", Some("books")));
    fake.apply(&mk_pod("shop", "web-1-a", "192.0.2.10", Some("web-1")));
    let dir = TempDir::new();
    let kubeconfig = fake.write_kubeconfig(&dir.0, TOKEN);
    let t = start_telemetry_with(dir, &[format!("--kubeconfig={}", kubeconfig.display())]).await;
    eventually(
        "telemetry is ready once the lists are applied",
        DEADLINE,
        || async { http_get(t.admin, "/ready").await.0 == 200 },
    )
    .await;
    let mut client = t.client().await;

    // No pod owns the target yet.
    client
        .report(report("shop", "web-1-a", vec![call("/before")]))
        .await
        .unwrap();
    assert_eq!(
        target_of(&t, "/before").await,
        Some((String::new(), String::new()))
    );

    // A pod created after start: the next report naming its IP is enriched
    // once the watch has delivered it.
    fake.apply(&mk_pod("shop", "books-1-b", "192.0.2.20", Some("books-1")));
    let books = ("shop/books-1-b".to_string(), "shop/books".to_string());
    reports_until(&t, "the new pod enriches reports", "/after", books).await;

    // Deleted: its IP stops resolving.
    assert!(fake.delete::<Pod>("shop", "books-1-b"));
    let unknown = (String::new(), String::new());
    reports_until(&t, "the deleted pod's IP stops resolving", "/gone", unknown).await;
}

#[tokio::test]
async fn a_wrong_token_keeps_telemetry_unready_but_serving() {
    let fake = fake_api::FakeApi::start_tls(TOKEN).await;
    let dir = TempDir::new();
    let kubeconfig = fake.write_kubeconfig(&dir.0, "not-the-token");
    let t = start_telemetry_with(dir, &[format!("--kubeconfig={}", kubeconfig.display())]).await;
    let mut client = t.client().await;
    client
        .report(report("shop", "x", vec![call("/unready")]))
        .await
        .unwrap();
    assert_eq!(http_get(t.admin, "/ready").await.0, 503);
    assert!(
        fake.unauthorized_count() > 0 || {
            // The watchers may not have tried yet; give them a moment.
            eventually("the watchers try", DEADLINE, || async {
                fake.unauthorized_count() > 0
            })
            .await;
            true
        }
    );
    assert_eq!(http_get(t.admin, "/ready").await.0, 503);
}
