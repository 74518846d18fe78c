//! The gRPC services: the proxies' `Report` and the controller's
//! `ListPods`/`Query`.

use std::sync::Arc;

use bytes::Bytes;
use tonic::codegen::BoxFuture;
use tonic::{Request, Response, Status};

use crate::grpc::ReportHandler;

use crate::ingest::{Enrich, IngestError, Ingester, WorkloadRef};
use crate::k8s::{Index, PodInfo, Snapshot};
use crate::proto::codec::UNDECODABLE;
use crate::proto::controller::stat::{
    RouteWindowsResponse, TcpResponse, WindowsResponse, stat_server,
};
use crate::proto::controller::telemetry::{
    ListPodsRequest, QueryRequest, QueryResponse, telemetry_server,
};
use crate::proto::public::{
    ListPodNodesResponse, ListPodsResponse, MetricRequest, MetricResponse, Pod, PodNode,
    RoutesRequest, RoutesResponse,
};
use crate::stat::routes::{self, RouteQuery};
use crate::stat::{Query, StatError, embedded, promql::Prometheus, tcp};

fn stat_status(error: StatError) -> Status {
    match error {
        StatError::UnknownEnum { .. } => Status::invalid_argument(error.to_string()),
        StatError::PrometheusRejected(_) => Status::invalid_argument(error.to_string()),
        StatError::PrometheusUnavailable(_) => Status::unavailable(error.to_string()),
        StatError::Invalid(_) => Status::invalid_argument(error.to_string()),
        StatError::Unsupported(_) => Status::failed_precondition(error.to_string()),
    }
}

/// Enrichment straight from an index snapshot: no allocation, no locks.
impl Enrich for Snapshot {
    fn by_ip(&self, ip: &std::net::IpAddr) -> Option<WorkloadRef<'_>> {
        self.workload_ref_by_ip(ip).map(|w| WorkloadRef {
            pod: w.pod,
            deployment: w.deployment.map_or("", |d| d),
        })
    }

    fn by_pod(&self, namespace: &str, name: &str) -> Option<WorkloadRef<'_>> {
        let w = self.workload_ref_of(self.pod(namespace, name)?);
        Some(WorkloadRef {
            pod: w.pod,
            deployment: w.deployment.map_or("", |d| d),
        })
    }
}

pub struct ReportService {
    ingester: Arc<Ingester>,
    index: Arc<Index>,
    max_report_bytes: usize,
}

impl ReportService {
    /// Applies reports of at most `max_report_bytes` to `ingester`, enriched
    /// from `index`.
    pub fn new(ingester: Arc<Ingester>, index: Arc<Index>, max_report_bytes: usize) -> Self {
        Self {
            ingester,
            index,
            max_report_bytes,
        }
    }

    /// The largest report body applied; larger ones are RESOURCE_EXHAUSTED.
    pub fn max_report_bytes(&self) -> usize {
        self.max_report_bytes
    }

    /// One `Report` body, however it arrived (a proxy's call, a forwarded
    /// stream, proxy-api in this process): decoded, validated and applied
    /// by the ingester, or refused whole: RESOURCE_EXHAUSTED over the size
    /// limit, INVALID_ARGUMENT when it is not a valid report.
    pub fn report_bytes(&self, body: &[u8]) -> Result<(), Status> {
        if body.len() > self.max_report_bytes {
            self.ingester.health().rejected_too_large.inc();
            return Err(too_large(body.len(), self.max_report_bytes));
        }
        let snapshot = self.index.load();
        match self.ingester.ingest_bytes(body, &**snapshot) {
            Ok(()) => Ok(()),
            Err(IngestError::Undecodable(error)) => {
                tracing::debug!(%error, "report undecodable");
                self.ingester.health().rejected_undecodable.inc();
                Err(Status::invalid_argument(format!(
                    "{UNDECODABLE} message: {error}"
                )))
            }
            Err(IngestError::Invalid(error)) => {
                tracing::debug!(%error, "report rejected");
                Err(Status::invalid_argument(format!("invalid report: {error}")))
            }
        }
    }
}

/// A report over the limit, as every path that refuses one says it.
pub fn too_large(len: usize, limit: usize) -> Status {
    Status::resource_exhausted(format!(
        "report of {len} bytes is over the limit of {limit} bytes (-max-report-bytes)"
    ))
}

impl ReportHandler for ReportService {
    fn report(&self, body: Bytes, _: Option<std::time::Duration>) -> BoxFuture<(), Status> {
        Box::pin(std::future::ready(self.report_bytes(&body)))
    }
}

pub struct ControllerService {
    ingester: Arc<Ingester>,
    index: Arc<Index>,
    ignore_namespaces: Arc<[String]>,
    prometheus: Option<Prometheus>,
}

impl ControllerService {
    pub fn new(
        ingester: Arc<Ingester>,
        index: Arc<Index>,
        ignore_namespaces: Arc<[String]>,
        prometheus: Option<Prometheus>,
    ) -> Self {
        Self {
            ingester,
            index,
            ignore_namespaces,
            prometheus,
        }
    }

    /// Every pod of the index outside the ignored namespaces, with its
    /// report freshness from the instance cache.
    /// The pods ListPods shows: those outside `-ignore-namespaces`.
    fn listed<'a>(&'a self, snapshot: &'a Snapshot) -> impl Iterator<Item = &'a Arc<PodInfo>> {
        snapshot
            .pods()
            .filter(|p| !self.ignore_namespaces.iter().any(|ns| **ns == *p.namespace))
    }

    pub fn list_pods(&self) -> ListPodsResponse {
        let snapshot = self.index.snapshot();
        let instances = self.ingester.instances();
        let pods = self
            .listed(&snapshot)
            .map(|p| {
                let since = instances.since_last_report(&p.label);
                Pod {
                    name: p.label.to_string(),
                    pod_ip: p.ips.first().map(ToString::to_string).unwrap_or_default(),
                    deployment: snapshot
                        .deployment_of(p)
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    status: p.status().to_string(),
                    added: since.is_some(),
                    since_last_report: since.and_then(|d| prost_types::Duration::try_from(d).ok()),
                    controller_namespace: p.controller_namespace.to_string(),
                    control_plane: p.control_plane,
                }
            })
            .collect();
        ListPodsResponse { pods }
    }

    /// The node of each pod [`Self::list_pods`] lists, in the same order.
    pub fn list_pod_nodes(&self) -> ListPodNodesResponse {
        let snapshot = self.index.snapshot();
        let pods = self
            .listed(&snapshot)
            .map(|p| PodNode {
                name: p.label.to_string(),
                node: p.node.clone(),
            })
            .collect();
        ListPodNodesResponse { pods }
    }
}

#[tonic::async_trait]
impl telemetry_server::Telemetry for ControllerService {
    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<QueryResponse>, Status> {
        let Some(prometheus) = &self.prometheus else {
            return Err(Status::failed_precondition(
                "Query needs a Prometheus: start telemetry with -prometheus-url",
            ));
        };
        let q = request.into_inner();
        let end = if q.end_ms == 0 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        } else {
            q.end_ms
        };
        let start = if q.start_ms == 0 { end } else { q.start_ms };
        let step = if q.step.is_empty() {
            "10s"
        } else {
            q.step.as_str()
        };
        let metrics = prometheus
            .query_range(&q.query, start, end, step)
            .await
            .map_err(stat_status)?;
        Ok(Response::new(QueryResponse { metrics }))
    }

    async fn list_pods(
        &self,
        _: Request<ListPodsRequest>,
    ) -> Result<Response<ListPodsResponse>, Status> {
        Ok(Response::new(self.list_pods()))
    }

    async fn list_pod_nodes(
        &self,
        _: Request<ListPodsRequest>,
    ) -> Result<Response<ListPodNodesResponse>, Status> {
        Ok(Response::new(self.list_pod_nodes()))
    }
}

/// This project's internal Stat service: Prometheus when configured, the
/// embedded store otherwise; and the embedded store's raw windows, for a
/// public-api that merges several replicas.
pub struct StatService {
    ingester: Arc<Ingester>,
    prometheus: Option<Prometheus>,
}

impl StatService {
    pub fn new(ingester: Arc<Ingester>, prometheus: Option<Prometheus>) -> Self {
        Self {
            ingester,
            prometheus,
        }
    }
}

#[tonic::async_trait]
impl stat_server::Stat for StatService {
    async fn stat(
        &self,
        request: Request<MetricRequest>,
    ) -> Result<Response<MetricResponse>, Status> {
        let q = Query::try_from(request.get_ref()).map_err(stat_status)?;
        let rsp = match &self.prometheus {
            Some(p) => crate::stat::promql::stat(p, &q)
                .await
                .map_err(stat_status)?,
            None => embedded::stat(&self.ingester, &q),
        };
        Ok(Response::new(rsp))
    }

    async fn windows(
        &self,
        request: Request<MetricRequest>,
    ) -> Result<Response<WindowsResponse>, Status> {
        if self.prometheus.is_some() {
            // The contract of the call (stat.proto): the caller asks one
            // replica's Stat instead.
            return Err(Status::failed_precondition(
                "Stat is answered by Prometheus (-prometheus-url), which sees every replica: \
                 call Stat",
            ));
        }
        let q = Query::try_from(request.get_ref()).map_err(stat_status)?;
        Ok(Response::new(
            embedded::windows(&self.ingester, &q).to_wire(),
        ))
    }

    async fn routes(
        &self,
        request: Request<RoutesRequest>,
    ) -> Result<Response<RoutesResponse>, Status> {
        let rq = RouteQuery::try_from(request.get_ref()).map_err(stat_status)?;
        let templated = self.ingester.has_routes(&rq.deployment);
        let routes = match &self.prometheus {
            Some(p) => routes::prometheus_rows(p, &rq, templated)
                .await
                .map_err(stat_status)?,
            None => {
                let now = self.ingester.now_ms();
                routes::rows(&routes::windows_at(&self.ingester, &rq, now), &rq)
            }
        };
        Ok(Response::new(RoutesResponse { routes, templated }))
    }

    async fn tcp(&self, request: Request<MetricRequest>) -> Result<Response<TcpResponse>, Status> {
        let q = Query::try_from(request.get_ref()).map_err(stat_status)?;
        let rsp = match &self.prometheus {
            Some(p) => tcp::prometheus(p, &q).await.map_err(stat_status)?,
            None => tcp::embedded(&self.ingester, &q),
        };
        Ok(Response::new(rsp))
    }

    async fn route_windows(
        &self,
        request: Request<RoutesRequest>,
    ) -> Result<Response<RouteWindowsResponse>, Status> {
        if self.prometheus.is_some() {
            return Err(Status::failed_precondition(
                "Routes are answered by Prometheus (-prometheus-url), which sees every replica: \
                 call Routes",
            ));
        }
        let rq = RouteQuery::try_from(request.get_ref()).map_err(stat_status)?;
        let now = self.ingester.now_ms();
        Ok(Response::new(RouteWindowsResponse {
            windows: Some(routes::windows_at(&self.ingester, &rq, now).to_wire()),
            templated: self.ingester.has_routes(&rq.deployment),
        }))
    }
}
