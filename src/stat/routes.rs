//! Routes: one deployment's inbound traffic per route, the numbers Stat
//! gives a deployment, split by what its requests asked for.
//!
//! A route is the request's method and its `path` label: for a deployment
//! with route templates (telemetry's `-routes FILE`, [`crate::ingest::routes`])
//! the template it matched, every unmatched request summed into one
//! [`DEFAULT_ROUTE`] row; without templates, the path as observed. The
//! embedded store keeps windows per route ([`crate::ingest::labels::ROUTE`]),
//! read here into [`Windows`] keyed by the route's name, so several
//! replicas' routes merge as their Stat windows do; through Prometheus the
//! same numbers come from `requests_total` and friends grouped by `method`
//! and `path`.

use super::numbers::{Numbers, numbers_by_key};
use super::promql::{self, Prometheus};
use super::windows::Windows;
use super::{Query, StatError, embedded};
use crate::ingest::Ingester;
use crate::ingest::routes::DEFAULT_ROUTE;
use crate::proto::public::{
    AggregationType, MetricMetadata, MetricName, RouteRow, RoutesRequest, TimeWindow,
};

/// A validated Routes request.
#[derive(Clone, Debug)]
pub struct RouteQuery {
    /// `namespace/name`.
    pub deployment: String,
    pub window: TimeWindow,
}

impl TryFrom<&RoutesRequest> for RouteQuery {
    type Error = StatError;

    fn try_from(req: &RoutesRequest) -> Result<Self, StatError> {
        let d = &req.deployment;
        match d.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {}
            _ => {
                return Err(StatError::Invalid(format!(
                    "deployment {d:?}: give it as namespace/name"
                )));
            }
        }
        let window = TimeWindow::try_from(req.window).map_err(|_| StatError::UnknownEnum {
            what: "window",
            value: req.window,
        })?;
        Ok(Self {
            deployment: d.clone(),
            window,
        })
    }
}

impl RouteQuery {
    /// The summarized Stat query behind the rows: the deployment's inbound
    /// traffic. Its answer names each route in `targetDeploy`, the one
    /// field its grouping sets, which only [`rows`] reads.
    pub fn stat_query(&self) -> Query {
        Query {
            metrics: vec![
                MetricName::RequestRate,
                MetricName::SuccessRate,
                MetricName::Latency,
            ],
            window: self.window,
            group_by: AggregationType::TargetDeploy,
            filter: MetricMetadata {
                target_deploy: self.deployment.clone(),
                ..MetricMetadata::default()
            },
            summarize: true,
        }
    }
}

/// A route's name from its method and `path` label.
pub fn route_name(method: &str, path: &str, templated: bool) -> String {
    if templated && path == DEFAULT_ROUTE {
        DEFAULT_ROUTE.to_string()
    } else if method.is_empty() {
        path.to_string()
    } else {
        format!("{method} {path}")
    }
}

/// The embedded store's windows of the deployment's routes at store time
/// `now_ms`, one group per route name.
pub fn windows_at(ingester: &Ingester, rq: &RouteQuery, now_ms: u64) -> Windows {
    let templated = ingester.has_routes(&rq.deployment);
    embedded::read_at(ingester, &rq.stat_query(), now_ms, |add| {
        ingester.for_each_route(|labels, data| {
            if labels.get(0) != rq.deployment {
                return;
            }
            add(&route_name(&labels.get(1), &labels.get(2), templated), data);
        });
    })
}

/// The rows of a (merged) routes [`Windows`], ordered by route.
pub fn rows(windows: &Windows, rq: &RouteQuery) -> Vec<RouteRow> {
    let answer = windows.response(&rq.stat_query());
    to_rows(numbers_by_key(AggregationType::TargetDeploy, &answer))
}

fn to_rows(numbers: impl IntoIterator<Item = (String, Numbers)>) -> Vec<RouteRow> {
    numbers
        .into_iter()
        .filter(|(route, _)| !route.is_empty())
        .map(|(route, n)| RouteRow {
            route,
            request_rate: n.request_rate,
            success_rate: n.success_rate,
            p50_latency_ms: n.p50,
            p95_latency_ms: n.p95,
            p99_latency_ms: n.p99,
        })
        .collect()
}

/// The rows through Prometheus: grouped by method and path; for a
/// deployment with templates, its unmatched requests once more grouped by
/// path alone, so [`DEFAULT_ROUTE`] is one row whatever their methods
/// (latency quantiles cannot be added afterwards).
pub async fn prometheus_rows(
    prometheus: &Prometheus,
    rq: &RouteQuery,
    templated: bool,
) -> Result<Vec<RouteRow>, StatError> {
    let q = rq.stat_query();
    let mut grouped = promql::collect(prometheus, &q, &["method", "path"]).await?;
    if templated {
        let defaults = promql::collect(prometheus, &q, &["path"]).await?;
        for ((_, routes), (_, unmatched)) in grouped.iter_mut().zip(defaults) {
            routes.retain(|key, _| key[1] != DEFAULT_ROUTE);
            routes.extend(
                unmatched
                    .into_iter()
                    .filter(|(key, _)| key[0] == DEFAULT_ROUTE)
                    .map(|(_, points)| (vec![String::new(), DEFAULT_ROUTE.to_string()], points)),
            );
        }
    }
    let answer = promql::response(&q, grouped, |key| match key {
        [method, path] => route_name(method, path, templated),
        _ => String::new(),
    });
    Ok(to_rows(numbers_by_key(
        AggregationType::TargetDeploy,
        &answer,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::routes::Routes;
    use crate::ingest::{Config, Enrich, Health, WorkloadRef};
    use crate::proto::common::{HttpMethod, TcpAddress, http_method};
    use crate::proto::net::ip_to_proto;
    use crate::proto::proxy::telemetry::*;
    use prost::Message as _;
    use std::net::IpAddr;
    use std::sync::Arc;

    /// Every address is a pod of `default/books`.
    struct Books;

    impl Enrich for Books {
        fn by_ip(&self, _: &IpAddr) -> Option<WorkloadRef<'_>> {
            Some(WorkloadRef {
                pod: "default/books-1",
                deployment: "default/books",
            })
        }
        fn by_pod(&self, _: &str, _: &str) -> Option<WorkloadRef<'_>> {
            None
        }
    }

    fn scope(method: http_method::Registered, path: &str, count: u32, status: u32) -> RequestScope {
        let ip = ip_to_proto("10.0.0.1".parse().unwrap());
        RequestScope {
            ctx: Some(RequestCtx {
                source_ip: Some(ip),
                target_addr: Some(TcpAddress {
                    ip: Some(ip),
                    port: 8080,
                }),
                authority: "books".to_string(),
                method: Some(HttpMethod {
                    r#type: Some(http_method::Type::Registered(method as i32)),
                }),
                path: path.to_string(),
            }),
            count,
            responses: vec![ResponseScope {
                ctx: Some(ResponseCtx {
                    http_status_code: status,
                }),
                response_latencies: vec![Latency {
                    latency: 500,
                    count,
                }],
                ends: vec![EosScope {
                    ctx: Some(EosCtx { end: None }),
                    streams: vec![StreamSummary::default(); count as usize],
                }],
            }],
        }
    }

    fn store(routes: Option<&str>) -> Ingester {
        Ingester::new(
            Config {
                routes: routes.map(|text| Arc::new(Routes::parse(text).unwrap())),
                ..Config::default()
            },
            Health::register(&prometheus::Registry::new()).unwrap(),
        )
    }

    fn ingest(ingester: &Ingester, requests: Vec<RequestScope>) {
        let report = ReportRequest {
            requests,
            ..ReportRequest::default()
        };
        ingester
            .ingest_bytes(&report.encode_to_vec(), &Books)
            .unwrap();
    }

    /// The rows read `later_ms` after now.
    fn rows_at(ingester: &Ingester, later_ms: u64) -> Vec<RouteRow> {
        let rq = RouteQuery {
            deployment: "default/books".to_string(),
            window: TimeWindow::OneMin,
        };
        rows(
            &windows_at(ingester, &rq, ingester.now_ms() + later_ms),
            &rq,
        )
    }

    fn rows_of(ingester: &Ingester) -> Vec<RouteRow> {
        rows_at(ingester, 5_000)
    }

    #[test]
    fn templates_sum_their_paths_and_the_rest_is_the_default_route() {
        use http_method::Registered::{Get, Post};
        let ingester = store(Some("default/books GET /books/{id}\n"));
        let mut requests: Vec<RequestScope> = (1..=500)
            .map(|i| scope(Get, &format!("/books/{i}"), 2, 200))
            .collect();
        requests.push(scope(Post, "/books/1", 3, 500));
        requests.push(scope(Get, "/authors", 5, 200));
        ingest(&ingester, requests);
        let rows = rows_of(&ingester);
        let names: Vec<&str> = rows.iter().map(|r| r.route.as_str()).collect();
        assert_eq!(names, ["GET /books/{id}", DEFAULT_ROUTE]);
        // 1,000 requests over the 5 s since: 200/s; the default route's 8
        // requests (3 failed) likewise.
        assert!(
            (rows[0].request_rate - 1000.0 / 5.0).abs() < 1.0,
            "{rows:?}"
        );
        assert_eq!(rows[0].success_rate, Some(1.0));
        assert_eq!(rows[0].p50_latency_ms, Some(50));
        assert!((rows[1].request_rate - 8.0 / 5.0).abs() < 0.1, "{rows:?}");
        assert_eq!(rows[1].success_rate, Some(5.0 / 8.0));
    }

    #[test]
    fn without_templates_the_observed_paths_are_the_routes() {
        use http_method::Registered::{Get, Post};
        let ingester = store(None);
        ingest(
            &ingester,
            vec![
                scope(Get, "/books/1", 1, 200),
                scope(Get, "/books/2", 1, 200),
                scope(Post, "/books/1", 1, 200),
            ],
        );
        let names: Vec<String> = rows_of(&ingester).into_iter().map(|r| r.route).collect();
        assert_eq!(names, ["GET /books/1", "GET /books/2", "POST /books/1"]);
    }

    #[test]
    fn a_path_flood_past_the_bound_keeps_the_deployment_s_total() {
        use http_method::Registered::Get;
        let ingester = store(None);
        let n = crate::ingest::MAX_ROUTE_WINDOWS + 500;
        for chunk in (0..n).collect::<Vec<_>>().chunks(2_000) {
            ingest(
                &ingester,
                chunk
                    .iter()
                    .map(|i| scope(Get, &format!("/p/{i}"), 1, 200))
                    .collect(),
            );
        }
        // Read 50 s on, so the seconds the ingest itself took hardly move
        // the span the rates divide by.
        let rows = rows_at(&ingester, 50_000);
        let ordinary = crate::ingest::MAX_ROUTE_WINDOWS - crate::ingest::ROUTE_OVERFLOW_HEADROOM;
        assert_eq!(rows.len(), ordinary + 1);
        let overflow = rows
            .iter()
            .find(|r| r.route == crate::ingest::OVERFLOW)
            .unwrap();
        let folded = (n - ordinary) as f64;
        let want = folded / 50.0;
        assert!(
            (overflow.request_rate - want).abs() < want * 0.05,
            "{overflow:?}"
        );
        assert_eq!(
            ingester.health().routes_folded.get(),
            n as u64 - ordinary as u64
        );
        assert_eq!(ingester.health().routes_dropped.get(), 0);
    }

    #[test]
    fn a_request_names_a_deployment_as_namespace_and_name() {
        for bad in ["books", "/books", "default/", "a/b/c"] {
            let req = RoutesRequest {
                deployment: bad.to_string(),
                window: 0,
            };
            let error = RouteQuery::try_from(&req).unwrap_err().to_string();
            assert!(error.contains("namespace/name"), "{bad}: {error}");
        }
        let req = RoutesRequest {
            deployment: "default/books".to_string(),
            window: 99,
        };
        assert!(RouteQuery::try_from(&req).is_err());
    }
}
