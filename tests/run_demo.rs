//! `conduit run --demo` as a newcomer starts it: the real binary, then
//! `conduit stat deployments` against it until every demo deployment shows
//! live traffic (with the failing and the slow route visible), and
//! `conduit tap` showing live requests.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conduit::simulate::fleet::DEMO_LAYOUT;

/// What the README promises: numbers within seconds.
const DEADLINE: Duration = Duration::from_secs(15);

/// Kills the demo when the test ends, however it ends.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn demo_shows_every_deployment_with_live_rates() {
    let bin = env!("CARGO_BIN_EXE_conduit");
    let mut child = Command::new(bin)
        .args([
            "run",
            "--demo",
            "--telemetry-addr=127.0.0.1:0",
            "--metrics-addr=127.0.0.1:0",
            "--api-addr=127.0.0.1:0",
            "--api-metrics-addr=127.0.0.1:0",
            "--tap-addr=127.0.0.1:0",
            "--tap-metrics-addr=127.0.0.1:0",
            "--destination-addr=127.0.0.1:0",
            "--destination-metrics-addr=127.0.0.1:0",
            "--proxy-api-addr=127.0.0.1:0",
            "--proxy-api-metrics-addr=127.0.0.1:0",
            "--tap-port=0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("conduit runs");
    let stdout = child.stdout.take().unwrap();
    let demo = Demo(child);
    let started = Instant::now();
    // The banner names the bound public-api address; the rest of its output
    // is drained for as long as it runs.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("public-api: http://") {
                let _ = tx.send(rest.trim_end_matches("/api/v1/").to_string());
            }
        }
    });
    let api = rx
        .recv_timeout(DEADLINE)
        .expect("the demo prints its public-api address");

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
