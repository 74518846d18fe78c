//! A sparse HDR-style latency histogram for the embedded Stat store.
//!
//! Values (tenths of a millisecond, as the wire reports them) fall in
//! log-linear buckets: exact below 128, then 128 sub-buckets per power of
//! two, so any recorded value is within 0.8% of its bucket's midpoint, over
//! the whole u32 range. That is the `hdrhistogram` layout at two significant
//! digits; it is written here because the store keeps one histogram per
//! workload pair per 10-second slot for an hour, and `hdrhistogram`'s dense
//! counts array (~6.6 kB per histogram for this range) would cost gigabytes
//! at thousands of pairs. Stored sparse (only the buckets a slot saw, eight
//! bytes each), a slot costs what its traffic needs.

/// Sub-bucket bits: 2^7 = 128 linear sub-buckets per power of two.
const SUB_BITS: u32 = 7;
const SUB: u32 = 1 << SUB_BITS;

/// Counts use the low 48 bits of an entry; the bucket index the high 16.
const COUNT_BITS: u32 = 48;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

/// The bucket index of a value.
pub const fn bucket_of(v: u32) -> u16 {
    if v < SUB {
        return v as u16;
    }
    let exp = 31 - v.leading_zeros(); // ≥ SUB_BITS
    let shift = exp - SUB_BITS;
    let sub = (v >> shift) - SUB; // 0..SUB
    ((shift + 1) * SUB + sub) as u16
}

/// The highest bucket index: that of `u32::MAX`.
pub const MAX_BUCKET: u16 = bucket_of(u32::MAX);

/// The smallest value in a bucket and the bucket's width.
pub fn bucket_range(idx: u16) -> (u64, u64) {
    let idx = u32::from(idx);
    if idx < SUB {
        return (u64::from(idx), 1);
    }
    let shift = idx / SUB - 1;
    let sub = idx % SUB;
    (u64::from(SUB + sub) << shift, 1u64 << shift)
}

/// The value a bucket stands for: its midpoint.
pub fn bucket_value(idx: u16) -> f64 {
    let (low, width) = bucket_range(idx);
    low as f64 + (width as f64 - 1.0) / 2.0
}

/// The first position in sorted `entries` whose bucket is not below `key`:
/// an exponential search from the front, so a sorted run of lookups touches
/// the few cache lines near its previous place instead of bisecting the
/// whole histogram each time.
fn gallop(entries: &[u64], key: u64) -> usize {
    let below = |e: &u64| *e & !COUNT_MAX < key;
    let mut hi = 1;
    while hi <= entries.len() && below(&entries[hi - 1]) {
        hi *= 2;
    }
    let lo = hi / 2;
    let hi = hi.min(entries.len());
    lo + entries[lo..hi].partition_point(below)
}

/// Entries looked at one by one before [`gallop`] takes over: a run's next
/// bucket is usually a few entries past its last one, where comparing
/// each costs less than the search.
const SEEK_LINEAR: usize = 8;

/// The first position at or past `from` whose bucket is not below `key`.
#[inline]
fn seek(entries: &[u64], from: usize, key: u64) -> usize {
    let end = entries.len().min(from + SEEK_LINEAR);
    let mut at = from;
    while at < end {
        if entries[at] & !COUNT_MAX >= key {
            return at;
        }
        at += 1;
    }
    at + gallop(&entries[at..], key)
}

/// Entry `e` with `n` more observations; counts saturate at
/// [`COUNT_MAX`], never wrap into the bucket bits.
fn plus(e: u64, n: u64) -> u64 {
    (e & !COUNT_MAX) | ((e & COUNT_MAX) + (n & COUNT_MAX)).min(COUNT_MAX)
}

/// Sorts entries and adds up those of one bucket.
fn sort_and_merge(entries: &mut Vec<u64>) {
    entries.sort_unstable();
    entries.dedup_by(|next, kept| {
        let same = *next & !COUNT_MAX == *kept & !COUNT_MAX;
        if same {
            *kept = plus(*kept, *next);
        }
        same
    });
}

/// Observations bucketed and sorted, distinct buckets, ready to be merged
/// into histograms ([`SparseHist::add_run`]). Kept and refilled per
/// thread by the ingester ([`Self::clear`]): its buffers are reused, so
/// bucketing a scope allocates nothing. Like the decode tables they keep
/// the capacity of the largest scope seen: eight bytes per latency entry,
/// each at least two bytes of a report the report size limit bounds.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// `(bucket << 48) | count`, as a histogram's entries.
    entries: Vec<u64>,
    /// The next response's entries, and the merge of both.
    next: Vec<u64>,
    merged: Vec<u64>,
}

/// Buckets `(value, count)` observations into `out` (cleared first),
/// sorted and distinct. A run sorted by value (as the wire promises a
/// response's latencies are) is bucketed in one pass; others are sorted
/// first.
fn bucket_into(out: &mut Vec<u64>, run: impl IntoIterator<Item = (u32, u64)>) {
    out.clear();
    let mut sorted = true;
    for (v, n) in run {
        if n == 0 {
            continue;
        }
        let key = u64::from(bucket_of(v)) << COUNT_BITS;
        match out.last_mut() {
            Some(last) if *last & !COUNT_MAX == key => {
                *last = plus(*last, n.min(COUNT_MAX));
            }
            Some(last) if *last & !COUNT_MAX > key => {
                sorted = false;
                out.push(key | n.min(COUNT_MAX));
            }
            _ => out.push(key | n.min(COUNT_MAX)),
        }
    }
    if !sorted {
        sort_and_merge(out);
    }
}

impl Run {
    /// Buckets `(value, count)` observations ([`bucket_into`]).
    pub fn of(run: impl IntoIterator<Item = (u32, u64)>) -> Self {
        let mut this = Self::default();
        this.add(run);
        this
    }

    /// Empties the run, keeping its buffers.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Adds more observations: bucketed on their own, then the two sorted
    /// runs merged into one, so that a scope's responses (one run each)
    /// are merged into each of its windows' histograms in one pass, not
    /// one per response.
    pub fn add(&mut self, run: impl IntoIterator<Item = (u32, u64)>) {
        if self.entries.is_empty() {
            return bucket_into(&mut self.entries, run);
        }
        bucket_into(&mut self.next, run);
        let (a, b, out) = (&self.entries, &self.next, &mut self.merged);
        out.clear();
        out.reserve(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            let (x, y) = (a[i], b[j]);
            let (kx, ky) = (x & !COUNT_MAX, y & !COUNT_MAX);
            if kx == ky {
                out.push(plus(x, y));
                i += 1;
                j += 1;
            } else if kx < ky {
                out.push(x);
                i += 1;
            } else {
                out.push(y);
                j += 1;
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        std::mem::swap(&mut self.entries, &mut self.merged);
    }
}

/// Sorted `(bucket << 48) | count` entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SparseHist {
    entries: Vec<u64>,
}

impl SparseHist {
    /// Adds `n` observations of `v`.
    pub fn record(&mut self, v: u32, n: u64) {
        if n == 0 {
            return;
        }
        let idx = bucket_of(v);
        self.add_bucket(idx, n);
    }

    fn add_bucket(&mut self, idx: u16, n: u64) {
        let key = u64::from(idx) << COUNT_BITS;
        // Latencies arrive in ascending order: check the end first.
        let pos = match self.entries.last() {
            Some(&last) if last & !COUNT_MAX < key => self.entries.len(),
            _ => self.entries.partition_point(|&e| e & !COUNT_MAX < key),
        };
        match self.entries.get_mut(pos) {
            Some(e) if *e & !COUNT_MAX == key => *e = plus(*e, n.min(COUNT_MAX)),
            _ => self.entries.insert(pos, key | n.min(COUNT_MAX)),
        }
    }

    /// Adds a run of `(value, count)` observations ([`Run::of`]).
    pub fn record_run(&mut self, run: impl IntoIterator<Item = (u32, u64)>) {
        self.add_run(&Run::of(run));
    }

    /// Adds observations already bucketed: one [`Run`] can be added to
    /// several histograms (a scope's workload pair and its route) at the
    /// cost of bucketing it once.
    pub fn add_run(&mut self, run: &Run) {
        self.merge_sorted(&run.entries);
    }

    /// Merges sorted, distinct-bucket entries in place. Each run entry's
    /// place is found by [`seek`] in what is left of the
    /// histogram, and while its bucket exists (the steady state) its count
    /// is added there at once. From the first entry whose bucket is new,
    /// the rest go through [`Self::merge_growing`].
    fn merge_sorted(&mut self, run: &[u64]) {
        let mut from = 0;
        for (k, &r) in run.iter().enumerate() {
            let key = r & !COUNT_MAX;
            let at = seek(&self.entries, from, key);
            match self.entries.get_mut(at) {
                Some(e) if *e & !COUNT_MAX == key => {
                    *e = plus(*e, r);
                    from = at;
                }
                _ => return self.merge_growing(&run[k..], at),
            }
        }
    }

    /// [`Self::merge_sorted`] for a run with new buckets, every one of its
    /// entries at or past `from`: the new buckets are counted first, then the
    /// histogram grows once and is filled from the back, moving only the
    /// entries after the first new bucket.
    fn merge_growing(&mut self, run: &[u64], mut from: usize) {
        if run.is_empty() {
            return;
        }
        let first = from;
        let mut new = 0;
        for &r in run {
            let key = r & !COUNT_MAX;
            let at = seek(&self.entries, from, key);
            if self.entries.get(at).is_none_or(|&e| e & !COUNT_MAX != key) {
                new += 1;
            }
            from = at;
        }
        debug_assert!(new > 0, "the run's first bucket is new");
        let old_len = self.entries.len();
        self.entries.resize(old_len + new, 0);
        let e = &mut self.entries;
        let (mut i, mut j, mut w) = (old_len, run.len(), old_len + new);
        while j > 0 {
            let r = run[j - 1];
            w -= 1;
            if i > first && e[i - 1] & !COUNT_MAX > r & !COUNT_MAX {
                e[w] = e[i - 1];
                i -= 1;
            } else if i > first && e[i - 1] & !COUNT_MAX == r & !COUNT_MAX {
                e[w] = plus(e[i - 1], r);
                i -= 1;
                j -= 1;
            } else {
                e[w] = r;
                j -= 1;
            }
        }
    }

    pub fn merge(&mut self, other: &SparseHist) {
        self.merge_sorted(&other.entries);
    }

    /// Every non-empty bucket as `(index, count)`, indexes ascending: the
    /// histogram as another process rebuilds it with [`Self::from_buckets`].
    pub fn buckets(&self) -> impl ExactSizeIterator<Item = (u16, u64)> + '_ {
        self.entries
            .iter()
            .map(|&e| ((e >> COUNT_BITS) as u16, e & COUNT_MAX))
    }

    /// A histogram of `(index, count)` buckets in any order, repeats added
    /// up (another process's [`Self::buckets`], off the wire); `None` when
    /// an index is past [`MAX_BUCKET`]. Counts saturate as recording does.
    pub fn from_buckets(buckets: impl IntoIterator<Item = (u32, u64)>) -> Option<Self> {
        let mut entries = Vec::new();
        for (idx, n) in buckets {
            if idx > u32::from(MAX_BUCKET) {
                return None;
            }
            if n > 0 {
                entries.push((u64::from(idx) << COUNT_BITS) | n.min(COUNT_MAX));
            }
        }
        sort_and_merge(&mut entries);
        Some(Self { entries })
    }

    pub fn count(&self) -> u64 {
        self.entries.iter().map(|e| e & COUNT_MAX).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value at quantile `q` (0..=1), as the midpoint of the bucket the
    /// rank falls in; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &e in &self.entries {
            seen += e & COUNT_MAX;
            if seen >= rank {
                return Some(bucket_value((e >> COUNT_BITS) as u16));
            }
        }
        self.max()
    }

    pub fn min(&self) -> Option<f64> {
        self.entries
            .first()
            .map(|&e| bucket_value((e >> COUNT_BITS) as u16))
    }

    pub fn max(&self) -> Option<f64> {
        self.entries
            .last()
            .map(|&e| bucket_value((e >> COUNT_BITS) as u16))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_within_one_percent() {
        for v in [
            0u32,
            1,
            127,
            128,
            129,
            255,
            256,
            1000,
            45_678,
            1 << 20,
            u32::MAX,
        ] {
            let mid = bucket_value(bucket_of(v));
            let err = (mid - f64::from(v)).abs() / f64::from(v.max(1));
            assert!(err <= 0.008, "{v} → {mid} ({err})");
            let (low, width) = bucket_range(bucket_of(v));
            assert!(
                low <= u64::from(v) && u64::from(v) < low + width,
                "{v} in [{low}, +{width})"
            );
        }
    }

    #[test]
    fn bucket_indexes_are_monotonic() {
        let mut last = 0;
        for v in (0..2_000_000u32).step_by(97) {
            let b = bucket_of(v);
            assert!(b >= last);
            last = b;
        }
    }

    #[test]
    fn runs_merge_like_single_records() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..200 {
            let mut a = SparseHist::default();
            let mut b = SparseHist::default();
            // A narrow range makes later runs mostly land in buckets that
            // exist, with a few new ones among them.
            let top = if rng.bool() { 300 } else { 100_000 };
            for _ in 0..rng.usize(0..6) {
                let mut run: Vec<(u32, u64)> = (0..rng.usize(0..30))
                    .map(|_| (rng.u32(0..top), rng.u64(0..5)))
                    .collect();
                if rng.bool() {
                    run.sort();
                }
                for &(v, n) in &run {
                    a.record(v, n);
                }
                b.record_run(run);
            }
            assert_eq!(a, b);
            let mut c = a.clone();
            c.merge(&b);
            assert_eq!(c.count(), 2 * a.count());
            assert!(
                c.entries
                    .windows(2)
                    .all(|w| w[0] >> COUNT_BITS < w[1] >> COUNT_BITS)
            );
        }
    }

    #[test]
    fn runs_added_together_merge_like_single_records() {
        let mut rng = fastrand::Rng::with_seed(5);
        let mut one = Run::default();
        for _ in 0..200 {
            // One run, cleared and reused, as the ingester keeps it.
            one.clear();
            let mut each = SparseHist::default();
            let top = if rng.bool() { 300 } else { 100_000 };
            for _ in 0..rng.usize(0..5) {
                let run: Vec<(u32, u64)> = (0..rng.usize(0..30))
                    .map(|_| (rng.u32(0..top), rng.u64(0..5)))
                    .collect();
                for &(v, n) in &run {
                    each.record(v, n);
                }
                one.add(run);
            }
            let mut h = SparseHist::default();
            h.add_run(&one);
            assert_eq!(h, each);
            assert!(
                one.entries
                    .windows(2)
                    .all(|w| w[0] >> COUNT_BITS < w[1] >> COUNT_BITS)
            );
        }
        let mut full = Run::of([(3, COUNT_MAX)]);
        full.add([(3, 5)]);
        assert_eq!(
            full.entries[0] & COUNT_MAX,
            COUNT_MAX,
            "saturates, never wraps"
        );
    }

    #[test]
    fn buckets_rebuild_the_histogram() {
        let mut h = SparseHist::default();
        h.record(7, 3);
        h.record(1000, 45);
        h.record(u32::MAX, 2);
        let wire: Vec<(u32, u64)> = h.buckets().map(|(i, n)| (u32::from(i), n)).collect();
        assert_eq!(wire.last().map(|&(i, _)| i), Some(u32::from(MAX_BUCKET)));
        assert_eq!(SparseHist::from_buckets(wire.clone()), Some(h.clone()));
        // Any order, repeats added, empty buckets dropped.
        let mut shuffled: Vec<(u32, u64)> = wire.iter().rev().copied().collect();
        shuffled.push((7, 1));
        shuffled.push((9, 0));
        let mut want = h.clone();
        want.record(7, 1);
        assert_eq!(SparseHist::from_buckets(shuffled), Some(want));
        assert_eq!(
            SparseHist::from_buckets([(u32::from(MAX_BUCKET) + 1, 1)]),
            None
        );
        let huge = SparseHist::from_buckets([(3, u64::MAX), (3, u64::MAX)]).unwrap();
        assert_eq!(huge.count(), COUNT_MAX, "saturates, never wraps");
    }

    #[test]
    fn quantiles_and_merge() {
        let mut h = SparseHist::default();
        h.record(100, 50); // 10 ms
        h.record(1000, 45); // 100 ms
        h.record(50_000, 5); // 5 s
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile(0.5), Some(100.0));
        let p95 = h.quantile(0.95).unwrap();
        assert!((p95 - 1000.0).abs() / 1000.0 < 0.008, "{p95}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((p99 - 50_000.0).abs() / 50_000.0 < 0.008, "{p99}");
        let mut g = SparseHist::default();
        g.record(10, 100);
        g.merge(&h);
        assert_eq!(g.count(), 200);
        assert_eq!(g.quantile(0.5), Some(10.0));
        assert_eq!(g.min(), Some(10.0));
    }
}
