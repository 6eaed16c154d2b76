//! Chaos builds only: arm, clear and list crash points on a running node, so the chaos
//! runner can crash a node (the leader under load, say) at a chosen instant instead of
//! only at start (`FAILPOINTS`). `PUT {FAILPOINTS_PATH}/{name}` with a `fail` action as
//! the body, `DELETE {FAILPOINTS_PATH}/{name}`, `GET {FAILPOINTS_PATH}`; all behind the
//! admin token.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{AdminAnswer, AdminState};

/// The crash points the code has. Arming any other name would silently do nothing, so it
/// is refused.
pub const KNOWN: &[&str] = &[
    "log-append-before",
    "log-append-after",
    "apply-before",
    "apply-after",
    "snapshot-build",
    "snapshot-install-before-persist",
    "snapshot-install-after-persist",
    "add-before-voter",
];

fn unknown(name: &str) -> Response {
    let reason = format!("no failpoint named {name:?} (known: {})", KNOWN.join(", "));
    (StatusCode::NOT_FOUND, Json(AdminAnswer::refused(reason))).into_response()
}

/// `PUT /debug/failpoints/{name}`: arms `name` with the action in the body.
pub(super) async fn arm(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    action: String,
) -> Response {
    if let Some(refusal) = state.refusal(&headers) {
        return refusal;
    }
    if !KNOWN.contains(&name.as_str()) {
        return unknown(&name);
    }
    let action = action.trim();
    // A failpoint's panic must end the process, like FAILPOINTS at start.
    crate::telemetry::abort_on_panic();
    match fail::cfg(name.as_str(), action) {
        Ok(()) => {
            tracing::warn!(failpoint = %name, action, "failpoint armed");
            AdminAnswer::from_result(Ok::<_, String>(format!("failpoint {name} armed: {action}")))
                .into_response()
        }
        Err(reason) => (
            StatusCode::BAD_REQUEST,
            Json(AdminAnswer::refused(format!(
                "cannot arm failpoint {name} with {action:?}: {reason}"
            ))),
        )
            .into_response(),
    }
}

/// `DELETE /debug/failpoints/{name}`: clears `name` (armed or not).
pub(super) async fn clear(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = state.refusal(&headers) {
        return refusal;
    }
    if !KNOWN.contains(&name.as_str()) {
        return unknown(&name);
    }
    fail::remove(name.as_str());
    tracing::warn!(failpoint = %name, "failpoint cleared");
    AdminAnswer::from_result(Ok::<_, String>(format!("failpoint {name} cleared"))).into_response()
}

/// `GET /debug/failpoints`: the armed points and their actions, as a JSON object.
pub(super) async fn list(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = state.refusal(&headers) {
        return refusal;
    }
    let armed: BTreeMap<String, String> = fail::list()
        .into_iter()
        .filter(|(_, action)| !action.is_empty())
        .collect();
    Json(armed).into_response()
}
