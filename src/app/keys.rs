//! Managing client API keys: create (the only time a key's text is seen), list, revoke.
//! Changes go through the log like borrows; listings are linearizable reads.

use crate::state::api_key::{KeySecret, SECRET_BYTES};
use crate::state::api_keys::{Access, ApiKeyChange, NewApiKey};
use crate::state::{ApiKeyRecord, ApiKeyText, KeyId, Outcome, Scope};

use super::auth::Principal;
use super::{App, AppError};

/// What managing keys needs.
const MANAGE: Access<'static> = Access::MANAGE_KEYS;

/// A key as its creator gets it: the text (shown once) and the record.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    /// The key to hand to the client. Not kept anywhere.
    pub text: ApiKeyText,
    /// What the ledger now holds.
    pub record: ApiKeyRecord,
}

impl App {
    /// Creates a key with a fresh random id and secret. `features` (sorted, distinct)
    /// limits it; `None` allows every feature.
    pub async fn create_api_key(
        &self,
        principal: &Principal,
        name: String,
        scope: Scope,
        features: Option<Vec<String>>,
    ) -> Result<CreatedKey, AppError> {
        principal.check(MANAGE)?;
        let text = random_key()?;
        let change = ApiKeyChange::Create(NewApiKey {
            id: text.id(),
            name,
            scope,
            features,
            secret_hash: text.secret().hash(),
        });
        let record = self.change_key(principal, change).await?;
        Ok(CreatedKey { text, record })
    }

    /// Revokes a key: from the revocation's log position on, no node accepts it. Revoking
    /// a revoked key changes nothing and answers it as it stands.
    pub async fn revoke_api_key(
        &self,
        principal: &Principal,
        id: KeyId,
    ) -> Result<ApiKeyRecord, AppError> {
        principal.check(MANAGE)?;
        self.change_key(principal, ApiKeyChange::Revoke(id)).await
    }

    /// Every key the ledger holds (revoked ones for the retention period), ordered by
    /// creation time then id. Linearizable.
    pub async fn api_keys(&self, principal: &Principal) -> Result<Vec<ApiKeyRecord>, AppError> {
        principal.check(MANAGE)?;
        let _ = self.linearize().await?;
        let ledger = self.node.ledger.read();
        App::recheck(&ledger, principal, MANAGE)?;
        let mut keys: Vec<ApiKeyRecord> = ledger.api_keys().iter().cloned().collect();
        keys.sort_by_key(|key| (key.created_at, key.id));
        Ok(keys)
    }

    async fn change_key(
        &self,
        principal: &Principal,
        change: ApiKeyChange,
    ) -> Result<ApiKeyRecord, AppError> {
        let proposal = principal.propose_from(
            self.node.id,
            crate::cluster::forward::Proposal::ApiKey(change),
        );
        match self.propose(proposal).await? {
            Outcome::ApiKey(Ok(record)) => Ok(*record),
            Outcome::ApiKey(Err(error)) => Err(AppError::KeyChange(error)),
            Outcome::KeyRefused(refusal) => Err(AppError::Key(refusal)),
            other => Err(AppError::Internal(format!(
                "unexpected outcome of an API key change: {other:?}"
            ))),
        }
    }
}

/// A new key: a random 64-bit id and 32 random secret bytes from the OS.
fn random_key() -> Result<ApiKeyText, AppError> {
    let mut id = [0u8; 8];
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::getrandom(&mut id)
        .and_then(|()| getrandom::getrandom(&mut secret))
        .map_err(|e| AppError::Internal(format!("no randomness for a new API key: {e}")))?;
    Ok(ApiKeyText::new(
        KeyId::from_u64(u64::from_le_bytes(id)),
        KeySecret::from_bytes(secret),
    ))
}
