//! The result of a run: a [`Report`] that prints as a table and serialises to JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::duration::format_duration;
use super::stats::{MergeError, Recorder};

/// How requests were paced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Mode {
    /// Each client sends its next request when the previous one is answered.
    Closed,
    /// Requests are due at a fixed total rate; latency counts from the due time.
    Open {
        /// Requests per second, all clients together.
        rate: f64,
    },
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Closed => f.write_str("closed loop"),
            Mode::Open { rate } => write!(f, "open loop at {rate} ops/s"),
        }
    }
}

/// What was run, as the engine knows it before the results.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// The system, e.g. `licensed` or `etcd`.
    pub target: String,
    /// The operation or mix.
    pub workload: String,
    /// Closed or open loop.
    pub mode: Mode,
    /// Concurrent clients.
    pub clients: usize,
    /// Node URLs.
    pub urls: Vec<String>,
    /// Unrecorded warm-up.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// Seed of the random choices.
    pub seed: u64,
    /// Facts about the setup.
    pub notes: Vec<String>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest request.
    pub max: f64,
}

impl LatencySummary {
    /// Reads the percentiles of a histogram recorded in microseconds; all zero when empty.
    pub fn from_micros(histogram: &Histogram<u64>) -> LatencySummary {
        if histogram.is_empty() {
            return LatencySummary {
                mean: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
            };
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        LatencySummary {
            mean: histogram.mean() / 1000.0,
            p50: ms(histogram.value_at_quantile(0.5)),
            p90: ms(histogram.value_at_quantile(0.9)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        }
    }
}

/// The results of one operation kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpReport {
    /// The operation, e.g. `borrow`.
    pub op: String,
    /// Completed requests, successful or not.
    pub ops: u64,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// Completed requests per second of measured time.
    pub throughput: f64,
    /// Latency of all completed requests.
    pub latency_ms: LatencySummary,
    /// Failed requests by code.
    pub errors_by_code: BTreeMap<String, u64>,
}

/// The results of a run. Latency covers every completed request, refusals included: a
/// refusal is an answer the client waited for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The system, e.g. `licensed` or `etcd`.
    pub target: String,
    /// The operation or mix.
    pub workload: String,
    /// Closed or open loop.
    pub mode: Mode,
    /// Concurrent clients.
    pub clients: usize,
    /// Node URLs.
    pub urls: Vec<String>,
    /// Unrecorded warm-up, in seconds.
    pub warmup_secs: f64,
    /// Measured time, in seconds.
    pub duration_secs: f64,
    /// Seed of the random choices.
    pub seed: u64,
    /// Completed requests, successful or not.
    pub ops: u64,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// Open loop: requests due in the measured window that were never sent.
    pub unsent: u64,
    /// Completed requests per second.
    pub throughput: f64,
    /// Successful requests per second.
    pub ok_throughput: f64,
    /// Latency of all completed requests.
    pub latency_ms: LatencySummary,
    /// Failed requests by code: a JSON-RPC code, or `timeout`, `connect`, `http`, `invalid`.
    pub errors_by_code: BTreeMap<String, u64>,
    /// The first message seen for each error code.
    pub error_samples: BTreeMap<String, String>,
    /// Per operation kind.
    pub per_op: Vec<OpReport>,
    /// Facts about the setup.
    pub notes: Vec<String>,
}

impl Report {
    /// Builds the report of a run from its merged recorder.
    pub fn new(info: RunInfo, recorder: &Recorder) -> Result<Report, MergeError> {
        let seconds = info.duration.as_secs_f64();
        let per_second = |count: u64| {
            if seconds > 0.0 {
                count as f64 / seconds
            } else {
                0.0
            }
        };
        let overall = recorder.overall()?;
        let per_op = recorder
            .ops
            .iter()
            .map(|(op, stats)| OpReport {
                op: op.to_string(),
                ops: stats.total(),
                ok: stats.ok,
                errors: stats.error_count(),
                throughput: per_second(stats.total()),
                latency_ms: LatencySummary::from_micros(&stats.latency),
                errors_by_code: keyed(&stats.errors),
            })
            .collect();
        Ok(Report {
            target: info.target,
            workload: info.workload,
            mode: info.mode,
            clients: info.clients,
            urls: info.urls,
            warmup_secs: info.warmup.as_secs_f64(),
            duration_secs: seconds,
            seed: info.seed,
            ops: overall.total(),
            ok: overall.ok,
            errors: overall.error_count(),
            unsent: recorder.unsent,
            throughput: per_second(overall.total()),
            ok_throughput: per_second(overall.ok),
            latency_ms: LatencySummary::from_micros(&overall.latency),
            errors_by_code: keyed(&overall.errors),
            error_samples: keyed(&overall.error_samples),
            per_op,
            notes: info.notes,
        })
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }
}

fn keyed<K: fmt::Display, V: Clone>(map: &BTreeMap<K, V>) -> BTreeMap<String, V> {
    map.iter()
        .map(|(key, value)| (key.to_string(), value.clone()))
        .collect()
}

impl fmt::Display for Report {
    /// A header, one table row per operation plus a total, then errors and notes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} · {} · {} · {} clients · {} measured after {} warm-up · seed {}",
            self.target,
            self.workload,
            self.mode,
            self.clients,
            format_duration(Duration::from_secs_f64(self.duration_secs)),
            format_duration(Duration::from_secs_f64(self.warmup_secs)),
            self.seed,
        )?;
        writeln!(f, "nodes: {}", self.urls.join(", "))?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<8} {:>9} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "op",
            "ops",
            "ok",
            "errors",
            "ops/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms"
        )?;
        let total = OpReport {
            op: "total".into(),
            ops: self.ops,
            ok: self.ok,
            errors: self.errors,
            throughput: self.throughput,
            latency_ms: self.latency_ms,
            errors_by_code: BTreeMap::new(),
        };
        // A single operation's row would repeat the total.
        let rows = if self.per_op.len() > 1 {
            self.per_op
                .iter()
                .chain(std::iter::once(&total))
                .collect::<Vec<_>>()
        } else {
            vec![self.per_op.first().unwrap_or(&total)]
        };
        for row in rows {
            let l = &row.latency_ms;
            writeln!(
                f,
                "{:<8} {:>9} {:>9} {:>7} {:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                row.op,
                row.ops,
                row.ok,
                row.errors,
                row.throughput,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max
            )?;
        }
        if self.unsent > 0 {
            writeln!(
                f,
                "\nunsent: {} requests were due but never sent: the clients could not keep up with the rate",
                self.unsent
            )?;
        }
        if !self.errors_by_code.is_empty() {
            writeln!(f, "\nerrors:")?;
            for (code, count) in &self.errors_by_code {
                let sample = self
                    .error_samples
                    .get(code)
                    .map(String::as_str)
                    .unwrap_or("");
                writeln!(f, "  {code:>8} × {count}  e.g. {sample}")?;
            }
        }
        if !self.notes.is_empty() {
            writeln!(f, "\nnotes:")?;
            for note in &self.notes {
                writeln!(f, "  - {note}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{ErrorCode, Failure};

    fn info() -> RunInfo {
        RunInfo {
            target: "licensed".into(),
            workload: "borrow=90,list=10".into(),
            mode: Mode::Closed,
            clients: 4,
            urls: vec!["http://127.0.0.1:22022".into()],
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            seed: 9,
            notes: vec!["a note".into()],
        }
    }

    fn recorder() -> Recorder {
        let mut recorder = Recorder::default();
        for millis in 1..=1000 {
            recorder
                .record("borrow", Duration::from_millis(millis), &Ok(()))
                .unwrap();
        }
        let refusal = Err(Failure::new(ErrorCode::Rpc(32), "error 32: not available"));
        for _ in 0..10 {
            recorder
                .record("borrow", Duration::from_millis(1), &refusal)
                .unwrap();
        }
        for _ in 0..90 {
            recorder
                .record("list", Duration::from_millis(2000), &Ok(()))
                .unwrap();
        }
        recorder
    }

    #[test]
    fn reports_count_rate_and_percentiles() {
        let report = Report::new(info(), &recorder()).unwrap();
        assert_eq!(report.ops, 1100);
        assert_eq!(report.ok, 1090);
        assert_eq!(report.errors, 10);
        assert_eq!(report.throughput, 110.0);
        assert_eq!(report.ok_throughput, 109.0);
        assert_eq!(report.errors_by_code["32"], 10);
        assert_eq!(report.error_samples["32"], "error 32: not available");
        assert_eq!(report.per_op.len(), 2);
        let borrow = &report.per_op[0];
        assert_eq!(
            (borrow.op.as_str(), borrow.ops, borrow.errors),
            ("borrow", 1010, 10)
        );
        assert!(
            (borrow.latency_ms.p50 - 496.0).abs() < 1.0,
            "{:?}",
            borrow.latency_ms
        );
        assert!(
            (borrow.latency_ms.p99 - 990.0).abs() < 1.0,
            "{:?}",
            borrow.latency_ms
        );
        assert!((borrow.latency_ms.max - 1000.0).abs() < 1.0);
        // 90 of 1100 requests are 2 s lists: the 90th percentile overall is still a
        // borrow, the 99th is a list.
        assert!(report.latency_ms.p90 < 1000.5, "{:?}", report.latency_ms);
        assert!(
            (report.latency_ms.p99 - 2000.0).abs() < 2.0,
            "{:?}",
            report.latency_ms
        );
    }

    #[test]
    fn reports_serialise_and_print() {
        let report = Report::new(info(), &recorder()).unwrap();
        let json: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
        assert_eq!(json["mode"]["kind"], "closed");
        assert_eq!(json["ops"], 1100);
        assert_eq!(json["errors_by_code"]["32"], 10);
        assert_eq!(json["per_op"][1]["op"], "list");
        assert!(json["latency_ms"]["p999"].as_f64().unwrap() > 1999.0);

        let text = report.to_string();
        assert!(text.starts_with("licensed · borrow=90,list=10 · closed loop · 4 clients · 10s measured after 1s warm-up"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("borrow ") && l.contains(" 1010 ")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("total ") && l.contains(" 110.0 ")),
            "{text}"
        );
        assert!(
            text.contains("32 × 10  e.g. error 32: not available"),
            "{text}"
        );
    }

    #[test]
    fn empty_runs_report_zeros() {
        let report = Report::new(info(), &Recorder::default()).unwrap();
        assert_eq!(report.ops, 0);
        assert_eq!(report.latency_ms.p99, 0.0);
        assert!(report.to_string().contains("total"));
    }
}
