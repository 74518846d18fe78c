//! Several telemetry replicas, one answer. Three `conduit controller
//! telemetry` processes on loopback, each with the same cluster file and
//! its own `replica` external label, push to one real Prometheus (Debian's
//! 2.x with its remote-write receiver) while the proxies' reports are
//! spread over them: each pod reports to one replica for a while, as a
//! proxy keeps its connection, then to the next, as after a rollout. Every
//! pod pair then has one series on each replica, Prometheus sums to
//! exactly what was sent, and no replica had a sample refused or dropped.

#[path = "support/prometheus.rs"]
mod prometheus_support;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conduit::proto::proxy::telemetry::RequestScope;
use prometheus_support::{Counters, Prometheus, free_port, try_get};
use support::*;

/// The replicas, by the `replica` label each pushes under.
const REPLICAS: [&str; 3] = ["r0", "r1", "r2"];

/// Reports each pod sends to one replica before it moves to the next.
const REPORTS_PER_STINT: u32 = 2;

/// Pushes this often, so the test takes seconds.
const INTERVAL: &str = "-remote-write-interval=200ms";

/// For a process to start, and for Prometheus to hold what was pushed.
const WAIT: Duration = Duration::from_secs(20);

const BOOKS: &str = "192.0.2.20";

/// shop's three web pods (one ReplicaSet of the `web` deployment) and
/// their addresses.
fn web_pods() -> [(String, String); 3] {
    [0, 1, 2].map(|i| (format!("web-5d8f-{i}"), format!("192.0.2.{}", 10 + i)))
}

fn cluster() -> String {
    let mut docs: Vec<Box<dyn ClusterDoc>> = vec![
        Box::new(mk_deployment("shop", "web")),
        Box::new(mk_replica_set("shop", "web-5d8f", Some("web"))),
        Box::new(mk_deployment("shop", "books")),
        Box::new(mk_replica_set("shop", "books-77aa", Some("books"))),
        Box::new(mk_pod("shop", "books-77aa-0", BOOKS, Some("books-77aa"))),
    ];
    for (name, ip) in web_pods() {
        docs.push(Box::new(mk_pod("shop", &name, &ip, Some("web-5d8f"))));
    }
    yaml_docs(&docs.iter().map(|d| &**d).collect::<Vec<_>>())
}

/// One telemetry replica: the real binary, killed when the test ends; its
/// log is printed if the test fails.
struct Replica {
    label: &'static str,
    grpc: SocketAddr,
    admin: SocketAddr,
    child: Child,
    log: std::path::PathBuf,
}

impl Replica {
    fn start(label: &'static str, dir: &Path, cluster: &Path, write_url: &str) -> Self {
        let (grpc, admin) = (free_port(), free_port());
        let log = dir.join(format!("telemetry-{label}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_conduit"))
            .args([
                "controller",
                "telemetry",
                &format!("-addr=127.0.0.1:{grpc}"),
                &format!("-metrics-addr=127.0.0.1:{admin}"),
                &format!("--cluster={}", cluster.display()),
                &format!("-remote-write-url={write_url}"),
                INTERVAL,
                &format!("-remote-write-external-label=replica={label}"),
            ])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the conduit binary starts");
        Self {
            label,
            grpc: ([127, 0, 0, 1], grpc).into(),
            admin: ([127, 0, 0, 1], admin).into(),
            child,
            log,
        }
    }

    async fn ready(&self) {
        eventually(format!("replica {} is ready", self.label), WAIT, || async {
            try_get(self.admin, "/ready")
                .await
                .is_some_and(|(status, _)| status == 200)
        })
        .await;
    }

    async fn scrape(&self) -> Exposition {
        let (status, body) = http_get(self.admin, "/metrics").await;
        assert_eq!(status, 200, "{}: {body}", self.label);
        Exposition::parse(&body)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- telemetry {} log ---\n{log}", self.label);
        }
    }
}

/// `{label} -> value` of a query grouped by `label`.
async fn by(prom: &Prometheus, label: &str, promql: &str) -> BTreeMap<String, f64> {
    prom.query(promql)
        .await
        .iter()
        .map(|r| {
            let key = r["metric"][label].as_str().unwrap_or_default().to_string();
            (key, r["value"][1].as_str().unwrap().parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_push_apart_and_prometheus_sums_them_exactly() {
    let started = Instant::now();
    let prom = Prometheus::start().await;
    let dir = TempDir::new();
    let cluster_file = dir.0.join("cluster.yaml");
    std::fs::write(&cluster_file, cluster()).unwrap();
    let replicas: Vec<Replica> = REPLICAS
        .iter()
        .map(|&label| Replica::start(label, &dir.0, &cluster_file, &prom.write_url()))
        .collect();
    for r in &replicas {
        r.ready().await;
    }

    // Pod i reports to replica i, then i+1, then i+2 (mod 3), two reports
    // each time: 10^stint × (2i + 1) requests, plus the report's index, so
    // no two reports have the same count nor two replicas the same total.
    let mut sent_by_pod: BTreeMap<String, f64> = BTreeMap::new();
    let mut sent_by_replica: BTreeMap<String, f64> = BTreeMap::new();
    let mut reports = 0.0;
    for (i, (pod, ip)) in web_pods().iter().enumerate() {
        for stint in 0..REPLICAS.len() {
            let replica = &replicas[(i + stint) % REPLICAS.len()];
            let mut client = connect(replica.grpc).await;
            for k in 0..REPORTS_PER_STINT {
                let count = 10u32.pow(stint as u32) * (2 * i as u32 + 1) + k;
                let scope = RequestScope {
                    ctx: ctx(ip, BOOKS, get(), "/books"),
                    count,
                    responses: vec![],
                };
                client
                    .report(report("shop", pod, vec![scope]))
                    .await
                    .unwrap_or_else(|e| panic!("{pod} → {}: {e}", replica.label));
                *sent_by_pod.entry(format!("shop/{pod}")).or_default() += f64::from(count);
                *sent_by_replica
                    .entry(replica.label.to_string())
                    .or_default() += f64::from(count);
                reports += 1.0;
            }
        }
    }
    let total: f64 = sent_by_pod.values().sum();
    assert_eq!(total, 2007.0, "1+2+10+11+100+101, 3+4+30+…, 5+6+50+…");

    // Everything sent, once.
    eventually(
        format!("Prometheus sums requests_total to {total}"),
        WAIT,
        || async { equals(prom.value("sum(requests_total)").await, Some(total)) },
    )
    .await;
    assert_eq!(
        by(&prom, "replica", "sum by (replica) (requests_total)").await,
        sent_by_replica,
        "each replica pushed what it was sent"
    );
    assert_eq!(
        by(&prom, "source", "sum without (replica) (requests_total)").await,
        sent_by_pod,
        "summed across replicas, one series per pod pair"
    );
    // Each pod pair: exactly one series on each replica.
    for pod in sent_by_pod.keys() {
        let per_replica = by(
            &prom,
            "replica",
            &format!(
                r#"count by (replica) (requests_total{{source="{pod}",target="shop/books-77aa-0",source_deployment="shop/web",target_deployment="shop/books"}})"#
            ),
        )
        .await;
        let one_each: BTreeMap<String, f64> =
            REPLICAS.iter().map(|r| (r.to_string(), 1.0)).collect();
        assert_eq!(per_replica, one_each, "{pod}");
    }
    // The component's own series carry the label too.
    eventually(
        format!("every replica's reports_total pushed, {reports} in all"),
        WAIT,
        || async {
            let pushed = by(
                &prom,
                "replica",
                "sum by (replica) (conduit_telemetry_reports_total)",
            )
            .await;
            equals(
                (pushed.len(), pushed.values().sum::<f64>()),
                (REPLICAS.len(), reports),
            )
        },
    )
    .await;

    // No sample refused or dropped anywhere; every label the replicas'
    // series carry is one an external label may not take.
    for r in &replicas {
        let scraped = r.scrape().await;
        let counters = Counters::from(&scraped);
        assert!(counters.sent > 0.0, "{}: {counters:?}", r.label);
        assert_eq!(
            (counters.failed, counters.dropped),
            (0.0, 0.0),
            "{}: {counters:?}",
            r.label
        );
        for (name, labels, _) in &scraped.samples {
            for label in labels.keys() {
                assert!(
                    conduit::remote_write::parse_external_label(&format!("{label}=x")).is_err(),
                    "{name} carries {label}, which -remote-write-external-label accepts"
                );
            }
        }
    }
    println!(
        "sent {total} requests in {reports} reports; per replica {sent_by_replica:?}; \
         per pod {sent_by_pod:?}; in {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "took {:?}",
        started.elapsed()
    );
}

/// A bad `-remote-write-external-label` stops the component at start, with
/// one line naming the flag.
#[test]
fn bad_external_labels_are_refused_at_start() {
    let dir = TempDir::new();
    let cluster_file = dir.0.join("cluster.yaml");
    std::fs::write(&cluster_file, cluster()).unwrap();
    for (labels, says) in [
        (&["source=x"][..], "pushed series themselves"),
        (&["le=x"], "pushed series themselves"),
        (&["__name__=x"], "reserved"),
        (&["replica="], "empty"),
        (&["re-plica=x"], "not a label name"),
        (&["replica=a", "replica=b"], "given twice"),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_conduit"));
        command.args([
            "controller",
            "telemetry",
            "-addr=127.0.0.1:0",
            "-metrics-addr=127.0.0.1:0",
            &format!("--cluster={}", cluster_file.display()),
            "-remote-write-url=http://127.0.0.1:9/api/v1/write",
        ]);
        for label in labels {
            command.arg(format!("-remote-write-external-label={label}"));
        }
        let out = command
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("the conduit binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{labels:?} was accepted");
        assert!(
            stderr.contains("remote-write-external-label") && stderr.contains(says),
            "{labels:?}: {stderr}"
        );
    }
}
