//! Load on the destination component: 10,000 concurrent `Get` streams on
//! one process, straight to destination and, as an installed proxy's `Get`
//! goes, through proxy-api in front of it. Measures (1) the resident memory
//! each open stream costs the servers (the release `conduit` binary as child
//! processes, so the client side is not counted; through proxy-api, each of
//! the two processes) and (2) fan-out: the time from an endpoint change
//! being indexed to the last of the streams receiving its `add` (servers
//! and clients in this process).
//!
//! `cargo build --release --bin conduit --example destination_load &&
//! target/release/examples/destination_load`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser as _;
use conduit::core::ShutdownHandle;
use conduit::k8s::Index;
use conduit::proto::common::Destination;
use conduit::proto::proxy::destination::destination_client::DestinationClient;
use fixtures::{ServiceFixture, SliceFixture, mk_service, mk_slice};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint as GrpcEndpoint};

#[path = "../tests/support/k8s.rs"]
mod fixtures;

/// The bar: 10,000 concurrent streams on one process.
const STREAMS: usize = 10_000;
/// Client connections the streams are spread over (a proxy holds one).
const CONNECTIONS: usize = 50;
/// Endpoint changes timed in the fan-out phase.
const ROUNDS: usize = 10;

const CLUSTER_YAML: &str = "\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: emojivoto}
spec: {ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, namespace: emojivoto, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [192.0.2.10]}, {addresses: [192.0.2.11]}, {addresses: [192.0.2.12]}]
ports: [{name: http, port: 8080}]
";

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

async fn channels(addr: SocketAddr) -> Vec<Channel> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < CONNECTIONS {
        match GrpcEndpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            Ok(c) => out.push(c),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("connect {addr}: {e}"),
        }
    }
    out
}

/// Opens STREAMS streams; each task reports every message's arrival time
/// on `arrivals` and runs until its stream ends.
async fn open_streams(addr: SocketAddr, arrivals: mpsc::UnboundedSender<Instant>) {
    let channels = channels(addr).await;
    for i in 0..STREAMS {
        let mut client = DestinationClient::new(channels[i % CONNECTIONS].clone());
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            let request = Destination {
                scheme: "k8s".into(),
                path: "web.emojivoto.svc.cluster.local:80".into(),
            };
            let response = match client.get(request).await {
                Ok(response) => response,
                Err(status) => {
                    eprintln!("stream {i}: {status}");
                    return;
                }
            };
            let mut stream = response.into_inner();
            while let Ok(Some(_)) = stream.message().await {
                if arrivals.send(Instant::now()).is_err() {
                    return;
                }
            }
        });
    }
}

async fn wait_for(arrivals: &mut mpsc::UnboundedReceiver<Instant>, n: usize) -> Instant {
    let mut last = Instant::now();
    for _ in 0..n {
        last = tokio::time::timeout(Duration::from_secs(60), arrivals.recv())
            .await
            .expect("every stream gets its update within a minute")
            .expect("senders alive");
    }
    last
}

/// A child process, killed when dropped (also when a phase panics).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_conduit(conduit: &std::path::Path, args: &[String]) -> Child {
    let child = std::process::Command::new(conduit)
        .args(args)
        .arg(format!(
            "--log-level={}",
            std::env::var("DESTINATION_LOAD_LOG").unwrap_or_else(|_| "warn".into())
        ))
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", conduit.display()));
    Child(child)
}

/// Memory per stream, with streams opened straight to destination or, with
/// `via_proxy_api`, to a proxy-api forwarding them to it.
async fn memory_per_stream(via_proxy_api: bool) {
    let dir = std::env::temp_dir().join(format!("conduit-destination-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cluster = dir.join("cluster.yaml");
    std::fs::write(&cluster, CLUSTER_YAML).unwrap();
    let exe = std::env::current_exe().unwrap();
    let conduit = exe.parent().unwrap().parent().unwrap().join("conduit");
    let destination_addr = free_port();
    let mut children = vec![spawn_conduit(
        &conduit,
        &[
            "controller".into(),
            "destination".into(),
            format!("--cluster={}", cluster.display()),
            format!("--addr={destination_addr}"),
            format!("--metrics-addr={}", free_port()),
            "--heartbeat=1h".into(),
        ],
    )];
    let mut addr = destination_addr;
    if via_proxy_api {
        addr = free_port();
        children.push(spawn_conduit(
            &conduit,
            &[
                "controller".into(),
                "proxy-api".into(),
                format!("--addr={addr}"),
                format!("--metrics-addr={}", free_port()),
                format!("--destination-addr={destination_addr}"),
                "--telemetry-addr=127.0.0.1:9".into(),
            ],
        ));
    }
    let pids: Vec<u32> = children.iter().map(|c| c.0.id()).collect();
    // Warm up: one connection and one stream, so their fixed costs are
    // not charged to the streams.
    let mut warm = DestinationClient::new(channels(addr).await.remove(0));
    let mut first = warm
        .get(Destination {
            scheme: "k8s".into(),
            path: "web.emojivoto".into(),
        })
        .await
        .unwrap()
        .into_inner();
    first.message().await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before: Vec<u64> = pids.iter().map(|&p| rss_kib(p)).collect();

    let (tx, mut arrivals) = mpsc::unbounded_channel();
    let started = Instant::now();
    open_streams(addr, tx).await;
    wait_for(&mut arrivals, STREAMS).await;
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let path = if via_proxy_api {
        "proxy-api -> destination"
    } else {
        "destination"
    };
    let names = ["destination", "proxy-api"];
    let costs: Vec<String> = pids
        .iter()
        .zip(&before)
        .zip(names)
        .map(|((&pid, &before), name)| {
            let after = rss_kib(pid);
            format!(
                "{name} RSS {before} KiB -> {after} KiB: {:.0} B per stream",
                (after.saturating_sub(before) * 1024) as f64 / STREAMS as f64
            )
        })
        .collect();
    println!(
        "memory ({path}): {STREAMS} streams over {CONNECTIONS} connections opened (first add received) in {opened:?}; {}",
        costs.join("; ")
    );
    drop(children);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The one slice of Service `emojivoto/web`, with endpoints `ips` serving
/// the Service's unnamed port's target, 8080.
fn web_slice(ips: &[String]) -> EndpointSlice {
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    mk_slice("emojivoto", "web-abc", "web", &ips).with_ports(&[("", 8080)])
}

/// Fan-out, with streams straight to destination or through a proxy-api
/// (both in this process).
async fn fan_out(via_proxy_api: bool) {
    let index = Arc::new(Index::new());
    index.apply_service(mk_service("emojivoto", "web").with_port("", 80, IntOrString::Int(8080)));
    let mut ips = vec!["192.0.2.10".to_owned()];
    index.apply_endpoint_slice(web_slice(&ips));
    let cli = conduit::cli::Cli::parse_from([
        "conduit",
        "controller",
        "destination",
        "--addr=127.0.0.1:0",
        "--metrics-addr=127.0.0.1:0",
        "--heartbeat=1h",
    ]);
    let conduit::cli::Command::Controller(conduit::cli::Controller::Destination(args)) =
        cli.command
    else {
        unreachable!()
    };
    let bound = args.bind_with_index(index.clone()).await.unwrap();
    let mut addr = bound.grpc_addr();
    let (_handle, shutdown) = ShutdownHandle::new();
    tokio::spawn(bound.serve(shutdown.clone()));
    if via_proxy_api {
        let cli = conduit::cli::Cli::parse_from([
            "conduit".to_owned(),
            "controller".into(),
            "proxy-api".into(),
            "--addr=127.0.0.1:0".into(),
            "--metrics-addr=127.0.0.1:0".into(),
            format!("--destination-addr={addr}"),
            "--telemetry-addr=127.0.0.1:9".into(),
        ]);
        let conduit::cli::Command::Controller(conduit::cli::Controller::ProxyApi(args)) =
            cli.command
        else {
            unreachable!()
        };
        let bound = args.bind().await.unwrap();
        addr = bound.grpc_addr();
        tokio::spawn(bound.serve(shutdown));
    }

    let (tx, mut arrivals) = mpsc::unbounded_channel();
    open_streams(addr, tx).await;
    wait_for(&mut arrivals, STREAMS).await;
    let mut times = Vec::new();
    for round in 0..ROUNDS {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ips.push(format!("192.0.2.{}", 20 + round));
        let start = Instant::now();
        index.apply_endpoint_slice(web_slice(&ips));
        let last = wait_for(&mut arrivals, STREAMS).await;
        times.push(last.duration_since(start));
    }
    times.sort();
    let path = if via_proxy_api {
        "proxy-api -> destination"
    } else {
        "destination"
    };
    println!(
        "fan-out ({path}): one endpoint added, all {STREAMS} streams received the add: \
         median {:?}, min {:?}, max {:?} over {ROUNDS} changes",
        times[ROUNDS / 2],
        times[0],
        times[ROUNDS - 1]
    );
}

#[tokio::main]
async fn main() {
    for via_proxy_api in [false, true] {
        memory_per_stream(via_proxy_api).await;
        fan_out(via_proxy_api).await;
    }
}
