//! Durability: what the cluster acknowledged survives the faults.
//!
//! Judged on the final reads taken on every node after healing:
//! - every acknowledged borrow is still known (`GetBorrowedLicenseV1` finds it), whether
//!   or not it was returned since;
//! - one that nobody tried to return answers the very license string it was
//!   acknowledged with, and is in the node's `ListLicensesV1` under its license (a
//!   return that got no answer may have ended the borrow, so such a borrow is exempt
//!   from both, and a returned borrow's document may have changed);
//! - one whose return was acknowledged is not listed any more;
//! - every node's final list is the same: the same borrows, with the same hosts and
//!   intervals, under each license (once healed and idle, the replicas agree).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::model::{interval_text, Digest};
use super::{Verdict, Violation, ViolationKind};
use crate::history::{FinalReads, ListedBorrow, NodeFinalRead, OpResult};

/// The durability check's findings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurabilityVerdict {
    /// Nodes whose final reads were checked; 0 means the check did not run.
    pub nodes: usize,
    /// Acknowledged borrows checked on each node.
    pub borrows: usize,
    /// What is wrong.
    pub violations: Vec<Violation>,
}

impl DurabilityVerdict {
    /// Pass or fail.
    pub fn verdict(&self) -> Verdict {
        Verdict::of(&self.violations)
    }
}

/// Runs the durability check.
pub(crate) fn check(digest: &Digest<'_>, final_reads: &FinalReads) -> DurabilityVerdict {
    let mut violations = Vec::new();
    for read in &final_reads.nodes {
        check_node(digest, read, &mut violations);
    }
    violations.extend(agreement(final_reads));
    DurabilityVerdict {
        nodes: final_reads.nodes.len(),
        borrows: digest.acks.len(),
        violations,
    }
}

fn check_node(digest: &Digest<'_>, read: &NodeFinalRead, violations: &mut Vec<Violation>) {
    let node = read.node.as_str();
    let listed = match &read.list {
        Some(OpResult::ListOk { licenses }) => Some(licenses),
        Some(other) => {
            violations.push(
                Violation::new(
                    ViolationKind::UnreadableNode,
                    format!("the final list failed: {}", describe(other)),
                )
                .node(node),
            );
            None
        }
        None => {
            violations.push(
                Violation::new(
                    ViolationKind::MissingFinalRead,
                    "no final list was recorded for this node",
                )
                .node(node),
            );
            None
        }
    };

    for (&id, ack) in &digest.acks {
        let license = digest.borrows[ack.borrow].license.as_str();
        let possibly_returned = digest.possibly_returned(id);
        let violation = |kind, detail: String| {
            Violation::new(kind, detail)
                .license(license)
                .node(node)
                .borrow_ids([id])
                .ops(ack.ops.iter().copied())
        };
        match read.gets.get(id) {
            Some(OpResult::GetOk { license: answered }) => {
                if !possibly_returned && *answered != ack.license_string {
                    violations.push(violation(
                        ViolationKind::AlteredLicense,
                        format!(
                            "the node answers another license string than the one acknowledged at {}",
                            super::model::seconds(ack.acked_at)
                        ),
                    ));
                }
            }
            Some(OpResult::NotFound) => violations.push(violation(
                ViolationKind::LostBorrow,
                format!(
                    "acknowledged at {} but the node does not know the borrow (34)",
                    super::model::seconds(ack.acked_at)
                ),
            )),
            Some(other) => violations.push(violation(
                ViolationKind::UnreadableNode,
                format!("the final get failed: {}", describe(other)),
            )),
            None => violations.push(violation(
                ViolationKind::MissingFinalRead,
                "no final get was recorded for this acknowledged borrow".to_string(),
            )),
        }

        let Some(listed) = listed else {
            continue;
        };
        let shown = listed
            .get(license)
            .is_some_and(|borrows| borrows.iter().any(|borrow| borrow.borrow_id == id));
        if !possibly_returned && !shown {
            violations.push(violation(
                ViolationKind::LostBorrow,
                format!(
                    "acknowledged at {}, never returned, but missing from the node's list",
                    super::model::seconds(ack.acked_at)
                ),
            ));
        }
        if shown && digest.surely_returned(id) {
            violations.push(violation(
                ViolationKind::ResurrectedBorrow,
                "its return was acknowledged but the node still lists it".to_string(),
            ));
        }
    }
}

/// What a final list shows: license → (borrow id, host, from, until), sorted.
type Listing<'r> = BTreeMap<&'r str, BTreeSet<(&'r str, &'r str, i64, i64)>>;

fn listing(licenses: &BTreeMap<String, Vec<ListedBorrow>>) -> Listing<'_> {
    licenses
        .iter()
        .map(|(license, borrows)| {
            let shown = borrows
                .iter()
                .map(|b| (b.borrow_id.as_str(), b.host_id.as_str(), b.from, b.until))
                .collect();
            (license.as_str(), shown)
        })
        .collect()
}

/// Every node's final list must be the same: one violation per node whose list differs
/// from the one most nodes gave (the first node's among equals).
fn agreement(final_reads: &FinalReads) -> Vec<Violation> {
    let lists: Vec<(&str, Listing<'_>)> = final_reads
        .nodes
        .iter()
        .filter_map(|read| match &read.list {
            Some(OpResult::ListOk { licenses }) => Some((read.node.as_str(), listing(licenses))),
            _ => None,
        })
        .collect();
    // The reference: the listing most nodes agree on.
    let agreeing = |listing: &Listing<'_>| lists.iter().filter(|(_, l)| l == listing).count();
    let Some((reference_node, reference)) = lists
        .iter()
        .enumerate()
        .max_by_key(|(at, (_, listing))| (agreeing(listing), std::cmp::Reverse(*at)))
        .map(|(_, entry)| entry)
    else {
        return Vec::new();
    };
    let same: Vec<&str> = lists
        .iter()
        .filter(|(_, listing)| listing == reference)
        .map(|(node, _)| *node)
        .collect();
    let mut violations = Vec::new();
    for (node, listing) in &lists {
        if listing == reference {
            continue;
        }
        let mut differences = Vec::new();
        let mut ids = BTreeSet::new();
        let licenses: BTreeSet<&str> = listing.keys().chain(reference.keys()).copied().collect();
        let empty = BTreeSet::new();
        for license in licenses {
            let here = listing.get(license);
            let there = reference.get(license);
            if here.is_none() || there.is_none() {
                let by = if here.is_some() { node } else { reference_node };
                differences.push(format!("license {license} is listed by {by} only"));
            }
            let (here, there) = (here.unwrap_or(&empty), there.unwrap_or(&empty));
            let only_here = here.difference(there).map(|entry| (entry, *node));
            let only_there = there.difference(here).map(|entry| (entry, *reference_node));
            for ((id, host, from, until), by) in only_here.chain(only_there) {
                ids.insert(*id);
                differences.push(format!(
                    "{license}: {by} shows {id} (host {host} {})",
                    interval_text((*from, *until))
                ));
            }
        }
        violations.push(
            Violation::new(
                ViolationKind::DivergentFinalLists,
                format!(
                    "node {node}'s final list differs from that of {} ({}): {}",
                    same.join(", "),
                    if same.len() > 1 {
                        "which agree"
                    } else {
                        "the first node read"
                    },
                    differences.join("; ")
                ),
            )
            .node(node)
            .borrow_ids(ids),
        );
    }
    violations
}

/// A failed read for a report.
fn describe(result: &OpResult) -> String {
    match result {
        OpResult::Indeterminate { reason } => reason.clone(),
        OpResult::Failed { code, reason } => format!("error {code}: {reason}"),
        other => format!("unexpected answer {}", other.name()),
    }
}
