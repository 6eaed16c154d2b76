//! A real Prometheus server (Debian's `/usr/bin/prometheus`, package `prometheus`) for the
//! tests of the operator artefacts under `deploy/`: started on a free loopback port with its
//! configuration and storage in a temporary directory, queried over its HTTP API, killed
//! when dropped.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long Prometheus may take to answer `/-/ready` (a slow machine, a cold disk).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The path of a file of this package (`deploy/...`).
pub fn package_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// What Prometheus scrapes and evaluates.
pub struct Config<'a> {
    /// The `job_name` of the scrape job.
    pub job: &'a str,
    /// `host:port` of every target, scraped on `/metrics`.
    pub targets: Vec<String>,
    /// Scrape and rule evaluation interval, in seconds.
    pub interval_secs: u64,
    /// Rule files to load (absolute paths).
    pub rule_files: Vec<PathBuf>,
}

/// A running Prometheus; killed (by its process id) and reaped on drop.
pub struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    http: reqwest::Client,
    log: PathBuf,
    /// Declared last: the process goes before its storage does.
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `config`; returns once `/-/ready` answers 200.
    pub async fn start(config: &Config<'_>) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir for Prometheus");
        let port = licensed_testkit::free_port().expect("a free port for Prometheus");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, render_config(config)).expect("write prometheus.yml");
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("Prometheus log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("prometheus (Debian package prometheus) must be installed: {e}")
            });
        let mut prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
            log,
            _dir: dir,
        };
        prometheus.wait_ready().await;
        prometheus
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "prometheus exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            let ready = self
                .http
                .get(format!("{}/-/ready", self.url))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within {READY_TIMEOUT:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `GET path` on the HTTP API (`/api/v1/...`, with `query` as URL parameters), as JSON
    /// whatever the status; `Err` on a transport failure or a body that is not JSON.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .query(query)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        serde_json::from_str(&body).map_err(|e| format!("GET {path}: HTTP {status}, {e}: {body}"))
    }

    /// An instant query at the current time: the whole API response.
    pub async fn query(&self, expr: &str) -> Result<Value, String> {
        self.get("/api/v1/query", &[("query", expr)]).await
    }

    /// The value of a query that yields a single sample, if it does.
    pub async fn scalar(&self, expr: &str) -> Option<f64> {
        let answer = self.query(expr).await.ok()?;
        let result = answer["data"]["result"].as_array()?;
        match result.as_slice() {
            [sample] => sample["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// Prometheus's own log so far (for failure messages): its last 60 lines.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `prometheus.yml` of `config`.
fn render_config(config: &Config<'_>) -> String {
    let mut text = String::new();
    let interval = config.interval_secs;
    let _ = writeln!(text, "global:");
    let _ = writeln!(text, "  scrape_interval: {interval}s");
    let _ = writeln!(text, "  scrape_timeout: {interval}s");
    let _ = writeln!(text, "  evaluation_interval: {interval}s");
    let _ = writeln!(text, "rule_files:");
    for file in &config.rule_files {
        let _ = writeln!(text, "  - {:?}", file.display().to_string());
    }
    if config.rule_files.is_empty() {
        text.push_str("  []\n");
    }
    let _ = writeln!(text, "scrape_configs:");
    let _ = writeln!(text, "  - job_name: {:?}", config.job);
    let _ = writeln!(text, "    metrics_path: /metrics");
    let _ = writeln!(text, "    static_configs:");
    let _ = writeln!(text, "      - targets:");
    for target in &config.targets {
        let _ = writeln!(text, "          - {target:?}");
    }
    if config.targets.is_empty() {
        text.push_str("          []\n");
    }
    text
}
