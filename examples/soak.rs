//! A soak run of the telemetry component: realistic load for a long time,
//! with everything that makes memory move, and the resident size sampled
//! every minute. It must stay flat after the warm-up.
//!
//! - 60 pods; every 2 s one is deleted and a new one (new name, new IP)
//!   takes its place in the index, so series keep being born and, after
//!   `-series-idle-timeout=2m`, evicted;
//! - simulated proxies send 200 reports/s over gRPC, each from a live pod
//!   to another on one of 20 paths, with latencies, statuses and a TCP
//!   close;
//! - a scrape of `/metrics` every 5 s;
//! - remote write every 10 s to an in-process receiver that reads each
//!   request whole and answers 204.
//!
//! `cargo run --release --example soak` (`SOAK_MINUTES=20` by default;
//! `SOAK_TELEMETRY_FLAGS` adds telemetry flags, whitespace-separated, e.g.
//! `-prometheus-url=http://127.0.0.1:9` for no embedded Stat store).
//! Telemetry and the load run in this process; the load's own memory is
//! small and constant.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser as _;
use conduit::core::ShutdownHandle;
use conduit::k8s::Index;
use conduit::proto::common::{HttpMethod, TcpAddress, http_method};
use conduit::proto::net::ip_to_proto;
use conduit::proto::proxy::telemetry::telemetry_client::TelemetryClient;
use conduit::proto::proxy::telemetry::*;
use fixtures::mk_pod;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[path = "../tests/support/k8s.rs"]
mod fixtures;

const PODS: usize = 60;
const CHURN_EVERY: Duration = Duration::from_secs(2);
const REPORTS_PER_SECOND: u64 = 200;
const PATHS: usize = 20;
const SCRAPE_EVERY: Duration = Duration::from_secs(5);
const SAMPLE_EVERY: Duration = Duration::from_secs(60);
const NS: &str = "soak";

/// The live pods: (name, IP), oldest first.
struct Fleet {
    live: VecDeque<(String, Ipv4Addr)>,
    next: u32,
}

impl Fleet {
    fn ip(n: u32) -> Ipv4Addr {
        // 10.64.0.0/10: room for millions of distinct pods.
        Ipv4Addr::from(0x0a40_0000 + n)
    }

    fn add(&mut self, index: &Index) {
        let (name, ip) = (format!("pod-{}", self.next), Self::ip(self.next));
        self.next += 1;
        index.apply_pod(mk_pod(NS, &name, &ip.to_string(), None));
        self.live.push_back((name, ip));
    }

    fn churn(&mut self, index: &Index) {
        if let Some((name, ip)) = self.live.pop_front() {
            index.delete_pod(&mk_pod(NS, &name, &ip.to_string(), None));
        }
        self.add(index);
    }
}

fn report(
    from: &(String, Ipv4Addr),
    to: Ipv4Addr,
    path: usize,
    rng: &mut fastrand::Rng,
) -> ReportRequest {
    let target = TcpAddress {
        ip: Some(ip_to_proto(IpAddr::V4(to))),
        port: 8080,
    };
    let status = if rng.u8(0..20) == 0 { 500 } else { 200 };
    ReportRequest {
        process: Some(Process {
            node: "node-1".into(),
            scheduled_instance: from.0.clone(),
            scheduled_namespace: NS.into(),
        }),
        proxy: report_request::Proxy::Outbound as i32,
        requests: vec![RequestScope {
            ctx: Some(RequestCtx {
                source_ip: Some(ip_to_proto(IpAddr::V4(from.1))),
                target_addr: Some(target),
                authority: "svc.soak:8080".into(),
                method: Some(HttpMethod {
                    r#type: Some(http_method::Type::Registered(
                        http_method::Registered::Get as i32,
                    )),
                }),
                path: format!("/api/{path}"),
            }),
            count: 10,
            responses: vec![ResponseScope {
                ctx: Some(ResponseCtx {
                    http_status_code: status,
                }),
                response_latencies: vec![Latency {
                    latency: rng.u32(10..5_000),
                    count: 10,
                }],
                ends: vec![EosScope {
                    ctx: Some(EosCtx {
                        end: Some(eos_ctx::End::GrpcStatusCode(0)),
                    }),
                    streams: vec![StreamSummary::default(); 10],
                }],
            }],
        }],
        client_transports: vec![ClientTransport {
            target_addr: Some(target),
            connects: 1,
            disconnects: vec![TransportSummary {
                duration_ms: rng.u64(1..60_000),
                bytes_sent: rng.u64(100..100_000),
            }],
        }],
        ..ReportRequest::default()
    }
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A remote-write receiver that reads every request whole and answers 204.
async fn receiver(received: Arc<AtomicU64>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/api/v1/write",
        axum::routing::post(move |body: axum::body::Bytes| {
            let received = received.clone();
            async move {
                received.fetch_add(body.len() as u64, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn scrape(addr: SocketAddr) -> usize {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    let request = b"GET /metrics HTTP/1.0\r\nHost: soak\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return 0;
    }
    let mut body = Vec::new();
    let _ = stream.read_to_end(&mut body).await;
    body.len()
}

/// The sum of the samples of the scrape whose line starts with `name`.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::main]
async fn main() {
    let minutes: u64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(20);
    let received = Arc::new(AtomicU64::new(0));
    let rw = receiver(received.clone()).await;
    let extra = std::env::var("SOAK_TELEMETRY_FLAGS").unwrap_or_default();
    let argv = [
        "conduit".to_string(),
        "controller".into(),
        "telemetry".into(),
        "-addr=127.0.0.1:0".into(),
        "-metrics-addr=127.0.0.1:0".into(),
        "-series-idle-timeout=2m".into(),
        format!("-remote-write-url=http://{rw}/api/v1/write"),
        "-remote-write-interval=10s".into(),
    ];
    let argv = argv
        .into_iter()
        .chain(extra.split_whitespace().map(String::from));
    let cli = conduit::cli::Cli::parse_from(conduit::cli::normalize_args(argv));
    let conduit::cli::Command::Controller(conduit::cli::Controller::Telemetry(args)) = cli.command
    else {
        unreachable!("a telemetry command line")
    };
    let index = Arc::new(Index::new());
    let mut fleet = Fleet {
        live: VecDeque::new(),
        next: 0,
    };
    for _ in 0..PODS {
        fleet.add(&index);
    }
    let telemetry = args
        .bind_with_index(index.clone())
        .await
        .expect("telemetry binds");
    let (grpc, admin) = (telemetry.grpc_addr(), telemetry.admin_addr());
    let (_handle, shutdown) = ShutdownHandle::new();
    tokio::spawn(telemetry.serve(shutdown));

    let fleet = Arc::new(parking_lot::Mutex::new(fleet));
    let sent = Arc::new(AtomicU64::new(0));
    {
        let (fleet, index) = (fleet.clone(), index.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(CHURN_EVERY);
            loop {
                every.tick().await;
                fleet.lock().churn(&index);
            }
        });
    }
    for worker in 0..4u64 {
        let (fleet, sent) = (fleet.clone(), sent.clone());
        tokio::spawn(async move {
            let mut client = TelemetryClient::connect(format!("http://{grpc}"))
                .await
                .expect("telemetry answers");
            let mut rng = fastrand::Rng::with_seed(worker);
            let mut every =
                tokio::time::interval(Duration::from_secs(1) / (REPORTS_PER_SECOND / 4) as u32);
            loop {
                every.tick().await;
                let r = {
                    let fleet = fleet.lock();
                    let from = fleet.live[rng.usize(0..fleet.live.len())].clone();
                    let to = fleet.live[rng.usize(0..fleet.live.len())].1;
                    report(&from, to, rng.usize(0..PATHS), &mut rng)
                };
                if client.report(r).await.is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let scrapes = Arc::new(AtomicU64::new(0));
    {
        let scrapes = scrapes.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SCRAPE_EVERY);
            loop {
                every.tick().await;
                if scrape(admin).await > 0 {
                    scrapes.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    println!(
        "| minute | RSS MiB | live request series | evicted (total) | reports | scrapes | remote write KiB |"
    );
    println!("|---|---|---|---|---|---|---|");
    let started = Instant::now();
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.tick().await;
    for minute in 1..=minutes {
        every.tick().await;
        let text = {
            let Ok(mut stream) = tokio::net::TcpStream::connect(admin).await else {
                continue;
            };
            let _ = stream
                .write_all(b"GET /metrics HTTP/1.0\r\nHost: soak\r\n\r\n")
                .await;
            let mut body = String::new();
            let _ = stream.read_to_string(&mut body).await;
            body
        };
        println!(
            "| {minute} | {:.1} | {} | {} | {} | {} | {} |",
            rss_mib(),
            sample(
                &text,
                "conduit_telemetry_series_live{metric=\"requests_total\"}"
            ),
            sample(&text, "conduit_telemetry_series_evicted_total"),
            sent.load(Ordering::Relaxed),
            scrapes.load(Ordering::Relaxed),
            received.load(Ordering::Relaxed) / 1024,
        );
    }
    println!("ran {:?}", started.elapsed());
}
