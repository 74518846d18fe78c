//! The web dashboard, `conduit web`: its HTTP surface over loopback (pages,
//! embedded assets, the public-api pass-through) and the app itself in a
//! real headless Chromium against `conduit run --demo`.
//!
//! Screenshots of each page are saved under `<target dir>/web-screenshots/`
//! (the parent of Cargo's `CARGO_TARGET_TMPDIR`, i.e. `target/` unless
//! `CARGO_TARGET_DIR` moves it).

#[path = "support/api.rs"]
mod api;
#[path = "support/demo.rs"]
mod demo;
mod support;
#[path = "support/webdriver.rs"]
mod webdriver;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use clap::Parser as _;
use conduit::core::ShutdownHandle;
use conduit::run::DEMO_SEED;
use conduit::simulate::fleet::{DEMO_CALLS, DEMO_LAYOUT, demo_fleet};
use conduit::simulate::traffic::model_with_calls;
use demo::Demo;
use serde_json::Value;
use support::eventually_blocking;
use webdriver::{Browser, http};

/// How long a page may take to show what it should: the demo's first
/// reports arrive within a second or two, and pages refresh every 5 s.
const PAGE_DEADLINE: Duration = Duration::from_secs(30);

/// The demo's deployments, `namespace/name`, sorted as the overview
/// lists them.
fn demo_deployments() -> Vec<String> {
    let mut names: Vec<String> = DEMO_LAYOUT
        .iter()
        .map(|(ns, name, _)| format!("{ns}/{name}"))
        .collect();
    names.sort();
    names
}

/// The demo's pod count.
fn demo_pods() -> usize {
    DEMO_LAYOUT.iter().map(|(_, _, pods)| pods).sum()
}

/// The demo's callers (`true`) or callees (`false`) of deployment `i` of
/// [`DEMO_LAYOUT`], sorted.
fn demo_peers(i: usize, callers: bool) -> Vec<String> {
    let mut peers: Vec<String> = DEMO_CALLS
        .iter()
        .filter_map(|&(from, to)| match callers {
            true if to == i => Some(from),
            false if from == i => Some(to),
            _ => None,
        })
        .map(|j| format!("{}/{}", DEMO_LAYOUT[j].0, DEMO_LAYOUT[j].1))
        .collect();
    peers.sort();
    peers
}

/// The demo's namespaces, sorted, each with its pod count.
fn demo_namespaces() -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for &(ns, _, pods) in DEMO_LAYOUT {
        match out.iter_mut().find(|(n, _)| n == ns) {
            Some((_, count)) => *count += pods,
            None => out.push((ns.to_string(), pods)),
        }
    }
    out.sort();
    out
}

/// The demo's slow route: its deployment (`namespace/name`), its median
/// latency in ms and its share of the deployment's requests.
fn demo_slow_route() -> (String, f64, f64) {
    let model = model_with_calls(&demo_fleet(DEMO_SEED), DEMO_CALLS, DEMO_SEED);
    let (j, route) = model
        .routes
        .iter()
        .enumerate()
        .flat_map(|(j, routes)| routes.iter().map(move |r| (j, r)))
        .max_by(|a, b| a.1.p50_ms.total_cmp(&b.1.p50_ms))
        .expect("the demo has routes");
    let (ns, name, _) = DEMO_LAYOUT[j];
    (format!("{ns}/{name}"), route.p50_ms, route.weight)
}

/// The paths deployment `i` of [`DEMO_LAYOUT`] serves.
fn demo_paths(i: usize) -> Vec<String> {
    let model = model_with_calls(&demo_fleet(DEMO_SEED), DEMO_CALLS, DEMO_SEED);
    model.routes[i].iter().map(|r| r.path.clone()).collect()
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

impl Demo {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.web)
    }

    /// The demo's deployments and pods, from ListPods through the dashboard.
    fn mesh(&self) -> (Vec<String>, Vec<Value>) {
        let rsp = http(&self.web, "POST", "/api/v1/ListPods", &[JSON], b"{}");
        assert_eq!(rsp.status, 200, "{}", rsp.text());
        let pods = rsp.json()["pods"].as_array().cloned().unwrap_or_default();
        let mut deployments: Vec<String> = pods
            .iter()
            .filter_map(|p| p["deployment"].as_str())
            .map(str::to_string)
            .collect();
        deployments.sort();
        deployments.dedup();
        (deployments, pods)
    }
}

#[test]
fn pages_assets_and_the_api_pass_through_against_the_demo() {
    let demo = Demo::start();

    // Every client-side route is the app's page.
    for path in ["/", "/pods", "/tap", "/deployments/storefront/web"] {
        let rsp = http(&demo.web, "GET", path, &[], b"");
        assert_eq!(rsp.status, 200, "GET {path}");
        assert_eq!(rsp.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(rsp.text().contains("data-namespace=\"conduit\""), "{path}");
        assert!(rsp.text().contains("/static/app.js"));
        assert!(rsp.header("content-security-policy").is_some());
    }
    for path in ["/nope", "/static/nope.js", "/api/v1/Nope", "/metrics"] {
        assert_eq!(http(&demo.web, "GET", path, &[], b"").status, 404, "{path}");
    }

    // Assets: their content types, and an ETag a browser can revalidate.
    for (path, content_type) in [
        ("/static/app.js", "text/javascript; charset=utf-8"),
        ("/static/app.css", "text/css; charset=utf-8"),
        ("/static/favicon.svg", "image/svg+xml"),
    ] {
        let rsp = http(&demo.web, "GET", path, &[], b"");
        assert_eq!(rsp.status, 200, "{path}");
        assert_eq!(rsp.header("content-type"), Some(content_type), "{path}");
        assert_eq!(rsp.header("cache-control"), Some("no-cache"));
        let etag = rsp.header("etag").expect("an ETag").to_string();
        let again = http(&demo.web, "GET", path, &[("If-None-Match", &etag)], b"");
        assert_eq!(again.status, 304, "{path} revalidates");
        assert!(again.body.is_empty());
    }

    // Version through the dashboard is public-api's own answer.
    let direct = http(&demo.api, "POST", "/api/v1/Version", &[JSON], b"");
    let through = http(&demo.web, "POST", "/api/v1/Version", &[JSON], b"");
    assert_eq!(direct.status, 200);
    assert_eq!((through.status, through.text()), (200, direct.text()));
    assert_eq!(through.header("content-type"), Some("application/json"));
    assert_eq!(
        through.json()["releaseVersion"],
        format!("v{}", env!("CARGO_PKG_VERSION"))
    );

    // public-api's refusals come through unchanged.
    let direct = http(&demo.api, "GET", "/api/v1/Stat", &[], b"");
    let through = http(&demo.web, "GET", "/api/v1/Stat", &[], b"");
    assert_eq!(through.status, 405);
    assert_eq!(through.text(), direct.text());
    assert_eq!(through.header("allow"), Some("POST"));
    let through = http(
        &demo.web,
        "POST",
        "/api/v1/Stat",
        &[("Content-Type", "text/plain")],
        b"x",
    );
    assert_eq!(through.status, 415, "{}", through.text());

    // A Stat through the dashboard, as the overview asks it.
    let stat = br#"{"metrics":["REQUEST_RATE"],"window":"ONE_MIN","groupBy":"TARGET_DEPLOY","summarize":true}"#;
    eventually_blocking("live Stat through the dashboard", PAGE_DEADLINE, || {
        let rsp = http(&demo.web, "POST", "/api/v1/Stat", &[JSON], stat);
        if rsp.status != 200 {
            return Err(format!("{}: {}", rsp.status, rsp.text()));
        }
        let series = rsp.json()["metrics"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut names: Vec<String> = series
            .iter()
            .filter_map(|s| s["metadata"]["targetDeploy"].as_str())
            .map(str::to_string)
            .collect();
        names.sort();
        if names != demo_deployments() {
            return Err(rsp.text());
        }
        Ok(())
    });

    // Bodies are bounded before anything is forwarded.
    let big = vec![b' '; 64 * 1024 + 1];
    let rsp = http(&demo.web, "POST", "/api/v1/Stat", &[JSON], &big);
    assert_eq!(rsp.status, 413, "{}", rsp.text());

    // Pages and assets take GET only.
    let rsp = http(&demo.web, "POST", "/static/app.js", &[], b"");
    assert_eq!(rsp.status, 405);
}

/// A request as public-api saw it: method, path, Content-Type, body.
type Seen = (String, String, Option<String>, String);

/// A stand-in public-api: Tap answers a line, then the next only when the
/// test says so; every request it sees is recorded.
#[derive(Clone, Default)]
struct FakeApi {
    seen: Arc<Mutex<Vec<Seen>>>,
    tap: Arc<Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Bytes>>>>,
}

async fn fake_api(State(fake): State<FakeApi>, req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap();
    fake.seen.lock().unwrap().push((
        method,
        path.clone(),
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    ));
    match path.as_str() {
        "/api/v1/Tap" => {
            let rx = fake.tap.lock().unwrap().take().expect("one tap");
            let lines = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
            let lines = futures::StreamExt::map(lines, Ok::<_, std::io::Error>);
            (
                [("content-type", "application/json")],
                Body::from_stream(lines),
            )
                .into_response()
        }
        _ => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom\n").into_response(),
    }
}

async fn start_fake_api(fake: FakeApi) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(fake_api).with_state(fake);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// `conduit web` in-process on loopback ports, pointed at `api`.
async fn start_web(api: &str) -> (SocketAddr, SocketAddr, ShutdownHandle) {
    let cli = conduit::cli::Cli::parse_from(conduit::cli::normalize_args(
        [
            "conduit",
            "web",
            "-addr=127.0.0.1:0",
            "-metrics-addr=127.0.0.1:0",
            &format!("-api-addr={api}"),
            "-namespace=mesh-system",
        ]
        .map(String::from),
    ));
    let conduit::cli::Command::Web(args) = cli.command else {
        unreachable!()
    };
    let web = args.bind().await.expect("web binds");
    let (http_addr, admin_addr) = (web.http_addr(), web.admin_addr());
    let (handle, shutdown) = ShutdownHandle::new();
    tokio::spawn(web.serve(shutdown));
    (http_addr, admin_addr, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_is_a_502_and_the_dashboard_stays_ready() {
    let unused = webdriver::free_port();
    let (web, admin, _shutdown) = start_web(&format!("127.0.0.1:{unused}")).await;
    let (web, admin) = (web.to_string(), admin.to_string());
    tokio::task::spawn_blocking(move || {
        let rsp = http(&web, "POST", "/api/v1/Version", &[JSON], b"");
        assert_eq!(rsp.status, 502, "{}", rsp.text());
        assert_eq!(
            rsp.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert!(
            rsp.text().starts_with(&format!(
                "cannot reach the public API at 127.0.0.1:{unused}: "
            )),
            "{}",
            rsp.text()
        );
        let page = http(&web, "GET", "/", &[], b"");
        assert!(page.text().contains("data-namespace=\"mesh-system\""));
        assert_eq!(http(&admin, "GET", "/ready", &[], b"").status, 200);
        let metrics = http(&admin, "GET", "/metrics", &[], b"").text();
        assert!(
            metrics.contains(r#"conduit_web_requests_total{kind="api",status="502"} 1"#),
            "{metrics}"
        );
        assert!(metrics.contains(r#"conduit_web_requests_total{kind="page",status="200"} 1"#));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_streams_through_as_each_event_arrives() {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let fake = FakeApi::default();
    *fake.tap.lock().unwrap() = Some(rx);
    let api = start_fake_api(fake.clone()).await;
    let (web, _admin, _shutdown) = start_web(&api.to_string()).await;
    let request = br#"{"deployment":"demo/web","maxRps":5}"#;
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(web).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "POST /api/v1/Tap HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
            request.len()
        )
        .unwrap();
        stream.write_all(request).unwrap();
        tx.send(Bytes::from_static(b"{\"first\":1}\n")).unwrap();
        // The first event reaches the browser while the stream is still
        // open: nothing waits for the end of the stream.
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&raw).contains("{\"first\":1}") {
            let n = stream.read(&mut buf).expect("the first event arrives");
            assert!(n > 0, "the stream ended early");
            raw.extend_from_slice(&buf[..n]);
        }
        tx.send(Bytes::from_static(b"{\"second\":2}\n")).unwrap();
        drop(tx);
        stream.read_to_end(&mut raw).unwrap();
        assert!(raw.ends_with(b"0\r\n\r\n"), "a finished stream ends with the final chunk");
        let rsp = webdriver::parse_response(&raw);
        assert_eq!(rsp.status, 200);
        assert_eq!(rsp.header("content-type"), Some("application/json"));
        assert_eq!(rsp.text(), "{\"first\":1}\n{\"second\":2}\n");
    })
    .await
    .unwrap();
    // What public-api received: the method, path, media type and body as
    // the browser sent them.
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(
            "POST".to_string(),
            "/api/v1/Tap".to_string(),
            Some("application/json; charset=utf-8".to_string()),
            String::from_utf8_lossy(request).into_owned(),
        )]
    );
}

/// Where screenshots go: `<target dir>/web-screenshots/`.
fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target dir")
        .join("web-screenshots")
}

/// Waits for a page to pass `check` (a script returning `null` when the
/// page is right, or what is still wrong); a screenshot is saved either way,
/// so a failure can be looked at.
fn page_shows(browser: &Browser, name: &str, check: &str) {
    let path = screenshot_dir().join(format!("{name}.png"));
    let started = Instant::now();
    let mut last = Value::Null;
    while started.elapsed() < PAGE_DEADLINE {
        last = browser.execute(check);
        if last.is_null() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    browser.screenshot(&path);
    assert!(
        last.is_null(),
        "the {name} page did not show what it should within {PAGE_DEADLINE:?}: {last} \
         (screenshot: {})",
        path.display()
    );
}

#[test]
fn the_dashboard_in_headless_chromium_against_the_demo() {
    let demo = Demo::start();
    let browser = Browser::start();
    let pods = eventually_blocking("the demo's pods", PAGE_DEADLINE, || {
        let (deployments, pods) = demo.mesh();
        if deployments == demo_deployments() && pods.len() == demo_pods() {
            Ok(pods)
        } else {
            Err(format!("{deployments:?}, {} pods", pods.len()))
        }
    });
    let wanted = serde_json::to_string(&demo_deployments()).unwrap();

    // Overview: a row per deployment with live numbers and a trend line.
    browser.goto(&demo.url("/"));
    page_shows(
        &browser,
        "overview",
        &format!(
            r#"
            const wanted = {wanted};
            if (!document.getElementById('error').hidden) return document.getElementById('error').textContent;
            const rows = [...document.querySelectorAll('#overview tbody tr[data-deployment]')];
            const shown = rows.map(r => r.dataset.deployment);
            if (JSON.stringify(shown) !== JSON.stringify(wanted)) return 'rows: ' + JSON.stringify(shown);
            for (const r of rows) {{
                if (!(Number(r.dataset.rate) > 0)) return r.dataset.deployment + ' has no request rate';
                const chart = r.querySelector('svg.sparkline');
                if (!chart || !chart.querySelector('path.line')) return r.dataset.deployment + ' has no trend line';
                if (Number(chart.dataset.points) < 2) return r.dataset.deployment + ' has ' + chart.dataset.points + ' trend points';
                if (r.querySelector('[data-metric=success]').textContent === '—') return r.dataset.deployment + ' has no success rate';
            }}
            if (document.querySelector('#totals [data-metric=rate] .value').textContent === '—') return 'no mesh totals';
            const namespaces = [...document.querySelectorAll('#namespaces tbody tr[data-namespace]')]
                .map(r => [r.dataset.namespace, r.querySelector('[data-metric=meshed]').textContent]);
            if (JSON.stringify(namespaces) !== JSON.stringify({namespaces})) return 'namespaces ' + JSON.stringify(namespaces);
            for (const r of rows) {{
                if (!/^[0-9]+\/[0-9]+$/.test(r.querySelector('[data-metric=meshed]').textContent)) return r.dataset.deployment + ' has no MESHED';
            }}
            return null;
            "#,
            namespaces = serde_json::to_string(
                &demo_namespaces()
                    .into_iter()
                    .map(|(ns, pods)| (ns, format!("{pods}/{pods}")))
                    .collect::<Vec<_>>()
            )
            .unwrap(),
        ),
    );

    // A deployment, reached by following its link: its pods, and its
    // callers and callees as the demo's call graph has them.
    let index = (0..DEMO_LAYOUT.len())
        .find(|&i| !demo_peers(i, true).is_empty() && !demo_peers(i, false).is_empty())
        .expect("the demo has a deployment in the middle of its call graph");
    let deployment = &format!("{}/{}", DEMO_LAYOUT[index].0, DEMO_LAYOUT[index].1);
    let callers = serde_json::to_string(&demo_peers(index, true)).unwrap();
    let callees = serde_json::to_string(&demo_peers(index, false)).unwrap();
    let paths = serde_json::to_string(&demo_paths(index)).unwrap();
    let members = pods
        .iter()
        .filter(|p| p["deployment"] == deployment.as_str())
        .count();
    browser.execute(&format!(
        r#"document.querySelector('#overview tr[data-deployment="{deployment}"] a').click(); return null;"#
    ));
    page_shows(
        &browser,
        "deployment",
        &format!(
            r#"
            if (location.pathname !== '/deployments/{deployment}') return 'at ' + location.pathname;
            if (!document.getElementById('error').hidden) return document.getElementById('error').textContent;
            const pods = document.querySelectorAll('#deployment-pods tbody tr[data-pod]');
            if (pods.length !== {members}) return pods.length + ' pods';
            for (const p of pods) if (p.querySelector('[data-metric=rate]').textContent === '—') return p.dataset.pod + ' has no rate';
            const peers = (id) => JSON.stringify([...document.querySelectorAll(`#${{id}} tbody tr[data-deployment]`)].map(r => r.dataset.deployment));
            if (peers('callers') !== JSON.stringify({callers})) return 'callers ' + peers('callers');
            if (peers('callees') !== JSON.stringify({callees})) return 'callees ' + peers('callees');
            if (!document.querySelector('.big-trend svg.sparkline path.line')) return 'no trend line';
            // Its routes: without templates, the observed paths the demo
            // serves, each with a rate.
            const routes = [...document.querySelectorAll('#routes tbody tr[data-route]')];
            if (routes.length === 0) return 'no routes: ' + document.getElementById('routes-note').textContent;
            for (const r of routes) {{
                const path = r.dataset.route.split(' ')[1];
                if (!{paths}.includes(path)) return 'unexpected route ' + r.dataset.route;
                if (r.querySelector('[data-metric=rate]').textContent === '—') return r.dataset.route + ' has no rate';
            }}
            if (document.getElementById('routes-note').textContent !== '(observed paths)') return 'note ' + document.getElementById('routes-note').textContent;
            return null;
            "#
        ),
    );

    // Its charts: request rate, success rate and latency over the window,
    // each axis labelled in its unit, and on hover the values of the step
    // under the pointer.
    page_shows(
        &browser,
        "deployment-charts",
        r#"
        for (const [id, unit, lines] of [['chart-rate', 'rps', 1], ['chart-success', '%', 1], ['chart-latency', 'ms', 3]]) {
            const c = document.getElementById(id);
            if (!c) return 'no ' + id;
            const labels = [...c.querySelectorAll('.axis.y text')].map(t => t.textContent);
            if (labels.length < 2) return id + ' has ' + labels.length + ' y labels';
            if (!labels.every(l => l.endsWith(' ' + unit) || (unit === '%' && /[0-9]%$/.test(l)))) return id + ' labels ' + labels.join(', ');
            if (c.querySelectorAll('.axis.x text').length < 2) return id + ' has no time axis';
            const drawn = [...c.querySelectorAll('path.line')].filter(p => Number(p.dataset.points) >= 2);
            if (drawn.length !== lines) return id + ' has ' + drawn.length + ' lines of 2+ points';
        }
        const hover = (id) => {
            const c = document.getElementById(id);
            const o = c.querySelector('rect.overlay').getBoundingClientRect();
            c.querySelector('rect.overlay').dispatchEvent(new MouseEvent('mousemove', {
                clientX: o.right - 3, clientY: o.top + o.height / 2, bubbles: true }));
            const tip = c.querySelector('.chart-tip');
            return tip.hidden ? '' : tip.textContent;
        };
        const rate = hover('chart-rate');
        if (!/requests: [0-9.]+ rps/.test(rate)) return 'rate hover: ' + rate;
        const latency = hover('chart-latency');
        if (!/P50: [0-9]+ ms.*P95: [0-9]+ ms.*P99: [0-9]+ ms/.test(latency)) return 'latency hover: ' + latency;
        return null;
        "#,
    );

    // The latency distribution of the deployment with the demo's slow
    // route: exact buckets, the percentiles marked, and the slow route's
    // mass (its share of the requests) drawn near the P99 mark.
    let (slow, slow_p50, slow_share) = demo_slow_route();
    browser.goto(&demo.url(&format!("/deployments/{slow}")));
    page_shows(
        &browser,
        "latency-distribution",
        &format!(
            r#"
            if (!document.getElementById('error').hidden) return document.getElementById('error').textContent;
            const d = document.getElementById('latency-distribution');
            if (!d || d.dataset.exact !== 'true') return 'no exact distribution';
            const marks = Object.fromEntries([...d.querySelectorAll('[data-mark]')].map(m => [m.dataset.mark, Number(m.dataset.ms)]));
            if (!(marks.P50 && marks.P95 && marks.P99)) return 'marks ' + JSON.stringify(marks);
            if (!(marks.P50 <= marks.P95 && marks.P95 <= marks.P99)) return 'marks out of order ' + JSON.stringify(marks);
            if (marks.P99 < {slow_p50}) return 'P99 ' + marks.P99 + ' ms is below the slow route median';
            const bars = [...d.querySelectorAll('#latency-histogram rect.bar')].map(b => [Number(b.dataset.lower), Number(b.dataset.upper), Number(b.dataset.count)]);
            const total = bars.reduce((n, b) => n + b[2], 0);
            if (total < 50) return total + ' responses';
            const near = bars.filter(b => b[0] >= marks.P99 / 5 && b[1] <= marks.P99 * 1.5).reduce((n, b) => n + b[2], 0);
            if (near / total < {near_share}) return 'only ' + (near / total).toFixed(3) + ' of the mass near P99 ' + marks.P99;
            const fast = bars.filter(b => b[1] <= marks.P99 / 10).reduce((n, b) => n + b[2], 0);
            if (fast / total < 0.3) return 'the fast routes are missing: ' + (fast / total).toFixed(3);
            const card = Number(document.querySelector('#deployment-summary [data-metric=p99] .value').textContent.replace(' ms', ''));
            if (Math.abs(card - marks.P99) > 0.1 * card) return 'P99 card ' + card + ' vs mark ' + marks.P99;
            if (d.querySelectorAll('#latency-heatmap rect.cell').length < 10) return 'no heatmap';
            d.parentElement.scrollIntoView({{block: 'start'}});
            return null;
            "#,
            near_share = slow_share * 0.6,
        ),
    );

    // Not found, inside the layout: an unknown deployment and an unknown page.
    browser.goto(&demo.url("/deployments/storefront/nope"));
    page_shows(
        &browser,
        "not-found-deployment",
        r#"
        const nf = document.getElementById('not-found');
        if (!nf) return 'no not-found state: ' + document.getElementById('app').textContent.slice(0, 200);
        if (nf.querySelector('h1').textContent !== 'No deployment storefront/nope') return nf.textContent;
        if (!document.querySelector('header.topbar nav')) return 'not inside the layout';
        if (!nf.querySelector('a[href="/deployments/storefront/web"]')) return 'no links to the namespace deployments';
        return null;
        "#,
    );
    browser.goto(&demo.url("/nope"));
    page_shows(
        &browser,
        "not-found-page",
        r#"
        const nf = document.getElementById('not-found');
        if (!nf || nf.querySelector('h1').textContent !== 'Page not found') return document.getElementById('app').textContent.slice(0, 200);
        if (!/no page at \/nope/.test(nf.textContent)) return nf.textContent;
        if (!document.querySelector('header.topbar nav')) return 'not inside the layout';
        return null;
        "#,
    );

    // A namespace: its deployments, each with MESHED.
    let (ns, _) = demo_namespaces().into_iter().next().unwrap();
    let in_ns: Vec<String> = demo_deployments()
        .into_iter()
        .filter(|d| d.starts_with(&format!("{ns}/")))
        .collect();
    browser.goto(&demo.url(&format!("/namespaces/{ns}")));
    page_shows(
        &browser,
        "namespace",
        &format!(
            r#"
            if (!document.getElementById('error').hidden) return document.getElementById('error').textContent;
            const rows = [...document.querySelectorAll('#namespace-deployments tbody tr[data-deployment]')];
            if (JSON.stringify(rows.map(r => r.dataset.deployment)) !== JSON.stringify({in_ns})) return 'rows ' + rows.map(r => r.dataset.deployment);
            for (const r of rows) if (!/^([0-9]+)\/\1$/.test(r.querySelector('[data-metric=meshed]').textContent)) return r.dataset.deployment + ' MESHED ' + r.querySelector('[data-metric=meshed]').textContent;
            if (!document.querySelector('#namespace-pods tbody tr[data-pod]')) return 'no pods';
            return null;
            "#,
            in_ns = serde_json::to_string(&in_ns).unwrap(),
        ),
    );

    // Pods: every pod, each with a recent report.
    let count = demo_pods();
    browser.goto(&demo.url("/pods"));
    page_shows(
        &browser,
        "pods",
        &format!(
            r#"
            if (!document.getElementById('error').hidden) return document.getElementById('error').textContent;
            const rows = [...document.querySelectorAll('#pods tbody tr[data-pod]')];
            if (rows.length !== {count}) return rows.length + ' pods';
            const stale = rows.filter(r => r.dataset.fresh !== 'true').map(r => r.dataset.pod);
            if (stale.length) return 'not fresh: ' + stale.join(', ');
            if (!rows.every(r => /ago|just now/.test(r.querySelector('.freshness').textContent))) return 'no report ages';
            return null;
            "#
        ),
    );

    // Tap: opened with a target, it starts by itself and shows live
    // events of the deployment, until Stop.
    browser.goto(&demo.url(&format!("/tap?deployment={deployment}")));
    page_shows(
        &browser,
        "tap",
        r#"
        const rows = [...document.querySelectorAll('#tap-events tbody tr[data-kind]')];
        const kinds = new Set(rows.map(r => r.dataset.kind));
        if (!kinds.has('req') || !kinds.has('rsp') || rows.length < 4) {
            return document.getElementById('tap-status').textContent + ' / ' + rows.length + ' rows';
        }
        return null;
        "#,
    );
    browser.execute("document.getElementById('tap-stop').click(); return null;");
    eventually_blocking("the tap to stop", PAGE_DEADLINE, || {
        let status = browser.execute("return document.getElementById('tap-status').textContent;");
        if status == "Stopped." {
            Ok(())
        } else {
            Err(status.to_string())
        }
    });

    // Topology: a node per deployment, an edge per call of the demo's call
    // graph, the failing call not drawn as healthy; the layout is the same
    // after a refresh, and a node opens its deployment.
    let mut edges: Vec<String> = DEMO_CALLS
        .iter()
        .map(|&(a, b)| {
            format!(
                "{}/{}>{}/{}",
                DEMO_LAYOUT[a].0, DEMO_LAYOUT[a].1, DEMO_LAYOUT[b].0, DEMO_LAYOUT[b].1
            )
        })
        .collect();
    edges.sort();
    let failing = DEMO_LAYOUT.len() - 1;
    let caller_of_failing = DEMO_CALLS
        .iter()
        .find(|&&(_, b)| b == failing)
        .map(|&(a, _)| a)
        .expect("the failing deployment has a caller");
    let failing_edge = format!(
        "{}/{}>{}/{}",
        DEMO_LAYOUT[caller_of_failing].0,
        DEMO_LAYOUT[caller_of_failing].1,
        DEMO_LAYOUT[failing].0,
        DEMO_LAYOUT[failing].1
    );
    browser.goto(&demo.url("/topology"));
    let topology = format!(
        r#"
        if (!document.getElementById('error').hidden) return document.getElementById('error').textContent;
        const nodes = [...document.querySelectorAll('#topology g.node')].map(n => n.dataset.node).sort();
        if (JSON.stringify(nodes) !== JSON.stringify({wanted})) return 'nodes ' + nodes;
        const paths = [...document.querySelectorAll('#topology path.edge')];
        const edges = paths.map(e => e.dataset.src + '>' + e.dataset.dst).sort();
        if (JSON.stringify(edges) !== JSON.stringify({edges})) return 'edges ' + edges;
        const widths = paths.map(e => Number(e.getAttribute('stroke-width')));
        if (!paths.every(e => Number(e.dataset.rate) > 0)) return 'an edge without traffic';
        if (Math.max(...widths) <= Math.min(...widths)) return 'edges not weighted by rate';
        const bad = paths.find(e => e.dataset.src + '>' + e.dataset.dst === '{failing_edge}');
        if (bad.classList.contains('good')) return 'the failing call is drawn as healthy';
        window.layoutSeen = window.layoutSeen || [...document.querySelectorAll('#topology g.node')].map(n => n.dataset.node + '@' + n.getAttribute('transform')).sort().join();
        return null;
        "#,
        edges = serde_json::to_string(&edges).unwrap(),
    );
    page_shows(&browser, "topology", &topology);
    std::thread::sleep(Duration::from_secs(6));
    page_shows(
        &browser,
        "topology-stable",
        r#"
        const now = [...document.querySelectorAll('#topology g.node')].map(n => n.dataset.node + '@' + n.getAttribute('transform')).sort().join();
        return now === window.layoutSeen ? null : 'moved: ' + now + ' vs ' + window.layoutSeen;
        "#,
    );
    browser.execute(&format!(
        r#"document.querySelector('#topology g.node[data-node="{deployment}"]').dispatchEvent(new MouseEvent('click', {{bubbles: true}})); return null;"#
    ));
    page_shows(
        &browser,
        "topology-click",
        &format!(
            r#"return location.pathname === '/deployments/{deployment}' ? null : location.pathname;"#
        ),
    );

    // Top: the deployment's requests grouped by path, as `conduit top`
    // shows them, with pods by name; every path is one the demo's
    // deployment serves.
    let paths = serde_json::to_string(&demo_paths(index)).unwrap();
    browser.goto(&demo.url(&format!("/top?deployment={deployment}")));
    page_shows(
        &browser,
        "top",
        &format!(
            r#"
            if (!document.getElementById('error').hidden) return document.getElementById('error').textContent;
            const paths = {paths};
            const rows = [...document.querySelectorAll('#top tbody tr[data-path]')];
            const total = rows.reduce((n, r) => n + Number(r.dataset.count), 0);
            if (total < 5) return total + ' requests: ' + document.getElementById('top-status').textContent;
            for (const r of rows) if (!paths.includes(r.dataset.path)) return 'unexpected path ' + r.dataset.path;
            // Pods by name: every destination is one of the deployment's pods.
            for (const r of rows) if (!r.dataset.destination.startsWith('{deployment}-')) return 'destination ' + r.dataset.destination + ' is not a pod of {deployment}';
            const counts = rows.map(r => Number(r.dataset.count));
            if (counts.some((c, i) => i && c > counts[i - 1])) return 'not busiest first: ' + counts;
            if (!rows.some(r => /%$/.test(r.lastElementChild.textContent))) return 'no success rates';
            return null;
            "#
        ),
    );
}

/// Nothing answers at `-api-addr`: every page says the API is down,
/// inside the layout; and in front of two telemetry replicas of which one
/// is unreachable, the pages say their answers are partial. The public API
/// and the dashboard are the real components, in-process on loopback.
#[test]
fn the_dashboard_says_when_the_api_is_down_or_an_answer_is_partial() {
    let demo = Demo::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (down, partial, _handles) = rt.block_on(async {
        let unused = api::unused_addr().await.to_string();
        let (down, _, down_handle) = start_web(&unused).await;
        let api = api::start_public_api(&format!("{},{unused}", demo.telemetry), &demo.tap).await;
        let (partial, _, partial_handle) = start_web(&api.http.to_string()).await;
        (down, partial, (down_handle, partial_handle, api))
    });
    let browser = Browser::start();
    for path in ["/", "/deployments/storefront/web", "/topology"] {
        browser.goto(&format!("http://{down}{path}"));
        page_shows(
            &browser,
            "api-down",
            r#"
            const e = document.getElementById('error');
            if (e.hidden || e.dataset.state !== 'api-down') return 'no API-down state: ' + e.textContent;
            if (!/public API is not answering/.test(e.textContent) || !/cannot reach the public API at/.test(e.textContent)) return e.textContent;
            if (!document.querySelector('header.topbar nav')) return 'not inside the layout';
            return null;
            "#,
        );
    }
    let wanted = serde_json::to_string(&demo_deployments()).unwrap();
    for (path, shows) in [
        ("/", "#overview tbody tr[data-deployment]"),
        (
            &*format!("/deployments/{}", demo_deployments()[0]),
            "#deployment-pods tbody tr[data-pod]",
        ),
    ] {
        browser.goto(&format!("http://{partial}{path}"));
        page_shows(
            &browser,
            "partial",
            &format!(
                r#"
                const p = document.getElementById('partial');
                if (p.hidden) return 'no partial note';
                if (!/Partial answer: 1 of 2 telemetry replicas unreachable/.test(p.textContent)) return p.textContent;
                if (!document.querySelector('{shows}')) return 'no figures';
                const wanted = {wanted};
                if (document.getElementById('overview') && document.querySelectorAll('#overview tbody tr[data-deployment]').length !== wanted.length) return 'rows';
                return null;
                "#
            ),
        );
    }
}
