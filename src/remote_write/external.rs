//! `-remote-write-external-label NAME=VALUE`: labels every pushed series
//! carries, store and registry alike. Several telemetry replicas pushing to
//! one receiver each hold their own part of the mesh's counters under the
//! very same label sets; a label naming the replica (the install sets
//! `replica` from the pod name) keeps their series apart, so the receiver
//! never sees two writers of one series and a query sums across them.
//!
//! The flag is checked whole at start: a label name in Prometheus' syntax,
//! not reserved (`__…`), not one the pushed series carry themselves, given
//! once, with a non-empty value of bounded length. Each label is then
//! encoded once, as the bytes of its `TimeSeries.labels` field, which the
//! [`Encoder`](super::Encoder) copies into every series, merged by name
//! with the series' own labels.

use std::sync::Arc;

use prometheus::proto::MetricFamily;

use super::encode::label_field;
use crate::ingest::labels;

/// Longest external label name: Kubernetes' bound for a label key's name
/// part, far longer than the names queries spell.
pub const MAX_NAME_BYTES: usize = 63;

/// Longest external label value: Kubernetes' longest object name (a DNS
/// subdomain, 253 bytes), so any pod name fits, which Kubernetes' own
/// 63-byte bound for label values would not hold. Every pushed sample
/// carries the value, so a longer one is more likely a mistake than a need.
pub const MAX_VALUE_BYTES: usize = 253;

/// Most external labels: a replica, a cluster, a region and a few more;
/// each is carried on every pushed sample.
pub const MAX_LABELS: usize = 8;

/// The labels single samples add to their series' labels: a histogram
/// bucket's `le`, a response class, a summary's `quantile`.
const SAMPLE_LABELS: &[&str] = &["le", "http_status_code", "classification", "quantile"];

/// The label names of the component's own registry (ingester health,
/// gRPC, remote write); `tests/replicas.rs` checks every name a running
/// component exposes is refused.
const REGISTRY_LABELS: &[&str] = &[
    "reason", "side", "metric", "method", "code", "result", "folded", "outcome",
];

/// Whether the pushed series carry a label of this name themselves.
fn carried_by_series(name: &str) -> bool {
    labels::MESH.names.contains(&name)
        || labels::TCP.names.contains(&name)
        || SAMPLE_LABELS.contains(&name)
        || REGISTRY_LABELS.contains(&name)
}

/// Parses one `-remote-write-external-label NAME=VALUE` (the value may
/// hold `=`).
pub fn parse(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))?;
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "{name:?} is not a label name: a letter or '_', then letters, digits or '_'"
        ));
    }
    if name.starts_with("__") {
        return Err(format!(
            "{name:?}: names starting with \"__\" are reserved for Prometheus' own labels"
        ));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("{name:?} is longer than {MAX_NAME_BYTES} bytes"));
    }
    if carried_by_series(name) {
        return Err(format!(
            "{name:?} is a label of the pushed series themselves (source, target, le, reason, …); \
             choose another name, such as replica"
        ));
    }
    if value.is_empty() {
        return Err(format!(
            "{name}: the value is empty (an empty label is no label in Prometheus)"
        ));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "{name}: the value is {} bytes, more than {MAX_VALUE_BYTES}",
            value.len()
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

/// A set of external labels the flags parsed one by one cannot be.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("{0:?} is given twice")]
    Twice(String),
    #[error("{0} labels given, at most {MAX_LABELS} are allowed")]
    TooMany(usize),
    #[error("{0:?} is a label of the component's own series")]
    Carried(String),
}

/// One external label and its `TimeSeries.labels` field.
#[derive(Debug)]
pub(super) struct External {
    pub(super) name: String,
    /// Key, length and the `Label` message: what is copied into a series.
    pub(super) field: Vec<u8>,
}

/// The checked external labels, sorted by name, each encoded once; cheap
/// to clone.
#[derive(Clone, Debug, Default)]
pub struct ExternalLabels(Arc<[External]>);

impl ExternalLabels {
    /// Labels as [`parse`] returns them.
    pub fn new(pairs: Vec<(String, String)>) -> Result<Self, Error> {
        if pairs.len() > MAX_LABELS {
            return Err(Error::TooMany(pairs.len()));
        }
        let mut pairs = pairs;
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Error::Twice(w[0].0.clone()));
        }
        Ok(Self(
            pairs
                .into_iter()
                .map(|(name, value)| External {
                    field: label_field(&name, &value),
                    name,
                })
                .collect(),
        ))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|e| e.name.as_str())
    }

    pub(super) fn sorted(&self) -> &[External] {
        &self.0
    }

    /// Refuses a label that a family of `families` (the component's
    /// registry) carries: the guard for a metric registered after
    /// [`REGISTRY_LABELS`] was written.
    pub fn check_families(&self, families: &[MetricFamily]) -> Result<(), Error> {
        let carried = families
            .iter()
            .flat_map(|f| f.get_metric())
            .flat_map(|m| m.get_label())
            .find(|l| self.names().any(|n| n == l.name()));
        match carried {
            Some(label) => Err(Error::Carried(label.name().to_string())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_values_and_bounds() {
        assert_eq!(
            parse("replica=controller-7d9f-x2=b").unwrap(),
            ("replica".to_string(), "controller-7d9f-x2=b".to_string())
        );
        assert!(parse("_zone=eu").is_ok());
        assert!(parse("Region2=eu").is_ok());
        let pod = "p".repeat(MAX_VALUE_BYTES);
        assert!(
            parse(&format!("replica={pod}")).is_ok(),
            "a 253-byte pod name"
        );
        assert!(parse(&format!("replica={pod}x")).is_err());
        assert!(parse(&format!("{}=x", "n".repeat(MAX_NAME_BYTES))).is_ok());
        assert!(parse(&format!("{}=x", "n".repeat(MAX_NAME_BYTES + 1))).is_err());
        for bad in [
            "replica",
            "replica=",
            "=x",
            "2replica=x",
            "re-plica=x",
            "répl=x",
            "__name__=x",
            "__replica=x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_series_own_labels_are_refused() {
        for name in labels::MESH.names.iter().chain(labels::TCP.names) {
            let error = parse(&format!("{name}=x")).unwrap_err();
            assert!(error.contains("pushed series themselves"), "{error}");
        }
        for name in [
            "le",
            "quantile",
            "classification",
            "http_status_code",
            "code",
        ] {
            assert!(parse(&format!("{name}=x")).is_err(), "{name}");
        }
    }

    #[test]
    fn a_set_is_sorted_once_and_each_name_given_once() {
        let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
        let set = ExternalLabels::new(vec![pair("zone", "a"), pair("cluster", "b")]).unwrap();
        assert_eq!(set.names().collect::<Vec<_>>(), ["cluster", "zone"]);
        assert_eq!(
            ExternalLabels::new(vec![pair("zone", "a"), pair("zone", "b")]).unwrap_err(),
            Error::Twice("zone".into())
        );
        let many = (0..=MAX_LABELS)
            .map(|i| pair(&format!("l{i}"), "v"))
            .collect();
        assert_eq!(
            ExternalLabels::new(many).unwrap_err(),
            Error::TooMany(MAX_LABELS + 1)
        );
        assert!(ExternalLabels::default().is_empty());
    }

    #[test]
    fn a_registry_label_is_refused() {
        let registry = prometheus::Registry::new();
        let counter = prometheus::IntCounterVec::new(
            prometheus::Opts::new("conduit_test_total", "A counter."),
            &["shard"],
        )
        .unwrap();
        counter.with_label_values(&["0"]).inc();
        registry.register(Box::new(counter)).unwrap();
        let set = |n: &str| ExternalLabels::new(vec![(n.to_string(), "x".to_string())]).unwrap();
        assert_eq!(
            set("shard").check_families(&registry.gather()),
            Err(Error::Carried("shard".into()))
        );
        assert_eq!(set("replica").check_families(&registry.gather()), Ok(()));
    }
}
