//! The CLI's client commands — `stat`, `edges`, `routes`, `check`, `get pods`,
//! `tap`, `version` — and the HTTP
//! client they share. They speak the public API (`--api-addr`, default
//! `127.0.0.1:8085`) with protobuf bodies, as the contract in
//! [`crate::proto::http_api`] says; every failure is one line naming the
//! address, never a panic.

pub mod check;
pub mod dashboard;
pub mod edges;
pub mod get;
pub mod routes;
pub mod stat;
mod table;
pub mod tap;
pub mod top;
pub mod version;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message;

use crate::core::addr::client_uri;
use crate::proto::http_api::{self, DEFAULT_API_ADDR};

/// How long opening the connection to the API may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one call may take: above public-api's own upstream timeout, so
/// its answer (504 and why) arrives rather than ours.
const CALL_TIMEOUT: Duration = Duration::from_secs(40);

/// Largest answer read: a ListPods or Stat of a very large mesh.
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// The flag every client command takes.
#[derive(Clone, Debug, clap::Args)]
pub struct ApiArgs {
    /// Address of the public API (HOST:PORT).
    #[arg(long, default_value = DEFAULT_API_ADDR)]
    pub api_addr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid --api-addr {0:?}: expected HOST:PORT")]
    BadAddr(String),
    #[error("cannot reach the public API at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("the public API at {addr} did not answer within {}s", CALL_TIMEOUT.as_secs())]
    Timeout { addr: String },
    #[error("the public API at {addr} answered {status}: {message}")]
    Server {
        addr: String,
        status: StatusCode,
        message: String,
    },
    #[error("unexpected answer from the public API at {addr}: {reason}")]
    Protocol { addr: String, reason: String },
}

/// A client of the public API over HTTP/1.1 with protobuf bodies.
pub struct ApiClient {
    addr: String,
    base: http::Uri,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl ApiClient {
    pub fn new(addr: &str) -> Result<Self, ClientError> {
        let base: http::Uri = client_uri(addr)
            .parse()
            .map_err(|_| ClientError::BadAddr(addr.to_string()))?;
        if base.scheme_str() != Some("http") || base.authority().is_none() {
            return Err(ClientError::BadAddr(addr.to_string()));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        Ok(Self {
            addr: addr.to_string(),
            base,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// One unary call: `request` as the body, the framed answer decoded.
    pub async fn call<Req: Message, Rsp: Message + Default>(
        &self,
        path: &str,
        request: &Req,
    ) -> Result<Rsp, ClientError> {
        match tokio::time::timeout(CALL_TIMEOUT, self.call_inner(path, request)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                addr: self.addr.clone(),
            }),
        }
    }

    async fn call_inner<Req: Message, Rsp: Message + Default>(
        &self,
        path: &str,
        request: &Req,
    ) -> Result<Rsp, ClientError> {
        let rsp = self.send(path, request).await?;
        // Some telemetry replicas are missing from the answer: it is shown,
        // and so is what it lacks.
        if let Some(missing) = rsp.headers().get(http_api::PARTIAL_HEADER) {
            eprintln!(
                "conduit: partial answer: {}",
                String::from_utf8_lossy(missing.as_bytes())
            );
        }
        let body = self.read_all(rsp.into_body()).await?;
        http_api::decode_framed(&body).map_err(|error| self.protocol(error.to_string()))
    }

    /// A streaming call (Tap): the frames of the answer, one message each,
    /// as they arrive. Only connecting is bounded in time: a tap's answer
    /// starts with its first event, which a quiet target may not send for a
    /// long time, and the stream lasts as long as the server sends.
    pub async fn stream<Req: Message, Rsp: Message + Default>(
        &self,
        path: &str,
        request: &Req,
    ) -> Result<Frames<Rsp>, ClientError> {
        let rsp = self.send(path, request).await?;
        Ok(Frames {
            addr: self.addr.clone(),
            body: rsp.into_body(),
            buf: bytes::BytesMut::new(),
            _message: std::marker::PhantomData,
        })
    }

    /// Sends `request` to `path`; a non-success answer becomes
    /// [`ClientError::Server`] with the server's message.
    async fn send<Req: Message>(
        &self,
        path: &str,
        request: &Req,
    ) -> Result<http::Response<hyper::body::Incoming>, ClientError> {
        let authority = self.base.authority().map_or("", |a| a.as_str());
        let uri = format!("http://{authority}{path}");
        let req = http::Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, http_api::PROTOBUF_MEDIA_TYPE)
            .body(Full::new(Bytes::from(request.encode_to_vec())))
            .map_err(|_| ClientError::BadAddr(self.addr.clone()))?;
        let rsp = self
            .client
            .request(req)
            .await
            .map_err(|error| ClientError::Unreachable {
                addr: self.addr.clone(),
                reason: root_cause(&error),
            })?;
        let status = rsp.status();
        if status.is_success() {
            return Ok(rsp);
        }
        let body = self.read_all(rsp.into_body()).await?;
        let text = String::from_utf8_lossy(&body);
        let message = text.split_whitespace().collect::<Vec<_>>().join(" ");
        Err(ClientError::Server {
            addr: self.addr.clone(),
            status,
            message,
        })
    }

    async fn read_all(&self, body: hyper::body::Incoming) -> Result<Bytes, ClientError> {
        Ok(Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|error| self.protocol(format!("reading the answer: {}", root_cause(&*error))))?
            .to_bytes())
    }

    fn protocol(&self, reason: String) -> ClientError {
        ClientError::Protocol {
            addr: self.addr.clone(),
            reason,
        }
    }
}

/// The messages of a streamed answer.
pub struct Frames<M> {
    addr: String,
    body: hyper::body::Incoming,
    buf: bytes::BytesMut,
    _message: std::marker::PhantomData<fn() -> M>,
}

impl<M: Message + Default> Frames<M> {
    /// The next message; `None` when the server ended the stream cleanly.
    /// A stream cut short (the server's error after its first frame) is an
    /// error, so a caller can tell it from a finished one.
    pub async fn next(&mut self) -> Result<Option<M>, ClientError> {
        loop {
            if let Some(announced) = http_api::announced_len(&self.buf)
                && announced > MAX_RESPONSE_BYTES
            {
                return Err(self.protocol(format!("a frame of {announced} bytes")));
            }
            if let Some(frame) = http_api::unframe(&mut self.buf) {
                return M::decode(frame)
                    .map(Some)
                    .map_err(|error| self.protocol(error.to_string()));
            }
            match self.body.frame().await {
                None if self.buf.is_empty() => return Ok(None),
                None => return Err(self.protocol("the stream ended inside a frame".into())),
                Some(Err(error)) => {
                    return Err(self.protocol(format!("the stream broke: {}", root_cause(&error))));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    fn protocol(&self, reason: String) -> ClientError {
        ClientError::Protocol {
            addr: self.addr.clone(),
            reason,
        }
    }
}

/// The innermost cause of an error: "Connection refused (os error 111)"
/// says more than "client error (Connect)".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Which namespace a listing shows: `-n`, or every namespace (the default,
/// as the original `conduit stat` showed the whole mesh; `--all-namespaces`
/// is accepted for kubectl habits).
pub(crate) fn in_namespace(name: &str, namespace: Option<&str>) -> bool {
    match namespace {
        None => true,
        Some(ns) => name
            .split_once('/')
            .is_some_and(|(name_ns, _)| name_ns == ns),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_filter_by_prefix() {
        assert!(in_namespace("shop/web", Some("shop")));
        assert!(!in_namespace("shopping/web", Some("shop")));
        assert!(!in_namespace("web", Some("shop")));
        assert!(in_namespace("web", None));
    }

    #[test]
    fn bad_addresses_are_refused_up_front() {
        assert!(ApiClient::new("127.0.0.1:8085").is_ok());
        assert!(ApiClient::new(":8085").is_ok());
        assert!(matches!(
            ApiClient::new("not an address"),
            Err(ClientError::BadAddr(_))
        ));
    }
}
