//! The method table: decode params, call the application, encode the result.

use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use crate::app::{App, Credential, Principal};
use crate::borrow::check::{BorrowError, BorrowRequest};
use crate::borrow::host_id::HostId;
use crate::borrow::license::LicenseKey;
use crate::borrow::time::{parse_instant, DateRole};
use crate::state::api_keys::Access;

use super::error::{RpcError, METHOD_NOT_FOUND, NO_SUCH_LICENSE};
use super::objects::{BorrowedLicense, LicenseInfo, ReturnedBorrow};
use super::params::{Params, MAX_USER_INFO_CHARS};

/// Longest feature or uuid accepted; no license has a longer one.
const MAX_KEY_CHARS: usize = 128;

/// Every method this endpoint answers.
pub const METHODS: [&str; 22] = [
    "ListLicensesV1",
    "BorrowLicenseV1",
    "GetBorrowedLicenseV1",
    "ReturnLicenseV1",
    "CreateApiKeyV1",
    "ListApiKeysV1",
    "RevokeApiKeyV1",
    "AddLicenseV1",
    "UpdateLicenseV1",
    "RemoveLicenseV1",
    "PlanPoolV1",
    "ApplyPoolV1",
    "ListHostsV1",
    "SetHostV1",
    "BlockHostV1",
    "UnblockHostV1",
    "ListAuditV1",
    "ListBorrowsV1",
    "CheckLicenseV1",
    "WhoAmIV1",
    "GetClusterStatusV1",
    "TransferLeadershipV1",
];

/// Longest `requestId` accepted.
const MAX_REQUEST_ID_CHARS: usize = 128;

/// A method's result as JSON text written by our own serializer: answers go from the
/// ledger to JSON text once, without an intermediate `Value` tree, and a cached listing
/// is answered as it is (shared, not copied or parsed again).
pub type RpcResult = Arc<str>;

/// Who is calling, as far as the transport could tell, and what this deployment asks of
/// callers. `Debug` shows an API key's id, never its secret.
#[derive(Debug, Clone)]
pub struct Caller {
    /// What the request's `Authorization: Bearer` header carried.
    pub credential: Credential,
    /// `--require-api-keys`: a call without a valid key (or the admin token) is refused.
    pub keys_required: bool,
}

impl Default for Caller {
    /// No credential, on a deployment that does not require keys.
    fn default() -> Self {
        Caller {
            credential: Credential::None,
            keys_required: false,
        }
    }
}

/// Runs one method call. The caller's credential is checked first (38), then what the
/// method needs of it (39), then the parameters.
#[tracing::instrument(level = "debug", skip(app, params))]
pub async fn call(
    app: &App,
    caller: &Caller,
    method: &str,
    params: Option<&Value>,
) -> Result<RpcResult, RpcError> {
    let principal = app
        .principal(&caller.credential, caller.keys_required)
        .await?;
    let who = &principal;
    match method {
        "ListLicensesV1" => list_licenses(app, who, Params::new(method, params)?).await,
        "BorrowLicenseV1" => borrow_license(app, who, Params::new(method, params)?).await,
        "GetBorrowedLicenseV1" => {
            get_borrowed_license(app, who, Params::new(method, params)?).await
        }
        "ReturnLicenseV1" => return_license(app, who, Params::new(method, params)?).await,
        "CreateApiKeyV1" => super::keys::create(app, who, Params::new(method, params)?).await,
        "ListApiKeysV1" => super::keys::list(app, who, Params::new(method, params)?).await,
        "RevokeApiKeyV1" => super::keys::revoke(app, who, Params::new(method, params)?).await,
        "WhoAmIV1" => super::console::who_am_i(app, who, caller.keys_required),
        _ => call_administration(app, who, method, params).await,
    }
}

/// The administration methods (extension).
async fn call_administration(
    app: &App,
    who: &Principal,
    method: &str,
    params: Option<&Value>,
) -> Result<RpcResult, RpcError> {
    use super::administration as admin;
    let params = || Params::new(method, params);
    match method {
        "AddLicenseV1" => admin::add_license(app, who, params()?).await,
        "UpdateLicenseV1" => admin::update_license(app, who, params()?).await,
        "RemoveLicenseV1" => admin::remove_license(app, who, params()?).await,
        "PlanPoolV1" => admin::plan_pool(app, who, params()?).await,
        "ApplyPoolV1" => admin::apply_pool(app, who, params()?).await,
        "ListHostsV1" => admin::list_hosts(app, who, params()?).await,
        "SetHostV1" => admin::set_host(app, who, params()?).await,
        "BlockHostV1" => admin::block_host(app, who, params()?).await,
        "UnblockHostV1" => admin::unblock_host(app, who, params()?).await,
        "ListAuditV1" => admin::list_audit(app, who, params()?).await,
        "ListBorrowsV1" => admin::list_borrows(app, who, params()?).await,
        "CheckLicenseV1" => admin::check_license(app, who, params()?).await,
        "GetClusterStatusV1" => super::console::cluster_status(app, who, params()?).await,
        "TransferLeadershipV1" => super::console::transfer_leadership(app, who, params()?).await,
        _ => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!(
                "no method {:?}; this endpoint offers {}",
                crate::borrow::host_id::truncate_for_message(method),
                METHODS.join(", ")
            ),
        )),
    }
}

/// A result object as JSON text.
pub(super) fn to_json<T: serde::Serialize>(value: T) -> Result<RpcResult, RpcError> {
    serde_json::to_string(&value)
        .map(Arc::from)
        .map_err(|e| RpcError::new(super::error::INTERNAL_ERROR, e.to_string()))
}

async fn list_licenses(
    app: &App,
    principal: &Principal,
    _params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    Ok(app.licenses_rendered(principal, render_listing).await?)
}

/// `ListLicensesV1`'s result as JSON text.
fn render_listing(listings: Vec<crate::app::LicenseListing>) -> Result<String, String> {
    let infos: Vec<LicenseInfo> = listings.into_iter().map(LicenseInfo::from).collect();
    serde_json::to_string(&infos).map_err(|e| e.to_string())
}

/// The `borrowId` parameter. A well-formed string that is no UUID cannot name a borrow:
/// "no matching license" (34), the same answer as an unknown UUID.
fn borrow_id_param(params: &Params<'_>) -> Result<Uuid, RpcError> {
    let text = params.required_str("borrowId")?;
    Uuid::parse_str(text).map_err(|_| {
        RpcError::new(
            NO_SUCH_LICENSE,
            format!(
                "no borrow with borrowId {:?} (borrow ids are UUIDs)",
                crate::borrow::host_id::truncate_for_message(text)
            ),
        )
    })
}

async fn get_borrowed_license(
    app: &App,
    principal: &Principal,
    params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    principal.check(Access::READ_BORROWS)?;
    let borrow_id = borrow_id_param(&params)?;
    let issued = app.borrowed_license(principal, borrow_id).await?;
    to_json(BorrowedLicense::from(issued))
}

async fn return_license(
    app: &App,
    principal: &Principal,
    params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    principal.check(Access::RETURN)?;
    let borrow_id = borrow_id_param(&params)?;
    let token = params.optional_str("returnToken")?;
    let record = app.give_back(principal, borrow_id, token).await?;
    to_json(ReturnedBorrow::from(&record))
}

async fn borrow_license(
    app: &App,
    principal: &Principal,
    params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    principal.check(Access::BORROW)?;
    let request = decode_borrow(&params)?;
    let request_id = decode_request_id(&params)?;
    let issued = app.borrow(principal, request, request_id).await?;
    to_json(BorrowedLicense::from(issued))
}

/// The optional `requestId` idempotency key: 1 to 128 characters, no control characters.
pub fn decode_request_id(params: &Params<'_>) -> Result<Option<String>, RpcError> {
    let Some(id) = params.optional_str("requestId")? else {
        return Ok(None);
    };
    if id.is_empty() || id.chars().count() > MAX_REQUEST_ID_CHARS {
        return Err(RpcError::invalid_params(format!(
            "requestId must be 1 to {MAX_REQUEST_ID_CHARS} characters"
        )));
    }
    if id.chars().any(char::is_control) {
        return Err(RpcError::invalid_params(
            "requestId must not contain control characters",
        ));
    }
    Ok(Some(id.to_string()))
}

/// Checks 1 to 3 of docs/protocol.md §5.2 (the part that needs no ledger), in order.
pub fn decode_borrow(params: &Params<'_>) -> Result<BorrowRequest, RpcError> {
    // 1. presence and types
    let feature = params.required_str("feature")?;
    let uuid = params.required_str("uuid")?;
    let host_id = params.required_str("hostId")?;
    let valid_from = params.optional_str("validFrom")?;
    let valid_until = params.required_nullable_str("validUntil")?;
    let user_info = params.optional_str("userInfo")?;
    for (name, value) in [("feature", feature), ("uuid", uuid)] {
        if value.len() > MAX_KEY_CHARS {
            return Err(RpcError::invalid_params(format!(
                "{name} is longer than {MAX_KEY_CHARS} characters"
            )));
        }
    }
    if let Some(info) = user_info {
        if info.chars().count() > MAX_USER_INFO_CHARS {
            return Err(RpcError::invalid_params(format!(
                "userInfo is longer than {MAX_USER_INFO_CHARS} characters"
            )));
        }
    }
    // 2. host id
    let host_id = HostId::parse(host_id)
        .map_err(|e| RpcError::from(BorrowError::InvalidHostId(e.to_string())))?;
    // 3. dates parse (the rest of check 3 needs the license and the time: apply does it)
    let date = |text: &str, role, field| {
        parse_instant(text, role, field)
            .map_err(|e| RpcError::from(BorrowError::InvalidInterval(e.to_string())))
    };
    let valid_from = valid_from
        .map(|text| date(text, DateRole::Start, "validFrom"))
        .transpose()?;
    let valid_until = valid_until
        .map(|text| date(text, DateRole::End, "validUntil"))
        .transpose()?;
    Ok(BorrowRequest {
        key: LicenseKey {
            feature: feature.to_string(),
            uuid: uuid.to_string(),
        },
        host_id,
        valid_from,
        valid_until,
        user_info: user_info.map(str::to_string),
    })
}
