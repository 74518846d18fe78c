//! From one decoded report ([`flat`](super::flat)) to series updates:
//! validate the whole report, then enrich and aggregate it.

use std::net::IpAddr;

use super::flat::{End, Method, Report};
use crate::proto::common::http_method;
use crate::proto::proxy::telemetry::report_request::Proxy;

/// The largest HTTP status a response may report (three digits).
const MAX_HTTP_STATUS: u32 = 999;

/// The workload (pod and deployment labels) that owns an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadRef<'a> {
    /// `namespace/pod`.
    pub pod: &'a str,
    /// `namespace/deployment`, or empty.
    pub deployment: &'a str,
}

/// Cluster metadata as the ingester needs it. Implemented by the Kubernetes
/// index snapshot; kept as a trait so ingest does not depend on Kubernetes.
pub trait Enrich {
    fn by_ip(&self, ip: &IpAddr) -> Option<WorkloadRef<'_>>;
    fn by_pod(&self, namespace: &str, name: &str) -> Option<WorkloadRef<'_>>;
}

/// No metadata at all: every address is unknown.
pub struct NoMetadata;

impl Enrich for NoMetadata {
    fn by_ip(&self, _: &IpAddr) -> Option<WorkloadRef<'_>> {
        None
    }
    fn by_pod(&self, _: &str, _: &str) -> Option<WorkloadRef<'_>> {
        None
    }
}

/// Why a report was rejected; nothing of it was applied.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReport {
    #[error("requests[{scope}] has no ctx")]
    RequestWithoutCtx { scope: usize },
    #[error("requests[{scope}].responses[{response}] has no ctx")]
    ResponseWithoutCtx { scope: usize, response: usize },
    #[error("requests[{scope}].responses[{response}].ends[{end}] has no ctx")]
    EosWithoutCtx {
        scope: usize,
        response: usize,
        end: usize,
    },
    #[error("requests[{scope}] has unknown registered HTTP method {value}")]
    UnknownMethod { scope: usize, value: i32 },
    #[error(
        "requests[{scope}].responses[{response}] has HTTP status {status}, above {MAX_HTTP_STATUS}"
    )]
    BadStatus {
        scope: usize,
        response: usize,
        status: u32,
    },
    #[error("unknown proxy direction {0}")]
    UnknownProxy(i32),
}

/// Checks every rule a report must satisfy before any of it is applied.
pub fn validate(report: Report<'_>) -> Result<(), InvalidReport> {
    let flat = report.flat;
    if Proxy::try_from(flat.proxy).is_err() {
        return Err(InvalidReport::UnknownProxy(flat.proxy));
    }
    for (s, scope) in flat.scopes.iter().enumerate() {
        if !scope.has_ctx {
            return Err(InvalidReport::RequestWithoutCtx { scope: s });
        }
        if let Method::Registered(value) = scope.method
            && http_method::Registered::try_from(value).is_err()
        {
            return Err(InvalidReport::UnknownMethod { scope: s, value });
        }
        for (r, rsp) in report.responses(scope).iter().enumerate() {
            if !rsp.has_ctx {
                return Err(InvalidReport::ResponseWithoutCtx {
                    scope: s,
                    response: r,
                });
            }
            if rsp.status > MAX_HTTP_STATUS {
                return Err(InvalidReport::BadStatus {
                    scope: s,
                    response: r,
                    status: rsp.status,
                });
            }
            if let Some(e) = report.ends(rsp).iter().position(|eos| !eos.has_ctx) {
                return Err(InvalidReport::EosWithoutCtx {
                    scope: s,
                    response: r,
                    end: e,
                });
            }
        }
    }
    Ok(())
}

/// The classification rule (DESIGN §11): a gRPC status is success iff 0; a
/// stream reset is a failure; otherwise the HTTP status decides (< 500).
pub fn is_success(end: Option<End>, http_status: u32) -> bool {
    match end {
        Some(End::Grpc(code)) => code == 0,
        Some(End::Reset(_)) => false,
        Some(End::Other) | None => http_status < 500,
    }
}

/// The method label: the registered name (`GET`) or the unregistered string.
pub fn method_label<'a>(report: Report<'a>, method: Method) -> &'a str {
    match method {
        Method::Registered(v) => http_method::Registered::try_from(v)
            .map(|m| m.as_str_name())
            .unwrap_or(""),
        Method::Unregistered(range) => report.str(range),
        Method::None => "",
    }
}

/// Which of the six request labels are blanked (`-drop-labels`), so an
/// operator can trade a dimension for cardinality without a code change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DroppedLabels {
    pub method: bool,
    pub path: bool,
}

impl std::str::FromStr for DroppedLabels {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = Self::default();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "method" => out.method = true,
                "path" => out.path = true,
                other => {
                    return Err(format!(
                        "label {other:?} cannot be dropped (only method and path can)"
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// Resolves an optional wire address to its workload, counting misses.
pub(super) fn resolve<'a, E: Enrich>(
    meta: &'a E,
    ip: Option<IpAddr>,
    misses: &mut u64,
) -> WorkloadRef<'a> {
    const UNKNOWN: WorkloadRef<'static> = WorkloadRef {
        pod: "",
        deployment: "",
    };
    let Some(ip) = ip else { return UNKNOWN };
    meta.by_ip(&ip).unwrap_or_else(|| {
        *misses += 1;
        UNKNOWN
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::proxy::telemetry::*;

    /// Validates `report` as the ingester sees it: encoded, then decoded.
    fn check(report: &ReportRequest) -> Result<(), InvalidReport> {
        use prost::Message as _;
        let bytes = report.encode_to_vec();
        let mut flat = super::super::flat::FlatReport::default();
        flat.decode(&bytes).unwrap();
        validate(Report {
            flat: &flat,
            bytes: &bytes,
        })
    }

    fn scope_without_ctx() -> RequestScope {
        RequestScope {
            ctx: None,
            count: 1,
            responses: vec![],
        }
    }

    #[test]
    fn validation_names_the_offending_part() {
        let mut report = ReportRequest {
            requests: vec![RequestScope {
                ctx: Some(RequestCtx::default()),
                count: 1,
                responses: vec![ResponseScope {
                    ctx: Some(ResponseCtx {
                        http_status_code: 200,
                    }),
                    response_latencies: vec![],
                    ends: vec![EosScope {
                        ctx: None,
                        streams: vec![],
                    }],
                }],
            }],
            ..Default::default()
        };
        assert_eq!(
            check(&report).unwrap_err().to_string(),
            "requests[0].responses[0].ends[0] has no ctx"
        );
        report.requests.push(scope_without_ctx());
        report.requests[0].responses[0].ends.clear();
        assert_eq!(
            check(&report).unwrap_err(),
            InvalidReport::RequestWithoutCtx { scope: 1 }
        );
    }

    #[test]
    fn classification() {
        assert!(is_success(Some(End::Grpc(0)), 500));
        assert!(!is_success(Some(End::Grpc(2)), 200));
        assert!(!is_success(Some(End::Reset(0)), 200));
        assert!(is_success(Some(End::Other), 404));
        assert!(!is_success(Some(End::Other), 503));
        assert!(is_success(None, 499));
    }

    #[test]
    fn dropped_labels_parse() {
        assert_eq!(
            "path".parse::<DroppedLabels>().unwrap(),
            DroppedLabels {
                method: false,
                path: true
            }
        );
        assert!("source".parse::<DroppedLabels>().is_err());
    }
}
