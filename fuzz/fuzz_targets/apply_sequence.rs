//! The ledger's apply, driven by random command sequences over a small world — three
//! licenses of 0 to 3 seats (one with a validity window, one with its own borrow limit),
//! a fourth key that no pool has, four hosts, intervals on a half-hour grid around a
//! clock that mostly moves forward — so that borrows conflict, expire and are forgotten.
//!
//! After every step, against a model of what was granted:
//! - at no instant do more granted borrows of a license overlap than its count, and a
//!   refusal for lack of seats is justified by the borrows that hold them;
//! - a granted borrow is answered as asked (interval, host, times), and stays
//!   retrievable, exactly as last answered, until its retention has run out after its
//!   end; then it is forgotten; returns cut it at the ledger's clock;
//! - the listing shows exactly the current and upcoming borrows, by start;
//! - apply is deterministic: a second ledger fed the same commands answers the same,
//!   and so does one restored mid-sequence from an encoded snapshot; all end equal.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use licensed::borrow::check::{BorrowError, BorrowRequest, MAX_BACKDATE_SECS};
use licensed::borrow::host_id::HostId;
use licensed::borrow::license::{License, LicenseKey};
use licensed::borrow::time::UnixSeconds;
use licensed::fuzzing::{decode, encode};
use licensed::state::{Bootstrap, BorrowRecord, Command, Ledger, LedgerSnapshot, Outcome};
use uuid::Uuid;

/// Where the clock starts.
const BASE: UnixSeconds = 1_800_000_000;
const HOUR: i64 = 3_600;
/// The grid of times and intervals.
const TICK: i64 = HOUR / 2;
/// Longer sequences add little but time.
const MAX_STEPS: usize = 96;

/// The licenses (feature, uuid); the last is in no pool.
const KEYS: [(&str, &str); 4] = [
    ("MVTec_HALCON", "a"),
    ("MVTec_HALCON", "b"),
    ("MVTec_HDevelop", "a"),
    ("MVTec_HDevelop", "missing"),
];
const HOSTS: [&str; 4] = [
    "MAC:2C549188C9E3",
    "MAC:000000000001",
    "MAC:00000000000A",
    "CM:3-1234567890",
];

#[derive(Arbitrary, Debug)]
struct Input {
    /// A pool loaded before the steps.
    pool: Option<PoolSpec>,
    steps: Vec<Step>,
    /// Before which step the third ledger is restored from a snapshot of the first.
    restore_at: u8,
}

/// A pool of the three licenses.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct PoolSpec {
    /// Seats of each license, 0 to 3.
    counts: [u8; 3],
    /// Pool-wide borrow limit, 1 to 48 hours.
    pool_max_hours: u8,
    /// The third license's own limit, 0 (none) to 12 hours.
    license_max_hours: u8,
    /// The second license's validity: where it starts around the clock and how long it lasts.
    window: u8,
    /// Retention of ended borrows, 0 to 72 hours (the ledger keeps at least a day).
    retention_hours: u8,
}

/// One step; each maps onto one [`Command`] variant (see [`command`]).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Step {
    Bootstrap(PoolSpec),
    Borrow {
        /// How far the leader's clock moved since the last stamp, in ticks (may go back).
        advance: i8,
        key: u8,
        host: u8,
        /// `validFrom`, in ticks from the stamp.
        from: Option<i8>,
        /// `validUntil`, in ticks from the start.
        until: Option<i8>,
        user_info: bool,
        /// One of four `requestId`s.
        request_id: Option<u8>,
    },
    Return {
        advance: i8,
        /// Which granted borrow, by grant order; past the end: an unknown id.
        which: u8,
    },
}

impl PoolSpec {
    fn bootstrap(&self) -> Bootstrap {
        let license = |at: usize| License {
            key: key(at),
            version: "26.05".into(),
            edition: "Steady".into(),
            modules: "fc".into(),
            count: u32::from(self.counts[at] % 4),
            valid_from: None,
            valid_until: None,
            max_borrow_secs: None,
            max_borrowed: None,
            max_per_host: None,
        };
        let mut licenses = vec![license(0), license(1), license(2)];
        let starts = BASE + (i64::from(self.window & 0x0f) - 8) * 2 * HOUR;
        licenses[1].valid_from = Some(starts);
        licenses[1].valid_until = Some(starts + (i64::from(self.window >> 4) + 1) * 4 * HOUR);
        let own = i64::from(self.license_max_hours % 13);
        licenses[2].max_borrow_secs = (own > 0).then_some(own * HOUR);
        Bootstrap {
            licenses,
            max_borrow_secs: (i64::from(self.pool_max_hours % 48) + 1) * HOUR,
            retention_secs: i64::from(self.retention_hours % 73) * HOUR,
            signing_key: [7; 32],
            audit_retention_secs: 90 * 86_400,
            max_audit_entries: 100_000,
            created_at: 0,
        }
    }
}

fn key(at: usize) -> LicenseKey {
    let (feature, uuid) = KEYS[at % KEYS.len()];
    LicenseKey {
        feature: feature.into(),
        uuid: uuid.into(),
    }
}

/// Step `n` as a log command. `stamp` is the leader's clock, moved by the step.
fn command(step: &Step, n: usize, stamp: &mut UnixSeconds, issued: &[Uuid]) -> Command {
    let mut advance = |ticks: i8| {
        *stamp += i64::from(ticks % 9) * TICK;
        *stamp
    };
    match *step {
        Step::Bootstrap(pool) => Command::Bootstrap(Box::new(pool.bootstrap())),
        Step::Borrow {
            advance: ticks,
            key: at,
            host,
            from,
            until,
            user_info,
            request_id,
        } => {
            let now = advance(ticks);
            let valid_from = from.map(|ticks| now + i64::from(ticks % 60) * TICK);
            let valid_until =
                until.map(|ticks| valid_from.unwrap_or(now) + i64::from(ticks % 32) * TICK);
            Command::Borrow {
                now,
                borrow_id: Uuid::from_u128(n as u128 + 1),
                request: BorrowRequest {
                    key: key(usize::from(at)),
                    host_id: HostId::parse(HOSTS[usize::from(host) % HOSTS.len()])
                        .expect("a valid host id"),
                    valid_from,
                    valid_until,
                    user_info: user_info.then(|| "Jane Doe".to_string()),
                },
                request_id: request_id.map(|id| format!("r{}", id % 4)),
            }
        }
        Step::Return {
            advance: ticks,
            which,
        } => Command::Return {
            now: advance(ticks),
            borrow_id: issued
                .get(usize::from(which) % (issued.len() + 1))
                .copied()
                .unwrap_or(Uuid::from_u128(u128::MAX - n as u128)),
        },
    }
}

/// What the ledger should hold, built from its answers and checked against it.
#[derive(Default)]
struct Model {
    /// The pool, once loaded.
    pool: Option<Bootstrap>,
    /// The ledger's clock: the latest stamp.
    clock: UnixSeconds,
    /// Every borrow granted, as last answered (forgotten ones too).
    records: BTreeMap<Uuid, BorrowRecord>,
    /// Their ids in grant order.
    issued: Vec<Uuid>,
    /// Every `requestId` used so far.
    request_ids: BTreeSet<String>,
}

impl Model {
    fn retention(&self) -> i64 {
        self.pool
            .as_ref()
            .map_or(0, |pool| pool.retention_secs.max(MAX_BACKDATE_SECS))
    }

    fn license(&self, key: &LicenseKey) -> Option<&License> {
        self.pool
            .as_ref()?
            .licenses
            .iter()
            .find(|license| &license.key == key)
    }

    fn max_borrow(&self, key: &LicenseKey) -> i64 {
        let pool = self.pool.as_ref().map_or(0, |pool| pool.max_borrow_secs);
        self.license(key)
            .and_then(|license| license.max_borrow_secs)
            .unwrap_or(pool)
    }

    /// The end a borrow from `from` asks for: its own, or with none the longest borrow,
    /// cut at the license's own end.
    fn asked_until(&self, request: &BorrowRequest, from: i64) -> i64 {
        let longest = from + self.max_borrow(&request.key);
        request.valid_until.unwrap_or_else(|| {
            self.license(&request.key)
                .and_then(|license| license.valid_until)
                .map_or(longest, |end| longest.min(end))
        })
    }

    fn retained(&self, record: &BorrowRecord) -> bool {
        self.clock < record.valid_until.saturating_add(self.retention())
    }

    /// The most borrows of `key` covering one instant of `[from, until)`.
    fn max_overlap(&self, key: &LicenseKey, from: i64, until: i64) -> usize {
        let held: Vec<(i64, i64)> = self
            .records
            .values()
            .filter(|record| &record.key == key)
            .map(|record| (record.valid_from, record.valid_until))
            .collect();
        let instants = held
            .iter()
            .map(|&(start, _)| start)
            .filter(|&start| from < start && start < until)
            .chain((from < until).then_some(from));
        instants
            .map(|at| held.iter().filter(|&&(s, u)| s <= at && at < u).count())
            .max()
            .unwrap_or(0)
    }

    /// Learns from one applied command and its outcome, checking the outcome on the way.
    fn observe(&mut self, command: &Command, outcome: &Outcome) {
        match (command, outcome) {
            (Command::Bootstrap(bootstrap), Outcome::Bootstrapped(done)) => {
                assert_eq!(
                    *done,
                    self.pool.is_none(),
                    "only the first bootstrap applies"
                );
                if self.pool.is_none() {
                    self.pool = Some(Bootstrap::clone(bootstrap));
                }
            }
            (
                Command::Borrow {
                    now,
                    borrow_id,
                    request,
                    request_id,
                },
                outcome,
            ) => {
                self.clock = self.clock.max(*now);
                let repeated = request_id
                    .as_ref()
                    .is_some_and(|id| !self.request_ids.insert(id.clone()));
                match outcome {
                    Outcome::Borrow(Ok(record)) if record.borrow_id == *borrow_id => {
                        self.granted(request, record)
                    }
                    Outcome::Borrow(Ok(record)) => {
                        assert!(repeated, "granted under another id: {record:?}");
                        assert_eq!(self.records.get(&record.borrow_id), Some(&**record));
                    }
                    Outcome::Borrow(Err(refusal)) if !repeated => self.refused(request, refusal),
                    Outcome::Borrow(Err(_)) => {}
                    Outcome::RequestIdReused(_) => assert!(repeated, "{outcome:?}"),
                    other => panic!("a borrow answered {other:?}"),
                }
            }
            (Command::Return { now, borrow_id }, Outcome::Returned(answer)) => {
                self.clock = self.clock.max(*now);
                self.returned(*borrow_id, answer.as_deref());
            }
            (command, outcome) => panic!("{command} answered {outcome:?}"),
        }
    }

    fn granted(&mut self, request: &BorrowRequest, record: &BorrowRecord) {
        let from = request.valid_from.unwrap_or(self.clock);
        let until = self.asked_until(request, from);
        assert_eq!(
            (record.valid_from, record.valid_until),
            (from, until),
            "granted another interval than asked: {record:?}"
        );
        assert!(until > self.clock && from < until, "{record:?}");
        assert!(from >= self.clock - MAX_BACKDATE_SECS, "{record:?}");
        assert!(until - from <= self.max_borrow(&request.key), "{record:?}");
        assert_eq!(record.key, request.key);
        assert_eq!(record.host_id, request.host_id);
        assert_eq!(record.user_info, request.user_info);
        assert_eq!(record.issued_at, self.clock);
        assert_eq!(record.returned_at, None);
        let license = self
            .license(&request.key)
            .expect("granted a license not in the pool");
        if let Some(license_until) = license.valid_until {
            assert!(until <= license_until, "{record:?} past {license:?}");
        }
        if let Some(license_from) = license.valid_from {
            assert!(from >= license_from, "{record:?} before {license:?}");
        }
        let previous = self.records.insert(record.borrow_id, record.clone());
        assert!(previous.is_none(), "one id granted twice: {record:?}");
        self.issued.push(record.borrow_id);
    }

    fn refused(&self, request: &BorrowRequest, refusal: &BorrowError) {
        let Some(license) = self.license(&request.key) else {
            assert!(
                matches!(
                    refusal,
                    BorrowError::NoSuchLicense(_) | BorrowError::InvalidInterval(_)
                ),
                "{refusal:?}"
            );
            return;
        };
        if let BorrowError::NotAvailable { count, .. } = refusal {
            assert_eq!(*count, license.count);
            let from = request.valid_from.unwrap_or(self.clock);
            let until = self.asked_until(request, from);
            let held = self.max_overlap(&request.key, from, until);
            assert!(
                held >= license.count as usize,
                "refused for lack of seats, yet only {held} of {} are taken in [{from}, {until})",
                license.count
            );
        }
    }

    fn returned(&mut self, borrow_id: Uuid, answer: Result<&BorrowRecord, &BorrowError>) {
        let known = self.records.get(&borrow_id).cloned();
        let record = match (answer, known) {
            (Ok(record), Some(before)) => {
                assert_eq!(record.borrow_id, borrow_id);
                let mut expected = before.clone();
                if before.returned_at.is_none() && before.valid_until > self.clock {
                    expected.valid_until = self.clock.max(before.valid_from);
                    expected.returned_at = Some(self.clock);
                }
                assert_eq!(record, &expected, "return of {before:?}");
                expected
            }
            (Ok(record), None) => panic!("returned a borrow never granted: {record:?}"),
            (Err(_), Some(before)) => {
                assert!(
                    !self.retained(&before),
                    "a retained borrow cannot be returned: {before:?}"
                );
                return;
            }
            (Err(_), None) => return,
        };
        self.records.insert(borrow_id, record);
    }

    /// Checks the ledger against the model after a step.
    fn check(&self, ledger: &Ledger) {
        assert_eq!(ledger.clock(), self.clock);
        assert_eq!(ledger.is_bootstrapped(), self.pool.is_some());
        // Seats: never more overlapping borrows than the license has.
        if let Some(pool) = &self.pool {
            for license in &pool.licenses {
                let most = self.max_overlap(&license.key, i64::MIN, i64::MAX);
                assert!(
                    most <= license.count as usize,
                    "{most} borrows of {:?} overlap; it has {} seat(s)",
                    license.key,
                    license.count
                );
            }
        }
        // Retained exactly as last answered until retention ends, then forgotten.
        let mut retained = 0;
        for (id, record) in &self.records {
            if self.retained(record) {
                retained += 1;
                assert_eq!(ledger.borrow_record(id), Some(record), "retained borrow");
            } else {
                assert_eq!(ledger.borrow_record(id), None, "forgotten borrow");
            }
        }
        assert_eq!(ledger.borrow_count(), retained);
        // The listing: current and upcoming borrows, by start.
        for view in ledger.licenses(self.clock) {
            let shown: Vec<Uuid> = view.borrows.iter().map(|record| record.borrow_id).collect();
            let starts: Vec<i64> = view
                .borrows
                .iter()
                .map(|record| record.valid_from)
                .collect();
            assert!(
                starts.windows(2).all(|pair| pair[0] <= pair[1]),
                "{starts:?}"
            );
            let mut expected: Vec<&BorrowRecord> = self
                .records
                .values()
                .filter(|record| record.key == view.license.key)
                .filter(|record| record.valid_until > self.clock)
                .filter(|record| record.valid_until > record.valid_from)
                .collect();
            expected.sort_by_key(|record| (record.valid_from, record.borrow_id));
            let expected: Vec<Uuid> = expected.iter().map(|record| record.borrow_id).collect();
            assert_eq!(shown, expected, "listing of {:?}", view.license.key);
        }
    }
}

/// A ledger rebuilt from an encoded snapshot of `ledger`, the way a replica installs one.
fn restore(ledger: &Ledger) -> Ledger {
    let snapshot = ledger.to_snapshot();
    let bytes = encode(&snapshot).expect("a snapshot encodes");
    let decoded: LedgerSnapshot = decode(&bytes).expect("and decodes");
    assert_eq!(decoded, snapshot);
    let restored = Ledger::from_snapshot(decoded);
    assert_eq!(
        restored.to_snapshot(),
        snapshot,
        "restoring changes nothing"
    );
    restored
}

fuzz_target!(|input: Input| {
    let mut ledger = Ledger::default();
    let mut twin = Ledger::default();
    let mut restored: Option<Ledger> = None;
    let mut model = Model::default();
    let mut stamp = BASE;
    let steps = input
        .pool
        .map(Step::Bootstrap)
        .into_iter()
        .chain(input.steps);
    for (n, step) in steps.take(MAX_STEPS).enumerate() {
        if n == usize::from(input.restore_at) {
            restored = Some(restore(&ledger));
        }
        let command = command(&step, n, &mut stamp, &model.issued);
        let outcome = ledger.apply(&command);
        assert_eq!(
            twin.apply(&command),
            outcome,
            "apply is deterministic: {command}"
        );
        if let Some(restored) = restored.as_mut() {
            assert_eq!(
                restored.apply(&command),
                outcome,
                "a ledger restored from a snapshot decides otherwise: {command}"
            );
        }
        model.observe(&command, &outcome);
        model.check(&ledger);
    }
    let end = ledger.to_snapshot();
    assert_eq!(twin.to_snapshot(), end);
    if let Some(restored) = restored {
        assert_eq!(restored.to_snapshot(), end);
    }
});
