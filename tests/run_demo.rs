//! `conduit run --demo` as a newcomer starts it: the real binary, then
//! `conduit stat deployments` against it until every demo deployment shows
//! live traffic (with the failing and the slow route visible), and
//! `conduit tap` showing live requests.

#[path = "support/demo.rs"]
mod demo;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conduit::simulate::fleet::DEMO_LAYOUT;
use demo::Demo;

/// What the README promises: numbers within seconds.
const DEADLINE: Duration = Duration::from_secs(15);

#[test]
fn demo_shows_every_deployment_with_live_rates() {
    let bin = env!("CARGO_BIN_EXE_conduit");
    let started = Instant::now();
    let demo = Demo::start();
    let api = demo.api.clone();

    let expected: BTreeSet<String> = DEMO_LAYOUT
        .iter()
        .map(|(ns, name, _)| format!("{ns}/{name}"))
        .collect();
    let expected: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    let mut last = String::new();
    loop {
        assert!(
            started.elapsed() < DEADLINE,
            "no live rates for every demo deployment within {DEADLINE:?}; last answer: {last}"
        );
        let out = Command::new(bin)
            .args(["stat", "deployments", "-o", "json", "--api-addr", &api])
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success()
            && let Ok(rows) = serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        {
            let live: BTreeSet<&str> = rows
                .iter()
                .filter(|r| r["requestRate"].as_f64().is_some_and(|v| v > 0.0))
                .filter_map(|r| r["name"].as_str())
                .collect();
            let failing = rows
                .iter()
                .any(|r| r["successRate"].as_f64().is_some_and(|v| v < 0.99));
            let slow = rows
                .iter()
                .any(|r| r["p99LatencyMs"].as_f64().is_some_and(|v| v > 100.0));
            if live == expected && failing && slow {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }

    // The README's tap command prints live requests.
    let (ns, name, _) = DEMO_LAYOUT[0];
    let mut tap = Command::new(bin)
        .args(["tap", "deploy", &format!("{ns}/{name}"), "--api-addr", &api])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = BufReader::new(tap.stdout.take().unwrap()).lines().next();
    let _ = tap.kill();
    let _ = tap.wait();
    let first = first.expect("a tap event").unwrap();
    assert!(
        first.starts_with("req id=") && first.contains(&format!(":authority={name}.{ns}.svc")),
        "{first}"
    );
    drop(demo);
}

/// `conduit edges deployments` against the demo: exactly the demo's call
/// graph, every edge with live traffic; and `conduit check` all green.
#[test]
fn demo_edges_are_its_call_graph_and_check_is_green() {
    use conduit::simulate::fleet::DEMO_CALLS;
    let bin = env!("CARGO_BIN_EXE_conduit");
    let started = Instant::now();
    let demo = Demo::start();
    let name = |i: usize| format!("{}/{}", DEMO_LAYOUT[i].0, DEMO_LAYOUT[i].1);
    let expected: BTreeSet<(String, String)> = DEMO_CALLS
        .iter()
        .map(|&(a, b)| (name(a), name(b)))
        .collect();
    let mut last = String::new();
    loop {
        assert!(
            started.elapsed() < DEADLINE,
            "edges never matched the demo's calls {expected:?}; last answer: {last}"
        );
        let out = Command::new(bin)
            .args(["edges", "deploy", "-o", "json", "--api-addr", &demo.api])
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success()
            && let Ok(rows) = serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        {
            let live: BTreeSet<(String, String)> = rows
                .iter()
                .filter(|r| r["requestRate"].as_f64().is_some_and(|v| v > 0.0))
                .map(|r| {
                    (
                        r["src"].as_str().unwrap_or_default().to_string(),
                        r["dst"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            if live == expected && rows.len() == expected.len() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let out = Command::new(bin)
        .args(["check", "--api-addr", &demo.api])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.ends_with("Status check results are √\n"), "{text}");
    assert!(!text.contains('×') && !text.contains('‼'), "{text}");

    // get deployments: every demo deployment, all its pods reporting (the
    // edges can be complete before the last pod of a deployment reported,
    // so this is polled within the same deadline).
    let want: BTreeSet<(String, String)> = DEMO_LAYOUT
        .iter()
        .map(|(ns, name, pods)| (format!("{ns}/{name}"), format!("{pods}/{pods}")))
        .collect();
    loop {
        let out = Command::new(bin)
            .args(["get", "deployments", "--api-addr", &demo.api])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[0],
            ["NAME", "RUNNING", "MESHED", "LAST", "REPORT"],
            "{text}"
        );
        let rows: BTreeSet<(String, String)> = lines[1..]
            .iter()
            .map(|cells| (cells[0].to_string(), cells[2].to_string()))
            .collect();
        if rows == want {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "{rows:?} != {want:?}: {text}");
        std::thread::sleep(Duration::from_millis(250));
    }

    // tap -o json: one proto3 JSON TapEvent per line; an unknown method
    // is refused at once, on one line.
    let (ns, name, _) = DEMO_LAYOUT[0];
    let mut tap = Command::new(bin)
        .args([
            "tap",
            "deploy",
            &format!("{ns}/{name}"),
            "-o",
            "json",
            "--method",
            "get",
            "--api-addr",
            &demo.api,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = BufReader::new(tap.stdout.take().unwrap()).lines().next();
    let _ = tap.kill();
    let _ = tap.wait();
    let first = first.expect("a tap event").unwrap();
    let event: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        event["http"]["requestInit"]["method"]["registered"], "GET",
        "{first}"
    );
    let out = Command::new(bin)
        .args([
            "tap",
            "deploy",
            &format!("{ns}/{name}"),
            "--method",
            "FETCH",
        ])
        .args(["--api-addr", &demo.api])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "conduit: unknown --method \"FETCH\": use one of GET, POST, PUT, DELETE, PATCH, \
         OPTIONS, CONNECT, HEAD, TRACE\n"
    );

    // dashboard --show url: the address, nothing opened.
    let out = Command::new(bin)
        .args(["dashboard", "--show", "url", "--web-addr", &demo.web])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Dashboard available at:\nhttp://{}/\n", demo.web)
    );
    drop(demo);
}
