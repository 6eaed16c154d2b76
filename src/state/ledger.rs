//! The ledger: licenses, borrows and their capacity indexes, changed only by [`Ledger::apply`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::borrow::capacity::CapacityIndex;
use crate::borrow::check::{self, BorrowError, BorrowRequest, MAX_BACKDATE_SECS};
use crate::borrow::host_id::HostId;
use crate::borrow::license::{License, LicenseKey};
use crate::borrow::time::UnixSeconds;

use crate::borrow::pool::Pool;

use super::api_key::KeyId;
use super::api_keys::{Access, ApiKeyChange, ApiKeyRecord, ApiKeys, KeyRefusal};
use super::audit::{Actor, AuditEntry, AuditEvent, AuditRetention, AuditTrail};
use super::command::{Bootstrap, Command, Outcome};
use super::hosts::{HostRecord, HostRegistry};
use super::outstanding::{Outstanding, MAX_OUTSTANDING_PER_HOST, MAX_OUTSTANDING_PER_SEAT};

pub mod host_admin;
pub mod licensing;
pub mod search;

/// Who a command came from, as its wrappers (`Origin`, `AsKey`) say: for the audit trail.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller {
    /// The node the caller reached, when the entry says.
    node: Option<u64>,
    /// Who.
    actor: Actor,
}

impl Default for Caller {
    fn default() -> Caller {
        Caller {
            node: None,
            actor: Actor::Client,
        }
    }
}

/// Default retention of expired borrows (docs/protocol.md §6.2: 30 days).
pub const DEFAULT_RETENTION_SECS: i64 = 30 * 86_400;
/// How long a refused borrow's `requestId` is remembered (a granted one lives as long as
/// its borrow): long enough for any client retry loop.
pub const REFUSED_REQUEST_RETENTION_SECS: i64 = 86_400;
/// Most refused `requestId`s remembered at once; beyond it the oldest is forgotten first
/// (a retry of a forgotten refusal is decided again, which borrows at most once). Without
/// it, unique ids on refused borrows would grow every replica's memory for 24 hours.
pub const MAX_REMEMBERED_REFUSALS: usize = 10_000;

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
    pub valid_from: UnixSeconds,
    /// End, exclusive.
    pub valid_until: UnixSeconds,
    /// Client's free text.
    pub user_info: Option<String>,
    /// When the borrow was applied (leader time).
    pub issued_at: UnixSeconds,
    /// When it was given back early (`ReturnLicenseV1`); its `valid_until` was cut then.
    pub returned_at: Option<UnixSeconds>,
}

/// What the ledger remembers of a borrow made with a `requestId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The request as first made: a reuse of the id for another request is refused.
    pub request: BorrowRequest,
    /// The first answer: the borrow's id, or the refusal.
    pub answer: Result<Uuid, BorrowError>,
    /// When the ledger may forget it.
    pub forget_at: UnixSeconds,
}

/// A license and what is borrowed of it.
#[derive(Debug, Clone, Default)]
struct Slot {
    license: Option<License>,
    /// Every retained borrow's interval, for the capacity check.
    index: CapacityIndex,
    /// Retained borrows ordered by start, for `borrowedIntervals`.
    by_start: BTreeSet<(UnixSeconds, Uuid)>,
}

/// The replicated state. Deterministic: the same entries in the same order give the same
/// ledger on every node.
#[derive(Debug, Default)]
// Chaos builds only: the `ack-before-commit` mode answers from a copy (`cluster/forward.rs`).
#[cfg_attr(feature = "failpoints", derive(Clone))]
pub struct Ledger {
    bootstrapped: bool,
    max_borrow_secs: i64,
    retention_secs: i64,
    signing_key: Option<[u8; 32]>,
    /// The latest leader time applied; never goes backwards.
    clock: UnixSeconds,
    slots: BTreeMap<LicenseKey, Slot>,
    borrows: HashMap<Uuid, Arc<BorrowRecord>>,
    /// (time the record may be forgotten, id), for retention.
    forget_at: BTreeSet<(UnixSeconds, Uuid)>,
    /// Borrows made with a `requestId`, by that id.
    requests: HashMap<Arc<str>, Arc<RequestRecord>>,
    /// (time the request may be forgotten, requestId), for retention.
    forget_requests: BTreeSet<(UnixSeconds, String)>,
    /// The refused ones among them, for [`MAX_REMEMBERED_REFUSALS`].
    refusals: BTreeSet<(UnixSeconds, String)>,
    /// Borrows not yet ended, per license and host (derived), for the limits.
    outstanding: Outstanding,
    /// Client API keys.
    api_keys: ApiKeys,
    /// Retained borrows in the order they were made (derived), for `ListBorrowsV1`.
    by_issue: BTreeSet<(UnixSeconds, Uuid)>,
    /// Hosts seen, named or blocked.
    hosts: HostRegistry,
    /// Who did what, when.
    audit: AuditTrail,
    /// The pool last applied from a node's `--pool` file (or the one the cluster was
    /// created with): a node started with the same file changes nothing.
    declared_pool: Option<Pool>,
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
    pub clock: UnixSeconds,
    /// Licenses, ordered by key.
    pub licenses: Vec<License>,
    /// Borrows, ordered by id.
    pub borrows: Vec<BorrowRecord>,
    /// Remembered `requestId`s, ordered by id.
    pub requests: Vec<(String, RequestRecord)>,
    /// Client API keys (hashes of their secrets, never the secrets), ordered by id.
    pub api_keys: Vec<ApiKeyRecord>,
    /// Hosts, ordered by id.
    pub hosts: Vec<HostRecord>,
    /// The audit trail's next sequence number.
    pub audit_next_seq: u64,
    /// The audit trail's retention.
    pub audit_retention: AuditRetention,
    /// The audit trail, oldest first.
    pub audit: Vec<AuditEntry>,
    /// See [`Ledger`]'s `declared_pool`.
    pub declared_pool: Option<Pool>,
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
        self.apply_as(Caller::default(), command)
    }

    fn apply_as(&mut self, caller: Caller, command: &Command) -> Outcome {
        match command {
            Command::Bootstrap(bootstrap) => {
                Outcome::Bootstrapped(self.bootstrap(bootstrap, caller))
            }
            Command::Borrow {
                now,
                borrow_id,
                request,
                request_id,
            } => {
                let now = self.advance_clock(*now);
                match request_id {
                    Some(request_id) => {
                        self.borrow_once(now, *borrow_id, request, request_id, caller)
                    }
                    None => {
                        Outcome::Borrow(self.borrow(now, *borrow_id, request, caller).map(Box::new))
                    }
                }
            }
            Command::Return { now, borrow_id } => {
                let now = self.advance_clock(*now);
                Outcome::Returned(self.give_back(now, *borrow_id, caller).map(Box::new))
            }
            Command::ApiKey { now, change } => {
                let now = self.advance_clock(*now);
                let outcome = self.api_keys.apply(now, change, self.retention_secs);
                if let Ok(record) = &outcome {
                    let event = match change {
                        ApiKeyChange::Create(_) => AuditEvent::ApiKeyCreate {
                            key_id: record.id,
                            detail: format!("scope {}", record.scope),
                        },
                        ApiKeyChange::Revoke(id) => AuditEvent::ApiKeyRevoke { key_id: *id },
                    };
                    self.audit.record(now, caller.node, caller.actor, event);
                }
                Outcome::ApiKey(outcome.map(Box::new))
            }
            Command::AsKey { key_id, command } => match self.key_may_apply(*key_id, command) {
                Ok(()) => self.apply_as(
                    Caller {
                        actor: Actor::Key(*key_id),
                        ..caller
                    },
                    command,
                ),
                // Nothing changes, not even the audit trail: like a key refused when
                // the call arrived, before the log.
                Err(refusal) => Outcome::KeyRefused(refusal),
            },
            Command::Origin {
                node,
                admin,
                command,
            } => {
                let actor = if *admin {
                    Actor::AdminToken
                } else {
                    caller.actor
                };
                self.apply_as(
                    Caller {
                        node: Some(*node),
                        actor,
                    },
                    command,
                )
            }
            Command::Licenses { now, change } => {
                let now = self.advance_clock(*now);
                self.change_licenses(now, change, caller)
            }
            Command::Host {
                now,
                host_id,
                change,
            } => {
                let now = self.advance_clock(*now);
                self.change_host(now, host_id, change, caller)
            }
        }
    }

    /// Records a membership change (a Raft membership entry, which carries no time: the
    /// ledger clock stands in, so one applied before any leader time is not recorded).
    pub fn record_membership(&mut self, detail: String) {
        // Before any leader time (a new cluster's first membership) there is no instant to
        // record it at; the cluster's creation entry follows it.
        if self.clock == 0 {
            return;
        }
        self.audit.record(
            self.clock,
            None,
            Actor::System,
            AuditEvent::Membership { detail }.bounded(),
        );
    }

    /// Whether the API key `key_id` may do `command` at this point of the log. Its secret
    /// was checked when the call arrived; here it is whether the key still exists, is not
    /// revoked, and has the scope and the feature: the same answer on every replica.
    fn key_may_apply(&self, key_id: KeyId, command: &Command) -> Result<(), KeyRefusal> {
        let access = match command {
            Command::Borrow { request, .. } => Access::BORROW.on(Some(&request.key.feature)),
            // An unknown borrow has no feature to check: the return answers 34.
            Command::Return { borrow_id, .. } => Access::RETURN.on(self
                .borrows
                .get(borrow_id)
                .map(|record| record.key.feature.as_str())),
            Command::ApiKey { .. } => Access::MANAGE_KEYS,
            Command::Licenses { .. } => Access::ADMINISTER,
            Command::Host { .. } => Access::ADMINISTER,
            Command::Bootstrap(_) => {
                return Err(KeyRefusal::NotForKeys("loading a license pool".into()))
            }
            Command::AsKey { .. } | Command::Origin { .. } => {
                return Err(KeyRefusal::NotForKeys(
                    "a command inside a keyed command".into(),
                ))
            }
        };
        self.api_keys.authorize(key_id, access).map(|_| ())
    }

    /// A borrow with a `requestId`: the first one decides, later ones repeat its answer.
    fn borrow_once(
        &mut self,
        now: UnixSeconds,
        borrow_id: Uuid,
        request: &BorrowRequest,
        request_id: &str,
        caller: Caller,
    ) -> Outcome {
        let earlier = self.requests.get(request_id);
        // Chaos builds only, `LICENSED_BROKEN=skip-dedup`: forget that the id was seen, so
        // a client's retry of a borrow whose answer was lost borrows a second time.
        #[cfg(feature = "failpoints")]
        let earlier = earlier.filter(|_| !crate::broken::is(crate::broken::Broken::SkipDedup));
        if let Some(first) = earlier {
            if !request.is_retry_of(&first.request) {
                return Outcome::RequestIdReused(format!(
                    "requestId {request_id:?} was already used for a different borrow request"
                ));
            }
            return Outcome::Borrow(match &first.answer {
                Ok(id) => self.borrows.get(id).map(|record| Box::new(BorrowRecord::clone(record))).ok_or_else(|| {
                    BorrowError::NoSuchLicense(format!(
                        "the borrow made for requestId {request_id:?} has expired and been forgotten"
                    ))
                }),
                Err(refusal) => Err(refusal.clone()),
            });
        }
        let answer = self.borrow(now, borrow_id, request, caller);
        let forget_at = match &answer {
            Ok(record) => record.valid_until.saturating_add(self.retention_secs),
            Err(_) => now.saturating_add(REFUSED_REQUEST_RETENTION_SECS),
        };
        self.requests.insert(
            Arc::from(request_id),
            Arc::new(RequestRecord {
                request: request.clone(),
                answer: answer
                    .as_ref()
                    .map(|record| record.borrow_id)
                    .map_err(Clone::clone),
                forget_at,
            }),
        );
        self.forget_requests
            .insert((forget_at, request_id.to_string()));
        if answer.is_err() {
            self.remember_refusal(forget_at, request_id);
        }
        Outcome::Borrow(answer.map(Box::new))
    }

    /// Ends a borrow at `now` (an upcoming one becomes empty) and frees its capacity.
    /// Returning twice, or returning a borrow that already ended, changes nothing.
    fn give_back(
        &mut self,
        now: UnixSeconds,
        borrow_id: Uuid,
        caller: Caller,
    ) -> Result<BorrowRecord, BorrowError> {
        let Some(shared) = self.borrows.get_mut(&borrow_id) else {
            return Err(BorrowError::NoSuchLicense(format!(
                "no borrow with borrowId {borrow_id}"
            )));
        };
        if shared.returned_at.is_some() || shared.valid_until <= now {
            return Ok(BorrowRecord::clone(shared));
        }
        // Copies the record only if a snapshot being written still holds it.
        let record = Arc::make_mut(shared);
        let old_until = record.valid_until;
        let new_until = now.max(record.valid_from);
        record.valid_until = new_until;
        record.returned_at = Some(now);
        let record = BorrowRecord::clone(record);
        self.outstanding.remove(&record, old_until);
        if let Some(slot) = self.slots.get_mut(&record.key) {
            // An upcoming borrow becomes empty: it holds no capacity but stays retrievable.
            slot.index.remove(record.valid_from, old_until);
            slot.index.insert(record.valid_from, new_until);
        }
        self.forget_at
            .remove(&(old_until.saturating_add(self.retention_secs), borrow_id));
        self.forget_at
            .insert((new_until.saturating_add(self.retention_secs), borrow_id));
        self.audit.record(
            now,
            caller.node,
            caller.actor,
            AuditEvent::Return {
                borrow_id,
                key: record.key.clone(),
                host_id: record.host_id.clone(),
            },
        );
        Ok(record)
    }

    /// Remembers a refused `requestId`, forgetting the oldest refusal beyond the bound.
    fn remember_refusal(&mut self, forget_at: UnixSeconds, request_id: &str) {
        self.refusals.insert((forget_at, request_id.to_string()));
        while self.refusals.len() > MAX_REMEMBERED_REFUSALS {
            if let Some((when, oldest)) = self.refusals.pop_first() {
                self.forget_requests.remove(&(when, oldest.clone()));
                self.requests.remove(oldest.as_str());
            }
        }
    }

    fn bootstrap(&mut self, bootstrap: &Bootstrap, caller: Caller) -> bool {
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
        let pool = Pool {
            licenses: bootstrap.licenses.clone(),
            max_borrow_secs: bootstrap.max_borrow_secs,
            audit_retention_secs: bootstrap.audit_retention_secs,
            max_audit_entries: bootstrap.max_audit_entries,
        };
        self.audit.set_retention(AuditRetention {
            max_age_secs: pool.audit_retention_secs,
            max_entries: usize::try_from(pool.max_audit_entries).unwrap_or(usize::MAX),
        });
        let now = self.advance_clock(bootstrap.created_at);
        // The creating node loads the first pool on its own: no caller behind it.
        self.audit.record(
            now,
            caller.node,
            Actor::System,
            AuditEvent::PoolApply {
                detail: format!(
                    "at the cluster's creation, {} license(s)",
                    pool.licenses.len()
                ),
            },
        );
        self.declared_pool = Some(pool);
        true
    }

    /// Moves the clock to `stamped` unless that would go backwards (a new leader whose wall
    /// clock is behind), and forgets borrows whose retention has run out.
    fn advance_clock(&mut self, stamped: UnixSeconds) -> UnixSeconds {
        let before = self.clock;
        self.clock = self.clock.max(stamped);
        let now = self.clock;
        self.audit.expire(now);
        // Once a day by the ledger clock (so on every replica at the same entry): forget
        // hosts nobody named, annotated or blocked whose last borrow left retention.
        if before.div_euclid(86_400) != now.div_euclid(86_400) {
            self.hosts
                .forget_idle(now.saturating_sub(self.retention_secs));
        }
        // Before forgetting: the counts look each ended borrow up.
        let borrows = &self.borrows;
        self.outstanding
            .expire(now, |id| borrows.get(id).map(Arc::as_ref));
        while let Some(&(when, id)) = self.forget_at.first() {
            if when > now {
                break;
            }
            self.forget_at.pop_first();
            self.forget(id);
        }
        while let Some((when, _)) = self.forget_requests.first() {
            if *when > now {
                break;
            }
            if let Some((when, request_id)) = self.forget_requests.pop_first() {
                self.requests.remove(request_id.as_str());
                self.refusals.remove(&(when, request_id));
            }
        }
        self.api_keys.forget_revoked(now);
        now
    }

    fn forget(&mut self, id: Uuid) {
        let Some(record) = self.borrows.remove(&id) else {
            return;
        };
        self.by_issue.remove(&(record.issued_at, id));
        self.outstanding.remove(&record, record.valid_until);
        if let Some(slot) = self.slots.get_mut(&record.key) {
            slot.index.remove(record.valid_from, record.valid_until);
            slot.by_start.remove(&(record.valid_from, id));
        }
    }

    /// A fresh borrow decision, recorded in the audit trail whichever way it goes.
    fn borrow(
        &mut self,
        now: UnixSeconds,
        borrow_id: Uuid,
        request: &BorrowRequest,
        caller: Caller,
    ) -> Result<BorrowRecord, BorrowError> {
        let decision = self.decide_borrow(now, borrow_id, request);
        let event = match &decision {
            Ok(record) => {
                self.hosts.record_borrow(&record.host_id, now);
                AuditEvent::Borrow {
                    borrow_id,
                    key: record.key.clone(),
                    host_id: record.host_id.clone(),
                    valid_from: record.valid_from,
                    valid_until: record.valid_until,
                }
            }
            Err(refusal) => AuditEvent::Refusal {
                key: request.key.clone(),
                host_id: request.host_id.clone(),
                code: refusal.code(),
                reason: refusal.to_string(),
            }
            .bounded(),
        };
        self.audit.record(now, caller.node, caller.actor, event);
        decision
    }

    fn decide_borrow(
        &mut self,
        now: UnixSeconds,
        borrow_id: Uuid,
        request: &BorrowRequest,
    ) -> Result<BorrowRecord, BorrowError> {
        // The host id was checked when the request was decoded; whether it may borrow
        // is the ledger's to say (the Borrow API's code 36 covers both).
        if let Some(reason) = self.blocked_reason(&request.host_id) {
            return Err(BorrowError::InvalidHostId(reason));
        }
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
        let key = &request.key;
        let per_license = (license.count as usize).saturating_mul(MAX_OUTSTANDING_PER_SEAT);
        if self.outstanding.of_license(key) >= per_license {
            return Err(BorrowError::OverLimit(format!(
                "{}/{} already has {per_license} current and upcoming borrows, the most the server keeps for a license of {} seat(s) ({MAX_OUTSTANDING_PER_SEAT} per seat)",
                key.feature, key.uuid, license.count
            )));
        }
        if let Some(limit) = license.max_per_host {
            if self.outstanding.of_host(key, &request.host_id) >= limit as usize {
                return Err(BorrowError::OverLimit(format!(
                    "host {} already holds {limit} current or upcoming borrow(s) of {}/{}, the most its maxPerHost allows",
                    request.host_id, key.feature, key.uuid
                )));
            }
        }
        if self.outstanding.of_host(key, &request.host_id) >= MAX_OUTSTANDING_PER_HOST {
            return Err(BorrowError::OverLimit(format!(
                "host {} already holds {MAX_OUTSTANDING_PER_HOST} current and upcoming borrows of {}/{}, the most one host may hold",
                request.host_id, key.feature, key.uuid
            )));
        }
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
            returned_at: None,
        };
        slot.index.insert(granted.from, granted.until);
        slot.by_start.insert((granted.from, borrow_id));
        self.by_issue.insert((now, borrow_id));
        self.forget_at
            .insert((granted.until.saturating_add(self.retention_secs), borrow_id));
        self.outstanding.add(&record, now);
        self.borrows.insert(borrow_id, Arc::new(record.clone()));
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
    pub fn clock(&self) -> UnixSeconds {
        self.clock
    }

    /// A retained borrow by id.
    pub fn borrow_record(&self, id: &Uuid) -> Option<&BorrowRecord> {
        self.borrows.get(id).map(Arc::as_ref)
    }

    /// Number of retained borrows.
    pub fn borrow_count(&self) -> usize {
        self.borrows.len()
    }

    /// The pool's license `key`, if it has one.
    pub fn license(&self, key: &LicenseKey) -> Option<&License> {
        self.slots.get(key).and_then(|slot| slot.license.as_ref())
    }

    /// The client API keys.
    pub fn api_keys(&self) -> &ApiKeys {
        &self.api_keys
    }

    /// The audit trail.
    pub fn audit(&self) -> &AuditTrail {
        &self.audit
    }

    /// The pool last applied from a node's `--pool` file.
    pub fn declared_pool(&self) -> Option<&Pool> {
        self.declared_pool.as_ref()
    }

    /// Whether a borrow with `request_id` is remembered (a repeat answers its outcome).
    pub fn remembers_request(&self, request_id: &str) -> bool {
        self.requests.contains_key(request_id)
    }

    /// Every license, ordered by feature then uuid, with its borrows that end after `now`.
    pub fn licenses(&self, now: UnixSeconds) -> Vec<LicenseView<'_>> {
        self.slots
            .values()
            .filter_map(|slot| {
                let license = slot.license.as_ref()?;
                let borrows = slot
                    .by_start
                    .iter()
                    .filter_map(|(_, id)| self.borrows.get(id).map(Arc::as_ref))
                    // A returned upcoming borrow is empty: it no longer holds a seat.
                    .filter(|record| {
                        record.valid_until > now && record.valid_until > record.valid_from
                    })
                    .collect();
                Some(LicenseView { license, borrows })
            })
            .collect()
    }

    /// The ledger in its serialised form.
    pub fn to_snapshot(&self) -> LedgerSnapshot {
        self.freeze().into_snapshot()
    }

    /// What a snapshot needs, without copying a record: the records are shared, and a
    /// later change to one copies it first (copy on write). Cheap enough to take under
    /// the ledger lock, which applies wait for; [`FrozenLedger::view`] then sorts and
    /// serialises after the lock is released.
    pub fn freeze(&self) -> FrozenLedger {
        FrozenLedger {
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
            borrows: self
                .borrows
                .iter()
                .map(|(id, record)| (*id, record.clone()))
                .collect(),
            requests: self
                .requests
                .iter()
                .map(|(id, record)| (id.clone(), record.clone()))
                .collect(),
            api_keys: self.api_keys.shared(),
            hosts: self.hosts.shared(),
            audit_next_seq: self.audit.next_seq(),
            audit_retention: self.audit.retention(),
            audit: self.audit.shared(),
            declared_pool: self.declared_pool.clone(),
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
            api_keys: ApiKeys::from_records(snapshot.api_keys, snapshot.retention_secs),
            hosts: HostRegistry::from_records(snapshot.hosts),
            audit: AuditTrail::from_parts(
                snapshot.audit_next_seq,
                snapshot.audit_retention,
                snapshot.audit,
            ),
            declared_pool: snapshot.declared_pool,
            ..Ledger::default()
        };
        for license in snapshot.licenses {
            let slot = ledger.slots.entry(license.key.clone()).or_default();
            slot.license = Some(license);
        }
        for (request_id, record) in snapshot.requests {
            ledger
                .forget_requests
                .insert((record.forget_at, request_id.clone()));
            if record.answer.is_err() {
                ledger
                    .refusals
                    .insert((record.forget_at, request_id.clone()));
            }
            ledger
                .requests
                .insert(Arc::from(request_id), Arc::new(record));
        }
        for record in snapshot.borrows {
            let slot = ledger.slots.entry(record.key.clone()).or_default();
            slot.index.insert(record.valid_from, record.valid_until);
            slot.by_start.insert((record.valid_from, record.borrow_id));
            ledger.forget_at.insert((
                record.valid_until.saturating_add(ledger.retention_secs),
                record.borrow_id,
            ));
            ledger.outstanding.add(&record, ledger.clock);
            ledger.by_issue.insert((record.issued_at, record.borrow_id));
            ledger.borrows.insert(record.borrow_id, Arc::new(record));
        }
        ledger
    }
}

/// A ledger's state at one log position, sharing its records with the live ledger (see
/// [`Ledger::freeze`]).
#[derive(Debug, Clone)]
pub struct FrozenLedger {
    bootstrapped: bool,
    max_borrow_secs: i64,
    retention_secs: i64,
    signing_key: Option<[u8; 32]>,
    clock: UnixSeconds,
    licenses: Vec<License>,
    /// With the id beside each record: sorting reads no record.
    borrows: Vec<(Uuid, Arc<BorrowRecord>)>,
    requests: Vec<(Arc<str>, Arc<RequestRecord>)>,
    /// Ordered by id already.
    api_keys: Vec<Arc<ApiKeyRecord>>,
    /// Ordered by id already.
    hosts: Vec<Arc<HostRecord>>,
    audit_next_seq: u64,
    audit_retention: AuditRetention,
    /// Oldest first already.
    audit: Vec<Arc<AuditEntry>>,
    declared_pool: Option<Pool>,
}

/// A [`LedgerSnapshot`] borrowed from a [`FrozenLedger`]: it serialises field for field
/// as the snapshot does, so it encodes to the same bytes without copying a record.
/// Snapshots are built from the whole ledger every few thousand writes, so copying every
/// record's strings there was a large share of a busy leader's CPU.
#[derive(Debug, Serialize)]
pub struct SnapshotView<'a> {
    bootstrapped: bool,
    max_borrow_secs: i64,
    retention_secs: i64,
    signing_key: Option<[u8; 32]>,
    clock: UnixSeconds,
    licenses: &'a [License],
    borrows: Vec<&'a BorrowRecord>,
    requests: Vec<(&'a str, &'a RequestRecord)>,
    api_keys: Vec<&'a ApiKeyRecord>,
    hosts: Vec<&'a HostRecord>,
    audit_next_seq: u64,
    audit_retention: AuditRetention,
    audit: Vec<&'a AuditEntry>,
    declared_pool: &'a Option<Pool>,
}

impl FrozenLedger {
    /// The serialisable form, records sorted so that equal ledgers give equal snapshots.
    pub fn view(&mut self) -> SnapshotView<'_> {
        // Ids are unique, so an unstable sort gives one order.
        self.borrows.sort_unstable_by_key(|(id, _)| *id);
        self.requests.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        SnapshotView {
            bootstrapped: self.bootstrapped,
            max_borrow_secs: self.max_borrow_secs,
            retention_secs: self.retention_secs,
            signing_key: self.signing_key,
            clock: self.clock,
            licenses: &self.licenses,
            borrows: self.borrows.iter().map(|(_, record)| &**record).collect(),
            requests: self
                .requests
                .iter()
                .map(|(id, record)| (&**id, &**record))
                .collect(),
            api_keys: self.api_keys.iter().map(|record| &**record).collect(),
            hosts: self.hosts.iter().map(|record| &**record).collect(),
            audit_next_seq: self.audit_next_seq,
            audit_retention: self.audit_retention,
            audit: self.audit.iter().map(|entry| &**entry).collect(),
            declared_pool: &self.declared_pool,
        }
    }

    /// The serialised form as an owned value (records copied).
    pub fn into_snapshot(mut self) -> LedgerSnapshot {
        let view = self.view();
        LedgerSnapshot {
            bootstrapped: view.bootstrapped,
            max_borrow_secs: view.max_borrow_secs,
            retention_secs: view.retention_secs,
            signing_key: view.signing_key,
            clock: view.clock,
            licenses: view.licenses.to_vec(),
            borrows: view.borrows.into_iter().cloned().collect(),
            requests: view
                .requests
                .into_iter()
                .map(|(id, record)| (id.to_string(), record.clone()))
                .collect(),
            api_keys: view.api_keys.into_iter().cloned().collect(),
            hosts: view.hosts.into_iter().cloned().collect(),
            audit_next_seq: view.audit_next_seq,
            audit_retention: view.audit_retention,
            audit: view.audit.into_iter().cloned().collect(),
            declared_pool: view.declared_pool.clone(),
        }
    }
}

/// A ledger bootstrapped with one license, `count` seats: the fixture of the state tests.
#[cfg(test)]
pub(crate) fn bootstrapped(key: LicenseKey, count: u32) -> Ledger {
    let mut ledger = Ledger::default();
    ledger.apply(&Command::Bootstrap(Box::new(crate::state::Bootstrap {
        licenses: vec![License {
            key,
            version: "26.05".into(),
            edition: "Steady".into(),
            modules: "fc".into(),
            count,
            valid_from: None,
            valid_until: None,
            max_borrow_secs: None,
            max_borrowed: None,
            max_per_host: None,
        }],
        max_borrow_secs: 30 * 86_400,
        retention_secs: DEFAULT_RETENTION_SECS,
        signing_key: [7; 32],
        audit_retention_secs: 90 * 86_400,
        max_audit_entries: 100_000,
        created_at: 0,
    })));
    ledger
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixSeconds = 1_800_000_000;
    const HOUR: i64 = 3_600;

    fn ledger_with_one_seat() -> Ledger {
        bootstrapped(key(), 1)
    }

    fn bincode_bytes(value: &impl Serialize) -> Vec<u8> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encodes")
    }

    fn key() -> LicenseKey {
        LicenseKey {
            feature: "MVTec_HALCON".into(),
            uuid: "one-seat".into(),
        }
    }

    fn request(from: UnixSeconds, until: UnixSeconds) -> BorrowRequest {
        BorrowRequest {
            key: key(),
            host_id: HostId::parse("MAC:2C549188C9E3").expect("host id"),
            valid_from: Some(from),
            valid_until: Some(until),
            user_info: None,
        }
    }

    fn borrow(
        ledger: &mut Ledger,
        now: UnixSeconds,
        req: BorrowRequest,
        id: Option<&str>,
    ) -> Outcome {
        ledger.apply(&Command::Borrow {
            now,
            borrow_id: Uuid::new_v4(),
            request: req,
            request_id: id.map(str::to_string),
        })
    }

    fn granted(outcome: Outcome) -> BorrowRecord {
        match outcome {
            Outcome::Borrow(Ok(record)) => *record,
            other => panic!("expected a granted borrow, got {other:?}"),
        }
    }

    #[test]
    fn a_returned_current_borrow_frees_its_seat_from_now_on() {
        let mut ledger = ledger_with_one_seat();
        let first = granted(borrow(
            &mut ledger,
            NOW,
            request(NOW, NOW + 10 * HOUR),
            None,
        ));
        let refused = borrow(&mut ledger, NOW, request(NOW + HOUR, NOW + 2 * HOUR), None);
        assert!(matches!(
            refused,
            Outcome::Borrow(Err(BorrowError::NotAvailable { .. }))
        ));

        let at = NOW + HOUR;
        let Outcome::Returned(Ok(returned)) = ledger.apply(&Command::Return {
            now: at,
            borrow_id: first.borrow_id,
        }) else {
            panic!("return refused");
        };
        assert_eq!(returned.valid_until, at);
        assert_eq!(returned.returned_at, Some(at));
        granted(borrow(&mut ledger, at, request(at, at + HOUR), None));
        // Before the return instant the seat was taken, and stays taken in the record.
        assert_eq!(ledger.borrow_record(&first.borrow_id), Some(&*returned));
    }

    #[test]
    fn returning_is_idempotent_and_an_upcoming_borrow_becomes_empty() {
        let mut ledger = ledger_with_one_seat();
        let upcoming = granted(borrow(
            &mut ledger,
            NOW,
            request(NOW + 5 * HOUR, NOW + 6 * HOUR),
            None,
        ));
        let give_back = |ledger: &mut Ledger, now| match ledger.apply(&Command::Return {
            now,
            borrow_id: upcoming.borrow_id,
        }) {
            Outcome::Returned(Ok(record)) => *record,
            other => panic!("return refused: {other:?}"),
        };
        let once = give_back(&mut ledger, NOW + HOUR);
        let twice = give_back(&mut ledger, NOW + 2 * HOUR);
        assert_eq!(once, twice);
        assert_eq!(once.valid_until, once.valid_from);
        assert!(ledger.licenses(NOW + 2 * HOUR)[0].borrows.is_empty());
        granted(borrow(
            &mut ledger,
            NOW + 2 * HOUR,
            request(NOW + 5 * HOUR, NOW + 6 * HOUR),
            None,
        ));
    }

    #[test]
    fn returning_an_unknown_borrow_is_refused() {
        let mut ledger = ledger_with_one_seat();
        let outcome = ledger.apply(&Command::Return {
            now: NOW,
            borrow_id: Uuid::new_v4(),
        });
        assert!(matches!(outcome, Outcome::Returned(Err(_))));
    }

    #[test]
    fn a_repeated_request_id_answers_the_first_outcome_and_borrows_once() {
        let mut ledger = ledger_with_one_seat();
        let req = request(NOW, NOW + HOUR);
        let first = granted(borrow(&mut ledger, NOW, req.clone(), Some("r-1")));
        let again = granted(borrow(&mut ledger, NOW + 1, req.clone(), Some("r-1")));
        assert_eq!(first, again);
        assert_eq!(ledger.borrow_count(), 1);

        // A refusal is remembered too: the retry is refused the same way even after the
        // seat came free.
        let refused = borrow(&mut ledger, NOW + 2, req.clone(), Some("r-2"));
        assert!(matches!(
            refused,
            Outcome::Borrow(Err(BorrowError::NotAvailable { .. }))
        ));
        ledger.apply(&Command::Return {
            now: NOW + 3,
            borrow_id: first.borrow_id,
        });
        assert_eq!(
            borrow(&mut ledger, NOW + 4, req.clone(), Some("r-2")),
            refused
        );
    }

    /// `LICENSED_BROKEN=skip-dedup`: the retry borrows a second seat.
    #[cfg(feature = "failpoints")]
    #[test]
    fn under_skip_dedup_a_repeated_request_id_borrows_again() {
        use crate::broken::{in_child_with, Broken};
        let test = "state::ledger::tests::under_skip_dedup_a_repeated_request_id_borrows_again";
        if !in_child_with(Broken::SkipDedup, test) {
            return;
        }
        let mut ledger = bootstrapped(key(), 2);
        let req = request(NOW, NOW + HOUR);
        let first = granted(borrow(&mut ledger, NOW, req.clone(), Some("r-1")));
        let again = granted(borrow(&mut ledger, NOW + 1, req, Some("r-1")));
        assert_ne!(first.borrow_id, again.borrow_id);
        assert_eq!(ledger.borrow_count(), 2);
    }

    /// `LICENSED_BROKEN=capacity-off-by-one`: a one-seat license grants two overlapping
    /// borrows, and refuses the third; the same on every replica, since it is the apply.
    #[cfg(feature = "failpoints")]
    #[test]
    fn under_capacity_off_by_one_a_license_grants_one_borrow_too_many() {
        use crate::broken::{in_child_with, Broken};
        let test =
            "state::ledger::tests::under_capacity_off_by_one_a_license_grants_one_borrow_too_many";
        if !in_child_with(Broken::CapacityOffByOne, test) {
            return;
        }
        let mut ledger = ledger_with_one_seat();
        let req = request(NOW, NOW + HOUR);
        granted(borrow(&mut ledger, NOW, req.clone(), None));
        granted(borrow(&mut ledger, NOW, req.clone(), None));
        assert!(matches!(
            borrow(&mut ledger, NOW, req, None),
            Outcome::Borrow(Err(BorrowError::NotAvailable { count: 1, .. }))
        ));
    }

    #[test]
    fn a_request_id_reused_for_another_request_is_refused() {
        let mut ledger = ledger_with_one_seat();
        granted(borrow(
            &mut ledger,
            NOW,
            request(NOW, NOW + HOUR),
            Some("r"),
        ));
        let other = borrow(&mut ledger, NOW, request(NOW, NOW + 2 * HOUR), Some("r"));
        assert!(matches!(other, Outcome::RequestIdReused(_)));
        let mut elsewhere = request(NOW, NOW + HOUR);
        elsewhere.host_id = HostId::parse("MAC:000000000001").expect("host id");
        let other_host = borrow(&mut ledger, NOW, elsewhere, Some("r"));
        assert!(matches!(other_host, Outcome::RequestIdReused(_)));
        assert_eq!(ledger.borrow_count(), 1);
    }

    #[test]
    fn a_retry_that_restamps_valid_from_answers_the_first_borrow() {
        let mut ledger = ledger_with_one_seat();
        let first = granted(borrow(
            &mut ledger,
            NOW,
            request(NOW, NOW + HOUR),
            Some("r"),
        ));
        // The client stamped "now" again on its retry a few seconds later.
        let retry = granted(borrow(
            &mut ledger,
            NOW + 3,
            request(NOW + 3, NOW + HOUR),
            Some("r"),
        ));
        assert_eq!(retry, first);
        assert_eq!(ledger.borrow_count(), 1);
    }

    #[test]
    fn returns_and_request_ids_survive_a_snapshot() {
        let mut ledger = ledger_with_one_seat();
        let req = request(NOW + HOUR, NOW + 2 * HOUR);
        let record = granted(borrow(&mut ledger, NOW, req.clone(), Some("r")));
        ledger.apply(&Command::Return {
            now: NOW + 1,
            borrow_id: record.borrow_id,
        });
        let mut restored = Ledger::from_snapshot(ledger.to_snapshot());
        assert_eq!(restored.to_snapshot(), ledger.to_snapshot());
        // The seat is free after the restore, and the request id still answers the first
        // (now returned) borrow.
        let again = granted(borrow(&mut restored, NOW + 2, req.clone(), Some("r")));
        assert_eq!(again.borrow_id, record.borrow_id);
        granted(borrow(&mut restored, NOW + 2, req, None));
    }

    #[test]
    fn a_frozen_ledger_keeps_its_moment_while_the_ledger_changes() {
        let mut ledger = ledger_with_one_seat();
        let first = granted(borrow(
            &mut ledger,
            NOW,
            request(NOW, NOW + HOUR),
            Some("r1"),
        ));
        let before = ledger.to_snapshot();
        let frozen = ledger.freeze();
        // After the freeze: a return changes a shared record, a borrow and a request
        // id are added.
        ledger.apply(&Command::Return {
            now: NOW + 1,
            borrow_id: first.borrow_id,
        });
        granted(borrow(
            &mut ledger,
            NOW + 2,
            request(NOW + 2, NOW + HOUR),
            Some("r2"),
        ));
        assert_eq!(frozen.into_snapshot(), before);
        let after = ledger.to_snapshot();
        // The borrowed view encodes to the owned snapshot's bytes.
        let mut frozen = ledger.freeze();
        assert_eq!(bincode_bytes(&frozen.view()), bincode_bytes(&after));
        assert_eq!(after.borrows.len(), 2);
        assert_eq!(after.requests.len(), 2);
        let returned = after
            .borrows
            .iter()
            .find(|record| record.borrow_id == first.borrow_id)
            .expect("the returned borrow is retained");
        assert_eq!(returned.returned_at, Some(NOW + 1));
    }
}
