//! A node's lifecycle: open the stores, start Raft, create the cluster if this is a new
//! single node, and load the pool into it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::{Config as RaftConfig, SnapshotPolicy};

use super::clock::ClockBook;
use super::identity::IdentityStore;
use super::log_repair;
use super::log_store::{open_db, FsyncStats, RocksLogStore};
use super::network::PeerNetwork;
use super::routes::PeerRoutes;
use super::state_machine::{LedgerStore, SharedLedger, SnapshotCounters};
use super::{NodeAddr, NodeId, Raft, TypeConfig};
use crate::transport::peer::PeerDialer;

/// What a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// This node's id.
    pub id: NodeId,
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
    /// `--max-clock-offset-ms`: how far this node's clock may be off a quorum's while it
    /// leads (see the `raft::clock` module).
    pub max_clock_offset: Duration,
    /// How to dial peers: scheme, TLS, request signing.
    pub dialer: PeerDialer,
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
    /// Snapshots built and installed since start, for the cluster status.
    pub snapshots: Arc<SnapshotCounters>,
    /// The Raft log's WAL sync counters, for metrics.
    pub fsync: Arc<FsyncStats>,
    /// Address overrides for dialling peers, shared with request forwarding.
    pub routes: PeerRoutes,
    /// Peer clock offsets: whether this node may stamp while it leads.
    pub clocks: Arc<ClockBook>,
    /// Its cluster and whether this data dir was admitted into it.
    pub identity: Arc<IdentityStore>,
    /// The data directory, for its size in the metrics.
    pub data_dir: std::path::PathBuf,
    /// How to dial peers: scheme, TLS, request signing.
    pub dialer: PeerDialer,
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
    let identity = IdentityStore::open(&options.data_dir, options.id, log_dir.exists())
        .map_err(|e| storage_error(&options.data_dir, e.to_string()))?;
    let db = open_db(&log_dir).map_err(|e| storage_error(&log_dir, e.to_string()))?;
    let repair = log_repair::check_and_repair::<TypeConfig>(&db)
        .map_err(|e| storage_error(&log_dir, e.to_string()))?;
    if repair.repaired() {
        tracing::warn!(
            entries = repair.entries,
            hole_at = ?repair.hole_at,
            dropped = repair.dropped,
            committed_cleared = repair.committed_cleared,
            "the Raft log came back with a hole (unsynced writes lost out of order in a power \
             loss); dropped everything from the hole on, the leader sends it again"
        );
    }
    let log_store = RocksLogStore::<TypeConfig>::new(db);
    let fsync = log_store.fsync_stats();
    let snapshot_dir = options.data_dir.join("snapshots");
    // Decoding a large snapshot takes seconds: off the async workers.
    let dir = snapshot_dir.clone();
    let state_machine = tokio::task::spawn_blocking(move || LedgerStore::open(&dir))
        .await
        .map_err(|e| storage_error(&snapshot_dir, e.to_string()))?
        .map_err(|e| storage_error(&snapshot_dir, e.to_string()))?;
    let ledger = state_machine.ledger();
    let snapshots = state_machine.snapshot_counters();
    let clocks = ClockBook::new(options.max_clock_offset);

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
        // A leader that restarts stands for election in a new term instead of leading on
        // in its old one. A leader sends entries before its own WAL sync completes, so a
        // power cut can take entries from the leader's log that a follower kept; leading on
        // in the same term, it would write different entries under the very same log ids,
        // the follower would take them for the ones it has, and its ledger would part from
        // the others (lost and phantom borrows on that node; found by the chaos suite's
        // power cuts). A new term gives the new entries new ids, so the follower's stale
        // suffix conflicts and is truncated.
        enable_leader_restore: Some(false),
        ..RaftConfig::default()
    }
    .validate()
    .map_err(|e| NodeError::Raft(e.to_string()))?;

    let raft = Raft::new(
        options.id,
        Arc::new(config),
        PeerNetwork::new(
            options.id,
            options.routes.clone(),
            clocks.clone(),
            options.dialer.clone(),
        )
        .map_err(|e| NodeError::Raft(e.to_string()))?
        .with_identity(identity.clone()),
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| NodeError::Raft(e.to_string()))?;
    tokio::spawn(crate::metrics::watch_raft(raft.clone()));
    tokio::spawn(hand_over_when_clock_is_off(
        raft.clone(),
        clocks.clone(),
        options.id,
    ));
    Ok(Node {
        id: options.id,
        raft,
        ledger,
        snapshots,
        fsync,
        routes: options.routes.clone(),
        clocks,
        identity,
        data_dir: options.data_dir.clone(),
        dialer: options.dialer.clone(),
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
        let cluster_id = self
            .identity
            .get()
            .cluster_id
            .unwrap_or_else(uuid::Uuid::new_v4);
        self.identity
            .admit(cluster_id)
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let members = BTreeMap::from([(self.id, addr.clone())]);
        self.raft
            .initialize(members)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        Ok(true)
    }

    /// Whether this node's clock is fit for its role: a leader's agrees with a quorum of
    /// the voters' (else it does not stamp), a follower's with its leader's. `Err` says
    /// how far off it is.
    pub fn clock_status(&self) -> Result<(), String> {
        let metrics = super::metrics_of(&self.raft);
        match metrics.current_leader {
            Some(leader) if leader == self.id => {
                let voters = metrics.membership_config.membership().voter_ids().collect();
                self.clocks.may_stamp(leader, &voters)
            }
            Some(leader) => self.clocks.agrees_with_leader(leader),
            None => Ok(()),
        }
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

/// How often a leader checks that its clock still agrees with a quorum's.
const CLOCK_CHECK_EVERY: Duration = Duration::from_millis(250);

/// While this node leads with a clock a quorum disagrees with, hands leadership to the
/// follower with the most typical clock (it refuses to stamp meanwhile; see
/// [`super::clock`]). Runs as long as the Raft node does.
async fn hand_over_when_clock_is_off(raft: Raft, clocks: Arc<ClockBook>, me: NodeId) {
    let mut warned = false;
    loop {
        tokio::time::sleep(CLOCK_CHECK_EVERY).await;
        let metrics = super::metrics_of(&raft);
        if metrics.running_state.is_err() {
            return;
        }
        if metrics.current_leader != Some(me) {
            warned = false;
            continue;
        }
        let voters = metrics.membership_config.membership().voter_ids().collect();
        let Err(reason) = clocks.may_stamp(me, &voters) else {
            warned = false;
            continue;
        };
        let Some(to) = clocks.successor(me, &voters) else {
            continue;
        };
        if !warned {
            tracing::warn!(%reason, to, "not stamping with this clock; handing leadership over");
            warned = true;
        }
        let _ = raft.trigger().transfer_leader(to).await;
    }
}
