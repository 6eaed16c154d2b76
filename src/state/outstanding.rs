//! Borrows that have not ended yet, counted per license and per host: what the limits on
//! client-created state are checked against.
//!
//! Capacity alone does not bound the ledger: a license of one seat holds any number of
//! tiny borrows laid end to end into the future, each kept until its end plus retention.
//! These counts let the ledger refuse a borrow once a license, or one host on it, holds
//! too many current and upcoming borrows ([`MAX_OUTSTANDING_PER_SEAT`],
//! [`MAX_OUTSTANDING_PER_HOST`]).
//!
//! Derived state, deterministic: built from the records and the ledger clock, so a
//! replica that loaded a snapshot counts what one that applied every entry counts.

use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

use crate::borrow::host_id::HostId;
use crate::borrow::license::LicenseKey;
use crate::borrow::time::UnixSeconds;

use super::ledger::BorrowRecord;

/// Current and upcoming borrows one license may hold, per seat of its `count`.
pub const MAX_OUTSTANDING_PER_SEAT: usize = 64;
/// Current and upcoming borrows of one license one host may hold.
pub const MAX_OUTSTANDING_PER_HOST: usize = 32;

/// Counts of borrows not yet ended (not returned, `validUntil` after the ledger clock).
#[derive(Debug, Default, Clone)]
pub struct Outstanding {
    /// (end, id) of every counted borrow, to drop them as the clock passes their end.
    ends: BTreeSet<(UnixSeconds, Uuid)>,
    /// Per license: the total and the share of each host. Nested so that a lookup on the
    /// apply path borrows the key and host instead of cloning them.
    licenses: HashMap<LicenseKey, LicenseCounts>,
}

#[derive(Debug, Default, Clone)]
struct LicenseCounts {
    total: usize,
    per_host: HashMap<HostId, usize>,
}

impl Outstanding {
    /// Counts a new borrow that has not ended at `now`.
    pub fn add(&mut self, record: &BorrowRecord, now: UnixSeconds) {
        if record.returned_at.is_some() || record.valid_until <= now {
            return;
        }
        if self.ends.insert((record.valid_until, record.borrow_id)) {
            // Keys are copied only when first counted: a license is nearly always
            // counted already, and a host often.
            if !self.licenses.contains_key(&record.key) {
                self.licenses
                    .insert(record.key.clone(), LicenseCounts::default());
            }
            if let Some(counts) = self.licenses.get_mut(&record.key) {
                counts.total += 1;
                match counts.per_host.get_mut(&record.host_id) {
                    Some(count) => *count += 1,
                    None => {
                        counts.per_host.insert(record.host_id.clone(), 1);
                    }
                }
            }
        }
    }

    /// Stops counting a borrow (returned or forgotten); `until` is the end it was counted
    /// with. Nothing happens if it was not counted.
    pub fn remove(&mut self, record: &BorrowRecord, until: UnixSeconds) {
        if self.ends.remove(&(until, record.borrow_id)) {
            self.uncount(record);
        }
    }

    /// Stops counting every borrow that ended by `now`; `record` finds a borrow by id.
    pub fn expire<'a>(
        &mut self,
        now: UnixSeconds,
        record: impl Fn(&Uuid) -> Option<&'a BorrowRecord>,
    ) {
        while let Some(&(until, id)) = self.ends.first() {
            if until > now {
                break;
            }
            self.ends.pop_first();
            if let Some(record) = record(&id) {
                self.uncount(record);
            }
        }
    }

    /// Borrows of `key` not yet ended.
    pub fn of_license(&self, key: &LicenseKey) -> usize {
        self.licenses.get(key).map_or(0, |counts| counts.total)
    }

    /// Borrows of `key` by `host` not yet ended.
    pub fn of_host(&self, key: &LicenseKey, host: &HostId) -> usize {
        self.licenses
            .get(key)
            .and_then(|counts| counts.per_host.get(host))
            .copied()
            .unwrap_or(0)
    }

    fn uncount(&mut self, record: &BorrowRecord) {
        let Some(counts) = self.licenses.get_mut(&record.key) else {
            return;
        };
        counts.total = counts.total.saturating_sub(1);
        if let Some(count) = counts.per_host.get_mut(&record.host_id) {
            *count -= 1;
            if *count == 0 {
                counts.per_host.remove(&record.host_id);
            }
        }
        if counts.total == 0 {
            self.licenses.remove(&record.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(host: &str, from: UnixSeconds, until: UnixSeconds) -> BorrowRecord {
        BorrowRecord {
            borrow_id: Uuid::new_v4(),
            key: LicenseKey {
                feature: "F".into(),
                uuid: "u".into(),
            },
            version: String::new(),
            edition: String::new(),
            modules: String::new(),
            host_id: HostId::parse(host).expect("host"),
            valid_from: from,
            valid_until: until,
            user_info: None,
            issued_at: from,
            returned_at: None,
        }
    }

    #[test]
    fn counts_follow_the_clock_and_returns() {
        let mut counts = Outstanding::default();
        let a = record("MAC:000000000001", 0, 10);
        let b = record("MAC:000000000001", 0, 20);
        let c = record("MAC:000000000002", 5, 30);
        for r in [&a, &b, &c] {
            counts.add(r, 0);
        }
        let key = a.key.clone();
        assert_eq!(counts.of_license(&key), 3);
        assert_eq!(counts.of_host(&key, &a.host_id), 2);
        let by_id = |id: &Uuid| [&a, &b, &c].into_iter().find(|r| r.borrow_id == *id);
        counts.expire(10, by_id);
        assert_eq!(counts.of_license(&key), 2);
        assert_eq!(counts.of_host(&key, &a.host_id), 1);
        counts.remove(&c, c.valid_until);
        assert_eq!(counts.of_license(&key), 1);
        assert_eq!(counts.of_host(&key, &c.host_id), 0);
        // Removing twice, or a borrow already expired, changes nothing.
        counts.remove(&c, c.valid_until);
        counts.remove(&a, a.valid_until);
        assert_eq!(counts.of_license(&key), 1);
        // An ended borrow is not counted.
        counts.add(&record("MAC:000000000003", 0, 5), 5);
        assert_eq!(counts.of_license(&key), 1);
    }
}
