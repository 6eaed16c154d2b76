//! Durability: what the cluster acknowledged survives the faults.
//!
//! Judged on the final reads taken on every node after healing:
//! - every acknowledged borrow is still known (`GetBorrowedLicenseV1` finds it), whether
//!   or not it was returned since;
//! - one that nobody tried to return answers the very license string it was
//!   acknowledged with, and is in the node's `ListLicensesV1` under its license (a
//!   return that got no answer may have ended the borrow, so such a borrow is exempt
//!   from both, and a returned borrow's document may have changed);
//! - one whose return was acknowledged is not listed any more.

use serde::{Deserialize, Serialize};

use super::model::Digest;
use super::{Verdict, Violation, ViolationKind};
use crate::history::{FinalReads, NodeFinalRead, OpResult};

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

/// A failed read for a report.
fn describe(result: &OpResult) -> String {
    match result {
        OpResult::Indeterminate { reason } => reason.clone(),
        OpResult::Failed { code, reason } => format!("error {code}: {reason}"),
        other => format!("unexpected answer {}", other.name()),
    }
}
