//! Several `licensed` nodes on loopback, each with its own data dir and ports, and the
//! means to kill, pause, restart, wipe and add them. A convenience for tests: failures
//! panic with a clear message.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use licensed::cluster::admin::AdminError;
use serde_json::{json, Value};

use crate::server::TEST_READY_TIMEOUT;
use crate::{licensed_binary, NodeProcess, NodeSpec, ReadySignal};

/// How long a test waits for a leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before the node is killed.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on an admin change (a learner may have to catch up first).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(120);

/// A cluster of `licensed` processes, addressed by position (node id = position + 1).
pub struct Cluster {
    /// The nodes, by position.
    pub nodes: Vec<NodeProcess>,
    binary: PathBuf,
    pool: PathBuf,
    extra: Vec<String>,
    http: reqwest::Client,
    /// Declared last: the nodes are killed before their directories go.
    temp: tempfile::TempDir,
}

impl Cluster {
    /// Starts `size` nodes that form a new cluster from `--peers`, with `pool` loaded and
    /// `extra` flags on every node; returns once all print their ready line.
    pub async fn start(size: usize, pool: &str, extra: &[&str]) -> Cluster {
        let mut cluster = Cluster::unstarted(size, pool, extra);
        cluster.start_all().await;
        cluster
    }

    /// `size` nodes of a new `--peers` cluster, none of them started yet.
    pub fn unstarted(size: usize, pool: &str, extra: &[&str]) -> Cluster {
        let temp = tempfile::tempdir().expect("temp dir");
        let pool_path = temp.path().join("pool.json");
        std::fs::write(&pool_path, pool).expect("write pool");
        let mut cluster = Cluster {
            nodes: Vec::new(),
            binary: licensed_binary().unwrap_or_else(|e| panic!("{e}")),
            pool: pool_path,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            temp,
        };
        let specs: Vec<NodeSpec> = (1..=size as u64).map(|id| cluster.spec(id)).collect();
        let peers = crate::peers_arg(&specs);
        for spec in specs {
            let spec = spec.args(["--peers", &peers]);
            cluster.push(spec);
        }
        cluster
    }

    /// The spec of a test node: its data dir in the cluster's directory, the pool, the
    /// extra flags so far, warnings on the test's stderr.
    fn spec(&self, id: u64) -> NodeSpec {
        let data_dir = self.temp.path().join(format!("node-{id}")).join("data");
        NodeSpec::new(id, &self.binary, data_dir)
            .expect("free ports")
            .arg("--pool")
            .arg(self.pool.display().to_string())
            .env("RUST_LOG", "warn")
            .inherit_stderr(true)
            .ready_timeout(TEST_READY_TIMEOUT)
    }

    /// Adds a node of `spec` (the extra flags appended) without starting it.
    fn push(&mut self, spec: NodeSpec) -> usize {
        let spec = spec.args(self.extra.iter().cloned());
        let node = NodeProcess::new(spec).unwrap_or_else(|e| panic!("{e}"));
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Starts every node of an [`Cluster::unstarted`] cluster together (static bootstrap
    /// needs every peer); returns once all are ready.
    pub async fn start_all(&mut self) {
        let starts = self.nodes.iter_mut().map(NodeProcess::start);
        for result in futures::future::join_all(starts).await {
            result.unwrap_or_else(|e| panic!("node did not become ready in time: {e}"));
        }
    }

    /// Starts node `i` (of an [`Cluster::unstarted`] cluster) without waiting; the signal
    /// reports its ready line.
    pub fn spawn_node(&mut self, i: usize) -> ReadySignal {
        self.nodes[i]
            .spawn()
            .unwrap_or_else(|e| panic!("starting node {}: {e}", i + 1))
    }

    /// Runs node `i` (from its next start on) with its wall clock `secs` off (negative:
    /// behind), through libfaketime; monotonic time stays real.
    pub fn set_clock_offset(&mut self, i: usize, secs: i64) {
        self.nodes[i]
            .set_clock_offset(secs)
            .unwrap_or_else(|e| panic!("libfaketime (Debian package faketime) is needed: {e}"));
    }

    /// Sets an environment variable for node `i` (from its next start on), e.g. one of
    /// the `LICENSED_*` settings for this node only.
    pub fn set_env(&mut self, i: usize, key: &str, value: &str) {
        self.nodes[i].set_env(key, Some(value));
    }

    /// Adds `args` to every node's command line (from their next start on), and to the
    /// nodes added later.
    pub fn add_args(&mut self, args: &[&str]) {
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        for node in &mut self.nodes {
            let mut all = node.spec().args.clone();
            all.extend(args.iter().cloned());
            node.set_args(all);
        }
        self.extra.extend(args);
    }

    /// Deletes what is in node `i`'s data dir (stop it first): a lost disk or volume.
    pub fn wipe(&mut self, i: usize) {
        self.nodes[i]
            .wipe_data_dir()
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// SIGKILL node `i` (frozen or not) and reap it.
    pub async fn kill9(&mut self, i: usize) {
        self.nodes[i]
            .kill9()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// SIGTERM node `i` and wait for it to exit (graceful shutdown); killed after 30 s.
    pub async fn terminate(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.is_running() {
            // A timeout has killed it: stopped either way.
            let _ = node.sigterm_and_wait(TERMINATE_TIMEOUT).await;
        }
    }

    /// Starts node `i` again on its data dir and addresses; waits until it is ready.
    pub async fn restart(&mut self, i: usize) {
        self.nodes[i]
            .restart()
            .await
            .unwrap_or_else(|e| panic!("restarted node did not become ready in time: {e}"));
    }

    /// Starts node `i` again without waiting for readiness.
    pub async fn restart_no_wait(&mut self, i: usize) -> ReadySignal {
        self.kill9(i).await;
        self.spawn_node(i)
    }

    /// SIGSTOP node `i`, returning once it is stopped (see [`NodeProcess::sigstop`]).
    pub fn pause(&mut self, i: usize) {
        let _ = self.nodes[i].sigstop();
    }

    /// SIGCONT node `i`.
    pub fn resume(&mut self, i: usize) {
        let _ = self.nodes[i].sigcont();
    }

    /// Adds a new node that joins through node `via`; returns its index once it is ready.
    pub async fn add_node(&mut self, via: usize) -> usize {
        let id = self.nodes.iter().map(NodeProcess::id).max().unwrap_or(0) + 1;
        let join = self.nodes[via].raft_addr().to_string();
        let spec = self.spec(id).args(["--join", &join]);
        let i = self.push(spec);
        self.nodes[i]
            .start()
            .await
            .unwrap_or_else(|e| panic!("new node did not become ready in time: {e}"));
        i
    }

    /// Calls a JSON-RPC method on node `i`; returns the whole response.
    pub async fn call(&self, i: usize, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
        self.try_call(i, &body)
            .await
            .unwrap_or_else(|e| panic!("node {} did not answer {method}: {e}", i + 1))
    }

    /// Like [`Cluster::call`] with a whole request body; reports transport failures and
    /// statuses other than 200 instead of panicking.
    pub async fn try_call(&self, i: usize, body: &Value) -> Result<Value, String> {
        let response = self
            .http
            .post(format!("{}/licenses", self.nodes[i].api_url()))
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().as_u16() != 200 {
            return Err(format!("HTTP {}", response.status()));
        }
        response.json().await.map_err(|e| e.to_string())
    }

    /// Node `i`'s client API base URL (`http://127.0.0.1:PORT`).
    pub fn api_url(&self, i: usize) -> String {
        self.nodes[i].api_url()
    }

    /// Node `i`'s `/metrics` text.
    pub async fn scrape(&self, i: usize) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.nodes[i].api_url()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("node {} did not answer /metrics: {e}", i + 1));
        assert_eq!(
            response.status().as_u16(),
            200,
            "/metrics of node {}",
            i + 1
        );
        response
            .text()
            .await
            .unwrap_or_else(|e| panic!("node {} /metrics body: {e}", i + 1))
    }

    /// Cluster status as node `i` sees it, as the JSON the node sent.
    pub async fn status(&self, i: usize) -> Value {
        let status = self.nodes[i]
            .status()
            .await
            .unwrap_or_else(|e| panic!("status: {e}"));
        serde_json::to_value(status).expect("status as JSON")
    }

    /// Asks the cluster, through node `i`, to hand leadership to the node with id `to`.
    pub async fn transfer_leader(&self, i: usize, to: u64) -> Result<String, AdminError> {
        self.admin_change(i, self.nodes[i].admin().transfer_leader(to))
            .await
    }

    /// Asks the cluster, through node `i`, to remove the node with id `id`; `force` allows
    /// leaving fewer healthy voters than a quorum.
    pub async fn remove_member(
        &self,
        i: usize,
        id: u64,
        force: bool,
    ) -> Result<String, AdminError> {
        self.admin_change(i, self.nodes[i].admin().remove(id, force))
            .await
    }

    async fn admin_change(
        &self,
        i: usize,
        change: impl std::future::Future<Output = Result<String, AdminError>>,
    ) -> Result<String, AdminError> {
        tokio::time::timeout(ADMIN_TIMEOUT, change)
            .await
            .unwrap_or_else(|_| panic!("node {} gave no admin answer in time", i + 1))
    }

    /// The leader's index, as the first running, unpaused node that knows one reports it
    /// (waits up to a minute for one).
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + LEADER_TIMEOUT;
        loop {
            for node in &self.nodes {
                if !node.is_started() || node.is_stopped() {
                    continue;
                }
                let Ok(status) = node.status().await else {
                    continue;
                };
                let Some(leader) = status.leader else {
                    continue;
                };
                if let Some(index) = self.nodes.iter().position(|n| n.id() == leader) {
                    let candidate = &self.nodes[index];
                    if candidate.is_started() && !candidate.is_stopped() {
                        return index;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
