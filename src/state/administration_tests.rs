//! Property test of the ledger under administration: random sequences of borrows,
//! returns, license changes (plain and forced), pool applications, host blocks and time
//! passing (which purges ended borrows) keep the capacity invariant — no borrow is
//! granted over its license's borrowable seats, no unforced change over-books — and an
//! audit trail that accounts for every decision the ledger made.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use uuid::Uuid;

use crate::borrow::check::BorrowRequest;
use crate::borrow::host_id::HostId;
use crate::borrow::license::{License, LicenseKey};
use crate::borrow::pool::Pool;
use crate::borrow::time::UnixSeconds;

use super::audit::{AuditFilter, AuditKind};
use super::command::{Bootstrap, Command, Outcome};
use super::ledger::Ledger;
use super::{HostChange, LicenseChange, LicenseUpdate};

const START: UnixSeconds = 1_800_000_000;
const HOUR: i64 = 3_600;
const LICENSES: usize = 3;
const HOSTS: usize = 4;

fn key(i: usize) -> LicenseKey {
    LicenseKey {
        feature: "MVTec_HALCON".into(),
        uuid: format!("lic{i}"),
    }
}

fn host(i: usize) -> HostId {
    HostId::parse(&format!("MAC:0000000000{i:02X}")).expect("host id")
}

fn license(i: usize, count: u32) -> License {
    License {
        key: key(i),
        version: "26.05".into(),
        edition: "Steady".into(),
        modules: "fc".into(),
        count,
        valid_from: None,
        valid_until: Some(START + 400 * 24 * HOUR),
        max_borrow_secs: None,
        max_borrowed: None,
        max_per_host: None,
    }
}

#[derive(Debug, Clone)]
enum Op {
    Borrow {
        lic: usize,
        host: usize,
        from_h: i64,
        len_h: Option<i64>,
    },
    Return {
        pick: usize,
    },
    Advance {
        hours: i64,
    },
    Update {
        lic: usize,
        count: u32,
        cap: Option<u32>,
        until_days: Option<i64>,
        force: bool,
    },
    Remove {
        lic: usize,
        force: bool,
    },
    Add {
        lic: usize,
        count: u32,
        force: bool,
    },
    ApplyPool {
        counts: [Option<u32>; LICENSES],
        force: bool,
    },
    Block {
        host: usize,
    },
    Unblock {
        host: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..LICENSES, 0..HOSTS, -2i64..48, prop::option::of(1i64..72))
            .prop_map(|(lic, host, from_h, len_h)| Op::Borrow { lic, host, from_h, len_h }),
        2 => any::<usize>().prop_map(|pick| Op::Return { pick }),
        2 => prop_oneof![0i64..6, 0i64..(40 * 24)].prop_map(|hours| Op::Advance { hours }),
        2 => (0..LICENSES, 0u32..4, prop::option::of(0u32..3), prop::option::of(1i64..30), any::<bool>())
            .prop_map(|(lic, count, cap, until_days, force)| Op::Update { lic, count, cap, until_days, force }),
        1 => (0..LICENSES, any::<bool>()).prop_map(|(lic, force)| Op::Remove { lic, force }),
        1 => (0..LICENSES, 0u32..4, any::<bool>()).prop_map(|(lic, count, force)| Op::Add { lic, count, force }),
        1 => (prop::array::uniform3(prop::option::of(0u32..4)), any::<bool>())
            .prop_map(|(counts, force)| Op::ApplyPool { counts, force }),
        1 => (0..HOSTS).prop_map(|host| Op::Block { host }),
        1 => (0..HOSTS).prop_map(|host| Op::Unblock { host }),
    ]
}

/// What the ledger answered, as the audit trail must show it.
#[derive(Default)]
struct Expected {
    borrows: BTreeSet<Uuid>,
    returns: BTreeSet<Uuid>,
    refusals: BTreeMap<i64, usize>,
    admin_changes: usize,
}

/// The most held borrows of `key` that overlap at one instant from `now` on.
fn peak(ledger: &Ledger, key: &LicenseKey, now: UnixSeconds) -> usize {
    let mut events: Vec<(UnixSeconds, i32)> = Vec::new();
    for record in ledger.held_borrows(key, now) {
        events.push((record.valid_from.max(now), 1));
        events.push((record.valid_until, -1));
    }
    events.sort_unstable();
    let (mut level, mut best) = (0, 0);
    for (_, step) in events {
        level += step;
        best = best.max(level);
    }
    best as usize
}

fn seats(ledger: &Ledger, key: &LicenseKey) -> Option<usize> {
    ledger.license(key).map(|l| l.borrowable_seats() as usize)
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut ledger = Ledger::default();
    ledger.apply(&Command::Bootstrap(Box::new(Bootstrap {
        licenses: (0..LICENSES).map(|i| license(i, 2)).collect(),
        max_borrow_secs: 30 * 24 * HOUR,
        retention_secs: 7 * 24 * HOUR,
        signing_key: [7; 32],
        // Long and large enough that nothing of the run is trimmed.
        audit_retention_secs: 100 * 365 * 24 * HOUR,
        max_audit_entries: 1_000_000,
        created_at: START,
    })));
    let mut now = START;
    let mut expected = Expected {
        admin_changes: 1, // the pool the cluster was created with
        ..Expected::default()
    };
    let mut granted: Vec<Uuid> = Vec::new();
    // Licenses a forced change over-booked: their peak may exceed their seats until the
    // over-booked borrows end. Unforced changes and borrows must never over-book.
    let mut forced: BTreeSet<LicenseKey> = BTreeSet::new();
    for (step, op) in ops.into_iter().enumerate() {
        now += 60;
        let id = Uuid::from_u128(step as u128 + 1);
        match op {
            Op::Borrow {
                lic,
                host: h,
                from_h,
                len_h,
            } => {
                let from = now + from_h * HOUR;
                let request = BorrowRequest {
                    key: key(lic),
                    host_id: host(h),
                    valid_from: Some(from),
                    valid_until: len_h.map(|len| from + len * HOUR),
                    user_info: None,
                };
                let blocked = ledger.hosts().blocked(&host(h)).is_some();
                let before = peak(&ledger, &key(lic), now);
                let outcome = ledger.apply(&Command::Borrow {
                    now,
                    borrow_id: id,
                    request,
                    request_id: None,
                });
                match outcome {
                    Outcome::Borrow(Ok(record)) => {
                        prop_assert!(!blocked, "a blocked host borrowed");
                        expected.borrows.insert(record.borrow_id);
                        granted.push(record.borrow_id);
                        let after = peak(&ledger, &key(lic), now);
                        let seats = seats(&ledger, &key(lic)).expect("granted on a license");
                        // A granted borrow never takes the license over its seats (an
                        // over-booked license may already be over: then no borrow fits).
                        prop_assert!(after <= seats.max(before), "peak {after} > seats {seats}");
                        if !forced.contains(&key(lic)) {
                            prop_assert!(after <= seats, "peak {after} > seats {seats}");
                        }
                    }
                    Outcome::Borrow(Err(refusal)) => {
                        if blocked {
                            prop_assert_eq!(refusal.code(), 36);
                        }
                        *expected.refusals.entry(refusal.code()).or_default() += 1;
                    }
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
            }
            Op::Return { pick } => {
                if granted.is_empty() {
                    continue;
                }
                let borrow_id = granted[pick % granted.len()];
                let open = ledger.borrow_record(&borrow_id).is_some_and(|r| {
                    r.returned_at.is_none() && r.valid_until > now.max(ledger.clock())
                });
                if let Outcome::Returned(Ok(_)) = ledger.apply(&Command::Return { now, borrow_id })
                {
                    if open {
                        prop_assert!(expected.returns.insert(borrow_id), "returned twice");
                    }
                }
            }
            Op::Advance { hours } => now += hours * HOUR,
            Op::Update {
                lic,
                count,
                cap,
                until_days,
                force,
            } => {
                let update = LicenseUpdate {
                    count: Some(count),
                    max_borrowed: Some(cap),
                    valid_until: until_days.map(|d| Some(now + d * 24 * HOUR)),
                    ..LicenseUpdate::default()
                };
                let change = LicenseChange::Update {
                    key: key(lic),
                    update,
                    force,
                };
                match ledger.apply(&Command::Licenses { now, change }) {
                    Outcome::License(Ok(changed)) => {
                        expected.admin_changes += 1;
                        check_change(
                            &ledger,
                            &key(lic),
                            now,
                            changed.over_booked.is_empty(),
                            force,
                            &mut forced,
                        )?;
                    }
                    Outcome::License(Err(_)) => {}
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
            }
            Op::Remove { lic, force } => {
                let held = !ledger
                    .held_borrows(&key(lic), now.max(ledger.clock()))
                    .is_empty();
                let change = LicenseChange::Remove {
                    key: key(lic),
                    force,
                };
                match ledger.apply(&Command::Licenses { now, change }) {
                    Outcome::License(Ok(_)) => {
                        prop_assert!(force || !held, "removed under held borrows unforced");
                        expected.admin_changes += 1;
                        if held {
                            forced.insert(key(lic));
                        }
                    }
                    Outcome::License(Err(_)) => {
                        prop_assert!(held || ledger.license(&key(lic)).is_none())
                    }
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
            }
            Op::Add { lic, count, force } => {
                let change = LicenseChange::Add {
                    license: license(lic, count),
                    force,
                };
                if let Outcome::License(Ok(changed)) =
                    ledger.apply(&Command::Licenses { now, change })
                {
                    expected.admin_changes += 1;
                    // Borrows kept from a forced removal count against it again.
                    check_change(
                        &ledger,
                        &key(lic),
                        now,
                        changed.over_booked.is_empty(),
                        force,
                        &mut forced,
                    )?;
                }
            }
            Op::ApplyPool { counts, force } => {
                let pool = Pool {
                    licenses: counts
                        .iter()
                        .enumerate()
                        .filter_map(|(i, count)| count.map(|c| license(i, c)))
                        .collect(),
                    max_borrow_secs: 30 * 24 * HOUR,
                    audit_retention_secs: 100 * 365 * 24 * HOUR,
                    max_audit_entries: 1_000_000,
                };
                let change = LicenseChange::ApplyPool {
                    pool: Box::new(pool),
                    force,
                    declared: false,
                };
                match ledger.apply(&Command::Licenses { now, change }) {
                    Outcome::Pool(Ok(plan)) => {
                        prop_assert!(force || plan.conflicts.is_empty());
                        // One entry per license added, changed or removed, and the pool's.
                        expected.admin_changes +=
                            1 + plan.added.len() + plan.changed.len() + plan.removed.len();
                        for conflict in &plan.conflicts {
                            forced.insert(conflict.key.clone());
                        }
                        for i in 0..LICENSES {
                            if !forced.contains(&key(i)) {
                                if let Some(seats) = seats(&ledger, &key(i)) {
                                    prop_assert!(peak(&ledger, &key(i), ledger.clock()) <= seats);
                                }
                            }
                        }
                    }
                    Outcome::Pool(Err(_)) => prop_assert!(!force),
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
            }
            Op::Block { host: h } => {
                let change = HostChange::Block {
                    reason: Some("test".into()),
                };
                let outcome = ledger.apply(&Command::Host {
                    now,
                    host_id: host(h),
                    change,
                });
                prop_assert!(matches!(outcome, Outcome::Host(Ok(_))));
                expected.admin_changes += 1;
            }
            Op::Unblock { host: h } => {
                let outcome = ledger.apply(&Command::Host {
                    now,
                    host_id: host(h),
                    change: HostChange::Unblock,
                });
                prop_assert!(matches!(outcome, Outcome::Host(Ok(_))));
                expected.admin_changes += 1;
            }
        }
    }
    check_audit(&ledger, &expected)?;
    // The whole state, audit and hosts included, survives a snapshot unchanged.
    let snapshot = ledger.to_snapshot();
    prop_assert_eq!(
        Ledger::from_snapshot(snapshot.clone()).to_snapshot(),
        snapshot
    );
    Ok(())
}

/// After a successful license change: unforced, or forced without over-booking, it left
/// the license within its seats.
fn check_change(
    ledger: &Ledger,
    key: &LicenseKey,
    now: UnixSeconds,
    nothing_over_booked: bool,
    force: bool,
    forced: &mut BTreeSet<LicenseKey>,
) -> Result<(), TestCaseError> {
    let now = now.max(ledger.clock());
    let seats = seats(ledger, key).expect("changed license exists");
    if nothing_over_booked {
        if !forced.contains(key) {
            prop_assert!(peak(ledger, key, now) <= seats);
        }
    } else {
        prop_assert!(force, "over-booked without force");
        forced.insert(key.clone());
    }
    Ok(())
}

fn check_audit(ledger: &Ledger, expected: &Expected) -> Result<(), TestCaseError> {
    let (entries, _) = ledger
        .audit()
        .page(&AuditFilter::default(), None, usize::MAX);
    let mut borrows = BTreeSet::new();
    let mut returns = BTreeSet::new();
    let mut refusals: BTreeMap<i64, usize> = BTreeMap::new();
    let mut admin = 0;
    let mut last_seq = 0;
    for entry in &entries {
        prop_assert!(entry.seq > last_seq, "sequence numbers increase");
        last_seq = entry.seq;
        match entry.event.kind() {
            AuditKind::Borrow => {
                let id = entry.event.borrow_id().expect("a borrow names its id");
                prop_assert!(borrows.insert(id), "borrow {id} audited twice");
                if let Some(record) = ledger.borrow_record(&id) {
                    prop_assert_eq!(Some(&record.key), entry.event.license());
                    prop_assert_eq!(Some(&record.host_id), entry.event.host_id());
                }
            }
            AuditKind::Return => {
                let id = entry.event.borrow_id().expect("a return names its id");
                prop_assert!(returns.insert(id), "return {id} audited twice");
            }
            AuditKind::Refusal => {
                *refusals
                    .entry(entry.event.code().expect("a refusal has a code"))
                    .or_default() += 1
            }
            AuditKind::Membership | AuditKind::ApiKeyCreate | AuditKind::ApiKeyRevoke => {}
            _ => admin += 1,
        }
    }
    prop_assert_eq!(&borrows, &expected.borrows);
    prop_assert_eq!(&returns, &expected.returns);
    prop_assert_eq!(&refusals, &expected.refusals);
    prop_assert_eq!(admin, expected.admin_changes);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn administration_keeps_capacity_and_the_audit_trail_accounts_for_everything(
        ops in prop::collection::vec(op(), 1..120)
    ) {
        run(ops)?;
    }
}

mod examples {
    //! The policies and the declarative pool, one behaviour each.

    use super::*;
    use crate::state::audit::Actor;

    fn created(licenses: Vec<License>) -> (Ledger, Pool) {
        let pool = Pool {
            licenses,
            max_borrow_secs: 30 * 24 * HOUR,
            audit_retention_secs: 90 * 24 * HOUR,
            max_audit_entries: 1_000,
        };
        let mut ledger = Ledger::default();
        ledger.apply(&Command::Bootstrap(Box::new(Bootstrap {
            licenses: pool.licenses.clone(),
            max_borrow_secs: pool.max_borrow_secs,
            retention_secs: 7 * 24 * HOUR,
            signing_key: [7; 32],
            audit_retention_secs: pool.audit_retention_secs,
            max_audit_entries: pool.max_audit_entries,
            created_at: START,
        })));
        (ledger, pool)
    }

    fn borrow(ledger: &mut Ledger, n: u128, lic: usize, h: usize, until: Option<i64>) -> Outcome {
        ledger.apply(&Command::Borrow {
            now: START,
            borrow_id: Uuid::from_u128(n),
            request: BorrowRequest {
                key: key(lic),
                host_id: host(h),
                valid_from: Some(START),
                valid_until: until,
                user_info: None,
            },
            request_id: None,
        })
    }

    fn refusal(outcome: Outcome) -> (i64, String) {
        match outcome {
            Outcome::Borrow(Err(refusal)) => (refusal.code(), refusal.to_string()),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn max_borrowed_keeps_seats_back_and_max_per_host_limits_one_host() {
        let mut capped = license(0, 5);
        capped.max_borrowed = Some(2);
        capped.max_per_host = Some(1);
        let (mut ledger, _) = created(vec![capped]);
        let day = Some(START + 24 * HOUR);
        assert!(matches!(
            borrow(&mut ledger, 1, 0, 0, day),
            Outcome::Borrow(Ok(_))
        ));
        let (code, reason) = refusal(borrow(&mut ledger, 2, 0, 0, day));
        assert_eq!(code, 32);
        assert!(reason.contains("maxPerHost"), "{reason}");
        assert!(matches!(
            borrow(&mut ledger, 3, 0, 1, day),
            Outcome::Borrow(Ok(_))
        ));
        // Two of five seats may be out on borrow at once.
        let (code, reason) = refusal(borrow(&mut ledger, 4, 0, 2, day));
        assert_eq!(code, 32);
        assert!(reason.contains("maxBorrowed"), "{reason}");
    }

    #[test]
    fn a_borrow_without_an_end_lasts_as_long_as_allowed_within_the_license() {
        let mut short = license(0, 1);
        short.valid_until = Some(START + 3 * 24 * HOUR);
        let (mut ledger, _) = created(vec![short, license(1, 1)]);
        let Outcome::Borrow(Ok(record)) = borrow(&mut ledger, 1, 0, 0, None) else {
            panic!("refused")
        };
        assert_eq!(
            record.valid_until,
            START + 3 * 24 * HOUR,
            "cut at the license's end"
        );
        let Outcome::Borrow(Ok(record)) = borrow(&mut ledger, 2, 1, 0, None) else {
            panic!("refused")
        };
        assert_eq!(
            record.valid_until,
            START + 30 * 24 * HOUR,
            "the pool's longest borrow"
        );
    }

    #[test]
    fn a_blocked_host_is_refused_with_36_until_unblocked() {
        let (mut ledger, _) = created(vec![license(0, 3)]);
        let day = Some(START + 24 * HOUR);
        let change = HostChange::Block {
            reason: Some("stolen".into()),
        };
        ledger.apply(&Command::Host {
            now: START,
            host_id: host(1),
            change,
        });
        let (code, reason) = refusal(borrow(&mut ledger, 1, 0, 1, day));
        assert_eq!(code, 36);
        assert!(
            reason.contains("blocked") && reason.contains("stolen"),
            "{reason}"
        );
        assert!(matches!(
            borrow(&mut ledger, 2, 0, 2, day),
            Outcome::Borrow(Ok(_))
        ));
        ledger.apply(&Command::Host {
            now: START,
            host_id: host(1),
            change: HostChange::Unblock,
        });
        assert!(matches!(
            borrow(&mut ledger, 3, 0, 1, day),
            Outcome::Borrow(Ok(_))
        ));
    }

    #[test]
    fn a_declared_pool_is_applied_once_and_never_undoes_an_admin_change() {
        let (mut ledger, pool) = created(vec![license(0, 2)]);
        let declare = |pool: &Pool| Command::Origin {
            node: 3,
            admin: false,
            command: Box::new(Command::Licenses {
                now: START,
                change: LicenseChange::ApplyPool {
                    pool: Box::new(pool.clone()),
                    force: false,
                    declared: true,
                },
            }),
        };
        // The file the cluster was created with: nothing to do, nothing recorded.
        let entries = ledger.audit().len();
        let Outcome::Pool(Ok(plan)) = ledger.apply(&declare(&pool)) else {
            panic!("refused")
        };
        assert!(plan.is_empty());
        assert_eq!(ledger.audit().len(), entries);
        // An administrator raises the count; the unchanged file does not lower it again.
        let change = LicenseChange::Update {
            key: key(0),
            update: LicenseUpdate {
                count: Some(4),
                ..LicenseUpdate::default()
            },
            force: false,
        };
        let by_admin = Command::Origin {
            node: 2,
            admin: true,
            command: Box::new(Command::Licenses { now: START, change }),
        };
        assert!(matches!(ledger.apply(&by_admin), Outcome::License(Ok(_))));
        ledger.apply(&declare(&pool));
        assert_eq!(ledger.license(&key(0)).map(|l| l.count), Some(4));
        // A changed file is applied, by the node that read it.
        let mut renewed = pool.clone();
        renewed.licenses.push(license(1, 1));
        let Outcome::Pool(Ok(plan)) = ledger.apply(&declare(&renewed)) else {
            panic!("refused")
        };
        assert_eq!(plan.added.len(), 1);
        assert_eq!(
            ledger.license(&key(0)).map(|l| l.count),
            Some(2),
            "the file's count"
        );
        let (entries, _) = ledger
            .audit()
            .page(&AuditFilter::default(), None, usize::MAX);
        let admin = entries
            .iter()
            .find(|e| e.event.kind() == AuditKind::LicenseUpdate)
            .unwrap();
        assert_eq!((admin.actor, admin.node), (Actor::AdminToken, Some(2)));
        let pool_entry = entries
            .iter()
            .rev()
            .find(|e| e.event.kind() == AuditKind::PoolApply)
            .unwrap();
        assert_eq!(
            (pool_entry.actor, pool_entry.node),
            (Actor::Node(3), Some(3))
        );
    }

    #[test]
    fn a_declared_pool_that_would_over_book_is_refused_even_when_forced() {
        let (mut ledger, pool) = created(vec![license(0, 2)]);
        let day = Some(START + 24 * HOUR);
        borrow(&mut ledger, 1, 0, 0, day);
        borrow(&mut ledger, 2, 0, 1, day);
        let mut shrunk = pool.clone();
        shrunk.licenses[0].count = 1;
        let change = LicenseChange::ApplyPool {
            pool: Box::new(shrunk),
            force: true,
            declared: true,
        };
        let outcome = ledger.apply(&Command::Licenses { now: START, change });
        let Outcome::Pool(Err(crate::state::AdminError::Conflict { conflicts, .. })) = outcome
        else {
            panic!("applied: {outcome:?}")
        };
        assert_eq!(
            conflicts[0].borrows,
            vec![Uuid::from_u128(1), Uuid::from_u128(2)]
        );
        assert_eq!(ledger.license(&key(0)).map(|l| l.count), Some(2));
    }
}
