//! Histories each check must reject, histories they must accept, and random histories
//! generated from the model itself.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::history::{FaultEvent, ListedBorrow, NodeFinalRead, Op, OpKind, OpResult, UnixSeconds};

/// 2030-01-01T00:00:00Z: the workload borrows far in the future.
pub(super) const BASE: UnixSeconds = 1_893_456_000;
pub(super) const DAY: UnixSeconds = 86_400;
pub(super) const LICENSE: &str = "HALCON/0001";

pub(super) fn span(from_day: i64, until_day: i64) -> (UnixSeconds, UnixSeconds) {
    (BASE + from_day * DAY, BASE + until_day * DAY)
}

pub(super) fn signed(id: &str) -> String {
    format!("signed-{id}")
}

pub(super) fn ok(id: &str) -> OpResult {
    OpResult::BorrowOk {
        borrow_id: id.to_string(),
        license: signed(id),
    }
}

pub(super) fn unknown() -> OpResult {
    OpResult::Indeterminate {
        reason: "timeout".into(),
    }
}

/// Builds histories by hand; times are plain numbers.
#[derive(Default)]
pub(super) struct Builder {
    pub(super) history: History,
    pub(super) hosts: BTreeMap<String, ((UnixSeconds, UnixSeconds), String)>,
}

impl Builder {
    pub(super) fn op(
        &mut self,
        kind: OpKind,
        invoke: Time,
        complete: Time,
        result: OpResult,
    ) -> OpId {
        let id = self.history.ops.len() as OpId + 1;
        self.history.ops.push(Op {
            id,
            client: id % 4,
            node: format!("n{}", id % 3 + 1),
            kind,
            invoke,
            complete: Some(complete),
            result,
        });
        id
    }

    /// A borrow on [`LICENSE`] by host `host`, with `host` as its request id too.
    pub(super) fn borrow(
        &mut self,
        host: &str,
        days: (i64, i64),
        window: (Time, Time),
        result: OpResult,
    ) -> OpId {
        self.borrow_on(LICENSE, host, days, window, result)
    }

    pub(super) fn borrow_on(
        &mut self,
        license: &str,
        host: &str,
        days: (i64, i64),
        window: (Time, Time),
        result: OpResult,
    ) -> OpId {
        let interval = span(days.0, days.1);
        if let OpResult::BorrowOk { borrow_id, .. } = &result {
            self.hosts
                .insert(borrow_id.clone(), (interval, host.to_string()));
        }
        self.op(
            OpKind::Borrow {
                license: license.to_string(),
                from: Some(interval.0),
                until: interval.1,
                host: host.to_string(),
                request_id: Some(format!("req-{host}")),
            },
            window.0,
            window.1,
            result,
        )
    }

    pub(super) fn ret(&mut self, id: &str, window: (Time, Time), result: OpResult) -> OpId {
        let kind = OpKind::Return {
            borrow_id: id.to_string(),
        };
        self.op(kind, window.0, window.1, result)
    }

    pub(super) fn get(&mut self, id: &str, window: (Time, Time), found: bool) -> OpId {
        let result = if found {
            OpResult::GetOk {
                license: signed(id),
            }
        } else {
            OpResult::NotFound
        };
        let kind = OpKind::Get {
            borrow_id: id.to_string(),
        };
        self.op(kind, window.0, window.1, result)
    }

    /// A list of [`LICENSE`] showing `shown`, each `(id, host, days)`.
    pub(super) fn list(
        &mut self,
        shown: &[(&str, &str, (i64, i64))],
        window: (Time, Time),
    ) -> OpId {
        let borrows = shown
            .iter()
            .map(|(id, host, days)| listed(id, host, *days))
            .collect();
        let result = OpResult::ListOk {
            licenses: BTreeMap::from([(LICENSE.to_string(), borrows)]),
        };
        self.op(OpKind::List, window.0, window.1, result)
    }

    pub(super) fn check(&self, count: u64) -> CheckReport {
        self.check_with(count, &FinalReads::default())
    }

    pub(super) fn check_with(&self, count: u64, finals: &FinalReads) -> CheckReport {
        check(
            &self.history,
            &[(LICENSE.to_string(), count)],
            finals,
            &CheckConfig::default(),
        )
    }

    /// Final reads of `nodes` nodes that agree with `active` (ids listed) and know every
    /// acknowledged borrow.
    pub(super) fn finals(&self, nodes: usize, active: &[&str]) -> FinalReads {
        let gets: BTreeMap<String, OpResult> = self
            .hosts
            .keys()
            .map(|id| {
                (
                    id.clone(),
                    OpResult::GetOk {
                        license: signed(id),
                    },
                )
            })
            .collect();
        let shown = active
            .iter()
            .map(|id| {
                let (interval, host) = &self.hosts[*id];
                ListedBorrow {
                    borrow_id: id.to_string(),
                    host_id: host.clone(),
                    from: interval.0,
                    until: interval.1,
                }
            })
            .collect();
        let list = OpResult::ListOk {
            licenses: BTreeMap::from([(LICENSE.to_string(), shown)]),
        };
        FinalReads {
            nodes: (1..=nodes)
                .map(|n| NodeFinalRead {
                    node: format!("n{n}"),
                    gets: gets.clone(),
                    list: Some(list.clone()),
                    ..NodeFinalRead::default()
                })
                .collect(),
        }
    }
}

pub(super) fn listed(id: &str, host: &str, days: (i64, i64)) -> ListedBorrow {
    let (from, until) = span(days.0, days.1);
    ListedBorrow {
        borrow_id: id.to_string(),
        host_id: host.to_string(),
        from,
        until,
    }
}

pub(super) fn kinds(violations: &[Violation]) -> Vec<ViolationKind> {
    violations.iter().map(|violation| violation.kind).collect()
}

// ---------------------------------------------------------------- must fail

#[test]
fn an_over_borrow_fails_safety_and_linearizability() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), ok("b1"));
    b.borrow("h2", (5, 15), (20, 30), ok("b2"));
    let report = b.check(1);
    assert!(!report.passed());
    assert_eq!(report.verdict(), Verdict::Fail);
    assert_eq!(
        kinds(&report.safety.violations),
        [ViolationKind::OverBorrow]
    );
    let violation = &report.safety.violations[0];
    assert_eq!(violation.license.as_deref(), Some(LICENSE));
    assert_eq!(violation.ops, [1, 2]);
    assert_eq!(violation.time, Some(30));
    assert_eq!(
        kinds(&report.linearizability.violations),
        [ViolationKind::NotLinearizable]
    );
    assert!(report.linearizability.violations[0].ops.contains(&2));
}

#[test]
fn concurrent_borrows_beyond_the_count_fail_in_any_order() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 50), ok("b1"));
    b.borrow("h2", (3, 4), (10, 40), ok("b2"));
    b.borrow("h3", (3, 12), (20, 60), ok("b3"));
    let report = b.check(2);
    assert_eq!(
        kinds(&report.safety.violations),
        [ViolationKind::OverBorrow]
    );
    assert!(!report.linearizability.violations.is_empty());
    // With room for all three, the same history passes.
    assert!(b.check(3).passed());
}

#[test]
fn a_lost_acknowledged_borrow_fails_durability() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), ok("b1"));
    b.borrow("h2", (0, 10), (20, 30), ok("b2"));
    let mut finals = b.finals(3, &["b1", "b2"]);
    // Node n2 forgot b2 entirely; node n3 still answers it but does not list it.
    finals.nodes[1].gets.insert("b2".into(), OpResult::NotFound);
    finals.nodes[1].list = b.finals(1, &["b1"]).nodes[0].list.clone();
    finals.nodes[2].list = b.finals(1, &["b1"]).nodes[0].list.clone();
    let report = b.check_with(2, &finals);
    assert!(report.safety.violations.is_empty());
    // The final reads are reads like any other: n2's and n3's are stale.
    assert_eq!(
        kinds(&report.linearizability.violations),
        [ViolationKind::NotLinearizable]
    );
    let lost: Vec<(Option<&str>, &str)> = report
        .durability
        .violations
        .iter()
        .filter(|v| v.kind == ViolationKind::LostBorrow)
        .map(|v| (v.node.as_deref(), v.borrow_ids[0].as_str()))
        .collect();
    assert_eq!(
        lost,
        [(Some("n2"), "b2"), (Some("n2"), "b2"), (Some("n3"), "b2")]
    );
    // n2 and n3 agree with each other, n1 (which still lists b2) differs from them.
    let divergent: Vec<(Option<&str>, &[String])> = report
        .durability
        .violations
        .iter()
        .filter(|v| v.kind == ViolationKind::DivergentFinalLists)
        .map(|v| (v.node.as_deref(), v.borrow_ids.as_slice()))
        .collect();
    assert_eq!(divergent, [(Some("n1"), &["b2".to_string()][..])]);
    assert!(!report.passed());
}

#[test]
fn an_altered_license_string_or_a_resurrected_borrow_fails_durability() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), ok("b1"));
    b.borrow("h2", (0, 10), (20, 30), ok("b2"));
    b.ret("b2", (40, 50), OpResult::ReturnOk);
    let mut finals = b.finals(2, &["b1", "b2"]);
    finals.nodes[0].gets.insert(
        "b1".into(),
        OpResult::GetOk {
            license: "forged".into(),
        },
    );
    // A returned borrow may answer another document: not a violation by itself.
    finals.nodes[0].gets.insert(
        "b2".into(),
        OpResult::GetOk {
            license: "returned".into(),
        },
    );
    let report = b.check_with(2, &finals);
    let found: Vec<(ViolationKind, &str)> = report
        .durability
        .violations
        .iter()
        .map(|v| (v.kind, v.borrow_ids[0].as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (ViolationKind::AlteredLicense, "b1"),
            (ViolationKind::ResurrectedBorrow, "b2"),
            (ViolationKind::ResurrectedBorrow, "b2"),
        ]
    );
}

#[test]
fn missing_or_failed_final_reads_are_violations() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), ok("b1"));
    let mut finals = b.finals(2, &["b1"]);
    finals.nodes[0].gets.clear();
    finals.nodes[1].list = Some(unknown());
    let report = b.check_with(1, &finals);
    assert_eq!(
        kinds(&report.durability.violations),
        [
            ViolationKind::MissingFinalRead,
            ViolationKind::UnreadableNode
        ]
    );
}

#[test]
fn a_get_missing_an_earlier_acknowledged_borrow_is_a_stale_read() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), ok("b1"));
    let get = b.get("b1", (20, 30), false);
    let report = b.check(1);
    assert!(report.safety.violations.is_empty());
    let violations = &report.linearizability.violations;
    assert_eq!(kinds(violations), [ViolationKind::NotLinearizable]);
    assert!(violations[0].ops.contains(&get), "{}", violations[0]);
    assert!(
        violations[0].detail.contains("answered 34"),
        "{}",
        violations[0]
    );
}

#[test]
fn a_list_missing_an_earlier_acknowledged_borrow_is_a_stale_read() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), ok("b1"));
    let list = b.list(&[], (20, 30));
    let report = b.check(1);
    let violations = &report.linearizability.violations;
    assert_eq!(kinds(violations), [ViolationKind::NotLinearizable]);
    assert!(violations[0].ops.contains(&list));
    assert!(
        violations[0].detail.contains("misses active b1"),
        "{}",
        violations[0]
    );
}

#[test]
fn a_get_finding_a_borrow_before_it_was_invoked_fails() {
    let mut b = Builder::default();
    b.get("b1", (0, 10), true);
    b.borrow("h1", (0, 10), (20, 30), ok("b1"));
    assert!(!b.check(1).linearizability.violations.is_empty());
}

#[test]
fn a_read_showing_a_refused_borrow_fails() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), ok("b1"));
    b.borrow("h2", (0, 10), (20, 30), OpResult::Conflict);
    b.list(&[("b1", "h1", (0, 10)), ("x", "h2", (0, 10))], (40, 50));
    let report = b.check(2);
    let violations = &report.linearizability.violations;
    assert!(!violations.is_empty());
    assert!(
        violations.iter().any(|v| v.borrow_ids == ["x"]),
        "{violations:?}"
    );
    // An unexplained id is also counted against the capacity in the final state.
    let mut finals = b.finals(1, &["b1"]);
    finals.nodes[0].list = Some(OpResult::ListOk {
        licenses: BTreeMap::from([(
            LICENSE.to_string(),
            vec![listed("b1", "h1", (0, 10)), listed("x", "h2", (0, 10))],
        )]),
    });
    let report = b.check_with(1, &finals);
    assert!(report
        .safety
        .violations
        .iter()
        .any(|v| v.kind == ViolationKind::OverBorrow && v.node.as_deref() == Some("n1")));
}

#[test]
fn a_refusal_with_free_seats_fails() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), ok("b1"));
    b.borrow("h2", (10, 20), (20, 30), OpResult::Conflict);
    let report = b.check(1);
    let violations = &report.linearizability.violations;
    assert_eq!(kinds(violations), [ViolationKind::NotLinearizable]);
    assert!(
        violations[0].detail.contains("was refused"),
        "{}",
        violations[0]
    );
}

#[test]
fn two_borrow_ids_for_one_request_id_are_a_double_borrow() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), unknown());
    b.borrow("h1", (0, 10), (20, 30), ok("b1"));
    b.borrow("h1", (0, 10), (40, 50), ok("b2"));
    let report = b.check(5);
    assert_eq!(
        kinds(&report.safety.violations),
        [ViolationKind::DoubleBorrow]
    );
    assert_eq!(report.safety.violations[0].ops, [1, 2, 3]);
    assert_eq!(
        kinds(&report.linearizability.violations),
        [ViolationKind::NotLinearizable]
    );
}

#[test]
fn an_ok_and_a_refusal_for_one_request_id_are_not_linearizable() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), ok("b1"));
    b.borrow("h1", (0, 10), (20, 30), OpResult::Conflict);
    let report = b.check(1);
    assert!(report.linearizability.violations[0]
        .detail
        .contains("one borrow has one outcome"));
}

#[test]
fn an_unanswered_borrow_cannot_explain_a_refusal_it_would_be_listed_for() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), unknown());
    b.borrow("h2", (0, 10), (20, 30), OpResult::Conflict);
    // Passes alone: the unanswered borrow may hold the seat.
    assert!(b.check(1).passed());
    // But a later list shows nobody holds it, and nothing was returned.
    b.list(&[], (40, 50));
    assert!(!b.check(1).linearizability.violations.is_empty());
}

#[test]
fn slow_or_missing_recovery_fails_liveness() {
    let mut b = Builder::default();
    let s = 1_000_000_000;
    b.history.faults.push(FaultEvent {
        kind: "partition".into(),
        target: "n1|n2,n3".into(),
        start: 0,
        end: Some(10 * s),
        nodes: Vec::new(),
    });
    b.history.faults.push(FaultEvent {
        kind: "kill".into(),
        target: "n2".into(),
        start: 50 * s,
        end: Some(60 * s),
        nodes: Vec::new(),
    });
    b.borrow("h1", (0, 10), (5 * s, 12 * s), ok("b1"));
    b.borrow("h2", (0, 10), (40 * s, 45 * s), ok("b2"));
    b.borrow("h3", (20, 30), (61 * s, 100 * s), unknown());
    let config = CheckConfig {
        recovery_bound: 20 * s,
        ..CheckConfig::default()
    };
    let report = check(
        &b.history,
        &[(LICENSE.to_string(), 5)],
        &FinalReads::default(),
        &config,
    );
    let liveness = &report.liveness;
    assert_eq!(kinds(&liveness.violations), [ViolationKind::NoRecovery]);
    assert_eq!(liveness.recoveries[0].recovery, Some(2 * s));
    assert_eq!(liveness.recoveries[0].op, Some(1));
    assert_eq!(liveness.stats["partition"].median, Some(2 * s));
    assert_eq!(liveness.stats["kill"].recovered, 0);

    let strict = CheckConfig {
        recovery_bound: s,
        ..config
    };
    let report = check(
        &b.history,
        &[(LICENSE.to_string(), 5)],
        &FinalReads::default(),
        &strict,
    );
    assert_eq!(
        kinds(&report.liveness.violations),
        [ViolationKind::SlowRecovery, ViolationKind::NoRecovery]
    );
}

#[test]
fn recovery_is_measured_once_every_overlapping_fault_healed() {
    let history = History {
        faults: vec![
            FaultEvent {
                kind: "partition".into(),
                target: "a".into(),
                start: 0,
                end: Some(100),
                nodes: Vec::new(),
            },
            FaultEvent {
                kind: "pause".into(),
                target: "b".into(),
                start: 50,
                end: Some(300),
                nodes: Vec::new(),
            },
        ],
        ops: vec![Op {
            id: 1,
            client: 1,
            node: "n1".into(),
            kind: OpKind::Borrow {
                license: LICENSE.into(),
                from: Some(BASE),
                until: BASE + DAY,
                host: "h".into(),
                request_id: None,
            },
            invoke: 150,
            complete: Some(350),
            result: ok("b1"),
        }],
        ..History::default()
    };
    let report = check(
        &history,
        &[],
        &FinalReads::default(),
        &CheckConfig::default(),
    );
    let recoveries = &report.liveness.recoveries;
    assert_eq!(recoveries[0].all_healed_at, Some(300));
    assert_eq!(recoveries[0].recovery, Some(50));
    assert_eq!(recoveries[1].recovery, Some(50));
}

// ---------------------------------------------------------------- must pass

#[test]
fn concurrent_returns_borrows_and_reads_pass() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), ok("a"));
    // The return and the next borrow overlap in time: the return must come first.
    b.ret("a", (20, 60), OpResult::ReturnOk);
    b.borrow("h2", (5, 15), (30, 70), ok("b"));
    // A refusal concurrent with the return: placed before it.
    b.borrow("h3", (8, 9), (25, 40), OpResult::Conflict);
    b.get("b", (25, 80), false);
    b.get("a", (65, 90), true);
    b.list(&[("b", "h2", (5, 15))], (62, 90));
    b.ret("a", (95, 99), OpResult::ReturnOk);
    b.get("b", (100, 110), true);
    let report = b.check_with(1, &b.finals(3, &["b"]));
    assert!(report.passed(), "{report}");
    assert_eq!(
        report.linearizability.partitions[0].outcome,
        PartitionOutcome::Linearizable
    );
}

#[test]
fn unanswered_borrows_that_did_or_did_not_take_effect_pass() {
    let mut b = Builder::default();
    // Took effect: a list shows it under an id nobody was told.
    b.borrow("h1", (0, 10), (0, 10), unknown());
    // Did not take effect.
    b.borrow("h2", (0, 10), (5, 15), unknown());
    b.list(&[("x", "h1", (0, 10))], (20, 30));
    b.borrow("h3", (0, 10), (40, 50), OpResult::Conflict);
    b.get("x", (60, 70), true);
    let report = b.check(1);
    assert!(report.passed(), "{report}");
    // The same history with an id whose host matches no unanswered borrow fails.
    let mut other = Builder::default();
    other.borrow("h1", (0, 10), (0, 10), unknown());
    other.list(&[("x", "h9", (0, 10))], (20, 30));
    assert!(!other.check(1).passed());
}

#[test]
fn an_unanswered_return_may_or_may_not_take_effect() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), ok("a"));
    b.ret("a", (20, 30), unknown());
    b.list(&[("a", "h1", (0, 10))], (40, 50));
    b.list(&[], (60, 70));
    b.borrow("h2", (0, 10), (80, 90), ok("b"));
    let report = b.check_with(1, &b.finals(2, &["b"]));
    assert!(report.passed(), "{report}");
}

#[test]
fn retries_with_one_request_id_are_one_borrow() {
    let mut b = Builder::default();
    // The first attempt's effect happened before a competing borrow was refused; the
    // retry returns that first answer afterwards.
    b.borrow("h1", (0, 10), (0, 10), unknown());
    b.borrow("h2", (0, 10), (20, 30), OpResult::Conflict);
    b.borrow("h1", (0, 10), (40, 50), ok("b1"));
    b.borrow("h1", (0, 10), (60, 70), ok("b1"));
    b.list(&[("b1", "h1", (0, 10))], (80, 90));
    let report = b.check_with(1, &b.finals(3, &["b1"]));
    assert!(report.passed(), "{report}");
    assert_eq!(report.summary.logical_borrows, 2);
    assert_eq!(report.summary.by_kind["borrow"]["borrow_ok"], 2);
}

#[test]
fn an_exhausted_budget_is_unknown_not_a_violation() {
    let mut b = Builder::default();
    for n in 0..6 {
        let host = format!("h{n}");
        b.borrow(&host, (0, 10), (0, 100), ok(&format!("b{n}")));
    }
    let report = check(
        &b.history,
        &[(LICENSE.to_string(), 10)],
        &FinalReads::default(),
        &CheckConfig {
            search_budget: 3,
            ..CheckConfig::default()
        },
    );
    assert!(report.linearizability.violations.is_empty());
    assert_eq!(
        report.linearizability.partitions[0].outcome,
        PartitionOutcome::Unknown
    );
    assert_eq!(report.verdict(), Verdict::Unknown);
    assert!(!report.passed());
    assert!(report.to_string().contains("budget exhausted"));
}

#[test]
fn lost_returns_do_not_hide_a_stale_list_behind_the_budget() {
    // Twenty borrows whose returns were never answered and never took effect: every
    // later list still shows them. A stale list after that must be found as a
    // violation within a small budget, not lost in the 2^20 ways of placing the
    // returns.
    let mut b = Builder::default();
    let mut shown: Vec<(String, String)> = Vec::new();
    for n in 0..20 {
        let (id, host) = (format!("a{n}"), format!("h{n}"));
        b.borrow(&host, (0, 10), (n * 10, n * 10 + 5), ok(&id));
        b.ret(&id, (n * 10 + 6, n * 10 + 7), unknown());
        shown.push((id, host));
    }
    let listed: Vec<(&str, &str, (i64, i64))> = shown
        .iter()
        .map(|(id, host)| (id.as_str(), host.as_str(), (0, 10)))
        .collect();
    b.borrow("hz", (0, 10), (300, 310), ok("z"));
    b.list(&listed, (320, 330));
    let report = check(
        &b.history,
        &[(LICENSE.to_string(), 25)],
        &FinalReads::default(),
        &CheckConfig {
            search_budget: 10_000,
            ..CheckConfig::default()
        },
    );
    assert_eq!(
        report.linearizability.partitions[0].outcome,
        PartitionOutcome::Violated,
        "{report}"
    );
    assert!(kinds(&report.linearizability.violations).contains(&ViolationKind::NotLinearizable));
}

#[test]
fn the_report_serializes_and_summarizes() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), ok("b1"));
    b.borrow("h2", (5, 15), (20, 30), ok("b2"));
    let report = b.check(1);
    let json = serde_json::to_string(&report).expect("serialize");
    let back: CheckReport = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back.verdict(), Verdict::Fail);
    let text = report.to_string();
    assert!(text.contains("borrow: borrow_ok 2"), "{text}");
    assert!(text.contains("[over-borrow] license HALCON/0001"), "{text}");
    assert!(text.ends_with("verdict: FAILED\n"), "{text}");
}

#[test]
fn licenses_without_a_count_are_reported_not_checked() {
    let mut b = Builder::default();
    b.borrow_on("OTHER/1", "h1", (0, 10), (0, 10), ok("b1"));
    b.borrow_on("OTHER/1", "h2", (0, 10), (20, 30), ok("b2"));
    let report = b.check(1);
    assert!(report.passed());
    assert!(report.warnings.iter().any(|w| w.contains("OTHER/1")));
}

// ---------------------------------------------------------------- generated

/// How a generated history is shaped.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// How far an operation's window reaches either side of its effect; the effects
    /// are 100 apart, so 10 makes a sequential history and 400 one with about eight
    /// operations in flight.
    spread: Time,
    /// Some calls get no answer, and borrows are retried.
    uncertain: bool,
}

/// A generated run: the history, the licenses, and final reads that agree with it.
struct Generated {
    history: History,
    licenses: Vec<(String, u64)>,
    finals: FinalReads,
}

/// An active borrow of the generator's ledger: its interval and host.
type Seat = ((UnixSeconds, UnixSeconds), String);

/// The ledger the generator runs, one step per operation.
#[derive(Default)]
struct Ledger {
    /// License → id → (interval, host).
    active: BTreeMap<String, BTreeMap<String, Seat>>,
    /// Ids acknowledged to the workload.
    acked: Vec<String>,
    /// Ids the workload saw in lists.
    listed: Vec<String>,
}

impl Ledger {
    fn fits(&self, license: &str, interval: (UnixSeconds, UnixSeconds), count: u64) -> bool {
        let held = self
            .active
            .get(license)
            .into_iter()
            .flat_map(|active| active.values().map(|(interval, _)| *interval));
        (super::model::overlap_within(held, interval.0, interval.1) as u64) < count
    }

    fn listing(&self, licenses: &[(String, u64)]) -> BTreeMap<String, Vec<ListedBorrow>> {
        licenses
            .iter()
            .map(|(license, _)| {
                let shown = self
                    .active
                    .get(license)
                    .into_iter()
                    .flatten()
                    .map(|(id, (interval, host))| ListedBorrow {
                        borrow_id: id.clone(),
                        host_id: host.clone(),
                        from: interval.0,
                        until: interval.1,
                    })
                    .collect();
                (license.clone(), shown)
            })
            .collect()
    }
}

fn push(ops: &mut Vec<Op>, kind: OpKind, window: (Time, Time), result: OpResult) {
    let id = ops.len() as OpId + 1;
    ops.push(Op {
        id,
        client: id % 5,
        node: format!("n{}", id % 3 + 1),
        kind,
        invoke: window.0,
        complete: Some(window.1),
        result,
    });
}

/// Runs the model with random operations; each operation takes effect at its own step's
/// instant, which lies inside its window, so the history is linearizable by
/// construction.
fn generate(seed: u64, steps: usize, shape: Shape) -> Generated {
    let mut rng = StdRng::seed_from_u64(seed);
    let licenses = vec![("A/1".to_string(), 1), ("B/2".to_string(), 2)];
    let mut ledger = Ledger::default();
    let mut ops: Vec<Op> = Vec::new();
    let spread = shape.spread;
    for step in 0..steps {
        // The instant the step's operation takes effect.
        let at = 1_000 + step as Time * 100;
        let window = |rng: &mut StdRng| {
            let before = rng.gen_range(1..=spread);
            let after = rng.gen_range(1..=spread);
            (at - before, at + after)
        };
        let uncertain = shape.uncertain && rng.gen_bool(0.25);
        let roll = rng.gen_range(0..100);
        if roll < 45 {
            let (license, count) = licenses[rng.gen_range(0..licenses.len())].clone();
            let start = rng.gen_range(0..6);
            let interval = span(start, start + rng.gen_range(1..4));
            let host = format!("h{step}");
            let id = format!("b{step}");
            let kind = OpKind::Borrow {
                license: license.clone(),
                from: Some(interval.0),
                until: interval.1,
                host: host.clone(),
                request_id: Some(format!("r{step}")),
            };
            let fits = ledger.fits(&license, interval, count);
            // Whether the effect happens at all (always, unless the only attempt is
            // unanswered and the generator decides it was lost).
            let happens = !uncertain || rng.gen_bool(0.5);
            let answer = if fits {
                OpResult::BorrowOk {
                    borrow_id: id.clone(),
                    license: signed(&id),
                }
            } else {
                OpResult::Conflict
            };
            if uncertain {
                // The first attempt gets no answer; it may have been invoked long ago.
                let first = (at - rng.gen_range(1..=300).min(at), at + 5);
                push(&mut ops, kind.clone(), first, unknown());
                if happens && rng.gen_bool(0.5) {
                    // A retry recovers the answer: it either took effect itself (its
                    // window holds the effect) or answers the first attempt's effect.
                    let retry = if rng.gen_bool(0.5) {
                        window(&mut rng)
                    } else {
                        (at + rng.gen_range(0..50), at + rng.gen_range(50..400))
                    };
                    push(&mut ops, kind, retry, answer.clone());
                    if fits {
                        ledger.acked.push(id.clone());
                    }
                }
            } else {
                push(&mut ops, kind, window(&mut rng), answer);
                if fits {
                    ledger.acked.push(id.clone());
                }
            }
            if happens && fits {
                ledger
                    .active
                    .entry(license)
                    .or_default()
                    .insert(id, (interval, host));
            }
        } else if roll < 60 && !ledger.acked.is_empty() {
            // Ids learnt from acknowledgements and, now and then, from lists.
            let id = if !ledger.listed.is_empty() && rng.gen_bool(0.2) {
                ledger.listed[rng.gen_range(0..ledger.listed.len())].clone()
            } else {
                ledger.acked[rng.gen_range(0..ledger.acked.len())].clone()
            };
            let happens = !uncertain || rng.gen_bool(0.5);
            if happens {
                for active in ledger.active.values_mut() {
                    active.remove(&id);
                }
            }
            let result = if uncertain {
                unknown()
            } else {
                OpResult::ReturnOk
            };
            push(
                &mut ops,
                OpKind::Return { borrow_id: id },
                window(&mut rng),
                result,
            );
        } else if roll < 80 {
            // Ids of earlier and of later borrows alike.
            let id = format!("b{}", rng.gen_range(0..steps));
            let result = if ledger.acked.contains(&id)
                || ledger
                    .active
                    .values()
                    .any(|active| active.contains_key(&id))
            {
                OpResult::GetOk {
                    license: signed(&id),
                }
            } else if id_was_created(&ops, &id) {
                continue;
            } else {
                OpResult::NotFound
            };
            push(
                &mut ops,
                OpKind::Get { borrow_id: id },
                window(&mut rng),
                result,
            );
        } else {
            let result = if uncertain {
                unknown()
            } else {
                let listing = ledger.listing(&licenses);
                for shown in listing.values().flatten() {
                    if !ledger.listed.contains(&shown.borrow_id) {
                        ledger.listed.push(shown.borrow_id.clone());
                    }
                }
                OpResult::ListOk { licenses: listing }
            };
            push(&mut ops, OpKind::List, window(&mut rng), result);
        }
    }
    ops.sort_by_key(|op| (op.invoke, op.id));

    let gets: BTreeMap<String, OpResult> = ledger
        .acked
        .iter()
        .map(|id| {
            (
                id.clone(),
                OpResult::GetOk {
                    license: signed(id),
                },
            )
        })
        .collect();
    let list = OpResult::ListOk {
        licenses: ledger.listing(&licenses),
    };
    let finals = FinalReads {
        nodes: (1..=3)
            .map(|n| NodeFinalRead {
                node: format!("n{n}"),
                gets: gets.clone(),
                list: Some(list.clone()),
                ..NodeFinalRead::default()
            })
            .collect(),
    };
    Generated {
        history: History {
            ops,
            ..History::default()
        },
        licenses,
        finals,
    }
}

/// Whether a borrow that was not acknowledged may have created `id` (the generator
/// then skips reading it: the answer depends on a hidden effect it does not track).
fn id_was_created(ops: &[Op], id: &str) -> bool {
    let step = id.trim_start_matches('b');
    ops.iter()
        .any(|op| op.request_id() == Some(format!("r{step}").as_str()))
}

fn run(generated: &Generated) -> CheckReport {
    check(
        &generated.history,
        &generated.licenses,
        &generated.finals,
        &CheckConfig::default(),
    )
}

#[test]
fn generated_histories_are_accepted() {
    let shapes = [
        Shape {
            spread: 10,
            uncertain: false,
        },
        Shape {
            spread: 250,
            uncertain: false,
        },
        Shape {
            spread: 250,
            uncertain: true,
        },
        Shape {
            spread: 400,
            uncertain: true,
        },
    ];
    for seed in 0..40 {
        for shape in shapes {
            let generated = generate(seed, 60, shape);
            let report = run(&generated);
            assert!(
                report.passed(),
                "seed {seed} {shape:?} was rejected:\n{report}\n{:#?}",
                generated.history.ops
            );
        }
    }
}

/// Changes one answer of a sequential history so that no order explains it any more.
fn mutate(history: &mut History, rng: &mut StdRng) -> Option<String> {
    let mut candidates: Vec<usize> = (0..history.ops.len())
        .filter(|&index| match &history.ops[index].result {
            OpResult::ListOk { licenses } => licenses.values().any(|shown| !shown.is_empty()),
            OpResult::BorrowOk { .. } | OpResult::Conflict | OpResult::GetOk { .. } => true,
            _ => false,
        })
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let index = candidates.swap_remove(rng.gen_range(0..candidates.len()));
    let op = &mut history.ops[index];
    let before = op.result.name();
    op.result = match &op.result {
        OpResult::ListOk { licenses } => {
            let mut licenses = licenses.clone();
            if let Some(shown) = licenses.values_mut().find(|shown| !shown.is_empty()) {
                shown.remove(rng.gen_range(0..shown.len()));
            }
            OpResult::ListOk { licenses }
        }
        OpResult::BorrowOk { .. } => OpResult::Conflict,
        OpResult::Conflict => ok("bogus"),
        _ => OpResult::NotFound,
    };
    Some(format!("op {} {before} → {}", op.id, op.result.name()))
}

#[test]
fn mutated_generated_histories_are_rejected() {
    let shape = Shape {
        spread: 10,
        uncertain: false,
    };
    let mut rejected = 0;
    for seed in 0..60 {
        let mut generated = generate(seed, 40, shape);
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        let Some(mutation) = mutate(&mut generated.history, &mut rng) else {
            continue;
        };
        let report = run(&generated);
        assert_eq!(
            report.linearizability.verdict(),
            Verdict::Fail,
            "seed {seed}: {mutation} was accepted:\n{report}"
        );
        rejected += 1;
    }
    assert!(rejected > 50);
}

#[test]
fn a_concurrent_history_losing_a_borrow_at_the_end_is_rejected() {
    let shape = Shape {
        spread: 400,
        uncertain: true,
    };
    let mut rejected = 0;
    for seed in 0..30 {
        let mut generated = generate(seed, 80, shape);
        // A last list, after everything else, that drops an acknowledged borrow nobody
        // tried to return: no order of the concurrent operations before explains it.
        let returned: Vec<&str> = generated
            .history
            .ops
            .iter()
            .filter_map(|op| match &op.kind {
                OpKind::Return { borrow_id } => Some(borrow_id.as_str()),
                _ => None,
            })
            .collect();
        let acked = generated.history.acknowledged_borrow_ids();
        let Some(Some(OpResult::ListOk { licenses })) =
            generated.finals.nodes.first().map(|node| node.list.clone())
        else {
            continue;
        };
        let mut licenses = licenses;
        let mut dropped = false;
        for shown in licenses.values_mut() {
            let kept = |borrow: &ListedBorrow| {
                acked.contains(&borrow.borrow_id) && !returned.contains(&borrow.borrow_id.as_str())
            };
            if let Some(at) = shown.iter().position(kept) {
                shown.remove(at);
                dropped = true;
                break;
            }
        }
        if !dropped {
            continue;
        }
        let end = generated.history.end_time() + 10;
        push(
            &mut generated.history.ops,
            OpKind::List,
            (end, end + 10),
            OpResult::ListOk { licenses },
        );
        let report = run(&generated);
        assert_eq!(
            report.linearizability.verdict(),
            Verdict::Fail,
            "seed {seed} was accepted:\n{report}"
        );
        rejected += 1;
    }
    assert!(rejected > 20, "only {rejected} histories could be mutated");
}

/// A readable license string for borrow `id` of `license` by `host` over `interval`, as
/// the server would sign it.
pub(super) fn document(
    license: &str,
    id: &str,
    host: &str,
    interval: (UnixSeconds, UnixSeconds),
) -> String {
    use licensed::borrow::document::{LicenseDocument, LicenseSigner, DOCUMENT_FORMAT};
    use licensed::borrow::time::format_instant;
    let (feature, uuid) = license.split_once('/').unwrap_or((license, ""));
    let signer = LicenseSigner::from_secret_bytes(&[7; 32]);
    signer.sign(&LicenseDocument {
        format: DOCUMENT_FORMAT,
        feature: feature.to_string(),
        uuid: uuid.to_string(),
        version: "26.05".into(),
        edition: "Steady".into(),
        modules: "fc".into(),
        host_id: host.to_string(),
        valid_from: format_instant(interval.0),
        valid_until: format_instant(interval.1),
        borrow_id: id.to_string(),
        user_info: None,
        issued_at: format_instant(interval.0),
        key_id: String::new(),
    })
}
