//! The admin HTTP server every component runs on its `-metrics-addr`:
//! `/metrics` (its own registry, plus the mesh series where the component
//! holds an ingester), `/ping` and `/ready`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;

use crate::core::Shutdown;
use crate::ingest::Ingester;

/// A scrape is streamed in chunks of about this size, so a scrape of a
/// million series never holds its whole text in memory.
const CHUNK_BYTES: usize = 256 * 1024;

/// Chunks rendered ahead of a slow scraper.
const CHUNKS_AHEAD: usize = 4;

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

    /// Serves on an already bound listener until shutdown.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown.signaled())
            .await
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

async fn metrics(State(admin): State<Admin>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_AHEAD);
    // Rendering is CPU work proportional to the series count: keep it off
    // the async workers.
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4);
        if let Some(ingester) = &admin.ingester {
            ingester.refresh_gauges();
            for piece in crate::ingest::exposition::pieces() {
                ingester.render_piece(piece, &mut buf);
                if buf.len() >= CHUNK_BYTES {
                    let chunk = Bytes::from(std::mem::take(&mut buf));
                    if tx.blocking_send(Ok(chunk)).is_err() {
                        return; // the scraper went away
                    }
                    buf.reserve(CHUNK_BYTES + CHUNK_BYTES / 4);
                }
            }
        }
        admin.render_registry(&mut buf);
        let _ = tx.blocking_send(Ok(Bytes::from(buf)));
    });
    (
        [(header::CONTENT_TYPE, TEXT_FORMAT)],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}
