//! What the engine drives: a [`Target`] makes one [`Worker`] per simulated client, and a
//! worker performs one operation at a time. The engine knows nothing of JSON-RPC or etcd;
//! that is what lets the same engine measure `licensed` and etcd the same way.

use std::future::Future;
use std::time::Duration;

use rand::rngs::StdRng;
use tokio::time::Instant;

use super::outcome::Failure;

/// The system under test.
pub trait Target: Send + Sync + 'static {
    /// The per-client state: its HTTP connection and whatever it remembers between requests.
    type Worker: Worker;

    /// The system's name in reports, e.g. `licensed`.
    fn name(&self) -> &'static str;

    /// The workload in reports, e.g. `borrow` or `borrow=70,get=30`.
    fn workload(&self) -> String;

    /// The node base URLs requests go to.
    fn urls(&self) -> &[String];

    /// Facts about the setup worth printing with the results (which licenses, caveats).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Creates worker `index`; workers are spread over [`Target::urls`] round-robin.
    fn worker(&self, index: usize) -> Result<Self::Worker, TargetError>;
}

/// One simulated client.
pub trait Worker: Send + 'static {
    /// Performs one operation and appends a [`Step`] per request it sent: usually one,
    /// two when the operation needs something first (a return with nothing to return
    /// borrows first), none if it could not even start.
    fn run_op(
        &mut self,
        rng: &mut StdRng,
        steps: &mut Vec<Step>,
    ) -> impl Future<Output = ()> + Send;
}

/// One request and how it went.
#[derive(Debug, Clone)]
pub struct Step {
    /// The operation kind, as named in reports.
    pub op: &'static str,
    /// When the request was sent.
    pub started: Instant,
    /// When its answer was complete (or the failure known).
    pub finished: Instant,
    /// Success, or the failure's class and message.
    pub result: Result<(), Failure>,
}

/// Why a worker could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    /// The target has no URL to send to.
    #[error("no node URL given")]
    NoUrl,
    /// A node URL is not usable.
    #[error("invalid node URL: {0}")]
    BadUrl(String),
}

/// Times `request` as operation `op`, appends its [`Step`], and hands back its value on
/// success.
pub async fn timed<T>(
    op: &'static str,
    steps: &mut Vec<Step>,
    request: impl Future<Output = Result<T, Failure>>,
) -> Option<T> {
    let started = Instant::now();
    let result = request.await;
    let finished = Instant::now();
    let (result, value) = match result {
        Ok(value) => (Ok(()), Some(value)),
        Err(failure) => (Err(failure), None),
    };
    steps.push(Step {
        op,
        started,
        finished,
        result,
    });
    value
}

/// An HTTP client for one worker: HTTP/1.1 keep-alive with a single pooled connection per
/// node (a worker has one request in flight at a time), and Nagle off, since small
/// request/response exchanges would otherwise wait on delayed ACKs.
pub fn worker_http_client(timeout: Duration) -> Result<reqwest::Client, TargetError> {
    Ok(reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()?)
}

/// The URL worker `index` talks to: round-robin over `urls`.
pub fn url_for_worker(urls: &[String], index: usize) -> Result<&str, TargetError> {
    if urls.is_empty() {
        return Err(TargetError::NoUrl);
    }
    Ok(&urls[index % urls.len()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::ErrorCode;

    #[test]
    fn workers_are_spread_round_robin() {
        let urls = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let picked: Vec<&str> = (0..5).map(|i| url_for_worker(&urls, i).unwrap()).collect();
        assert_eq!(picked, ["a", "b", "c", "a", "b"]);
        assert!(matches!(url_for_worker(&[], 0), Err(TargetError::NoUrl)));
    }

    #[tokio::test]
    async fn timed_requests_leave_one_step_each() {
        let mut steps = Vec::new();
        let value = timed("get", &mut steps, async { Ok::<_, Failure>(5) }).await;
        assert_eq!(value, Some(5));
        let value: Option<u8> = timed("get", &mut steps, async {
            Err(Failure::new(ErrorCode::Rpc(34), "no such borrow"))
        })
        .await;
        assert_eq!(value, None);
        assert_eq!(steps.len(), 2);
        assert!(steps[0].result.is_ok());
        assert_eq!(
            steps[1].result.as_ref().unwrap_err().code,
            ErrorCode::Rpc(34)
        );
        assert!(steps[1].finished >= steps[1].started);
    }
}
