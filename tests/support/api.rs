//! Test support for the public API: `conduit controller public-api` on
//! loopback, a raw HTTP/1.1 client that keeps the bytes exactly as sent, and
//! a fake tap component. Include with `#[path = "support/api.rs"] mod api;`
//! next to `mod support;`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use clap::Parser;
use conduit::core::ShutdownHandle;
use conduit::proto::common::TapEvent;
use conduit::proto::controller::tap::tap_server::{Tap, TapServer};
use conduit::proto::public::TapRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one request to the API may take in a test before it fails as
/// a hang.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(20);

pub struct RunningApi {
    pub http: SocketAddr,
    pub admin: SocketAddr,
    _shutdown: ShutdownHandle,
}

/// Starts `conduit controller public-api` in-process on loopback ports,
/// pointed at the given telemetry and tap addresses.
pub async fn start_public_api(telemetry: &str, tap: &str) -> RunningApi {
    let argv = [
        "conduit".to_string(),
        "controller".into(),
        "public-api".into(),
        "-addr=127.0.0.1:0".into(),
        "-metrics-addr=127.0.0.1:0".into(),
        format!("-telemetry-addr={telemetry}"),
        format!("-tap-addr={tap}"),
    ];
    let cli = conduit::cli::Cli::parse_from(conduit::cli::normalize_args(argv));
    let conduit::cli::Command::Controller(conduit::cli::Controller::PublicApi(args)) = cli.command
    else {
        unreachable!()
    };
    let bound = args.bind().await.expect("public-api binds");
    let (handle, shutdown) = ShutdownHandle::new();
    let running = RunningApi {
        http: bound.http_addr(),
        admin: bound.admin_addr(),
        _shutdown: handle,
    };
    tokio::spawn(bound.serve(shutdown));
    running
}

/// A loopback address nothing listens on (bound, then released).
pub async fn unused_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body with any chunked framing removed.
    pub body: Vec<u8>,
    /// For a chunked body: whether the final zero-size chunk arrived.
    pub complete: bool,
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
}

/// One HTTP/1.1 request with `Connection: close`, read to the end.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> HttpResponse {
    tokio::time::timeout(
        REQUEST_DEADLINE,
        request_inner(addr, method, path, content_type, body),
    )
    .await
    .unwrap_or_else(|_| panic!("{method} {path} did not finish within {REQUEST_DEADLINE:?}"))
}

/// `POST` with the given content type.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> HttpResponse {
    request(addr, "POST", path, content_type, body).await
}

async fn request_inner(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> HttpResponse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    // A server may cut a response short (a broken Tap stream): what arrived
    // before the reset is the response.
    let _ = stream.read_to_end(&mut raw).await;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let (body, complete) = if chunked {
        dechunk(rest)
    } else {
        (rest.to_vec(), true)
    };
    HttpResponse {
        status,
        headers,
        body,
        complete,
    }
}

/// Removes chunked framing; `true` when the final chunk was seen.
fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let size_text = std::str::from_utf8(&raw[..eol]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        raw = &raw[eol + 2..];
        if size == 0 {
            return (body, true);
        }
        if raw.len() < size + 2 {
            body.extend_from_slice(&raw[..raw.len().min(size)]);
            return (body, false);
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// What the fake tap component answers every call with.
#[derive(Clone, Default)]
pub struct FakeTap {
    pub events: Vec<TapEvent>,
    /// Sent after the events (or alone, before any, when `events` is empty).
    pub then_error: Option<tonic::Status>,
    /// After the events, keep the stream open (no end, no error).
    pub hold_open: bool,
}

type EventStream = Pin<Box<dyn futures::Stream<Item = Result<TapEvent, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Tap for FakeTap {
    type TapStream = EventStream;

    async fn tap(
        &self,
        _: tonic::Request<TapRequest>,
    ) -> Result<tonic::Response<EventStream>, tonic::Status> {
        if self.events.is_empty()
            && let Some(status) = &self.then_error
        {
            return Err(status.clone());
        }
        let items: Vec<Result<TapEvent, tonic::Status>> = self
            .events
            .iter()
            .cloned()
            .map(Ok)
            .chain(self.then_error.clone().map(Err))
            .collect();
        let events = futures::stream::iter(items);
        if self.hold_open {
            use futures::StreamExt as _;
            return Ok(tonic::Response::new(Box::pin(
                events.chain(futures::stream::pending()),
            )));
        }
        Ok(tonic::Response::new(Box::pin(events)))
    }
}

/// Serves `fake` as `conduit.controller.tap.Tap` on a loopback port until
/// the returned handle drops.
pub async fn start_fake_tap(fake: FakeTap) -> (SocketAddr, ShutdownHandle) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (handle, shutdown) = ShutdownHandle::new();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TapServer::new(fake))
            .serve_with_incoming_shutdown(incoming, shutdown.signaled()),
    );
    (addr, handle)
}

/// A unary protobuf answer: the 4-byte little-endian length, then the
/// message (checked by hand, so a test does not trust the code under test).
pub fn unframed<M: prost::Message + Default>(body: &[u8]) -> M {
    assert!(body.len() >= 4, "a frame has a 4-byte length: {body:?}");
    let len = u32::from_le_bytes(body[..4].try_into().unwrap()) as usize;
    assert_eq!(len, body.len() - 4, "one frame, length little-endian");
    M::decode(&body[4..]).unwrap()
}

/// Stat's summarized request rate of one target deployment over a minute,
/// through the API's protobuf Stat.
pub async fn stat_rate(api: &RunningApi, deployment: &str) -> f64 {
    use conduit::proto::public::{
        AggregationType, MetricName, MetricRequest, MetricResponse, TimeWindow, metric_value,
    };
    use prost::Message as _;
    let req = MetricRequest {
        metrics: vec![MetricName::RequestRate as i32],
        window: TimeWindow::OneMin as i32,
        group_by: AggregationType::TargetDeploy as i32,
        filter_by: None,
        summarize: true,
    };
    let rsp = post(
        api.http,
        conduit::proto::http_api::STAT_PATH,
        Some("application/octet-stream"),
        &req.encode_to_vec(),
    )
    .await;
    let answer: MetricResponse = unframed(&rsp.body);
    let series = answer
        .metrics
        .iter()
        .find(|s| s.metadata.as_ref().unwrap().target_deploy == deployment)
        .unwrap();
    match series.datapoints[0].value.as_ref().unwrap().value {
        Some(metric_value::Value::Gauge(g)) => g,
        ref other => panic!("a gauge: {other:?}"),
    }
}

/// Runs the built binary off the runtime's threads, so the servers of the
/// test keep serving while it waits.
pub async fn conduit(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_conduit"))
            .args(&args)
            .env_remove("RUST_LOG")
            .output()
            .expect("the conduit binary runs")
    })
    .await
    .unwrap()
}
