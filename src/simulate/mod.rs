//! `conduit simulate-proxy`: a fleet of simulated proxies reporting to the
//! telemetry service's `Report` over real gRPC, for demos, end-to-end tests
//! and load benchmarks.
//!
//! [`fleet`] makes the pods (and the cluster file that lets the ingester
//! enrich them: Pod → ReplicaSet → Deployment), [`report`] the reports of
//! each shape, [`client`] sends them, [`stats`] tallies and prints. The
//! runner here paces the fleet (`--rate`, or as fast as `--concurrency`
//! allows), bounds it in time and count, and stops on the shutdown signal.

pub mod client;
pub mod fleet;
pub mod report;
pub mod stats;
pub mod tap;
pub mod traffic;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use prost::Message as _;
use prost::bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tracing::Instrument as _;

use crate::core::addr::client_uri;
use crate::core::error_chain;
use crate::core::units::parse_duration;
use crate::core::{Shutdown, ShutdownHandle};
use crate::proto::proxy::telemetry::report_request;

pub use client::{EncodedReport, ReportClient};
pub use fleet::{Fleet, SimDeployment, SimPod, cluster_objects, cluster_yaml, fleet};
pub use report::{Shape, build_body, build_report, header};
pub use stats::{Stats, Summary};

/// The original proxy reports every 10 s; without `--rate` each simulated
/// pod does the same.
const REPORT_INTERVAL_SECS: f64 = 10.0;
/// Default in-flight reports: two per pod, capped so a big fleet does not
/// open thousands of streams at once.
const CONCURRENCY_PER_POD: usize = 2;
const CONCURRENCY_CAP: usize = 256;
/// Default HTTP/2 connections: real proxies each hold their own; a few are
/// enough to spread the server's per-connection work over a small
/// machine's cores.
const CONNECTIONS_CAP: usize = 4;
/// Distinct pre-encoded report bodies cycled through, within a memory budget
/// (large reports are ~100 KiB each).
const BODY_POOL_MAX: usize = 128;
const BODY_POOL_BYTES: usize = 32 << 20;
/// Distinct reports per pod of the traffic model, cycled through: enough
/// that counts vary from report to report as real traffic does.
const MODEL_VARIANTS: usize = 8;
/// A Report that takes longer than this counts as DeadlineExceeded.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Retry delays while the server is not up yet.
const CONNECT_BACKOFF_MIN: Duration = Duration::from_millis(20);
const CONNECT_BACKOFF_MAX: Duration = Duration::from_millis(500);
/// A worker whose call found no server waits this long, so a dead server
/// does not turn the fleet into a busy loop.
const UNAVAILABLE_BACKOFF: Duration = Duration::from_millis(10);
/// The pacer's tick bounds: fine enough to spread a high rate, coarse
/// enough to cost nothing at a low one.
const PACE_TICK_MIN: Duration = Duration::from_millis(1);
const PACE_TICK_MAX: Duration = Duration::from_millis(50);
/// At most this much of the rate's reports queue up while the server lags;
/// the rest are skipped and the achieved rate says so.
const PACE_BACKLOG_SECS: f64 = 1.0;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The telemetry service (HOST:PORT, or :PORT for this host).
    #[arg(long, default_value = ":8087")]
    pub addr: String,
    /// Simulated pods, each reporting as its own proxy.
    #[arg(long, default_value_t = 10)]
    pub pods: usize,
    /// Deployments the pods are spread over [default: max(1, pods/3)].
    #[arg(long)]
    pub deployments: Option<usize>,
    /// Namespace of the simulated pods.
    #[arg(long, default_value = "sim")]
    pub namespace: String,
    /// Where this fleet starts in a larger one: its pods take the addresses
    /// and nodes of pods `first_pod..first_pod + pods`, so fleets run side
    /// by side (one per proxy-api) never share an IP.
    #[arg(long, default_value_t = 0)]
    pub first_pod: usize,
    /// Reports per second for the whole fleet; 0 sends as fast as
    /// `--concurrency` allows [default: one per pod every 10s].
    #[arg(long)]
    pub rate: Option<f64>,
    /// How long to run: `500ms`, `30s`, `2m`, `1h`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop after this many reports in total (0 only writes `--cluster-out`).
    #[arg(long)]
    pub reports: Option<u64>,
    /// What one report carries.
    #[arg(long, value_enum, default_value_t = Shape::Small)]
    pub shape: Shape,
    /// Write the fleet's cluster file (Kubernetes YAML) here before sending.
    #[arg(long)]
    pub cluster_out: Option<PathBuf>,
    /// Seed for names and report contents; the same seed repeats a run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Reports in flight at once [default: 2 per pod, at most 256].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// HTTP/2 connections to the service [default: one per pod, at most 4].
    #[arg(long)]
    pub connections: Option<usize>,
    /// Print the summary as one JSON object instead of a line.
    #[arg(long)]
    pub json: bool,
    /// Also serve Tap.Observe on every pod's `<pod IP>:PORT`; the pods then
    /// get loopback addresses (127.1.0.1, 127.1.0.2, ...) so that one
    /// process can listen on each, and the cluster file says so.
    #[arg(long)]
    pub tap_port: Option<u16>,
    /// Simulate the demo mesh instead (three namespaces, 1–5 pods per
    /// deployment, a call graph with a failing and a slow route; reports
    /// carry its traffic): `--pods`, `--deployments`, `--namespace` and
    /// `--shape` are then unused.
    #[arg(long)]
    pub demo_mesh: bool,
    /// With the generic fleet: reports carry the traffic of a call graph
    /// (deployment j is called by deployment (j − 1) / 2, the first by an
    /// ingress; every pod of a deployment calls the same deployments), as
    /// the demo mesh's do, instead of request scopes between random pods;
    /// `--shape` is then unused.
    #[arg(long, conflicts_with = "demo_mesh")]
    pub call_graph: bool,
    /// Admin HTTP address (/metrics with the simulated taps' counters,
    /// /ping, /ready).
    #[arg(long)]
    pub metrics_addr: Option<crate::core::ListenAddr>,
}

/// Validated parameters of a run.
#[derive(Debug)]
struct Plan {
    /// Reports per second, `None` for as fast as possible.
    rate: Option<f64>,
    concurrency: usize,
    connections: usize,
    cap: Option<u64>,
}

impl Args {
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let fleet = if self.demo_mesh {
            fleet::demo_fleet(self.seed)
        } else {
            fleet(
                self.pods,
                self.deployments.unwrap_or((self.pods / 3).max(1)),
                &self.namespace,
                self.seed,
            )
            .starting_at(self.first_pod)
        };
        let pods = fleet.pods.len();
        let plan = self.plan(pods)?;
        let fleet = match self.tap_port {
            Some(_) => tap::on_loopback(fleet),
            None => fleet,
        };
        let _sidecars = self.start_sidecars(&fleet, &shutdown).await?;
        if let Some(path) = &self.cluster_out {
            std::fs::write(path, cluster_yaml(&fleet))
                .with_context(|| format!("writing the cluster file {}", path.display()))?;
        }
        let pool = if self.demo_mesh || self.call_graph {
            // Each report holds the traffic since the pod's last one.
            let interval = pods as f64 / plan.rate.unwrap_or(pods as f64 / REPORT_INTERVAL_SECS);
            Pool::model(&fleet, &self.model(&fleet), interval, self.seed)
        } else {
            Pool::build(&fleet, self.shape, self.seed)
        };
        let report_bytes = pool.mean_len();
        tracing::info!(
            addr = %self.addr,
            pods,
            shape = %self.shape,
            demo_mesh = self.demo_mesh,
            call_graph = self.call_graph,
            rate = ?plan.rate,
            concurrency = plan.concurrency,
            connections = plan.connections,
            report_bytes,
            "simulating proxies"
        );

        // One stop signal for the whole run: the duration is up or the
        // process is shutting down.
        let (stop_handle, stop) = ShutdownHandle::new();
        let deadline = Instant::now() + self.duration;
        let interrupted = shutdown.clone();
        let stopper = tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = shutdown.signaled() => {}
            }
            stop_handle.signal();
        });

        let endpoint = Endpoint::from_shared(client_uri(&self.addr))
            .with_context(|| format!("invalid address {:?}", self.addr))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .tcp_nodelay(true);
        let (stats, elapsed) = if plan.cap == Some(0) {
            // Nothing to send: a run that only writes the cluster file.
            (Stats::default(), Duration::ZERO)
        } else {
            match connect(&endpoint, plan.connections, &stop).await {
                Some(channels) => drive(&plan, channels, Arc::new(pool), stop).await,
                None if interrupted.is_signaled() => (Stats::default(), Duration::ZERO),
                None => {
                    stopper.abort();
                    anyhow::bail!("no connection to {} within {:?}", self.addr, self.duration);
                }
            }
        };
        stopper.abort();

        let summary = Summary {
            stats,
            elapsed,
            shape: if self.demo_mesh {
                "demo"
            } else {
                self.shape.as_str()
            },
            pods,
            concurrency: plan.concurrency,
            report_bytes,
        };
        if self.json {
            println!("{}", summary.json());
        } else {
            println!("{}", summary.line());
        }
        Ok(())
    }

    /// The admin server and the simulated taps, when asked for; they run
    /// until `shutdown`.
    async fn start_sidecars(
        &self,
        fleet: &Fleet,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
        let registry = crate::admin::Admin::registry();
        let counters = tap::Counters::register(&registry)?;
        let mut tasks = Vec::new();
        if let Some(port) = self.tap_port {
            anyhow::ensure!(port != 0, "--tap-port must be a port, 1-65535");
            let model = self.model(fleet);
            tasks = tap::serve(
                Arc::new(fleet.clone()),
                Arc::new(model),
                port,
                1.0,
                counters,
                shutdown.clone(),
            )
            .await?;
            tracing::info!(port, pods = fleet.pods.len(), "simulated taps listening");
        }
        if let Some(addr) = &self.metrics_addr {
            let listener = tokio::net::TcpListener::bind(addr.0)
                .await
                .with_context(|| format!("binding --metrics-addr {addr}"))?;
            let admin = crate::admin::Admin {
                registry,
                ingester: None,
                ready: Arc::new(|| true),
            };
            let shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(error) = admin.serve(listener, shutdown).await {
                    tracing::warn!(%error, "the admin server stopped");
                }
            }));
        }
        Ok(tasks)
    }

    /// The traffic model of `fleet`: the demo's call graph, or a tree.
    fn model(&self, fleet: &Fleet) -> traffic::Model {
        if self.demo_mesh {
            traffic::model_with_calls(fleet, fleet::DEMO_CALLS, self.seed)
        } else {
            traffic::model(fleet, self.seed)
        }
    }

    fn plan(&self, pods: usize) -> anyhow::Result<Plan> {
        anyhow::ensure!(pods > 0, "--pods must be at least 1");
        let rate = self.rate.unwrap_or(pods as f64 / REPORT_INTERVAL_SECS);
        anyhow::ensure!(
            rate.is_finite() && rate >= 0.0,
            "--rate must be a number of reports per second, 0 for unpaced"
        );
        let concurrency = self
            .concurrency
            .unwrap_or((pods * CONCURRENCY_PER_POD).min(CONCURRENCY_CAP));
        anyhow::ensure!(concurrency > 0, "--concurrency must be at least 1");
        let connections = self
            .connections
            .unwrap_or(pods.min(CONNECTIONS_CAP))
            .clamp(1, concurrency);
        Ok(Plan {
            rate: (rate > 0.0).then_some(rate),
            concurrency,
            connections,
            cap: self.reports,
        })
    }
}

/// Reports encoded ahead of time: a header per pod and direction, and a
/// pool of bodies. Report `seq` is pod `seq % pods`'s header (INBOUND on its
/// even reports, OUTBOUND on its odd ones) followed by body `seq % bodies`.
#[derive(Clone, Debug)]
struct Pool {
    headers: Vec<Bytes>,
    bodies: Vec<Bytes>,
    /// Sent first, once each.
    opening: Vec<EncodedReport>,
}

impl Pool {
    fn build(fleet: &Fleet, shape: Shape, seed: u64) -> Self {
        use report_request::Proxy;
        let headers = [Proxy::Inbound, Proxy::Outbound]
            .into_iter()
            .flat_map(|direction| {
                (0..fleet.pods.len())
                    .map(move |pod| Bytes::from(header(fleet, pod, direction).encode_to_vec()))
            })
            .collect();
        // Not the fleet's own sequence: reports vary independently of names.
        let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(1));
        let first = Bytes::from(build_body(fleet, shape, &mut rng).encode_to_vec());
        let n = (BODY_POOL_BYTES / first.len().max(1)).clamp(1, BODY_POOL_MAX);
        let mut bodies = Vec::with_capacity(n);
        bodies.push(first);
        while bodies.len() < n {
            bodies.push(build_body(fleet, shape, &mut rng).encode_to_vec().into());
        }
        Self {
            headers,
            bodies,
            opening: Vec::new(),
        }
    }

    /// Reports of the traffic model. Each pod's reports cycle through
    /// [`MODEL_VARIANTS`] INBOUND ones (its requests, and the connections
    /// its callers replaced) and one OUTBOUND one (the bytes it sent the
    /// pods it calls); headers and bodies are laid out alike, so report
    /// `seq` is pod `seq % pods`'s header with a body of its own. The first
    /// report of each pod opens its callers' connection pools.
    fn model(fleet: &Fleet, model: &traffic::Model, interval_secs: f64, seed: u64) -> Self {
        use report_request::Proxy;
        let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(1));
        let pods = fleet.pods.len();
        let cycle = MODEL_VARIANTS + 1;
        // A pod's reports come `interval_secs` apart: its INBOUND ones
        // cover the gap its OUTBOUND one leaves, and that one a whole cycle.
        let inbound_secs = interval_secs * cycle as f64 / MODEL_VARIANTS as f64;
        let outbound_secs = interval_secs * cycle as f64;
        let mut headers = Vec::with_capacity(pods * cycle);
        let mut bodies = Vec::with_capacity(pods * cycle);
        for variant in 0..cycle {
            for pod in 0..pods {
                let (direction, body) = if variant < MODEL_VARIANTS {
                    let body = traffic::inbound_body(model, fleet, pod, inbound_secs, &mut rng);
                    (Proxy::Inbound, body)
                } else {
                    let body = traffic::outbound_body(model, fleet, pod, outbound_secs, &mut rng);
                    (Proxy::Outbound, body)
                };
                headers.push(Bytes::from(header(fleet, pod, direction).encode_to_vec()));
                bodies.push(Bytes::from(body.encode_to_vec()));
            }
        }
        let opening = (0..pods)
            .map(|pod| {
                let head = header(fleet, pod, Proxy::Inbound).encode_to_vec();
                let body = traffic::opening_body(model, fleet, pod).encode_to_vec();
                EncodedReport {
                    header: head.into(),
                    body: body.into(),
                }
            })
            .collect();
        Self {
            headers,
            bodies,
            opening,
        }
    }

    fn get(&self, seq: u64) -> EncodedReport {
        let opened = self.opening.len() as u64;
        if let Some(first) = self.opening.get(seq as usize) {
            return first.clone();
        }
        let seq = seq - opened;
        // Both lengths are non-zero: a fleet has a pod, a pool a body.
        let pick = |items: &[Bytes]| items[(seq % items.len() as u64) as usize].clone();
        EncodedReport {
            header: pick(&self.headers),
            body: pick(&self.bodies),
        }
    }

    fn mean_len(&self) -> usize {
        let mean = |items: &[Bytes]| items.iter().map(Bytes::len).sum::<usize>() / items.len();
        mean(&self.headers) + mean(&self.bodies)
    }
}

/// Opens `n` connections, retrying while the server is not up, until `stop`.
async fn connect(endpoint: &Endpoint, n: usize, stop: &Shutdown) -> Option<Vec<Channel>> {
    let mut channels = Vec::with_capacity(n);
    let mut backoff = CONNECT_BACKOFF_MIN;
    let mut logged = false;
    while channels.len() < n {
        let attempt = tokio::select! {
            biased;
            _ = stop.clone().signaled() => return None,
            attempt = endpoint.connect() => attempt,
        };
        match attempt {
            Ok(channel) => channels.push(channel),
            Err(error) => {
                if !logged {
                    let error = error_chain(&error);
                    tracing::info!(uri = %endpoint.uri(), %error, "waiting for the telemetry service");
                    logged = true;
                }
                tokio::select! {
                    biased;
                    _ = stop.clone().signaled() => return None,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(CONNECT_BACKOFF_MAX);
            }
        }
    }
    Some(channels)
}

/// Runs the workers (and the pacer, if paced) until `stop` fires or the
/// report cap is reached; returns their merged tally and the time spent.
async fn drive(
    plan: &Plan,
    channels: Vec<Channel>,
    pool: Arc<Pool>,
    stop: Shutdown,
) -> (Stats, Duration) {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let tickets = plan.rate.map(|rate| {
        let tickets = Arc::new(Semaphore::new(0));
        let pacer = pace(
            rate,
            plan.concurrency,
            plan.cap,
            tickets.clone(),
            stop.clone(),
        );
        tokio::spawn(pacer.instrument(tracing::debug_span!("pacer", rate)));
        tickets
    });
    let workers: Vec<_> = (0..plan.concurrency)
        .map(|i| {
            let worker = Worker {
                client: ReportClient::new(channels[i % channels.len()].clone()),
                pool: pool.clone(),
                next: next.clone(),
                cap: plan.cap,
                tickets: tickets.clone(),
                stop: stop.clone(),
            };
            tokio::spawn(worker.run().instrument(tracing::debug_span!("worker", i)))
        })
        .collect();
    let mut stats = Stats::default();
    for worker in workers {
        match worker.await {
            Ok(s) => stats.merge(s),
            Err(error) => tracing::warn!(%error, "a worker failed; its tally is lost"),
        }
    }
    // Ends the pacer when the workers stopped at the report cap.
    if let Some(tickets) = tickets {
        tickets.close();
    }
    (stats, started.elapsed())
}

/// Issues `rate` tickets per second, spread over small ticks.
async fn pace(
    rate: f64,
    concurrency: usize,
    cap: Option<u64>,
    tickets: Arc<Semaphore>,
    stop: Shutdown,
) {
    let period = Duration::from_secs_f64(1.0 / rate).clamp(PACE_TICK_MIN, PACE_TICK_MAX);
    let backlog = ((rate * PACE_BACKLOG_SECS).ceil() as usize).max(concurrency);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut granted = 0u64;
    loop {
        tokio::select! {
            biased;
            _ = stop.clone().signaled() => return,
            _ = tick.tick() => {}
        }
        if tickets.is_closed() {
            return;
        }
        // Every ticket of a capped run is out and taken: the ones skipped
        // while the server lagged are not issued again, so the workers
        // waiting for one end now rather than at the end of `--duration`.
        if cap.is_some_and(|cap| granted >= cap) && tickets.available_permits() == 0 {
            tickets.close();
            return;
        }
        // The first ticket goes out at once, then `rate` per second.
        let due = (started.elapsed().as_secs_f64() * rate) as u64 + 1;
        let due = cap.map_or(due, |cap| due.min(cap));
        if due > granted {
            let room = backlog.saturating_sub(tickets.available_permits());
            tickets.add_permits(((due - granted) as usize).min(room));
            granted = due;
        }
    }
}

/// One in-flight slot: sends, waits for the answer, records, repeats.
struct Worker {
    client: ReportClient,
    pool: Arc<Pool>,
    next: Arc<AtomicU64>,
    cap: Option<u64>,
    tickets: Option<Arc<Semaphore>>,
    stop: Shutdown,
}

impl Worker {
    async fn run(mut self) -> Stats {
        let mut stats = Stats::default();
        loop {
            if let Some(tickets) = &self.tickets {
                tokio::select! {
                    biased;
                    _ = self.stop.clone().signaled() => break,
                    ticket = tickets.acquire() => match ticket {
                        Ok(ticket) => ticket.forget(),
                        Err(_closed) => break,
                    },
                }
            }
            let seq = self.next.fetch_add(1, Ordering::Relaxed);
            if self.cap.is_some_and(|cap| seq >= cap) {
                break;
            }
            let report = self.pool.get(seq);
            let sent = Instant::now();
            let result = tokio::select! {
                biased;
                // A call cut off by the end of the run is not counted.
                _ = self.stop.clone().signaled() => break,
                result = self.client.report(report) => result,
            };
            match result {
                Ok(_) => stats.record_ok(sent.elapsed()),
                Err(status) => {
                    tracing::debug!(code = ?status.code(), message = status.message(), "report failed");
                    stats.record_failure(status.code());
                    if status.code() == tonic::Code::Unavailable {
                        tokio::select! {
                            biased;
                            _ = self.stop.clone().signaled() => break,
                            _ = tokio::time::sleep(UNAVAILABLE_BACKOFF) => {}
                        }
                    }
                }
            }
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_capped_run_ends_when_its_tickets_are_out_even_if_some_were_skipped() {
        let tickets = Arc::new(Semaphore::new(0));
        let (_handle, stop) = crate::core::ShutdownHandle::new();
        tokio::spawn(pace(100.0, 1, Some(500), tickets.clone(), stop));
        // Nobody takes a ticket for 10 s: 1,000 fall due, the cap is 500,
        // and the backlog holds only a second's worth.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let mut taken = 0;
        let drained = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(ticket) = tickets.acquire().await {
                ticket.forget();
                taken += 1;
            }
        })
        .await;
        assert!(drained.is_ok(), "the pacer never closed the tickets");
        assert!((100..500).contains(&taken), "{taken} tickets");
    }

    #[test]
    fn a_call_graph_fleet_calls_along_its_tree() {
        use crate::proto::net::ip_from_proto;
        use crate::proto::proxy::telemetry::ReportRequest;
        let f = fleet(30, 10, "sim", 1);
        let pool = Pool::model(&f, &traffic::model(&f, 1), 10.0, 1);
        let deployment_of = |ip: std::net::IpAddr| {
            f.pods
                .iter()
                .find(|p| std::net::IpAddr::from(p.ip) == ip)
                .map(|p| p.deployment_index)
        };
        let mut callers = std::collections::BTreeSet::new();
        for seq in 0..(f.pods.len() * (MODEL_VARIANTS + 2)) as u64 {
            let r = pool.get(seq);
            let mut bytes = r.header.to_vec();
            bytes.extend_from_slice(&r.body);
            let report = ReportRequest::decode(&*bytes).unwrap();
            for scope in &report.requests {
                let ctx = scope.ctx.as_ref().unwrap();
                let source = ip_from_proto(ctx.source_ip.as_ref().unwrap()).unwrap();
                let target = ctx.target_addr.as_ref().unwrap().ip.as_ref().unwrap();
                let callee = deployment_of(ip_from_proto(target).unwrap()).unwrap();
                // Deployment j > 0 is called only by (j - 1) / 2, the first
                // by the ingress (no pod of the fleet).
                let caller = deployment_of(source);
                assert_eq!(caller, (callee > 0).then(|| (callee - 1) / 2), "{ctx:?}");
                callers.insert((caller, callee));
            }
        }
        assert_eq!(
            callers.len(),
            10,
            "every edge of the tree carries traffic: {callers:?}"
        );
    }

    #[test]
    fn each_pod_alternates_inbound_and_outbound() {
        use crate::proto::proxy::telemetry::ReportRequest;
        let f = fleet(3, 1, "sim", 1);
        let pool = Pool::build(&f, Shape::Small, 1);
        let decode = |seq| {
            let r = pool.get(seq);
            let mut bytes = r.header.to_vec();
            bytes.extend_from_slice(&r.body);
            ReportRequest::decode(&*bytes).unwrap()
        };
        for pod in 0..3 {
            let first = decode(pod);
            let second = decode(pod + 3);
            let name = &f.pods[pod as usize].name;
            assert_eq!(&first.process.as_ref().unwrap().scheduled_instance, name);
            assert_eq!(&second.process.as_ref().unwrap().scheduled_instance, name);
            assert_eq!(first.proxy, report_request::Proxy::Inbound as i32);
            assert_eq!(second.proxy, report_request::Proxy::Outbound as i32);
            assert_eq!(first.requests.len(), 1);
        }
    }
}
