//! The Borrow API's result objects, field for field (docs/protocol.md §3), one type per
//! object: the server writes them and [`crate::client`] reads them. Optional fields are
//! omitted, never `null`.

use serde::{Deserialize, Serialize};

use crate::app::{IssuedLicense, LicenseListing};
use crate::borrow::document::PublicKey;
use crate::borrow::time::format_instant;
use crate::state::BorrowRecord;

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
