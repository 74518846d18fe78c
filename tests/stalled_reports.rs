//! One HTTP/2 connection opening a thousand Report streams, each sending
//! 1 MiB of a message declared as 4 MiB − 1 and then stalling, against
//! telemetry over a real socket. Alone in its test binary, so the
//! process's RSS is this test's.

mod support;

use std::time::Duration;

use support::*;

const STREAMS: usize = 1_000;
/// Before, the server buffered every stream's megabyte (1 GB); now it
/// reads the 16 stalled reports that fit the budget and the first frame of
/// each other one (46 MiB growth measured), and refuses the rest unread.
const MAX_GROWTH_KIB: u64 = 100 * 1024;

fn cluster() -> String {
    yaml_docs(&[
        &mk_deployment("shop", "web"),
        &mk_replica_set("shop", "web-5d8f", Some("web")),
        &mk_pod("shop", "web-5d8f-abcde", "192.0.2.10", Some("web-5d8f")),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_report_streams_hold_a_bounded_budget() {
    let t = start_telemetry(&cluster(), &[]).await;
    let before = rss_kib();

    let (connection, answers) = stalled_reports(t.grpc, STREAMS).await;
    // All of them have been refused for want of room, or are being read.
    eventually("the streams past the budget refused", WAIT, || async {
        t.scrape()
            .await
            .get(
                "conduit_telemetry_reports_rejected_total",
                &[("reason", "busy")],
            )
            .is_some_and(|n| n >= (STREAMS - 16) as f64)
    })
    .await;
    let grown = rss_kib().saturating_sub(before);
    eprintln!("{STREAMS} stalled streams: the process grew {grown} KiB");
    assert!(
        grown < MAX_GROWTH_KIB,
        "{STREAMS} stalled streams grew the process by {} MiB",
        grown / 1024
    );

    // The ones being read give their room back at the read timeout, and a
    // proxy's report is taken again.
    eventually("the stalled reads timed out", WAIT, || async {
        t.scrape()
            .await
            .get(
                "conduit_telemetry_reports_rejected_total",
                &[("reason", "stalled")],
            )
            .is_some_and(|n| n >= 16.0)
    })
    .await;
    let mut client = t.client().await;
    client
        .report(report("shop", "web-5d8f-abcde", vec![]))
        .await
        .expect("a proxy's report is taken once the stalled ones are gone");
    let refused: Vec<String> = futures::future::join_all(answers)
        .await
        .into_iter()
        .filter_map(|a| a.ok().flatten())
        .collect();
    // RESOURCE_EXHAUSTED (8) for the refused, DEADLINE_EXCEEDED (4) for the
    // stalled reads.
    assert!(refused.iter().all(|s| s == "8" || s == "4"), "{refused:?}");
    assert_eq!(refused.iter().filter(|s| *s == "4").count(), 16);
    connection.abort();
}

const WAIT: Duration = Duration::from_secs(30);
