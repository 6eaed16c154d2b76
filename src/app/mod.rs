//! The narrow interface the JSON-RPC layer uses: borrow, read, status. It hides openraft
//! and the ledger's locking from `rpc/`, and turns Raft failures into [`AppError`]s.
//!
//! - `writes`: proposals, appended here or forwarded to the leader in batches.
//! - `reads`: linearizable reads through batched read-index rounds.
//! - `listing`: the rendered `ListLicensesV1` answer, reused while it holds.
//! - `signing` and `signed_cache`: license strings and return tokens.
//! - `retry`: the one retry loop both writes and reads use.
//! - `auth`: who is calling (admin token, API key, nobody) and what they may do.
//! - `keys`: creating, listing and revoking API keys.
//! - `cluster`: the cluster's status and leadership transfer.

mod administration;
mod auth;
mod cluster;
mod keys;
mod listing;
mod reads;
mod retry;
mod signed_cache;
mod signing;
mod writes;

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use uuid::Uuid;

use crate::borrow::check::{BorrowError, BorrowRequest};
use crate::borrow::document::{LicenseSigner, PublicKey};
use crate::borrow::license::License;
use crate::borrow::return_token::ReturnTokenKey;
use crate::cluster::batcher::Batcher;
use crate::cluster::forward::{ClusterClient, ClusterError, Proposal, ReadPoint};
use crate::raft::node::Node;
use crate::raft::NodeId;
use crate::state::api_keys::Access;
use crate::state::{ApiKeyError, Bootstrap, BorrowRecord, KeyRefusal, Outcome};
use signed_cache::{SignedCache, DEFAULT_CAPACITY};

pub use administration::LicenseCheck;
pub use auth::{Credential, Principal};
pub use keys::CreatedKey;
pub use signing::document_for;

/// A borrowed license as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedLicense {
    /// The signed license string.
    pub license: String,
    /// The borrow's id.
    pub borrow_id: Uuid,
    /// The proof a return needs ([`ReturnTokenKey`]): set only in the answer to the
    /// borrow itself, never when a license is served again.
    pub return_token: Option<String>,
}

/// A license with its current and upcoming borrows.
#[derive(Debug, Clone)]
pub struct LicenseListing {
    /// The license.
    pub license: License,
    /// Borrows whose end is in the future, ordered by start.
    pub borrows: Vec<BorrowRecord>,
}

/// Why the application could not answer.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The borrow was refused by the ledger (codes 32–36).
    #[error(transparent)]
    Borrow(#[from] BorrowError),
    /// No retained borrow has this id (code 34).
    #[error("no borrow with borrowId {0}")]
    BorrowNotFound(Uuid),
    /// A `requestId` came back with a different request (invalid params).
    #[error("{0}")]
    RequestIdReused(String),
    /// A return without the borrower's token or the admin token (code 37).
    #[error("{0}")]
    ReturnRefused(String),
    /// No valid credential where one is needed: no key where keys are required, a
    /// malformed key, key management without admin authority (code 38).
    #[error("{0}")]
    Unauthenticated(String),
    /// The call's API key is not valid (code 38) or may not do this (code 39).
    #[error(transparent)]
    Key(#[from] KeyRefusal),
    /// A key change that cannot be made (no such key, too many keys).
    #[error(transparent)]
    KeyChange(#[from] ApiKeyError),
    /// A license change refused: no such license (34), exists or conflicts with held
    /// borrows (40), or the license it would make is not valid (-32602).
    #[error(transparent)]
    Admin(#[from] crate::state::AdminError),
    /// A parameter the ledger found malformed (a host's name too long).
    #[error("{0}")]
    InvalidInput(String),
    /// The cluster cannot answer safely right now: no leader, no quorum, or too slow.
    /// Retriable.
    #[error("{0}")]
    Unavailable(String),
    /// Something that should not happen.
    #[error("{0}")]
    Internal(String),
}

/// The application: a Raft node plus what it takes to answer clients.
pub struct App {
    node: Node,
    request_timeout: Duration,
    signer: OnceLock<Arc<LicenseSigner>>,
    return_tokens: OnceLock<ReturnTokenKey>,
    signed: SignedCache,
    /// Writes forwarded to the leader in batches (see [`Batcher`]).
    forwards: writes::ForwardBatcher,
    /// The last rendered listing, reused while the ledger and its expiries allow.
    listing: Mutex<Option<listing::RenderedListing>>,
    /// Read-index rounds shared by concurrent reads: each read joins a batch taken
    /// after it arrived, so the index it gets is still from after its arrival.
    read_index: Batcher<(), (), ReadPoint, ClusterError>,
    /// Why the node is not in a cluster yet, while it forms or joins one.
    starting: Mutex<Option<String>>,
    /// `--admin-token`: the leader's admin API asks it of a leadership transfer this
    /// node passes on.
    admin_token: Option<String>,
}

impl App {
    /// Wraps a started node. `request_timeout` bounds every wait on the cluster.
    pub fn new(node: Node, request_timeout: Duration) -> Result<App, AppError> {
        let peers = ClusterClient::new(node.routes.clone(), &node.dialer)
            .map_err(|e| AppError::Internal(e.to_string()))?;
        let forwards = Batcher::new(writes::forward_batches(peers.clone(), request_timeout));
        let read_index = Batcher::new(reads::read_index_round(
            node.clone(),
            peers,
            request_timeout,
        ));
        Ok(App {
            forwards,
            node,
            request_timeout,
            signer: OnceLock::new(),
            return_tokens: OnceLock::new(),
            signed: SignedCache::new(DEFAULT_CAPACITY),
            listing: Mutex::new(None),
            read_index,
            starting: Mutex::new(None),
            admin_token: None,
        })
    }

    /// The same, with this node's `--admin-token` (for changes it passes to the leader).
    pub fn with_admin_token(self, admin_token: Option<String>) -> App {
        App {
            admin_token,
            ..self
        }
    }

    /// Records why the node is not in a cluster yet (`None` once it is), for `/readyz`.
    pub fn set_starting(&self, reason: Option<String>) {
        *self.starting.lock().unwrap_or_else(PoisonError::into_inner) = reason;
    }

    /// Whether this node can answer clients now, and why (`/readyz`): it is in a cluster,
    /// knows a leader, has applied what it committed, and the ledger has a license pool.
    pub fn readiness(&self) -> (bool, String) {
        if let Some(reason) = self
            .starting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return (false, reason);
        }
        let metrics = crate::raft::metrics_of(&self.node.raft);
        let applied = metrics.last_applied.as_ref().map(|id| id.index());
        let committed = metrics.local_committed.as_ref().map(|id| id.index());
        if let Err(reason) = self.node.clock_status() {
            return (false, reason);
        }
        match metrics.current_leader {
            None => (
                false,
                "no known leader: waiting for a quorum of the voters".to_string(),
            ),
            Some(_) if applied < committed => (
                false,
                format!("applied {applied:?} is behind committed {committed:?}"),
            ),
            Some(_) if !self.node.ledger.read().is_bootstrapped() => {
                (false, "the ledger has no license pool yet".to_string())
            }
            Some(leader) => (true, format!("leader {leader}")),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node.id
    }

    /// Brings the node's gauges (leader, term, indexes, ledger size) up to date before
    /// a scrape.
    pub fn observe_metrics(&self) {
        crate::metrics::observe_node(&self.node);
    }

    /// Borrows a license: proposes the borrow to the log and waits for its apply.
    #[tracing::instrument(level = "debug", skip_all, fields(feature = %request.key.feature, uuid = %request.key.uuid, api_key = ?principal.key_id()))]
    /// With a `request_id`, a repeated call answers the first call's outcome. A borrow
    /// made with an API key is checked again when it is applied (revoked keys borrow
    /// nothing, on any node).
    pub async fn borrow(
        &self,
        principal: &Principal,
        request: BorrowRequest,
        request_id: Option<String>,
    ) -> Result<IssuedLicense, AppError> {
        principal.check(Access::BORROW.on(Some(&request.key.feature)))?;
        let proposal = principal.propose_from(
            self.node.id,
            Proposal::Borrow {
                borrow_id: Uuid::new_v4(),
                request,
                request_id,
            },
        );
        match self.propose(proposal).await? {
            Outcome::Borrow(Ok(record)) => {
                let mut issued = self.issue(&record)?;
                issued.return_token = Some(self.return_tokens()?.token_for(record.borrow_id));
                Ok(issued)
            }
            Outcome::Borrow(Err(refusal)) => Err(AppError::Borrow(refusal)),
            Outcome::RequestIdReused(reason) => Err(AppError::RequestIdReused(reason)),
            Outcome::KeyRefused(refusal) => Err(AppError::Key(refusal)),
            other => Err(AppError::Internal(format!(
                "unexpected outcome of a borrow: {other:?}"
            ))),
        }
    }

    /// Gives a borrow back early (`ReturnLicenseV1`); returns the borrow as it now stands.
    /// Only the borrower (its `return_token`) or an administrator (the admin token, an
    /// admin key) may: borrow ids are public. A key limited to features returns only
    /// borrows of those, checked when the return is applied. A refused return costs no
    /// log entry, unless only its apply can tell (a key revoked meanwhile, a feature).
    pub async fn give_back(
        &self,
        principal: &Principal,
        borrow_id: Uuid,
        return_token: Option<&str>,
    ) -> Result<BorrowRecord, AppError> {
        principal.check(Access::RETURN)?;
        if !principal.is_admin() {
            let Some(token) = return_token else {
                return Err(AppError::ReturnRefused(format!(
                    "returning borrow {borrow_id} needs its returnToken (handed out in the borrow's answer) or admin authority (the admin token or an admin API key)"
                )));
            };
            if !self.return_tokens()?.verify(borrow_id, token) {
                return Err(AppError::ReturnRefused(format!(
                    "the returnToken does not belong to borrow {borrow_id}"
                )));
            }
        }
        match self
            .propose(principal.propose_from(self.node.id, Proposal::Return { borrow_id }))
            .await?
        {
            Outcome::Returned(Ok(record)) => Ok(*record),
            Outcome::Returned(Err(_)) => Err(AppError::BorrowNotFound(borrow_id)),
            Outcome::KeyRefused(refusal) => Err(AppError::Key(refusal)),
            other => Err(AppError::Internal(format!(
                "unexpected outcome of a return: {other:?}"
            ))),
        }
    }

    /// Loads a pool into a cluster that has no ledger yet. Returns whether it did.
    pub async fn bootstrap(&self, bootstrap: Bootstrap) -> Result<bool, AppError> {
        match self
            .propose(Proposal::Bootstrap(Box::new(bootstrap)))
            .await?
        {
            Outcome::Bootstrapped(done) => Ok(done),
            other => Err(AppError::Internal(format!(
                "unexpected outcome of a bootstrap: {other:?}"
            ))),
        }
    }

    /// A retained borrow's license, exactly as it was issued. A key limited to features
    /// gets borrows of those only (39 for another feature's).
    pub async fn borrowed_license(
        &self,
        principal: &Principal,
        borrow_id: Uuid,
    ) -> Result<IssuedLicense, AppError> {
        let reading = Access::READ_BORROWS;
        principal.check(reading)?;
        let _ = self.linearize().await?;
        let record = {
            let ledger = self.node.ledger.read();
            App::recheck(&ledger, principal, reading)?;
            let record = ledger
                .borrow_record(&borrow_id)
                .cloned()
                .ok_or(AppError::BorrowNotFound(borrow_id))?;
            principal.check(reading.on(Some(&record.key.feature)))?;
            record
        };
        self.issue(&record)
    }

    /// The public half of the signing key.
    pub fn public_key(&self) -> Result<PublicKey, AppError> {
        Ok(self.signer()?.public_key())
    }
}
