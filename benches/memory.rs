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
use conduit::simulate::{Shape, build_report};

const TARGET_SERIES: usize = 100_000;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm has a resident field");
    pages * 4096
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let setup = common::setup();
    let snapshot = setup.index.snapshot();
    let mut rng = fastrand::Rng::with_seed(11);
    // Build the reports first so their memory is not counted.
    let mut reports: Vec<ReportRequest> = Vec::new();
    let health = Health::register(&prometheus::Registry::new()).unwrap();
    let ingester = Ingester::new(
        Config {
            max_series: usize::MAX,
            ..Config::default()
        },
        health,
    );
    let before = resident_bytes();
    let mut sent = 0usize;
    while ingester.request_series() < TARGET_SERIES {
        if reports.is_empty() {
            // Generated in batches outside the measured growth as far as
            // possible: the batch is dropped before the next measurement.
            reports = (0..1000)
                .map(|i| {
                    build_report(
                        &setup.fleet,
                        Shape::Medium,
                        i % setup.fleet.pods.len(),
                        &mut rng,
                    )
                })
                .collect();
        }
        let report = reports.pop().unwrap();
        ingester.ingest(&report, &*snapshot).unwrap();
        sent += 1;
    }
    drop(reports);
    let after = resident_bytes();
    let series = ingester.request_series();
    let labels = ingester.label_bytes();
    let growth = after.saturating_sub(before);
    let per_series = growth.saturating_sub(labels) as f64 / series as f64;
    println!("reports ingested:            {sent}");
    println!("request label sets:          {series}");
    println!(
        "all live label sets:         {}",
        ingester.live_label_sets()
    );
    println!(
        "resident growth:             {:.1} MiB",
        growth as f64 / (1 << 20) as f64
    );
    println!(
        "label text:                  {:.1} MiB",
        labels as f64 / (1 << 20) as f64
    );
    println!("bytes per series (no labels): {per_series:.0}   (bar: < 400)");
}
