//! The one retry loop of the request path: try, and while the failure is safe to retry
//! and the request timeout allows, pause and try again.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant as Deadline;

use super::AppError;

/// Pause between attempts while the cluster has no (reachable) leader.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// How one attempt failed.
pub(super) enum Failed {
    /// Trying again (here or on another node) is safe and may succeed; the reason is
    /// reported if the deadline runs out.
    Retriable(String),
    /// Give up with this error.
    Final(AppError),
}

/// Calls `attempt` (with the deadline) until it succeeds, fails finally, or
/// `request_timeout` has passed; `what` names the wait in the timeout error.
pub(super) async fn until_deadline<T, F, Fut>(
    request_timeout: Duration,
    what: &str,
    mut attempt: F,
) -> Result<T, AppError>
where
    F: FnMut(Deadline) -> Fut,
    Fut: Future<Output = Result<T, Failed>>,
{
    let deadline = Deadline::now() + request_timeout;
    loop {
        let last_error = match attempt(deadline).await {
            Ok(value) => return Ok(value),
            Err(Failed::Final(error)) => return Err(error),
            Err(Failed::Retriable(reason)) => reason,
        };
        if Deadline::now() + RETRY_PAUSE >= deadline {
            return Err(timeout_error(request_timeout, what, &last_error));
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// The error of a wait that ran out of time.
pub(super) fn timeout_error(request_timeout: Duration, what: &str, last_error: &str) -> AppError {
    AppError::Unavailable(format!(
        "no answer within {} ms waiting for {what}: no leader or no quorum ({last_error})",
        request_timeout.as_millis()
    ))
}
