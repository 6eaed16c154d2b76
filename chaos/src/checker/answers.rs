//! Answers: what each answer says must agree with what is known without any ordering.
//!
//! - Every successful list (final lists included) shows exactly the pool's licenses:
//!   one that leaves a license out, or shows one the pool does not have, is wrong
//!   whatever the order of events (the pool never changes during a run).
//! - A list shows a borrow with the host and interval it was acknowledged with (for a
//!   near-now borrow: the start its acknowledgement stated), and every list describes a
//!   borrow id the same way: a borrow that is listed at all is neither returned nor
//!   expired, so nothing about it can have changed.
//! - A borrow's acknowledged license string states the host and interval asked for (the
//!   start only when one was asked for); every acknowledgement of one logical borrow
//!   (retries of one request id) carries the same string, and so does every get of it.
//!   The one change allowed is the one a return makes (the end moved earlier), and only
//!   when a return of the borrow was sent before the answer came.
//!
//! The final gets are judged by the durability check, which compares them with the
//! acknowledged string too.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::model::{
    compare_licenses, instant_text, interval_text, license_document, license_interval, seconds,
    Digest, LogicalBorrow, Sameness,
};
use super::{Verdict, Violation, ViolationKind};
use crate::history::{license_key, Op, OpKind, OpResult, Time, UnixSeconds};

/// Violations reported per kind; more would only repeat the first ones.
const MAX_PER_KIND: usize = 20;

/// The answers check's findings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswersVerdict {
    /// Successful lists checked (final lists included).
    pub lists: usize,
    /// Successful gets of acknowledged borrows checked (final gets left out).
    pub gets: usize,
    /// Acknowledged borrow answers checked.
    pub acknowledgements: usize,
    /// What is wrong.
    pub violations: Vec<Violation>,
}

impl AnswersVerdict {
    /// Pass or fail.
    pub fn verdict(&self) -> Verdict {
        Verdict::of(&self.violations)
    }
}

/// Collects violations, at most [`MAX_PER_KIND`] of each kind, counting the rest.
#[derive(Default)]
struct Found {
    violations: Vec<Violation>,
    shown: BTreeMap<ViolationKind, usize>,
    more: BTreeMap<ViolationKind, usize>,
}

impl Found {
    fn push(&mut self, violation: Violation) {
        let shown = self.shown.entry(violation.kind).or_default();
        if *shown < MAX_PER_KIND {
            *shown += 1;
            self.violations.push(violation);
        } else {
            *self.more.entry(violation.kind).or_default() += 1;
        }
    }

    fn finish(mut self) -> Vec<Violation> {
        for (kind, more) in self.more {
            self.violations.push(Violation::new(
                kind,
                format!("{more} more answers of this kind are wrong (not listed one by one)"),
            ));
        }
        self.violations
    }
}

/// Runs the answers check; `licenses` is the pool (its keys; no check of the listed
/// set when it is empty).
pub(crate) fn check(digest: &Digest<'_>, licenses: &[(String, u64)]) -> AnswersVerdict {
    let mut found = Found::default();
    let pool: BTreeSet<&str> = licenses.iter().map(|(key, _)| key.as_str()).collect();
    let lists = check_lists(digest, &pool, &mut found);
    let acknowledgements = check_acknowledgements(digest, &mut found);
    let gets = check_gets(digest, &mut found);
    AnswersVerdict {
        lists,
        gets,
        acknowledgements,
        violations: found.finish(),
    }
}

/// How a list described a borrow: host and interval.
type Description = (String, (UnixSeconds, UnixSeconds));

fn check_lists(digest: &Digest<'_>, pool: &BTreeSet<&str>, found: &mut Found) -> usize {
    let mut lists = 0;
    // The first description of each borrow id, and the op that gave it.
    let mut first: BTreeMap<&str, (Description, &Op)> = BTreeMap::new();
    for op in digest.all_ops() {
        let (OpKind::List, OpResult::ListOk { licenses }) = (&op.kind, &op.result) else {
            continue;
        };
        lists += 1;
        if !pool.is_empty() {
            for &license in pool {
                if !licenses.contains_key(license) {
                    found.push(
                        Violation::new(
                            ViolationKind::MissingLicense,
                            format!(
                                "node {} answered a list without license {license}, which is in the pool",
                                op.node
                            ),
                        )
                        .license(license)
                        .node(&op.node)
                        .ops([op.id])
                        .at(op.invoke),
                    );
                }
            }
            for license in licenses.keys() {
                if !pool.contains(license.as_str()) {
                    found.push(
                        Violation::new(
                            ViolationKind::UnknownLicense,
                            format!(
                                "node {} listed license {license}, which is not in the pool",
                                op.node
                            ),
                        )
                        .license(license)
                        .node(&op.node)
                        .ops([op.id])
                        .at(op.invoke),
                    );
                }
            }
        }
        for (license, borrows) in licenses {
            for listed in borrows {
                let id = listed.borrow_id.as_str();
                let shown: Description = (listed.host_id.clone(), (listed.from, listed.until));
                let wrong = |detail: String| {
                    Violation::new(ViolationKind::AlteredListing, detail)
                        .license(license)
                        .node(&op.node)
                        .borrow_ids([id])
                        .at(op.invoke)
                };
                if let Some(ack) = digest.acks.get(id) {
                    let borrow = &digest.borrows[ack.borrow];
                    let start_ok = borrow.stamped.is_none_or(|start| start == listed.from);
                    if borrow.license != *license
                        || !borrow.matches_listing(&listed.host_id, (listed.from, listed.until))
                        || !start_ok
                    {
                        let asked = if borrow.near_now {
                            format!(
                                "until {} from the server's clock{}",
                                instant_text(borrow.interval.1),
                                borrow
                                    .stamped
                                    .map(|start| format!(" (stamped {})", instant_text(start)))
                                    .unwrap_or_default()
                            )
                        } else {
                            interval_text(borrow.interval)
                        };
                        found.push(
                            wrong(format!(
                                "node {} lists it under {license} as host {} {}, but it was acknowledged for {} as host {} {asked}",
                                op.node,
                                listed.host_id,
                                interval_text((listed.from, listed.until)),
                                borrow.license,
                                borrow.host,
                            ))
                            .ops(ack.ops.iter().copied().chain([op.id])),
                        );
                        continue;
                    }
                }
                match first.get(id) {
                    None => {
                        first.insert(id, (shown, op));
                    }
                    Some((earlier, by)) if *earlier != shown => found.push(
                        wrong(format!(
                            "node {} lists it as host {} {}, but node {} listed it as host {} {} (op {})",
                            op.node,
                            shown.0,
                            interval_text(shown.1),
                            by.node,
                            earlier.0,
                            interval_text(earlier.1),
                            by.id
                        ))
                        .ops([by.id, op.id]),
                    ),
                    Some(_) => {}
                }
            }
        }
    }
    lists
}

/// Acknowledgements state what was asked for, and retries carry the first string.
fn check_acknowledgements(digest: &Digest<'_>, found: &mut Found) -> usize {
    let mut checked = 0;
    for borrow in &digest.borrows {
        // The earliest answered acknowledgement of each id is the reference.
        let mut reference: BTreeMap<&str, (&str, &Op)> = BTreeMap::new();
        let mut acked: Vec<&Op> = borrow.acked.iter().map(|&index| digest.op(index)).collect();
        acked.sort_by_key(|op| (op.complete.unwrap_or(Time::MAX), op.id));
        for op in acked {
            let OpResult::BorrowOk { borrow_id, license } = &op.result else {
                continue;
            };
            checked += 1;
            let mismatch = |detail: String| {
                Violation::new(ViolationKind::LicenseMismatch, detail)
                    .license(&borrow.license)
                    .node(&op.node)
                    .borrow_ids([borrow_id])
            };
            match reference.get(borrow_id.as_str()) {
                None => {
                    reference.insert(borrow_id, (license, op));
                    if let Some(problem) = states_request(borrow, license) {
                        found.push(mismatch(problem).ops([op.id]).at(op.invoke));
                    }
                }
                Some((first, by)) => {
                    let returned = returned_before(digest, borrow_id, op.complete);
                    let allowed = match compare_licenses(first, license) {
                        Sameness::Identical => true,
                        Sameness::Shortened => returned,
                        Sameness::Different => false,
                    };
                    if !allowed {
                        found.push(
                            mismatch(format!(
                                "request id {:?}: node {} acknowledged the retry with another license string than node {} gave the first acknowledgement (op {})",
                                borrow.request_id.as_deref().unwrap_or_default(),
                                op.node,
                                by.node,
                                by.id
                            ))
                            .ops([by.id, op.id])
                            .at(op.invoke),
                        );
                    }
                }
            }
        }
    }
    checked
}

/// Why an acknowledged license string does not state the borrow asked for, if it can
/// be read (the tests' stand-in strings cannot, and are not judged here).
fn states_request(borrow: &LogicalBorrow, license: &str) -> Option<String> {
    let document = license_document(license)?;
    let (from, until) = license_interval(license)?;
    let mut problems = Vec::new();
    if !document.host_id.eq_ignore_ascii_case(&borrow.host) {
        problems.push(format!(
            "host {} instead of {}",
            document.host_id, borrow.host
        ));
    }
    if license_key(&document.feature, &document.uuid) != borrow.license {
        problems.push(format!(
            "license {}/{} instead of {}",
            document.feature, document.uuid, borrow.license
        ));
    }
    if until != borrow.interval.1 || (!borrow.near_now && from != borrow.interval.0) {
        let asked = if borrow.near_now {
            format!("[server's clock, {})", instant_text(borrow.interval.1))
        } else {
            interval_text(borrow.interval)
        };
        problems.push(format!(
            "interval {} instead of {asked}",
            interval_text((from, until))
        ));
    }
    (!problems.is_empty()).then(|| {
        format!(
            "the acknowledged license string states {}",
            problems.join(" and ")
        )
    })
}

/// Whether a return of `borrow_id` was sent before `time` (so it may have shortened
/// the borrow by then).
fn returned_before(digest: &Digest<'_>, borrow_id: &str, time: Option<Time>) -> bool {
    let sent = digest
        .returns
        .get(borrow_id)
        .and_then(|returns| returns.first_invoke(digest.history));
    sent.is_some_and(|sent| sent <= time.unwrap_or(Time::MAX))
}

/// Gets of acknowledged borrows answer the acknowledged string.
fn check_gets(digest: &Digest<'_>, found: &mut Found) -> usize {
    let mut checked = 0;
    for op in &digest.history.ops {
        let (OpKind::Get { borrow_id }, OpResult::GetOk { license }) = (&op.kind, &op.result)
        else {
            continue;
        };
        let Some(ack) = digest.acks.get(borrow_id.as_str()) else {
            continue;
        };
        checked += 1;
        let allowed = match compare_licenses(&ack.license_string, license) {
            Sameness::Identical => true,
            Sameness::Shortened => returned_before(digest, borrow_id, op.complete),
            Sameness::Different => false,
        };
        if !allowed {
            let borrow = &digest.borrows[ack.borrow];
            found.push(
                Violation::new(
                    ViolationKind::LicenseMismatch,
                    format!(
                        "node {} answered the get with another license string than the one acknowledged at {}{}",
                        op.node,
                        seconds(ack.acked_at),
                        if digest.possibly_returned(borrow_id) {
                            " (not just the end moved by a return sent before the get was answered)"
                        } else {
                            ""
                        }
                    ),
                )
                .license(&borrow.license)
                .node(&op.node)
                .borrow_ids([borrow_id])
                .ops(ack.ops.iter().copied().chain([op.id]))
                .at(op.invoke),
            );
        }
    }
    checked
}
