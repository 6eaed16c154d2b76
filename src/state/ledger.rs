//! The ledger: licenses, borrows and their capacity indexes, changed only by [`Ledger::apply`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::borrow::capacity::CapacityIndex;
use crate::borrow::check::{self, BorrowError, BorrowRequest, MAX_BACKDATE_SECS};
use crate::borrow::host_id::HostId;
use crate::borrow::license::{License, LicenseKey};
use crate::borrow::time::Instant;

use super::command::{Bootstrap, Command, Outcome};

/// Default retention of expired borrows (SPEC §2: 30 days).
pub const DEFAULT_RETENTION_SECS: i64 = 30 * 86_400;

/// One borrow, with everything its signed license document shows. Version, edition and
/// modules are copied from the license at borrow time so that the document rendered later
/// is byte for byte the one handed out, even if the license is edited in between.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BorrowRecord {
    /// The borrow's id.
    pub borrow_id: Uuid,
    /// Which license.
    pub key: LicenseKey,
    /// License version at borrow time.
    pub version: String,
    /// License edition at borrow time.
    pub edition: String,
    /// License modules at borrow time.
    pub modules: String,
    /// The machine.
    pub host_id: HostId,
    /// Start, inclusive.
    pub valid_from: Instant,
    /// End, exclusive.
    pub valid_until: Instant,
    /// Client's free text.
    pub user_info: Option<String>,
    /// When the borrow was applied (leader time).
    pub issued_at: Instant,
}

/// A license and what is borrowed of it.
#[derive(Debug, Clone, Default)]
struct Slot {
    license: Option<License>,
    /// Every retained borrow's interval, for the capacity check.
    index: CapacityIndex,
    /// Retained borrows ordered by start, for `borrowedIntervals`.
    by_start: BTreeSet<(Instant, Uuid)>,
}

/// The replicated state. Deterministic: the same entries in the same order give the same
/// ledger on every node.
#[derive(Debug, Default)]
pub struct Ledger {
    bootstrapped: bool,
    max_borrow_secs: i64,
    retention_secs: i64,
    signing_key: Option<[u8; 32]>,
    /// The latest leader time applied; never goes backwards.
    clock: Instant,
    slots: BTreeMap<LicenseKey, Slot>,
    borrows: HashMap<Uuid, BorrowRecord>,
    /// (time the record may be forgotten, id), for retention.
    forget_at: BTreeSet<(Instant, Uuid)>,
}

/// The serialised form of a ledger (snapshots). Indexes are derived and rebuilt on load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerSnapshot {
    /// Whether a pool was loaded.
    pub bootstrapped: bool,
    /// Pool-wide maximum borrow length.
    pub max_borrow_secs: i64,
    /// Retention of expired borrows.
    pub retention_secs: i64,
    /// Signing key.
    pub signing_key: Option<[u8; 32]>,
    /// Ledger clock.
    pub clock: Instant,
    /// Licenses, ordered by key.
    pub licenses: Vec<License>,
    /// Borrows, ordered by id.
    pub borrows: Vec<BorrowRecord>,
}

/// A license with the borrows that are current or upcoming at some instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseView<'a> {
    /// The license.
    pub license: &'a License,
    /// Borrows whose end is after the instant, ordered by start.
    pub borrows: Vec<&'a BorrowRecord>,
}

impl Ledger {
    /// Applies one command at its place in the log.
    pub fn apply(&mut self, command: &Command) -> Outcome {
        match command {
            Command::Bootstrap(bootstrap) => Outcome::Bootstrapped(self.bootstrap(bootstrap)),
            Command::Borrow {
                now,
                borrow_id,
                request,
            } => {
                let now = self.advance_clock(*now);
                Outcome::Borrow(self.borrow(now, *borrow_id, request).map(Box::new))
            }
        }
    }

    fn bootstrap(&mut self, bootstrap: &Bootstrap) -> bool {
        if self.bootstrapped {
            return false;
        }
        self.bootstrapped = true;
        self.max_borrow_secs = bootstrap.max_borrow_secs;
        // Retention must outlast the backdating window so the capacity index still holds
        // every borrow a new (backdated) borrow could overlap.
        self.retention_secs = bootstrap.retention_secs.max(MAX_BACKDATE_SECS);
        self.signing_key = Some(bootstrap.signing_key);
        for license in &bootstrap.licenses {
            self.slots.entry(license.key.clone()).or_default().license = Some(license.clone());
        }
        true
    }

    /// Moves the clock to `stamped` unless that would go backwards (a new leader whose wall
    /// clock is behind), and forgets borrows whose retention has run out.
    fn advance_clock(&mut self, stamped: Instant) -> Instant {
        self.clock = self.clock.max(stamped);
        let now = self.clock;
        while let Some(&(when, id)) = self.forget_at.first() {
            if when > now {
                break;
            }
            self.forget_at.pop_first();
            self.forget(id);
        }
        now
    }

    fn forget(&mut self, id: Uuid) {
        let Some(record) = self.borrows.remove(&id) else {
            return;
        };
        if let Some(slot) = self.slots.get_mut(&record.key) {
            slot.index.remove(record.valid_from, record.valid_until);
            slot.by_start.remove(&(record.valid_from, id));
        }
    }

    fn borrow(
        &mut self,
        now: Instant,
        borrow_id: Uuid,
        request: &BorrowRequest,
    ) -> Result<BorrowRecord, BorrowError> {
        let slot = self.slots.get_mut(&request.key);
        let entry = slot
            .as_ref()
            .and_then(|slot| slot.license.as_ref().map(|license| (license, &slot.index)));
        let granted = check::decide(request, now, entry, self.max_borrow_secs)?;
        // `decide` found the license, so the slot exists.
        let Some(slot) = slot else {
            return Err(BorrowError::NoSuchLicense("license vanished".into()));
        };
        let Some(license) = slot.license.as_ref() else {
            return Err(BorrowError::NoSuchLicense("license vanished".into()));
        };
        let record = BorrowRecord {
            borrow_id,
            key: request.key.clone(),
            version: license.version.clone(),
            edition: license.edition.clone(),
            modules: license.modules.clone(),
            host_id: request.host_id.clone(),
            valid_from: granted.from,
            valid_until: granted.until,
            user_info: request.user_info.clone(),
            issued_at: now,
        };
        slot.index.insert(granted.from, granted.until);
        slot.by_start.insert((granted.from, borrow_id));
        self.forget_at
            .insert((granted.until.saturating_add(self.retention_secs), borrow_id));
        self.borrows.insert(borrow_id, record.clone());
        Ok(record)
    }

    /// Whether a pool has been loaded into this ledger.
    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped
    }

    /// The key that signs borrowed licenses.
    pub fn signing_key(&self) -> Option<&[u8; 32]> {
        self.signing_key.as_ref()
    }

    /// The ledger's clock: the latest leader time applied.
    pub fn clock(&self) -> Instant {
        self.clock
    }

    /// A retained borrow by id.
    pub fn borrow_record(&self, id: &Uuid) -> Option<&BorrowRecord> {
        self.borrows.get(id)
    }

    /// Number of retained borrows.
    pub fn borrow_count(&self) -> usize {
        self.borrows.len()
    }

    /// Every license, ordered by feature then uuid, with its borrows that end after `now`.
    pub fn licenses(&self, now: Instant) -> Vec<LicenseView<'_>> {
        self.slots
            .values()
            .filter_map(|slot| {
                let license = slot.license.as_ref()?;
                let borrows = slot
                    .by_start
                    .iter()
                    .filter_map(|(_, id)| self.borrows.get(id))
                    .filter(|record| record.valid_until > now)
                    .collect();
                Some(LicenseView { license, borrows })
            })
            .collect()
    }

    /// The ledger in its serialised form.
    pub fn to_snapshot(&self) -> LedgerSnapshot {
        let mut borrows: Vec<BorrowRecord> = self.borrows.values().cloned().collect();
        borrows.sort_by_key(|record| record.borrow_id);
        LedgerSnapshot {
            bootstrapped: self.bootstrapped,
            max_borrow_secs: self.max_borrow_secs,
            retention_secs: self.retention_secs,
            signing_key: self.signing_key,
            clock: self.clock,
            licenses: self
                .slots
                .values()
                .filter_map(|slot| slot.license.clone())
                .collect(),
            borrows,
        }
    }

    /// Rebuilds a ledger, indexes included, from its serialised form.
    pub fn from_snapshot(snapshot: LedgerSnapshot) -> Ledger {
        let mut ledger = Ledger {
            bootstrapped: snapshot.bootstrapped,
            max_borrow_secs: snapshot.max_borrow_secs,
            retention_secs: snapshot.retention_secs,
            signing_key: snapshot.signing_key,
            clock: snapshot.clock,
            ..Ledger::default()
        };
        for license in snapshot.licenses {
            let slot = ledger.slots.entry(license.key.clone()).or_default();
            slot.license = Some(license);
        }
        for record in snapshot.borrows {
            let slot = ledger.slots.entry(record.key.clone()).or_default();
            slot.index.insert(record.valid_from, record.valid_until);
            slot.by_start.insert((record.valid_from, record.borrow_id));
            ledger.forget_at.insert((
                record.valid_until.saturating_add(ledger.retention_secs),
                record.borrow_id,
            ));
            ledger.borrows.insert(record.borrow_id, record);
        }
        ledger
    }
}
