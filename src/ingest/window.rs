//! The embedded Stat store: recent traffic per workload pair in time slots,
//! so Stat answers request rate, success rate and exact latency percentiles
//! without any Prometheus.
//!
//! A workload pair is the four workload labels of a request label set
//! (`source`, `target`, `source_deployment`, `target_deployment`), i.e. the
//! mesh series with `method` and `path` projected away. Each pair keeps
//! 10-second slots for the last ten minutes and, rolled up from them as each
//! minute closes, 1-minute slots for the last hour. A slot holds request,
//! success and failure counts and a [`SparseHist`] of latencies.

use std::collections::VecDeque;

use super::hist::SparseHist;
use super::report::is_success;
use super::table::SeriesData;
use crate::proto::proxy::telemetry::RequestScope;

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
/// A pair no report touched for this long is dropped: it has nothing left
/// in any window.
pub const PAIR_IDLE_SECS: u32 = 3_700;

#[derive(Clone, Debug, Default)]
pub struct Slot {
    /// Slot number: start time / slot width.
    pub number: u64,
    pub requests: u64,
    pub success: u64,
    pub failure: u64,
    pub latency: SparseHist,
}

/// What a window query adds up.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub requests: u64,
    pub success: u64,
    pub failure: u64,
    pub latency: SparseHist,
    /// Where the slots read start: the window's start rounded down to the
    /// slot grain (ms). Counts cover from here to the window's end.
    pub aligned_from_ms: Option<u64>,
    /// Of `requests`, those of pairs' first reports inside the window
    /// ([`WindowData::baseline_requests`]), which a rate leaves out.
    pub baseline: u64,
}

impl Totals {
    fn add(&mut self, slot: &Slot) {
        self.requests += slot.requests;
        self.success += slot.success;
        self.failure += slot.failure;
        self.latency.merge(&slot.latency);
    }

    fn align(&mut self, from_ms: u64, width: u64) {
        let aligned = from_ms / width * width;
        self.aligned_from_ms = Some(self.aligned_from_ms.map_or(aligned, |a| a.min(aligned)));
    }

    pub fn merge(&mut self, other: &Totals) {
        self.requests += other.requests;
        self.baseline += other.baseline;
        self.success += other.success;
        self.failure += other.failure;
        self.latency.merge(&other.latency);
        if let Some(from) = other.aligned_from_ms {
            self.aligned_from_ms = Some(self.aligned_from_ms.map_or(from, |c| c.min(from)));
        }
    }
}

#[derive(Debug, Default)]
pub struct WindowData {
    fine: VecDeque<Slot>,
    coarse: VecDeque<Slot>,
    /// The last fine slot number already rolled into `coarse`.
    rolled_through: Option<u64>,
    /// When this pair was first seen (ms, store clock).
    pub first_seen_ms: u64,
    /// Requests of the first report that named this pair. A report counts
    /// the requests since the proxy's previous one, so the first holds
    /// traffic from before `first_seen_ms`: a rate over the time since then
    /// leaves it out, as Prometheus' `rate()` takes a counter's first
    /// sample as its baseline.
    pub baseline_requests: u64,
    touched: u32,
}

impl SeriesData for WindowData {
    fn last_touch(&self) -> u32 {
        self.touched
    }
}

impl WindowData {
    /// Adds one request scope at `now_ms` (store clock).
    pub fn add_scope(&mut self, scope: &RequestScope, now_ms: u64, now_secs: u32) {
        if self.fine.is_empty() && self.coarse.is_empty() {
            self.first_seen_ms = now_ms;
            self.baseline_requests = 0;
        }
        if now_ms == self.first_seen_ms {
            // Every scope of the first report (one report, one clock read).
            self.baseline_requests += u64::from(scope.count);
        }
        self.touched = now_secs;
        let slot = self.current(now_ms);
        slot.requests += u64::from(scope.count);
        for rsp in &scope.responses {
            let status = rsp.ctx.as_ref().map_or(0, |c| c.http_status_code);
            slot.latency.record_run(
                rsp.response_latencies
                    .iter()
                    .map(|l| (l.latency, u64::from(l.count))),
            );
            for eos in &rsp.ends {
                let n = eos.streams.len() as u64;
                if is_success(eos.ctx.as_ref().and_then(|c| c.end.as_ref()), status) {
                    slot.success += n;
                } else {
                    slot.failure += n;
                }
            }
        }
    }

    /// The fine slot for `now_ms`, rolling closed minutes into coarse slots
    /// and dropping what no window reaches any more.
    fn current(&mut self, now_ms: u64) -> &mut Slot {
        let number = now_ms / FINE_MS;
        if self.fine.back().is_none_or(|s| s.number < number) {
            self.roll_up(number);
            self.fine.push_back(Slot {
                number,
                ..Slot::default()
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
        self.fine.back_mut().expect("a slot was just ensured")
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
                    ..Slot::default()
                });
            }
            let c = self.coarse.back_mut().expect("just ensured");
            c.requests += slot.requests;
            c.success += slot.success;
            c.failure += slot.failure;
            c.latency.merge(&slot.latency);
            self.rolled_through = Some(slot.number);
        }
    }

    /// Adds up the slots overlapping `[from_ms, to_ms]`. Windows that start
    /// inside the fine horizon are read at 10 s grain; longer ones read
    /// closed minutes from the coarse slots and the rest from fine slots.
    pub fn totals(&self, from_ms: u64, to_ms: u64, out: &mut Totals) {
        let overlaps = |start: u64, width: u64| start + width > from_ms && start <= to_ms;
        let fine_horizon = self.fine.front().map(|s| s.number * FINE_MS);
        if fine_horizon.is_some_and(|h| h <= from_ms) || self.coarse.is_empty() {
            out.align(from_ms, FINE_MS);
            for s in &self.fine {
                if overlaps(s.number * FINE_MS, FINE_MS) {
                    out.add(s);
                }
            }
            return;
        }
        out.align(from_ms, COARSE_MS);
        for c in &self.coarse {
            if overlaps(c.number * COARSE_MS, COARSE_MS) {
                out.add(c);
            }
        }
        for s in &self.fine {
            if self.rolled_through.is_some_and(|r| s.number <= r) {
                continue;
            }
            if overlaps(s.number * FINE_MS, FINE_MS) {
                out.add(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::proxy::telemetry::*;

    fn scope(count: u32, status: u32, latency: u32) -> RequestScope {
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
            w.add_scope(&scope(10, 200, 100), i * FINE_MS + 1, 0);
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
        assert!(w.fine.len() as u64 <= FINE_SLOTS);
    }

    #[test]
    fn failures_and_expiry() {
        let mut w = WindowData::default();
        w.add_scope(&scope(4, 503, 10), 5, 0);
        let mut t = Totals::default();
        w.totals(0, 10, &mut t);
        assert_eq!((t.success, t.failure), (0, 4));
        // Two hours later the old data is gone.
        w.add_scope(&scope(1, 200, 10), 7_200_000, 0);
        let mut t = Totals::default();
        w.totals(0, 7_200_000, &mut t);
        assert_eq!(t.requests, 1);
    }

    #[test]
    fn the_first_report_is_the_baseline() {
        let mut w = WindowData::default();
        // The first report: two scopes of the pair, read at one instant.
        w.add_scope(&scope(10, 200, 10), 1_000, 0);
        w.add_scope(&scope(5, 200, 10), 1_000, 0);
        w.add_scope(&scope(10, 200, 10), 2_000, 0);
        assert_eq!((w.first_seen_ms, w.baseline_requests), (1_000, 15));
    }
}
