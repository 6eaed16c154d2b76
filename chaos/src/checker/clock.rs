//! Clock: the start the server stamps on a near-now borrow is the time it was made.
//!
//! A borrow sent without `validFrom` starts at the server's ledger clock. The server's
//! leaders stamp time only while their clock agrees with a quorum's (within 1 s by
//! default), and the ledger clock never goes back; so the start an acknowledged
//! near-now borrow states must lie within the chaos client's own wall clock window of
//! the call: from the first attempt's invocation to the first acknowledgement, widened
//! by a tolerance (5 s by default) for clock agreement, rounding to whole seconds and
//! scheduling. A start outside it means the cluster stamped a wrong time, e.g. a leader
//! whose clock was skewed.
//!
//! History times are converted to the wall clock with the start the history noted; a
//! history without it cannot be checked (a warning says so).

use serde::{Deserialize, Serialize};

use super::model::{instant_text, license_interval, Digest};
use super::{Verdict, Violation, ViolationKind};
use crate::history::OpResult;

/// The clock check's findings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockVerdict {
    /// The tolerance applied, milliseconds.
    pub tolerance_ms: i64,
    /// Acknowledged near-now borrows.
    pub near_now_borrows: usize,
    /// Of them, those whose start was held against the client's clock.
    pub checked: usize,
    /// The stamp furthest before its window (negative, milliseconds), if any was before.
    pub earliest_offset_ms: Option<i64>,
    /// The stamp furthest after its window (positive, milliseconds), if any was after.
    pub latest_offset_ms: Option<i64>,
    /// What is wrong.
    pub violations: Vec<Violation>,
    /// What could not be checked (reported with the history's warnings).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl ClockVerdict {
    /// Pass or fail.
    pub fn verdict(&self) -> Verdict {
        Verdict::of(&self.violations)
    }
}

/// How far a stamp (a whole second, standing for any instant within it) lies outside
/// `[lo_ms, hi_ms]`: negative before, positive after, 0 inside.
pub(crate) fn stamp_offset_ms(start: i64, lo_ms: i64, hi_ms: i64) -> i64 {
    let first = start.saturating_mul(1_000);
    let last = first.saturating_add(999);
    if last < lo_ms {
        last - lo_ms
    } else if first > hi_ms {
        first - hi_ms
    } else {
        0
    }
}

/// Runs the clock check with `tolerance_ms`.
pub(crate) fn check(digest: &Digest<'_>, tolerance_ms: i64) -> ClockVerdict {
    let history = digest.history;
    let mut verdict = ClockVerdict {
        tolerance_ms,
        ..ClockVerdict::default()
    };
    let mut no_clock = 0usize;
    for borrow in digest.borrows.iter().filter(|b| b.near_now) {
        let Some(first_ack) = borrow
            .acked
            .iter()
            .map(|&index| digest.op(index))
            .min_by_key(|op| (op.complete, op.id))
        else {
            continue;
        };
        let OpResult::BorrowOk { borrow_id, license } = &first_ack.result else {
            continue;
        };
        verdict.near_now_borrows += 1;
        let ops = borrow.op_ids(history);
        let violation = |detail: String| {
            Violation::new(ViolationKind::ClockStamp, detail)
                .license(&borrow.license)
                .node(&first_ack.node)
                .borrow_ids([borrow_id])
                .ops(ops.iter().copied())
                .at(first_ack.invoke)
        };
        let Some((start, _)) = license_interval(license) else {
            verdict.violations.push(violation(
                "the acknowledged license string of a near-now borrow cannot be read, so its start is unknown".to_string(),
            ));
            continue;
        };
        let invoked = borrow.first_invoke(history);
        let answered = borrow.first_answer(history).unwrap_or(invoked);
        let (Some(lo_ms), Some(hi_ms)) = (history.wall_ms(invoked), history.wall_ms(answered))
        else {
            no_clock += 1;
            continue;
        };
        verdict.checked += 1;
        let offset = stamp_offset_ms(start, lo_ms, hi_ms);
        if offset < 0 {
            verdict.earliest_offset_ms =
                Some(verdict.earliest_offset_ms.map_or(offset, |e| e.min(offset)));
        } else if offset > 0 {
            verdict.latest_offset_ms =
                Some(verdict.latest_offset_ms.map_or(offset, |l| l.max(offset)));
        }
        if offset.abs() > tolerance_ms {
            let window = format!("{} – {}", wall_text(lo_ms), wall_text(hi_ms));
            verdict.violations.push(violation(format!(
                "node {} stamped the near-now borrow's start {}, {:.3} s {} the client's wall clock window of the call ({window}; tolerance {:.3} s)",
                first_ack.node,
                instant_text(start),
                offset.unsigned_abs() as f64 / 1e3,
                if offset < 0 { "before" } else { "after" },
                tolerance_ms as f64 / 1e3
            )));
        }
    }
    if no_clock > 0 {
        verdict.warnings.push(format!(
            "{no_clock} near-now borrows were not checked against the client's clock: the history has no wall clock start"
        ));
    }
    verdict
}

/// A wall clock instant in milliseconds, for people.
fn wall_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|moment| moment.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}
