//! JSON-RPC error objects, and the one place where domain and cluster failures become
//! wire codes.

use serde_json::{json, Value};

use crate::app::AppError;
use crate::borrow::check::BorrowError;
use crate::state::{AdminError, ApiKeyError};

/// `-32700`: the body is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// `-32600`: JSON, but not a request object.
pub const INVALID_REQUEST: i64 = -32600;
/// `-32601`: no such method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// `-32602`: missing or wrongly typed parameter.
pub const INVALID_PARAMS: i64 = -32602;
/// `-32603`: the server cannot answer (no quorum, timeout, bug).
pub const INTERNAL_ERROR: i64 = -32603;

/// `32`: the license is fully borrowed at some instant of the interval, or a limit on
/// stored borrows is reached (docs/protocol.md §5.2).
pub const NOT_AVAILABLE: i64 = 32;
/// `33`: the interval ends after the license expires.
pub const AFTER_EXPIRATION: i64 = 33;
/// `34`: no license with this feature and uuid, or no borrow with this id.
pub const NO_SUCH_LICENSE: i64 = 34;
/// `35`: the interval is malformed, too long, in the past or outside the license.
pub const INVALID_INTERVAL: i64 = 35;
/// `36`: the host id is malformed.
pub const INVALID_HOST_ID: i64 = 36;
/// `37` (extension): a `ReturnLicenseV1` without the borrower's `returnToken` or the
/// admin token.
pub const RETURN_NOT_AUTHORIZED: i64 = 37;
/// `38` (extension): no valid credential — no API key where keys are required, an
/// unknown, revoked or malformed key, key management without admin authority. Like every
/// JSON-RPC answer it is HTTP 200 (MVTec's client calls `raise_for_status()` first).
pub const UNAUTHORIZED: i64 = 38;
/// `39` (extension): a valid API key that may not do this — its scope is too weak, or
/// it is limited to other features.
pub const FORBIDDEN: i64 = 39;
/// `40` (extension): an administrative change refused because of the ledger's state — it
/// would leave held borrows outside their license (`data.conflicts` lists them), or what
/// it adds exists already.
pub const CONFLICT: i64 = 40;

/// A JSON-RPC error: the Borrow API's code and message, plus a reason for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// Error code (standard, the Borrow API's 32–36, or our 37–39).
    pub code: i64,
    /// Why, in words: which field, what was wrong.
    pub reason: Option<String>,
    /// `data.conflicts` of a code-40 refusal: the licenses and the borrows concerned.
    pub conflicts: Option<Value>,
}

impl RpcError {
    /// An error with a reason.
    pub fn new(code: i64, reason: impl Into<String>) -> RpcError {
        RpcError {
            code,
            reason: Some(reason.into()),
            conflicts: None,
        }
    }

    /// `-32602` with the reason.
    pub fn invalid_params(reason: impl Into<String>) -> RpcError {
        RpcError::new(INVALID_PARAMS, reason)
    }

    /// The Borrow API's exact message text for the code (docs/protocol.md §7).
    pub fn message(&self) -> &'static str {
        message_for(self.code)
    }

    /// The `error` member of a response.
    pub fn to_json(&self) -> Value {
        match &self.reason {
            Some(reason) => {
                let mut data = json!({ "reason": reason });
                if let Some(conflicts) = &self.conflicts {
                    data["conflicts"] = conflicts.clone();
                }
                json!({ "code": self.code, "message": self.message(), "data": data })
            }
            None => json!({ "code": self.code, "message": self.message() }),
        }
    }
}

/// The message text the Borrow API gives for each code (docs/protocol.md §7).
pub fn message_for(code: i64) -> &'static str {
    match code {
        PARSE_ERROR => "Parse error",
        INVALID_REQUEST => "Invalid Request",
        METHOD_NOT_FOUND => "Method not found",
        INVALID_PARAMS => "Invalid params",
        INTERNAL_ERROR => "Internal error",
        NOT_AVAILABLE => "License not available for borrowing in the requested time interval",
        AFTER_EXPIRATION => "Borrowing after license expiration not allowed",
        NO_SUCH_LICENSE => "No matching license found",
        INVALID_INTERVAL => "Invalid borrow interval",
        INVALID_HOST_ID => "Invalid host id",
        RETURN_NOT_AUTHORIZED => "Return not authorized",
        UNAUTHORIZED => "Unauthorized",
        FORBIDDEN => "Forbidden",
        CONFLICT => "Conflict",
        _ => "Server error",
    }
}

/// The wire code of a refused borrow.
pub fn borrow_code(error: &BorrowError) -> i64 {
    error.code()
}

impl From<BorrowError> for RpcError {
    fn from(error: BorrowError) -> RpcError {
        RpcError::new(borrow_code(&error), error.to_string())
    }
}

/// A refused license change: 34, 40 (with `data.conflicts`) or -32602.
fn admin_error(refusal: AdminError) -> RpcError {
    match refusal {
        AdminError::NoSuchLicense(reason) => RpcError::new(NO_SUCH_LICENSE, reason),
        AdminError::Exists(reason) => RpcError::new(CONFLICT, reason),
        AdminError::Invalid(reason) => RpcError::invalid_params(reason),
        AdminError::Conflict { reason, conflicts } => RpcError {
            conflicts: Some(Value::Array(
                conflicts
                    .iter()
                    .map(|conflict| {
                        json!({
                            "feature": conflict.key.feature,
                            "uuid": conflict.key.uuid,
                            "reason": conflict.reason,
                            "borrows": conflict.borrows.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        })
                    })
                    .collect(),
            )),
            ..RpcError::new(CONFLICT, reason)
        },
    }
}

impl From<AppError> for RpcError {
    fn from(error: AppError) -> RpcError {
        match error {
            AppError::Borrow(refusal) => refusal.into(),
            AppError::BorrowNotFound(_) => RpcError::new(NO_SUCH_LICENSE, error.to_string()),
            AppError::RequestIdReused(reason) => RpcError::invalid_params(reason),
            AppError::ReturnRefused(reason) => RpcError::new(RETURN_NOT_AUTHORIZED, reason),
            AppError::Unauthenticated(reason) => RpcError::new(UNAUTHORIZED, reason),
            AppError::Key(refusal) if refusal.is_unauthenticated() => {
                RpcError::new(UNAUTHORIZED, refusal.to_string())
            }
            AppError::Key(refusal) => RpcError::new(FORBIDDEN, refusal.to_string()),
            AppError::KeyChange(error @ ApiKeyError::IdTaken(_)) => {
                RpcError::new(INTERNAL_ERROR, error.to_string())
            }
            AppError::KeyChange(error) => RpcError::invalid_params(error.to_string()),
            AppError::Admin(refusal) => admin_error(refusal),
            AppError::InvalidInput(reason) => RpcError::invalid_params(reason),
            AppError::Unavailable(reason) => RpcError::new(INTERNAL_ERROR, reason),
            AppError::Internal(reason) => {
                tracing::error!(%reason, "internal error");
                RpcError::new(INTERNAL_ERROR, reason)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{KeyId, KeyRefusal, Scope};

    fn code_of(error: AppError) -> (i64, &'static str) {
        let error = RpcError::from(error);
        (error.code, message_for(error.code))
    }

    #[test]
    fn a_bad_credential_is_38_and_a_key_that_may_not_is_39() {
        let id = KeyId::from_u64(1);
        for unauthenticated in [
            AppError::Unauthenticated("no key".into()),
            AppError::Key(KeyRefusal::Invalid(id)),
            AppError::Key(KeyRefusal::Revoked { id, at: 0 }),
        ] {
            assert_eq!(code_of(unauthenticated), (38, "Unauthorized"));
        }
        for forbidden in [
            AppError::Key(KeyRefusal::Scope {
                id,
                scope: Scope::Read,
                needs: Scope::Borrow,
                what: "borrowing".into(),
            }),
            AppError::Key(KeyRefusal::Feature {
                id,
                feature: "MVTec_HDevelop".into(),
                allowed: vec!["MVTec_HALCON".into()],
                what: "borrowing".into(),
            }),
            AppError::Key(KeyRefusal::NotForKeys("loading a pool".into())),
        ] {
            assert_eq!(code_of(forbidden), (39, "Forbidden"));
        }
        assert_eq!(
            code_of(AppError::KeyChange(ApiKeyError::NoSuchKey(id))).0,
            INVALID_PARAMS
        );
        assert_eq!(
            code_of(AppError::KeyChange(ApiKeyError::TooMany)).0,
            INVALID_PARAMS
        );
        assert_eq!(
            code_of(AppError::KeyChange(ApiKeyError::IdTaken(id))).0,
            INTERNAL_ERROR
        );
        // 37 stays what it was.
        assert_eq!(
            code_of(AppError::ReturnRefused("no token".into())),
            (37, "Return not authorized")
        );
    }
}
