//! Test support: the telemetry component on loopback, a Report client, a
//! scraper and an exposition parser, the Kubernetes fixtures ([`k8s`]) and
//! the cluster files made of them.
#![allow(dead_code)]

pub mod k8s;
// Not every test crate builds a Kubernetes object.
#[allow(unused_imports)]
pub use k8s::*;

mod exposition;
pub use exposition::Exposition;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use conduit::core::{Shutdown, ShutdownHandle};
use conduit::proto::common::{HttpMethod, TcpAddress, http_method};
use conduit::proto::net::ip_to_proto;
use conduit::proto::proxy::telemetry::telemetry_client::TelemetryClient;
use conduit::proto::proxy::telemetry::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a component just started may take to accept connections.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);

pub struct Running {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub ingester: std::sync::Arc<conduit::ingest::Ingester>,
    _shutdown: ShutdownHandle,
    _dir: TempDir,
}

/// A directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "conduit-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `conduit controller telemetry` in-process on loopback ports, with
/// the given cluster YAML and extra flags (spelled as on the command line).
pub async fn start_telemetry(cluster_yaml: &str, flags: &[&str]) -> Running {
    let dir = TempDir::new();
    let cluster = dir.0.join("cluster.yaml");
    std::fs::write(&cluster, cluster_yaml).unwrap();
    let mut all = vec![format!("--cluster={}", cluster.display())];
    all.extend(flags.iter().map(|s| s.to_string()));
    start_telemetry_with(dir, &all).await
}

/// Starts the telemetry component with exactly these extra flags; `dir` is
/// kept for as long as it runs.
pub async fn start_telemetry_with(dir: TempDir, flags: &[String]) -> Running {
    let mut argv: Vec<String> = [
        "conduit",
        "controller",
        "telemetry",
        "-addr=127.0.0.1:0",
        "-metrics-addr=127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(flags.iter().cloned());
    let cli = conduit::cli::Cli::parse_from(conduit::cli::normalize_args(argv));
    let conduit::cli::Command::Controller(conduit::cli::Controller::Telemetry(args)) = cli.command
    else {
        unreachable!()
    };
    let bound = args.bind().await.expect("telemetry binds");
    let (handle, shutdown) = ShutdownHandle::new();
    let running = Running {
        grpc: bound.grpc_addr(),
        admin: bound.admin_addr(),
        ingester: bound.ingester().clone(),
        _shutdown: handle,
        _dir: dir,
    };
    tokio::spawn(bound.serve(shutdown));
    running
}

impl Running {
    pub async fn client(&self) -> TelemetryClient<tonic::transport::Channel> {
        connect(self.grpc).await
    }

    pub async fn scrape(&self) -> Exposition {
        let (status, body) = http_get(self.admin, "/metrics").await;
        assert_eq!(status, 200, "scrape failed: {body}");
        Exposition::parse(&body)
    }

    pub async fn scrape_text(&self) -> String {
        http_get(self.admin, "/metrics").await.1
    }
}

pub async fn connect(addr: SocketAddr) -> TelemetryClient<tonic::transport::Channel> {
    let connect = || TelemetryClient::connect(format!("http://{addr}"));
    let client = eventually(format!("a connection to {addr}"), CONNECT_WITHIN, connect).await;
    client.max_encoding_message_size(usize::MAX)
}

/// A plain HTTP/1.0 GET over loopback: status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

// ---- Waiting ----

/// How [`eventually`] and [`eventually_blocking`] poll: the first check
/// again after `first` (most conditions hold within milliseconds), each
/// pause twice the last up to `max`, so that a slow check (a scrape, a
/// PromQL query, a browser) is not run flat out.
pub const POLL: Poll = Poll {
    first: Duration::from_millis(5),
    max: Duration::from_millis(50),
};

#[derive(Clone, Copy, Debug)]
pub struct Poll {
    pub first: Duration,
    pub max: Duration,
}

/// What a check of [`eventually`] gives: done, with a value, or not yet,
/// with what it saw (for the message if it never holds).
pub trait Check {
    type Value;
    fn done(self) -> Result<Self::Value, String>;
}

impl Check for bool {
    type Value = ();
    fn done(self) -> Result<(), String> {
        if self { Ok(()) } else { Err("false".into()) }
    }
}

impl<T> Check for Option<T> {
    type Value = T;
    fn done(self) -> Result<T, String> {
        self.ok_or_else(|| "None".into())
    }
}

impl<T, E: std::fmt::Debug> Check for Result<T, E> {
    type Value = T;
    fn done(self) -> Result<T, String> {
        self.map_err(|seen| format!("{seen:?}"))
    }
}

/// `Ok` once `seen` is `want`, else what was seen: a check that tells
/// [`eventually`] what it saw.
pub fn equals<T: PartialEq + std::fmt::Debug>(seen: T, want: T) -> Result<(), T> {
    if seen == want { Ok(()) } else { Err(seen) }
}

/// Polls `check` (every [`POLL`]) until it holds and returns its value;
/// after `timeout`, fails the test naming `what` it waited for and the
/// last thing `check` saw.
pub async fn eventually<C, Fut>(
    what: impl std::fmt::Display,
    timeout: Duration,
    mut check: impl FnMut() -> Fut,
) -> C::Value
where
    C: Check,
    Fut: std::future::Future<Output = C>,
{
    let mut wait = Wait::new(timeout);
    loop {
        match check().await.done() {
            Ok(value) => return value,
            Err(seen) => tokio::time::sleep(wait.pause(&what, seen)).await,
        }
    }
}

/// [`eventually`] for a blocking `check` (a WebDriver session, a child
/// process), with the same polling.
pub fn eventually_blocking<C: Check>(
    what: impl std::fmt::Display,
    timeout: Duration,
    mut check: impl FnMut() -> C,
) -> C::Value {
    let mut wait = Wait::new(timeout);
    loop {
        match check().done() {
            Ok(value) => return value,
            Err(seen) => std::thread::sleep(wait.pause(&what, seen)),
        }
    }
}

/// One wait of [`eventually`]: when it gives up, and the next pause.
struct Wait {
    started: Instant,
    timeout: Duration,
    next: Duration,
}

impl Wait {
    fn new(timeout: Duration) -> Self {
        Self {
            started: Instant::now(),
            timeout,
            next: POLL.first,
        }
    }

    /// The pause before the next check (never past the deadline, so the
    /// last check is made at it); fails the test once the deadline passed.
    fn pause(&mut self, what: &impl std::fmt::Display, seen: String) -> Duration {
        let elapsed = self.started.elapsed();
        let Some(left) = self.timeout.checked_sub(elapsed).filter(|d| !d.is_zero()) else {
            panic!(
                "timed out after {:?} waiting for {what}; last observed: {seen}",
                self.timeout
            );
        };
        let pause = self.next.min(left);
        self.next = (self.next * 2).min(POLL.max);
        pause
    }
}

// ---- Cluster files ----

/// One document of a cluster file: a Kubernetes object (rendered as YAML)
/// or YAML text, taken as it is.
pub trait ClusterDoc {
    fn yaml(&self) -> String;
}

impl ClusterDoc for String {
    fn yaml(&self) -> String {
        self.clone()
    }
}

macro_rules! object_docs {
    ($($kind:ty),*) => {$(
        impl ClusterDoc for $kind {
            fn yaml(&self) -> String {
                serde_yaml::to_string(self).expect("Kubernetes objects serialize")
            }
        }
    )*};
}

object_docs!(
    k8s_openapi::api::core::v1::Pod,
    k8s_openapi::api::apps::v1::ReplicaSet,
    k8s_openapi::api::apps::v1::Deployment,
    k8s_openapi::api::core::v1::Service,
    k8s_openapi::api::core::v1::Endpoints,
    k8s_openapi::api::discovery::v1::EndpointSlice
);

/// A multi-document cluster file of `docs`, in order.
pub fn yaml_docs(docs: &[&dyn ClusterDoc]) -> String {
    docs.iter()
        .map(|doc| doc.yaml())
        .collect::<Vec<_>>()
        .join("---\n")
}

// ---- Report builders ----

/// `count` GET requests on `path` from shop's web pod (192.0.2.10) to its
/// books pod (192.0.2.20), as the `shop` fixtures of the telemetry and
/// forwarding tests name them.
pub fn web_to_books(
    path: &str,
    count: u32,
    responses: Vec<conduit::proto::proxy::telemetry::ResponseScope>,
) -> conduit::proto::proxy::telemetry::RequestScope {
    conduit::proto::proxy::telemetry::RequestScope {
        ctx: ctx("192.0.2.10", "192.0.2.20", get(), path),
        count,
        responses,
    }
}

/// The pair labels of [`web_to_books`]'s series.
pub const WEB_TO_BOOKS: [(&str, &str); 4] = [
    ("source", "shop/web-5d8f-abcde"),
    ("target", "shop/books-77aa-xyz12"),
    ("source_deployment", "shop/web"),
    ("target_deployment", "shop/books"),
];

pub fn get() -> Option<HttpMethod> {
    Some(HttpMethod {
        r#type: Some(http_method::Type::Registered(
            http_method::Registered::Get as i32,
        )),
    })
}

pub fn unregistered(m: &str) -> Option<HttpMethod> {
    Some(HttpMethod {
        r#type: Some(http_method::Type::Unregistered(m.to_string())),
    })
}

pub fn ctx(src: &str, dst: &str, method: Option<HttpMethod>, path: &str) -> Option<RequestCtx> {
    Some(RequestCtx {
        source_ip: Some(ip_to_proto(src.parse().unwrap())),
        target_addr: Some(TcpAddress {
            ip: Some(ip_to_proto(dst.parse().unwrap())),
            port: 8080,
        }),
        authority: "web.example.com".into(),
        method,
        path: path.into(),
    })
}

pub fn eos(end: eos_ctx::End, streams: usize) -> EosScope {
    EosScope {
        ctx: Some(EosCtx { end: Some(end) }),
        streams: vec![
            StreamSummary {
                duration_ms: 5,
                bytes_sent: 100,
                frames_sent: 1
            };
            streams
        ],
    }
}

pub fn response(status: u32, latencies: &[(u32, u32)], ends: Vec<EosScope>) -> ResponseScope {
    ResponseScope {
        ctx: Some(ResponseCtx {
            http_status_code: status,
        }),
        response_latencies: latencies
            .iter()
            .map(|&(latency, count)| Latency { latency, count })
            .collect(),
        ends,
    }
}

pub fn report(pod_ns: &str, pod: &str, requests: Vec<RequestScope>) -> ReportRequest {
    ReportRequest {
        process: Some(Process {
            node: "node-1".into(),
            scheduled_instance: pod.into(),
            scheduled_namespace: pod_ns.into(),
        }),
        proxy: report_request::Proxy::Outbound as i32,
        server_transports: vec![],
        client_transports: vec![],
        requests,
    }
}

pub fn never() -> Shutdown {
    Shutdown::never()
}

/// Opens `n` Report streams on one HTTP/2 connection to `addr`, each
/// sending a frame header announcing 4 MiB − 1 and 1 MiB of it, then
/// nothing (one buffer shared by all, so the client side costs 1 MiB).
/// Returns the connection's task and, per stream, the `grpc-status` it
/// was answered with.
pub async fn stalled_reports(
    addr: SocketAddr,
    n: usize,
) -> (
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
    Vec<tokio::task::JoinHandle<Option<String>>>,
) {
    use futures::StreamExt as _;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let mut first = vec![0];
    first.extend_from_slice(&((4u32 << 20) - 1).to_be_bytes());
    first.extend(std::iter::repeat_n(0x08, 1 << 20));
    let first = bytes::Bytes::from(first);
    let mut answers = Vec::new();
    for _ in 0..n {
        let frames = futures::stream::iter([Ok::<_, std::convert::Infallible>(
            http_body::Frame::data(first.clone()),
        )])
        .chain(futures::stream::pending());
        let request = http::Request::post(format!(
            "http://{addr}{}",
            conduit::proto::codec::REPORT_PATH
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::StreamBody::new(frames))
        .unwrap();
        let mut send = send.clone();
        answers.push(tokio::spawn(async move {
            send.ready().await.ok()?;
            let rsp = send.send_request(request).await.ok()?;
            rsp.headers()
                .get("grpc-status")
                .and_then(|s| s.to_str().ok())
                .map(str::to_owned)
        }));
    }
    (connection, answers)
}

/// This process's resident set, in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

// ---- A three-tier mesh: shop/web → shop/books → data/db ----

/// shop/web (one pod) calls shop/books (two pods, one reporting), whose
/// first pod calls data/db (one pod, not reporting).
pub fn three_tier_cluster() -> String {
    yaml_docs(&[
        &mk_deployment("shop", "web"),
        &mk_replica_set("shop", "web-5d8f", Some("web")),
        &mk_pod("shop", "web-5d8f-abcde", "192.0.2.10", Some("web-5d8f")),
        &mk_deployment("shop", "books"),
        &mk_replica_set("shop", "books-77aa", Some("books")),
        &mk_pod("shop", "books-77aa-xyz12", "192.0.2.20", Some("books-77aa")),
        &mk_pod("shop", "books-77aa-xyz34", "192.0.2.21", Some("books-77aa")),
        &mk_deployment("data", "db"),
        &mk_replica_set("data", "db-11bb", Some("db")),
        &mk_pod("data", "db-11bb-qqqqq", "192.0.2.30", Some("db-11bb")),
    ])
}

/// web → books: 10 requests, 9 OK in 12 ms, one 500 in 250 ms.
/// books → db: 4 requests, all OK in 30 ms.
pub async fn three_tier_traffic(t: &Running) {
    let mut client = t.client().await;
    let web = report(
        "shop",
        "web-5d8f-abcde",
        vec![conduit::proto::proxy::telemetry::RequestScope {
            ctx: ctx("192.0.2.10", "192.0.2.20", get(), "/books"),
            count: 10,
            responses: vec![
                response(
                    200,
                    &[(120, 9)],
                    vec![eos(eos_ctx::End::GrpcStatusCode(0), 9)],
                ),
                response(500, &[(2500, 1)], vec![eos(eos_ctx::End::Other(true), 1)]),
            ],
        }],
    );
    let books = report(
        "shop",
        "books-77aa-xyz12",
        vec![conduit::proto::proxy::telemetry::RequestScope {
            ctx: ctx("192.0.2.20", "192.0.2.30", get(), "/rows"),
            count: 4,
            responses: vec![response(
                200,
                &[(300, 4)],
                vec![eos(eos_ctx::End::GrpcStatusCode(0), 4)],
            )],
        }],
    );
    client.report(web).await.unwrap();
    client.report(books).await.unwrap();
}
