//! HTTP: the axum router for clients (`/licenses`, health, metrics, public key, the web
//! console at `/ui`) and the serve loop with graceful shutdown.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tracing::Instrument;

use crate::app::App;
use crate::borrow::return_token::constant_time_eq;
use crate::metrics;
use crate::rpc::envelope::{error_response, handle_body};
use crate::rpc::error::{RpcError, INVALID_REQUEST};
use crate::rpc::methods::Caller;
use crate::rpc::objects::PublicKeyInfo;
use crate::transport::json_shape::JsonShape;

/// Shared state of the client router.
#[derive(Clone)]
pub struct ApiState {
    /// The application.
    pub app: Arc<App>,
    /// Largest accepted `/licenses` body.
    pub max_body_bytes: usize,
    /// Bounds on a body's JSON nesting and string lengths.
    pub shape: JsonShape,
    /// The admin token (`--admin-token`): a `/licenses` call that carries it as
    /// `Authorization: Bearer ...` may return any borrow.
    pub admin_token: Option<Arc<str>>,
    /// `--require-api-keys`: `/licenses` calls without a valid API key (or the admin
    /// token) are refused.
    pub require_api_keys: bool,
    /// Serve the web console at `/ui` (off with `--no-web-console`).
    pub web_console: bool,
}

impl ApiState {
    /// Who is calling, from `Authorization: Bearer <token>` (the scheme in any case): the
    /// admin token when it is configured and matches, an API key when the token starts
    /// with `lk_`. The key is checked later, per call; nothing here logs the token.
    fn caller(&self, headers: &HeaderMap) -> Caller {
        use crate::app::Credential;
        use crate::state::ApiKeyText;
        // RFC 6750: `Bearer <token>`, the scheme name in any case.
        let bearer_token = |value: &str| -> Option<String> {
            let (scheme, token) = value.split_once(' ')?;
            let token = token.trim();
            (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
        };
        let credential = match headers.get(header::AUTHORIZATION) {
            None => Credential::None,
            Some(value) => match value.to_str().ok().and_then(bearer_token) {
                None => Credential::Unrecognized,
                Some(given) => {
                    let admin = self
                        .admin_token
                        .as_ref()
                        .is_some_and(|token| constant_time_eq(token.as_bytes(), given.as_bytes()));
                    if admin {
                        Credential::AdminToken
                    } else if ApiKeyText::looks_like_key(&given) {
                        match ApiKeyText::parse(&given) {
                            Ok(key) => Credential::ApiKey(key),
                            Err(error) => Credential::MalformedKey(error),
                        }
                    } else {
                        Credential::Unrecognized
                    }
                }
            },
        };
        Caller {
            credential,
            keys_required: self.require_api_keys,
        }
    }
}

/// The client-facing router.
pub fn router(state: ApiState) -> Router {
    let console = if state.web_console {
        crate::console::router()
    } else {
        Router::new()
    };
    console
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

async fn licenses(State(state): State<ApiState>, headers: HeaderMap, body: Body) -> Response {
    let _in_flight = metrics::rpc::InFlight::start();
    let mut body = body.into_data_stream();
    let mut buffer = Vec::new();
    let mut too_large = false;
    let mut drained = 0usize;
    while let Some(chunk) = futures::StreamExt::next(&mut body).await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                metrics::rpc::observe_call(
                    metrics::rpc::INVALID_REQUEST,
                    Some(INVALID_REQUEST),
                    0.0,
                );
                let error = RpcError::new(
                    INVALID_REQUEST,
                    format!("the request body could not be read: {e}"),
                );
                return json_response(error_response(serde_json::Value::Null, &error));
            }
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
    let collected = collected.and_then(|bytes| match state.shape.check(&bytes) {
        Ok(()) => Ok(bytes),
        Err(e) => {
            metrics::transport::refused("shape");
            Err(e.to_string())
        }
    });
    let bytes: Bytes = match collected {
        Ok(bytes) => bytes,
        Err(reason) => {
            metrics::rpc::observe_call(metrics::rpc::INVALID_REQUEST, Some(INVALID_REQUEST), 0.0);
            let error = RpcError::new(INVALID_REQUEST, reason);
            return json_response(error_response(serde_json::Value::Null, &error));
        }
    };
    let span = tracing::info_span!("rpc", otel.name = "POST /licenses", otel.kind = "server");
    crate::telemetry::trace_export::continue_client_trace(&span, &headers);
    let reply = handle_body(&state.app, state.caller(&headers), &bytes)
        .instrument(span)
        .await;
    match reply {
        Some(reply) => json_text_response(reply),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Every JSON-RPC answer is HTTP 200, error or not (MVTec's client calls
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
    let (ready, reason) = state.app.readiness();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "ready": ready, "reason": reason, "node": state.app.node_id() })),
    )
        .into_response()
}

async fn metrics_text(State(state): State<ApiState>) -> Response {
    state.app.observe_metrics();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(),
    )
        .into_response()
}

async fn public_key(State(state): State<ApiState>) -> Response {
    match state.app.public_key() {
        Ok(key) => Json(PublicKeyInfo::from(&key)).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}
