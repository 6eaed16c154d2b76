//! Methods the web console needs beyond the Borrow API and administration (extension),
//! open to any script as well: `WhoAmIV1` (what the caller's credential may do),
//! `GetClusterStatusV1` (members, roles, indexes and lag, as this node and its leader
//! see them) and `TransferLeadershipV1` (admin).

use serde::Serialize;

use crate::app::{App, Principal};
use crate::state::Scope;

use super::error::RpcError;
use super::methods::{to_json, RpcResult};
use super::params::Params;

/// `WhoAmIV1`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Identity {
    /// `admin-token`, `api-key` or `none`.
    credential: &'static str,
    /// The key's id, for a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    /// The key's name, for a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// What the caller may do: `read`, `borrow` or `admin`.
    scope: Scope,
    /// The features a limited key may use; absent means every feature.
    #[serde(skip_serializing_if = "Option::is_none")]
    features: Option<Vec<String>>,
    /// Whether this server refuses calls without a key (`--require-api-keys`).
    keys_required: bool,
    /// The node that answered.
    node: u64,
}

/// `WhoAmIV1` (no parameters): the caller's credential and what it may do. A call
/// without a valid credential where one is needed is refused (`38`) before it gets here.
pub fn who_am_i(
    app: &App,
    principal: &Principal,
    keys_required: bool,
) -> Result<RpcResult, RpcError> {
    let unnamed = |credential, scope| Identity {
        credential,
        key_id: None,
        name: None,
        scope,
        features: None,
        keys_required,
        node: app.node_id(),
    };
    let identity = match principal {
        // Anonymous callers exist only where keys are not required.
        Principal::Anonymous => unnamed("none", Scope::Borrow),
        Principal::Admin => unnamed("admin-token", Scope::Admin),
        Principal::Key(record) => Identity {
            key_id: Some(record.id.to_string()),
            name: Some(record.name.clone()),
            features: record.features.clone(),
            ..unnamed("api-key", record.scope)
        },
    };
    to_json(identity)
}

/// `GetClusterStatusV1`: this node's view of the cluster and its leader's (`read`).
pub async fn cluster_status(
    app: &App,
    principal: &Principal,
    _params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    to_json(app.cluster_views(principal).await?)
}

/// `TransferLeadershipV1 {to}`: hands leadership to voter `to` (`admin`).
pub async fn transfer_leadership(
    app: &App,
    principal: &Principal,
    params: Params<'_>,
) -> Result<RpcResult, RpcError> {
    principal.check(crate::state::api_keys::Access::ADMINISTER_CLUSTER)?;
    let to = params.required_u64("to")?;
    let message = app.transfer_leadership(principal, to).await?;
    to_json(serde_json::json!({ "message": message }))
}
