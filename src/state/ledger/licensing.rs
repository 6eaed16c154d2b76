//! License administration on the ledger: add, update and remove a license, apply a whole
//! pool. Every change is one log entry, decided at apply against the borrows held at that
//! entry's time: the same decision on every replica, and no borrow can slip in between
//! the check and the change.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::borrow::license::{License, LicenseKey};
use crate::borrow::pool::Pool;
use crate::borrow::time::UnixSeconds;

use super::super::audit::{Actor, AuditEvent, AuditRetention};
use super::super::command::Outcome;
use super::super::pool_plan::{self, Conflict, PoolPlan, PoolSettings};
use super::{BorrowRecord, Caller, Ledger};

/// A change to the licenses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LicenseChange {
    /// A new license; refused when one with its feature and uuid exists.
    Add {
        /// The license.
        license: License,
        /// Add it even when borrows kept from a forced removal of the same feature and
        /// uuid would not fit in it.
        force: bool,
    },
    /// Some fields of a license.
    Update {
        /// Which license.
        key: LicenseKey,
        /// The fields to set.
        update: LicenseUpdate,
        /// Make the change even when held borrows end up outside the license.
        force: bool,
    },
    /// A license out of the pool.
    Remove {
        /// Which license.
        key: LicenseKey,
        /// Remove it even while borrows hold its seats.
        force: bool,
    },
    /// Replace the pool (licenses and settings) by `pool`, as one change.
    ApplyPool {
        /// The new pool.
        pool: Box<Pool>,
        /// Apply it even when held borrows end up outside their licenses.
        force: bool,
        /// From a node's `--pool` file rather than an administrator: skipped when it is
        /// the pool last declared, never forced.
        declared: bool,
    },
}

impl fmt::Display for LicenseChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let forced = |force: &bool| if *force { " forced" } else { "" };
        match self {
            LicenseChange::Add { license, force } => write!(
                f,
                "add {}/{}{}",
                license.key.feature,
                license.key.uuid,
                forced(force)
            ),
            LicenseChange::Update { key, force, .. } => {
                write!(f, "update {}/{}{}", key.feature, key.uuid, forced(force))
            }
            LicenseChange::Remove { key, force } => {
                write!(f, "remove {}/{}{}", key.feature, key.uuid, forced(force))
            }
            LicenseChange::ApplyPool {
                pool,
                force,
                declared,
            } => {
                let declared = if *declared { " declared" } else { "" };
                write!(
                    f,
                    "apply pool of {} licenses{declared}{}",
                    pool.licenses.len(),
                    forced(force)
                )
            }
        }
    }
}

/// Fields to set on a license: `None` leaves a field as it is; for the optional fields,
/// `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseUpdate {
    /// New seat count.
    pub count: Option<u32>,
    /// New product version.
    pub version: Option<String>,
    /// New edition.
    pub edition: Option<String>,
    /// New module letters.
    pub modules: Option<String>,
    /// New start of validity.
    pub valid_from: Option<Option<UnixSeconds>>,
    /// New end of validity.
    pub valid_until: Option<Option<UnixSeconds>>,
    /// New longest borrow.
    pub max_borrow_secs: Option<Option<i64>>,
    /// New cap on seats out on borrow.
    pub max_borrowed: Option<Option<u32>>,
    /// New per-host limit.
    pub max_per_host: Option<Option<u32>>,
}

impl LicenseUpdate {
    /// `license` with these fields set (not validated).
    pub fn applied_to(&self, license: &License) -> License {
        let mut next = license.clone();
        if let Some(count) = self.count {
            next.count = count;
        }
        if let Some(version) = &self.version {
            next.version = version.clone();
        }
        if let Some(edition) = &self.edition {
            next.edition = edition.clone();
        }
        if let Some(modules) = &self.modules {
            next.modules = modules.clone();
        }
        if let Some(valid_from) = self.valid_from {
            next.valid_from = valid_from;
        }
        if let Some(valid_until) = self.valid_until {
            next.valid_until = valid_until;
        }
        if let Some(max) = self.max_borrow_secs {
            next.max_borrow_secs = max;
        }
        if let Some(cap) = self.max_borrowed {
            next.max_borrowed = cap;
        }
        if let Some(limit) = self.max_per_host {
            next.max_per_host = limit;
        }
        next
    }
}

/// Why a license change was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AdminError {
    /// No license with this feature and uuid (code 34).
    #[error("{0}")]
    NoSuchLicense(String),
    /// A license with this feature and uuid exists already (code 40).
    #[error("{0}")]
    Exists(String),
    /// Held borrows would end up outside their license (code 40).
    #[error("{reason}")]
    Conflict {
        /// For a person.
        reason: String,
        /// Each license concerned, with its borrows.
        conflicts: Vec<Conflict>,
    },
    /// The license the change would make breaks a rule (code -32602).
    #[error("{0}")]
    Invalid(String),
}

/// A license changed: the license as it now stands (for a removal, as it was), and the
/// held borrows a forced change left outside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseChanged {
    /// The license.
    pub license: License,
    /// Borrows that stay valid although the license no longer covers them.
    pub over_booked: Vec<BorrowRecord>,
}

impl Ledger {
    /// Applies a license change at `now`.
    pub(super) fn change_licenses(
        &mut self,
        now: UnixSeconds,
        change: &LicenseChange,
        caller: Caller,
    ) -> Outcome {
        if !self.bootstrapped {
            // No signing key yet: licenses could be listed but not borrowed. The pool of a
            // new cluster comes with its creation.
            let refusal = AdminError::Invalid(
                "the cluster has no ledger yet: its creating node loads the first pool".into(),
            );
            return match change {
                LicenseChange::ApplyPool { .. } => Outcome::Pool(Err(refusal)),
                _ => Outcome::License(Err(refusal)),
            };
        }
        match change {
            LicenseChange::Add { license, force } => {
                Outcome::License(self.add_license(now, license, *force, caller).map(Box::new))
            }
            LicenseChange::Update { key, update, force } => {
                let Some(before) = self.license(key).cloned() else {
                    return Outcome::License(Err(no_such_license(key)));
                };
                let after = update.applied_to(&before);
                Outcome::License(
                    self.replace_license(now, &before, after, *force, caller)
                        .map(Box::new),
                )
            }
            LicenseChange::Remove { key, force } => {
                Outcome::License(self.remove_license(now, key, *force, caller).map(Box::new))
            }
            LicenseChange::ApplyPool {
                pool,
                force,
                declared,
            } => Outcome::Pool(
                self.apply_pool(now, pool, *force && !*declared, *declared, caller)
                    .map(Box::new),
            ),
        }
    }

    /// What applying `pool` at `now` would do (`PlanPoolV1`, and apply itself).
    pub fn plan_pool(&self, pool: &Pool, now: UnixSeconds) -> PoolPlan {
        let current: Vec<(&License, Vec<&BorrowRecord>)> = self
            .slots
            .values()
            .filter_map(|slot| {
                let license = slot.license.as_ref()?;
                Some((license, self.held_borrows(&license.key, now)))
            })
            .collect();
        pool_plan::plan(&current, self.pool_settings(), pool, now)
    }

    /// The pool-wide settings as they stand.
    pub fn pool_settings(&self) -> PoolSettings {
        let retention = self.audit.retention();
        PoolSettings {
            max_borrow_secs: self.max_borrow_secs,
            audit_retention_secs: retention.max_age_secs,
            max_audit_entries: retention.max_entries as u64,
        }
    }

    /// The borrows of `key` that hold a seat at or after `now`, ordered by start.
    pub fn held_borrows(&self, key: &LicenseKey, now: UnixSeconds) -> Vec<&BorrowRecord> {
        let Some(slot) = self.slots.get(key) else {
            return Vec::new();
        };
        slot.by_start
            .iter()
            .filter_map(|(_, id)| self.borrows.get(id).map(|record| &**record))
            .filter(|record| pool_plan::holds_a_seat(record, now))
            .collect()
    }

    fn add_license(
        &mut self,
        now: UnixSeconds,
        license: &License,
        force: bool,
        caller: Caller,
    ) -> Result<LicenseChanged, AdminError> {
        license
            .validate()
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
        if self.license(&license.key).is_some() {
            return Err(AdminError::Exists(format!(
                "a license {}/{} exists already: change it with UpdateLicenseV1",
                license.key.feature, license.key.uuid
            )));
        }
        // Borrows kept from a forced removal of the same license count against it again.
        let held = self.held_borrows(&license.key, now);
        let conflict = pool_plan::conflict(&license.key, Some(license), &held, now);
        let over_booked = self.over_booked(conflict, force)?;
        self.slots.entry(license.key.clone()).or_default().license = Some(license.clone());
        self.audit_license(
            now,
            caller,
            AuditEvent::LicenseAdd {
                key: license.key.clone(),
                detail: format!("{}{}", describe(license), forced_note(&over_booked)),
            },
        );
        Ok(LicenseChanged {
            license: license.clone(),
            over_booked,
        })
    }

    fn replace_license(
        &mut self,
        now: UnixSeconds,
        before: &License,
        after: License,
        force: bool,
        caller: Caller,
    ) -> Result<LicenseChanged, AdminError> {
        after
            .validate()
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
        let held = self.held_borrows(&before.key, now);
        let conflict = pool_plan::conflict(&before.key, Some(&after), &held, now);
        let over_booked = self.over_booked(conflict, force)?;
        let fields = pool_plan::changed_fields(before, &after).join(", ");
        if let Some(slot) = self.slots.get_mut(&before.key) {
            slot.license = Some(after.clone());
        }
        self.audit_license(
            now,
            caller,
            AuditEvent::LicenseUpdate {
                key: after.key.clone(),
                detail: format!(
                    "changed [{fields}]: {}{}",
                    describe(&after),
                    forced_note(&over_booked)
                ),
            },
        );
        Ok(LicenseChanged {
            license: after,
            over_booked,
        })
    }

    fn remove_license(
        &mut self,
        now: UnixSeconds,
        key: &LicenseKey,
        force: bool,
        caller: Caller,
    ) -> Result<LicenseChanged, AdminError> {
        let Some(license) = self.license(key).cloned() else {
            return Err(no_such_license(key));
        };
        let held = self.held_borrows(key, now);
        let conflict = pool_plan::conflict(key, None, &held, now);
        let over_booked = self.over_booked(conflict, force)?;
        // The slot stays: its borrows remain retrievable, and count if the license is
        // added again.
        if let Some(slot) = self.slots.get_mut(key) {
            slot.license = None;
        }
        self.audit_license(
            now,
            caller,
            AuditEvent::LicenseRemove {
                key: key.clone(),
                detail: format!("removed{}", forced_note(&over_booked)),
            },
        );
        Ok(LicenseChanged {
            license,
            over_booked,
        })
    }

    fn apply_pool(
        &mut self,
        now: UnixSeconds,
        pool: &Pool,
        force: bool,
        declared: bool,
        caller: Caller,
    ) -> Result<PoolPlan, AdminError> {
        // A node's `--pool` file: the node is who did it.
        let caller = match (declared, caller.node) {
            (true, Some(node)) => Caller {
                actor: Actor::Node(node),
                ..caller
            },
            _ => caller,
        };
        if declared && self.declared_pool.as_ref() == Some(pool) {
            return Ok(PoolPlan {
                unchanged: pool.licenses.len(),
                ..PoolPlan::default()
            });
        }
        for license in &pool.licenses {
            license
                .validate()
                .map_err(|e| AdminError::Invalid(e.to_string()))?;
        }
        let plan = self.plan_pool(pool, now);
        if !plan.conflicts.is_empty() && !force {
            return Err(conflict_error(plan.conflicts));
        }
        for removed in &plan.removed {
            if let Some(slot) = self.slots.get_mut(&removed.key) {
                slot.license = None;
            }
        }
        for license in &pool.licenses {
            self.slots.entry(license.key.clone()).or_default().license = Some(license.clone());
        }
        self.max_borrow_secs = pool.max_borrow_secs;
        self.audit.set_retention(AuditRetention {
            max_age_secs: pool.audit_retention_secs,
            max_entries: usize::try_from(pool.max_audit_entries).unwrap_or(usize::MAX),
        });
        if declared {
            self.declared_pool = Some(pool.clone());
        }
        let source = if declared {
            "a node's pool file"
        } else {
            "a pool"
        };
        for license in &plan.added {
            self.audit_license(
                now,
                caller,
                AuditEvent::LicenseAdd {
                    key: license.key.clone(),
                    detail: format!("from {source}: {}", describe(license)),
                },
            );
        }
        for diff in &plan.changed {
            self.audit_license(
                now,
                caller,
                AuditEvent::LicenseUpdate {
                    key: diff.after.key.clone(),
                    detail: format!(
                        "from {source}: changed [{}]: {}",
                        diff.fields.join(", "),
                        describe(&diff.after)
                    ),
                },
            );
        }
        for license in &plan.removed {
            self.audit_license(
                now,
                caller,
                AuditEvent::LicenseRemove {
                    key: license.key.clone(),
                    detail: format!("from {source}"),
                },
            );
        }
        let forced = if plan.conflicts.is_empty() {
            String::new()
        } else {
            " (forced)".to_string()
        };
        self.audit_license(
            now,
            caller,
            AuditEvent::PoolApply {
                detail: format!("from {source}: {}{forced}", plan.summary()),
            },
        );
        Ok(plan)
    }

    /// The borrows a change leaves outside their license: refused unless `force`.
    fn over_booked(
        &self,
        conflict: Option<Conflict>,
        force: bool,
    ) -> Result<Vec<BorrowRecord>, AdminError> {
        let Some(conflict) = conflict else {
            return Ok(Vec::new());
        };
        if !force {
            return Err(conflict_error(vec![conflict]));
        }
        Ok(conflict
            .borrows
            .iter()
            .filter_map(|id| {
                self.borrows
                    .get(id)
                    .map(|record| BorrowRecord::clone(record))
            })
            .collect())
    }

    fn audit_license(&mut self, now: UnixSeconds, caller: Caller, event: AuditEvent) {
        self.audit.record(now, caller.node, caller.actor, event);
    }
}

fn no_such_license(key: &LicenseKey) -> AdminError {
    AdminError::NoSuchLicense(format!(
        "no license with feature {:?} and uuid {:?}",
        key.feature, key.uuid
    ))
}

fn conflict_error(conflicts: Vec<Conflict>) -> AdminError {
    let reason = conflicts
        .iter()
        .map(|c| format!("{}/{}: {}", c.key.feature, c.key.uuid, c.reason))
        .collect::<Vec<_>>()
        .join("; ");
    AdminError::Conflict {
        reason: format!("refused, held borrows would be left outside their license (force to do it anyway): {reason}"),
        conflicts,
    }
}

fn forced_note(over_booked: &[BorrowRecord]) -> String {
    if over_booked.is_empty() {
        String::new()
    } else {
        format!(" (forced: {} borrow(s) over-booked)", over_booked.len())
    }
}

/// A license in one line, for the audit trail.
fn describe(license: &License) -> String {
    let until = license
        .valid_until
        .map_or_else(|| "never".to_string(), crate::borrow::time::format_instant);
    format!(
        "count {}, valid until {until}, max borrow {}",
        license.count,
        pool_plan::describe_max_borrow(license)
    )
}
