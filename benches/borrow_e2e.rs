//! End-to-end `BorrowLicenseV1` throughput and latency against real `licensed`
//! processes: one node, then a 3-node cluster, with 1, 32 and 64 concurrent clients
//! (HTTP keep-alive, closed loop). Run: `cargo bench --profile dev --bench borrow_e2e`.
//! Set `BENCH_SECS` to change the measuring time per case (default 5).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const POOL: &str = r#"[{"feature":"MVTec_HALCON","uuid":"bench","version":"26.05","edition":"Steady","modules":"fc","count":100000000}]"#;

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// Starts `size` nodes; returns them and their client URLs.
fn start(size: usize, dir: &std::path::Path) -> (Vec<Node>, Vec<String>) {
    let pool = dir.join("pool.json");
    std::fs::write(&pool, POOL).expect("pool");
    let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, (_, raft))| format!("{}=127.0.0.1:{raft}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Vec::new();
    let mut waits = Vec::new();
    for (i, (api, raft)) in ports.iter().enumerate() {
        let mut command = Command::new(env!("CARGO_BIN_EXE_licensed"));
        command
            .args(["--node-id", &(i + 1).to_string()])
            .args(["--listen", &format!("127.0.0.1:{api}")])
            .args(["--raft-listen", &format!("127.0.0.1:{raft}")])
            .arg("--data-dir")
            .arg(dir.join(format!("node{}", i + 1)))
            .arg("--pool")
            .arg(&pool)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped());
        if size > 1 {
            command.args(["--peers", &peers]);
        }
        let mut child = command.spawn().expect("spawn licensed");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("licensed listening on ") {
                    let _ = tx.send(());
                }
            }
        });
        waits.push(rx);
        nodes.push(Node(child));
    }
    for wait in waits {
        wait.recv_timeout(Duration::from_secs(120)).expect("ready");
    }
    let urls = ports
        .iter()
        .map(|(api, _)| format!("http://127.0.0.1:{api}/licenses"))
        .collect();
    (nodes, urls)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn run(urls: &[String], clients: usize, secs: u64) -> (f64, Duration, Duration, usize) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let url = urls[c % urls.len()].clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let from = chrono::Utc::now() + chrono::Duration::seconds(60);
                let until = from + chrono::Duration::seconds(3600);
                let body = json!({"jsonrpc":"2.0","method":"BorrowLicenseV1","id":n,"params":{
                    "feature":"MVTec_HALCON","uuid":"bench","hostId":"MAC:0A0B0C0D0E0F",
                    "validFrom": from.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    "validUntil": until.format("%Y-%m-%dT%H:%M:%SZ").to_string()}});
                let started = Instant::now();
                let answer: Option<Value> = match http.post(&url).json(&body).send().await {
                    Ok(response) => response.json().await.ok(),
                    Err(_) => None,
                };
                match answer {
                    Some(answer) if answer.get("result").is_some() => {
                        latencies.push(started.elapsed())
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await.expect("client");
        all.extend(latencies);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64().max(secs as f64);
    all.sort();
    (
        all.len() as f64 / elapsed,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        errors,
    )
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for size in [1usize, 3] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_nodes, urls) = start(size, dir.path());
        for clients in [1usize, 32, 64] {
            // Warm-up, then measure.
            runtime.block_on(run(&urls, clients, 1));
            let (ops, p50, p99, errors) = runtime.block_on(run(&urls, clients, secs));
            println!(
                "borrow {size}-node {clients:>2} clients: {ops:>8.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {errors}",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            );
        }
    }
}
