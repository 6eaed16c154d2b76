//! The Borrow API's result objects, field for field (docs/protocol.md §3), one type per
//! object: the server writes them and [`crate::client`] reads them. Optional fields are
//! omitted, never `null`.

use serde::{Deserialize, Serialize};

use crate::app::{CreatedKey, IssuedLicense, LicenseListing};
use crate::borrow::document::PublicKey;
use crate::borrow::time::format_instant;
use crate::state::{ApiKeyRecord, BorrowRecord, Scope};

/// `LicenseInfo` of `ListLicensesV1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseInfo {
    /// The feature, e.g. `MVTec_HALCON`.
    pub feature: String,
    /// Unique together with `feature`.
    pub uuid: String,
    /// Product version.
    pub version: String,
    /// Edition.
    pub edition: String,
    /// Module string.
    pub modules: String,
    /// How many borrows may overlap.
    pub count: u32,
    /// Start of the license's validity; absent means always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<String>,
    /// End of the license's validity; absent means never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// Current and upcoming borrows; absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub borrowed_intervals: Vec<BorrowedInterval>,
}

/// One borrow inside a [`LicenseInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BorrowedInterval {
    /// Start, inclusive.
    pub valid_from: String,
    /// End, exclusive.
    pub valid_until: String,
    /// The borrowing machine.
    pub host_id: String,
    /// Borrower's free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<String>,
    /// The borrow's id.
    pub borrow_id: String,
}

/// `BorrowedLicense` of `BorrowLicenseV1` and `GetBorrowedLicenseV1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BorrowedLicense {
    /// The signed license string.
    pub license: String,
    /// The borrow's id.
    pub borrow_id: String,
    /// Extension: the proof `ReturnLicenseV1` needs; only in a borrow's own answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_token: Option<String>,
}

/// The answer of `GET /public-key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicKeyInfo {
    /// The key id licenses name.
    pub key_id: String,
    /// Always `Ed25519`.
    pub algorithm: String,
    /// The 32 raw key bytes, standard base64.
    pub public_key: String,
    /// The same key as SPKI PEM.
    pub pem: String,
}

/// Result of `ReturnLicenseV1` (extension): the borrow as it stands after the return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReturnedBorrow {
    /// The borrow's id.
    pub borrow_id: String,
    /// Start, inclusive.
    pub valid_from: String,
    /// End, exclusive: the return time when the return shortened it.
    pub valid_until: String,
    /// When it was returned; absent when the return changed nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned_at: Option<String>,
}

/// A client API key as `ListApiKeysV1` and `RevokeApiKeyV1` show it (extension): never
/// its secret, nor the secret's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyInfo {
    /// The key's id: 16 hex digits, the part of the key text after `lk_`.
    pub key_id: String,
    /// Its name.
    pub name: String,
    /// `read`, `borrow` or `admin`.
    pub scope: Scope,
    /// The features it is limited to; absent: every feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
    /// When it was created.
    pub created_at: String,
    /// When it was revoked; absent while it is valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// Result of `CreateApiKeyV1` (extension): the key text, shown this once, and the key.
/// Its `Debug` leaves the key text out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiKey {
    /// The key's id.
    pub key_id: String,
    /// The whole key, `lk_<keyId>_<secret>`: the bearer token clients send. The server
    /// keeps only a hash of its secret and can never show it again.
    pub key: String,
    /// Its name.
    pub name: String,
    /// Its scope.
    pub scope: Scope,
    /// The features it is limited to; absent: every feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
    /// When it was created.
    pub created_at: String,
}

impl std::fmt::Debug for CreatedApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedApiKey")
            .field("key_id", &self.key_id)
            .field("key", &"..")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .field("features", &self.features)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl From<&ApiKeyRecord> for ApiKeyInfo {
    fn from(record: &ApiKeyRecord) -> Self {
        ApiKeyInfo {
            key_id: record.id.to_string(),
            name: record.name.clone(),
            scope: record.scope,
            features: record.features.clone(),
            created_at: format_instant(record.created_at),
            revoked_at: record.revoked_at.map(format_instant),
        }
    }
}

impl From<CreatedKey> for CreatedApiKey {
    fn from(created: CreatedKey) -> Self {
        let record = created.record;
        CreatedApiKey {
            key_id: record.id.to_string(),
            key: created.text.expose(),
            name: record.name,
            scope: record.scope,
            features: record.features,
            created_at: format_instant(record.created_at),
        }
    }
}

impl From<&PublicKey> for PublicKeyInfo {
    fn from(key: &PublicKey) -> Self {
        PublicKeyInfo {
            key_id: key.key_id().to_string(),
            algorithm: "Ed25519".to_string(),
            public_key: key.to_base64(),
            pem: key.to_pem(),
        }
    }
}

impl From<&BorrowRecord> for ReturnedBorrow {
    fn from(record: &BorrowRecord) -> Self {
        ReturnedBorrow {
            borrow_id: record.borrow_id.to_string(),
            valid_from: format_instant(record.valid_from),
            valid_until: format_instant(record.valid_until),
            returned_at: record.returned_at.map(format_instant),
        }
    }
}

impl From<&BorrowRecord> for BorrowedInterval {
    fn from(record: &BorrowRecord) -> Self {
        BorrowedInterval {
            valid_from: format_instant(record.valid_from),
            valid_until: format_instant(record.valid_until),
            host_id: record.host_id.to_string(),
            user_info: record.user_info.clone(),
            borrow_id: record.borrow_id.to_string(),
        }
    }
}

impl From<LicenseListing> for LicenseInfo {
    fn from(listing: LicenseListing) -> Self {
        let license = listing.license;
        LicenseInfo {
            feature: license.key.feature,
            uuid: license.key.uuid,
            version: license.version,
            edition: license.edition,
            modules: license.modules,
            count: license.count,
            valid_from: license.valid_from.map(format_instant),
            valid_until: license.valid_until.map(format_instant),
            borrowed_intervals: listing.borrows.iter().map(BorrowedInterval::from).collect(),
        }
    }
}

impl From<IssuedLicense> for BorrowedLicense {
    fn from(issued: IssuedLicense) -> Self {
        BorrowedLicense {
            license: issued.license,
            borrow_id: issued.borrow_id.to_string(),
            return_token: issued.return_token,
        }
    }
}
