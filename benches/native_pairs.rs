//! `-native-histograms` on against off, paired finely: two ingesters, one
//! with the flag and one without, take the same medium reports in
//! alternating batches (A B, then B A, …), and each pair of batches gives
//! one on/off ratio. The median ratio is the figure the bar reads (on
//! within 10% of off): batches a few milliseconds long, side by side, see
//! the same machine, where criterion's separate benchmarks, seconds apart,
//! also measure whatever else the machine did in between.
//!
//! Run: `cargo bench --bench native_pairs` (without `--bench`, as
//! `cargo test --all-targets` runs it, a few pairs only, to keep it
//! working).

mod common;

use std::time::{Duration, Instant};

use conduit::ingest::Ingester;
use conduit::k8s::Index;
use conduit::simulate::Shape;

/// Reports per batch: about 5 ms of ingest, long against the timer and
/// short against the machine's swings.
const BATCH: usize = 100;
/// Pairs measured with `--bench`.
const PAIRS: usize = 400;

fn batch(ingester: &Ingester, index: &Index, reports: &[Vec<u8>], next: &mut usize) -> Duration {
    let start = Instant::now();
    for _ in 0..BATCH {
        let snapshot = index.load();
        ingester
            .ingest_bytes(&reports[*next % reports.len()], &**snapshot)
            .unwrap();
        *next += 1;
    }
    start.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let pairs = if std::env::args().any(|a| a == "--bench") {
        PAIRS
    } else {
        4
    };
    let setup = common::setup();
    let reports = common::encoded_reports(&setup.fleet, Shape::Medium, common::REPORTS, 7);
    let (off, on) = (common::ingester(false), common::ingester(true));
    // Steady state: every label set of the cycle exists in both.
    let snapshot = setup.index.snapshot();
    for r in reports.iter().cycle().take(reports.len() * 20) {
        off.ingest_bytes(r, &*snapshot).unwrap();
        on.ingest_bytes(r, &*snapshot).unwrap();
    }
    let (mut next_off, mut next_on) = (0, 0);
    let (mut ratios, mut offs, mut ons) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..pairs {
        let (t_off, t_on) = if pair % 2 == 0 {
            let t_off = batch(&off, &setup.index, &reports, &mut next_off);
            (t_off, batch(&on, &setup.index, &reports, &mut next_on))
        } else {
            let t_on = batch(&on, &setup.index, &reports, &mut next_on);
            (batch(&off, &setup.index, &reports, &mut next_off), t_on)
        };
        ratios.push(t_on.as_secs_f64() / t_off.as_secs_f64());
        offs.push(t_off.as_secs_f64() * 1e6 / BATCH as f64);
        ons.push(t_on.as_secs_f64() * 1e6 / BATCH as f64);
    }
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "native_pairs: {pairs} pairs of {BATCH} medium reports; median off {:.1} µs, \
         on {:.1} µs per report; on/off median {:.3}× (quartiles {:.3}–{:.3}×)",
        median(offs),
        median(ons),
        median(ratios),
        sorted[sorted.len() / 4],
        sorted[sorted.len() * 3 / 4],
    );
}
