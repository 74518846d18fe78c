//! `conduit top` against `conduit run --demo`, both the real binary, off a
//! terminal: the demo's failing route (checkout/payments' POST, a quarter
//! of it answered 500) shows a success rate below 100%, its slow route
//! (catalog/search's `/api/search/item`, ~200 ms) a worst latency to
//! match, every row named by pod (an address outside the mesh by its IP);
//! `--for`, Ctrl-C and a closed stdout end it with status 0, a bad flag or
//! target with one line and status 1.

#[path = "support/demo.rs"]
mod demo;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use demo::Demo;

const HEADER: [&str; 9] = [
    "SOURCE",
    "DESTINATION",
    "METHOD",
    "PATH",
    "COUNT",
    "BEST",
    "WORST",
    "LAST",
    "SUCCESS_RATE",
];

/// How long a top runs: enough requests of the failing route (a fifth of
/// payments' ~15 rps) that one of them fails but for a 1-in-10⁴ chance.
const RUN_FOR: &str = "12s";

/// Past `--for`, how long the process may take to print and exit.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

fn conduit(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_conduit"));
    command.args(args).env_remove("RUST_LOG");
    command
}

/// The pods of the demo by name, with their IPs (`get pods -o json`).
fn pods(api: &str) -> BTreeMap<String, String> {
    let out = conduit(&["get", "pods", "-o", "json", "--api-addr", api])
        .output()
        .unwrap();
    assert!(out.status.success());
    let pods: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    pods.iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["podIP"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// One printed table: its rows as maps from the header's names.
type Block = Vec<BTreeMap<&'static str, String>>;

/// The last block of `text` (blocks are separated by a blank line),
/// after checking its header is the columns in order.
fn last_block(text: &str) -> Block {
    let block = text.trim_end().rsplit("\n\n").next().unwrap_or_default();
    let mut lines = block.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, HEADER, "{text}");
    lines
        .filter(|l| !l.starts_with('('))
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cells.len(), HEADER.len(), "{l}");
            HEADER
                .iter()
                .zip(cells)
                .map(|(h, c)| (*h, c.to_string()))
                .collect()
        })
        .collect()
}

fn millis(cell: &str) -> f64 {
    cell.strip_suffix("ms").unwrap().parse().unwrap()
}

fn percent(cell: &str) -> f64 {
    cell.strip_suffix('%').unwrap().parse().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `top` for [`RUN_FOR`], waited on.
fn top_for(api: &str, args: &[&str]) -> std::thread::JoinHandle<(Output, Duration)> {
    let mut argv = vec!["top", "--for", RUN_FOR, "--rows", "50", "--api-addr", api];
    argv.extend_from_slice(args);
    let mut command = conduit(&argv);
    std::thread::spawn(move || {
        let started = Instant::now();
        let out = command.output().unwrap();
        (out, started.elapsed())
    })
}

#[test]
fn top_shows_the_demos_failing_and_slow_routes_by_pod() {
    let demo = Demo::start();
    let pods = pods(&demo.api);
    let payments = top_for(&demo.api, &["deploy", "checkout/payments"]);
    let search = top_for(
        &demo.api,
        &[
            "deploy",
            "search",
            "-n",
            "catalog",
            "--path",
            "/api/search/item",
        ],
    );
    let limit = Duration::from_secs(12) + EXIT_WITHIN;

    let (out, took) = payments.join().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(took < limit, "{took:?}");
    let rows = last_block(&stdout);
    assert!(!rows.is_empty(), "{stdout}");
    for row in &rows {
        // Pod names, not IPs: the orders pods call the payments pods.
        for (column, prefix) in [
            ("SOURCE", "checkout/orders-"),
            ("DESTINATION", "checkout/payments-"),
        ] {
            assert!(
                row[column].starts_with(prefix) && pods.contains_key(&row[column]),
                "{column} {}: {stdout}",
                row[column]
            );
        }
        assert!(row["COUNT"].parse::<u64>().unwrap() > 0, "{stdout}");
        assert!(
            millis(&row["BEST"]) <= millis(&row["LAST"])
                && millis(&row["LAST"]) <= millis(&row["WORST"]),
            "{stdout}"
        );
    }
    let counts: Vec<u64> = rows.iter().map(|r| r["COUNT"].parse().unwrap()).collect();
    assert!(counts.is_sorted_by(|a, b| a >= b), "{stdout}");
    let failing: Vec<_> = rows
        .iter()
        .filter(|r| r["METHOD"] == "POST" && r["PATH"] == "/api/payments")
        .collect();
    assert!(!failing.is_empty(), "{stdout}");
    assert!(
        failing.iter().any(|r| percent(&r["SUCCESS_RATE"]) < 100.0),
        "the failing route never failed: {stdout}"
    );

    let (out, _) = search.join().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rows = last_block(&stdout);
    assert!(!rows.is_empty(), "{stdout}");
    for row in &rows {
        // The filter holds, and the route is slow: ~200 ms at its median.
        assert_eq!(row["PATH"], "/api/search/item", "{stdout}");
        assert!(row["SOURCE"].starts_with("catalog/catalog-"), "{stdout}");
        assert!(
            row["DESTINATION"].starts_with("catalog/search-"),
            "{stdout}"
        );
    }
    assert!(
        rows.iter().any(|r| millis(&r["WORST"]) > 100.0),
        "the slow route was fast: {stdout}"
    );

    // A method no proxy reports is refused before anything is asked; an
    // unknown deployment is the API's answer; each one line and status 1.
    let out = conduit(&["top", "deploy", "checkout/payments", "--method", "FETCH"])
        .args(["--api-addr", &demo.api])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out).1,
        "conduit: unknown --method \"FETCH\": use one of GET, POST, PUT, DELETE, PATCH, \
         OPTIONS, CONNECT, HEAD, TRACE\n"
    );
    let out = conduit(&["top", "deploy", "checkout/nope", "--api-addr", &demo.api])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout, "");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("conduit: the public API at ")
            && stderr.contains("deployment checkout/nope not found"),
        "{stderr}"
    );
    drop(demo);
}

/// Lines of a child's stdout as they come, on a channel.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for `child` to exit within [`EXIT_WITHIN`].
fn exits(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + EXIT_WITHIN;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("conduit top did not exit within {EXIT_WITHIN:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn top_ends_cleanly_on_ctrl_c_and_on_a_closed_stdout() {
    let demo = Demo::start();
    let spawn = || {
        conduit(&["top", "deploy", "storefront/web", "--api-addr", &demo.api])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // SIGINT (Ctrl-C) once a row is on the table: status 0 and the final
    // table.
    let mut top = spawn();
    let lines = lines_of(&mut top);
    let first_row = Instant::now() + EXIT_WITHIN;
    loop {
        let line = lines
            .recv_timeout(first_row.saturating_duration_since(Instant::now()))
            .expect("a row within the deadline");
        if line.contains(" storefront/web-") {
            break;
        }
    }
    let sent = Command::new("kill")
        .args(["-INT", &top.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = exits(&mut top);
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.iter().collect();
    let rest = rest.join("\n");
    let rows = last_block(&rest);
    assert!(!rows.is_empty(), "{rest}");
    // The front door's callers are outside the mesh: no pod has their
    // IP, so it is shown as it is.
    let ingress = conduit::simulate::traffic::INGRESS_IP.to_string();
    assert!(
        rows.iter()
            .all(|r| r["SOURCE"] == ingress && r["DESTINATION"].starts_with("storefront/web-")),
        "{rest}"
    );

    // `| head -1`: the reader goes away, top notices at its next table.
    let mut top = spawn();
    let lines = lines_of(&mut top);
    let header = lines.recv_timeout(EXIT_WITHIN).expect("a header");
    assert_eq!(header.split_whitespace().collect::<Vec<_>>(), HEADER);
    drop(lines);
    let status = exits(&mut top);
    assert!(status.success(), "{status:?}");
    drop(demo);
}
