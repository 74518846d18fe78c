//! The admin HTTP server every component runs on its `-metrics-addr`:
//! `/metrics` (its own registry, plus the mesh series where the component
//! holds an ingester), `/ping` and `/ready`.
//!
//! `/metrics` is negotiated: the text format (0.0.4) unless the scraper
//! prefers the delimited protobuf exposition (`Accept`, as Prometheus sends
//! it with its `native-histograms` feature on), and gzip-compressed when
//! `Accept-Encoding` allows it (Prometheus always sends `gzip`). Either way
//! a scrape is rendered, and compressed, a chunk at a time.

use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use prometheus::{Encoder, Registry, TextEncoder};
use std::io::Write as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

use crate::core::Shutdown;
use crate::ingest::Ingester;

/// A scrape is rendered a chunk of about this size at a time, each when
/// the scraper has taken the previous one: a scrape of a million series
/// never holds its whole text, and a scraper that stops reading holds one
/// chunk and no thread. Each chunk is one hop to the blocking pool, so
/// smaller chunks cost a large scrape more time.
const CHUNK_BYTES: usize = 64 * 1024;

/// What hyper buffers per connection, reading and writing (its default is
/// about 400 KiB, which a few hundred scrapers that never read turn into
/// hundreds of megabytes; it still takes one chunk past it): with
/// [`CHUNK_BYTES`], a stuck scraper costs the process about 100 KiB.
const MAX_CONNECTION_BUFFER: usize = 16 * 1024;

/// How long a client may take to send a request's headers (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Chunks rendered at once across all scrapes (the machine's two cores):
/// hundreds of scrapers arriving together queue here instead of filling
/// the blocking pool.
const MAX_CONCURRENT_RENDERS: usize = 2;

/// How long a connection may leave the admin server unable to write (a
/// scraper that stopped reading) before it is closed, freeing its chunk.
/// Prometheus reads a scrape as it arrives; 10 s of no progress is not a
/// slow network but a client that is gone or hostile.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Scrapes compressing at once: a gzip scrape holds a deflate state (about
/// 300 KiB with `miniz_oxide`) for as long as its scraper takes, up to
/// [`WRITE_STALL_TIMEOUT`] of not reading. Past it a scrape is served
/// uncompressed, which `Accept-Encoding` allows, and counted by
/// `conduit_admin_gzip_fallbacks_total`: a few hundred stuck scrapers then
/// cost what they cost without gzip.
const MAX_GZIP_SCRAPES: usize = 8;

/// Deflate level 1: a scrape's text is repetitive enough that the fastest
/// level already takes it to a few percent of its size, at a fraction of
/// the CPU of the default level (BENCHMARKS.md).
const GZIP_LEVEL: u32 = 1;

pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a `/metrics` response is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    /// Delimited `io.prometheus.client.MetricFamily` messages.
    Protobuf,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_FORMAT,
            Format::Protobuf => crate::ingest::protobuf::FORMAT,
        }
    }
}

/// The media ranges and codings of an `Accept` or `Accept-Encoding` value:
/// `(lowercased range, its parameters but `q`, q)`.
fn ranges(value: &str) -> impl Iterator<Item = (String, Vec<(String, String)>, f64)> + '_ {
    value.split(',').filter_map(|entry| {
        let mut parts = entry.split(';').map(str::trim);
        let range = parts.next().filter(|r| !r.is_empty())?.to_ascii_lowercase();
        let mut q = 1.0;
        let mut params = Vec::new();
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"'));
            if k == "q" {
                q = v.parse::<f64>().unwrap_or(0.0).clamp(0.0, 1.0);
            } else {
                params.push((k, v.to_string()));
            }
        }
        Some((range, params, q))
    })
}

/// The format a scraper asked for: protobuf only when it ranks the
/// delimited `MetricFamily` exposition above the text format (or `*/*`);
/// text when it says nothing, or asks for a format not served here.
pub fn negotiate_format(accept: Option<&str>) -> Format {
    let (mut protobuf, mut text) = (0.0f64, 0.0f64);
    for (range, params, q) in ranges(accept.unwrap_or("")) {
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        match range.as_str() {
            "application/vnd.google.protobuf"
                if param("proto") == Some("io.prometheus.client.MetricFamily")
                    && param("encoding") == Some("delimited") =>
            {
                protobuf = protobuf.max(q);
            }
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    if protobuf > 0.0 && protobuf > text {
        Format::Protobuf
    } else {
        Format::Text
    }
}

/// Whether `Accept-Encoding` allows gzip (named, or `*`, with q > 0).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let (mut gzip, mut any) = (None, None);
    for (coding, _, q) in ranges(accept_encoding.unwrap_or("")) {
        match coding.as_str() {
            "gzip" | "x-gzip" => gzip = Some(q),
            "*" => any = Some(q),
            _ => {}
        }
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
}

static GZIP_SCRAPES: LazyLock<Arc<tokio::sync::Semaphore>> =
    LazyLock::new(|| Arc::new(tokio::sync::Semaphore::new(MAX_GZIP_SCRAPES)));

/// Scrapes that asked for gzip and were served plain: [`MAX_GZIP_SCRAPES`]
/// were compressing.
static GZIP_FALLBACKS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::IntCounter::new(
        "conduit_admin_gzip_fallbacks_total",
        "Scrapes that accepted gzip but were served uncompressed: too many scrapes were compressing at once.",
    )
    .expect("a valid metric")
});

/// A component's two listening sockets: the one it serves on (`-addr`)
/// and its admin port (`-metrics-addr`), both bound before anything is
/// served, so a port in use fails the start, not a task later.
pub struct Ports {
    pub serve: TcpListener,
    pub admin: TcpListener,
}

impl Ports {
    pub async fn bind(
        addr: &crate::core::ListenAddr,
        metrics_addr: &crate::core::ListenAddr,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let serve = TcpListener::bind(addr.0)
            .await
            .with_context(|| format!("binding -addr {addr}"))?;
        let admin = TcpListener::bind(metrics_addr.0)
            .await
            .with_context(|| format!("binding -metrics-addr {metrics_addr}"))?;
        Ok(Self { serve, admin })
    }

    /// The address served on (the port the OS picked for `:0`).
    pub fn serve_addr(&self) -> std::net::SocketAddr {
        self.serve
            .local_addr()
            .expect("a bound listener has a local address")
    }

    pub fn admin_addr(&self) -> std::net::SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound listener has a local address")
    }
}

/// Whether the component is ready to serve (DESIGN §11 "Readiness").
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
pub struct Admin {
    pub registry: Registry,
    pub ingester: Option<Arc<Ingester>>,
    pub ready: Readiness,
}

impl Admin {
    /// A registry with the process collector registered.
    pub fn registry() -> Registry {
        let registry = Registry::new();
        let process = prometheus::process_collector::ProcessCollector::for_self();
        if let Err(error) = registry.register(Box::new(process)) {
            tracing::warn!(%error, "process metrics unavailable");
        }
        registry
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/ping", get(|| async { "pong" }))
            .route("/ready", get(ready))
            .with_state(self)
    }

    /// Serves on an already bound listener until shutdown; connections a
    /// client stopped reading are closed after [`WRITE_STALL_TIMEOUT`],
    /// counted by `conduit_admin_stalled_connections_total`.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> std::io::Result<()> {
        let stalls = prometheus::IntCounter::new(
            "conduit_admin_stalled_connections_total",
            "Admin connections closed because the client stopped reading for 10 s.",
        )
        .expect("a valid metric");
        if let Err(error) = self.registry.register(Box::new(stalls.clone())) {
            tracing::debug!(%error, "stall counter already registered");
        }
        if let Err(error) = self.registry.register(Box::new(GZIP_FALLBACKS.clone())) {
            tracing::debug!(%error, "gzip fallback counter already registered");
        }
        let router = self.router();
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut signaled = std::pin::pin!(shutdown.signaled());
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut signaled => break,
            };
            let tcp = match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    // Out of descriptors, most likely: wait for some to close.
                    tracing::warn!(%error, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let io = hyper_util::rt::TokioIo::new(StallGuard {
                io: tcp,
                stalled: None,
                timeout: WRITE_STALL_TIMEOUT,
                stalls: stalls.clone(),
            });
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_CONNECTION_BUFFER)
                .serve_connection(io, service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "admin connection ended");
                }
            });
        }
        graceful.shutdown().await;
        Ok(())
    }

    /// Every component's last step: its own server `main` (bound, and told
    /// to stop accepting at `shutdown`; `what` names it in errors) and this
    /// admin port on `listener`, side by side until both have drained or
    /// the shutdown grace has run out ([`Shutdown::drain`]). The first to
    /// fail ends both.
    pub async fn serve_beside<E>(
        self,
        listener: TcpListener,
        what: &'static str,
        main: impl Future<Output = Result<(), E>>,
        shutdown: Shutdown,
    ) -> anyhow::Result<()>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        use anyhow::Context as _;
        let admin = self.serve(listener, shutdown.clone());
        let both = async {
            tokio::try_join!(async { main.await.context(what) }, async {
                admin.await.context("admin server")
            })
            .map(|_| ())
        };
        shutdown.drain(what, both).await.unwrap_or(Ok(()))
    }

    /// Renders the whole exposition into one buffer (tests and tools).
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(ingester) = &self.ingester {
            ingester.refresh_gauges();
            ingester.render(&mut out);
        }
        self.render_registry(&mut out);
        out
    }

    /// A whole scrape, chunk by chunk as `/metrics` sends it, on this
    /// thread (benches and tools); returns whether it was compressed
    /// (`gzip` asks, [`MAX_GZIP_SCRAPES`] may refuse).
    pub fn scrape_chunks(&self, format: Format, gzip: bool, mut sink: impl FnMut(&[u8])) -> bool {
        if let Some(ingester) = &self.ingester {
            ingester.refresh_gauges();
        }
        let gzip = if gzip { Gzip::start() } else { None };
        let compressed = gzip.is_some();
        let mut scrape = Scrape::new(self.clone(), format, gzip);
        while let Some(chunk) = scrape.next_chunk() {
            sink(&chunk);
        }
        compressed
    }

    /// [`Self::render`] in the protobuf exposition.
    pub fn render_protobuf(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(ingester) = &self.ingester {
            ingester.refresh_gauges();
            ingester.render_protobuf(&mut out);
        }
        self.render_registry_as(Format::Protobuf, &mut out);
        out
    }

    fn render_registry(&self, out: &mut Vec<u8>) {
        self.render_registry_as(Format::Text, out);
    }

    fn render_registry_as(&self, format: Format, out: &mut Vec<u8>) {
        let families = self.registry.gather();
        match format {
            Format::Text => {
                if let Err(error) = TextEncoder::new().encode(&families, out) {
                    tracing::warn!(%error, "encoding the component's own metrics failed");
                }
            }
            Format::Protobuf => crate::ingest::protobuf::encode_registry(&families, out),
        }
    }
}

async fn ready(State(admin): State<Admin>) -> Response {
    if (admin.ready)() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// A scrape's gzip stream: the compressor, writing into a buffer each
/// chunk empties, and its place among [`MAX_GZIP_SCRAPES`].
struct Gzip {
    encoder: flate2::write::GzEncoder<Vec<u8>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Gzip {
    /// A compressor, if fewer than [`MAX_GZIP_SCRAPES`] are in use;
    /// otherwise counted in `conduit_admin_gzip_fallbacks_total`.
    fn start() -> Option<Self> {
        match GZIP_SCRAPES.clone().try_acquire_owned() {
            Ok(permit) => Some(Gzip {
                encoder: flate2::write::GzEncoder::new(
                    Vec::new(),
                    flate2::Compression::new(GZIP_LEVEL),
                ),
                _permit: permit,
            }),
            Err(_) => {
                GZIP_FALLBACKS.inc();
                None
            }
        }
    }
}

/// Where a scrape is: the pieces of the exposition not rendered yet, and
/// whether the registry's metrics (the last part) are out.
struct Scrape {
    admin: Admin,
    format: Format,
    pieces: std::vec::IntoIter<crate::ingest::exposition::Piece>,
    /// A piece rendered in part, and the series slot to resume it from.
    resume: Option<(crate::ingest::exposition::Piece, usize)>,
    gzip: Option<Gzip>,
    done: bool,
}

impl Scrape {
    fn new(admin: Admin, format: Format, gzip: Option<Gzip>) -> Self {
        Self {
            admin,
            format,
            pieces: crate::ingest::exposition::pieces()
                .collect::<Vec<_>>()
                .into_iter(),
            resume: None,
            gzip,
            done: false,
        }
    }

    /// The next chunk as sent: rendered, and compressed when the scrape is
    /// gzip; `None` at the end. A compressed chunk is what deflate let out
    /// of about [`CHUNK_BYTES`] of exposition (it keeps at most its window
    /// back), so a scrape holds one chunk of each, never the whole body.
    fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            let chunk = self.next_rendered()?;
            let Some(gzip) = &mut self.gzip else {
                return Some(chunk);
            };
            // Writing into a Vec does not fail.
            gzip.encoder.write_all(&chunk).ok()?;
            if self.done {
                gzip.encoder.try_finish().ok()?;
            }
            let out = std::mem::take(gzip.encoder.get_mut());
            if !out.is_empty() || self.done {
                return Some(Bytes::from(out));
            }
        }
    }

    /// Renders the next chunk (about [`CHUNK_BYTES`], one series' lines
    /// more at most); `None` at the end.
    fn next_rendered(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut buf = Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4);
        if let Some(ingester) = &self.admin.ingester {
            let resumed = self.resume.take();
            for (piece, from) in resumed
                .into_iter()
                .chain(self.pieces.by_ref().map(|p| (p, 0)))
            {
                let stopped = match self.format {
                    Format::Text => ingester.render_piece_from(piece, from, &mut buf, CHUNK_BYTES),
                    Format::Protobuf => {
                        ingester.render_protobuf_piece_from(piece, from, &mut buf, CHUNK_BYTES)
                    }
                };
                if let Some(next) = stopped {
                    self.resume = Some((piece, next));
                    return Some(Bytes::from(buf));
                }
                if buf.len() >= CHUNK_BYTES {
                    return Some(Bytes::from(buf));
                }
            }
        }
        self.admin.render_registry_as(self.format, &mut buf);
        self.done = true;
        Some(Bytes::from(buf))
    }
}

static RENDERS: LazyLock<tokio::sync::Semaphore> =
    LazyLock::new(|| tokio::sync::Semaphore::new(MAX_CONCURRENT_RENDERS));

async fn metrics(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if let Some(ingester) = &admin.ingester {
        ingester.refresh_gauges();
    }
    let value = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let format = negotiate_format(value(header::ACCEPT));
    let gzip = if accepts_gzip(value(header::ACCEPT_ENCODING)) {
        Gzip::start()
    } else {
        None
    };
    let encoding = gzip.is_some().then_some("gzip");
    let scrape = Scrape::new(admin, format, gzip);
    // Each chunk is rendered when the body is polled for it, that is when
    // the connection has written the previous one: rendering is CPU work
    // proportional to the series count, so it runs on the blocking pool,
    // at most MAX_CONCURRENT_RENDERS chunks at a time.
    let chunks = futures::stream::unfold(scrape, |mut scrape| async move {
        let _permit = RENDERS.acquire().await.ok()?;
        let (chunk, scrape) = tokio::task::spawn_blocking(move || (scrape.next_chunk(), scrape))
            .await
            .ok()?;
        Some((Ok::<_, std::io::Error>(chunk?), scrape))
    });
    let mut response = (
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::VARY, "Accept, Accept-Encoding"),
        ],
        Body::from_stream(chunks),
    )
        .into_response();
    if let Some(encoding) = encoding {
        response.headers_mut().insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static(encoding),
        );
    }
    response
}

/// A connection whose writes fail once they have made no progress for
/// `timeout`: hyper then closes it. Written here because neither hyper nor
/// axum bounds how long a response may wait on a client that does not read.
pub struct StallGuard<T> {
    io: T,
    /// Running while writes are blocked; cleared by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    timeout: Duration,
    stalls: prometheus::IntCounter,
}

impl<T> StallGuard<T> {
    /// `Pending` from the connection: starts (or polls) the stall timer.
    fn blocked<R>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<R>> {
        let timeout = self.timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stalled = None;
                self.stalls.inc();
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client stopped reading",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<R>(&mut self, ready: std::io::Result<R>) -> Poll<std::io::Result<R>> {
        self.stalled = None;
        Poll::Ready(ready)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(ready) => this.progressed(ready),
            Poll::Pending => this.blocked(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(ready) => this.progressed(ready),
            Poll::Pending => this.blocked(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Ready(ready) => this.progressed(ready),
            Poll::Pending => this.blocked(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Prometheus 2.42 sends with and without `native-histograms`.
    const PROMETHEUS_NATIVE: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    const PROMETHEUS_TEXT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[test]
    fn the_format_is_negotiated() {
        assert_eq!(negotiate_format(Some(PROMETHEUS_NATIVE)), Format::Protobuf);
        assert_eq!(negotiate_format(Some(PROMETHEUS_TEXT)), Format::Text);
        assert_eq!(negotiate_format(None), Format::Text);
        assert_eq!(negotiate_format(Some("*/*")), Format::Text);
        // Another protobuf message, or not delimited: not served.
        assert_eq!(
            negotiate_format(Some(
                "application/vnd.google.protobuf;proto=x.Y;encoding=delimited"
            )),
            Format::Text
        );
        assert_eq!(
            negotiate_format(Some(
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text"
            )),
            Format::Text
        );
        // Ranked below text, or refused.
        assert_eq!(
            negotiate_format(Some(
                "text/plain;q=0.9, application/vnd.google.protobuf; proto=\"io.prometheus.client.MetricFamily\"; encoding=delimited; q=0.5"
            )),
            Format::Text
        );
        assert_eq!(
            negotiate_format(Some(
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0"
            )),
            Format::Text
        );
        assert_eq!(
            negotiate_format(Some(
                "Application/Vnd.Google.Protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
            )),
            Format::Protobuf
        );
    }

    #[test]
    fn gzip_is_served_when_allowed() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, gzip;q=0.5")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0, *")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(Some("")));
        assert!(!accepts_gzip(None));
    }

    /// A scrape, compressed or not, in either format, is the same bytes
    /// once decompressed, sent in chunks none much larger than a chunk.
    #[test]
    fn a_gzip_scrape_is_the_plain_scrape_compressed() {
        use std::io::Read as _;
        let admin = Admin {
            registry: Admin::registry(),
            ingester: Some(Arc::new(crate::ingest::walk::tests::store_with(true))),
            ready: Arc::new(|| true),
        };
        for format in [Format::Text, Format::Protobuf] {
            let mut plain = Vec::new();
            assert!(!admin.scrape_chunks(format, false, |c| plain.extend_from_slice(c)));
            let mut gzipped = Vec::new();
            let mut largest = 0;
            assert!(admin.scrape_chunks(format, true, |c| {
                largest = largest.max(c.len());
                gzipped.extend_from_slice(c);
            }));
            let mut unzipped = Vec::new();
            flate2::read::GzDecoder::new(&gzipped[..])
                .read_to_end(&mut unzipped)
                .unwrap();
            // The process collector's values move between two scrapes:
            // compare the store's part, which ends where the registry's begins.
            let store = match format {
                Format::Text => {
                    let mut store = Vec::new();
                    admin.ingester.as_ref().unwrap().render(&mut store);
                    store
                }
                Format::Protobuf => {
                    let mut store = Vec::new();
                    admin.ingester.as_ref().unwrap().render_protobuf(&mut store);
                    store
                }
            };
            assert!(plain.starts_with(&store) && unzipped.starts_with(&store));
            assert!(
                gzipped.len() < plain.len() / 3,
                "{} of {}",
                gzipped.len(),
                plain.len()
            );
            assert!(largest <= CHUNK_BYTES * 2);
        }
    }
}
