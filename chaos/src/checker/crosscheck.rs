//! The pruned linearizability search against an exhaustive one, on many small random
//! concurrent histories of one license with unanswered calls and retries.
//!
//! The exhaustive checker knows nothing of the production search's shortcuts: it tries
//! every order of the operations that real time allows, every subset of the unanswered
//! calls taking effect, and for an unanswered borrow every id it may have created (one
//! a read shows that no acknowledgement explains, or one nobody saw). All attempts of
//! one request id are one logical borrow with at most one effect, between its first
//! invocation and its first definite answer.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::model::overlap_within;
use super::*;
use crate::history::{ListedBorrow, Op, OpKind, OpResult, UnixSeconds};

const LICENSE: &str = "X/1";
const BASE: UnixSeconds = 1_893_456_000;
const DAY: UnixSeconds = 86_400;

type Span = (UnixSeconds, UnixSeconds);
/// How a borrow shows in a list: host and interval.
type Shown = (String, Span);

/// What a logical operation does, for the exhaustive checker.
#[derive(Debug, Clone)]
enum Act {
    /// A logical borrow: its definite outcome, or `None` when no attempt was answered.
    Borrow {
        host: String,
        span: Span,
        outcome: Option<Decided>,
    },
    Return {
        id: String,
        /// `Some(true)` ok, `Some(false)` 34, `None` unanswered.
        answer: Option<bool>,
    },
    Get {
        id: String,
        found: bool,
    },
    List {
        shown: BTreeMap<String, Shown>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Decided {
    Granted(String),
    Refused,
    /// The attempts disagree: no single effect explains them.
    Contradictory,
}

#[derive(Debug, Clone)]
struct Logical {
    act: Act,
    lo: Time,
    /// `None`: may take effect any time after `lo`, or never.
    hi: Option<Time>,
}

/// The history's operations as logical operations (the spec's reading of a history).
fn logical_ops(history: &History) -> Vec<Logical> {
    let mut ops = Vec::new();
    let mut borrows: BTreeMap<String, Vec<&Op>> = BTreeMap::new();
    for op in &history.ops {
        match (&op.kind, &op.result) {
            (OpKind::Borrow { .. }, _) => {
                let key = op
                    .request_id()
                    .map_or(format!("#{}", op.id), str::to_string);
                borrows.entry(key).or_default().push(op);
            }
            (OpKind::Return { borrow_id }, result) => {
                let answer = match result {
                    OpResult::ReturnOk => Some(true),
                    OpResult::NotFound => Some(false),
                    _ => None,
                };
                ops.push(Logical {
                    act: Act::Return {
                        id: borrow_id.clone(),
                        answer,
                    },
                    lo: op.invoke,
                    hi: answer.and(op.complete),
                });
            }
            (OpKind::Get { borrow_id }, OpResult::GetOk { .. } | OpResult::NotFound) => {
                ops.push(Logical {
                    act: Act::Get {
                        id: borrow_id.clone(),
                        found: matches!(op.result, OpResult::GetOk { .. }),
                    },
                    lo: op.invoke,
                    hi: op.complete,
                });
            }
            (OpKind::List, OpResult::ListOk { licenses }) => {
                let shown = licenses
                    .get(LICENSE)
                    .into_iter()
                    .flatten()
                    .map(|b| (b.borrow_id.clone(), (b.host_id.clone(), (b.from, b.until))))
                    .collect();
                ops.push(Logical {
                    act: Act::List { shown },
                    lo: op.invoke,
                    hi: op.complete,
                });
            }
            _ => {}
        }
    }
    for attempts in borrows.values() {
        let OpKind::Borrow {
            from, until, host, ..
        } = &attempts[0].kind
        else {
            continue;
        };
        let mut granted: BTreeSet<&str> = BTreeSet::new();
        let mut refused = false;
        let mut first_answer: Option<Time> = None;
        for op in attempts {
            match &op.result {
                OpResult::BorrowOk { borrow_id, .. } => {
                    granted.insert(borrow_id);
                }
                OpResult::Conflict => refused = true,
                _ => continue,
            }
            first_answer = first_answer.min(op.complete).or(op.complete);
        }
        let outcome = match (granted.len(), refused) {
            (0, false) => None,
            (0, true) => Some(Decided::Refused),
            (1, false) => granted.first().map(|id| Decided::Granted(id.to_string())),
            _ => Some(Decided::Contradictory),
        };
        ops.push(Logical {
            act: Act::Borrow {
                host: host.clone(),
                span: (from.unwrap_or_default(), *until),
                outcome,
            },
            lo: attempts.iter().map(|op| op.invoke).min().unwrap_or(0),
            hi: first_answer,
        });
    }
    ops
}

/// The exhaustive search's state.
#[derive(Debug, Clone, Default)]
struct Ledger {
    active: BTreeMap<String, Shown>,
    created: BTreeSet<String>,
    fresh: usize,
}

impl Ledger {
    fn taken(&self, span: Span) -> usize {
        overlap_within(self.active.values().map(|(_, span)| *span), span.0, span.1)
    }
}

/// Whether some order of `ops` (every subset of the unanswered ones) explains them.
fn brute_force(ops: &[Logical], count: usize) -> bool {
    let granted: BTreeSet<&str> = ops
        .iter()
        .filter_map(|op| match &op.act {
            Act::Borrow {
                outcome: Some(Decided::Granted(id)),
                ..
            } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    // Ids reads show that no acknowledgement explains: what unanswered borrows may
    // have created.
    let orphans: BTreeSet<String> = ops
        .iter()
        .flat_map(|op| match &op.act {
            Act::List { shown } => shown.keys().cloned().collect(),
            _ => Vec::new(),
        })
        .filter(|id| !granted.contains(id.as_str()))
        .collect();
    let mut placed = vec![false; ops.len()];
    search(
        ops,
        count,
        &orphans,
        &mut placed,
        Time::MIN,
        &Ledger::default(),
    )
}

fn search(
    ops: &[Logical],
    count: usize,
    orphans: &BTreeSet<String>,
    placed: &mut Vec<bool>,
    max_lo: Time,
    ledger: &Ledger,
) -> bool {
    let done = ops
        .iter()
        .zip(placed.iter())
        .all(|(op, &placed)| placed || op.hi.is_none());
    if done {
        return true;
    }
    for next in 0..ops.len() {
        if placed[next] {
            continue;
        }
        let op = &ops[next];
        // Every operation already placed must have been invoked before this one
        // completed.
        if op.hi.is_some_and(|hi| max_lo > hi) {
            continue;
        }
        for after in effects(op, count, orphans, ledger) {
            placed[next] = true;
            let found = search(ops, count, orphans, placed, max_lo.max(op.lo), &after);
            placed[next] = false;
            if found {
                return true;
            }
        }
    }
    false
}

/// The states `op` may lead to from `ledger` (none when it cannot come next).
fn effects(op: &Logical, count: usize, orphans: &BTreeSet<String>, ledger: &Ledger) -> Vec<Ledger> {
    let mut after = Vec::new();
    match &op.act {
        Act::Borrow {
            host,
            span,
            outcome,
        } => match outcome {
            Some(Decided::Granted(id)) => {
                if !ledger.created.contains(id) && ledger.taken(*span) < count {
                    let mut next = ledger.clone();
                    next.active.insert(id.clone(), (host.clone(), *span));
                    next.created.insert(id.clone());
                    after.push(next);
                }
            }
            Some(Decided::Refused) => {
                if ledger.taken(*span) >= count {
                    after.push(ledger.clone());
                }
            }
            Some(Decided::Contradictory) => {}
            None => {
                // Taking effect as a refusal changes nothing: the same as never.
                if ledger.taken(*span) < count {
                    let fresh = format!("#fresh{}", ledger.fresh);
                    for id in orphans.iter().chain([&fresh]) {
                        if ledger.created.contains(id) {
                            continue;
                        }
                        let mut next = ledger.clone();
                        next.active.insert(id.clone(), (host.clone(), *span));
                        next.created.insert(id.clone());
                        next.fresh += 1;
                        after.push(next);
                    }
                }
            }
        },
        Act::Return { id, answer } => match answer {
            Some(true) | None => {
                if ledger.created.contains(id) {
                    let mut next = ledger.clone();
                    next.active.remove(id);
                    after.push(next);
                }
            }
            Some(false) => {
                if !ledger.created.contains(id) {
                    after.push(ledger.clone());
                }
            }
        },
        Act::Get { id, found } => {
            if ledger.created.contains(id) == *found {
                after.push(ledger.clone());
            }
        }
        Act::List { shown } => {
            if *shown == ledger.active {
                after.push(ledger.clone());
            }
        }
    }
    after
}

// ---------------------------------------------------------------- generator

/// A small concurrent history of one license, mostly produced by running the model,
/// sometimes with one answer changed.
fn random_history(rng: &mut StdRng) -> (History, u64) {
    let count = rng.gen_range(1..=2u64);
    let spans: [(i64, i64); 5] = [(0, 2), (1, 3), (2, 4), (0, 4), (3, 5)];
    let target = rng.gen_range(3..=7usize);
    let spread = [10, 120, 300][rng.gen_range(0..3)];
    let mut ops: Vec<Op> = Vec::new();
    let mut active: BTreeMap<String, Shown> = BTreeMap::new();
    let mut acked: Vec<String> = Vec::new();
    let mut listed: Vec<String> = Vec::new();
    let mut next_borrow = 0;
    let mut step = 0;
    while ops.len() < target {
        step += 1;
        let at: Time = 1_000 + step * 100;
        let window = |rng: &mut StdRng| {
            (
                at - rng.gen_range(0..=spread),
                at + rng.gen_range(0..=spread),
            )
        };
        let unanswered = rng.gen_bool(0.3);
        let roll = rng.gen_range(0..100);
        if roll < 40 {
            let (a, b) = spans[rng.gen_range(0..spans.len())];
            let span = (BASE + a * DAY, BASE + b * DAY);
            next_borrow += 1;
            let id = format!("b{next_borrow}");
            let host = format!("H{next_borrow}");
            let kind = OpKind::Borrow {
                license: LICENSE.into(),
                from: Some(span.0),
                until: span.1,
                host: host.clone(),
                request_id: Some(format!("r{next_borrow}")),
            };
            let taken = overlap_within(active.values().map(|(_, span)| *span), span.0, span.1);
            let fits = (taken as u64) < count;
            let happens = !unanswered || rng.gen_bool(0.5);
            let answer = if fits {
                OpResult::BorrowOk {
                    borrow_id: id.clone(),
                    license: format!("L-{id}"),
                }
            } else {
                OpResult::Conflict
            };
            if unanswered {
                let first = (
                    at - rng.gen_range(1..=spread.max(2)),
                    at + rng.gen_range(1..=spread.max(2)),
                );
                push(
                    &mut ops,
                    kind.clone(),
                    first,
                    OpResult::Indeterminate {
                        reason: "timeout".into(),
                    },
                );
                if happens && rng.gen_bool(0.5) {
                    // A retry with the same request id gets the first effect's answer.
                    let retry = (
                        at + rng.gen_range(0..spread.max(1)),
                        at + spread + rng.gen_range(1..200),
                    );
                    push(&mut ops, kind, retry, answer);
                    if fits {
                        acked.push(id.clone());
                    }
                }
            } else {
                push(&mut ops, kind, window(rng), answer);
                if fits {
                    acked.push(id.clone());
                }
            }
            if happens && fits {
                active.insert(id, (host, span));
            }
        } else if roll < 55 && !acked.is_empty() {
            let id = acked[rng.gen_range(0..acked.len())].clone();
            let happens = !unanswered || rng.gen_bool(0.5);
            if happens {
                active.remove(&id);
            }
            let result = if unanswered {
                OpResult::Indeterminate {
                    reason: "timeout".into(),
                }
            } else {
                OpResult::ReturnOk
            };
            push(
                &mut ops,
                OpKind::Return { borrow_id: id },
                window(rng),
                result,
            );
        } else if roll < 75 {
            // Ids the workload knows: acknowledged ones, listed ones, or one that never
            // existed.
            let id = match rng.gen_range(0..10) {
                0..=5 if !acked.is_empty() => acked[rng.gen_range(0..acked.len())].clone(),
                6..=7 if !listed.is_empty() => listed[rng.gen_range(0..listed.len())].clone(),
                _ => "nobody".to_string(),
            };
            let created = acked.contains(&id) || listed.contains(&id) || active.contains_key(&id);
            let result = if unanswered {
                OpResult::Indeterminate {
                    reason: "timeout".into(),
                }
            } else if created {
                OpResult::GetOk {
                    license: format!("L-{id}"),
                }
            } else {
                OpResult::NotFound
            };
            push(&mut ops, OpKind::Get { borrow_id: id }, window(rng), result);
        } else {
            let result = if unanswered {
                OpResult::Indeterminate {
                    reason: "timeout".into(),
                }
            } else {
                for id in active.keys() {
                    if !listed.contains(id) {
                        listed.push(id.clone());
                    }
                }
                OpResult::ListOk {
                    licenses: BTreeMap::from([(LICENSE.to_string(), listing(&active))]),
                }
            };
            push(&mut ops, OpKind::List, window(rng), result);
        }
    }
    if rng.gen_bool(0.45) {
        mutate(&mut ops, rng, &acked);
    }
    ops.sort_by_key(|op| (op.invoke, op.id));
    (
        History {
            ops,
            ..History::default()
        },
        count,
    )
}

/// Appends an attempt; an unanswered one sometimes has a completion time, sometimes not.
fn push(ops: &mut Vec<Op>, kind: OpKind, window: (Time, Time), result: OpResult) {
    let id = ops.len() as OpId + 1;
    let unanswered = result.is_indeterminate();
    ops.push(Op {
        id,
        client: id,
        node: "n1".into(),
        kind,
        invoke: window.0,
        complete: (!unanswered || window.1 % 2 == 0).then_some(window.1),
        result,
    });
}

fn listing(active: &BTreeMap<String, Shown>) -> Vec<ListedBorrow> {
    active
        .iter()
        .map(|(id, (host, span))| ListedBorrow {
            borrow_id: id.clone(),
            host_id: host.clone(),
            from: span.0,
            until: span.1,
        })
        .collect()
}

/// Changes one answer (gets of ids nobody names keep theirs: the checker reads them
/// loosely by design).
fn mutate(ops: &mut [Op], rng: &mut StdRng, acked: &[String]) {
    // Ids the workload could only have learnt from their acknowledgement: taking that
    // away would leave reads naming ids nobody told them (outside the workload's rules).
    let named: BTreeSet<String> = ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Get { borrow_id } | OpKind::Return { borrow_id } => Some(borrow_id.clone()),
            _ => None,
        })
        .collect();
    let listed: BTreeSet<String> = ops
        .iter()
        .flat_map(|op| match &op.result {
            OpResult::ListOk { licenses } => licenses
                .values()
                .flatten()
                .map(|b| b.borrow_id.clone())
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    let candidates: Vec<usize> = (0..ops.len())
        .filter(|&at| match (&ops[at].kind, &ops[at].result) {
            (OpKind::Get { borrow_id }, _) if borrow_id == "nobody" => false,
            (_, OpResult::BorrowOk { borrow_id, .. }) => {
                !named.contains(borrow_id.as_str()) || listed.contains(borrow_id.as_str())
            }
            (_, OpResult::Indeterminate { .. }) => false,
            _ => true,
        })
        .collect();
    if candidates.is_empty() {
        return;
    }
    let op = &mut ops[candidates[rng.gen_range(0..candidates.len())]];
    op.result = match (&op.kind, &op.result) {
        (_, OpResult::BorrowOk { .. }) => OpResult::Conflict,
        (_, OpResult::Conflict) => OpResult::BorrowOk {
            borrow_id: format!("x{}", op.id),
            license: "L-x".into(),
        },
        (_, OpResult::GetOk { .. }) => OpResult::NotFound,
        (OpKind::Get { borrow_id }, OpResult::NotFound) => OpResult::GetOk {
            license: format!("L-{borrow_id}"),
        },
        (_, OpResult::ReturnOk) => OpResult::NotFound,
        (OpKind::Return { .. }, OpResult::NotFound) => OpResult::ReturnOk,
        (_, OpResult::ListOk { licenses }) => {
            let mut licenses = licenses.clone();
            if let Some(shown) = licenses.get_mut(LICENSE) {
                // An id only lists tell about must stay listed if reads name it.
                let removable: Vec<usize> = (0..shown.len())
                    .filter(|&at| {
                        let id = shown[at].borrow_id.as_str();
                        acked.iter().any(|acked| acked == id) || !named.contains(id)
                    })
                    .collect();
                if !removable.is_empty() && rng.gen_bool(0.6) {
                    shown.remove(removable[rng.gen_range(0..removable.len())]);
                } else if let Some(id) = acked
                    .iter()
                    .find(|id| !shown.iter().any(|b| &b.borrow_id == *id))
                {
                    // Show an acknowledged borrow the list did not show; `fix_shapes`
                    // gives it the interval its borrow asked for.
                    shown.push(ListedBorrow {
                        borrow_id: id.clone(),
                        host_id: format!("H{}", id.trim_start_matches('b')),
                        from: 0,
                        until: 0,
                    });
                }
            }
            OpResult::ListOk { licenses }
        }
        (_, other) => other.clone(),
    };
}

/// Gives listed borrows added by a mutation the interval their borrow asked for.
fn fix_shapes(history: &mut History) {
    let mut shapes: BTreeMap<String, Span> = BTreeMap::new();
    for op in &history.ops {
        if let OpKind::Borrow {
            from, until, host, ..
        } = &op.kind
        {
            shapes.insert(host.clone(), (from.unwrap_or_default(), *until));
        }
    }
    for op in &mut history.ops {
        if let OpResult::ListOk { licenses } = &mut op.result {
            for listed in licenses.values_mut().flatten() {
                if (listed.from, listed.until) == (0, 0) {
                    if let Some(span) = shapes.get(&listed.host_id) {
                        listed.from = span.0;
                        listed.until = span.1;
                    }
                }
            }
        }
    }
}

#[test]
fn the_pruned_search_agrees_with_an_exhaustive_one() {
    let mut rng = StdRng::seed_from_u64(0x11ea_51b1e);
    let config = CheckConfig {
        search_budget: 1_000_000_000,
        ..CheckConfig::default()
    };
    let (mut linearizable, mut violated) = (0usize, 0usize);
    let histories = 10_000;
    for n in 0..histories {
        let (mut history, count) = random_history(&mut rng);
        fix_shapes(&mut history);
        let expected = brute_force(&logical_ops(&history), count as usize);
        let report = check(
            &history,
            &[(LICENSE.to_string(), count)],
            &FinalReads::default(),
            &config,
        );
        let verdict = report.linearizability.verdict();
        assert_ne!(verdict, Verdict::Unknown, "history {n}: undecided");
        assert_eq!(
            verdict == Verdict::Pass,
            expected,
            "history {n} (count {count}): the exhaustive search says {}, the checker {verdict}:\n{}\n{:#?}",
            if expected { "linearizable" } else { "not linearizable" },
            report,
            history.ops
        );
        if expected {
            linearizable += 1;
        } else {
            violated += 1;
        }
    }
    eprintln!("cross-check: {histories} histories, {linearizable} linearizable, {violated} not");
    assert!(
        linearizable > histories / 5 && violated > histories / 5,
        "{linearizable} / {violated}"
    );
}

#[test]
fn the_exhaustive_checker_can_say_no() {
    // b1 acknowledged, then a list that misses it: no order explains it.
    let borrow = Logical {
        act: Act::Borrow {
            host: "H1".into(),
            span: (0, 10),
            outcome: Some(Decided::Granted("b1".into())),
        },
        lo: 0,
        hi: Some(10),
    };
    let list = Logical {
        act: Act::List {
            shown: BTreeMap::new(),
        },
        lo: 20,
        hi: Some(30),
    };
    assert!(!brute_force(&[borrow.clone(), list.clone()], 1));
    // Concurrent, the list may come first.
    let early = Logical { lo: 5, ..list };
    assert!(brute_force(&[borrow, early], 1));
}
