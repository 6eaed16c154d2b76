//! A cluster of real `licensed` processes for a chaos run: every node has its own data
//! dir and ports, and every node-to-node link goes through a fault-injecting proxy
//! (`--peer-route`), so the nemesis can cut, delay or drop any link.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use licensed_testkit::{peers_arg, NodeProcess, NodeSpec};

use crate::proxy::ProxyMesh;

/// How to run the nodes.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Number of voters at the start (3 or 5).
    pub size: usize,
    /// The `licensed` executable.
    pub binary: PathBuf,
    /// Working directory: data dirs, logs, the pool file.
    pub dir: PathBuf,
    /// The pool (JSON).
    pub pool: String,
    /// Flags every node gets (timings, snapshot policy).
    pub args: Vec<String>,
    /// Environment every node gets.
    pub env: Vec<(String, String)>,
    /// Give this node (by id) a small tmpfs data dir, for the full-disk fault.
    pub tmpfs_node: Option<(u64, u64)>,
    /// Run every node under libfaketime (offset 0), so a clock skew can be set live.
    pub faketime: bool,
}

/// The running cluster.
pub struct ChaosCluster {
    config: ClusterConfig,
    /// Current members by id.
    pub nodes: BTreeMap<u64, NodeProcess>,
    /// The proxies between them.
    pub mesh: ProxyMesh,
    next_id: u64,
}

impl ChaosCluster {
    /// Starts `config.size` nodes that form a new cluster, all links through proxies.
    pub async fn start(config: ClusterConfig) -> anyhow::Result<ChaosCluster> {
        std::fs::create_dir_all(&config.dir)?;
        let pool_path = config.dir.join("pool.json");
        std::fs::write(&pool_path, &config.pool)?;
        let mut specs = Vec::new();
        for id in 1..=config.size as u64 {
            specs.push(Self::spec(&config, id)?);
        }
        let mesh = ProxyMesh::start(specs.iter().map(|s| (s.id, s.raft_addr()))).await?;
        let peers = peers_arg(&specs);
        let mut nodes = BTreeMap::new();
        for spec in specs {
            let id = spec.id;
            let spec = spec
                .args(["--pool".to_string(), pool_path.display().to_string()])
                .args(["--peers".to_string(), peers.clone()])
                .args(mesh.route_args(id));
            nodes.insert(id, NodeProcess::new(spec)?);
        }
        // Static bootstrap needs every peer up: start them together.
        let starts = nodes.values_mut().map(|node| node.start());
        for result in futures::future::join_all(starts).await {
            result?;
        }
        let cluster = ChaosCluster {
            next_id: config.size as u64 + 1,
            config,
            nodes,
            mesh,
        };
        if !cluster.wait_healthy(Duration::from_secs(60)).await {
            bail!("the new cluster did not become ready");
        }
        Ok(cluster)
    }

    fn spec(config: &ClusterConfig, id: u64) -> anyhow::Result<NodeSpec> {
        let mut spec = NodeSpec::new(
            id,
            &config.binary,
            config.dir.join(format!("node-{id}")).join("data"),
        )?
        .args(config.args.iter().cloned())
        .ready_timeout(Duration::from_secs(90));
        for (key, value) in &config.env {
            spec = spec.env(key.clone(), value.clone());
        }
        if config.faketime {
            spec = spec.clock_offset(0);
        }
        if let Some((tmpfs_id, bytes)) = config.tmpfs_node {
            if tmpfs_id == id {
                spec = spec.tmpfs(bytes);
            }
        }
        Ok(spec)
    }

    /// Member ids.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// `(name, client URL)` of every member, for the workload.
    pub fn targets(&self) -> Vec<(String, String)> {
        self.nodes
            .iter()
            .map(|(id, node)| (name(*id), node.api_url()))
            .collect()
    }

    /// A member.
    pub fn node(&mut self, id: u64) -> anyhow::Result<&mut NodeProcess> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| anyhow!("no node {id}"))
    }

    /// The leader, as the running, unpaused members that know one agree on it.
    pub async fn leader(&mut self) -> Option<u64> {
        let mut seen: Option<u64> = None;
        for node in self.nodes.values_mut() {
            if !node.is_running() || node.is_stopped() {
                continue;
            }
            let Ok(status) = node.status().await else {
                continue;
            };
            let Some(leader) = status.leader else {
                continue;
            };
            if seen.is_some_and(|s| s != leader) {
                return None;
            }
            seen = Some(leader);
        }
        seen.filter(|id| self.nodes.contains_key(id))
    }

    /// Waits for a leader.
    pub async fn wait_leader(&mut self, timeout: Duration) -> Option<u64> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader().await {
                return Some(leader);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every member runs and is ready (knows the leader, applied what is
    /// committed).
    pub async fn wait_healthy(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut all = true;
            for node in self.nodes.values() {
                all &= node.ready().await;
            }
            if all {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Restarts every stopped or crashed member and resumes paused ones.
    pub async fn revive_all(&mut self) -> anyhow::Result<()> {
        for node in self.nodes.values_mut() {
            if node.is_stopped() {
                node.sigcont()?;
            }
            if !node.is_running() {
                node.start().await?;
            }
        }
        Ok(())
    }

    /// Any running member other than `except`, to send admin requests through.
    fn any_other(&mut self, except: Option<u64>) -> anyhow::Result<u64> {
        self.nodes
            .iter_mut()
            .find_map(|(id, node)| {
                (Some(*id) != except && node.is_running() && !node.is_stopped()).then_some(*id)
            })
            .ok_or_else(|| anyhow!("no running member"))
    }

    /// Starts a new node that joins the running cluster (`--join`), and waits until it is
    /// a voter. Its links to the others go through new proxies; the others dial it
    /// directly (their routes were fixed at their start).
    pub async fn add_node(&mut self) -> anyhow::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let via = self.any_other(None)?;
        let join = self.node(via)?.raft_addr();
        let spec = Self::spec(&self.config, id)?;
        self.mesh.add_node(id, spec.raft_addr()).await?;
        let spec = spec
            .args(["--join".to_string(), join.to_string()])
            .args(self.mesh.route_args(id));
        let mut node = NodeProcess::new(spec)?;
        node.start().await?;
        self.nodes.insert(id, node);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let status = self.node(via)?.status().await.ok();
            let voter = status
                .as_ref()
                .is_some_and(|s| s.members.iter().any(|m| m.id == id && m.voter));
            if voter {
                return Ok(id);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("node {id} did not become a voter: {status:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Removes member `id` from the cluster (through another member) and stops it.
    pub async fn remove_node(&mut self, id: u64) -> anyhow::Result<NodeProcess> {
        let via = self.any_other(Some(id))?;
        let answer = self
            .node(via)?
            .remove_member(id, false, Duration::from_secs(60))
            .await
            .with_context(|| format!("removing node {id}"))?;
        tracing::info!(id, %answer, "node removed");
        let mut node = self
            .nodes
            .remove(&id)
            .ok_or_else(|| anyhow!("no node {id}"))?;
        if node.is_stopped() {
            node.sigcont()?;
        }
        node.kill9().await?;
        Ok(node)
    }

    /// Stops everything.
    pub async fn shutdown(mut self) {
        for node in self.nodes.values_mut() {
            if node.is_stopped() {
                let _ = node.sigcont();
            }
            let _ = node.kill9().await;
        }
        self.mesh.shutdown().await;
    }
}

/// The history's name of node `id`.
pub fn name(id: u64) -> String {
    format!("n{id}")
}
