//! The telemetry replicas public-api asks (`-telemetry-addr A,B,C`). Each
//! replica ingests the reports of the proxies connected to it, so an answer
//! about the whole mesh is every replica's answer merged:
//!
//! - ListPods asks every replica at once; a pod is `added` when any replica
//!   heard from it, and `sinceLastReport` is the most recent report's.
//! - Stat asks every replica for its embedded store's raw windows
//!   (`conduit.controller.stat.Stat/Windows`) and merges them exactly
//!   ([`crate::stat::windows`]: counts summed, histograms added bucket by
//!   bucket, then rates and percentiles computed once). A replica that
//!   answers Stat from Prometheus says so (FAILED_PRECONDITION); Prometheus
//!   sees every replica, so one replica's Stat is then the whole answer.
//! - A replica that fails or misses [`REPLICA_DEADLINE`] makes the answer
//!   [`Partial`]: still given, and said so. When none answers, the call
//!   fails as it does with one.
//!
//! A single address is asked as it always was: the call forwarded as it is.

use std::collections::HashMap;
use std::time::Duration;

use super::Upstream;
use super::handler::one_line;
use crate::proto::controller::stat::stat_client::StatClient;
use crate::proto::controller::stat::{RouteWindowsResponse, TcpResponse};
use crate::proto::controller::telemetry::ListPodsRequest;
use crate::proto::controller::telemetry::telemetry_client::TelemetryClient;
use crate::proto::public::{
    ListPodNodesResponse, ListPodsResponse, MetricRequest, MetricResponse, PodNode, RoutesRequest,
    RoutesResponse,
};
use crate::stat::routes::RouteQuery;
use crate::stat::windows::{Windows, WindowsError};
use crate::stat::{Query, StatError};

/// Most addresses `-telemetry-addr` may list: every Stat and ListPods asks
/// each of them and holds their answers at once, so the list bounds a
/// call's fan-out and memory; far above any replica count worth running.
pub const MAX_TELEMETRY_REPLICAS: usize = 64;

/// How long a replica may take to answer its part of a merged call before
/// the answer goes out without it: well above an embedded store's read
/// (milliseconds) and the connect timeout, well below a client's patience.
pub const REPLICA_DEADLINE: Duration = Duration::from_secs(10);

/// Largest answer accepted from a replica: a Stat time series over 10k pods
/// or a ListPods of a large cluster runs to megabytes, well past tonic's
/// 4 MiB.
pub const MAX_UPSTREAM_MESSAGE_BYTES: usize = 64 << 20;

/// Longest `Conduit-Partial` value: room for a few reasons in full, small
/// enough for any proxy's header limit.
const MAX_PARTIAL_BYTES: usize = 2_048;

/// Longest reason quoted per replica in `Conduit-Partial`.
const MAX_REASON_BYTES: usize = 200;

/// One telemetry replica: its address (for logs, errors and the readiness
/// probe) and how it is called.
pub struct Replica {
    pub addr: String,
    pub upstream: Upstream,
}

/// Why `-telemetry-addr` is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddrListError {
    #[error(
        "-telemetry-addr {list:?}: address {position} is empty (a comma-separated list of HOST:PORT)"
    )]
    Empty { list: String, position: usize },
    #[error(
        "-telemetry-addr lists {count} addresses; at most {MAX_TELEMETRY_REPLICAS} replicas are asked"
    )]
    TooMany { count: usize },
    #[error("-telemetry-addr lists {0} twice: its traffic would be counted twice")]
    Repeated(String),
}

/// The addresses of `-telemetry-addr`: one, as ever, or a comma-separated
/// list of them (space around each is ignored), each written as one
/// address is.
pub fn parse_addrs(list: &str) -> Result<Vec<String>, AddrListError> {
    let addrs: Vec<&str> = list.split(',').map(str::trim).collect();
    if addrs.len() > MAX_TELEMETRY_REPLICAS {
        return Err(AddrListError::TooMany { count: addrs.len() });
    }
    let mut out: Vec<String> = Vec::with_capacity(addrs.len());
    for (i, addr) in addrs.into_iter().enumerate() {
        if addr.is_empty() {
            return Err(AddrListError::Empty {
                list: list.to_string(),
                position: i + 1,
            });
        }
        if out.iter().any(|a| a == addr) {
            return Err(AddrListError::Repeated(addr.to_string()));
        }
        out.push(addr.to_string());
    }
    Ok(out)
}

/// A replica's failure: which one, and what it (or its channel) said.
#[derive(Debug)]
pub struct Failure {
    pub addr: String,
    pub status: tonic::Status,
}

impl Failure {
    fn of(replica: &Replica, status: tonic::Status) -> Self {
        Self {
            addr: replica.addr.clone(),
            status,
        }
    }
}

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// No replica answered (the first one's failure), or one refused the
    /// request as the caller's mistake.
    Upstream(Failure),
    /// The request itself cannot be answered.
    Request(StatError),
}

/// An answer, and the replicas missing from it.
pub struct Answer<T> {
    pub message: T,
    pub partial: Option<Partial>,
}

/// Replicas that did not contribute to an answer.
#[derive(Debug)]
pub struct Partial {
    asked: usize,
    failed: Vec<Failure>,
}

impl Partial {
    fn of(asked: usize, failed: Vec<Failure>) -> Option<Self> {
        (!failed.is_empty()).then_some(Self { asked, failed })
    }

    /// The `Conduit-Partial` value: `1 of 3 telemetry replicas unreachable
    /// (ADDR: Code: reason)`, on one line of visible ASCII, bounded.
    pub fn header_value(&self) -> String {
        let reasons = self
            .failed
            .iter()
            .map(|f| {
                let mut reason = one_line(f.status.message());
                truncate(&mut reason, MAX_REASON_BYTES);
                format!("{}: {:?}: {reason}", f.addr, f.status.code())
            })
            .collect::<Vec<_>>()
            .join("; ");
        let text = format!(
            "{} of {} telemetry replicas unreachable ({reasons})",
            self.failed.len(),
            self.asked
        );
        let mut text: String = text
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
            .collect();
        truncate(&mut text, MAX_PARTIAL_BYTES);
        text
    }
}

/// Cuts `text` to at most `max` bytes, marking the cut.
fn truncate(text: &mut String, max: usize) {
    const MARK: &str = "...";
    if text.len() <= max {
        return;
    }
    let mut at = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text.truncate(at);
    text.push_str(MARK);
}

/// The request with its deadline, sent along as `grpc-timeout` so a replica
/// stops working on an answer no one waits for.
fn with_deadline<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(REPLICA_DEADLINE);
    request
}

/// A ListPods (or ListPodNodes) request; with the deadline when several
/// replicas are asked.
fn list_request(several: bool) -> tonic::Request<ListPodsRequest> {
    if several {
        with_deadline(ListPodsRequest {})
    } else {
        tonic::Request::new(ListPodsRequest {})
    }
}

fn stat_client(upstream: Upstream) -> StatClient<Upstream> {
    StatClient::new(upstream).max_decoding_message_size(MAX_UPSTREAM_MESSAGE_BYTES)
}

fn telemetry_client(upstream: Upstream) -> TelemetryClient<Upstream> {
    TelemetryClient::new(upstream).max_decoding_message_size(MAX_UPSTREAM_MESSAGE_BYTES)
}

/// A code that says the request, not the replica, is at fault: the caller
/// gets it as it would from one replica.
fn callers_mistake(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange | tonic::Code::NotFound
    )
}

/// Every replica of `-telemetry-addr`, in the order listed (never empty).
pub struct Telemetry {
    replicas: Vec<Replica>,
}

impl Telemetry {
    pub fn new(replicas: Vec<Replica>) -> Self {
        Self { replicas }
    }

    /// The first replica's failure, or, were there none, a failure
    /// naming them all.
    fn first_failure(&self, failed: Vec<Failure>) -> Failure {
        failed.into_iter().next().unwrap_or_else(|| Failure {
            addr: self.addr_list(),
            status: tonic::Status::unavailable("no telemetry replica answered"),
        })
    }

    fn addr_list(&self) -> String {
        self.replicas
            .iter()
            .map(|r| r.addr.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `call` on every replica at once, each bounded by
    /// [`REPLICA_DEADLINE`]; the answers in the order of the replicas.
    async fn ask_all<T, F, Fut>(&self, call: F) -> Vec<Result<T, tonic::Status>>
    where
        F: Fn(Upstream) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let calls = self.replicas.iter().map(|replica| {
            let answer = call(replica.upstream.clone());
            async move {
                match tokio::time::timeout(REPLICA_DEADLINE, answer).await {
                    Ok(answer) => answer.map(tonic::Response::into_inner),
                    Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                        "no answer within {} s",
                        REPLICA_DEADLINE.as_secs()
                    ))),
                }
            }
        });
        futures::future::join_all(calls).await
    }

    /// `call` on every replica, the answers merged; partial when some
    /// replicas failed, an error only when none answered. One replica is
    /// asked without [`REPLICA_DEADLINE`] (`several` is false): its answer
    /// is the answer, however long it takes.
    async fn merge_all<T, F, Fut>(
        &self,
        call: F,
        merge: fn(Vec<T>) -> T,
    ) -> Result<Answer<T>, CallError>
    where
        F: Fn(Upstream, bool) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        if let [one] = &self.replicas[..] {
            let message = call(one.upstream.clone(), false)
                .await
                .map_err(|status| CallError::Upstream(Failure::of(one, status)))?
                .into_inner();
            return Ok(Answer {
                message,
                partial: None,
            });
        }
        let answers = self.ask_all(|upstream| call(upstream, true)).await;
        let mut lists = Vec::new();
        let mut failed = Vec::new();
        for (replica, answer) in self.replicas.iter().zip(answers) {
            match answer {
                Ok(list) => lists.push(list),
                Err(status) => failed.push(Failure::of(replica, status)),
            }
        }
        if lists.is_empty() {
            return Err(CallError::Upstream(self.first_failure(failed)));
        }
        Ok(Answer {
            message: merge(lists),
            partial: Partial::of(self.replicas.len(), failed),
        })
    }

    /// Every pod any replica lists, `added` when any replica heard from it.
    pub async fn list_pods(&self) -> Result<Answer<ListPodsResponse>, CallError> {
        self.merge_all(
            |upstream, several| async move {
                telemetry_client(upstream)
                    .list_pods(list_request(several))
                    .await
            },
            merge_pods,
        )
        .await
    }

    /// The node of every pod any replica lists.
    pub async fn list_pod_nodes(&self) -> Result<Answer<ListPodNodesResponse>, CallError> {
        self.merge_all(
            |upstream, several| async move {
                telemetry_client(upstream)
                    .list_pod_nodes(list_request(several))
                    .await
            },
            merge_pod_nodes,
        )
        .await
    }

    /// Stat over every replica's traffic.
    pub async fn stat(&self, request: MetricRequest) -> Result<Answer<MetricResponse>, CallError> {
        if let [one] = &self.replicas[..] {
            return Ok(Answer {
                message: stat_on(one, request).await?,
                partial: None,
            });
        }
        let q = Query::try_from(&request).map_err(CallError::Request)?;
        let Gathered {
            merged,
            on_prometheus,
            failed,
            ..
        } = self.gather_windows(&request, &q).await?;
        if let Some(replica) = on_prometheus {
            // Prometheus scrapes (or is written to by) every replica: one
            // replica's Stat already covers them all, and a replica that is
            // down now left its past in Prometheus.
            return Ok(Answer {
                message: stat_on(replica, request).await?,
                partial: None,
            });
        }
        let Some(merged) = merged else {
            return Err(CallError::Upstream(self.first_failure(failed)));
        };
        Ok(Answer {
            message: merged.response(&q),
            partial: Partial::of(self.replicas.len(), failed),
        })
    }
}

/// Every replica's raw windows, merged: the replicas that answered, the
/// first that answers Stat from Prometheus instead, the ones that failed.
struct Gathered<'a> {
    merged: Option<Windows>,
    on_prometheus: Option<&'a Replica>,
    failed: Vec<Failure>,
    /// Set when any replica said so (Routes: the deployment has templates).
    flag: bool,
}

impl Telemetry {
    /// The embedded stores' raw windows for `request`, merged over every
    /// replica (even one), for an answer Stat's groupings cannot give
    /// (groups re-keyed, e.g. deployments summed into their namespace).
    /// A replica answering from Prometheus makes the call fail: its raw
    /// data is not there.
    pub async fn windows(&self, request: MetricRequest) -> Result<Answer<Windows>, CallError> {
        let q = Query::try_from(&request).map_err(CallError::Request)?;
        let Gathered {
            merged,
            on_prometheus,
            failed,
            ..
        } = self.gather_windows(&request, &q).await?;
        if let Some(replica) = on_prometheus {
            return Err(CallError::Request(StatError::Unsupported(format!(
                "telemetry at {} answers Stat from Prometheus, which this answer \
                 cannot be computed from",
                replica.addr
            ))));
        }
        let Some(merged) = merged else {
            return Err(CallError::Upstream(self.first_failure(failed)));
        };
        Ok(Answer {
            message: merged,
            partial: Partial::of(self.replicas.len(), failed),
        })
    }

    /// Asks every replica for its raw windows of `request` and merges what
    /// came back; a caller's mistake ends the call at once.
    async fn gather_windows(
        &self,
        request: &MetricRequest,
        q: &Query,
    ) -> Result<Gathered<'_>, CallError> {
        self.gather(
            |upstream| {
                let request = with_deadline(request.clone());
                async move { stat_client(upstream).windows(request).await }
            },
            |wire| Ok((Windows::from_wire(wire, q)?, false)),
        )
        .await
    }

    /// `call` on every replica, each answer read into windows (and a flag
    /// any replica may set) by `read` and merged.
    async fn gather<T, F, Fut>(
        &self,
        call: F,
        read: impl Fn(T) -> Result<(Windows, bool), WindowsError>,
    ) -> Result<Gathered<'_>, CallError>
    where
        F: Fn(Upstream) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let answers = self.ask_all(call).await;
        let mut gathered = Gathered {
            merged: None,
            on_prometheus: None,
            failed: Vec::new(),
            flag: false,
        };
        for (replica, answer) in self.replicas.iter().zip(answers) {
            match answer {
                Ok(wire) => match read(wire) {
                    Ok((windows, flag)) => {
                        gathered.flag |= flag;
                        match &mut gathered.merged {
                            Some(merged) => merged.merge(windows),
                            None => gathered.merged = Some(windows),
                        }
                    }
                    Err(error) => gathered.failed.push(Failure::of(
                        replica,
                        tonic::Status::internal(format!("unusable windows: {error}")),
                    )),
                },
                Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                    gathered.on_prometheus.get_or_insert(replica);
                }
                Err(status) if callers_mistake(status.code()) => {
                    return Err(CallError::Upstream(Failure::of(replica, status)));
                }
                Err(status) => gathered.failed.push(Failure::of(replica, status)),
            }
        }
        Ok(gathered)
    }

    /// One deployment's routes over every replica's traffic: each
    /// replica's route windows merged, then the rows computed once; a
    /// replica answering from Prometheus answers for all.
    pub async fn routes(
        &self,
        request: RoutesRequest,
    ) -> Result<Answer<RoutesResponse>, CallError> {
        if let [one] = &self.replicas[..] {
            return Ok(Answer {
                message: routes_on(one, request).await?,
                partial: None,
            });
        }
        let rq = RouteQuery::try_from(&request).map_err(CallError::Request)?;
        let q = rq.stat_query();
        let gathered = self
            .gather(
                |upstream| {
                    let request = with_deadline(request.clone());
                    async move { stat_client(upstream).route_windows(request).await }
                },
                |wire: RouteWindowsResponse| {
                    let windows = Windows::from_wire(wire.windows.unwrap_or_default(), &q)?;
                    Ok((windows, wire.templated))
                },
            )
            .await?;
        if let Some(replica) = gathered.on_prometheus {
            return Ok(Answer {
                message: routes_on(replica, request).await?,
                partial: None,
            });
        }
        let templated = gathered.flag;
        let Some(merged) = gathered.merged else {
            return Err(CallError::Upstream(self.first_failure(gathered.failed)));
        };
        Ok(Answer {
            message: RoutesResponse {
                routes: crate::stat::routes::rows(&merged, &rq),
                templated,
            },
            partial: Partial::of(self.replicas.len(), gathered.failed),
        })
    }

    /// TCP per group over every replica: their embedded answers added up,
    /// or the first answer from Prometheus alone (it covers them all).
    pub async fn tcp(&self, request: MetricRequest) -> Result<Answer<TcpResponse>, CallError> {
        let answers = self
            .ask_all(|upstream| {
                let request = with_deadline(request.clone());
                async move { stat_client(upstream).tcp(request).await }
            })
            .await;
        let mut embedded = Vec::new();
        let mut failed = Vec::new();
        for (replica, answer) in self.replicas.iter().zip(answers) {
            match answer {
                Ok(answer) if answer.from_prometheus => {
                    return Ok(Answer {
                        message: answer,
                        partial: None,
                    });
                }
                Ok(answer) => embedded.push(answer),
                Err(status) if callers_mistake(status.code()) => {
                    return Err(CallError::Upstream(Failure::of(replica, status)));
                }
                Err(status) => failed.push(Failure::of(replica, status)),
            }
        }
        if embedded.is_empty() {
            return Err(CallError::Upstream(self.first_failure(failed)));
        }
        Ok(Answer {
            message: TcpResponse {
                groups: crate::stat::tcp::add_up(
                    embedded.into_iter().flat_map(|a| a.groups),
                    str::to_string,
                )
                .into_values()
                .collect(),
                from_prometheus: false,
            },
            partial: Partial::of(self.replicas.len(), failed),
        })
    }

    /// Whether Stat is answered from Prometheus, and if so how it fares:
    /// `None` when the first replica answers from its embedded store (or
    /// cannot be asked), else the outcome of a small Stat through it.
    pub async fn prometheus_health(&self) -> Option<Result<(), Failure>> {
        let first = self.replicas.first()?;
        let probe = MetricRequest {
            metrics: vec![crate::proto::public::MetricName::RequestRate as i32],
            window: crate::proto::public::TimeWindow::TenSec as i32,
            group_by: crate::proto::public::AggregationType::Mesh as i32,
            filter_by: None,
            summarize: true,
        };
        let windows = stat_client(first.upstream.clone())
            .windows(with_deadline(probe.clone()))
            .await;
        match windows {
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {}
            _ => return None,
        }
        let answer = stat_client(first.upstream.clone())
            .stat(with_deadline(probe))
            .await;
        Some(
            answer
                .map(drop)
                .map_err(|status| Failure::of(first, status)),
        )
    }
}

/// One replica's own Stat.
async fn stat_on(replica: &Replica, request: MetricRequest) -> Result<MetricResponse, CallError> {
    stat_client(replica.upstream.clone())
        .stat(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| CallError::Upstream(Failure::of(replica, status)))
}

/// One replica's own Routes.
async fn routes_on(replica: &Replica, request: RoutesRequest) -> Result<RoutesResponse, CallError> {
    stat_client(replica.upstream.clone())
        .routes(with_deadline(request))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| CallError::Upstream(Failure::of(replica, status)))
}

/// Every replica's pod nodes as one list, in the order first listed: the
/// replicas watch the same cluster, so the first that names a node for a
/// pod is as right as any (one that has not seen the pod scheduled yet
/// says `""`).
pub fn merge_pod_nodes(lists: Vec<ListPodNodesResponse>) -> ListPodNodesResponse {
    let mut pods: Vec<PodNode> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for pod in lists.into_iter().flat_map(|l| l.pods) {
        match at.get(&pod.name) {
            Some(&i) if pods[i].node.is_empty() => pods[i].node = pod.node,
            Some(_) => {}
            None => {
                at.insert(pod.name.clone(), pods.len());
                pods.push(pod);
            }
        }
    }
    ListPodNodesResponse { pods }
}

/// Every replica's pods as one list, in the order first listed: each
/// replica lists the pods of the same cluster, but only the one a pod's
/// proxy reports to has heard from it.
pub fn merge_pods(lists: impl IntoIterator<Item = ListPodsResponse>) -> ListPodsResponse {
    let mut pods = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for list in lists {
        for pod in list.pods {
            let Some(&i) = at.get(&pod.name) else {
                at.insert(pod.name.clone(), pods.len());
                pods.push(pod);
                continue;
            };
            let kept: &mut crate::proto::public::Pod = &mut pods[i];
            kept.added |= pod.added;
            kept.since_last_report = match (kept.since_last_report.take(), pod.since_last_report) {
                (Some(a), Some(b)) => Some(if (b.seconds, b.nanos) < (a.seconds, a.nanos) {
                    b
                } else {
                    a
                }),
                (a, b) => a.or(b),
            };
        }
    }
    ListPodsResponse { pods }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::public::Pod;

    #[test]
    fn one_address_or_a_list() {
        assert_eq!(parse_addrs("127.0.0.1:8087").unwrap(), ["127.0.0.1:8087"]);
        assert_eq!(
            parse_addrs("192.0.2.1:8087, 192.0.2.2:8087,:8087").unwrap(),
            ["192.0.2.1:8087", "192.0.2.2:8087", ":8087"]
        );
        assert_eq!(
            parse_addrs("192.0.2.1:8087,,192.0.2.2:8087"),
            Err(AddrListError::Empty {
                list: "192.0.2.1:8087,,192.0.2.2:8087".into(),
                position: 2
            })
        );
        assert!(matches!(
            parse_addrs("192.0.2.1:8087,"),
            Err(AddrListError::Empty { position: 2, .. })
        ));
        assert!(matches!(parse_addrs(""), Err(AddrListError::Empty { .. })));
        assert_eq!(
            parse_addrs("192.0.2.1:8087,192.0.2.1:8087"),
            Err(AddrListError::Repeated("192.0.2.1:8087".into()))
        );
        let many = (0..=MAX_TELEMETRY_REPLICAS)
            .map(|i| format!("192.0.2.{i}:8087"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            parse_addrs(&many),
            Err(AddrListError::TooMany {
                count: MAX_TELEMETRY_REPLICAS + 1
            })
        );
    }

    fn mk_pod(name: &str, since_secs: Option<i64>) -> Pod {
        Pod {
            name: name.into(),
            pod_ip: "192.0.2.10".into(),
            status: "Running".into(),
            added: since_secs.is_some(),
            since_last_report: since_secs
                .map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
            ..Pod::default()
        }
    }

    #[test]
    fn a_pod_is_added_when_any_replica_heard_from_it() {
        let a = ListPodsResponse {
            pods: vec![mk_pod("shop/web-1", Some(8)), mk_pod("shop/books-1", None)],
        };
        let b = ListPodsResponse {
            pods: vec![
                mk_pod("shop/books-1", Some(3)),
                mk_pod("shop/web-1", Some(2)),
                mk_pod("shop/late-1", None),
            ],
        };
        let merged = merge_pods([a, b]);
        let seen: Vec<(&str, bool, Option<i64>)> = merged
            .pods
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.added,
                    p.since_last_report.as_ref().map(|d| d.seconds),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("shop/web-1", true, Some(2)),
                ("shop/books-1", true, Some(3)),
                ("shop/late-1", false, None),
            ]
        );
    }

    #[test]
    fn a_pods_node_is_the_first_replica_that_names_one() {
        let node = |name: &str, node: &str| PodNode {
            name: name.into(),
            node: node.into(),
        };
        let a = ListPodNodesResponse {
            pods: vec![node("shop/web-1", "node-a"), node("shop/books-1", "")],
        };
        let b = ListPodNodesResponse {
            pods: vec![
                node("shop/books-1", "node-b"),
                node("shop/web-1", "node-z"),
                node("shop/late-1", ""),
            ],
        };
        assert_eq!(
            merge_pod_nodes(vec![a, b]).pods,
            [
                node("shop/web-1", "node-a"),
                node("shop/books-1", "node-b"),
                node("shop/late-1", ""),
            ]
        );
    }

    #[test]
    fn the_partial_header_is_one_bounded_ascii_line() {
        let failure = |addr: &str, message: &str| Failure {
            addr: addr.into(),
            status: tonic::Status::unavailable(message),
        };
        let partial = Partial::of(3, vec![failure("192.0.2.3:8087", "tcp connect\nerror é")])
            .expect("a failure makes it partial");
        assert_eq!(
            partial.header_value(),
            "1 of 3 telemetry replicas unreachable (192.0.2.3:8087: Unavailable: tcp connect error  )"
        );
        let long = "x".repeat(10_000);
        let many = (0..MAX_TELEMETRY_REPLICAS)
            .map(|i| failure(&format!("192.0.2.{i}:8087"), &long))
            .collect();
        let value = Partial::of(MAX_TELEMETRY_REPLICAS, many)
            .unwrap()
            .header_value();
        assert!(value.len() <= MAX_PARTIAL_BYTES, "{}", value.len());
        assert!(value.ends_with("..."));
        assert!(http::HeaderValue::from_str(&value).is_ok());
        assert!(Partial::of(3, vec![]).is_none());
    }
}
