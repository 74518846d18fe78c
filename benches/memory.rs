//! Memory per live series: medium-shape reports from the simulated fleet are
//! ingested until 100,000 request label sets are live; the growth of the
//! process' resident memory, less the bytes of label text, is divided by the
//! number of request label sets (each with its response classes and latency
//! histogram; the tcp series created along the way are charged to them too).
//! The bar: under 400 bytes per series beyond its label strings.
//!
//! Run: `cargo bench --bench memory`

mod common;

use conduit::ingest::{Config, Health, Ingester};
use conduit::proto::proxy::telemetry::ReportRequest;
use conduit::simulate::Shape;
use prost::Message;

const TARGET_SERIES: usize = 100_000;
/// Enough medium reports to create the target number of label sets.
const REPORTS: usize = 14_000;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm has a resident field");
    pages * 4096
}

/// Set in the child processes: which store to measure.
const MODE_ENV: &str = "CONDUIT_MEMORY_BENCH_MODE";

fn main() {
    // Each measurement runs in a fresh process, so memory freed by one can
    // not be reused by the next and hide its growth.
    match std::env::var(MODE_ENV).as_deref() {
        Ok("series") => measure(false, false),
        Ok("series-native") => measure(false, true),
        Ok("with-stat") => measure(true, false),
        _ => {
            for (mode, what) in [
                ("series", "the series store (as with -prometheus-url)"),
                (
                    "series-native",
                    "the series store with -native-histograms (their buckets' cost)",
                ),
                (
                    "with-stat",
                    "the series store and the embedded Stat store (the default)",
                ),
            ] {
                println!("== {what}");
                let out = std::process::Command::new(std::env::current_exe().unwrap())
                    .env(MODE_ENV, mode)
                    .output()
                    .expect("the bench re-runs itself");
                print!("{}", String::from_utf8_lossy(&out.stdout));
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

fn measure(embedded_stat: bool, native_histograms: bool) {
    let setup = common::setup();
    let snapshot = setup.index.snapshot();
    // Every report is encoded before the first measurement and decoded one
    // at a time while ingesting, so the only memory that stays is the store's.
    let encoded = common::encoded_reports(&setup.fleet, Shape::Medium, REPORTS, 11);
    // Kept alive until the end: freed report buffers would be reused by
    // the store and hide its growth.
    let mut next = encoded.iter();
    let health = Health::register(&prometheus::Registry::new()).unwrap();
    let ingester = Ingester::new(
        Config {
            max_series: usize::MAX,
            embedded_stat,
            native_histograms,
            ..Config::default()
        },
        health,
    );
    let before = resident_bytes();
    let mut sent = 0usize;
    while ingester.request_series() < TARGET_SERIES {
        let bytes = next.next().expect("enough reports to reach the target");
        let report = ReportRequest::decode(&bytes[..]).unwrap();
        ingester
            .ingest_bytes(&report.encode_to_vec(), &*snapshot)
            .unwrap();
        sent += 1;
    }
    let after = resident_bytes();
    let series = ingester.request_series();
    let live = ingester.live_label_sets();
    let labels = ingester.label_bytes();
    let growth = after.saturating_sub(before) as f64;
    let beyond_labels = growth - labels as f64;
    println!("reports ingested:              {sent}");
    println!("request label sets:            {series}");
    println!("all live label sets:           {live} (with response classes and tcp series)");
    println!(
        "resident growth:               {:.1} MiB",
        growth / (1 << 20) as f64
    );
    println!(
        "label text:                    {:.1} MiB",
        labels as f64 / (1 << 20) as f64
    );
    println!(
        "bytes per request label set:   {:.0}   (bar: < 400 for the series store; everything beyond label text, tcp series included)",
        beyond_labels / series as f64
    );
    println!(
        "bytes per live label set:      {:.0}",
        beyond_labels / live as f64
    );
    drop(encoded);
}
