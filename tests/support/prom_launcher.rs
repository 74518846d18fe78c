//! A real Prometheus for tests: Debian's `prometheus` (installed by
//! `.ci/run`) started on a free loopback port with a config that scrapes
//! the given targets every second, killed on drop. Include with
//! `#[path = "support/prom_launcher.rs"] mod prom_launcher;` next to
//! `mod support;`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TempDir, eventually};

/// Scrape (and rule evaluation) interval: the fastest a test can rely on.
pub const SCRAPE_INTERVAL: &str = "1s";

/// How long Prometheus may take to start answering `/-/ready`.
const START_DEADLINE: Duration = Duration::from_secs(30);

pub struct Prometheus {
    pub addr: SocketAddr,
    child: Child,
    dir: TempDir,
}

/// The Prometheus binary: on PATH, else Debian's path. A missing binary
/// fails the test (never skips it): the end-to-end claims need it.
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|p| p.is_file())
    });
    let path = on_path.unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
    assert!(
        path.is_file(),
        "Prometheus is not installed (no `prometheus` on PATH nor /usr/bin/prometheus): \
         this test needs a real Prometheus; `.ci/run` installs Debian's `prometheus` package \
         (apt-get install prometheus)"
    );
    path
}

impl Prometheus {
    /// Starts Prometheus scraping `targets`' `/metrics` every second and
    /// waits until it is ready.
    pub async fn start(targets: &[SocketAddr]) -> Self {
        let port = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port, targets).await
    }

    /// [`Prometheus::start`] on a port chosen beforehand (so a component can
    /// be given its URL before Prometheus runs).
    pub async fn start_on(port: u16, targets: &[SocketAddr]) -> Self {
        Self::start_with(port, targets, &[]).await
    }

    /// [`Prometheus::start_on`] with extra command-line flags (e.g.
    /// `--enable-feature=native-histograms`).
    pub async fn start_with(port: u16, targets: &[SocketAddr], flags: &[&str]) -> Self {
        let binary = binary();
        let dir = TempDir::new();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  scrape_timeout: {SCRAPE_INTERVAL}\n  evaluation_interval: {SCRAPE_INTERVAL}\nscrape_configs:\n- job_name: conduit\n  static_configs:\n  - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.0.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.0.join("prometheus.log")).unwrap();
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut prometheus = Self { addr, child, dir };
        let deadline = std::time::Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = prometheus.child.try_wait().unwrap() {
                panic!(
                    "Prometheus exited with {status} before it was ready:\n{}",
                    prometheus.log()
                );
            }
            if get(addr, "/-/ready")
                .await
                .is_some_and(|(status, _)| status == 200)
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "Prometheus not ready within {START_DEADLINE:?}:\n{}",
                prometheus.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        prometheus
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query: the `data.result` array.
    pub async fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let (status, body) = get(
            self.addr,
            &format!("/api/v1/query?query={}", urlencode(promql)),
        )
        .await
        .expect("Prometheus answers");
        assert_eq!(status, 200, "{promql}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The value of an instant query returning one sample (0 when none).
    pub async fn scalar(&self, promql: &str) -> f64 {
        self.query(promql)
            .await
            .first()
            .and_then(|s| s["value"][1].as_str()?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until the instant query's one value reaches `at_least`.
    pub async fn wait_for(&self, promql: &str, at_least: f64, timeout: Duration) {
        eventually(&format!("{promql} >= {at_least}"), timeout, || async {
            self.scalar(promql).await >= at_least
        })
        .await;
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A plain HTTP/1.0 GET; `None` when nothing answers.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
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
