//! The JSON-RPC 2.0 envelope: single requests, batches and notifications.

use std::time::Instant;

use serde_json::{json, Map, Value};
use tracing::Instrument;

use crate::app::App;
use crate::metrics::rpc::{self as rpc_metrics, INVALID_REQUEST as INVALID_LABEL};

use super::error::{RpcError, INVALID_REQUEST, PARSE_ERROR};
use super::methods::{self, Caller};

/// A response (or a batch of them) as JSON text, ready to send.
pub type Reply = String;

/// Most requests one batch may carry; a larger batch is one `-32600` error.
pub const MAX_BATCH: usize = 1_000;

/// Answers a request body. `None` means "no body" (only notifications were sent).
pub async fn handle_body(app: &App, caller: Caller, body: &[u8]) -> Option<Reply> {
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => {
            let reason = if std::str::from_utf8(body).is_err() {
                "the body is not valid UTF-8".to_string()
            } else {
                format!("the body is not valid JSON: {e}")
            };
            rpc_metrics::observe_call(INVALID_LABEL, Some(PARSE_ERROR), 0.0);
            return Some(error_reply(
                Value::Null,
                &RpcError::new(PARSE_ERROR, reason),
            ));
        }
    };
    if let Value::Array(items) = &parsed {
        if items.is_empty() || items.len() > MAX_BATCH {
            rpc_metrics::observe_call(INVALID_LABEL, Some(INVALID_REQUEST), 0.0);
        } else {
            rpc_metrics::observe_batch(items.len());
        }
    }
    match parsed {
        Value::Array(items) if items.is_empty() => Some(error_reply(
            Value::Null,
            &RpcError::new(INVALID_REQUEST, "empty batch: send at least one request"),
        )),
        Value::Array(items) if items.len() > MAX_BATCH => Some(error_reply(
            Value::Null,
            &RpcError::new(
                INVALID_REQUEST,
                format!(
                    "batch of {} requests; at most {MAX_BATCH} per batch",
                    items.len()
                ),
            ),
        )),
        Value::Array(items) => {
            // In order, one after another: borrows in one batch apply in the order sent.
            let mut responses = Vec::with_capacity(items.len());
            for item in &items {
                if let Some(response) = handle_one(app, &caller, item).await {
                    responses.push(response);
                }
            }
            (!responses.is_empty()).then(|| format!("[{}]", responses.join(",")))
        }
        single => handle_one(app, &caller, &single).await,
    }
}

/// Answers one request object; `None` for a notification.
async fn handle_one(app: &App, caller: &Caller, request: &Value) -> Option<Reply> {
    let started = Instant::now();
    let object = match request {
        Value::Object(object) => object,
        _ => {
            rpc_metrics::observe_call(INVALID_LABEL, Some(INVALID_REQUEST), 0.0);
            return Some(error_reply(
                Value::Null,
                &RpcError::new(INVALID_REQUEST, "a request must be a JSON object"),
            ));
        }
    };
    let (id, method) = match validate(object) {
        Ok(parts) => parts,
        Err((id, error)) => {
            let label = match object.get("method") {
                Some(Value::String(method)) => rpc_metrics::method_label(method),
                _ => INVALID_LABEL,
            };
            rpc_metrics::observe_call(label, Some(error.code), started.elapsed().as_secs_f64());
            return Some(error_reply(id, &error));
        }
    };
    let label = rpc_metrics::method_label(method);
    let span = tracing::info_span!("call", otel.name = label, rpc.method = label);
    let outcome = methods::call(app, caller, method, object.get("params"))
        .instrument(span)
        .await;
    rpc_metrics::observe_call(
        label,
        outcome.as_ref().err().map(|error| error.code),
        started.elapsed().as_secs_f64(),
    );
    // A notification (no `id` member) is carried out but gets no answer.
    let id = id?;
    Some(match outcome {
        Ok(result) => success_reply(&result, &id),
        Err(error) => error_reply(id, &error),
    })
}

type Invalid = (Value, RpcError);

/// Checks the envelope and returns the id (`None` for a notification) and method.
fn validate(object: &Map<String, Value>) -> Result<(Option<Value>, &str), Invalid> {
    let id = match object.get("id") {
        None => None,
        Some(id @ (Value::Null | Value::String(_))) => Some(id.clone()),
        // Integers beyond 64 bits would come back rounded; refuse them rather than echo
        // a different id.
        Some(Value::Number(n))
            if n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.abs() < 9.0e15) =>
        {
            Some(Value::Number(n.clone()))
        }
        Some(_) => {
            return Err((
                Value::Null,
                RpcError::new(
                    INVALID_REQUEST,
                    "id must be a string, an integer within 64 bits, or null",
                ),
            ))
        }
    };
    let answer_id = id.clone().unwrap_or(Value::Null);
    let invalid = |reason: &str| Err((answer_id.clone(), RpcError::new(INVALID_REQUEST, reason)));
    match object.get("jsonrpc") {
        Some(Value::String(version)) if version == "2.0" => {}
        _ => return invalid("jsonrpc must be \"2.0\""),
    }
    let method = match object.get("method") {
        Some(Value::String(method)) => method.as_str(),
        Some(_) => return invalid("method must be a string"),
        None => return invalid("missing method"),
    };
    Ok((id, method))
}

/// A response carrying an error.
pub fn error_response(id: Value, error: &RpcError) -> Value {
    json!({ "jsonrpc": "2.0", "error": error.to_json(), "id": id })
}

fn error_reply(id: Value, error: &RpcError) -> Reply {
    error_response(id, error).to_string()
}

/// A successful response around `result`, JSON text our own serializer wrote: spliced in
/// as it is, in the member order a serialized response object has.
fn success_reply(result: &str, id: &Value) -> Reply {
    format!(r#"{{"jsonrpc":"2.0","result":{result},"id":{id}}}"#)
}
