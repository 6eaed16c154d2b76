//! Who is calling, and whether they may: the admin token, a client API key, or no
//! credential at all (an open deployment, and MVTec's own clients).
//!
//! A key is checked on the node the client reached against that node's applied ledger:
//! its secret, revocation and scope. A key this node does not know yet may have been
//! created through another node a moment ago, so an unknown key is looked up once more
//! after a linearizable read before it is refused. Reads check the key again at their
//! read point ([`App::recheck`]), writes carry the key's id into the log, where apply
//! checks it at the entry's position (`Command::AsKey`).

use std::sync::Arc;

use crate::cluster::forward::Proposal;
use crate::state::api_key::KeyTextError;
use crate::state::api_keys::Access;
use crate::state::{ApiKeyRecord, ApiKeyText, KeyId, KeyRefusal, Ledger, Scope};

use super::{App, AppError};

/// What a request's `Authorization: Bearer` header carried, as the transport read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// No bearer token.
    None,
    /// A bearer token that is neither the admin token nor shaped like an API key. Where
    /// keys are not required it counts as no credential: a wrong admin token keeps
    /// answering what it always did (a return without its token is `37`).
    Unrecognized,
    /// The admin token.
    AdminToken,
    /// An API key (`lk_…`), not yet checked. Its `Debug` shows the key id only.
    ApiKey(ApiKeyText),
    /// Starts like an API key but is not one.
    MalformedKey(KeyTextError),
}

/// A caller whose credential was checked: what a call is decided on.
#[derive(Debug, Clone)]
pub enum Principal {
    /// No credential, where keys are not required: what every client could do before
    /// keys existed — read and borrow, return with the borrow's token.
    Anonymous,
    /// The admin token: everything.
    Admin,
    /// A valid API key, as the ledger held it when the call arrived.
    Key(Arc<ApiKeyRecord>),
}

impl Principal {
    /// Whether the caller may do `access`, as far as the call's own node can tell.
    pub fn check(&self, access: Access<'_>) -> Result<(), AppError> {
        match self {
            Principal::Admin => Ok(()),
            Principal::Anonymous if Scope::Borrow.allows(access.scope) => Ok(()),
            Principal::Anonymous => Err(AppError::Unauthenticated(format!(
                "{} needs the admin token or an API key of scope {} (Authorization: Bearer …)",
                access.what, access.scope
            ))),
            Principal::Key(record) => record.permits(access).map_err(AppError::Key),
        }
    }

    /// Whether the caller has administrator authority (returns any borrow without its
    /// token): the admin token or an admin key.
    pub fn is_admin(&self) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Anonymous => false,
            Principal::Key(record) => record.scope == Scope::Admin,
        }
    }

    /// The key the caller uses, if any.
    pub fn key_id(&self) -> Option<KeyId> {
        match self {
            Principal::Key(record) => Some(record.id),
            _ => None,
        }
    }

    /// Whether the caller sees licenses of `feature` (a feature-limited key sees its own
    /// features only).
    pub fn sees_feature(&self, feature: &str) -> bool {
        match self {
            Principal::Key(record) => record.allows_feature(feature),
            _ => true,
        }
    }

    /// Whether the caller sees every feature.
    pub fn sees_all_features(&self) -> bool {
        match self {
            Principal::Key(record) => record.features.is_none(),
            _ => true,
        }
    }

    /// `proposal` as this caller makes it through node `node`: the node and whether the
    /// admin token was used go into the log for the audit trail, and so does a key's id.
    pub(super) fn propose_from(&self, node: u64, proposal: Proposal) -> Proposal {
        Proposal::Origin {
            node,
            admin: matches!(self, Principal::Admin),
            proposal: Box::new(self.propose(proposal)),
        }
    }

    /// `proposal` as this caller makes it: a key's id goes with it into the log.
    pub(super) fn propose(&self, proposal: Proposal) -> Proposal {
        match self.key_id() {
            Some(key_id) => Proposal::AsKey {
                key_id,
                proposal: Box::new(proposal),
            },
            None => proposal,
        }
    }
}

impl App {
    /// The caller behind `credential`. `keys_required` (`--require-api-keys`) refuses
    /// calls without a valid key or the admin token; without it, no credential is
    /// [`Principal::Anonymous`]. A key that is presented must be valid either way.
    pub async fn principal(
        &self,
        credential: &Credential,
        keys_required: bool,
    ) -> Result<Principal, AppError> {
        match credential {
            Credential::AdminToken => Ok(Principal::Admin),
            Credential::ApiKey(key) => self.authenticate(key).await.map(Principal::Key),
            Credential::MalformedKey(error) => Err(AppError::Unauthenticated(format!(
                "the bearer token is not a well-formed API key: {error}"
            ))),
            Credential::None | Credential::Unrecognized if !keys_required => {
                Ok(Principal::Anonymous)
            }
            Credential::None => Err(AppError::Unauthenticated(
                "this server requires an API key: send Authorization: Bearer lk_…".to_string(),
            )),
            Credential::Unrecognized => Err(AppError::Unauthenticated(
                "this server requires an API key, and the bearer token is neither an API key (lk_…) nor the admin token".to_string(),
            )),
        }
    }

    /// A presented key, checked against this node's ledger; when this node does not know
    /// it, again after a linearizable read (it may have just been created elsewhere).
    async fn authenticate(&self, key: &ApiKeyText) -> Result<Arc<ApiKeyRecord>, AppError> {
        if let Some(known) = self.authenticate_here(key) {
            return known;
        }
        let _ = self.linearize().await?;
        self.authenticate_here(key)
            .unwrap_or(Err(AppError::Key(KeyRefusal::Invalid(key.id()))))
    }

    /// The check against this node's ledger; `None` when the key's id is unknown here.
    fn authenticate_here(&self, key: &ApiKeyText) -> Option<Result<Arc<ApiKeyRecord>, AppError>> {
        let ledger = self.node.ledger.read();
        let keys = ledger.api_keys();
        keys.get(key.id())?;
        Some(
            keys.authenticate(key)
                .map(|record| Arc::new(record.clone()))
                .map_err(AppError::Key),
        )
    }

    /// A read's second check, at its read point: the caller's key still exists, is not
    /// revoked, and may do `access`. A read that starts after a revocation committed
    /// refuses the key on every node.
    pub(super) fn recheck(
        ledger: &Ledger,
        principal: &Principal,
        access: Access<'_>,
    ) -> Result<(), AppError> {
        match principal.key_id() {
            Some(id) => ledger
                .api_keys()
                .authorize(id, access)
                .map(|_| ())
                .map_err(AppError::Key),
            None => principal.check(access),
        }
    }
}
