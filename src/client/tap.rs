//! `conduit tap deploy|pod NAME [filters]`: live requests of a deployment
//! or a pod, one line per event, until interrupted:
//!
//! ```text
//! req id=3:1 src=10.0.0.7:40312 dst=10.0.0.9:8080 :method=GET :authority=web.demo.svc.cluster.local:8080 :path=/api/web
//! rsp id=3:1 src=10.0.0.7:40312 dst=10.0.0.9:8080 :status=200 latency=5210µs
//! end id=3:1 src=10.0.0.7:40312 dst=10.0.0.9:8080 grpc-status=OK duration=521µs response-length=1834B
//! ```
//!
//! Filters are checked by the tap component; what it refuses (a port out of
//! range, an address that is not one, an unknown target) comes back as one
//! plain line and a non-zero exit.

use std::io::Write as _;
use std::net::SocketAddr;

use super::{ApiArgs, ApiClient};
use crate::core::Shutdown;
use crate::proto::common::tap_event::http::Event;
use crate::proto::common::{TapEvent, TcpAddress, tap_event};
use crate::proto::http_api::TAP_PATH;
use crate::proto::net::ip_from_proto;
use crate::proto::public::TapRequest;
use crate::proto::public::tap_request::Target;
use crate::proto::tap_match::{DEFAULT_MAX_RPS, method_name};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Resource {
    #[value(alias = "deployment", alias = "deployments")]
    Deploy,
    #[value(alias = "po", alias = "pods")]
    Pod,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Requests per second to show, across all the target's pods.
    #[arg(long, default_value_t = DEFAULT_MAX_RPS)]
    pub max_rps: f32,
    #[command(flatten)]
    pub filters: FilterArgs,
    /// Output format: `text`, one `key=value` line per event, or `json`,
    /// one proto3 JSON object (the API's `TapEvent`) per line.
    #[arg(short = 'o', long, default_value = "text")]
    pub output: Output,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// What a tap watches; `conduit top` takes the same arguments.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// What to tap: `deploy` or `pod`.
    pub resource: Resource,
    /// Its name: NAME (in `--namespace`) or NAMESPACE/NAME.
    pub name: String,
    /// Namespace of NAME when it has none.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

/// Which of the target's requests a tap shows; `conduit top` takes the
/// same filters.
#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// Only requests to this port.
    #[arg(long)]
    pub to_port: Option<u32>,
    /// Only requests to this IP.
    #[arg(long)]
    pub to_ip: Option<String>,
    /// Only requests from this port.
    #[arg(long)]
    pub from_port: Option<u32>,
    /// Only requests from this IP.
    #[arg(long)]
    pub from_ip: Option<String>,
    /// Only requests with this scheme (http, https).
    #[arg(long)]
    pub scheme: Option<String>,
    /// Only requests with this HTTP method.
    #[arg(long)]
    pub method: Option<String>,
    /// Only requests with this authority (exact).
    #[arg(long)]
    pub authority: Option<String>,
    /// Only requests whose path starts with this.
    #[arg(long)]
    pub path: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// A `--method` no proxy reports (the proxies name only the registered
/// methods; any other never matches, so it is refused, not waited on).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown --method {0:?}: use one of {METHODS}")]
pub struct UnknownMethod(String);

const METHODS: &str = "GET, POST, PUT, DELETE, PATCH, OPTIONS, CONNECT, HEAD, TRACE";

/// The method in the spelling the proxies report, or why it is refused.
pub fn check_method(text: &str) -> Result<String, UnknownMethod> {
    let upper = text.to_ascii_uppercase();
    match crate::proto::common::http_method::Registered::from_str_name(&upper) {
        Some(_) => Ok(upper),
        None => Err(UnknownMethod(text.to_string())),
    }
}

impl TargetArgs {
    /// The target as the API names it: `NAMESPACE/NAME`.
    pub fn qualified_name(&self) -> String {
        if self.name.contains('/') {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

impl FilterArgs {
    /// Refuses what the filters cannot mean before anything is asked.
    pub fn check(&self) -> Result<(), UnknownMethod> {
        match &self.method {
            Some(method) => check_method(method).map(drop),
            None => Ok(()),
        }
    }
}

/// The Tap call for `target`, at `max_rps`, with `filters`.
pub fn tap_request(target: &TargetArgs, max_rps: f32, filters: &FilterArgs) -> TapRequest {
    let name = target.qualified_name();
    TapRequest {
        target: Some(match target.resource {
            Resource::Deploy => Target::Deployment(name),
            Resource::Pod => Target::Pod(name),
        }),
        max_rps,
        to_port: filters.to_port.unwrap_or(0),
        to_ip: filters.to_ip.clone().unwrap_or_default(),
        from_port: filters.from_port.unwrap_or(0),
        from_ip: filters.from_ip.clone().unwrap_or_default(),
        scheme: filters.scheme.clone().unwrap_or_default(),
        method: filters
            .method
            .as_deref()
            .map(|m| check_method(m).unwrap_or_else(|_| m.to_string()))
            .unwrap_or_default(),
        authority: filters.authority.clone().unwrap_or_default(),
        path: filters.path.clone().unwrap_or_default(),
    }
}

impl Args {
    pub fn request(&self) -> TapRequest {
        tap_request(&self.target, self.max_rps, &self.filters)
    }

    /// Prints events until the stream ends or the process is interrupted
    /// (which drops the connection, and with it every upstream call).
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        tokio::select! {
            result = self.print() => result,
            () = shutdown.signaled() => Ok(()),
        }
    }

    async fn print(&self) -> anyhow::Result<()> {
        self.filters.check()?;
        let client = ApiClient::new(&self.api.api_addr)?;
        let mut events = client
            .stream::<_, TapEvent>(TAP_PATH, &self.request())
            .await?;
        while let Some(event) = events.next().await? {
            let mut out = std::io::stdout().lock();
            let line = match self.output {
                Output::Text => event_line(&event),
                Output::Json => Some(String::from_utf8(crate::proto::http_api::to_json(&event)?)?),
            };
            if let Some(line) = line {
                // A closed stdout (`| head`) ends the tap quietly.
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// One event in the original CLI's format; `None` for an event with no
/// HTTP part (nothing to show).
pub fn event_line(event: &TapEvent) -> Option<String> {
    let Some(tap_event::Event::Http(http)) = &event.event else {
        return None;
    };
    let src = addr(event.source.as_ref());
    let dst = addr(event.target.as_ref());
    let id = |id: Option<&tap_event::http::StreamId>| {
        id.map_or_else(|| "?".to_owned(), |id| format!("{}:{}", id.base, id.stream))
    };
    Some(match http.event.as_ref()? {
        Event::RequestInit(req) => format!(
            "req id={} src={src} dst={dst} :method={} :authority={} :path={}",
            id(req.id.as_ref()),
            method_name(req.method.as_ref()),
            req.authority,
            req.path
        ),
        Event::ResponseInit(rsp) => format!(
            "rsp id={} src={src} dst={dst} :status={} latency={}µs",
            id(rsp.id.as_ref()),
            rsp.http_status,
            micros(rsp.since_request_init.as_ref())
        ),
        Event::ResponseEnd(end) => format!(
            "end id={} src={src} dst={dst} grpc-status={} duration={}µs response-length={}B",
            id(end.id.as_ref()),
            grpc_status_name(end.grpc_status),
            micros(end.since_response_init.as_ref()),
            end.response_bytes
        ),
    })
}

fn addr(addr: Option<&TcpAddress>) -> String {
    let ip = addr.and_then(|a| a.ip.as_ref()).and_then(ip_from_proto);
    match (ip, addr) {
        (Some(ip), Some(a)) => SocketAddr::new(ip, a.port as u16).to_string(),
        _ => "?".to_owned(),
    }
}

fn micros(d: Option<&prost_types::Duration>) -> i64 {
    d.map_or(0, |d| {
        d.seconds.saturating_mul(1_000_000) + i64::from(d.nanos) / 1_000
    })
}

/// gRPC status codes by their canonical names (`OK`, `NotFound`, ...).
fn grpc_status_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES
        .get(code as usize)
        .map_or_else(|| format!("Code({code})"), |name| (*name).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::common::tap_event::http::{RequestInit, ResponseEnd, ResponseInit, StreamId};
    use crate::proto::common::{HttpMethod, http_method};
    use crate::proto::net::ip_to_proto;

    #[test]
    fn only_methods_a_proxy_reports_are_taken() {
        assert_eq!(check_method("get").unwrap(), "GET");
        assert_eq!(check_method("PATCH").unwrap(), "PATCH");
        assert_eq!(
            check_method("FETCH").unwrap_err().to_string(),
            "unknown --method \"FETCH\": use one of GET, POST, PUT, DELETE, PATCH, OPTIONS, \
             CONNECT, HEAD, TRACE"
        );
    }

    fn event(e: Event) -> TapEvent {
        let tcp = |ip: &str, port| TcpAddress {
            ip: Some(ip_to_proto(ip.parse().unwrap())),
            port,
        };
        TapEvent {
            source: Some(tcp("192.0.2.7", 40312)),
            target: Some(tcp("2001:db8::9", 8080)),
            event: Some(tap_event::Event::Http(tap_event::Http { event: Some(e) })),
        }
    }

    const ID: Option<StreamId> = Some(StreamId { base: 3, stream: 1 });

    #[test]
    fn events_print_in_the_originals_format() {
        let req = event(Event::RequestInit(RequestInit {
            id: ID,
            method: Some(HttpMethod {
                r#type: Some(http_method::Type::Registered(
                    http_method::Registered::Get as i32,
                )),
            }),
            scheme: None,
            authority: "web.demo:8080".into(),
            path: "/api/web".into(),
        }));
        assert_eq!(
            event_line(&req).unwrap(),
            "req id=3:1 src=192.0.2.7:40312 dst=[2001:db8::9]:8080 :method=GET :authority=web.demo:8080 :path=/api/web"
        );
        let rsp = event(Event::ResponseInit(ResponseInit {
            id: ID,
            since_request_init: Some(prost_types::Duration {
                seconds: 1,
                nanos: 5_210_000,
            }),
            http_status: 200,
        }));
        assert_eq!(
            event_line(&rsp).unwrap(),
            "rsp id=3:1 src=192.0.2.7:40312 dst=[2001:db8::9]:8080 :status=200 latency=1005210µs"
        );
        let end = event(Event::ResponseEnd(ResponseEnd {
            id: ID,
            since_request_init: None,
            since_response_init: Some(prost_types::Duration {
                seconds: 0,
                nanos: 521_000,
            }),
            response_bytes: 1834,
            grpc_status: 5,
        }));
        assert_eq!(
            event_line(&end).unwrap(),
            "end id=3:1 src=192.0.2.7:40312 dst=[2001:db8::9]:8080 grpc-status=NotFound duration=521µs response-length=1834B"
        );
        assert_eq!(grpc_status_name(0), "OK");
        assert_eq!(grpc_status_name(99), "Code(99)");
        assert_eq!(event_line(&TapEvent::default()), None);
    }

    #[test]
    fn names_take_the_namespace_flag_unless_qualified() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let parse = |argv: &[&str]| Cli::try_parse_from(argv).unwrap().args.request();
        let r = parse(&["tap", "deploy", "web", "-n", "demo", "--path", "/api"]);
        assert_eq!(r.target, Some(Target::Deployment("demo/web".into())));
        assert_eq!(r.path, "/api");
        assert_eq!(r.max_rps, DEFAULT_MAX_RPS);
        let r = parse(&["tap", "po", "shop/web-1", "--to-port", "70000"]);
        assert_eq!(r.target, Some(Target::Pod("shop/web-1".into())));
        assert_eq!(r.to_port, 70_000);
    }
}
