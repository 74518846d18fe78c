//! Prometheus native (sparse, exponential) histogram buckets, kept per
//! series when `-native-histograms` is on.
//!
//! The schema is 3: bucket `i` holds the values in `(2^((i-1)/8), 2^(i/8)]`
//! milliseconds, so a bucket is 9.05% wide and its midpoint, the value
//! Prometheus' `histogram_quantile` reports for a rank in the middle of it,
//! is within (2^(1/8) − 1) / 2 = 4.53% of any value in it. Schema 3 is the
//! coarsest schema with that guarantee under 5% (schema 2's buckets are 19%
//! wide, up to 9.5% off),
//! and each finer schema doubles the buckets a series keeps and pushes for
//! precision the data does not carry: the proxies report latencies in
//! tenths of a millisecond, which below 1 ms is already coarser than a
//! schema 3 bucket, and above it the other errors of a latency (scheduling,
//! the proxy's own clock) are larger than 4%.
//!
//! A series keeps a count for each bucket between the lowest and highest it
//! has seen ([`Native`]; counts saturate at 2^48 − 1 as the embedded Stat
//! store's do), in one allocation that exists only with the flag on; an
//! observation of 0 goes to the zero bucket.

use std::sync::LazyLock;

/// The native histogram schema of both families (see the module comment).
pub const SCHEMA: i32 = 3;

/// Buckets per power of two at [`SCHEMA`].
const PER_OCTAVE: i32 = 1 << SCHEMA;

/// The zero bucket's width: the smallest Prometheus' client libraries use
/// (2^-128), so only an observation of exactly 0 lands in it (a latency the
/// proxy measured below its resolution).
pub const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

const COUNT_BITS: u32 = 48;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

/// The bucket indexes of a value in tenths of a millisecond: 0.1 ms is in
/// bucket −26, `u32::MAX` tenths (119 h) in bucket 230.
const LATENCY_MIN_INDEX: i32 = -26;
const LATENCY_MAX_INDEX: i32 = 230;

/// A tcp connection's duration in whole milliseconds: 1 ms is bucket 0;
/// past 2^40 ms (35 years) the last bucket.
const DURATION_MIN_INDEX: i32 = 0;
const DURATION_MAX_INDEX: i32 = 40 * PER_OCTAVE;

/// `2^(i/8)` with the powers of two exact, so a value on a power of two
/// (2 ms, 4 ms, …) falls in the bucket it bounds, as in Prometheus.
fn upper_bound(index: i32) -> f64 {
    let octave = index.div_euclid(PER_OCTAVE);
    let step = index.rem_euclid(PER_OCTAVE);
    2f64.powi(octave) * 2f64.powf(f64::from(step) / f64::from(PER_OCTAVE))
}

/// Upper bounds, in the unit the store observes in, of every bucket index
/// from `min` to `max`.
fn bounds(min: i32, max: i32, units_per_ms: f64) -> Vec<f64> {
    (min..=max).map(|i| upper_bound(i) * units_per_ms).collect()
}

static LATENCY_BOUNDS: LazyLock<Vec<f64>> =
    LazyLock::new(|| bounds(LATENCY_MIN_INDEX, LATENCY_MAX_INDEX, 10.0));
static DURATION_BOUNDS: LazyLock<Vec<f64>> =
    LazyLock::new(|| bounds(DURATION_MIN_INDEX, DURATION_MAX_INDEX, 1.0));

/// Latencies below this many tenths (6.5 s: nearly every request) find
/// their bucket in [`LATENCY_TABLE`]; longer ones search the bounds.
const LATENCY_TABLE_TENTHS: usize = 1 << 16;

/// The bucket of every latency below [`LATENCY_TABLE_TENTHS`], as an offset
/// from [`LATENCY_MIN_INDEX`] (6.5 s is bucket 102, so a byte holds it):
/// 64 KiB that turn the hot path's binary search over 257 bounds, with its
/// unpredictable branches, into one load. Built from the bounds, so both
/// ways give the same bucket (a test checks every entry).
static LATENCY_TABLE: LazyLock<Box<[u8]>> = LazyLock::new(|| {
    (0..LATENCY_TABLE_TENTHS as u32)
        .map(|tenths| {
            let offset = search_latency(tenths.max(1)) - LATENCY_MIN_INDEX;
            u8::try_from(offset).expect("6.5 s is bucket 102")
        })
        .collect()
});

/// [`latency_index`] by binary search over the bounds.
fn search_latency(tenths: u32) -> i32 {
    let v = f64::from(tenths);
    LATENCY_MIN_INDEX + LATENCY_BOUNDS.partition_point(|&b| b < v) as i32
}

/// The bucket of a latency in tenths of a millisecond; `None` for 0 (the
/// zero bucket).
pub fn latency_index(tenths: u32) -> Option<i32> {
    if tenths == 0 {
        return None;
    }
    Some(match LATENCY_TABLE.get(tenths as usize) {
        Some(&offset) => LATENCY_MIN_INDEX + i32::from(offset),
        None => search_latency(tenths),
    })
}

/// The bucket of a duration in milliseconds; `None` for 0.
pub fn duration_index(ms: u64) -> Option<i32> {
    if ms == 0 {
        return None;
    }
    let v = ms as f64;
    let at = DURATION_BOUNDS
        .partition_point(|&b| b < v)
        .min(DURATION_BOUNDS.len() - 1);
    Some(DURATION_MIN_INDEX + at as i32)
}

/// One series' native buckets: a count for every bucket from the lowest
/// index the series has seen to the highest, so adding an observation is
/// one indexed add. A series' latencies cluster (a service answering in
/// 1 ms to 2 s spans 88 buckets), and over its life it fills most buckets
/// of its range, so dense counts cost about what sorted `(index, count)`
/// pairs would, without the walk that finds each pair: that walk made
/// `-native-histograms` ingest 14% slower than without. A range is at most
/// 321 buckets (a duration from 1 ms to 35 years), 2.5 KiB at most.
///
/// Counts start as `u16`, a quarter of the bytes of a `u64`: a new series
/// has seen a few observations per bucket. The first count that would not
/// fit widens them all, to `u32` (a busy series, within hours) and then
/// to `u64` (within years), once each.
#[derive(Clone, Debug, Default)]
pub struct Native {
    zero: u64,
    /// The bucket index of the first count.
    base: i32,
    counts: Counts,
}

#[derive(Clone, Debug)]
enum Counts {
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
}

impl Default for Counts {
    fn default() -> Self {
        Counts::U16(Vec::new())
    }
}

/// `$body` with `$c` bound to the counts' vector, whatever its width.
macro_rules! each_width {
    ($counts:expr, $c:ident => $body:expr) => {
        match $counts {
            Counts::U16($c) => $body,
            Counts::U32($c) => $body,
            Counts::U64($c) => $body,
        }
    };
}

/// Makes room for `before` counts in front of `c` and `after` behind, in
/// an allocation of exactly the new size: a range grows a few times in a
/// series' life, and slack would be paid by every series.
fn grow<T: Copy + Default>(c: &mut Vec<T>, before: usize, after: usize) {
    if before == 0 {
        c.reserve_exact(after);
        c.resize(c.len() + after, T::default());
        return;
    }
    let mut grown = Vec::with_capacity(before + c.len() + after);
    grown.resize(before, T::default());
    grown.extend_from_slice(c);
    grown.resize(grown.len() + after, T::default());
    *c = grown;
}

fn capacity_bytes<T>(c: &Vec<T>) -> usize {
    c.capacity() * std::mem::size_of::<T>()
}

fn widened<T: Copy + Into<u64>, U: TryFrom<u64>>(c: &[T]) -> Vec<U> {
    c.iter()
        .map(|&n| {
            U::try_from(n.into())
                .ok()
                .expect("counts widen to a wider type")
        })
        .collect()
}

impl Counts {
    fn len(&self) -> usize {
        each_width!(self, c => c.len())
    }

    fn get(&self, at: usize) -> u64 {
        match self {
            Counts::U16(c) => u64::from(c[at]),
            Counts::U32(c) => u64::from(c[at]),
            Counts::U64(c) => c[at],
        }
    }

    fn heap_bytes(&self) -> usize {
        each_width!(self, c => capacity_bytes(c))
    }

    fn extend(&mut self, before: usize, after: usize) {
        each_width!(self, c => grow(c, before, after))
    }

    /// Adds `n` to the count at `at`, widening every count when it no
    /// longer fits; counts saturate at [`COUNT_MAX`].
    #[inline]
    fn add(&mut self, at: usize, n: u64) {
        match self {
            Counts::U16(c) => {
                let sum = u64::from(c[at]).saturating_add(n);
                match u16::try_from(sum) {
                    Ok(sum) => c[at] = sum,
                    Err(_) => self.widen(at, sum),
                }
            }
            Counts::U32(c) => {
                let sum = u64::from(c[at]).saturating_add(n);
                match u32::try_from(sum) {
                    Ok(sum) => c[at] = sum,
                    Err(_) => self.widen(at, sum),
                }
            }
            Counts::U64(c) => c[at] = c[at].saturating_add(n).min(COUNT_MAX),
        }
    }

    /// Widens every count to the narrowest type `sum` fits in and sets the
    /// count at `at` to it.
    #[cold]
    fn widen(&mut self, at: usize, sum: u64) {
        let sum = sum.min(COUNT_MAX);
        *self = match (&*self, u32::try_from(sum)) {
            (Counts::U16(c), Ok(_)) => Counts::U32(widened(c)),
            (Counts::U16(c), Err(_)) => Counts::U64(widened(c)),
            (Counts::U32(c), _) => Counts::U64(widened(c)),
            (Counts::U64(_), _) => unreachable!("u64 counts saturate"),
        };
        match self {
            Counts::U32(c) => c[at] = sum as u32,
            Counts::U64(c) => c[at] = sum,
            Counts::U16(_) => unreachable!("widened past u16"),
        }
    }
}

/// Equal when they hold the same observations, whatever their ranges and
/// count widths.
impl PartialEq for Native {
    fn eq(&self, other: &Self) -> bool {
        self.zero == other.zero && self.buckets().eq(other.buckets())
    }
}

impl Eq for Native {}

impl Native {
    /// Adds `n` observations to bucket `index` (`None`: the zero bucket).
    pub fn add(&mut self, index: Option<i32>, n: u64) {
        if n == 0 {
            return;
        }
        match index {
            None => self.zero = self.zero.saturating_add(n),
            Some(index) => {
                let at = self.slot(index);
                self.counts.add(at, n);
            }
        }
    }

    /// Widens the range to hold buckets `low..=high`.
    fn cover(&mut self, low: i32, high: i32) {
        let len = self.counts.len();
        if len == 0 {
            self.base = low;
            self.counts.extend(0, (high - low) as usize + 1);
            return;
        }
        let before = (self.base - low).max(0) as usize;
        let after = (high - (self.base + len as i32 - 1)).max(0) as usize;
        if before > 0 || after > 0 {
            self.counts.extend(before, after);
            self.base -= before as i32;
        }
    }

    /// Where bucket `index` is counted, widening the range to hold it.
    #[inline]
    fn slot(&mut self, index: i32) -> usize {
        let at = index - self.base;
        if at < 0 || at as usize >= self.counts.len() {
            self.cover(index, index);
        }
        (index - self.base) as usize
    }

    /// Adds a response's latencies, `(tenths, count)`: as [`Self::add`] of
    /// each. The wire orders them by value, so the first and the last give
    /// the range they need, made room for in one step.
    pub fn add_latencies(&mut self, latencies: &[(u32, u32)]) {
        if let (Some(&(first, _)), Some(&(last, _))) = (latencies.first(), latencies.last())
            && let (Some(low), Some(high)) = (latency_index(first), latency_index(last))
            && low <= high
        {
            self.cover(low, high);
        }
        for &(tenths, count) in latencies {
            self.add(latency_index(tenths), u64::from(count));
        }
    }

    /// Adds every observation of `other` (a roll-up summing series).
    pub fn merge(&mut self, other: &Native) {
        self.zero = self.zero.saturating_add(other.zero);
        for (index, n) in other.buckets() {
            self.add(Some(index), n);
        }
    }

    /// Observations of 0.
    pub fn zero_count(&self) -> u64 {
        self.zero
    }

    /// Every bucket seen, `(index, count)`, indexes ascending.
    pub fn buckets(&self) -> impl Iterator<Item = (i32, u64)> + Clone + '_ {
        (0..self.counts.len()).filter_map(move |at| {
            let n = self.counts.get(at);
            (n > 0).then_some((self.base + at as i32, n))
        })
    }

    /// All observations, the zero bucket's included.
    pub fn count(&self) -> u64 {
        self.zero + self.buckets().map(|(_, n)| n).sum::<u64>()
    }

    /// Heap bytes this histogram holds (memory accounting).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.counts.heap_bytes()
    }

    /// The buckets as the protobuf formats spell them: spans of consecutive
    /// indexes (`offset` from the end of the previous span, the first from
    /// 0) and each bucket's count as a delta from the previous bucket's.
    pub fn spans(&self) -> (Vec<(i32, u32)>, Vec<i64>) {
        let mut spans: Vec<(i32, u32)> = Vec::new();
        let mut deltas = Vec::new();
        let mut next_index = 0;
        let mut previous = 0i64;
        for (i, (index, n)) in self.buckets().enumerate() {
            match spans.last_mut() {
                Some(span) if index == next_index => span.1 += 1,
                _ => spans.push((if i == 0 { index } else { index - next_index }, 1)),
            }
            next_index = index + 1;
            deltas.push(n as i64 - previous);
            previous = n as i64;
        }
        (spans, deltas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_within_five_percent_of_its_bucket_midpoint() {
        let mut rng = fastrand::Rng::with_seed(8);
        for tenths in (1..2_000).chain((0..20_000).map(|_| rng.u32(1..u32::MAX))) {
            let i = latency_index(tenths).unwrap();
            let (low, high) = (upper_bound(i - 1), upper_bound(i));
            let ms = f64::from(tenths) / 10.0;
            assert!(
                low < ms && ms <= high * (1.0 + 1e-12),
                "{ms} in ({low}, {high}]"
            );
            let mid = (low + high) / 2.0;
            assert!((mid - ms).abs() / ms < 0.0453, "{ms} → {mid}");
        }
        for ms in (1..5_000).chain((0..20_000).map(|_| rng.u64(1..1 << 40))) {
            let i = duration_index(ms).unwrap();
            let (low, high) = (upper_bound(i - 1), upper_bound(i));
            assert!(low < ms as f64 && ms as f64 <= high * (1.0 + 1e-12));
        }
        assert_eq!(duration_index(u64::MAX), Some(DURATION_MAX_INDEX));
        assert_eq!(latency_index(u32::MAX), Some(LATENCY_MAX_INDEX));
        assert_eq!(latency_index(1), Some(LATENCY_MIN_INDEX));
    }

    #[test]
    fn powers_of_two_close_their_bucket() {
        // 1 ms, 2 ms and 4 ms are the upper bounds of buckets 0, 8 and 16.
        assert_eq!(latency_index(10), Some(0));
        assert_eq!(latency_index(11), Some(2), "1.1 ms is past 2^(1/8) ms");
        assert_eq!(latency_index(20), Some(8));
        assert_eq!(latency_index(40), Some(16));
        assert_eq!(duration_index(1), Some(0));
        assert_eq!(duration_index(2), Some(8));
        assert_eq!(duration_index(3), Some(13));
    }

    #[test]
    fn buckets_stay_sorted_and_spans_rebuild_them() {
        let mut rng = fastrand::Rng::with_seed(2);
        for _ in 0..200 {
            let mut h = Native::default();
            let mut want = std::collections::BTreeMap::new();
            let mut zero = 0;
            // Wide values leave gaps between buckets; narrow ones fill a
            // run of consecutive buckets, which `add` finds without search.
            let top = if rng.bool() { 60_000 } else { 300 };
            for _ in 0..rng.usize(0..80) {
                let v = rng.u32(0..top);
                let n = rng.u64(0..9);
                h.add(latency_index(v), n);
                if n > 0 {
                    match latency_index(v) {
                        Some(i) => *want.entry(i).or_insert(0) += n,
                        None => zero += n,
                    }
                }
            }
            let got: Vec<(i32, u64)> = h.buckets().collect();
            assert_eq!(got, want.into_iter().collect::<Vec<_>>());
            assert_eq!(h.zero_count(), zero);
            // Rebuild from spans and deltas, as Prometheus reads them.
            let (spans, deltas) = h.spans();
            let mut rebuilt = Vec::new();
            let (mut index, mut count, mut d) = (0, 0i64, deltas.iter());
            for (n, &(offset, len)) in spans.iter().enumerate() {
                index += offset;
                if n > 0 {
                    assert!(offset > 0, "spans are split only at gaps");
                }
                for _ in 0..len {
                    count += d.next().unwrap();
                    rebuilt.push((index, count as u64));
                    index += 1;
                }
            }
            assert_eq!(rebuilt, got);
        }
    }

    #[test]
    fn the_table_agrees_with_the_bounds() {
        for tenths in 1..LATENCY_TABLE_TENTHS as u32 + 10 {
            assert_eq!(
                latency_index(tenths),
                Some(search_latency(tenths)),
                "{tenths}"
            );
        }
    }

    #[test]
    fn a_responses_latencies_land_as_one_by_one() {
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..300 {
            let (mut walked, mut one_by_one) = (Native::default(), Native::default());
            let top = if rng.bool() { 80_000 } else { 300 };
            for _ in 0..rng.usize(1..6) {
                let mut latencies: Vec<(u32, u32)> = (0..rng.usize(0..30))
                    .map(|_| (rng.u32(0..top), rng.u32(0..5)))
                    .collect();
                // Mostly ascending, as the wire sends them; sometimes not.
                if rng.u8(0..4) > 0 {
                    latencies.sort_unstable();
                }
                walked.add_latencies(&latencies);
                for &(tenths, n) in &latencies {
                    one_by_one.add(latency_index(tenths), u64::from(n));
                }
            }
            assert_eq!(walked, one_by_one);
        }
    }

    #[test]
    fn the_range_grows_both_ways_and_counts_widen_once() {
        let mut h = Native::default();
        h.add(Some(10), 1);
        h.add(Some(-20), 2);
        h.add(Some(40), 3);
        assert_eq!(
            h.buckets().collect::<Vec<_>>(),
            [(-20, 2), (10, 1), (40, 3)]
        );
        assert_eq!(h.counts.len(), 61, "one count per bucket from -20 to 40");
        assert_eq!(h.heap_bytes(), std::mem::size_of::<Native>() + 61 * 2);
        h.add(Some(10), u64::from(u32::MAX));
        assert_eq!(h.buckets().nth(1), Some((10, u64::from(u32::MAX) + 1)));
        assert!(matches!(h.counts, Counts::U64(_)));
        assert_eq!(h.count(), 6 + u64::from(u32::MAX));
        let mut h = Native::default();
        h.add(Some(1), 3);
        h.add(Some(2), u64::from(u16::MAX));
        assert!(matches!(h.counts, Counts::U16(_)));
        assert_eq!(h.buckets().collect::<Vec<_>>(), [(1, 3), (2, 65_535)]);
        h.add(Some(2), 1);
        assert!(matches!(h.counts, Counts::U32(_)));
        assert_eq!(h.buckets().collect::<Vec<_>>(), [(1, 3), (2, 65_536)]);
    }

    #[test]
    fn counts_saturate() {
        let mut h = Native::default();
        h.add(Some(3), u64::MAX);
        h.add(Some(3), u64::MAX);
        assert_eq!(h.buckets().next(), Some((3, COUNT_MAX)));
        h.add(None, u64::MAX);
        h.add(None, 1);
        assert_eq!(h.zero_count(), u64::MAX);
    }
}
