//! Property test: random borrow sequences through the state machine's apply, every
//! decision compared with a brute-force model of the capacity rule (docs/protocol.md §5.2.1).

use licensed::borrow::check::{BorrowError, BorrowRequest};
use licensed::borrow::host_id::HostId;
use licensed::borrow::license::{License, LicenseKey};
use licensed::state::{Bootstrap, Command, Ledger, Outcome};
use proptest::prelude::*;
use uuid::Uuid;

const START: i64 = 1_800_000_000;

fn license(uuid: &str, count: u32) -> License {
    License {
        key: LicenseKey {
            feature: "MVTec_HALCON".into(),
            uuid: uuid.into(),
        },
        version: "26.05".into(),
        edition: "Steady".into(),
        modules: "fc".into(),
        count,
        valid_from: None,
        valid_until: None,
        max_borrow_secs: None,
        max_borrowed: None,
        max_per_host: None,
    }
}

#[derive(Debug, Clone)]
struct Op {
    license: usize,
    /// Offset of the start from the current time (may be negative: backdated a little).
    from_offset: i64,
    length: i64,
    /// How far the clock moves before this borrow.
    advance: i64,
}

fn op() -> impl Strategy<Value = Op> {
    (0usize..3, -5i64..40, 1i64..30, 0i64..4).prop_map(|(license, from_offset, length, advance)| {
        Op {
            license,
            from_offset,
            length,
            advance,
        }
    })
}

/// Maximum number of `held` intervals covering any instant of [from, until).
fn brute_force_max_overlap(held: &[(i64, i64)], from: i64, until: i64) -> usize {
    (from..until)
        .map(|t| held.iter().filter(|(f, u)| *f <= t && t < *u).count())
        .max()
        .unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn apply_agrees_with_the_brute_force_model(
        counts in proptest::collection::vec(1u32..4, 3),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let licenses: Vec<License> = counts
            .iter()
            .enumerate()
            .map(|(i, count)| license(&format!("lic{i}"), *count))
            .collect();
        let mut ledger = Ledger::default();
        ledger.apply(&Command::Bootstrap(Box::new(Bootstrap {
            licenses: licenses.clone(),
            max_borrow_secs: 3600,
            retention_secs: 30 * 86_400,
            signing_key: [7; 32],
            audit_retention_secs: 90 * 86_400,
            max_audit_entries: 100_000,
            created_at: 0,
        })));
        let mut held: Vec<Vec<(i64, i64)>> = vec![Vec::new(); licenses.len()];
        let mut now = START;
        for op in ops {
            now += op.advance;
            let (from, until) = (now + op.from_offset, now + op.from_offset + op.length);
            let request = BorrowRequest {
                key: licenses[op.license].key.clone(),
                host_id: HostId::parse("MAC:2C549188C9E3").unwrap(),
                valid_from: Some(from),
                valid_until: Some(until),
                user_info: None,
            };
            let outcome = ledger.apply(&Command::Borrow { now, borrow_id: Uuid::new_v4(), request, request_id: None });
            let count = licenses[op.license].count as usize;
            let expected_ok = until > now
                && brute_force_max_overlap(&held[op.license], from, until) < count;
            match outcome {
                Outcome::Borrow(Ok(record)) => {
                    prop_assert!(expected_ok, "accepted [{from},{until}) but the model has no room");
                    prop_assert_eq!((record.valid_from, record.valid_until), (from, until));
                    held[op.license].push((from, until));
                }
                Outcome::Borrow(Err(BorrowError::NotAvailable { .. })) => {
                    prop_assert!(!expected_ok && until > now, "refused [{from},{until}) with 32 but the model has room");
                }
                Outcome::Borrow(Err(BorrowError::InvalidInterval(_))) => {
                    prop_assert!(until <= now, "refused [{from},{until}) as invalid at {now}");
                }
                other => prop_assert!(false, "unexpected outcome {:?}", other),
            }
            // The invariant itself: no instant above count.
            let lo = held[op.license].iter().map(|h| h.0).min().unwrap_or(0);
            let hi = held[op.license].iter().map(|h| h.1).max().unwrap_or(0);
            prop_assert!(brute_force_max_overlap(&held[op.license], lo, hi) <= count);
        }
        // A snapshot round trip rebuilds the same decisions.
        let restored = Ledger::from_snapshot(ledger.to_snapshot());
        prop_assert_eq!(restored.to_snapshot(), ledger.to_snapshot());
    }
}
