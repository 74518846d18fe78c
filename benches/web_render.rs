//! The dashboard's page weight and time to first render against
//! `conduit run --demo`, in the headless Chromium the browser test drives:
//! the bytes of the page and its assets as served (uncompressed), and, per
//! load, the first contentful paint and the moment the page first shows
//! its figures (the app's `conduit:first-render` mark), both from the
//! start of navigation. The overview and a deployment page are loaded in
//! turn (A B A B …), each load a fresh navigation revalidating the assets.
//!
//! Run: `cargo bench --bench web_render` (needs Debian's chromium and
//! chromium-driver, as `tests/web.rs` does).

#[allow(dead_code)]
#[path = "../tests/support/demo.rs"]
mod demo;
#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/support/webdriver.rs"]
mod webdriver;

use std::time::{Duration, Instant};

use demo::Demo;
use webdriver::{Browser, http};

/// Loads of each page measured.
const ROUNDS: usize = 10;

/// How long one load may take to show its figures.
const LOAD_DEADLINE: Duration = Duration::from_secs(30);

/// The pages loaded in turn.
const PAGES: &[(&str, &str)] = &[
    ("overview", "/"),
    ("deployment", "/deployments/catalog/search"),
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let demo = Demo::start();
    // The demo's proxies report within a second or two; wait for all of
    // them so every load has figures to show.
    let started = Instant::now();
    loop {
        let rsp = http(
            &demo.web,
            "POST",
            "/api/v1/ListPods",
            &[("Content-Type", "application/json")],
            b"{}",
        );
        let reporting = rsp.json()["pods"]
            .as_array()
            .map_or(0, |p| p.iter().filter(|p| p["added"] == true).count());
        if reporting >= 19 {
            break;
        }
        assert!(
            started.elapsed() < LOAD_DEADLINE,
            "the demo's pods did not report"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));

    let mut total = 0;
    for path in [
        "/",
        "/static/app.js",
        "/static/app.css",
        "/static/favicon.svg",
    ] {
        let rsp = http(&demo.web, "GET", path, &[], b"");
        assert_eq!(rsp.status, 200, "{path}");
        println!("{path:<22} {:>7} bytes", rsp.body.len());
        total += rsp.body.len();
    }
    println!("{:<22} {total:>7} bytes (uncompressed)", "page weight");

    let browser = Browser::start();
    let mut paint: Vec<Vec<f64>> = vec![Vec::new(); PAGES.len()];
    let mut render: Vec<Vec<f64>> = vec![Vec::new(); PAGES.len()];
    // One unmeasured load of each page warms the browser's cache and the
    // connections, as a person's second visit finds them.
    for round in 0..=ROUNDS {
        for (i, (_, path)) in PAGES.iter().enumerate() {
            browser.goto(&format!("http://{}{path}?round={round}", demo.web));
            let started = Instant::now();
            let times = loop {
                let v = browser.execute(
                    "const r = performance.getEntriesByName('conduit:first-render')[0];
                     const p = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint');
                     return r && p ? [p.startTime, r.startTime] : null;",
                );
                if let Some(t) = v.as_array() {
                    break (t[0].as_f64().unwrap(), t[1].as_f64().unwrap());
                }
                assert!(started.elapsed() < LOAD_DEADLINE, "{path} did not render");
                std::thread::sleep(Duration::from_millis(20));
            };
            if round > 0 {
                paint[i].push(times.0);
                render[i].push(times.1);
            }
        }
    }
    for (i, (name, path)) in PAGES.iter().enumerate() {
        println!(
            "{name:<11} {path:<30} first paint median {:>6.1} ms, first render median {:>6.1} ms (max {:.1} ms) over {ROUNDS} loads",
            median(paint[i].clone()),
            median(render[i].clone()),
            render[i].iter().copied().fold(0.0, f64::max),
        );
    }
}
