//! Counting and timing what the workers did: one [`Recorder`] per worker, merged at the end,
//! so the hot path never shares a lock.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::errors::{AdditionError, CreationError};
use hdrhistogram::Histogram;

use super::outcome::{ErrorCode, Failure};

/// Latencies are recorded in microseconds.
const LOWEST_MICROS: u64 = 1;
/// Longest latency told apart (100 s); longer ones count as this. Far beyond any
/// sensible request timeout, yet it keeps each histogram around 150 KiB.
const HIGHEST_MICROS: u64 = 100_000_000;
/// Three significant digits: 0.1 % resolution at every magnitude.
const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram with the bounds every recorder uses, so any two can be merged.
pub fn new_histogram() -> Result<Histogram<u64>, CreationError> {
    Histogram::new_with_bounds(LOWEST_MICROS, HIGHEST_MICROS, SIGNIFICANT_DIGITS)
}

/// Results of one operation kind.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Latency of every completed request, successful or not, in microseconds.
    pub latency: Histogram<u64>,
    /// Requests that succeeded.
    pub ok: u64,
    /// Failed requests by class.
    pub errors: BTreeMap<ErrorCode, u64>,
    /// The first message seen for each class, to tell what the class stands for.
    pub error_samples: BTreeMap<ErrorCode, String>,
}

impl OpStats {
    /// Empty statistics.
    pub fn new() -> Result<OpStats, CreationError> {
        Ok(OpStats {
            latency: new_histogram()?,
            ok: 0,
            errors: BTreeMap::new(),
            error_samples: BTreeMap::new(),
        })
    }

    /// Records one completed request.
    pub fn record(&mut self, latency: Duration, result: &Result<(), Failure>) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros);
        match result {
            Ok(()) => self.ok += 1,
            Err(failure) => {
                *self.errors.entry(failure.code).or_insert(0) += 1;
                self.error_samples
                    .entry(failure.code)
                    .or_insert_with(|| failure.message.clone());
            }
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &OpStats) -> Result<(), AdditionError> {
        self.latency.add(&other.latency)?;
        self.ok += other.ok;
        for (code, count) in &other.errors {
            *self.errors.entry(*code).or_insert(0) += count;
        }
        for (code, message) in &other.error_samples {
            self.error_samples
                .entry(*code)
                .or_insert_with(|| message.clone());
        }
        Ok(())
    }

    /// Failed requests.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Completed requests, successful or not.
    pub fn total(&self) -> u64 {
        self.ok + self.error_count()
    }
}

/// Everything one worker (or, merged, the whole run) recorded.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// Statistics per operation kind, by the kind's name.
    pub ops: BTreeMap<&'static str, OpStats>,
    /// Open loop only: requests that were due in the measured window but never sent,
    /// because every client was still busy when the run ended.
    pub unsent: u64,
}

impl Recorder {
    /// Records one completed request of kind `op`.
    pub fn record(
        &mut self,
        op: &'static str,
        latency: Duration,
        result: &Result<(), Failure>,
    ) -> Result<(), CreationError> {
        let stats = match self.ops.entry(op) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => entry.insert(OpStats::new()?),
        };
        stats.record(latency, result);
        Ok(())
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Recorder) -> Result<(), MergeError> {
        for (op, stats) in &other.ops {
            match self.ops.get_mut(op) {
                Some(mine) => mine.merge(stats)?,
                None => {
                    self.ops.insert(op, stats.clone());
                }
            }
        }
        self.unsent += other.unsent;
        Ok(())
    }

    /// All operation kinds together.
    pub fn overall(&self) -> Result<OpStats, MergeError> {
        let mut total = OpStats::new()?;
        for stats in self.ops.values() {
            total.merge(stats)?;
        }
        Ok(total)
    }
}

/// Why statistics could not be combined. Every histogram has the same bounds, so this
/// only happens if that invariant is broken.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A histogram could not be created.
    #[error("cannot create a latency histogram: {0:?}")]
    Create(CreationError),
    /// Two histograms could not be added.
    #[error("cannot merge latency histograms: {0:?}")]
    Add(AdditionError),
}

impl From<CreationError> for MergeError {
    fn from(error: CreationError) -> MergeError {
        MergeError::Create(error)
    }
}

impl From<AdditionError> for MergeError {
    fn from(error: AdditionError) -> MergeError {
        MergeError::Add(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn merged_recorders_add_counts_and_latencies() {
        let refused = Err(Failure::new(ErrorCode::Rpc(32), "first refusal"));
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        for value in 1..=50 {
            a.record("borrow", ms(value), &Ok(())).unwrap();
        }
        for value in 51..=100 {
            b.record("borrow", ms(value), &Ok(())).unwrap();
        }
        a.record("borrow", ms(1), &refused).unwrap();
        b.record(
            "borrow",
            ms(1),
            &Err(Failure::new(ErrorCode::Rpc(32), "second refusal")),
        )
        .unwrap();
        b.record(
            "list",
            ms(7),
            &Err(Failure::new(ErrorCode::Timeout, "timed out")),
        )
        .unwrap();
        b.unsent = 3;

        a.merge(&b).unwrap();
        let borrow = &a.ops["borrow"];
        assert_eq!(borrow.ok, 100);
        assert_eq!(borrow.errors[&ErrorCode::Rpc(32)], 2);
        assert_eq!(borrow.error_samples[&ErrorCode::Rpc(32)], "first refusal");
        assert_eq!(borrow.total(), 102);
        assert_eq!(a.ops["list"].errors[&ErrorCode::Timeout], 1);
        assert_eq!(a.unsent, 3);

        let overall = a.overall().unwrap();
        assert_eq!(overall.total(), 103);
        assert_eq!(overall.error_count(), 3);
        // 102 borrows (1..=100 ms plus two 1 ms refusals) and one 7 ms list: the median
        // is about 49 ms, within the histogram's 0.1 % precision.
        let median = overall.latency.value_at_quantile(0.5);
        assert!((48_900..=49_100).contains(&median), "median {median} µs");
        assert!(overall.latency.max() >= 99_900);
    }

    #[test]
    fn latencies_beyond_the_bound_saturate() {
        let mut stats = OpStats::new().unwrap();
        stats.record(Duration::from_secs(1000), &Ok(()));
        assert_eq!(stats.latency.len(), 1);
        assert!(stats.latency.max() >= HIGHEST_MICROS / 1001 * 1000);
        assert!(stats.latency.max() <= HIGHEST_MICROS * 1001 / 1000);
    }
}
