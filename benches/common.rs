//! Shared set-up for the ingest benches: a simulated fleet, its index, and
//! pre-encoded reports of each shape.
#![allow(dead_code)]

use std::sync::Arc;

use conduit::k8s::{Index, cluster_file};
use conduit::simulate::{Fleet, Shape, build_report, cluster_yaml, fleet};
use prost::Message;

pub const PODS: usize = 100;
pub const DEPLOYMENTS: usize = 30;
/// Distinct reports cycled through, so steady state is measured without
/// replaying one report from cache.
pub const REPORTS: usize = 64;

pub struct Setup {
    pub fleet: Fleet,
    pub index: Arc<Index>,
}

pub fn setup() -> Setup {
    let fleet = fleet(PODS, DEPLOYMENTS, "sim", 1);
    let index = Arc::new(Index::new());
    let objects = cluster_file::parse(&cluster_yaml(&fleet)).expect("the simulated cluster parses");
    cluster_file::apply(objects, &index);
    Setup { fleet, index }
}

pub fn encoded_reports(fleet: &Fleet, shape: Shape, n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|i| build_report(fleet, shape, i % fleet.pods.len(), &mut rng).encode_to_vec())
        .collect()
}
