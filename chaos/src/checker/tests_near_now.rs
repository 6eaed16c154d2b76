//! Near-now borrows (no `validFrom`, the server's clock starts them): the model, the
//! listing of their server-chosen start, the premise that they all overlap, and the
//! clock check.

use super::tests::{document, kinds, unknown};
use super::*;
use crate::history::{ListedBorrow, Op, OpKind, OpResult, UnixSeconds};

const NOW_LICENSE: &str = "NEAR/now";
/// The wall clock at history time 0, Unix milliseconds.
const STARTED_MS: i64 = 1_900_000_000_000;
/// The same instant in Unix seconds.
const T0: UnixSeconds = 1_900_000_000;
const S: Time = 1_000_000_000;
const HOUR: UnixSeconds = 3_600;

/// Builds near-now histories; times are whole seconds of history time.
struct NearNow {
    history: History,
}

impl NearNow {
    fn new() -> NearNow {
        NearNow {
            history: History {
                started_unix_ms: Some(STARTED_MS),
                ..History::default()
            },
        }
    }

    fn op(&mut self, node: &str, kind: OpKind, window: (Time, Time), result: OpResult) -> OpId {
        let id = self.history.ops.len() as OpId + 1;
        self.history.ops.push(Op {
            id,
            client: id,
            node: node.to_string(),
            kind,
            invoke: window.0 * S,
            complete: Some(window.1 * S),
            result,
        });
        self.history.ops.sort_by_key(|op| (op.invoke, op.id));
        id
    }

    /// A near-now borrow by `host`, ending `hours` after T0, sent at `window` (seconds).
    fn borrow(&mut self, host: &str, hours: i64, window: (Time, Time), result: OpResult) -> OpId {
        let kind = OpKind::Borrow {
            license: NOW_LICENSE.into(),
            from: None,
            until: T0 + hours * HOUR,
            host: host.into(),
            request_id: Some(format!("r-{host}")),
        };
        self.op("n1", kind, window, result)
    }

    fn ret(&mut self, id: &str, window: (Time, Time)) -> OpId {
        let kind = OpKind::Return {
            borrow_id: id.into(),
        };
        self.op("n2", kind, window, OpResult::ReturnOk)
    }

    fn list(&mut self, shown: &[(&str, &str, UnixSeconds, i64)], window: (Time, Time)) -> OpId {
        let borrows = shown
            .iter()
            .map(|(id, host, from, hours)| ListedBorrow {
                borrow_id: id.to_string(),
                host_id: host.to_string(),
                from: *from,
                until: T0 + hours * HOUR,
            })
            .collect();
        let result = OpResult::ListOk {
            licenses: [(NOW_LICENSE.to_string(), borrows)].into_iter().collect(),
        };
        self.op("n3", OpKind::List, window, result)
    }

    fn check(&self, count: u64) -> CheckReport {
        check(
            &self.history,
            &[(NOW_LICENSE.to_string(), count)],
            &FinalReads::default(),
            &CheckConfig::default(),
        )
    }
}

/// The acknowledgement of near-now borrow `id` by `host`, stamped `start`.
fn acked(id: &str, host: &str, start: UnixSeconds, hours: i64) -> OpResult {
    OpResult::BorrowOk {
        borrow_id: id.into(),
        license: document(NOW_LICENSE, id, host, (start, T0 + hours * HOUR)),
    }
}

#[test]
fn near_now_borrows_overlap_whatever_their_ends() {
    // Count 1: b2 ends an hour later than b1, starts after b1 was granted, and still
    // overlaps it: the second grant is an over-borrow.
    let mut h = NearNow::new();
    h.borrow(
        "MAC:0000000000A1",
        2,
        (1, 2),
        acked("b1", "MAC:0000000000A1", T0 + 1, 2),
    );
    h.borrow(
        "MAC:0000000000A2",
        3,
        (10, 11),
        acked("b2", "MAC:0000000000A2", T0 + 10, 3),
    );
    let report = h.check(1);
    assert!(kinds(&report.safety.violations).contains(&ViolationKind::OverBorrow));
    assert_eq!(
        kinds(&report.linearizability.violations),
        [ViolationKind::NotLinearizable]
    );
    assert_eq!(report.summary.near_now_borrows, 2);
    // Returned first, b1 makes room: the same history passes every check.
    let mut h = NearNow::new();
    h.borrow(
        "MAC:0000000000A1",
        2,
        (1, 2),
        acked("b1", "MAC:0000000000A1", T0 + 1, 2),
    );
    h.ret("b1", (5, 6));
    h.borrow(
        "MAC:0000000000A2",
        3,
        (10, 11),
        acked("b2", "MAC:0000000000A2", T0 + 10, 3),
    );
    h.list(&[("b2", "MAC:0000000000A2", T0 + 10, 3)], (12, 13));
    let report = h.check(1);
    assert!(report.passed(), "{report}");
    assert_eq!(report.clock.checked, 2);
    // And a refusal while b1 holds the only seat is right, one after its return wrong.
    let mut h = NearNow::new();
    h.borrow(
        "MAC:0000000000A1",
        2,
        (1, 2),
        acked("b1", "MAC:0000000000A1", T0 + 1, 2),
    );
    h.borrow("MAC:0000000000A2", 4, (3, 4), OpResult::Conflict);
    assert!(h.check(1).passed());
    h.ret("b1", (5, 6));
    h.borrow("MAC:0000000000A3", 4, (7, 8), OpResult::Conflict);
    assert_eq!(
        kinds(&h.check(1).linearizability.violations),
        [ViolationKind::NotLinearizable]
    );
}

#[test]
fn a_list_shows_a_near_now_borrow_with_the_start_the_server_stamped() {
    let mut h = NearNow::new();
    h.borrow(
        "MAC:0000000000A1",
        2,
        (1, 2),
        acked("b1", "MAC:0000000000A1", T0 + 1, 2),
    );
    h.list(&[("b1", "MAC:0000000000A1", T0 + 1, 2)], (3, 4));
    assert!(h.check(1).passed());
    h.list(&[("b1", "MAC:0000000000A1", T0 + 100, 2)], (5, 6));
    let report = h.check(1);
    assert_eq!(
        kinds(&report.answers.violations),
        [ViolationKind::AlteredListing]
    );
    // The end is compared too.
    let mut h = NearNow::new();
    h.borrow(
        "MAC:0000000000A1",
        2,
        (1, 2),
        acked("b1", "MAC:0000000000A1", T0 + 1, 2),
    );
    h.list(&[("b1", "MAC:0000000000A1", T0 + 1, 3)], (3, 4));
    assert_eq!(
        kinds(&h.check(1).answers.violations),
        [ViolationKind::AlteredListing]
    );
}

#[test]
fn an_unanswered_near_now_borrow_is_matched_to_a_listed_id_by_host_and_end() {
    let mut h = NearNow::new();
    h.borrow("MAC:0000000000A1", 2, (1, 2), unknown());
    // Listed with the start the server chose, which the client never learnt.
    h.list(&[("x", "MAC:0000000000A1", T0 + 1, 2)], (5, 6));
    h.borrow("MAC:0000000000A2", 3, (7, 8), OpResult::Conflict);
    let report = h.check(1);
    assert!(report.passed(), "{report}");
    // Another end is another borrow: nothing explains the listed id.
    let mut h = NearNow::new();
    h.borrow("MAC:0000000000A1", 2, (1, 2), unknown());
    h.list(&[("x", "MAC:0000000000A1", T0 + 1, 4)], (5, 6));
    assert_eq!(
        kinds(&h.check(1).linearizability.violations),
        [ViolationKind::NotLinearizable]
    );
}

#[test]
fn a_stamp_outside_the_clients_clock_window_fails_the_clock_check() {
    let mut h = NearNow::new();
    // Sent 10 s into the run, answered at 11 s; stamped a minute earlier.
    h.borrow(
        "MAC:0000000000A1",
        2,
        (10, 11),
        acked("b1", "MAC:0000000000A1", T0 - 50, 2),
    );
    let report = h.check(2);
    let violations = &report.clock.violations;
    assert_eq!(kinds(violations), [ViolationKind::ClockStamp]);
    assert_eq!(violations[0].borrow_ids, ["b1"]);
    assert_eq!(violations[0].node.as_deref(), Some("n1"));
    assert!(
        violations[0].detail.contains("59.001 s before"),
        "{}",
        violations[0]
    );
    assert_eq!(report.clock.earliest_offset_ms, Some(-59_001));
    // Too late is as wrong as too early.
    let mut h = NearNow::new();
    h.borrow(
        "MAC:0000000000A1",
        2,
        (10, 11),
        acked("b1", "MAC:0000000000A1", T0 + 30, 2),
    );
    let report = h.check(2);
    assert_eq!(kinds(&report.clock.violations), [ViolationKind::ClockStamp]);
    assert!(report.clock.violations[0].detail.contains("19.000 s after"));
    // Within the tolerance: a stamp 3 s after the answer, one 4 s before the call.
    let mut h = NearNow::new();
    h.borrow(
        "MAC:0000000000A1",
        2,
        (10, 11),
        acked("b1", "MAC:0000000000A1", T0 + 14, 2),
    );
    h.borrow(
        "MAC:0000000000A2",
        2,
        (20, 21),
        acked("b2", "MAC:0000000000A2", T0 + 15, 2),
    );
    let report = h.check(2);
    assert!(report.passed(), "{report}");
    assert_eq!(report.clock.latest_offset_ms, Some(3_000));
    assert_eq!(report.clock.earliest_offset_ms, Some(-4_001));
    // A retry's acknowledgement carries the first attempt's stamp: the window starts
    // at the first attempt.
    let mut h = NearNow::new();
    h.borrow("MAC:0000000000A1", 2, (10, 13), unknown());
    h.borrow(
        "MAC:0000000000A1",
        2,
        (20, 21),
        acked("b1", "MAC:0000000000A1", T0 + 12, 2),
    );
    assert!(h.check(2).passed());
}

#[test]
fn an_unreadable_near_now_license_fails_the_clock_check() {
    let mut h = NearNow::new();
    h.borrow(
        "MAC:0000000000A1",
        2,
        (1, 2),
        OpResult::BorrowOk {
            borrow_id: "b1".into(),
            license: "garbage".into(),
        },
    );
    assert_eq!(
        kinds(&h.check(2).clock.violations),
        [ViolationKind::ClockStamp]
    );
}

#[test]
fn near_now_borrows_are_not_judged_where_they_might_not_overlap() {
    // A run of three hours: a borrow ending two hours after T0 may not overlap one
    // made after that, so the license is left undecided, not passed.
    let mut h = NearNow::new();
    h.borrow(
        "MAC:0000000000A1",
        2,
        (1, 2),
        acked("b1", "MAC:0000000000A1", T0 + 1, 2),
    );
    h.borrow(
        "MAC:0000000000A2",
        6,
        (3 * 3_600, 3 * 3_600 + 1),
        acked("b2", "MAC:0000000000A2", T0 + 3 * 3_600, 6),
    );
    let report = h.check(1);
    let partition = &report.linearizability.partitions[0];
    assert_eq!(partition.outcome, PartitionOutcome::Unknown);
    assert!(
        partition
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("too long"),
        "{report}"
    );
    assert_eq!(report.verdict(), Verdict::Unknown);
    assert!(
        report.warnings.iter().any(|w| w.contains(NOW_LICENSE)),
        "{report}"
    );
    assert!(report.to_string().contains("not searched"), "{report}");
    // Without the history's wall clock start, neither the premise nor the stamps can
    // be checked.
    let mut h = NearNow::new();
    h.history.started_unix_ms = None;
    h.borrow(
        "MAC:0000000000A1",
        2,
        (1, 2),
        acked("b1", "MAC:0000000000A1", T0 + 1, 2),
    );
    let report = h.check(1);
    assert_eq!(
        report.linearizability.partitions[0].outcome,
        PartitionOutcome::Unknown
    );
    assert_eq!(report.clock.checked, 0);
    assert!(
        report.warnings.iter().any(|w| w.contains("wall clock")),
        "{report}"
    );
}
