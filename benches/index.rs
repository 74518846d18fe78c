//! The cluster-metadata index at cluster scale: how fast the watchers can
//! apply updates, how long an IP lookup takes, and whether lookups slow
//! down while a writer applies updates as fast as it can (they must not:
//! readers take a snapshot and never wait on a writer) — alone, and inside
//! the ingester running flat out on medium reports whose every IP is looked
//! up in a 100k-pod index.
//!
//! Addresses come from 198.18.0.0/15, the range reserved for benchmarks
//! (131,072 addresses: room for the largest sweep).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conduit::ingest::{Config, Health, Ingester};
use conduit::k8s::Index;
use conduit::simulate::{Shape, build_report, fleet};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fixtures::{PodFixture, mk_pod, mk_replica_set};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use prost::Message as _;

#[path = "../tests/support/k8s.rs"]
mod fixtures;

/// Cluster sizes swept: a large namespace-scoped install, and the 100k-pod
/// cluster the issue sets as the bar.
const POD_COUNTS: [usize; 2] = [10_000, 100_000];
/// Pods per ReplicaSet (and ReplicaSets are one per Deployment).
const PODS_PER_RS: usize = 10;
/// Namespaces the pods are spread over.
const NAMESPACES: usize = 50;
/// IPs looked up in turn, so lookups are not served from one cache line.
const LOOKUP_IPS: usize = 4096;
/// The update rate of a rollout of every pod of a 100k-pod cluster within a
/// few minutes (about five events per pod replaced): far above steady state.
const ROLLOUT_UPDATES_PER_SEC: u32 = 5_000;
/// Updates applied per published snapshot in the batched update bench: what
/// a watcher applies after a burst of events.
const BATCH: usize = 64;

fn pod_ip(i: usize) -> IpAddr {
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    IpAddr::V4(Ipv4Addr::from(base + i as u32))
}

fn namespace(i: usize) -> String {
    format!("ns-{}", (i / PODS_PER_RS) % NAMESPACES)
}

/// Pod `i` of ReplicaSet `web-{i / PODS_PER_RS}`, revision `rev` (a label
/// that changes on every update, as a MODIFIED event's status or labels do).
fn nth_pod(i: usize, rev: u64) -> Pod {
    let rs = format!("web-{}", i / PODS_PER_RS);
    let name = format!("{rs}-{i}");
    mk_pod(&namespace(i), &name, &pod_ip(i).to_string(), Some(&rs))
        .with_label("rev", &rev.to_string())
}

/// ReplicaSet `web-{r}`, owned by Deployment `deploy-{r}`.
fn nth_replica_set(r: usize) -> ReplicaSet {
    let deployment = format!("deploy-{r}");
    mk_replica_set(
        &namespace(r * PODS_PER_RS),
        &format!("web-{r}"),
        Some(&deployment),
    )
}

fn mk_index(pods: usize) -> Arc<Index> {
    let index = Arc::new(Index::new());
    index.batch(|b| {
        b.reset_replica_sets((0..pods.div_ceil(PODS_PER_RS)).map(nth_replica_set));
        b.reset_pods((0..pods).map(|i| nth_pod(i, 0)));
    });
    index
}

fn lookup_ips(pods: usize) -> Vec<IpAddr> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..LOOKUP_IPS)
        .map(|_| pod_ip(rng.usize(0..pods)))
        .collect()
}

fn update(c: &mut Criterion) {
    let mut group = c.benchmark_group("index/update");
    for pods in POD_COUNTS {
        let index = mk_index(pods);
        let mut rng = fastrand::Rng::with_seed(1);
        let mut rev = 0;
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("modify", pods), &pods, |b, &pods| {
            b.iter(|| {
                rev += 1;
                index.apply_pod(nth_pod(rng.usize(0..pods), rev));
            })
        });
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_with_input(
            BenchmarkId::new(format!("modify_batch_{BATCH}"), pods),
            &pods,
            |b, &pods| {
                b.iter(|| {
                    rev += 1;
                    index.batch(|batch| {
                        for _ in 0..BATCH {
                            batch.apply_pod(nth_pod(rng.usize(0..pods), rev));
                        }
                    })
                })
            },
        );
        // A pod replaced by a new one on the same IP: delete, then add.
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("replace", pods), &pods, |b, &pods| {
            b.iter(|| {
                rev += 1;
                let i = rng.usize(0..pods);
                let old = nth_pod(i, rev);
                index.delete_pod(&old);
                index.apply_pod(old);
            })
        });
    }
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("index/lookup");
    group.throughput(Throughput::Elements(1));
    for pods in POD_COUNTS {
        let index = mk_index(pods);
        let ips = lookup_ips(pods);
        group.bench_with_input(BenchmarkId::new("idle", pods), &ips, |b, ips| {
            let mut n = 0;
            b.iter(|| {
                n = (n + 1) % ips.len();
                let snapshot = index.load();
                black_box(snapshot.workload_ref_by_ip(&ips[n]).is_some())
            })
        });

        // The same lookups while another thread applies updates: at a
        // whole-cluster rollout's rate, then flat out.
        let batched = format!("under_max_writes_batch_{BATCH}");
        let writers = [
            (
                "under_rollout_writes",
                Writes::rate(ROLLOUT_UPDATES_PER_SEC),
            ),
            ("under_max_writes", Writes::flat_out(1)),
            (batched.as_str(), Writes::flat_out(BATCH)),
        ];
        for (name, writes) in writers {
            let writer = Writer::start_with(index.clone(), pods, writes);
            group.bench_with_input(BenchmarkId::new(name, pods), &ips, |b, ips| {
                let mut n = 0;
                b.iter(|| {
                    n = (n + 1) % ips.len();
                    let snapshot = index.load();
                    black_box(snapshot.workload_ref_by_ip(&ips[n]).is_some())
                })
            });
            let (updates, elapsed) = writer.stop();
            eprintln!(
                "index/lookup/{name}/{pods}: the writer applied {updates} updates in {elapsed:.1?} \
                 ({:.0} updates/s) during the lookups",
                updates as f64 / elapsed.as_secs_f64()
            );
        }
    }
    group.finish();
}

/// Distinct medium reports cycled through by the ingesting thread.
const INGEST_REPORTS: usize = 64;

/// Medium reports between the index's pods: a 100k-pod fleet's reports,
/// renumbered onto the bench's addresses.
fn reports_for(pods: usize) -> Vec<Vec<u8>> {
    let mut fleet = fleet(pods, pods / PODS_PER_RS, "sim", 1);
    for (i, pod) in fleet.pods.iter_mut().enumerate() {
        let IpAddr::V4(ip) = pod_ip(i) else {
            unreachable!("bench addresses are IPv4")
        };
        pod.ip = ip;
    }
    let mut rng = fastrand::Rng::with_seed(5);
    (0..INGEST_REPORTS)
        .map(|i| build_report(&fleet, Shape::Medium, i % pods, &mut rng).encode_to_vec())
        .collect()
}

/// The ingester at full load (this thread: decode from the wire bytes,
/// enrich through the index, aggregate, one medium report per iteration) with nothing else,
/// then beside a writer at a rollout's rate, and flat out: one snapshot per
/// update, or per batch of [`BATCH`] as the watchers publish a burst.
fn ingest_beside_writes(c: &mut Criterion) {
    let pods = 100_000;
    let mut group = c.benchmark_group("index/ingest_medium_100k_pods");
    group.throughput(Throughput::Elements(1));
    let index = mk_index(pods);
    let reports = reports_for(pods);
    let ingester = Ingester::new(
        Config::default(),
        Health::register(&prometheus::Registry::new()).unwrap(),
    );
    for r in &reports {
        ingester.ingest_bytes(r, &**index.load()).unwrap();
    }
    let batched = format!("max_writes_batch_{BATCH}");
    // The controls write the same way into another index of the same size,
    // one the ingester never reads: what the machine's two cores and
    // shared caches cost, apart from anything the ingester's lookups owe
    // to the writes they see.
    let elsewhere = mk_index(pods);
    let writers = [
        ("no_writer", None),
        (
            "rollout_writes",
            Some((&index, Writes::rate(ROLLOUT_UPDATES_PER_SEC))),
        ),
        (
            "control_rollout_writes_elsewhere",
            Some((&elsewhere, Writes::rate(ROLLOUT_UPDATES_PER_SEC))),
        ),
        ("max_writes", Some((&index, Writes::flat_out(1)))),
        (
            "control_max_writes_elsewhere",
            Some((&elsewhere, Writes::flat_out(1))),
        ),
        (batched.as_str(), Some((&index, Writes::flat_out(BATCH)))),
    ];
    for (name, writes) in writers {
        let writer = writes.map(|(target, w)| Writer::start_with(target.clone(), pods, w));
        group.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                let bytes = &reports[i % reports.len()];
                i += 1;
                ingester.ingest_bytes(bytes, &**index.load()).unwrap();
            })
        });
        if let Some(writer) = writer {
            let (updates, elapsed) = writer.stop();
            eprintln!(
                "index/ingest_medium_100k_pods/{name}: the writer applied {updates} updates in \
                 {elapsed:.1?} ({:.0} updates/s) while the ingester ran",
                updates as f64 / elapsed.as_secs_f64()
            );
        }
    }
    group.finish();
}

/// How a [`Writer`] writes: at a rate, or flat out; `batch` updates per
/// published snapshot.
#[derive(Clone, Copy)]
struct Writes {
    rate: Option<u32>,
    batch: usize,
}

impl Writes {
    fn rate(per_sec: u32) -> Self {
        Self {
            rate: Some(per_sec),
            batch: 1,
        }
    }

    fn flat_out(batch: usize) -> Self {
        Self { rate: None, batch }
    }
}

/// A thread applying pod updates at `rate` per second, or as fast as it can.
struct Writer {
    stop: Arc<AtomicBool>,
    updates: Arc<AtomicU64>,
    started: Instant,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    fn start_with(index: Arc<Index>, pods: usize, writes: Writes) -> Self {
        let Writes { rate, batch } = writes;
        let stop = Arc::new(AtomicBool::new(false));
        let updates = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let thread = {
            let (stop, updates) = (stop.clone(), updates.clone());
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(2);
                let mut rev = 1_000_000;
                let interval = rate.map(|r| Duration::from_secs(1) / r);
                let mut due = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    rev += 1;
                    if batch == 1 {
                        index.apply_pod(nth_pod(rng.usize(0..pods), rev));
                    } else {
                        index.batch(|b| {
                            for _ in 0..batch {
                                b.apply_pod(nth_pod(rng.usize(0..pods), rev));
                            }
                        });
                    }
                    updates.fetch_add(batch as u64, Ordering::Relaxed);
                    if let Some(interval) = interval {
                        due += interval;
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    }
                }
            })
        };
        Writer {
            stop,
            updates,
            started,
            thread,
        }
    }

    fn stop(self) -> (u64, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.started.elapsed();
        self.thread
            .join()
            .expect("the writer thread does not panic");
        (self.updates.load(Ordering::Relaxed), elapsed)
    }
}

criterion_group!(benches, update, lookup, ingest_beside_writes);
criterion_main!(benches);
