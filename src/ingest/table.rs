//! A sharded table of series keyed by their typed label sets
//! ([`LabelSet`]: one allocation; the table knows their [`Schema`]).
//!
//! Why not a `HashMap<LabelSet, Series>`: series live in a chunked arena that
//! never moves them and the hash table holds only `u32` slot numbers, so a
//! series costs its data, its values and a few bytes of index, the table can
//! grow without copying series data, and a scrape can resume a shard at a
//! slot number.
//!
//! Concurrency: ingest takes a shard's read lock and the series' own mutex, so
//! reports for different series never wait on each other and a scrape (also a
//! read lock) never blocks ingest. Only creating or evicting a series takes the
//! shard's write lock.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::HashTable;
use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use super::labels::{LabelRef, LabelSet, Schema};

/// Shards spread ingest across cores; 16 keeps lock contention negligible on
/// the machines the ingester runs on while keeping per-shard overhead small.
pub const SHARDS: usize = 16;

/// Series per arena chunk: chunks are reserved up front (virtual memory, only
/// touched pages count) and never reallocated, so series never move.
const CHUNK: usize = 1024;

/// Per-series data that the table can expire.
pub trait SeriesData: Default + Send {
    /// Seconds (ingester clock) when a report last touched this series.
    fn last_touch(&self) -> u32;
    /// Label sets this series holds beyond its own (e.g. response classes),
    /// released together with it on eviction.
    fn extra_label_sets(&self) -> usize {
        0
    }
}

/// The global budget of live label sets shared by every table (`-max-series`).
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    live: AtomicUsize,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            live: AtomicUsize::new(0),
        }
    }

    /// Claims one label set, or returns false when the cap is reached.
    pub fn try_acquire(&self) -> bool {
        self.try_acquire_below(self.limit)
    }

    /// Claims one label set while fewer than `ceiling` (at most the cap)
    /// are live: folded series may use the part of the cap ordinary ones
    /// leave them ([`super::fold::Tiers`]).
    pub fn try_acquire_below(&self, ceiling: usize) -> bool {
        let ceiling = ceiling.min(self.limit);
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < ceiling).then_some(live + 1)
            })
            .is_ok()
    }

    pub fn release(&self, n: usize) {
        self.live.fetch_sub(n, Ordering::AcqRel);
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

struct Slot<D> {
    /// The series' labels; empty for a free slot.
    labels: LabelSet,
    data: Mutex<D>,
}

struct Shard<D> {
    index: HashTable<u32>,
    chunks: Vec<Vec<Slot<D>>>,
    free: Vec<u32>,
}

impl<D: SeriesData> Shard<D> {
    fn new() -> Self {
        Self {
            index: HashTable::new(),
            chunks: Vec::new(),
            free: Vec::new(),
        }
    }

    fn slot(&self, i: u32) -> &Slot<D> {
        let i = i as usize;
        &self.chunks[i / CHUNK][i % CHUNK]
    }

    fn find(&self, hash: u64, labels: LabelRef<'_>) -> Option<u32> {
        self.index
            .find(hash, |&i| self.slot(i).labels.text() == labels.rendered())
            .copied()
    }

    fn insert(&mut self, hash: u64, labels: LabelRef<'_>, hasher: &impl BuildHasher) -> u32 {
        let schema = labels.schema();
        let slot = Slot {
            labels: labels.into(),
            data: Mutex::new(D::default()),
        };
        let i = match self.free.pop() {
            Some(i) => {
                let i_usize = i as usize;
                self.chunks[i_usize / CHUNK][i_usize % CHUNK] = slot;
                i
            }
            None => {
                if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
                    self.chunks.push(Vec::with_capacity(CHUNK));
                }
                let n = self.chunks.len() - 1;
                let chunk = &mut self.chunks[n];
                chunk.push(slot);
                u32::try_from(n * CHUNK + chunk.len() - 1)
                    .expect("a shard holds fewer than 2^32 series: the series cap is far lower")
            }
        };
        let Self { index, chunks, .. } = self;
        index.insert_unique(hash, i, |&j| {
            let j = j as usize;
            hasher.hash_one(LabelRef::new(
                schema,
                chunks[j / CHUNK][j % CHUNK].labels.text(),
            ))
        });
        i
    }
}

/// What happened to the series a caller asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Existing,
    Created,
    /// The cap is reached: the caller must fold the update into its overflow.
    Full,
}

pub struct Table<D> {
    /// The labels of every series.
    schema: &'static Schema,
    shards: Box<[RwLock<Shard<D>>]>,
    hasher: foldhash::quality::RandomState,
    len: AtomicUsize,
}

impl<D: SeriesData> Table<D> {
    pub fn new(schema: &'static Schema) -> Self {
        Self {
            schema,
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::new())).collect(),
            hasher: foldhash::quality::RandomState::default(),
            len: AtomicUsize::new(0),
        }
    }

    /// Live series in this table.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `update` on the series with these labels, creating it if the
    /// budget allows. `update` runs under the series' own lock only.
    pub fn update(
        &self,
        labels: LabelRef<'_>,
        budget: &Budget,
        update: impl FnOnce(&mut D),
    ) -> Lookup {
        self.update_within(labels, budget, budget.limit(), update)
    }

    /// [`Self::update`], creating the series only while fewer than
    /// `ceiling` label sets are live.
    pub fn update_within(
        &self,
        labels: LabelRef<'_>,
        budget: &Budget,
        ceiling: usize,
        update: impl FnOnce(&mut D),
    ) -> Lookup {
        let hash = labels.hash_with(&self.hasher);
        let shard = &self.shards[shard_of(hash)];
        {
            let s = shard.read();
            if let Some(i) = s.find(hash, labels) {
                update(&mut s.slot(i).data.lock());
                return Lookup::Existing;
            }
        }
        if !budget.try_acquire_below(ceiling) {
            return Lookup::Full;
        }
        let mut s = shard.write();
        let (i, lookup) = match s.find(hash, labels) {
            Some(i) => {
                // Another report created it between our two locks.
                budget.release(1);
                (i, Lookup::Existing)
            }
            None => {
                self.len.fetch_add(1, Ordering::Relaxed);
                (s.insert(hash, labels, &self.hasher), Lookup::Created)
            }
        };
        update(&mut s.slot(i).data.lock());
        lookup
    }

    /// Drops every series whose last touch is before `cutoff`, returning how
    /// many were dropped; their label sets go back to the budget.
    pub fn evict_idle(&self, cutoff: u32, budget: &Budget) -> usize {
        self.evict_idle_with(cutoff, budget, |_, _| {})
    }

    /// Whether a series with these labels is live.
    pub fn contains(&self, labels: LabelRef<'_>) -> bool {
        let hash = labels.hash_with(&self.hasher);
        self.shards[shard_of(hash)]
            .read()
            .find(hash, labels)
            .is_some()
    }

    /// [`Self::evict_idle`], handing each dropped series to `gone`.
    pub fn evict_idle_with(
        &self,
        cutoff: u32,
        budget: &Budget,
        mut gone: impl FnMut(LabelSet, D),
    ) -> usize {
        let mut evicted = 0;
        for shard in self.shards.iter() {
            let mut guard = shard.write();
            let Shard {
                index,
                chunks,
                free,
            } = &mut *guard;
            for (c, chunk) in chunks.iter_mut().enumerate() {
                for (o, slot) in chunk.iter_mut().enumerate() {
                    if slot.labels.is_empty() || slot.data.get_mut().last_touch() >= cutoff {
                        continue;
                    }
                    let i = u32::try_from(c * CHUNK + o).expect("slot numbers fit in u32");
                    let hash = slot.labels.view(self.schema).hash_with(&self.hasher);
                    if let Ok(entry) = index.find_entry(hash, |&j| j == i) {
                        entry.remove();
                    }
                    let extra = slot.data.get_mut().extra_label_sets();
                    let old = std::mem::replace(
                        slot,
                        Slot {
                            labels: LabelSet::default(),
                            data: Mutex::new(D::default()),
                        },
                    );
                    gone(old.labels, old.data.into_inner());
                    free.push(i);
                    budget.release(1 + extra);
                    evicted += 1;
                }
            }
        }
        self.len.fetch_sub(evicted, Ordering::Relaxed);
        evicted
    }

    /// Visits every live series of one shard under its read lock; each
    /// series' lock is held only while `visit` runs for it.
    pub fn for_each_in_shard(&self, shard: usize, mut visit: impl FnMut(LabelRef<'_>, &D)) {
        self.for_each_in_shard_from(shard, 0, |labels, data| {
            visit(labels, data);
            true
        });
    }

    /// [`Self::for_each_in_shard`] from slot `from` on, until `visit`
    /// returns `false`: then the slot to resume from. Series never move, so
    /// a walk resumed later visits no series twice (one created meanwhile
    /// behind the resume point is left for the next walk).
    pub fn for_each_in_shard_from(
        &self,
        shard: usize,
        from: usize,
        mut visit: impl FnMut(LabelRef<'_>, &D) -> bool,
    ) -> Option<usize> {
        let s: RwLockReadGuard<'_, Shard<D>> = self.shards[shard].read();
        let mut base = 0;
        for chunk in &s.chunks {
            let start = base;
            base += chunk.len();
            if base <= from {
                continue;
            }
            for (i, slot) in chunk.iter().enumerate().skip(from.saturating_sub(start)) {
                if !slot.labels.is_empty()
                    && !visit(slot.labels.view(self.schema), &slot.data.lock())
                {
                    return Some(start + i + 1);
                }
            }
        }
        None
    }

    /// Total bytes of label values held, for memory accounting.
    pub fn label_bytes(&self) -> usize {
        let mut total = 0;
        for shard in 0..SHARDS {
            self.for_each_in_shard(shard, |labels, _| total += labels.text_len());
        }
        total
    }
}

fn shard_of(hash: u64) -> usize {
    // hashbrown uses the top 7 bits for its control bytes and the low bits for
    // the bucket; the middle bits pick the shard without correlating with either.
    ((hash >> 32) as usize) % SHARDS
}
