//! Remote-write test support: a real Prometheus on loopback (Debian's
//! `prometheus` 2.x with its remote-write receiver), a fake receiver that
//! answers what a test scripts and keeps what it was sent, and a telemetry
//! component whose serve task a test can await after shutdown.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clap::Parser as _;
use conduit::core::ShutdownHandle;
use conduit::proto::prometheus::WriteRequest;
use parking_lot::Mutex;
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{Exposition, TempDir, eventually, http_get};

/// Where Debian's `prometheus` package puts the server.
const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";

/// How long Prometheus may take to start (or replay its WAL) on a loaded
/// two-core machine.
const PROMETHEUS_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The Prometheus server binary; fails the test (never skips it) when it is
/// missing.
pub fn prometheus_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|p| p.is_file())
    });
    let binary = on_path.unwrap_or_else(|| PathBuf::from(PROMETHEUS_BIN));
    assert!(
        binary.is_file(),
        "the `prometheus` server binary is missing (looked on PATH and at {PROMETHEUS_BIN}): \
         the remote-write tests push to a real Prometheus. `.ci/run` installs Debian's \
         `prometheus` package (apt-get install prometheus), which provides it."
    );
    binary
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding an ephemeral loopback port")
        .port()
}

/// A Prometheus server with `--web.enable-remote-write-receiver`, its data
/// in a temporary directory that survives restarts.
pub struct Prometheus {
    pub addr: SocketAddr,
    dir: TempDir,
    child: Option<Child>,
}

impl Prometheus {
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    pub async fn start_on(port: u16) -> Self {
        let dir = TempDir::new();
        std::fs::write(
            dir.0.join("prometheus.yml"),
            "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
        )
        .unwrap();
        let mut prometheus = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            child: None,
        };
        prometheus.run().await;
        prometheus
    }

    /// Starts the process on the same port and data, and waits until ready.
    async fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.0.join("prometheus.log"))
            .unwrap();
        let child = Command::new(prometheus_binary())
            .arg(format!(
                "--config.file={}",
                self.dir.0.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address={}", self.addr))
            .arg("--web.enable-remote-write-receiver")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        self.child = Some(child);
        let deadline = Instant::now() + PROMETHEUS_READY_TIMEOUT;
        loop {
            if let Some((200, _)) = try_get(self.addr, "/-/ready").await {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("prometheus exited ({status}) during start:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready on {} after {PROMETHEUS_READY_TIMEOUT:?}:\n{}",
                self.addr,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown, no flush — the crash case.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port with the same data.
    pub async fn restart(&mut self) {
        self.kill();
        self.run().await;
    }

    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query: the `data.result` array.
    pub async fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let Some((status, body)) = try_get(self.addr, &path).await else {
            return Vec::new();
        };
        assert_eq!(status, 200, "query {promql}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The value of an instant query that selects one series, if it does.
    pub async fn value(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql).await;
        assert!(
            result.len() <= 1,
            "{promql} selects several series: {result:?}"
        );
        result.first().map(|r| {
            r["value"][1]
                .as_str()
                .expect("a sample value is a string")
                .parse()
                .expect("a sample value is a number")
        })
    }

    /// The raw samples of a range selector over one series: (ms, value).
    pub async fn samples(&self, range_selector: &str) -> Vec<(i64, f64)> {
        let result = self.query(range_selector).await;
        assert!(result.len() <= 1, "{range_selector}: {result:?}");
        result
            .first()
            .and_then(|r| r["values"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|v| {
                let ts = (v[0].as_f64().unwrap() * 1000.0).round() as i64;
                (ts, v[1].as_str().unwrap().parse().unwrap())
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.kill();
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An HTTP/1.0 GET that tolerates a server that is not (yet) there.
pub async fn try_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

// ---- A fake remote-write receiver ----

/// One request the fake receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub request: WriteRequest,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    pub fn samples(&self) -> usize {
        self.request
            .timeseries
            .iter()
            .map(|ts| ts.samples.len())
            .sum()
    }

    /// The collection timestamp (every sample of a request shares it).
    pub fn timestamp(&self) -> i64 {
        self.request.timeseries[0].samples[0].timestamp
    }

    /// The value of the one series with this name and these labels (others
    /// may be present).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.request
            .timeseries
            .iter()
            .find(|ts| {
                let has = |n: &str, v: &str| ts.labels.iter().any(|l| l.name == n && l.value == v);
                has("__name__", name) && labels.iter().all(|(n, v)| has(n, v))
            })
            .map(|ts| ts.samples[0].value)
    }
}

#[derive(Default)]
struct FakeState {
    script: VecDeque<u16>,
    default: u16,
    /// How long each answer takes (a slow receiver).
    delay: Duration,
    /// `Retry-After` on every 429 and 503 answer.
    retry_after: Option<String>,
    in_flight: usize,
    max_in_flight: usize,
    received: Vec<Received>,
}

/// Answers each request with the next status of its script, then with its
/// default; decodes and keeps every request.
#[derive(Clone)]
pub struct FakeReceiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
}

/// What a fake receiver got, by the status it answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: BTreeMap<u16, u64>,
    pub samples: BTreeMap<u16, u64>,
}

impl Totals {
    pub fn requests(&self, status: u16) -> u64 {
        self.requests.get(&status).copied().unwrap_or(0)
    }
    pub fn samples(&self, status: u16) -> u64 {
        self.samples.get(&status).copied().unwrap_or(0)
    }
}

impl FakeReceiver {
    pub async fn start(script: &[u16], default: u16) -> Self {
        let state = Arc::new(Mutex::new(FakeState {
            script: script.iter().copied().collect(),
            default,
            ..FakeState::default()
        }));
        let router = axum::Router::new()
            .route("/api/v1/write", axum::routing::post(fake_write))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    pub fn set_default(&self, status: u16) {
        self.state.lock().default = status;
    }

    /// Sends `Retry-After: value` with every 429 and 503 answer.
    pub fn set_retry_after(&self, value: &str) {
        self.state.lock().retry_after = Some(value.to_string());
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().delay = delay;
    }

    /// The most requests it was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().max_in_flight
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().received.clone()
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for r in &self.state.lock().received {
            *t.requests.entry(r.status).or_default() += 1;
            *t.samples.entry(r.status).or_default() += r.samples() as u64;
        }
        t
    }
}

async fn fake_write(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, String) {
    let arrived = Instant::now();
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("the body is snappy block format");
    let request = WriteRequest::decode(raw.as_slice()).expect("the body is a WriteRequest");
    let delay = {
        let mut s = state.lock();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        s.delay
    };
    tokio::time::sleep(delay).await;
    let mut s = state.lock();
    s.in_flight -= 1;
    let status = s.script.pop_front().unwrap_or(s.default);
    s.received.push(Received {
        status,
        headers,
        body,
        request,
        at: arrived,
    });
    let mut answer_headers = HeaderMap::new();
    if let (429 | 503, Some(value)) = (status, &s.retry_after) {
        answer_headers.insert("retry-after", value.parse().unwrap());
    }
    let message = match status {
        400 => "bad data: out of order sample\nsecond line is not logged",
        500 => "internal error: storage unavailable",
        _ => "",
    };
    (
        StatusCode::from_u16(status).unwrap(),
        answer_headers,
        message.to_string(),
    )
}

// ---- The remote-write counters on /metrics ----

/// `conduit_remote_write_samples_total{result}` and friends from a scrape.
#[derive(Debug, Default, PartialEq)]
pub struct Counters {
    pub sent: f64,
    pub retried: f64,
    pub dropped: f64,
    pub failed: f64,
    pub collected: f64,
    pub queue: f64,
}

impl Counters {
    pub fn from(m: &Exposition) -> Self {
        let result = |r| {
            m.get("conduit_remote_write_samples_total", &[("result", r)])
                .unwrap_or(0.0)
        };
        Self {
            sent: result("sent"),
            retried: result("retried"),
            dropped: result("dropped"),
            failed: result("failed"),
            collected: m
                .get("conduit_remote_write_samples_collected_total", &[])
                .unwrap_or(0.0),
            queue: m
                .get("conduit_remote_write_queue_samples", &[])
                .unwrap_or(0.0),
        }
    }
}

pub fn requests_with_code(m: &Exposition, code: &str) -> f64 {
    m.get("conduit_remote_write_requests_total", &[("code", code)])
        .unwrap_or(0.0)
}

// ---- A component whose serve task can be awaited ----

/// `conduit controller telemetry` in-process, like `start_telemetry`, but
/// the test fires the shutdown signal and awaits the serve task.
pub struct Component {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    shutdown: Option<ShutdownHandle>,
    serve: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: TempDir,
}

impl Component {
    pub async fn start(cluster_yaml: &str, flags: &[&str]) -> Self {
        let dir = TempDir::new();
        let cluster = dir.0.join("cluster.yaml");
        std::fs::write(&cluster, cluster_yaml).unwrap();
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
        argv.push(format!("--cluster={}", cluster.display()));
        argv.extend(flags.iter().map(|s| s.to_string()));
        let cli = conduit::cli::Cli::parse_from(conduit::cli::normalize_args(argv));
        let conduit::cli::Command::Controller(conduit::cli::Controller::Telemetry(args)) =
            cli.command
        else {
            unreachable!()
        };
        let bound = args.bind().await.expect("telemetry binds");
        let (handle, signal) = ShutdownHandle::new();
        let (grpc, admin) = (bound.grpc_addr(), bound.admin_addr());
        Self {
            grpc,
            admin,
            shutdown: Some(handle),
            serve: Some(tokio::spawn(bound.serve(signal))),
            _dir: dir,
        }
    }

    pub async fn scrape(&self) -> Exposition {
        let (status, body) = http_get(self.admin, "/metrics").await;
        assert_eq!(status, 200, "scrape failed: {body}");
        Exposition::parse(&body)
    }

    /// Fires the shutdown signal and waits for serve to return; how long
    /// that took.
    pub async fn shutdown(&mut self) -> Duration {
        let started = Instant::now();
        if let Some(handle) = self.shutdown.take() {
            handle.signal();
        }
        if let Some(serve) = self.serve.take() {
            serve
                .await
                .expect("serve does not panic")
                .expect("serve ends cleanly");
        }
        started.elapsed()
    }
}

/// Waits until a component's remote-write counters satisfy `check`.
pub async fn counters_eventually(
    what: &str,
    admin: SocketAddr,
    check: impl Fn(&Exposition) -> bool,
) {
    eventually(what, Duration::from_secs(20), || async {
        let (_, body) = http_get(admin, "/metrics").await;
        check(&Exposition::parse(&body))
    })
    .await;
}
