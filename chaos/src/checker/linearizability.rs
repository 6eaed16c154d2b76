//! Linearizability: is there one sequential ledger that explains every answer, with each
//! operation taking effect at one instant between its invocation and its completion?
//!
//! # The sequential model
//! Per license, the state is the set of active borrows (id → interval) plus which ids
//! were ever created:
//! - a borrow answered ok with id `b` fits iff adding its interval keeps the overlap at
//!   or below the count; then `b` is active and created;
//! - a borrow refused with 32 fits iff adding its interval would exceed the count;
//! - a return removes the id (and fits even when it is no longer active, but a return
//!   answered ok only once the id was created); a return answered 34 fits iff the id
//!   was never created;
//! - a get answered ok fits iff the id was created before it; a get answered 34 iff not;
//! - a list fits iff the ids it shows for the license are exactly the active ones.
//!
//! # Uncertainty
//! An operation without a definite answer may take effect at any instant after its
//! invocation, or never. All attempts sharing a request id are one logical borrow whose
//! effect happens at most once: after the first invocation, before the first definite
//! answer, and every definite answer must be that one effect. A logical borrow without
//! any definite answer may create a borrow whose id nobody was told: either one that a
//! read shows (an id no acknowledgement explains, matched by host and interval) or an
//! anonymous one that only takes capacity.
//!
//! The final reads (a get of every acknowledged borrow and a list, on every node, once
//! the workload stopped and every fault healed) are operations like any other here.
//!
//! # Near-now borrows
//! A borrow without `validFrom` has the interval from its stamped (or estimated) start
//! to its end; a read shows it with the start the server chose, so an unexplained id is
//! matched to it by host and end only. This is exact only while every near-now borrow
//! of the license overlaps every other one (see the model's `near_now_premise`); a
//! license where that cannot be shown is left undecided, with a note and a warning.
//!
//! # Search
//! A Wing–Gong search: depth first over which operation takes effect next, among those
//! invoked before every remaining definite operation completed, with memoization of
//! (set of operations placed, model state) so that each configuration is explored once.
//! Indeterminate operations are only placed where they can matter (right before an
//! operation they enable: a refused borrow they fill the license for, a read of the id
//! they create, a borrow or list they make room for); any history that has a
//! linearization has one of that shape, because an indeterminate effect can always be
//! moved later past operations it does not affect. Likewise a read (a refusal, a get, a
//! list) that fits the current state is placed at once without trying alternatives: it
//! changes nothing, so placing it early loses no linearization. The search is bounded
//! by a step budget per license; a license it cannot decide within it is reported
//! unknown, never as a violation.
//!
//! # Partitioning
//! Each license is checked on its own, the way porcupine partitions a key-value store by
//! key: borrows, returns and gets belong to their borrow's license, and a list is split
//! into one observation per license. This accepts a history in which every license has
//! its own linearization even when no single order fits all licenses at once, which is
//! the right notion here: licenses share no state in the ledger, so a list is judged
//! per license as if it read each license separately.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use super::model::{
    interval_text, near_now_premise, overlap_within, overlaps, seconds, Digest, LogicalBorrow,
};
use super::{Verdict, Violation, ViolationKind};
use crate::history::{OpId, OpKind, OpResult, Time, UnixSeconds};

/// How one license's search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionOutcome {
    /// A linearization exists.
    Linearizable,
    /// None exists; the verdict's violations say why.
    Violated,
    /// The budget ran out first.
    Unknown,
}

/// One license's search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionResult {
    /// The license.
    pub license: String,
    /// Operations in the partition (a logical borrow counts once, a list once per
    /// license).
    pub operations: usize,
    /// Search steps taken.
    pub steps: u64,
    /// How it ended.
    pub outcome: PartitionOutcome,
    /// Why the search did not run, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The linearizability check's findings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinearizabilityVerdict {
    /// One entry per license.
    pub partitions: Vec<PartitionResult>,
    /// What is wrong.
    pub violations: Vec<Violation>,
    /// What could not be checked (reported with the history's warnings).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl LinearizabilityVerdict {
    /// Fail on a violation, unknown when some license was not decided, else pass.
    pub fn verdict(&self) -> Verdict {
        if !self.violations.is_empty() {
            Verdict::Fail
        } else if self
            .partitions
            .iter()
            .any(|partition| partition.outcome == PartitionOutcome::Unknown)
        {
            Verdict::Unknown
        } else {
            Verdict::Pass
        }
    }
}

/// Index of a borrow id within a partition.
type IdIdx = usize;
/// A half-open interval of Unix seconds.
type Span = (UnixSeconds, UnixSeconds);

/// What an operation does in the model.
#[derive(Debug, Clone)]
enum Step {
    /// A borrow answered ok.
    Create { id: IdIdx, span: Span },
    /// A borrow refused with 32.
    Refuse { span: Span },
    /// A borrow without a definite answer, taking effect if placed at all: it creates
    /// one of `candidates` (ids no acknowledgement explains) or an anonymous borrow.
    MaybeCreate {
        span: Span,
        host: String,
        candidates: Vec<IdIdx>,
    },
    /// A return answered ok (the id must exist), or without an answer (then it may be
    /// left out).
    Return { id: IdIdx },
    /// A return answered 34.
    ReturnNotFound { id: IdIdx },
    /// A get answered ok (`found`) or 34.
    Get { id: IdIdx, found: bool },
    /// A list's observation of this license, ids sorted.
    List { ids: Vec<IdIdx> },
}

impl Step {
    fn mentions(&self, id: IdIdx) -> bool {
        match self {
            Step::Return { id: own }
            | Step::ReturnNotFound { id: own }
            | Step::Get { id: own, .. } => *own == id,
            Step::List { ids } => ids.binary_search(&id).is_ok(),
            _ => false,
        }
    }
}

/// An operation of a partition.
#[derive(Debug, Clone)]
struct POp {
    step: Step,
    /// The earliest instant it can take effect.
    lo: Time,
    /// The latest instant it can take effect; `None`: it may take effect any time
    /// after `lo`, or never.
    hi: Option<Time>,
    /// The history operations it stands for.
    sources: Vec<OpId>,
}

/// One license's operations, ready to search.
struct Partition {
    license: String,
    count: usize,
    ids: Vec<String>,
    /// Per id: the definite creates that name it (more than one is a violation the
    /// model rejects by itself).
    creators: Vec<Vec<usize>>,
    /// Per id: no logical borrow of this license was acknowledged with it.
    orphan: Vec<bool>,
    ops: Vec<POp>,
}

impl Partition {
    fn new(license: &str, count: u64) -> Partition {
        Partition {
            license: license.to_string(),
            count: usize::try_from(count).unwrap_or(usize::MAX),
            ids: Vec::new(),
            creators: Vec::new(),
            orphan: Vec::new(),
            ops: Vec::new(),
        }
    }

    fn intern(&mut self, id: &str, index: &mut BTreeMap<String, IdIdx>) -> IdIdx {
        if let Some(&known) = index.get(id) {
            return known;
        }
        self.ids.push(id.to_string());
        self.creators.push(Vec::new());
        self.orphan.push(true);
        index.insert(id.to_string(), self.ids.len() - 1);
        self.ids.len() - 1
    }

    fn push(&mut self, step: Step, lo: Time, hi: Option<Time>, sources: Vec<OpId>) {
        // A completion before the invocation cannot come from a monotonic clock; do not
        // let it make the window empty.
        let hi = hi.map(|hi| hi.max(lo));
        self.ops.push(POp {
            step,
            lo,
            hi,
            sources,
        });
    }
}

/// Runs the linearizability check.
pub(crate) fn check(
    digest: &Digest<'_>,
    counts: &BTreeMap<&str, u64>,
    budget: u64,
    clock_tolerance_ms: i64,
) -> LinearizabilityVerdict {
    let mut verdict = LinearizabilityVerdict::default();
    let attribution = attribute(digest);
    for (&license, &count) in counts {
        let (partition, mut problems) = build(digest, license, count, &attribution);
        let operations = partition.ops.len();
        if !problems.is_empty() {
            verdict.partitions.push(PartitionResult {
                license: license.to_string(),
                operations,
                steps: 0,
                outcome: PartitionOutcome::Violated,
                note: None,
            });
            verdict.violations.append(&mut problems);
            continue;
        }
        if let Err(why) = near_now_premise(digest, license, clock_tolerance_ms) {
            verdict.warnings.push(format!(
                "license {license} is not checked for linearizability: {why}"
            ));
            verdict.partitions.push(PartitionResult {
                license: license.to_string(),
                operations,
                steps: 0,
                outcome: PartitionOutcome::Unknown,
                note: Some(why),
            });
            continue;
        }
        let mut search = Search::new(&partition, budget);
        let outcome = search.run();
        if let Some(violation) = outcome {
            verdict.violations.push(violation);
        }
        verdict.partitions.push(PartitionResult {
            license: license.to_string(),
            operations,
            steps: search.steps,
            outcome: search.outcome,
            note: None,
        });
    }
    unattributed_reads(digest, &attribution, &mut verdict);
    verdict
}

/// Which license each borrow id belongs to: its acknowledgement's, else the first list
/// that shows it.
fn attribute<'d>(digest: &'d Digest<'_>) -> BTreeMap<&'d str, &'d str> {
    let mut attribution: BTreeMap<&'d str, &'d str> = BTreeMap::new();
    for &id in digest.acks.keys() {
        if let Some(license) = digest.license_of(id) {
            attribution.insert(id, license);
        }
    }
    for op in digest.all_ops() {
        if let OpResult::ListOk { licenses } = &op.result {
            for (license, borrows) in licenses {
                for borrow in borrows {
                    attribution
                        .entry(borrow.borrow_id.as_str())
                        .or_insert(license.as_str());
                }
            }
        }
    }
    attribution
}

/// Builds one license's partition; also returns the violations found without search.
fn build(
    digest: &Digest<'_>,
    license: &str,
    count: u64,
    attribution: &BTreeMap<&str, &str>,
) -> (Partition, Vec<Violation>) {
    let history = digest.history;
    let mut partition = Partition::new(license, count);
    let mut index: BTreeMap<String, IdIdx> = BTreeMap::new();
    let mut problems = Vec::new();
    // Logical borrows without an answer (partition op, borrow), to match ids to later.
    let mut undecided: Vec<(usize, &LogicalBorrow)> = Vec::new();

    for borrow in digest.borrows.iter().filter(|b| b.license == license) {
        let sources = borrow.op_ids(history);
        let lo = borrow.first_invoke(history);
        let ids = borrow.acked_ids(history);
        let span = borrow.interval;
        if ids.len() > 1 || (!ids.is_empty() && !borrow.conflicts.is_empty()) {
            let answers = if ids.len() > 1 {
                format!("borrow ids {}", ids.join(", "))
            } else {
                format!("both borrow id {} and 32", ids.join(""))
            };
            problems.push(
                Violation::new(
                    ViolationKind::NotLinearizable,
                    format!(
                        "the attempts of request id {:?} answered {answers}; one borrow has one outcome",
                        borrow.request_id.as_deref().unwrap_or_default()
                    ),
                )
                .license(license)
                .borrow_ids(&ids)
                .ops(sources),
            );
            continue;
        }
        let hi = borrow.first_answer(history);
        if let Some(&id) = ids.first() {
            let id = partition.intern(id, &mut index);
            partition.orphan[id] = false;
            partition.creators[id].push(partition.ops.len());
            partition.push(Step::Create { id, span }, lo, hi, sources);
        } else if !borrow.conflicts.is_empty() {
            partition.push(Step::Refuse { span }, lo, hi, sources);
        } else if !borrow.indeterminate.is_empty() {
            undecided.push((partition.ops.len(), borrow));
            partition.push(
                Step::MaybeCreate {
                    span,
                    host: borrow.host.clone(),
                    candidates: Vec::new(),
                },
                lo,
                None,
                sources,
            );
        }
    }

    // How lists describe the ids no acknowledgement explains: host and interval.
    let mut described: BTreeMap<IdIdx, (String, Span)> = BTreeMap::new();
    for op in digest.all_ops() {
        match (&op.kind, &op.result) {
            (OpKind::List, OpResult::ListOk { licenses }) => {
                let Some(borrows) = licenses.get(license) else {
                    continue;
                };
                let mut ids: Vec<IdIdx> = Vec::new();
                for borrow in borrows {
                    let id = partition.intern(&borrow.borrow_id, &mut index);
                    described
                        .entry(id)
                        .or_insert_with(|| (borrow.host_id.clone(), (borrow.from, borrow.until)));
                    ids.push(id);
                }
                ids.sort_unstable();
                ids.dedup();
                let hi = Some(op.complete.unwrap_or(Time::MAX));
                partition.push(Step::List { ids }, op.invoke, hi, vec![op.id]);
            }
            (OpKind::Get { borrow_id } | OpKind::Return { borrow_id }, result) => {
                if attribution.get(borrow_id.as_str()) != Some(&license) {
                    continue;
                }
                let is_get = matches!(op.kind, OpKind::Get { .. });
                let Some((make, definite)) = read_step(is_get, result) else {
                    continue;
                };
                let id = partition.intern(borrow_id, &mut index);
                let hi = definite.then(|| op.complete.unwrap_or(Time::MAX));
                partition.push(make(id), op.invoke, hi, vec![op.id]);
            }
            _ => {}
        }
    }

    // Which unexplained ids each unanswered borrow could have created.
    for id in 0..partition.ids.len() {
        if !partition.orphan[id] {
            continue;
        }
        let description = described.get(&id);
        let mut matched = false;
        for &(op, borrow) in &undecided {
            if let Step::MaybeCreate { candidates, .. } = &mut partition.ops[op].step {
                let fits = description.is_none_or(|(listed_host, listed_span)| {
                    borrow.matches_listing(listed_host, *listed_span)
                });
                if fits {
                    candidates.push(id);
                    matched = true;
                }
            }
        }
        if !matched {
            let mut seen_by: Vec<OpId> = partition
                .ops
                .iter()
                .filter(|op| op.step.mentions(id))
                .flat_map(|op| op.sources.iter().copied())
                .collect();
            seen_by.sort_unstable();
            let shape = description
                .map(|(host, span)| format!(" (host {host}, {})", interval_text(*span)))
                .unwrap_or_default();
            problems.push(
                Violation::new(
                    ViolationKind::NotLinearizable,
                    format!(
                        "borrow id {}{shape} is read, but no borrow of this license was acknowledged with it and no borrow without an answer matches it",
                        partition.ids[id]
                    ),
                )
                .license(license)
                .borrow_ids([partition.ids[id].as_str()])
                .ops(seen_by),
            );
        }
    }
    tighten_unanswered(&mut partition);
    (partition, problems)
}

/// Moves the earliest instant of unanswered operations past the reads that rule out
/// an earlier effect, so that the search does not try them where they cannot fit:
/// - a return of `b` cannot take effect before a list that shows `b` (the borrow is
///   created once and only a return ends it), so it comes after the last such list's
///   invocation; an old return that was lost is then no longer a candidate at every
///   step of the rest of the history;
/// - a borrow without an answer that no read ties to an id can only take effect as an
///   anonymous borrow, which the model allows once no list is left, so it comes after
///   the last list's invocation.
///
/// Both bounds are necessary conditions of every linearization, so the search finds a
/// linearization with them exactly when it finds one without them.
fn tighten_unanswered(partition: &mut Partition) {
    let mut last_list_showing: Vec<Option<Time>> = vec![None; partition.ids.len()];
    let mut last_list: Option<Time> = None;
    for op in &partition.ops {
        if let Step::List { ids } = &op.step {
            last_list = last_list.max(Some(op.lo));
            for &id in ids {
                last_list_showing[id] = last_list_showing[id].max(Some(op.lo));
            }
        }
    }
    for op in &mut partition.ops {
        if op.hi.is_some() {
            continue;
        }
        let after = match &op.step {
            Step::Return { id } => last_list_showing[*id],
            Step::MaybeCreate { candidates, .. } if candidates.is_empty() => last_list,
            _ => None,
        };
        if let Some(after) = after {
            op.lo = op.lo.max(after);
        }
    }
}

/// Makes a get's or return's step once its id is known.
type MakeStep = fn(IdIdx) -> Step;

/// How a get or return enters the model: the step for its id, and whether its answer
/// is definite. `None` for a read without an answer (it observed nothing) and for a
/// definite failure (it changed nothing).
fn read_step(is_get: bool, result: &OpResult) -> Option<(MakeStep, bool)> {
    let shape: (MakeStep, bool) = match (is_get, result) {
        (true, OpResult::GetOk { .. }) => (|id| Step::Get { id, found: true }, true),
        (true, OpResult::NotFound) => (|id| Step::Get { id, found: false }, true),
        (false, OpResult::ReturnOk) => (|id| Step::Return { id }, true),
        (false, OpResult::NotFound) => (|id| Step::ReturnNotFound { id }, true),
        (false, OpResult::Indeterminate { .. }) => (|id| Step::Return { id }, false),
        _ => return None,
    };
    Some(shape)
}

/// Gets that found, and returns that ended, an id no acknowledgement and no list ties
/// to a license cannot be placed in a partition. Such an id can only come from a borrow
/// without an answer; if none had been invoked before the call completed, the answer is
/// impossible.
fn unattributed_reads(
    digest: &Digest<'_>,
    attribution: &BTreeMap<&str, &str>,
    verdict: &mut LinearizabilityVerdict,
) {
    let history = digest.history;
    let mut unchecked = 0usize;
    for op in digest.all_ops() {
        let (borrow_id, what) = match (&op.kind, &op.result) {
            (OpKind::Get { borrow_id }, OpResult::GetOk { .. }) => (borrow_id, "get found"),
            (OpKind::Return { borrow_id }, OpResult::ReturnOk) => (borrow_id, "return ended"),
            _ => continue,
        };
        if attribution.contains_key(borrow_id.as_str()) {
            continue;
        }
        let done = op.complete.unwrap_or(Time::MAX);
        let possible = digest.borrows.iter().any(|borrow| {
            !borrow.is_decided()
                && !borrow.indeterminate.is_empty()
                && borrow.first_invoke(history) <= done
        });
        if possible {
            unchecked += 1;
        } else {
            verdict.violations.push(
                Violation::new(
                    ViolationKind::NotLinearizable,
                    format!(
                        "{what} borrow {borrow_id}, which no borrow was acknowledged with, no list showed, and no borrow without an answer could have created"
                    ),
                )
                .node(&op.node)
                .borrow_ids([borrow_id])
                .ops([op.id]),
            );
        }
    }
    if unchecked > 0 {
        verdict.warnings.push(format!(
            "{unchecked} gets or returns named borrow ids that nothing else names; they are not checked for linearizability"
        ));
    }
}

/// Who holds a seat in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Slot {
    /// A borrow with a known id.
    Id(IdIdx),
    /// A borrow nobody learnt the id of, created by the partition operation given.
    Anon(usize),
}

/// An active borrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Held {
    slot: Slot,
    span: Span,
}

/// The model state of one license.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct State {
    /// Active borrows, sorted by slot.
    active: Vec<Held>,
    /// Unexplained ids already created, sorted.
    bound: Vec<IdIdx>,
}

impl State {
    fn holds(&self, slot: Slot) -> Option<&Held> {
        self.active
            .binary_search_by(|held| held.slot.cmp(&slot))
            .ok()
            .map(|at| &self.active[at])
    }

    fn taken_within(&self, span: Span) -> usize {
        overlap_within(self.active.iter().map(|held| held.span), span.0, span.1)
    }

    fn add(&mut self, held: Held) {
        let at = self
            .active
            .binary_search_by(|other| other.slot.cmp(&held.slot))
            .unwrap_or_else(|at| at);
        self.active.insert(at, held);
    }

    fn fingerprint(&self) -> u128 {
        let half = |salt: u8| {
            let mut hasher = DefaultHasher::new();
            salt.hash(&mut hasher);
            self.hash(&mut hasher);
            u128::from(hasher.finish())
        };
        (half(1) << 64) | half(2)
    }
}

/// Which way an operation takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// As its answer says.
    Plain,
    /// An unanswered borrow creating an anonymous borrow.
    Anon,
    /// An unanswered borrow creating this unexplained id.
    Orphan(IdIdx),
}

/// A candidate next step.
#[derive(Debug, Clone, Copy)]
struct Choice {
    op: usize,
    outcome: Outcome,
}

/// Why an operation cannot come next.
#[derive(Debug, Clone)]
enum Reject {
    /// A borrow answered ok would exceed the count; `taken` seats were already taken.
    OverCapacity { taken: usize },
    /// A refused borrow would have fit.
    NotFull { taken: usize },
    /// The id was created already.
    AlreadyCreated,
    /// A 34 answer, but the id was created already.
    Exists,
    /// A get found an id not created yet.
    NotCreated,
    /// A return answered ok before the id was created.
    ReturnedUnknown,
    /// A list differs from the active set.
    ListMismatch {
        missing: Vec<Slot>,
        unexpected: Vec<Slot>,
    },
}

/// A node of the depth-first search.
struct Frame {
    /// The operation placed to get here (none at the root).
    via: Option<usize>,
    state: State,
    choices: Vec<Choice>,
    next: usize,
    lo_cursor: usize,
    hi_cursor: usize,
    rejects: Vec<(usize, Reject)>,
}

/// Where the search got furthest, for the report.
struct Deepest {
    placed: usize,
    path: Vec<usize>,
    state: State,
    rejects: Vec<(usize, Reject)>,
}

/// The search over one partition.
struct Search<'p> {
    part: &'p Partition,
    budget: u64,
    steps: u64,
    outcome: PartitionOutcome,
    done: Vec<bool>,
    definite_done: usize,
    definite_total: usize,
    /// Lists not placed yet.
    lists_left: usize,
    /// Definite operations by earliest effect.
    by_lo: Vec<usize>,
    /// Definite operations by latest effect.
    by_hi: Vec<usize>,
    /// Indeterminate operations by earliest effect.
    maybe: Vec<usize>,
    keys: Vec<u128>,
    placed_key: u128,
    seen: HashSet<u128>,
    deepest: Option<Deepest>,
}

/// A well-mixed 64-bit value of `seed` (splitmix64's finalizer).
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<'p> Search<'p> {
    fn new(part: &'p Partition, budget: u64) -> Search<'p> {
        let n = part.ops.len();
        let (mut definite, mut maybe): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&op| part.ops[op].hi.is_some());
        let mut by_lo = definite.clone();
        by_lo.sort_by_key(|&op| (part.ops[op].lo, op));
        definite.sort_by_key(|&op| (part.ops[op].hi, op));
        maybe.sort_by_key(|&op| (part.ops[op].lo, op));
        // Zobrist keys: the set of placed operations hashes as the xor of its keys.
        let keys = (0..n as u64)
            .map(|op| (u128::from(mix(2 * op)) << 64) | u128::from(mix(2 * op + 1)))
            .collect();
        Search {
            part,
            budget,
            steps: 0,
            outcome: PartitionOutcome::Linearizable,
            done: vec![false; n],
            definite_done: 0,
            definite_total: by_lo.len(),
            lists_left: part
                .ops
                .iter()
                .filter(|op| matches!(op.step, Step::List { .. }))
                .count(),
            by_lo,
            by_hi: definite,
            maybe,
            keys,
            placed_key: 0,
            seen: HashSet::new(),
            deepest: None,
        }
    }

    fn hi(&self, op: usize) -> Time {
        self.part.ops[op].hi.unwrap_or(Time::MAX)
    }

    fn is_definite(&self, op: usize) -> bool {
        self.part.ops[op].hi.is_some()
    }

    fn toggle(&mut self, op: usize, placed: bool) {
        self.done[op] = placed;
        self.placed_key ^= self.keys[op];
        if self.is_definite(op) {
            if placed {
                self.definite_done += 1;
            } else {
                self.definite_done -= 1;
            }
        }
        if let Step::List { .. } = self.part.ops[op].step {
            if placed {
                self.lists_left -= 1;
            } else {
                self.lists_left += 1;
            }
        }
    }

    /// Searches; returns the violation when there is no linearization.
    fn run(&mut self) -> Option<Violation> {
        if self.definite_total == 0 {
            return None;
        }
        let root = self.frame(None, State::default(), 0, 0);
        let mut stack = vec![root];
        while let Some(top) = stack.last_mut() {
            if top.next >= top.choices.len() {
                let Some(frame) = stack.pop() else { break };
                self.note_dead_end(&stack, frame.via, frame.state, frame.rejects);
                if let Some(op) = frame.via {
                    self.toggle(op, false);
                }
                continue;
            }
            let choice = top.choices[top.next];
            top.next += 1;
            self.steps += 1;
            if self.steps > self.budget {
                self.outcome = PartitionOutcome::Unknown;
                return None;
            }
            let (lo_cursor, hi_cursor) = (top.lo_cursor, top.hi_cursor);
            let state = match self.apply(&top.state, choice) {
                Ok(state) => state,
                Err(reject) => {
                    top.rejects.push((choice.op, reject));
                    continue;
                }
            };
            self.toggle(choice.op, true);
            if !self.seen.insert(self.placed_key ^ state.fingerprint()) {
                self.toggle(choice.op, false);
                continue;
            }
            if self.definite_done == self.definite_total {
                return None;
            }
            let frame = self.frame(Some(choice.op), state, lo_cursor, hi_cursor);
            stack.push(frame);
        }
        self.outcome = PartitionOutcome::Violated;
        Some(self.explain())
    }

    /// Remembers the deepest dead end (most answered operations placed) for the report.
    fn note_dead_end(
        &mut self,
        stack: &[Frame],
        via: Option<usize>,
        state: State,
        rejects: Vec<(usize, Reject)>,
    ) {
        if rejects.is_empty() {
            return;
        }
        if self
            .deepest
            .as_ref()
            .is_some_and(|deepest| deepest.placed >= self.definite_done)
        {
            return;
        }
        let path: Vec<usize> = stack
            .iter()
            .filter_map(|frame| frame.via)
            .chain(via)
            .collect();
        self.deepest = Some(Deepest {
            placed: self.definite_done,
            path,
            state,
            rejects,
        });
    }

    /// The state after `choice`, or why it cannot come next.
    fn apply(&self, state: &State, choice: Choice) -> Result<State, Reject> {
        let part = self.part;
        let op = choice.op;
        let mut next = state.clone();
        let capacity = |span: Span| {
            let taken = state.taken_within(span);
            if taken < part.count {
                Ok(())
            } else {
                Err(Reject::OverCapacity { taken })
            }
        };
        match (&part.ops[op].step, choice.outcome) {
            (Step::Create { id, span }, _) => {
                if self.created(state, *id) {
                    return Err(Reject::AlreadyCreated);
                }
                capacity(*span)?;
                next.add(Held {
                    slot: Slot::Id(*id),
                    span: *span,
                });
            }
            (Step::Refuse { span }, _) => {
                let taken = state.taken_within(*span);
                if taken < part.count {
                    return Err(Reject::NotFull { taken });
                }
            }
            (Step::MaybeCreate { span, .. }, Outcome::Orphan(id)) => {
                if self.created(state, id) {
                    return Err(Reject::AlreadyCreated);
                }
                capacity(*span)?;
                next.add(Held {
                    slot: Slot::Id(id),
                    span: *span,
                });
                let at = next.bound.binary_search(&id).unwrap_or_else(|at| at);
                next.bound.insert(at, id);
            }
            (Step::MaybeCreate { span, .. }, _) => {
                capacity(*span)?;
                next.add(Held {
                    slot: Slot::Anon(op),
                    span: *span,
                });
            }
            (Step::Return { id }, _) => {
                // The server answers 34 to a return of a borrow it does not know.
                if part.ops[op].hi.is_some() && !self.created(state, *id) {
                    return Err(Reject::ReturnedUnknown);
                }
                next.active.retain(|held| held.slot != Slot::Id(*id));
            }
            (Step::ReturnNotFound { id }, _) | (Step::Get { id, found: false }, _) => {
                if self.created(state, *id) {
                    return Err(Reject::Exists);
                }
            }
            (Step::Get { id, found: true }, _) => {
                if !self.created(state, *id) {
                    return Err(Reject::NotCreated);
                }
            }
            (Step::List { ids }, _) => {
                let listed: Vec<Slot> = ids.iter().map(|&id| Slot::Id(id)).collect();
                let active: Vec<Slot> = state.active.iter().map(|held| held.slot).collect();
                if listed != active {
                    let missing = active
                        .iter()
                        .filter(|slot| !listed.contains(slot))
                        .copied()
                        .collect();
                    let unexpected = listed
                        .iter()
                        .filter(|slot| !active.contains(slot))
                        .copied()
                        .collect();
                    return Err(Reject::ListMismatch {
                        missing,
                        unexpected,
                    });
                }
            }
        }
        Ok(next)
    }

    /// Whether `id` was created in the model so far.
    fn created(&self, state: &State, id: IdIdx) -> bool {
        if self.part.orphan[id] {
            state.bound.binary_search(&id).is_ok()
        } else {
            self.part.creators[id].iter().any(|&op| self.done[op])
        }
    }

    /// A search node: what may come next after the operations placed so far.
    fn frame(
        &self,
        via: Option<usize>,
        state: State,
        mut lo_cursor: usize,
        mut hi_cursor: usize,
    ) -> Frame {
        while lo_cursor < self.by_lo.len() && self.done[self.by_lo[lo_cursor]] {
            lo_cursor += 1;
        }
        while hi_cursor < self.by_hi.len() && self.done[self.by_hi[hi_cursor]] {
            hi_cursor += 1;
        }
        // Whatever comes next must have been invoked before the earliest completion
        // among the definite operations still to place.
        let frontier = self
            .by_hi
            .get(hi_cursor)
            .map_or(Time::MAX, |&op| self.hi(op));
        let ops = &self.part.ops;
        let mut definite: Vec<usize> = self.by_lo[lo_cursor..]
            .iter()
            .copied()
            .take_while(|&op| ops[op].lo <= frontier)
            .filter(|&op| !self.done[op])
            .collect();
        definite.sort_by_key(|&op| (self.hi(op), ops[op].lo, op));
        let pending: Vec<usize> = self
            .maybe
            .iter()
            .copied()
            .take_while(|&op| ops[op].lo <= frontier)
            .filter(|&op| !self.done[op])
            .collect();

        // A read that fits now can be placed now without losing any linearization: it
        // changes nothing, and placing it early only lets more operations come next.
        let fitting_read = definite.iter().copied().find(|&op| {
            let read = matches!(
                ops[op].step,
                Step::Refuse { .. }
                    | Step::Get { .. }
                    | Step::ReturnNotFound { .. }
                    | Step::List { .. }
            );
            let choice = Choice {
                op,
                outcome: Outcome::Plain,
            };
            read && self.apply(&state, choice).is_ok()
        });
        if let Some(op) = fitting_read {
            return Frame {
                via,
                state,
                choices: vec![Choice {
                    op,
                    outcome: Outcome::Plain,
                }],
                next: 0,
                lo_cursor,
                hi_cursor,
                rejects: Vec::new(),
            };
        }

        let mut choices: Vec<Choice> = definite
            .iter()
            .map(|&op| Choice {
                op,
                outcome: Outcome::Plain,
            })
            .collect();
        let refused_near = |span: Span| {
            definite.iter().any(
                |&op| matches!(ops[op].step, Step::Refuse { span: other } if overlaps(span, other)),
            )
        };
        let mentioned = |id: IdIdx| {
            definite
                .iter()
                .chain(&pending)
                .any(|&op| ops[op].step.mentions(id))
        };
        for &op in &pending {
            match &ops[op].step {
                Step::MaybeCreate {
                    span, candidates, ..
                } => {
                    // Only where the effect can matter: filling the license for a
                    // refusal, or creating an id that a read is about to show.
                    let fills = refused_near(*span);
                    for &id in candidates {
                        if state.bound.binary_search(&id).is_err() && (fills || mentioned(id)) {
                            choices.push(Choice {
                                op,
                                outcome: Outcome::Orphan(id),
                            });
                        }
                    }
                    // An anonymous borrow can never be returned, so every later list
                    // would show it: only possible once no list is left.
                    if fills && self.lists_left == 0 {
                        choices.push(Choice {
                            op,
                            outcome: Outcome::Anon,
                        });
                    }
                }
                Step::Return { id } => {
                    // Only where ending the borrow makes room for a borrow, or
                    // matches a list that no longer shows it.
                    let Some(held) = state.holds(Slot::Id(*id)) else {
                        continue;
                    };
                    let useful =
                        definite
                            .iter()
                            .chain(&pending)
                            .any(|&other| match &ops[other].step {
                                Step::Create { span, .. } | Step::MaybeCreate { span, .. } => {
                                    overlaps(*span, held.span)
                                }
                                Step::List { ids } => ids.binary_search(id).is_err(),
                                _ => false,
                            });
                    if useful {
                        choices.push(Choice {
                            op,
                            outcome: Outcome::Plain,
                        });
                    }
                }
                _ => {}
            }
        }
        Frame {
            via,
            state,
            choices,
            next: 0,
            lo_cursor,
            hi_cursor,
            rejects: Vec::new(),
        }
    }

    /// Describes where the search got furthest.
    fn explain(&self) -> Violation {
        let part = self.part;
        let Some(deepest) = &self.deepest else {
            return Violation::new(
                ViolationKind::NotLinearizable,
                "no order of the operations explains their results",
            )
            .license(&part.license);
        };
        let placed: Vec<String> = deepest
            .path
            .iter()
            .rev()
            .take(3)
            .rev()
            .map(|&op| self.describe(op))
            .collect();
        let held: Vec<String> = deepest
            .state
            .active
            .iter()
            .map(|held| format!("{} {}", self.slot_name(held.slot), interval_text(held.span)))
            .collect();
        let mut ops: Vec<OpId> = Vec::new();
        let mut ids: BTreeSet<String> = BTreeSet::new();
        let mut reasons: Vec<String> = Vec::new();
        for (op, reject) in &deepest.rejects {
            ops.extend(part.ops[*op].sources.iter().copied());
            ids.extend(self.ids_of(*op));
            reasons.push(format!("{} {}", self.describe(*op), self.reason(reject)));
        }
        ops.sort_unstable();
        ops.dedup();
        let detail = format!(
            "no order of the {} operations explains their results; the search got furthest with {} of {} answered operations placed{}, the ledger then holding {{{}}}, where no operation that may come next fits: {}",
            part.ops.len(),
            deepest.placed,
            self.definite_total,
            if placed.is_empty() {
                String::new()
            } else {
                format!(" (last: {})", placed.join("; "))
            },
            held.join(", "),
            reasons.join("; ")
        );
        let time = deepest.rejects.iter().map(|(op, _)| part.ops[*op].lo).min();
        let mut violation = Violation::new(ViolationKind::NotLinearizable, detail)
            .license(&part.license)
            .borrow_ids(ids)
            .ops(ops);
        violation.time = time;
        violation
    }

    fn slot_name(&self, slot: Slot) -> String {
        match slot {
            Slot::Id(id) => self.part.ids[id].clone(),
            Slot::Anon(op) => format!(
                "an unacknowledged borrow of ops {:?}",
                self.part.ops[op].sources
            ),
        }
    }

    fn ids_of(&self, op: usize) -> Vec<String> {
        let ids = &self.part.ids;
        match &self.part.ops[op].step {
            Step::Create { id, .. }
            | Step::Return { id }
            | Step::ReturnNotFound { id }
            | Step::Get { id, .. } => vec![ids[*id].clone()],
            Step::List { ids: listed } => listed.iter().map(|&id| ids[id].clone()).collect(),
            Step::Refuse { .. } | Step::MaybeCreate { .. } => Vec::new(),
        }
    }

    /// `ops [3, 7] borrow ok b1 [..) (1.200s–1.300s)`, or `op 3 …` for a single one.
    fn describe(&self, op: usize) -> String {
        let part = self.part;
        let entry = &part.ops[op];
        let ids = &part.ids;
        let what = match &entry.step {
            Step::Create { id, span } => format!("borrow ok {} {}", ids[*id], interval_text(*span)),
            Step::Refuse { span } => format!("borrow refused {}", interval_text(*span)),
            Step::MaybeCreate { span, host, .. } => {
                format!("unanswered borrow by {host} {}", interval_text(*span))
            }
            Step::Return { id } if entry.hi.is_some() => format!("return ok {}", ids[*id]),
            Step::Return { id } => format!("unanswered return {}", ids[*id]),
            Step::ReturnNotFound { id } => format!("return of unknown {}", ids[*id]),
            Step::Get { id, found: true } => format!("get found {}", ids[*id]),
            Step::Get { id, found: false } => format!("get did not find {}", ids[*id]),
            Step::List { ids: listed } => {
                let listed: Vec<&str> = listed.iter().map(|&id| ids[id].as_str()).collect();
                format!("list showing {{{}}}", listed.join(", "))
            }
        };
        let until = entry.hi.map_or("never answered".to_string(), seconds);
        let which = match entry.sources.as_slice() {
            [one] => format!("op {one}"),
            many => format!("ops {many:?}"),
        };
        format!("{which} {what} ({}–{until})", seconds(entry.lo))
    }

    fn reason(&self, reject: &Reject) -> String {
        let count = self.part.count;
        match reject {
            Reject::OverCapacity { taken } => format!(
                "would make {} borrows overlap but the count is {count}",
                taken + 1
            ),
            Reject::NotFull { taken } => format!(
                "was refused although only {taken} of {count} seats were taken in its interval"
            ),
            Reject::AlreadyCreated => "creates an id that exists already".to_string(),
            Reject::Exists => "answered 34 although the borrow exists".to_string(),
            Reject::NotCreated => "found a borrow not yet created".to_string(),
            Reject::ReturnedUnknown => "returned a borrow not yet created".to_string(),
            Reject::ListMismatch {
                missing,
                unexpected,
            } => {
                let names = |slots: &[Slot]| {
                    slots
                        .iter()
                        .map(|&slot| self.slot_name(slot))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let mut parts = Vec::new();
                if !missing.is_empty() {
                    parts.push(format!("misses active {}", names(missing)));
                }
                if !unexpected.is_empty() {
                    parts.push(format!("shows inactive {}", names(unexpected)));
                }
                parts.join(" and ")
            }
        }
    }
}
