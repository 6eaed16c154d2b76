//! The bounds on what clients can make the ledger keep: current and upcoming borrows per
//! license and per host, and remembered refusals.

use uuid::Uuid;

use super::ledger::{bootstrapped, Ledger, MAX_REMEMBERED_REFUSALS};
use super::outstanding::{MAX_OUTSTANDING_PER_HOST, MAX_OUTSTANDING_PER_SEAT};
use super::{BorrowRecord, Command, Outcome};
use crate::borrow::check::{BorrowError, BorrowRequest};
use crate::borrow::host_id::HostId;
use crate::borrow::license::LicenseKey;
use crate::borrow::time::UnixSeconds;

const NOW: UnixSeconds = 1_800_000_000;
const MINUTE: i64 = 60;

fn key() -> LicenseKey {
    LicenseKey {
        feature: "MVTec_HALCON".into(),
        uuid: "limits".into(),
    }
}

fn ledger(count: u32) -> Ledger {
    bootstrapped(key(), count)
}

fn host(n: u64) -> HostId {
    HostId::parse(&format!("MAC:{n:012X}")).expect("host id")
}

/// A one-minute borrow `slot` minutes from now, by `host`.
fn borrow_at(
    ledger: &mut Ledger,
    now: UnixSeconds,
    slot: i64,
    host: HostId,
    request_id: Option<String>,
) -> Result<BorrowRecord, BorrowError> {
    let from = NOW + slot * MINUTE;
    let outcome = ledger.apply(&Command::Borrow {
        now,
        borrow_id: Uuid::new_v4(),
        request: BorrowRequest {
            key: key(),
            host_id: host,
            valid_from: Some(from),
            valid_until: Some(from + MINUTE),
            user_info: None,
        },
        request_id,
    });
    match outcome {
        Outcome::Borrow(answer) => answer.map(|record| *record),
        other => panic!("unexpected outcome {other:?}"),
    }
}

#[test]
fn tiny_upcoming_borrows_of_one_seat_stop_at_the_per_seat_bound() {
    let mut ledger = ledger(1);
    for slot in 0..MAX_OUTSTANDING_PER_SEAT as i64 {
        borrow_at(&mut ledger, NOW, slot + 1, host(slot as u64), None).expect("within the bound");
    }
    let refused = borrow_at(&mut ledger, NOW, 1_000, host(999), None).unwrap_err();
    assert!(matches!(refused, BorrowError::OverLimit(_)), "{refused:?}");
    assert_eq!(crate::rpc::error::borrow_code(&refused), 32);
    assert_eq!(ledger.borrow_count(), MAX_OUTSTANDING_PER_SEAT);

    // Once the first one has ended, there is room for one more.
    let later = NOW + 2 * MINUTE;
    borrow_at(&mut ledger, later, 1_000, host(999), None).expect("room after an end");
    // The counts survive a snapshot: the restored ledger refuses the same way.
    let mut restored = Ledger::from_snapshot(ledger.to_snapshot());
    let again = borrow_at(&mut restored, later, 1_001, host(1_000), None).unwrap_err();
    assert!(matches!(again, BorrowError::OverLimit(_)), "{again:?}");
}

#[test]
fn one_host_holds_at_most_its_share_of_a_license() {
    let mut ledger = ledger(1_000);
    for slot in 0..MAX_OUTSTANDING_PER_HOST as i64 {
        borrow_at(&mut ledger, NOW, slot + 1, host(1), None).expect("within the bound");
    }
    let refused = borrow_at(&mut ledger, NOW, 500, host(1), None).unwrap_err();
    assert!(matches!(refused, BorrowError::OverLimit(_)), "{refused:?}");
    assert!(refused.to_string().contains("host"), "{refused}");
    // Another host is not held back, and a return frees the host's share.
    let other = borrow_at(&mut ledger, NOW, 500, host(2), None).expect("another host");
    let mine = borrow_at(&mut ledger, NOW, 501, host(2), None).expect("another host");
    drop(other);
    let first_of_host_1 = ledger
        .licenses(NOW)
        .into_iter()
        .flat_map(|view| view.borrows)
        .find(|record| record.host_id == host(1))
        .map(|record| record.borrow_id)
        .expect("host 1 has borrows");
    ledger.apply(&Command::Return {
        now: NOW,
        borrow_id: first_of_host_1,
    });
    borrow_at(&mut ledger, NOW, 600, host(1), None).expect("room after a return");
    assert_ne!(mine.borrow_id, first_of_host_1);
}

#[test]
fn remembered_refusals_are_bounded_oldest_first() {
    let mut ledger = ledger(1);
    borrow_at(&mut ledger, NOW, 1, host(1), None).expect("the one seat");
    let refuse = |ledger: &mut Ledger, n: usize| {
        borrow_at(ledger, NOW, 1, host(2), Some(format!("refused-{n:06}")))
    };
    for n in 0..=MAX_REMEMBERED_REFUSALS {
        assert!(refuse(&mut ledger, n).is_err());
    }
    // Free the seat: a remembered refusal is still answered as a refusal, the forgotten
    // oldest one is decided again (and borrows once).
    let holder = ledger.licenses(NOW)[0].borrows[0].borrow_id;
    ledger.apply(&Command::Return {
        now: NOW,
        borrow_id: holder,
    });
    assert!(refuse(&mut ledger, MAX_REMEMBERED_REFUSALS).is_err());
    assert!(
        refuse(&mut ledger, 0).is_ok(),
        "the oldest refusal was forgotten"
    );
}
