//! Liveness: after a fault heals, the cluster borrows again, soon.
//!
//! For each healed fault, the recovery time is measured from the moment the whole
//! cluster is healed (this fault's heal, or later if other faults were still active
//! then: overlapping faults are not expected to be survived one by one) to the first
//! completion of a successful borrow. A recovery slower than the bound is a violation,
//! and so is no recovery at all when the history runs on for longer than the bound.
//!
//! Per node, too: every node a fault hit directly and that is expected to serve again
//! ([`FaultEvent::nodes`]) must itself answer an operation successfully (a borrow, a
//! return, a get or a list answered ok, final reads included; an operation's `node` is
//! where it was sent) within the same bound, measured from the same moment. The
//! figures are kept per fault kind and node.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::model::{seconds, Digest};
use super::{Verdict, Violation, ViolationKind};
use crate::history::{FaultEvent, OpId, OpKind, OpResult, Time};

/// How the cluster recovered from one healed fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// The fault's kind.
    pub kind: String,
    /// What it hit.
    pub target: String,
    /// When it was injected.
    pub start: Time,
    /// When it was healed.
    pub healed_at: Time,
    /// When no fault at all was active any more; `None` if another fault never healed.
    pub all_healed_at: Option<Time>,
    /// The completion of the first successful borrow from then on.
    pub recovered_at: Option<Time>,
    /// The borrow that showed the recovery.
    pub op: Option<OpId>,
    /// `recovered_at - all_healed_at`.
    pub recovery: Option<Time>,
}

/// How one node a fault hit came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecovery {
    /// The fault's kind.
    pub kind: String,
    /// What the fault hit (its description).
    pub target: String,
    /// The node.
    pub node: String,
    /// When the fault was healed.
    pub healed_at: Time,
    /// When measuring started: once no fault at all was active; `None` if another
    /// fault never healed.
    pub from: Option<Time>,
    /// The completion of the node's first successful answer from then on.
    pub answered_at: Option<Time>,
    /// The operation that showed it.
    pub op: Option<OpId>,
    /// `answered_at - from`.
    pub recovery: Option<Time>,
}

/// Recovery times of one kind of fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryStats {
    /// Heals measured.
    pub heals: usize,
    /// Heals with a recovery.
    pub recovered: usize,
    /// Fastest recovery.
    pub min: Option<Time>,
    /// Median recovery (the lower one for an even number).
    pub median: Option<Time>,
    /// Slowest recovery.
    pub max: Option<Time>,
}

impl fmt::Display for RecoveryStats {
    /// `3/4 recovered, min 0.120s median 0.800s max 2.100s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} recovered", self.recovered, self.heals)?;
        if let (Some(min), Some(median), Some(max)) = (self.min, self.median, self.max) {
            write!(
                f,
                ", min {} median {} max {}",
                seconds(min),
                seconds(median),
                seconds(max)
            )?;
        }
        Ok(())
    }
}

/// The liveness check's findings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LivenessVerdict {
    /// The bound applied, nanoseconds.
    pub bound: Time,
    /// One entry per healed fault.
    pub recoveries: Vec<Recovery>,
    /// Statistics per fault kind.
    pub stats: BTreeMap<String, RecoveryStats>,
    /// One entry per healed fault and node it names.
    #[serde(default)]
    pub node_recoveries: Vec<NodeRecovery>,
    /// Statistics per fault kind, then node: how fast each node answered again.
    #[serde(default)]
    pub node_stats: BTreeMap<String, BTreeMap<String, RecoveryStats>>,
    /// Faults never healed (not measured).
    pub unhealed: Vec<FaultEvent>,
    /// What is wrong.
    pub violations: Vec<Violation>,
}

impl LivenessVerdict {
    /// Pass or fail.
    pub fn verdict(&self) -> Verdict {
        Verdict::of(&self.violations)
    }
}

/// Runs the liveness check with `bound` (nanoseconds) as the longest acceptable
/// recovery.
pub(crate) fn check(digest: &Digest<'_>, bound: Time, conflict_counts: bool) -> LivenessVerdict {
    let history = digest.history;
    // Completions that show the cluster deciding a borrow, in time order.
    let mut progress: Vec<(Time, OpId)> = history
        .ops
        .iter()
        .filter(|op| matches!(op.kind, OpKind::Borrow { .. }))
        .filter(|op| match op.result {
            OpResult::BorrowOk { .. } => true,
            OpResult::Conflict => conflict_counts,
            _ => false,
        })
        .filter_map(|op| op.complete.map(|time| (time, op.id)))
        .collect();
    progress.sort_unstable();
    let end = digest.end_time();
    // Per node, the completions of successful answers, in time order.
    let mut answers: BTreeMap<&str, Vec<(Time, OpId)>> = BTreeMap::new();
    for op in digest.all_ops() {
        let success = match op.result {
            OpResult::BorrowOk { .. }
            | OpResult::ReturnOk
            | OpResult::GetOk { .. }
            | OpResult::ListOk { .. } => true,
            OpResult::Conflict | OpResult::NotFound => conflict_counts,
            _ => false,
        };
        if let (true, Some(time)) = (success, op.complete) {
            answers
                .entry(op.node.as_str())
                .or_default()
                .push((time, op.id));
        }
    }
    for times in answers.values_mut() {
        times.sort_unstable();
    }

    let mut verdict = LivenessVerdict {
        bound,
        ..LivenessVerdict::default()
    };
    for fault in &history.faults {
        let Some(healed_at) = fault.end else {
            verdict.unhealed.push(fault.clone());
            continue;
        };
        let all_healed_at = all_healed(&history.faults, healed_at);
        let first = all_healed_at.and_then(|from| {
            let at = progress.partition_point(|&(time, _)| time < from);
            progress.get(at).copied()
        });
        let recovery = Recovery {
            kind: fault.kind.clone(),
            target: fault.target.clone(),
            start: fault.start,
            healed_at,
            all_healed_at,
            recovered_at: first.map(|(time, _)| time),
            op: first.map(|(_, op)| op),
            recovery: all_healed_at.and_then(|from| first.map(|(time, _)| time - from)),
        };
        if let Some(violation) = judge(&recovery, bound, end) {
            verdict.violations.push(violation);
        }
        verdict.recoveries.push(recovery);
        for node in &fault.nodes {
            let first = all_healed_at.and_then(|from| {
                let times = answers.get(node.as_str())?;
                let at = times.partition_point(|&(time, _)| time < from);
                times.get(at).copied()
            });
            let recovery = NodeRecovery {
                kind: fault.kind.clone(),
                target: fault.target.clone(),
                node: node.clone(),
                healed_at,
                from: all_healed_at,
                answered_at: first.map(|(time, _)| time),
                op: first.map(|(_, op)| op),
                recovery: all_healed_at.and_then(|from| first.map(|(time, _)| time - from)),
            };
            if let Some(violation) = judge_node(&recovery, bound, end) {
                verdict.violations.push(violation);
            }
            verdict.node_recoveries.push(recovery);
        }
    }
    verdict.stats = statistics(
        verdict
            .recoveries
            .iter()
            .map(|r| (r.kind.clone(), r.recovery)),
    );
    let mut per_kind: BTreeMap<String, Vec<(String, Option<Time>)>> = BTreeMap::new();
    for recovery in &verdict.node_recoveries {
        per_kind
            .entry(recovery.kind.clone())
            .or_default()
            .push((recovery.node.clone(), recovery.recovery));
    }
    verdict.node_stats = per_kind
        .into_iter()
        .map(|(kind, nodes)| (kind, statistics(nodes)))
        .collect();
    verdict
}

fn judge_node(recovery: &NodeRecovery, bound: Time, end: Time) -> Option<Violation> {
    let from = recovery.from?;
    let describe = format!(
        "node {} after {} of {} healed at {}",
        recovery.node,
        recovery.kind,
        recovery.target,
        seconds(recovery.healed_at)
    );
    let describe = if from > recovery.healed_at {
        format!("{describe} (every fault healed at {})", seconds(from))
    } else {
        describe
    };
    let violation =
        |kind, detail: String| Violation::new(kind, detail).node(&recovery.node).at(from);
    match (recovery.recovery, recovery.op) {
        (Some(took), Some(op)) if took > bound => Some(
            violation(
                ViolationKind::SlowNodeRecovery,
                format!(
                    "{describe}: its first successful answer took {} (bound {})",
                    seconds(took),
                    seconds(bound)
                ),
            )
            .ops([op]),
        ),
        (None, _) if end.saturating_sub(from) > bound => Some(violation(
            ViolationKind::NoNodeRecovery,
            format!(
                "{describe}: it answered no operation successfully in the {} the run went on",
                seconds(end - from)
            ),
        )),
        _ => None,
    }
}

/// The first moment at or after `from` when no fault is active; `None` if some fault
/// active then never heals.
fn all_healed(faults: &[FaultEvent], from: Time) -> Option<Time> {
    let mut at = from;
    loop {
        let mut latest_end = None;
        for fault in faults {
            if fault.start > at {
                continue;
            }
            match fault.end {
                None => return None,
                Some(end) if end > at => {
                    latest_end = Some(latest_end.map_or(end, |latest: Time| latest.max(end)))
                }
                Some(_) => {}
            }
        }
        match latest_end {
            Some(end) => at = end,
            None => return Some(at),
        }
    }
}

fn judge(recovery: &Recovery, bound: Time, end: Time) -> Option<Violation> {
    let from = recovery.all_healed_at?;
    let describe = format!(
        "{} of {} healed at {}",
        recovery.kind,
        recovery.target,
        seconds(recovery.healed_at)
    );
    let describe = if from > recovery.healed_at {
        format!("{describe}, every fault healed at {}", seconds(from))
    } else {
        describe
    };
    match (recovery.recovery, recovery.op) {
        (Some(took), Some(op)) if took > bound => Some(
            Violation::new(
                ViolationKind::SlowRecovery,
                format!(
                    "{describe}: the first successful borrow took {} (bound {})",
                    seconds(took),
                    seconds(bound)
                ),
            )
            .ops([op])
            .at(from),
        ),
        (None, _) if end.saturating_sub(from) > bound => Some(
            Violation::new(
                ViolationKind::NoRecovery,
                format!(
                    "{describe}: no successful borrow in the {} the run went on",
                    seconds(end - from)
                ),
            )
            .at(from),
        ),
        _ => None,
    }
}

/// Statistics per key of `(key, recovery)` pairs.
fn statistics(
    recoveries: impl IntoIterator<Item = (String, Option<Time>)>,
) -> BTreeMap<String, RecoveryStats> {
    let mut by_kind: BTreeMap<String, (usize, Vec<Time>)> = BTreeMap::new();
    for (key, recovery) in recoveries {
        let entry = by_kind.entry(key).or_default();
        entry.0 += 1;
        if let Some(took) = recovery {
            entry.1.push(took);
        }
    }
    by_kind
        .into_iter()
        .map(|(kind, (heals, mut times))| {
            times.sort_unstable();
            let stats = RecoveryStats {
                heals,
                recovered: times.len(),
                min: times.first().copied(),
                median: times.get(times.len().saturating_sub(1) / 2).copied(),
                max: times.last().copied(),
            };
            (kind, stats)
        })
        .collect()
}
