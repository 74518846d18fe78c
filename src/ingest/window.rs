//! The embedded Stat store: recent traffic per workload pair in time slots,
//! so Stat answers request rate, success rate and exact latency percentiles
//! without any Prometheus.
//!
//! A workload pair is the four workload labels of a request label set
//! (`source`, `target`, `source_deployment`, `target_deployment`), i.e. the
//! mesh series with `method` and `path` projected away. Each pair keeps
//! 10-second slots for the last ten minutes and, rolled up from them as each
//! minute closes, 1-minute slots for the last hour ([`Ring`]). A slot holds
//! request, success and failure counts and a [`SparseHist`] of latencies;
//! a pair's TCP ring ([`TcpWindowData`]) holds the bytes its connections
//! carried, beside the connections opened and closed.

use std::collections::VecDeque;

use super::flat::{Report, Scope};
use super::hist::{Run, SparseHist};
use super::report::is_success;
use super::table::SeriesData;

/// Fine slot width: the proxies' report interval, the finest grain a rate
/// over a 10 s window can be read at.
pub const FINE_MS: u64 = 10_000;
/// Fine slots kept: ten minutes plus the partial slots at both ends.
const FINE_SLOTS: u64 = 62;
/// Coarse slot width, for the one-hour window.
pub const COARSE_MS: u64 = 60_000;
/// Coarse slots kept: one hour plus the partial slot at the start.
const COARSE_SLOTS: u64 = 61;
/// Fine slots per coarse slot.
const PER_COARSE: u64 = COARSE_MS / FINE_MS;
/// The most a first report is taken to cover before it arrived: the
/// original proxies report every 10 s; a longer gap to the second report is
/// idle traffic, not a report interval.
pub const MAX_FIRST_REPORT_LEAD_MS: u64 = 30_000;

/// A pair no report touched for this long is dropped: it has nothing left
/// in any window.
pub const PAIR_IDLE_SECS: u32 = 3_700;

/// What one slot of a [`Ring`] counts; slots add up as fine slots roll
/// into coarse ones and as a query reads them.
pub trait SlotCounts: Default {
    fn add(&mut self, other: &Self);
}

/// Requests of a workload pair or route in one slot.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub requests: u64,
    pub success: u64,
    pub failure: u64,
    pub latency: SparseHist,
}

impl SlotCounts for Counts {
    fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        self.success += other.success;
        self.failure += other.failure;
        self.latency.merge(&other.latency);
    }
}

/// Bytes of a workload pair's TCP connections in one slot, as both ends
/// report them: the target read what the source's outbound proxy sent it,
/// and wrote what the target's inbound proxy sent back (the wire's
/// `TransportSummary` counts bytes sent, on closed connections).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounts {
    pub read_bytes: u64,
    pub write_bytes: u64,
}

impl SlotCounts for TcpCounts {
    fn add(&mut self, other: &Self) {
        self.read_bytes = self.read_bytes.saturating_add(other.read_bytes);
        self.write_bytes = self.write_bytes.saturating_add(other.write_bytes);
    }
}

#[derive(Debug, Default)]
struct Slot<S> {
    /// Slot number: start time / slot width.
    number: u64,
    counts: S,
}

/// Which time a read covers: where the slots read begin (the window's
/// start rounded down to the slot grain) and where the last one read ends
/// (past the window's end when that falls inside a slot, whose counts then
/// reach beyond it). Both in ms; `None` until a slot is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub aligned_from_ms: Option<u64>,
    pub covered_to_ms: Option<u64>,
}

impl Span {
    fn read(&mut self, number: u64, width: u64) {
        let end = number * width + width;
        self.covered_to_ms = Some(self.covered_to_ms.map_or(end, |e| e.max(end)));
    }

    fn align(&mut self, from_ms: u64, width: u64) {
        let aligned = from_ms / width * width;
        self.aligned_from_ms = Some(self.aligned_from_ms.map_or(aligned, |a| a.min(aligned)));
    }

    /// The span covering both.
    pub fn merge(&mut self, other: &Span) {
        if let Some(to) = other.covered_to_ms {
            self.covered_to_ms = Some(self.covered_to_ms.map_or(to, |c| c.max(to)));
        }
        if let Some(from) = other.aligned_from_ms {
            self.aligned_from_ms = Some(self.aligned_from_ms.map_or(from, |c| c.min(from)));
        }
    }
}

/// What a window query adds up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    pub requests: u64,
    pub success: u64,
    pub failure: u64,
    pub latency: SparseHist,
    /// Where the slots read start: the window's start rounded down to the
    /// slot grain (ms). Counts cover from here to the window's end.
    pub aligned_from_ms: Option<u64>,
    /// Where the last slot read ends (ms): past the window's end when it
    /// falls inside a slot, whose counts then reach beyond it.
    pub covered_to_ms: Option<u64>,
}

impl Totals {
    /// Whether no request, response or latency was counted.
    pub fn is_empty(&self) -> bool {
        self.requests == 0 && self.latency.is_empty() && self.success == 0 && self.failure == 0
    }

    fn add(&mut self, c: &Counts) {
        self.requests += c.requests;
        self.success += c.success;
        self.failure += c.failure;
        self.latency.merge(&c.latency);
    }

    pub fn span(&self) -> Span {
        Span {
            aligned_from_ms: self.aligned_from_ms,
            covered_to_ms: self.covered_to_ms,
        }
    }

    fn set_span(&mut self, span: Span) {
        self.aligned_from_ms = span.aligned_from_ms;
        self.covered_to_ms = span.covered_to_ms;
    }

    /// Adds `other` (another group's, or another replica's, totals over
    /// the same point): counts saturate rather than wrap, whatever a peer
    /// sent.
    pub fn merge(&mut self, other: &Totals) {
        self.requests = self.requests.saturating_add(other.requests);
        self.success = self.success.saturating_add(other.success);
        self.failure = self.failure.saturating_add(other.failure);
        self.latency.merge(&other.latency);
        let mut span = self.span();
        span.merge(&other.span());
        self.set_span(span);
    }
}

/// Slots of counts over the last hour: 10-second slots for the last ten
/// minutes and, rolled up from them as each minute closes, 1-minute slots
/// for the hour. Written by hand rather than with a time-series crate: a
/// ring per pair, touched on every report, has to be a few pushes and adds.
#[derive(Debug)]
pub struct Ring<S> {
    fine: VecDeque<Slot<S>>,
    coarse: VecDeque<Slot<S>>,
    /// The last fine slot number already rolled into `coarse`.
    rolled_through: Option<u64>,
    /// When the ring was first written (ms, store clock).
    first_seen_ms: u64,
    /// When a later report first wrote it (ms, store clock).
    second_seen_ms: Option<u64>,
}

impl<S> Default for Ring<S> {
    fn default() -> Self {
        Self {
            fine: VecDeque::new(),
            coarse: VecDeque::new(),
            rolled_through: None,
            first_seen_ms: 0,
            second_seen_ms: None,
        }
    }
}

impl<S: SlotCounts> Ring<S> {
    /// The fine slot for `now_ms` (store clock), to add to: closed minutes
    /// are rolled into coarse slots and what no window reaches any more is
    /// dropped.
    pub fn current(&mut self, now_ms: u64) -> &mut S {
        if self.fine.is_empty() && self.coarse.is_empty() {
            self.first_seen_ms = now_ms;
            self.second_seen_ms = None;
        } else if self.second_seen_ms.is_none() && now_ms > self.first_seen_ms {
            self.second_seen_ms = Some(now_ms);
        }
        let number = now_ms / FINE_MS;
        if self.fine.back().is_none_or(|s| s.number < number) {
            self.roll_up(number);
            self.fine.push_back(Slot {
                number,
                counts: S::default(),
            });
            while self
                .fine
                .front()
                .is_some_and(|s| s.number + FINE_SLOTS <= number)
            {
                self.fine.pop_front();
            }
            let minute = number / PER_COARSE;
            while self
                .coarse
                .front()
                .is_some_and(|s| s.number + COARSE_SLOTS <= minute)
            {
                self.coarse.pop_front();
            }
        }
        &mut self
            .fine
            .back_mut()
            .expect("a slot was just ensured")
            .counts
    }

    /// Where the data begins. A report counts what happened since the
    /// proxy's previous one, so the first report that wrote the ring
    /// covers time before it arrived: about as long as the gap to the next
    /// one, at most [`MAX_FIRST_REPORT_LEAD_MS`]. Until a second report
    /// comes, the data begins at the first.
    pub fn covered_from_ms(&self) -> u64 {
        let lead = self
            .second_seen_ms
            .map_or(0, |second| second - self.first_seen_ms)
            .min(MAX_FIRST_REPORT_LEAD_MS);
        self.first_seen_ms.saturating_sub(lead)
    }

    /// Rolls every fine slot of minutes before the one `number` is in into
    /// its coarse slot.
    fn roll_up(&mut self, number: u64) {
        let open_minute = number / PER_COARSE;
        for slot in &self.fine {
            if slot.number / PER_COARSE >= open_minute {
                break;
            }
            if self.rolled_through.is_some_and(|r| slot.number <= r) {
                continue;
            }
            let minute = slot.number / PER_COARSE;
            if self.coarse.back().is_none_or(|c| c.number < minute) {
                self.coarse.push_back(Slot {
                    number: minute,
                    counts: S::default(),
                });
            }
            let c = self.coarse.back_mut().expect("just ensured");
            c.counts.add(&slot.counts);
            self.rolled_through = Some(slot.number);
        }
    }

    /// Hands `add` the slots overlapping `[from_ms, to_ms]`, extending
    /// `span` over them. Windows that start inside the fine horizon are
    /// read at 10 s grain; longer ones read closed minutes from the coarse
    /// slots and the rest from fine slots.
    pub fn read(&self, from_ms: u64, to_ms: u64, span: &mut Span, mut add: impl FnMut(&S)) {
        let overlaps = |start: u64, width: u64| start + width > from_ms && start <= to_ms;
        let fine_horizon = self.fine.front().map(|s| s.number * FINE_MS);
        if fine_horizon.is_some_and(|h| h <= from_ms) || self.coarse.is_empty() {
            span.align(from_ms, FINE_MS);
            for s in &self.fine {
                if overlaps(s.number * FINE_MS, FINE_MS) {
                    add(&s.counts);
                    span.read(s.number, FINE_MS);
                }
            }
            return;
        }
        span.align(from_ms, COARSE_MS);
        for c in &self.coarse {
            if overlaps(c.number * COARSE_MS, COARSE_MS) {
                add(&c.counts);
                span.read(c.number, COARSE_MS);
            }
        }
        for s in &self.fine {
            if self.rolled_through.is_some_and(|r| s.number <= r) {
                continue;
            }
            if overlaps(s.number * FINE_MS, FINE_MS) {
                add(&s.counts);
                span.read(s.number, FINE_MS);
            }
        }
    }
}

/// What one request scope adds to a window: read from the report once and
/// added to its workload pair's window and to its route's.
#[derive(Debug, Default)]
pub struct ScopeSample {
    requests: u64,
    success: u64,
    failure: u64,
    /// The responses' latencies, bucketed: each response's run (sorted on
    /// the wire) bucketed as it came, then the runs merged into one.
    latency: Run,
}

impl ScopeSample {
    /// Reads `scope` into this sample, reusing its buffers.
    pub fn fill(&mut self, report: Report<'_>, scope: &Scope) {
        let (mut success, mut failure) = (0, 0);
        self.latency.clear();
        for rsp in report.responses(scope) {
            for eos in report.ends(rsp) {
                let n = u64::from(eos.streams);
                if is_success(eos.end, rsp.status) {
                    success += n;
                } else {
                    failure += n;
                }
            }
            let latencies = report.latencies(rsp).iter();
            self.latency
                .add(latencies.map(|&(latency, count)| (latency, u64::from(count))));
        }
        self.requests = u64::from(scope.count);
        self.success = success;
        self.failure = failure;
    }
}

/// A workload pair's or a route's requests over the last hour.
#[derive(Debug, Default)]
pub struct WindowData {
    ring: Ring<Counts>,
    touched: u32,
}

impl SeriesData for WindowData {
    fn last_touch(&self) -> u32 {
        self.touched
    }
}

impl WindowData {
    /// Adds one request scope's [`ScopeSample`] at `now_ms` (store clock).
    pub fn add_sample(&mut self, sample: &ScopeSample, now_ms: u64, now_secs: u32) {
        self.touched = now_secs;
        let slot = self.ring.current(now_ms);
        slot.requests += sample.requests;
        slot.success += sample.success;
        slot.failure += sample.failure;
        slot.latency.add_run(&sample.latency);
    }

    /// Where this pair's data begins ([`Ring::covered_from_ms`]).
    pub fn covered_from_ms(&self) -> u64 {
        self.ring.covered_from_ms()
    }

    /// Adds up the slots overlapping `[from_ms, to_ms]`.
    pub fn totals(&self, from_ms: u64, to_ms: u64, out: &mut Totals) {
        let mut span = out.span();
        self.ring.read(from_ms, to_ms, &mut span, |c| out.add(c));
        out.set_span(span);
    }
}

/// A workload pair's TCP connections: bytes over the last hour, and the
/// connections the target's inbound proxy reported opened and closed
/// since the pair was first seen.
#[derive(Debug, Default)]
pub struct TcpWindowData {
    ring: Ring<TcpCounts>,
    pub opened: u64,
    pub closed: u64,
    touched: u32,
}

impl SeriesData for TcpWindowData {
    fn last_touch(&self) -> u32 {
        self.touched
    }
}

/// What a TCP window query adds up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpTotals {
    pub bytes: TcpCounts,
    /// Connections opened less those closed (never below zero per pair: a
    /// connection opened before the store started may close after).
    pub open: u64,
    pub span: Span,
}

impl TcpWindowData {
    /// Adds what one transport summary of a report said about the pair.
    pub fn add(&mut self, now_ms: u64, now_secs: u32, opened: u64, closed: u64, bytes: TcpCounts) {
        self.touched = now_secs;
        self.opened = self.opened.saturating_add(opened);
        self.closed = self.closed.saturating_add(closed);
        self.ring.current(now_ms).add(&bytes);
    }

    /// Where this pair's data begins ([`Ring::covered_from_ms`]).
    pub fn covered_from_ms(&self) -> u64 {
        self.ring.covered_from_ms()
    }

    /// Adds the bytes of the slots overlapping `[from_ms, to_ms]` and the
    /// connections open now.
    pub fn totals(&self, from_ms: u64, to_ms: u64, out: &mut TcpTotals) {
        let bytes = &mut out.bytes;
        self.ring
            .read(from_ms, to_ms, &mut out.span, |c| bytes.add(c));
        out.open = out
            .open
            .saturating_add(self.opened.saturating_sub(self.closed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::proxy::telemetry::*;

    /// One scope of `count` requests, as the ingester decodes it.
    struct Decoded {
        flat: super::super::flat::FlatReport,
        bytes: Vec<u8>,
    }

    fn add(w: &mut WindowData, d: &Decoded, now_ms: u64) {
        let report = Report {
            flat: &d.flat,
            bytes: &d.bytes,
        };
        let mut sample = ScopeSample::default();
        sample.fill(report, &d.flat.scopes[0]);
        w.add_sample(&sample, now_ms, 0);
    }

    fn scope(count: u32, status: u32, latency: u32) -> Decoded {
        use prost::Message as _;
        let report = ReportRequest {
            requests: vec![request_scope(count, status, latency)],
            ..ReportRequest::default()
        };
        let bytes = report.encode_to_vec();
        let mut flat = super::super::flat::FlatReport::default();
        flat.decode(&bytes).unwrap();
        Decoded { flat, bytes }
    }

    fn request_scope(count: u32, status: u32, latency: u32) -> RequestScope {
        RequestScope {
            ctx: Some(RequestCtx::default()),
            count,
            responses: vec![ResponseScope {
                ctx: Some(ResponseCtx {
                    http_status_code: status,
                }),
                response_latencies: vec![Latency { latency, count }],
                ends: vec![EosScope {
                    ctx: Some(EosCtx {
                        end: Some(eos_ctx::End::Other(true)),
                    }),
                    streams: vec![StreamSummary::default(); count as usize],
                }],
            }],
        }
    }

    #[test]
    fn windows_read_fine_then_coarse_slots_without_double_counting() {
        let mut w = WindowData::default();
        // One report of 10 requests every 10 s for 30 minutes.
        for i in 0..180u64 {
            add(&mut w, &scope(10, 200, 100), i * FINE_MS + 1);
        }
        let now = 179 * FINE_MS + 2;
        let sum = |from: u64| {
            let mut t = Totals::default();
            w.totals(from, now, &mut t);
            t
        };
        assert_eq!(
            sum(now - FINE_MS).requests,
            20,
            "the partial slot and the one before"
        );
        assert_eq!(sum(now - 60_000).requests, 70);
        assert_eq!(sum(now - 600_000).requests, 610);
        let hour = sum(now.saturating_sub(3_600_000));
        assert_eq!(hour.requests, 1800, "every report exactly once");
        assert_eq!(hour.success, 1800);
        assert_eq!(hour.latency.count(), 1800);
        assert_eq!(hour.aligned_from_ms, Some(0));
        assert!(w.ring.fine.len() as u64 <= FINE_SLOTS);
    }

    #[test]
    fn failures_and_expiry() {
        let mut w = WindowData::default();
        add(&mut w, &scope(4, 503, 10), 5);
        let mut t = Totals::default();
        w.totals(0, 10, &mut t);
        assert_eq!((t.success, t.failure), (0, 4));
        // Two hours later the old data is gone.
        add(&mut w, &scope(1, 200, 10), 7_200_000);
        let mut t = Totals::default();
        w.totals(0, 7_200_000, &mut t);
        assert_eq!(t.requests, 1);
    }

    #[test]
    fn the_first_report_covers_the_gap_before_it() {
        let mut w = WindowData::default();
        // The first report: two scopes of the pair, read at one instant.
        add(&mut w, &scope(10, 200, 10), 50_000);
        add(&mut w, &scope(5, 200, 10), 50_000);
        assert_eq!(w.covered_from_ms(), 50_000, "one report: no interval known");
        add(&mut w, &scope(10, 200, 10), 60_000);
        add(&mut w, &scope(10, 200, 10), 61_000);
        assert_eq!(w.covered_from_ms(), 40_000, "the gap to the second report");
        let mut idle = WindowData::default();
        add(&mut idle, &scope(1, 200, 10), 100_000);
        add(&mut idle, &scope(1, 200, 10), 400_000);
        assert_eq!(idle.covered_from_ms(), 100_000 - MAX_FIRST_REPORT_LEAD_MS);
    }
}
