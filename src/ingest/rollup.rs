//! The per-deployment roll-up (`-export=deployments|both`): the same
//! metrics with the pod labels (`source`, `target`) empty, summed per
//! deployment pair (and method, path, status class, direction).
//!
//! A projection of the store, not a second pipeline: at walk time every
//! series is projected onto its deployment-level labels and merged into a
//! [`Projected`] table, which the one walk then visits with the very code
//! that visits the store's own series. Nothing is kept between walks but a
//! streamed scrape's roll-up while it is being sent ([`RollUps`]).
//!
//! With `both`, the pod-level series whose pod labels are both empty (both
//! addresses unknown) are exactly a part of a roll-up series with the same
//! labels, so they are exported once, inside it: `{source="",target=""}`
//! selects the roll-up, and sums over it are exact.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use parking_lot::Mutex;

use super::labels::{LabelBuf, LabelRef, LabelSet, Schema};
use super::native::Native;
use super::series::{MeshData, TcpData};
use super::table::{SHARDS, SeriesData, Table};

/// What `/metrics` and remote write export.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Export {
    /// Pod-level series (every pod pair).
    #[default]
    Pods,
    /// Only the per-deployment roll-up.
    Deployments,
    /// Both, the roll-up told apart by its empty pod labels.
    Both,
}

impl Export {
    pub fn pods(self) -> bool {
        self != Export::Deployments
    }

    pub fn deployments(self) -> bool {
        self != Export::Pods
    }
}

impl FromStr for Export {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pods" => Ok(Export::Pods),
            "deployments" => Ok(Export::Deployments),
            "both" => Ok(Export::Both),
            other => Err(format!("{other:?}: expected pods, deployments or both")),
        }
    }
}

impl fmt::Display for Export {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Export::Pods => "pods",
            Export::Deployments => "deployments",
            Export::Both => "both",
        })
    }
}

/// Series data that sums into a roll-up.
pub trait Merge: Clone {
    fn merge(&mut self, other: &Self);
}

impl Merge for MeshData {
    fn merge(&mut self, other: &Self) {
        self.requests += other.requests;
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            *a += b;
        }
        self.latency_sum_tenths += other.latency_sum_tenths;
        for r in &other.responses {
            self.absorb_responses(r.status, r.success, r.count);
        }
        merge_native(&mut self.native, &other.native);
        self.touched = self.touched.max(other.touched);
    }
}

impl Merge for TcpData {
    fn merge(&mut self, other: &Self) {
        self.opens += other.opens;
        self.write_bytes = self.write_bytes.saturating_add(other.write_bytes);
        for (a, b) in self.duration.iter_mut().zip(&other.duration) {
            *a += b;
        }
        self.duration_sum_ms = self.duration_sum_ms.saturating_add(other.duration_sum_ms);
        merge_native(&mut self.native, &other.native);
        self.touched = self.touched.max(other.touched);
    }
}

/// Sums a series' native buckets into the roll-up's (kept only when some
/// series has them: `-native-histograms`).
fn merge_native(into: &mut Option<Box<Native>>, from: &Option<Box<Native>>) {
    if let Some(from) = from {
        into.get_or_insert_default().merge(from);
    }
}

/// Whether a label names a pod (emptied by the projection).
fn is_pod_label(name: &str) -> bool {
    matches!(name, "source" | "target")
}

/// Whether a pod-level series has no pod labels: it is its own
/// projection, exported inside the roll-up when both are.
pub fn is_pod_less(labels: LabelRef<'_>) -> bool {
    labels
        .pairs()
        .all(|(name, value)| !is_pod_label(name) || value.is_empty())
}

/// `labels` projected onto the deployment level, into `out`.
pub fn project(labels: LabelRef<'_>, out: &mut LabelBuf) {
    out.start(labels.schema());
    for (name, value) in labels.pairs() {
        out.push(if is_pod_label(name) { "" } else { &value });
    }
}

/// A table's roll-up: each deployment-level label set once, with the sum of
/// the series projected onto it. Its size is at most the table's.
pub struct Projected<D> {
    schema: &'static Schema,
    pub series: Vec<(LabelSet, D)>,
}

impl<D> Projected<D> {
    pub fn view(&self, i: usize) -> Option<(LabelRef<'_>, &D)> {
        self.series
            .get(i)
            .map(|(labels, d)| (labels.view(self.schema), d))
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// Projects every series of `table` and its overflow series.
pub fn project_table<D: SeriesData + Merge>(
    table: &Table<D>,
    schema: &'static Schema,
    overflow: Option<(LabelRef<'_>, &D)>,
) -> Projected<D> {
    let mut index: HashMap<Box<str>, D, foldhash::fast::RandomState> = HashMap::default();
    let mut buf = LabelBuf::default();
    let mut add = |labels: LabelRef<'_>, d: &D| {
        project(labels, &mut buf);
        let text = buf.view().rendered();
        match index.get_mut(text) {
            Some(sum) => sum.merge(d),
            None => {
                index.insert(text.into(), d.clone());
            }
        }
    };
    for shard in 0..SHARDS {
        table.for_each_in_shard(shard, &mut add);
    }
    if let Some((labels, d)) = overflow {
        add(labels, d);
    }
    Projected {
        schema,
        series: index
            .into_iter()
            .map(|(text, d)| (LabelSet::from(LabelRef::new(schema, &text)), d))
            .collect(),
    }
}

/// Projects a list of series (evicted ones, for their stale markers).
pub fn project_list<D: Merge>(list: &[(LabelSet, D)], schema: &'static Schema) -> Projected<D> {
    let mut index: HashMap<Box<str>, D, foldhash::fast::RandomState> = HashMap::default();
    let mut buf = LabelBuf::default();
    for (labels, d) in list {
        project(labels.view(schema), &mut buf);
        match index.get_mut(buf.view().rendered()) {
            Some(sum) => sum.merge(d),
            None => {
                index.insert(buf.view().rendered().into(), d.clone());
            }
        }
    }
    Projected {
        schema,
        series: index
            .into_iter()
            .map(|(text, d)| (LabelSet::from(LabelRef::new(schema, &text)), d))
            .collect(),
    }
}

/// Roll-ups of streamed scrapes in progress: a scrape of one family's
/// roll-up can take several chunks, each resuming where the last stopped,
/// so the roll-up it started is kept (not rebuilt per chunk) until it is
/// sent. Each scrape in progress holds one; an abandoned one is pushed out
/// by newer ones.
pub struct RollUps {
    kept: Mutex<Kept>,
}

/// Roll-ups kept between the chunks of their scrapes: four times the admin
/// server's concurrent renders, so only a crowd of concurrent scrapes of
/// one roll-up (each rebuilding theirs, counted) ever misses.
pub const ROLLUPS_KEPT: usize = 8;

pub enum AnyProjected {
    Mesh(Projected<MeshData>),
    Tcp(Projected<TcpData>),
}

/// A kept roll-up and how far its scrape has sent it.
pub struct InProgress {
    pub id: usize,
    pub projected: Arc<AnyProjected>,
    pub next: usize,
}

#[derive(Default)]
struct Kept {
    last_id: usize,
    entries: VecDeque<InProgress>,
}

impl Default for RollUps {
    fn default() -> Self {
        Self {
            kept: Mutex::new(Kept::default()),
        }
    }
}

impl RollUps {
    /// Keeps a roll-up whose scrape continues at `next`; returns the token
    /// to resume it with (never 0).
    pub fn keep(&self, projected: Arc<AnyProjected>, next: usize) -> usize {
        let mut k = self.kept.lock();
        k.last_id = k.last_id.wrapping_add(1).max(1);
        let id = k.last_id;
        if k.entries.len() >= ROLLUPS_KEPT {
            k.entries.pop_front();
        }
        k.entries.push_back(InProgress {
            id,
            projected,
            next,
        });
        id
    }

    /// Takes the roll-up of a resume token, if still kept.
    pub fn take(&self, id: usize) -> Option<InProgress> {
        let mut k = self.kept.lock();
        let at = k.entries.iter().position(|e| e.id == id)?;
        k.entries.remove(at)
    }

    /// Puts a taken roll-up back, to continue at `next`.
    pub fn put_back(&self, mut entry: InProgress, next: usize) -> usize {
        entry.next = next;
        let id = entry.id;
        let mut k = self.kept.lock();
        if k.entries.len() >= ROLLUPS_KEPT {
            k.entries.pop_front();
        }
        k.entries.push_back(entry);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::labels::MESH;

    #[test]
    fn modes_parse_and_print() {
        for mode in [Export::Pods, Export::Deployments, Export::Both] {
            assert_eq!(mode.to_string().parse::<Export>(), Ok(mode));
        }
        assert!("pod".parse::<Export>().is_err());
        assert!(Export::Both.pods() && Export::Both.deployments());
        assert!(!Export::Pods.deployments() && !Export::Deployments.pods());
    }

    #[test]
    fn the_projection_empties_pod_labels_only() {
        let mut full = LabelBuf::default();
        full.start(&MESH);
        for v in [
            "shop/web-1",
            "shop/books-1",
            "shop/web",
            "shop/books",
            "GET",
            "/a",
        ] {
            full.push(v);
        }
        assert!(!is_pod_less(full.view()));
        let mut out = LabelBuf::default();
        project(full.view(), &mut out);
        assert_eq!(
            out.view().values().collect::<Vec<_>>(),
            ["", "", "shop/web", "shop/books", "GET", "/a"]
        );
        assert!(is_pod_less(out.view()));
    }
}
