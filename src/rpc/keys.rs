//! The API key methods (extension): `CreateApiKeyV1`, `ListApiKeysV1`, `RevokeApiKeyV1`.
//! Every one needs administrator authority — the admin token or an `admin` key — even
//! where keys are not required for anything else.

use crate::app::{App, Principal};
use crate::state::api_keys::Access;
use crate::state::{KeyId, Scope};

use super::error::RpcError;
use super::methods::{to_json, RpcResult};
use super::objects::{ApiKeyInfo, CreatedApiKey};
use super::params::Params;

/// Longest key name accepted.
pub const MAX_NAME_CHARS: usize = 128;
/// Most features one key may be limited to.
pub const MAX_FEATURES: usize = 64;
/// Longest feature name accepted (as for borrows).
const MAX_FEATURE_CHARS: usize = 128;

/// `CreateApiKeyV1 {name, scope, features?}`: the key text, shown this once.
pub async fn create(
    app: &App,
    principal: &Principal,
    params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    principal.check(Access::MANAGE_KEYS)?;
    let name = decode_name(&params)?;
    let scope = decode_scope(&params)?;
    let features = decode_features(&params, scope)?;
    let created = app.create_api_key(principal, name, scope, features).await?;
    to_json(CreatedApiKey::from(created))
}

/// `ListApiKeysV1`: every key, never a secret or its hash.
pub async fn list(
    app: &App,
    principal: &Principal,
    _params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    principal.check(Access::MANAGE_KEYS)?;
    let keys = app.api_keys(principal).await?;
    to_json(keys.iter().map(ApiKeyInfo::from).collect::<Vec<_>>())
}

/// `RevokeApiKeyV1 {keyId}`: the key as it now stands (idempotent).
pub async fn revoke(
    app: &App,
    principal: &Principal,
    params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    principal.check(Access::MANAGE_KEYS)?;
    let text = params.required_str("keyId")?;
    let id = KeyId::parse(text).map_err(|_| {
        RpcError::invalid_params(format!(
            "keyId {:?} is not a key id: 16 lower-case hex digits, the part of the key after lk_",
            crate::borrow::host_id::truncate_for_message(text)
        ))
    })?;
    let record = app.revoke_api_key(principal, id).await?;
    to_json(ApiKeyInfo::from(&record))
}

/// `name`: 1 to 128 characters, no control characters.
fn decode_name(params: &Params<'_>) -> Result<String, RpcError> {
    let name = params.required_str("name")?;
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(RpcError::invalid_params(format!(
            "name must be 1 to {MAX_NAME_CHARS} characters, not all blank"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(RpcError::invalid_params(
            "name must not contain control characters",
        ));
    }
    Ok(name.to_string())
}

fn decode_scope(params: &Params<'_>) -> Result<Scope, RpcError> {
    let scope = params.required_str("scope")?;
    scope.parse().map_err(|reason: String| {
        RpcError::invalid_params(format!(
            "scope {:?}: {reason}",
            crate::borrow::host_id::truncate_for_message(scope)
        ))
    })
}

/// `features`: absent or `null` for every feature; else 1 to 64 feature names, sorted
/// and made distinct here. An admin key cannot be limited: it could create itself a key
/// without limits.
fn decode_features(params: &Params<'_>, scope: Scope) -> Result<Option<Vec<String>>, RpcError> {
    let Some(features) = params.optional_str_array("features")? else {
        return Ok(None);
    };
    if scope == Scope::Admin {
        return Err(RpcError::invalid_params(
            "an admin key cannot be limited to features (it may create keys without limits): leave features out",
        ));
    }
    if features.is_empty() || features.len() > MAX_FEATURES {
        return Err(RpcError::invalid_params(format!(
            "features must name 1 to {MAX_FEATURES} features; leave it out to allow every feature"
        )));
    }
    if let Some(bad) = features
        .iter()
        .find(|feature| feature.is_empty() || feature.len() > MAX_FEATURE_CHARS)
    {
        return Err(RpcError::invalid_params(format!(
            "feature {:?} must be 1 to {MAX_FEATURE_CHARS} characters",
            crate::borrow::host_id::truncate_for_message(bad)
        )));
    }
    let mut features: Vec<String> = features.into_iter().map(str::to_string).collect();
    features.sort_unstable();
    features.dedup();
    Ok(Some(features))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::rpc::error::INVALID_PARAMS;

    fn with<T>(
        value: Value,
        decode: impl FnOnce(&Params<'_>) -> Result<T, RpcError>,
    ) -> Result<T, RpcError> {
        let params = Params::new("CreateApiKeyV1", Some(&value))?;
        decode(&params)
    }

    #[test]
    fn features_are_sorted_and_made_distinct_and_absent_means_every_feature() {
        let decoded = with(
            json!({"features": ["MVTec_HDevelop", "MVTec_HALCON", "MVTec_HDevelop"]}),
            |p| decode_features(p, Scope::Borrow),
        );
        assert_eq!(
            decoded,
            Ok(Some(vec![
                "MVTec_HALCON".to_string(),
                "MVTec_HDevelop".to_string()
            ]))
        );
        assert_eq!(
            with(json!({}), |p| decode_features(p, Scope::Read)),
            Ok(None)
        );
        assert_eq!(
            with(json!({"features": null}), |p| decode_features(
                p,
                Scope::Admin
            )),
            Ok(None)
        );
    }

    fn code<T>(result: Result<T, RpcError>) -> Result<(), i64> {
        result.map(|_| ()).map_err(|e| e.code)
    }

    #[test]
    fn bad_key_parameters_are_invalid_params() {
        for features in [json!([]), json!([""]), json!("MVTec_HALCON"), json!([1])] {
            assert_eq!(
                code(with(json!({ "features": features }), |p| decode_features(
                    p,
                    Scope::Borrow
                ))),
                Err(INVALID_PARAMS),
                "{features}"
            );
        }
        let too_many: Vec<String> = (0..=MAX_FEATURES).map(|i| format!("f{i}")).collect();
        assert_eq!(
            code(with(json!({ "features": too_many }), |p| decode_features(
                p,
                Scope::Read
            ))),
            Err(INVALID_PARAMS)
        );
        assert_eq!(
            code(with(json!({"features": ["MVTec_HALCON"]}), |p| {
                decode_features(p, Scope::Admin)
            })),
            Err(INVALID_PARAMS)
        );
        for scope in [json!("write"), json!("Admin"), json!(2), json!(null)] {
            assert_eq!(
                code(with(json!({ "scope": scope }), decode_scope)),
                Err(INVALID_PARAMS)
            );
        }
        assert_eq!(
            with(json!({"scope": "borrow"}), decode_scope),
            Ok(Scope::Borrow)
        );
        for name in [
            json!(""),
            json!("   "),
            json!("a\nb"),
            json!("x".repeat(129)),
            json!(7),
        ] {
            assert_eq!(
                code(with(json!({ "name": name }), decode_name)),
                Err(INVALID_PARAMS)
            );
        }
        assert_eq!(
            with(json!({"name": "build farm"}), decode_name),
            Ok("build farm".to_string())
        );
    }
}
