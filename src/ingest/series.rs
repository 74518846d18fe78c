//! The data each series holds, and the bucket layouts of its histograms.

use smallvec::SmallVec;

use super::native::{self, Native};
use super::table::SeriesData;

/// `response_latency_ms` bucket bounds in milliseconds: the original's layout,
/// kept so existing PromQL and dashboards read the same buckets.
pub const LATENCY_BOUNDS_MS: [u32; 25] = [
    1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1_000, 2_000, 3_000, 4_000, 5_000,
    10_000, 20_000, 30_000, 40_000, 50_000,
];

/// The same bounds in the wire's unit, tenths of a millisecond, so a reported
/// latency is placed without any float arithmetic.
const LATENCY_BOUNDS_TENTHS: [u32; 25] = {
    let mut out = [0; 25];
    let mut i = 0;
    while i < 25 {
        out[i] = LATENCY_BOUNDS_MS[i] * 10;
        i += 1;
    }
    out
};

/// Finite buckets plus `+Inf`.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// `tcp_connection_duration_ms` bounds: connections live from milliseconds to
/// days, so the layout spans 1 ms to 1 day in roughly half-decades.
pub const TCP_DURATION_BOUNDS_MS: [u64; 14] = [
    1, 5, 10, 50, 100, 500, 1_000, 5_000, 10_000, 60_000, 300_000, 900_000, 3_600_000, 86_400_000,
];

pub const TCP_DURATION_BUCKETS: usize = TCP_DURATION_BOUNDS_MS.len() + 1;

/// Index of the bucket an observation of `tenths` tenths of a millisecond
/// falls in (`le` is inclusive, as in Prometheus).
pub fn latency_bucket(tenths: u32) -> usize {
    LATENCY_BOUNDS_TENTHS.partition_point(|&bound| bound < tenths)
}

pub fn tcp_duration_bucket(ms: u64) -> usize {
    TCP_DURATION_BOUNDS_MS.partition_point(|&bound| bound < ms)
}

/// One `responses_total` label set below a request label set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub success: bool,
    pub count: u64,
}

/// Everything the three mesh metrics know about one request label set.
/// Counters are u64 (the wire's u32 values are summed without wrapping); the
/// latency sum is kept in tenths of a millisecond, exact.
///
/// 280 bytes whether or not native histograms are on: their buckets are
/// one pointer, null with the flag off (`smallvec`'s `union` layout pays
/// for it), pinned by a test below.
#[derive(Clone, Debug, Default)]
pub struct MeshData {
    pub requests: u64,
    pub latency: [u64; LATENCY_BUCKETS],
    pub latency_sum_tenths: u64,
    /// Usually one or two classes (200/success, 500/failure) per label set.
    pub responses: SmallVec<[Response; 2]>,
    /// The latencies' native histogram buckets (`-native-histograms`).
    pub native: Option<Box<Native>>,
    pub touched: u32,
}

impl MeshData {
    /// Adds `count` observations of `tenths`: one add, never a loop.
    pub fn observe_latency(&mut self, tenths: u32, count: u32) {
        self.latency[latency_bucket(tenths)] += u64::from(count);
        self.latency_sum_tenths += u64::from(tenths) * u64::from(count);
    }

    /// [`Self::observe_latencies`], and with `native` the native buckets too.
    pub fn observe_latencies_native(&mut self, latencies: &[(u32, u32)], native: bool) {
        self.observe_latencies(latencies);
        if native && !latencies.is_empty() {
            self.native.get_or_insert_default().add_latencies(latencies);
        }
    }

    /// Adds a response's latencies. The wire orders them by value, so the
    /// bucket is found by walking forward from the previous one; an
    /// out-of-order entry falls back to a search.
    /// Entries are `(latency in tenths, count)`.
    pub fn observe_latencies(&mut self, latencies: &[(u32, u32)]) {
        let mut bucket = 0;
        for &(latency, count) in latencies {
            if bucket > 0 && latency <= LATENCY_BOUNDS_TENTHS[bucket - 1] {
                bucket = latency_bucket(latency);
            } else {
                while bucket < LATENCY_BOUNDS_TENTHS.len()
                    && LATENCY_BOUNDS_TENTHS[bucket] < latency
                {
                    bucket += 1;
                }
            }
            self.latency[bucket] += u64::from(count);
            self.latency_sum_tenths += u64::from(latency) * u64::from(count);
        }
    }

    pub fn latency_count(&self) -> u64 {
        self.latency.iter().sum()
    }

    /// The response entry for a class, if it exists.
    pub fn response_mut(&mut self, status: u16, success: bool) -> Option<&mut Response> {
        self.responses
            .iter_mut()
            .find(|r| r.status == status && r.success == success)
    }

    /// Merges another label set's data into this one (overflow folding).
    pub fn absorb_responses(&mut self, status: u16, success: bool, count: u64) {
        match self.response_mut(status, success) {
            Some(r) => r.count += count,
            None => self.responses.push(Response {
                status,
                success,
                count,
            }),
        }
    }
}

impl SeriesData for MeshData {
    fn last_touch(&self) -> u32 {
        self.touched
    }

    fn extra_label_sets(&self) -> usize {
        self.responses.len()
    }
}

/// The tcp metrics of one (direction, peer, source, target) label set.
///
/// 160 bytes with or without native histograms: the closes are the
/// duration histogram's count, not a field of their own, which leaves room
/// for the native buckets' pointer.
#[derive(Clone, Debug, Default)]
pub struct TcpData {
    pub opens: u64,
    pub write_bytes: u64,
    pub duration: [u64; TCP_DURATION_BUCKETS],
    pub duration_sum_ms: u64,
    /// The durations' native histogram buckets (`-native-histograms`).
    pub native: Option<Box<Native>>,
    pub touched: u32,
}

impl TcpData {
    pub fn observe_close(&mut self, duration_ms: u64, bytes_sent: u64) {
        self.duration[tcp_duration_bucket(duration_ms)] += 1;
        self.duration_sum_ms = self.duration_sum_ms.saturating_add(duration_ms);
        self.write_bytes = self.write_bytes.saturating_add(bytes_sent);
    }

    /// [`Self::observe_close`], and with `native` the native buckets too.
    pub fn observe_close_native(&mut self, duration_ms: u64, bytes_sent: u64, native: bool) {
        self.observe_close(duration_ms, bytes_sent);
        if native {
            self.native
                .get_or_insert_default()
                .add(native::duration_index(duration_ms), 1);
        }
    }

    /// Connections closed: every close is one duration observation.
    pub fn closes(&self) -> u64 {
        self.duration.iter().sum()
    }
}

impl SeriesData for TcpData {
    fn last_touch(&self) -> u32 {
        self.touched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_inclusive_and_in_tenths() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(10), 0, "1.0 ms is in le=1");
        assert_eq!(latency_bucket(11), 1, "1.1 ms is in le=2");
        assert_eq!(
            LATENCY_BOUNDS_MS[latency_bucket(45)],
            5,
            "4.5 ms is in le=5"
        );
        assert_eq!(latency_bucket(500_000), 24, "50 s is in le=50000");
        assert_eq!(latency_bucket(500_001), 25, "past 50 s is +Inf");
        assert_eq!(latency_bucket(u32::MAX), 25);
    }

    #[test]
    fn walking_buckets_matches_searching_them() {
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..500 {
            let mut lats: Vec<(u32, u32)> = (0..rng.usize(0..25))
                .map(|_| (rng.u32(0..600_000), rng.u32(0..100)))
                .collect();
            if rng.bool() {
                lats.sort_by_key(|l| l.0);
            }
            let (mut a, mut b) = (MeshData::default(), MeshData::default());
            a.observe_latencies(&lats);
            for &(latency, count) in &lats {
                b.observe_latency(latency, count);
            }
            assert_eq!(a.latency, b.latency);
            assert_eq!(a.latency_sum_tenths, b.latency_sum_tenths);
        }
    }

    /// What a series costs does not change with native histograms off.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn series_data_sizes_are_pinned() {
        assert_eq!(std::mem::size_of::<MeshData>(), 280);
        assert_eq!(std::mem::size_of::<TcpData>(), 160);
    }

    #[test]
    fn native_buckets_only_when_asked() {
        let mut d = MeshData::default();
        d.observe_latencies_native(&[(0, 1), (6_100, 4)], false);
        assert!(d.native.is_none());
        d.observe_latencies_native(&[(0, 1), (6_100, 4)], true);
        let h = d.native.as_deref().unwrap();
        assert_eq!(h.count(), 5);
        assert_eq!(h.zero_count(), 1);
        let mut t = TcpData::default();
        t.observe_close_native(40, 1, false);
        t.observe_close_native(40, 1, true);
        assert_eq!(t.closes(), 2);
        assert_eq!(t.native.as_deref().map(Native::count), Some(1));
    }

    #[test]
    fn one_add_per_latency_entry() {
        let mut d = MeshData::default();
        d.observe_latency(45, u32::MAX);
        d.observe_latency(45, u32::MAX);
        assert_eq!(d.latency[4], 2 * u64::from(u32::MAX), "counts never wrap");
        assert_eq!(d.latency_count(), 2 * u64::from(u32::MAX));
        assert_eq!(d.latency_sum_tenths, 2 * 45 * u64::from(u32::MAX));
    }
}
