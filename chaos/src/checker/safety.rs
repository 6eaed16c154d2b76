//! Safety: no license is over-borrowed, and one idempotency key is one borrow.
//!
//! Judged from what the cluster said, without trusting any ordering the search would
//! have to find:
//! - from its acknowledgement until the first return that may have ended it, a borrow
//!   is surely held; at no moment of the run may the surely-held borrows of a license
//!   overlap more than its count;
//! - each node's final list, together with every acknowledged borrow nobody tried to
//!   return, may not overlap more than the count either;
//! - a request id acknowledged with two borrow ids is a double borrow, and one borrow
//!   id acknowledged to two logical borrows is a reused id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::{instant_text, interval_text, max_overlap, overlap_within, seconds, Digest};
use super::{Verdict, Violation, ViolationKind};
use crate::history::{FinalReads, OpResult, Time, UnixSeconds};

/// Over-borrows reported per license and source; more would only repeat the first.
const MAX_OVER_BORROWS: usize = 5;

/// The safety check's findings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyVerdict {
    /// Acknowledged borrow ids considered.
    pub acknowledged_borrows: usize,
    /// What is wrong.
    pub violations: Vec<Violation>,
}

impl SafetyVerdict {
    /// Pass or fail.
    pub fn verdict(&self) -> Verdict {
        Verdict::of(&self.violations)
    }
}

/// A borrow as the capacity sweep sees it.
struct Held<'h> {
    id: &'h str,
    interval: (UnixSeconds, UnixSeconds),
}

/// Runs the safety check.
pub(crate) fn check(
    digest: &Digest<'_>,
    counts: &BTreeMap<&str, u64>,
    final_reads: &FinalReads,
) -> SafetyVerdict {
    let mut violations = idempotency(digest);
    for (&license, &count) in counts {
        violations.extend(over_time(digest, license, count));
        violations.extend(final_state(digest, license, count, final_reads));
    }
    SafetyVerdict {
        acknowledged_borrows: digest.acks.len(),
        violations,
    }
}

/// Double borrows and reused borrow ids.
fn idempotency(digest: &Digest<'_>) -> Vec<Violation> {
    let history = digest.history;
    let mut violations = Vec::new();
    for borrow in &digest.borrows {
        let ids = borrow.acked_ids(history);
        if ids.len() > 1 {
            let first = borrow
                .acked
                .iter()
                .filter_map(|&index| digest.op(index).complete)
                .min();
            let mut violation = Violation::new(
                ViolationKind::DoubleBorrow,
                format!(
                    "request id {:?} (host {}, {}) was acknowledged with {} different borrow ids",
                    borrow.request_id.as_deref().unwrap_or_default(),
                    borrow.host,
                    interval_text(borrow.interval),
                    ids.len()
                ),
            )
            .license(&borrow.license)
            .borrow_ids(&ids)
            .ops(borrow.op_ids(history));
            violation.time = first;
            violations.push(violation);
        }
    }
    for (id, ack) in &digest.acks {
        if ack.borrows.len() > 1 {
            let ops: Vec<_> = ack
                .borrows
                .iter()
                .flat_map(|&number| digest.borrows[number].op_ids(history))
                .collect();
            let license = &digest.borrows[ack.borrow].license;
            violations.push(
                Violation::new(
                    ViolationKind::ReusedBorrowId,
                    format!(
                        "borrow id {id} was acknowledged to {} different logical borrows",
                        ack.borrows.len()
                    ),
                )
                .license(license)
                .borrow_ids([id])
                .ops(ops),
            );
        }
    }
    violations
}

/// Sweeps the run in time order: a borrow is surely held from its acknowledgement until
/// the first return that may have ended it.
fn over_time(digest: &Digest<'_>, license: &str, count: u64) -> Vec<Violation> {
    let history = digest.history;
    // (time, 0 = release / 1 = acquire, id): releases first at equal times, so the
    // sweep never counts a borrow that may already be gone.
    let mut events: Vec<(Time, u8, &str)> = Vec::new();
    let mut intervals: BTreeMap<&str, (UnixSeconds, UnixSeconds)> = BTreeMap::new();
    for (&id, ack) in &digest.acks {
        let borrow = &digest.borrows[ack.borrow];
        if borrow.license != license {
            continue;
        }
        let released = digest
            .returns
            .get(id)
            .and_then(|returns| returns.first_invoke(history));
        if released.is_some_and(|released| released <= ack.acked_at) {
            continue;
        }
        intervals.insert(id, borrow.interval);
        events.push((ack.acked_at, 1, id));
        if let Some(released) = released {
            events.push((released, 0, id));
        }
    }
    events.sort_unstable();

    let mut held: BTreeMap<&str, (UnixSeconds, UnixSeconds)> = BTreeMap::new();
    let mut violations = Vec::new();
    let mut excess = 0usize;
    for (time, change, id) in events {
        let Some(&interval) = intervals.get(id) else {
            continue;
        };
        if change == 0 {
            held.remove(id);
            continue;
        }
        held.insert(id, interval);
        let overlapping = overlap_within(held.values().copied(), interval.0, interval.1);
        if overlapping as u64 > count {
            excess += 1;
            if violations.len() < MAX_OVER_BORROWS {
                let set: Vec<Held<'_>> = held
                    .iter()
                    .map(|(&id, &interval)| Held { id, interval })
                    .collect();
                violations.push(over_borrow(
                    digest,
                    license,
                    count,
                    &set,
                    format!("held at {} of the run", seconds(time)),
                    Some(time),
                ));
            }
        }
    }
    if excess > MAX_OVER_BORROWS {
        violations.push(
            Violation::new(
                ViolationKind::OverBorrow,
                format!(
                    "{} more acknowledgements over-borrowed the license during the run",
                    excess - MAX_OVER_BORROWS
                ),
            )
            .license(license),
        );
    }
    violations
}

/// Each node's final list plus every acknowledged borrow that nobody tried to return.
fn final_state(
    digest: &Digest<'_>,
    license: &str,
    count: u64,
    final_reads: &FinalReads,
) -> Vec<Violation> {
    let mut kept: BTreeMap<&str, (UnixSeconds, UnixSeconds)> = BTreeMap::new();
    for (&id, ack) in &digest.acks {
        let borrow = &digest.borrows[ack.borrow];
        if borrow.license == license && !digest.possibly_returned(id) {
            kept.insert(id, borrow.interval);
        }
    }
    let mut violations = Vec::new();
    for read in &final_reads.nodes {
        let Some(OpResult::ListOk { licenses }) = &read.list else {
            continue;
        };
        let mut state = kept.clone();
        for listed in licenses.get(license).into_iter().flatten() {
            state.insert(&listed.borrow_id, (listed.from, listed.until));
        }
        let set: Vec<Held<'_>> = state
            .iter()
            .map(|(&id, &interval)| Held { id, interval })
            .collect();
        let (depth, _) = max_overlap(set.iter().map(|held| held.interval));
        if depth as u64 > count {
            violations.push(
                over_borrow(
                    digest,
                    license,
                    count,
                    &set,
                    "in the final list together with the acknowledged borrows never returned"
                        .to_string(),
                    None,
                )
                .node(&read.node),
            );
        }
    }
    violations
}

/// Describes the worst overlap of `set`.
fn over_borrow(
    digest: &Digest<'_>,
    license: &str,
    count: u64,
    set: &[Held<'_>],
    when: String,
    time: Option<Time>,
) -> Violation {
    let (depth, instant) = max_overlap(set.iter().map(|held| held.interval));
    let at = instant.unwrap_or_default();
    let culprits: Vec<&Held<'_>> = set
        .iter()
        .filter(|held| held.interval.0 <= at && at < held.interval.1)
        .collect();
    let ops: Vec<_> = culprits
        .iter()
        .filter_map(|held| digest.acks.get(held.id))
        .flat_map(|ack| ack.ops.iter().copied())
        .collect();
    let described: Vec<String> = culprits
        .iter()
        .map(|held| format!("{} {}", held.id, interval_text(held.interval)))
        .collect();
    let mut violation = Violation::new(
        ViolationKind::OverBorrow,
        format!(
            "{depth} borrows overlap at {} but the count is {count} ({when}): {}",
            instant_text(at),
            described.join(", ")
        ),
    )
    .license(license)
    .borrow_ids(culprits.iter().map(|held| held.id))
    .ops(ops);
    violation.time = time;
    violation
}
