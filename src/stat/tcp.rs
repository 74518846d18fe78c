//! TCP per group of workload pairs: the internal `Tcp` call behind
//! StatSummary's TCP columns, answered from the embedded store's TCP
//! windows or from Prometheus' `tcp_*` series, with the same meaning:
//!
//! - open connections: connections into the group's targets that their
//!   inbound proxies reported opened and not yet closed;
//! - read bytes/s: what the sources' outbound proxies sent the targets
//!   (known for meshed sources only);
//! - write bytes/s: what the targets' inbound proxies sent back.
//!
//! The wire's `TransportSummary` counts bytes sent when a connection
//! closes, so the rates are those of connections closed in the window. A
//! rate is over the span the data covers, as REQUEST_RATE's is.

use std::collections::BTreeMap;
use std::time::Duration;

use super::embedded::PairSelect;
use super::promql::{self, Prometheus};
use super::windows::per_second;
use super::{Query, StatError, filters, group_label, promql_duration, window_length};
use crate::ingest::Ingester;
use crate::ingest::window::TcpTotals;
use crate::proto::controller::stat::{TcpGroup, TcpResponse};

/// Answers from the embedded store at the store's current time.
pub fn embedded(ingester: &Ingester, q: &Query) -> TcpResponse {
    embedded_at(ingester, q, ingester.now_ms())
}

/// [`embedded`] at a given store time (for tests).
pub fn embedded_at(ingester: &Ingester, q: &Query, now_ms: u64) -> TcpResponse {
    let select = PairSelect::new(q);
    let from_ms = now_ms.saturating_sub(window_length(q.window).as_millis() as u64);
    // Per group: the totals, and where its data begins.
    let mut groups: BTreeMap<String, (TcpTotals, u64)> = BTreeMap::new();
    ingester.for_each_tcp_pair(|labels, data| {
        let Some(key) = select.key(labels) else {
            return;
        };
        let (totals, first_seen) = match groups.get_mut(key.as_ref()) {
            Some(g) => g,
            None => groups
                .entry(key.into_owned())
                .or_insert((TcpTotals::default(), u64::MAX)),
        };
        *first_seen = (*first_seen).min(data.covered_from_ms());
        data.totals(from_ms, now_ms, totals);
    });
    let groups = groups
        .into_iter()
        .map(|(key, (t, first_seen))| {
            let rate = |bytes| per_second(bytes, t.span, now_ms, now_ms, first_seen).unwrap_or(0.0);
            TcpGroup {
                key,
                open_connections: t.open as f64,
                read_bytes_per_sec: rate(t.bytes.read_bytes),
                write_bytes_per_sec: rate(t.bytes.write_bytes),
            }
        })
        .collect();
    TcpResponse {
        groups,
        from_prometheus: false,
    }
}

/// The three PromQL queries, in the order of [`TcpGroup`]'s numbers.
pub fn queries(q: &Query) -> [String; 3] {
    let r = promql_duration(window_length(q.window));
    let g = group_label(q.group_by).map_or(String::new(), |l| format!(" by ({l})"));
    let selector = |metric: &str, direction: &str, peer: &str| {
        let matchers: Vec<String> = filters(&q.filter)
            .into_iter()
            .chain([("direction", direction), ("peer", peer)])
            .map(|(label, value)| format!("{label}=\"{}\"", promql::escape(value)))
            .collect();
        format!("{metric}{{{}}}", matchers.join(","))
    };
    let opened = format!("sum({}){g}", selector("tcp_open_total", "inbound", "src"));
    let closed = format!("sum({}){g}", selector("tcp_close_total", "inbound", "src"));
    let rate = |direction, peer| {
        format!(
            "sum(rate({}[{r}])){g}",
            selector("tcp_write_bytes_total", direction, peer)
        )
    };
    [
        // A group with opens and no close yet has no close series.
        format!("clamp_min({opened} - ({closed} or {opened} * 0), 0)"),
        rate("outbound", "dst"),
        rate("inbound", "src"),
    ]
}

/// Answers through Prometheus, which sees every replica's series.
pub async fn prometheus(prometheus: &Prometheus, q: &Query) -> Result<TcpResponse, StatError> {
    let label = group_label(q.group_by);
    let mut groups: BTreeMap<String, TcpGroup> = BTreeMap::new();
    let now = promql::now_ms();
    let step = promql_duration(Duration::from_secs(10));
    for (i, query) in queries(q).iter().enumerate() {
        for sample in prometheus.query_range(query, now, now, &step).await? {
            let key = label
                .and_then(|l| sample.labels.get(l).cloned())
                .unwrap_or_default();
            let Some(value) = sample.values.last().map(|v| v.value) else {
                continue;
            };
            let value = if value.is_finite() { value } else { 0.0 };
            let group = groups.entry(key.clone()).or_insert_with(|| TcpGroup {
                key,
                ..TcpGroup::default()
            });
            match i {
                0 => group.open_connections = value,
                1 => group.read_bytes_per_sec = value,
                _ => group.write_bytes_per_sec = value,
            }
        }
    }
    Ok(TcpResponse {
        groups: groups.into_values().collect(),
        from_prometheus: true,
    })
}

/// Groups added up by `key` of theirs: several replicas' embedded answers
/// (each replica holds the reports of its own proxies), or groups rolled
/// up into larger ones.
pub fn add_up(
    groups: impl IntoIterator<Item = TcpGroup>,
    key: impl Fn(&str) -> String,
) -> BTreeMap<String, TcpGroup> {
    let mut out: BTreeMap<String, TcpGroup> = BTreeMap::new();
    for g in groups {
        let key = key(&g.key);
        let sum = out.entry(key.clone()).or_insert_with(|| TcpGroup {
            key,
            ..TcpGroup::default()
        });
        sum.open_connections += g.open_connections;
        sum.read_bytes_per_sec += g.read_bytes_per_sec;
        sum.write_bytes_per_sec += g.write_bytes_per_sec;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{Config, Enrich, Health, WorkloadRef};
    use crate::proto::common::TcpAddress;
    use crate::proto::net::ip_to_proto;
    use crate::proto::proxy::telemetry::*;
    use crate::proto::public::{AggregationType, MetricMetadata, TimeWindow};
    use prost::Message as _;
    use std::net::IpAddr;

    /// 10.0.0.1 is `shop/web-1`, 10.0.0.2 `shop/books-1`.
    struct Shop;

    fn workload(ip: &IpAddr) -> Option<WorkloadRef<'static>> {
        match ip.to_string().as_str() {
            "10.0.0.1" => Some(WorkloadRef {
                pod: "shop/web-1",
                deployment: "shop/web",
            }),
            "10.0.0.2" => Some(WorkloadRef {
                pod: "shop/books-1",
                deployment: "shop/books",
            }),
            _ => None,
        }
    }

    impl Enrich for Shop {
        fn by_ip(&self, ip: &IpAddr) -> Option<WorkloadRef<'_>> {
            workload(ip)
        }
        fn by_pod(&self, ns: &str, name: &str) -> Option<WorkloadRef<'_>> {
            workload(&match (ns, name) {
                ("shop", "web-1") => "10.0.0.1".parse().unwrap(),
                ("shop", "books-1") => "10.0.0.2".parse().unwrap(),
                _ => return None,
            })
        }
    }

    fn process(name: &str) -> Option<Process> {
        Some(Process {
            node: "node-1".into(),
            scheduled_instance: name.into(),
            scheduled_namespace: "shop".into(),
        })
    }

    fn summaries(n: usize, bytes: u64) -> Vec<TransportSummary> {
        vec![
            TransportSummary {
                duration_ms: 1_000,
                bytes_sent: bytes,
            };
            n
        ]
    }

    fn ip(text: &str) -> Option<crate::proto::common::IpAddress> {
        Some(ip_to_proto(text.parse().unwrap()))
    }

    /// books-1's inbound proxy: `connects` opened from web-1, `closes`
    /// closed, each having sent `bytes` back.
    fn inbound(connects: u32, closes: usize, bytes: u64) -> Vec<u8> {
        ReportRequest {
            process: process("books-1"),
            proxy: report_request::Proxy::Inbound as i32,
            server_transports: vec![ServerTransport {
                source_ip: ip("10.0.0.1"),
                connects,
                disconnects: summaries(closes, bytes),
            }],
            // The inbound proxy's own hop to the app: not the pair's.
            client_transports: vec![ClientTransport {
                target_addr: Some(TcpAddress {
                    ip: ip("10.0.0.2"),
                    port: 8080,
                }),
                connects,
                disconnects: summaries(closes, 1 << 30),
            }],
            ..ReportRequest::default()
        }
        .encode_to_vec()
    }

    /// web-1's outbound proxy: `closes` connections to books-1 closed,
    /// each having sent `bytes`.
    fn outbound(closes: usize, bytes: u64) -> Vec<u8> {
        ReportRequest {
            process: process("web-1"),
            proxy: report_request::Proxy::Outbound as i32,
            client_transports: vec![ClientTransport {
                target_addr: Some(TcpAddress {
                    ip: ip("10.0.0.2"),
                    port: 8080,
                }),
                connects: 9,
                disconnects: summaries(closes, bytes),
            }],
            // The app's own connections into its outbound proxy.
            server_transports: vec![ServerTransport {
                source_ip: ip("10.0.0.1"),
                connects: 9,
                disconnects: summaries(closes, 1 << 30),
            }],
            ..ReportRequest::default()
        }
        .encode_to_vec()
    }

    fn query(by: AggregationType, filter: MetricMetadata) -> Query {
        Query {
            metrics: vec![],
            window: TimeWindow::OneMin,
            group_by: by,
            filter,
            summarize: true,
        }
    }

    #[test]
    fn a_pairs_connections_and_bytes_from_both_ends() {
        let ingester = Ingester::new(
            Config::default(),
            Health::register(&prometheus::Registry::new()).unwrap(),
        );
        for body in [inbound(5, 2, 1_000), outbound(3, 400), inbound(1, 1, 500)] {
            ingester.ingest_bytes(&body, &Shop).unwrap();
        }
        let q = query(AggregationType::TargetDeploy, MetricMetadata::default());
        let now = ingester.now_ms();
        let rsp = embedded_at(&ingester, &q, now);
        assert_eq!(rsp.groups.len(), 1, "{rsp:?}");
        let books = &rsp.groups[0];
        assert_eq!(books.key, "shop/books");
        assert_eq!(books.open_connections, 3.0, "6 opened, 3 closed");
        // Every report arrived within a second: the minimum span, 1 s.
        assert_eq!(books.read_bytes_per_sec, 1_200.0);
        assert_eq!(books.write_bytes_per_sec, 2_500.0);
        // Grouped by source; filtered by a target nobody calls.
        let by_source = embedded_at(
            &ingester,
            &query(AggregationType::SourcePod, MetricMetadata::default()),
            now,
        );
        assert_eq!(by_source.groups[0].key, "shop/web-1");
        let none = embedded_at(
            &ingester,
            &query(
                AggregationType::TargetDeploy,
                MetricMetadata {
                    target_deploy: "shop/web".into(),
                    ..MetricMetadata::default()
                },
            ),
            now,
        );
        assert!(none.groups.is_empty(), "{none:?}");
        // Two replicas holding the same traffic: twice the figures.
        let twice = add_up(
            rsp.groups.iter().chain(&rsp.groups).cloned(),
            str::to_string,
        );
        assert_eq!(twice["shop/books"].open_connections, 6.0);
        assert_eq!(twice["shop/books"].write_bytes_per_sec, 5_000.0);
        // Rolled up by namespace.
        let shop = add_up(rsp.groups, |k| k.split('/').next().unwrap().to_string());
        assert_eq!(shop["shop"].read_bytes_per_sec, 1_200.0);
    }

    #[test]
    fn closes_of_connections_opened_before_the_store_count_as_none_open() {
        let ingester = Ingester::new(
            Config::default(),
            Health::register(&prometheus::Registry::new()).unwrap(),
        );
        ingester.ingest_bytes(&inbound(0, 4, 10), &Shop).unwrap();
        let q = query(AggregationType::TargetPod, MetricMetadata::default());
        let rsp = embedded_at(&ingester, &q, ingester.now_ms());
        assert_eq!(rsp.groups[0].open_connections, 0.0);
    }

    #[test]
    fn promql_reads_the_same_sides() {
        let q = query(
            AggregationType::TargetDeploy,
            MetricMetadata {
                source_deploy: "shop/web".into(),
                ..MetricMetadata::default()
            },
        );
        let [open, read, write] = queries(&q);
        let opened = r#"sum(tcp_open_total{source_deployment="shop/web",direction="inbound",peer="src"}) by (target_deployment)"#;
        assert_eq!(
            open,
            format!(
                "clamp_min({opened} - ({} or {opened} * 0), 0)",
                opened.replace("tcp_open_total", "tcp_close_total")
            )
        );
        assert_eq!(
            read,
            r#"sum(rate(tcp_write_bytes_total{source_deployment="shop/web",direction="outbound",peer="dst"}[1m])) by (target_deployment)"#
        );
        assert_eq!(
            write,
            r#"sum(rate(tcp_write_bytes_total{source_deployment="shop/web",direction="inbound",peer="src"}[1m])) by (target_deployment)"#
        );
    }
}
