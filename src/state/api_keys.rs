//! The ledger's client API keys: one record per key (its secret's hash, never the secret),
//! created and revoked through the log, and the checks a call made with a key passes.
//!
//! A call is checked twice: on the node the client reached, against that node's applied
//! ledger (the secret, the scope), and — for a write — again when its log entry is
//! applied, against the keys as they stand at that log position ([`ApiKeys::authorize`]).
//! Apply is deterministic, so every replica refuses a write whose key was revoked by an
//! earlier entry: once a revocation has committed, no node can get a write with that key
//! accepted, whatever it had applied when the request arrived.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::borrow::time::{format_instant, UnixSeconds};

use super::api_key::{ApiKeyText, KeyId, Scope, SecretHash};

/// Most keys the ledger holds, revoked ones included until they are forgotten: keys are
/// created by administrators only, but every replica keeps each one.
pub const MAX_API_KEYS: usize = 10_000;

/// One key as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// The key's id (the public part of its text).
    pub id: KeyId,
    /// What the administrator called it, e.g. the team or machine that uses it.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// The features it is limited to, sorted and distinct; `None`: every feature.
    pub features: Option<Vec<String>>,
    /// SHA-256 of its secret: checks a presented key without storing the secret.
    pub secret_hash: SecretHash,
    /// When it was created (leader time).
    pub created_at: UnixSeconds,
    /// When it was revoked; it is refused from that log position on.
    pub revoked_at: Option<UnixSeconds>,
}

impl ApiKeyRecord {
    /// Whether this key may do `access` now: not revoked, scope enough, feature allowed.
    pub fn permits(&self, access: Access<'_>) -> Result<(), KeyRefusal> {
        if let Some(at) = self.revoked_at {
            return Err(KeyRefusal::Revoked { id: self.id, at });
        }
        if !self.scope.allows(access.scope) {
            return Err(KeyRefusal::Scope {
                id: self.id,
                scope: self.scope,
                needs: access.scope,
                what: access.what.to_string(),
            });
        }
        if let Some(feature) = access.feature {
            if !self.allows_feature(feature) {
                return Err(KeyRefusal::Feature {
                    id: self.id,
                    feature: feature.to_string(),
                    allowed: self.features.clone().unwrap_or_default(),
                    what: access.what.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Whether the key may see and use licenses of `feature`.
    pub fn allows_feature(&self, feature: &str) -> bool {
        self.features.as_ref().is_none_or(|features| {
            features
                .binary_search_by(|f| f.as_str().cmp(feature))
                .is_ok()
        })
    }
}

/// What a call needs from the key it was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access<'a> {
    /// The weakest scope that may do it.
    pub scope: Scope,
    /// The feature it touches, when it touches one license's.
    pub feature: Option<&'a str>,
    /// What it is, for the refusal's reason ("borrowing", "managing API keys").
    pub what: &'static str,
}

impl Access<'static> {
    /// `ListLicensesV1`.
    pub const LIST_LICENSES: Access<'static> = Access::to(Scope::Read, "listing licenses");
    /// `GetBorrowedLicenseV1` (then of the borrow's feature).
    pub const READ_BORROWS: Access<'static> = Access::to(Scope::Read, "reading borrows");
    /// `BorrowLicenseV1` (then of the request's feature).
    pub const BORROW: Access<'static> = Access::to(Scope::Borrow, "borrowing");
    /// `ReturnLicenseV1` with the borrow's token (then of the borrow's feature).
    pub const RETURN: Access<'static> = Access::to(Scope::Borrow, "returning");
    /// `CreateApiKeyV1`, `ListApiKeysV1`, `RevokeApiKeyV1`.
    pub const MANAGE_KEYS: Access<'static> = Access::to(Scope::Admin, "managing API keys");
    /// License and host administration, pool plans.
    pub const ADMINISTER: Access<'static> =
        Access::to(Scope::Admin, "administering licenses and hosts");
    /// `ListAuditV1`: the trail says who did what.
    pub const READ_AUDIT: Access<'static> = Access::to(Scope::Admin, "reading the audit trail");
    /// `ListHostsV1`.
    pub const READ_HOSTS: Access<'static> = Access::to(Scope::Read, "listing hosts");
    /// `GetClusterStatusV1`.
    pub const READ_CLUSTER: Access<'static> =
        Access::to(Scope::Read, "reading the cluster's status");
    /// `TransferLeadershipV1`.
    pub const ADMINISTER_CLUSTER: Access<'static> =
        Access::to(Scope::Admin, "handing leadership over");
}

impl<'a> Access<'a> {
    /// Needs `scope`, touches no one feature.
    pub const fn to(scope: Scope, what: &'static str) -> Access<'a> {
        Access {
            scope,
            feature: None,
            what,
        }
    }

    /// The same, touching licenses of `feature` (when known).
    pub fn on(self, feature: Option<&'a str>) -> Access<'a> {
        Access { feature, ..self }
    }
}

/// A key to create: everything of its record but the times, which apply stamps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewApiKey {
    /// Drawn at random by the node the administrator reached.
    pub id: KeyId,
    /// Its name.
    pub name: String,
    /// Its scope.
    pub scope: Scope,
    /// Its features, sorted and distinct; `None`: every feature.
    pub features: Option<Vec<String>>,
    /// SHA-256 of the secret, which only the creating answer carries.
    pub secret_hash: SecretHash,
}

/// A change to the keys (the payload of [`Command::ApiKey`](super::Command::ApiKey)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApiKeyChange {
    /// Add a key.
    Create(NewApiKey),
    /// Revoke a key (idempotent: the first revocation time stays).
    Revoke(KeyId),
}

/// Why a key change was not made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApiKeyError {
    /// The random id of a new key is taken (1 in 2⁶⁴); creating it again draws another.
    #[error("an API key with keyId {0} exists already; try again")]
    IdTaken(KeyId),
    /// [`MAX_API_KEYS`] reached.
    #[error("the cluster holds {MAX_API_KEYS} API keys, the most it keeps (revoked keys count until the retention period has passed): revoke keys that are no longer used")]
    TooMany,
    /// Revoking a key the ledger does not hold (never created, or revoked and forgotten).
    #[error("no API key with keyId {0}")]
    NoSuchKey(KeyId),
}

/// Why a call made with a key is refused. Names the key by its id only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum KeyRefusal {
    /// No key with this id, or the secret is not its secret (the two are not told apart).
    #[error("API key {0} is not valid: there is no such key, or the secret is wrong")]
    Invalid(KeyId),
    /// The key was revoked.
    #[error("API key {id} was revoked at {}", format_instant(*at))]
    Revoked {
        /// The key.
        id: KeyId,
        /// When.
        at: UnixSeconds,
    },
    /// The key's scope is too weak.
    #[error("API key {id} has scope {scope}: {what} needs scope {needs}")]
    Scope {
        /// The key.
        id: KeyId,
        /// Its scope.
        scope: Scope,
        /// The scope needed.
        needs: Scope,
        /// What was asked.
        what: String,
    },
    /// The key is limited to other features.
    #[error("API key {id} is limited to the features {}: {what} {feature} is not allowed", allowed.join(", "))]
    Feature {
        /// The key.
        id: KeyId,
        /// The feature asked for.
        feature: String,
        /// The key's features.
        allowed: Vec<String>,
        /// What was asked.
        what: String,
    },
    /// A command no key can carry (a cluster's bootstrap, a key inside a key).
    #[error("{0} cannot be done with an API key")]
    NotForKeys(String),
}

impl KeyRefusal {
    /// Whether the key itself is no good (unknown, wrong secret, revoked), as opposed to
    /// a good key that may not do this.
    pub fn is_unauthenticated(&self) -> bool {
        matches!(self, KeyRefusal::Invalid(_) | KeyRefusal::Revoked { .. })
    }
}

/// Every key the ledger holds, by id.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    /// Shared with snapshots being written; a change copies the record first.
    keys: BTreeMap<KeyId, Arc<ApiKeyRecord>>,
    /// (time it may be forgotten, id) of revoked keys: they are listed for the
    /// retention period, then forgotten (a forgotten key is as refused as a revoked one).
    forget_at: BTreeSet<(UnixSeconds, KeyId)>,
}

impl ApiKeys {
    /// The keys of a snapshot; revoked ones are forgotten `retention_secs` after their
    /// revocation.
    pub fn from_records(records: Vec<ApiKeyRecord>, retention_secs: i64) -> ApiKeys {
        let mut keys = ApiKeys::default();
        for record in records {
            if let Some(at) = record.revoked_at {
                keys.forget_at
                    .insert((at.saturating_add(retention_secs), record.id));
            }
            keys.keys.insert(record.id, Arc::new(record));
        }
        keys
    }

    /// A key by id.
    pub fn get(&self, id: KeyId) -> Option<&ApiKeyRecord> {
        self.keys.get(&id).map(Arc::as_ref)
    }

    /// Number of keys held, revoked ones included.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key, ordered by id.
    pub fn iter(&self) -> impl Iterator<Item = &ApiKeyRecord> {
        self.keys.values().map(Arc::as_ref)
    }

    /// The records, shared, ordered by id: what a snapshot writes.
    pub fn shared(&self) -> Vec<Arc<ApiKeyRecord>> {
        self.keys.values().cloned().collect()
    }

    /// The key a client presented, if it is one of ours with that secret and not revoked.
    pub fn authenticate(&self, key: &ApiKeyText) -> Result<&ApiKeyRecord, KeyRefusal> {
        let record = self
            .get(key.id())
            .filter(|record| record.secret_hash.matches(key.secret()))
            .ok_or(KeyRefusal::Invalid(key.id()))?;
        match record.revoked_at {
            Some(at) => Err(KeyRefusal::Revoked { id: record.id, at }),
            None => Ok(record),
        }
    }

    /// Whether the key `id` may do `access` at this point of the log (no secret here: it
    /// was checked when the call arrived).
    pub fn authorize(&self, id: KeyId, access: Access<'_>) -> Result<&ApiKeyRecord, KeyRefusal> {
        let record = self.get(id).ok_or(KeyRefusal::Invalid(id))?;
        record.permits(access)?;
        Ok(record)
    }

    /// Applies a change at `now`; answers the key's record as it now stands.
    pub fn apply(
        &mut self,
        now: UnixSeconds,
        change: &ApiKeyChange,
        retention_secs: i64,
    ) -> Result<ApiKeyRecord, ApiKeyError> {
        match change {
            ApiKeyChange::Create(new) => {
                if self.keys.contains_key(&new.id) {
                    return Err(ApiKeyError::IdTaken(new.id));
                }
                if self.keys.len() >= MAX_API_KEYS {
                    return Err(ApiKeyError::TooMany);
                }
                // Sorted and distinct whatever the proposer sent: `allows_feature` searches.
                let features = new.features.clone().map(|mut features| {
                    features.sort_unstable();
                    features.dedup();
                    features
                });
                let record = ApiKeyRecord {
                    id: new.id,
                    name: new.name.clone(),
                    scope: new.scope,
                    features,
                    secret_hash: new.secret_hash,
                    created_at: now,
                    revoked_at: None,
                };
                self.keys.insert(new.id, Arc::new(record.clone()));
                Ok(record)
            }
            ApiKeyChange::Revoke(id) => {
                let shared = self.keys.get_mut(id).ok_or(ApiKeyError::NoSuchKey(*id))?;
                if shared.revoked_at.is_none() {
                    Arc::make_mut(shared).revoked_at = Some(now);
                    self.forget_at
                        .insert((now.saturating_add(retention_secs), *id));
                }
                Ok(ApiKeyRecord::clone(shared))
            }
        }
    }

    /// Forgets the revoked keys whose retention ended by `now`.
    pub fn forget_revoked(&mut self, now: UnixSeconds) {
        while let Some(&(when, id)) = self.forget_at.first() {
            if when > now {
                break;
            }
            self.forget_at.pop_first();
            self.keys.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::api_key::KeySecret;

    const NOW: UnixSeconds = 1_800_000_000;
    const RETENTION: i64 = 30 * 86_400;

    fn secret(fill: u8) -> KeySecret {
        KeySecret::from_bytes([fill; 32])
    }

    fn create(keys: &mut ApiKeys, id: u64, scope: Scope, features: Option<&[&str]>) -> ApiKeyText {
        let text = ApiKeyText::new(KeyId::from_u64(id), secret(id as u8));
        let change = ApiKeyChange::Create(NewApiKey {
            id: text.id(),
            name: format!("key {id}"),
            scope,
            features: features.map(|f| f.iter().map(|s| s.to_string()).collect()),
            secret_hash: text.secret().hash(),
        });
        keys.apply(NOW, &change, RETENTION).expect("created");
        text
    }

    const BORROW: Access<'static> = Access {
        scope: Scope::Borrow,
        feature: None,
        what: "borrowing",
    };

    #[test]
    fn a_key_authenticates_with_its_own_secret_only() {
        let mut keys = ApiKeys::default();
        let key = create(&mut keys, 1, Scope::Read, None);
        assert_eq!(keys.authenticate(&key).map(|r| r.id), Ok(key.id()));
        let wrong = ApiKeyText::new(key.id(), secret(99));
        assert_eq!(
            keys.authenticate(&wrong),
            Err(KeyRefusal::Invalid(key.id()))
        );
        let unknown = ApiKeyText::new(KeyId::from_u64(2), secret(2));
        assert_eq!(
            keys.authenticate(&unknown),
            Err(KeyRefusal::Invalid(KeyId::from_u64(2)))
        );
    }

    #[test]
    fn scope_and_features_decide_what_a_key_may_do() {
        let mut keys = ApiKeys::default();
        let reader = create(&mut keys, 1, Scope::Read, None).id();
        let borrower = create(&mut keys, 2, Scope::Borrow, Some(&["MVTec_HALCON"])).id();
        let admin = create(&mut keys, 3, Scope::Admin, None).id();
        let read = Access::to(Scope::Read, "listing");
        let halcon = BORROW.on(Some("MVTec_HALCON"));
        let hdevelop = BORROW.on(Some("MVTec_HDevelop"));
        let manage = Access::to(Scope::Admin, "managing API keys");

        assert!(keys.authorize(reader, read).is_ok());
        assert!(matches!(
            keys.authorize(reader, halcon),
            Err(KeyRefusal::Scope {
                needs: Scope::Borrow,
                scope: Scope::Read,
                ..
            })
        ));
        assert!(keys.authorize(borrower, read).is_ok());
        assert!(keys.authorize(borrower, halcon).is_ok());
        let refused = keys
            .authorize(borrower, hdevelop)
            .expect_err("other feature");
        assert!(
            matches!(&refused, KeyRefusal::Feature { feature, .. } if feature == "MVTec_HDevelop")
        );
        assert!(!refused.is_unauthenticated());
        assert_eq!(
            refused.to_string(),
            "API key 0000000000000002 is limited to the features MVTec_HALCON: borrowing MVTec_HDevelop is not allowed"
        );
        assert!(keys.authorize(borrower, manage).is_err());
        for access in [read, halcon, hdevelop, manage] {
            assert!(keys.authorize(admin, access).is_ok(), "{access:?}");
        }
        assert_eq!(
            keys.authorize(KeyId::from_u64(9), read),
            Err(KeyRefusal::Invalid(KeyId::from_u64(9)))
        );
    }

    #[test]
    fn a_revoked_key_is_refused_listed_for_the_retention_period_then_forgotten() {
        let mut keys = ApiKeys::default();
        let key = create(&mut keys, 1, Scope::Admin, None);
        let revoke = ApiKeyChange::Revoke(key.id());
        let revoked = keys.apply(NOW + 10, &revoke, RETENTION).expect("revoked");
        assert_eq!(revoked.revoked_at, Some(NOW + 10));
        // Idempotent: the first revocation time stays.
        assert_eq!(keys.apply(NOW + 20, &revoke, RETENTION), Ok(revoked));
        let refusal = KeyRefusal::Revoked {
            id: key.id(),
            at: NOW + 10,
        };
        assert_eq!(keys.authenticate(&key), Err(refusal.clone()));
        assert!(refusal.is_unauthenticated());
        assert_eq!(
            keys.authorize(key.id(), Access::to(Scope::Read, "listing")),
            Err(refusal)
        );
        // A wrong secret is invalid, revoked or not: revocation is no oracle for secrets.
        let wrong = ApiKeyText::new(key.id(), secret(77));
        assert_eq!(
            keys.authenticate(&wrong),
            Err(KeyRefusal::Invalid(key.id()))
        );

        keys.forget_revoked(NOW + 10 + RETENTION - 1);
        assert_eq!(keys.len(), 1);
        keys.forget_revoked(NOW + 10 + RETENTION);
        assert!(keys.is_empty());
        assert_eq!(keys.authenticate(&key), Err(KeyRefusal::Invalid(key.id())));
        assert_eq!(
            keys.apply(NOW, &revoke, RETENTION),
            Err(ApiKeyError::NoSuchKey(key.id()))
        );
    }

    #[test]
    fn ids_are_unique_and_the_number_of_keys_is_bounded() {
        let mut keys = ApiKeys::default();
        let key = create(&mut keys, 1, Scope::Read, None);
        let again = ApiKeyChange::Create(NewApiKey {
            id: key.id(),
            name: "other".into(),
            scope: Scope::Admin,
            features: None,
            secret_hash: secret(5).hash(),
        });
        assert_eq!(
            keys.apply(NOW, &again, RETENTION),
            Err(ApiKeyError::IdTaken(key.id()))
        );
        assert_eq!(keys.get(key.id()).map(|r| r.scope), Some(Scope::Read));
        for id in 2..=MAX_API_KEYS as u64 {
            create(&mut keys, id, Scope::Read, None);
        }
        let one_more = ApiKeyChange::Create(NewApiKey {
            id: KeyId::from_u64(u64::MAX),
            name: "one too many".into(),
            scope: Scope::Read,
            features: None,
            secret_hash: secret(5).hash(),
        });
        assert_eq!(
            keys.apply(NOW, &one_more, RETENTION),
            Err(ApiKeyError::TooMany)
        );
    }

    #[test]
    fn keys_rebuilt_from_their_records_forget_revoked_ones_on_time() {
        let mut keys = ApiKeys::default();
        let kept = create(&mut keys, 1, Scope::Borrow, Some(&["a", "b"]));
        let gone = create(&mut keys, 2, Scope::Read, None);
        keys.apply(NOW + 5, &ApiKeyChange::Revoke(gone.id()), RETENTION)
            .expect("revoked");
        let records: Vec<ApiKeyRecord> = keys.iter().cloned().collect();
        let mut restored = ApiKeys::from_records(records.clone(), RETENTION);
        assert_eq!(restored.iter().cloned().collect::<Vec<_>>(), records);
        assert!(restored.authenticate(&kept).is_ok());
        assert!(matches!(
            restored.authenticate(&gone),
            Err(KeyRefusal::Revoked { .. })
        ));
        restored.forget_revoked(NOW + 5 + RETENTION);
        assert!(restored.get(gone.id()).is_none());
        assert!(restored.get(kept.id()).is_some());
    }
}
