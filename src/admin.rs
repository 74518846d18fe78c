//! The admin HTTP server every component runs on its `-metrics-addr`:
//! `/metrics` (its own registry, plus the mesh series where the component
//! holds an ingester), `/ping` and `/ready`.

use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use prometheus::{Encoder, Registry, TextEncoder};
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

pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

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

    fn render_registry(&self, out: &mut Vec<u8>) {
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), out) {
            tracing::warn!(%error, "encoding the component's own metrics failed");
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

/// Where a scrape is: the pieces of the exposition not rendered yet, and
/// whether the registry's metrics (the last part) are out.
struct Scrape {
    admin: Admin,
    pieces: std::vec::IntoIter<crate::ingest::exposition::Piece>,
    /// A piece rendered in part, and the series slot to resume it from.
    resume: Option<(crate::ingest::exposition::Piece, usize)>,
    done: bool,
}

impl Scrape {
    /// Renders the next chunk (about [`CHUNK_BYTES`], one series' lines
    /// more at most); `None` at the end.
    fn next_chunk(&mut self) -> Option<Bytes> {
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
                if let Some(next) = ingester.render_piece_from(piece, from, &mut buf, CHUNK_BYTES) {
                    self.resume = Some((piece, next));
                    return Some(Bytes::from(buf));
                }
                if buf.len() >= CHUNK_BYTES {
                    return Some(Bytes::from(buf));
                }
            }
        }
        self.admin.render_registry(&mut buf);
        self.done = true;
        Some(Bytes::from(buf))
    }
}

static RENDERS: LazyLock<tokio::sync::Semaphore> =
    LazyLock::new(|| tokio::sync::Semaphore::new(MAX_CONCURRENT_RENDERS));

async fn metrics(State(admin): State<Admin>) -> Response {
    if let Some(ingester) = &admin.ingester {
        ingester.refresh_gauges();
    }
    let scrape = Scrape {
        admin,
        pieces: crate::ingest::exposition::pieces()
            .collect::<Vec<_>>()
            .into_iter(),
        resume: None,
        done: false,
    };
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
    (
        [(header::CONTENT_TYPE, TEXT_FORMAT)],
        Body::from_stream(chunks),
    )
        .into_response()
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
