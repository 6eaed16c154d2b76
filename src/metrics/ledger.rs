//! The business view, from the replicated ledger. Two kinds, and each HELP text says which:
//!
//! - **Counted as this node applies the log** (`licensed_borrows_total`, …): every node
//!   applies every entry once, so every node shows the same counts (do not sum them across
//!   nodes; take one node's, or `max`). A restarted node counts again from its snapshot on:
//!   a counter reset, which `rate()` and `increase()` handle.
//! - **Read from the ledger at the scrape** (`licensed_license_seats`, …): the same on every
//!   node that has applied the same entries.
//!
//! Labels are the pool's own feature and uuid (set by the operator, never by a client); a
//! borrow of a license the pool does not have is counted under `feature="unknown"`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use prometheus::{IntCounterVec, IntGaugeVec, Opts};

use super::registered;
use crate::borrow::time::UnixSeconds;
use crate::rpc::error::borrow_code;
use crate::state::{Command, Ledger, Outcome};

/// Up to this many licenses, the seat gauges are exported per license (feature and uuid);
/// a larger pool is exported per feature only, to keep the series count bounded.
pub const MAX_LICENSE_SERIES: usize = 1_000;

/// The `feature` label of a borrow of a license the pool does not have.
pub const UNKNOWN_FEATURE: &str = "unknown";

const APPLIED: &str = "counted as this node applies the replicated log: the same on every node, do not sum across nodes";
const READ_AT_SCRAPE: &str =
    "read from the replicated ledger at the scrape: the same on every node that applied as far";

struct LedgerMetrics {
    borrows: IntCounterVec,
    rejections: IntCounterVec,
    returns: IntCounterVec,
    replays: IntCounterVec,
    license_seats: IntGaugeVec,
    license_borrowed: IntGaugeVec,
    license_upcoming: IntGaugeVec,
    feature_seats: IntGaugeVec,
    feature_borrowed: IntGaugeVec,
    feature_upcoming: IntGaugeVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let opts = Opts::new(name, format!("{help} ({APPLIED})"));
    registered(name, IntCounterVec::new(opts, labels))
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let opts = Opts::new(name, format!("{help} ({READ_AT_SCRAPE})"));
    registered(name, IntGaugeVec::new(opts, labels))
}

static LEDGER: LazyLock<LedgerMetrics> = LazyLock::new(|| {
    LedgerMetrics {
    borrows: counter(
        "licensed_borrows_total",
        "Borrows granted, by feature",
        &["feature"],
    ),
    rejections: counter(
        "licensed_borrow_rejections_total",
        "Borrows refused, by feature and Borrow API code (32: every seat taken at some instant, the demand a license manager buys seats by)",
        &["feature", "code"],
    ),
    returns: counter(
        "licensed_returns_total",
        "Borrows returned early, by feature",
        &["feature"],
    ),
    replays: counter(
        "licensed_borrow_replays_total",
        "Borrows repeated with a requestId already used, answered with the first outcome and not counted again above, by feature",
        &["feature"],
    ),
    license_seats: gauge(
        "licensed_license_seats",
        "Seats of a license (its count), per license while the pool has at most 1000",
        &["feature", "uuid"],
    ),
    license_borrowed: gauge(
        "licensed_license_seats_borrowed",
        "Borrows of a license current at the scrape's wall-clock time; utilisation is this over licensed_license_seats",
        &["feature", "uuid"],
    ),
    license_upcoming: gauge(
        "licensed_license_borrows_upcoming",
        "Borrows of a license that start after the scrape's wall-clock time",
        &["feature", "uuid"],
    ),
    feature_seats: gauge(
        "licensed_feature_seats",
        "Seats of every license of a feature",
        &["feature"],
    ),
    feature_borrowed: gauge(
        "licensed_feature_seats_borrowed",
        "Borrows of a feature's licenses current at the scrape's wall-clock time",
        &["feature"],
    ),
    feature_upcoming: gauge(
        "licensed_feature_borrows_upcoming",
        "Borrows of a feature's licenses that start after the scrape's wall-clock time",
        &["feature"],
    ),
}
});

/// What a command will count as, looked up before it is applied (a replay and a first
/// borrow answer alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Before {
    /// A borrow whose `requestId` the ledger already knows.
    Replay,
    /// A return of a borrow not yet returned or ended.
    OpenBorrow,
    /// Anything else.
    Other,
}

/// Looks at `command` against the ledger before it is applied.
pub fn before_apply(ledger: &Ledger, command: &Command) -> Before {
    // A borrow or return made with an API key counts as one made without (when its key
    // is refused, the outcome says so and nothing is counted).
    match command.unkeyed() {
        Command::Borrow {
            request_id: Some(request_id),
            ..
        } if ledger.remembers_request(request_id) => Before::Replay,
        Command::Return { now, borrow_id } => match ledger.borrow_record(borrow_id) {
            // `give_back` runs at the ledger clock moved to `now`, never backwards.
            Some(record)
                if record.returned_at.is_none()
                    && record.valid_until > (*now).max(ledger.clock()) =>
            {
                Before::OpenBorrow
            }
            _ => Before::Other,
        },
        _ => Before::Other,
    }
}

/// Counts an applied command by what it did.
pub fn observe_applied(ledger: &Ledger, command: &Command, before: Before, outcome: &Outcome) {
    let m = &*LEDGER;
    match (command.unkeyed(), outcome) {
        (Command::Borrow { request, .. }, Outcome::Borrow(answer)) => {
            let feature = if ledger.license(&request.key).is_some() {
                request.key.feature.as_str()
            } else {
                UNKNOWN_FEATURE
            };
            if before == Before::Replay {
                m.replays.with_label_values(&[feature]).inc();
                return;
            }
            match answer {
                Ok(_) => m.borrows.with_label_values(&[feature]).inc(),
                Err(error) => m
                    .rejections
                    .with_label_values(&[feature, &borrow_code(error).to_string()])
                    .inc(),
            }
        }
        (Command::Return { .. }, Outcome::Returned(Ok(record))) if before == Before::OpenBorrow => {
            m.returns
                .with_label_values(&[record.key.feature.as_str()])
                .inc();
        }
        _ => {}
    }
}

#[derive(Default)]
struct Seats {
    seats: i64,
    borrowed: i64,
    upcoming: i64,
}

/// Sets the seat gauges from the ledger at wall-clock time `now`.
pub fn observe_licenses(ledger: &Ledger, now: UnixSeconds) {
    let m = &*LEDGER;
    let licenses = ledger.licenses(now);
    let per_license = licenses.len() <= MAX_LICENSE_SERIES;
    // Licenses leave the pool too: start from empty so no stale series stays behind.
    for vec in [&m.license_seats, &m.license_borrowed, &m.license_upcoming] {
        vec.reset();
    }
    let mut features: BTreeMap<&str, Seats> = BTreeMap::new();
    for view in &licenses {
        let key = &view.license.key;
        let seats = i64::from(view.license.count);
        let borrowed = view
            .borrows
            .iter()
            .filter(|record| record.valid_from <= now && now < record.valid_until)
            .count() as i64;
        let upcoming = view
            .borrows
            .iter()
            .filter(|record| record.valid_from > now)
            .count() as i64;
        if per_license {
            let labels = [key.feature.as_str(), key.uuid.as_str()];
            m.license_seats.with_label_values(&labels).set(seats);
            m.license_borrowed.with_label_values(&labels).set(borrowed);
            m.license_upcoming.with_label_values(&labels).set(upcoming);
        }
        let feature = features.entry(key.feature.as_str()).or_default();
        feature.seats += seats;
        feature.borrowed += borrowed;
        feature.upcoming += upcoming;
    }
    for vec in [&m.feature_seats, &m.feature_borrowed, &m.feature_upcoming] {
        vec.reset();
    }
    for (feature, seats) in features {
        m.feature_seats
            .with_label_values(&[feature])
            .set(seats.seats);
        m.feature_borrowed
            .with_label_values(&[feature])
            .set(seats.borrowed);
        m.feature_upcoming
            .with_label_values(&[feature])
            .set(seats.upcoming);
    }
}
