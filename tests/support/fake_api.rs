//! A fake Kubernetes API server on 127.0.0.1, speaking the JSON of the real
//! one, for tests of the kube watchers.
//!
//! It serves, cluster-wide, the collections the index watches (Pods,
//! ReplicaSets, Deployments, Services, Endpoints and — while offered —
//! EndpointSlices):
//! - a list (`GET /api/v1/pods`): `kind: PodList`, `metadata.resourceVersion`,
//!   in pages when the client sends `limit` or the test sets a page limit
//!   (`metadata.continue`; later pages are cut from the current state, not
//!   a snapshot at the first page's version);
//! - a watch (`?watch=true&resourceVersion=N`): newline-delimited events
//!   `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}`,
//!   replaying every change after `N` from its history, then live changes;
//!   BOOKMARKs only to watches that asked with `allowWatchBookmarks=true`;
//!   an `ERROR` 410 Expired when `N` is older than the history kept;
//! - the discovery documents (`/version`, `/api`, `/api/v1`, `/apis`,
//!   `/apis/apps/v1`, `/apis/discovery.k8s.io/v1`).
//!
//! One resourceVersion counter covers every collection, as etcd's does.
//! Tests drive it: [`FakeApi::apply`] / [`FakeApi::delete`] objects,
//! [`FakeApi::expire_watches`] (ERROR 410), [`FakeApi::drop_watches`],
//! [`FakeApi::bookmark`], [`FakeApi::compact`], [`FakeApi::stop`] /
//! [`FakeApi::restart`] on the same port keeping its state,
//! [`FakeApi::hold_lists`] to keep a (re-)list pending, possibly after its
//! first page, [`FakeApi::set_page_limit`], and
//! [`FakeApi::offer_endpoint_slices`]. [`FakeApi::start_tls`] serves HTTPS
//! with a CA made at test time and requires a bearer token.

#![allow(dead_code)] // Each test binary uses its own part of the support code.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use k8s_openapi::Resource as _;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// How long a watch lasts when the client names no `timeoutSeconds`
/// (the real server picks 30–60 min; long enough for any test).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(3600);

/// A collection the fake serves, in the order `/apis` lists groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Collection {
    /// `/api/v1/pods`, `/apis/apps/v1/replicasets`, ...
    path: &'static str,
    api_version: &'static str,
    kind: &'static str,
}

/// Something the fake can store: a namespaced Kubernetes kind.
pub trait Object: k8s_openapi::Resource + Serialize + DeserializeOwned {}
impl<K: k8s_openapi::Resource + Serialize + DeserializeOwned> Object for K {}

fn collection_of<K: Object>() -> Collection {
    *COLLECTIONS
        .iter()
        .find(|c| c.kind == K::KIND && c.api_version == K::API_VERSION)
        .unwrap_or_else(|| panic!("the fake API server does not serve {}", K::KIND))
}

const COLLECTIONS: [Collection; 6] = [
    Collection {
        path: "/api/v1/pods",
        api_version: "v1",
        kind: "Pod",
    },
    Collection {
        path: "/api/v1/services",
        api_version: "v1",
        kind: "Service",
    },
    Collection {
        path: "/api/v1/endpoints",
        api_version: "v1",
        kind: "Endpoints",
    },
    Collection {
        path: "/apis/apps/v1/replicasets",
        api_version: "apps/v1",
        kind: "ReplicaSet",
    },
    Collection {
        path: "/apis/apps/v1/deployments",
        api_version: "apps/v1",
        kind: "Deployment",
    },
    Collection {
        path: "/apis/discovery.k8s.io/v1/endpointslices",
        api_version: "discovery.k8s.io/v1",
        kind: "EndpointSlice",
    },
];

const SLICES_PATH: &str = "/apis/discovery.k8s.io/v1/endpointslices";

/// The paths a collection's watchers get: so the Pod helpers can take a
/// type and the request handler a path.
fn collection_by_path(path: &str) -> Option<Collection> {
    COLLECTIONS.iter().copied().find(|c| c.path == path)
}

/// One change, as the watch streams send it.
#[derive(Clone, Debug)]
struct Change {
    version: u64,
    path: &'static str,
    kind: &'static str,
    object: Value,
}

struct OpenWatch {
    path: &'static str,
    bookmarks: bool,
    events: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct State {
    /// The last resourceVersion handed out.
    version: u64,
    /// Path → `"ns/name"` → object (with its resourceVersion).
    objects: BTreeMap<&'static str, BTreeMap<String, Value>>,
    /// Every change after `compacted`, oldest first.
    history: Vec<Change>,
    /// Watches must start at or after this version; older → 410 Expired.
    compacted: u64,
    watches: Vec<OpenWatch>,
    slices_offered: bool,
    page_limit: Option<usize>,
    /// List and watch requests served, by path.
    lists: BTreeMap<String, usize>,
    watch_requests: BTreeMap<String, usize>,
    unauthorized: usize,
}

impl State {
    /// Appends `change` to the history and sends it to the watches of its
    /// collection, forgetting those whose client went away.
    fn record(&mut self, change: Change) {
        let line = event_line(change.kind, &change.object);
        self.watches
            .retain(|w| w.path != change.path || w.events.send(line.clone()).is_ok());
        self.history.push(change);
    }
}

struct Shared {
    state: Mutex<State>,
    /// `Bearer` token every request must carry, if any.
    token: Option<String>,
    /// Lists wait while this is true.
    lists_held: watch::Sender<Hold>,
    pending_lists: AtomicUsize,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("fake API server state lock poisoned")
    }
}

/// Which list requests wait (see [`FakeApi::hold_lists`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    Nothing,
    /// Every list request.
    Lists,
    /// Requests for a list's second and later pages.
    LaterPages,
}

/// The TLS material of an HTTPS fake: a CA made at test time and a server
/// certificate it signed for 127.0.0.1.
pub struct Tls {
    pub ca_pem: String,
    acceptor: TlsAcceptor,
}

impl Tls {
    fn generate() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "fake-kubernetes-ca");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("generate server key");
        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("server params");
        server_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .expect("sign server certificate");

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![server_cert.der().clone()], key)
            .expect("server certificate and key match");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Tls {
            ca_pem: ca_cert.pem(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
        }
    }
}

/// The fake API server. Dropping it stops it.
pub struct FakeApi {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: Option<Arc<Tls>>,
    server: Option<JoinHandle<()>>,
}

impl FakeApi {
    /// Plain HTTP, no authentication, EndpointSlices offered.
    pub async fn start() -> Self {
        Self::start_with(None, None).await
    }

    /// HTTPS with a fresh CA, requiring `Authorization: Bearer <token>`.
    pub async fn start_tls(token: &str) -> Self {
        Self::start_with(Some(Arc::new(Tls::generate())), Some(token.to_owned())).await
    }

    async fn start_with(tls: Option<Arc<Tls>>, token: Option<String>) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                slices_offered: true,
                ..State::default()
            }),
            token,
            lists_held: watch::channel(Hold::Nothing).0,
            pending_lists: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the fake API server on loopback");
        let addr = listener.local_addr().expect("bound address");
        let server = Some(tokio::spawn(serve(listener, shared.clone(), tls.clone())));
        FakeApi {
            shared,
            addr,
            tls,
            server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` or `https://...`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The CA certificate (PEM) of an HTTPS fake.
    pub fn ca_pem(&self) -> &str {
        &self.tls.as_ref().expect("an HTTPS fake").ca_pem
    }

    /// A client for a plain-HTTP fake.
    pub fn client(&self) -> kube::Client {
        let url = self.url().parse().expect("the fake's URL is a URI");
        kube::Client::try_from(kube::Config::new(url)).expect("build a client for the fake")
    }

    /// Creates or replaces `obj` (ADDED or MODIFIED); returns its new resourceVersion.
    pub fn apply<K: Object>(&self, obj: &K) -> u64 {
        let collection = collection_of::<K>();
        let mut object = serde_json::to_value(obj).expect("Kubernetes objects serialize");
        let key = object_key(&object);
        let mut state = self.shared.state();
        state.version += 1;
        let version = state.version;
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(format!("uid-{key}"));
        }
        let previous = state
            .objects
            .entry(collection.path)
            .or_default()
            .insert(key, object.clone());
        state.record(Change {
            version,
            path: collection.path,
            kind: if previous.is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            },
            object,
        });
        version
    }

    /// Deletes `namespace/name` (DELETED); returns whether it existed.
    pub fn delete<K: Object>(&self, namespace: &str, name: &str) -> bool {
        let collection = collection_of::<K>();
        let mut state = self.shared.state();
        let removed = state
            .objects
            .entry(collection.path)
            .or_default()
            .remove(&format!("{namespace}/{name}"));
        let Some(mut object) = removed else {
            return false;
        };
        state.version += 1;
        let version = state.version;
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        state.record(Change {
            version,
            path: collection.path,
            kind: "DELETED",
            object,
        });
        true
    }

    /// The objects of kind `K` the server holds now, by `"ns/name"`.
    pub fn objects<K: Object>(&self) -> BTreeMap<String, K> {
        let collection = collection_of::<K>();
        let state = self.shared.state();
        state
            .objects
            .get(collection.path)
            .into_iter()
            .flatten()
            .map(|(key, value)| {
                let obj = serde_json::from_value(value.clone()).expect("stored objects parse");
                (key.clone(), obj)
            })
            .collect()
    }

    /// The current resourceVersion.
    pub fn version(&self) -> u64 {
        self.shared.state().version
    }

    /// Forgets the history up to now: a watch from an older resourceVersion
    /// gets 410 Expired, as after an etcd compaction.
    pub fn compact(&self) {
        let mut state = self.shared.state();
        state.compacted = state.version;
        state.history.clear();
    }

    /// Sends every open watch an `ERROR` 410 Expired and closes it, with the
    /// history compacted so that the client must re-list.
    pub fn expire_watches(&self) {
        self.compact();
        let mut state = self.shared.state();
        let version = state.version;
        for watch in state.watches.drain(..) {
            let status = expired(version.saturating_sub(1), version);
            let _ = watch.events.send(event_line("ERROR", &status));
        }
    }

    /// Closes every open watch connection's stream (clients resume them).
    pub fn drop_watches(&self) {
        self.shared.state().watches.clear();
    }

    /// Sends a BOOKMARK at the current resourceVersion to every watch that
    /// allowed bookmarks.
    pub fn bookmark(&self) {
        let mut state = self.shared.state();
        let version = state.version.to_string();
        state.watches.retain(|w| {
            if !w.bookmarks {
                return true;
            }
            let collection = collection_by_path(w.path).expect("watches are of known paths");
            let object = json!({
                "kind": collection.kind,
                "apiVersion": collection.api_version,
                "metadata": {"resourceVersion": version},
            });
            w.events.send(event_line("BOOKMARK", &object)).is_ok()
        });
    }

    /// Whether `discovery.k8s.io/v1` (EndpointSlices) is served.
    pub fn offer_endpoint_slices(&self, offered: bool) {
        self.shared.state().slices_offered = offered;
    }

    /// While held, list requests wait (and count as pending) until released.
    pub fn hold_lists(&self, hold: Hold) {
        self.shared.lists_held.send_replace(hold);
    }

    /// Answers lists in pages of at most `limit` objects (`None`: as many
    /// as the client's `limit`).
    pub fn set_page_limit(&self, limit: Option<usize>) {
        self.shared.state().page_limit = limit;
    }

    /// List requests waiting on [`Self::hold_lists`].
    pub fn pending_lists(&self) -> usize {
        self.shared.pending_lists.load(Ordering::SeqCst)
    }

    /// List requests answered for `K`.
    pub fn list_count<K: Object>(&self) -> usize {
        let path = collection_of::<K>().path;
        self.shared.state().lists.get(path).copied().unwrap_or(0)
    }

    /// Watch requests answered for `K`.
    pub fn watch_count<K: Object>(&self) -> usize {
        let path = collection_of::<K>().path;
        self.shared
            .state()
            .watch_requests
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Open watch streams of `K`.
    pub fn open_watches<K: Object>(&self) -> usize {
        let path = collection_of::<K>().path;
        let mut state = self.shared.state();
        state.watches.retain(|w| !w.events.is_closed());
        state.watches.iter().filter(|w| w.path == path).count()
    }

    /// Requests refused for a missing or wrong token.
    pub fn unauthorized_count(&self) -> usize {
        self.shared.state().unauthorized
    }

    /// Goes away: closes the listener and every connection at once, as a
    /// crashed or partitioned API server would. State is kept.
    pub async fn stop(&mut self) {
        self.drop_watches();
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Comes back on the same address with the same state.
    pub async fn restart(&mut self) {
        assert!(self.server.is_none(), "restart a stopped fake");
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("rebind the fake API server's port");
        self.server = Some(tokio::spawn(serve(
            listener,
            self.shared.clone(),
            self.tls.clone(),
        )));
    }

    /// Writes `tests/fixtures/kubeconfig.yaml` for this (HTTPS) fake into
    /// `dir`, with the CA beside it, and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path, token: &str) -> PathBuf {
        let template = include_str!("../fixtures/kubeconfig.yaml");
        std::fs::create_dir_all(dir).expect("create the kubeconfig directory");
        std::fs::write(dir.join("ca.pem"), self.ca_pem()).expect("write the CA");
        let path = dir.join("kubeconfig");
        let text = template
            .replace("${SERVER}", &self.url())
            .replace("${TOKEN}", token);
        std::fs::write(&path, text).expect("write the kubeconfig");
        path
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Accepts connections until aborted; aborting drops every connection too.
async fn serve(listener: TcpListener, shared: Arc<Shared>, tls: Option<Arc<Tls>>) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => continue,
        };
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
        let shared = shared.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                Some(tls) => {
                    if let Ok(stream) = tls.acceptor.accept(stream).await {
                        serve_connection(stream, shared).await;
                    }
                }
                None => serve_connection::<TcpStream>(stream, shared).await,
            }
        });
    }
}

async fn serve_connection<S>(stream: S, shared: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn handle<B>(shared: Arc<Shared>, req: Request<B>) -> Response<Body> {
    if let Some(token) = &shared.token {
        let expected = format!("Bearer {token}");
        let given = req.headers().get(header::AUTHORIZATION);
        if given.is_none_or(|v| v.as_bytes() != expected.as_bytes()) {
            shared.state().unauthorized += 1;
            return status_response(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
        }
    }
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let query = Query::parse(req.uri().query().unwrap_or_default());
    let slices_offered = shared.state().slices_offered;

    if let Some(collection) = collection_by_path(&path) {
        if collection.path == SLICES_PATH && !slices_offered {
            return not_found(&path);
        }
        return if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
            watch_response(&shared, collection, &query)
        } else {
            list_response(&shared, collection, &query).await
        };
    }
    match discovery(&path, slices_offered) {
        Some(doc) => json_response(StatusCode::OK, &doc),
        None => not_found(&path),
    }
}

async fn list_response(shared: &Shared, collection: Collection, query: &Query) -> Response<Body> {
    // `continue` is "<resourceVersion>-<objects already sent>".
    let continued: Option<(u64, usize)> = query.get("continue").and_then(|token| {
        let (version, offset) = token.split_once('-')?;
        Some((version.parse().ok()?, offset.parse().ok()?))
    });
    let mut held = shared.lists_held.subscribe();
    let must_wait = |hold: &Hold| match hold {
        Hold::Nothing => false,
        Hold::Lists => true,
        Hold::LaterPages => continued.is_some(),
    };
    if must_wait(&held.borrow()) {
        shared.pending_lists.fetch_add(1, Ordering::SeqCst);
        let _ = held.wait_for(|hold| !must_wait(hold)).await;
        shared.pending_lists.fetch_sub(1, Ordering::SeqCst);
    }

    let mut state = shared.state();
    *state.lists.entry(collection.path.to_owned()).or_default() += 1;
    let (version, offset) = continued.unwrap_or((state.version, 0));
    let limit = [
        query
            .get("limit")
            .and_then(|l| l.parse().ok())
            .filter(|l| *l > 0),
        state.page_limit,
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(usize::MAX);
    let all = state.objects.get(collection.path);
    let total = all.map_or(0, BTreeMap::len);
    let items: Vec<Value> = all
        .into_iter()
        .flat_map(|objects| objects.values().skip(offset).take(limit).cloned())
        .collect();
    let mut metadata = json!({"resourceVersion": version.to_string()});
    let sent = offset + items.len();
    if sent < total {
        metadata["continue"] = json!(format!("{version}-{sent}"));
    }
    let list = json!({
        "kind": format!("{}List", collection.kind),
        "apiVersion": collection.api_version,
        "metadata": metadata,
        "items": items,
    });
    json_response(StatusCode::OK, &list)
}

fn watch_response(shared: &Shared, collection: Collection, query: &Query) -> Response<Body> {
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
    let bookmarks = query.get("allowWatchBookmarks") == Some("true");
    let from: Option<u64> = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .filter(|v| *v != 0);

    let (tx, rx) = mpsc::unbounded_channel();
    let mut state = shared.state();
    *state
        .watch_requests
        .entry(collection.path.to_owned())
        .or_default() += 1;
    match from {
        Some(from) if from < state.compacted => {
            // Too old: one ERROR event, then the stream ends.
            let status = expired(from, state.compacted);
            let _ = tx.send(event_line("ERROR", &status));
            drop(tx);
        }
        Some(from) => {
            for change in state
                .history
                .iter()
                .filter(|c| c.path == collection.path && c.version > from)
            {
                let _ = tx.send(event_line(change.kind, &change.object));
            }
            state.watches.push(OpenWatch {
                path: collection.path,
                bookmarks,
                events: tx,
            });
        }
        None => {
            // No version: the current state as ADDED events, then changes.
            for object in state.objects.get(collection.path).into_iter().flatten() {
                let _ = tx.send(event_line("ADDED", object.1));
            }
            state.watches.push(OpenWatch {
                path: collection.path,
                bookmarks,
                events: tx,
            });
        }
    }
    drop(state);

    let deadline = tokio::time::Instant::now() + timeout;
    let events = futures::stream::unfold(rx, move |mut rx| async move {
        let line = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .ok()
            .flatten()?;
        Some((Ok::<_, Infallible>(line), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(events))
        .expect("a valid response")
}

/// `{"type":...,"object":...}` and a newline.
fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object}))
        .expect("JSON values serialize");
    line.push(b'\n');
    line.into()
}

/// The Status a real API server sends for a compacted resourceVersion.
fn expired(requested: u64, oldest: u64) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("too old resource version: {requested} ({oldest})"),
        "reason": "Expired",
        "code": 410,
    })
}

fn object_key(object: &Value) -> String {
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .filter(|ns| !ns.is_empty())
        .unwrap_or("default");
    let name = object["metadata"]["name"]
        .as_str()
        .expect("objects given to the fake have a name");
    format!("{namespace}/{name}")
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::to_vec(body).expect("JSON values serialize"),
        ))
        .expect("a valid response")
}

fn status_response(status: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": status.as_u16(),
    });
    json_response(status, &body)
}

fn not_found(path: &str) -> Response<Body> {
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("the server could not find the requested resource ({path})"),
    )
}

/// The discovery document at `path`, if the fake serves one.
fn discovery(path: &str, slices_offered: bool) -> Option<Value> {
    let resource = |name: &str, kind: &str| {
        json!({
            "name": name,
            "singularName": kind.to_lowercase(),
            "namespaced": true,
            "kind": kind,
            "verbs": ["get", "list", "watch"],
        })
    };
    let resources = |group_version: &str, list: Vec<Value>| {
        json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": list,
        })
    };
    let group = |name: &str, version: &str| {
        let gv = json!({"groupVersion": format!("{name}/{version}"), "version": version});
        json!({"name": name, "versions": [gv.clone()], "preferredVersion": gv})
    };
    Some(match path {
        "/version" => json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake",
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc",
            "platform": "linux/amd64",
        }),
        "/api" => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"},
            ],
        }),
        "/api/v1" => resources(
            "v1",
            vec![
                resource("pods", Pod::KIND),
                resource("services", Service::KIND),
                resource("endpoints", Endpoints::KIND),
            ],
        ),
        "/apis" => {
            let mut groups = vec![group("apps", "v1")];
            if slices_offered {
                groups.push(group("discovery.k8s.io", "v1"));
            }
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        "/apis/apps/v1" => resources(
            "apps/v1",
            vec![
                resource("replicasets", ReplicaSet::KIND),
                resource("deployments", Deployment::KIND),
            ],
        ),
        "/apis/discovery.k8s.io/v1" if slices_offered => resources(
            "discovery.k8s.io/v1",
            vec![resource("endpointslices", EndpointSlice::KIND)],
        ),
        _ => return None,
    })
}

/// A parsed query string (no percent-decoding: the watchers' parameters
/// are plain).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Self {
        Query(
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (p.to_owned(), String::new()),
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}
