//! HTTP: the axum router for clients (`/licenses`, health, metrics, public key) and the
//! serve loop with graceful shutdown.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::app::App;
use crate::metrics;
use crate::rpc::envelope::{error_response, handle_body};
use crate::rpc::error::{RpcError, INVALID_REQUEST};

/// Shared state of the client router.
#[derive(Clone)]
pub struct ApiState {
    /// The application.
    pub app: Arc<App>,
    /// Largest accepted `/licenses` body.
    pub max_body_bytes: usize,
}

/// The client-facing router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/licenses", post(licenses))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/public-key", get(public_key))
        // We enforce our own limit on `/licenses` so that an oversized body still gets a
        // JSON-RPC answer instead of a bare HTTP 413.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// After an oversized body, read and drop up to this much more so the client finishes
/// sending and reads our answer (instead of a broken pipe); beyond it, close.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

async fn licenses(State(state): State<ApiState>, body: Body) -> Response {
    let timer = metrics::request_timer();
    let mut body = body.into_data_stream();
    let mut buffer = Vec::new();
    let mut too_large = false;
    let mut drained = 0usize;
    while let Some(chunk) = futures::StreamExt::next(&mut body).await {
        let Ok(chunk) = chunk else {
            let error = RpcError::new(INVALID_REQUEST, "the request body could not be read");
            return json_response(error_response(serde_json::Value::Null, &error));
        };
        if too_large {
            drained += chunk.len();
            if drained > DRAIN_LIMIT {
                break;
            }
        } else if buffer.len() + chunk.len() > state.max_body_bytes {
            too_large = true;
            buffer = Vec::new();
        } else {
            buffer.extend_from_slice(&chunk);
        }
    }
    let collected: Result<Bytes, String> = if too_large {
        Err(format!(
            "the request body exceeds {} bytes",
            state.max_body_bytes
        ))
    } else {
        Ok(Bytes::from(buffer))
    };
    let bytes: Bytes = match collected {
        Ok(bytes) => bytes,
        Err(reason) => {
            let error = RpcError::new(INVALID_REQUEST, reason);
            return json_response(error_response(serde_json::Value::Null, &error));
        }
    };
    let response = match handle_body(&state.app, &bytes).await {
        Some(reply) => json_text_response(reply),
        None => StatusCode::NO_CONTENT.into_response(),
    };
    drop(timer);
    response
}

/// Every JSON-RPC answer is HTTP 200, error or not (the seed's client calls
/// `raise_for_status()` before it reads `error`).
fn json_response(value: serde_json::Value) -> Response {
    json_text_response(value.to_string())
}

fn json_text_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<ApiState>) -> Response {
    let metrics = crate::raft::metrics_of(&state.app.node().raft);
    let leader = metrics.current_leader;
    let applied = metrics.last_applied.as_ref().map(|id| id.index());
    let committed = metrics.local_committed.as_ref().map(|id| id.index());
    let (ready, reason) = match leader {
        None => (false, "no known leader".to_string()),
        Some(_) if applied < committed => (
            false,
            format!("applied {applied:?} is behind committed {committed:?}"),
        ),
        Some(leader) => (true, format!("leader {leader}")),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "ready": ready, "reason": reason, "node": state.app.node().id })),
    )
        .into_response()
}

async fn metrics_text(State(state): State<ApiState>) -> Response {
    metrics::observe_node(state.app.node());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(),
    )
        .into_response()
}

async fn public_key(State(state): State<ApiState>) -> Response {
    match state.app.public_key() {
        Ok(key) => Json(json!({
            "keyId": key.key_id(),
            "algorithm": "Ed25519",
            "publicKey": key.to_base64(),
            "pem": key.to_pem(),
        }))
        .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}
