//! Ingests one shape of report in a loop, for a profiler: the same fleet,
//! reports and steady state as `benches/ingest.rs`'s `report/ingest_bytes`,
//! without criterion's own work around it.
//!
//! ```text
//! cargo build --release --example ingest_profile
//! valgrind --tool=callgrind target/release/examples/ingest_profile small 100000
//! target/release/examples/ingest_profile medium 100000 decode   # the decode alone
//! ```
//!
//! Callgrind counts instructions, which repeat exactly for the same binary
//! and input whatever else the machine does: divide its total by the
//! report count (set-up is under 1% of it at 100,000 small reports).
//! Without a profiler it prints the wall time per report.

use std::sync::Arc;
use std::time::Instant;

use conduit::ingest::flat::FlatReport;
use conduit::ingest::{Config, Health, Ingester};
use conduit::k8s::{Index, cluster_file};
use conduit::simulate::{Shape, build_report, cluster_objects, fleet};
use prost::Message;

/// Distinct reports cycled through, as in the benches.
const REPORTS: usize = 64;

fn main() {
    let mut args = std::env::args().skip(1);
    let shape: Shape = args
        .next()
        .map_or(Ok(Shape::Small), |s| s.parse())
        .unwrap_or_else(|e| panic!("{e}"));
    let n: usize = args
        .next()
        .map_or(100_000, |s| s.parse().expect("a report count"));
    let decode_only = match args.next().as_deref() {
        None => false,
        Some("decode") => true,
        Some(other) => panic!("unknown mode {other:?}: expected decode"),
    };

    let fleet = fleet(100, 30, "sim", 1);
    let index = Arc::new(Index::new());
    cluster_file::apply(cluster_objects(&fleet), &index);
    let mut rng = fastrand::Rng::with_seed(7);
    let reports: Vec<Vec<u8>> = (0..REPORTS)
        .map(|i| build_report(&fleet, shape, i % fleet.pods.len(), &mut rng).encode_to_vec())
        .collect();
    let health = Health::register(&prometheus::Registry::new()).expect("a fresh registry");
    let ingester = Ingester::new(Config::default(), health);
    // Steady state: every label set of the cycle exists already.
    let snapshot = index.snapshot();
    for r in &reports {
        ingester
            .ingest_bytes(r, &*snapshot)
            .expect("a valid report");
    }

    if decode_only {
        let mut flat = FlatReport::default();
        let started = Instant::now();
        for i in 0..n {
            flat.decode(&reports[i % REPORTS]).expect("a valid report");
        }
        let per_report = started.elapsed().as_secs_f64() / n as f64;
        println!(
            "{} reports of shape {} decoded: {:.3} µs per report",
            n,
            shape.as_str(),
            per_report * 1e6
        );
        return;
    }

    let started = Instant::now();
    for i in 0..n {
        let snapshot = index.load();
        ingester
            .ingest_bytes(&reports[i % REPORTS], &**snapshot)
            .expect("a valid report");
    }
    let per_report = started.elapsed().as_secs_f64() / n as f64;
    println!(
        "{} reports of shape {}: {:.3} µs per report",
        n,
        shape.as_str(),
        per_report * 1e6
    );
}
