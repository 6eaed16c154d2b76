//! What goes into the Raft log, and what applying it answers.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::borrow::check::{BorrowError, BorrowRequest};
use crate::borrow::host_id::HostId;
use crate::borrow::license::License;
use crate::borrow::time::UnixSeconds;

use super::api_key::KeyId;
use super::api_keys::{ApiKeyChange, ApiKeyError, ApiKeyRecord, KeyRefusal};
use super::hosts::HostError;
use super::ledger::host_admin::{HostChange, HostChanged};
use super::ledger::licensing::{AdminError, LicenseChange, LicenseChanged};
use super::ledger::BorrowRecord;
use super::pool_plan::PoolPlan;

/// A log payload. Everything apply needs is in here — the time as the leader saw it and the
/// new borrow's id — so that every replica computes the same outcome from the same entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Sets up a new cluster's ledger once: the license pool, its limits and the key that
    /// signs borrowed licenses. Ignored when the ledger is already set up.
    Bootstrap(Box<Bootstrap>),
    /// Borrow a license.
    Borrow {
        /// Leader-stamped wall clock; apply never lets the ledger's clock go backwards.
        now: UnixSeconds,
        /// Chosen by the proposer so the id is known before the entry commits.
        borrow_id: Uuid,
        /// The decoded request.
        request: BorrowRequest,
        /// The client's idempotency key (`requestId`): a second borrow with the same key
        /// answers the first one's outcome instead of borrowing again.
        request_id: Option<String>,
    },
    /// Give a borrow back early: its interval ends at `now` (idempotent).
    Return {
        /// Leader-stamped wall clock.
        now: UnixSeconds,
        /// The borrow.
        borrow_id: Uuid,
    },
    // New variants go last: entries already in logs keep decoding as what they were.
    /// Create or revoke a client API key.
    ApiKey {
        /// Leader-stamped wall clock: the key's creation or revocation time.
        now: UnixSeconds,
        /// What to do.
        change: ApiKeyChange,
    },
    /// `command` made with the client API key `key_id`: applied only when that key, as
    /// the ledger holds it at this log position, exists, is not revoked and may do it
    /// (scope, features). Otherwise nothing changes and the outcome is
    /// [`Outcome::KeyRefused`] — on every replica alike.
    AsKey {
        /// The key the client called with (its id; the secret never enters the log).
        key_id: KeyId,
        /// A borrow, a return or a key change.
        command: Box<Command>,
    },
    /// `command` as node `node` took it from a caller, for the audit trail: which node, and
    /// whether the caller used the admin token (`admin`). Applies as `command` does.
    Origin {
        /// The node the caller reached.
        node: u64,
        /// The caller used the admin token.
        admin: bool,
        /// What the caller asked.
        command: Box<Command>,
    },
    /// Add, change or remove licenses, or apply a whole pool.
    Licenses {
        /// Leader-stamped wall clock: the instant the change's conflicts are judged at.
        now: UnixSeconds,
        /// What to do.
        change: LicenseChange,
    },
    /// Name, annotate, block or unblock a host.
    Host {
        /// Leader-stamped wall clock.
        now: UnixSeconds,
        /// The host.
        host_id: HostId,
        /// What to do.
        change: HostChange,
    },
}

impl Command {
    /// The command itself, without the API key it was made with.
    pub fn unkeyed(&self) -> &Command {
        match self {
            Command::AsKey { command, .. } | Command::Origin { command, .. } => command.unkeyed(),
            other => other,
        }
    }
}

/// The contents of [`Command::Bootstrap`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bootstrap {
    /// The license pool.
    pub licenses: Vec<License>,
    /// Pool-wide maximum borrow length.
    pub max_borrow_secs: i64,
    /// How long expired or returned borrows stay retrievable.
    pub retention_secs: i64,
    /// Ed25519 secret key that signs borrowed licenses, shared by every node through the log.
    pub signing_key: [u8; 32],
    /// How long audit entries are kept.
    pub audit_retention_secs: i64,
    /// Most audit entries kept.
    pub max_audit_entries: u64,
    /// When the cluster was created (the creating node's clock): the time of its first
    /// audit entry.
    pub created_at: UnixSeconds,
}

/// The answer of applying one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Outcome {
    /// Blank and membership entries answer nothing.
    #[default]
    Nothing,
    /// `Bootstrap` applied (`true`) or ignored because the ledger was already set up.
    Bootstrapped(bool),
    /// The borrow decision (or, for a repeated `requestId`, the first one's).
    Borrow(Result<Box<BorrowRecord>, BorrowError>),
    /// A `requestId` was used before for a different request; nothing was borrowed.
    RequestIdReused(String),
    /// The returned borrow as it now stands, or 34 when no such borrow is retained.
    Returned(Result<Box<BorrowRecord>, BorrowError>),
    /// The key created or revoked, as it now stands, or why nothing changed.
    ApiKey(Result<Box<ApiKeyRecord>, ApiKeyError>),
    /// The API key of an [`Command::AsKey`] may not do its command at that log position
    /// (unknown, revoked, scope, feature); nothing changed.
    KeyRefused(KeyRefusal),
    /// A license added, changed or removed (with the borrows it left over-booked), or why
    /// nothing changed.
    License(Result<Box<LicenseChanged>, AdminError>),
    /// A pool applied: what changed. For a declared pool equal to the last one declared,
    /// an empty plan (nothing was looked at).
    Pool(Result<Box<PoolPlan>, AdminError>),
    /// A host as it now stands (with its held borrows when blocked), or why nothing changed.
    Host(Result<Box<HostChanged>, HostError>),
}

/// One line for Raft's logs: what the entry does, without secrets or client text.
impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Bootstrap(bootstrap) => {
                write!(f, "bootstrap({} licenses)", bootstrap.licenses.len())
            }
            Command::Return { now, borrow_id } => write!(f, "return({borrow_id} at {now})"),
            // The key's id and scope only: its name is client text.
            Command::ApiKey {
                now,
                change: ApiKeyChange::Create(new),
            } => write!(f, "create-api-key({} scope {} at {now})", new.id, new.scope),
            Command::ApiKey {
                now,
                change: ApiKeyChange::Revoke(id),
            } => write!(f, "revoke-api-key({id} at {now})"),
            Command::AsKey { key_id, command } => write!(f, "{command} with api key {key_id}"),
            Command::Origin {
                node,
                admin,
                command,
            } => {
                let by = if *admin { " by admin" } else { "" };
                write!(f, "{command} via node {node}{by}")
            }
            Command::Licenses { now, change } => write!(f, "licenses({change} at {now})"),
            Command::Host {
                now,
                host_id,
                change,
            } => write!(f, "host({host_id} {change} at {now})"),
            Command::Borrow {
                now,
                borrow_id,
                request,
                ..
            } => write!(
                f,
                "borrow({}/{} {} at {now} id {borrow_id})",
                request.key.feature, request.key.uuid, request.host_id
            ),
        }
    }
}
