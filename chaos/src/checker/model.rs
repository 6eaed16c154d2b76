//! What every check needs from a history: intervals and their overlap, logical borrows
//! (all attempts of one idempotency key), acknowledged borrows and returns.

use std::collections::BTreeMap;

use crate::history::{History, Op, OpId, OpKind, OpResult, Time, UnixSeconds};

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
    /// The interval (from the first attempt).
    pub interval: (UnixSeconds, UnixSeconds),
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
    /// Every logical borrow, ordered by first attempt.
    pub borrows: Vec<LogicalBorrow>,
    /// Every acknowledged borrow id.
    pub acks: BTreeMap<&'h str, Ack>,
    /// Returns by borrow id.
    pub returns: BTreeMap<&'h str, Returns>,
}

impl<'h> Digest<'h> {
    /// Digests `history`.
    pub fn new(history: &'h History) -> Digest<'h> {
        let borrows = logical_borrows(history);
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
            borrows,
            acks,
            returns,
        }
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
                    || borrow.interval != (*from, *until)
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
                    interval: (*from, *until),
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
