//! The shape every server component shares, from bound ports to drained
//! servers: a [`Bound`] holds the two listeners ([`Ports`]), the admin
//! server that will answer on the second, the cluster metadata watchers to
//! start (for components that read the index) and the component's own
//! state, a [`Component`]. [`Bound::serve`] runs it:
//!
//! 1. in the component's span ([`Component::span`]), it logs that it serves;
//! 2. starts the watchers, then the component ([`Component::start`]), which
//!    answers with its [`Server`] (gRPC routes behind the shared layers, or
//!    an HTTP router) and what runs [`Beside`] it;
//! 3. serves that server and the admin port side by side until both have
//!    drained or the shutdown grace ran out ([`Admin::serve_beside`]);
//! 4. ends what ran beside them, then runs the component's last step
//!    (telemetry's final remote-write flush), so it sees every answered call.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::admin::{Admin, Ports};
use crate::core::Shutdown;
use crate::grpc::{GrpcMetrics, ReportBudget};
use crate::k8s::source::{MetadataArgs, Source};
use crate::k8s::{Index, Kind};

/// What a component supplies to the shared skeleton.
pub trait Component: Send + Sized + 'static {
    /// The span serving runs in: named for the component, with its
    /// addresses (and the upstreams it calls) as fields.
    fn span(&self, ports: &Ports) -> tracing::Span;

    /// Logs, in that span, that the component serves.
    fn announce(&self) {
        tracing::info!("serving");
    }

    /// Starts serving (inside the span, the watchers already started):
    /// what it serves on `-addr` and what runs beside it, all of which end
    /// at `shutdown`.
    fn start(self, shutdown: &Shutdown) -> (Server, Beside);
}

/// What a component serves on its `-addr`: a [`Grpc`] or an [`Http`] server.
pub enum Server {
    Grpc(Grpc),
    Http(Http),
}

/// A gRPC server with the settings every component's gRPC port shares
/// ([`crate::grpc::server`], [`crate::grpc::incoming`]), behind the gRPC
/// metrics layer and, for components that take reports, the report budget.
pub struct Grpc {
    /// At most this many open streams per connection (`None`: h2's default).
    max_concurrent_streams: Option<u32>,
    metrics: GrpcMetrics,
    budget: Option<ReportBudget>,
    routes: tonic::service::Routes,
}

impl Grpc {
    /// What every gRPC component's server is called in errors and drain
    /// warnings.
    const WHAT: &'static str = "gRPC server";

    /// `routes` behind `metrics`.
    pub fn new(
        max_concurrent_streams: Option<u32>,
        metrics: GrpcMetrics,
        routes: tonic::service::Routes,
    ) -> Self {
        Self {
            max_concurrent_streams,
            metrics,
            budget: None,
            routes,
        }
    }

    /// Bounds the reports in flight by `budget`, a layer inside the metrics
    /// layer.
    #[must_use]
    pub fn with_budget(mut self, budget: ReportBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    async fn serve_beside(
        self,
        ports: Ports,
        admin: Admin,
        shutdown: Shutdown,
    ) -> anyhow::Result<()> {
        let signaled = shutdown.clone().signaled();
        let mut server = crate::grpc::server(self.max_concurrent_streams).layer(self.metrics);
        let incoming = crate::grpc::incoming(ports.serve);
        match self.budget {
            Some(budget) => {
                let grpc = server
                    .layer(budget)
                    .add_routes(self.routes)
                    .serve_with_incoming_shutdown(incoming, signaled);
                admin
                    .serve_beside(ports.admin, Self::WHAT, grpc, shutdown)
                    .await
            }
            None => {
                let grpc = server
                    .add_routes(self.routes)
                    .serve_with_incoming_shutdown(incoming, signaled);
                admin
                    .serve_beside(ports.admin, Self::WHAT, grpc, shutdown)
                    .await
            }
        }
    }
}

/// An HTTP server of an axum router.
pub struct Http {
    /// Names the server in errors and drain warnings.
    what: &'static str,
    router: axum::Router,
    /// Sets `TCP_NODELAY` on every accepted connection.
    nodelay: bool,
}

impl Http {
    pub fn new(what: &'static str, router: axum::Router) -> Self {
        Self {
            what,
            router,
            nodelay: false,
        }
    }

    /// Sends small responses at once (`TCP_NODELAY` on every connection).
    #[must_use]
    pub fn nodelay(mut self) -> Self {
        self.nodelay = true;
        self
    }

    async fn serve_beside(
        self,
        ports: Ports,
        admin: Admin,
        shutdown: Shutdown,
    ) -> anyhow::Result<()> {
        let signaled = shutdown.clone().signaled();
        if self.nodelay {
            let listener = ports.serve.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let http = axum::serve(listener, self.router).with_graceful_shutdown(signaled);
            admin
                .serve_beside(ports.admin, self.what, http.into_future(), shutdown)
                .await
        } else {
            let http = axum::serve(ports.serve, self.router).with_graceful_shutdown(signaled);
            admin
                .serve_beside(ports.admin, self.what, http.into_future(), shutdown)
                .await
        }
    }
}

impl From<Grpc> for Server {
    fn from(grpc: Grpc) -> Self {
        Server::Grpc(grpc)
    }
}

impl From<Http> for Server {
    fn from(http: Http) -> Self {
        Server::Http(http)
    }
}

impl Server {
    /// Serves on the `-addr` listener and the admin server beside it until
    /// both have drained (or the grace ran out).
    async fn serve_beside(
        self,
        ports: Ports,
        admin: Admin,
        shutdown: Shutdown,
    ) -> anyhow::Result<()> {
        match self {
            Server::Grpc(grpc) => grpc.serve_beside(ports, admin, shutdown).await,
            Server::Http(http) => http.serve_beside(ports, admin, shutdown).await,
        }
    }
}

/// A component's last step, once its servers drained.
type Last = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What runs beside a component's servers.
#[derive(Default)]
#[must_use]
pub struct Beside {
    /// Tasks that run for as long as the servers do, ended once they
    /// drained (telemetry's sweeper, public-api's readiness probe).
    tasks: Vec<JoinHandle<()>>,
    last: Option<Last>,
}

impl Beside {
    /// Nothing beside the servers.
    pub fn nothing() -> Self {
        Self::default()
    }

    /// `task` is ended once the servers drained.
    pub fn task(mut self, task: JoinHandle<()>) -> Self {
        self.tasks.push(task);
        self
    }

    /// `last` runs once the servers drained and the tasks ended: what it
    /// does must be bounded, and fit beside the drain grace.
    pub fn then(mut self, last: impl Future<Output = ()> + Send + 'static) -> Self {
        self.last = Some(Box::pin(last));
        self
    }

    async fn end(self) {
        for task in self.tasks {
            task.abort();
        }
        if let Some(last) = self.last {
            last.await;
        }
    }
}

/// The cluster metadata watchers a component starts when it serves (none
/// for a file or when the caller feeds the index).
pub struct Watchers {
    source: Source,
    index: Arc<Index>,
    kinds: &'static [Kind],
}

/// A new index opened on `metadata` for `kinds`, and the watchers that
/// will feed it: what a component's `bind` starts from.
pub async fn open_index(
    metadata: &MetadataArgs,
    kinds: &'static [Kind],
) -> anyhow::Result<(Arc<Index>, Watchers)> {
    let (index, source) = metadata
        .open_index(kinds)
        .await
        .context("cluster metadata")?;
    let watchers = Watchers {
        source,
        index: index.clone(),
        kinds,
    };
    Ok((index, watchers))
}

/// A component with its sockets bound, ready to serve.
pub struct Bound<C> {
    ports: Ports,
    admin: Admin,
    watchers: Option<Watchers>,
    component: C,
}

impl<C: Component> Bound<C> {
    /// `component` on `ports`, with `admin` to answer on the admin port.
    pub fn new(ports: Ports, admin: Admin, component: C) -> Self {
        Self {
            ports,
            admin,
            watchers: None,
            component,
        }
    }

    /// Starts `watchers` when serving.
    #[must_use]
    pub fn watching(mut self, watchers: Watchers) -> Self {
        self.watchers = Some(watchers);
        self
    }

    /// The address served on (`-addr`; the port the OS picked for `:0`).
    pub fn serve_addr(&self) -> SocketAddr {
        self.ports.serve_addr()
    }

    /// The admin address (`-metrics-addr`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.ports.admin_addr()
    }

    /// The component's own state.
    pub fn component(&self) -> &C {
        &self.component
    }

    pub fn component_mut(&mut self) -> &mut C {
        &mut self.component
    }

    /// Serves the component and the admin port until shutdown, then
    /// drains them: every stream ends when the signal fires, and what is
    /// still open when the grace has run out is cut.
    pub async fn serve(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let span = self.component.span(&self.ports);
        self.serve_inner(shutdown).instrument(span).await
    }

    async fn serve_inner(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let Bound {
            ports,
            admin,
            watchers,
            component,
        } = self;
        component.announce();
        // Held while serving; they end on the signal themselves.
        let _watchers = watchers
            .map(|w| w.source.start(w.index, w.kinds, shutdown.clone()))
            .unwrap_or_default();
        let (server, beside) = component.start(&shutdown);
        let result = server.serve_beside(ports, admin, shutdown).await;
        beside.end().await;
        result
    }
}
