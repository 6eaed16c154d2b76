//! Checks a recorded [`History`] against what the license server promises.
//!
//! Six independent verdicts:
//! - [`safety`]: no license is ever over-borrowed, and an idempotency key never yields
//!   two borrows;
//! - [`durability`]: after healing, every acknowledged borrow is still there, on every
//!   node, with the license string it was acknowledged with, and every node lists the
//!   same borrows;
//! - [`linearizability`]: the whole history, final reads included, is explained by one
//!   sequential ledger (Wing–Gong search, per license);
//! - [`answers`]: each answer agrees with what is known without any ordering: lists show
//!   exactly the pool's licenses and each borrow as acknowledged, license strings state
//!   what was asked for and stay the same across retries and gets;
//! - [`clock`]: the start the server stamps on a near-now borrow lies within the
//!   client's wall clock window of the call;
//! - [`liveness`]: after each healed fault the cluster borrows again within a bound,
//!   and every node the fault hit answers again within it.
//!
//! [`check`] runs them all and returns a [`CheckReport`].
//!
//! # What the workload must guarantee
//! The checks are sound (a reported violation is a real one) only if the history is
//! recorded faithfully and the workload keeps to these rules:
//! - **Faithful times.** An operation's invocation is recorded before its request is
//!   sent and its completion after its answer arrived, all with one monotonic clock
//!   ([`crate::history::HistoryRecorder`] does both when called around the call).
//! - **Faithful outcomes.** Only a JSON-RPC error object is a definite failure; every
//!   timeout, transport error, unusable answer and -32603 is recorded as indeterminate
//!   ([`crate::history::OpResult::from_error`] classifies them).
//! - **Future intervals, explicit, or near now on a license of their own.** A borrow
//!   either sends `validFrom` and `validUntil`, far enough in the future that the
//!   server's clock never reaches them during the run (e.g. 2030): then it never starts
//!   or expires by itself, a return ends it entirely, and the list shows exactly the
//!   borrows not returned. Or it sends no `validFrom` and a `validUntil` later than the
//!   run lasts (the workload: 2 to 4 hours after the client's clock, for runs under two
//!   hours), on a license that gets only such borrows: then they all overlap each
//!   other, so the count alone decides them, and a return ends them for every later
//!   read. The checks verify that premise and leave a license undecided without it.
//! - **One request id per logical borrow**, reused only by its retries, with identical
//!   inputs. Borrows without a request id are each their own logical borrow.
//! - **Unique host ids per logical borrow** (recommended): a borrow id that only shows
//!   up in a read (its borrow got no answer) is matched to the borrow that created it
//!   by host and interval. Shared hosts stay sound but make the search branch.
//! - **Reads name known ids.** Gets and returns use ids the workload learnt from an
//!   acknowledgement or a list; a get of an id nothing else names cannot be placed in
//!   a license's history and is only checked loosely.
//! - **Final reads after healing**: every node answers `GetBorrowedLicenseV1` for every
//!   id of [`crate::history::History::acknowledged_borrow_ids`] and `ListLicensesV1`,
//!   once the cluster is healed and idle, each with its invocation and completion time
//!   ([`crate::history::NodeFinalRead::record_get`]); linearizability places them like
//!   any other read. Do not record them as ordinary operations as well.
//! - **The wall clock start** ([`crate::history::HistoryRecorder`] notes it): without
//!   it, near-now borrows are neither checked against the client's clock nor for
//!   linearizability.

pub mod answers;
pub mod clock;
pub mod durability;
pub mod linearizability;
pub mod liveness;
pub(crate) mod model;
pub mod safety;

#[cfg(test)]
mod crosscheck;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_near_now;
#[cfg(test)]
mod tests_reads;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::history::{FinalReads, History, OpId, Time};

pub use answers::AnswersVerdict;
pub use clock::ClockVerdict;
pub use durability::DurabilityVerdict;
pub use linearizability::{LinearizabilityVerdict, PartitionOutcome, PartitionResult};
pub use liveness::{LivenessVerdict, NodeRecovery, Recovery, RecoveryStats};
pub use safety::SafetyVerdict;

use model::{seconds, Digest, DEFAULT_CLOCK_TOLERANCE_MS};

/// What a check found wrong. [`ViolationKind::check`] names the check that reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViolationKind {
    /// More borrows of a license overlap some instant than its count allows (safety).
    OverBorrow,
    /// One idempotency key was acknowledged with two different borrow ids (safety).
    DoubleBorrow,
    /// One borrow id was acknowledged to two different logical borrows (safety).
    ReusedBorrowId,
    /// An acknowledged borrow is unknown to a node, or missing from its final list
    /// (durability).
    LostBorrow,
    /// A node's final get answers another license string than the acknowledged one
    /// (durability).
    AlteredLicense,
    /// A borrow whose return was acknowledged is in a final list (durability).
    ResurrectedBorrow,
    /// A node did not answer a final read (durability).
    UnreadableNode,
    /// A final read the durability check needs was not recorded (durability).
    MissingFinalRead,
    /// The nodes' final lists differ (durability).
    DivergentFinalLists,
    /// No sequential execution explains the answers of one license's operations
    /// (linearizability).
    NotLinearizable,
    /// A list leaves out a license of the pool (answers).
    MissingLicense,
    /// A list shows a license the pool does not have (answers).
    UnknownLicense,
    /// A license string differs from what was asked for, from the first acknowledgement
    /// of the same borrow (a retry), or a get answers another one (answers).
    LicenseMismatch,
    /// A list shows a borrow with another host or interval than it was acknowledged
    /// with, or than another list showed (answers).
    AlteredListing,
    /// A near-now borrow's stamped start lies outside the client's clock window of the
    /// call, or cannot be read (clock).
    ClockStamp,
    /// The cluster took longer than the bound to borrow again after a fault healed
    /// (liveness).
    SlowRecovery,
    /// The cluster never borrowed again after a fault healed (liveness).
    NoRecovery,
    /// A node a fault hit took longer than the bound to answer again after the heal
    /// (liveness).
    SlowNodeRecovery,
    /// A node a fault hit never answered again after the heal (liveness).
    NoNodeRecovery,
}

impl ViolationKind {
    /// Every kind, in declaration order.
    pub const ALL: [ViolationKind; 19] = [
        ViolationKind::OverBorrow,
        ViolationKind::DoubleBorrow,
        ViolationKind::ReusedBorrowId,
        ViolationKind::LostBorrow,
        ViolationKind::AlteredLicense,
        ViolationKind::ResurrectedBorrow,
        ViolationKind::UnreadableNode,
        ViolationKind::MissingFinalRead,
        ViolationKind::DivergentFinalLists,
        ViolationKind::NotLinearizable,
        ViolationKind::MissingLicense,
        ViolationKind::UnknownLicense,
        ViolationKind::LicenseMismatch,
        ViolationKind::AlteredListing,
        ViolationKind::ClockStamp,
        ViolationKind::SlowRecovery,
        ViolationKind::NoRecovery,
        ViolationKind::SlowNodeRecovery,
        ViolationKind::NoNodeRecovery,
    ];

    /// The check that reports this kind: `safety`, `durability`, `linearizability`,
    /// `answers`, `clock` or `liveness` (the field of [`CheckReport`]).
    pub fn check(self) -> &'static str {
        match self {
            ViolationKind::OverBorrow
            | ViolationKind::DoubleBorrow
            | ViolationKind::ReusedBorrowId => "safety",
            ViolationKind::LostBorrow
            | ViolationKind::AlteredLicense
            | ViolationKind::ResurrectedBorrow
            | ViolationKind::UnreadableNode
            | ViolationKind::MissingFinalRead
            | ViolationKind::DivergentFinalLists => "durability",
            ViolationKind::NotLinearizable => "linearizability",
            ViolationKind::MissingLicense
            | ViolationKind::UnknownLicense
            | ViolationKind::LicenseMismatch
            | ViolationKind::AlteredListing => "answers",
            ViolationKind::ClockStamp => "clock",
            ViolationKind::SlowRecovery
            | ViolationKind::NoRecovery
            | ViolationKind::SlowNodeRecovery
            | ViolationKind::NoNodeRecovery => "liveness",
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ViolationKind::OverBorrow => "over-borrow",
            ViolationKind::DoubleBorrow => "double-borrow",
            ViolationKind::ReusedBorrowId => "reused-borrow-id",
            ViolationKind::LostBorrow => "lost-borrow",
            ViolationKind::AlteredLicense => "altered-license",
            ViolationKind::ResurrectedBorrow => "resurrected-borrow",
            ViolationKind::UnreadableNode => "unreadable-node",
            ViolationKind::MissingFinalRead => "missing-final-read",
            ViolationKind::DivergentFinalLists => "divergent-final-lists",
            ViolationKind::NotLinearizable => "not-linearizable",
            ViolationKind::MissingLicense => "missing-license",
            ViolationKind::UnknownLicense => "unknown-license",
            ViolationKind::LicenseMismatch => "license-mismatch",
            ViolationKind::AlteredListing => "altered-listing",
            ViolationKind::ClockStamp => "clock-stamp",
            ViolationKind::SlowRecovery => "slow-recovery",
            ViolationKind::NoRecovery => "no-recovery",
            ViolationKind::SlowNodeRecovery => "slow-node-recovery",
            ViolationKind::NoNodeRecovery => "no-node-recovery",
        };
        f.write_str(name)
    }
}

/// One thing a check found wrong, with what is needed to find it in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// What is wrong.
    pub kind: ViolationKind,
    /// The license concerned, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// The node concerned, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The borrow ids concerned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub borrow_ids: Vec<String>,
    /// The operations concerned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<OpId>,
    /// When it became visible (history time), if that is one moment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// The explanation.
    pub detail: String,
}

impl Violation {
    /// A violation with only a kind and an explanation; the builders add the rest.
    pub fn new(kind: ViolationKind, detail: impl Into<String>) -> Violation {
        Violation {
            kind,
            license: None,
            node: None,
            borrow_ids: Vec::new(),
            ops: Vec::new(),
            time: None,
            detail: detail.into(),
        }
    }

    /// Sets the license.
    pub fn license(mut self, license: &str) -> Violation {
        self.license = Some(license.to_string());
        self
    }

    /// Sets the node.
    pub fn node(mut self, node: &str) -> Violation {
        self.node = Some(node.to_string());
        self
    }

    /// Sets the borrow ids.
    pub fn borrow_ids<S: AsRef<str>>(mut self, ids: impl IntoIterator<Item = S>) -> Violation {
        self.borrow_ids = ids.into_iter().map(|id| id.as_ref().to_string()).collect();
        self
    }

    /// Sets the operations.
    pub fn ops(mut self, ops: impl IntoIterator<Item = OpId>) -> Violation {
        self.ops = ops.into_iter().collect();
        self
    }

    /// Sets the time.
    pub fn at(mut self, time: Time) -> Violation {
        self.time = Some(time);
        self
    }
}

impl fmt::Display for Violation {
    /// `[kind] license L node N at 1.234s ops [..] borrows [..]: detail`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.kind)?;
        if let Some(license) = &self.license {
            write!(f, " license {license}")?;
        }
        if let Some(node) = &self.node {
            write!(f, " node {node}")?;
        }
        if let Some(time) = self.time {
            write!(f, " at {}", seconds(time))?;
        }
        if !self.ops.is_empty() {
            write!(f, " ops {:?}", self.ops)?;
        }
        if !self.borrow_ids.is_empty() {
            write!(f, " borrows {:?}", self.borrow_ids)?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// The outcome of a check or of a whole report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing wrong found, and everything was decided.
    Pass,
    /// Something is wrong.
    Fail,
    /// Nothing wrong found, but some part could not be decided (search budget).
    Unknown,
}

impl Verdict {
    /// The worse of two verdicts: a failure beats an unknown beats a pass.
    pub fn and(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::Fail, _) | (_, Verdict::Fail) => Verdict::Fail,
            (Verdict::Unknown, _) | (_, Verdict::Unknown) => Verdict::Unknown,
            _ => Verdict::Pass,
        }
    }

    fn of(violations: &[Violation]) -> Verdict {
        if violations.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Unknown => "UNKNOWN",
        })
    }
}

/// Knobs of the checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckConfig {
    /// Search steps allowed per license before the linearizability check gives up on it
    /// and reports it as unknown.
    pub search_budget: u64,
    /// Longest acceptable time from a heal to the next successful borrow, nanoseconds.
    pub recovery_bound: Time,
    /// Count a borrow refused with 32 as recovery too (the cluster decided it through
    /// the log), and a get or return answered 34 as a node answering. Off by default:
    /// then only successful answers count.
    pub conflict_counts_as_recovery: bool,
    /// How far (ms) a near-now borrow's stamped start may lie outside the client's
    /// wall clock window of the call.
    #[serde(default = "default_clock_tolerance_ms")]
    pub clock_tolerance_ms: i64,
}

fn default_clock_tolerance_ms() -> i64 {
    DEFAULT_CLOCK_TOLERANCE_MS
}

impl Default for CheckConfig {
    fn default() -> CheckConfig {
        CheckConfig {
            search_budget: 2_000_000,
            recovery_bound: 30_000_000_000,
            conflict_counts_as_recovery: false,
            clock_tolerance_ms: DEFAULT_CLOCK_TOLERANCE_MS,
        }
    }
}

/// How many operations of each kind ended in each way, and what else the history holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistorySummary {
    /// Operations (attempts) in the history.
    pub operations: usize,
    /// Operation kind → result → count, e.g. `borrow` → `conflict` → 12.
    pub by_kind: BTreeMap<String, BTreeMap<String, usize>>,
    /// Logical borrows (attempts sharing an idempotency key count once).
    pub logical_borrows: usize,
    /// Distinct acknowledged borrow ids.
    pub acknowledged_borrows: usize,
    /// Faults injected.
    pub faults: usize,
    /// Licenses checked.
    pub licenses: usize,
    /// Nodes with final reads.
    pub final_read_nodes: usize,
    /// Logical borrows sent without `validFrom` (near now).
    #[serde(default)]
    pub near_now_borrows: usize,
    /// The history's last time, final reads included.
    pub duration: Time,
}

/// Everything the checks found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// What the history holds.
    pub summary: HistorySummary,
    /// Capacity and idempotency.
    pub safety: SafetyVerdict,
    /// Acknowledged borrows survive.
    pub durability: DurabilityVerdict,
    /// One sequential ledger explains everything.
    pub linearizability: LinearizabilityVerdict,
    /// Each answer agrees with what is known without ordering.
    #[serde(default)]
    pub answers: AnswersVerdict,
    /// Near-now borrows are stamped with the time they were made.
    #[serde(default)]
    pub clock: ClockVerdict,
    /// Recovery after faults.
    pub liveness: LivenessVerdict,
    /// Problems of the history itself (a workload bug, a license without a count);
    /// they do not fail the run but weaken what it proves.
    pub warnings: Vec<String>,
}

impl CheckReport {
    /// The overall verdict.
    pub fn verdict(&self) -> Verdict {
        self.safety
            .verdict()
            .and(self.durability.verdict())
            .and(self.linearizability.verdict())
            .and(self.answers.verdict())
            .and(self.clock.verdict())
            .and(self.liveness.verdict())
    }

    /// Whether every check passed and was decided: no violation and no license left
    /// undecided by the linearizability search.
    pub fn passed(&self) -> bool {
        self.verdict() == Verdict::Pass
    }

    /// Every violation of every check.
    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.safety
            .violations
            .iter()
            .chain(&self.durability.violations)
            .chain(&self.linearizability.violations)
            .chain(&self.answers.violations)
            .chain(&self.clock.violations)
            .chain(&self.liveness.violations)
    }
}

/// How many violations per check the summary prints; the JSON report has them all.
const SHOWN_VIOLATIONS: usize = 20;

fn write_violations(f: &mut fmt::Formatter<'_>, violations: &[Violation]) -> fmt::Result {
    for violation in violations.iter().take(SHOWN_VIOLATIONS) {
        writeln!(f, "    {violation}")?;
    }
    if violations.len() > SHOWN_VIOLATIONS {
        writeln!(f, "    … and {} more", violations.len() - SHOWN_VIOLATIONS)?;
    }
    Ok(())
}

impl fmt::Display for CheckReport {
    /// A summary for people: operations by kind and result, each check's verdict and
    /// violations, the overall verdict.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let summary = &self.summary;
        writeln!(
            f,
            "history: {} operations ({} logical borrows, {} acknowledged), {} faults, {} licenses, {} nodes read at the end, {}",
            summary.operations,
            summary.logical_borrows,
            summary.acknowledged_borrows,
            summary.faults,
            summary.licenses,
            summary.final_read_nodes,
            seconds(summary.duration)
        )?;
        for (kind, results) in &summary.by_kind {
            let results: Vec<String> = results
                .iter()
                .map(|(result, count)| format!("{result} {count}"))
                .collect();
            writeln!(f, "  {kind}: {}", results.join(", "))?;
        }
        for warning in &self.warnings {
            writeln!(f, "  warning: {warning}")?;
        }

        writeln!(
            f,
            "safety: {} ({} acknowledged borrows checked)",
            self.safety.verdict(),
            self.safety.acknowledged_borrows
        )?;
        write_violations(f, &self.safety.violations)?;

        if self.durability.nodes == 0 {
            writeln!(
                f,
                "durability: {} (no final reads)",
                self.durability.verdict()
            )?;
        } else {
            writeln!(
                f,
                "durability: {} ({} borrows on {} nodes)",
                self.durability.verdict(),
                self.durability.borrows,
                self.durability.nodes
            )?;
        }
        write_violations(f, &self.durability.violations)?;

        let lin = &self.linearizability;
        writeln!(
            f,
            "linearizability: {} ({} licenses, {} search steps)",
            lin.verdict(),
            lin.partitions.len(),
            lin.partitions.iter().map(|p| p.steps).sum::<u64>()
        )?;
        for partition in &lin.partitions {
            if let PartitionOutcome::Unknown = partition.outcome {
                match &partition.note {
                    Some(note) => writeln!(
                        f,
                        "    license {}: unknown, not searched: {note}",
                        partition.license
                    )?,
                    None => writeln!(
                        f,
                        "    license {}: unknown, search budget exhausted after {} steps ({} operations)",
                        partition.license, partition.steps, partition.operations
                    )?,
                }
            }
        }
        write_violations(f, &lin.violations)?;

        writeln!(
            f,
            "answers: {} ({} lists, {} acknowledgements, {} gets)",
            self.answers.verdict(),
            self.answers.lists,
            self.answers.acknowledgements,
            self.answers.gets
        )?;
        write_violations(f, &self.answers.violations)?;

        let clock = &self.clock;
        let offsets = match (clock.earliest_offset_ms, clock.latest_offset_ms) {
            (None, None) => "every start within its window".to_string(),
            (early, late) => format!(
                "furthest before {}, furthest after {}",
                early.map_or("none".to_string(), |ms| format!("{:.3}s", ms as f64 / 1e3)),
                late.map_or("none".to_string(), |ms| format!("{:.3}s", ms as f64 / 1e3))
            ),
        };
        writeln!(
            f,
            "clock: {} ({} of {} near-now borrows checked, tolerance {:.3}s, {offsets})",
            clock.verdict(),
            clock.checked,
            clock.near_now_borrows,
            clock.tolerance_ms as f64 / 1e3
        )?;
        write_violations(f, &clock.violations)?;

        writeln!(
            f,
            "liveness: {} ({} heals, bound {})",
            self.liveness.verdict(),
            self.liveness.recoveries.len(),
            seconds(self.liveness.bound)
        )?;
        for (kind, stats) in &self.liveness.stats {
            writeln!(f, "    {kind}: {stats}")?;
        }
        if !self.liveness.node_stats.is_empty() {
            writeln!(f, "  recovery per node and fault kind:")?;
            for (kind, nodes) in &self.liveness.node_stats {
                for (node, stats) in nodes {
                    writeln!(f, "    {kind} {node}: {stats}")?;
                }
            }
        }
        for fault in &self.liveness.unhealed {
            writeln!(
                f,
                "    {} of {} injected at {} never healed (not measured)",
                fault.kind,
                fault.target,
                seconds(fault.start)
            )?;
        }
        write_violations(f, &self.liveness.violations)?;

        let verdict = match self.verdict() {
            Verdict::Pass => "PASSED",
            Verdict::Fail => "FAILED",
            Verdict::Unknown => "UNKNOWN",
        };
        writeln!(f, "verdict: {verdict}")
    }
}

/// Runs every check on `history`.
///
/// `licenses` gives each license key (`feature/uuid`) its count; operations on other
/// licenses are not checked (and produce a warning). `final_reads` are the reads taken
/// on every node after the cluster healed; with none, durability is not checked.
pub fn check(
    history: &History,
    licenses: &[(String, u64)],
    final_reads: &FinalReads,
    config: &CheckConfig,
) -> CheckReport {
    let digest = Digest::new(history, final_reads);
    let counts: BTreeMap<&str, u64> = licenses
        .iter()
        .map(|(key, count)| (key.as_str(), *count))
        .collect();
    let mut warnings = history_warnings(&digest, &counts);
    let linearizability = linearizability::check(
        &digest,
        &counts,
        config.search_budget,
        config.clock_tolerance_ms,
    );
    warnings.extend(linearizability.warnings.iter().cloned());
    let clock = clock::check(&digest, config.clock_tolerance_ms);
    warnings.extend(clock.warnings.iter().cloned());
    CheckReport {
        summary: summarize(&digest, counts.len(), final_reads),
        safety: safety::check(&digest, &counts, final_reads),
        durability: durability::check(&digest, final_reads),
        linearizability,
        answers: answers::check(&digest, licenses),
        clock,
        liveness: liveness::check(
            &digest,
            config.recovery_bound,
            config.conflict_counts_as_recovery,
        ),
        warnings,
    }
}

/// Runs every check with the licenses and final reads recorded in the history itself.
pub fn check_recorded(history: &History, config: &CheckConfig) -> CheckReport {
    check(history, &history.licenses, &history.final_reads, config)
}

fn summarize(digest: &Digest<'_>, licenses: usize, final_reads: &FinalReads) -> HistorySummary {
    let history = digest.history;
    let mut by_kind: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for op in &history.ops {
        *by_kind
            .entry(op.kind.name().to_string())
            .or_default()
            .entry(op.result.name().to_string())
            .or_default() += 1;
    }
    HistorySummary {
        operations: history.ops.len(),
        by_kind,
        logical_borrows: digest.borrows.len(),
        acknowledged_borrows: digest.acks.len(),
        faults: history.faults.len(),
        licenses,
        final_read_nodes: final_reads.nodes.len(),
        near_now_borrows: digest.borrows.iter().filter(|b| b.near_now).count(),
        duration: digest.end_time(),
    }
}

/// Things in the history that make checks weaker without being the server's fault.
fn history_warnings(digest: &Digest<'_>, counts: &BTreeMap<&str, u64>) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut uncounted: BTreeMap<&str, usize> = BTreeMap::new();
    for borrow in &digest.borrows {
        if !counts.contains_key(borrow.license.as_str()) {
            *uncounted.entry(borrow.license.as_str()).or_default() += 1;
        }
        if !borrow.mismatched.is_empty() {
            warnings.push(format!(
                "request id {:?} is reused with other inputs by ops {:?}; they are checked as retries of the first",
                borrow.request_id.as_deref().unwrap_or_default(),
                borrow
                    .mismatched
                    .iter()
                    .map(|&index| digest.op(index).id)
                    .collect::<Vec<_>>()
            ));
        }
    }
    for (license, borrows) in uncounted {
        warnings.push(format!(
            "license {license} has no count; its {borrows} borrows are not checked"
        ));
    }
    warnings
}
