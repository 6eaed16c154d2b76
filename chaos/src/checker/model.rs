//! What every check needs from a history: intervals and their overlap, logical borrows
//! (all attempts of one idempotency key), acknowledged borrows and returns, the final
//! reads as operations, and what a license string says.
//!
//! # Near-now borrows
//! A borrow sent without `validFrom` starts at the server's clock; the client learns the
//! start only from the license string of the answer (or from a later read). The checks
//! give such a borrow the interval `[start, until)` where `start` is the one the first
//! readable acknowledgement states, or else the client's wall clock at its first
//! invocation. That is only an estimate, and the checks rely on it only where it cannot
//! matter: while every near-now start lies before every near-now end, all near-now
//! borrows of a license overlap each other whatever their exact starts, so the count
//! alone decides them. The linearizability check verifies that premise per license
//! ([`near_now_premise`]) and leaves a license undecided when it does not hold (a run
//! longer than the two hours the workload's borrows last).

use std::collections::BTreeMap;

use licensed::borrow::document::{decode, LicenseDocument};
use licensed::borrow::time::{parse_instant, DateRole};

use crate::history::{FinalReads, History, Op, OpId, OpKind, OpResult, Time, UnixSeconds};

/// How far (ms) a near-now borrow's stamped start may lie outside the client's wall
/// clock window of its call: the server's leaders stamp only while their clock agrees
/// with a quorum's within 1 s, plus rounding to whole seconds and scheduling delays.
pub(crate) const DEFAULT_CLOCK_TOLERANCE_MS: i64 = 5_000;

/// The most borrows of `intervals` (half-open) that overlap one instant, with the first
/// such instant; `(0, None)` for none.
pub(crate) fn max_overlap(
    intervals: impl IntoIterator<Item = (UnixSeconds, UnixSeconds)>,
) -> (usize, Option<UnixSeconds>) {
    let mut events: Vec<(UnixSeconds, i32)> = Vec::new();
    for (from, until) in intervals {
        if from < until {
            events.push((from, 1));
            events.push((until, -1));
        }
    }
    // Ends sort before starts at the same instant: [1, 5) and [5, 9) do not overlap.
    events.sort_unstable();
    let mut depth: i32 = 0;
    let mut best = (0usize, None);
    for (at, delta) in events {
        depth += delta;
        let current = usize::try_from(depth).unwrap_or(0);
        if current > best.0 {
            best = (current, Some(at));
        }
    }
    best
}

/// The most of `intervals` that overlap one instant inside `[from, until)`.
pub(crate) fn overlap_within(
    intervals: impl IntoIterator<Item = (UnixSeconds, UnixSeconds)>,
    from: UnixSeconds,
    until: UnixSeconds,
) -> usize {
    max_overlap(
        intervals
            .into_iter()
            .map(|(start, end)| (start.max(from), end.min(until))),
    )
    .0
}

/// Whether two half-open intervals share an instant.
pub(crate) fn overlaps(a: (UnixSeconds, UnixSeconds), b: (UnixSeconds, UnixSeconds)) -> bool {
    a.0 < b.1 && b.0 < a.1 && a.0 < a.1 && b.0 < b.1
}

/// One logical borrow: every attempt that shares an idempotency key, or a single attempt
/// without one. Its effect happens at most once.
#[derive(Debug, Clone)]
pub(crate) struct LogicalBorrow {
    /// The idempotency key, if any.
    pub request_id: Option<String>,
    /// The license (from the first attempt).
    pub license: String,
    /// The interval (from the first attempt); for a near-now borrow the start is the
    /// stamped one or an estimate (see the module docs).
    pub interval: (UnixSeconds, UnixSeconds),
    /// Sent without `validFrom`: the server's clock chose the start.
    pub near_now: bool,
    /// For a near-now borrow, the start its first readable acknowledgement states.
    pub stamped: Option<UnixSeconds>,
    /// The requested start, as sent (`None` for a near-now borrow).
    requested_from: Option<UnixSeconds>,
    /// The host (from the first attempt).
    pub host: String,
    /// Every attempt, in invocation order (indices into `History::ops`).
    pub attempts: Vec<usize>,
    /// Attempts answered ok.
    pub acked: Vec<usize>,
    /// Attempts refused with 32.
    pub conflicts: Vec<usize>,
    /// Attempts with no definite answer.
    pub indeterminate: Vec<usize>,
    /// Attempts whose inputs differ from the first one's (a workload bug).
    pub mismatched: Vec<usize>,
}

impl LogicalBorrow {
    /// The distinct borrow ids the attempts were acknowledged with, in first-seen order.
    pub fn acked_ids<'h>(&self, history: &'h History) -> Vec<&'h str> {
        let mut ids: Vec<&str> = Vec::new();
        for &index in &self.acked {
            if let OpResult::BorrowOk { borrow_id, .. } = &history.ops[index].result {
                if !ids.contains(&borrow_id.as_str()) {
                    ids.push(borrow_id);
                }
            }
        }
        ids
    }

    /// Whether some attempt got a definite answer (ok or 32).
    pub fn is_decided(&self) -> bool {
        !self.acked.is_empty() || !self.conflicts.is_empty()
    }

    /// The earliest invocation of an attempt that may have had an effect.
    pub fn first_invoke(&self, history: &History) -> Time {
        self.acked
            .iter()
            .chain(&self.conflicts)
            .chain(&self.indeterminate)
            .map(|&index| history.ops[index].invoke)
            .min()
            .unwrap_or(0)
    }

    /// Whether a borrow of this one's inputs shows as `host` and `interval` in a list:
    /// same host (as the server writes it, upper case) and end, and the same start
    /// unless the server chose it.
    pub fn matches_listing(&self, host: &str, interval: (UnixSeconds, UnixSeconds)) -> bool {
        host.eq_ignore_ascii_case(&self.host)
            && interval.1 == self.interval.1
            && (self.near_now || interval.0 == self.interval.0)
    }

    /// The earliest definite answer: the single effect happened before it.
    pub fn first_answer(&self, history: &History) -> Option<Time> {
        self.acked
            .iter()
            .chain(&self.conflicts)
            .map(|&index| history.ops[index].complete.unwrap_or(Time::MAX))
            .min()
    }

    /// Op ids of every attempt.
    pub fn op_ids(&self, history: &History) -> Vec<OpId> {
        self.attempts
            .iter()
            .map(|&index| history.ops[index].id)
            .collect()
    }
}

/// A borrow id some attempt was acknowledged with.
#[derive(Debug, Clone)]
pub(crate) struct Ack {
    /// The logical borrow (index into `Digest::borrows`) that first got it.
    pub borrow: usize,
    /// Every logical borrow acknowledged with this id (more than one is a violation).
    pub borrows: Vec<usize>,
    /// The signed license string of the first acknowledgement.
    pub license_string: String,
    /// The first acknowledgement's completion.
    pub acked_at: Time,
    /// The acknowledging attempts.
    pub ops: Vec<OpId>,
}

/// The returns issued for one borrow id.
#[derive(Debug, Clone, Default)]
pub(crate) struct Returns {
    /// Returns answered ok.
    pub ok: Vec<usize>,
    /// Returns without a definite answer.
    pub maybe: Vec<usize>,
}

impl Returns {
    /// Whether a return may have taken effect.
    pub fn possibly_returned(&self) -> bool {
        !self.ok.is_empty() || !self.maybe.is_empty()
    }

    /// The earliest invocation of a return that may have taken effect.
    pub fn first_invoke(&self, history: &History) -> Option<Time> {
        self.ok
            .iter()
            .chain(&self.maybe)
            .map(|&index| history.ops[index].invoke)
            .min()
    }
}

/// The facts the checks share, computed once.
pub(crate) struct Digest<'h> {
    /// The history.
    pub history: &'h History,
    /// The final reads as operations ([`History::final_read_ops`]), checked like every
    /// other read.
    pub finals: Vec<Op>,
    /// Every logical borrow, ordered by first attempt.
    pub borrows: Vec<LogicalBorrow>,
    /// Every acknowledged borrow id.
    pub acks: BTreeMap<&'h str, Ack>,
    /// Returns by borrow id.
    pub returns: BTreeMap<&'h str, Returns>,
}

impl<'h> Digest<'h> {
    /// Digests `history` with the final reads `final_reads` (usually the history's own).
    pub fn new(history: &'h History, final_reads: &FinalReads) -> Digest<'h> {
        let borrows = logical_borrows(history);
        let last = history.ops.iter().map(|op| op.id).max().unwrap_or(0);
        // Final reads without a window come after everything the workload did.
        let finals = final_reads.to_ops(last + 1, history.workload_end_time() + 1);
        let mut acks: BTreeMap<&'h str, Ack> = BTreeMap::new();
        for (number, borrow) in borrows.iter().enumerate() {
            for &index in &borrow.acked {
                let op = &history.ops[index];
                let OpResult::BorrowOk { borrow_id, license } = &op.result else {
                    continue;
                };
                let acked_at = op.complete.unwrap_or(op.invoke);
                let ack = acks.entry(borrow_id.as_str()).or_insert_with(|| Ack {
                    borrow: number,
                    borrows: Vec::new(),
                    license_string: license.clone(),
                    acked_at,
                    ops: Vec::new(),
                });
                if !ack.borrows.contains(&number) {
                    ack.borrows.push(number);
                }
                if acked_at < ack.acked_at {
                    ack.acked_at = acked_at;
                }
                ack.ops.push(op.id);
            }
        }
        let mut returns: BTreeMap<&'h str, Returns> = BTreeMap::new();
        for (index, op) in history.ops.iter().enumerate() {
            if let OpKind::Return { borrow_id } = &op.kind {
                let entry = returns.entry(borrow_id.as_str()).or_default();
                match op.result {
                    OpResult::ReturnOk => entry.ok.push(index),
                    OpResult::Indeterminate { .. } => entry.maybe.push(index),
                    _ => {}
                }
            }
        }
        Digest {
            history,
            finals,
            borrows,
            acks,
            returns,
        }
    }

    /// Every operation: the workload's, then the final reads.
    pub fn all_ops(&self) -> impl Iterator<Item = &Op> {
        self.history.ops.iter().chain(&self.finals)
    }

    /// The last time anything happened, final reads included.
    pub fn end_time(&self) -> Time {
        self.finals
            .iter()
            .map(|op| op.complete.unwrap_or(op.invoke).max(op.invoke))
            .fold(self.history.end_time(), Time::max)
    }

    /// The op at `index` of the history.
    pub fn op(&self, index: usize) -> &'h Op {
        &self.history.ops[index]
    }

    /// The license of an acknowledged borrow id.
    pub fn license_of(&self, borrow_id: &str) -> Option<&str> {
        self.acks
            .get(borrow_id)
            .map(|ack| self.borrows[ack.borrow].license.as_str())
    }

    /// Whether a return may have ended `borrow_id`.
    pub fn possibly_returned(&self, borrow_id: &str) -> bool {
        self.returns
            .get(borrow_id)
            .is_some_and(Returns::possibly_returned)
    }

    /// Whether a return of `borrow_id` was acknowledged.
    pub fn surely_returned(&self, borrow_id: &str) -> bool {
        self.returns
            .get(borrow_id)
            .is_some_and(|returns| !returns.ok.is_empty())
    }
}

/// Groups borrow attempts into logical borrows by idempotency key.
fn logical_borrows(history: &History) -> Vec<LogicalBorrow> {
    let mut borrows = group_attempts(history);
    for borrow in &mut borrows {
        if borrow.near_now {
            resolve_near_now(history, borrow);
        }
    }
    borrows
}

/// Gives a near-now borrow its start: the one its first readable acknowledgement
/// states, else the client's clock at its first invocation, else (a history without a
/// wall clock) two hours before its end.
fn resolve_near_now(history: &History, borrow: &mut LogicalBorrow) {
    borrow.stamped = borrow
        .acked
        .iter()
        .find_map(|&index| match &history.ops[index].result {
            OpResult::BorrowOk { license, .. } => license_interval(license).map(|(from, _)| from),
            _ => None,
        });
    let invoked = history
        .wall_ms(borrow.first_invoke(history))
        .map(|ms| ms.div_euclid(1_000));
    let start = borrow
        .stamped
        .or(invoked)
        .unwrap_or(borrow.interval.1.saturating_sub(2 * 3_600));
    borrow.interval.0 = start;
}

/// Collects the attempts of each logical borrow.
fn group_attempts(history: &History) -> Vec<LogicalBorrow> {
    let mut borrows: Vec<LogicalBorrow> = Vec::new();
    let mut by_request: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, op) in history.ops.iter().enumerate() {
        let OpKind::Borrow {
            license,
            from,
            until,
            host,
            request_id,
        } = &op.kind
        else {
            continue;
        };
        let existing = request_id
            .as_deref()
            .and_then(|key| by_request.get(key).copied());
        let number = match existing {
            Some(number) => {
                let borrow = &mut borrows[number];
                if borrow.license != *license
                    || borrow.requested_from != *from
                    || borrow.interval.1 != *until
                    || borrow.host != *host
                {
                    borrow.mismatched.push(index);
                }
                number
            }
            None => {
                borrows.push(LogicalBorrow {
                    request_id: request_id.clone(),
                    license: license.clone(),
                    interval: (from.unwrap_or_default(), *until),
                    near_now: from.is_none(),
                    stamped: None,
                    requested_from: *from,
                    host: host.clone(),
                    attempts: Vec::new(),
                    acked: Vec::new(),
                    conflicts: Vec::new(),
                    indeterminate: Vec::new(),
                    mismatched: Vec::new(),
                });
                let number = borrows.len() - 1;
                if let Some(key) = request_id.as_deref() {
                    by_request.insert(key, number);
                }
                number
            }
        };
        let borrow = &mut borrows[number];
        borrow.attempts.push(index);
        match op.result {
            OpResult::BorrowOk { .. } => borrow.acked.push(index),
            OpResult::Conflict => borrow.conflicts.push(index),
            OpResult::Indeterminate { .. } => borrow.indeterminate.push(index),
            // A definite refusal of another kind had no effect; results that do not
            // belong to a borrow are treated the same way.
            _ => {}
        }
    }
    borrows
}

/// What a license string states, when it can be read (the signature is not checked:
/// the checks compare strings, they do not trust them).
pub(crate) fn license_document(license: &str) -> Option<LicenseDocument> {
    decode(license).ok().map(|(document, _, _)| document)
}

/// The interval a license string states.
pub(crate) fn license_interval(license: &str) -> Option<(UnixSeconds, UnixSeconds)> {
    document_interval(&license_document(license)?)
}

fn document_interval(document: &LicenseDocument) -> Option<(UnixSeconds, UnixSeconds)> {
    let from = parse_instant(&document.valid_from, DateRole::Start, "validFrom").ok()?;
    let until = parse_instant(&document.valid_until, DateRole::End, "validUntil").ok()?;
    Some((from, until))
}

/// How an answered license string relates to the acknowledged one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sameness {
    /// The very same string.
    Identical,
    /// The same document except for an end moved earlier (not before its start): what
    /// a return does to a borrow.
    Shortened,
    /// Anything else (or a string that cannot be read).
    Different,
}

/// Compares an answered license string with the acknowledged one.
pub(crate) fn compare_licenses(acknowledged: &str, answered: &str) -> Sameness {
    if acknowledged == answered {
        return Sameness::Identical;
    }
    let (Some(before), Some(after)) = (license_document(acknowledged), license_document(answered))
    else {
        return Sameness::Different;
    };
    let (Some((from, until)), Some((after_from, after_until))) =
        (document_interval(&before), document_interval(&after))
    else {
        return Sameness::Different;
    };
    let rest_equal = LicenseDocument {
        valid_until: before.valid_until.clone(),
        ..after
    } == before;
    if rest_equal && after_from == from && from <= after_until && after_until < until {
        Sameness::Shortened
    } else {
        Sameness::Different
    }
}

/// The premise near-now borrows need (see the module docs), for the near-now borrows of
/// `license`: `Ok(())` when every one of them starts before any of them ends, else why
/// that cannot be shown. A start is bounded by the wall clock at the end of the history
/// plus `tolerance_ms` (or the stamped start, if later).
pub(crate) fn near_now_premise(
    digest: &Digest<'_>,
    license: &str,
    tolerance_ms: i64,
) -> Result<(), String> {
    let history = digest.history;
    let near_now: Vec<&LogicalBorrow> = digest
        .borrows
        .iter()
        .filter(|borrow| borrow.license == license && borrow.near_now)
        .collect();
    let Some(earliest_end) = near_now.iter().map(|borrow| borrow.interval.1).min() else {
        return Ok(());
    };
    if near_now.len()
        < digest
            .borrows
            .iter()
            .filter(|b| b.license == license)
            .count()
    {
        return Err(
            "the license has borrows with and without validFrom; near-now borrows are only checked on a license of their own"
                .to_string(),
        );
    }
    let Some(end_ms) = history.wall_ms(digest.end_time()) else {
        return Err(
            "the history has near-now borrows but no wall clock start, so their starts cannot be bounded"
                .to_string(),
        );
    };
    let latest_start = near_now.iter().filter_map(|borrow| borrow.stamped).fold(
        end_ms.saturating_add(tolerance_ms).div_euclid(1_000) + 1,
        UnixSeconds::max,
    );
    if latest_start < earliest_end {
        Ok(())
    } else {
        Err(format!(
            "a near-now borrow may start at {} but another ends at {}: the run is too long for near-now borrows to overlap whatever their starts (they must end more than the run's length after they are sent)",
            instant_text(latest_start),
            instant_text(earliest_end)
        ))
    }
}

/// `12.345s`: a history time for people.
pub(crate) fn seconds(time: Time) -> String {
    format!("{:.3}s", time as f64 / 1e9)
}

/// An interval in RFC 3339, for people.
pub(crate) fn interval_text((from, until): (UnixSeconds, UnixSeconds)) -> String {
    format!("[{}, {})", instant_text(from), instant_text(until))
}

/// An instant in RFC 3339, or the raw number when out of range.
pub(crate) fn instant_text(at: UnixSeconds) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|moment| moment.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| at.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_treats_intervals_as_half_open() {
        assert_eq!(max_overlap([(1, 5), (5, 9)]).0, 1);
        assert_eq!(max_overlap([(1, 5), (4, 9), (4, 6)]), (3, Some(4)));
        assert_eq!(
            max_overlap([(3, 3)]).0,
            0,
            "an empty interval holds nothing"
        );
        assert_eq!(overlap_within([(1, 5), (4, 9)], 5, 9), 1);
        assert_eq!(overlap_within([(1, 5), (4, 9)], 0, 10), 2);
        assert!(overlaps((1, 5), (4, 9)));
        assert!(!overlaps((1, 5), (5, 9)));
    }
}
