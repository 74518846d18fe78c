//! What a run measured: Report RPC latencies in an HDR histogram, outcomes by
//! gRPC code, and the one-line (or one-JSON-object) summary printed at the
//! end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds, up to a minute (anything slower
/// saturates), to 3 significant figures.
const LATENCY_MAX_US: u64 = 60_000_000;
const LATENCY_SIGFIG: u8 = 3;

/// One worker's tally; merged into one at the end of the run.
#[derive(Debug)]
pub struct Stats {
    latency_us: Histogram<u64>,
    pub ok: u64,
    /// Failed calls by gRPC code name (`Unavailable`, ...).
    pub failed: BTreeMap<&'static str, u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, LATENCY_MAX_US, LATENCY_SIGFIG)
                .expect("constant histogram bounds are valid"),
            ok: 0,
            failed: BTreeMap::new(),
        }
    }
}

impl Stats {
    pub fn record_ok(&mut self, latency: Duration) {
        self.ok += 1;
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us.saturating_record(us.max(1));
    }

    pub fn record_failure(&mut self, code: tonic::Code) {
        *self.failed.entry(code_name(code)).or_default() += 1;
    }

    pub fn merge(&mut self, other: Stats) {
        self.ok += other.ok;
        for (code, n) in other.failed {
            *self.failed.entry(code).or_default() += n;
        }
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
    }

    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    /// Latency at quantile `q` in milliseconds (0 when nothing succeeded).
    fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.latency_us.max() as f64 / 1000.0
    }
}

/// The run as printed: measurements plus the parameters that produced them.
#[derive(Debug)]
pub struct Summary {
    pub stats: Stats,
    pub elapsed: Duration,
    pub shape: &'static str,
    pub pods: usize,
    pub concurrency: usize,
    /// Mean encoded size of the reports sent.
    pub report_bytes: usize,
}

const QUANTILES: &[(&str, f64)] = &[("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)];

impl Summary {
    /// Successful reports per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.stats.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// `reports=N ok=N failed=N elapsed=10.00s rate=123.4/s p50=0.41ms ...`
    pub fn line(&self) -> String {
        let s = &self.stats;
        let failed = s.failed_total();
        let mut out = format!(
            "reports={} ok={} failed={} elapsed={:.2}s rate={:.1}/s",
            s.ok + failed,
            s.ok,
            failed,
            self.elapsed.as_secs_f64(),
            self.rate(),
        );
        for (name, q) in QUANTILES {
            let _ = write!(out, " {name}={:.2}ms", s.quantile_ms(*q));
        }
        let _ = write!(out, " max={:.2}ms", s.max_ms());
        let errors = if s.failed.is_empty() {
            "none".to_string()
        } else {
            let codes: Vec<_> = s.failed.iter().map(|(c, n)| format!("{c}:{n}")).collect();
            codes.join(",")
        };
        let _ = write!(
            out,
            " errors={errors} shape={} pods={} concurrency={} report_bytes={}",
            self.shape, self.pods, self.concurrency, self.report_bytes
        );
        out
    }

    /// The same as one JSON object; every string in it is an identifier, so
    /// nothing needs escaping.
    pub fn json(&self) -> String {
        let s = &self.stats;
        let failed = s.failed_total();
        let mut out = format!(
            "{{\"reports\":{},\"ok\":{},\"failed\":{},\"elapsed_s\":{:.3},\"rate\":{:.1}",
            s.ok + failed,
            s.ok,
            failed,
            self.elapsed.as_secs_f64(),
            self.rate(),
        );
        for (name, q) in QUANTILES {
            let _ = write!(out, ",\"{name}_ms\":{:.3}", s.quantile_ms(*q));
        }
        let _ = write!(out, ",\"max_ms\":{:.3},\"errors\":{{", s.max_ms());
        let codes: Vec<_> = s
            .failed
            .iter()
            .map(|(c, n)| format!("\"{c}\":{n}"))
            .collect();
        out.push_str(&codes.join(","));
        let _ = write!(
            out,
            "}},\"shape\":\"{}\",\"pods\":{},\"concurrency\":{},\"report_bytes\":{}}}",
            self.shape, self.pods, self.concurrency, self.report_bytes
        );
        out
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "Ok",
        Cancelled => "Cancelled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        let mut a = Stats::default();
        for us in [400, 410, 420, 1200] {
            a.record_ok(Duration::from_micros(us));
        }
        let mut b = Stats::default();
        b.record_failure(tonic::Code::Unavailable);
        b.record_failure(tonic::Code::Unavailable);
        b.record_failure(tonic::Code::InvalidArgument);
        a.merge(b);
        Summary {
            stats: a,
            elapsed: Duration::from_secs(2),
            shape: "medium",
            pods: 3,
            concurrency: 6,
            report_bytes: 4321,
        }
    }

    #[test]
    fn the_line_names_every_figure() {
        assert_eq!(
            summary().line(),
            "reports=7 ok=4 failed=3 elapsed=2.00s rate=2.0/s p50=0.41ms p90=1.20ms \
             p99=1.20ms p999=1.20ms max=1.20ms errors=InvalidArgument:1,Unavailable:2 \
             shape=medium pods=3 concurrency=6 report_bytes=4321"
        );
    }

    #[test]
    fn the_json_object_carries_the_same() {
        assert_eq!(
            summary().json(),
            "{\"reports\":7,\"ok\":4,\"failed\":3,\"elapsed_s\":2.000,\"rate\":2.0,\
             \"p50_ms\":0.410,\"p90_ms\":1.200,\"p99_ms\":1.200,\"p999_ms\":1.200,\
             \"max_ms\":1.200,\"errors\":{\"InvalidArgument\":1,\"Unavailable\":2},\
             \"shape\":\"medium\",\"pods\":3,\"concurrency\":6,\"report_bytes\":4321}"
        );
    }

    #[test]
    fn an_empty_run_prints_zeros() {
        let s = Summary {
            stats: Stats::default(),
            elapsed: Duration::ZERO,
            shape: "small",
            pods: 1,
            concurrency: 1,
            report_bytes: 0,
        };
        assert!(
            s.line()
                .starts_with("reports=0 ok=0 failed=0 elapsed=0.00s rate=0.0/s p50=0.00ms")
        );
        assert!(s.json().contains("\"errors\":{}"));
    }
}
