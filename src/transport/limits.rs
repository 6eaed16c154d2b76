//! Per-request limits on the client port: how many requests run at once, how long a body
//! may take to arrive, and a deadline for the whole request (a batch included). Each
//! refusal is a JSON-RPC error with the flag to raise, and nothing a refused request sent
//! reaches the ledger.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::metrics;
use crate::rpc::envelope::error_response;
use crate::rpc::error::{RpcError, INTERNAL_ERROR};

/// Default for `--max-concurrent-requests`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 512;
/// Default for `--body-read-timeout-ms`.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for `--request-deadline-ms`.
pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// The request limits of one port.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    body_read_timeout: Duration,
    deadline: Duration,
}

/// The body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?} (--body-read-timeout-ms)")]
pub struct BodyReadTimeout(Duration);

impl RequestLimits {
    /// Limits with these bounds.
    pub fn new(max_in_flight: usize, body_read_timeout: Duration, deadline: Duration) -> Self {
        RequestLimits {
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            body_read_timeout,
            deadline,
        }
    }
}

/// Middleware: refuse beyond the concurrency bound, time the body, bound the whole request.
pub async fn guard(State(limits): State<RequestLimits>, request: Request, next: Next) -> Response {
    let Ok(_permit) = limits.in_flight.clone().try_acquire_owned() else {
        metrics::transport::refused("busy");
        return unavailable(format!(
            "server busy: {} requests in progress (--max-concurrent-requests); retry shortly",
            limits.max_in_flight
        ));
    };
    let (parts, body) = request.into_parts();
    let body = Body::from_stream(timed_body(body, limits.body_read_timeout));
    match tokio::time::timeout(limits.deadline, next.run(Request::from_parts(parts, body))).await {
        Ok(response) => response,
        Err(_) => {
            metrics::transport::refused("deadline");
            unavailable(format!(
                "the request did not finish within {:?} (--request-deadline-ms); writes in it may or may not have happened: retry them with the same requestId",
                limits.deadline
            ))
        }
    }
}

/// The body's chunks until `timeout` after the first poll; then one error and the end.
fn timed_body(
    body: Body,
    timeout: Duration,
) -> impl futures::Stream<Item = Result<axum::body::Bytes, axum::BoxError>> + Send {
    let deadline = tokio::time::Instant::now() + timeout;
    futures::stream::unfold(Some(body.into_data_stream()), move |stream| async move {
        let mut stream = stream?;
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(chunk)) => Some((chunk.map_err(axum::BoxError::from), Some(stream))),
            Ok(None) => None,
            Err(_) => {
                metrics::transport::refused("body_timeout");
                Some((Err(BodyReadTimeout(timeout).into()), None))
            }
        }
    })
}

/// HTTP 503 with `Retry-After` and a JSON-RPC error (-32603) carrying `reason`: load
/// balancers and clients alike can tell to come back.
pub fn unavailable(reason: String) -> Response {
    let body = error_response(
        serde_json::Value::Null,
        &RpcError::new(INTERNAL_ERROR, reason),
    );
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
