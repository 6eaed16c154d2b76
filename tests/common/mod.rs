//! Test harness: starts the real `licensed` binary on loopback with a temp data dir and
//! talks to it over HTTP like a client would.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

/// The seed's example license plus a few more, valid far into the future.
pub const SAMPLE_POOL: &str = r#"[
  {"feature":"MVTec_HDevelop","uuid":"118cf2e7b3d20001","version":"26.05","edition":"Progress","modules":"fc123bdomit","validUntil":"2099-12-31T23:59:59Z","count":1},
  {"feature":"MVTec_HALCON","uuid":"halcon-3","version":"26.05","edition":"Steady","modules":"fc","count":3},
  {"feature":"MVTec_HALCON","uuid":"short-lived","version":"25.11","edition":"Steady-Progress","modules":"","validFrom":"2020-01-01","validUntil":"2030-06-30","count":2,"maxBorrowDuration":"7d"},
  {"feature":"MVTec_HDevelop","uuid":"future","version":"27.05","edition":"Progress","modules":"f","validFrom":"2090-01-01T00:00:00Z","count":1}
]"#;

/// One `licensed` process.
pub struct Server {
    child: Option<Child>,
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// Data dir (kept across restarts).
    pub data_dir: PathBuf,
    api_addr: String,
    raft_addr: String,
    pool: PathBuf,
    _temp: Option<tempfile::TempDir>,
    http: reqwest::Client,
}

impl Server {
    /// Starts a fresh one-node server with `pool` (JSON text) in a new temp dir.
    pub fn start(pool: &str) -> Server {
        Self::start_with(pool, &[])
    }

    /// Like [`Server::start`] with extra command-line arguments.
    pub fn start_with(pool: &str, extra: &[&str]) -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let pool_path = temp.path().join("pool.json");
        std::fs::write(&pool_path, pool).expect("write pool");
        let data_dir = temp.path().join("data");
        let mut server = Server {
            child: None,
            url: String::new(),
            data_dir,
            api_addr: "127.0.0.1:0".into(),
            raft_addr: "127.0.0.1:0".into(),
            pool: pool_path,
            _temp: Some(temp),
            http: reqwest::Client::new(),
        };
        server.spawn(extra);
        server
    }

    fn spawn(&mut self, extra: &[&str]) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_licensed"))
            .args(["--listen", &self.api_addr, "--raft-listen", &self.raft_addr])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--pool")
            .arg(&self.pool)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start licensed");
        let rx = listening_url(&mut child);
        let url = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("licensed did not report its address in time");
        let addr = url.trim_start_matches("http://").to_string();
        self.api_addr = addr;
        self.url = url;
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, no flush — what a crash or power cut leaves.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same data dir and the same client address.
    pub fn restart(&mut self) {
        self.kill9();
        // A fresh client: pooled keep-alive connections to the dead process would fail
        // the first request after the restart.
        self.http = reqwest::Client::new();
        self.spawn(&[]);
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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
        match self.child.as_mut() {
            Some(child) => child
                .try_wait()
                .map(|status| status.is_none())
                .unwrap_or(false),
            None => false,
        }
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

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Watches a child's stdout for `licensed listening on URL`; the receiver yields the URL.
pub fn listening_url(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("licensed listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    rx
}

/// The error code of a response, panicking when it is a success.
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

/// A path next to the test binary's crate root.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub mod cluster;
pub mod wire;
