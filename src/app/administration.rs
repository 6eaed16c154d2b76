//! License and host administration, the audit trail, borrow search and license checks:
//! the extensions beyond the Borrow API (README, *License administration*). Changes are
//! log entries decided at apply (`state::ledger::licensing`, `host_admin`); reads are
//! linearizable like every other read.

use std::sync::Arc;

use crate::borrow::document::{self, LicenseDocument};
use crate::borrow::host_id::HostId;
use crate::borrow::license::{License, LicenseKey};
use crate::borrow::pool::Pool;
use crate::borrow::time::{self, UnixSeconds};
use crate::cluster::forward::Proposal;
use crate::state::api_keys::Access;
use crate::state::audit::{AuditEntry, AuditFilter};
use crate::state::hosts::HostRecord;
use crate::state::pool_plan::PoolPlan;
use crate::state::{
    BorrowFilter, BorrowRecord, BorrowStatus, BorrowsPage, HostChange, HostChanged, LicenseChange,
    LicenseChanged, LicenseUpdate, Outcome,
};

use super::{App, AppError, Principal};

/// What `CheckLicenseV1` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseCheck {
    /// The signature verified with the cluster's key.
    pub signature_valid: bool,
    /// The borrow's status now; `None`: unknown to the ledger (never made, or forgotten).
    pub status: Option<BorrowStatus>,
    /// Why it is not usable, or what it is, for a person.
    pub reason: String,
    /// The borrow as the ledger holds it.
    pub borrow: Option<BorrowRecord>,
    /// What the license string says, when it decodes.
    pub document: Option<LicenseDocument>,
}

impl App {
    /// Adds a license; `force` even when borrows kept from a forced removal of it do not
    /// fit in it.
    pub async fn add_license(
        &self,
        principal: &Principal,
        license: License,
        force: bool,
    ) -> Result<LicenseChanged, AppError> {
        self.change_license(principal, LicenseChange::Add { license, force })
            .await
    }

    /// Sets fields of a license; `force` makes the change even when held borrows end up
    /// outside it.
    pub async fn update_license(
        &self,
        principal: &Principal,
        key: LicenseKey,
        update: LicenseUpdate,
        force: bool,
    ) -> Result<LicenseChanged, AppError> {
        self.change_license(principal, LicenseChange::Update { key, update, force })
            .await
    }

    /// Removes a license; `force` even while borrows hold its seats.
    pub async fn remove_license(
        &self,
        principal: &Principal,
        key: LicenseKey,
        force: bool,
    ) -> Result<LicenseChanged, AppError> {
        self.change_license(principal, LicenseChange::Remove { key, force })
            .await
    }

    async fn change_license(
        &self,
        principal: &Principal,
        change: LicenseChange,
    ) -> Result<LicenseChanged, AppError> {
        principal.check(Access::ADMINISTER)?;
        let proposal = principal.propose_from(self.node.id, Proposal::Licenses(change));
        match self.propose(proposal).await? {
            Outcome::License(Ok(changed)) => Ok(*changed),
            Outcome::License(Err(refusal)) => Err(AppError::Admin(refusal)),
            Outcome::KeyRefused(refusal) => Err(AppError::Key(refusal)),
            other => Err(unexpected("a license change", &other)),
        }
    }

    /// What applying `pool` would do now (a linearizable read; nothing changes).
    pub async fn plan_pool(
        &self,
        principal: &Principal,
        pool: &Pool,
    ) -> Result<PoolPlan, AppError> {
        principal.check(Access::ADMINISTER)?;
        let read = self.linearize().await?;
        let ledger = self.node.ledger.read();
        App::recheck(&ledger, principal, Access::ADMINISTER)?;
        Ok(ledger.plan_pool(pool, read.now.max(ledger.clock())))
    }

    /// Applies `pool` as one change; refused with the conflicts unless `force`.
    pub async fn apply_pool(
        &self,
        principal: &Principal,
        pool: Pool,
        force: bool,
    ) -> Result<PoolPlan, AppError> {
        principal.check(Access::ADMINISTER)?;
        let change = LicenseChange::ApplyPool {
            pool: Box::new(pool),
            force,
            declared: false,
        };
        let proposal = principal.propose_from(self.node.id, Proposal::Licenses(change));
        self.pool_outcome(proposal).await
    }

    /// Applies the pool of this node's `--pool` file (never forced; nothing when it is the
    /// pool last applied from a file).
    pub async fn declare_pool(&self, pool: Pool) -> Result<PoolPlan, AppError> {
        let change = LicenseChange::ApplyPool {
            pool: Box::new(pool),
            force: false,
            declared: true,
        };
        self.pool_outcome(Proposal::Origin {
            node: self.node.id,
            admin: false,
            proposal: Box::new(Proposal::Licenses(change)),
        })
        .await
    }

    /// Whether `pool` is the pool last applied from a node's file (a linearizable read): a
    /// node whose file holds it has nothing to propose.
    pub async fn is_declared_pool(&self, pool: &Pool) -> Result<bool, AppError> {
        let _ = self.linearize().await?;
        Ok(self.node.ledger.read().declared_pool() == Some(pool))
    }

    async fn pool_outcome(&self, proposal: Proposal) -> Result<PoolPlan, AppError> {
        match self.propose(proposal).await? {
            Outcome::Pool(Ok(plan)) => Ok(*plan),
            Outcome::Pool(Err(refusal)) => Err(AppError::Admin(refusal)),
            Outcome::KeyRefused(refusal) => Err(AppError::Key(refusal)),
            other => Err(unexpected("a pool change", &other)),
        }
    }

    /// Names, annotates, blocks or unblocks a host.
    pub async fn change_host(
        &self,
        principal: &Principal,
        host_id: HostId,
        change: HostChange,
    ) -> Result<HostChanged, AppError> {
        principal.check(Access::ADMINISTER)?;
        let proposal = principal.propose_from(self.node.id, Proposal::Host { host_id, change });
        match self.propose(proposal).await? {
            Outcome::Host(Ok(changed)) => Ok(*changed),
            Outcome::Host(Err(refusal)) => Err(AppError::InvalidInput(refusal.to_string())),
            Outcome::KeyRefused(refusal) => Err(AppError::Key(refusal)),
            other => Err(unexpected("a host change", &other)),
        }
    }

    /// A page of hosts, ordered by id, after `after`.
    pub async fn hosts_page(
        &self,
        principal: &Principal,
        blocked: Option<bool>,
        after: Option<HostId>,
        limit: usize,
    ) -> Result<(Vec<Arc<HostRecord>>, Option<HostId>), AppError> {
        principal.check(Access::READ_HOSTS)?;
        let _ = self.linearize().await?;
        let ledger = self.node.ledger.read();
        App::recheck(&ledger, principal, Access::READ_HOSTS)?;
        Ok(ledger.hosts().page(blocked, after.as_ref(), limit))
    }

    /// One host as the registry holds it (a linearizable read).
    pub async fn host(
        &self,
        principal: &Principal,
        host_id: &HostId,
    ) -> Result<Option<HostRecord>, AppError> {
        principal.check(Access::READ_HOSTS)?;
        let _ = self.linearize().await?;
        let ledger = self.node.ledger.read();
        App::recheck(&ledger, principal, Access::READ_HOSTS)?;
        Ok(ledger.hosts().get(host_id).cloned())
    }

    /// A page of the audit trail, oldest first, after sequence number `after`.
    pub async fn audit_page(
        &self,
        principal: &Principal,
        filter: &AuditFilter,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Arc<AuditEntry>>, Option<u64>), AppError> {
        principal.check(Access::READ_AUDIT)?;
        let _ = self.linearize().await?;
        let ledger = self.node.ledger.read();
        App::recheck(&ledger, principal, Access::READ_AUDIT)?;
        Ok(ledger.audit().page(filter, after, limit))
    }

    /// A page of borrows matching `filter`, in the order they were made, after `after`;
    /// with the instant statuses were judged at.
    pub async fn borrows_page(
        &self,
        principal: &Principal,
        mut filter: BorrowFilter,
        after: Option<(UnixSeconds, uuid::Uuid)>,
        limit: usize,
    ) -> Result<(BorrowsPage, UnixSeconds), AppError> {
        let reading = Access::READ_BORROWS;
        principal.check(reading)?;
        if let Principal::Key(record) = principal {
            filter.visible_features = record.features.clone();
        }
        let read = self.linearize().await?;
        let ledger = self.node.ledger.read();
        App::recheck(&ledger, principal, reading)?;
        let now = read.now.max(ledger.clock());
        Ok((ledger.borrows_page(&filter, after, limit, now), now))
    }

    /// Verifies a license string with the cluster's key and reports its borrow's live
    /// status. A bad license is an answer, not an error.
    pub async fn check_license(
        &self,
        principal: &Principal,
        license: &str,
    ) -> Result<LicenseCheck, AppError> {
        let reading = Access::READ_BORROWS;
        principal.check(reading)?;
        let key = self.public_key()?;
        let verified = document::verify(license, &key);
        let document = match &verified {
            Ok(doc) => Some(doc.clone()),
            Err(_) => document::decode(license).ok().map(|(doc, _, _)| doc),
        };
        let read = self.linearize().await?;
        let ledger = self.node.ledger.read();
        App::recheck(&ledger, principal, reading)?;
        let now = read.now.max(ledger.clock());
        let borrow = document
            .as_ref()
            .and_then(|doc| doc.borrow_id.parse::<uuid::Uuid>().ok())
            .and_then(|id| ledger.borrow_record(&id).cloned())
            .filter(|record| principal.sees_feature(&record.key.feature));
        let status = borrow.as_ref().map(|record| BorrowStatus::of(record, now));
        let reason = match (&verified, status) {
            (Err(error), _) => error.to_string(),
            (Ok(_), None) => {
                "the signature is valid, but the server holds no such borrow (never made here, or forgotten after its retention)".to_string()
            }
            (Ok(_), Some(status)) => match status {
                BorrowStatus::Active => format!("active until {}", time::format_instant(borrow.as_ref().map_or(now, |b| b.valid_until))),
                BorrowStatus::Upcoming => format!("starts at {}", time::format_instant(borrow.as_ref().map_or(now, |b| b.valid_from))),
                BorrowStatus::Returned => "returned early: the license no longer holds a seat".to_string(),
                BorrowStatus::Expired => "expired".to_string(),
            },
        };
        Ok(LicenseCheck {
            signature_valid: verified.is_ok(),
            status,
            reason,
            borrow,
            document,
        })
    }
}

fn unexpected(what: &str, outcome: &Outcome) -> AppError {
    AppError::Internal(format!("unexpected outcome of {what}: {outcome:?}"))
}
