//! What a license change would do to the borrows that hold seats: the plan of a pool
//! change (added, changed, removed, settings) and its conflicts. Pure: the ledger hands in
//! the licenses and their held borrows, this decides.
//!
//! A change conflicts when a current or upcoming borrow would end up outside its license:
//! the license removed, its validity no longer covering the borrow, or fewer borrowable
//! seats than the borrows that overlap at some instant from now on. Such a change is
//! refused unless forced; forced, the borrows stay valid (they were promised) and are
//! reported, and new borrows are refused until the overlap is below the seats again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::borrow::check::describe_secs;
use crate::borrow::license::{License, LicenseKey};
use crate::borrow::pool::Pool;
use crate::borrow::time::{format_instant, UnixSeconds};

use super::ledger::BorrowRecord;

/// A license whose change would leave held borrows outside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The license.
    pub key: LicenseKey,
    /// Why, for a person (every reason, `; `-separated).
    pub reason: String,
    /// The borrows concerned, ordered by id.
    pub borrows: Vec<Uuid>,
}

/// A license whose fields change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseDiff {
    /// As it is.
    pub before: License,
    /// As it would be.
    pub after: License,
    /// The wire names of the fields that differ.
    pub fields: Vec<String>,
}

/// A pool-wide setting that changes, values as written in a pool file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingDiff {
    /// Its name in the pool file.
    pub field: String,
    /// As it is.
    pub before: String,
    /// As it would be.
    pub after: String,
}

/// What applying a pool would do.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PoolPlan {
    /// Licenses new in the pool.
    pub added: Vec<License>,
    /// Licenses whose fields change.
    pub changed: Vec<LicenseDiff>,
    /// Licenses the pool no longer has.
    pub removed: Vec<License>,
    /// How many licenses stay as they are.
    pub unchanged: usize,
    /// Pool-wide settings that change.
    pub settings: Vec<SettingDiff>,
    /// Licenses whose held borrows the change would leave outside them.
    pub conflicts: Vec<Conflict>,
}

impl PoolPlan {
    /// Whether applying it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.changed.is_empty()
            && self.removed.is_empty()
            && self.settings.is_empty()
    }

    /// One line for the audit trail and the logs.
    pub fn summary(&self) -> String {
        format!(
            "{} added, {} changed, {} removed, {} unchanged, {} setting(s) changed, {} conflict(s)",
            self.added.len(),
            self.changed.len(),
            self.removed.len(),
            self.unchanged,
            self.settings.len(),
            self.conflicts.len()
        )
    }
}

/// The pool-wide settings as they stand, to compare a new pool's with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// `maxBorrowDuration`.
    pub max_borrow_secs: i64,
    /// `auditRetention`.
    pub audit_retention_secs: i64,
    /// `maxAuditEntries`.
    pub max_audit_entries: u64,
}

impl PoolSettings {
    /// The settings a pool file sets.
    pub fn of(pool: &Pool) -> PoolSettings {
        PoolSettings {
            max_borrow_secs: pool.max_borrow_secs,
            audit_retention_secs: pool.audit_retention_secs,
            max_audit_entries: pool.max_audit_entries,
        }
    }
}

/// The plan of replacing the licenses `current` (each with its held borrows: those not
/// ended at `now`) and the settings `settings` by `pool`.
pub fn plan(
    current: &[(&License, Vec<&BorrowRecord>)],
    settings: PoolSettings,
    pool: &Pool,
    now: UnixSeconds,
) -> PoolPlan {
    let mut plan = PoolPlan::default();
    let wanted: BTreeMap<&LicenseKey, &License> = pool
        .licenses
        .iter()
        .map(|license| (&license.key, license))
        .collect();
    for (license, held) in current {
        match wanted.get(&license.key) {
            None => {
                plan.removed.push((*license).clone());
                plan.conflicts
                    .extend(conflict(&license.key, None, held, now));
            }
            Some(after) if *after == *license => plan.unchanged += 1,
            Some(after) => {
                plan.changed.push(LicenseDiff {
                    before: (*license).clone(),
                    after: (*after).clone(),
                    fields: changed_fields(license, after),
                });
                plan.conflicts
                    .extend(conflict(&license.key, Some(after), held, now));
            }
        }
    }
    for license in &pool.licenses {
        if !current.iter().any(|(have, _)| have.key == license.key) {
            plan.added.push(license.clone());
        }
    }
    let after = PoolSettings::of(pool);
    let mut setting = |field: &str, before: String, after: String| {
        if before != after {
            plan.settings.push(SettingDiff {
                field: field.to_string(),
                before,
                after,
            });
        }
    };
    let secs = crate::borrow::pool::format_duration;
    setting(
        "maxBorrowDuration",
        secs(settings.max_borrow_secs),
        secs(after.max_borrow_secs),
    );
    setting(
        "auditRetention",
        secs(settings.audit_retention_secs),
        secs(after.audit_retention_secs),
    );
    setting(
        "maxAuditEntries",
        settings.max_audit_entries.to_string(),
        after.max_audit_entries.to_string(),
    );
    plan
}

/// Whether `after` (`None`: removed) leaves any of `held` outside it at or after `now`.
pub fn conflict(
    key: &LicenseKey,
    after: Option<&License>,
    held: &[&BorrowRecord],
    now: UnixSeconds,
) -> Option<Conflict> {
    let held: Vec<&BorrowRecord> = held
        .iter()
        .copied()
        .filter(|record| holds_a_seat(record, now))
        .collect();
    if held.is_empty() {
        return None;
    }
    let mut reasons = Vec::new();
    let mut borrows: Vec<Uuid> = Vec::new();
    let Some(after) = after else {
        return Some(Conflict {
            key: key.clone(),
            reason: format!(
                "removing it would leave {} current or upcoming borrow(s) without their license",
                held.len()
            ),
            borrows: sorted(held.iter().map(|record| record.borrow_id).collect()),
        });
    };
    if let Some(end) = after.valid_until {
        let outside: Vec<Uuid> = held
            .iter()
            .filter(|record| record.valid_until > end)
            .map(|record| record.borrow_id)
            .collect();
        if !outside.is_empty() {
            reasons.push(format!(
                "{} borrow(s) end after the new validUntil {}",
                outside.len(),
                format_instant(end)
            ));
            borrows.extend(outside);
        }
    }
    if let Some(start) = after.valid_from {
        let outside: Vec<Uuid> = held
            .iter()
            .filter(|record| record.valid_from < start)
            .map(|record| record.borrow_id)
            .collect();
        if !outside.is_empty() {
            reasons.push(format!(
                "{} borrow(s) start before the new validFrom {}",
                outside.len(),
                format_instant(start)
            ));
            borrows.extend(outside);
        }
    }
    let seats = after.borrowable_seats();
    let peak = peak_overlap(&held, now);
    if peak.borrows.len() > seats as usize {
        reasons.push(format!(
            "{} borrows overlap at {} but only {seats} seat(s) could be borrowed",
            peak.borrows.len(),
            format_instant(peak.at)
        ));
        borrows.extend(peak.borrows);
    }
    if reasons.is_empty() {
        return None;
    }
    Some(Conflict {
        key: key.clone(),
        reason: reasons.join("; "),
        borrows: sorted(borrows),
    })
}

/// Whether a borrow still holds (or will hold) a seat at or after `now`: not ended, and
/// not an upcoming borrow returned before it began (empty).
pub fn holds_a_seat(record: &BorrowRecord, now: UnixSeconds) -> bool {
    record.valid_until > now && record.valid_until > record.valid_from
}

/// The instant from `now` on where most of `held` overlap, and which they are.
struct Peak {
    at: UnixSeconds,
    borrows: Vec<Uuid>,
}

fn peak_overlap(held: &[&BorrowRecord], now: UnixSeconds) -> Peak {
    // Sweep the starts and ends (ends first at the same instant: intervals are half-open).
    let mut events: Vec<(UnixSeconds, i32)> = Vec::with_capacity(held.len() * 2);
    for record in held {
        events.push((record.valid_from.max(now), 1));
        events.push((record.valid_until, -1));
    }
    events.sort_unstable();
    let (mut level, mut best, mut at) = (0i32, 0i32, now);
    for (instant, step) in events {
        level += step;
        if level > best {
            best = level;
            at = instant;
        }
    }
    let borrows = held
        .iter()
        .filter(|record| record.valid_from.max(now) <= at && at < record.valid_until)
        .map(|record| record.borrow_id)
        .collect();
    Peak { at, borrows }
}

fn sorted(mut ids: Vec<Uuid>) -> Vec<Uuid> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The wire names of the fields in which `before` and `after` differ.
pub fn changed_fields(before: &License, after: &License) -> Vec<String> {
    let mut fields = Vec::new();
    let mut differ = |name: &str, differs: bool| {
        if differs {
            fields.push(name.to_string());
        }
    };
    differ("version", before.version != after.version);
    differ("edition", before.edition != after.edition);
    differ("modules", before.modules != after.modules);
    differ("count", before.count != after.count);
    differ("validFrom", before.valid_from != after.valid_from);
    differ("validUntil", before.valid_until != after.valid_until);
    differ(
        "maxBorrowDuration",
        before.max_borrow_secs != after.max_borrow_secs,
    );
    differ("maxBorrowed", before.max_borrowed != after.max_borrowed);
    differ("maxPerHost", before.max_per_host != after.max_per_host);
    fields
}

/// `maxBorrowDuration` for a person, e.g. in an audit line.
pub fn describe_max_borrow(license: &License) -> String {
    license
        .max_borrow_secs
        .map_or_else(|| "the pool's".to_string(), describe_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::borrow::host_id::HostId;

    const NOW: UnixSeconds = 1_800_000_000;
    const DAY: i64 = 86_400;

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
            valid_until: Some(NOW + 100 * DAY),
            max_borrow_secs: None,
            max_borrowed: None,
            max_per_host: None,
        }
    }

    fn borrow(of: &License, n: u128, from: UnixSeconds, until: UnixSeconds) -> BorrowRecord {
        BorrowRecord {
            borrow_id: Uuid::from_u128(n),
            key: of.key.clone(),
            version: of.version.clone(),
            edition: of.edition.clone(),
            modules: of.modules.clone(),
            host_id: HostId::parse("MAC:2C549188C9E3").unwrap(),
            valid_from: from,
            valid_until: until,
            user_info: None,
            issued_at: NOW,
            returned_at: None,
        }
    }

    fn pool(licenses: Vec<License>) -> Pool {
        Pool {
            licenses,
            max_borrow_secs: 30 * DAY,
            audit_retention_secs: 90 * DAY,
            max_audit_entries: 100_000,
        }
    }

    fn settings() -> PoolSettings {
        PoolSettings::of(&pool(vec![]))
    }

    #[test]
    fn a_renewal_with_more_seats_and_a_later_end_has_no_conflict() {
        let old = license("a", 2);
        let held = [
            borrow(&old, 1, NOW, NOW + DAY),
            borrow(&old, 2, NOW, NOW + 2 * DAY),
        ];
        let mut renewed = license("a", 3);
        renewed.valid_until = Some(NOW + 400 * DAY);
        let plan = plan(
            &[(&old, held.iter().collect())],
            settings(),
            &pool(vec![renewed.clone(), license("b", 1)]),
            NOW,
        );
        assert!(plan.conflicts.is_empty(), "{plan:?}");
        assert_eq!(plan.added, vec![license("b", 1)]);
        assert_eq!(plan.changed.len(), 1);
        assert_eq!(plan.changed[0].fields, vec!["count", "validUntil"]);
        assert_eq!(plan.unchanged, 0);
        assert!(!plan.is_empty());
    }

    #[test]
    fn shrinking_below_the_peak_names_the_borrows_at_the_peak() {
        let old = license("a", 3);
        // Two overlap tomorrow, three overlap on day 5.
        let held = [
            borrow(&old, 1, NOW + DAY, NOW + 6 * DAY),
            borrow(&old, 2, NOW + 4 * DAY, NOW + 6 * DAY),
            borrow(&old, 3, NOW + 5 * DAY, NOW + 7 * DAY),
            borrow(&old, 4, NOW + 8 * DAY, NOW + 9 * DAY),
        ];
        let refs: Vec<&BorrowRecord> = held.iter().collect();
        let conflict = conflict(&old.key, Some(&license("a", 2)), &refs, NOW).expect("conflict");
        assert_eq!(
            conflict.borrows,
            vec![Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3)]
        );
        assert!(
            conflict.reason.contains("3 borrows overlap"),
            "{}",
            conflict.reason
        );
        // Three seats, or a cap of three, are enough.
        assert!(super::conflict(&old.key, Some(&license("a", 3)), &refs, NOW).is_none());
        let mut capped = license("a", 5);
        capped.max_borrowed = Some(2);
        assert!(super::conflict(&old.key, Some(&capped), &refs, NOW).is_some());
    }

    #[test]
    fn ended_and_emptied_borrows_hold_no_seat() {
        let old = license("a", 1);
        let ended = borrow(&old, 1, NOW - 2 * DAY, NOW - DAY);
        let emptied = borrow(&old, 2, NOW + DAY, NOW + DAY);
        let refs = vec![&ended, &emptied];
        assert!(conflict(&old.key, None, &refs, NOW).is_none());
        assert!(conflict(&old.key, Some(&license("a", 0)), &refs, NOW).is_none());
    }

    #[test]
    fn validity_that_no_longer_covers_a_borrow_conflicts() {
        let old = license("a", 5);
        let held = borrow(&old, 1, NOW, NOW + 10 * DAY);
        let mut shorter = old.clone();
        shorter.valid_until = Some(NOW + 5 * DAY);
        let found = conflict(&old.key, Some(&shorter), &[&held], NOW).expect("conflict");
        assert!(found.reason.contains("validUntil"), "{}", found.reason);
        let mut later_start = old.clone();
        later_start.valid_from = Some(NOW + DAY);
        assert!(conflict(&old.key, Some(&later_start), &[&held], NOW).is_some());
    }

    #[test]
    fn removal_with_held_borrows_conflicts_and_settings_are_compared() {
        let old = license("a", 1);
        let held = borrow(&old, 1, NOW, NOW + DAY);
        let mut next = pool(vec![]);
        next.max_borrow_secs = 7 * DAY;
        let plan = plan(&[(&old, vec![&held])], settings(), &next, NOW);
        assert_eq!(plan.removed, vec![old.clone()]);
        assert_eq!(plan.conflicts.len(), 1);
        assert_eq!(plan.conflicts[0].borrows, vec![Uuid::from_u128(1)]);
        assert_eq!(plan.settings.len(), 1);
        assert_eq!(plan.settings[0].field, "maxBorrowDuration");
        assert_eq!(plan.settings[0].after, "7d");
    }

    #[test]
    fn the_same_pool_is_an_empty_plan() {
        let old = license("a", 1);
        let plan = plan(&[(&old, vec![])], settings(), &pool(vec![old.clone()]), NOW);
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(plan.unchanged, 1);
    }
}
