//! Scrapers that send `GET /metrics` and never read the answer, against
//! telemetry's admin port over real sockets. Alone in its test binary, so
//! the process's RSS is this test's.

mod support;

use std::time::{Duration, Instant};

use conduit::proto::proxy::telemetry::RequestScope;
use support::*;
use tokio::io::AsyncWriteExt as _;

/// Non-reading scrapers opened at once.
const STUCK: usize = 300;
/// How much the process may grow while they are held: a stuck scraper
/// holds one 64 KiB chunk, hyper's 16 KiB buffers and no thread; before,
/// whole shards of the exposition, hyper's 400 KiB and a blocking thread
/// each (880 MiB for 300).
const MAX_GROWTH_KIB: u64 = 50 * 1024;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapers_that_never_read_hold_little_and_block_no_one() {
    let t = start_telemetry(&cluster(), &[]).await;
    // 1,000 label sets: an exposition of a few megabytes.
    let mut client = t.client().await;
    for batch in 0..10 {
        let scopes: Vec<RequestScope> = (0..100)
            .map(|i| RequestScope {
                ctx: ctx(
                    "192.0.2.10",
                    "192.0.2.20",
                    get(),
                    &format!("/items/{batch}/{i}/{}", "p".repeat(40)),
                ),
                count: 1,
                responses: vec![response(200, &[(10, 1)], vec![])],
            })
            .collect();
        client
            .report(report("shop", "web-5d8f-abcde", scopes))
            .await
            .unwrap();
    }
    let full = t.scrape_text().await;
    assert!(full.len() > 1 << 20, "{} bytes", full.len());
    // Streamed in 64 KiB parts, shards cut mid-way, it is the exposition
    // rendered at once (then the component's own metrics).
    let mut whole = Vec::new();
    t.ingester.render(&mut whole);
    assert!(
        full.starts_with(std::str::from_utf8(&whole).unwrap()),
        "the streamed scrape differs from the exposition"
    );

    let before = rss_kib();
    let mut stuck = Vec::new();
    for _ in 0..STUCK {
        // A small receive window, so the answer stays on the server's side.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(t.admin).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: stuck\r\n\r\n")
            .await
            .unwrap();
        stuck.push(stream);
    }
    // Let every one of them get as far as it can.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = rss_kib().saturating_sub(before);
    eprintln!("{STUCK} stuck scrapers: the process grew {grown} KiB");
    assert!(
        grown < MAX_GROWTH_KIB,
        "{STUCK} stuck scrapers grew the process by {} MiB",
        grown / 1024
    );

    let started = Instant::now();
    let (status, body) = http_get(t.admin, "/metrics").await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert!(body.len() >= full.len() * 9 / 10, "a whole scrape");
    assert!(
        took < Duration::from_secs(3),
        "a fresh scrape took {took:?}"
    );
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < MAX_GROWTH_KIB,
        "{STUCK} stuck scrapers grew the process by {} MiB",
        grown / 1024
    );

    // Past the stall timeout they are closed and counted.
    eventually("stuck scrapers closed", Duration::from_secs(30), || async {
        let m = t.scrape().await;
        m.get("conduit_admin_stalled_connections_total", &[])
            .is_some_and(|n| n >= STUCK as f64 * 0.9)
    })
    .await;
    drop(stuck);
}
