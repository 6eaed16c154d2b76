//! The seed's result objects, field for field: `LicenseInfo`, `BorrowedInterval`,
//! `BorrowedLicense`. Optional fields are omitted, never `null`.

use serde::Serialize;

use crate::app::{IssuedLicense, LicenseListing};
use crate::borrow::time::format_instant;
use crate::state::BorrowRecord;

/// `LicenseInfo` of `ListLicensesV1`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseInfo {
    feature: String,
    uuid: String,
    version: String,
    edition: String,
    modules: String,
    count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_until: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    borrowed_intervals: Vec<BorrowedInterval>,
}

/// `BorrowedInterval` inside a `LicenseInfo`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BorrowedInterval {
    valid_from: String,
    valid_until: String,
    host_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_info: Option<String>,
    borrow_id: String,
}

/// `BorrowedLicense` of `BorrowLicenseV1` and `GetBorrowedLicenseV1`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BorrowedLicense {
    license: String,
    borrow_id: String,
    /// Extension: the borrower's proof for `ReturnLicenseV1`, only in a borrow's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    return_token: Option<String>,
}

/// Result of `ReturnLicenseV1` (extension): the borrow as it stands after the return.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReturnedBorrow {
    borrow_id: String,
    valid_from: String,
    valid_until: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    returned_at: Option<String>,
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
