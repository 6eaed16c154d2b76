//! A node's lifecycle: open the stores, start Raft, create the cluster if this is a new
//! single node, and load the pool into it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::{Config as RaftConfig, SnapshotPolicy};

use super::log_store::{open_db, RocksLogStore};
use super::network::PeerNetwork;
use super::routes::PeerRoutes;
use super::state_machine::{LedgerStore, SharedLedger};
use super::{NodeAddr, NodeId, Raft, TypeConfig};

/// What a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// This node's id.
    pub id: NodeId,
    /// This node's addresses as other nodes and clients reach them.
    pub addr: NodeAddr,
    /// Data directory (Raft log, vote, snapshots).
    pub data_dir: std::path::PathBuf,
    /// Raft heartbeat interval, ms.
    pub heartbeat_ms: u64,
    /// Election timeout bounds, ms.
    pub election_ms: (u64, u64),
    /// Entries between snapshots.
    pub snapshot_every: u64,
    /// Address overrides for dialling peers (`--peer-route`).
    pub routes: PeerRoutes,
}

/// A running node: the Raft handle and the ledger it applies to.
#[derive(Clone)]
pub struct Node {
    /// This node's id.
    pub id: NodeId,
    /// The Raft handle.
    pub raft: Raft,
    /// The ledger, for reads.
    pub ledger: SharedLedger,
    /// Address overrides for dialling peers, shared with request forwarding.
    pub routes: PeerRoutes,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data directory could not be opened.
    #[error("cannot open data dir {path}: {reason}")]
    Storage {
        /// The path.
        path: String,
        /// What failed.
        reason: String,
    },
    /// Raft refused to start or to initialize.
    #[error("raft: {0}")]
    Raft(String),
}

/// Opens the stores under `options.data_dir` and starts Raft.
pub async fn start(options: &NodeOptions) -> Result<Node, NodeError> {
    let storage_error = |path: &Path, reason: String| NodeError::Storage {
        path: path.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(&options.data_dir)
        .map_err(|e| storage_error(&options.data_dir, e.to_string()))?;
    let log_dir = options.data_dir.join("raft-log");
    let db = open_db(&log_dir).map_err(|e| storage_error(&log_dir, e.to_string()))?;
    let log_store = RocksLogStore::<TypeConfig>::new(db);
    let snapshot_dir = options.data_dir.join("snapshots");
    let state_machine = LedgerStore::open(&snapshot_dir)
        .map_err(|e| storage_error(&snapshot_dir, e.to_string()))?;
    let ledger = state_machine.ledger();

    let config = RaftConfig {
        cluster_name: "licensed".to_string(),
        heartbeat_interval: options.heartbeat_ms,
        election_timeout_min: options.election_ms.0,
        election_timeout_max: options.election_ms.1,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_every),
        // Keep a whole snapshot interval of log behind each snapshot: a briefly lagging
        // follower catches up from the log rather than a snapshot transfer, and the purge
        // stays far behind the apply position (openraft #2116: a purge that overtakes a
        // queued apply panics the Raft core on loaded 2-core machines).
        max_in_snapshot_log_to_keep: options.snapshot_every.max(1_000),
        install_snapshot_timeout: 10_000,
        // A follower that missed heartbeats (a stall, a brief cut) asks before it bumps its
        // term, so it cannot depose a healthy leader when it comes back.
        enable_pre_vote: Some(true),
        ..RaftConfig::default()
    }
    .validate()
    .map_err(|e| NodeError::Raft(e.to_string()))?;

    let raft = Raft::new(
        options.id,
        Arc::new(config),
        PeerNetwork::new(options.id, options.routes.clone())
            .map_err(|e| NodeError::Raft(e.to_string()))?,
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| NodeError::Raft(e.to_string()))?;
    Ok(Node {
        id: options.id,
        raft,
        ledger,
        routes: options.routes.clone(),
    })
}

impl Node {
    /// Creates a one-node cluster on a fresh data dir; a no-op when this node already
    /// belongs to a cluster.
    pub async fn initialize_single(&self, addr: &NodeAddr) -> Result<bool, NodeError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        if initialized {
            return Ok(false);
        }
        let members = BTreeMap::from([(self.id, addr.clone())]);
        self.raft
            .initialize(members)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        Ok(true)
    }

    /// Waits until this node knows a leader and has applied what was committed before a
    /// restart, so that its first answers are not older than what it answered before.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), NodeError> {
        self.raft
            .wait_for_recovery(Some(timeout))
            .await
            .map_err(|e| NodeError::Raft(format!("recovery: {e}")))?;
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a known leader")
            .await
            .map_err(|e| NodeError::Raft(format!("no leader: {e}")))?;
        Ok(())
    }
}
