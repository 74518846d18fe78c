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
//! A series keeps only the buckets it saw, sorted, eight bytes each
//! (`(index + OFFSET) << 48 | count`, counts saturate at 2^48 − 1 as the
//! embedded Stat store's do), in one allocation that exists only with the
//! flag on; an observation of 0 goes to the zero bucket.

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

/// Added to a bucket index so the smallest index a value can have packs as
/// a positive key.
const OFFSET: i32 = 1 << 10;

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

/// One series' native buckets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Native {
    zero: u64,
    /// Sorted `(index + OFFSET) << 48 | count`.
    entries: Vec<u64>,
}

impl Native {
    /// Adds `n` observations to bucket `index` (`None`: the zero bucket).
    pub fn add(&mut self, index: Option<i32>, n: u64) {
        if n == 0 {
            return;
        }
        let Some(index) = index else {
            self.zero = self.zero.saturating_add(n);
            return;
        };
        let key = ((index + OFFSET) as u64) << COUNT_BITS;
        let at = self.entries.partition_point(|&e| e & !COUNT_MAX < key);
        match self.entries.get_mut(at) {
            Some(e) if *e & !COUNT_MAX == key => {
                *e = key | (*e & COUNT_MAX).saturating_add(n).min(COUNT_MAX);
            }
            _ => self.entries.insert(at, key | n.min(COUNT_MAX)),
        }
    }

    /// Adds a response's latencies, `(tenths, count)`: as [`Self::add`] of
    /// each, in one pass. The wire orders a response's latencies by value,
    /// so their buckets ascend and each is found by walking forward from
    /// the previous one (a few steps, predictable branches) rather than by
    /// a binary search over all; an entry out of order starts the walk
    /// over.
    pub fn add_latencies(&mut self, latencies: &[(u32, u32)]) {
        let mut at = 0;
        let mut previous = 0;
        for &(tenths, count) in latencies {
            if count == 0 {
                continue;
            }
            let n = u64::from(count);
            let Some(index) = latency_index(tenths) else {
                self.zero = self.zero.saturating_add(n);
                continue;
            };
            let key = ((index + OFFSET) as u64) << COUNT_BITS;
            if key < previous {
                at = 0;
            }
            previous = key;
            // An entry is below `key` exactly when its bucket is: the
            // count bits of `key` are 0.
            at += self.entries[at..]
                .iter()
                .position(|&e| e >= key)
                .unwrap_or(self.entries.len() - at);
            match self.entries.get_mut(at) {
                Some(e) if *e & !COUNT_MAX == key => {
                    *e = key | (*e & COUNT_MAX).saturating_add(n).min(COUNT_MAX);
                }
                _ => self.entries.insert(at, key | n.min(COUNT_MAX)),
            }
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
    pub fn buckets(&self) -> impl ExactSizeIterator<Item = (i32, u64)> + Clone + '_ {
        self.entries
            .iter()
            .map(|&e| ((e >> COUNT_BITS) as i32 - OFFSET, e & COUNT_MAX))
    }

    /// All observations, the zero bucket's included.
    pub fn count(&self) -> u64 {
        self.zero + self.buckets().map(|(_, n)| n).sum::<u64>()
    }

    /// Heap bytes this histogram holds (memory accounting).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.entries.capacity() * 8
    }

    /// The buckets as the protobuf formats spell them: spans of consecutive
    /// indexes (`offset` from the end of the previous span, the first from
    /// 0) and each bucket's count as a delta from the previous bucket's.
    pub fn spans(&self) -> (Vec<(i32, u32)>, Vec<i64>) {
        let mut spans: Vec<(i32, u32)> = Vec::new();
        let mut deltas = Vec::with_capacity(self.entries.len());
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
