//! Graceful cardinality: where a new label set goes once `-max-series` is
//! reached.
//!
//! Folding every label of a new set into one `__overflow__` series makes
//! deployment totals wrong the moment the cap is hit. Instead a new set
//! loses its highest-cardinality dimension first: its `path` (one series per
//! pod pair and method holds every new path), then its pods (one per
//! deployment pair and method), and only last everything ([`Fold::All`],
//! the single overflow series). Sums by deployment stay exact through the
//! first two steps.
//!
//! The last [`RESERVE_DIVISOR`]th of the cap is kept for folded series, so a
//! flood of new label sets that fills the cap still finds room for the
//! series it folds into: ordinary sets stop at [`Tiers::ordinary`],
//! path-folded ones at [`Tiers::path`], pod-folded ones at the cap itself.

use super::labels::{LabelBuf, LabelRef, OVERFLOW, Schema};

/// A tenth of `-max-series` is kept for folded series: at the default cap
/// that is 50,000 label sets, room for a path-folded series per pod pair of
/// a few thousand pods, while ordinary series keep nine tenths.
pub const RESERVE_DIVISOR: usize = 10;

/// How far a label set was folded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fold {
    /// `path` is `__overflow__`; pods and deployments are kept.
    Path,
    /// `source`, `target` and `path` are `__overflow__`; deployments (and
    /// the method or direction) are kept.
    Pods,
    /// Every label is `__overflow__`.
    All,
}

impl Fold {
    /// The `folded` label of `conduit_telemetry_series_folded_total`.
    pub fn label(self) -> &'static str {
        match self {
            Fold::Path => "path",
            Fold::Pods => "pods",
            Fold::All => "all",
        }
    }

    /// The steps a label set of `schema` goes through before [`Fold::All`]
    /// (a schema without `path` skips that step).
    pub fn steps(schema: &'static Schema) -> impl Iterator<Item = Fold> {
        let has_path = schema.position("path").is_some();
        [Fold::Path, Fold::Pods]
            .into_iter()
            .filter(move |&f| f != Fold::Path || has_path)
    }

    fn folds(self, name: &str) -> bool {
        match self {
            Fold::Path => name == "path",
            Fold::Pods => matches!(name, "path" | "source" | "target"),
            Fold::All => true,
        }
    }
}

/// `labels` folded by `step`, into `out`.
pub fn fold(labels: LabelRef<'_>, step: Fold, out: &mut LabelBuf) {
    out.start(labels.schema());
    for (name, value) in labels.pairs() {
        out.push(if step.folds(name) { OVERFLOW } else { &value });
    }
}

/// Where each kind of label set stops claiming budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiers {
    pub ordinary: usize,
    pub path: usize,
    pub pods: usize,
}

impl Tiers {
    pub fn new(limit: usize) -> Self {
        // At least two slots are kept when the cap allows, so that even a
        // tiny cap folds path first.
        let reserve = (limit / RESERVE_DIVISOR).max(limit.min(2));
        Self {
            ordinary: limit - reserve,
            path: limit - reserve / 2,
            pods: limit,
        }
    }

    /// The ceiling of a label set folded by `step`.
    pub fn of(self, step: Fold) -> usize {
        match step {
            Fold::Path => self.path,
            Fold::Pods | Fold::All => self.pods,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::labels::{MESH, TCP};

    fn set(schema: &'static Schema, values: &[&str]) -> LabelBuf {
        let mut b = LabelBuf::default();
        b.start(schema);
        for v in values {
            b.push(v);
        }
        b
    }

    #[test]
    fn path_goes_first_then_pods() {
        let full = set(
            &MESH,
            &[
                "shop/web-1",
                "shop/books-1",
                "shop/web",
                "shop/books",
                "GET",
                "/a",
            ],
        );
        let mut out = LabelBuf::default();
        fold(full.view(), Fold::Path, &mut out);
        let values = |b: &LabelBuf| {
            b.view()
                .values()
                .map(|v| v.into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            values(&out),
            [
                "shop/web-1",
                "shop/books-1",
                "shop/web",
                "shop/books",
                "GET",
                OVERFLOW
            ]
        );
        fold(full.view(), Fold::Pods, &mut out);
        assert_eq!(
            values(&out),
            [
                OVERFLOW,
                OVERFLOW,
                "shop/web",
                "shop/books",
                "GET",
                OVERFLOW
            ]
        );
        assert_eq!(
            Fold::steps(&MESH).collect::<Vec<_>>(),
            [Fold::Path, Fold::Pods]
        );
        assert_eq!(Fold::steps(&TCP).collect::<Vec<_>>(), [Fold::Pods]);
        let tcp = set(&TCP, &["inbound", "src", "a/b", "c/d", "a", "c"]);
        fold(tcp.view(), Fold::Pods, &mut out);
        assert_eq!(
            values(&out),
            ["inbound", "src", OVERFLOW, OVERFLOW, "a", "c"]
        );
    }

    /// A cap of 8 (6 ordinary, 1 path-folded, 1 pod-folded): each step is
    /// taken in turn, and nothing is lost.
    #[test]
    fn each_step_in_turn_then_everything() {
        use crate::ingest::walk::testing::Collect;
        use crate::ingest::walk::tests::Meta;
        use crate::ingest::{Config, Health, Ingester};
        use crate::proto::common::TcpAddress;
        use crate::proto::net::ip_to_proto;
        use crate::proto::proxy::telemetry::*;
        use prost::Message as _;

        let registry = prometheus::Registry::new();
        let health = Health::register(&registry).unwrap();
        let ingester = Ingester::new(
            Config {
                max_series: 8,
                ..Config::default()
            },
            health,
        );
        let scope = |src: &str, dst: &str, path: &str| RequestScope {
            ctx: Some(RequestCtx {
                source_ip: Some(ip_to_proto(src.parse().unwrap())),
                target_addr: Some(TcpAddress {
                    ip: Some(ip_to_proto(dst.parse().unwrap())),
                    port: 80,
                }),
                authority: String::new(),
                method: None,
                path: path.into(),
            }),
            count: 1,
            responses: vec![],
        };
        let (web, books, elsewhere) = ("192.0.2.10", "192.0.2.20", "198.51.100.9");
        let mut requests: Vec<_> = (0..8)
            .map(|i| scope(web, books, &format!("/{i}")))
            .collect();
        // A new pod pair: no room for its path-folded set, room for its
        // pod-folded one.
        requests.push(scope(web, elsewhere, "/x"));
        // Another deployment pair: no room left at all.
        requests.push(scope(elsewhere, books, "/y"));
        let report = ReportRequest {
            requests,
            ..ReportRequest::default()
        };
        ingester
            .ingest_bytes(&report.encode_to_vec(), &Meta)
            .unwrap();
        let h = ingester.health();
        let counts = [Fold::Path, Fold::Pods, Fold::All].map(|f| h.folded(f).get());
        assert_eq!(counts, [2, 1, 1]);
        assert_eq!(ingester.live_label_sets(), 8);

        let mut walked = Collect::default();
        ingester.walk(&mut walked);
        let requests = |want: [&str; 6]| {
            walked
                .0
                .iter()
                .filter(|(n, l, _)| {
                    n == "requests_total"
                        && [
                            "source",
                            "target",
                            "source_deployment",
                            "target_deployment",
                            "method",
                            "path",
                        ]
                        .iter()
                        .zip(want)
                        .all(|(k, v)| l[*k] == v)
                })
                .map(|s| s.2)
                .sum::<f64>()
        };
        let o = OVERFLOW;
        assert_eq!(
            requests(["shop/web-1", "shop/books-1", "shop/web", "", "", o]),
            2.0
        );
        assert_eq!(requests([o, o, "shop/web", "", "", o]), 1.0);
        assert_eq!(requests([o, o, o, o, o, o]), 1.0);
        let total: f64 = walked
            .0
            .iter()
            .filter(|s| s.0 == "requests_total")
            .map(|s| s.2)
            .sum();
        assert_eq!(total, 10.0);
    }

    #[test]
    fn a_tenth_of_the_cap_is_kept_for_folded_sets() {
        assert_eq!(
            Tiers::new(500_000),
            Tiers {
                ordinary: 450_000,
                path: 475_000,
                pods: 500_000
            }
        );
        assert_eq!(
            Tiers::new(8),
            Tiers {
                ordinary: 6,
                path: 7,
                pods: 8
            }
        );
        assert_eq!(
            Tiers::new(1),
            Tiers {
                ordinary: 0,
                path: 1,
                pods: 1
            }
        );
        assert_eq!(Tiers::new(0).pods, 0);
    }
}
