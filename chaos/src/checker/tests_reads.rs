//! What each answer says, final reads as operations, agreeing final lists and recovery
//! per node: histories that must fail and the same histories corrected.

use super::tests::{document, kinds, listed, ok, span, unknown, Builder, LICENSE};
use super::*;
use crate::history::{FaultEvent, NodeFinalRead, Op, OpKind, OpResult};

const OTHER: &str = "OTHER/2";

fn pool() -> Vec<(String, u64)> {
    vec![(LICENSE.to_string(), 1), (OTHER.to_string(), 1)]
}

fn list_of(licenses: &[(&str, Vec<crate::history::ListedBorrow>)]) -> OpResult {
    OpResult::ListOk {
        licenses: licenses
            .iter()
            .map(|(license, shown)| (license.to_string(), shown.clone()))
            .collect(),
    }
}

#[test]
fn a_list_that_leaves_out_a_pool_license_or_shows_another_one_fails() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), ok("b1"));
    let shown = vec![listed("b1", "h1", (0, 10))];
    b.op(
        OpKind::List,
        20,
        30,
        list_of(&[(LICENSE, shown.clone()), (OTHER, Vec::new())]),
    );
    let report = check(
        &b.history,
        &pool(),
        &FinalReads::default(),
        &CheckConfig::default(),
    );
    assert!(report.passed(), "{report}");
    assert_eq!(report.answers.lists, 1);

    let wrong = b.op(
        OpKind::List,
        40,
        50,
        list_of(&[(LICENSE, shown), ("GHOST/9", Vec::new())]),
    );
    let node = b.history.ops[wrong as usize - 1].node.clone();
    let report = check(
        &b.history,
        &pool(),
        &FinalReads::default(),
        &CheckConfig::default(),
    );
    let violations = &report.answers.violations;
    assert_eq!(
        kinds(violations),
        [ViolationKind::MissingLicense, ViolationKind::UnknownLicense]
    );
    assert_eq!(violations[0].license.as_deref(), Some(OTHER));
    assert_eq!(violations[1].license.as_deref(), Some("GHOST/9"));
    for violation in violations {
        assert_eq!(violation.node.as_deref(), Some(node.as_str()));
        assert_eq!(violation.ops, [wrong]);
        assert!(violation.detail.contains(&node), "{violation}");
        assert!(
            violation
                .detail
                .contains(violation.license.as_deref().unwrap_or("?")),
            "{violation}"
        );
    }
    assert_eq!(report.verdict(), Verdict::Fail);
    // The other checks do not mind: the list is right about the license it shows.
    assert!(report.linearizability.violations.is_empty(), "{report}");
}

#[test]
fn final_lists_are_held_to_the_pool_too() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), ok("b1"));
    // The builder's final lists show only LICENSE.
    let finals = b.finals(3, &["b1"]);
    let report = check(&b.history, &pool(), &finals, &CheckConfig::default());
    let missing: Vec<(Option<&str>, Option<&str>)> = report
        .answers
        .violations
        .iter()
        .map(|v| (v.node.as_deref(), v.license.as_deref()))
        .collect();
    assert_eq!(
        missing,
        [
            (Some("n1"), Some(OTHER)),
            (Some("n2"), Some(OTHER)),
            (Some("n3"), Some(OTHER))
        ]
    );
    assert!(check(
        &b.history,
        &[(LICENSE.into(), 1)],
        &finals,
        &CheckConfig::default()
    )
    .passed());
}

#[test]
fn a_get_must_answer_the_acknowledged_license_string() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), ok("b1"));
    b.get("b1", (20, 30), true);
    assert!(b.check(1).passed());
    let forged = b.op(
        OpKind::Get {
            borrow_id: "b1".into(),
        },
        40,
        50,
        OpResult::GetOk {
            license: "forged".into(),
        },
    );
    let report = b.check(1);
    let violations = &report.answers.violations;
    assert_eq!(kinds(violations), [ViolationKind::LicenseMismatch]);
    assert_eq!(violations[0].borrow_ids, ["b1"]);
    assert!(violations[0].ops.contains(&forged));
    assert!(violations[0].node.is_some());
    assert_eq!(report.answers.gets, 2);
}

#[test]
fn every_acknowledgement_of_one_request_id_carries_one_license_string() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), unknown());
    b.borrow("h1", (0, 10), (20, 30), ok("b1"));
    b.borrow("h1", (0, 10), (40, 50), ok("b1"));
    assert!(b.check(1).passed());
    b.borrow(
        "h1",
        (0, 10),
        (60, 70),
        OpResult::BorrowOk {
            borrow_id: "b1".into(),
            license: "another".into(),
        },
    );
    let report = b.check(1);
    assert_eq!(
        kinds(&report.answers.violations),
        [ViolationKind::LicenseMismatch]
    );
    assert_eq!(report.answers.violations[0].ops, [2, 4]);
}

#[test]
fn a_returned_borrow_may_answer_its_shortened_license_only_after_the_return() {
    let interval = span(0, 10);
    let acknowledged = document(LICENSE, "b1", "MAC:0000000000A1", interval);
    // What a return does to a borrow that has not started: it becomes empty.
    let returned = document(LICENSE, "b1", "MAC:0000000000A1", (interval.0, interval.0));
    let mut b = Builder::default();
    b.borrow(
        "MAC:0000000000A1",
        (0, 10),
        (0, 10),
        OpResult::BorrowOk {
            borrow_id: "b1".into(),
            license: acknowledged.clone(),
        },
    );
    let get = |license: &str| OpResult::GetOk {
        license: license.to_string(),
    };
    let kind = OpKind::Get {
        borrow_id: "b1".into(),
    };
    b.op(kind.clone(), 20, 30, get(&acknowledged));
    b.ret("b1", (40, 50), OpResult::ReturnOk);
    b.op(kind.clone(), 60, 70, get(&returned));
    assert!(b.check(1).passed(), "{}", b.check(1));
    // The shortened string before any return was sent is wrong.
    let early = b.op(kind.clone(), 25, 35, get(&returned));
    let report = b.check(1);
    assert_eq!(
        kinds(&report.answers.violations),
        [ViolationKind::LicenseMismatch]
    );
    assert!(report.answers.violations[0].ops.contains(&early));
    // So is any other change, even after the return.
    let mut b2 = Builder::default();
    b2.history.ops = b.history.ops[..4].to_vec();
    let other_host = document(LICENSE, "b1", "MAC:0000000000B2", (interval.0, interval.0));
    b2.op(kind, 80, 90, get(&other_host));
    assert_eq!(
        kinds(&b2.check(1).answers.violations),
        [ViolationKind::LicenseMismatch]
    );
}

#[test]
fn an_acknowledged_license_string_must_state_what_was_asked() {
    let mut b = Builder::default();
    let wrong = document(LICENSE, "b1", "MAC:0000000000A1", span(0, 11));
    b.borrow(
        "MAC:0000000000A1",
        (0, 10),
        (0, 10),
        OpResult::BorrowOk {
            borrow_id: "b1".into(),
            license: wrong,
        },
    );
    let report = b.check(1);
    assert_eq!(
        kinds(&report.answers.violations),
        [ViolationKind::LicenseMismatch]
    );
    assert!(report.answers.violations[0].detail.contains("interval"));
    let mut right = Builder::default();
    right.borrow(
        "MAC:0000000000A1",
        (0, 10),
        (0, 10),
        OpResult::BorrowOk {
            borrow_id: "b1".into(),
            license: document(LICENSE, "b1", "MAC:0000000000A1", span(0, 10)),
        },
    );
    assert!(right.check(1).passed());
}

#[test]
fn a_list_must_show_a_borrow_as_it_was_acknowledged() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), ok("b1"));
    b.list(&[("b1", "h1", (0, 10))], (20, 30));
    assert!(b.check(1).passed());
    b.list(&[("b1", "h1", (0, 9))], (40, 50));
    let report = b.check(1);
    assert_eq!(
        kinds(&report.answers.violations),
        [ViolationKind::AlteredListing]
    );
    assert_eq!(report.answers.violations[0].borrow_ids, ["b1"]);
}

/// A final read of every acknowledged borrow and a list, with real windows.
fn final_read(
    node: &str,
    at: Time,
    gets: &[(&str, bool)],
    shown: Vec<crate::history::ListedBorrow>,
) -> NodeFinalRead {
    let mut read = NodeFinalRead::new(node);
    for (offset, (id, found)) in gets.iter().enumerate() {
        let result = if *found {
            OpResult::GetOk {
                license: super::tests::signed(id),
            }
        } else {
            OpResult::NotFound
        };
        let invoke = at + offset as Time;
        read.record_get(id, invoke, invoke + 1, result);
    }
    read.record_list(at + 5, at + 9, list_of(&[(LICENSE, shown)]));
    read
}

#[test]
fn final_reads_are_placed_in_the_linearizability_search_at_their_times() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), ok("b1"));
    b.ret("b1", (20, 30), unknown());
    // n2 reads first and no longer shows b1, n1 reads later and shows it: the return
    // cannot have taken effect before n2's list and after n1's.
    let finals = FinalReads {
        nodes: vec![
            final_read(
                "n1",
                120,
                &[("b1", true)],
                vec![listed("b1", "h1", (0, 10))],
            ),
            final_read("n2", 100, &[("b1", true)], Vec::new()),
        ],
    };
    let report = b.check_with(1, &finals);
    let violations = &report.linearizability.violations;
    assert_eq!(
        kinds(violations),
        [ViolationKind::NotLinearizable],
        "{report}"
    );
    // The final reads get op ids after the workload's two operations.
    assert!(
        violations[0].ops.iter().any(|&op| op > 2),
        "{}",
        violations[0]
    );
    // The same reads in the other order are explained by the return.
    let finals = FinalReads {
        nodes: vec![
            final_read(
                "n1",
                100,
                &[("b1", true)],
                vec![listed("b1", "h1", (0, 10))],
            ),
            final_read("n2", 120, &[("b1", true)], Vec::new()),
        ],
    };
    let report = b.check_with(1, &finals);
    assert!(report.linearizability.violations.is_empty(), "{report}");
    // But the nodes' final lists differ: that is a durability violation by itself.
    assert_eq!(
        kinds(&report.durability.violations),
        [ViolationKind::DivergentFinalLists]
    );
}

#[test]
fn final_lists_that_differ_between_nodes_fail_naming_the_node() {
    let mut b = Builder::default();
    b.borrow("h1", (0, 10), (0, 10), ok("b1"));
    b.borrow("h2", (0, 10), (20, 30), ok("b2"));
    b.ret("b2", (40, 50), unknown());
    let agree = b.finals(3, &["b1"]);
    let report = b.check_with(2, &agree);
    assert!(report.passed(), "{report}");
    let mut differ = agree.clone();
    differ.nodes[2].list = b.finals(1, &["b1", "b2"]).nodes[0].list.clone();
    let report = b.check_with(2, &differ);
    let divergent: Vec<&Violation> = report
        .durability
        .violations
        .iter()
        .filter(|v| v.kind == ViolationKind::DivergentFinalLists)
        .collect();
    assert_eq!(divergent.len(), 1, "{report}");
    assert_eq!(divergent[0].node.as_deref(), Some("n3"));
    assert_eq!(divergent[0].borrow_ids, ["b2"]);
    assert!(divergent[0].detail.contains("n1, n2"), "{}", divergent[0]);
}

#[test]
fn old_histories_without_windows_or_nodes_still_load() {
    let line = r#"{"type":"fault","kind":"kill","target":"n3","start":5,"end":9}
{"type":"final_read","node":"n1","gets":{"b1":{"result":"not_found"}},"list":null}
{"type":"invoke","op":1,"client":1,"node":"n1","time":0,"call":{"call":"borrow","license":"F/1","from":1900000000,"until":1900003600,"host":"h","request_id":"r"}}"#;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("history.jsonl");
    std::fs::write(&path, line).expect("write");
    let history = crate::history::load(&path).expect("load");
    assert_eq!(history.faults[0].nodes, Vec::<String>::new());
    assert_eq!(history.started_unix_ms, None);
    assert!(matches!(
        history.ops[0].kind,
        OpKind::Borrow {
            from: Some(1_900_000_000),
            ..
        }
    ));
    let finals = history.final_read_ops();
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].id, 2);
    assert_eq!(
        finals[0].invoke, 10,
        "placed right after everything else (the heal at 9)"
    );
    assert_eq!(finals[0].complete, None);
}

// ---------------------------------------------------------------- liveness per node

const S: Time = 1_000_000_000;

fn on(node: &str, id: OpId, window: (Time, Time), result: OpResult) -> Op {
    Op {
        id,
        client: 1,
        node: node.to_string(),
        kind: OpKind::List,
        invoke: window.0,
        complete: Some(window.1),
        result,
    }
}

fn listing() -> OpResult {
    list_of(&[(LICENSE, Vec::new())])
}

#[test]
fn every_node_a_fault_hit_must_answer_again_within_the_bound() {
    let fault = |kind: &str, start: Time, end: Time, nodes: &[&str]| FaultEvent {
        kind: kind.into(),
        target: nodes.join(","),
        start,
        end: Some(end),
        nodes: nodes.iter().map(|n| n.to_string()).collect(),
    };
    let history = History {
        faults: vec![
            fault("kill", 0, 10 * S, &["n2"]),
            fault("partition", 100 * S, 110 * S, &["n1", "n3"]),
        ],
        ops: vec![
            // A borrow anywhere soon after each heal: the cluster-wide measure passes.
            Op {
                kind: OpKind::Borrow {
                    license: LICENSE.into(),
                    from: Some(span(0, 1).0),
                    until: span(0, 1).1,
                    host: "h".into(),
                    request_id: None,
                },
                ..on("n1", 1, (11 * S, 12 * S), ok("b1"))
            },
            on("n2", 2, (11 * S, 13 * S), listing()),
            Op {
                kind: OpKind::Borrow {
                    license: LICENSE.into(),
                    from: Some(span(2, 3).0),
                    until: span(2, 3).1,
                    host: "h2".into(),
                    request_id: None,
                },
                ..on("n2", 3, (111 * S, 112 * S), ok("b2"))
            },
            // n1 answers again only 40 s after the heal; n3 only fails.
            on("n3", 4, (112 * S, 115 * S), unknown()),
            on("n1", 5, (140 * S, 150 * S), listing()),
            on("n2", 6, (200 * S, 201 * S), listing()),
        ],
        ..History::default()
    };
    let config = CheckConfig {
        recovery_bound: 30 * S,
        ..CheckConfig::default()
    };
    let report = check(
        &history,
        &[(LICENSE.into(), 5)],
        &FinalReads::default(),
        &config,
    );
    let liveness = &report.liveness;
    let found: Vec<(ViolationKind, Option<&str>)> = liveness
        .violations
        .iter()
        .map(|v| (v.kind, v.node.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            (ViolationKind::SlowNodeRecovery, Some("n1")),
            (ViolationKind::NoNodeRecovery, Some("n3"))
        ],
        "{report}"
    );
    assert!(liveness.violations[0].detail.contains("partition"));
    assert_eq!(liveness.node_stats["kill"]["n2"].median, Some(3 * S));
    assert_eq!(liveness.node_stats["partition"]["n1"].max, Some(40 * S));
    assert_eq!(liveness.node_stats["partition"]["n3"].recovered, 0);
    let text = report.to_string();
    assert!(text.contains("recovery per node and fault kind"), "{text}");
    assert!(text.contains("kill n2: 1/1 recovered"), "{text}");
    // A final read counts as an answer: n3's final list, answered 10 s after the heal,
    // is soon enough.
    let mut read = NodeFinalRead::new("n3");
    read.record_list(118 * S, 120 * S, listing());
    let mut fixed = history.clone();
    fixed.ops.retain(|op| op.id != 5);
    fixed.ops.push(on("n1", 5, (115 * S, 116 * S), listing()));
    let report = check(
        &fixed,
        &[(LICENSE.into(), 5)],
        &FinalReads { nodes: vec![read] },
        &config,
    );
    assert!(report.liveness.violations.is_empty(), "{report}");
    assert_eq!(
        report.liveness.node_stats["partition"]["n3"].max,
        Some(10 * S)
    );
    let json = serde_json::to_value(&report.liveness).expect("json");
    assert_eq!(json["node_stats"]["partition"]["n3"]["recovered"], 1);
}

#[test]
fn every_violation_kind_names_its_check() {
    let checks: std::collections::BTreeSet<&str> =
        ViolationKind::ALL.iter().map(|kind| kind.check()).collect();
    assert_eq!(
        checks.into_iter().collect::<Vec<_>>(),
        [
            "answers",
            "clock",
            "durability",
            "linearizability",
            "liveness",
            "safety"
        ]
    );
    let names: std::collections::BTreeSet<String> =
        ViolationKind::ALL.iter().map(ToString::to_string).collect();
    assert_eq!(names.len(), ViolationKind::ALL.len());
    for kind in ViolationKind::ALL {
        let json = serde_json::to_string(&kind).expect("json");
        assert_eq!(json, format!("\"{kind}\""));
    }
}
