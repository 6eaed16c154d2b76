//! Cluster harness: several real `licensed` processes on loopback, each with its own
//! data dir and ports, and the means to kill, pause, restart and add them.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// One node of a test cluster.
pub struct TestNode {
    /// Node id.
    pub id: u64,
    /// Client address `127.0.0.1:port`.
    pub api_addr: String,
    /// Raft address `127.0.0.1:port`.
    pub raft_addr: String,
    data_dir: PathBuf,
    child: Option<Child>,
    /// How this node first joined (`--peers ...` or `--join ...`).
    membership_args: Vec<String>,
    /// Extra environment for this node's process (e.g. libfaketime).
    env: Vec<(String, String)>,
    paused: bool,
}

impl TestNode {
    /// `http://api_addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A cluster of `licensed` processes.
pub struct Cluster {
    /// The nodes, by position (id = position + 1).
    pub nodes: Vec<TestNode>,
    pool: PathBuf,
    extra: Vec<String>,
    temp: tempfile::TempDir,
    http: reqwest::Client,
}

/// Picks a free loopback port (bind to port 0, release). Good enough for tests.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("free port")
}

impl Cluster {
    /// Starts `size` nodes that form a new cluster from `--peers`, with `pool` loaded.
    pub fn start(size: usize, pool: &str, extra: &[&str]) -> Cluster {
        let mut cluster = Cluster::unstarted(size, pool, extra);
        cluster.start_all();
        cluster
    }

    /// Starts every node of an [`Cluster::unstarted`] cluster; returns once all are ready.
    pub fn start_all(&mut self) {
        let waits: Vec<_> = (0..self.nodes.len()).map(|i| self.spawn(i)).collect();
        for wait in waits {
            wait.recv_timeout(Duration::from_secs(120))
                .expect("node did not become ready in time");
        }
    }

    /// Starts node `i` (of an [`Cluster::unstarted`] cluster) without waiting; the
    /// receiver yields once it prints that it is ready.
    pub fn spawn_node(&mut self, i: usize) -> mpsc::Receiver<String> {
        self.spawn(i)
    }

    /// `size` nodes of a new `--peers` cluster, none of them started yet.
    pub fn unstarted(size: usize, pool: &str, extra: &[&str]) -> Cluster {
        let temp = tempfile::tempdir().expect("temp dir");
        let pool_path = temp.path().join("pool.json");
        std::fs::write(&pool_path, pool).expect("write pool");
        let mut nodes = Vec::new();
        for i in 0..size {
            let id = i as u64 + 1;
            nodes.push(TestNode {
                id,
                api_addr: format!("127.0.0.1:{}", free_port()),
                raft_addr: format!("127.0.0.1:{}", free_port()),
                data_dir: temp.path().join(format!("node{id}")),
                child: None,
                membership_args: Vec::new(),
                env: Vec::new(),
                paused: false,
            });
        }
        let peers = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.raft_addr))
            .collect::<Vec<_>>()
            .join(",");
        for node in &mut nodes {
            node.membership_args = vec!["--peers".into(), peers.clone()];
        }
        Cluster {
            nodes,
            pool: pool_path,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            temp,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    /// Spawns node `i`; the receiver yields once it prints that it is listening.
    fn spawn(&mut self, i: usize) -> mpsc::Receiver<String> {
        let node = &mut self.nodes[i];
        let mut child = Command::new(env!("CARGO_BIN_EXE_licensed"))
            .args(["--node-id", &node.id.to_string()])
            .args(["--listen", &node.api_addr, "--raft-listen", &node.raft_addr])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .arg("--pool")
            .arg(&self.pool)
            .args(&node.membership_args)
            .args(&self.extra)
            .env("RUST_LOG", "warn")
            .envs(node.env.iter().map(|(key, value)| (key, value)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start licensed");
        let rx = super::listening_url(&mut child);
        node.child = Some(child);
        node.paused = false;
        rx
    }

    /// Runs node `i` (from its next start on) with its wall clock `offset` off, through
    /// Debian's libfaketime (`-1h`, `+30m`, ...); monotonic time stays real.
    pub fn set_clock_offset(&mut self, i: usize, offset: &str) {
        let library = ["x86_64", "aarch64"]
            .iter()
            .map(|arch| format!("/usr/lib/{arch}-linux-gnu/faketime/libfaketimeMT.so.1"))
            .chain(["/usr/lib/faketime/libfaketimeMT.so.1".to_string()])
            .find(|path| std::path::Path::new(path).exists())
            .expect("libfaketime (Debian package faketime) is installed");
        self.set_env(i, "LD_PRELOAD", &library);
        self.set_env(i, "FAKETIME", offset);
        self.set_env(i, "FAKETIME_DONT_FAKE_MONOTONIC", "1");
    }

    /// Sets an environment variable for node `i` (from its next start on), e.g. one of
    /// the `LICENSED_*` settings for this node only.
    pub fn set_env(&mut self, i: usize, key: &str, value: &str) {
        self.nodes[i].env.push((key.to_string(), value.to_string()));
    }

    /// Adds `args` to every node's command line (from their next start on).
    pub fn add_args(&mut self, args: &[&str]) {
        self.extra.extend(args.iter().map(|arg| arg.to_string()));
    }

    /// Deletes node `i`'s data dir (stop it first): a lost disk or volume.
    pub fn wipe(&mut self, i: usize) {
        let _ = std::fs::remove_dir_all(&self.nodes[i].data_dir);
    }

    /// SIGKILL node `i`.
    pub fn kill9(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(mut child) = node.child.take() {
            if node.paused {
                signal(child.id(), "CONT");
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        node.paused = false;
    }

    /// SIGTERM node `i` and wait for it to exit (graceful shutdown).
    pub fn terminate(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(mut child) = node.child.take() {
            signal(child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its data dir and addresses; waits until it is ready.
    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        let wait = self.spawn(i);
        wait.recv_timeout(Duration::from_secs(120))
            .expect("restarted node did not become ready in time");
    }

    /// Starts node `i` again without waiting for readiness.
    pub fn restart_no_wait(&mut self, i: usize) -> mpsc::Receiver<String> {
        self.kill9(i);
        self.spawn(i)
    }

    /// SIGSTOP node `i`.
    pub fn pause(&mut self, i: usize) {
        if let Some(pid) = self.nodes[i].pid() {
            signal(pid, "STOP");
            self.nodes[i].paused = true;
        }
    }

    /// SIGCONT node `i`.
    pub fn resume(&mut self, i: usize) {
        if let Some(pid) = self.nodes[i].pid() {
            signal(pid, "CONT");
            self.nodes[i].paused = false;
        }
    }

    /// Adds a new node that joins through node `via`; returns its index once it is a voter.
    pub fn add_node(&mut self, via: usize) -> usize {
        let id = self.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
        let join = self.nodes[via].raft_addr.clone();
        self.nodes.push(TestNode {
            id,
            api_addr: format!("127.0.0.1:{}", free_port()),
            raft_addr: format!("127.0.0.1:{}", free_port()),
            data_dir: self.temp.path().join(format!("node{id}")),
            child: None,
            membership_args: vec!["--join".into(), join],
            env: Vec::new(),
            paused: false,
        });
        let i = self.nodes.len() - 1;
        let wait = self.spawn(i);
        wait.recv_timeout(Duration::from_secs(120))
            .expect("new node did not become ready in time");
        i
    }

    /// Calls a JSON-RPC method on node `i`; returns the whole response.
    pub async fn call(&self, i: usize, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
        self.try_call(i, &body)
            .await
            .unwrap_or_else(|e| panic!("node {} did not answer {method}: {e}", self.nodes[i].id))
    }

    /// Like [`Cluster::call`] but reports transport failures instead of panicking.
    pub async fn try_call(&self, i: usize, body: &Value) -> Result<Value, String> {
        let response = self
            .http
            .post(format!("{}/licenses", self.nodes[i].url()))
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().as_u16() != 200 {
            return Err(format!("HTTP {}", response.status()));
        }
        response.json().await.map_err(|e| e.to_string())
    }

    /// Cluster status as node `i` sees it.
    pub async fn status(&self, i: usize) -> Value {
        self.http
            .get(format!(
                "http://{}/cluster/admin/status",
                self.nodes[i].raft_addr
            ))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("status json")
    }

    /// POSTs an admin request to node `i`'s node-to-node port.
    pub async fn admin(&self, i: usize, path: &str, body: Value) -> Value {
        self.http
            .post(format!("http://{}{path}", self.nodes[i].raft_addr))
            .timeout(Duration::from_secs(120))
            .json(&body)
            .send()
            .await
            .expect("admin")
            .json()
            .await
            .expect("admin json")
    }

    /// The leader's index, as the first running node that knows one reports it.
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for (i, node) in self.nodes.iter().enumerate() {
                if node.child.is_none() || node.paused {
                    continue;
                }
                let Ok(response) = self
                    .http
                    .get(format!("http://{}/cluster/admin/status", node.raft_addr))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                else {
                    continue;
                };
                let Ok(status) = response.json::<Value>().await else {
                    continue;
                };
                if let Some(leader) = status["leader"].as_u64() {
                    if let Some(index) = self.nodes.iter().position(|n| n.id == leader) {
                        if self.nodes[index].child.is_some() && !self.nodes[index].paused {
                            let _ = i;
                            return index;
                        }
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}
