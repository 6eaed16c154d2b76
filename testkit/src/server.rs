//! One `licensed` node in a temporary directory, and the JSON-RPC calls the tests make to
//! it. A convenience for tests: failures panic with a clear message.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::{licensed_binary, NodeProcess, NodeSpec};

/// The Borrow API's example license plus a few more, valid far into the future.
pub const SAMPLE_POOL: &str = r#"[
  {"feature":"MVTec_HDevelop","uuid":"118cf2e7b3d20001","version":"26.05","edition":"Progress","modules":"fc123bdomit","validUntil":"2099-12-31T23:59:59Z","count":1},
  {"feature":"MVTec_HALCON","uuid":"halcon-3","version":"26.05","edition":"Steady","modules":"fc","count":3},
  {"feature":"MVTec_HALCON","uuid":"short-lived","version":"25.11","edition":"Steady-Progress","modules":"","validFrom":"2020-01-01","validUntil":"2030-06-30","count":2,"maxBorrowDuration":"7d"},
  {"feature":"MVTec_HDevelop","uuid":"future","version":"27.05","edition":"Progress","modules":"f","validFrom":"2090-01-01T00:00:00Z","count":1}
]"#;

/// How long a test node may take to print its ready line.
pub(crate) const TEST_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// One `licensed` process serving a pool from a temporary directory, on a client port the
/// kernel chose at the first start and keeps across restarts.
pub struct Server {
    /// Declared before the temporary directory: killed before it is deleted.
    node: NodeProcess,
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// Data dir (kept across restarts).
    pub data_dir: PathBuf,
    http: reqwest::Client,
    _temp: tempfile::TempDir,
}

impl Server {
    /// Starts a fresh one-node server with `pool` (JSON text) in a new temp dir.
    pub async fn start(pool: &str) -> Server {
        Self::start_with(pool, &[]).await
    }

    /// Like [`Server::start`] with extra command-line arguments (kept for restarts).
    pub async fn start_with(pool: &str, extra: &[&str]) -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let pool_path = temp.path().join("pool.json");
        std::fs::write(&pool_path, pool).expect("write pool");
        let data_dir = temp.path().join("data");
        let binary = licensed_binary().unwrap_or_else(|e| panic!("{e}"));
        let spec = NodeSpec::with_ports(1, binary, &data_dir, 0, 0)
            .arg("--pool")
            .arg(pool_path.display().to_string())
            .args(extra.iter().copied())
            .env("RUST_LOG", "warn")
            .inherit_stderr(true)
            .ready_timeout(TEST_READY_TIMEOUT);
        let mut node = NodeProcess::new(spec).unwrap_or_else(|e| panic!("{e}"));
        node.start()
            .await
            .unwrap_or_else(|e| panic!("licensed did not start: {e}"));
        Server {
            url: node.api_url(),
            node,
            data_dir,
            http: reqwest::Client::new(),
            _temp: temp,
        }
    }

    /// SIGKILL: no shutdown, no flush — what a crash or power cut leaves.
    pub async fn kill9(&mut self) {
        self.node
            .kill9()
            .await
            .unwrap_or_else(|e| panic!("killing licensed: {e}"));
    }

    /// Starts the process again on the same data dir and the same client address.
    pub async fn restart(&mut self) {
        self.kill9().await;
        // A fresh client: pooled keep-alive connections to the dead process would fail
        // the first request after the restart.
        self.http = reqwest::Client::new();
        self.node
            .start()
            .await
            .unwrap_or_else(|e| panic!("licensed did not restart: {e}"));
        self.url = self.node.api_url();
    }

    /// The node underneath.
    pub fn node(&mut self) -> &mut NodeProcess {
        &mut self.node
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.node.pid()
    }

    /// Resident memory of the process in KiB (`VmRSS`), while running.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.node.is_running()
    }

    /// The `/licenses` endpoint.
    pub fn endpoint(&self) -> String {
        format!("{}/licenses", self.url)
    }

    /// Sends a raw body; returns HTTP status and body text.
    pub async fn post_raw(&self, body: impl Into<reqwest::Body>) -> (u16, String) {
        let response = self
            .http
            .post(self.endpoint())
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// Sends a JSON value; returns the parsed response (asserting HTTP 200).
    pub async fn post(&self, body: &Value) -> Value {
        let (status, text) = self.post_raw(body.to_string()).await;
        assert_eq!(status, 200, "HTTP status for {body}: body {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("response is not JSON ({e}): {text}"))
    }

    /// Calls a method with id 1; returns the whole response object.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.post(&json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}))
            .await
    }

    /// Calls a method and returns its `result`, panicking on an error.
    pub async fn result(&self, method: &str, params: Value) -> Value {
        let response = self.call(method, params).await;
        match response.get("result") {
            Some(result) => result.clone(),
            None => panic!("{method} failed: {response}"),
        }
    }

    /// Calls a method and returns the error code, panicking on success.
    pub async fn error_code(&self, method: &str, params: Value) -> i64 {
        let response = self.call(method, params).await;
        error_code_of(&response)
    }

    /// GET a path; returns status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{}", self.url, path))
            .send()
            .await
            .expect("request");
        (
            response.status().as_u16(),
            response.text().await.expect("body"),
        )
    }
}

/// The error code of a JSON-RPC response, panicking when it is a success or its error has
/// no `data.reason`.
pub fn error_code_of(response: &Value) -> i64 {
    let error = response
        .get("error")
        .unwrap_or_else(|| panic!("expected an error, got {response}"));
    let reason = error["data"]["reason"].as_str().unwrap_or("");
    assert!(!reason.is_empty(), "error without a reason: {response}");
    error["code"].as_i64().expect("numeric code")
}

/// RFC 3339 for now + `secs`.
pub fn at(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
