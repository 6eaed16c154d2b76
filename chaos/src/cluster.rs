//! A cluster of real `licensed` processes for a chaos run: every node has its own data
//! dir and ports, every node-to-node link goes through a fault-injecting proxy
//! (`--peer-route`), and so does every client → node link, so the nemesis can cut, delay
//! or drop any of them.
//!
//! The ids a run may ever use are fixed at the start: the first voters and a few spares
//! for nodes that join later. Every id gets its ports and its proxies up front, and every
//! node is started with routes to every other id, so a node that joins later is reached
//! through proxies too (no node ever dials another directly). A spare that leaves the
//! cluster can come back later under the same id on a wiped data dir.
//!
//! With `power_loss`, each data dir is a [`PowerFs`] mount: writes reach the backing
//! directory, but what was not fsynced is dropped by [`ChaosCluster::power_cut`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use licensed_powerfs::{CutMode, CutReport, PowerFs};
use licensed_testkit::{peers_arg, NodeProcess, NodeSpec};

use crate::proxy::{LinkProxy, ProxyMesh, ProxyStats};

/// How to run the nodes.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Number of voters at the start (3 or 5).
    pub size: usize,
    /// Ids beyond the first voters that nodes joining later may take.
    pub spare_ids: usize,
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
    /// Put every data dir (but the tmpfs one) on a power-loss file system.
    pub power_loss: bool,
}

/// The running cluster.
pub struct ChaosCluster {
    /// Every id the run may use, with its ports and data dir.
    specs: BTreeMap<u64, NodeSpec>,
    /// Current members by id.
    pub nodes: BTreeMap<u64, NodeProcess>,
    /// The proxies between every pair of ids.
    pub mesh: ProxyMesh,
    /// The proxy in front of each id's client API: the workload's way in.
    clients: BTreeMap<u64, LinkProxy>,
    /// The power-loss file system under each id's data dir.
    disks: BTreeMap<u64, PowerFs>,
    /// Ids that ran once and left: their data dir is wiped before they come back.
    retired: BTreeSet<u64>,
    pool_path: PathBuf,
    peers: String,
}

impl ChaosCluster {
    /// Starts `config.size` nodes that form a new cluster, every link through proxies.
    pub async fn start(config: ClusterConfig) -> anyhow::Result<ChaosCluster> {
        std::fs::create_dir_all(&config.dir)?;
        let pool_path = config.dir.join("pool.json");
        std::fs::write(&pool_path, &config.pool)?;
        let all_ids = 1..=(config.size + config.spare_ids) as u64;
        let mut specs = BTreeMap::new();
        for id in all_ids {
            specs.insert(id, Self::spec(&config, id)?);
        }
        let mesh = ProxyMesh::start(specs.values().map(|s| (s.id, s.raft_addr()))).await?;
        let mut clients = BTreeMap::new();
        for (id, spec) in &specs {
            clients.insert(*id, LinkProxy::start(spec.api_addr()).await?);
        }
        let mut disks = BTreeMap::new();
        if config.power_loss {
            for (id, spec) in &specs {
                if spec.tmpfs_bytes.is_some() {
                    continue;
                }
                let backing = config.dir.join(format!("node-{id}")).join("disk");
                let disk = PowerFs::mount(&backing, &spec.data_dir)
                    .with_context(|| format!("mounting the power-loss file system of n{id}"))?;
                disks.insert(*id, disk);
            }
        }
        let founders: Vec<NodeSpec> = specs
            .values()
            .filter(|s| s.id <= config.size as u64)
            .cloned()
            .collect();
        let peers = peers_arg(&founders);
        let mut cluster = ChaosCluster {
            specs,
            nodes: BTreeMap::new(),
            mesh,
            clients,
            disks,
            retired: BTreeSet::new(),
            pool_path,
            peers,
        };
        for spec in founders {
            let args = cluster.founder_args(spec.id);
            let node = NodeProcess::new(spec.args(args))?;
            cluster.nodes.insert(node.id(), node);
        }
        // Static bootstrap needs every peer up: start them together.
        let starts = cluster.nodes.values_mut().map(|node| node.start());
        for result in futures::future::join_all(starts).await {
            result?;
        }
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

    /// Flags of a first voter: the pool, the first voters, routes to every id.
    fn founder_args(&self, id: u64) -> Vec<String> {
        let mut args = vec![
            "--pool".to_string(),
            self.pool_path.display().to_string(),
            "--peers".to_string(),
            self.peers.clone(),
        ];
        args.extend(self.mesh.route_args(id));
        args
    }

    /// Member ids.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// `(name, client URL)` of every member, through its client proxy: for the workload.
    pub fn targets(&self) -> Vec<(String, String)> {
        self.nodes
            .keys()
            .filter_map(|id| {
                let proxy = self.clients.get(id)?;
                Some((name(*id), format!("http://{}", proxy.listen_addr())))
            })
            .collect()
    }

    /// `(id, client URL)` of every member, straight to the node: for the final reads,
    /// taken once every fault is healed.
    pub fn direct_targets(&self) -> Vec<(u64, String)> {
        self.nodes
            .iter()
            .map(|(id, node)| (*id, node.api_url()))
            .collect()
    }

    /// The proxy in front of `id`'s client API.
    pub fn client_proxy(&self, id: u64) -> Option<&LinkProxy> {
        self.clients.get(&id)
    }

    /// Every client proxy, by id.
    pub fn client_proxies(&self) -> impl Iterator<Item = (u64, &LinkProxy)> + '_ {
        self.clients.iter().map(|(id, proxy)| (*id, proxy))
    }

    /// Takes every fault off every client proxy.
    pub fn heal_clients(&self) {
        for proxy in self.clients.values() {
            proxy.set_fault(crate::proxy::Fault::None);
        }
    }

    /// The summed counters of every node-to-node link into or out of `id`, and of its
    /// client proxy.
    pub fn link_stats_around(&self, id: u64) -> ProxyStats {
        let mut sum = ProxyStats::default();
        for ((from, to), stats) in self.mesh.stats() {
            if from == id || to == id {
                add_stats(&mut sum, &stats);
            }
        }
        sum
    }

    /// The summed counters of every node-to-node link.
    pub fn link_stats_all(&self) -> ProxyStats {
        let mut sum = ProxyStats::default();
        for stats in self.mesh.stats().values() {
            add_stats(&mut sum, stats);
        }
        sum
    }

    /// A member.
    pub fn node(&mut self, id: u64) -> anyhow::Result<&mut NodeProcess> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| anyhow!("no node {id}"))
    }

    /// Whether `id`'s data dir is on a power-loss file system.
    pub fn has_power_loss(&self, id: u64) -> bool {
        self.disks.contains_key(&id)
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

    /// Waits for a leader other than `old` (that `old` no longer leads is what a fault
    /// on the leader must show).
    pub async fn wait_new_leader(&mut self, old: u64, timeout: Duration) -> Option<u64> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader_among_others(old).await {
                return Some(leader);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The leader that the running members other than `except` agree on, if it is not
    /// `except`.
    async fn leader_among_others(&mut self, except: u64) -> Option<u64> {
        let mut seen: Option<u64> = None;
        for (id, node) in self.nodes.iter_mut() {
            if *id == except || !node.is_running() || node.is_stopped() {
                continue;
            }
            let leader = node.status().await.ok()?.leader?;
            if seen.is_some_and(|s| s != leader) {
                return None;
            }
            seen = Some(leader);
        }
        seen.filter(|leader| *leader != except)
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

    /// Restarts every stopped or crashed member and resumes paused ones; all of them at
    /// once, since a restarted member may need the others to become ready.
    pub async fn revive_all(&mut self) -> anyhow::Result<()> {
        for node in self.nodes.values_mut() {
            if node.is_stopped() {
                node.sigcont()?;
            }
        }
        let down: BTreeSet<u64> = self
            .nodes
            .iter_mut()
            .filter_map(|(id, node)| (!node.is_running()).then_some(*id))
            .collect();
        let starts = self
            .nodes
            .iter_mut()
            .filter(|(id, _)| down.contains(id))
            .map(|(_, node)| node.start());
        for result in futures::future::join_all(starts).await {
            result?;
        }
        Ok(())
    }

    /// The member to send admin requests through: the leader unless it is `except`,
    /// else any running member other than `except`. (Not just any member: one cut off by
    /// a partition could not pass the request on.)
    async fn via(&mut self, except: Option<u64>) -> anyhow::Result<u64> {
        match self.wait_leader(Duration::from_secs(30)).await {
            Some(leader) if Some(leader) != except => Ok(leader),
            _ => self.any_other(except),
        }
    }

    /// Any running member other than `except`.
    fn any_other(&mut self, except: Option<u64>) -> anyhow::Result<u64> {
        self.nodes
            .iter_mut()
            .find_map(|(id, node)| {
                (Some(*id) != except && node.is_running() && !node.is_stopped()).then_some(*id)
            })
            .ok_or_else(|| anyhow!("no running member"))
    }

    /// An id that is not a member now (a spare, or a first voter that was removed), if
    /// any.
    pub fn free_id(&self) -> Option<u64> {
        self.specs
            .keys()
            .copied()
            .find(|id| !self.nodes.contains_key(id))
    }

    /// Starts a node under a free id that joins the running cluster (`--join`) through a
    /// member other than `avoid` (the leader about to crash, say), and waits until it is
    /// a voter. An id that was a member before comes back on a wiped data dir.
    pub async fn add_node(&mut self, avoid: Option<u64>) -> anyhow::Result<u64> {
        let id = self
            .free_id()
            .ok_or_else(|| anyhow!("every spare id is a member"))?;
        let via = self.via(avoid).await?;
        let join = self.node(via)?.raft_addr();
        let spec = self
            .specs
            .get(&id)
            .cloned()
            .ok_or_else(|| anyhow!("no spec for node {id}"))?;
        let spec = spec
            .args(["--join".to_string(), join.to_string()])
            .args(self.mesh.route_args(id));
        let mut node = NodeProcess::new(spec)?;
        if self.retired.remove(&id) {
            node.wipe_data_dir()?;
        }
        node.start().await?;
        self.nodes.insert(id, node);
        self.wait_voter(id, via, Duration::from_secs(120)).await?;
        Ok(id)
    }

    /// Waits until member `via` sees `id` as a voter.
    pub async fn wait_voter(&mut self, id: u64, via: u64, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.node(via)?.status().await.ok();
            let voter = status
                .as_ref()
                .is_some_and(|s| s.members.iter().any(|m| m.id == id && m.voter));
            if voter {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("node {id} did not become a voter: {status:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Removes member `id` from the cluster (through another member) and stops it. Its id
    /// may come back later on a wiped data dir.
    pub async fn remove_node(&mut self, id: u64) -> anyhow::Result<()> {
        let via = self.via(Some(id)).await?;
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
        self.retired.insert(id);
        Ok(())
    }

    /// A power cut on `ids` at the same instant: each is killed, loses what it had not
    /// fsynced (torn at a page when `mode` says so), and is started again (all at once,
    /// since a cut majority needs each other to become ready).
    pub async fn power_cut(
        &mut self,
        ids: &[u64],
        mode: CutMode,
    ) -> anyhow::Result<Vec<(u64, CutReport)>> {
        for id in ids {
            if !self.disks.contains_key(id) {
                bail!("n{id} is not on a power-loss file system");
            }
            let node = self.node(*id)?;
            if node.is_stopped() {
                node.sigcont()?;
            }
            node.kill9().await?;
        }
        let mut reports = Vec::new();
        for id in ids {
            let disk = self
                .disks
                .get_mut(id)
                .ok_or_else(|| anyhow!("n{id} has no power-loss file system"))?;
            let report = disk
                .power_cut(mode)
                .with_context(|| format!("power cut on n{id}"))?;
            reports.push((*id, report));
        }
        self.revive_all().await?;
        Ok(reports)
    }

    /// Stops everything.
    pub async fn shutdown(mut self) {
        for node in self.nodes.values_mut() {
            if node.is_stopped() {
                let _ = node.sigcont();
            }
            let _ = node.kill9().await;
        }
        self.nodes.clear();
        self.mesh.shutdown().await;
        for proxy in self.clients.values() {
            proxy.shutdown().await;
        }
        for (id, disk) in std::mem::take(&mut self.disks) {
            if let Err(e) = disk.unmount() {
                tracing::warn!(id, error = %e, "unmounting a power-loss file system");
            }
        }
    }
}

fn add_stats(sum: &mut ProxyStats, stats: &ProxyStats) {
    sum.accepted += stats.accepted;
    sum.active += stats.active;
    sum.bytes_to_target += stats.bytes_to_target;
    sum.bytes_from_target += stats.bytes_from_target;
    sum.bytes_discarded += stats.bytes_discarded;
    sum.resets += stats.resets;
    sum.target_unreachable += stats.target_unreachable;
    sum.chunks_delayed += stats.chunks_delayed;
}

/// The history's name of node `id`.
pub fn name(id: u64) -> String {
    format!("n{id}")
}
