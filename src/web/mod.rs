//! The web dashboard, `conduit web`: a single-page app built into the
//! binary and the HTTP server that serves it.
//!
//! The server owns three things: the app's pages (every client-side route
//! answers the same `index.html`, rendered once with the control plane's
//! namespace), its static assets ([`assets`], embedded at compile time, so
//! neither Node.js nor an asset directory is needed to build or run it),
//! and a narrow forwarder ([`proxy`]) that passes the public-api calls the
//! app makes (`/api/v1/{Stat,ListPods,Version,Tap,StatSummary,Edges,Routes,
//! Health,LatencyDistribution}`) through to `-api-addr`. The
//! browser talks to nothing else; the dashboard holds no state of its own.
//!
//! `-static-dir` and `-template-dir` are the original's flags for where its
//! assets lived on disk. They are accepted so its manifests run unchanged,
//! and ignored (with one log line): the embedded assets are always served,
//! so a binary and its dashboard can never disagree.

mod assets;
mod proxy;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::{IntCounterVec, Opts};

use crate::admin::{Admin, Ports};
use crate::component::{Beside, Bound, Component, Http, Server};
use crate::core::{ListenAddr, Shutdown};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// HTTP address of the dashboard.
    #[arg(long, default_value = ":8084")]
    pub addr: ListenAddr,
    /// Admin HTTP address: /metrics, /ping, /ready.
    #[arg(long, default_value = ":9994")]
    pub metrics_addr: ListenAddr,
    /// The public API (HOST:PORT) the dashboard's calls are forwarded to.
    #[arg(long, default_value = crate::proto::http_api::DEFAULT_API_ADDR)]
    pub api_addr: String,
    /// Accepted for the original's manifests; the embedded assets are served.
    #[arg(long)]
    pub static_dir: Option<PathBuf>,
    /// Accepted for the original's manifests; the embedded page is served.
    #[arg(long)]
    pub template_dir: Option<PathBuf>,
    /// The installation's id, shown in the dashboard's footer.
    #[arg(long, default_value = "")]
    pub uuid: String,
    /// The control plane's namespace, shown in the dashboard's header.
    #[arg(long, default_value = "conduit")]
    pub namespace: String,
}

/// Every flag at its default (`conduit run` sets the rest as values).
impl Default for Args {
    fn default() -> Self {
        crate::core::flag_defaults()
    }
}

/// The component's state once its sockets are bound.
pub struct Web {
    site: Arc<Site>,
}

/// What every dashboard request needs.
struct Site {
    index: assets::Page,
    api: proxy::Upstream,
    requests: IntCounterVec,
}

impl Args {
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.bind().await?.serve(shutdown).await
    }

    /// Binds both ports and renders the page; public-api is not contacted
    /// until the first call, so the dashboard starts whether or not it is up.
    pub async fn bind(self) -> anyhow::Result<Bound<Web>> {
        for (flag, dir) in [
            ("-static-dir", &self.static_dir),
            ("-template-dir", &self.template_dir),
        ] {
            if let Some(dir) = dir {
                tracing::info!(
                    dir = %dir.display(),
                    "{flag} ignored: the dashboard's assets are built into the binary"
                );
            }
        }
        let api = proxy::Upstream::new(&self.api_addr).context("-api-addr")?;
        let registry = Admin::registry();
        let requests = IntCounterVec::new(
            Opts::new(
                "conduit_web_requests_total",
                "Dashboard HTTP requests, by kind (page, static, api, other) and response status.",
            ),
            &["kind", "status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        let ports = Ports::bind(&self.addr, &self.metrics_addr).await?;
        let admin = Admin {
            registry,
            ingester: None,
            // Both ports are bound before anything is served, and the
            // dashboard needs nothing else to answer.
            ready: Arc::new(|| true),
        };
        let site = Site {
            index: assets::index_page(&self.namespace, &self.uuid),
            api,
            requests,
        };
        let web = Web {
            site: Arc::new(site),
        };
        Ok(Bound::new(ports, admin, web))
    }
}

impl Bound<Web> {
    pub fn http_addr(&self) -> SocketAddr {
        self.serve_addr()
    }
}

impl Component for Web {
    fn span(&self, ports: &Ports) -> tracing::Span {
        tracing::info_span!(
            "web",
            http = %ports.serve_addr(),
            admin = %ports.admin_addr(),
            api = %self.site.api.addr(),
        )
    }

    /// Open Tap streams end when the signal fires.
    fn start(self, shutdown: &Shutdown) -> (Server, Beside) {
        let router = router(self.site, shutdown.clone());
        (
            Http::new("dashboard server", router).into(),
            Beside::nothing(),
        )
    }
}

#[derive(Clone)]
struct AppState {
    site: Arc<Site>,
    shutdown: Shutdown,
}

fn router(site: Arc<Site>, shutdown: Shutdown) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(AppState { site, shutdown })
}

/// What a request asks for, decided by its path alone.
enum Target<'a> {
    /// A page of the app: the client-side router decides what it shows.
    Page,
    Static(&'a str),
    Api(proxy::Call),
    /// No page of the app: the app's page, with a 404 status, so a
    /// browser sees the app say so and a client the status.
    Unknown,
    Other,
}

impl Target<'_> {
    fn of(path: &str) -> Target<'_> {
        if let Some(name) = path.strip_prefix("/static/") {
            return Target::Static(name);
        }
        if let Some(call) = path.strip_prefix("/api/v1/") {
            return proxy::Call::of(call).map_or(Target::Other, Target::Api);
        }
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        match first {
            "" | "namespaces" | "deployments" | "pods" | "topology" | "tap" | "top" => Target::Page,
            // The app shows its own not-found page, inside its layout.
            _ => Target::Unknown,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Target::Page => "page",
            Target::Static(_) => "static",
            Target::Api(_) => "api",
            Target::Unknown | Target::Other => "other",
        }
    }
}

async fn handle(State(state): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let target = Target::of(&path);
    let kind = target.kind();
    let rsp = match target {
        Target::Api(call) => state.site.api.forward(call, req, &state.shutdown).await,
        Target::Page | Target::Static(_) | Target::Unknown
            if !matches!(*req.method(), Method::GET | Method::HEAD) =>
        {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, "GET, HEAD")],
                "the dashboard's pages and assets take GET\n",
            )
                .into_response()
        }
        Target::Page => state.site.index.respond(req.headers()),
        Target::Unknown => {
            let mut rsp = state.site.index.respond(req.headers());
            if rsp.status() == StatusCode::OK {
                *rsp.status_mut() = StatusCode::NOT_FOUND;
            }
            rsp
        }
        Target::Static(name) => match assets::find(name) {
            Some(asset) => asset.respond(req.headers()),
            None => not_found(&path),
        },
        Target::Other => not_found(&path),
    };
    state
        .site
        .requests
        .with_label_values(&[kind, rsp.status().as_str()])
        .inc();
    rsp
}

fn not_found(path: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("nothing at {path}\n"),
    )
        .into_response()
}

/// Whether a request's `If-None-Match` names this ETag (or `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_pick_their_target() {
        assert!(matches!(Target::of("/"), Target::Page));
        assert!(matches!(Target::of("/pods"), Target::Page));
        assert!(matches!(Target::of("/tap"), Target::Page));
        assert!(matches!(Target::of("/deployments/demo/web"), Target::Page));
        assert!(matches!(
            Target::of("/static/app.js"),
            Target::Static("app.js")
        ));
        assert!(matches!(Target::of("/api/v1/Stat"), Target::Api(_)));
        assert!(matches!(Target::of("/api/v1/Nope"), Target::Other));
        assert!(matches!(Target::of("/metrics"), Target::Unknown));
        assert!(matches!(Target::of("/nope"), Target::Unknown));
        assert!(matches!(Target::of("/topology"), Target::Page));
        assert!(matches!(Target::of("/namespaces/demo"), Target::Page));
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, "\"a\", W/\"b\"".parse().unwrap());
        assert!(not_modified(&h, "\"b\""));
        assert!(not_modified(&h, "\"a\""));
        assert!(!not_modified(&h, "\"c\""));
        assert!(!not_modified(&HeaderMap::new(), "\"a\""));
    }
}
