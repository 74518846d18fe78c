//! A small blocking HTTP/1.1 client, and on it a W3C WebDriver client for
//! Debian's headless Chromium through `chromedriver`: enough to open pages,
//! run scripts that read the DOM, and save screenshots.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long one HTTP exchange may take: a WebDriver navigation waits for the
/// page's load event.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// How long chromedriver may take to accept sessions.
const DRIVER_START: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One request on its own connection (`Connection: close`), the whole
/// answer read; chunked bodies are decoded.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut stream =
        TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let raw = read_message(&mut stream)
        .unwrap_or_else(|e| panic!("reading {method} {path} from {addr}: {e}"));
    parse_response(&raw)
}

/// Reads one response as its framing says (Content-Length, chunked, or up
/// to the end of the connection): a server may keep the connection open
/// whatever the request asked.
fn read_message(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = message_end(&raw)
            && raw.len() >= end
        {
            raw.truncate(end);
            return Ok(raw);
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(raw);
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

/// Where the message in `raw` ends, once that is known.
fn message_end(raw: &[u8]) -> Option<usize> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return Some(split + len);
    }
    if head.contains("transfer-encoding: chunked") {
        // Walk the chunks: the message ends after the empty last chunk.
        let mut at = split;
        loop {
            let eol = raw[at..].windows(2).position(|w| w == b"\r\n")?;
            let size_text = String::from_utf8_lossy(&raw[at..at + eol]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at += eol + 2 + size + 2;
            if size == 0 {
                return Some(at);
            }
            if at > raw.len() {
                return None;
            }
        }
    }
    let status = head.split(' ').nth(1).unwrap_or_default();
    (status == "304" || status == "204").then_some(split)
}

pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// The data of a chunked body (as far as it goes: a cut stream gives what
/// arrived).
pub fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("a chunk size");
        rest = &rest[eol + 2..];
        if size == 0 || rest.len() < size {
            out.extend_from_slice(&rest[..size.min(rest.len())]);
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
    out
}

/// A free loopback port (closed again, so there is a small window in which
/// someone else could take it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A headless Chromium driven through chromedriver; the browser and the
/// driver end when this is dropped.
pub struct Browser {
    driver: Child,
    addr: String,
    session: String,
    profile: crate::support::TempDir,
}

impl Browser {
    /// Starts chromedriver and a browser session. Fails (never skips) when
    /// Chromium is not installed.
    pub fn start() -> Self {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: the dashboard's browser test needs Debian's chromium and \
                 chromium-driver packages; run .ci/run, which installs them"
            );
        }
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = crate::support::TempDir::new();
        let mut browser = Self {
            driver,
            addr,
            session: String::new(),
            profile,
        };
        let started = Instant::now();
        loop {
            let ready = TcpStream::connect(&browser.addr).is_ok()
                && browser.call("GET", "/status", None)["value"]["ready"] == true;
            if ready {
                break;
            }
            assert!(
                started.elapsed() < DRIVER_START,
                "chromedriver did not become ready within {DRIVER_START:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
            &format!("--user-data-dir={}", browser.profile.0.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let rsp = browser.call("POST", "/session", Some(caps));
        browser.session = rsp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {rsp}"))
            .to_string();
        browser
    }

    /// One WebDriver command; its JSON answer. WebDriver errors panic with
    /// their message.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let rsp = http(
            &self.addr,
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        let value = rsp.json();
        assert!(
            rsp.status == 200,
            "WebDriver {method} {path} answered {}: {value}",
            rsp.status
        );
        value
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body)["value"].take()
    }

    /// Navigates and waits for the page's load event.
    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs a script (a function body: `return …`) in the page.
    pub fn execute(&self, script: &str) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Saves a PNG of the viewport.
    pub fn screenshot(&self, path: &Path) {
        let encoded = self.session_call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a base64 screenshot"))
            .expect("valid base64");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium; killing only the driver could
        // leave the browser running.
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            if TcpStream::connect(&self.addr).is_ok() {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    http(&self.addr, "DELETE", &path, &[], b"")
                }));
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
